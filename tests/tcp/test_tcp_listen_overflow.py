"""A listener whose accept queue is full, met by a burst of connections (found against the
Linux kernel: tests/interop/test_tcp_interop.py, 300 kernel clients at once).

Linux drops a SYN while the listener's accept queue is full (tcp_conn_request,
LINUX_MIB_LISTENOVERFLOWS) and sends SYN cookies only when the SYN queue overflows.  A SYN
cookie handed out because the accept queue is full is a trap for an ordinary client: its final
ACK is dropped (no room), it goes on to send data and its FIN, and the FIN's sequence number
no longer validates the cookie (the cookie check takes SEG.SEQ - 1 as the client's ISN), so
the listener answers it with a RST and the client sees ECONNRESET.
"""
import pytest

from lwstack.sim import VirtualNetwork
from tcp_harness import TcpPeer


@pytest.fixture
def peer():
    return TcpPeer(VirtualNetwork(seed=67), tcp={"timestamps_enabled": False})


def _listener(peer, sock):
    return peer.table.listeners[(b"\0\0\0\0", sock.getsockname()[1])]


def test_syn_while_accept_queue_full_is_dropped_and_the_retry_completes_without_rst(peer):
    sock = peer.listen(80, backlog=1)
    peer.handshake_passive(port=80, isn=1000, listener=sock, accept=False, sport=40000)
    peer.send("S", 5000, 0, sport=40001, dport=80, mss=1460)      # a half-open child
    assert peer.next().letters == "SA"
    # Accept queue full and as many half-open as the backlog: no SYN-ACK, cookie or not.
    peer.send("S", 9000, 0, sport=40002, dport=80, mss=1460)
    assert [a for a in peer.received() if a.dst_port == 40002] == []
    assert peer.table.stats["syncookies_sent"] == 0
    # The application accepts; the client's SYN retransmission (1 s later) now gets in, and
    # its data and FIN are taken in order, with no RST.
    sock.accept()
    peer.run(1.0)
    peer.received()
    peer.send("S", 9000, 0, sport=40002, dport=80, mss=1460)
    synack = [a for a in peer.received() if a.dst_port == 40002]
    assert [a.letters for a in synack] == ["SA"]
    iss = synack[0].seq
    peer.send("A", 9001, iss + 1, sport=40002)
    peer.send("PA", 9001, iss + 1, sport=40002, payload=b"hi")
    peer.send("FA", 9003, iss + 1, sport=40002)
    answers = [a for a in peer.received(within=1.0) if a.dst_port == 40002]
    assert not [a for a in answers if a.letters.count("R")], answers
    assert answers and answers[-1].ack == 9004               # data and FIN acknowledged


def test_cookie_flow_in_a_burst_is_never_reset(peer):
    """The failure as the kernel saw it: SYN, cookie SYN-ACK, ACK (dropped: no room), data,
    FIN.  Whatever the listener does with the SYN, the client must not get a RST."""
    sock = peer.listen(80, backlog=1)
    peer.handshake_passive(port=80, isn=1000, listener=sock, accept=False, sport=40000)
    peer.send("S", 5000, 0, sport=40001, dport=80, mss=1460)
    assert peer.next().letters == "SA"
    peer.send("S", 9000, 0, sport=40002, dport=80, mss=1460)
    answer = [a for a in peer.received() if a.dst_port == 40002]
    if answer:                                           # a SYN-ACK (cookie or not)
        iss = answer[0].seq
        peer.send("A", 9001, iss + 1, sport=40002)
        peer.send("PA", 9001, iss + 1, sport=40002, payload=b"hi")
        peer.send("FA", 9003, iss + 1, sport=40002)
    resets = [a for a in peer.received(within=0.5) if a.dst_port == 40002 and "R" in a.letters]
    assert resets == []
    assert _listener(peer, sock).backlog == 1
