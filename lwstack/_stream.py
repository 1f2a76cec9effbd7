"""TCP sockets for :mod:`lwstack.socket` (``socket(AF_INET, SOCK_STREAM)`` and ``AF_INET6``).

The socket is a thin layer over a :class:`~lwstack.proto.tcp.connection.TcpConnection` (or,
after ``listen``, a :class:`~lwstack.proto.tcp.listener.TcpListener`): it takes the stack lock,
calls the connection with the driver's clock, waits on the driver's condition when the call
would block, and turns the connection's errno values into the stdlib's exceptions
(``ConnectionRefusedError``, ``ConnectionResetError``, ``BrokenPipeError``, ``TimeoutError``
with ``ETIMEDOUT`` for a TCP-level timeout, ``timeout`` for a socket timeout).

Timeouts follow the stdlib: ``None`` blocks, ``0`` is non-blocking (``BlockingIOError``), a
number bounds each call (``sendall`` as a whole, as CPython does since 3.5).

``fileno()`` (:mod:`lwstack.readiness`) follows Linux's ``tcp_poll`` as ``select`` sees it
(:meth:`StreamSocket._poll_state`): a listener is readable with a connection to accept and
never writable; a connection in its handshake is neither; otherwise readable with data, after
the peer's FIN, after ``shutdown(SHUT_RD)``, with a pending error, or once closed (POLLHUP: a
fresh socket too), and writable when the send buffer is at most two thirds full, after our FIN
(nothing more can block a send), once closed, or with a pending error.  A non-blocking
``connect`` therefore completes by becoming writable, and a refused one is readable and
writable with ``SO_ERROR`` set.

AF_INET6 sockets take and give ``(host, port, flowinfo, scope_id)`` tuples, and are dual-stack
as on Linux (``bindv6only=0``): one bound to ``::`` (or not bound) also talks IPv4, its IPv4
peers appearing as ``::ffff:a.b.c.d``, unless ``IPV6_V6ONLY`` was set before it was bound.
Underneath, an IPv4-mapped address is the 4-byte IPv4 address (the connection *is* IPv4) and
``::`` is :data:`~lwstack.proto.tcp.table.ANY6`; the table applies Linux's rules for mixing
the families (see :mod:`lwstack.proto.tcp.table`).
"""
import errno as _errno
import io as _io
import socket as _stdlib
import struct as _struct

from lwstack.proto.tcp import congestion as _congestion
from lwstack.proto.tcp.connection import (CLOSE_WAIT, CLOSED, ESTABLISHED, HANDSHAKE,
                                          MAX_BUFFER, TIME_WAIT)
from lwstack.readiness import READABLE as _READABLE, WRITABLE as _WRITABLE
from lwstack.proto.tcp.table import ANY6 as _ANY6
from lwstack.socket import (AF_INET6, IPPROTO_IPV6, IPPROTO_TCP, IPV6_V6ONLY, SHUT_RD,
                            SHUT_RDWR, SHUT_WR, SO_ERROR, SO_RCVBUF, SO_REUSEADDR, SO_SNDBUF,
                            SO_TYPE, SOL_SOCKET, _ANY, _DONTWAIT, _PEEK, _needs_scope, _oserror,
                            _scope_id, socket, timeout)

SO_KEEPALIVE = _stdlib.SO_KEEPALIVE
SO_LINGER = _stdlib.SO_LINGER
SO_ACCEPTCONN = getattr(_stdlib, "SO_ACCEPTCONN", 30)
TCP_NODELAY = _stdlib.TCP_NODELAY
TCP_MAXSEG = getattr(_stdlib, "TCP_MAXSEG", 2)
TCP_KEEPIDLE = getattr(_stdlib, "TCP_KEEPIDLE", 4)
TCP_KEEPINTVL = getattr(_stdlib, "TCP_KEEPINTVL", 5)
TCP_KEEPCNT = getattr(_stdlib, "TCP_KEEPCNT", 6)
TCP_CONGESTION = getattr(_stdlib, "TCP_CONGESTION", 13)
TCP_USER_TIMEOUT = getattr(_stdlib, "TCP_USER_TIMEOUT", 18)
_WAITALL = int(_stdlib.MSG_WAITALL)
_NOSIGNAL = int(getattr(_stdlib, "MSG_NOSIGNAL", 0x4000))
#: Linux's floors for SO_SNDBUF / SO_RCVBUF (SOCK_MIN_SNDBUF, SOCK_MIN_RCVBUF).
_MIN_SNDBUF = 4608
_MIN_RCVBUF = 2304
#: Linux's default listen backlog in Python (socket.listen() without an argument).
_DEFAULT_BACKLOG = min(_stdlib.SOMAXCONN, 128)
#: ``::ffff:0:0/96``, IPv4-mapped IPv6 addresses (RFC 4291 section 2.5.5.2).
_MAPPED = bytes(10) + b"\xff\xff"
#: States where the send buffer decides writability (Linux: not SEND_SHUTDOWN, not closed).
_SENDING = frozenset((ESTABLISHED, CLOSE_WAIT))


