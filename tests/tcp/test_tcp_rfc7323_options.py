"""RFC 7323 (window scale, timestamps, PAWS) against a scripted peer, on established connections.

Window scaling (section 2): the stack's window fields are shifted right by its scale (9), the
peer's are shifted left by the peer's, the window field of a SYN or SYN-ACK is never scaled,
and nothing is scaled either way unless both SYNs carried the option.  Timestamps (sections 3
and 4): every segment carries one once negotiated, TSval follows a 1 ms clock, TSecr echoes
TS.Recent, which only a segment covering Last.ACK.sent may update (4.3: with delayed ACKs the
earliest unacknowledged segment's TSval is echoed, so the peer measures the longer RTT), and
RTT samples come from TSecr, even for retransmitted segments.  PAWS (section 5): a segment
with an older TSval is dropped and acknowledged.
"""
import math

import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork
from tcp_harness import ANY, Flow, TcpPeer, assert_segment, conn_of

WSCALE = 9
MSS = 1000
ISN = 1000


def make_peer(seed=7323, **tcp):
    return TcpPeer(VirtualNetwork(seed=seed), tcp=tcp)


@pytest.fixture
def peer():
    return make_peer()


def data_segments(peer, count=None):
    arrivals = [a for a in peer.received() if a.payload]
    if count is not None:
        assert len(arrivals) == count, arrivals
    return arrivals


# -- section 2: window scale ----------------------------------------------------------------------

def test_our_window_field_is_shifted_by_our_scale(peer):
    """2.3: the field carries the window >> 9; the SYN-ACK's field is not scaled (2.2)."""
    listener = peer.listen(80)
    listener.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_RCVBUF, 32768)   # doubled: 64 KiB
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=2, listener=listener)
    assert flow.synack.window == 65535 and flow.synack.wscale == WSCALE
    rcvbuf = conn_of(peer, flow).rcvbuf
    assert rcvbuf == 65536
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"p" * 8000)
    ack = peer.expect("A", ack=flow.peer_nxt + 8000, within=0.5)
    # 8000 bytes sit unread: the window is what is left, rounded so the right edge stays put.
    assert ack.window == math.ceil((rcvbuf - 8000) / (1 << WSCALE))
    assert (ack.window << WSCALE) - (rcvbuf - 8000) < (1 << WSCALE)


def test_peer_window_is_scaled_by_its_shift(peer):
    """The peer's window field 1000 with shift 2 is 4000 bytes: four segments, then wait."""
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=2, window=1000)
    assert conn_of(peer, flow).snd_wnd == 4000
    flow.sock.send(b"x" * 20000)
    data_segments(peer, 4)
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 4000, window=1500)   # 6000 bytes
    data_segments(peer, 6)


def test_synack_window_is_never_scaled_on_an_active_open(peer):
    """2.2: "The window field in a SYN (i.e., a <SYN> or <SYN,ACK>) segment itself is never
    scaled."  A SYN-ACK with window 3000 and shift 2 offers 3000 bytes, not 12000."""
    sock, syn = peer.connect(port=80)
    peer.send("SA", 5000, syn.seq + 1, window=3000, mss=MSS, wscale=2)
    peer.expect("A", seq=syn.seq + 1, ack=5001)
    flow = Flow(sock, syn.seq, 5000, syn.src_port, 80, syn=syn)
    conn = conn_of(peer, flow)
    assert conn.snd_wscale == 2
    assert conn.snd_wnd == 3000
    sock.send(b"x" * 20000)
    data_segments(peer, 3)
    # From the next segment on, the field is scaled: 3000 << 2 = 12 segments, which is also
    # cwnd after slow start grew it by two for this ACK.
    peer.send("A", 5001, flow.stack_nxt + 3000, window=3000)
    assert conn.snd_wnd == 12000
    data_segments(peer, 12)


def test_no_scaling_when_the_peer_syn_lacks_the_option(peer):
    """2.2: both sides must send the option; the SYN-ACK then carries none, our window fields
    are plain byte counts (at most 65535) and the peer's are used as they are."""
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, window=3000)
    assert flow.synack.wscale == -1
    conn = conn_of(peer, flow)
    assert (conn.snd_wscale, conn.rcv_wscale) == (0, 0)
    flow.sock.send(b"x" * 20000)
    segs = data_segments(peer, 3)
    assert {s.window for s in segs} == {65535}
    peer.send("PA", flow.peer_nxt, flow.stack_nxt + 3000, window=2, payload=b"hi")
    assert peer.expect("A", ack=flow.peer_nxt + 2, within=0.5).window == 65535
    peer.expect_nothing(within=0.1)               # 2 bytes of window: too small (SWS)


