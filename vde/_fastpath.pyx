# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""lwswitch's compiled receive/forward/send loop: what ``SwitchServer._receive_frames`` does,
in C, with one ``recvmmsg`` and one ``sendmmsg`` per destination for a batch of frames.

Design
------
Why a ``.pyx`` and not a pure-mode ``.py`` + ``.pxd`` like :mod:`vde.core`: this module *is*
the part that talks to libc (``recvmmsg``/``sendmmsg``/``send`` on raw descriptors, ``errno``),
which has no pure-Python equivalent worth keeping in sync.  It only exists in the accelerated
build; the pure build (``LWSTACK_PURE=1``, no compiler) has no ``vde._fastpath`` and
:mod:`vde.server` keeps using its Python loop, which stays the reference behaviour.

One :class:`FastPath` per server, created with the server's :class:`~vde.core.SwitchCore`
(cimported: ``forward`` is a direct C call, no argument boxing) and the server's
``port -> tuple of datagram fds`` dict, which the server keeps current as endpoints come and
go.  :meth:`FastPath.drain` is called when an endpoint's datagram socket is readable:

1. ``recvmmsg(MSG_DONTWAIT)`` up to :data:`VLEN` frames into preallocated slots of
   ``max_frame + 1`` bytes each, so a longer datagram arrives as ``max_frame + 1`` bytes
   (``MSG_TRUNC``) and the core drops and counts it as ``oversize``, as with the Python loop's
   one-byte-longer ``recv_into`` buffer; never silently truncated to a valid length.
