"""Frame I/O on a VDE plug's datagram socket: the pure-Python reference for :mod:`._plugio`.

Design note.  :class:`lwstack.phy.vdeplug.PlugPhy` moves frames through a ``PlugIO``: the
compiled one (``lwstack/phy/_plugio.pyx``: ``ppoll``, ``recvmmsg``, ``sendmmsg`` on the raw
descriptors, built only in the accelerated build) when it is there, this one otherwise.  Both
keep the same contract, and the tests run against both (``tests/phy/``):

- :meth:`PlugIO.wait` polls the data socket, the switch's control stream and an eventfd, and
  says which of them fired (:data:`READABLE`, :data:`CONTROL`, :data:`WOKEN`); it drains the
  eventfd, and stops polling the control stream once it fired (EOF stays readable).
- :meth:`PlugIO.recv_batch` returns every waiting frame, up to a limit, never blocking.  A
  frame longer than ``max_frame`` is dropped and counted (``rx_oversize``), never delivered
  cut short: we read ``max_frame + 1`` bytes, so a longer datagram shows itself.
- :meth:`PlugIO.send` / :meth:`PlugIO.send_batch` never block: a full queue drops the frame
  and counts it (``tx_dropped``), as vde_switch itself does (VDE has no back-pressure).
- A vanished switch (ECONNREFUSED, ECONNRESET, ENOTCONN, EPIPE) sets :attr:`PlugIO.gone` to
  the errno; the data socket is no longer polled and later frames are dropped.  Nothing
  raises into the reactor, except ``ValueError`` from :meth:`PlugIO.send` for a frame of an
  impossible size (a caller's bug); :meth:`PlugIO.send_batch` counts those (``tx_invalid``).

The descriptors stay owned by the caller (:class:`vde.plug.VdePlug` and the phy's eventfd).
Here the pure path reads and writes with ``os.read``/``os.write`` on the non-blocking
descriptors (one EAGAIN exception per batch tells that the socket is empty).
"""
import errno
import os
import select

#: :meth:`PlugIO.wait` result bits.
READABLE = 1
CONTROL = 2
WOKEN = 4
#: Smallest frame the switch accepts (destination, source, EtherType).
MIN_FRAME = 14

_GONE = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE})
_POLL_IN = select.POLLIN


class PlugIO:
    """Frame I/O on the connected datagram socket ``data_fd`` (see the module note).

    ``control_fd`` is the switch's control stream, ``wake_fd`` an eventfd; either may be -1.
    Counters as in the compiled module: ``rx_frames``, ``rx_oversize``, ``tx_frames``,
    ``tx_dropped``, ``tx_invalid``, ``recv_calls``, ``send_calls``, ``poll_calls``.
    """

    def __init__(self, data_fd, control_fd=-1, wake_fd=-1, max_frame=9234):
        if data_fd < 0:
            raise ValueError(f"bad data descriptor {data_fd}")
        if max_frame < MIN_FRAME:
            raise ValueError(f"max_frame too small: {max_frame}")
        self.data_fd = data_fd
        self.max_frame = max_frame
        self._control_fd = control_fd
        self._wake_fd = wake_fd
        #: errno that showed the switch is gone (0 while it is there).
        self.gone = 0
        #: True once the control stream fired (EOF: the switch dropped this endpoint).
        self.hangup = False
        self.rx_frames = self.rx_oversize = 0
        self.tx_frames = self.tx_dropped = self.tx_invalid = 0
        self.recv_calls = self.send_calls = self.poll_calls = 0
        self._poller = select.poll()
        for fd in (data_fd, control_fd, wake_fd):
            if fd >= 0:
                self._poller.register(fd, _POLL_IN)

    def wait(self, timeout):
        """Block until the data socket is readable, the control stream shows an event, the
        eventfd is written, or ``timeout`` seconds pass (None: no limit); return a bit mask of
        :data:`READABLE`, :data:`CONTROL`, :data:`WOKEN` (0 on timeout)."""
        if timeout is None:
            millis = -1
        else:
            millis = min(int(timeout * 1000 + 0.999), 86_400_000) if timeout > 0 else 0
        self.poll_calls += 1
        result = 0
        for fd, _events in self._poller.poll(millis):
            if fd == self.data_fd:
                result |= READABLE
            elif fd == self._wake_fd:
                result |= WOKEN
                try:
                    os.read(fd, 8)
                except BlockingIOError:
                    pass
            elif fd == self._control_fd:
                result |= CONTROL
                self.hangup = True
                self._unregister(fd)
                self._control_fd = -1
        return result

    def recv_batch(self, limit=256):
        """Up to ``limit`` waiting frames as a list of ``bytes`` (``[]`` if none)."""
        frames = []
        if self.gone:
            return frames
        read = os.read
        fd = self.data_fd
        size = self.max_frame + 1
        taken = 0
        try:
            while taken < limit:
                self.recv_calls += 1
                frame = read(fd, size)
                taken += 1
                if len(frame) == size:
                    self.rx_oversize += 1
                else:
                    frames.append(frame)
        except BlockingIOError:
            pass
        except InterruptedError:       # PEP 475 retries EINTR itself; belt and braces
            pass
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            self._set_gone(exc.errno)
        self.rx_frames += taken
        return frames

    def send(self, frame):
        """Send one frame without blocking: True if queued, False if dropped (full queue, or
        the switch is gone).  ``ValueError`` for a frame outside ``14..max_frame`` bytes."""
        size = len(frame)
        if size < MIN_FRAME or size > self.max_frame:
            raise ValueError(f"frame of {size} bytes: must be {MIN_FRAME}..{self.max_frame}")
        if self.gone:
            self.tx_dropped += 1
            return False
        self.send_calls += 1
        try:
            os.write(self.data_fd, frame)
        except OSError as exc:
            if exc.errno in _GONE:
                self._set_gone(exc.errno)
            self.tx_dropped += 1
            return False
        self.tx_frames += 1
        return True

    def send_batch(self, frames):
        """Send every frame of the list ``frames`` in order; return how many were dropped
        (impossible sizes counted in ``tx_invalid``, full queue or vanished switch in
        ``tx_dropped``)."""
        dropped = 0
        max_frame = self.max_frame
        for frame in frames:
            size = len(frame)
            if size < MIN_FRAME or size > max_frame:
                self.tx_invalid += 1
                dropped += 1
            elif not self.send(frame):
                dropped += 1
        return dropped

    def _set_gone(self, err):
        self.gone = err
        self._unregister(self.data_fd)

    def _unregister(self, fd):
        try:
            self._poller.unregister(fd)
        except KeyError:
            pass

    def close(self):
        """Stop polling every descriptor (the caller closes them)."""
        for fd in (self.data_fd, self._control_fd, self._wake_fd):
            if fd >= 0:
                self._unregister(fd)
        self._control_fd = self._wake_fd = -1
