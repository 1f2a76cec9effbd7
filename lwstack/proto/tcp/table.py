"""The host's TCP: demultiplexing, port bindings, timers, and segments with no connection.

Design note.  The table owns every :class:`TcpConnection` and :class:`TcpListener` of a host.

- Input: :meth:`receive` parses a segment (counting and dropping malformed ones), finds its
  connection by 4-tuple, else a listener by local address and port, else answers as RFC 9293
  section 3.10.7.1 says for CLOSED (a RST, never in reply to a RST).
- Output: connections call :meth:`output` with header fields; the table builds the segment and
  gives it to the host's IPv4 layer.
- Batching: connections that received input are flushed once at the end of the batch
  (:meth:`poll` runs them first; :meth:`poll_at` is ``-inf`` while any are pending).
- Timers: a heap of ``(deadline, connection)``.  An entry is pushed only when a connection's
  deadline moves *earlier* than what the heap holds for it; a later deadline (the RTO restarted
  on every ACK) is found when the old entry fires and re-pushed then.  So the heap holds about
  one entry per connection, not one per ACK.
- Ports: bindings follow Linux: a port is shared only if both sockets set SO_REUSEADDR and
  neither listens; TIME-WAIT connections block a port unless the new socket sets SO_REUSEADDR.
  Ephemeral ports for ``connect`` per RFC 6056 Algorithm 3; ISNs per RFC 6528.
"""
import collections
import errno
import heapq
import itertools
import math
import os

from lwstack.proto.tcp import hashes
from lwstack.proto.tcp.connection import CLOSED, HANDSHAKE, TIME_WAIT, TcpConnection
from lwstack.proto.tcp.listener import TcpListener
from lwstack.wire import WireError
from lwstack.wire.ipv4 import PROTO_TCP
from lwstack.wire.tcp import ACK, FIN, RST, SYN, build_tcp, build_tcp_frame, parse_tcp

ANY = b"\0\0\0\0"
EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999
#: Bound on connections per host (each costs a few KiB; see bench/RESULTS.md).
MAX_CONNECTIONS = 65536
#: 2*MSL; Linux's TCP_TIMEWAIT_LEN is 60 s (RFC 9293 section 3.4.2 suggests MSL = 2 min).
TIME_WAIT_SECONDS = 60.0


#: States in which a connection may still owe the peer data or a FIN (or its acknowledgment).
OWING_STATES = frozenset(("SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "CLOSE-WAIT", "CLOSING",
                          "LAST-ACK"))


def _fail(code, detail=None):
    return OSError(code, os.strerror(code) + (f": {detail}" if detail else ""))


