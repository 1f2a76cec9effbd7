"""The host's TCP: demultiplexing, port bindings, timers, and segments with no connection.

Design note.  The table owns every :class:`TcpConnection` and :class:`TcpListener` of a host.

- Input: :meth:`receive` parses a segment (counting and dropping malformed ones), finds its
  connection by 4-tuple, else a listener by local address and port, else answers as RFC 9293
  section 3.10.7.1 says for CLOSED (a RST, never in reply to a RST).
- Output: connections call :meth:`output` with header fields; the table builds the segment and
  gives it to the host's IP layer.
- Both families, one code.  Addresses are 4-byte (IPv4) or 16-byte (IPv6) ``bytes`` wherever
  they appear (demultiplexing keys, bindings, hashes); the host hands IPv6 segments to
  :meth:`receive` with 16-byte addresses and takes ours through the same callbacks.  The
  family changes only the pseudo-header (:mod:`lwstack.wire.tcp`), the headers' size in the MSS
  (RFC 6691: MTU - 40 over IPv4, MTU - 60 over IPv6) and the frame builder of the fast path.
- Dual stack, as Linux.  An IPv6 socket talking to an IPv4 peer (``::ffff:a.b.c.d``) is an
  IPv4 connection here, with 4-byte addresses: the socket layer (:mod:`lwstack._stream`) maps
  them.  An IPv6 endpoint bound to ``::`` (:data:`ANY6`) without ``v6only`` (IPV6_V6ONLY)
  also covers every IPv4 address: it takes IPv4 SYNs no IPv4 listener wants, and it conflicts
  with IPv4 bindings of its port; with ``v6only`` the two families share ports freely.
- Batching: connections that received input are flushed once at the end of the batch
  (:meth:`poll` runs them first; :meth:`poll_at` is ``-inf`` while any are pending).
- Timers: a heap of ``(deadline, connection)``.  An entry is pushed only when a connection's
  deadline moves *earlier* than what the heap holds for it; a later deadline (the RTO restarted
  on every ACK) is found when the old entry fires and re-pushed then.  So the heap holds about
  one entry per connection, not one per ACK.
- Ports: bindings follow Linux: a port is shared only if both sockets set SO_REUSEADDR and
  neither listens; TIME-WAIT connections block a port unless the new socket sets SO_REUSEADDR.
  Ephemeral ports for ``connect`` per RFC 6056 Algorithm 3; ISNs per RFC 6528.
- Path MTU.  An ICMP Fragmentation Needed (RFC 1191) or ICMPv6 Packet Too Big (RFC 8201)
  quoting one of our segments lowers that connection's MSS and resends what was in flight at
  the new size (:meth:`icmp_error` with ``mtu``); new connections take the host's path MTU
  (``path_mtu``) into the MSS they announce and use.
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
from lwstack.wire.tcp import (ACK, FIN, RST, SYN, build_tcp, build_tcp_frame, build_tcp_frame6,
                              parse_tcp)

ANY = b"\0\0\0\0"
#: The IPv6 unspecified address ``::``.
ANY6 = bytes(16)
#: Fixed IP + TCP header bytes per family (RFC 6691), by address length.
_HEADERS = {4: 40, 16: 60}
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


def overlap(a, a_v6only, b, b_v6only):
    """Whether endpoints bound to local addresses ``a`` and ``b`` (4 or 16 bytes, maybe a
    wildcard) could receive for a same address: Linux's ``inet_rcv_saddr_equal`` with
    wildcards.  ``::`` covers every IPv4 address too unless its endpoint is v6-only."""
    if len(a) == len(b):
        return a == b or a == ANY or a == ANY6 or b == ANY or b == ANY6
    if len(a) == 16:
        return a == ANY6 and not a_v6only
    return b == ANY6 and not b_v6only


class TcpTable:
    """Every TCP connection and listener of one host (see the module design note)."""

    def __init__(self, send_ip, route, is_local, rng, mtu=1500, time_wait=TIME_WAIT_SECONDS,
                 max_connections=MAX_CONNECTIONS, syncookies=True, sack=True,
                 timestamps=True, link_header=None, emit_frame=None, path_mtu=None):
        self._send_ip = send_ip        # (src, dst, segment, now) -> None; may raise OSError
        # The fast path (optional): (src, dst, protocol, now) -> (header, valid_until) or None,
        # the header being Ethernet + IPv4 (34 bytes) or Ethernet + IPv6 (54 bytes), and a
        # function that queues a finished frame.
        self._link_header = link_header
        self._emit_frame = emit_frame
        self._route = route            # dst -> (source address, next hop); may raise OSError
        self._is_local = is_local
        #: Optional ``(dst, now) -> MTU`` of the path to ``dst`` (None: the interface MTU), for
        #: the MSS of new connections and after a Packet Too Big (the host's path MTU cache).
        self.path_mtu = path_mtu
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
                         "keepcnt", "congestion_name", "linger", "user_timeout", "v6only"):
                setattr(conn, name, getattr(template, name))
        return conn

    def mss_for(self, conn):
        """The MSS we announce, and the most we send (RFC 6691: the path MTU minus the fixed
        IP and TCP headers, 40 bytes over IPv4, 60 over IPv6; RFC 8201 and RFC 1191 for a path
        MTU below the interface's)."""
        mss = self.mss_for_addr(conn.remote_addr)
        if conn.path_mss and conn.path_mss < mss:
            return conn.path_mss
        return mss

    def mss_for_addr(self, remote):
        """The MSS for a new connection with ``remote`` (4 or 16 bytes): see :meth:`mss_for`."""
        mtu = self.mtu
        if self.path_mtu is not None:
            path = self.path_mtu(remote, self.now)
            if path and path < mtu:
                mtu = path
        return mtu - _HEADERS[len(remote)]

    def ts_offset(self, conn):
        """A per-connection random timestamp offset (RFC 7323 section 5.4)."""
        return hashes.port_offset(self.secret, conn.local_addr, conn.remote_addr or ANY,
                                  conn.remote_port) ^ 0x5A5A5A5A

    def _conflicts(self, addr, v6only, port, reuse, listening, exclude=None):
        for other in self.ports.get(port, ()):
            if other is exclude:
                continue
            if not overlap(addr, v6only, other.local_addr, other.v6only):
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
        """Bind a socket's connection to ``addr`` (ANY, ANY6 or local) and ``port`` (0: any);
        ``conn.v6only`` says whether ANY6 leaves IPv4 out."""
        if conn.local_port:
            raise _fail(errno.EINVAL, "already bound")
        if addr != ANY and addr != ANY6 and not self._is_local(addr):
            raise _fail(errno.EADDRNOTAVAIL)
        v6only = conn.v6only
        if port == 0:
            span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
            start = self.rng.randrange(span)
            for i in range(span):
                candidate = EPHEMERAL_LOW + (start + i) % span
                if not self._conflicts(addr, v6only, candidate, conn.reuse_addr, False):
                    port = candidate
                    break
            else:
                raise _fail(errno.EADDRINUSE, "no free ephemeral port")
        elif self._conflicts(addr, v6only, port, conn.reuse_addr, False):
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
        if addr[0] == 0xFF if len(addr) == 16 else 224 <= addr[0] < 240:
            raise _fail(errno.ENETUNREACH)      # Linux: TCP has no multicast (tcp_v6_connect)
        local = conn.local_addr
        if len(local) != len(addr) and local != ANY6 and local != ANY:
            # Linux: an IPv6 socket bound to an IPv6 address cannot reach an IPv4-mapped one,
            # and one bound to an IPv4-mapped address has no IPv6 to speak.  (A wildcard is
            # either family's: the socket layer keeps AF_INET sockets to IPv4.)
            raise _fail(errno.ENETUNREACH if len(local) == 16 else errno.EAFNOSUPPORT)
        if len(addr) == 4 and local == ANY6 and conn.v6only:
            raise _fail(errno.ENETUNREACH)
        source, _ = self._route(addr)
        laddr = local if local != ANY and local != ANY6 else source
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
        if len(raddr) == 16:
            conn._ip_ident = -1            # IPv6 has no identification: output()'s marker
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
        if self._conflicts(conn.local_addr, conn.v6only, conn.local_port, conn.reuse_addr, True):
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
        header while its neighbour is reachable, else through the host's IP output."""
        if now >= conn._link_valid_until:
            link = self._link_header(conn.local_addr, conn.remote_addr, PROTO_TCP, now) \
                if self._link_header is not None else None
            if link is None:
                self.send_raw(conn.local_addr, conn.remote_addr, conn.local_port,
                              conn.remote_port, seq, ack, flags, window, options, now, payload)
                return
            conn._link, conn._link_valid_until = link
        self.stats["segments_sent"] += 1
        if conn._ip_ident < 0:             # IPv6 (see register): no identification field
            self._emit_frame(build_tcp_frame6(conn._link, conn.local_port, conn.remote_port,
                                              seq, ack, flags, window, options, payload))
            return
        conn._ip_ident = ident = (conn._ip_ident + 1) & 0xFFFF
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
        """One TCP segment from IPv4 or IPv6 (``src``/``dst`` 4- or 16-byte addresses)."""
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
        listener = self.listeners.get((dst, seg.dst_port))
        if listener is None:
            listener = self._wildcard_listener(len(dst), seg.dst_port)
        if listener is not None and not listener.closed:
            self._listen_arrives(listener, seg, src, dst, now)
            return
        self.stats["no_connection"] += 1
        self._reset_for(seg, src, dst, now)

    def _wildcard_listener(self, family_len, port):
        """The listener on a wildcard address for a segment of this family (address length):
        ``0.0.0.0``, else a dual-stack ``::``, for IPv4; ``::`` for IPv6."""
        if family_len == 16:
            return self.listeners.get((ANY6, port))
        listener = self.listeners.get((ANY, port))
        if listener is None:
            listener = self.listeners.get((ANY6, port))
            if listener is not None and listener.v6only:
                return None
        return listener

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

    def icmp_error(self, src, dst, transport, code, hard, now, mtu=0):
        """An ICMP or ICMPv6 error quoting one of our segments (RFC 5927, RFC 1122 section
        4.2.3.9, RFC 4443 section 3); ``src``/``dst`` are the quoted packet's addresses (ours
        first), ``transport`` its quoted TCP bytes.  Returns True when a connection took it.

        During a handshake a hard error (unreachable) ends the connect with ``code``, as Linux
        does; on an established connection errors are only soft (the connection goes on).
        ``mtu``: the error is a Fragmentation Needed (RFC 1191) or Packet Too Big (RFC 8201)
        reporting this next-hop MTU: the connection's MSS goes down to fit and what was in
        flight is sent again (Linux's ``tcp_v4_mtu_reduced``/``tcp_v6_mtu_reduced``); it is no
        error for the socket.  A soft EMSGSIZE without ``mtu`` is taken as the same news, the
        MTU read from ``path_mtu`` (the host learnt it first).
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
        if not mtu and code == errno.EMSGSIZE and not hard and self.path_mtu is not None:
            mtu = self.path_mtu(dst, now)
        if mtu:
            if conn.path_mtu_reduced(mtu, now):
                self.stats["pmtu_mss_lowered"] += 1
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
