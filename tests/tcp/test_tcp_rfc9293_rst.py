"""Resets (RFC 9293 section 3.5.2/3.5.3): RST generation for segments with no connection
(3.10.7.1, both forms) and to a listener (3.10.7.2), and RST processing in every state."""
import errno

import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork
from tcp_harness import TcpPeer, state_of


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=41), tcp={"timestamps_enabled": False})


@pytest.fixture
def flow(peer):
    return peer.handshake_passive(port=80, isn=1000)


# -- no connection: section 3.10.7.1 ------------------------------------------------------------

def test_syn_to_closed_port_gets_rst_ack(peer):
    """No ACK bit: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, the SYN counting one."""
    peer.send("S", 123456, 0, dport=9, mss=1460, wscale=7, sack_permitted=True)
    peer.expect("RA", seq=0, ack=123457, window=0, payload_len=0, options={},
                src_port=9, dst_port=peer.sport)
    assert peer.table.stats["no_connection"] == 1


@pytest.mark.parametrize("flags, payload, length", [
    ("", b"", 0),
    ("P", b"hello", 5),
    ("F", b"", 1),
    ("FP", b"abc", 4),
    ("SF", b"xy", 4),
])
def test_no_ack_segment_to_closed_port(peer, flags, payload, length):
    peer.send(flags, 0xFFFFFFFE, 0, dport=9, payload=payload)
    peer.expect("RA", seq=0, ack=(0xFFFFFFFE + length) & 0xFFFFFFFF, window=0)


@pytest.mark.parametrize("flags", ["A", "PA", "FA", "SA"])
def test_ack_segment_to_closed_port_gets_rst_at_its_ack(peer, flags):
    """ACK bit on: <SEQ=SEG.ACK><CTL=RST>, no ACK of ours."""
    peer.send(flags, 5555, 0xDEADBEEF, dport=9, payload=b"data" if "P" in flags else b"")
    peer.expect("R", seq=0xDEADBEEF, ack=0, window=0, options={})


@pytest.mark.parametrize("flags", ["R", "RA"])
def test_rst_to_closed_port_is_not_answered(peer, flags):
    peer.send(flags, 5555, 6666, dport=9)
    peer.expect_nothing(within=1.0)


def test_rst_ack_to_closed_port_with_timestamps_gets_no_options(peer):
    peer.send("A", 5555, 6666, dport=9, ts=(1, 2))
    peer.expect("R", seq=6666, options={})


# -- a listener: section 3.10.7.2 --------------------------------------------------------------------

def test_ack_to_listener_gets_rst(peer):
    peer.listen(80)
    peer.send("A", 5555, 777, dport=80)
    peer.expect("R", seq=777, ack=0)


def test_syn_ack_to_listener_gets_rst(peer):
    peer.listen(80)
    peer.send("SA", 5555, 777, dport=80)
    peer.expect("R", seq=777, ack=0)


def test_rst_and_stray_segments_to_listener_are_dropped(peer):
    peer.listen(80)
    for flags in ("R", "RA", "F", "P", ""):
        peer.send(flags, 5555, 777, dport=80, payload=b"x" if flags == "P" else b"")
    peer.expect_nothing(within=1.0)


# -- RST processing, state by state -------------------------------------------------------------------

def test_syn_sent_rst_with_acceptable_ack_refuses(peer):
    sock, syn = peer.connect(port=80)
    peer.send("RA", 0, syn.seq + 1)
    peer.expect_nothing()
    assert sock.connect_ex(("10.0.0.99", 80)) == errno.ECONNREFUSED


def test_syn_sent_rst_without_ack_is_ignored(peer):
    """RFC 9293 3.10.7.3 (and RFC 5961 3.2): only a RST that acknowledges our SYN counts."""
    sock, syn = peer.connect(port=80)
    peer.send("R", 0, 0)
    peer.send("RA", 0, syn.seq + 2)               # acknowledges what we never sent
    peer.expect_nothing()                         # and a RST is never answered with a RST
    peer.send("SA", 5000, syn.seq + 1)
    peer.expect("A", seq=syn.seq + 1, ack=5001)   # the handshake goes on


