"""Zero windows (RFC 9293 3.8.6.1 and 3.8.6.2.2, RFC 1122 4.2.2.17) and keepalives (RFC 9293
3.8.4, RFC 1122 4.2.3.6) against a scripted peer.

Sender: a zero window stops new data; the persist timer sends one-octet probes, the first after
an RTO and then with exponential backoff (lwstack caps the interval at 60 s); answered probes
keep the connection open however long the window stays shut; the window opening, announced
or learnt from a probe's ACK, restarts the transfer at once.  Receiver: a full buffer is
announced as a zero window, a probe into it is acknowledged and dropped, and the application
reading announces the window again once it grew by an MSS (receiver SWS avoidance).

Keepalive: with SO_KEEPALIVE a connection idle for TCP_KEEPIDLE sends a probe (an ACK for
SND.NXT - 1, so the peer must answer), then one every TCP_KEEPINTVL; an answer means the peer
is alive and the idle time starts again; TCP_KEEPCNT unanswered probes end the connection with
ETIMEDOUT.
"""
import errno
import socket as std

import pytest

from lwstack import socket as lwsocket
from lwstack.proto.tcp.connection import PERSIST_MAX
from lwstack.sim import VirtualNetwork
from tcp_harness import TcpPeer, conn_of, state_of

MSS = 1000
ISN = 1000


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=9293), tcp={"timestamps_enabled": False})


@pytest.fixture
def flow(peer):
    """No timestamps; the ACK that closes the window also gives a (zero) RTT sample, so the
    RTO, and with it the first probe interval, is the 200 ms minimum."""
    return peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, sack_permitted=False)


FIRST_PROBE = 0.2


def shut_window(peer, flow, sent):
    """The peer acknowledges the ``sent`` bytes it got and closes its window."""
    peer.send("A", flow.peer_nxt, flow.stack_nxt + sent, window=0)
    flow.stack_nxt += sent


# -- sender: the persist timer ---------------------------------------------------------------------

def test_zero_window_stops_new_data(peer, flow):
    flow.sock.send(b"x" * (20 * MSS))
    assert len(peer.received()) == 10
    shut_window(peer, flow, 10 * MSS)
    peer.expect_nothing(within=FIRST_PROBE - 0.001)
    assert conn_of(peer, flow).snd_wnd == 0


def test_window_probes_back_off_exponentially(peer, flow):
    """The first probe after one RTO, then the interval doubles up to the cap: one octet
    each, the same octet again while the window stays shut."""
    flow.sock.send(b"x" * (20 * MSS))
    peer.received()
    shut_window(peer, flow, 10 * MSS)
    assert conn_of(peer, flow).rtt.rto == FIRST_PROBE
    start = peer.now
    times = []
    for _ in range(12):
        probe = peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt, payload=b"x",
                            within=100.0)
        times.append(probe.time - start)
        peer.send("A", flow.peer_nxt, flow.stack_nxt, window=0)    # still shut
        peer.expect_nothing()
    intervals = [FIRST_PROBE]
    while len(intervals) < 12:
        intervals.append(min(2 * intervals[-1], PERSIST_MAX))
    assert intervals[8] == pytest.approx(51.2) and intervals[9:] == [60.0] * 3
    expected = [sum(intervals[:k + 1]) for k in range(12)]
    assert times == pytest.approx(expected)
    assert peer.table.stats["window_probes"] == 12


def test_answered_probes_are_no_congestion_signal(peer, flow):
    """The probe octet stays unacknowledged and every answer repeats the ACK and the zero
    window: those are not duplicate ACKs of lost data (no fast retransmit, no reduction)."""
    flow.sock.send(b"x" * (20 * MSS))
    peer.received()
    shut_window(peer, flow, 10 * MSS)
    conn = conn_of(peer, flow)
    cwnd = conn.cc.cwnd
    for _ in range(6):
        peer.expect("A", payload=b"x", within=100.0)
        peer.send("A", flow.peer_nxt, flow.stack_nxt, window=0)
        peer.expect_nothing()
    assert peer.table.stats["fast_retransmits"] == 0
    assert conn.cc.cwnd == cwnd and conn.recovery is None


def test_answered_probes_keep_the_connection_open(peer, flow):
    """RFC 1122 4.2.2.17: a TCP MUST NOT close a connection because the window stays zero,
    as long as the probes are answered (here for about half an hour, past tcp_retries2)."""
    flow.sock.send(b"x" * (20 * MSS))
    peer.received()
    shut_window(peer, flow, 10 * MSS)
    for _ in range(40):
        peer.expect("A", seq=flow.stack_nxt, payload=b"x", within=100.0)
        peer.send("A", flow.peer_nxt, flow.stack_nxt, window=0)
    assert peer.now > 1800
    assert state_of(peer, flow) == "ESTABLISHED"
    assert peer.table.stats["connection_timeouts"] == 0


