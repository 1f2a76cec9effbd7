"""RFC 6298 (the retransmission timer) against a scripted peer: the initial RTO, SYN and SYN-ACK
retransmission with backoff, the RTO computed from samples, the 200 ms floor (Linux's
TCP_RTO_MIN, where the RFC says 1 s), exponential backoff up to 120 s, Karn's rule, timer
restart and stop on ACKs, section 5.7 (3 s after a retransmitted SYN) and giving up.

Timestamps are off in this file (RTT samples then come from one timed segment at a time, which
is where Karn's rule matters); RFC 7323 samples are in test_tcp_rfc7323_options.py.  Every time
below is virtual, and the link has no delay, so a segment arrives when it is sent.
"""
import errno

import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork
from tcp_harness import Flow, TcpPeer, conn_of, state_of

MSS = 1000
#: Linux's tcp_syn_retries, tcp_synack_retries and tcp_retries2, which lwstack follows.
SYN_RETRIES = 6
SYNACK_RETRIES = 5
DATA_RETRIES = 15


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=6298), tcp={"timestamps_enabled": False})


def rto_after(samples):
    """RFC 6298 sections 2.2-2.4, computed here independently: the RTO after ``samples``,
    with Linux's 200 ms floor and a 1 ms clock granularity."""
    srtt = rttvar = None
    for r in samples:
        if srtt is None:
            srtt, rttvar = r, r / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
            srtt = 0.875 * srtt + 0.125 * r
    return max(0.2, srtt + max(0.001, 4 * rttvar))


def active(peer, rtt, isn=5000):
    """The stack connects; the SYN-ACK comes back ``rtt`` seconds after the SYN (one sample)."""
    sock, syn = peer.connect(port=80)
    peer.send("SA", isn, syn.seq + 1, mss=MSS, at=syn.time + rtt)
    peer.expect("A", seq=syn.seq + 1, ack=isn + 1)
    return Flow(sock, syn.seq, isn, syn.src_port, 80, syn=syn)


def send_data(peer, flow, size, offset=0):
    """The application writes ``size`` bytes; returns the first segment sent."""
    assert flow.sock.send(b"d" * size) == size
    return peer.expect(seq=flow.stack_nxt + offset, ack=flow.peer_nxt)


def ack(peer, flow, upto, at=None):
    """The peer acknowledges the stack's data up to ``upto`` (a wire sequence number)."""
    peer.send("A", flow.peer_nxt, upto, at=at)


# -- section 2.1 and 5.5: the SYN ------------------------------------------------------------------

def test_syn_retransmitted_at_1_3_7_15_31_63_then_etimedout(peer):
    """Initial RTO 1 s (2.1), doubled at every expiry (5.5); after tcp_syn_retries (6) the
    connect fails with ETIMEDOUT at 127 s, when the seventh timer (64 s) expires."""
    sock, syn = peer.connect(port=80)
    t0 = syn.time
    offsets = []
    for _ in range(SYN_RETRIES):
        again = peer.expect("S", seq=syn.seq, ack=0, within=100.0,
                            options={"mss": syn.mss, "wscale": syn.wscale,
                                     "sack_permitted": True})
        offsets.append(again.time - t0)
    assert offsets == pytest.approx([1, 3, 7, 15, 31, 63])
    peer.run_to(t0 + 126.9)
    assert sock.connect_ex(("10.0.0.99", 80)) == errno.EALREADY
    peer.expect_nothing(within=0.2)               # no RST: nothing was synchronized
    assert sock.getsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_ERROR) == errno.ETIMEDOUT
    assert peer.table.stats["connection_timeouts"] == 1
    assert not peer.table.connections


