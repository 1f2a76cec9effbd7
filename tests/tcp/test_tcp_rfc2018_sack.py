"""RFC 2018 (SACK) and RFC 6675 (SACK-based loss recovery) against a scripted peer.

Receiver: the SACK blocks lwstack puts in its duplicate ACKs (section 4: the first block holds
the segment that triggered the ACK, the others repeat the most recent ones; at most 4 blocks,
3 alongside timestamps, section 3), merging as data fills in, and none once every hole is
filled or when SACK was not negotiated.

Sender: RFC 6675's IsLost (more than (DupThresh - 1) * SMSS bytes SACKed above a hole, section
4) decides what is retransmitted: only holes, never SACKed data, including after a timeout
(section 5.1); SACK blocks outside SND.UNA..SND.NXT are ignored.
"""
import socket as std

import pytest

from lwstack.sim import VirtualNetwork
from tcp_harness import ANY, TcpPeer, conn_of

MSS = 1000
ISN = 1000
IW = 10


def make_peer(timestamps=False, seed=2018):
    return TcpPeer(VirtualNetwork(seed=seed), tcp={"timestamps_enabled": timestamps})


@pytest.fixture
def peer():
    return make_peer()


@pytest.fixture
def flow(peer):
    """SACK negotiated, no timestamps, no window scaling; the stack uses Reno."""
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, sack_permitted=True)
    flow.sock.setsockopt(std.IPPROTO_TCP, std.TCP_CONGESTION, b"reno")
    return flow


# -- receiver: the blocks lwstack sends (RFC 2018 section 4) ---------------------------------------

def deliver(peer, flow, offset, size=100, **kw):
    """The peer sends ``size`` bytes at ``offset`` beyond RCV.NXT; returns the stack's ACK."""
    peer.send("A", flow.peer_nxt + offset, flow.stack_nxt, payload=b"z" * size, **kw)
    return peer.expect("A", seq=flow.stack_nxt, payload_len=0)


def rel(flow, blocks):
    """SACK blocks as offsets from the peer's RCV.NXT (wire values made readable)."""
    return [((l - flow.peer_nxt) & 0xFFFFFFFF, (r - flow.peer_nxt) & 0xFFFFFFFF)
            for l, r in blocks]


def test_out_of_order_segment_is_reported_in_a_sack_block(peer, flow):
    dup = deliver(peer, flow, 200)
    assert dup.ack == flow.peer_nxt
    assert dup.time == peer.now                  # immediate (RFC 5681 4.2)
    assert rel(flow, dup.sack_blocks) == [(200, 300)]
    assert dup.has_timestamps is False


def test_first_block_is_the_most_recent_segment(peer, flow):
    """Section 4: the first block contains the segment that triggered the ACK; the others
    repeat the most recently reported blocks, newest first."""
    assert rel(flow, deliver(peer, flow, 600).sack_blocks) == [(600, 700)]
    assert rel(flow, deliver(peer, flow, 200).sack_blocks) == [(200, 300), (600, 700)]
    assert rel(flow, deliver(peer, flow, 400).sack_blocks) == \
        [(400, 500), (200, 300), (600, 700)]
    # A segment that extends an existing block: the merged block comes first.
    assert rel(flow, deliver(peer, flow, 700).sack_blocks) == \
        [(600, 800), (400, 500), (200, 300)]


def test_adjacent_segments_merge_into_one_block(peer, flow):
    deliver(peer, flow, 200)
    deliver(peer, flow, 400)
    dup = deliver(peer, flow, 300)                # fills the gap between the two
    assert rel(flow, dup.sack_blocks) == [(200, 500)]


def test_at_most_four_blocks_without_timestamps(peer, flow):
    """Section 3: 40 option bytes hold 4 blocks (2 + 8n + 2 NOPs); the oldest is left out."""
    for offset in (200, 400, 600, 800, 1000):
        dup = deliver(peer, flow, offset)
    assert rel(flow, dup.sack_blocks) == [(1000, 1100), (800, 900), (600, 700), (400, 500)]
    assert dup.seg.header_len == 20 + 36           # NOP NOP SACK(2 + 4 * 8)


def test_at_most_three_blocks_with_timestamps():
    """Section 3: with the 12 bytes of timestamps (NOP NOP TS), 3 blocks fit."""
    peer = make_peer(timestamps=True, seed=20181)
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, sack_permitted=True,
                                  ts=100)
    for n, offset in enumerate((200, 400, 600, 800, 1000)):
        peer.send("A", flow.peer_nxt + offset, flow.stack_nxt, payload=b"z" * 100,
                  ts=(101 + n, 0))
        dup = peer.expect("A", seq=flow.stack_nxt, payload_len=0)
    assert rel(flow, dup.sack_blocks) == [(1000, 1100), (800, 900), (600, 700)]
    assert dup.has_timestamps
    assert dup.seg.header_len == 20 + 12 + 28