def test_window_update_resumes_the_transfer(peer, flow):
    flow.sock.send(b"x" * (20 * MSS))
    peer.received()
    shut_window(peer, flow, 10 * MSS)
    peer.expect("A", seq=flow.stack_nxt, payload=b"x", within=2.0)
    # The peer took the probe's octet after all, and opens its window.
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 1, window=65535)
    segs = peer.received()
    assert [s.seq for s in segs] == [(flow.stack_nxt + 1 + k * MSS) & 0xFFFFFFFF
                                     for k in range(len(segs))]
    assert len(segs) >= 2 and all(len(s.payload) == MSS for s in segs[:-1])
    assert conn_of(peer, flow).persist_at is None


def test_lost_window_update_is_recovered_by_the_next_probe(peer, flow):
    """The peer's window update is lost: the next probe's ACK carries the open window."""
    flow.sock.send(b"x" * (20 * MSS))
    peer.received()
    shut_window(peer, flow, 10 * MSS)
    first = peer.expect("A", payload=b"x", within=2.0)
    peer.send("A", flow.peer_nxt, flow.stack_nxt, window=0)
    # (The window opens here, but the update never reaches the stack.)
    second = peer.expect("A", seq=first.seq, payload=b"x", within=5.0)
    assert second.time - first.time == pytest.approx(2 * FIRST_PROBE)
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 1, window=65535)
    assert len(peer.received()) >= 2


def test_zero_window_in_the_handshake_then_probes():
    """A peer that opens with a zero window: the first write is held and probed."""
    peer = TcpPeer(VirtualNetwork(seed=92931), tcp={"timestamps_enabled": False})
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, window=0)
    flow.sock.send(b"hello")
    peer.expect_nothing(within=0.9)
    peer.expect("A", seq=flow.stack_nxt, payload=b"h", within=0.2)
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 1, window=1000)
    peer.expect("PA", seq=flow.stack_nxt + 1, payload=b"ello")


# -- receiver: a full buffer -----------------------------------------------------------------------

@pytest.fixture
def small(peer):
    """The stack receives into an 8 KiB buffer (SO_RCVBUF 4096, doubled as Linux does)."""
    listener = peer.listen(80)
    listener.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_RCVBUF, 4096)
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, sack_permitted=False,
                                  listener=listener)
    assert flow.synack.window == 8192
    return flow


