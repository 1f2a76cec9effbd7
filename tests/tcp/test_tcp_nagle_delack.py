"""Nagle's algorithm (RFC 896, RFC 9293 3.7.4, RFC 1122 4.2.3.4) and delayed ACKs (RFC 9293
3.8.6.3, RFC 1122 4.2.3.2, RFC 5681 4.2) against a scripted peer.

Nagle: while sent data is unacknowledged, small writes wait and coalesce into one segment;
a full-sized segment, a FIN, or TCP_NODELAY sends at once (setting TCP_NODELAY also sends what
was held, as Linux does).  Delayed ACK: an ACK at least for every second full-sized segment,
otherwise after the delayed-ACK timer (RFC: under 0.5 s; lwstack 40 ms, as Linux), one timer
per ACK owed (later segments do not restart it), and none at all when data going the other
way carries the ACK.
"""
import socket as std

import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork
from tcp_harness import TcpPeer, assert_segment

MSS = 1000
ISN = 1000
DELAYED_ACK = 0.04


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=896), tcp={"timestamps_enabled": False})


@pytest.fixture
def flow(peer):
    return peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, sack_permitted=False)


# -- Nagle -----------------------------------------------------------------------------------------

def test_first_small_write_goes_out_at_once(peer, flow):
    flow.sock.send(b"a")
    peer.expect("PA", seq=flow.stack_nxt, payload=b"a")


def test_small_writes_coalesce_while_data_is_unacknowledged(peer, flow):
    flow.sock.send(b"a")
    peer.expect("PA", seq=flow.stack_nxt, payload=b"a")
    for piece in (b"b", b"cd", b"efg"):
        flow.sock.send(piece)
    peer.expect_nothing(within=0.1)               # "a" is still unacknowledged
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 1)
    peer.expect("PA", seq=flow.stack_nxt + 1, payload=b"bcdefg")
    peer.expect_nothing()


def test_held_data_waits_for_the_ack_not_a_timer(peer, flow):
    """Nagle has no timer: the small segment waits until the ACK (here: the retransmission
    timer fires first and resends "a", which is all it may do)."""
    flow.sock.send(b"a")
    peer.expect("PA", payload=b"a")
    flow.sock.send(b"b")
    rtx = peer.expect(within=5.0)
    assert rtx.payload == b"a"
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 1)
    peer.expect("PA", seq=flow.stack_nxt + 1, payload=b"b")


def test_a_full_segment_is_not_held(peer, flow):
    """Only segments smaller than the MSS wait; full-sized ones go out, the tail waits."""
    flow.sock.send(b"a")
    peer.expect("PA", payload=b"a")
    flow.sock.send(b"b" * (MSS + 10))
    peer.expect("A", seq=flow.stack_nxt + 1, payload_len=MSS)
    peer.expect_nothing()
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 1 + MSS)
    peer.expect("PA", seq=flow.stack_nxt + 1 + MSS, payload_len=10)


def test_fin_is_not_held_by_nagle(peer, flow):
    """A small last segment carrying the FIN is sent at once (Linux does the same)."""
    flow.sock.send(b"a")
    peer.expect("PA", payload=b"a")
    flow.sock.send(b"bc")
    flow.sock.shutdown(lwsocket.SHUT_WR)
    fin = peer.expect(seq=flow.stack_nxt + 1, payload=b"bc")
    assert "F" in fin.letters


def test_nodelay_sends_every_write_at_once(peer, flow):
    flow.sock.setsockopt(std.IPPROTO_TCP, std.TCP_NODELAY, 1)
    for n, piece in enumerate((b"a", b"b", b"c")):
        flow.sock.send(piece)
        peer.expect("PA", seq=flow.stack_nxt + n, payload=piece)


def test_setting_nodelay_sends_what_nagle_held(peer, flow):
    flow.sock.send(b"a")
    peer.expect("PA", payload=b"a")
    flow.sock.send(b"bc")
    peer.expect_nothing()
    flow.sock.setsockopt(std.IPPROTO_TCP, std.TCP_NODELAY, 1)
    peer.expect("PA", seq=flow.stack_nxt + 1, payload=b"bc")


# -- delayed ACK -----------------------------------------------------------------------------------

def test_lone_segment_is_acked_after_the_delayed_ack_timer(peer, flow):
    start = peer.now
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"x" * 100)
    peer.expect_nothing(within=DELAYED_ACK - 0.001)
    ack = peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 100, payload_len=0,
                      within=0.002)
    assert ack.time - start == pytest.approx(DELAYED_ACK)
    assert DELAYED_ACK < 0.5                      # RFC 9293 3.8.6.3 / RFC 1122 4.2.3.2


def test_every_second_full_segment_is_acked_at_once(peer, flow):
    """RFC 5681 4.2: at least every second full-sized segment."""
    for n in range(1, 7):
        peer.send("A", flow.peer_nxt + (n - 1) * MSS, flow.stack_nxt, payload=b"x" * MSS)
        if n % 2:
            peer.expect_nothing()
        else:
            ack = peer.expect("A", ack=flow.peer_nxt + n * MSS, payload_len=0)
            assert ack.time == peer.now


def test_odd_segment_after_a_pair_waits_for_the_timer(peer, flow):
    for n in range(3):
        peer.send("A", flow.peer_nxt + n * MSS, flow.stack_nxt, payload=b"x" * MSS, run=False)
    start = peer.now
    # One batch of three: lwstack answers a batch with one ACK for all of it (two full
    # segments arrived, so at once).
    ack, = peer.run()
    assert_segment(ack, "A", ack=flow.peer_nxt + 3 * MSS, payload_len=0)
    assert ack.time == start
    peer.send("A", flow.peer_nxt + 3 * MSS, flow.stack_nxt, payload=b"x" * MSS)
    peer.expect_nothing(within=DELAYED_ACK - 0.001)
    peer.expect("A", ack=flow.peer_nxt + 4 * MSS, within=0.002)


def test_small_segments_do_not_count_as_full_ones(peer, flow):
    """Two 100-byte segments are not two full-sized segments: one delayed ACK for both."""
    start = peer.now
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"x" * 100)
    peer.send("PA", flow.peer_nxt + 100, flow.stack_nxt, payload=b"y" * 100, at=start + 0.01)
    peer.expect_nothing(within=start + DELAYED_ACK - 0.001 - peer.now)
    ack = peer.expect("A", ack=flow.peer_nxt + 200, within=0.002)
    # The timer started with the first segment and was not pushed back by the second.
    assert ack.time - start == pytest.approx(DELAYED_ACK)


def test_ack_rides_on_reply_data(peer, flow):
    """Data sent back before the timer carries the ACK; no separate pure ACK follows."""
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"ping")
    peer.run_to(peer.now + 0.01)
    assert flow.sock.recv(10) == b"ping"
    flow.sock.send(b"pong")
    peer.expect("PA", seq=flow.stack_nxt, ack=flow.peer_nxt + 4, payload=b"pong")
    peer.expect_nothing(within=0.5)               # (the RTO, 1 s, would resend "pong")


def test_delayed_ack_with_timestamps_still_40_ms():
    peer = TcpPeer(VirtualNetwork(seed=8961))
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS + 12, wscale=-1, ts=50)
    start = peer.now
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"x" * 10, ts=(51, 0))
    ack = peer.expect("A", ack=flow.peer_nxt + 10, within=1.0)
    assert ack.time - start == pytest.approx(DELAYED_ACK)
    assert ack.ts_ecr == 51
