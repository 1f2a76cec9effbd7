"""RFC 5681 (TCP congestion control) against a scripted peer: slow start (with RFC 3465 byte
counting), fast retransmit on the third duplicate ACK, ssthresh, fast recovery's window
inflation, RFC 3042 limited transmit, and the receiver's side of section 4.2 (an immediate
duplicate ACK for out-of-order data, an immediate ACK when a hole is filled).

The peer offers neither SACK nor timestamps, so the stack runs plain RFC 5681/6582 loss
recovery; the connection uses Reno (TCP_CONGESTION "reno") so that ssthresh is exactly
max(FlightSize / 2, 2 * SMSS) (RFC 5681 equation 4); CUBIC's 0.7 is tested in
tests/tcp/test_tcp_congestion.py.
"""
import socket as std

import pytest

from lwstack.sim import VirtualNetwork
from tcp_harness import TcpPeer, conn_of, data_seq, reno_flow

MSS = 1000
ISN = 1000
#: RFC 6928: ten segments of 1000 bytes (below the 14600-byte cap).
IW = 10


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=5681), tcp={"timestamps_enabled": False})


@pytest.fixture
def flow(peer):
    """Established, the stack sends with a 1000-byte MSS into a 65535-byte window (unscaled)."""
    return reno_flow(peer, MSS, ISN)


def seg_seq(flow, n):
    """The wire sequence number of the stack's ``n``-th data segment (0-based)."""
    return data_seq(flow, n, MSS)


def burst(peer, flow, first, count):
    """Expect ``count`` full segments, ``first`` to ``first + count - 1``, right now."""
    segs = [peer.expect(seq=seg_seq(flow, n), ack=flow.peer_nxt, payload_len=MSS)
            for n in range(first, first + count)]
    return segs


def dupack(peer, flow, n=1, window=65535):
    """``n`` duplicate ACKs (nothing new acknowledged, same window, no data)."""
    for _ in range(n):
        peer.send("A", flow.peer_nxt, flow.stack_nxt, window=window)


def ack_upto(peer, flow, n):
    """Acknowledge the first ``n`` data segments."""
    peer.send("A", flow.peer_nxt, seg_seq(flow, n))


# -- section 3.1: slow start -----------------------------------------------------------------------

def test_initial_window_is_ten_segments(peer, flow):
    """RFC 6928 / RFC 5681 3.1: the first flight is IW segments, then the sender waits."""
    flow.sock.send(b"x" * (30 * MSS))
    burst(peer, flow, 0, IW)
    peer.expect_nothing(within=0.1)
    assert conn_of(peer, flow).cc.cwnd == IW * MSS


def test_slow_start_grows_one_segment_per_segment_acked(peer, flow):
    """Each ACK of one segment grows cwnd by one SMSS: two new segments leave per ACK."""
    flow.sock.send(b"x" * (60 * MSS))
    burst(peer, flow, 0, IW)
    sent = IW
    for n in range(1, IW + 1):
        ack_upto(peer, flow, n)
        burst(peer, flow, sent, 2)
        sent += 2
        peer.expect_nothing()
    assert conn_of(peer, flow).cc.cwnd == 2 * IW * MSS


def test_slow_start_byte_counting_for_delayed_acks(peer, flow):
    """RFC 3465 2.2 (L = 2*SMSS): an ACK covering two segments grows cwnd by two SMSS, so a
    receiver that ACKs every other segment still doubles the window per round trip."""
    flow.sock.send(b"x" * (60 * MSS))
    burst(peer, flow, 0, IW)
    sent = IW
    for n in range(2, IW + 1, 2):
        ack_upto(peer, flow, n)
        burst(peer, flow, sent, 4)                # 2 replace the acked ones, 2 from growth
        sent += 4
        peer.expect_nothing()
    assert conn_of(peer, flow).cc.cwnd == 2 * IW * MSS


def test_byte_counting_caps_a_stretch_ack_at_two_segments(peer, flow):
    """RFC 3465 2.2: an ACK for five segments grows cwnd by at most L = 2*SMSS."""
    flow.sock.send(b"x" * (60 * MSS))
    burst(peer, flow, 0, IW)
    ack_upto(peer, flow, 5)
    burst(peer, flow, IW, 5 + 2)
    peer.expect_nothing()
    assert conn_of(peer, flow).cc.cwnd == (IW + 2) * MSS


# -- section 3.2: fast retransmit / fast recovery --------------------------------------------------

