"""Datagram endpoints: the sans-IO state behind a UDP socket or an ICMP echo socket.

An endpoint owns a receive queue bounded in bytes (like SO_RCVBUF: a datagram that does not
fit is dropped and counted, never partially kept), the socket's pending errors, and its local
and remote addresses.  A UDP endpoint keeps one pending error (``SO_ERROR``, set by ICMP errors
on a connected socket, as Linux does without IP_RECVERR); an ICMP echo endpoint queues them,
one per failed request, so a pinger can tell each request's fate (Linux's error queue).  ``on_change`` is called whenever the endpoint becomes readable or gets an
error, so a runtime can wake whoever waits on it; the core never blocks.
"""
import collections

ANY = b"\0\0\0\0"
ANY6 = bytes(16)
#: Linux's default net.core.rmem_default.
DEFAULT_RCVBUF = 212992
#: What one queued datagram costs against the receive buffer beyond its payload, so that even
#: empty datagrams fill it (Linux charges the whole sk_buff, ~768 bytes, the same way).
DATAGRAM_OVERHEAD = 256
#: Linux's default ephemeral range (net.ipv4.ip_local_port_range).
EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999


class DatagramEndpoint:
    """One datagram socket's state inside the stack."""

    __slots__ = ("kind", "family", "local_addr", "local_port", "remote", "queue",
                 "queued_bytes", "rcvbuf", "errors", "closed", "on_change", "broadcast",
                 "reuse_addr", "ttl", "dropped", "v6only", "hop_limit", "dual")

    def __init__(self, kind, rcvbuf=DEFAULT_RCVBUF, family=4):
        self.kind = kind                # "udp" or "icmp"
        self.family = family            # 4 or 6: the socket's family
        self.local_addr = ANY if family == 4 else ANY6
        self.local_port = 0             # for "icmp": the echo identifier
        self.remote = None              # (addr, port) once connected
        self.queue = collections.deque()
        self.queued_bytes = 0
        self.rcvbuf = rcvbuf
        self.errors = collections.deque(maxlen=1 if kind == "udp" else 64)
        self.closed = False
        self.on_change = None
        self.broadcast = False          # SO_BROADCAST
        self.reuse_addr = False         # SO_REUSEADDR
        self.ttl = None                 # IP_TTL; None means the stack default
        self.hop_limit = None           # IPV6_UNICAST_HOPS; None means the stack default
        self.v6only = False             # IPV6_V6ONLY
        self.dual = family == 6 and kind == "udp"   # see the module note
        self.dropped = 0

    def set_v6only(self, value):
        """IPV6_V6ONLY (an IPv6 UDP endpoint not yet bound)."""
        self.v6only = bool(value)
        self.dual = self.family == 6 and self.kind == "udp" and not self.v6only

    def deliver(self, payload, source, ttl):
        """Queue a datagram from ``source`` ((addr, port)); False if the buffer is full."""
        size = len(payload) + DATAGRAM_OVERHEAD
        if self.queued_bytes + size > self.rcvbuf:
            self.dropped += 1
            return False
        self.queue.append((payload, source, ttl))
        self.queued_bytes += size
        if self.on_change is not None:
            self.on_change(self)
        return True

    def take(self):
        """Pop the oldest datagram ``(payload, (addr, port), ttl)``; the caller checks there is one."""
        item = self.queue.popleft()
        self.queued_bytes -= len(item[0]) + DATAGRAM_OVERHEAD
        return item

    def set_error(self, errno_value):
        """Record an asynchronous error, reported once by a later call (as SO_ERROR)."""
        self.errors.append(errno_value)
        if self.on_change is not None:
            self.on_change(self)

    def pop_error(self):
        """Return and clear the oldest pending error (0 if none)."""
        return self.errors.popleft() if self.errors else 0

    @property
    def readable(self):
        """True when a receive call would not block."""
        return bool(self.queue) or bool(self.errors) or self.closed


