"""A stdlib-compatible socket API over lwstack stacks.

``lwstack.socket.socket(family, type, proto, stack=...)`` behaves like :class:`socket.socket`
for what lwstack implements so far: TCP stream sockets (:mod:`lwstack._stream`), UDP and
Linux-style ICMP / ICMPv6 echo ("ping") datagram sockets, for AF_INET and AF_INET6.

AF_INET6 sockets take and give ``(host, port, flowinfo, scope_id)`` addresses as the stdlib
does; ``scope_id`` of a link-scoped address is the stack's one interface,
:data:`lwstack.iface.host6.IFINDEX`.  A UDP socket on ``::`` is dual-stack unless
IPV6_V6ONLY is set (Linux's ``bindv6only=0``): IPv4 peers appear as ``::ffff:a.b.c.d``.  Blocking, non-blocking and timeout modes follow the stdlib, and errors are
``OSError(errno, strerror)`` so that CPython picks the same subclass a kernel socket would give
(``ConnectionRefusedError``, ``BlockingIOError``, ...); a timeout raises ``TimeoutError``.

Without ``stack=``, a socket uses the calling thread's default stack
(:meth:`lwstack.Stack.make_default`).

``fileno()`` returns a real descriptor whose readiness follows the socket's, for reading and
for writing, so ``select``, ``poll``, ``selectors`` and asyncio's selector loop work on lwstack
sockets mixed with other descriptors (:mod:`lwstack.readiness`; the rules are each class's
``_poll_state``, after Linux).  ``dup()`` gives a second socket object on the same endpoint,
which closes with the last of them, as a kernel socket's open file does.
"""
import errno as _errno
import os as _os
import socket as _stdlib
import struct as _struct

from lwstack.iface.host6 import IFINDEX as _IFINDEX
from lwstack.proto.datagram import ANY as _ANY, ANY6 as _ANY6
from lwstack.wire.ipv4 import addr_to_str as _addr_to_str, parse_addr as _parse_addr
from lwstack.wire.ipv6 import addr6_to_str as _addr6_to_str, parse_addr6 as _parse_addr6

# The constants and exceptions are the stdlib's own, so code can mix both modules.
from socket import (AF_INET, AF_INET6, AF_UNSPEC, IPPROTO_ICMP, IPPROTO_ICMPV6,  # noqa: F401
                    IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP, IP_TTL,
                    IPV6_HOPLIMIT, IPV6_RECVHOPLIMIT, IPV6_UNICAST_HOPS, IPV6_V6ONLY,
                    MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC,
                    SHUT_RD, SHUT_RDWR, SHUT_WR, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK,
                    SOCK_RAW, SOCK_STREAM, SOL_SOCKET, SO_BROADCAST, SO_ERROR, SO_RCVBUF, SO_REUSEADDR,
                    SO_SNDBUF, SO_TYPE, gaierror, herror, timeout)
from socket import error  # noqa: F401  (an alias of OSError, kept for old code)
from socket import (AI_ADDRCONFIG, AI_ALL, AI_CANONNAME, AI_NUMERICHOST,  # noqa: F401
                    AI_NUMERICSERV, AI_PASSIVE, AI_V4MAPPED, EAI_AGAIN, EAI_BADFLAGS, EAI_FAIL,
                    EAI_FAMILY, EAI_NONAME, EAI_SERVICE, EAI_SOCKTYPE, NI_DGRAM, NI_NAMEREQD,
                    NI_NOFQDN, NI_NUMERICHOST, NI_NUMERICSERV)

from lwstack import resolver as _resolver
from lwstack.readiness import READABLE as _READABLE, WRITABLE as _WRITABLE
from lwstack.readiness import Readiness as _Readiness

#: Linux's IP_RECVTTL (12), which the stdlib does not export.
IP_RECVTTL = getattr(_stdlib, "IP_RECVTTL", 12)
#: lwstack speaks IPv6 (as :data:`socket.has_ipv6`).
has_ipv6 = True