def test_blocking_connect_times_out_with_etimedout():
    net = VirtualNetwork(seed=62981)
    peer = TcpPeer(net, tcp={"timestamps_enabled": False})
    sock = peer.stack.socket(lwsocket.AF_INET, lwsocket.SOCK_STREAM)
    with pytest.raises(TimeoutError) as info:
        sock.connect(("10.0.0.99", 80))          # blocking: runs the virtual clock
    assert info.value.errno == errno.ETIMEDOUT
    assert net.now == pytest.approx(127.0)
    assert [a.letters for a in peer.received()] == ["S"] * (1 + SYN_RETRIES)


def test_synack_retransmitted_with_backoff_then_reset(peer):
    """A passive open whose SYN-ACK is never acknowledged: the SYN-ACK at 1, 3, 7, 15, 31 s
    (tcp_synack_retries = 5), then the half-open connection is aborted at 63 s with a RST
    (RFC 9293 3.10.5: ABORT in SYN-RECEIVED sends one) and the listener carries on."""
    listener = peer.listen(80)
    peer.send("S", 1000, 0, mss=MSS)
    synack = peer.expect("SA", ack=1001)
    t0 = synack.time
    offsets = [peer.expect("SA", seq=synack.seq, ack=1001, within=100.0).time - t0
               for _ in range(SYNACK_RETRIES)]
    assert offsets == pytest.approx([1, 3, 7, 15, 31])
    rst = peer.expect("RA", seq=synack.seq + 1, ack=1001, within=100.0)
    assert rst.time - t0 == pytest.approx(63)
    assert not peer.table.connections
    peer.expect_nothing(within=300.0)
    peer.send("S", 5000, 0, mss=MSS, sport=40001)
    peer.expect("SA", ack=5001)
    assert listener.getsockname()[1] == 80


# -- section 2: the RTO for data -------------------------------------------------------------------

def test_initial_rto_is_one_second_without_a_sample(peer):
    """A passive open without timestamps has no RTT sample yet: data uses the initial 1 s RTO
    (2.1), then 2 s, 4 s, 8 s (5.5)."""
    flow = peer.handshake_passive(port=80, isn=1000, mss=MSS, wscale=-1, sack_permitted=False)
    assert conn_of(peer, flow).rtt.samples == 0
    first = send_data(peer, flow, 100)
    times = [peer.expect("PA", seq=flow.stack_nxt, payload=first.payload, within=20.0).time
             for _ in range(4)]
    assert [t - first.time for t in times] == pytest.approx([1, 3, 7, 15])


def test_rto_from_the_first_sample(peer):
    """2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR = 3R: 300 ms for a 100 ms round trip."""
    flow = active(peer, rtt=0.1)
    assert rto_after([0.1]) == pytest.approx(0.3)
    first = send_data(peer, flow, 100)
    peer.expect_nothing(within=0.299)
    again = peer.expect("PA", seq=flow.stack_nxt, payload_len=100, within=0.002)
    assert again.time - first.time == pytest.approx(0.3)


def test_rto_floor_is_200_ms(peer):
    """2.4: a 10 ms round trip gives 30 ms; the RTO is rounded up to the minimum, which lwstack
    takes from Linux (200 ms) rather than the RFC's 1 s."""
    flow = active(peer, rtt=0.01)
    first = send_data(peer, flow, 100)
    again = peer.expect("PA", seq=flow.stack_nxt, payload_len=100, within=1.0)
    assert again.time - first.time == pytest.approx(0.2)


def test_backoff_doubles_up_to_120_seconds(peer):
    """5.5: each expiry doubles the RTO; 2.5: a maximum (Linux's 120 s) caps it.  The timer
    retransmits only the first unacknowledged segment (cwnd is one segment, RFC 5681 3.1)."""
    flow = active(peer, rtt=0.1)
    first = send_data(peer, flow, 3 * MSS)
    peer.expect("A", seq=flow.stack_nxt + MSS, payload_len=MSS)
    peer.expect("PA", seq=flow.stack_nxt + 2 * MSS, payload_len=MSS)
    times = []
    for _ in range(12):
        seg = peer.expect("A", seq=flow.stack_nxt, payload_len=MSS, within=200.0)
        times.append(seg.time)
        peer.expect_nothing()                     # one segment per expiry
    gaps = [b - a for a, b in zip([first.time] + times, times)]
    assert gaps == pytest.approx([0.3 * 2 ** k for k in range(9)] + [120.0] * 3)


