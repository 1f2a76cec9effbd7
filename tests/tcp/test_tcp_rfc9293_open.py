"""Opening connections (RFC 9293 section 3.5, figures 5-8) and the SYN options (RFC 6691 MSS,
RFC 7323 window scale and timestamps, RFC 2018 SACK-permitted), against a scripted peer."""
import errno

import pytest

from lwstack.sim import VirtualNetwork
from lwstack.wire.tcp import seq_diff
from tcp_harness import ANY, TcpPeer, assert_segment, conn_of, state_of

#: lwstack's receive window scale and the MSS announced on a 1500-byte MTU (RFC 6691: MTU
#: minus the fixed 20-byte IPv4 and 20-byte TCP headers, options not counted).
WSCALE = 9
MSS_1500 = 1460


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=11))


# -- active open (figure 6) -----------------------------------------------------------------------

def test_active_open_syn_carries_all_options(peer):
    sock, syn = peer.connect(port=80)
    # RFC 7323 2.2: the SYN's window is never scaled; Linux announces 65535 at most.
    assert_segment(syn, "S", ack=0, window=65535, payload_len=0,
                   options={"mss": MSS_1500, "wscale": WSCALE, "sack_permitted": True,
                            "ts": (ANY, 0)})
    assert state_of(peer, _flow_of(peer, syn)) == "SYN-SENT"


def test_active_open_three_way_handshake(peer):
    sock, syn = peer.connect(port=80)
    peer.send("SA", 5000, syn.seq + 1, mss=1460, wscale=7, sack_permitted=True,
              ts=(777, syn.ts_val))
    ack = peer.expect("A", seq=syn.seq + 1, ack=5001, options={"ts": (ANY, 777)})
    # Window scaling in force from here on: the field is the buffer shifted by our scale.
    assert ack.window == conn_of(peer, _flow_of(peer, syn)).rcvbuf >> WSCALE
    assert sock.connect_ex(("10.0.0.99", 80)) == errno.EISCONN
    assert sock.getpeername() == ("10.0.0.99", 80)
    conn = conn_of(peer, _flow_of(peer, syn))
    assert conn.state == "ESTABLISHED"
    assert (conn.snd_wscale, conn.rcv_wscale, conn.sack_ok, conn.ts_ok) == (7, WSCALE, True, True)
    peer.expect_nothing(within=5.0)               # nothing more to say


def test_active_open_data_after_handshake_uses_negotiated_options(peer):
    flow = peer.handshake_active(port=80, isn=5000, mss=1000, wscale=2, ts=900)
    flow.sock.send(b"x" * 2500)
    first = peer.expect("A", seq=flow.stack_nxt, ack=5001, options={"ts": (ANY, 900)})
    # RFC 6691 / RFC 7323: the 12 bytes of timestamp option come out of the peer's MSS.
    assert len(first.payload) == 1000 - 12
    second = peer.expect(seq=flow.stack_nxt + 988, payload_len=988)
    assert second.letters == "A"


def test_active_open_peer_without_options(peer):
    """A SYN-ACK without options: no scaling either way (RFC 7323 2.2), no SACK, no timestamps,
    and the peer's MSS defaults to 536 (RFC 9293 3.7.1)."""
    sock, syn = peer.connect(port=80)
    peer.send("SA", 5000, syn.seq + 1, window=4000)
    ack = peer.expect("A", seq=syn.seq + 1, ack=5001, options={})
    conn = conn_of(peer, _flow_of(peer, syn))
    assert (conn.snd_wscale, conn.rcv_wscale, conn.sack_ok, conn.ts_ok) == (0, 0, False, False)
    assert ack.window == 65535                    # unscaled: 1 MiB of buffer shows as 65535
    sock.send(b"y" * 3000)
    sizes = [len(a.payload) for a in peer.received()]
    assert sizes and sizes[0] == 536 and max(sizes) == 536
    assert sum(sizes) <= 4000                     # the peer's unscaled 4000-byte window


