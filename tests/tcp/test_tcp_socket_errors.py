"""What the socket layer reports when TCP fails, as a kernel socket would: refused, reset, broken
pipe, TCP timeouts (ETIMEDOUT) versus socket timeouts, on blocking sockets whose calls run the
virtual clock while a scripted peer answers (or does not)."""
import errno

import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork
from lwstack.wire.tcp import SYN
from tcp_harness import TcpPeer, state_of


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=71), tcp={"timestamps_enabled": False})


def _blocking(peer):
    return peer.stack.socket(lwsocket.AF_INET, lwsocket.SOCK_STREAM)


def _refuse(peer):
    """A responder that answers every SYN with <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>, as a host
    with nothing on the port does."""
    def respond(arrival):
        if arrival.flags & SYN:
            peer.send("RA", 0, arrival.seq + 1, sport=arrival.dst_port, dport=arrival.src_port,
                      run=False)
    peer.responder = respond


def _accept_handshake(peer, isn=5000):
    """A responder that completes the handshake for every SYN, then stays silent."""
    def respond(arrival):
        if arrival.flags & SYN:
            peer.send("SA", isn, arrival.seq + 1, sport=arrival.dst_port,
                      dport=arrival.src_port, mss=1460, run=False)
    peer.responder = respond


# -- connect ------------------------------------------------------------------------------------

def test_blocking_connect_refused(peer):
    _refuse(peer)
    sock = _blocking(peer)
    with pytest.raises(ConnectionRefusedError) as info:
        sock.connect(("10.0.0.99", 80))
    assert info.value.errno == errno.ECONNREFUSED
    assert peer.now == 0.0                        # answered at once, no retries


def test_connect_ex_refused(peer):
    _refuse(peer)
    sock = _blocking(peer)
    assert sock.connect_ex(("10.0.0.99", 80)) == errno.ECONNREFUSED


def test_nonblocking_connect_refused_reported_once(peer):
    sock, syn = peer.connect(port=80)
    peer.send("RA", 0, syn.seq + 1)
    assert sock.getsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_ERROR) == errno.ECONNREFUSED
    assert sock.getsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_ERROR) == 0


def test_connect_times_out_with_etimedout_after_syn_retries(peer):
    """6 SYN retransmissions (Linux's tcp_syn_retries) 1, 2, 4 ... 64 s apart: ETIMEDOUT
    after 127 s, raised as TimeoutError with its errno (a TCP timeout, not a socket one)."""
    sock = _blocking(peer)
    with pytest.raises(TimeoutError) as info:
        sock.connect(("10.0.0.99", 80))
    assert info.value.errno == errno.ETIMEDOUT
    syns = peer.received()
    assert [round(s.time) for s in syns] == [0, 1, 3, 7, 15, 31, 63]
    assert {s.seq for s in syns} == {syns[0].seq}
    assert peer.now == pytest.approx(127.0)
    assert peer.table.connections == {}


def test_socket_timeout_is_not_a_tcp_timeout(peer):
    """settimeout() bounds the call: ``socket.timeout`` (a TimeoutError without errno) while
    the handshake goes on."""
    sock = _blocking(peer)
    sock.settimeout(2.5)
    with pytest.raises(TimeoutError) as info:
        sock.connect(("10.0.0.99", 80))
    assert isinstance(info.value, lwsocket.timeout)
    assert info.value.errno is None
    assert peer.now == pytest.approx(2.5)
    assert len(peer.received()) == 2              # the SYN and its first retransmission
    assert state_of(peer, _key(peer)) == "SYN-SENT"


def test_connect_ex_etimedout(peer):
    sock = _blocking(peer)
    assert sock.connect_ex(("10.0.0.99", 80)) == errno.ETIMEDOUT


def test_blocking_connect_succeeds(peer):
    _accept_handshake(peer)
    sock = _blocking(peer)
    sock.connect(("10.0.0.99", 80))
    assert sock.getpeername() == ("10.0.0.99", 80)
    assert [a.letters for a in peer.received()] == ["S", "A"]


# -- established ---------------------------------------------------------------------------------

@pytest.fixture
def flow(peer):
    return peer.handshake_active(port=80, isn=5000)


def test_recv_after_rst_raises_connection_reset(peer, flow):
    peer.send("R", flow.peer_nxt, 0)
    with pytest.raises(ConnectionResetError) as info:
        flow.sock.recv(10)
    assert info.value.errno == errno.ECONNRESET
    # Reported once; afterwards the stream reads as ended and writing is a broken pipe.
    assert flow.sock.recv(10) == b""
    with pytest.raises(BrokenPipeError) as info:
        flow.sock.send(b"x")
    assert info.value.errno == errno.EPIPE


def test_send_after_rst_raises_reset_then_broken_pipe(peer, flow):
    peer.send("R", flow.peer_nxt, 0)
    with pytest.raises(ConnectionResetError):
        flow.sock.send(b"x")
    with pytest.raises(BrokenPipeError):
        flow.sock.sendall(b"y" * 10)
    peer.expect_nothing()                         # nothing goes out for a dead connection


def test_blocking_recv_wakes_with_reset(peer, flow):
    flow.sock.setblocking(True)
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"partial")
    peer.send("R", flow.peer_nxt + 7, 0, run=False)
    assert flow.sock.recv(100) == b"partial"      # data before the RST is still delivered
    with pytest.raises(ConnectionResetError):
        flow.sock.recv(100)


def test_send_after_our_shutdown_is_broken_pipe(peer, flow):
    flow.sock.shutdown(lwsocket.SHUT_WR)
    with pytest.raises(BrokenPipeError):
        flow.sock.send(b"x")


def test_send_on_unconnected_socket_is_not_connected(peer):
    sock = _blocking(peer)
    with pytest.raises(OSError) as info:
        sock.send(b"x")
    assert info.value.errno == errno.ENOTCONN


def test_retransmission_timeout_reports_etimedout(peer, flow):
    """15 unanswered retransmissions (Linux's tcp_retries2) end the connection: ETIMEDOUT."""
    flow.sock.send(b"hello?")
    flow.sock.setblocking(True)
    with pytest.raises(TimeoutError) as info:
        flow.sock.recv(10)
    assert info.value.errno == errno.ETIMEDOUT
    data = [a for a in peer.received() if a.payload]
    assert len(data) == 16 and {a.seq for a in data} == {flow.stack_nxt}
    assert state_of(peer, flow) == "CLOSED"
    with pytest.raises(BrokenPipeError):
        flow.sock.send(b"x")


def _key(peer):
    """The flow of the only connection in the table."""
    (laddr, lport, raddr, rport), = peer.table.connections

    class Key:
        stack_port = lport
        peer_port = rport
    return Key
