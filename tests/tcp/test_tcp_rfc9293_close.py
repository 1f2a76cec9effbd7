"""Closing connections (RFC 9293 section 3.6, figures 5, 12 and 13): half-close on either side,
simultaneous close, CLOSING, LAST-ACK, FIN with data and ahead of data, orphaned sockets."""
import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork
from tcp_harness import ANY, TcpPeer, state_of

ACK_WINDOW = ANY


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=21), tcp={"timestamps_enabled": False})


@pytest.fixture
def flow(peer):
    """An established connection: the peer connected to a listening lwstack socket."""
    return peer.handshake_passive(port=80, isn=1000)


# -- we close first (figure 12, TCP A) --------------------------------------------------------------

def test_shutdown_write_sends_fin_and_enters_fin_wait_1(peer, flow):
    flow.sock.shutdown(lwsocket.SHUT_WR)
    peer.expect("FPA", seq=flow.stack_nxt, ack=flow.peer_nxt, payload_len=0, options={})
    assert state_of(peer, flow) == "FIN-WAIT-1"


def test_fin_wait_1_to_fin_wait_2_to_time_wait(peer, flow):
    flow.sock.shutdown(lwsocket.SHUT_WR)
    fin = peer.expect("FPA", seq=flow.stack_nxt)
    peer.send("A", flow.peer_nxt, fin.seq + 1)
    peer.expect_nothing()
    assert state_of(peer, flow) == "FIN-WAIT-2"
    peer.send("FA", flow.peer_nxt, fin.seq + 1)
    # The FIN is acknowledged at once (it is not data: no delayed ACK).
    peer.expect("A", seq=fin.seq + 1, ack=flow.peer_nxt + 1, payload_len=0)
    assert state_of(peer, flow) == "TIME-WAIT"
    assert flow.sock.recv(10) == b""


def test_half_close_we_keep_receiving_in_fin_wait_2(peer, flow):
    """A half-closed connection still carries data the other way (section 3.6)."""
    flow.sock.shutdown(lwsocket.SHUT_WR)
    fin = peer.expect("FPA")
    peer.send("A", flow.peer_nxt, fin.seq + 1)
    peer.send("PA", flow.peer_nxt, fin.seq + 1, payload=b"a" * 3000)
    peer.expect("A", seq=fin.seq + 1, ack=flow.peer_nxt + 3000)   # two full segments' worth
    assert flow.sock.recv(4000) == b"a" * 3000
    peer.send("PA", flow.peer_nxt + 3000, fin.seq + 1, payload=b"bb")
    peer.expect("A", ack=flow.peer_nxt + 3002, within=1.0)        # delayed ACK
    assert state_of(peer, flow) == "FIN-WAIT-2"
    assert flow.sock.recv(10) == b"bb"
    peer.send("FA", flow.peer_nxt + 3002, fin.seq + 1)
    peer.expect("A", ack=flow.peer_nxt + 3003)
    assert flow.sock.recv(10) == b""


def test_fin_wait_1_fin_acking_ours_goes_straight_to_time_wait(peer, flow):
    flow.sock.shutdown(lwsocket.SHUT_WR)
    fin = peer.expect("FPA")
    peer.send("FA", flow.peer_nxt, fin.seq + 1)
    peer.expect("A", seq=fin.seq + 1, ack=flow.peer_nxt + 1)
    assert state_of(peer, flow) == "TIME-WAIT"


def test_simultaneous_close_through_closing(peer, flow):
    """Figure 13: both FINs cross; each side is in CLOSING until its FIN is acknowledged."""
    flow.sock.shutdown(lwsocket.SHUT_WR)
    fin = peer.expect("FPA", seq=flow.stack_nxt)
    peer.send("FA", flow.peer_nxt, flow.stack_nxt)          # does not acknowledge our FIN
    peer.expect("A", seq=fin.seq + 1, ack=flow.peer_nxt + 1)
    assert state_of(peer, flow) == "CLOSING"
    peer.send("A", flow.peer_nxt + 1, fin.seq + 1)
    peer.expect_nothing()
    assert state_of(peer, flow) == "TIME-WAIT"