def test_filling_holes_shrinks_and_clears_the_blocks(peer, flow):
    deliver(peer, flow, 100)
    deliver(peer, flow, 300)
    # The first hole filled: RCV.NXT moves past the first block (ACK at once, RFC 5681 4.2).
    peer.send("A", flow.peer_nxt, flow.stack_nxt, payload=b"a" * 100)
    ack = peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 200, payload_len=0)
    assert rel(flow, ack.sack_blocks) == [(300, 400)]
    peer.send("A", flow.peer_nxt + 200, flow.stack_nxt, payload=b"b" * 100)
    ack = peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 400, payload_len=0)
    assert ack.sack_blocks == ()                  # nothing out of order any more
    assert flow.sock.recv(1000) == b"a" * 100 + b"z" * 100 + b"b" * 100 + b"z" * 100


def test_no_sack_blocks_when_not_negotiated(peer):
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, sack_permitted=False)
    peer.send("A", flow.peer_nxt + 200, flow.stack_nxt, payload=b"z" * 100)
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt, payload_len=0, options={})


# -- sender: RFC 6675 recovery driven by the peer's blocks -----------------------------------------

def seg_seq(flow, n):
    """The wire sequence number of the stack's ``n``-th data segment."""
    return (flow.stack_nxt + n * MSS) & 0xFFFFFFFF


def numbers(flow, arrivals):
    """Segment numbers of ``arrivals`` (asserting they are full-sized)."""
    assert all(len(a.payload) == MSS for a in arrivals), arrivals
    return [((a.seq - flow.stack_nxt) & 0xFFFFFFFF) // MSS for a in arrivals]


def sack_ack(peer, flow, acked, *ranges):
    """An ACK for the first ``acked`` segments with SACK blocks of segment ``[a, b)`` ranges."""
    peer.send("A", flow.peer_nxt, seg_seq(flow, acked),
              sack=[(seg_seq(flow, a), seg_seq(flow, b)) for a, b in ranges])
    return numbers(flow, peer.received())


def test_sack_marks_a_hole_lost_before_three_duplicates(peer, flow):
    """Section 4 IsLost: a hole is lost once more than 2 * SMSS are SACKed above it.  One
    duplicate ACK that SACKs three segments above segment 0 is enough (section 5 (3))."""
    flow.sock.send(b"x" * (IW * MSS))
    assert len(peer.received()) == IW
    assert sack_ack(peer, flow, 0, (1, 4)) == [0]
    assert peer.table.stats["fast_retransmits"] == 1


def test_cumulative_ack_with_new_sack_blocks_can_start_recovery(peer, flow):
    """Section 5: an ACK with new SACK information counts as a duplicate "regardless of its
    status as a cumulative acknowledgment": segment 0 arrived, 1 was lost and 2-4 are SACKed
    in the same ACK, so IsLost(HighACK + 1) holds and segment 1 is retransmitted at once."""
    flow.sock.send(b"x" * (IW * MSS))
    assert len(peer.received()) == IW
    assert sack_ack(peer, flow, 1, (2, 5)) == [1]
    assert conn_of(peer, flow).recovery == "fast"


def test_two_segments_sacked_are_not_enough(peer, flow):
    flow.sock.send(b"x" * (IW * MSS))
    peer.received()
    assert sack_ack(peer, flow, 0, (1, 2)) == []
    assert sack_ack(peer, flow, 0, (1, 3)) == []  # exactly 2 * SMSS above: not "more than"
    assert conn_of(peer, flow).recovery is None


def test_only_lost_holes_are_retransmitted(peer, flow):
    """Segments 2 and 5 of 10 lost.  Segment 2 is retransmitted when 3 segments are SACKed
    above it; segment 5 only once 3 segments above it are SACKed too.  SACKed segments are
    never sent again."""
    flow.sock.send(b"x" * (IW * MSS))
    peer.received()
    assert sack_ack(peer, flow, 2, (3, 4)) == []          # ACK of 0-1, 3 SACKed
    assert sack_ack(peer, flow, 2, (3, 5)) == []
    assert sack_ack(peer, flow, 2, (6, 7), (3, 5)) == [2]
    assert sack_ack(peer, flow, 2, (6, 8), (3, 5)) == []  # 5 has only 2 SMSS above it
    assert sack_ack(peer, flow, 2, (6, 9), (3, 5)) == [5]
    assert sack_ack(peer, flow, 2, (6, 10), (3, 5)) == []
    assert sack_ack(peer, flow, 5, (6, 10)) == []         # partial ACK: 5 is on its way
    assert sack_ack(peer, flow, IW) == []
    conn = conn_of(peer, flow)
    assert conn.recovery is None
    assert peer.table.stats["segments_retransmitted"] == 2
    assert peer.table.stats["fast_retransmits"] == 1


def test_pipe_lets_new_data_out_during_recovery(peer, flow):
    """Section 5 (C): new data goes out while pipe < cwnd.  Ten segments out, 0 lost: with 1-3
    SACKed, pipe (7 segments, the retransmission included) exceeds cwnd (5 with Reno); once
    1-9 are SACKed, pipe is the retransmission alone and four new segments fit."""
    flow.sock.send(b"x" * (30 * MSS))
    assert len(peer.received()) == IW
    assert sack_ack(peer, flow, 0, (1, 4)) == [0]
    conn = conn_of(peer, flow)
    assert conn.cc.cwnd == 5 * MSS
    assert sack_ack(peer, flow, 0, (1, 10)) == [10, 11, 12, 13]
    assert sack_ack(peer, flow, IW + 4) == [14, 15, 16, 17, 18]   # full ACK: cwnd = ssthresh


def test_sack_ack_that_changes_the_window_counts_as_a_duplicate(peer):
    """Section 2: an ACK carrying new SACK information is a duplicate ACK "even if it ...
    changes the advertised window" (a receiver whose application reads while a hole is open
    grows its window on every ACK).  Loss recovery must not wait for the timer then."""
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, sack_permitted=True,
                                  window=20000)
    flow.sock.send(b"x" * (IW * MSS))
    peer.received()
    for n, window in ((2, 30000), (3, 40000), (4, 50000)):
        peer.send("A", flow.peer_nxt, seg_seq(flow, 0), window=window,
                  sack=[(seg_seq(flow, 1), seg_seq(flow, n))])
    assert numbers(flow, peer.received()) == [0]
    assert peer.table.stats["fast_retransmits"] == 1