class TcpTable:
    """Every TCP connection and listener of one host (see the module design note)."""

    def __init__(self, send_ip, route, is_local, rng, mtu=1500, time_wait=TIME_WAIT_SECONDS,
                 max_connections=MAX_CONNECTIONS, syncookies=True, sack=True,
                 timestamps=True, link_header=None, emit_frame=None):
        self._send_ip = send_ip        # (src, dst, segment, now) -> None; may raise OSError
        # The fast path (optional): (src, dst, protocol, now) -> (34-byte header, valid_until)
        # or None, and a function that queues a finished frame.
        self._link_header = link_header
        self._emit_frame = emit_frame
        self._route = route            # dst -> (source address, next hop); may raise OSError
        self._is_local = is_local
        self.rng = rng
        self.mtu = mtu
        self.time_wait = time_wait
        self.max_connections = max_connections
        self.syncookies = syncookies
        self.sack_enabled = sack
        self.timestamps_enabled = timestamps
        self.secret = rng.getrandbits(128).to_bytes(16, "big")
        self.connections = {}          # (laddr, lport, raddr, rport) -> TcpConnection
        self.listeners = {}            # (laddr, lport) -> TcpListener
        self.ports = collections.defaultdict(list)   # port -> bound connections/listeners
        self.pending = []
        self.stats = collections.Counter()
        self.now = 0.0
        self._timers = []
        self._counter = itertools.count()
        self._next_ephemeral = rng.randrange(1 << 16)

    # -- sockets' view ------------------------------------------------------------------------

    def new_connection(self, template=None):
        """A CLOSED connection (a new socket), with ``template``'s options if given."""
        conn = TcpConnection(self)
        if template is not None:
            for name in ("sndbuf", "rcvbuf", "nodelay", "keepalive", "keepidle", "keepintvl",
                         "keepcnt", "congestion_name", "linger", "user_timeout"):
                setattr(conn, name, getattr(template, name))
        return conn

    def mss_for(self, conn):
        """The MSS we announce (RFC 6691: MTU minus fixed IPv4 and TCP headers)."""
        return self.mtu - 40

    def ts_offset(self, conn):
        """A per-connection random timestamp offset (RFC 7323 section 5.4)."""
        return hashes.port_offset(self.secret, conn.local_addr, conn.remote_addr or ANY,
                                  conn.remote_port) ^ 0x5A5A5A5A

    def _conflicts(self, addr, port, reuse, listening, exclude=None):
        for other in self.ports.get(port, ()):
            if other is exclude:
                continue
            if other.local_addr != addr and ANY not in (addr, other.local_addr):
                continue
            other_listening = isinstance(other, TcpListener)
            if isinstance(other, TcpConnection) and other.state == TIME_WAIT:
                if reuse:
                    continue
                return True
            if reuse and other.reuse_addr and not listening and not other_listening:
                continue
            if reuse and other.reuse_addr and listening and not other_listening:
                continue              # a listener may share with bound or connected sockets
            return True
        return False

    def bind(self, conn, addr, port):
        """Bind a socket's connection to ``addr`` (ANY or local) and ``port`` (0: any)."""
        if conn.local_port:
            raise _fail(errno.EINVAL, "already bound")
        if addr != ANY and not self._is_local(addr):
            raise _fail(errno.EADDRNOTAVAIL)
        if port == 0:
            span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
            start = self.rng.randrange(span)
            for i in range(span):
                candidate = EPHEMERAL_LOW + (start + i) % span
                if not self._conflicts(addr, candidate, conn.reuse_addr, False):
                    port = candidate
                    break
            else:
                raise _fail(errno.EADDRINUSE, "no free ephemeral port")
        elif self._conflicts(addr, port, conn.reuse_addr, False):
            raise _fail(errno.EADDRINUSE)
        conn.local_addr = addr
        conn.local_port = port
        self.ports[port].append(conn)

    def _unbind(self, item):
        users = self.ports.get(item.local_port)
        if users is not None:
            try:
                users.remove(item)
            except ValueError:
                pass
            if not users:
                del self.ports[item.local_port]

    def connect(self, conn, addr, port, now):
        """Active open to ``addr:port``: pick the source and ephemeral port, send the SYN."""
        if conn.state != CLOSED or conn.remote_addr is not None:
            raise _fail(errno.EISCONN if conn.connected else errno.EALREADY)
        if len(self.connections) >= self.max_connections:
            raise _fail(errno.ENOBUFS, "connection table full")
        source, _ = self._route(addr)
        laddr = conn.local_addr if conn.local_addr != ANY else source
        if conn.local_port:
            lport = conn.local_port
            if (laddr, lport, addr, port) in self.connections:
                raise _fail(errno.EADDRNOTAVAIL)
        else:
            lport = self._ephemeral_port(laddr, addr, port)
            self.ports[lport].append(conn)
        conn.local_addr = laddr
        conn.local_port = lport
        self.register(conn, laddr, lport, addr, port)
        self.now = now
        iss = hashes.initial_sequence(self.secret, laddr, lport, addr, port, now)
        conn.open_active(addr, port, iss, now)

    def _ephemeral_port(self, laddr, raddr, rport):
        """RFC 6056 section 3.3.3 (Algorithm 3): a hash offset plus a shared counter."""
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        offset = hashes.port_offset(self.secret, laddr, raddr, rport)
        for _ in range(span):
            port = EPHEMERAL_LOW + (self._next_ephemeral + offset) % span
            self._next_ephemeral += 1
            if (laddr, port, raddr, rport) in self.connections:
                continue
            if any(isinstance(o, TcpListener) or (o.remote_addr is None and o.state == CLOSED)
                   for o in self.ports.get(port, ())):
                continue          # someone bound it explicitly
            return port
        raise _fail(errno.EADDRNOTAVAIL, "no free ephemeral port")

    def register(self, conn, laddr, lport, raddr, rport):
        """Enter a connection in the demultiplexing table."""
        conn.local_addr = laddr
        conn.local_port = lport
        conn.remote_addr = raddr
        conn.remote_port = rport
        self.connections[(laddr, lport, raddr, rport)] = conn
        if conn not in self.ports.get(lport, ()):
            self.ports[lport].append(conn)

    def listen(self, conn, backlog):
        """Turn a socket's (bound or not) connection into a listener; returns it."""
        if conn.state != CLOSED or conn.remote_addr is not None:
            raise _fail(errno.EINVAL)
        if not conn.local_port:
            self.bind(conn, conn.local_addr, 0)
        self._unbind(conn)
        if self._conflicts(conn.local_addr, conn.local_port, conn.reuse_addr, True):
            self.ports[conn.local_port].append(conn)
            raise _fail(errno.EADDRINUSE)
        listener = TcpListener(self, conn, backlog)
        listener.reuse_addr = conn.reuse_addr
        self.listeners[(conn.local_addr, conn.local_port)] = listener
        self.ports[conn.local_port].append(listener)
        return listener

    def unlisten(self, listener):
        """Remove a closed listener."""
        key = (listener.local_addr, listener.local_port)
        if self.listeners.get(key) is listener:
            del self.listeners[key]
        self._unbind(listener)

    def owes_data(self):
        """True while some connection still has data or a FIN to deliver (its socket may be
        closed already): what :meth:`lwstack.Stack.close` waits for."""
        for conn in self.connections.values():
            if conn.state in OWING_STATES and not conn.reset:
                return True
        return False

    def forget(self, conn):
        """Drop a never-connected socket's binding (closing an unused socket)."""
        if conn.remote_addr is None:
            self._unbind(conn)

    # -- connections' view --------------------------------------------------------------------

    def output(self, conn, flags, seq, ack, window, options, payload, now):
        """Send one segment of ``conn``: a whole frame from the connection's cached link
        header while its neighbour is reachable, else through the host's IPv4 output."""
        if now >= conn._link_valid_until:
            link = self._link_header(conn.local_addr, conn.remote_addr, PROTO_TCP, now) \
                if self._link_header is not None else None
            if link is None:
                self.send_raw(conn.local_addr, conn.remote_addr, conn.local_port,
                              conn.remote_port, seq, ack, flags, window, options, now, payload)
                return
            conn._link, conn._link_valid_until = link
        conn._ip_ident = ident = (conn._ip_ident + 1) & 0xFFFF
        self.stats["segments_sent"] += 1
        self._emit_frame(build_tcp_frame(conn._link, ident, conn.local_port, conn.remote_port,
                                         seq, ack, flags, window, options, payload))

    def send_raw(self, src, dst, sport, dport, seq, ack, flags, window, options, now,
                 payload=b""):
        """Build and send a segment (also for RSTs and SYN cookies that have no connection)."""
        segment = build_tcp(src, dst, sport, dport, seq, ack, flags, window, options, payload)
        self.stats["segments_sent"] += 1
        try:
            self._send_ip(src, dst, segment, now)
        except OSError:
            self.stats["segments_unroutable"] += 1

    def established(self, conn):
        """A connection completed its handshake."""
        listener = conn.listener
        if listener is not None and conn not in listener.syn_queue:
            listener.established_directly(conn)

    def release(self, conn):
        """A connection reached CLOSED: forget it and free its port."""
        key = (conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port)
        if self.connections.get(key) is conn:
            del self.connections[key]
        self._unbind(conn)
        if conn.listener is not None:
            conn.listener.child_changed(conn)

    def reschedule(self, conn):
        """The connection's next deadline may have moved earlier: keep the heap in step."""
        due = conn.poll_at()
        if due is not None and (conn._scheduled is None or due < conn._scheduled):
            conn._scheduled = due
            heapq.heappush(self._timers, (due, next(self._counter), conn))

    # -- input ----------------------------------------------------------------------------------

    def receive(self, src, dst, segment, now):
        """One TCP segment from IPv4 (``src``/``dst`` 4-byte addresses)."""
        self.now = now
        try:
            seg = parse_tcp(segment, src, dst)
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1
            return
        self.stats["segments_received"] += 1
        conn = self.connections.get((dst, seg.dst_port, src, seg.src_port))
        if conn is not None:
            if conn.state == TIME_WAIT and seg.flags & SYN and not seg.flags & ACK and \
                    self._time_wait_reusable(conn, seg):
                # RFC 9293 section 3.10.7.4 note / RFC 6191: a new incarnation may start.
                self.stats["time_wait_recycled"] += 1
                conn._enter_closed()
            else:
                conn.segment_arrives(seg, now)
                return
        listener = self.listeners.get((dst, seg.dst_port)) or \
            self.listeners.get((ANY, seg.dst_port))
        if listener is not None and not listener.closed:
            self._listen_arrives(listener, seg, src, dst, now)
            return
        self.stats["no_connection"] += 1
        self._reset_for(seg, src, dst, now)

    @staticmethod
    def _time_wait_reusable(conn, seg):
        if conn.ts_ok and seg.has_timestamps:
            return ((seg.ts_val - conn.ts_recent) & 0xFFFFFFFF) - 1 < 0x7FFFFFFF
        return ((seg.seq - conn.rcv_nxt) & 0xFFFFFFFF) - 1 < 0x7FFFFFFF

    def _listen_arrives(self, listener, seg, src, dst, now):
        """RFC 9293 section 3.10.7.2."""
        flags = seg.flags
        if flags & RST:
            return
        if flags & ACK:
            if not flags & SYN and self.syncookies and listener.cookie_ack(seg, src, dst, now):
                return
            self._reset_for(seg, src, dst, now)
            return
        if not flags & SYN:
            self.stats["drop.tcp_listen_no_syn"] += 1
            return
        if src == dst and seg.src_port == seg.dst_port:
            self.stats["drop.tcp_land"] += 1        # a SYN to itself (the "land" attack)
            return
        if len(self.connections) >= self.max_connections:
            self.stats["drop.tcp_table_full"] += 1
            return
        listener.syn_arrives(seg, src, dst, now)

    def _reset_for(self, seg, src, dst, now):
        """A RST for a segment that has no connection (section 3.10.7.1)."""
        flags = seg.flags
        if flags & RST:
            return
        self.stats["rst_sent"] += 1
        if flags & ACK:
            self.send_raw(dst, src, seg.dst_port, seg.src_port, seg.ack, 0, RST, 0, b"", now)
        else:
            length = len(seg.payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
            self.send_raw(dst, src, seg.dst_port, seg.src_port, 0,
                          (seg.seq + length) & 0xFFFFFFFF, RST | ACK, 0, b"", now)

    def icmp_error(self, src, dst, transport, code, hard, now):
        """An ICMP error quoting one of our segments (RFC 5927, RFC 1122 section 4.2.3.9).

        During a handshake a hard error (unreachable) ends the connect with ``code``, as Linux
        does; on an established connection errors are only soft (the connection goes on).
        """
        if len(transport) < 8:
            return False
        sport = (transport[0] << 8) | transport[1]
        dport = (transport[2] << 8) | transport[3]
        conn = self.connections.get((src, sport, dst, dport))
        if conn is None:
            return False
        seq = int.from_bytes(transport[4:8], "big")
        # RFC 5927 section 4.1: only for data in flight (SND.UNA <= seq < SND.NXT).
        una = conn.snd_una & 0xFFFFFFFF
        if ((seq - una) & 0xFFFFFFFF) >= ((conn.snd_nxt - conn.snd_una) or 1):
            self.stats["icmp_error_out_of_window"] += 1
            return True
        if conn.state in HANDSHAKE and hard:
            self.now = now
            conn.error = code
            conn.reset = True
            conn._enter_closed()
        else:
            conn.soft_error = code
        return True

    # -- timers ---------------------------------------------------------------------------------

    def poll_at(self):
        """When :meth:`poll` next has work (``-inf`` while a batch awaits its flush)."""
        if self.pending:
            return -math.inf
        timers = self._timers
        while timers and timers[0][2]._scheduled != timers[0][0]:
            heapq.heappop(timers)         # superseded by an earlier entry, or closed
        return timers[0][0] if timers else None

    def poll(self, now):
        """Flush connections that received input, then run due timers."""
        self.now = now
        self.flush(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, conn = heapq.heappop(timers)
            if conn._scheduled != due:
                continue
            conn._scheduled = None
            if conn.state == CLOSED:
                continue
            conn.poll(now)
            self.reschedule(conn)
        self.flush(now)

    def flush(self, now):
        """Let every connection that received input transmit once (end of a batch)."""
        pending = self.pending
        while pending:
            batch = pending[:]
            pending.clear()
            for conn in batch:
                conn.flush(now)