def test_closing_retransmits_our_fin(peer, flow):
    flow.sock.shutdown(lwsocket.SHUT_WR)
    fin = peer.expect("FPA")
    peer.send("FA", flow.peer_nxt, flow.stack_nxt)
    peer.expect("A")
    again = peer.expect("FPA", seq=fin.seq, ack=flow.peer_nxt + 1, within=5.0)
    assert again.time > fin.time
    assert state_of(peer, flow) == "CLOSING"


def test_fin_wait_1_retransmits_fin_until_acknowledged(peer, flow):
    flow.sock.shutdown(lwsocket.SHUT_WR)
    fin = peer.expect("FPA")
    again = peer.expect("FPA", seq=fin.seq, within=5.0)
    assert round(again.time - fin.time, 6) == 1.0            # the initial RTO (RFC 6298 2.1)


def test_shutdown_after_data_puts_fin_on_the_last_segment(peer, flow):
    flow.sock.send(b"last words")
    peer.expect("PA", payload=b"last words")
    flow.sock.send(b"more")                       # held by Nagle behind the first
    peer.expect_nothing()
    # The FIN releases it (Nagle does not hold the final segment: Linux's tcp_nagle_test).
    flow.sock.shutdown(lwsocket.SHUT_WR)
    peer.expect("FPA", seq=flow.stack_nxt + 10, ack=flow.peer_nxt, payload=b"more")


# -- the peer closes first (figure 12, TCP B) ------------------------------------------------------

def test_peer_fin_enters_close_wait(peer, flow):
    peer.send("FA", flow.peer_nxt, flow.stack_nxt)
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 1)
    assert state_of(peer, flow) == "CLOSE-WAIT"
    assert flow.sock.recv(10) == b""
    assert flow.sock.recv(10) == b""              # end of stream, again


def test_close_wait_still_sends_then_last_ack_then_closed(peer, flow):
    peer.send("FA", flow.peer_nxt, flow.stack_nxt)
    peer.expect("A")
    flow.sock.send(b"reply")                      # half-close: we may still talk
    peer.expect("PA", seq=flow.stack_nxt, ack=flow.peer_nxt + 1, payload=b"reply")
    flow.sock.close()
    fin = peer.expect("FPA", seq=flow.stack_nxt + 5, ack=flow.peer_nxt + 1)
    assert state_of(peer, flow) == "LAST-ACK"
    peer.send("A", flow.peer_nxt + 1, fin.seq + 1)
    assert state_of(peer, flow) == "CLOSED"       # no TIME-WAIT for the passive closer
    peer.expect_nothing(within=5.0)


def test_last_ack_retransmits_fin(peer, flow):
    peer.send("FA", flow.peer_nxt, flow.stack_nxt)
    peer.expect("A")
    flow.sock.close()
    fin = peer.expect("FPA")
    again = peer.expect("FPA", seq=fin.seq, ack=flow.peer_nxt + 1, within=5.0)
    assert again.time > fin.time
    peer.send("A", flow.peer_nxt + 1, fin.seq + 1)
    assert state_of(peer, flow) == "CLOSED"


def test_last_ack_ack_of_data_only_stays(peer, flow):
    peer.send("FA", flow.peer_nxt, flow.stack_nxt)
    peer.expect("A")
    flow.sock.send(b"12345")
    peer.expect("PA")
    flow.sock.shutdown(lwsocket.SHUT_WR)
    fin = peer.expect("FPA", seq=flow.stack_nxt + 5)
    peer.send("A", flow.peer_nxt + 1, flow.stack_nxt + 5)   # the data, not the FIN
    assert state_of(peer, flow) == "LAST-ACK"
    peer.send("A", flow.peer_nxt + 1, fin.seq + 1)
    assert state_of(peer, flow) == "CLOSED"


