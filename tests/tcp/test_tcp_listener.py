"""The listener (RFC 9293 section 3.10.7.2): listen backlog and a full accept queue, SYN cookies
when the SYN queue overflows (RFC 4987 section 3.6), closing a listener with connections queued."""
import pytest

from lwstack.proto.tcp import hashes
from lwstack.sim import VirtualNetwork
from tcp_harness import TcpPeer, assert_segment, conn_of, state_of


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=61), tcp={"timestamps_enabled": False})


def _listener(peer, sock):
    """The TcpListener behind a listening socket."""
    return peer.table.listeners[(b"\0\0\0\0", sock.getsockname()[1])]


def _syn(peer, sport, isn, **options):
    """The peer's SYN from ``sport`` to port 80; returns the stack's answer (or None)."""
    peer.send("S", isn, 0, sport=sport, dport=80, **options)
    return peer.next()


# -- backlog and the accept queue -----------------------------------------------------------------

def test_backlog_zero_means_one(peer):
    sock = peer.listen(80, backlog=0)
    assert _listener(peer, sock).backlog == 1


def test_full_accept_queue_drops_the_final_ack_until_accept(peer):
    """Like Linux: while the accept queue is full, the handshake's last ACK is dropped (no RST),
    the SYN-ACK is retransmitted, and the peer's next ACK completes the connection."""
    sock = peer.listen(80, backlog=1)
    first = peer.handshake_passive(port=80, isn=1000, listener=sock, accept=False, sport=40000)
    assert state_of(peer, first) == "ESTABLISHED"
    synack = _syn(peer, 40001, 5000, mss=1460)
    assert synack.letters == "SA"
    peer.send("A", 5001, synack.seq + 1, sport=40001)
    peer.expect_nothing()
    second = _FlowKey(80, 40001)
    assert state_of(peer, second) == "SYN-RECEIVED"
    assert peer.table.stats["accept_queue_full"] == 1
    # Our SYN-ACK timer runs on: the peer hears the SYN-ACK again.
    peer.expect("SA", seq=synack.seq, ack=5001, dst_port=40001, within=2.0)
    accepted, address = sock.accept()
    assert address == ("10.0.0.99", 40000)
    peer.send("A", 5001, synack.seq + 1, sport=40001)
    assert state_of(peer, second) == "ESTABLISHED"
    accepted, address = sock.accept()
    assert address == ("10.0.0.99", 40001)


def test_data_on_a_dropped_final_ack_is_acknowledged_later(peer):
    sock = peer.listen(80, backlog=1)
    peer.handshake_passive(port=80, isn=1000, listener=sock, accept=False, sport=40000)
    synack = _syn(peer, 40001, 5000)
    peer.send("PA", 5001, synack.seq + 1, sport=40001, payload=b"early")
    peer.expect_nothing()
    sock.accept()
    peer.send("PA", 5001, synack.seq + 1, sport=40001, payload=b"early")   # retransmission
    accepted, _ = sock.accept()
    accepted.setblocking(False)
    assert accepted.recv(10) == b"early"


def test_listener_close_resets_queued_and_half_open_connections(peer):
    sock = peer.listen(80, backlog=4)
    done = peer.handshake_passive(port=80, isn=1000, listener=sock, accept=False, sport=40000)
    half = _syn(peer, 40001, 5000)
    sock.close()
    resets = {a.dst_port: a for a in peer.received()}
    assert set(resets) == {40000, 40001}
    assert resets[40000].letters == "RA" and resets[40000].seq == done.stack_nxt
    assert resets[40001].letters == "RA" and resets[40001].seq == (half.seq + 1) & 0xFFFFFFFF
    assert peer.table.connections == {}
    # And the port is closed now: a SYN is refused.
    peer.send("S", 9000, 0, sport=40002, dport=80)
    peer.expect("RA", seq=0, ack=9001)


# -- SYN cookies (RFC 4987 section 3.6) --------------------------------------------------------------

@pytest.fixture
def cookie_peer(peer):
    """A listener whose SYN queue holds one half-open connection, already taken."""
    sock = peer.listen(80, backlog=8)
    _listener(peer, sock).syn_backlog = 1
    synack = _syn(peer, 40000, 1000, mss=1460)
    assert synack.letters == "SA"
    peer.sock = sock
    return peer


def _cookie_synack(peer, sport=40001, isn=777_000, mss=1460, **options):
    synack = _syn(peer, sport, isn, mss=mss, wscale=7, sack_permitted=True, **options)
    assert synack is not None
    return synack


def test_syn_queue_overflow_answers_with_a_cookie(cookie_peer):
    peer = cookie_peer
    synack = _cookie_synack(peer)
    # Stateless: only the MSS is announced (no window scale, SACK or timestamps to remember).
    assert_segment(synack, "SA", ack=777_001, window=65535, options={"mss": 1460})
    assert peer.table.stats["syncookies_sent"] == 1
    assert state_of(peer, _FlowKey(80, 40001)) == "CLOSED"       # nothing was kept
    mss = hashes.check_syn_cookie(peer.table.secret, peer.stack_ip, 80, peer.ip, 40001,
                                  777_000, synack.seq, peer.now)
    assert mss == 1460