def test_active_open_wscale_above_14_is_used_as_14(peer):
    """RFC 7323 2.3: a shift above 14 is treated as 14."""
    sock, syn = peer.connect(port=80)
    peer.send("SA", 5000, syn.seq + 1, window=1000, wscale=15)
    peer.expect("A")
    conn = conn_of(peer, _flow_of(peer, syn))
    assert conn.snd_wscale == 14
    peer.send("A", 5001, syn.seq + 1, window=3)
    assert conn.snd_wnd == 3 << 14


def test_active_open_mss_follows_the_mtu():
    """RFC 6691: the announced MSS is the MTU less 40, whatever options are sent."""
    peer = TcpPeer(VirtualNetwork(seed=12), mtu=1280)
    sock, syn = peer.connect(port=80)
    assert syn.mss == 1240


def test_active_open_options_disabled_by_the_table():
    peer = TcpPeer(VirtualNetwork(seed=13),
                   tcp={"sack_enabled": False, "timestamps_enabled": False})
    sock, syn = peer.connect(port=80)
    assert_segment(syn, "S", options={"mss": MSS_1500, "wscale": WSCALE})
    peer.send("SA", 5000, syn.seq + 1, mss=1460, wscale=7, sack_permitted=True, ts=(1, 1))
    peer.expect("A", options={})                  # the peer's offers are not taken up
    conn = conn_of(peer, _flow_of(peer, syn))
    assert (conn.sack_ok, conn.ts_ok) == (False, False)


def test_syn_sent_ignores_segment_without_syn_or_ack(peer):
    sock, syn = peer.connect(port=80)
    peer.send("", 5000, 0, payload=b"data")       # no flags at all
    peer.send("F", 5000, 0)
    peer.expect_nothing()
    assert state_of(peer, _flow_of(peer, syn)) == "SYN-SENT"


def test_syn_sent_bad_ack_gets_reset(peer):
    """RFC 9293 3.10.7.3: an ACK outside ISS < SEG.ACK =< SND.NXT gets <SEQ=SEG.ACK><CTL=RST>."""
    sock, syn = peer.connect(port=80)
    peer.send("SA", 5000, syn.seq + 7)
    peer.expect("R", seq=syn.seq + 7, ack=0, window=0, options={})
    peer.send("A", 5000, syn.seq)                 # acknowledges nothing (SEG.ACK = ISS)
    peer.expect("R", seq=syn.seq, ack=0)
    assert state_of(peer, _flow_of(peer, syn)) == "SYN-SENT"
    # The connection survives and completes with a good SYN-ACK.
    peer.send("SA", 5000, syn.seq + 1)
    peer.expect("A", seq=syn.seq + 1, ack=5001)


def test_syn_retransmitted_with_exponential_backoff(peer):
    sock, syn = peer.connect(port=80)
    times = [syn.time]
    for _ in range(3):
        again = peer.expect("S", seq=syn.seq, within=100.0)
        assert_segment(again, options={"mss": MSS_1500, "wscale": WSCALE,
                                       "sack_permitted": True, "ts": (ANY, 0)})
        times.append(again.time)
    # RFC 6298 2.1 and 5.5: initial RTO 1 s, doubled on each expiry.
    assert [round(b - a, 6) for a, b in zip(times, times[1:])] == [1.0, 2.0, 4.0]


def test_syn_sent_answers_late_syn_ack_after_retransmission(peer):
    sock, syn = peer.connect(port=80)
    peer.expect("S", seq=syn.seq, within=2.0)
    peer.send("SA", 5000, syn.seq + 1)
    peer.expect("A", seq=syn.seq + 1, ack=5001)
    assert state_of(peer, _flow_of(peer, syn)) == "ESTABLISHED"


# -- passive open (figure 6, the other side) -----------------------------------------------------

