"""Real descriptors whose readiness follows lwstack sockets (what ``socket.fileno()`` returns).

``select``, ``poll``, ``selectors`` and asyncio's selector loop wait on kernel descriptors; an
lwstack socket lives in this process, so :meth:`lwstack.socket.socket.fileno` hands out a
descriptor that lwstack makes readable and writable exactly when the socket is.

Design note.

- The descriptor.  Each socket that is asked for its ``fileno()`` gets an AF_UNIX datagram
  socket pair: the *user end* is the descriptor handed out, the *our end* stays here.  An
  eventfd cannot do it: it is always writable unless its counter is at its maximum, and then it
  is readable, so it has no "neither readable nor writable" state (a connecting or a listening
  TCP socket).  A pipe is readable or writable, never neither either.  The pair has all four
  states, each bit set and cleared by one system call:

  - readable: a token (an empty datagram) sent from our end waits in the user end's queue;
    receiving it from the user end clears it;
  - not writable: one datagram of :data:`PARK_SIZE` bytes sent *from the user end* waits in our
    end's queue, so it counts against the user end's send buffer, shrunk to the minimum
    (SO_SNDBUF 1 -> 4608 bytes).  Linux's ``unix_dgram_poll`` reports POLLOUT while
    ``unix_writable()`` holds: the sender's queued bytes (sk_wmem_alloc, the whole sk_buff) at
    most a quarter of its send buffer, 1152 bytes; the parked datagram costs more than 2 KiB,
    an empty one is writable.  Receiving the parked datagram at our end makes it writable.
    The first pair made in a process checks these four transitions with ``poll`` and refuses
    to work (``OSError``) on a kernel that behaves otherwise.

  Linux's poll looks at the receiver's queue too when the two ends are not each other's peer
  (``unix_recvq_full``); here only our end names a peer (the user end), our end's queue holds
  at most the one parked datagram, and the user end never has more than one token, so only
  the sender's accounting decides.
- Nothing can be written to the descriptor by mistake.  The user end is disconnected
  (``connect(AF_UNSPEC)``, via ctypes: the socket module has no spelling for it) after
  ``socketpair``, and our end is bound to an autobind (abstract) name.  The user end therefore
  has no peer: ``os.write``, ``send`` or ``os.sendfile`` on the descriptor fail with ENOTCONN
  instead of silently swallowing bytes into our end (asyncio's ``sock_sendfile`` and
  ``loop.sendfile`` then fall back to ``send``).  Our end names the user end as its peer, so no
  other process may send to our abstract name (EPERM), and the user end has no name at all,
  so no other process can send tokens to it.
- Cost.  Nothing for a socket whose ``fileno()`` was never called: its endpoint's ``on_change``
  hook stays the driver's, and the socket calls test one attribute (a non-blocking TCP
  ``recv_into`` that finds nothing costs 2.12 us, as before descriptors existed).  The first
  ``fileno()`` costs the pair: 18 us (closing it 8 us).  Afterwards the endpoint's hook also
  marks the socket (an attribute test and a list append per batch, not per segment), and the
  driver re-computes the marked sockets' readiness once at the end of each batch: 0.12 us
  when nothing flipped; a flip is one system call, 1.4 us for the readable bit and 1.9 us for
  the writable one (2-core VM, CPython 3.11).  TCP's "writable" is Linux's
  ``sk_stream_is_writeable`` (free space at least half the queued bytes: queued <= 2/3 of
  SO_SNDBUF), whose hysteresis keeps a bulk sender from flipping the bit at every ACK.
  ``bench/fileno.py``: bulk TCP with descriptors registered on both ends moves as fast as
  without (69.0 against 68.8 MB/s, 1.85 against 1.86 CPU seconds per 100 MB, pure build);
  echo round trips with a selectors-driven client run at 96 % of a blocking client's.
- Synchronous clearing.  A call that changes its own socket's readiness (``recv`` draining the
  buffer, ``send`` filling it, ``accept`` emptying the queue, ``getsockopt(SO_ERROR)``,
  ``connect``, ``shutdown``) updates the descriptor before it returns, so a level-triggered
  loop never sees a stale "readable" and spins.  Changes that arrive from the network are set
  by the reactor after each batch (:func:`flush`), under the stack lock, as the kernel's
  wake-ups follow its softirq.  Drivers that do not batch (``defers_readiness`` false) update
  at once, from the endpoint's hook.
- Poll bits.  The descriptor reports POLLIN and POLLOUT only; where a kernel socket adds
  POLLHUP or POLLERR, ours reports POLLIN (and POLLOUT for an error), which is what ``select``
  and every ``selectors`` class make of them, so both see the kernel's answer.  The rules a
  socket follows are its ``_poll_state()`` (see :mod:`lwstack._stream` and
  :mod:`lwstack.socket`), written after Linux's ``tcp_poll`` and ``datagram_poll``.
- Life.  ``socket.dup()`` shares one pair: the second socket object gets ``os.dup`` of the
  first one's descriptor, and the pair closes with the last of them.  Closing a socket closes
  its descriptor (``fileno()`` is then -1, and ``select`` or ``selectors`` raise as with a
  closed kernel socket); closing a stack closes every descriptor of its sockets.
"""
import errno as _errno
import os as _os
import select as _select
import socket as _stdlib