def test_sack_blocks_beyond_snd_nxt_are_ignored(peer, flow):
    """Blocks for data never sent cannot make the sender believe anything is lost."""
    flow.sock.send(b"x" * (IW * MSS))
    peer.received()
    for _ in range(2):
        assert sack_ack(peer, flow, 0, (IW + 5, IW + 9)) == []
    conn = conn_of(peer, flow)
    assert not conn.scoreboard and conn.recovery is None


def test_sack_blocks_below_snd_una_are_ignored(peer, flow):
    """A block below the cumulative ACK (a D-SACK, RFC 2883) marks nothing lost."""
    flow.sock.send(b"x" * (IW * MSS))
    peer.received()
    assert sack_ack(peer, flow, 5) == []
    for _ in range(2):
        assert sack_ack(peer, flow, 5, (1, 4)) == []
    conn = conn_of(peer, flow)
    assert not conn.scoreboard and conn.recovery is None


def test_after_a_timeout_sacked_data_is_not_resent(peer, flow):
    """Section 5.1: after an RTO the sender retransmits everything unacknowledged except what
    was SACKed.  Segments 0-4 lost, 5 SACKed (two duplicates, not enough for fast recovery)."""
    flow.sock.send(b"x" * (6 * MSS))
    assert len(peer.received()) == 6
    assert sack_ack(peer, flow, 0, (5, 6)) == []
    assert numbers(flow, peer.received(within=1.0)) == [0]     # RTO: 1 s (no sample yet)
    assert conn_of(peer, flow).recovery == "rto"
    got = []
    for n in range(1, 5):
        got += sack_ack(peer, flow, n, (5, 6))
    assert sorted(set(got)) == [1, 2, 3, 4]
    assert 5 not in got
    assert sack_ack(peer, flow, 6) == []
    assert conn_of(peer, flow).recovery is None


def test_sack_with_timestamps_and_window_scaling():
    """The blocks still work alongside the other options (SACK blocks are sequence numbers,
    never scaled)."""
    peer = make_peer(timestamps=True, seed=20182)
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS + 12, wscale=7, sack_permitted=True,
                                  ts=100)
    flow.sock.setsockopt(std.IPPROTO_TCP, std.TCP_CONGESTION, b"reno")
    flow.sock.send(b"x" * (IW * MSS))
    arrivals = peer.received()
    assert numbers(flow, arrivals) == list(range(IW))
    tsval = arrivals[-1].ts_val
    peer.send("A", flow.peer_nxt, seg_seq(flow, 0), window=65535, ts=(101, tsval),
              sack=[(seg_seq(flow, 1), seg_seq(flow, 5))])
    rtx = peer.expect("A", seq=seg_seq(flow, 0), payload_len=MSS, options={"ts": (ANY, 101)})
    assert rtx.time == peer.now