def test_third_duplicate_ack_retransmits_exactly_the_first_unacked_segment(peer, flow):
    flow.sock.send(b"x" * (IW * MSS))
    segs = burst(peer, flow, 0, IW)
    assert segs[-1].letters == "PA" and {s.letters for s in segs[:-1]} == {"A"}
    dupack(peer, flow, 2)
    peer.expect_nothing()                         # below DupThresh: no retransmission
    dupack(peer, flow)
    rtx = peer.expect("A", seq=seg_seq(flow, 0), ack=flow.peer_nxt, payload_len=MSS)
    assert rtx.payload == segs[0].payload
    peer.expect_nothing()                         # exactly one segment
    conn = conn_of(peer, flow)
    assert peer.table.stats["fast_retransmits"] == 1
    assert conn.recovery == "fast"


def test_ssthresh_is_half_the_flight_size(peer, flow):
    """Equation 4: ssthresh = max(FlightSize / 2, 2*SMSS) with FlightSize the data outstanding
    (10 segments), not cwnd."""
    flow.sock.send(b"x" * (IW * MSS))
    burst(peer, flow, 0, IW)
    dupack(peer, flow, 3)
    peer.expect(seq=seg_seq(flow, 0), payload_len=MSS)
    assert conn_of(peer, flow).cc.ssthresh == IW * MSS // 2


def test_ssthresh_is_at_least_two_segments(peer, flow):
    """A flight of three segments: half of it is below 2*SMSS, so ssthresh is 2*SMSS."""
    flow.sock.send(b"x" * (3 * MSS))
    burst(peer, flow, 0, 3)
    dupack(peer, flow, 3)
    peer.expect(seq=seg_seq(flow, 0), payload_len=MSS)
    assert conn_of(peer, flow).cc.ssthresh == 2 * MSS


def test_duplicate_acks_inflate_the_window_during_recovery(peer, flow):
    """Steps 4-5: each further duplicate ACK means a segment left the network.  Twelve segments
    are out (two by limited transmit) and cwnd = ssthresh = 6: classic Reno's inflated window
    (ssthresh + 3, plus one per further duplicate) passes the 12 outstanding at the 7th
    duplicate, and from then on every duplicate releases one new segment."""
    flow.sock.send(b"x" * (30 * MSS))
    burst(peer, flow, 0, IW)
    dupack(peer, flow)
    peer.expect(seq=seg_seq(flow, IW), payload_len=MSS)             # limited transmit
    dupack(peer, flow)
    peer.expect(seq=seg_seq(flow, IW + 1), payload_len=MSS)
    dupack(peer, flow)
    peer.expect(seq=seg_seq(flow, 0), payload_len=MSS)              # fast retransmit
    peer.expect_nothing()
    assert conn_of(peer, flow).cc.ssthresh == 6 * MSS
    dupack(peer, flow, 3)                          # 4th to 6th
    peer.expect_nothing()
    for n in range(IW + 2, IW + 7):                # 7th to 11th
        dupack(peer, flow)
        peer.expect(seq=seg_seq(flow, n), payload_len=MSS)
        peer.expect_nothing()


def test_full_ack_deflates_to_ssthresh(peer, flow):
    """Step 6 (and RFC 6582 3.2 step 3): the ACK for everything outstanding ends recovery with
    cwnd = ssthresh: with nothing left in flight, exactly ssthresh worth of new data goes out."""
    flow.sock.send(b"x" * (IW * MSS))
    burst(peer, flow, 0, IW)
    dupack(peer, flow, 3)
    peer.expect(seq=seg_seq(flow, 0), payload_len=MSS)
    peer.expect_nothing()
    flow.sock.send(b"y" * (20 * MSS))
    peer.expect_nothing()                          # the window is full of lost data
    ack_upto(peer, flow, IW)
    conn = conn_of(peer, flow)
    assert conn.recovery is None
    assert conn.cc.cwnd == conn.cc.ssthresh == 5 * MSS
    burst(peer, flow, IW, 5)
    peer.expect_nothing()


def test_duplicate_ack_with_data_or_window_change_is_not_counted(peer, flow):
    """Section 2's definition: a duplicate ACK carries no data and does not change the
    advertised window; anything else does not count towards the three."""
    flow.sock.send(b"x" * (IW * MSS))
    burst(peer, flow, 0, IW)
    peer.send("A", flow.peer_nxt, flow.stack_nxt, window=60000)     # window update
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, window=60000, payload=b"hi")
    flow.peer_nxt += 2
    peer.expect("A", ack=flow.peer_nxt, payload_len=0, within=0.5)  # (delayed) ACK of "hi"
    dupack(peer, flow, 2, window=60000)
    assert conn_of(peer, flow).recovery is None
    peer.expect_nothing()
    dupack(peer, flow, window=60000)                                # the third true duplicate
    peer.expect(seq=seg_seq(flow, 0), payload_len=MSS)


def test_fast_recovery_needs_no_timeout(peer, flow):
    """The lost segment is repaired within the round trip, long before the RTO."""
    flow.sock.send(b"x" * (IW * MSS))
    burst(peer, flow, 0, IW)
    dupack(peer, flow, 3)
    start = peer.now
    rtx = peer.expect(seq=seg_seq(flow, 0), payload_len=MSS)
    assert rtx.time == start
    ack_upto(peer, flow, IW)
    peer.expect_nothing(within=10.0)
    assert peer.table.stats["rto_expired"] == 0


