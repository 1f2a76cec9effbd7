"""RFC 6582 (NewReno) against a scripted peer that does not permit SACK: partial ACKs retransmit
the next hole at once and keep recovery going, a full ACK ends it, several losses in one window
cost one reduction, duplicate ACKs after a timeout that do not cover more than "recover" start
no fast retransmit (section 4), and a loss in a later window is a new episode.

lwstack's "recover" is SND.NXT when recovery starts (one past the highest byte sent, like
FreeBSD's snd_recover): a full ACK is SEG.ACK >= recover, and a new fast retransmit needs the
duplicate ACKs' SEG.ACK > recover.
"""

import pytest

from lwstack.sim import VirtualNetwork
from tcp_harness import TcpPeer, conn_of, data_seq, reno_flow

MSS = 1000
ISN = 1000
IW = 10


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=6582), tcp={"timestamps_enabled": False})


@pytest.fixture
def flow(peer):
    return reno_flow(peer, MSS, ISN)


def seg_seq(flow, n):
    """The wire sequence number of the stack's ``n``-th data segment (0-based)."""
    return data_seq(flow, n, MSS)


def sent(peer):
    """The segments that arrived at this instant (all full-sized data segments)."""
    arrivals = peer.received()
    assert all(len(a.payload) == MSS for a in arrivals), arrivals
    return arrivals


