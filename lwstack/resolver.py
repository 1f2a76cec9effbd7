"""Name functions with the stdlib's contract, answered by a stack's own resolver.

:mod:`lwstack.socket` exports these: ``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``,
``gethostbyaddr``, ``getnameinfo``, ``getfqdn``, ``gethostname`` and ``create_connection``.
Each takes the thread's default stack, or ``stack=``.

Design note.  The arguments, flags, results and errors follow CPython on glibc (the tests
compare both side by side): hosts as ``str`` (IDNA-encoded, as CPython does), ``bytes`` or
None; ports as int, ``str``, ``bytes`` or None with glibc's parsing (``strtoul``: leading
blanks, 70000 wraps to 4464, "-1" is a service name); glibc's socket type/protocol table
(TCP, UDP, DCCP, UDP-Lite, SCTP, raw) and its rules for which entries a query returns;
service names from this machine's services database (``socket.getservbyname``, a file
lookup, as the stdlib does); ``socket.gaierror`` with glibc's ``EAI_*`` numbers and
``gai_strerror`` texts (``EAI_NODATA`` for a name without addresses of the family asked).

Where the answer comes from, in order (like ``hosts: files myhostname dns``):

- numeric hosts (``inet_aton``'s forms for IPv4: ``127.1``, ``0x7f.1``; IPv6 with a numeric
  ``%scope``), ``localhost`` (127.0.0.1 and ::1);
- the stack's static :class:`~lwstack.proto.hosts.HostsTable` (``stack.hosts``), then the
  stack's own name (``fqdn=`` and its first label: the stack's current addresses of both
  families, link-local included, as systemd's nss-myhostname answers), then DNS through the
  stack's resolver (search domains, cache, TCP fallback: :mod:`lwstack.proto.dns`).
  Link-local results carry the stack's interface index as their scope id (the stack has one
  interface; Linux refuses a link-local destination without one).

Several addresses are ordered by RFC 6724's destination rules
(:func:`lwstack.iface.addrselect.sort_destinations`) with the stack's own addresses as the
sources; an address the stack has no route to sorts last (rule 1).

Blocking: like glibc, a lookup is bounded by the resolver's own timeout and attempts
(``resolver_options`` of the stack; resolv.conf's 5 s and 2 by default), not by socket
timeouts.  A stack still waiting for its first DHCP lease (no name server known yet) waits
for it up to one resolver timeout before asking.

``create_connection`` tries the addresses in that order, Happy Eyeballs style (RFC 8305
sections 4-5): families interleaved, a new attempt every 250 ms while earlier ones are
still in progress, the first connection to complete wins and the others are closed.
"""
import errno as _errno
import ipaddress as _ipaddress
import os as _os
import socket as _stdlib

from lwstack.iface.addrselect import LocalAddress, sort_destinations
from lwstack.iface.host6 import IFINDEX
from lwstack.proto.dns import TYPE_A, TYPE_AAAA

# glibc's EAI_* values and gai_strerror() texts.
_EAI_TEXT = {
    _stdlib.EAI_BADFLAGS: "Bad value for ai_flags",
    _stdlib.EAI_NONAME: "Name or service not known",
    _stdlib.EAI_AGAIN: "Temporary failure in name resolution",
    _stdlib.EAI_FAIL: "Non-recoverable failure in name resolution",
    _stdlib.EAI_FAMILY: "ai_family not supported",
    _stdlib.EAI_SOCKTYPE: "ai_socktype not supported",
    _stdlib.EAI_SERVICE: "Servname not supported for ai_socktype",
}
EAI_NODATA = getattr(_stdlib, "EAI_NODATA", -5)
EAI_ADDRFAMILY = getattr(_stdlib, "EAI_ADDRFAMILY", -9)
_EAI_TEXT[EAI_NODATA] = "No address associated with hostname"
_EAI_TEXT[EAI_ADDRFAMILY] = "Address family for hostname not supported"