def test_fin_with_data(peer, flow):
    peer.send("FPA", flow.peer_nxt, flow.stack_nxt, payload=b"bye")
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 4)
    assert flow.sock.recv(10) == b"bye"
    assert flow.sock.recv(10) == b""
    assert state_of(peer, flow) == "CLOSE-WAIT"


def test_fin_ahead_of_missing_data_waits_for_it(peer, flow):
    peer.send("FA", flow.peer_nxt + 5, flow.stack_nxt)      # FIN after a 5-byte hole
    peer.expect("A", ack=flow.peer_nxt)                      # duplicate ACK: still at the hole
    assert state_of(peer, flow) == "ESTABLISHED"
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"12345")
    peer.expect("A", ack=flow.peer_nxt + 6)
    assert state_of(peer, flow) == "CLOSE-WAIT"
    assert flow.sock.recv(10) == b"12345"
    assert flow.sock.recv(10) == b""


def test_retransmitted_fin_in_close_wait_is_acknowledged(peer, flow):
    peer.send("FA", flow.peer_nxt, flow.stack_nxt)
    peer.expect("A", ack=flow.peer_nxt + 1)
    peer.send("FA", flow.peer_nxt, flow.stack_nxt)
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 1)
    assert state_of(peer, flow) == "CLOSE-WAIT"


# -- closing the socket -----------------------------------------------------------------------------

def test_close_with_unread_data_resets(peer, flow):
    """RFC 2525 section 2.17 (and Linux): closing with data unread aborts with RST."""
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"unread")
    flow.sock.close()
    peer.expect("RA", seq=flow.stack_nxt, ack=flow.peer_nxt + 6, window=0)
    assert state_of(peer, flow) == "CLOSED"


def test_close_with_linger_zero_resets(peer, flow):
    import struct
    flow.sock.setsockopt(lwsocket.SOL_SOCKET, 13, struct.pack("ii", 1, 0))   # SO_LINGER
    flow.sock.close()
    peer.expect("RA", seq=flow.stack_nxt, ack=flow.peer_nxt)
    assert state_of(peer, flow) == "CLOSED"


def test_orphaned_fin_wait_2_times_out(peer, flow):
    """After close(), FIN-WAIT-2 lasts 60 s (Linux's tcp_fin_timeout), then the connection goes."""
    flow.sock.close()
    fin = peer.expect("FPA")
    peer.send("A", flow.peer_nxt, fin.seq + 1)
    assert state_of(peer, flow) == "FIN-WAIT-2"
    peer.run(59.0)
    assert state_of(peer, flow) == "FIN-WAIT-2"
    peer.run(2.0)
    assert state_of(peer, flow) == "CLOSED"
    peer.expect_nothing()                         # it goes quietly
    peer.send("PA", flow.peer_nxt, fin.seq + 1, payload=b"late")
    peer.expect("R", seq=fin.seq + 1, ack=0)      # and then nobody is there


def test_orphaned_fin_wait_2_data_resets(peer, flow):
    """Data for a closed socket cannot be delivered: RST (Linux's "data after close")."""
    flow.sock.close()
    fin = peer.expect("FPA")
    peer.send("A", flow.peer_nxt, fin.seq + 1)
    peer.send("PA", flow.peer_nxt, fin.seq + 1, payload=b"anyone?")
    peer.expect("RA", seq=fin.seq + 1)
    assert state_of(peer, flow) == "CLOSED"


def test_shutdown_read_then_peer_fin_then_close_is_orderly(peer, flow):
    flow.sock.shutdown(lwsocket.SHUT_RD)
    peer.send("FA", flow.peer_nxt, flow.stack_nxt)
    peer.expect("A", ack=flow.peer_nxt + 1)
    flow.sock.close()
    fin = peer.expect("FPA", seq=flow.stack_nxt, ack=flow.peer_nxt + 1)
    peer.send("A", flow.peer_nxt + 1, fin.seq + 1)
    assert state_of(peer, flow) == "CLOSED"
