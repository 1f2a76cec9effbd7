# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled data path of :class:`lwstack.phy.vdeplug.PlugPhy`: wait, receive and send frames
on a VDE plug's connected datagram socket with as few system calls and as little Python as
possible.

Design
------
Why: a stack answering a ping spends most of its time outside the protocol code.  Per echo the
pure path makes a ``poll`` (3 descriptors), a ``recv`` for the frame, another ``recv`` that
fails with EAGAIN (a Python exception) to learn the socket is empty, and a ``send``, each
behind a few layers of Python (``PlugPhy`` -> ``VdePlug`` -> ``socket``).  Here:

- :meth:`PlugIO.wait` is one ``ppoll`` on the data socket, the control stream and the eventfd
  (the GIL released only around it), and drains the eventfd in C;
- :meth:`PlugIO.recv_batch` is one ``recvmmsg(MSG_DONTWAIT)`` into preallocated slots for up to
  :data:`VLEN` frames: a short count says the socket is empty, so no EAGAIN round trip and no
  exception;
- :meth:`PlugIO.send` and :meth:`PlugIO.send_batch` are a direct ``send`` / one ``sendmmsg``
  per :data:`VLEN` frames, with the buffers taken from the frame objects (no copy).

The non-blocking calls keep the GIL: they never wait, and releasing and re-taking it costs more
than the call.  Only ``ppoll`` releases it.

Same contract as the pure :class:`lwstack.phy.plugio.PlugIO` (the reference behaviour, used
when this module is not built), tested against both:

- a frame longer than ``max_frame`` is dropped and counted (``rx_oversize``), never delivered
  cut short (a slot is ``max_frame + 1`` bytes, so ``MSG_TRUNC`` or a full slot gives it away);
- a full send queue (EAGAIN/ENOBUFS) drops the frame and counts it (``tx_dropped``): VDE has
  no back-pressure;
- a vanished switch (ECONNREFUSED, ECONNRESET, ENOTCONN, EPIPE on send or receive) sets
  :attr:`PlugIO.gone` to the errno, stops polling the data socket and counts every later frame
  as dropped; it never raises into the reactor.

This module only talks to libc on raw descriptors; the sockets stay owned by
:class:`vde.plug.VdePlug`, which closes them.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.list cimport PyList_New
from libc.errno cimport errno, EAGAIN, EINTR, ENOBUFS, ECONNREFUSED, ECONNRESET, ENOTCONN, EPIPE
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len


cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    # Python.h defines _GNU_SOURCE, which ppoll/recvmmsg/sendmmsg need.
    int ppoll(pollfd *fds, unsigned long nfds, const timespec *timeout, const void *sigmask)
    enum:
        POLLIN
        POLLERR
        POLLHUP
        POLLNVAL


cdef extern from "<sys/socket.h>" nogil:
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


cdef extern from "<unistd.h>" nogil:
    ssize_t c_read "read"(int fd, void *buf, size_t count)


cdef enum:
    VLEN_C = 16

#: Frames taken by one recvmmsg / sent by one sendmmsg.  16 slots of 9235 bytes: 148 KiB a stack.
VLEN = VLEN_C
#: :meth:`PlugIO.wait` result bits.
READABLE = 1
CONTROL = 2
WOKEN = 4
#: Smallest frame the switch accepts (destination, source, EtherType).
MIN_FRAME = 14

cdef int _VLEN = VLEN_C
cdef int _SEND_FLAGS = MSG_DONTWAIT | MSG_NOSIGNAL


cdef inline bint _gone_errno(int err) nogil:
    return err == ECONNREFUSED or err == ECONNRESET or err == ENOTCONN or err == EPIPE