AF_INET, AF_INET6, AF_UNSPEC = _stdlib.AF_INET, _stdlib.AF_INET6, _stdlib.AF_UNSPEC
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW = _stdlib.SOCK_STREAM, _stdlib.SOCK_DGRAM, _stdlib.SOCK_RAW
SOCK_SEQPACKET = _stdlib.SOCK_SEQPACKET
SOCK_DCCP = getattr(_stdlib, "SOCK_DCCP", 6)
#: glibc's gaih_inet_typeproto: (socktype, protocol, services name, default, no service,
#: any protocol).
_TYPEPROTO = (
    (SOCK_STREAM, 6, "tcp", True, False, False),
    (SOCK_DGRAM, 17, "udp", True, False, False),
    (SOCK_DCCP, 33, "dccp", False, False, False),
    (SOCK_DGRAM, 136, "udplite", False, False, False),
    (SOCK_STREAM, 132, "sctp", False, False, False),
    (SOCK_SEQPACKET, 132, "sctp", False, False, False),
    (SOCK_RAW, 0, "raw", True, True, True),
)
#: Flags glibc accepts (the standard ones, AI_IDN, AI_CANONIDN and the two deprecated IDN
#: flags).
_KNOWN_FLAGS = int(_stdlib.AI_PASSIVE | _stdlib.AI_CANONNAME | _stdlib.AI_NUMERICHOST
                   | _stdlib.AI_V4MAPPED | _stdlib.AI_ALL | _stdlib.AI_ADDRCONFIG
                   | _stdlib.AI_NUMERICSERV) | 0x40 | 0x80 | 0x100 | 0x200
NI_NUMERICHOST, NI_NUMERICSERV = _stdlib.NI_NUMERICHOST, _stdlib.NI_NUMERICSERV
NI_NAMEREQD, NI_DGRAM, NI_NOFQDN = _stdlib.NI_NAMEREQD, _stdlib.NI_DGRAM, _stdlib.NI_NOFQDN
#: RFC 8305 section 5: the recommended Connection Attempt Delay.
CONNECTION_ATTEMPT_DELAY = 0.25
_MAPPED = bytes(10) + b"\xff\xff"
_LOCALHOST = {4: [b"\x7f\0\0\1"], 16: [bytes(15) + b"\1"]}


def _gaierror(code):
    return _stdlib.gaierror(code, _EAI_TEXT[code])


def _stack(stack):
    if stack is not None:
        return stack
    from lwstack.stack import default_stack
    return default_stack()


# -- text forms -------------------------------------------------------------------------------

def _inet_aton(text):
    """glibc's inet_aton (exact): 1 to 4 numbers in C syntax (0x.. hex, 0.. octal), the last
    filling the remaining bytes; None if ``text`` is not such an address."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if not part or not part.isascii():
            return None
        try:
            if part[:2].lower() == "0x":
                value = int(part[2:], 16) if part[2:] else 0
            elif part[0] == "0" and len(part) > 1:
                value = int(part, 8)
            else:
                value = int(part, 10)
        except ValueError:
            return None
        if not part[-1].isalnum():
            return None
        values.append(value)
    last = values.pop()
    if any(v > 255 for v in values) or last >= 1 << (8 * (4 - len(values))):
        return None
    number = 0
    for value in values:
        number = (number << 8) | value
    number = (number << (8 * (4 - len(values)))) | last
    return number.to_bytes(4, "big")


def _numeric(text):
    """``(address bytes, scope id)`` for a numeric host, or None."""
    addr = _inet_aton(text)
    if addr is not None:
        return addr, 0
    host, _, scope = text.partition("%")
    try:
        addr = _ipaddress.IPv6Address(host).packed
    except ValueError:
        return None
    if scope:
        if not (scope.isascii() and scope.isdigit()):
            return None          # interface names: lwstack has one interface, no names yet
        return addr, int(scope)
    return addr, 0


def _text(addr):
    return _stdlib.inet_ntop(AF_INET if len(addr) == 4 else AF_INET6, addr)


def _host_arg(host):
    if host is None:
        return None
    if isinstance(host, str):
        return host.encode("idna").decode("ascii")
    if isinstance(host, (bytes, bytearray)):
        return bytes(host).decode("ascii", "surrogateescape")
    raise TypeError("getaddrinfo() argument 1 must be string or None")


def _port_arg(port):
    if port is None:
        return None
    if isinstance(port, int):
        return str(port)
    if isinstance(port, str):
        return port
    if isinstance(port, (bytes, bytearray)):
        return bytes(port).decode("ascii", "surrogateescape")
    raise OSError("Int or String expected")


def _strtoul(text):
    """A service as glibc reads it: ``strtoul`` (leading blanks, a sign, saturation) stored
    in an ``int``; the port number, or None when it is a name (not all digits, or negative
    as an int)."""
    digits = text.lstrip(" \t\n\v\f\r")
    negative = digits[:1] == "-"
    if digits[:1] in ("+", "-"):
        digits = digits[1:]
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    value = min(int(digits), (1 << 64) - 1)
    if negative:
        value = -value & ((1 << 64) - 1)
    value &= 0xFFFFFFFF
    return None if value >= 1 << 31 else value


# -- the stack's view ------------------------------------------------------------------------

def _own_addresses(host):
    """The stack's usable addresses of both families, for RFC 6724 and AI_ADDRCONFIG."""
    return [LocalAddress(i.address, i.prefix_len) for i in host.interfaces] + \
        host.source_addresses6


