"""Names in the host: the stub resolver and the DNS server as host services, with their TCP.

Design note.  :class:`ResolverService` and :class:`DnsServerService` adapt the sans-IO DNS
machines (:mod:`lwstack.proto.dns`, :mod:`lwstack.proto.dns_server`) to the host's service
interface (the host module's docstring), the way :mod:`lwstack.iface.autoconf` adapts DHCP:
each keeps its own ``outbox`` of the records the host performs ("udp") and handles the
rest itself.

- The resolver's name servers and search domains follow ``host.all_name_servers()``
  (static ``dns=``/``domain=``, DHCPv4, later DHCPv6 and RA): the service installs itself as
  the host's ``on_name_servers_change`` hook.  Its random query ports skip ports that a
  socket or another service of the host uses.
- TCP (truncated answers, RFC 7766) runs inside the host, without sockets and threads:
  :class:`ServiceStreams` opens connections in the host's own TCP table (``host.tcp``), and
  keeps what a machine wants to send until the handshake completes.  Connections report
  progress through their ``on_change`` hook while the host is in the middle of processing a
  segment, so the hook only marks the service dirty; the service then asks to be polled at
  once (``poll_at`` returns -inf) and moves bytes in its ``poll``, outside TCP's own code.
- The DNS server also listens on TCP port 53 (``tcp=True``) and serves whole queries
  from each accepted connection; an idle client connection is closed after
  ``tcp_idle_timeout`` seconds (RFC 7766 section 6.2.3 leaves the value to the server).

Bounds: the machines' own (lookups, cache, pending forwards, TCP clients); ServiceStreams
holds at most ``max_streams`` connections (beyond: the open fails at once, as a connection
failure the machine already handles) and ``max_pending`` bytes of unsent output each.
"""
import collections
import math

from lwstack.proto.dns import Resolver
from lwstack.proto.dns_server import DnsServer
from lwstack.proto.tcp.connection import CLOSED, ESTABLISHED
from lwstack.wire import WireError
from lwstack.wire.dns import Message

ANY = b"\0\0\0\0"
#: Idle TCP client connections to the DNS server are closed after this many seconds.
TCP_IDLE_TIMEOUT = 10.0


class ServiceStreams:
    """TCP connections a sans-IO service runs through the host's TCP table.

    ``on_data(key, data, now)`` gets the bytes received; ``on_end(key, now)`` is called once
    when a connection failed or the peer closed it (not after :meth:`close`).  Keys are the
    caller's (a resolver token, a DNS client handle).
    """

    def __init__(self, host, on_data, on_end, *, max_streams=64, max_pending=1 << 20):
        self.host = host
        self.on_data = on_data
        self.on_end = on_end
        self.max_streams = max_streams
        self.max_pending = max_pending
        self.dirty = False
        self.stats = collections.Counter()
        self._streams = {}              # key -> [conn, pending bytes, last activity]

    def __len__(self):
        return len(self._streams)

    def __contains__(self, key):
        return key in self._streams

    def _mark(self, _item):
        self.dirty = True

    def open(self, key, addr, port, payload, now):
        """Connect to ``addr:port`` and send ``payload`` once connected; False (and no
        ``on_end``) if the connection cannot even start (no route, table full)."""
        if len(self._streams) >= self.max_streams or len(addr) != 4:
            self.stats["open_refused"] += 1
            return False
        conn = self.host.tcp.new_connection()
        try:
            self.host.tcp.connect(conn, addr, port, now)
        except OSError:
            self.stats["open_failed"] += 1
            return False
        conn.on_change = self._mark
        self._streams[key] = [conn, bytes(payload), now]
        self.stats["opened"] += 1
        self.dirty = True
        return True

    def adopt(self, key, conn, now):
        """Take over an accepted connection (its data so far is read at the next poll)."""
        conn.on_change = self._mark
        self._streams[key] = [conn, b"", now]
        self.dirty = True

    def send(self, key, data, now):
        """Queue ``data`` on the connection of ``key`` (dropped if the connection is gone or
        too much is queued already)."""
        stream = self._streams.get(key)
        if stream is None:
            return
        if len(stream[1]) + len(data) > self.max_pending:
            self.stats["drop.pending_full"] += 1
            return
        stream[1] += bytes(data)
        self._flush(stream, now)

    def close(self, key, now):
        """Close the connection of ``key`` (FIN after what is queued); no ``on_end`` follows."""
        stream = self._streams.pop(key, None)
        if stream is not None:
            stream[0].on_change = None
            stream[0].close(now)

    def idle_since(self, key):
        """When the connection of ``key`` last moved bytes (or opened)."""
        return self._streams[key][2]

    def keys(self):
        """The keys of the open connections."""
        return list(self._streams)

    def poll(self, now):
        """Move bytes: queued output out, received data in; report ended connections."""
        self.dirty = False
        for key in list(self._streams):
            stream = self._streams.get(key)
            if stream is None:
                continue
            conn = stream[0]
            if stream[1]:
                self._flush(stream, now)
            ended = False
            while True:
                try:
                    data = conn.recv(65536, now)
                except OSError:
                    ended = True
                    break
                if data is None:
                    break
                if not data:
                    ended = True
                    break
                stream[2] = now
                self.on_data(key, data, now)
                if self._streams.get(key) is not stream:
                    break                   # the machine closed it while handling the data
            if not ended and conn.state == CLOSED:
                ended = True
            if ended and self._streams.get(key) is stream:
                del self._streams[key]
                conn.on_change = None
                if conn.state != CLOSED:
                    conn.close(now)
                self.stats["ended"] += 1
                self.on_end(key, now)

    def _flush(self, stream, now):
        conn = stream[0]
        if conn.state != ESTABLISHED and conn.state != "CLOSE-WAIT":
            return
        try:
            taken = conn.send(stream[1], now)
        except OSError:
            self.dirty = True               # poll reports the end
            return
        if taken:
            stream[1] = stream[1][taken:]
            stream[2] = now