def test_no_scaling_when_the_synack_lacks_the_option(peer):
    """The active side offered a scale; without one in the SYN-ACK neither side scales."""
    sock, syn = peer.connect(port=80)
    assert syn.wscale == WSCALE
    peer.send("SA", 5000, syn.seq + 1, window=3000, mss=MSS)
    ack = peer.expect("A", seq=syn.seq + 1, ack=5001)
    assert ack.window == 65535                    # min(buffer, 65535), unscaled
    flow = Flow(sock, syn.seq, 5000, syn.src_port, 80, syn=syn)
    conn = conn_of(peer, flow)
    assert (conn.snd_wscale, conn.rcv_wscale) == (0, 0)
    sock.send(b"x" * 20000)
    data_segments(peer, 3)
    peer.send("A", 5001, flow.stack_nxt + 3000, window=4000)
    data_segments(peer, 4)


# -- sections 3 and 4: timestamps ------------------------------------------------------------------

def ts_flow(peer, tsval=100, **kw):
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS + 12, wscale=-1, ts=tsval,
                                  sack_permitted=False, **kw)
    assert conn_of(peer, flow).ts_ok
    return flow


def test_every_segment_carries_a_timestamp_once_negotiated(peer):
    """3.2: TSopt in every non-RST segment; TSval ticks at 1 ms (5.4 allows 1 ms to 1 s)."""
    flow = ts_flow(peer)
    flow.sock.send(b"x" * 100)
    first = peer.expect("PA", options={"ts": (ANY, 100)})
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 100, ts=(101, first.ts_val))
    peer.expect_nothing(within=1.5)
    flow.sock.send(b"y" * 100)
    second = peer.expect("PA", options={"ts": (ANY, 101)})
    assert (second.ts_val - first.ts_val) & 0xFFFFFFFF == 1500
    flow.sock.shutdown(lwsocket.SHUT_WR)
    fin = peer.expect(options={"ts": (ANY, 101)})
    assert "F" in fin.letters


def test_no_timestamps_when_the_peer_does_not_offer_them(peer):
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1)
    assert flow.synack.has_timestamps is False
    flow.sock.send(b"x" * 100)
    peer.expect("PA", options={})
    # A timestamp the peer sends later is not echoed: the option was not negotiated.
    peer.send("PA", flow.peer_nxt, flow.stack_nxt + 100, payload=b"late", ts=(5, 5))
    peer.expect("A", ack=flow.peer_nxt + 4, within=0.5, options={})


def test_tsecr_echoes_the_earliest_unacknowledged_segment(peer):
    """4.3 (delayed ACK, case A): two segments arrive before the ACK; the ACK echoes the
    first one's TSval, so the peer's RTT sample includes the delay."""
    flow = ts_flow(peer)
    peer.send("A", flow.peer_nxt, flow.stack_nxt, payload=b"a" * MSS, ts=(200, 0), run=False)
    peer.send("PA", flow.peer_nxt + MSS, flow.stack_nxt, payload=b"b" * MSS, ts=(201, 0),
              run=False)
    ack, = peer.run()
    assert_segment(ack, "A", ack=flow.peer_nxt + 2 * MSS, options={"ts": (ANY, 200)})


def test_tsecr_for_out_of_order_data_stays_at_the_last_in_order_segment(peer):
    """4.3 case B: out-of-order segments do not update TS.Recent; the segment that fills the
    hole does, and the ACK for it echoes its TSval."""
    flow = ts_flow(peer)
    peer.send("A", flow.peer_nxt + MSS, flow.stack_nxt, payload=b"b" * MSS, ts=(300, 0))
    peer.expect("A", ack=flow.peer_nxt, options={"ts": (ANY, 100)})    # still the handshake's
    peer.send("A", flow.peer_nxt + 2 * MSS, flow.stack_nxt, payload=b"c" * MSS, ts=(301, 0))
    peer.expect("A", ack=flow.peer_nxt, options={"ts": (ANY, 100)})
    peer.send("A", flow.peer_nxt, flow.stack_nxt, payload=b"a" * MSS, ts=(302, 0))
    peer.expect("A", ack=flow.peer_nxt + 3 * MSS, options={"ts": (ANY, 302)})