__all__ = ["socket", "getdefaulttimeout", "setdefaulttimeout", "create_connection",
           "create_server", "AF_INET", "AF_INET6", "SOCK_STREAM", "SOCK_DGRAM", "IPPROTO_TCP",
           "IPPROTO_UDP", "IPPROTO_ICMP", "IPPROTO_ICMPV6", "IPPROTO_IPV6", "IPV6_V6ONLY",
           "IPV6_UNICAST_HOPS", "has_ipv6", "gaierror", "timeout", "getaddrinfo",
           "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo", "getfqdn",
           "gethostname"]

# Plain ints for the per-call paths: arithmetic on the stdlib's IntFlag members is slow.
_DONTWAIT = int(MSG_DONTWAIT)
_PEEK = int(MSG_PEEK)
_default_timeout = None
_GLOBAL_DEFAULT = object()
_MAX_BUF = 8 * 1024 * 1024
_MIN_RCVBUF = 2304   # Linux's floor for SO_RCVBUF (SOCK_MIN_RCVBUF)


def getdefaulttimeout():
    """The timeout new lwstack sockets start with (None: blocking)."""
    return _default_timeout


def setdefaulttimeout(value):
    """Set the timeout new lwstack sockets start with, as :func:`socket.setdefaulttimeout`."""
    global _default_timeout
    _default_timeout = _check_timeout(value)


def _check_timeout(value):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError("Timeout value must be int, float or None") from None
    if value < 0:
        raise ValueError("Timeout value out of range")
    return value


def _oserror(code, detail=None):
    message = _os.strerror(code)
    return OSError(code, f"{message} ({detail})" if detail else message)


