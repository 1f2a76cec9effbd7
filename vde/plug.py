"""A client endpoint ("plug") on a vde_switch-compatible switch.

Design notes
------------
The handshake is vdeplug4's (see shared/reference/vde-protocol.md): connect a SOCK_STREAM
socket to ``DIR/ctl``; bind a SOCK_DGRAM socket to ``DIR/.PPPPP-NNNNN`` (pid, per-process
sequence); send ONE version-3 request naming it, with the description plus
`` user=NAME pid=PID`` as vdeplug4 appends it (``port/print`` then shows
``vdeplug: user=root pid=4098`` for Debian's vde_plug); read the 110-byte reply naming the
switch's datagram socket ``DIR/NNN.F``; connect to it; unlink our own path (the connection
survives: the kernel resolved it at connect time); keep the stream open, since closing it
ends the endpoint and EOF on it is how we learn that the switch went away.

- If ``DIR`` is not writable (a root-owned system switch used by another user), our datagram
  socket is bound in a private temporary directory instead; it is removed right after the
  handshake.
- Debian's vde_switch 2.3.2 never answers a request for an out-of-range port, so the reply is
  read under a deadline and a silent switch raises :class:`TimeoutError`.
- The data path is connected datagram sockets (about twice as fast as ``sendto(path)``), non
  blocking: the stack's reactor polls :meth:`VdePlug.fileno`.  :meth:`VdePlug.send` never
  blocks; a full queue drops the frame and counts it, as vde_switch itself does (there is no
  back-pressure anywhere in VDE).
- Socket buffers: SO_SNDBUF and SO_RCVBUF are raised to 4 MiB (the kernel caps them at
  ``net.core.wmem_max``/``rmem_max``).  What we found on Linux: ``net.unix.max_dgram_qlen``
  (default 10) does NOT limit this path, because the kernel applies it only when the receiver
  is not connected back to the sender, and vde_switch's per-port socket and ours are
  connected to each other.  A unix datagram is charged to the *sender's* send buffer until it
  is read, so what bounds a burst is the send buffer: ours towards the switch (with 4 MiB we
  queued 1000 frames of 1514 B without a drop; with the 208 KiB default about half were
  refused), and vde_switch's (default, 208 KiB) towards a peer that is not reading: there
  about 280 frames of 64 B or 93 of 1514 B wait, the rest are dropped by the switch.  A
  switch that sends from one unconnected socket with ``sendto`` does meet the limit of 10.
- :meth:`VdePlug.recv_batch` calls ``recv`` in a loop: CPython allocates the result at the
  maximum size and shrinks it in place, which measured faster than ``recv_into`` a shared
  buffer followed by a copy out of it.
"""
import contextlib
import errno
import itertools
import os
import pwd
import re
import shutil
import socket
import tempfile
import time

from vde.locator import Locator, LocatorError, parse_locator
from vde.protocol import (MAX_DESCRIPTION, SOCKADDR_UN_LEN, ProtocolError, pack_request,
                          parse_reply)

#: vdeplug4's largest frame: 9216-byte MTU + Ethernet header + one VLAN tag.
MAX_FRAME = 9234
#: The IP MTU that goes with :data:`MAX_FRAME` (vde_switch itself truncates at 1518 bytes,
#: i.e. an IP MTU of 1500).
MTU = 9216
#: Smallest frame: destination, source, EtherType.  vde_switch drops shorter ones.
MIN_FRAME = 14
#: Requested socket buffer size; the kernel caps it at net.core.{w,r}mem_max.
SOCKET_BUFFER = 4 * 1024 * 1024
#: Largest port number a request can carry (24 bits).
MAX_PORT = 0xFFFFFF
#: Options understood in ``vde://DIR[...]``.
VDE_OPTIONS = ("port", "mode")

_sequence = itertools.count()
_REPLY_NAME = re.compile(r"(\d+)\.\d+\Z")
_QUEUE_FULL = frozenset({errno.EAGAIN, errno.ENOBUFS})
_SWITCH_GONE = frozenset({errno.ECONNREFUSED, errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE})


def _user_name():
    """The effective user's login name, or the numeric uid if it has none."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def vdeplug_description(description):
    """``description`` with vdeplug4's suffix `` user=NAME pid=PID``, cut to 128 bytes."""
    text = f"{description} user={_user_name()} pid={os.getpid()}"
    return text.encode(errors="replace")[:MAX_DESCRIPTION].decode(errors="ignore")


