"""TCP over IPv6 against a scripted peer (tcp_harness.TcpPeer with IPv6 addresses): a whole
stack on virtual time, an AF_INET6 socket, every segment it sends checked field by field and
by dpkt.  Handshakes and their options (RFC 6691: MSS = MTU - 60 over IPv6; RFC 8200 8.3: 1220
when the peer says nothing), data both ways, RST (RFC 9293 3.10.7, RFC 5961), retransmission,
close, ICMPv6 errors during a connect, and Packet Too Big lowering the MSS (RFC 8201)."""
import errno

import pytest

from lwstack.sim import VirtualNetwork
from lwstack.wire import icmpv6
from tcp_harness import ANY, TcpPeer, assert_segment, conn_of, state_of

STACK6 = "fd00::1"
PEER6 = "fd00::99"
#: RFC 6691 over IPv6 at MTU 1500: 1500 - 40 (IPv6) - 20 (TCP).
MSS6 = 1440
WSCALE = 9


def make_peer(seed=6, **options):
    return TcpPeer(VirtualNetwork(seed=seed), STACK6, PEER6, **options)


@pytest.fixture
def peer():
    return make_peer(tcp={"timestamps_enabled": False})


@pytest.fixture
def peer_ts():
    return make_peer(seed=7)


# -- opening --------------------------------------------------------------------------------------

def test_active_open_over_ipv6_sends_every_option_with_the_ipv6_mss(peer_ts):
    sock, syn = peer_ts.connect(port=80)
    assert_segment(syn, "S", ack=0, window=65535, payload_len=0,
                   options={"mss": MSS6, "wscale": WSCALE, "sack_permitted": True,
                            "ts": (ANY, 0)})
    assert (syn.ip.src, syn.ip.dst, syn.ip.hop_limit) == \
        (peer_ts.stack_ip, peer_ts.ip, 64)
    peer_ts.send("SA", 5000, syn.seq + 1, mss=1400, wscale=7, sack_permitted=True,
                 ts=(77, syn.ts_val))
    peer_ts.expect("A", seq=syn.seq + 1, ack=5001, options={"ts": (ANY, 77)})
    assert sock.getpeername() == (PEER6, 80, 0, 0)
    assert sock.getsockname() == (STACK6, syn.src_port, 0, 0)
    conn = sock._conn
    assert conn.state == "ESTABLISHED" and conn.mss == 1400 - 12   # timestamps' 12 bytes


def test_passive_open_over_ipv6(peer_ts):
    flow = peer_ts.handshake_passive(port=8080, isn=1000, mss=1440, ts=500)
    assert_segment(flow.synack, "SA", ack=1001,
                   options={"mss": MSS6, "wscale": WSCALE, "sack_permitted": True,
                            "ts": (ANY, 500)})
    assert flow.sock.getsockname() == (STACK6, 8080, 0, 0)
    assert flow.sock.getpeername() == (PEER6, 40000, 0, 0)
    assert state_of(peer_ts, flow) == "ESTABLISHED"


def test_listener_without_bind_listens_on_any6(peer):
    sock = peer.socket()
    sock.listen(4)
    host, port, flowinfo, scope = sock.getsockname()
    assert (host, flowinfo, scope) == ("::", 0, 0) and 32768 <= port <= 60999
    peer.dport = port
    peer.send("S", 1000, 0, mss=1440)
    peer.expect("SA", ack=1001)


def test_mss_follows_the_interface_mtu_over_ipv6():
    peer = make_peer(seed=8, mtu=1400)
    _sock, syn = peer.connect(port=80)
    assert syn.mss == 1340


def test_peer_without_mss_option_gets_1220_byte_segments(peer):
    """RFC 9293 section 3.7.1 / RFC 8200 section 8.3: 1220 bytes (IPv4 would get 536)."""
    flow = peer.handshake_passive(port=80, isn=1000, mss=0, wscale=-1, sack_permitted=False)
    flow.sock.setsockopt(6, 1, 1)                 # TCP_NODELAY: no Nagle in the count
    flow.sock.send(b"z" * 3000)
    sizes = [len(a.payload) for a in peer.received()]
    assert sizes == [1220, 1220, 560]