class socket:
    """An lwstack socket with the stdlib's methods (see the module docstring).

    ``socket(AF_INET, SOCK_STREAM)`` makes a TCP socket and ``SOCK_DGRAM`` a UDP (or, with
    ``IPPROTO_ICMP``, a ping) socket; both are instances of this class, as with the stdlib.
    """

    def __new__(cls, family=AF_INET, type=SOCK_DGRAM, proto=0, fileno=None, *, stack=None):
        if cls is socket:
            if type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC) == SOCK_STREAM:
                from lwstack._stream import StreamSocket
                cls = StreamSocket
            else:
                cls = DatagramSocket
        return object.__new__(cls)

    def __init__(self, family=AF_INET, type=SOCK_DGRAM, proto=0, fileno=None, *, stack=None):
        if fileno is not None:
            raise ValueError("lwstack sockets cannot wrap a file descriptor")
        from lwstack.stack import default_stack
        self._stack = stack if stack is not None else default_stack()
        if self._stack.closed:
            raise _oserror(_errno.ENETDOWN, "the stack is closed")
        nonblocking = bool(type & SOCK_NONBLOCK)
        base_type = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        if family not in (AF_INET, AF_INET6):
            raise _oserror(_errno.EAFNOSUPPORT)
        self.family = _stdlib.AddressFamily(family)
        self.type = _stdlib.SocketKind(base_type)
        self._driver = self._stack.driver
        self._host = self._stack.host
        self._timeout = 0.0 if nonblocking else _default_timeout
        self._closed = False
        self._readiness = None        # lwstack.readiness.Readiness, once fileno() was called
        self._fd = -1                 # this object's descriptor (-1: none yet, or closed)
        self._group = None            # [socket objects sharing the endpoint] after dup()
        self._open(base_type, proto)

    def _open(self, base_type, proto):
        raise NotImplementedError

    # -- modes -------------------------------------------------------------------------------

    def settimeout(self, value):
        """None: blocking; 0: non-blocking; a positive number: seconds before TimeoutError."""
        self._timeout = _check_timeout(value)

    def gettimeout(self):
        """The socket's timeout (None when blocking)."""
        return self._timeout

    def setblocking(self, flag):
        """``setblocking(False)`` is ``settimeout(0)``; ``setblocking(True)`` is ``settimeout(None)``."""
        self._timeout = None if flag else 0.0

    def getblocking(self):
        """False for non-blocking mode (timeout 0), True otherwise."""
        return self._timeout != 0.0

    # -- addresses ---------------------------------------------------------------------------

    def _resolve(self, address, for_bind=False):
        if self.family == AF_INET6:
            return self._resolve6(address, for_bind)
        if not isinstance(address, tuple) or len(address) != 2:
            raise TypeError(f"AF_INET address must be a pair (host, port), not {address!r}")
        host, port = address
        if not isinstance(port, int):
            raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
        if not 0 <= port <= 0xFFFF:
            raise OverflowError("port must be 0-65535.")
        if not isinstance(host, (str, bytes)):
            raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
        if isinstance(host, bytes):
            host = host.decode()
        if host == "":
            return _ANY, port
        if host == "<broadcast>":
            return b"\xff\xff\xff\xff", port
        try:
            return _parse_addr(host), port
        except ValueError:
            return _resolve_name(host, self.family, self._stack), port

    def _resolve6(self, address, for_bind=False):
        """An AF_INET6 address tuple -> ``(16-byte address, port)``, checked as the stdlib and
        Linux check it: a link-scoped address needs a ``scope_id`` (EINVAL) naming our
        interface (ENODEV for bind, ENETUNREACH otherwise)."""
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
        host, port, flowinfo, scope_id = address + (0,) * (4 - len(address))
        for value in (port, flowinfo, scope_id):
            if not isinstance(value, int):
                raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an "
                                "integer")
        if not 0 <= port <= 0xFFFF:
            raise OverflowError("port must be 0-65535.")
        if not 0 <= flowinfo <= 0xFFFFF:
            raise OverflowError("flowinfo must be 0-1048575.")
        if not isinstance(host, (str, bytes)):
            raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
        if isinstance(host, bytes):
            host = host.decode()
        if host == "":
            return _ANY6, port
        host, _, zone = host.partition("%")
        if zone:
            scope_id = int(zone) if zone.isdigit() else -1
        try:
            addr = _parse_addr6(host)
        except ValueError:
            try:
                _parse_addr(host)
            except ValueError:
                return _resolve_name(host, AF_INET6, self._stack), port
            raise gaierror(_stdlib.EAI_ADDRFAMILY,
                           "Address family for hostname not supported") from None
        if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80 or addr[0] == 0xFF and addr[1] & 0x0F <= 2:
            if scope_id not in (0, _IFINDEX):
                raise _oserror(_errno.ENODEV if for_bind else _errno.ENETUNREACH)
            if scope_id == 0 and for_bind and addr[0] != 0xFF:
                raise _oserror(_errno.EINVAL)      # Linux: binding link-local needs a device
        return addr, port

    def _sockaddr(self, addr, port):
        """The address tuple the stdlib would give for wire address ``addr`` (4 or 16
        bytes): ``(host, port)`` on AF_INET; ``(host, port, 0, scope_id)`` on AF_INET6, IPv4
        as ``::ffff:a.b.c.d``."""
        if self.family == AF_INET:
            return _addr_to_str(addr), port
        if len(addr) == 4:
            return "::ffff:" + _addr_to_str(addr), port, 0, 0
        scoped = addr[0] == 0xFE and addr[1] & 0xC0 == 0x80 or \
            addr[0] == 0xFF and addr[1] & 0x0F <= 2
        return _addr6_to_str(addr), port, 0, _IFINDEX if scoped else 0

    @property
    def stack(self):
        """The :class:`lwstack.Stack` this socket belongs to."""
        return self._stack

    # -- descriptors (lwstack.readiness) -----------------------------------------------------

    def fileno(self):
        """A real descriptor that is readable and writable when this socket is (see
        :mod:`lwstack.readiness`): for ``select``, ``poll``, ``selectors`` and asyncio, not for
        reading or writing.  Made on the first call; -1 once the socket or its stack closed."""
        fd = self._fd
        driver = self._driver
        if fd >= 0 and not driver.closed:
            return fd
        if self._closed or driver.closed:
            if self._readiness is not None and driver.closed:
                with driver.lock:
                    self._readiness.close()   # a driver that does not close them itself
            return -1
        with driver.lock:
            if self._closed or driver.closed:
                return -1
            if self._fd < 0:
                ready = self._readiness
                if ready is None:
                    ready = _Readiness(driver, self._poll_state)
                    for sock in self._group or (self,):
                        sock._readiness = ready
                    self._watch_endpoints(ready)
                    ready.update()
                self._fd = ready.new_fd()
            return self._fd

    def _poll_state(self):
        """:data:`~lwstack.readiness.READABLE` | :data:`~lwstack.readiness.WRITABLE` as Linux's
        poll would say for this socket (lock held)."""
        raise NotImplementedError

    def _watch_endpoints(self, ready):
        """Hook the endpoints whose changes move the readiness (lock held)."""
        raise NotImplementedError

    def _sync_ready(self):
        """After a call that may have changed this socket's readiness (lock held): update the
        descriptor before returning, so a level-triggered loop never sees stale readiness."""
        ready = self._readiness
        if ready is not None:
            ready.update()

    def _share(self, name, value):
        """Set an attribute that belongs to the endpoint on every ``dup()`` copy."""
        for sock in self._group or (self,):
            setattr(sock, name, value)

    def dup(self):
        """A new socket object on the same endpoint, as :meth:`socket.socket.dup`: the
        endpoint closes with the last of them; the copy has its own timeout (the default
        timeout) and, if asked, its own descriptor (``os.dup`` of the other's, so the same
        readiness)."""
        with self._driver.lock:
            self._check_open()
            twin = object.__new__(type(self))
            twin.__dict__.update(self.__dict__)
            twin.__dict__.pop("_closing", None)
            twin._timeout = _default_timeout
            twin._fd = -1
            if self._group is None:
                self._group = [self]
            self._group.append(twin)
            twin._group = self._group
            self._dup_reset(twin)
        return twin

    def _dup_reset(self, twin):
        """Per-object state a ``dup()`` copy starts afresh with."""

    def get_inheritable(self):
        """False: the descriptor is close-on-exec (the socket lives in this process's stack;
        a child could not use it)."""
        self._check_open()
        return False

    def set_inheritable(self, inheritable):
        """Only ``False`` (a child process cannot use an lwstack socket: EOPNOTSUPP)."""
        self._check_open()
        if inheritable:
            raise _oserror(_errno.EOPNOTSUPP, "an lwstack socket lives in this process")

    def _release_descriptor(self):
        """This object closes (lock held): close its descriptor; True when it was the last
        object on the endpoint (the caller then closes the endpoint)."""
        fd, self._fd = self._fd, -1
        ready = self._readiness
        group = self._group
        last = True
        if group is not None:
            group.remove(self)
            last = not group
            if not last and ready is not None and \
                    getattr(ready.compute, "__self__", None) is self:
                ready.compute = group[0]._poll_state
        if ready is not None:
            if fd >= 0:
                ready.release_fd(fd)
            if last:
                ready.close()
        return last

    def _check_open(self):
        if self._closed:
            raise _oserror(_errno.EBADF)
        if self._driver.closed:
            raise _oserror(_errno.ENETDOWN, "the stack is closed")

    @staticmethod
    def _check_flags(flags, allowed):
        if flags and flags & ~allowed:
            raise _oserror(_errno.EOPNOTSUPP, f"flags {flags:#x}")

    @staticmethod
    def _as_bytes(data):
        if isinstance(data, bytes):
            return data
        try:
            return bytes(memoryview(data).cast("B"))
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        state = " [closed]" if self._closed else ""
        return (f"<lwstack.socket.socket{state} family={self.family!r}, type={self.type!r}, "
                f"proto={self.proto}, laddr={self.getsockname() if not self._closed else None}>")