class ResolverService:
    """The stack's stub resolver (:class:`~lwstack.proto.dns.Resolver`) on a host.

    ``hosts``: the static table consulted first (a :class:`~lwstack.proto.hosts.HostsTable`).
    Other keyword arguments go to the resolver (timeout, attempts, ndots, rotate, ...).
    Name servers come from the host (see the module notes).
    """

    def __init__(self, host, *, rng=None, hosts=None, **resolver_options):
        """The service plugs itself into the host at its first lookup (a host that never
        resolves a name pays nothing per datagram or timer check)."""
        self.host = host
        self.resolver = Resolver(rng=rng, hosts=hosts, port_busy=self._port_busy,
                                 **resolver_options)
        self.udp_ports = self.resolver.ports
        self.outbox = []
        self.streams = ServiceStreams(host, self._tcp_data, self._tcp_end)
        host.on_name_servers_change = self.update_servers
        self.update_servers()

    @property
    def hosts(self):
        """The static hosts table the resolver consults before DNS."""
        return self.resolver.hosts

    @hosts.setter
    def hosts(self, table):
        self.resolver.hosts = table

    def update_servers(self):
        """Take the host's current name servers and search domains."""
        servers, domains = self.host.all_name_servers()
        self.resolver.configure(servers=servers, search=domains)

    def _port_busy(self, port):
        host = self.host
        if host.udp.all_on_port(port):
            return True
        return any(port in s.udp_ports for s in host.services if s is not self)

    # -- lookups (the caller drains the service afterwards) ---------------------------------

    def _plug(self, now):
        if self not in self.host.services:
            self.host.add_service(self, now)

    def resolve(self, name, qtypes, now, callback=None):
        """Start resolving ``name`` (see :meth:`Resolver.resolve`); returns the lookup."""
        self._plug(now)
        lookup = self.resolver.resolve(name, qtypes, now, callback)
        self._pump(now)
        return lookup

    def resolve_address(self, addr, now, callback=None):
        """Start a reverse (PTR) lookup of ``addr``; returns the lookup."""
        self._plug(now)
        lookup = self.resolver.resolve_address(addr, now, callback)
        self._pump(now)
        return lookup

    def cancel(self, lookup, now):
        """Abandon a pending lookup."""
        self.resolver.cancel(lookup)
        self._pump(now)

    # -- the host's calls --------------------------------------------------------------------

    def receive_udp(self, src, src_port, dst, dst_port, payload, now):
        """A datagram for one of the resolver's query ports."""
        self.resolver.receive(src, src_port, dst, dst_port, payload, now)
        self._pump(now)

    def poll(self, now):
        """Timeouts, and the TCP connections' progress."""
        if self.streams.dirty:
            self.streams.poll(now)
        self.resolver.poll(now)
        self._pump(now)

    def poll_at(self):
        """-inf while TCP has progress to handle, else the resolver's next timeout."""
        if self.streams.dirty:
            return -math.inf
        return self.resolver.poll_at()

    def conflict(self, addr, now):
        """Not used (the resolver never probes)."""

    # -- records -------------------------------------------------------------------------------

    def _pump(self, now):
        records = self.resolver.outbox
        while records:
            record = records.pop(0)
            kind = record[0]
            if kind == "udp":
                self.outbox.append(record)
            elif kind == "tcp":
                if not self.streams.open(record.token, record.dst_addr, record.dst_port,
                                         record.payload, now):
                    self.resolver.tcp_failed(record.token, now)
            elif kind == "tcp_close":
                self.streams.close(record.token, now)

    def _tcp_data(self, token, data, now):
        self.resolver.receive_tcp(token, data, now)

    def _tcp_end(self, token, now):
        self.resolver.tcp_failed(token, now)