def test_valid_cookie_ack_creates_the_connection(cookie_peer):
    peer = cookie_peer
    synack = _cookie_synack(peer)
    peer.send("A", 777_001, synack.seq + 1, sport=40001)
    peer.expect_nothing()
    flow = _FlowKey(80, 40001)
    assert state_of(peer, flow) == "ESTABLISHED"
    assert peer.table.stats["syncookies_accepted"] == 1
    sock, address = peer.sock.accept()
    sock.setblocking(False)
    assert address == ("10.0.0.99", 40001)
    conn = conn_of(peer, flow)
    assert (conn.mss, conn.snd_wscale, conn.rcv_wscale, conn.sack_ok) == (1460, 0, 0, False)
    peer.send("PA", 777_001, synack.seq + 1, sport=40001, payload=b"hello")
    assert sock.recv(10) == b"hello"
    sock.send(b"world")
    peer.expect("PA", seq=synack.seq + 1, ack=777_006, payload=b"world", options={})


def test_cookie_ack_with_data_delivers_it(cookie_peer):
    peer = cookie_peer
    synack = _cookie_synack(peer)
    peer.send("PA", 777_001, synack.seq + 1, sport=40001, payload=b"GET /")
    sock, _ = peer.sock.accept()
    sock.setblocking(False)
    assert sock.recv(10) == b"GET /"


@pytest.mark.parametrize("mss, expected", [(1000, 536), (1300, 1300), (1440, 1440),
                                           (9000, 1460)])
def test_cookie_carries_the_mss(cookie_peer, mss, expected):
    """Three bits of the cookie index a table of MSS values (the largest not above the
    peer's, capped by our MTU)."""
    peer = cookie_peer
    synack = _cookie_synack(peer, mss=mss)
    peer.send("A", 777_001, synack.seq + 1, sport=40001)
    assert conn_of(peer, _FlowKey(80, 40001)).mss == expected


@pytest.mark.parametrize("seq_delta, ack_delta", [(0, 1), (0, -1), (1, 0), (-1, 0)])
def test_forged_cookie_ack_gets_rst(cookie_peer, seq_delta, ack_delta):
    peer = cookie_peer
    synack = _cookie_synack(peer)
    ack = synack.seq + 1 + ack_delta
    peer.send("A", 777_001 + seq_delta, ack, sport=40001)
    peer.expect("R", seq=ack, ack=0)
    assert state_of(peer, _FlowKey(80, 40001)) == "CLOSED"
    assert peer.table.stats["syncookies_accepted"] == 0


def test_blind_ack_to_listener_gets_rst(cookie_peer):
    peer = cookie_peer
    peer.send("A", 12345, 0x12345678, sport=40009, dport=80)
    peer.expect("R", seq=0x12345678, ack=0)


def test_cookie_expires(cookie_peer):
    """A cookie is good for two 64-second ticks at most."""
    peer = cookie_peer
    synack = _cookie_synack(peer)
    peer.run(200.0)
    assert all(a.dst_port == 40000 for a in peer.received())   # the half-open one's SYN-ACKs
    peer.send("A", 777_001, synack.seq + 1, sport=40001)
    peer.expect("R", seq=synack.seq + 1, dst_port=40001)
    assert state_of(peer, _FlowKey(80, 40001)) == "CLOSED"


def test_cookie_ack_while_accept_queue_full_is_dropped_not_reset(peer):
    """A valid cookie ACK that finds the accept queue full is dropped, as the non-cookie final
    ACK is (and as Linux does): a RST would kill a connection the peer believes established;
    its next segment, once there is room, completes the connection."""
    sock = peer.listen(80, backlog=1)
    _listener(peer, sock).syn_backlog = 1
    peer.handshake_passive(port=80, isn=1000, listener=sock, accept=False, sport=40000)
    _syn(peer, 40001, 5000)                              # half-open: the SYN queue is full
    synack = _cookie_synack(peer, sport=40002, isn=9000)
    assert synack.letters == "SA" and peer.table.stats["syncookies_sent"] == 1
    peer.send("A", 9001, synack.seq + 1, sport=40002)
    peer.expect_nothing()
    sock.accept()                                        # room again
    peer.send("PA", 9001, synack.seq + 1, sport=40002, payload=b"still here")
    assert state_of(peer, _FlowKey(80, 40002)) == "ESTABLISHED"


def test_without_syncookies_overflowing_syns_are_dropped(peer):
    peer.table.syncookies = False
    sock = peer.listen(80, backlog=8)
    _listener(peer, sock).syn_backlog = 1
    assert _syn(peer, 40000, 1000).letters == "SA"
    assert _syn(peer, 40001, 2000) is None
    assert peer.table.stats["syn_queue_overflow"] == 1
    # The half-open one still completes.
    peer.expect("SA", dst_port=40000, within=2.0)


class _FlowKey:
    def __init__(self, stack_port, peer_port):
        self.stack_port = stack_port
        self.peer_port = peer_port