class DatagramSocket(socket):
    """UDP and ICMP echo sockets (``SOCK_DGRAM``)."""

    def _open(self, base_type, proto):
        if base_type != SOCK_DGRAM:
            raise _oserror(_errno.ESOCKTNOSUPPORT)
        ping = IPPROTO_ICMPV6 if self.family == AF_INET6 else IPPROTO_ICMP
        if proto in (0, IPPROTO_UDP):
            kind, proto = "udp", IPPROTO_UDP
        elif proto == ping:
            kind = "icmp"
        else:
            raise _oserror(_errno.EPROTONOSUPPORT)
        self.proto = proto
        self._endpoint = self._host.open_endpoint(kind, 6 if self.family == AF_INET6 else 4)
        self._endpoint.on_change = self._driver.endpoint_changed
        self._recv_ttl = False
        self._recv_hoplimit = False
        self._sndbuf = 212992
        self._read_shut = False

    def _poll_state(self):
        # Linux's datagram_poll: readable with a datagram or an error queued (POLLERR), or
        # after shutdown(SHUT_RD) even though recv() then waits (RCV_SHUTDOWN sets POLLIN);
        # writable while the send buffer has room, which it always has here (datagrams leave
        # at once).
        ep = self._endpoint
        if ep.queue or ep.errors or self._read_shut:
            return _READABLE | _WRITABLE
        return _WRITABLE

    def _watch_endpoints(self, ready):
        ready.watch(self._endpoint)

    def bind(self, address):
        """Bind to ``(host, port)``; ``""`` is any local address and port 0 an ephemeral port."""
        addr, port = self._resolve(address, for_bind=True)
        with self._driver.lock:
            self._check_open()
            self._host.bind(self._endpoint, addr, port)

    def connect(self, address):
        """Set the default destination; only datagrams from it are received afterwards."""
        code = self.connect_ex(address)
        if code:
            raise _oserror(code)

    def connect_ex(self, address):
        """Like :meth:`connect` but return an errno instead of raising (0 on success)."""
        addr, port = self._resolve(address)
        with self._driver.lock:
            self._check_open()
            if addr == _ANY or addr == _ANY6:          # as Linux: loopback or the bound address
                addr = self._host.unspecified_destination(addr, self._endpoint.local_addr)
            if self.family == AF_INET6 and _needs_scope(addr) and not _scope_id(address) \
                    and not _needs_scope(self._endpoint.local_addr):
                return _errno.EINVAL      # Linux: connecting to link-local needs a device
            try:
                self._host.connect(self._endpoint, addr, port, self._driver.now())
            except OSError as exc:
                return exc.errno
        return 0

    def getsockname(self):
        """The local ``(host, port)``; ``('0.0.0.0', 0)`` before binding (AF_INET6:
        ``(host, port, flowinfo, scope_id)``, ``('::', 0, 0, 0)``)."""
        self._check_open()
        ep = self._endpoint
        return self._sockaddr(ep.local_addr, ep.local_port if ep.kind == "udp" else 0)

    def getpeername(self):
        """The connected peer's address; ENOTCONN if not connected."""
        self._check_open()
        if self._endpoint.remote is None:
            raise _oserror(_errno.ENOTCONN)
        return self._sockaddr(*self._endpoint.remote)

    # -- sending -----------------------------------------------------------------------------

    def sendto(self, data, flags_or_address, address=None):
        """Send one datagram to ``address``; returns the number of bytes sent."""
        if address is None:
            flags, address = 0, flags_or_address
        else:
            flags = flags_or_address
        self._check_flags(flags, _DONTWAIT)
        data = self._as_bytes(data)
        addr, port = self._resolve(address)
        if addr == _ANY or addr == _ANY6:
            raise _oserror(_errno.EDESTADDRREQ) if port == 0 else _oserror(_errno.ENETUNREACH)
        return self._send(data, addr, port)

    def send(self, data, flags=0):
        """Send one datagram to the connected peer."""
        self._check_flags(flags, _DONTWAIT)
        data = self._as_bytes(data)
        remote = self._endpoint.remote
        if remote is None:
            self._check_open()
            raise _oserror(_errno.EDESTADDRREQ)
        return self._send(data, *remote)

    def sendall(self, data, flags=0):
        """Datagram sockets send everything at once: same as :meth:`send`, returns None."""
        self.send(data, flags)

    def _send(self, data, addr, port):
        if len(data) > self._sndbuf:
            raise _oserror(_errno.EMSGSIZE)
        with self._driver.lock:
            self._check_open()
            pending = self._endpoint.pop_error()
            if pending:
                self._sync_ready()
                raise _oserror(pending)
            try:
                return self._host.sendto(self._endpoint, data, addr, port, self._driver.now())
            finally:
                self._driver.after_call()

    # -- receiving ---------------------------------------------------------------------------

    def recvfrom(self, bufsize, flags=0):
        """Receive one datagram: ``(data, (host, port))``, truncated to ``bufsize``."""
        data, _ttl, source, _truncated = self._recv(bufsize, flags)
        return data, source

    def recv(self, bufsize, flags=0):
        """Receive one datagram's data, truncated to ``bufsize``."""
        return self._recv(bufsize, flags)[0]

    def recv_into(self, buffer, nbytes=0, flags=0):
        """Receive into ``buffer``; returns the number of bytes written."""
        return self.recvfrom_into(buffer, nbytes, flags)[0]

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        """Receive into ``buffer``: ``(nbytes, (host, port))``."""
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recvfrom_into")
        if nbytes == 0 or nbytes > len(view):
            if nbytes > len(view):
                raise ValueError("nbytes is greater than the length of the buffer")
            nbytes = len(view)
        data, _ttl, source, _truncated = self._recv(nbytes, flags)
        view[:len(data)] = data
        return len(data), source

    def recvmsg(self, bufsize, ancbufsize=0, flags=0):
        """``(data, ancdata, msg_flags, address)``; ancdata carries IP_TTL with IP_RECVTTL."""
        data, ttl, source, truncated = self._recv(bufsize, flags)
        ancdata = []
        if self._recv_ttl and ancbufsize >= _stdlib.CMSG_SPACE(4):
            ancdata.append((IPPROTO_IP, IP_TTL, _struct.pack("i", ttl)))
        if self._recv_hoplimit and ancbufsize >= _stdlib.CMSG_SPACE(4):
            ancdata.append((IPPROTO_IPV6, IPV6_HOPLIMIT, _struct.pack("i", ttl)))
        return data, ancdata, MSG_TRUNC if truncated else 0, source

    def _recv(self, bufsize, flags):
        if not isinstance(bufsize, int):
            raise TypeError("an integer is required for the buffer size")
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        self._check_flags(flags, _DONTWAIT | _PEEK)
        endpoint = self._endpoint
        with self._driver.lock:
            self._check_open()
            if not endpoint.queue and not endpoint.errors:
                if flags & _DONTWAIT or self._timeout == 0.0:
                    raise _oserror(_errno.EAGAIN)
                if not self._driver.wait_for(self._recv_ready, self._timeout):
                    raise timeout("timed out")
                self._check_open()
            pending = endpoint.pop_error()
            if pending:
                self._sync_ready()
                raise _oserror(pending)
            payload, (addr, port), ttl = endpoint.queue[0] if flags & _PEEK else endpoint.take()
            if self._readiness is not None:
                self._readiness.update()
        truncated = len(payload) > bufsize
        return bytes(payload[:bufsize]), ttl, self._sockaddr(addr, port), truncated

    def _recv_ready(self):
        return self._endpoint.readable or self._closed or self._driver.closed

    # -- options -----------------------------------------------------------------------------

    def setsockopt(self, level, option, value, optlen=None):
        """SO_BROADCAST, SO_REUSEADDR, SO_RCVBUF, SO_SNDBUF, IP_TTL, IP_RECVTTL; on AF_INET6
        also IPV6_V6ONLY (before bind), IPV6_UNICAST_HOPS and IPV6_RECVHOPLIMIT."""
        self._check_open()
        if optlen is not None or not isinstance(value, (int, bool)):
            if isinstance(value, (bytes, bytearray)) and len(value) >= 4:
                value = _struct.unpack("i", bytes(value[:4]))[0]
            else:
                raise _oserror(_errno.EINVAL)
        value = int(value)
        ep = self._endpoint
        if level == SOL_SOCKET and option == SO_BROADCAST:
            ep.broadcast = bool(value)
        elif level == SOL_SOCKET and option == SO_REUSEADDR:
            ep.reuse_addr = bool(value)
        elif level == SOL_SOCKET and option == SO_RCVBUF:
            # Linux doubles the request to account for bookkeeping, within bounds.
            ep.rcvbuf = max(_MIN_RCVBUF, min(2 * value, _MAX_BUF))
        elif level == SOL_SOCKET and option == SO_SNDBUF:
            self._share("_sndbuf", max(4608, min(2 * value, _MAX_BUF)))
        elif level == IPPROTO_IP and option == IP_TTL:
            if not 1 <= value <= 255 and value != -1:
                raise _oserror(_errno.EINVAL)
            ep.ttl = None if value == -1 else value
        elif level == IPPROTO_IP and option == IP_RECVTTL:
            self._share("_recv_ttl", bool(value))
        elif level == IPPROTO_IPV6 and self.family == AF_INET6:
            if option == IPV6_V6ONLY:
                if ep.local_port or ep.kind != "udp":
                    raise _oserror(_errno.EINVAL)
                ep.set_v6only(value)
            elif option == IPV6_UNICAST_HOPS:
                if not -1 <= value <= 255:
                    raise _oserror(_errno.EINVAL)
                ep.hop_limit = None if value == -1 else value
            elif option == IPV6_RECVHOPLIMIT:
                self._share("_recv_hoplimit", bool(value))
            else:
                raise _oserror(_errno.ENOPROTOOPT)
        else:
            raise _oserror(_errno.ENOPROTOOPT)

    def getsockopt(self, level, option, buflen=None):
        """Read an option; SO_ERROR returns and clears the pending error."""
        self._check_open()
        ep = self._endpoint
        if level == SOL_SOCKET and option == SO_ERROR:
            with self._driver.lock:
                value = ep.pop_error()
                self._sync_ready()
        elif level == SOL_SOCKET and option == SO_TYPE:
            value = int(self.type)
        elif level == SOL_SOCKET and option == SO_BROADCAST:
            value = int(ep.broadcast)
        elif level == SOL_SOCKET and option == SO_REUSEADDR:
            value = int(ep.reuse_addr)
        elif level == SOL_SOCKET and option == SO_RCVBUF:
            value = ep.rcvbuf
        elif level == SOL_SOCKET and option == SO_SNDBUF:
            value = self._sndbuf
        elif level == IPPROTO_IP and option == IP_TTL:
            value = ep.ttl or self._host.default_ttl
        elif level == IPPROTO_IP and option == IP_RECVTTL:
            value = int(self._recv_ttl)
        elif level == IPPROTO_IPV6 and self.family == AF_INET6 and option == IPV6_V6ONLY:
            value = int(ep.v6only)
        elif level == IPPROTO_IPV6 and self.family == AF_INET6 and option == IPV6_UNICAST_HOPS:
            value = ep.hop_limit or self._host.hop_limit6
        elif level == IPPROTO_IPV6 and self.family == AF_INET6 and option == IPV6_RECVHOPLIMIT:
            value = int(self._recv_hoplimit)
        else:
            raise _oserror(_errno.ENOPROTOOPT)
        return _struct.pack("i", value)[:buflen] if buflen else value

    # -- life --------------------------------------------------------------------------------

    def close(self):
        """Release the port (once every ``dup()`` copy is closed) and the descriptor; later
        calls raise EBADF.  Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        with self._driver.lock:
            if self._release_descriptor():
                self._host.close_endpoint(self._endpoint)
            self._driver.cond.notify_all()

    def shutdown(self, how):
        """Datagram sockets: validates ``how`` and the connection, as Linux does; SHUT_RD
        makes the descriptor readable for good (Linux sets RCV_SHUTDOWN even when it answers
        ENOTCONN, and its poll reports it), though ``recv`` still waits for a datagram."""
        self._check_open()
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise _oserror(_errno.EINVAL)
        if how != SHUT_WR and not self._read_shut:
            with self._driver.lock:
                self._share("_read_shut", True)
                self._sync_ready()
        if self._endpoint.remote is None:
            raise _oserror(_errno.ENOTCONN)


def _scope_id(address):
    """The scope an AF_INET6 address tuple names (its 4th item or a ``%zone``), else 0."""
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    zone = host.partition("%")[2] if isinstance(host, str) else ""
    if zone:
        return int(zone) if zone.isdigit() else -1
    return address[3] if len(address) > 3 else 0


def _needs_scope(addr):
    """Link-local unicast (fe80::/10): Linux wants an interface to connect to it."""
    return len(addr) == 16 and addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


def create_connection(address, timeout=_GLOBAL_DEFAULT, source_address=None, *,
                      all_errors=False, stack=None):
    """Connect a TCP socket to ``address`` (host, port), as :func:`socket.create_connection`:
    the host's addresses in RFC 6724 order, Happy Eyeballs style (:mod:`lwstack.resolver`)."""
    if timeout is _GLOBAL_DEFAULT:
        timeout = _default_timeout
    return _resolver.create_connection(address, timeout, source_address,
                                       all_errors=all_errors, stack=stack)