def test_new_sample_ends_the_backoff(peer):
    """5.5 then 2.3: after a timeout the doubled RTO stays until an ACK for data sent only
    once yields a sample; the RTO is then computed from SRTT and RTTVAR again."""
    flow = active(peer, rtt=0.1)
    first = send_data(peer, flow, 100)
    peer.expect("PA", seq=flow.stack_nxt, within=0.3)          # timed out once: RTO 0.6
    ack(peer, flow, flow.stack_nxt + 100, at=first.time + 0.35)
    flow.stack_nxt += 100
    second = send_data(peer, flow, 100)
    ack(peer, flow, flow.stack_nxt + 100, at=second.time + 0.1)  # a valid sample of 0.1
    flow.stack_nxt += 100
    third = send_data(peer, flow, 100)
    again = peer.expect("PA", seq=flow.stack_nxt, within=1.0)
    assert again.time - third.time == pytest.approx(rto_after([0.1, 0.1]))


# -- section 3: Karn's algorithm -------------------------------------------------------------------

def test_karn_no_sample_from_a_retransmitted_segment(peer):
    """The ACK of a retransmitted segment is ambiguous: no sample (SRTT stays), and the
    backed-off RTO (600 ms) is kept for the next segment (5.5 and Karn's second rule)."""
    flow = active(peer, rtt=0.1)
    conn = conn_of(peer, flow)
    first = send_data(peer, flow, 100)
    rtx = peer.expect("PA", seq=flow.stack_nxt, within=0.3)
    assert rtx.time - first.time == pytest.approx(0.3)
    # Acknowledged 50 ms after the retransmission: 350 ms after the first transmission.
    ack(peer, flow, flow.stack_nxt + 100, at=rtx.time + 0.05)
    assert conn.rtt.samples == 1 and conn.rtt.srtt == pytest.approx(0.1)
    flow.stack_nxt += 100
    second = send_data(peer, flow, 100)
    peer.expect_nothing(within=0.599)
    again = peer.expect("PA", seq=flow.stack_nxt, within=0.002)
    assert again.time - second.time == pytest.approx(0.6)


# -- section 5: managing the timer -----------------------------------------------------------------

def test_timer_restarted_by_an_ack_of_new_data(peer):
    """5.3: an ACK for new data restarts the timer for the rest (RTO from the new sample)."""
    flow = active(peer, rtt=0.1)
    first = send_data(peer, flow, 3 * MSS)
    peer.expect("A", seq=flow.stack_nxt + MSS)
    peer.expect("PA", seq=flow.stack_nxt + 2 * MSS)
    ack(peer, flow, flow.stack_nxt + MSS, at=first.time + 0.2)  # first segment, 200 ms
    rto = rto_after([0.1, 0.2])
    peer.expect_nothing(within=rto - 0.001)      # the old deadline (t + 0.3) passed quietly
    again = peer.expect("A", seq=flow.stack_nxt + MSS, payload_len=MSS, within=0.002)
    assert again.time - first.time == pytest.approx(0.2 + rto)


def test_timer_stopped_when_everything_is_acknowledged(peer):
    """5.2: all outstanding data acknowledged: the timer is off, nothing is retransmitted."""
    flow = active(peer, rtt=0.1)
    send_data(peer, flow, 2 * MSS)
    peer.expect("PA", seq=flow.stack_nxt + MSS)
    ack(peer, flow, flow.stack_nxt + 2 * MSS)
    assert conn_of(peer, flow).rto_at is None
    peer.expect_nothing(within=30.0)