def _source_for(host, local):
    def source_for(dst):
        try:
            src, _ = host.route(dst)
        except OSError:
            return None          # unreachable: RFC 6724 rule 1 sorts it last
        return next((a for a in local if a.addr == src), LocalAddress(src, len(src) * 8))
    return source_for


def _order(stack, addresses):
    host = stack.host
    with stack.driver.lock:
        local = _own_addresses(host)
        return sort_destinations(addresses, local, source_for=_source_for(host, local))


def _run_lookup(stack, start):
    """Start a resolver lookup (``start(service, now, callback)``) and wait until it ends."""
    driver = stack.driver
    service = stack.resolver
    _wait_for_name_servers(stack)
    with driver.lock:
        if driver.closed:
            raise OSError(_errno.ENETDOWN, "the stack is closed")
        now = driver.now()
        lookup = start(service, now, lambda _lookup: driver.endpoint_changed(None))
        stack.host.drain_service(service, now)
        driver.after_call()
        if not lookup.done:
            driver.wait_for(lambda: lookup.done or driver.closed, None)
        if not lookup.done:
            service.cancel(lookup, driver.now())
            raise OSError(_errno.ENETDOWN, "the stack is closed")
    return lookup


def _wait_for_name_servers(stack):
    """A stack still getting its first lease has no name server yet: give it up to one
    resolver timeout."""
    if stack.dhcp4 is None:
        return
    with stack.driver.lock:
        if stack.host.all_name_servers()[0] or stack.dhcp4.configured:
            return
        timeout = stack.resolver.resolver.timeout
    try:
        stack.wait_configured(timeout)
    except TimeoutError:
        pass


def _own_name(stack, name):
    fqdn = stack.fqdn
    if not fqdn:
        return None
    key = name.rstrip(".").lower()
    if key in (fqdn.lower(), fqdn.split(".")[0].lower()):
        return fqdn
    return None


def _resolve(stack, name, families):
    """``(canonical name, [addresses])`` for ``name`` in ``families`` (4 and/or 16, in the
    order asked); raises gaierror."""
    key = name.rstrip(".").lower()
    if key == "localhost":
        addresses = [a for f in families for a in _LOCALHOST[f]]
        return "localhost", addresses
    with stack.driver.lock:
        found = stack.resolver.hosts.lookup(name)
    if found is None:
        canonical = _own_name(stack, name)
        if canonical is not None:
            with stack.driver.lock:
                own = [a.addr for a in _own_addresses(stack.host)]
            addresses = [a for f in families for a in own if len(a) == f]
            if addresses:
                return canonical, addresses
    qtypes = tuple(TYPE_A if f == 4 else TYPE_AAAA for f in families)
    lookup = _run_lookup(stack, lambda s, now, cb: s.resolve(name, qtypes, now, cb))
    if lookup.error is not None:
        if lookup.nodata:
            raise _gaierror(EAI_NODATA)
        raise _gaierror(getattr(_stdlib, lookup.error))
    return lookup.canonical or name, list(lookup.addresses)