def test_syn_received_rst_returns_to_listen(peer):
    listener = peer.listen(80)
    peer.dport = 80
    peer.send("S", 1000, 0)
    synack = peer.expect("SA")
    peer.send("R", 1001, 0)
    peer.expect_nothing()
    assert peer.table.connections == {}
    with pytest.raises(BlockingIOError):
        listener.accept()
    # The listener is still there for the next SYN; no SYN-ACK retransmission of the old one.
    peer.send("S", 3000, 0, sport=40001)
    peer.expect("SA", ack=3001, dst_port=40001)
    assert all(a.dst_port == 40001 for a in peer.received(within=2.0))
    assert synack.seq


def test_syn_received_rst_in_window_gets_challenge_ack(peer):
    peer.listen(80)
    peer.dport = 80
    peer.send("S", 1000, 0)
    synack = peer.expect("SA")
    peer.send("R", 1005, 0)                       # in the window, not RCV.NXT
    peer.expect("A", seq=synack.seq + 1, ack=1001)
    assert len(peer.table.connections) == 1


@pytest.mark.parametrize("setup", ["established", "fin-wait-1", "fin-wait-2", "close-wait"])
def test_rst_resets_the_connection(peer, flow, setup):
    """ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT: "connection reset" to the user, CLOSED."""
    peer_seq = flow.peer_nxt
    if setup in ("fin-wait-1", "fin-wait-2"):
        flow.sock.shutdown(lwsocket.SHUT_WR)
        fin = peer.expect("FPA")
        if setup == "fin-wait-2":
            peer.send("A", peer_seq, fin.seq + 1)
    elif setup == "close-wait":
        peer.send("FA", peer_seq, flow.stack_nxt)
        peer.expect("A")
        peer_seq += 1
    assert state_of(peer, flow) == setup.upper()
    peer.send("R", peer_seq, 0)
    peer.expect_nothing()
    assert state_of(peer, flow) == "CLOSED"
    with pytest.raises(ConnectionResetError):
        flow.sock.recv(10)


@pytest.mark.parametrize("setup", ["closing", "last-ack", "time-wait"])
def test_rst_closes_quietly_where_we_already_closed(peer, flow, setup):
    """CLOSING, LAST-ACK, TIME-WAIT: RST just enters CLOSED (RFC 9293 3.10.7.4; RFC 1337's
    TIME-WAIT protection is not applied, as on Linux by default)."""
    peer_seq = flow.peer_nxt
    if setup == "closing":
        flow.sock.shutdown(lwsocket.SHUT_WR)
        peer.expect("FPA")
        peer.send("FA", peer_seq, flow.stack_nxt)
        peer.expect("A")
    elif setup == "last-ack":
        peer.send("FA", peer_seq, flow.stack_nxt)
        peer.expect("A")
        flow.sock.shutdown(lwsocket.SHUT_WR)
        peer.expect("FPA")
    else:
        flow.sock.shutdown(lwsocket.SHUT_WR)
        fin = peer.expect("FPA")
        peer.send("FA", peer_seq, fin.seq + 1)
        peer.expect("A")
    peer_seq += 1
    assert state_of(peer, flow) == setup.upper()
    peer.send("R", peer_seq, 0)
    peer.expect_nothing(within=5.0)               # no more FIN retransmissions either
    assert state_of(peer, flow) == "CLOSED"
    assert flow.sock.recv(10) == b""              # the stream had ended: no error to report


def test_rst_with_ack_bit_and_data_is_still_a_reset(peer, flow):
    peer.send("RA", flow.peer_nxt, flow.stack_nxt, payload=b"diagnostic text")
    assert state_of(peer, flow) == "CLOSED"
    with pytest.raises(ConnectionResetError):
        flow.sock.recv(10)


def test_rst_out_of_window_is_dropped_silently(peer, flow):
    peer.send("R", flow.peer_nxt + 10_000_000, 0)
    peer.send("R", flow.peer_nxt - 1, 0)
    peer.expect_nothing()
    assert state_of(peer, flow) == "ESTABLISHED"
    assert peer.table.stats["rst_out_of_window"] == 2


def test_abort_sends_rst(peer, flow):
    """ABORT (SO_LINGER 0 then close) in ESTABLISHED: <SEQ=SND.NXT><CTL=RST> (section 3.10.5)."""
    import struct
    flow.sock.send(b"pending")
    peer.expect("PA")
    flow.sock.setsockopt(lwsocket.SOL_SOCKET, 13, struct.pack("ii", 1, 0))
    flow.sock.close()
    peer.expect("RA", seq=flow.stack_nxt + 7, ack=flow.peer_nxt, window=0)
    peer.expect_nothing(within=5.0)               # no retransmission of the dropped data