def test_rto_is_three_seconds_after_a_retransmitted_syn(peer):
    """5.7: the SYN timed out (and its ACK gives no sample, Karn): once data transfer begins,
    the RTO is re-initialized to 3 s."""
    sock, syn = peer.connect(port=80)
    peer.expect("S", seq=syn.seq, within=1.0)
    peer.send("SA", 5000, syn.seq + 1, mss=MSS, at=syn.time + 1.5)
    peer.expect("A", seq=syn.seq + 1, ack=5001)
    flow = Flow(sock, syn.seq, 5000, syn.src_port, 80, syn=syn)
    first = send_data(peer, flow, 100)
    again = peer.expect("PA", seq=flow.stack_nxt, within=10.0)
    assert again.time - first.time == pytest.approx(3.0)


def test_rto_is_three_seconds_after_a_retransmitted_synack(peer):
    """5.7 on the passive side: the SYN-ACK timed out once, the handshake then completes."""
    listener = peer.listen(80)
    peer.send("S", 1000, 0, mss=MSS)
    synack = peer.expect("SA", ack=1001)
    peer.expect("SA", seq=synack.seq, within=1.0)
    peer.send("A", 1001, synack.seq + 1, at=synack.time + 1.5)
    sock, _ = listener.accept()
    sock.setblocking(False)
    flow = Flow(sock, synack.seq, 1000, 80, peer.sport, syn=synack)
    first = send_data(peer, flow, 100)
    again = peer.expect("PA", seq=flow.stack_nxt, within=10.0)
    assert again.time - first.time == pytest.approx(3.0)


def test_gives_up_after_15_retransmissions_with_etimedout(peer):
    """A peer that went away: 15 retransmissions (Linux's tcp_retries2) with the RTO doubling
    from 1 s up to 120 s, then the connection is aborted (RST) and the application sees
    ETIMEDOUT."""
    flow = peer.handshake_passive(port=80, isn=1000, mss=MSS, wscale=-1, sack_permitted=False)
    first = send_data(peer, flow, 100)
    times = [peer.expect("PA", seq=flow.stack_nxt, payload_len=100, within=200.0).time
             for _ in range(DATA_RETRIES)]
    expected, rto, t = [], 1.0, 0.0
    for _ in range(DATA_RETRIES):
        t += rto
        expected.append(t)
        rto = min(2 * rto, 120.0)
    assert [x - first.time for x in times] == pytest.approx(expected)
    assert state_of(peer, flow) == "ESTABLISHED"
    rst = peer.expect("RA", seq=flow.stack_nxt + 100, ack=flow.peer_nxt, within=200.0)
    assert rst.time - first.time == pytest.approx(t + rto)
    assert state_of(peer, flow) == "CLOSED"
    with pytest.raises(TimeoutError) as info:
        flow.sock.recv(10)
    assert info.value.errno == errno.ETIMEDOUT
    assert flow.sock.recv(10) == b""              # reported once, then end of stream


def test_echo_older_than_the_last_rto_is_no_rtt_sample():
    # The ACK of an original transmission was lost; after the RTO the retransmission reaches
    # the receiver as an old duplicate and is answered with TS.Recent of the original.  The
    # time since then includes the RTO: taking it as an RTT sample inflated SRTT without bound
    # at 10 % loss (SRTT 30 s, RTO 120 s).
    from lwstack.proto.tcp.connection import TcpConnection

    class Table:
        stats = __import__("collections").Counter()

    conn = TcpConnection(Table())
    conn._ts_offset = 0
    conn.rtt.sample(0.002)
    srtt = conn.rtt.srtt
    original = conn._ts_now(10.0)            # sent at t=10 s, its ACK lost
    conn._ts_floor = conn._ts_now(10.5)      # the RTO fired at t=10.5 s
    conn._rtt_sample_ts(original, 10.502)
    assert conn.rtt.srtt == srtt and conn.rtt.latest_rtt == 0.002     # not a sample
    conn._rtt_sample_ts(conn._ts_now(10.5), 10.505)                    # the retransmission's
    assert conn.rtt.latest_rtt == pytest.approx(0.005)