# -- getaddrinfo -----------------------------------------------------------------------------

def _entry(socktype, proto):
    """glibc's type/protocol entry for a query that names a type or protocol (the first
    that matches); gaierror if none does."""
    for entry in _TYPEPROTO:
        if (socktype == 0 or socktype == entry[0]) and \
                (proto == 0 or entry[5] or proto == entry[1]):
            return entry
    raise _gaierror(_stdlib.EAI_SOCKTYPE if socktype else _stdlib.EAI_SERVICE)


def _services(port, flags, socktype, proto):
    """``[(socktype, protocol, port)]`` for the service part, or raise gaierror."""
    unspecified = not socktype and not proto
    entry = None if unspecified else _entry(socktype, proto)
    number = None
    if port:
        number = _strtoul(port)
        if number is None and flags & _stdlib.AI_NUMERICSERV:
            raise _gaierror(_stdlib.EAI_NONAME)
    if not unspecified:
        if port and entry[4]:
            raise _gaierror(_stdlib.EAI_SERVICE)
        if port and number is None:
            try:
                number = _stdlib.getservbyname(port, entry[2])
            except OSError:
                raise _gaierror(_stdlib.EAI_SERVICE) from None
        return [(entry[0], proto if entry[5] else entry[1], (number or 0) & 0xFFFF)]
    if port and number is None:
        found = []
        for entry in _TYPEPROTO:
            if not entry[3] or entry[4]:
                continue
            try:
                found.append((entry[0], entry[1], _stdlib.getservbyname(port, entry[2])))
            except OSError:
                continue
        if not found:
            raise _gaierror(_stdlib.EAI_SERVICE)
        return found
    return [(e[0], e[1], (number or 0) & 0xFFFF) for e in _TYPEPROTO if e[3]]


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0, *, stack=None):
    """Translate ``host``/``port`` into ``[(family, type, proto, canonname, sockaddr)]``, as
    :func:`socket.getaddrinfo` does, with the stack's resolver (see the module notes)."""
    name = _host_arg(host)
    service = _port_arg(port)
    family, socktype, flags = int(family), int(type), int(flags)
    if flags & ~_KNOWN_FLAGS:
        raise _gaierror(_stdlib.EAI_BADFLAGS)
    if flags & _stdlib.AI_CANONNAME and name is None:
        raise _gaierror(_stdlib.EAI_BADFLAGS)
    if name is None and not service:
        raise _gaierror(_stdlib.EAI_NONAME)
    if family not in (AF_UNSPEC, AF_INET, AF_INET6):
        raise _gaierror(_stdlib.EAI_FAMILY)
    services = _services(service, flags, socktype, int(proto))
    canonical, addresses, scope = _host_addresses(name, family, flags, stack)
    result = []
    for addr in addresses:
        if family == AF_INET6 and len(addr) == 4:
            addr = _MAPPED + addr
        af = AF_INET if len(addr) == 4 else AF_INET6
        text = _text(addr)
        # A link-local address is usable only with its interface: the stack has one.
        zone = scope or (IFINDEX if addr[:1] == b"\xfe" and addr[1] & 0xC0 == 0x80 else 0)
        for kind, protocol, number in services:
            sockaddr = (text, number) if af == AF_INET else (text, number, 0, zone)
            result.append((_stdlib.AddressFamily(af), _stdlib.SocketKind(kind), protocol,
                           canonical if not result and flags & _stdlib.AI_CANONNAME else "",
                           sockaddr))
    return result