# -- data ----------------------------------------------------------------------------------------------

def test_data_both_ways_and_delayed_ack_over_ipv6(peer):
    flow = peer.handshake_passive(port=80, isn=1000)
    sent_at = peer.now
    peer.send("PA", 1001, flow.stack_nxt, payload=b"request")
    ack = peer.expect("A", seq=flow.stack_nxt, ack=1008, payload_len=0, within=1.0)
    assert ack.time - sent_at == pytest.approx(0.04)          # the delayed ACK timer
    assert flow.sock.recv(100) == b"request"
    flow.sock.send(b"r" * 4000)
    first, second = peer.received()[:2]
    assert (len(first.payload), len(second.payload)) == (MSS6, MSS6)
    assert first.seq == flow.stack_nxt


def test_out_of_order_data_is_sacked_over_ipv6(peer):
    flow = peer.handshake_passive(port=80, isn=1000)
    peer.send("A", 1101, flow.stack_nxt, payload=b"b" * 100)       # a hole of 100 bytes
    peer.expect("A", ack=1001, options={"sack": [(1101, 1201)]})
    peer.send("A", 1001, flow.stack_nxt, payload=b"a" * 100)
    peer.expect("A", ack=1201, within=0.05)
    assert flow.sock.recv(1000) == b"a" * 100 + b"b" * 100


def test_lost_segment_is_retransmitted_after_the_rto(peer):
    flow = peer.handshake_passive(port=80, isn=1000)
    flow.sock.send(b"d" * 100)
    first = peer.expect("PA", seq=flow.stack_nxt, payload_len=100)
    again = peer.expect("PA", seq=flow.stack_nxt, payload_len=100, within=2.0)
    assert again.time - first.time == pytest.approx(1.0)      # RFC 6298 initial RTO


# -- resets ------------------------------------------------------------------------------------------

def test_syn_to_a_closed_ipv6_port_gets_rst_ack(peer):
    peer.dport = 81
    peer.send("S", 1000, 0)
    rst = peer.expect("RA", seq=0, ack=1001, window=0, options={})
    assert rst.ip.src == peer.stack_ip


def test_connect_refused_by_rst(peer):
    sock, syn = peer.connect(port=80)
    peer.send("RA", 0, syn.seq + 1)
    assert sock.connect_ex((PEER6, 80)) == errno.ECONNREFUSED


def test_in_window_rst_is_challenged_and_exact_rst_resets(peer):
    flow = peer.handshake_passive(port=80, isn=1000)
    peer.send("R", 1001 + 10, 0)                  # RFC 5961 3.2: in the window, not exact
    peer.expect("A", seq=flow.stack_nxt, ack=1001)
    peer.send("R", 1001, 0)
    assert state_of(peer, flow) == "CLOSED"
    with pytest.raises(ConnectionResetError):
        flow.sock.recv(10)


def test_icmpv6_port_unreachable_ends_a_connect():
    """RFC 4443 3.1 code 4 (port unreachable) during the handshake: ECONNREFUSED (Linux's
    icmpv6_err_convert), through the host to the table."""
    peer = make_peer(seed=9)
    sock, syn = peer.connect(port=80)
    message = icmpv6.build_error(icmpv6.TYPE_DEST_UNREACHABLE, 4,
                                 syn.frame[14:14 + 40 + syn.ip.payload_len], peer.ip,
                                 peer.stack_ip)
    peer.send_ip(message, protocol=58)
    assert sock.connect_ex((PEER6, 80)) == errno.ECONNREFUSED
    assert peer.host.stats["icmp_error_delivered"] == 1


# -- closing -------------------------------------------------------------------------------------------

def test_close_and_time_wait_over_ipv6(peer):
    flow = peer.handshake_passive(port=80, isn=1000)
    flow.sock.close()
    fin = peer.expect("FPA", seq=flow.stack_nxt, ack=1001)
    peer.send("FA", 1001, fin.seq + 1)
    peer.expect("A", seq=fin.seq + 1, ack=1002)
    assert state_of(peer, flow) == "TIME-WAIT"
    peer.run(61)
    assert conn_of(peer, flow) is None


