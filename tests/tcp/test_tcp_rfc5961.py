"""RFC 5961 (blind in-window attacks) and RFC 9293 3.10.7.4's first check (unacceptable segments
get an ACK), against a scripted peer on an established connection."""
import pytest

from lwstack.proto.tcp.connection import CHALLENGE_ACK_LIMIT
from lwstack.sim import VirtualNetwork
from tcp_harness import ANY, TcpPeer, conn_of, state_of


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=51), tcp={"timestamps_enabled": False})


@pytest.fixture
def flow(peer):
    """Established; the peer offered no window scale, so MAX.SND.WND is 65535."""
    return peer.handshake_passive(port=80, isn=1000, wscale=-1)


def _challenge(peer, flow, peer_seq=None):
    """The challenge ACK: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 5961 3.2)."""
    return peer.expect("A", seq=flow.stack_nxt,
                       ack=flow.peer_nxt if peer_seq is None else peer_seq, payload_len=0)


def _still_works(peer, flow, peer_seq=None):
    peer_seq = flow.peer_nxt if peer_seq is None else peer_seq
    peer.send("PA", peer_seq, flow.stack_nxt, payload=b"ok?")
    assert flow.sock.recv(10) == b"ok?"


# -- section 3: RST ---------------------------------------------------------------------------------

def test_exact_rst_resets(peer, flow):
    peer.send("R", flow.peer_nxt, 0)
    peer.expect_nothing()
    assert state_of(peer, flow) == "CLOSED"


@pytest.mark.parametrize("offset", [1, 1000, 65534])
def test_in_window_rst_gets_challenge_ack(peer, flow, offset):
    peer.send("R", flow.peer_nxt + offset, 0)
    _challenge(peer, flow)
    assert state_of(peer, flow) == "ESTABLISHED"
    assert peer.table.stats["rst_challenged"] == 1
    _still_works(peer, flow)


def test_in_window_rst_ack_gets_challenge_ack(peer, flow):
    peer.send("RA", flow.peer_nxt + 7, flow.stack_nxt)
    _challenge(peer, flow)
    assert state_of(peer, flow) == "ESTABLISHED"


@pytest.mark.parametrize("offset", [-1, -70000, 65535, 1 << 30])
def test_out_of_window_rst_is_dropped(peer, flow, offset):
    peer.send("R", flow.peer_nxt + offset, 0)
    peer.expect_nothing()
    assert state_of(peer, flow) == "ESTABLISHED"


def test_exact_rst_after_challenge_resets(peer, flow):
    """The legitimate peer answers the challenge ACK with a RST at RCV.NXT (RFC 5961 3.2)."""
    peer.send("R", flow.peer_nxt + 100, 0)
    ack = _challenge(peer, flow)
    peer.send("R", ack.ack, 0)
    assert state_of(peer, flow) == "CLOSED"


# -- section 4: SYN ----------------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [0, 10, 65534, 5_000_000, -5])
def test_syn_in_synchronized_state_gets_challenge_ack(peer, flow, offset):
    """RFC 5961 4.2: a SYN, whatever its sequence number, gets an ACK and changes nothing."""
    peer.send("S", flow.peer_nxt + offset, 0, mss=1460)
    _challenge(peer, flow)
    assert state_of(peer, flow) == "ESTABLISHED"
    _still_works(peer, flow)


def test_syn_ack_in_established_gets_challenge_ack(peer, flow):
    peer.send("SA", flow.peer_nxt, flow.stack_nxt)
    _challenge(peer, flow)
    assert state_of(peer, flow) == "ESTABLISHED"


@pytest.mark.parametrize("setup", ["close-wait", "fin-wait-2"])
def test_syn_in_later_states_gets_challenge_ack(peer, flow, setup):
    from lwstack import socket as lwsocket
    peer_seq = flow.peer_nxt
    stack_seq = flow.stack_nxt
    if setup == "close-wait":
        peer.send("FA", peer_seq, stack_seq)
        peer.expect("A")
        peer_seq += 1
    else:
        flow.sock.shutdown(lwsocket.SHUT_WR)
        peer.expect("FPA")
        stack_seq += 1
        peer.send("A", peer_seq, stack_seq)
    assert state_of(peer, flow) == setup.upper()
    peer.send("S", peer_seq + 3, 0)
    peer.expect("A", seq=stack_seq, ack=peer_seq)
    assert state_of(peer, flow) == setup.upper()


# -- section 5: ACK ----------------------------------------------------------------------------------

def test_ack_of_unsent_data_gets_challenge_ack_and_data_dropped(peer, flow):
    """RFC 5961 5.2: SEG.ACK > SND.NXT is not acceptable: challenge ACK, segment dropped."""
    peer.send("PA", flow.peer_nxt, flow.stack_nxt + 1, payload=b"injected")
    _challenge(peer, flow)
    assert peer.table.stats["ack_too_new"] == 1
    with pytest.raises(BlockingIOError):
        flow.sock.recv(100)
    conn = conn_of(peer, flow)
    assert conn.receive_queue_bytes == 0 and conn.rcv_nxt & 0xFFFFFFFF == flow.peer_nxt
    _still_works(peer, flow)


def test_ack_too_old_gets_challenge_ack(peer, flow):
    """Acceptable: SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT (RFC 5961 5.2)."""
    conn = conn_of(peer, flow)
    assert conn.max_snd_wnd == 65535
    peer.send("PA", flow.peer_nxt, flow.stack_nxt - 65536, payload=b"forged")
    _challenge(peer, flow)
    assert conn.receive_queue_bytes == 0
    assert peer.table.stats["ack_too_old"] == 1


def test_old_ack_within_max_window_is_accepted(peer, flow):
    peer.send("PA", flow.peer_nxt, flow.stack_nxt - 65535, payload=b"fine")
    assert flow.sock.recv(10) == b"fine"
    assert peer.table.stats["ack_too_old"] == 0


