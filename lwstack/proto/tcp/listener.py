"""A listening TCP endpoint: the SYN queue, SYN cookies and the accept queue.

Design note.  A SYN that reaches a listener creates a connection in SYN-RECEIVED at once (it
answers its own retransmitted SYNs and times out by itself); the listener only counts it in its
SYN queue.  When the handshake completes the connection moves to the accept queue, which holds
at most ``backlog`` connections; while it is full the final ACK is dropped (Linux's behaviour)
so the peer retries.  When the SYN queue is full, SYNs are answered statelessly with SYN
cookies (RFC 4987 section 3.6): the connection is built from the final ACK alone, without the
SYN's window scale, SACK and timestamp options.  Both queues are bounded.
While the accept queue is full and ``backlog`` more connections are half-open, new SYNs are
dropped (Linux's LISTENOVERFLOWS), not answered with cookies.
"""
import collections

from lwstack.proto.tcp import hashes
from lwstack.proto.tcp.connection import CLOSED, ESTABLISHED, SYN_RECEIVED

#: Linux's net.core.somaxconn (the cap on ``listen(backlog)``).
SOMAXCONN = 4096
#: Linux's net.ipv4.tcp_max_syn_backlog default on a small machine.
MAX_SYN_BACKLOG = 256


class TcpListener:
    """A socket in LISTEN state (RFC 9293 section 3.10.7.2)."""

    def __init__(self, table, template, backlog, syn_backlog=MAX_SYN_BACKLOG):
        self.table = table
        self.template = template      # the listening socket's connection: its options
        self.local_addr = template.local_addr
        self.local_port = template.local_port
        self.v6only = template.v6only  # IPV6_V6ONLY: a listener on :: takes no IPv4 SYNs
        self.backlog = max(1, min(backlog, SOMAXCONN))
        self.syn_backlog = syn_backlog
        self.syn_queue = set()
        self.accept_queue = collections.deque()
        self.on_change = None
        self.closed = False

    @property
    def readable(self):
        """True when :meth:`accept` would return a connection (or the listener is closed)."""
        return bool(self.accept_queue) or self.closed

    def can_accept(self):
        """Room in the accept queue for one more established connection."""
        return len(self.accept_queue) < self.backlog

    def accept(self):
        """The oldest established connection, or None."""
        if not self.accept_queue:
            return None
        conn = self.accept_queue.popleft()
        conn.listener = None
        return conn

    def _child(self, remote_addr, remote_port):
        conn = self.table.new_connection(self.template)
        conn.local_addr = self.local_addr
        conn.local_port = self.local_port
        return conn

    def syn_arrives(self, seg, src, dst, now):
        """A SYN for us: a new SYN-RECEIVED connection, or a SYN cookie when the queue is full."""
        if len(self.syn_queue) >= self.syn_backlog:
            if not self.table.syncookies:
                self.table.stats["syn_queue_overflow"] += 1
                return
            self._send_cookie(seg, src, dst, now)
            return
        if not self.can_accept() and len(self.syn_queue) >= self.backlog:
            # Accept queue full: drop the SYN, as Linux does (LISTENOVERFLOWS); the client
            # retries.  A cookie here would fail the client: its final ACK is dropped for
            # want of room, and its FIN (SEG.SEQ past the ISN) no longer validates the cookie.
            self.table.stats["listen_overflow"] += 1
            return
        conn = self._child(src, seg.src_port)
        conn.local_addr = dst
        iss = hashes.initial_sequence(self.table.secret, dst, self.local_port, src,
                                      seg.src_port, now)
        self.table.register(conn, dst, self.local_port, src, seg.src_port)
        self.syn_queue.add(conn)
        conn.open_passive(seg, src, seg.src_port, iss, now, self)

    def _send_cookie(self, seg, src, dst, now):
        table = self.table
        table.stats["syncookies_sent"] += 1
        mss = seg.mss if seg.mss else 536
        ours = table.mss_for_addr(src)
        cookie, mss_used = hashes.syn_cookie(table.secret, dst, self.local_port, src,
                                             seg.src_port, seg.seq, min(mss, ours), now)
        from lwstack.wire.tcp import ACK, SYN, build_options
        options = build_options(mss=ours)
        table.send_raw(dst, src, self.local_port, seg.src_port, cookie, (seg.seq + 1),
                       SYN | ACK, min(self.template.rcvbuf, 0xFFFF), options, now)

    def cookie_ack(self, seg, src, dst, now):
        """An ACK with no connection: a connection if it returns a valid cookie, else False.

        A valid cookie that finds the accept queue full is dropped (True, nothing created), as
        the final ACK of a SYN-RECEIVED child is: the peer's next segment may find room.
        """
        table = self.table
        cookie = (seg.ack - 1) & 0xFFFFFFFF
        client_isn = (seg.seq - 1) & 0xFFFFFFFF
        mss = hashes.check_syn_cookie(table.secret, dst, self.local_port, src, seg.src_port,
                                      client_isn, cookie, now)
        if not mss:
            return False
        if not self.can_accept():
            table.stats["accept_queue_full"] += 1
            return True
        table.stats["syncookies_accepted"] += 1
        conn = self._child(src, seg.src_port)
        conn.local_addr = dst
        table.register(conn, dst, self.local_port, src, seg.src_port)
        conn.open_from_cookie(seg, src, seg.src_port, cookie, mss, now, self)
        if seg.payload or seg.flags & 0x01:
            conn.segment_arrives(seg, now)
        return True

    def child_changed(self, conn):
        """A child's state moved on: established ones queue for accept, dead ones leave."""
        if conn in self.syn_queue and conn.state != SYN_RECEIVED:
            self.syn_queue.discard(conn)
            if conn.state != CLOSED and len(self.accept_queue) < self.backlog:
                self.accept_queue.append(conn)
                if self.on_change is not None:
                    self.on_change(self)
            elif conn.state != CLOSED:
                conn.abort(self.table.now)
        elif conn.state == CLOSED and conn in self.syn_queue:
            self.syn_queue.discard(conn)

    def established_directly(self, conn):
        """A connection built from a SYN cookie: straight to the accept queue."""
        if conn.state == ESTABLISHED and conn not in self.accept_queue:
            self.accept_queue.append(conn)
            if self.on_change is not None:
                self.on_change(self)

    def close(self, now):
        """Stop listening: reset half-open and never-accepted connections (as Linux does)."""
        self.closed = True
        for conn in list(self.syn_queue) + list(self.accept_queue):
            conn.listener = None
            conn.abort(now)
        self.syn_queue.clear()
        self.accept_queue.clear()
        self.table.unlisten(self)
        if self.on_change is not None:
            self.on_change(self)