def test_passive_open_syn_ack_mirrors_the_peers_options(peer):
    listener = peer.listen(80)
    peer.dport = 80
    peer.send("S", 1000, 0, mss=1400, wscale=3, sack_permitted=True, ts=(4242, 0))
    synack = peer.expect("SA", ack=1001, window=65535, payload_len=0,
                         options={"mss": MSS_1500, "wscale": WSCALE, "sack_permitted": True,
                                  "ts": (ANY, 4242)})
    assert state_of(peer, _flow(peer, 80)) == "SYN-RECEIVED"
    peer.send("A", 1001, synack.seq + 1, ts=(4243, synack.ts_val))
    peer.expect_nothing()
    sock, address = listener.accept()
    assert address == ("10.0.0.99", peer.sport)
    conn = conn_of(peer, _flow(peer, 80))
    assert conn.state == "ESTABLISHED"
    # RFC 6691: the peer's 1400 less 12 bytes of timestamps per segment.
    assert (conn.snd_wscale, conn.rcv_wscale, conn.sack_ok, conn.ts_ok, conn.mss) == \
        (3, WSCALE, True, True, 1388)


def test_passive_open_bare_syn_gets_only_mss(peer):
    """A SYN without options: the SYN-ACK may not offer scaling, SACK or timestamps
    (RFC 7323 2.2 and 3.2, RFC 2018 2), only the MSS."""
    listener = peer.listen(80)
    peer.dport = 80
    peer.send("S", 1000, 0)
    synack = peer.expect("SA", ack=1001, options={"mss": MSS_1500})
    peer.send("A", 1001, synack.seq + 1)
    sock, _ = listener.accept()
    sock.send(b"z" * 1000)
    # The default MSS, 536 (RFC 9293 3.7.1), and no options on data segments.
    peer.expect("A", seq=synack.seq + 1, ack=1001, payload_len=536, options={})
    peer.expect_nothing()                         # Nagle holds the short tail (RFC 896)
    peer.send("A", 1001, synack.seq + 537)
    peer.expect("PA", seq=synack.seq + 537, ack=1001, payload_len=464, options={})


@pytest.mark.parametrize("offer, expected", [
    ({"wscale": 0}, {"wscale": WSCALE}),
    ({"sack_permitted": True}, {"sack_permitted": True}),
    ({"ts": (5, 0)}, {"ts": (ANY, 5)}),
    ({"mss": 9000}, {}),
])
def test_passive_open_offers_one_option_each(peer, offer, expected):
    peer.listen(80)
    peer.dport = 80
    peer.send("S", 1000, 0, **offer)
    peer.expect("SA", ack=1001, options=dict({"mss": MSS_1500}, **expected))


def test_passive_open_data_on_the_final_ack(peer):
    listener = peer.listen(80)
    peer.dport = 80
    peer.send("S", 1000, 0, mss=1460)
    synack = peer.expect("SA")
    peer.send("PA", 1001, synack.seq + 1, payload=b"GET /")
    sock, _ = listener.accept()
    assert sock.recv(100) == b"GET /"
    peer.expect("A", seq=synack.seq + 1, ack=1006, within=1.0)   # delayed ACK


def test_syn_received_retransmits_syn_ack_for_a_duplicate_syn(peer):
    peer.listen(80)
    peer.dport = 80
    peer.send("S", 1000, 0, mss=1460)
    synack = peer.expect("SA", ack=1001)
    peer.send("S", 1000, 0, mss=1460)             # our SYN-ACK was "lost"
    peer.expect("SA", seq=synack.seq, ack=1001)


def test_syn_ack_retransmitted_then_given_up(peer):
    """SYN-ACK retransmissions back off from 1 s; after 5 (Linux's tcp_synack_retries) the
    half-open connection is dropped and the listener forgets it."""
    listener = peer.listen(80)
    peer.dport = 80
    peer.send("S", 1000, 0)
    synack = peer.expect("SA")
    times = [synack.time]
    for _ in range(5):
        times.append(peer.expect("SA", seq=synack.seq, ack=1001, within=100.0).time)
    assert [round(b - a, 6) for a, b in zip(times, times[1:])] == [1, 2, 4, 8, 16]
    peer.run(100.0)
    assert state_of(peer, _flow(peer, 80)) == "CLOSED"
    assert not peer.table.listeners[(b"\0\0\0\0", 80)].syn_queue
    with pytest.raises(BlockingIOError):
        listener.accept()