def test_paws_drops_an_old_timestamp_and_acks(peer):
    """5.3: a segment whose TSval is older than TS.Recent is a duplicate from an earlier
    incarnation of the sequence space: dropped (data not delivered) and acknowledged."""
    flow = ts_flow(peer, tsval=1000)
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"old", ts=(999, 0))
    ack = peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt, payload_len=0,
                      options={"ts": (ANY, 1000)})
    assert ack.time == peer.now
    with pytest.raises(BlockingIOError):
        flow.sock.recv(10)
    assert peer.table.stats["paws_rejected"] == 1
    # The same bytes with a current timestamp are accepted.
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"new", ts=(1001, 0))
    assert flow.sock.recv(10) == b"new"


def test_paws_uses_serial_arithmetic_across_the_wrap(peer):
    """5.2: timestamps compare modulo 2**32: 0x00000005 is newer than 0xFFFFFFF0."""
    flow = ts_flow(peer, tsval=0xFFFFFFF0)
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"wrap", ts=(5, 0))
    assert flow.sock.recv(10) == b"wrap"
    assert peer.table.stats["paws_rejected"] == 0


def test_rtt_sample_from_tsecr():
    """4.1: RTT = now - TSecr.  The SYN-ACK's echo (100 ms) gives SRTT 100 ms, RTO 300 ms;
    an ACK echoing a retransmission is a valid sample too (the echo says which one it
    acknowledges), so unlike Karn's rule without timestamps the backoff ends at once."""
    peer = make_peer(seed=73231)
    sock, syn = peer.connect(port=80)
    peer.send("SA", 5000, syn.seq + 1, mss=MSS + 12, ts=(7, syn.ts_val), at=syn.time + 0.1)
    peer.expect("A", seq=syn.seq + 1, ack=5001, options={"ts": (ANY, 7)})
    flow = Flow(sock, syn.seq, 5000, syn.src_port, 80, syn=syn)
    conn = conn_of(peer, flow)
    assert conn.rtt.srtt == pytest.approx(0.1)
    sock.send(b"x" * 100)
    first = peer.expect("PA", seq=flow.stack_nxt)
    rtx = peer.expect("PA", seq=flow.stack_nxt, within=0.3)
    assert rtx.time - first.time == pytest.approx(0.3)
    assert rtx.ts_val != first.ts_val
    # The ACK comes 100 ms after the retransmission and echoes its TSval.
    peer.send("A", 5001, flow.stack_nxt + 100, ts=(8, rtx.ts_val), at=rtx.time + 0.1)
    assert conn.rtt.samples == 2
    assert conn.rtt.srtt == pytest.approx(0.1) and conn.rtt.backoffs == 0
    flow.stack_nxt += 100
    sock.send(b"y" * 100)
    second = peer.expect("PA", seq=flow.stack_nxt)
    again = peer.expect("PA", seq=flow.stack_nxt, within=1.0)
    # RTTVAR = 3/4 * 0.05 + 1/4 * 0 after the second sample: RTO = 0.1 + 4 * 0.0375.
    assert again.time - second.time == pytest.approx(0.25)


def test_syn_timestamp_echo_is_the_rtt_sample_after_a_retransmitted_syn():
    """With timestamps the SYN-ACK echoes the retransmitted SYN's TSval: a valid sample, so
    RFC 6298 5.7's 3-second fallback does not apply."""
    peer = make_peer(seed=73232)
    sock, syn = peer.connect(port=80)
    again = peer.expect("S", seq=syn.seq, within=1.0)
    peer.send("SA", 5000, syn.seq + 1, mss=MSS + 12, ts=(7, again.ts_val), at=again.time + 0.1)
    peer.expect("A", seq=syn.seq + 1, ack=5001)
    conn = conn_of(peer, Flow(sock, syn.seq, 5000, syn.src_port, 80))
    assert conn.rtt.srtt == pytest.approx(0.1)
    assert conn.rtt.rto == pytest.approx(0.3)
