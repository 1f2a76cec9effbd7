"""TIME-WAIT (RFC 9293 section 3.6.1 and 3.10.7.4): 2*MSL, the retransmitted FIN that restarts
it, what else arrives there, port reuse, and a new SYN that recycles it (RFC 6191)."""
import errno

import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork
from tcp_harness import ANY, TcpPeer, state_of

#: A short 2*MSL keeps the numbers readable; the default is checked on its own.
TW = 10.0


def _time_wait(peer, flow):
    """Close the stack's side first and let the peer finish: the stack ends in TIME-WAIT.
    Returns the stack's FIN sequence number."""
    flow.sock.close()
    fin = peer.expect("FPA", seq=flow.stack_nxt)
    peer.send("FA", flow.peer_nxt, fin.seq + 1, ts=_ts(peer, 2000))
    peer.expect("A", seq=fin.seq + 1, ack=flow.peer_nxt + 1)
    assert state_of(peer, flow) == "TIME-WAIT"
    return fin.seq


def _ts(peer, value):
    """A timestamp option for the peer's segments when the flow negotiated timestamps."""
    return (value, 0) if peer.table.timestamps_enabled else None


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=31), tcp={"time_wait": TW, "timestamps_enabled": False})


@pytest.fixture
def flow(peer):
    return peer.handshake_passive(port=80, isn=1000)


def test_default_time_wait_is_60_seconds():
    """2*MSL: Linux's TCP_TIMEWAIT_LEN, 60 s (RFC 9293 3.4.2 suggests an MSL of 2 minutes)."""
    peer = TcpPeer(VirtualNetwork(seed=32), tcp={"timestamps_enabled": False})
    flow = peer.handshake_passive(port=80, isn=1000)
    _time_wait(peer, flow)
    start = peer.now
    peer.run(59.9)
    assert state_of(peer, flow) == "TIME-WAIT"
    peer.run(0.2)
    assert state_of(peer, flow) == "CLOSED"
    assert peer.now - start < 60.2


def test_time_wait_expires_after_2msl_silently(peer, flow):
    _time_wait(peer, flow)
    peer.run(TW - 0.01)
    assert state_of(peer, flow) == "TIME-WAIT"
    peer.run(0.02)
    assert state_of(peer, flow) == "CLOSED"
    peer.expect_nothing()
    # Gone: a segment of the old connection now finds no connection (section 3.10.7.1).
    peer.send("A", flow.peer_nxt + 1, flow.stack_nxt + 1)
    peer.expect("R", seq=flow.stack_nxt + 1, ack=0)


def test_retransmitted_fin_is_acknowledged_and_restarts_the_timer(peer, flow):
    fin_seq = _time_wait(peer, flow)
    entered = peer.now
    # Our last ACK was lost: the peer's FIN comes again, 8 seconds later.
    peer.send("FA", flow.peer_nxt, fin_seq + 1, at=entered + 8.0)
    peer.expect("A", seq=fin_seq + 1, ack=flow.peer_nxt + 1)
    peer.run(TW - 1.0)                            # past the first deadline
    assert state_of(peer, flow) == "TIME-WAIT"
    peer.run(1.1)                                 # 2*MSL after the retransmitted FIN
    assert state_of(peer, flow) == "CLOSED"


def test_other_segments_in_time_wait_are_acknowledged(peer, flow):
    fin_seq = _time_wait(peer, flow)
    # An old duplicate data segment: unacceptable, answered with an ACK (section 3.10.7.4).
    peer.send("PA", flow.peer_nxt - 10 + 1, fin_seq + 1, payload=b"x" * 10)
    peer.expect("A", seq=fin_seq + 1, ack=flow.peer_nxt + 1)
    # New data after the peer's FIN cannot be: ACKed, not delivered.
    peer.send("PA", flow.peer_nxt + 1, fin_seq + 1, payload=b"ghost")
    peer.expect("A", seq=fin_seq + 1, ack=flow.peer_nxt + 1)
    assert state_of(peer, flow) == "TIME-WAIT"


def test_pure_ack_in_time_wait_gets_nothing(peer, flow):
    fin_seq = _time_wait(peer, flow)
    peer.send("A", flow.peer_nxt + 1, fin_seq + 1)
    peer.expect_nothing()
    assert state_of(peer, flow) == "TIME-WAIT"