def numbers(flow, arrivals):
    """The segment numbers of ``arrivals`` (0 is the first byte after the handshake)."""
    return [((a.seq - flow.stack_nxt) & 0xFFFFFFFF) // MSS for a in arrivals]


def ack(peer, flow, n):
    """Cumulatively acknowledge the first ``n`` segments (a duplicate if nothing is new)."""
    peer.send("A", flow.peer_nxt, seg_seq(flow, n))


def lose(peer, flow, lost, count=IW):
    """The stack sent ``count`` segments and the peer got all but ``lost``: the duplicate ACKs
    the peer sends (one per segment above the first hole), up to the fast retransmit."""
    first = min(lost)
    dups = [n for n in range(first + 1, count) if n not in lost]
    for _ in dups:
        ack(peer, flow, first)
    return dups


def test_partial_ack_retransmits_the_next_hole(peer, flow):
    """Segments 0 and 5 of 10 lost.  Fast retransmit of 0; the ACK it draws covers 1-4 only (a
    partial ACK, below recover): step 4 retransmits segment 5 at once, without waiting for
    three more duplicates or the timer, and stays in fast recovery."""
    flow.sock.send(b"x" * (IW * MSS))
    assert len(sent(peer)) == IW
    lose(peer, flow, {0, 5})                       # 8 duplicates
    assert numbers(flow, sent(peer)) == [0]
    conn = conn_of(peer, flow)
    ssthresh = conn.cc.ssthresh
    assert ssthresh == IW * MSS // 2
    ack(peer, flow, 5)                             # partial
    rtx = peer.expect("A", seq=seg_seq(flow, 5), payload_len=MSS)
    assert rtx.time == peer.now
    peer.expect_nothing()
    assert conn.recovery == "fast"
    assert conn.cc.ssthresh == ssthresh


def test_full_ack_ends_recovery(peer, flow):
    flow.sock.send(b"x" * (IW * MSS))
    sent(peer)
    lose(peer, flow, {0, 5})
    ack(peer, flow, 5)
    assert numbers(flow, sent(peer)) == [0, 5]
    ack(peer, flow, IW)                            # full: covers recover
    conn = conn_of(peer, flow)
    assert conn.recovery is None
    assert conn.cc.cwnd == conn.cc.ssthresh == IW * MSS // 2      # step 3: deflated
    flow.sock.send(b"y" * (20 * MSS))
    assert numbers(flow, sent(peer)) == [IW, IW + 1, IW + 2, IW + 3, IW + 4]
    assert peer.table.stats["fast_retransmits"] == 1
    assert peer.table.stats["segments_retransmitted"] == 2
    assert peer.table.stats["rto_expired"] == 0


def test_several_losses_in_one_window_reduce_once(peer, flow):
    """Segments 0, 3 and 7 lost: one fast retransmit and two partial ACKs, each repairing the
    next hole; ssthresh is set once (step 1: no new reduction for the same window)."""
    flow.sock.send(b"x" * (IW * MSS))
    sent(peer)
    lose(peer, flow, {0, 3, 7})
    assert numbers(flow, sent(peer)) == [0]
    conn = conn_of(peer, flow)
    assert conn.cc.ssthresh == 5 * MSS
    ack(peer, flow, 3)
    assert numbers(flow, sent(peer)) == [3]
    # The segments above the next hole produce duplicates again: still the same episode.
    for _ in range(3):
        ack(peer, flow, 3)
    peer.expect_nothing()
    ack(peer, flow, 7)
    assert numbers(flow, sent(peer)) == [7]
    assert conn.cc.ssthresh == 5 * MSS and conn.recovery == "fast"
    ack(peer, flow, IW)
    assert conn.recovery is None
    assert peer.table.stats["fast_retransmits"] == 1
    assert peer.table.stats["segments_retransmitted"] == 3
    assert conn.cc.ssthresh == 5 * MSS


def test_partial_ack_does_not_wait_for_the_timer(peer, flow):
    """The second hole is repaired at the partial ACK, so the transfer ends with no RTO."""
    flow.sock.send(b"x" * (IW * MSS))
    sent(peer)
    lose(peer, flow, {0, 5})
    ack(peer, flow, 5)
    ack(peer, flow, IW)
    assert numbers(flow, sent(peer)) == [0, 5]
    peer.expect_nothing(within=30.0)
    assert peer.table.stats["rto_expired"] == 0


def test_loss_in_a_later_window_is_a_new_episode(peer, flow):
    """After a full ACK, duplicates acknowledging more than recover start a new fast
    retransmit with a new reduction."""
    flow.sock.send(b"x" * (IW * MSS))
    sent(peer)
    lose(peer, flow, {0})
    ack(peer, flow, IW)
    assert numbers(flow, sent(peer)) == [0]
    conn = conn_of(peer, flow)
    assert conn.recovery is None and conn.cc.cwnd == 5 * MSS
    flow.sock.send(b"y" * (5 * MSS))
    assert numbers(flow, sent(peer)) == [10, 11, 12, 13, 14]
    ack(peer, flow, 11)                            # segment 10 arrives
    for _ in range(3):                             # segment 11 lost, 12-14 arrive
        ack(peer, flow, 11)
    assert numbers(flow, sent(peer)) == [11]
    assert peer.table.stats["fast_retransmits"] == 2
    assert conn.recovery == "fast"
    # FlightSize at the second loss was 4 segments (11-14): ssthresh max(2000, 2*SMSS).
    assert conn.cc.ssthresh == 2 * MSS


def test_duplicates_after_a_timeout_do_not_start_fast_retransmit(peer, flow):
    """Section 4: segments 0-3 of 10 lost, the timer expires and go-back-N retransmits in slow
    start, resending segments the peer already holds.  Those draw duplicate ACKs that do not
    cover more than recover (the data sent before the timeout): they are no sign of new
    congestion, so no fast retransmit and no second reduction."""
    flow.sock.send(b"x" * (30 * MSS))
    assert numbers(flow, sent(peer)) == list(range(IW))
    assert numbers(flow, peer.received(within=1.0)) == [0]          # RTO 1 s: no sample yet
    conn = conn_of(peer, flow)
    assert conn.recovery == "rto" and conn.cc.cwnd == MSS
    ssthresh = conn.cc.ssthresh
    ack(peer, flow, 1)
    assert numbers(flow, sent(peer)) == [1, 2]
    ack(peer, flow, 2)
    assert numbers(flow, sent(peer)) == [3, 4]     # 4 is redundant: the peer has 4-9
    ack(peer, flow, 3)
    assert numbers(flow, sent(peer)) == [5, 6]
    ack(peer, flow, IW)                            # segment 3 fills the hole: everything
    assert conn.recovery is None
    sent(peer)                                     # new data, 10 onwards
    for _ in range(3):                             # the redundant 4, 5 and 6 arriving
        ack(peer, flow, IW)
    assert all(a.seq != seg_seq(flow, IW) for a in sent(peer))    # no fast retransmit
    assert conn.recovery is None
    assert peer.table.stats["fast_retransmits"] == 0
    assert conn.cc.ssthresh == ssthresh