# -- section 7: the rate limit -------------------------------------------------------------------------

def test_challenge_acks_are_rate_limited_per_second(peer, flow):
    start = peer.now
    for i in range(CHALLENGE_ACK_LIMIT + 5):
        peer.send("R", flow.peer_nxt + 1 + i, 0)
    acks = peer.received()
    assert len(acks) == CHALLENGE_ACK_LIMIT == 10
    assert all(a.letters == "A" and a.ack == flow.peer_nxt for a in acks)
    assert peer.table.stats["challenge_ack_limited"] == 5
    # SYNs and bad ACKs draw on the same budget.
    peer.send("S", flow.peer_nxt, 0)
    peer.send("A", flow.peer_nxt, flow.stack_nxt + 99)
    peer.expect_nothing()
    # A second later the budget is back.
    peer.send("R", flow.peer_nxt + 1, 0, at=start + 1.0)
    _challenge(peer, flow)
    assert state_of(peer, flow) == "ESTABLISHED"


def test_rate_limit_is_per_connection(peer, flow):
    for i in range(CHALLENGE_ACK_LIMIT):
        peer.send("R", flow.peer_nxt + 1 + i, 0)
    assert len(peer.received()) == CHALLENGE_ACK_LIMIT
    other = peer.handshake_passive(port=80, isn=90000, wscale=-1, sport=40001,
                                   listener=flow.listener)
    peer.send("R", other.peer_nxt + 1, 0)
    _challenge(peer, other)


# -- RFC 9293 3.10.7.4, first check: unacceptable segments ----------------------------------------------

def test_old_duplicate_data_gets_immediate_ack(peer, flow):
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"12345")
    assert flow.sock.recv(10) == b"12345"
    peer.expect("A", ack=flow.peer_nxt + 5, within=1.0)
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"12345")   # again
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 5)        # at once, no delay
    with pytest.raises(BlockingIOError):
        flow.sock.recv(10)                        # nothing delivered twice


def test_data_beyond_the_window_gets_ack_and_is_dropped(peer, flow):
    conn = conn_of(peer, flow)
    window = conn.rcv_adv - conn.rcv_nxt
    peer.send("PA", flow.peer_nxt + window, flow.stack_nxt, payload=b"far")
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt)
    assert conn.receive_queue_bytes == 0 and not conn._reasm.bytes_held
    assert peer.table.stats["segment_out_of_window"] == 1


def test_ack_with_sequence_out_of_window_gets_ack(peer, flow):
    peer.send("A", flow.peer_nxt + 3_000_000, flow.stack_nxt)
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt)
    peer.send("A", flow.peer_nxt - 1, flow.stack_nxt)
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt)


def test_partly_old_segment_is_trimmed_and_delivered(peer, flow):
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"abc")
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"abcdef")
    assert flow.sock.recv(10) == b"abcdef"
    peer.expect("A", ack=flow.peer_nxt + 6)       # the overlap asks for an immediate ACK


def test_zero_window_accepts_only_an_empty_segment_at_rcv_nxt():
    """RFC 9293 3.10.7.4 table: with RCV.WND = 0 only SEG.LEN = 0, SEG.SEQ = RCV.NXT passes."""
    from lwstack import socket as lwsocket
    peer = TcpPeer(VirtualNetwork(seed=52), tcp={"timestamps_enabled": False})
    listener = peer.socket()
    listener.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_RCVBUF, 4608)
    listener.bind(("", 80))
    listener.listen(4)
    flow = peer.handshake_passive(port=80, isn=1000, wscale=-1, listener=listener)
    conn = conn_of(peer, flow)
    size = conn.rcvbuf
    sent = 0
    while sent < size:
        chunk = min(1460, size - sent)
        peer.send("A", flow.peer_nxt + sent, flow.stack_nxt, payload=b"z" * chunk)
        sent += chunk
    last = peer.received(within=1.0)[-1]
    assert last.window == 0 and last.ack == (flow.peer_nxt + size) & 0xFFFFFFFF
    peer.send("PA", flow.peer_nxt + size, flow.stack_nxt, payload=b"!")
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + size, window=0)
    assert conn.receive_queue_bytes == size
    # A pure ACK at RCV.NXT is acceptable (a window update from the peer, say): no answer.
    peer.send("A", flow.peer_nxt + size, flow.stack_nxt, window=1000)
    peer.expect_nothing()


def test_data_without_ack_bit_is_dropped(peer, flow):
    """RFC 9293 3.10.7.4, fifth check: "if the ACK bit is off, drop the segment"."""
    peer.send("P", flow.peer_nxt, 0, payload=b"no ack")
    peer.expect_nothing(within=1.0)
    assert conn_of(peer, flow).receive_queue_bytes == 0


def test_paws_rejects_an_old_timestamp_with_an_ack():
    """RFC 7323 5.3: a segment whose TSval is older than TS.Recent is dropped and ACKed."""
    peer = TcpPeer(VirtualNetwork(seed=53))
    flow = peer.handshake_passive(port=80, isn=1000, ts=5000)
    echo = flow.synack.ts_val
    peer.send("PA", flow.peer_nxt, flow.stack_nxt, payload=b"new", ts=(5001, echo))
    assert flow.sock.recv(10) == b"new"
    peer.send("PA", flow.peer_nxt + 3, flow.stack_nxt, payload=b"old", ts=(4000, echo))
    peer.expect("A", seq=flow.stack_nxt, ack=flow.peer_nxt + 3, options={"ts": (ANY, 5001)})
    assert conn_of(peer, flow).receive_queue_bytes == 0
    assert peer.table.stats["paws_rejected"] == 1