class _ServerPorts:
    """The UDP ports of a DNS server: its service port and its forwarding ports."""

    def __init__(self, server):
        self.server = server

    def __contains__(self, port):
        return port == self.server.port or port in self.server.ports


class DnsServerService:
    """A :class:`~lwstack.proto.dns_server.DnsServer` on a host: UDP port 53 and, with
    ``tcp``, TCP port 53 (listening on every address of the host).

    ``on_log(line)``: called with ``query[A] name from 10.0.0.100`` for each UDP or TCP query
    (dnsmasq's ``log-queries`` style), when set.
    """

    def __init__(self, host, server, now, *, tcp=True, backlog=16,
                 tcp_idle_timeout=TCP_IDLE_TIMEOUT, on_log=None):
        if not isinstance(server, DnsServer):
            raise TypeError("server must be a DnsServer")
        self.host = host
        self.server = server
        self.udp_ports = _ServerPorts(server)
        self.outbox = []
        self.on_log = on_log
        self.tcp_idle_timeout = tcp_idle_timeout
        self.upstream = ServiceStreams(host, server.receive_tcp, server.tcp_failed)
        self.clients = ServiceStreams(host, self._client_data, self._client_end,
                                      max_streams=server.max_tcp_clients)
        self.listener = None
        self._next_client = 0
        if tcp:
            conn = host.tcp.new_connection()
            conn.reuse_addr = True
            host.tcp.bind(conn, ANY, server.port)
            self.listener = host.tcp.listen(conn, backlog)
            self.listener.on_change = self._mark

    def _mark(self, _item):
        self.clients.dirty = True

    def close(self, now):
        """Stop listening on TCP and close the client connections."""
        if self.listener is not None:
            self.listener.on_change = None
            self.listener.close(now)
            self.listener = None
        for key in self.clients.keys():
            self.server.client_closed(key)
            self.clients.close(key, now)

    # -- the host's calls --------------------------------------------------------------------

    def receive_udp(self, src, src_port, dst, dst_port, payload, now):
        """A query to port 53, or an upstream's answer to a forwarding port."""
        if self.on_log is not None and dst_port == self.server.port:
            self._log_query(payload, src)
        self.server.receive(src, src_port, dst, dst_port, payload, now)
        self._pump(now)

    def poll(self, now):
        """Accept TCP clients, move TCP bytes, close idle clients, forwarding timeouts."""
        listener = self.listener
        if listener is not None:
            while listener.accept_queue:
                conn = listener.accept()
                self._next_client += 1
                if len(self.clients) >= self.clients.max_streams:
                    conn.abort(now)
                    continue
                self.clients.adopt(("tcp", self._next_client, conn.remote_addr), conn, now)
        if self.clients.dirty:
            self.clients.poll(now)
        if self.upstream.dirty:
            self.upstream.poll(now)
        for key in self.clients.keys():
            if self.clients.idle_since(key) + self.tcp_idle_timeout <= now:
                self.server.client_closed(key)
                self.clients.close(key, now)
        self.server.poll(now)
        self._pump(now)

    def poll_at(self):
        """-inf while TCP has progress to handle, else the next timeout."""
        if self.clients.dirty or self.upstream.dirty:
            return -math.inf
        due = self.server.poll_at()
        for key in self.clients.keys():
            idle = self.clients.idle_since(key) + self.tcp_idle_timeout
            if due is None or idle < due:
                due = idle
        return due

    def conflict(self, addr, now):
        """Not used (the server never probes)."""

    # -- records -------------------------------------------------------------------------------

    def _pump(self, now):
        records = self.server.outbox
        while records:
            record = records.pop(0)
            kind = record[0]
            if kind == "udp":
                self.outbox.append(record)
            elif kind == "tcp_reply":
                self.clients.send(record.conn, record.payload, now)
            elif kind == "tcp":
                if not self.upstream.open(record.token, record.dst_addr, record.dst_port,
                                          record.payload, now):
                    self.server.tcp_failed(record.token, now)
            elif kind == "tcp_close":
                self.upstream.close(record.token, now)

    def _client_data(self, key, data, now):
        if self.on_log is not None:
            self._log_tcp(key, data)
        self.server.receive_tcp_client(key, data, now)

    def _client_end(self, key, now):
        self.server.client_closed(key)

    def _log_tcp(self, key, data):
        if len(data) > 2:
            self._log_query(bytes(data[2:]), key[2])

    def _log_query(self, payload, src):
        try:
            msg = Message.parse(payload)
        except WireError:
            return
        if msg.qr or not msg.questions:
            return
        question = msg.questions[0]
        kind = _TYPE_NAMES.get(question.qtype, f"type={question.qtype}")
        source = ".".join(map(str, src)) if len(src) == 4 else src.hex()
        self.on_log(f"query[{kind}] {question.name} from {source}")


_TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
               28: "AAAA", 255: "ANY"}