class VdePlug:
    """A connected endpoint on a switch port; build it with :func:`open_plug`.

    Frames are ``bytes``-like Ethernet frames without FCS.  All data calls are non-blocking.
    """

    #: Largest frame :meth:`send` accepts.
    max_frame = MAX_FRAME
    #: IP MTU matching :attr:`max_frame`.
    mtu = MTU

    def __init__(self, data_socket, control_socket, switch_path, remote_path, port):
        self._data = data_socket
        self._control = control_socket
        self._closed = False
        #: The switch directory (the one holding ``ctl``).
        self.switch_path = switch_path
        #: The switch's datagram socket for this endpoint (``DIR/NNN.F``).
        self.remote_path = remote_path
        #: The switch port, from the reply's ``NNN.F`` name (None if named otherwise).
        self.port = port
        #: Counters: frames and bytes sent and received, frames dropped on a full queue.
        self.stats = {"tx_frames": 0, "tx_bytes": 0, "rx_frames": 0, "rx_bytes": 0,
                      "tx_dropped": 0}

    def __repr__(self):
        state = "closed" if self._closed else f"port={self.port}"
        return f"<VdePlug {self.switch_path} {state}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def closed(self):
        """True once :meth:`close` has been called."""
        return self._closed

    def fileno(self):
        """The non-blocking datagram socket; readable when frames are waiting."""
        return self._data.fileno()

    def control_fileno(self):
        """The control stream; it becomes readable (EOF) when the switch drops this endpoint."""
        return self._control.fileno()

    def send(self, frame):
        """Send one Ethernet frame without blocking.

        Return True if the frame was queued, False if the queue was full (EAGAIN/ENOBUFS;
        counted in ``stats['tx_dropped']``).  Raise :class:`ConnectionRefusedError` if the
        switch is gone and :class:`ValueError` for a frame shorter than 14 or longer than
        :attr:`max_frame` bytes.
        """
        size = len(frame)
        if size < MIN_FRAME or size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes: must be {MIN_FRAME}..{MAX_FRAME}")
        try:
            self._data.send(frame)
        except OSError as exc:
            if exc.errno not in _QUEUE_FULL:
                self._raise_data_error(exc)
            self.stats["tx_dropped"] += 1
            return False
        stats = self.stats
        stats["tx_frames"] += 1
        stats["tx_bytes"] += size
        return True

    def recv_batch(self, max_frames=64):
        """Return up to ``max_frames`` waiting frames as a list of bytes, ``[]`` if none."""
        frames = []
        append = frames.append
        recv = self._data.recv
        try:
            for _ in range(max_frames):
                append(recv(MAX_FRAME))
        except BlockingIOError:
            pass
        except OSError as exc:
            self._raise_data_error(exc)
        if frames:
            stats = self.stats
            stats["rx_frames"] += len(frames)
            stats["rx_bytes"] += sum(map(len, frames))
        return frames

    def recv_into(self, buffer):
        """Receive one frame into ``buffer``; return its length.

        Raise :class:`BlockingIOError` if no frame is waiting.  A frame longer than the
        buffer is truncated, as for any datagram socket.
        """
        try:
            size = self._data.recv_into(buffer)
        except BlockingIOError:
            raise
        except OSError as exc:
            self._raise_data_error(exc)
        stats = self.stats
        stats["rx_frames"] += 1
        stats["rx_bytes"] += size
        return size

    def _raise_data_error(self, exc):
        """Translate a data-socket error into the exception our callers are promised."""
        if self._closed:
            raise OSError(errno.EBADF, "VdePlug is closed") from exc
        if exc.errno in _SWITCH_GONE:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"VDE switch at {self.switch_path} is gone "
                f"(port {self.port}): {exc.strerror}") from exc
        raise exc

    def close(self):
        """Close both sockets, which ends the endpoint on the switch.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._data.close()
        self._control.close()


def open_plug(locator=None, *, description="", timeout=5.0):
    """Connect a new :class:`VdePlug` to the switch named by ``locator``.

    ``locator`` is a vdeplug4 locator string (``vde:///tmp/sw``, ``/tmp/sw[3]``, ``""`` for
    the default switch) or a parsed :class:`~vde.locator.Locator`.  Options: ``port``
    (0 = any free port) and ``mode`` (octal permissions of our datagram socket, for a switch
    running as another user).  The whole handshake must finish within ``timeout`` seconds.

    Raise :class:`FileNotFoundError` or :class:`ConnectionRefusedError` if there is no switch
    there, :class:`ConnectionRefusedError` if the switch closes the connection instead of
    answering, :class:`TimeoutError` if it does not answer in time, ``NotImplementedError``
    for locator schemes other than ``vde``, and :class:`~vde.locator.LocatorError` for a
    malformed locator.
    """
    if not isinstance(locator, Locator):
        locator = parse_locator(locator)
    if locator.scheme != "vde":
        raise NotImplementedError(f"locator scheme {locator.scheme!r} not supported yet "
                                  f"(only vde:// can be opened): {locator.text!r}")
    unknown = sorted(set(locator.options) - set(VDE_OPTIONS))
    if unknown:
        raise LocatorError(f"{locator.text!r}: unknown vde option(s) {', '.join(unknown)} "
                           f"(known: {', '.join(VDE_OPTIONS)})")
    port = locator.int_option("port", 0, maximum=MAX_PORT)
    mode = locator.int_option("mode", None, base=8, maximum=0o7777)
    switch_path = locator.path
    deadline = time.monotonic() + timeout
    control = _connect_control(switch_path, timeout)
    try:
        data, local_path, private_dir = _bind_data_socket(switch_path, mode)
        try:
            control.sendall(pack_request(local_path, port, vdeplug_description(description)))
            reply = _read_reply(control, switch_path, port, deadline)
            remote_path = _parse_reply(reply, switch_path)
            try:
                data.connect(remote_path)
            except OSError as exc:
                raise ConnectionRefusedError(
                    errno.ECONNREFUSED, f"VDE switch at {switch_path}: cannot connect to its "
                    f"port socket {remote_path}: {exc.strerror or exc}") from exc
        except BaseException:
            data.close()
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local_path)
            if private_dir:
                shutil.rmtree(private_dir, ignore_errors=True)
    except BaseException:
        control.close()
        raise
    data.setblocking(False)
    control.setblocking(False)
    match = _REPLY_NAME.match(os.path.basename(remote_path))
    return VdePlug(data, control, switch_path, remote_path,
                   int(match.group(1)) if match else None)


def _connect_control(switch_path, timeout):
    """Connect the control stream to ``switch_path/ctl``, naming the switch on failure."""
    control_path = os.path.join(switch_path, "ctl")
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.settimeout(timeout)
    try:
        control.connect(control_path)
    except FileNotFoundError as exc:
        control.close()
        what = "no control socket" if os.path.isdir(switch_path) else "no such directory"
        raise FileNotFoundError(errno.ENOENT, f"no VDE switch at {switch_path}: {what}",
                                control_path) from exc
    except ConnectionRefusedError as exc:
        control.close()
        raise ConnectionRefusedError(
            errno.ECONNREFUSED, f"no VDE switch at {switch_path}: {control_path} refused "
            f"the connection (stale socket of a dead switch?)", control_path) from exc
    except OSError:
        control.close()
        raise
    return control


def _bind_data_socket(switch_path, mode):
    """Create our datagram socket bound to ``DIR/.PPPPP-NNNNN`` (or in a private temp dir).

    Return the socket, its path and the private directory to remove (or None).
    """
    data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            data.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        private_dir = None
        try:
            local_path = _bind_unique(data, switch_path)
        except OSError:   # switch directory not writable, or its path too long
            private_dir = tempfile.mkdtemp(prefix="lwstack-vde-")
            local_path = _bind_unique(data, private_dir)
        if mode is not None:
            os.chmod(local_path, mode)
    except BaseException:
        data.close()
        raise
    return data, local_path, private_dir


def _bind_unique(data, directory):
    """Bind ``data`` to the first free ``directory/.PPPPP-NNNNN``; return the path."""
    while True:
        path = os.path.join(directory, f".{os.getpid():05d}-{next(_sequence):05d}")
        try:
            data.bind(path)
            return path
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise


def _read_reply(control, switch_path, port, deadline):
    """Read the switch's 110-byte reply before ``deadline``."""
    wanted = f"port {port}" if port else "a port"
    reply = b""
    while len(reply) < SOCKADDR_UN_LEN:
        control.settimeout(max(deadline - time.monotonic(), 0.0))
        try:
            chunk = control.recv(SOCKADDR_UN_LEN - len(reply))
        except TimeoutError:
            raise TimeoutError(
                errno.ETIMEDOUT, f"VDE switch at {switch_path} did not answer a request for "
                f"{wanted} (Debian's vde_switch stays silent when the port is out of range)"
            ) from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"VDE switch at {switch_path} closed the connection: "
                f"request for {wanted} refused")
        reply += chunk
    return reply


def _parse_reply(reply, switch_path):
    """The switch's datagram path from its reply; EPROTO if the reply is malformed."""
    try:
        return parse_reply(reply)
    except ProtocolError as exc:
        raise OSError(errno.EPROTO, f"VDE switch at {switch_path} sent a bad reply: "
                                    f"{exc}") from exc