# -- names (lwstack.resolver: the stack's resolver behind the stdlib's functions) -------------

def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0, *, stack=None):
    """:func:`socket.getaddrinfo` with the stack's resolver (see :mod:`lwstack.resolver`)."""
    return _resolver.getaddrinfo(host, port, family, type, proto, flags, stack=stack)


def gethostbyname(hostname, *, stack=None):
    """:func:`socket.gethostbyname` with the stack's resolver."""
    return _resolver.gethostbyname(hostname, stack=stack)


def gethostbyname_ex(hostname, *, stack=None):
    """:func:`socket.gethostbyname_ex` with the stack's resolver."""
    return _resolver.gethostbyname_ex(hostname, stack=stack)


def gethostbyaddr(ip_address, *, stack=None):
    """:func:`socket.gethostbyaddr` with the stack's resolver."""
    return _resolver.gethostbyaddr(ip_address, stack=stack)


def getnameinfo(sockaddr, flags, *, stack=None):
    """:func:`socket.getnameinfo` with the stack's resolver."""
    return _resolver.getnameinfo(sockaddr, flags, stack=stack)


def getfqdn(name="", *, stack=None):
    """:func:`socket.getfqdn` for the stack (its own name by default)."""
    return _resolver.getfqdn(name, stack=stack)


def gethostname(*, stack=None):
    """The stack's host name (the first label of its ``fqdn=``)."""
    return _resolver.gethostname(stack=stack)


def _resolve_name(host, family, stack):
    """A socket address's host name to address bytes, as the stdlib's sockets do (the first
    address of the family); ``gaierror`` when it has none."""
    info = _resolver.getaddrinfo(host, None, family, SOCK_STREAM, stack=stack)[0]
    if info[0] == AF_INET:
        return _parse_addr(info[4][0])
    return _parse_addr6(info[4][0].partition("%")[0])


def create_server(address, *, family=AF_INET, backlog=None, reuse_port=False,
                  dualstack_ipv6=False, stack=None):
    """A listening TCP socket bound to ``address``, as :func:`socket.create_server`: an
    AF_INET6 one is IPv6 only unless ``dualstack_ipv6``."""
    if dualstack_ipv6 and family != AF_INET6:
        raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    if reuse_port:
        raise ValueError("SO_REUSEPORT not supported on this platform")
    sock = socket(family, SOCK_STREAM, stack=stack)
    try:
        sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
        if family == AF_INET6:
            sock.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 0 if dualstack_ipv6 else 1)
        sock.bind(address)
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise
