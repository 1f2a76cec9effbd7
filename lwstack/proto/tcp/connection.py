"""One TCP connection: RFC 9293's state machine with the RFCs that make it fast and safe.

Design note.

- Sans-IO.  A :class:`TcpConnection` takes segments (:meth:`segment_arrives`), timer ticks
  (:meth:`poll`) and application calls (:meth:`send`, :meth:`recv`, :meth:`shutdown`,
  :meth:`close`, :meth:`abort`), each with ``now``; it emits segments through its table
  (:meth:`TcpTable.output <lwstack.proto.tcp.table.TcpTable.output>`) and says when it next
  needs to run (:meth:`poll_at`).  It calls ``on_change(self)`` whenever an application
  waiting on it may proceed.
- Sequence numbers are unwrapped.  Inside, every sequence number is an absolute Python int
  (the ISN plus the bytes since); 32-bit wrap-around exists only at the wire, where incoming
  numbers are unwrapped against RCV.NXT or SND.UNA.  Comparisons are then plain ``<``.
- The send buffer is one ``bytearray`` holding everything from SND.UNA on, sent or not; its
  first byte is ``_buf_seq`` (ISS+1 after the SYN).  The FIN, once queued, sits at
  ``_fin_seq`` just past the data.  Acknowledged bytes are deleted from the front (CPython
  makes that O(1) amortised).  The receive side is a ``bytearray`` of in-order data plus a
  :class:`~lwstack.storage.reassembly.Reassembler` for out-of-order data.
- Batching.  Input does not send ACKs or new data itself: it marks the connection and the table
  flushes every marked connection once per batch of frames (:meth:`flush`), so a burst of
  segments costs one ACK and one round of transmissions (DESIGN.md section 2).  Application
  calls transmit immediately, from the application's thread.
- Loss recovery is one mechanism: a *pipe* estimate (RFC 6675 section 4) and a *lost
  boundary* below which unSACKed bytes are retransmitted.  SACK recovery (RFC 6675) sets the
  boundary from the scoreboard; without SACK, NewReno (RFC 6582) marks the first unacknowledged
  segment lost on the third duplicate ACK and on each partial ACK, and each duplicate ACK
  counts as one segment that left the network (the classic window inflation); after an RTO
  everything outstanding is lost (go-back-N, skipping SACKed data).
- Congestion control is pluggable (:mod:`lwstack.proto.tcp.congestion`, CUBIC by default);
  RTO per RFC 6298 (:mod:`lwstack.proto.tcp.rtt`), with RTT samples from timestamps
  (RFC 7323 section 4) or, without them, one timed segment at a time with Karn's rule.
- Either family.  Addresses are 4 bytes (IPv4) or 16 (IPv6); the family matters only for the
  MSS (the table's :meth:`~lwstack.proto.tcp.table.TcpTable.mss_for`, and the default of a
  peer that announces none: 536 or 1220, RFC 9293 section 3.7.1) and the frame the table
  builds.  A Packet Too Big / Fragmentation Needed lowers the MSS in flight
  (:meth:`TcpConnection.path_mtu_reduced`).
"""
import errno

from lwstack.proto.tcp import congestion
from lwstack.proto.tcp.rtt import RttEstimator
from lwstack.proto.tcp.scoreboard import Scoreboard
from lwstack.storage.reassembly import Reassembler
from lwstack.wire.tcp import ACK, FIN, PSH, RST, SYN, build_options

MASK = 0xFFFFFFFF
HALF = 0x80000000

# RFC 9293 section 3.3.2 states.
CLOSED = "CLOSED"
SYN_SENT = "SYN-SENT"
SYN_RECEIVED = "SYN-RECEIVED"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN-WAIT-1"
FIN_WAIT_2 = "FIN-WAIT-2"
CLOSE_WAIT = "CLOSE-WAIT"
CLOSING = "CLOSING"
LAST_ACK = "LAST-ACK"
TIME_WAIT = "TIME-WAIT"

#: States in which data may be sent (the peer has acknowledged our SYN, we have not closed).
_CAN_SEND = frozenset((ESTABLISHED, CLOSE_WAIT))
#: States in which we transmit (data, FIN or retransmissions).
_TRANSMITTING = frozenset((ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK))
#: States in which segment text is accepted (RFC 9293 section 3.10.7.4, seventh check).
_RECEIVING = frozenset((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2))
HANDSHAKE = frozenset((SYN_SENT, SYN_RECEIVED))
SYNCHRONIZED = frozenset((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK,
                          TIME_WAIT))

#: Linux's defaults: net.ipv4.tcp_rmem/wmem middle values are 128 KiB / 16 KiB, autotuned up
#: to 6 MiB / 4 MiB.  We do not autotune, so start where a virtual LAN needs to be fast.
DEFAULT_SNDBUF = 1 << 20
DEFAULT_RCVBUF = 1 << 20
MAX_BUFFER = 32 << 20
#: Our window scale: enough for MAX_BUFFER (RFC 7323 section 2.3 caps it at 14).
RCV_WSCALE = 9
#: RFC 9293 section 3.7.1: the MSS to assume when the peer sends none (IPv4; over IPv6 the
#: 1280-byte minimum MTU less 60 bytes of headers, RFC 8200 section 8.3).
DEFAULT_PEER_MSS = 536
DEFAULT_PEER_MSS6 = 1220
#: The smallest path MTUs a Packet Too Big / Fragmentation Needed may bring us down to: IPv6's
#: minimum link MTU (RFC 8200 section 5) and Linux's net.ipv4.route.min_pmtu.
MIN_PATH_MTU6 = 1280
MIN_PATH_MTU4 = 552
#: Delayed ACK: at most this long (RFC 9293 section 3.8.6.3 says < 0.5 s; Linux uses 40 ms).
DELAYED_ACK = 0.04
#: Retransmissions before giving up: Linux's tcp_syn_retries, tcp_synack_retries, tcp_retries2.
SYN_RETRIES = 6
SYNACK_RETRIES = 5
DATA_RETRIES = 15
#: RFC 5681 section 3.2 duplicate-ACK threshold.
DUP_THRESH = 3
#: Persist timer bounds (RFC 9293 section 3.8.6.1; Linux: RTO-based, capped at 120 s).
PERSIST_MAX = 60.0
#: How long an orphaned connection (socket closed) may sit in FIN-WAIT-2 (Linux tcp_fin_timeout).
FIN_TIMEOUT = 60.0
#: RFC 5961 section 7: at most this many challenge ACKs per second per connection.
CHALLENGE_ACK_LIMIT = 10
#: Out-of-order ranges held at most: a peer sending tiny segments with gaps cannot make the
#: reassembler (or our SACK work) grow without bound; beyond it, segments are dropped and counted.
REASSEMBLY_BLOCKS = 1024
#: Retransmissions remembered during one SACK recovery for lost-retransmission detection.
LOST_RETRANSMIT_LOG = 1024
#: Timestamps tick in milliseconds (RFC 7323 section 5.4 allows 1 ms to 1 s).
TS_HZ = 1000


def _fail(code):
    import os
    return OSError(code, os.strerror(code))


def _endpoint_text(addr, port):
    """``10.0.0.1:80`` or ``[fd00::1]:80``, for repr()."""
    if len(addr) == 4:
        return f"{'.'.join(map(str, addr))}:{port}"
    import ipaddress
    return f"[{ipaddress.IPv6Address(bytes(addr))}]:{port}"