#: Readiness bits, as a socket's ``_poll_state()`` returns them.
READABLE = 1
WRITABLE = 2
#: Bytes of the datagram that makes the user end unwritable (see the module note).
PARK_SIZE = 2048
_PARK = b"\0" * PARK_SIZE
_DONTWAIT = _stdlib.MSG_DONTWAIT

_checked = False
_connect = None


def _disconnect(sock):
    """``connect(fd, {AF_UNSPEC})``: dissolve a datagram socket's association (POSIX 1003.1g;
    Linux's ``unix_dgram_connect``), which the socket module cannot spell."""
    global _connect
    if _connect is None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        unspec = ctypes.c_ushort(_stdlib.AF_UNSPEC)

        def connect(fd):
            if libc.connect(fd, ctypes.byref(unspec), ctypes.sizeof(unspec)) != 0:
                code = ctypes.get_errno()
                raise OSError(code, _os.strerror(code))
        _connect = connect
    _connect(sock.fileno())


def _make_pair():
    """``(user end, our end, our end's name)``, both non-blocking (see the module note)."""
    user, ours = _stdlib.socketpair(_stdlib.AF_UNIX, _stdlib.SOCK_DGRAM)
    try:
        user.setsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_SNDBUF, 1)
        _disconnect(user)
        ours.bind("")                 # Linux autobind: an abstract name only our peer may use
        user.setblocking(False)
        ours.setblocking(False)
        return user, ours, ours.getsockname()
    except BaseException:
        user.close()
        ours.close()
        raise


def _check_kernel():
    """Once per process: the four transitions the module relies on, seen through ``poll``."""
    user, ours, name = _make_pair()
    try:
        poller = _select.poll()
        poller.register(user.fileno(), _select.POLLIN | _select.POLLOUT)

        def events():
            found = poller.poll(0)
            return found[0][1] & (_select.POLLIN | _select.POLLOUT) if found else 0
        seen = [events()]
        user.sendto(_PARK, _DONTWAIT, name)
        seen.append(events())
        ours.send(b"", _DONTWAIT)
        seen.append(events())
        ours.recv(PARK_SIZE, _DONTWAIT)
        seen.append(events())
        user.recv(1, _DONTWAIT)
        seen.append(events())
        try:
            _os.write(user.fileno(), b"x")
            seen.append("writable by the user")
        except OSError:
            pass
    finally:
        user.close()
        ours.close()
    expected = [_select.POLLOUT, 0, _select.POLLIN, _select.POLLIN | _select.POLLOUT,
                _select.POLLOUT]
    if seen != expected:
        raise OSError(_errno.ENOSYS, "this kernel's AF_UNIX datagram poll does not behave as "
                      f"lwstack.readiness needs (saw {seen}, expected {expected})")