def _host_addresses(name, family, flags, stack):
    """``(canonical name, ordered addresses, scope id)`` for getaddrinfo."""
    if name is None:
        if flags & _stdlib.AI_PASSIVE:
            order = [bytes(4), bytes(16)]
        else:
            order = [_LOCALHOST[16][0], _LOCALHOST[4][0]]
        wanted = {AF_UNSPEC: (4, 16), AF_INET: (4,), AF_INET6: (16,)}[family]
        return "", [a for a in order if len(a) in wanted], 0
    numeric = _numeric(name)
    if numeric is not None:
        addr, scope = numeric
        if family == AF_INET and len(addr) == 16 or family == AF_INET6 and len(addr) == 4 \
                and not flags & _stdlib.AI_V4MAPPED:
            raise _gaierror(EAI_ADDRFAMILY)
        return name, [addr], scope
    if flags & _stdlib.AI_NUMERICHOST or not name:
        raise _gaierror(_stdlib.EAI_NONAME)
    stack = _stack(stack)
    mapped = family == AF_INET6 and flags & _stdlib.AI_V4MAPPED
    families = {AF_UNSPEC: [4, 16], AF_INET: [4], AF_INET6: [16, 4] if mapped else [16]}[family]
    if flags & _stdlib.AI_ADDRCONFIG:
        with stack.driver.lock:
            have = {len(a.addr) for a in _own_addresses(stack.host)}
        families = [f for f in families if f in have or (mapped and f == 4 and 16 in have)]
        if not families:
            raise _gaierror(_stdlib.EAI_NONAME)
    canonical, addresses = _resolve(stack, name, families)
    if mapped:
        v6 = [a for a in addresses if len(a) == 16]
        v4 = [a for a in addresses if len(a) == 4]
        addresses = v6 + v4 if flags & _stdlib.AI_ALL or not v6 else v6
        if not addresses:
            raise _gaierror(EAI_NODATA)
    if len(addresses) > 1:
        addresses = _order(stack, addresses)
    return canonical, addresses, 0


# -- the older functions ----------------------------------------------------------------------

def _name_arg(function, name):
    """CPython's argument conversion for the gethostby* functions: str, bytes or bytearray."""
    if isinstance(name, (bytes, bytearray)):
        return bytes(name).decode("ascii", "surrogateescape")
    if not isinstance(name, str):
        raise TypeError(f"{function}() argument 1 must be str, bytes or bytearray, "
                        f"not {type(name).__name__}")
    return name


def gethostbyname(hostname, *, stack=None):
    """The IPv4 address of ``hostname`` as text, as :func:`socket.gethostbyname`."""
    hostname = _name_arg("gethostbyname", hostname)
    if hostname == "":
        return "0.0.0.0"
    if hostname == "<broadcast>":
        return "255.255.255.255"
    return getaddrinfo(hostname, None, AF_INET, stack=stack)[0][4][0]


def gethostbyname_ex(hostname, *, stack=None):
    """``(canonical name, aliases, [IPv4 addresses])``, as :func:`socket.gethostbyname_ex`."""
    hostname = _name_arg("gethostbyname_ex", hostname)
    name = hostname.encode("idna").decode("ascii")
    numeric = _numeric(name)
    if numeric is not None:
        if len(numeric[0]) != 4:
            raise _gaierror(EAI_ADDRFAMILY)
        return hostname, [], [_text(numeric[0])]
    infos = getaddrinfo(hostname, None, AF_INET, SOCK_STREAM, 0, _stdlib.AI_CANONNAME,
                        stack=stack)
    canonical = infos[0][3] or hostname
    aliases = [hostname] if canonical.rstrip(".").lower() != hostname.rstrip(".").lower() \
        else []
    return canonical, aliases, [info[4][0] for info in infos]