class TcpConnection:
    """One TCP connection's TCB and its behaviour (see the module design note)."""

    def __init__(self, table, local_addr=b"\0\0\0\0", local_port=0):
        self.table = table
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = None
        self.remote_port = 0
        self.state = CLOSED
        self.on_change = None
        self.listener = None          # the listener that made us, until accepted
        self.orphaned = False         # the application closed its socket
        self.error = 0                # pending errno, reported once (SO_ERROR)
        self.soft_error = 0           # last ICMP error: reported if the connection times out
        self.reset = False            # ended by RST or a fatal error: no more data either way
        # -- socket options (settable before connect/listen; copied to accepted sockets) ----
        self.sndbuf = DEFAULT_SNDBUF
        self.rcvbuf = DEFAULT_RCVBUF
        self.nodelay = False
        self.keepalive = False
        self.keepidle = 7200.0
        self.keepintvl = 75.0
        self.keepcnt = 9
        self.congestion_name = congestion.DEFAULT
        self.linger = None            # None, or seconds (0: abort on close)
        self.reuse_addr = False
        self.user_timeout = 0.0       # TCP_USER_TIMEOUT in seconds, 0: off
        self.v6only = False           # IPV6_V6ONLY: bound to ::, IPv4 is not ours (table)
        # -- send sequence space (absolute ints) -----------------------------------------------
        self.iss = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0
        self._buf = bytearray()
        self._buf_seq = 0
        self._fin_queued = False
        self._fin_seq = 0
        # -- receive sequence space -----------------------------------------------------------
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0              # right edge of the window we advertised
        self.rcv_wscale = 0
        self._rcvq = bytearray()
        self._reasm = None
        self._fin_received = False
        self._ooo_fin = None          # sequence of a FIN that arrived ahead of data
        # -- negotiated options -----------------------------------------------------------------
        self.mss = DEFAULT_PEER_MSS   # payload bytes per segment we send (options excluded)
        self.peer_mss = DEFAULT_PEER_MSS
        self.rcv_mss = DEFAULT_PEER_MSS  # largest segment seen, for delayed ACK decisions
        self.path_mss = 0             # the MSS a Packet Too Big allows (0: no such limit)
        self.ts_ok = False
        self.sack_ok = False
        self.ts_recent = 0
        self._ts_offset = 0
        self._last_ack_sent = 0
        # -- timers and recovery ----------------------------------------------------------------
        self.rtt = RttEstimator()
        self.cc = None
        self.scoreboard = Scoreboard()
        self._rtt_seq = None          # without timestamps: the segment being timed
        self._rtt_time = 0.0
        self.recovery = None          # None, "fast", "rto" or "pmtu" (resending after a PTB)
        self._recover = 0             # RFC 6582 "recover"
        self._high_rxt = 0            # highest byte retransmitted in this recovery
        self._lost_to = 0             # unSACKed bytes below this are lost
        self._dupacks = 0
        self._rtx_log = []            # SACK recovery: (start, end, SND.NXT when resent)
        self._relost = []             # retransmissions found lost again, to resend first
        self._retries = 0
        self._first_rtx_time = None
        self.rto_at = None
        self.persist_at = None
        self._persist_interval = 0.0
        self._probes_unanswered = 0   # zero-window probes since the peer last ACKed
        self.delack_at = None
        self.keepalive_at = None
        self._keepalive_probes = 0
        self.timewait_at = None
        self.fin_wait_2_at = None
        self._ack_now = False
        self._unacked_bytes = 0
        self._challenge_window = 0.0
        self._challenge_count = 0
        self._last_heard = 0.0
        self._syn_time = None         # when the (first) SYN left, for an RTT sample
        self._ts_floor = None         # timestamp of the last RTO: older echoes are no samples
        self._force_rtx = False       # retransmit the first lost segment whatever the cwnd
        self._link = None             # cached Ethernet+IP header (the table's fast path)
        self._link_valid_until = float("-inf")
        self._ip_ident = 0            # IPv4 identification; -1 on IPv6 connections
        self._scheduled = None        # the table's timer heap bookkeeping
        self._pending = False         # in the table's flush set

    # -- status for the socket layer ------------------------------------------------------------

    @property
    def readable(self):
        """True when :meth:`recv` would not block (data, end of stream or an error)."""
        return bool(self._rcvq) or self._fin_received or bool(self.error) or self.reset \
            or self.state == CLOSED

    @property
    def writable(self):
        """True when :meth:`send` would accept bytes (or fail at once)."""
        if self.error or self.reset or self.state not in _CAN_SEND:
            return self.state not in (SYN_SENT, SYN_RECEIVED)
        return len(self._buf) < self.sndbuf

    @property
    def connected(self):
        """True once the three-way handshake completed (it may have closed since)."""
        return self.state in SYNCHRONIZED or (self.state == CLOSED and self.rcv_nxt != 0)

    @property
    def unsent_bytes(self):
        """Bytes queued that were never sent (SIOCOUTQNSD)."""
        return max(0, self._buf_seq + len(self._buf) - max(self.snd_nxt, self._buf_seq))

    @property
    def send_queue_bytes(self):
        """Bytes in the send buffer, sent or not, not yet acknowledged (SIOCOUTQ)."""
        return len(self._buf)

    @property
    def receive_queue_bytes(self):
        """In-order bytes waiting for the application (SIOCINQ)."""
        return len(self._rcvq)

    def pop_error(self):
        """Return and clear the pending error (0 if none), like ``SO_ERROR``."""
        code, self.error = self.error, 0
        return code

    def __repr__(self):
        remote = f"{_endpoint_text(self.remote_addr, self.remote_port)}" \
            if self.remote_addr else "-"
        return (f"<TcpConnection {_endpoint_text(self.local_addr, self.local_port)} -> "
                f"{remote} {self.state}>")

    # -- opening ------------------------------------------------------------------------------

    def _setup(self, now):
        """Sizes that depend on the options fixed at open time."""
        self._reasm = Reassembler(max(self.rcvbuf, 65536), max_blocks=REASSEMBLY_BLOCKS)
        self.rcv_wscale = RCV_WSCALE
        self._ts_offset = self.table.ts_offset(self)
        self._last_heard = now

    def open_active(self, remote_addr, remote_port, iss, now):
        """Send a SYN (RFC 9293 section 3.10.1, active OPEN)."""
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self._setup(now)
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss + 1
        self._buf_seq = iss + 1
        self._recover = iss
        self.state = SYN_SENT
        self._send_syn(now)
        self._arm_rto(now)
        self.table.reschedule(self)

    def open_passive(self, syn, remote_addr, remote_port, iss, now, listener):
        """Answer a SYN that reached a listener with a SYN-ACK (section 3.10.7.2)."""
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.listener = listener
        self._setup(now)
        self.irs = syn.seq
        self.rcv_nxt = syn.seq + 1
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss + 1
        self._buf_seq = iss + 1
        self._recover = iss
        self._take_syn_options(syn)
        self.snd_wnd = syn.window   # never scaled in a SYN (RFC 7323 section 2.2)
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = syn.seq
        self.snd_wl2 = iss
        self.state = SYN_RECEIVED
        self._send_syn(now)
        self._arm_rto(now)
        self.table.reschedule(self)

    def open_from_cookie(self, ack_segment, remote_addr, remote_port, iss, mss, now, listener):
        """Create an ESTABLISHED connection from a valid SYN cookie's ACK (RFC 4987 3.6).

        The SYN's other options were not kept, so window scaling, SACK and timestamps are off.
        """
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.listener = listener
        self._setup(now)
        self.rcv_wscale = 0
        self.irs = (ack_segment.seq - 1) & MASK
        self.rcv_nxt = ack_segment.seq
        self.iss = iss
        self.snd_una = iss + 1
        self.snd_nxt = iss + 1
        self._buf_seq = iss + 1
        self._recover = iss
        self.peer_mss = mss
        self.mss = min(mss, self.table.mss_for(self))
        self.snd_wnd = ack_segment.window
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = self.rcv_nxt
        self.snd_wl2 = self.snd_una
        self.rcv_adv = self.rcv_nxt + min(self.rcvbuf, 0xFFFF)
        self._established(now)

    def _take_syn_options(self, syn):
        """Negotiate MSS, window scale, SACK and timestamps from the peer's SYN (or SYN-ACK)."""
        self.peer_mss = syn.mss if syn.mss else \
            (DEFAULT_PEER_MSS if len(self.remote_addr) == 4 else DEFAULT_PEER_MSS6)
        if syn.wscale >= 0:
            # RFC 7323 section 2.3: a shift above 14 is used as 14 (and logged, by Linux).
            self.snd_wscale = min(syn.wscale, 14)
        else:
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self.sack_ok = syn.sack_permitted and self.table.sack_enabled
        self.ts_ok = syn.has_timestamps and self.table.timestamps_enabled
        if self.ts_ok:
            self.ts_recent = syn.ts_val
        mss = min(self.peer_mss, self.table.mss_for(self))
        self.mss = mss - 12 if self.ts_ok else mss   # RFC 6691: options come out of the MSS

    def _established(self, now):
        self.state = ESTABLISHED
        self.cc = congestion.make(self.congestion_name, self.mss, now)
        if self._retries and self.rtt.samples == 0:
            # RFC 6298 section 5.7: the SYN (or SYN-ACK) timed out and gave no sample.
            self.rtt = RttEstimator(initial_rto=3.0)
        self._retries = 0
        self._first_rtx_time = None
        self.rto_at = None
        self._arm_keepalive(now)
        self.table.established(self)
        self._notify()

    # -- application calls ----------------------------------------------------------------------

    def send(self, data, now):
        """Queue as much of ``data`` as fits in the send buffer; return how much was taken.

        Raises ``OSError``: EPIPE after the send side was shut down or the connection reset
        (the socket layer turns it into ``BrokenPipeError``), ENOTCONN before a connection.
        """
        if self.error:
            raise _fail(self.pop_error())
        if self.reset or self._fin_queued or self.state not in _CAN_SEND:
            if self.state in (SYN_SENT, SYN_RECEIVED):
                return 0
            raise _fail(errno.EPIPE if self.reset or self._fin_queued or self.connected
                        else errno.ENOTCONN)
        room = self.sndbuf - len(self._buf)
        if room <= 0:
            return 0
        n = len(data)
        if n > room:
            data = data[:room]
            n = room
        self._buf += data
        self._push(now)
        self.table.reschedule(self)
        return n

    def recv(self, size, now, peek=False):
        """Take up to ``size`` in-order bytes; ``b""`` at the end of the stream.

        Returns None when nothing is available yet (the caller waits).  Raises the pending
        error (ECONNRESET, ETIMEDOUT, ...) once.
        """
        queue = self._rcvq
        if not queue:
            if self.error:
                raise _fail(self.pop_error())
            if self._fin_received or self.reset or self.state == CLOSED:
                return b""
            return None
        if peek:
            return bytes(queue[:size])
        if size >= len(queue):
            data = bytes(queue)
            queue.clear()
        else:
            data = bytes(queue[:size])
            del queue[:size]
        self._window_opened(now)
        return data

    def recv_into(self, view, now):
        """Copy in-order bytes into ``view`` (a writable memoryview); like :meth:`recv`."""
        queue = self._rcvq
        if not queue:
            if self.error:
                raise _fail(self.pop_error())
            if self._fin_received or self.reset or self.state == CLOSED:
                return 0
            return None
        n = min(len(view), len(queue))
        view[:n] = queue[:n]
        del queue[:n]
        self._window_opened(now)
        return n

    def _window_opened(self, now):
        """After the application read: announce a window that grew enough (RFC 9293 3.8.6.2.2)."""
        if self.state not in _RECEIVING or self._fin_received:
            return
        current = self.rcv_adv - self.rcv_nxt
        free = self.rcvbuf - len(self._rcvq) - self._reasm.bytes_held
        free = min(free, 0xFFFF << self.rcv_wscale)   # the most the window field can say
        if free - current >= max(2 * self.rcv_mss, self.rcvbuf // 4) or \
                (current < self.rcv_mss <= free):
            self._send_ack(now)
            self.table.reschedule(self)

    def shutdown(self, now):
        """Close the sending side: FIN after every queued byte (RFC 9293 section 3.10.4)."""
        if self.state in (CLOSED, SYN_SENT) and not self.connected:
            self._enter_closed()
            return
        if self._fin_queued or self.state not in (SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT):
            return
        self._fin_queued = True
        self._fin_seq = self._buf_seq + len(self._buf)
        if self.state == CLOSE_WAIT:
            self.state = LAST_ACK
        elif self.state == ESTABLISHED:
            self.state = FIN_WAIT_1
        # In SYN-RECEIVED the FIN waits for the handshake (section 3.10.4).
        self._push(now)
        self.table.reschedule(self)

    def close(self, now):
        """The application closed its socket (RFC 9293 section 3.10.4).

        Unread received data, or ``SO_LINGER`` with a zero timeout, abort with RST (RFC 2525
        section 2.17, as Linux does); otherwise the connection lives on, orphaned, until every
        queued byte and the FIN are acknowledged.
        """
        self.orphaned = True
        if self.state in (CLOSED, TIME_WAIT):
            self._enter_closed() if self.state == CLOSED else None
            return
        if self._rcvq or self.linger == 0:
            self.table.stats["abort_on_close"] += 1
            self.abort(now)
            return
        if self.state == SYN_SENT:
            self._enter_closed()
            return
        self.shutdown(now)
        if self.state == FIN_WAIT_2:
            self.fin_wait_2_at = now + FIN_TIMEOUT
        self.table.reschedule(self)

    def abort(self, now, code=0):
        """Send RST if synchronized and drop the connection (section 3.10.5, ABORT)."""
        if self.state in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self._emit(RST | ACK, self.snd_nxt, now)
            self.table.stats["rst_sent"] += 1
        if code:
            self.error = code
        self.reset = True
        self._enter_closed()

    # -- timers ----------------------------------------------------------------------------------

    def poll_at(self):
        """The earliest time this connection has timer work, or None."""
        best = None
        for t in (self.rto_at, self.persist_at, self.delack_at, self.keepalive_at,
                  self.timewait_at, self.fin_wait_2_at):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def poll(self, now):
        """Run the timers that are due at ``now``."""
        if self.timewait_at is not None and now >= self.timewait_at:
            self.timewait_at = None
            self._enter_closed()
            return
        if self.fin_wait_2_at is not None and now >= self.fin_wait_2_at:
            self.fin_wait_2_at = None
            if self.state == FIN_WAIT_2:
                self.table.stats["fin_wait_2_timeout"] += 1
                self._enter_closed()
                return
        if self.rto_at is not None and now >= self.rto_at:
            self.rto_at = None
            self._retransmit_timeout(now)
        if self.persist_at is not None and now >= self.persist_at:
            self.persist_at = None
            self._persist_timeout(now)
        if self.keepalive_at is not None and now >= self.keepalive_at:
            self.keepalive_at = None
            self._keepalive_timeout(now)
        if self.delack_at is not None and now >= self.delack_at:
            self.delack_at = None
            if self._unacked_bytes or self._ack_now:
                self._send_ack(now)
        if self.state != CLOSED:
            self.table.reschedule(self)

    def _arm_rto(self, now):
        self.rto_at = now + self.rtt.rto

    def _retransmit_timeout(self, now):
        """RFC 6298 section 5.4-5.7 and RFC 5681 section 3.1 (loss window)."""
        state = self.state
        if state in (SYN_SENT, SYN_RECEIVED):
            limit = SYN_RETRIES if state == SYN_SENT else SYNACK_RETRIES
            if self._retries >= limit:
                self._fatal(errno.ETIMEDOUT, now)
                return
            self._retries += 1
            self.rtt.backoff()
            self.table.stats["syn_retransmitted"] += 1
            self._send_syn(now)
            self._arm_rto(now)
            return
        outstanding = self.snd_nxt - self.snd_una
        if outstanding <= 0 or state not in _TRANSMITTING:
            return
        if self.snd_wnd == 0 and outstanding <= 1:
            # Only a window probe is out: the persist timer owns it.  Counting it as a loss
            # would time out a connection whose reader is merely slow (Linux probes for as
            # long as the probes are answered).
            if self.persist_at is None:
                self._persist_interval = self._persist_interval or max(self.rtt.rto, 0.2)
                self.persist_at = now + self._persist_interval
            return
        if self._first_rtx_time is None:
            self._first_rtx_time = now
        if self._retries >= DATA_RETRIES or (
                self.user_timeout and now - self._first_rtx_time >= self.user_timeout):
            self._fatal(errno.ETIMEDOUT, now)
            return
        self._retries += 1
        self.table.stats["rto_expired"] += 1
        self.cc.on_rto(now, self._pipe())
        self.rtt.backoff()
        self._rtt_seq = None           # Karn: no sample from what we retransmit
        self.recovery = "rto"
        self._ts_floor = self._ts_now(now)
        self._rtx_log.clear()
        self._relost.clear()
        self._recover = self.snd_nxt
        self._high_rxt = self.snd_una
        self._lost_to = self.snd_nxt
        self._dupacks = 0
        self._push(now)
        if self.rto_at is None:
            self._arm_rto(now)

    def path_mtu_reduced(self, mtu, now):
        """A router could not forward one of our segments: the path MTU is ``mtu`` (ICMPv6
        Packet Too Big, RFC 8201; ICMP Fragmentation Needed, RFC 1191).  Returns True when
        the MSS went down.

        The MSS shrinks to fit (never below what IPv6's 1280-byte minimum or Linux's IPv4
        floor of 552 allow, and never up: RFC 8201 section 4), and what is in flight is resent
        at the new size at once, as Linux's ``tcp_simple_retransmit`` does: those segments were
        dropped for their size, not for congestion, so the congestion window is left alone.
        Linux resends only the segments larger than the new MSS; the send buffer here does not
        remember segment boundaries, so everything in flight is resent, unless it is no more
        than one new MSS (then every segment in flight fits).  The MSS is not raised again
        for the life of the connection.
        """
        v6 = len(self.remote_addr) == 16
        mtu = max(mtu, MIN_PATH_MTU6 if v6 else MIN_PATH_MTU4)
        cap = mtu - (60 if v6 else 40)
        if self.path_mss and cap >= self.path_mss:
            return False
        self.path_mss = cap
        if self.state == SYN_SENT or self.state == CLOSED:
            return False                  # the SYN-ACK's MSS will be taken within this limit
        mss = min(self.peer_mss, cap)
        if self.ts_ok:
            mss -= 12                     # RFC 6691, as in _take_syn_options
        if mss >= self.mss:
            return False
        self.mss = mss
        if self.cc is not None:
            self.cc.set_mss(mss)
        if self.state in _TRANSMITTING and self.snd_nxt - self.snd_una > mss:
            self.table.stats["pmtu_retransmits"] += 1
            if self.recovery is None:
                self.recovery = "pmtu"
                self._recover = self.snd_nxt
            self._rtt_seq = None          # Karn: no sample from what we resend
            self._rtx_log.clear()
            self._relost.clear()
            self._high_rxt = self.snd_una
            self._lost_to = self.snd_nxt
            self._force_rtx = True
            self._push(now)
            self.table.reschedule(self)
        return True

    def _persist_timeout(self, now):
        """Probe a zero window with one octet of new data (RFC 9293 section 3.8.6.1)."""
        if self.state not in _TRANSMITTING:
            return
        if self.snd_wnd > 0:
            # The override timeout (section 3.8.6.2.1): a window too small for sender SWS
            # avoidance, nothing in flight.  Send what it allows; the ACK says what opened
            # since (a lost window update would otherwise leave both sides waiting).
            room = self.snd_una + self.snd_wnd - self.snd_nxt
            if self.snd_nxt == self.snd_una and room > 0 and self.snd_nxt < self._stream_end():
                self.table.stats["window_probes"] += 1
                self.snd_nxt += self._send_range(self.snd_nxt, min(room, self.mss), now)
                if self.rto_at is None:
                    self._arm_rto(now)
            return
        if self._probes_unanswered >= DATA_RETRIES:
            self._fatal(errno.ETIMEDOUT, now)           # nobody answers our probes any more
            return
        self._probes_unanswered += 1
        self.table.stats["window_probes"] += 1
        if self.snd_nxt > self.snd_una:
            self._send_range(self.snd_una, 1, now)     # the previous probe, again
        elif self.snd_nxt < self._stream_end():
            self._send_range(self.snd_nxt, 1, now)
            self.snd_nxt += 1
        self._persist_interval = min(self._persist_interval * 2, PERSIST_MAX)
        self.persist_at = now + self._persist_interval

    def _arm_keepalive(self, now):
        if self.keepalive and self.state in SYNCHRONIZED and self.state != TIME_WAIT:
            base = self._last_heard if self._keepalive_probes == 0 else now
            interval = self.keepidle if self._keepalive_probes == 0 else self.keepintvl
            self.keepalive_at = max(now, base + interval) if self._keepalive_probes == 0 \
                else now + interval
        else:
            self.keepalive_at = None

    def _keepalive_timeout(self, now):
        """RFC 9293 section 3.8.4 / RFC 1122 4.2.3.6: probe an idle peer, give up after keepcnt."""
        if not self.keepalive or self.state not in SYNCHRONIZED or self.state == TIME_WAIT:
            return
        if self._keepalive_probes == 0 and now - self._last_heard < self.keepidle:
            self.keepalive_at = self._last_heard + self.keepidle
            return
        if self._keepalive_probes >= self.keepcnt:
            self._fatal(errno.ETIMEDOUT, now)
            return
        self._keepalive_probes += 1
        self.table.stats["keepalive_probes"] += 1
        # A segment one octet below SND.NXT with no data: the peer must answer with an ACK.
        self._emit(ACK, self.snd_una - 1, now)
        self.keepalive_at = now + self.keepintvl

    def set_keepalive(self, enabled, now):
        """SO_KEEPALIVE changed (or one of its intervals)."""
        self.keepalive = enabled
        self._keepalive_probes = 0
        self._arm_keepalive(now)
        self.table.reschedule(self)

    # -- segment arrival (RFC 9293 section 3.10.7) ---------------------------------------------------

    def segment_arrives(self, seg, now):
        """Process one segment for this connection (never LISTEN: see the listener)."""
        state = self.state
        if state == ESTABLISHED and self._predicted(seg, now):
            return
        if state == SYN_SENT:
            self._syn_sent_arrives(seg, now)
            self.table.reschedule(self)
            return
        if state == CLOSED:
            return
        flags = seg.flags
        seq = self.rcv_nxt + (((seg.seq - self.rcv_nxt) + HALF) & MASK) - HALF
        payload = seg.payload
        length = len(payload)
        # RFC 7323 section 5.3: PAWS, before anything else (not for RST, Linux's choice).
        if self.ts_ok and seg.has_timestamps and not flags & RST and \
                ((seg.ts_val - self.ts_recent) & MASK) >= HALF:
            self.table.stats["paws_rejected"] += 1
            self._challenge_ack(now)
            return
        # First check: sequence number acceptability.
        seg_len = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        window = self.rcv_adv - self.rcv_nxt
        rcv_nxt = self.rcv_nxt
        if seg_len == 0:
            acceptable = seq == rcv_nxt if window <= 0 else rcv_nxt <= seq < rcv_nxt + window
        elif window <= 0:
            acceptable = False
        else:
            end = seq + seg_len - 1
            acceptable = (rcv_nxt <= seq < rcv_nxt + window) or (rcv_nxt <= end < rcv_nxt + window)
        if not acceptable:
            if flags & RST:
                self.table.stats["rst_out_of_window"] += 1
                return
            self.table.stats["segment_out_of_window"] += 1
            if state == TIME_WAIT and flags & FIN:
                self.timewait_at = now + self.table.time_wait   # a retransmitted FIN
            if state == SYN_RECEIVED and flags & SYN and not flags & ACK and seq == self.irs:
                self._send_syn(now)       # the peer's SYN again: it did not see our SYN-ACK
                return
            self._ack_now = True
            self._send_ack(now)
            return
        self._last_heard = now
        if self._keepalive_probes:
            self._keepalive_probes = 0
        if self.keepalive:
            self._arm_keepalive(now)
        # Second check: RST (RFC 5961 section 3.2: exact match resets, in-window challenges).
        if flags & RST:
            if seq != rcv_nxt:
                self.table.stats["rst_challenged"] += 1
                self._challenge_ack(now)
                return
            self.table.stats["rst_received"] += 1
            if state == SYN_RECEIVED and self.listener is not None:
                self._enter_closed()      # back to LISTEN: the listener simply forgets us
                return
            self.reset = True
            if state not in (CLOSING, LAST_ACK, TIME_WAIT):
                self.error = errno.ECONNREFUSED if state == SYN_RECEIVED else errno.ECONNRESET
            self._enter_closed()
            return
        # Fourth check: SYN in a synchronized state (RFC 5961 section 4.2: challenge ACK).
        if flags & SYN:
            if state == SYN_RECEIVED and seq == self.irs:
                self._send_syn(now)       # the peer did not see our SYN-ACK
                return
            self.table.stats["syn_challenged"] += 1
            self._challenge_ack(now)
            return
        # Fifth check: the ACK field.
        if not flags & ACK:
            self.table.stats["segment_without_ack"] += 1
            return
        if self.ts_ok and seg.has_timestamps and seq <= self._last_ack_sent < seq + max(seg_len, 1):
            self.ts_recent = seg.ts_val   # RFC 7323 section 4.3
        ack = self.snd_una + (((seg.ack - self.snd_una) + HALF) & MASK) - HALF
        if state == SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_nxt:
                self._emit(RST, ack, now)  # section 3.10.7.4: <SEQ=SEG.ACK><CTL=RST>
                self.table.stats["rst_sent"] += 1
                return
            self.snd_una = ack if ack <= self._buf_seq else self._buf_seq
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if self.listener is not None and not self.listener.can_accept():
                # Linux drops the ACK while the accept queue is full; the SYN-ACK timer and
                # the peer's retransmissions bring it back later.
                self.table.stats["accept_queue_full"] += 1
                self.snd_una = self.iss
                return
            if self.ts_ok and seg.has_timestamps and seg.ts_ecr:
                self._rtt_sample_ts(seg.ts_ecr, now)
            self._established(now)
            state = self.state
            if self._fin_queued:          # shutdown() while the handshake was in progress
                self.state = state = FIN_WAIT_1
                self._mark_pending()      # the FIN goes out with this batch
        if not self._process_ack(seg, ack, seq, length, now):
            return
        state = self.state
        if state == CLOSED:
            return
        # Seventh: segment text.
        if length and state in _RECEIVING:
            if self.orphaned and (state == FIN_WAIT_2 or state == FIN_WAIT_1):
                # Nobody will read it: Linux resets (tcp_rcv_state_process, "data after close").
                self.table.stats["data_after_close"] += 1
                self.abort(now)
                return
            self._receive_data(seq, payload, now)
        elif length and state in (CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT):
            self._ack_now = True          # retransmitted data after the peer's FIN
        # Eighth: FIN.
        if flags & FIN:
            self._receive_fin(seq + length, now)
        if self._ack_now or self._unacked_bytes:
            self._mark_pending()

    def _predicted(self, seg, now):
        """Header prediction (Jacobson's fast path, Linux's tcp_rcv_established): the next
        in-order segment of an ESTABLISHED connection, with nothing unusual about it, skips the
        general checks of section 3.10.7.4.  Returns False (nothing done) when the segment
        needs them: other flags, out of order, outside the window, an old timestamp, SACK
        blocks, a duplicate ACK, recovery or keepalive in progress, held out-of-order data.
        """
        flags = seg.flags
        if flags & ~PSH != ACK or seg.seq != self.rcv_nxt & MASK or seg.sack_blocks or \
                self.recovery is not None or self.keepalive or self._reasm or self.orphaned:
            return False
        ts_ok = self.ts_ok
        if ts_ok and not (seg.has_timestamps and ((seg.ts_val - self.ts_recent) & MASK) < HALF):
            return False
        snd_una = self.snd_una
        ack = snd_una + (((seg.ack - snd_una) + HALF) & MASK) - HALF
        payload = seg.payload
        length = len(payload)
        rcv_nxt = self.rcv_nxt
        if ack > self.snd_nxt or ack < snd_una or (ack == snd_una and not length) or \
                rcv_nxt + length > self.rcv_adv:
            return False
        self._last_heard = now
        if ts_ok and rcv_nxt <= self._last_ack_sent < rcv_nxt + (length or 1):
            self.ts_recent = seg.ts_val       # RFC 7323 section 4.3
        self._probes_unanswered = 0
        if ack > snd_una:
            self._new_ack(seg, ack, now)
        if self.snd_wl1 < rcv_nxt or (self.snd_wl1 == rcv_nxt and self.snd_wl2 <= ack):
            self._update_window(seg.window << self.snd_wscale, rcv_nxt, ack)
        if length:
            self._receive_data(rcv_nxt, payload, now)
            if self._ack_now or self._unacked_bytes:
                self._mark_pending()
        return True

    def _update_window(self, window, seq, ack):
        """Take the peer's window from an acceptable newer segment (section 3.10.7.4)."""
        if window > self.snd_wnd:
            self._mark_pending()              # room to send again
        self.snd_wnd = window
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        if window > self.max_snd_wnd:
            self.max_snd_wnd = window
        if window and self.persist_at is not None:
            self.persist_at = None
            self._persist_interval = 0.0
            self._mark_pending()

    def _syn_sent_arrives(self, seg, now):
        """RFC 9293 section 3.10.7.3."""
        flags = seg.flags
        ack = self.snd_una + (((seg.ack - self.snd_una) + HALF) & MASK) - HALF
        if flags & ACK and not self.iss < ack <= self.snd_nxt:
            if not flags & RST:
                self._emit(RST, ack, now)
                self.table.stats["rst_sent"] += 1
            return
        if flags & RST:
            if flags & ACK:               # RFC 5961 section 3.2: only with an acceptable ACK
                self.table.stats["rst_received"] += 1
                self.error = errno.ECONNREFUSED
                self.reset = True
                self._enter_closed()
            return
        if not flags & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = seg.seq + 1
        self.rcv_adv = self.rcv_nxt + min(self.rcvbuf, 0xFFFF)
        self._take_syn_options(seg)
        self._last_heard = now
        if flags & ACK:
            self.snd_una = ack
            self.snd_wnd = seg.window     # never scaled in a SYN-ACK (RFC 7323 section 2.2)
            self.snd_wl1 = self.rcv_nxt - 1
            self.snd_wl2 = ack
            self.max_snd_wnd = self.snd_wnd
            if self.ts_ok and seg.ts_ecr:
                self._rtt_sample_ts(seg.ts_ecr, now)
            elif self._syn_time is not None:
                self.rtt.sample(now - self._syn_time)
            self._established(now)
            self._send_ack(now)
            self._push(now)
        else:
            # Simultaneous open (section 3.5, figure 8): SYN-RECEIVED, answer SYN-ACK.
            self.snd_wnd = seg.window
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = self.snd_una
            self.state = SYN_RECEIVED
            self._send_syn(now)

    def _process_ack(self, seg, ack, seq, length, now):
        """Fifth check, ESTABLISHED and later (section 3.10.7.4); False: drop the segment."""
        snd_una = self.snd_una
        if ack > self.snd_nxt:
            # RFC 5961 section 5.2: acknowledges data never sent.
            self.table.stats["ack_too_new"] += 1
            self._challenge_ack(now)
            return False
        if ack < snd_una - self.max_snd_wnd:
            self.table.stats["ack_too_old"] += 1
            self._challenge_ack(now)
            return False
        state = self.state
        self._probes_unanswered = 0   # the peer is alive (persist timer, section 3.8.6.1)
        newly_sacked = 0
        if self.sack_ok and seg.sack_blocks and state in _TRANSMITTING:
            base = snd_una
            blocks = [(base + (((l - base) + HALF) & MASK) - HALF,
                       base + (((r - base) + HALF) & MASK) - HALF) for l, r in seg.sack_blocks]
            newly_sacked = self.scoreboard.update(snd_una, self.snd_nxt, blocks)
            if newly_sacked and self._rtx_log:
                self._detect_lost_retransmissions()
        window = seg.window << self.snd_wscale
        if ack > snd_una:
            self._new_ack(seg, ack, now)
            if newly_sacked and self.recovery is None and self.snd_nxt > self.snd_una:
                # RFC 6675 section 5: with new SACK information a cumulative ACK is also a
                # duplicate, and IsLost(HighACK + 1) may start recovery.
                self._duplicate_ack(now)
        elif ack == snd_una and self.snd_nxt > snd_una and state in _TRANSMITTING and (
                newly_sacked or (not length and not seg.flags & FIN and window == self.snd_wnd
                                 and window)):
            # RFC 6675 section 2: an ACK with new SACK information is a duplicate even if it
            # carries data or changes the window.  A zero window's ACKs answer our window
            # probes: no sign of loss (and nothing may be retransmitted into it anyway).
            self._duplicate_ack(now)
        # Window update (section 3.10.7.4): newer segment, or same segment with a newer ACK.
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            self._update_window(window, seq, ack)
        # Our FIN acknowledged?
        if self._fin_queued and self.snd_una > self._fin_seq:
            if state == FIN_WAIT_1:
                self.state = FIN_WAIT_2
                if self.orphaned:
                    self.fin_wait_2_at = now + FIN_TIMEOUT
                self._notify()
            elif state == CLOSING:
                self._enter_time_wait(now)
            elif state == LAST_ACK:
                self._enter_closed()
                return False
        if state == TIME_WAIT and seg.flags & FIN:
            self._ack_now = True
            self.timewait_at = now + self.table.time_wait
        return True

    def _new_ack(self, seg, ack, now):
        """SND.UNA < SEG.ACK <= SND.NXT: new data acknowledged."""
        acked = ack - self.snd_una
        # RTT sample: timestamps (RFC 7323 section 4.1) or the timed segment (Karn's rule).
        if self.ts_ok and seg.has_timestamps and seg.ts_ecr:
            self._rtt_sample_ts(seg.ts_ecr, now)
        elif self._rtt_seq is not None and ack > self._rtt_seq:
            self.rtt.sample(now - self._rtt_time)
            self._rtt_seq = None
        buffered_end = self._buf_seq + len(self._buf)
        data_acked = min(ack, buffered_end) - self._buf_seq
        if data_acked > 0:
            del self._buf[:data_acked]
            self._buf_seq += data_acked
            self._notify()                # room in the send buffer
        self.snd_una = ack
        self.scoreboard.prune(ack)
        self._retries = 0
        self._first_rtx_time = None
        if self.recovery is not None:
            if ack >= self._recover:
                if self.recovery != "pmtu":   # a PTB made no congestion response to end
                    self.cc.on_recovery_exit(now)
                self.recovery = None      # RFC 6582 section 3.2 step 3: full acknowledgment
                self._rtx_log.clear()
                self._relost.clear()
                self._dupacks = 0
            elif self.recovery == "fast":
                # Partial ACK (RFC 6582 step 4 / RFC 6675 section 5): the next hole is lost.
                self._dupacks = 0
                if not self.sack_ok:
                    self._lost_to = max(self._lost_to, min(ack + self.mss, self.snd_nxt))
                    self._high_rxt = ack
                    self._force_rtx = True
            else:
                self.cc.on_ack(acked, now, self.rtt.srtt, False)   # slow start after RTO
        else:
            self._dupacks = 0
            self.cc.on_ack(acked, now, self.rtt.srtt, False)
        if self.recovery is not None:
            self._refresh_lost()
        # RFC 6298 section 5.2/5.3: stop when all is acknowledged, else restart.
        if self.snd_una >= self.snd_nxt:
            self.rto_at = None
        else:
            self._arm_rto(now)
        self._mark_pending()

    def _duplicate_ack(self, now):
        """RFC 5681 section 3.2 / RFC 6675 section 5: count, and maybe enter fast recovery."""
        self._dupacks += 1
        self.table.stats["dupacks_received"] += 1
        if self.recovery is None:
            lost = self.scoreboard.lost_boundary(self.snd_una, self.mss, DUP_THRESH) \
                if self.sack_ok else self.snd_una
            if self._dupacks >= DUP_THRESH or lost > self.snd_una:
                # RFC 6582 section 3.2 step 1: no new reduction for losses of the same window.
                if self.snd_una > self._recover:
                    self._enter_fast_recovery(now)
        else:
            self._refresh_lost()
        self._mark_pending()

    def _enter_fast_recovery(self, now):
        self.table.stats["fast_retransmits"] += 1
        self.cc.on_congestion_event(now, self.snd_nxt - self.snd_una)
        self.recovery = "fast"
        self._recover = self.snd_nxt
        self._high_rxt = self.snd_una
        # The first segment at least (RFC 6675 5 (4)), but never past what was sent.
        self._lost_to = min(self.snd_una + self.mss, self.snd_nxt)
        self._force_rtx = True
        self._rtt_seq = None
        self._refresh_lost()

    def _refresh_lost(self):
        if self.sack_ok and self.scoreboard:
            boundary = self.scoreboard.lost_boundary(self.snd_una, self.mss, DUP_THRESH)
            if boundary > self._lost_to:
                self._lost_to = boundary

    def _rtt_sample_ts(self, ts_ecr, now):
        # Karn's rule for timestamps: an echo older than our last RTO comes from an
        # ACK of the original transmission that was lost on its way back; the time since then
        # includes the whole (backed-off) RTO and would inflate SRTT without bound at high
        # loss.  Only echoes of segments sent since the RTO are samples (RFC 7323 4.1, 6298 5.7).
        if self._ts_floor is not None and ((ts_ecr - self._ts_floor) & MASK) >= HALF:
            return
        sent = ((self._ts_now(now) - ts_ecr) & MASK)
        if sent < HALF:
            self.rtt.sample(max(sent, 1) / TS_HZ if sent else 0.0005)

    def _ts_now(self, now):
        return (int(now * TS_HZ) + self._ts_offset) & MASK

    def _receive_data(self, seq, payload, now):
        """Seventh check: queue in-order data, hold out-of-order data, decide on the ACK."""
        rcv_nxt = self.rcv_nxt
        length = len(payload)
        if length > self.rcv_mss:
            self.rcv_mss = length if length <= self.mss + 64 else self.rcv_mss
        if seq < rcv_nxt:                 # trim what we already have
            payload = payload[rcv_nxt - seq:]
            seq = rcv_nxt
            self._ack_now = True          # a retransmission: the peer wants to hear from us
        right = self.rcv_adv if self.rcv_adv > rcv_nxt else rcv_nxt
        if seq + len(payload) > right:
            payload = payload[:max(0, right - seq)]
            self.table.stats["data_beyond_window"] += 1
        if not payload:
            return
        if seq == rcv_nxt:
            self._rcvq += payload
            self.rcv_nxt = rcv_nxt = rcv_nxt + len(payload)
            reasm = self._reasm
            if reasm:
                while True:
                    more = reasm.pop_ready(rcv_nxt)
                    if more is None:
                        break
                    self._rcvq += more
                    self.rcv_nxt = rcv_nxt = rcv_nxt + len(more)
                self._ack_now = True      # RFC 5681 section 4.2: filling a hole, ACK at once
            self._unacked_bytes += len(payload)
            if self._unacked_bytes >= 2 * self.rcv_mss:
                self._ack_now = True      # RFC 5681 section 4.2: every second full segment
            elif self.delack_at is None:
                self.delack_at = now + DELAYED_ACK
            self._notify()
        else:
            if self._reasm.add(seq, payload):
                self.table.stats["segments_out_of_order"] += 1
            else:
                self.table.stats["ooo_memory_drop"] += 1
            self._ack_now = True          # RFC 5681 section 4.2: immediate duplicate ACK

    def _receive_fin(self, fin_seq, now):
        """Eighth check: the peer's FIN, possibly ahead of missing data."""
        if fin_seq > self.rcv_nxt:
            self._ooo_fin = fin_seq
            self._ack_now = True
            return
        if fin_seq < self.rcv_nxt or self._fin_received:
            self._ack_now = True
            return
        self.rcv_nxt += 1
        self._fin_received = True
        self._ack_now = True
        state = self.state
        if state in (SYN_RECEIVED, ESTABLISHED):
            self.state = CLOSE_WAIT
        elif state == FIN_WAIT_1:
            # Our FIN is not acknowledged yet (else we would be in FIN-WAIT-2): CLOSING.
            self.state = CLOSING
        elif state == FIN_WAIT_2:
            self._enter_time_wait(now)
        self._notify()

    def _check_ooo_fin(self, now):
        if self._ooo_fin is not None and self._ooo_fin == self.rcv_nxt:
            self._ooo_fin = None
            self._receive_fin(self.rcv_nxt, now)

    def _enter_time_wait(self, now):
        self.state = TIME_WAIT
        self.rto_at = None
        self.persist_at = None
        self.keepalive_at = None
        self.fin_wait_2_at = None
        self.delack_at = None
        self.timewait_at = now + self.table.time_wait
        self._buf.clear()
        self._notify()

    def _enter_closed(self):
        self.state = CLOSED
        self._scheduled = None
        self.rto_at = self.persist_at = self.delack_at = self.keepalive_at = None
        self.timewait_at = self.fin_wait_2_at = None
        self._buf.clear()
        self.table.release(self)
        self._notify()

    def _fatal(self, code, now):
        """Give up (timeouts): report ``code`` and reset the peer if it may still listen.

        Like Linux, a timeout reports the last ICMP error heard instead, when there was one
        (EHOSTUNREACH says more than ETIMEDOUT).
        """
        self.table.stats["connection_timeouts"] += 1
        self.abort(now, self.soft_error or code)

    def _notify(self):
        if self.on_change is not None:
            self.on_change(self)
        if self.listener is not None and self.state != SYN_RECEIVED:
            self.listener.child_changed(self)

    def _mark_pending(self):
        if not self._pending:
            self._pending = True
            self.table.pending.append(self)

    # -- RFC 5961 challenge ACKs --------------------------------------------------------------------

    def _challenge_ack(self, now):
        """An ACK that proves we are in sync, at most CHALLENGE_ACK_LIMIT per second (5961 7)."""
        if now - self._challenge_window >= 1.0:
            self._challenge_window = now
            self._challenge_count = 0
        if self._challenge_count >= CHALLENGE_ACK_LIMIT:
            self.table.stats["challenge_ack_limited"] += 1
            return
        self._challenge_count += 1
        self.table.stats["challenge_acks"] += 1
        self._send_ack(now)


    # -- output ------------------------------------------------------------------------------------

    def flush(self, now):
        """End of an input batch: transmit what became possible and the ACK that is owed."""
        self._pending = False
        if self._ooo_fin is not None:
            self._check_ooo_fin(now)
        if self.state in _TRANSMITTING:
            self._push(now)
        if self._ack_now and self.state != CLOSED:
            self._send_ack(now)
        self.table.reschedule(self)

    def _stream_end(self):
        """The sequence number after the last thing to send (data, then the FIN if queued)."""
        end = self._buf_seq + len(self._buf)
        return end + 1 if self._fin_queued else end

    def _pipe(self):
        """RFC 6675 section 4 "pipe": bytes we believe are still in the network."""
        flight = self.snd_nxt - self.snd_una
        if self.sack_ok:
            delivered = self.scoreboard.sacked_bytes
        else:
            delivered = min(self._dupacks * self.mss, max(0, flight - self.mss))
        lost = 0
        if self.recovery is not None:
            start = self._high_rxt if self._high_rxt > self.snd_una else self.snd_una
            if self._lost_to > start:
                lost = self.scoreboard.unsacked_bytes(start, self._lost_to) if self.sack_ok \
                    else self._lost_to - start
            for start, end in self._relost:   # retransmissions that left the network
                lost += end - start
        return flight - delivered - lost

    def _push(self, now):
        """Send retransmissions and new data as the windows allow (sections 3.8.6, 3.9)."""
        if self.state not in _TRANSMITTING:
            return
        mss = self.mss
        if self.sack_ok and self._reasm:
            # SACK blocks ride on every segment while we hold out-of-order data: their option
            # bytes come out of the payload, or the packet outgrows the MTU (RFC 6691 section
            # 3; Linux's tcp_current_mss).
            mss -= 4 + 8 * min(len(self._reasm), 3 if self.ts_ok else 4)
        cwnd = self.cc.cwnd
        pipe = self._pipe()
        sent_any = False
        # Retransmissions first (RFC 6675 section 5 step (C), NextSeg rule 1).  The first
        # lost segment goes out whatever the window says (RFC 5681 section 3.2 step 4,
        # RFC 6582 section 3.2 step 4 for partial ACKs).
        while self._relost and (cwnd - pipe >= 1 or self._force_rtx):
            start, end = self._relost.pop(0)
            hole = self.scoreboard.next_hole(max(start, self.snd_una), end)
            if hole is None:
                continue
            sent = self._send_range(hole[0], min(mss, hole[1] - hole[0]), now)
            if sent <= 0:
                break
            self._log_retransmission(hole[0], sent)
            pipe += sent
            sent_any = True
        while self.recovery is not None and (cwnd - pipe >= 1 or self._force_rtx):
            start = self._high_rxt if self._high_rxt > self.snd_una else self.snd_una
            if start >= self._lost_to:
                break
            hole = self.scoreboard.next_hole(start, self._lost_to) if self.sack_ok \
                else (start, self._lost_to)
            if hole is None:
                self._high_rxt = self._lost_to
                break
            sent = self._send_range(hole[0], min(mss, hole[1] - hole[0]), now)
            if sent <= 0:
                break
            self._high_rxt = hole[0] + sent
            self._log_retransmission(hole[0], sent)
            pipe += sent
            sent_any = True
        # New data and the FIN: receive window, congestion window, Nagle, SWS avoidance.
        data_end = self._buf_seq + len(self._buf)
        fin_queued = self._fin_queued
        while True:
            snd_nxt = self.snd_nxt
            available = data_end - snd_nxt
            fin_due = fin_queued and snd_nxt <= self._fin_seq
            if available <= 0 and not fin_due:
                break
            room = self.snd_una + self.snd_wnd - snd_nxt
            if cwnd - pipe < room:
                room = cwnd - pipe
            length = mss if available > mss else available
            if length > room:
                if room <= 0:
                    break
                # Sender SWS avoidance (section 3.8.6.2.1): part of a segment only if it is
                # at least half the largest window the peer ever offered.
                if room < mss and room < self.max_snd_wnd // 2:
                    break
                length = room
            fin = fin_due and length == available
            if 0 < length < mss and snd_nxt > self.snd_una and not self.nodelay and not fin:
                # Nagle (RFC 896, section 3.7.4): one small segment outstanding at a time.
                break
            if length <= 0 and not fin:
                break
            sent = self._send_range(snd_nxt, length + 1 if fin else length, now)
            if sent <= 0:
                break
            if self._rtt_seq is None and not self.ts_ok and self.recovery is None:
                self._rtt_seq = snd_nxt
                self._rtt_time = now
            self.snd_nxt = snd_nxt + sent
            pipe += sent
            sent_any = True
        if sent_any and self.rto_at is None:
            self._arm_rto(now)
        # A zero window with data waiting and nothing in flight: the persist timer (3.8.6.1);
        # for a window SWS avoidance will not use, the same timer is the override (3.8.6.2.1).
        if self.snd_nxt - self.snd_una <= (0 if self.snd_wnd else 1) and data_end > self.snd_nxt:
            if self.persist_at is None:
                self._persist_interval = self._persist_interval or max(self.rtt.rto, 0.2)
                self.persist_at = now + self._persist_interval
                self.rto_at = None

    def _log_retransmission(self, start, sent):
        self._force_rtx = False
        self.table.stats["segments_retransmitted"] += 1
        if self.sack_ok and self.recovery == "fast":
            log = self._rtx_log
            if len(log) >= LOST_RETRANSMIT_LOG:
                del log[0]
            log.append((start, start + sent, self.snd_nxt))

    def _detect_lost_retransmissions(self):
        """A retransmission is lost when the peer SACKs data we sent after it but still lacks
        it: resend it now rather than wait for the RTO (Linux's tcp_mark_lost_retrans; the
        same idea as RACK, RFC 8985, applied to retransmissions only)."""
        highest = self.scoreboard.highest
        snd_una = self.snd_una
        kept = []
        for entry in self._rtx_log:
            start, end, sent_before = entry
            if end <= snd_una:
                continue
            if highest > sent_before:
                start = max(start, snd_una)
                if self.scoreboard.unsacked_bytes(start, end):
                    self._relost.append((start, end))
                    self.table.stats["lost_retransmissions"] += 1
                continue
            kept.append(entry)
        self._rtx_log = kept

    def _send_range(self, start, length, now):
        """Emit the segment ``[start, start+length)`` of the stream (data, maybe the FIN)."""
        buf_seq = self._buf_seq
        data_end = buf_seq + len(self._buf)
        flags = ACK
        payload_end = min(start + length, data_end)
        if payload_end > start:
            payload = bytes(self._buf[start - buf_seq:payload_end - buf_seq])
        else:
            payload = b""
            payload_end = start
        used = payload_end - start
        if self._fin_queued and start + length > self._fin_seq and payload_end == self._fin_seq:
            flags |= FIN
            used += 1
        if payload_end == data_end or flags & FIN:
            flags |= PSH
        if used <= 0:
            return 0
        self._emit(flags, start, now, payload)
        return used

    def _send_syn(self, now):
        flags = SYN | ACK if self.state == SYN_RECEIVED else SYN
        self._syn_time = now if self._retries == 0 else None
        ts = (self._ts_now(now), self.ts_recent if flags & ACK else 0)
        if flags & ACK:
            options = build_options(
                mss=self.table.mss_for(self),
                wscale=self.rcv_wscale if self.snd_wscale or self.rcv_wscale else -1,
                sack_permitted=self.sack_ok,
                timestamps=ts if self.ts_ok else None)
        else:
            options = build_options(mss=self.table.mss_for(self), wscale=self.rcv_wscale,
                                    sack_permitted=self.table.sack_enabled,
                                    timestamps=ts if self.table.timestamps_enabled else None)
        window = min(self.rcvbuf, 0xFFFF)
        self.rcv_adv = self.rcv_nxt + window
        if flags & ACK:
            self._last_ack_sent = self.rcv_nxt   # Last.ACK.sent for TS.Recent (RFC 7323 4.3)
        self.table.output(self, flags, self.iss & MASK, self.rcv_nxt & MASK if flags & ACK else 0,
                          window, options, b"", now)

    def _send_ack(self, now):
        self._emit(ACK, self.snd_nxt, now)

    def _window_field(self):
        """The window to advertise, never shrinking the right edge (section 3.8.6.2.2)."""
        rcv_nxt = self.rcv_nxt
        current = self.rcv_adv - rcv_nxt
        free = self.rcvbuf - len(self._rcvq) - self._reasm.bytes_held
        if free < current:
            window = current
        elif free - current < min(self.rcvbuf // 2, self.rcv_mss) and current > 0:
            window = current              # receiver SWS avoidance: no tiny openings
        else:
            window = free
        shift = self.rcv_wscale
        field = (window + (1 << shift) - 1) >> shift if window == current else window >> shift
        if field > 0xFFFF:
            field = 0xFFFF
        edge = rcv_nxt + (field << shift)
        if edge > self.rcv_adv:
            self.rcv_adv = edge
        return field

    def _emit(self, flags, seq, now, payload=b""):
        """Build one segment's header fields and options and hand it to the table."""
        if self.ts_ok:
            ts = ((int(now * TS_HZ) + self._ts_offset) & MASK, self.ts_recent)
        else:
            ts = None
        if flags & RST:
            options = b"" if ts is None else build_options(timestamps=ts)
            window = 0
        else:
            sack = self._reasm.sack_blocks(3 if ts else 4) if (self.sack_ok and self._reasm) \
                else ()
            if sack:
                sack = [(s & MASK, e & MASK) for s, e in sack]
            options = build_options(timestamps=ts, sack_blocks=sack) if (ts or sack) else b""
            window = self._window_field()
        ack = self.rcv_nxt & MASK if flags & ACK else 0
        if flags & ACK:
            self._last_ack_sent = self.rcv_nxt
            self._ack_now = False
            self._unacked_bytes = 0
            self.delack_at = None
        self.table.output(self, flags, seq & MASK, ack, window, options, payload, now)