class Readiness:
    """The descriptor pair of one socket (or of a socket and its ``dup()`` copies).

    ``compute()`` returns the socket's readiness (:data:`READABLE` | :data:`WRITABLE`); the
    pair follows it whenever :meth:`update` runs (stack lock held).  :meth:`watch` hooks an
    endpoint so that its changes mark this object for the driver's end-of-batch :func:`flush`.
    """

    def __init__(self, driver, compute):
        global _checked
        if not _checked:
            _check_kernel()
            _checked = True
        self._user, self._ours, self._ours_name = _make_pair()
        self._inode = _os.fstat(self._user.fileno()).st_ino
        self._driver = driver
        self.compute = compute
        self._state = WRITABLE
        self._handed = []             # descriptors handed out: the user end's, then os.dup()s
        self._hooks = []              # (endpoint, previous on_change, our hook)
        self.queued = False           # in driver.readiness_pending
        self.closed = False
        #: OSErrors met while setting the descriptor (none expected; kept for debugging).
        self.errors = 0
        driver.descriptors.add(self)

    # -- descriptors --------------------------------------------------------------------------

    def new_fd(self):
        """A descriptor for one socket object: the user end itself for the first, an
        ``os.dup`` of it for a ``dup()`` copy."""
        fd = self._user.fileno()
        if fd in self._handed:
            fd = _os.dup(fd)
        self._handed.append(fd)
        return fd

    def release_fd(self, fd):
        """A socket object closed: close its descriptor (the pair stays while others use it)."""
        if self.closed or fd not in self._handed:
            return
        self._handed.remove(fd)
        if fd != self._user.fileno():
            self._close_fd(fd)
        elif self._handed:
            # The pair's own reference goes with this socket: carry on through another copy
            # (every copy is the same socket), and close the number that was handed out.
            self._user.detach()
            self._user = _stdlib.socket(fileno=self._handed[0])
            self._close_fd(fd)
        else:
            self.close()

    def relinquish_fd(self, fd):
        """Give descriptor ``fd`` away without closing it (``socket.detach()``: its new owner,
        e.g. the stdlib's ``ssl`` adopting ``fileno()``, will close it).  The pair carries on
        through a descriptor of its own; the socket gets a new one if asked again."""
        if self.closed or fd not in self._handed:
            return
        self._handed.remove(fd)
        if fd == self._user.fileno():
            self._user.detach()
            self._user = _stdlib.socket(fileno=_os.dup(fd))

    def _close_fd(self, fd):
        # Only if the number is still our user end: a descriptor closed behind our back (by
        # whoever wrapped it in a socket object) may have been reused for something else.
        try:
            if _os.fstat(fd).st_ino != self._inode:
                return
        except OSError:
            return
        _os.close(fd)

    @property
    def in_use(self):
        """Descriptors still handed out."""
        return len(self._handed)

    # -- hooks --------------------------------------------------------------------------------

    def watch(self, endpoint):
        """Follow ``endpoint``: its ``on_change`` marks this object, then calls what it called."""
        previous = endpoint.on_change
        mark = self.mark
        if previous is None:
            def hook(changed):
                mark()
        else:
            def hook(changed):
                mark()
                previous(changed)
        endpoint.on_change = hook
        self._hooks.append((endpoint, previous, hook))

    def _unhook(self):
        for endpoint, previous, hook in self._hooks:
            if endpoint.on_change is hook:
                endpoint.on_change = previous
        self._hooks = []

    def mark(self):
        """The endpoint changed (lock held): update at the end of the batch, or now if the
        driver does not batch."""
        if self.queued:
            return
        driver = self._driver
        if driver.defers_readiness:
            self.queued = True
            driver.readiness_pending.append(self)
        else:
            self.update()

    # -- the state ----------------------------------------------------------------------------

    def update(self):
        """Make the descriptor say what ``compute()`` says (lock held): at most two system
        calls, none when nothing flipped."""
        if self.closed:
            return
        new = self.compute()
        old = self._state
        if new == old:
            return
        self._state = new
        flipped = new ^ old
        try:
            if flipped & READABLE:
                if new & READABLE:
                    self._ours.send(b"", _DONTWAIT)
                else:
                    try:
                        self._user.recv(1, _DONTWAIT)
                    except BlockingIOError:
                        pass          # someone read the token through the descriptor
            if flipped & WRITABLE:
                if new & WRITABLE:
                    self._ours.recv(PARK_SIZE, _DONTWAIT)
                else:
                    self._user.sendto(_PARK, _DONTWAIT, self._ours_name)
        except OSError:
            self.errors += 1

    @property
    def state(self):
        """What the descriptor says now: :data:`READABLE` | :data:`WRITABLE`."""
        return self._state

    def close(self):
        """Close every descriptor (the socket, its copies, or the stack closed)."""
        if self.closed:
            return
        self.closed = True
        self._unhook()
        own = self._user.detach()
        for fd in self._handed:
            if fd != own:
                self._close_fd(fd)
        self._handed = []
        self._close_fd(own)
        self._ours.close()
        self._driver.descriptors.discard(self)

    def __del__(self):
        if not getattr(self, "closed", True):
            try:
                self.close()
            except Exception:  # noqa: BLE001 (interpreter shutdown: nothing left to tell)
                pass


def flush(driver):
    """Bring every descriptor marked since the last flush up to date (lock held): the end of
    a driver's batch, or of an application call."""
    pending = driver.readiness_pending
    driver.readiness_pending = []
    for readiness in pending:
        readiness.queued = False
        readiness.update()


def close_all(driver):
    """The stack is closing: close the descriptors of all its sockets."""
    for readiness in list(driver.descriptors):
        readiness.close()
    driver.readiness_pending = []