cdef class PlugIO:
    """Frame I/O on a connected datagram socket ``data_fd`` (see the module note).

    ``control_fd`` is the switch's control stream (readable: the switch dropped us), ``wake_fd``
    an eventfd that :meth:`wait` drains; either may be -1.  ``max_frame`` is the largest frame
    accepted in either direction.  Counters: ``rx_frames``, ``rx_oversize``, ``tx_frames``,
    ``tx_dropped``, ``tx_invalid``, ``recv_calls``, ``send_calls``, ``poll_calls``.
    """

    cdef pollfd fds[3]
    cdef Py_ssize_t max_frame
    cdef Py_ssize_t slot_size
    cdef char *buffers
    cdef iovec *recv_iov
    cdef mmsghdr *recv_msgs
    cdef readonly int data_fd
    #: errno that showed the switch is gone (0 while it is there).
    cdef readonly int gone
    #: True once the control stream fired (EOF: the switch dropped this endpoint).
    cdef readonly bint hangup
    cdef public long long rx_frames
    cdef public long long rx_oversize
    cdef public long long tx_frames
    cdef public long long tx_dropped
    cdef public long long tx_invalid
    cdef public long long recv_calls
    cdef public long long send_calls
    cdef public long long poll_calls

    def __cinit__(self, int data_fd, int control_fd=-1, int wake_fd=-1,
                  Py_ssize_t max_frame=9234):
        cdef int i
        if data_fd < 0:
            raise ValueError(f"bad data descriptor {data_fd}")
        if max_frame < MIN_FRAME:
            raise ValueError(f"max_frame too small: {max_frame}")
        self.data_fd = data_fd
        self.max_frame = max_frame
        self.slot_size = max_frame + 1
        self.fds[0].fd = data_fd
        self.fds[1].fd = control_fd
        self.fds[2].fd = wake_fd
        for i in range(3):
            self.fds[i].events = POLLIN
            self.fds[i].revents = 0
        self.buffers = <char *> calloc(_VLEN, self.slot_size)
        self.recv_iov = <iovec *> calloc(_VLEN, sizeof(iovec))
        self.recv_msgs = <mmsghdr *> calloc(_VLEN, sizeof(mmsghdr))
        if not self.buffers or not self.recv_iov or not self.recv_msgs:
            raise MemoryError()
        for i in range(_VLEN):
            self.recv_iov[i].iov_base = self.buffers + i * self.slot_size
            self.recv_iov[i].iov_len = self.slot_size
            self.recv_msgs[i].msg_hdr.msg_iov = &self.recv_iov[i]
            self.recv_msgs[i].msg_hdr.msg_iovlen = 1

    def __dealloc__(self):
        free(self.buffers)
        free(self.recv_iov)
        free(self.recv_msgs)

    def wait(self, timeout):
        """Block until the data socket is readable, the control stream shows an event, the
        eventfd is written, or ``timeout`` seconds pass (None: no limit).  Return a bit mask of
        :data:`READABLE`, :data:`CONTROL`, :data:`WOKEN` (0 on timeout).  The eventfd is
        drained; after a :data:`CONTROL` event the control stream is no longer polled."""
        cdef timespec ts
        cdef timespec *tsp = NULL
        cdef double seconds
        cdef int n, result = 0
        cdef uint64_t counter = 0
        if timeout is not None:
            seconds = timeout
            if not seconds >= 0:          # negative, or NaN
                seconds = 0
            if seconds > 86400.0:
                seconds = 86400.0
            ts.tv_sec = <long> seconds
            ts.tv_nsec = <long> ((seconds - ts.tv_sec) * 1e9)
            tsp = &ts
        self.poll_calls += 1
        with nogil:
            n = ppoll(self.fds, 3, tsp, NULL)
        if n <= 0:
            return 0                      # timeout, or EINTR: the caller re-checks and loops
        if self.fds[0].revents:
            result |= READABLE
        if self.fds[1].revents:
            result |= CONTROL
            self.hangup = True
            self.fds[1].fd = -1           # EOF stays readable: stop polling it
        if self.fds[2].revents:
            result |= WOKEN
            c_read(self.fds[2].fd, &counter, sizeof(counter))
        return result

    def recv_batch(self, Py_ssize_t limit=256):
        """Up to ``limit`` waiting frames as a list of ``bytes`` (``[]`` if none), without
        blocking.  Oversized frames are dropped and counted; a vanished switch sets
        :attr:`gone` and returns what was already received."""
        cdef list frames = []
        cdef int want, n, i, err
        cdef unsigned int length
        cdef Py_ssize_t total = 0
        if self.gone:
            return frames
        while total < limit:
            want = _VLEN if limit - total > _VLEN else <int>(limit - total)
            n = recvmmsg(self.data_fd, self.recv_msgs, want, MSG_DONTWAIT, NULL)
            self.recv_calls += 1
            if n < 0:
                err = errno
                if err == EINTR:
                    continue
                if _gone_errno(err):
                    self._set_gone(err)
                break                     # EAGAIN: empty
            for i in range(n):
                length = self.recv_msgs[i].msg_len
                if length > self.max_frame or (self.recv_msgs[i].msg_hdr.msg_flags & MSG_TRUNC):
                    self.rx_oversize += 1
                    continue
                frames.append(PyBytes_FromStringAndSize(self.buffers + i * self.slot_size,
                                                        length))
            self.rx_frames += n
            total += n
            if n < want:
                break                     # the socket is empty now
        return frames

    def send(self, frame):
        """Send one frame without blocking: True if queued, False if dropped (full queue, or
        the switch is gone).  ``ValueError`` for a frame outside ``14..max_frame`` bytes."""
        cdef Py_buffer view
        cdef ssize_t sent
        cdef int err = 0
        PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
        try:
            if view.len < MIN_FRAME or view.len > self.max_frame:
                raise ValueError(f"frame of {view.len} bytes: must be "
                                 f"{MIN_FRAME}..{self.max_frame}")
            if self.gone:
                self.tx_dropped += 1
                return False
            while True:
                self.send_calls += 1
                sent = c_send(self.data_fd, view.buf, view.len, _SEND_FLAGS)
                if sent >= 0:
                    self.tx_frames += 1
                    return True
                err = errno
                if err != EINTR:
                    break
        finally:
            PyBuffer_Release(&view)
        if _gone_errno(err):
            self._set_gone(err)
        self.tx_dropped += 1
        return False

    def send_batch(self, list frames):
        """Send every frame of the list ``frames`` in order, up to :data:`VLEN` per
        ``sendmmsg``; return how many were dropped.  Dropped and counted: frames outside
        ``14..max_frame`` bytes (``tx_invalid``: the reactor must not die of one bad frame),
        frames meeting a full queue and, once the switch is gone, the rest (``tx_dropped``)."""
        # The scratch arrays live on the C stack: send_batch may be called from any thread
        # holding the stack's lock, and never shares state with recv_batch.
        cdef iovec send_iov[VLEN_C]
        cdef mmsghdr send_msgs[VLEN_C]
        cdef Py_buffer views[VLEN_C]
        cdef Py_ssize_t count = len(frames)
        cdef Py_ssize_t start = 0, dropped = 0, length
        cdef int chunk, got, queued, i, r, done, err
        memset(send_msgs, 0, sizeof(send_msgs))
        for i in range(VLEN_C):
            send_msgs[i].msg_hdr.msg_iov = &send_iov[i]
            send_msgs[i].msg_hdr.msg_iovlen = 1
        while start < count:
            chunk = _VLEN if count - start > _VLEN else <int>(count - start)
            got = 0
            queued = 0
            try:
                for i in range(chunk):
                    PyObject_GetBuffer(frames[start + i], &views[got], PyBUF_SIMPLE)
                    got += 1
                    length = views[got - 1].len
                    if length < MIN_FRAME or length > self.max_frame:
                        self.tx_invalid += 1
                        dropped += 1
                        continue
                    send_iov[queued].iov_base = views[got - 1].buf
                    send_iov[queued].iov_len = length
                    queued += 1
                done = 0
                while done < queued and not self.gone:
                    self.send_calls += 1
                    r = sendmmsg(self.data_fd, &send_msgs[done], queued - done, _SEND_FLAGS)
                    if r > 0:
                        done += r
                        self.tx_frames += r
                        continue
                    err = errno
                    if err == EINTR:
                        continue
                    if _gone_errno(err):
                        self._set_gone(err)
                        break
                    # A full queue (EAGAIN, ENOBUFS) or another error: this frame is dropped,
                    # the next ones are tried (the switch may have read some meanwhile).
                    self.tx_dropped += 1
                    dropped += 1
                    done += 1
                if done < queued:         # the switch is gone: the rest is dropped too
                    self.tx_dropped += queued - done
                    dropped += queued - done
            finally:
                for i in range(got):
                    PyBuffer_Release(&views[i])
            start += chunk
        return dropped

    cdef void _set_gone(self, int err):
        self.gone = err
        self.fds[0].fd = -1               # a dead socket stays readable (EOF/error): ignore it

    def close(self):
        """Stop polling every descriptor (the sockets belong to the caller, who closes them)."""
        self.fds[0].fd = -1
        self.fds[1].fd = -1
        self.fds[2].fd = -1