2. Each frame goes through ``core.forward(in_port, frame, now)`` (a ``bytes`` copy of the
   slot: the core's slicing and the MAC-table keys want bytes).  The core never returns the
   ingress port, so endpoints sharing a port do not hear each other (the descriptor the frame
   came from is skipped as well, belt and braces).
3. Each copy is queued on its destination descriptor (iovecs pointing into the receive slots,
   no copy); after the batch, one ``sendmmsg(MSG_DONTWAIT)`` per destination sends them in
   order.  More than :data:`MAX_DESTINATIONS` distinct destinations in one batch: the extra
   ones get a plain ``send`` per frame, still in order.
4. Repeat until the socket is empty or ``limit`` frames were taken (the server's ``BATCH``,
   so other sockets get their turn).

Drops are counted through ``core.count_drop(port, reason)`` with the Python loop's reasons:
``queue_full`` (EAGAIN), ``unreachable`` (ECONNREFUSED), ``no_buffers`` (ENOBUFS),
``send_error`` (anything else).  One difference, by design: after EAGAIN or ECONNREFUSED on a
destination, the rest of that destination's frames *in this batch* are counted as dropped for
the same reason without another system call each (the Python loop retries every frame; the
peer's queue does not empty itself within a batch, and a vanished peer does not come back).

Errors receiving (EAGAIN, EINTR, a vanished peer) end the drain, as in the Python loop.  An
exception from the core propagates after the frames already forwarded are sent.
"""
from libc.errno cimport errno, EAGAIN, EINTR, ENOBUFS, ECONNREFUSED
from libc.stdlib cimport calloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize

from vde.core cimport SwitchCore


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len


cdef extern from "<sys/socket.h>" nogil:
    # Python.h defines _GNU_SOURCE, which recvmmsg/sendmmsg need.
    struct msghdr:
        void *msg_name
        unsigned int msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags

    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len

    int recvmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags, void *timeout)
    int sendmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags)
    ssize_t c_send "send"(int fd, const void *buf, size_t len, int flags)

    enum:
        MSG_DONTWAIT
        MSG_TRUNC
        MSG_NOSIGNAL


#: Frames received by one recvmmsg (and at most sent by one sendmmsg).
VLEN = 64
#: Distinct destination descriptors batched per receive; more get a plain send().
MAX_DESTINATIONS = 32

cdef int _VLEN = VLEN
cdef int _MAX_DEST = MAX_DESTINATIONS
cdef int _SEND_FLAGS = MSG_DONTWAIT | MSG_NOSIGNAL


cdef class FastPath:
    """The compiled data path of one :class:`~vde.server.SwitchServer`.

    ``core`` is the server's SwitchCore (the compiled one), ``port_fds`` the dict
    ``port number -> tuple of datagram socket fds`` the server keeps current, ``max_frame``
    the core's limit.  Counters: ``frames_received``, ``recv_calls``, ``send_calls``.
    """

    cdef SwitchCore core
    cdef dict port_fds
    cdef Py_ssize_t slot_size
    cdef char *buffers
    cdef iovec *recv_iov
    cdef mmsghdr *recv_msgs
    # per destination slot: fd, port, queued count, then VLEN mmsghdr/iovec
    cdef int used
    cdef int *dest_fd
    cdef Py_ssize_t *dest_port
    cdef unsigned int *dest_count
    cdef iovec *send_iov
    cdef mmsghdr *send_msgs
    cdef public long long frames_received
    cdef public long long recv_calls
    cdef public long long send_calls

    def __cinit__(self, SwitchCore core not None, dict port_fds not None, Py_ssize_t max_frame):
        cdef int i
        if max_frame < 14:
            raise ValueError(f"max_frame too small: {max_frame}")
        self.core = core
        self.port_fds = port_fds
        self.slot_size = max_frame + 1
        self.buffers = <char *> calloc(_VLEN, self.slot_size)
        self.recv_iov = <iovec *> calloc(_VLEN, sizeof(iovec))
        self.recv_msgs = <mmsghdr *> calloc(_VLEN, sizeof(mmsghdr))
        self.dest_fd = <int *> calloc(_MAX_DEST, sizeof(int))
        self.dest_port = <Py_ssize_t *> calloc(_MAX_DEST, sizeof(Py_ssize_t))
        self.dest_count = <unsigned int *> calloc(_MAX_DEST, sizeof(unsigned int))
        self.send_iov = <iovec *> calloc(_MAX_DEST * _VLEN, sizeof(iovec))
        self.send_msgs = <mmsghdr *> calloc(_MAX_DEST * _VLEN, sizeof(mmsghdr))
        if (not self.buffers or not self.recv_iov or not self.recv_msgs or not self.dest_fd
                or not self.dest_port or not self.dest_count or not self.send_iov
                or not self.send_msgs):
            raise MemoryError()
        for i in range(_VLEN):
            self.recv_iov[i].iov_base = self.buffers + i * self.slot_size
            self.recv_iov[i].iov_len = self.slot_size
            self.recv_msgs[i].msg_hdr.msg_iov = &self.recv_iov[i]
            self.recv_msgs[i].msg_hdr.msg_iovlen = 1
        for i in range(_MAX_DEST * _VLEN):
            self.send_msgs[i].msg_hdr.msg_iov = &self.send_iov[i]
            self.send_msgs[i].msg_hdr.msg_iovlen = 1

    def __dealloc__(self):
        free(self.buffers)
        free(self.recv_iov)
        free(self.recv_msgs)
        free(self.dest_fd)
        free(self.dest_port)
        free(self.dest_count)
        free(self.send_iov)
        free(self.send_msgs)

    def drain(self, int fd, Py_ssize_t in_port, double now, Py_ssize_t limit):
        """Receive up to ``limit`` frames from ``fd`` (port ``in_port``), forward them; return
        how many frames were received."""
        cdef Py_ssize_t total = 0
        cdef int want, n, i
        cdef unsigned int length
        cdef bytes frame
        cdef object out
        cdef object fds
        cdef object port_obj
        cdef object fd_obj
        cdef int dest
        while total < limit:
            want = _VLEN if limit - total > _VLEN else <int>(limit - total)
            n = recvmmsg(fd, self.recv_msgs, want, MSG_DONTWAIT, NULL)
            self.recv_calls += 1
            if n <= 0:
                break                 # empty (EAGAIN), EINTR, or the peer went away
            self.used = 0
            try:
                for i in range(n):
                    length = self.recv_msgs[i].msg_len
                    # MSG_TRUNC: longer than max_frame + 1; length is then max_frame + 1, which
                    # the core drops as oversize.
                    frame = PyBytes_FromStringAndSize(self.buffers + i * self.slot_size, length)
                    out = self.core.forward(in_port, frame, now)
                    for port_obj in <tuple?>out:
                        fds = self.port_fds.get(port_obj)
                        if fds is None:
                            continue
                        for fd_obj in <tuple?>fds:
                            dest = fd_obj
                            if dest != fd:
                                self._queue(dest, <Py_ssize_t>port_obj, i, length)
            finally:
                self._flush()
            total += n
            self.frames_received += n
            if n < want:
                break                 # the socket is empty now
        return total

    cdef int _queue(self, int dest, Py_ssize_t port, int index, unsigned int length) except -1:
        cdef int slot
        cdef mmsghdr *msg
        cdef ssize_t sent
        for slot in range(self.used):
            if self.dest_fd[slot] == dest:
                break
        else:
            if self.used == _MAX_DEST:
                # Too many destinations for this batch: send this copy now.
                while True:
                    self.send_calls += 1
                    sent = c_send(dest, self.buffers + index * self.slot_size, length,
                                  _SEND_FLAGS)
                    if sent >= 0:
                        return 0
                    if errno != EINTR:
                        return self._count_errno(port, errno, 1)
            slot = self.used
            self.used += 1
            self.dest_fd[slot] = dest
            self.dest_port[slot] = port
            self.dest_count[slot] = 0
        msg = &self.send_msgs[slot * _VLEN + self.dest_count[slot]]
        msg.msg_hdr.msg_iov.iov_base = self.buffers + index * self.slot_size
        msg.msg_hdr.msg_iov.iov_len = length
        self.dest_count[slot] += 1
        return 0

    cdef int _flush(self) except -1:
        cdef int slot, r, err
        cdef unsigned int done, count
        cdef int used = self.used
        self.used = 0
        for slot in range(used):
            count = self.dest_count[slot]
            done = 0
            while done < count:
                self.send_calls += 1
                r = sendmmsg(self.dest_fd[slot], &self.send_msgs[slot * _VLEN + done],
                             count - done, _SEND_FLAGS)
                if r > 0:
                    done += r
                    continue
                err = errno
                if err == EINTR:
                    continue
                if err == EAGAIN or err == ECONNREFUSED:
                    # The peer's queue is full (or the peer is gone): the rest of this batch
                    # for it is dropped, counted one by one, without a system call each.
                    self._count_errno(self.dest_port[slot], err, count - done)
                    break
                self._count_errno(self.dest_port[slot], err, 1)
                done += 1
        return 0

    cdef int _count_errno(self, Py_ssize_t port, int err, unsigned int frames) except -1:
        cdef unsigned int k
        if err == EAGAIN:                  # == EWOULDBLOCK on Linux
            reason = "queue_full"
        elif err == ECONNREFUSED:
            reason = "unreachable"
        elif err == ENOBUFS:
            reason = "no_buffers"
        else:
            reason = "send_error"
        for k in range(frames):
            self.core.count_drop(port, reason)
        return 0