# -- a new SYN in TIME-WAIT (RFC 6191, RFC 9293 3.10.7.4 note) ---------------------------------------

def test_syn_with_higher_sequence_starts_a_new_connection(peer, flow):
    _time_wait(peer, flow)
    peer.send("S", flow.peer_nxt + 100_000, 0, mss=1460)
    peer.expect("SA", ack=flow.peer_nxt + 100_001, options={"mss": 1460})
    assert state_of(peer, flow) == "SYN-RECEIVED"
    assert peer.table.stats["time_wait_recycled"] == 1


def test_syn_with_old_sequence_does_not_recycle(peer, flow):
    """RFC 6191 section 2 (no timestamps): only a SYN above RCV.NXT may reopen."""
    fin_seq = _time_wait(peer, flow)
    peer.send("S", flow.peer_nxt - 50, 0, mss=1460)
    reply = peer.expect(seq=fin_seq + 1, ack=flow.peer_nxt + 1)
    assert reply.letters == "A"                   # the old connection answers, no SYN-ACK
    assert state_of(peer, flow) == "TIME-WAIT"
    assert peer.table.stats["time_wait_recycled"] == 0


def test_syn_with_newer_timestamp_recycles_even_below_rcv_nxt():
    """RFC 6191 section 2: with timestamps on both, the timestamp decides, not the sequence."""
    peer = TcpPeer(VirtualNetwork(seed=33), tcp={"time_wait": TW})
    flow = peer.handshake_passive(port=80, isn=1000, ts=1000)
    _time_wait(peer, flow)
    peer.send("S", flow.peer_nxt - 50, 0, mss=1460, ts=(5000, 0))
    peer.expect("SA", ack=flow.peer_nxt - 49, options={"mss": 1460, "ts": (ANY, 5000)})
    assert peer.table.stats["time_wait_recycled"] == 1


def test_syn_with_older_timestamp_does_not_recycle():
    peer = TcpPeer(VirtualNetwork(seed=34), tcp={"time_wait": TW})
    flow = peer.handshake_passive(port=80, isn=1000, ts=1000)
    _time_wait(peer, flow)
    peer.send("S", flow.peer_nxt + 100_000, 0, mss=1460, ts=(500, 0))
    reply = peer.expect()
    assert "S" not in reply.letters
    assert state_of(peer, flow) == "TIME-WAIT"
    assert peer.table.stats["time_wait_recycled"] == 0


def test_recycled_connection_completes(peer, flow):
    _time_wait(peer, flow)
    peer.send("S", flow.peer_nxt + 100_000, 0)
    synack = peer.expect("SA")
    peer.send("A", flow.peer_nxt + 100_001, synack.seq + 1)
    sock, _ = flow.listener.accept()
    assert state_of(peer, flow) == "ESTABLISHED"
    peer.send("PA", flow.peer_nxt + 100_001, synack.seq + 1, payload=b"again")
    assert sock.recv(10) == b"again"


# -- the active closer's port ------------------------------------------------------------------------

def test_time_wait_holds_the_local_port(peer):
    flow = peer.handshake_active(port=80, isn=5000, sack_permitted=False, wscale=-1)
    flow.sock.close()
    fin = peer.expect("FPA")
    peer.send("FA", flow.peer_nxt, fin.seq + 1)
    peer.expect("A")
    assert state_of(peer, flow) == "TIME-WAIT"
    again = peer.socket()
    with pytest.raises(OSError) as info:
        again.bind(("", flow.stack_port))
    assert info.value.errno == errno.EADDRINUSE
    reuse = peer.socket()
    reuse.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_REUSEADDR, 1)
    reuse.bind(("", flow.stack_port))             # SO_REUSEADDR may take it (as on Linux)
    # New connections to the same peer pick other ephemeral ports meanwhile.
    sock, syn = peer.connect(port=80)
    assert syn.src_port != flow.stack_port
    peer.run(TW + 0.1)
    assert state_of(peer, flow) == "CLOSED"
    free = peer.socket()
    free.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_REUSEADDR, 0)
    reuse.close()
    free.bind(("", flow.stack_port))