class PortTable:
    """Local (address, port) bindings of one protocol, with ephemeral port selection.

    Binding rules follow Linux: a port is shared between a wildcard and a specific address,
    or between two sockets on the same address, only if both set SO_REUSEADDR.  The IPv4
    wildcard covers IPv4 addresses, the IPv6 one IPv6 addresses, and a dual endpoint's IPv6
    wildcard both (see the module note).
    """

    def __init__(self, rng, low=EPHEMERAL_LOW, high=EPHEMERAL_HIGH):
        self.rng = rng
        self.low = low
        self.high = high
        self.bound = {}             # (addr, port) -> endpoint
        self.by_port = collections.defaultdict(list)

    def conflicts(self, addr, port, reuse_addr, dual=False):
        """True if binding ``addr:port`` (``dual``: an IPv6 wildcard that takes IPv4 too)
        would collide with an existing binding."""
        for other in self.by_port.get(port, ()):
            if _overlap(addr, dual, other.local_addr, other.dual):
                if not (reuse_addr and other.reuse_addr):
                    return True
        return False

    def bind(self, endpoint, addr, port):
        """Bind ``endpoint``; port 0 picks a free ephemeral port (RFC 6056 algorithm 1).

        Returns the port, or None when the address is in use / no ephemeral port is free.
        """
        dual = endpoint.dual and addr == ANY6
        if port == 0:
            span = self.high - self.low + 1
            start = self.rng.randrange(span)
            for i in range(span):
                candidate = self.low + (start + i) % span
                if not self.conflicts(addr, candidate, endpoint.reuse_addr, dual):
                    port = candidate
                    break
            else:
                return None
        elif self.conflicts(addr, port, endpoint.reuse_addr, dual):
            return None
        endpoint.local_addr = addr
        endpoint.local_port = port
        self.bound[(addr, port)] = endpoint
        self.by_port[port].append(endpoint)
        return port

    def unbind(self, endpoint):
        """Remove ``endpoint``'s binding, if it has one."""
        port = endpoint.local_port
        users = self.by_port.get(port)
        if not users or endpoint not in users:
            return
        users.remove(endpoint)
        # With SO_REUSEADDR several endpoints share one (addr, port); ``bound`` holds the
        # latest, so when it leaves, the previous one on that address takes over.
        key = (endpoint.local_addr, port)
        if self.bound.get(key) is endpoint:
            sharers = [e for e in users if e.local_addr == endpoint.local_addr]
            if sharers:
                self.bound[key] = sharers[-1]
            else:
                del self.bound[key]
        if not users:
            del self.by_port[port]

    def lookup(self, addr, port):
        """The endpoint that receives datagrams for ``addr:port``: exact address first, then
        the family's wildcard, then (IPv4) a dual IPv6 wildcard."""
        endpoint = self.bound.get((addr, port))
        if endpoint is None:
            if len(addr) == 4:
                endpoint = self.bound.get((ANY, port))
                if endpoint is None:
                    endpoint = self.bound.get((ANY6, port))
                    if endpoint is not None and not endpoint.dual:
                        return None
            else:
                endpoint = self.bound.get((ANY6, port))
        return endpoint

    def all_on_port(self, port):
        """Every endpoint bound to ``port`` (for broadcast delivery)."""
        return list(self.by_port.get(port, ()))


def _overlap(a, a_dual, b, b_dual):
    """Whether bindings to local addresses ``a`` and ``b`` (each 4 or 16 bytes; ``*_dual``: an
    IPv6 wildcard that takes IPv4 too) receive some datagrams in common."""
    if a == b:
        return True
    if a == ANY:
        return len(b) == 4 or b_dual
    if b == ANY:
        return len(a) == 4 or a_dual
    if a == ANY6:
        return len(b) == 16 or a_dual
    if b == ANY6:
        return len(a) == 16 or b_dual
    return False