def gethostbyaddr(ip_address, *, stack=None):
    """``(name, aliases, [address])`` for an address (or a name, resolved first), as
    :func:`socket.gethostbyaddr`; ``socket.herror`` when the address has no name."""
    ip_address = _name_arg("gethostbyaddr", ip_address)
    stack = _stack(stack)
    numeric = _numeric(ip_address)
    if numeric is None:
        info = getaddrinfo(ip_address, None, AF_UNSPEC, SOCK_STREAM, stack=stack)[0]
        addr = _numeric(info[4][0])[0]
    else:
        addr = numeric[0]
    name = _reverse(stack, addr)
    if name is None:
        raise _stdlib.herror(1, "Unknown host")
    return name, [], [_text(addr)]


def _reverse(stack, addr):
    """The name of ``addr`` (bytes): localhost, the stack's own addresses, the hosts table,
    then a PTR query; None when there is none.  ``herror(2)`` on a resolver failure."""
    if addr in (_LOCALHOST[4][0], _LOCALHOST[16][0]):
        return "localhost"
    with stack.driver.lock:
        own = [a.addr for a in _own_addresses(stack.host)]
        name = stack.resolver.hosts.reverse(addr)
    if name is not None:
        return name
    if addr in own and stack.fqdn:
        return stack.fqdn
    lookup = _run_lookup(stack, lambda s, now, cb: s.resolve_address(addr, now, cb))
    if lookup.error is None and lookup.names:
        return str(lookup.names[0]).rstrip(".")
    if lookup.error == "EAI_AGAIN":
        raise _stdlib.herror(2, "Host name lookup failure")
    return None


def getnameinfo(sockaddr, flags, *, stack=None):
    """``(host, port)`` for a socket address, as :func:`socket.getnameinfo`."""
    if not isinstance(sockaddr, tuple):
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    if not 2 <= len(sockaddr) <= 4:
        raise TypeError("getnameinfo(): illegal sockaddr argument")
    host, port = sockaddr[0], sockaddr[1]
    if not isinstance(host, str):
        raise TypeError(f"getnameinfo() argument 1 must be str, not {type(host).__name__}")
    if not isinstance(port, int):
        raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
    flowinfo = sockaddr[2] if len(sockaddr) > 2 else 0
    if not 0 <= flowinfo <= 0xFFFFF:
        raise OverflowError("getnameinfo(): flowinfo must be 0-1048575.")
    infos = getaddrinfo(host, str(port), AF_UNSPEC, SOCK_DGRAM, 0, _stdlib.AI_NUMERICHOST,
                        stack=stack)
    if len(infos) > 1:
        raise OSError("sockaddr resolved to multiple addresses")
    family, _, _, _, address = infos[0]
    if family == AF_INET and len(sockaddr) != 2:
        raise OSError("IPv4 sockaddr must be 2 tuple")
    addr = _numeric(address[0])[0]
    if flags & NI_NUMERICSERV:
        service = str(port)
    else:
        try:
            service = _stdlib.getservbyport(port, "udp" if flags & NI_DGRAM else "tcp")
        except OSError:
            service = str(port)
    if flags & NI_NUMERICHOST:
        return _text(addr), service
    try:
        name = _reverse(_stack(stack), addr)
    except _stdlib.herror:
        name = None
    if name is None:
        if flags & NI_NAMEREQD:
            raise _gaierror(_stdlib.EAI_NONAME)
        return _text(addr), service
    if flags & NI_NOFQDN:
        name = name.split(".")[0]
    return name, service


def gethostname(*, stack=None):
    """The stack's host name: the first label of its ``fqdn=``, or ``localhost`` without
    one (the stdlib's answer is the machine's, not the stack's)."""
    stack = _stack(stack)
    return stack.fqdn.split(".")[0] if stack.fqdn else "localhost"


def getfqdn(name="", *, stack=None):
    """A fully qualified name for ``name`` (default: the stack's own), as
    :func:`socket.getfqdn`: the first name with a dot among its reverse name and aliases."""
    name = name.strip()
    if not name or name == "0.0.0.0":
        name = gethostname(stack=stack)
    try:
        hostname, aliases, _ = gethostbyaddr(name, stack=stack)
    except OSError:
        return name
    aliases.insert(0, hostname)
    for candidate in aliases:
        if "." in candidate:
            return candidate
    return hostname