def fill(peer, flow, total, size=MSS):
    """The peer sends ``total`` bytes in ``size`` pieces; returns the stack's last ACK."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        peer.send("A", flow.peer_nxt + sent, flow.stack_nxt, payload=b"r" * n)
        sent += n
    flow.peer_nxt += total
    acks = peer.received(within=0.1)
    return acks[-1]


def test_full_receive_buffer_advertises_zero_window(peer, small):
    ack = fill(peer, small, 8192)
    assert (ack.ack, ack.window) == (small.peer_nxt, 0)


def test_windows_shrink_as_the_buffer_fills_without_moving_the_right_edge(peer, small):
    """RFC 9293 3.8.6.2.2: the right edge (RCV.NXT + RCV.WND) never moves left."""
    right = (small.peer_nxt + 8192) & 0xFFFFFFFF
    for _ in range(4):
        ack = fill(peer, small, 2 * MSS)
        assert (ack.ack + ack.window) & 0xFFFFFFFF == right


def test_probe_into_a_zero_window_is_acked_and_dropped(peer, small):
    fill(peer, small, 8192)
    peer.send("A", small.peer_nxt, small.stack_nxt, payload=b"?")
    peer.expect("A", ack=small.peer_nxt, window=0, payload_len=0)
    assert len(small.sock.recv(10000)) == 8192    # the probe octet is not among them


def test_reading_announces_the_window_again(peer, small):
    """Receiver SWS avoidance: no update for a read of 500 bytes; one as soon as the window
    can grow by a full segment (min(RCV.BUFF / 2, MSS) = 1000)."""
    fill(peer, small, 8192)
    assert len(small.sock.recv(500)) == 500
    peer.expect_nothing()
    assert len(small.sock.recv(500)) == 500
    update = peer.expect("A", seq=small.stack_nxt, ack=small.peer_nxt, payload_len=0)
    assert update.window == 1000
    assert len(small.sock.recv(10000)) == 7192
    update = peer.expect("A", ack=small.peer_nxt, payload_len=0)
    assert update.window == 8192


def test_sender_can_resume_after_the_update(peer, small):
    fill(peer, small, 8192)
    small.sock.recv(10000)
    peer.expect("A", window=8192)
    ack = fill(peer, small, 3000)
    assert ack.ack == small.peer_nxt
    assert small.sock.recv(10000) == b"r" * 3000


# -- keepalive -------------------------------------------------------------------------------------

def keepalive(sock, idle, intvl, cnt):
    sock.setsockopt(lwsocket.SOL_SOCKET, std.SO_KEEPALIVE, 1)
    sock.setsockopt(std.IPPROTO_TCP, std.TCP_KEEPIDLE, idle)
    sock.setsockopt(std.IPPROTO_TCP, std.TCP_KEEPINTVL, intvl)
    sock.setsockopt(std.IPPROTO_TCP, std.TCP_KEEPCNT, cnt)


def expect_probe(peer, flow, within):
    """A keepalive probe: an ACK for SND.NXT - 1 with no data (RFC 1122 4.2.3.6)."""
    return peer.expect("A", seq=flow.stack_nxt - 1, ack=flow.peer_nxt, payload_len=0,
                       within=within)


def test_no_probes_without_so_keepalive(peer, flow):
    peer.expect_nothing(within=3 * 3600.0)
    assert state_of(peer, flow) == "ESTABLISHED"


def test_probes_at_idle_then_every_interval_then_etimedout(peer, flow):
    start = peer.now
    keepalive(flow.sock, idle=10, intvl=2, cnt=3)
    times = [expect_probe(peer, flow, within=20.0).time - start for _ in range(3)]
    assert times == pytest.approx([10, 12, 14])
    # Three probes unanswered: at the time of a fourth the connection is given up.
    rst = peer.expect("RA", seq=flow.stack_nxt, ack=flow.peer_nxt, within=5.0)
    assert rst.time - start == pytest.approx(16)
    assert state_of(peer, flow) == "CLOSED"
    with pytest.raises(TimeoutError) as info:
        flow.sock.recv(10)
    assert info.value.errno == errno.ETIMEDOUT


def test_answer_resets_the_probes(peer, flow):
    """A live peer answers with an ACK; the connection is idle again from then on."""
    start = peer.now
    keepalive(flow.sock, idle=10, intvl=2, cnt=3)
    for k in range(1, 4):
        probe = expect_probe(peer, flow, within=20.0)
        assert probe.time - start == pytest.approx(10 * k)
        peer.send("A", flow.peer_nxt, flow.stack_nxt)          # "still here"
    assert state_of(peer, flow) == "ESTABLISHED"
    assert peer.table.stats["keepalive_probes"] == 3


def test_one_late_answer_saves_the_connection(peer, flow):
    start = peer.now
    keepalive(flow.sock, idle=10, intvl=2, cnt=3)
    expect_probe(peer, flow, within=20.0)
    expect_probe(peer, flow, within=5.0)
    peer.send("A", flow.peer_nxt, flow.stack_nxt, at=start + 13)   # between probes 2 and 3
    probe = expect_probe(peer, flow, within=20.0)
    assert probe.time - start == pytest.approx(23)
    assert state_of(peer, flow) == "ESTABLISHED"


def test_incoming_data_postpones_the_first_probe(peer, flow):
    start = peer.now
    keepalive(flow.sock, idle=10, intvl=2, cnt=3)
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"hi", at=start + 6)
    flow.peer_nxt += 2
    peer.expect("A", ack=flow.peer_nxt, within=0.1)             # the delayed ACK
    probe = expect_probe(peer, flow, within=20.0)
    assert probe.time - start == pytest.approx(16)


def test_default_keepalive_timing_is_two_hours_then_75_seconds(peer, flow):
    """Linux's defaults, which are RFC 1122's: idle 2 hours, then every 75 s."""
    start = peer.now
    flow.sock.setsockopt(lwsocket.SOL_SOCKET, std.SO_KEEPALIVE, 1)
    first = expect_probe(peer, flow, within=7300.0)
    second = expect_probe(peer, flow, within=100.0)
    assert (first.time - start, second.time - start) == pytest.approx((7200, 7275))


def test_keepalive_inherited_from_the_listener(peer):
    listener = peer.listen(80)
    keepalive(listener, idle=30, intvl=5, cnt=2)
    flow = peer.handshake_passive(port=80, isn=ISN, mss=MSS, wscale=-1, listener=listener)
    start = peer.now
    probe = expect_probe(peer, flow, within=40.0)
    assert probe.time - start == pytest.approx(30)
    assert flow.sock.getsockopt(std.IPPROTO_TCP, std.TCP_KEEPIDLE) == 30