# -- RFC 3042: limited transmit --------------------------------------------------------------------

def test_limited_transmit_on_the_first_two_duplicates(peer, flow):
    """RFC 3042: the first and second duplicate ACKs each let one new segment out (the
    receiver's window allows it and cwnd is unchanged), which keeps the ACK clock going for
    small windows."""
    flow.sock.send(b"x" * (20 * MSS))
    burst(peer, flow, 0, IW)
    dupack(peer, flow)
    peer.expect(seq=seg_seq(flow, IW), payload_len=MSS)
    peer.expect_nothing()
    dupack(peer, flow)
    peer.expect(seq=seg_seq(flow, IW + 1), payload_len=MSS)
    peer.expect_nothing()
    assert conn_of(peer, flow).cc.cwnd == IW * MSS
    dupack(peer, flow)
    peer.expect(seq=seg_seq(flow, 0), payload_len=MSS)             # fast retransmit
    # FlightSize counts the two limited-transmit segments: 12 segments, ssthresh 6.
    assert conn_of(peer, flow).cc.ssthresh == 6 * MSS


def test_limited_transmit_respects_the_receive_window(peer):
    """RFC 3042 2: only if the receiver's advertised window allows."""
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, sack_permitted=False,
                                  window=4 * MSS)
    flow.sock.setsockopt(std.IPPROTO_TCP, std.TCP_CONGESTION, b"reno")
    flow.sock.send(b"x" * (20 * MSS))
    burst(peer, flow, 0, 4)
    peer.expect_nothing()
    for _ in range(2):
        peer.send("A", flow.peer_nxt, flow.stack_nxt, window=4 * MSS)
        peer.expect_nothing()


# -- section 4.2: the receiver ---------------------------------------------------------------------

def test_out_of_order_segment_draws_an_immediate_duplicate_ack(peer, flow):
    """An out-of-order segment is ACKed at once (no delayed ACK), acknowledging RCV.NXT."""
    peer.send("A", flow.peer_nxt + 500, flow.stack_nxt, payload=b"b" * 500)
    dup = peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt, payload_len=0)
    assert dup.time == peer.now
    peer.send("A", flow.peer_nxt + 1000, flow.stack_nxt, payload=b"c" * 500)
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt, payload_len=0)
    peer.expect_nothing(within=1.0)


def test_filling_the_hole_draws_an_immediate_ack_of_everything(peer, flow):
    peer.send("A", flow.peer_nxt + 500, flow.stack_nxt, payload=b"b" * 500)
    peer.expect("A", ack=flow.peer_nxt)
    peer.send("A", flow.peer_nxt, flow.stack_nxt, payload=b"a" * 500)
    full = peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 1000, payload_len=0)
    assert full.time == peer.now                 # not delayed
    assert flow.sock.recv(2000) == b"a" * 500 + b"b" * 500


def test_partially_filling_a_hole_acks_at_once(peer, flow):
    """Section 4.2 ("SHOULD send an immediate ACK when ... fills in all or part of a gap")."""
    peer.send("A", flow.peer_nxt + 1000, flow.stack_nxt, payload=b"c" * 500)
    peer.expect("A", ack=flow.peer_nxt)
    peer.send("A", flow.peer_nxt, flow.stack_nxt, payload=b"a" * 500)
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 500, payload_len=0)
    peer.send("A", flow.peer_nxt + 500, flow.stack_nxt, payload=b"b" * 500)
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 1500, payload_len=0)
    assert flow.sock.recv(2000) == b"a" * 500 + b"b" * 500 + b"c" * 500


def test_fast_retransmit_resends_only_what_was_sent(peer, flow):
    """Less than a segment in flight (100 bytes) and more queued behind Nagle: the fast
    retransmission is those 100 bytes, not a full segment reaching past SND.NXT (whose ACK
    the stack would then refuse as acknowledging data never sent)."""
    flow.sock.send(b"a" * 100)
    peer.expect("PA", seq=seg_seq(flow, 0), payload=b"a" * 100)
    flow.sock.send(b"b" * 500)
    peer.expect_nothing()                         # Nagle: "a" is unacknowledged
    dupack(peer, flow, 3)
    peer.expect(seq=seg_seq(flow, 0), payload=b"a" * 100)
    peer.expect_nothing()
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 100)
    peer.expect("PA", seq=flow.stack_nxt + 100, payload=b"b" * 500)
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 600)
    peer.expect_nothing(within=5.0)
    conn = conn_of(peer, flow)
    assert conn.snd_una == conn.snd_nxt and not conn.send_queue_bytes
    assert peer.table.stats["ack_too_new"] == 0
