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

    __slots__ = ("kind", "local_addr", "local_port", "remote", "queue", "queued_bytes",
                 "rcvbuf", "errors", "closed", "on_change", "broadcast", "reuse_addr",
                 "ttl", "dropped")

    def __init__(self, kind, rcvbuf=DEFAULT_RCVBUF):
        self.kind = kind                # "udp" or "icmp"
        self.local_addr = ANY
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
        self.dropped = 0

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
    or between two sockets on the same address, only if both set SO_REUSEADDR.
    """

    def __init__(self, rng, low=EPHEMERAL_LOW, high=EPHEMERAL_HIGH):
        self.rng = rng
        self.low = low
        self.high = high
        self.bound = {}             # (addr, port) -> endpoint
        self.by_port = collections.defaultdict(list)

    def conflicts(self, addr, port, reuse_addr):
        """True if binding ``addr:port`` would collide with an existing binding."""
        for other in self.by_port.get(port, ()):
            if other.local_addr == addr or ANY in (addr, other.local_addr):
                if not (reuse_addr and other.reuse_addr):
                    return True
        return False

    def bind(self, endpoint, addr, port):
        """Bind ``endpoint``; port 0 picks a free ephemeral port (RFC 6056 algorithm 1).

        Returns the port, or None when the address is in use / no ephemeral port is free.
        """
        if port == 0:
            span = self.high - self.low + 1
            start = self.rng.randrange(span)
            for i in range(span):
                candidate = self.low + (start + i) % span
                if not self.conflicts(addr, candidate, endpoint.reuse_addr):
                    port = candidate
                    break
            else:
                return None
        elif self.conflicts(addr, port, endpoint.reuse_addr):
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
        """The endpoint that receives datagrams for ``addr:port``: exact address first."""
        endpoint = self.bound.get((addr, port))
        if endpoint is None:
            endpoint = self.bound.get((ANY, port))
        return endpoint

    def all_on_port(self, port):
        """Every endpoint bound to ``port`` (for broadcast delivery)."""
        return list(self.by_port.get(port, ()))