# -- create_connection --------------------------------------------------------------------------

def _interleave(infos):
    """RFC 8305 section 4: alternate address families, starting with the first one's."""
    if not infos:
        return []
    first = [i for i in infos if i[0] == infos[0][0]]
    other = [i for i in infos if i[0] != infos[0][0]]
    out = []
    for index in range(max(len(first), len(other))):
        out += first[index:index + 1] + other[index:index + 1]
    return out


def create_connection(address, timeout=None, source_address=None, *, all_errors=False,
                      stack=None):
    """Connect a TCP socket to ``(host, port)``; see the module notes (Happy Eyeballs).

    ``timeout`` bounds each attempt (as in the stdlib, where it is every connect's timeout);
    the winning socket keeps it.  Errors: the last attempt's (``all_errors``: an
    ``ExceptionGroup`` of every attempt's).
    """
    stack = _stack(stack)
    host, port = address
    infos = _interleave(getaddrinfo(host, port, 0, SOCK_STREAM, stack=stack))
    if not infos:
        raise OSError("getaddrinfo returns an empty list")
    driver = stack.driver
    errors = []
    attempts = []                            # [socket, deadline]
    pending = list(infos)
    winner = None
    try:
        while winner is None and (pending or attempts):
            if pending:
                sock, error = _start_attempt(pending.pop(0), source_address, stack)
                if error is not None:
                    errors.append(error)
                    continue
                deadline = None if timeout is None else driver.now() + timeout
                attempts.append([sock, deadline])
            winner = _await_attempts(driver, attempts, errors,
                                     CONNECTION_ATTEMPT_DELAY if pending else None)
    finally:
        for sock, _ in attempts:
            if sock is not winner:
                sock.close()
    if winner is not None:
        winner.settimeout(timeout)
        return winner
    if all_errors:
        raise ExceptionGroup("create_connection failed", errors)
    raise errors[-1]


def _start_attempt(info, source_address, stack):
    from lwstack import socket as lws
    family, _, proto, _, sockaddr = info
    try:
        sock = lws.socket(family, SOCK_STREAM, proto, stack=stack)
    except OSError as exc:
        return None, exc
    try:
        sock.setblocking(False)
        if source_address:
            sock.bind(source_address)
        code = sock.connect_ex(sockaddr[:2])
        if code not in (0, _errno.EINPROGRESS):
            raise OSError(code, _os.strerror(code))
    except OSError as exc:
        sock.close()
        return None, exc
    return sock, None


def _finished(sock):
    conn = sock._conn
    return conn.state not in ("SYN-SENT", "SYN-RECEIVED")


def _await_attempts(driver, attempts, errors, delay):
    """Wait until an attempt connects (return its socket), every attempt ends, or ``delay``
    seconds pass (None: until something ends); failed and timed-out attempts move to
    ``errors``."""
    start = driver.now()
    while attempts:
        with driver.lock:
            now = driver.now()
            limits = [d for _, d in attempts if d is not None]
            if delay is not None:
                limits.append(start + delay)
            wait = None if not limits else max(0.0, min(limits) - now)
            if not any(_finished(s) for s, _ in attempts):
                if wait is None or wait > 0:
                    driver.wait_for(lambda: driver.closed or
                                    any(_finished(s) for s, _ in attempts), wait)
            if driver.closed:
                raise OSError(_errno.ENETDOWN, "the stack is closed")
            now = driver.now()
            for entry in list(attempts):
                sock, deadline = entry
                if _finished(sock):
                    code = sock._conn.pop_error()
                    if not code and sock._conn.connected:
                        return sock
                    attempts.remove(entry)
                    sock.close()
                    code = code or _errno.ECONNREFUSED
                    errors.append(OSError(code, _os.strerror(code)))
                elif deadline is not None and now >= deadline:
                    attempts.remove(entry)
                    sock.close()
                    errors.append(_stdlib.timeout("timed out"))
            if delay is not None and now >= start + delay:
                return None
    return None