class StreamSocket(socket):
    """A TCP socket with the stdlib's methods (see the module docstring)."""

    def _open(self, base_type, proto):
        if proto not in (0, IPPROTO_TCP):
            raise _oserror(_errno.EPROTONOSUPPORT)
        self.proto = IPPROTO_TCP
        self._table = self._host.tcp
        self._conn = self._table.new_connection()
        if self.family == AF_INET6:
            self._conn.local_addr = _ANY6
        self._conn.on_change = self._driver.endpoint_changed
        self._listener = None
        self._read_shut = False
        self._io_refs = 0

    @classmethod
    def _accepted(cls, parent, conn):
        sock = object.__new__(cls)
        sock.family = parent.family
        sock.type = parent.type
        sock.proto = IPPROTO_TCP
        sock._stack = parent._stack
        sock._driver = parent._driver
        sock._host = parent._host
        sock._table = parent._table
        sock._timeout = parent._default_child_timeout()
        sock._closed = False
        sock._readiness = None
        sock._fd = -1
        sock._group = None
        sock._conn = conn
        conn.on_change = sock._driver.endpoint_changed
        sock._listener = None
        sock._read_shut = False
        sock._io_refs = 0
        return sock

    # -- readiness (fileno) ------------------------------------------------------------------

    def _poll_state(self):
        """Linux's ``tcp_poll`` as ``select`` sees it (see the module docstring; lock held)."""
        listener = self._listener
        if listener is not None:
            return _READABLE if listener.accept_queue else 0
        conn = self._conn
        if conn.error:
            return _READABLE | _WRITABLE          # POLLERR
        ready = _READABLE if conn.readable or self._read_shut else 0
        state = conn.state
        if state in _SENDING:
            # sk_stream_is_writeable: free space at least half of what is queued.
            if 3 * conn.send_queue_bytes <= 2 * conn.sndbuf:
                ready |= _WRITABLE
        elif state not in HANDSHAKE:
            ready |= _WRITABLE                    # SEND_SHUTDOWN or closed: send won't block
        return ready

    def _watch_endpoints(self, ready):
        ready.watch(self._conn)
        if self._listener is not None:
            ready.watch(self._listener)

    def _dup_reset(self, twin):
        twin._io_refs = 0

    def _default_child_timeout(self):
        # Accepted sockets start blocking (or with the default timeout), whatever the listener.
        from lwstack.socket import getdefaulttimeout
        return getdefaulttimeout()

    # -- waiting -----------------------------------------------------------------------------

    def _wait(self, predicate, deadline):
        """Wait (lock held) for ``predicate``; False on timeout.  ``deadline``: None or clock."""
        if predicate():
            return True
        if deadline is None:
            return self._driver.wait_for(predicate, None)
        remaining = deadline - self._driver.now()
        if remaining <= 0:
            return False
        return self._driver.wait_for(predicate, remaining)

    def _deadline(self):
        if self._timeout is None or self._timeout == 0.0:
            return None
        return self._driver.now() + self._timeout

    def _raise_pending(self):
        code = self._conn.pop_error()
        if code:
            if self._readiness is not None:
                self._readiness.update()          # the error was the reason it was ready
            raise _oserror(code)

    # -- addresses and connections -----------------------------------------------------------

    def _resolve_tcp(self, address, for_bind=False):
        """``(address bytes, port)`` for the table: an IPv4-mapped address of an AF_INET6
        socket becomes the IPv4 address it maps (binding one is EINVAL with IPV6_V6ONLY, as
        Linux says)."""
        addr, port = self._resolve(address, for_bind)
        if self.family == AF_INET6 and addr[:12] == _MAPPED:
            if for_bind and self._conn.v6only:
                raise _oserror(_errno.EINVAL)
            addr = addr[12:]
        return addr, port

    def bind(self, address):
        """Bind to ``(host, port)``; ``""`` is any local address, port 0 an ephemeral port."""
        addr, port = self._resolve_tcp(address, for_bind=True)
        with self._driver.lock:
            self._check_open()
            self._table.bind(self._conn, addr, port)

    def connect(self, address):
        """Open a connection (three-way handshake); raises what the kernel would."""
        code = self._connect(address, raise_timeout=True)
        if code:
            raise _oserror(code)

    def connect_ex(self, address):
        """Like :meth:`connect` but return an errno instead of raising (0 on success)."""
        try:
            return self._connect(address, raise_timeout=False)
        except timeout:
            return _errno.EAGAIN

    def _connect(self, address, raise_timeout):
        addr, port = self._resolve_tcp(address)
        with self._driver.lock:
            try:
                return self._connect_locked(addr, port, address, raise_timeout)
            finally:
                if self._readiness is not None:
                    self._readiness.update()

    def _connect_locked(self, addr, port, address, raise_timeout):
        conn = self._conn
        try:
            self._check_open()
        except OSError as exc:
            return exc.errno          # connect_ex returns EBADF/ENETDOWN as CPython does
        if self._listener is not None:
            return _errno.EISCONN     # Linux: a listener is not SS_UNCONNECTED
        if addr == _ANY or addr == _ANY6:
            addr = self._host.unspecified_destination(addr, conn.local_addr)   # as Linux
        elif conn.remote_addr is None and _needs_scope(addr) and \
                not _scope_id(address) and not _needs_scope(conn.local_addr):
            return _errno.EINVAL      # Linux: a link-local peer needs an interface
        if conn.remote_addr is None:
            try:
                self._table.connect(conn, addr, port, self._driver.now())
            except OSError as exc:
                return exc.errno
            finally:
                self._driver.after_call()
        elif conn.state in HANDSHAKE:
            if self._timeout is not None:
                # Timeout mode too: CPython's fd is non-blocking there, so Linux answers.
                return _errno.EALREADY
        elif conn.error:
            return conn.pop_error()
        elif conn.connected:
            return _errno.EISCONN
        elif self._timeout == 0.0:
            # A failed attempt whose error was read already (SO_ERROR or an earlier call):
            # Linux's sock_error path says ECONNABORTED (and would start afresh next time).
            return _errno.ECONNABORTED
        if self._timeout == 0.0:
            return _errno.EINPROGRESS if conn.state in HANDSHAKE else conn.pop_error()
        if not self._wait(lambda: conn.state not in HANDSHAKE or self._dead(),
                          self._deadline()):
            if raise_timeout:
                raise timeout("timed out")
            return _errno.EAGAIN
        self._check_open()
        code = conn.pop_error()
        if code:
            return code
        if not conn.connected:
            return _errno.ECONNREFUSED
        return 0

    def _dead(self):
        return self._closed or self._driver.closed

    def listen(self, backlog=_DEFAULT_BACKLOG):
        """Start accepting connections; up to ``backlog`` wait in the accept queue."""
        with self._driver.lock:
            self._check_open()
            if self._listener is not None:
                self._listener.backlog = max(1, backlog)
                return
            if self._conn.remote_addr is not None:
                raise _oserror(_errno.EINVAL)
            listener = self._table.listen(self._conn, max(0, int(backlog)))
            listener.on_change = self._driver.endpoint_changed
            self._share("_listener", listener)
            if self._readiness is not None:
                self._readiness.watch(listener)
                self._readiness.update()

    def accept(self):
        """Wait for a connection: ``(socket, (host, port))``."""
        with self._driver.lock:
            self._check_open()
            listener = self._listener
            if listener is None:
                raise _oserror(_errno.EINVAL)
            if not listener.accept_queue:
                if self._timeout == 0.0:
                    raise _oserror(_errno.EAGAIN)
                if not self._wait(lambda: listener.readable or self._dead(), self._deadline()):
                    raise timeout("timed out")
                self._check_open()
            conn = listener.accept()
            if self._readiness is not None:
                self._readiness.update()
            if conn is None:
                raise _oserror(_errno.EINVAL)
        sock = StreamSocket._accepted(self, conn)
        return sock, self._sockaddr(conn.remote_addr, conn.remote_port)

    def getsockname(self):
        """The local ``(host, port)`` (AF_INET6: ``(host, port, flowinfo, scope_id)``)."""
        self._check_open()
        conn = self._conn
        return self._sockaddr(conn.local_addr, conn.local_port)

    def getpeername(self):
        """The peer's address; ENOTCONN before the connection is established."""
        self._check_open()
        conn = self._conn
        if conn.remote_addr is None or not conn.connected or conn.state == CLOSED:
            raise _oserror(_errno.ENOTCONN)
        return self._sockaddr(conn.remote_addr, conn.remote_port)

    # -- sending -----------------------------------------------------------------------------

    def send(self, data, flags=0):
        """Queue some of ``data``; returns how many bytes were taken (at least one)."""
        self._check_flags(flags, _DONTWAIT | _NOSIGNAL)
        view = self._as_view(data)
        with self._driver.lock:
            n = self._send_some(view, flags, self._deadline())
            if self._readiness is not None:
                self._readiness.update()
        return n

    def _send_some(self, view, flags, deadline):
        conn = self._conn
        self._check_open()
        if self._listener is not None:
            raise _oserror(_errno.ENOTCONN)
        if not conn.writable:
            if flags & _DONTWAIT or self._timeout == 0.0:
                if conn.state in HANDSHAKE or conn.remote_addr is not None:
                    raise _oserror(_errno.EAGAIN)
            elif conn.remote_addr is not None and \
                    not self._wait(lambda: conn.writable or self._dead(), deadline):
                raise timeout("timed out")
            self._check_open()
        try:
            n = conn.send(view, self._driver.now())
        except OSError:
            if self._readiness is not None:
                self._readiness.update()          # a pending error was taken
            raise
        finally:
            self._driver.after_call()
        if n == 0 and (flags & _DONTWAIT or self._timeout == 0.0):
            raise _oserror(_errno.EAGAIN)
        return n

    def sendall(self, data, flags=0):
        """Send every byte of ``data`` (the timeout covers the whole call); returns None."""
        self._check_flags(flags, _DONTWAIT | _NOSIGNAL)
        view = self._as_view(data)
        total = len(view)
        sent = 0
        deadline = self._deadline()
        with self._driver.lock:
            while sent < total:
                sent += self._send_some(view[sent:], flags, deadline)
            if self._readiness is not None:
                self._readiness.update()

    def sendmsg(self, buffers, ancdata=(), flags=0, address=None):
        """Send the buffers' bytes as one stream write (no ancillary data on TCP); returns
        how many were taken, as :meth:`send`."""
        if ancdata:
            raise _oserror(_errno.EINVAL, "no ancillary data on lwstack TCP sockets")
        if address is not None:
            self._check_open()
            raise _oserror(_errno.EISCONN)
        views = [self._as_view(b) for b in buffers]
        return self.send(views[0] if len(views) == 1 else b"".join(views), flags)

    def sendfile(self, file, offset=0, count=None):
        """Send a file's contents (read in chunks; no kernel zero-copy here)."""
        if offset:
            file.seek(offset)
        total = 0
        while count is None or total < count:
            chunk = file.read(65536 if count is None else min(65536, count - total))
            if not chunk:
                break
            self.sendall(chunk)
            total += len(chunk)
        return total

    # -- receiving ---------------------------------------------------------------------------

    def recv(self, bufsize, flags=0):
        """Receive up to ``bufsize`` bytes; ``b""`` once the peer closed its side."""
        if not isinstance(bufsize, int):
            raise TypeError("an integer is required for the buffer size")
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        self._check_flags(flags, _DONTWAIT | _PEEK | _WAITALL)
        if bufsize == 0:
            return b""
        if flags & _WAITALL and not flags & _PEEK:
            buf = bytearray(bufsize)
            n = self.recv_into(buf, bufsize, flags)
            return bytes(buf[:n])
        with self._driver.lock:
            self._wait_readable(flags)
            conn = self._conn
            data = conn.recv(bufsize, self._driver.now(), peek=bool(flags & _PEEK))
            self._driver.after_call()
            if self._readiness is not None:
                self._readiness.update()
        return data if data is not None else b""

    def recv_into(self, buffer, nbytes=0, flags=0):
        """Receive into ``buffer``; returns the number of bytes written."""
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        if nbytes:
            view = view[:nbytes]
        self._check_flags(flags, _DONTWAIT | _PEEK | _WAITALL)
        if not len(view):
            return 0
        if flags & _PEEK:
            data = self.recv(len(view), flags)
            view[:len(data)] = data
            return len(data)
        got = 0
        deadline = self._deadline()
        with self._driver.lock:
            while True:
                try:
                    self._wait_readable(flags, deadline, keep_error=bool(got))
                except OSError:
                    if got:               # MSG_WAITALL: what was copied is returned, as on
                        break             # Linux (a timeout, EAGAIN, a closed socket)
                    raise                 # (a pending error updated the descriptor)
                if got and not self._conn.receive_queue_bytes:
                    break                 # end of stream or an error: the next call says which
                n = self._conn.recv_into(view[got:], self._driver.now())
                self._driver.after_call()
                if not n:
                    break
                got += n
                if not flags & _WAITALL or got == len(view):
                    break
            if self._readiness is not None:
                self._readiness.update()
        return got

    def recvfrom(self, bufsize, flags=0):
        """``(data, None)``: a connected stream has no per-datagram address (as Linux)."""
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        """``(nbytes, None)``, see :meth:`recvfrom`."""
        return self.recv_into(buffer, nbytes, flags), None

    def _wait_readable(self, flags, deadline=None, keep_error=False):
        """Block (lock held) until the connection is readable; raise its pending error
        (unless ``keep_error``: MSG_WAITALL returning what it copied leaves it pending)."""
        self._check_open()
        conn = self._conn
        if self._listener is not None or (conn.remote_addr is None and not conn.reset):
            raise _oserror(_errno.ENOTCONN)
        if self._read_shut:
            return
        if not conn.readable:
            if flags & _DONTWAIT or self._timeout == 0.0:
                raise _oserror(_errno.EAGAIN)
            if not self._wait(lambda: conn.readable or self._read_shut or self._dead(),
                              deadline if deadline is not None else self._deadline()):
                raise timeout("timed out")
            self._check_open()
        if not conn.receive_queue_bytes and not keep_error:
            self._raise_pending()

    # -- options -----------------------------------------------------------------------------

    def setsockopt(self, level, option, value, optlen=None):
        """SO_REUSEADDR, SO_RCVBUF, SO_SNDBUF, SO_KEEPALIVE, SO_LINGER, TCP_NODELAY,
        TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_CONGESTION, TCP_USER_TIMEOUT; on
        AF_INET6 also IPV6_V6ONLY (before bind or connect, EINVAL after, as Linux)."""
        self._check_open()
        conn = self._conn
        if level == IPPROTO_TCP and option == TCP_CONGESTION:
            name = bytes(value).split(b"\0")[0].decode() if not isinstance(value, str) else value
            if name not in _congestion.AVAILABLE and name != "newreno":
                raise _oserror(_errno.ENOENT)
            with self._driver.lock:
                conn.congestion_name = name
                if conn.cc is not None and conn.cc.name != name:
                    conn.cc = _congestion.make(name, conn.mss, self._driver.now())
            return
        if level == SOL_SOCKET and option == SO_LINGER:
            if not isinstance(value, (bytes, bytearray)) or len(value) < 8:
                raise _oserror(_errno.EINVAL)
            onoff, seconds = _struct.unpack("ii", bytes(value[:8]))
            conn.linger = float(max(0, seconds)) if onoff else None
            return
        if isinstance(value, (bytes, bytearray)) and optlen is None and len(value) >= 4:
            value = _struct.unpack("i", bytes(value[:4]))[0]
        elif optlen is not None or not isinstance(value, (int, bool)):
            raise _oserror(_errno.EINVAL)
        value = int(value)
        with self._driver.lock:
            now = self._driver.now()
            if level == SOL_SOCKET and option == SO_REUSEADDR:
                conn.reuse_addr = bool(value)
            elif level == SOL_SOCKET and option == SO_RCVBUF:
                # Linux doubles the request (bookkeeping overhead), within bounds; the receive
                # window follows it.
                conn.rcvbuf = max(_MIN_RCVBUF, min(2 * value, MAX_BUFFER))
            elif level == SOL_SOCKET and option == SO_SNDBUF:
                conn.sndbuf = max(_MIN_SNDBUF, min(2 * value, MAX_BUFFER))
                conn._notify()
            elif level == SOL_SOCKET and option == SO_KEEPALIVE:
                conn.set_keepalive(bool(value), now)
            elif level == IPPROTO_TCP and option == TCP_NODELAY:
                conn.nodelay = bool(value)
                if conn.nodelay and conn.state not in HANDSHAKE and conn.remote_addr:
                    conn._push(now)           # Linux sends what Nagle held back at once
                    self._driver.after_call()
            elif level == IPPROTO_TCP and option in (TCP_KEEPIDLE, TCP_KEEPINTVL):
                if not 1 <= value <= 32767:
                    raise _oserror(_errno.EINVAL)
                setattr(conn, "keepidle" if option == TCP_KEEPIDLE else "keepintvl",
                        float(value))
                conn.set_keepalive(conn.keepalive, now)
            elif level == IPPROTO_TCP and option == TCP_KEEPCNT:
                if not 1 <= value <= 127:
                    raise _oserror(_errno.EINVAL)
                conn.keepcnt = value
            elif level == IPPROTO_TCP and option == TCP_USER_TIMEOUT:
                if value < 0:
                    raise _oserror(_errno.EINVAL)
                conn.user_timeout = value / 1000.0
            elif level == IPPROTO_IPV6 and option == IPV6_V6ONLY and self.family == AF_INET6:
                if conn.local_port or self._listener is not None or \
                        conn.remote_addr is not None:
                    raise _oserror(_errno.EINVAL)
                conn.v6only = bool(value)
            else:
                raise _oserror(_errno.ENOPROTOOPT)
            self._driver.after_call()

    def getsockopt(self, level, option, buflen=None):
        """Read an option; SO_ERROR returns and clears the pending error."""
        self._check_open()
        conn = self._conn
        if level == IPPROTO_TCP and option == TCP_CONGESTION:
            name = (conn.cc.name if conn.cc is not None else conn.congestion_name).encode()
            return name.ljust(buflen or 16, b"\0")[:buflen or 16]
        if level == SOL_SOCKET and option == SO_LINGER:
            value = _struct.pack("ii", conn.linger is not None, int(conn.linger or 0))
            return value[:buflen] if buflen else value
        values = {
            (SOL_SOCKET, SO_TYPE): lambda: int(self.type),
            (SOL_SOCKET, SO_REUSEADDR): lambda: int(conn.reuse_addr),
            (SOL_SOCKET, SO_RCVBUF): lambda: conn.rcvbuf,
            (SOL_SOCKET, SO_SNDBUF): lambda: conn.sndbuf,
            (SOL_SOCKET, SO_KEEPALIVE): lambda: int(conn.keepalive),
            (SOL_SOCKET, SO_ACCEPTCONN): lambda: int(self._listener is not None),
            (IPPROTO_TCP, TCP_NODELAY): lambda: int(conn.nodelay),
            (IPPROTO_TCP, TCP_MAXSEG): lambda: conn.mss,
            (IPPROTO_TCP, TCP_KEEPIDLE): lambda: int(conn.keepidle),
            (IPPROTO_TCP, TCP_KEEPINTVL): lambda: int(conn.keepintvl),
            (IPPROTO_TCP, TCP_KEEPCNT): lambda: conn.keepcnt,
            (IPPROTO_TCP, TCP_USER_TIMEOUT): lambda: int(conn.user_timeout * 1000),
        }
        if self.family == AF_INET6:
            values[(IPPROTO_IPV6, IPV6_V6ONLY)] = lambda: int(conn.v6only)
        if (level, option) == (SOL_SOCKET, SO_ERROR):
            with self._driver.lock:
                value = conn.pop_error()
                if self._readiness is not None:
                    self._readiness.update()
        elif (level, option) in values:
            value = values[(level, option)]()
        else:
            raise _oserror(_errno.ENOPROTOOPT)
        return _struct.pack("i", value)[:buflen] if buflen else value

    # -- life --------------------------------------------------------------------------------

    def shutdown(self, how):
        """SHUT_WR sends FIN after queued data; SHUT_RD makes ``recv`` return ``b""``."""
        self._check_open()
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise _oserror(_errno.EINVAL)
        with self._driver.lock:
            conn = self._conn
            if self._listener is None and (conn.remote_addr is None or
                                           conn.state in HANDSHAKE and not conn.connected):
                if conn.state not in HANDSHAKE:
                    raise _oserror(_errno.ENOTCONN)
            if how in (SHUT_RD, SHUT_RDWR):
                self._share("_read_shut", True)
            if how in (SHUT_WR, SHUT_RDWR) and self._listener is None:
                conn.shutdown(self._driver.now())
                self._driver.after_call()
            if self._readiness is not None:
                self._readiness.update()
            self._driver.cond.notify_all()

    def close(self):
        """Close the socket: the connection finishes in the background (``SO_LINGER`` aside)
        once every ``dup()`` copy is closed; the descriptor closes at once."""
        if self._closed:
            return
        if self._io_refs > 0:
            self._closing = True
            return
        self._closed = True
        with self._driver.lock:
            if not self._release_descriptor() or self._driver.closed:
                self._driver.cond.notify_all()    # threads blocked on this object end
                return
            now = self._driver.now()
            conn = self._conn
            if self._listener is not None:
                self._listener.close(now)
            elif conn.remote_addr is None:
                self._table.forget(conn)
            else:
                conn.close(now)
                linger = conn.linger
                if linger:
                    # SO_LINGER with a timeout: wait until everything is acknowledged.
                    self._driver.after_call()
                    self._driver.wait_for(
                        lambda: conn.state in (CLOSED, TIME_WAIT) or conn.send_queue_bytes == 0
                        and conn.state != "FIN-WAIT-1", linger)
            self._driver.after_call()
            self._driver.cond.notify_all()

    def detach(self):
        """Not available: an lwstack connection cannot become a kernel socket (EOPNOTSUPP).

        The descriptor :meth:`fileno` returned is given up all the same, since whoever calls
        ``detach()`` has usually adopted it already (the stdlib's ``ssl`` wraps ``fileno()`` in
        a kernel socket object first, and that object closes it when the wrapping fails); the
        socket itself stays usable, with a new descriptor if asked again."""
        with self._driver.lock:
            fd, self._fd = self._fd, -1
            if fd >= 0 and self._readiness is not None:
                self._readiness.relinquish_fd(fd)
        raise _oserror(_errno.EOPNOTSUPP, "lwstack sockets have no kernel descriptor")

    # -- file objects (socket.makefile) ------------------------------------------------------

    def makefile(self, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
        """A file object reading and/or writing the stream, as :meth:`socket.socket.makefile`."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = _StreamIO(self, rawmode)
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = _io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buffer = _io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = _io.BufferedReader(raw, buffering)
        else:
            buffer = _io.BufferedWriter(raw, buffering)
        if "b" in mode:
            return buffer
        text = _io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode
        return text

    def _decref_io(self):
        self._io_refs -= 1
        if self._io_refs <= 0 and getattr(self, "_closing", False):
            self.close()

    @staticmethod
    def _as_view(data):
        try:
            return memoryview(data).cast("B")
        except TypeError:
            raise TypeError(
                f"a bytes-like object is required, not '{type(data).__name__}'") from None

    def __repr__(self):
        state = " [closed]" if self._closed else ""
        laddr = raddr = None
        if not self._closed:
            laddr = self.getsockname()
            if self._conn.remote_addr is not None:
                raddr = self._sockaddr(self._conn.remote_addr, self._conn.remote_port)
        return (f"<lwstack.socket.socket{state} family={self.family!r}, type={self.type!r}, "
                f"proto={self.proto}, laddr={laddr}, raddr={raddr}, "
                f"state={self._conn.state if self._listener is None else 'LISTEN'}>")


class _StreamIO(_io.RawIOBase):
    """The raw file object behind :meth:`StreamSocket.makefile`."""

    def __init__(self, sock, mode):
        super().__init__()
        self._sock = sock
        self._mode = mode
        self._reading = "r" in mode
        self._writing = "w" in mode

    def readinto(self, buffer):
        """Read into ``buffer``; None in non-blocking mode when nothing is ready."""
        self._checkClosed()
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:
            return None

    def write(self, data):
        """Write some of ``data``; returns how much was taken."""
        self._checkClosed()
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return None

    def readable(self):
        return self._reading and not self.closed

    def writable(self):
        return self._writing and not self.closed

    def seekable(self):
        return False

    @property
    def name(self):
        return -1

    @property
    def mode(self):
        return self._mode

    def close(self):
        if self.closed:
            return
        super().close()
        self._sock._decref_io()
        self._sock = None