# -- simultaneous open (figure 8) -----------------------------------------------------------------

def test_simultaneous_open(peer):
    sock, syn = peer.connect(port=80)
    # The peer's own SYN crosses ours: SYN-SENT -> SYN-RECEIVED, answered with a SYN-ACK that
    # repeats our ISS (section 3.5, figure 8 line 3).
    peer.send("S", 5000, 0, mss=1460, wscale=7, sack_permitted=True, ts=(10, 0))
    peer.expect("SA", seq=syn.seq, ack=5001,
                options={"mss": MSS_1500, "wscale": WSCALE, "sack_permitted": True,
                         "ts": (ANY, 10)})
    flow = _flow_of(peer, syn)
    assert state_of(peer, flow) == "SYN-RECEIVED"
    # The peer's SYN-ACK (figure 8 line 4): a retransmitted SYN below RCV.NXT, answered with
    # an ACK.  Its ACK of our SYN, or a plain ACK, completes the handshake.
    peer.send("SA", 5000, syn.seq + 1, ts=(11, syn.ts_val))
    peer.expect("A", seq=syn.seq + 1, ack=5001)
    peer.send("A", 5001, syn.seq + 1, ts=(12, syn.ts_val))
    assert state_of(peer, flow) == "ESTABLISHED"
    assert sock.connect_ex(("10.0.0.99", 80)) == errno.EISCONN
    sock.send(b"hi")
    peer.expect("PA", seq=syn.seq + 1, ack=5001, payload=b"hi")


def test_simultaneous_open_reset_is_refused(peer):
    """RFC 9293 3.10.7.4: a RST in SYN-RECEIVED that came from SYN-SENT: connection refused."""
    sock, syn = peer.connect(port=80)
    peer.send("S", 5000, 0)
    peer.expect("SA")
    peer.send("R", 5001, 0)
    assert state_of(peer, _flow_of(peer, syn)) == "CLOSED"
    assert sock.connect_ex(("10.0.0.99", 80)) == errno.ECONNREFUSED


# -- ISNs (RFC 6528) and ephemeral ports (RFC 6056) -----------------------------------------------

def test_isns_of_different_four_tuples_are_unrelated(peer):
    peer.listen(80)
    peer.dport = 80
    isns = []
    for sport in (40000, 40001, 40002, 40003):
        peer.send("S", 1000, 0, sport=sport)
        isns.append(peer.expect("SA", dst_port=sport).seq)
    # Same instant, neighbouring ports: a keyed hash apart, not a counter step apart.
    diffs = [abs(seq_diff(a, b)) for a in isns for b in isns if a is not b]
    assert min(diffs) > 1 << 16


def test_isn_of_one_four_tuple_grows_with_the_clock(peer):
    """RFC 6528 section 3: ISN = M + F(4-tuple, secret), M a 4 microsecond timer."""
    peer.listen(80)
    peer.dport = 80
    peer.send("S", 1000, 0)
    first = peer.expect("SA")
    peer.send("R", 1001, 0)                       # forget the half-open connection
    peer.send("S", 90000, 0, at=peer.now + 10.0)
    second = peer.expect("SA")
    assert seq_diff(second.seq, first.seq) == 10.0 * 250_000


def test_isn_of_active_opens_also_follow_rfc_6528(peer):
    sock1, syn1 = peer.connect(port=80)
    sock2, syn2 = peer.connect(port=80)
    assert syn1.src_port != syn2.src_port
    assert abs(seq_diff(syn1.seq, syn2.seq)) > 1 << 16


def test_ephemeral_ports_in_range_and_distinct(peer):
    """RFC 6056: ports from 32768-60999 (Linux's range), never two alike for one destination."""
    ports = []
    for _ in range(40):
        sock, syn = peer.connect(port=80)
        ports.append(syn.src_port)
    assert all(32768 <= p <= 60999 for p in ports)
    assert len(set(ports)) == len(ports)