# -- Packet Too Big (RFC 8201) ------------------------------------------------------------------------

def test_packet_too_big_lowers_the_mss_and_resends_at_once(peer):
    flow = peer.handshake_passive(port=80, isn=1000)
    flow.sock.setsockopt(6, 1, 1)                 # TCP_NODELAY
    flow.sock.send(b"p" * 4000)
    sent = peer.received()
    assert [len(a.payload) for a in sent] == [MSS6, MSS6, 1120]
    conn = conn_of(peer, flow)
    cwnd = conn.cc.cwnd
    # A router on the path has a 1400-byte MTU: it quotes our first segment.
    peer.send_packet_too_big(sent[0], 1400, src="fd00::fe")
    resent = peer.received()
    # Everything in flight again, at once, in 1400 - 60 = 1340-byte segments.
    assert [(a.seq, len(a.payload)) for a in resent] == \
        [(flow.stack_nxt, 1340), (flow.stack_nxt + 1340, 1340), (flow.stack_nxt + 2680, 1320)]
    assert all(a.time == sent[0].time for a in resent)
    assert conn.mss == 1340 and conn.cc.cwnd == cwnd       # no congestion response
    assert peer.host.path_mtu(peer.ip, peer.now) == 1400   # the host learnt it too
    peer.send("A", 1001, flow.stack_nxt + 4000)
    assert conn.recovery is None
    flow.sock.send(b"q" * 2000)
    assert [len(a.payload) for a in peer.received()] == [1340, 660]
    with pytest.raises(BlockingIOError):
        flow.sock.recv(10)                        # no error reaches the application
    assert flow.sock.getsockopt(6, 2) == 1340     # TCP_MAXSEG


def test_packet_too_big_below_1280_is_taken_as_1280(peer):
    flow = peer.handshake_passive(port=80, isn=1000)
    flow.sock.setsockopt(6, 1, 1)                 # TCP_NODELAY
    flow.sock.send(b"p" * 2000)
    first, _second = peer.received()
    peer.send_packet_too_big(first, 600)
    assert conn_of(peer, flow).mss == 1280 - 60
    assert [len(a.payload) for a in peer.received()] == [1220, 780]


def test_packet_too_big_when_what_is_in_flight_fits_resends_nothing(peer):
    """Linux's tcp_simple_retransmit resends only segments over the new MSS: 1000 bytes in
    flight fit a 1300-byte path."""
    flow = peer.handshake_passive(port=80, isn=1000)
    flow.sock.send(b"p" * 1000)
    first = peer.expect("PA", payload_len=1000)
    peer.send_packet_too_big(first, 1300)
    assert conn_of(peer, flow).mss == 1300 - 60
    peer.expect_nothing(within=0.5)


def test_packet_too_big_for_acknowledged_data_changes_nothing_now(peer):
    """RFC 5927 4.1: a quote of data no longer in flight is not believed by TCP."""
    flow = peer.handshake_passive(port=80, isn=1000)
    flow.sock.send(b"p" * 1000)
    first = peer.expect("PA", payload_len=1000)
    peer.send("A", 1001, first.seq + 1000)
    peer.send_packet_too_big(first, 1300)
    conn = conn_of(peer, flow)
    assert conn.mss == MSS6 and peer.table.stats["icmp_error_out_of_window"] == 1
    peer.expect_nothing(within=1.0)


def test_new_connection_to_a_destination_with_a_learnt_path_mtu(peer):
    """The host's path MTU cache sets the MSS of the next connection (RFC 8201 section 4)."""
    flow = peer.handshake_passive(port=80, isn=1000)
    flow.sock.send(b"p" * 1000)
    first = peer.expect("PA", payload_len=1000)
    peer.send_packet_too_big(first, 1300)
    _sock, syn = peer.connect(port=81)
    assert syn.mss == 1300 - 60