def test_ephemeral_ports_differ_per_destination(peer):
    """RFC 6056 Algorithm 3: each destination sees its own offset into the range."""
    first = [peer.connect(port=80)[1].src_port for _ in range(3)]
    other = [peer.connect(port=81)[1].src_port for _ in range(3)]
    assert not set(first) & set(other)
    assert first != [p - 3 for p in other]        # not one shared counter


# -- helpers ---------------------------------------------------------------------------------------

class _FlowKey:
    def __init__(self, stack_port, peer_port):
        self.stack_port = stack_port
        self.peer_port = peer_port


def _flow_of(peer, syn):
    """The flow an active open's SYN belongs to."""
    return _FlowKey(syn.src_port, syn.dst_port)


def _flow(peer, port):
    """The flow of the peer's current source port to the stack's ``port``."""
    return _FlowKey(port, peer.sport)


def test_passive_open_echoes_the_newest_timestamp(peer):
    """RFC 7323 4.3: the SYN-ACK's ACK is Last.ACK.sent, so the first data segment at RCV.NXT
    updates TS.Recent and our ACK echoes its TSval, not the SYN's."""
    flow = peer.handshake_passive(port=80, isn=1000, ts=100)
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"x", ts=(150, flow.synack.ts_val))
    peer.expect("A", ack=flow.peer_nxt + 1, options={"ts": (ANY, 150)}, within=1.0)


def test_without_window_scale_reads_send_no_useless_window_updates(peer):
    """Unscaled, the window field tops out at 65535: reading cannot open it further, so a read
    must not send a window update (RFC 9293 3.8.6.2.2) and the delayed ACK stays delayed."""
    flow = peer.handshake_passive(port=80, isn=1000, wscale=-1)
    for i in range(4):
        peer.send("PA", flow.peer_nxt + 100 * i, flow.stack_nxt, payload=b"h" * 100)
        assert flow.sock.recv(1000) == b"h" * 100
    acks = peer.received(within=1.0)
    assert [(a.ack - flow.peer_nxt) & 0xFFFFFFFF for a in acks] == [400]
    assert_segment(acks[0], "A", seq=flow.stack_nxt, window=65535)
    assert acks[0].time == pytest.approx(0.04)    # the delayed-ACK timer, not a read


# -- closing before the handshake completes (figure 5: SYN-SENT -> CLOSED, SYN-RCVD -> FIN-WAIT-1) --

def test_close_in_syn_sent_deletes_the_connection_quietly(peer):
    """RFC 9293 3.10.4: CLOSE in SYN-SENT deletes the TCB; nothing is sent (no RST)."""
    sock, syn = peer.connect(port=80)
    sock.close()
    assert state_of(peer, _flow_of(peer, syn)) == "CLOSED"
    peer.expect_nothing(within=10.0)              # no SYN retransmissions either
    peer.send("SA", 5000, syn.seq + 1)            # a late SYN-ACK finds nobody
    peer.expect("R", seq=syn.seq + 1, ack=0)


def test_close_in_syn_received_sends_fin_after_the_handshake(peer):
    """CLOSE in SYN-RECEIVED (here from a simultaneous open): the FIN is queued until the
    handshake completes (RFC 9293 3.10.4 allows queueing it), then FIN-WAIT-1."""
    sock, syn = peer.connect(port=80)
    peer.send("S", 5000, 0)
    peer.expect("SA", seq=syn.seq, ack=5001)
    sock.shutdown(2)                              # SHUT_RDWR
    peer.expect_nothing()
    assert state_of(peer, _flow_of(peer, syn)) == "SYN-RECEIVED"
    peer.send("A", 5001, syn.seq + 1)
    peer.expect("FPA", seq=syn.seq + 1, ack=5001)
    assert state_of(peer, _flow_of(peer, syn)) == "FIN-WAIT-1"
    peer.send("FA", 5001, syn.seq + 2)
    peer.expect("A", seq=syn.seq + 2, ack=5002)
    assert state_of(peer, _flow_of(peer, syn)) == "TIME-WAIT"
