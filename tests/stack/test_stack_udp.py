"""UDP sockets (RFC 768, RFC 1122 4.1) through lwstack.socket on a virtual network."""
import errno

import pytest

from lwstack import socket as lwsocket
from lwstack.proto.datagram import EPHEMERAL_HIGH, EPHEMERAL_LOW
from stack_helpers import Peer, ip


@pytest.fixture
def server(pair):
    net, a, b = pair
    s = b.socket()
    s.bind(("", 7))
    s.settimeout(1)
    return s


def test_bind_rules(pair):
    net, a, b = pair
    first = a.socket()
    first.bind(("", 5000))
    second = a.socket()
    with pytest.raises(OSError) as info:
        second.bind(("10.0.0.1", 5000))
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        second.bind(("10.0.0.2", 5001))              # not our address
    assert info.value.errno == errno.EADDRNOTAVAIL
    second.bind(("10.0.0.1", 5001))
    with pytest.raises(OSError) as info:
        second.bind(("", 5002))                       # already bound
    assert info.value.errno == errno.EINVAL


def test_so_reuseaddr_needs_both_sockets(pair):
    net, a, b = pair
    first, second, third = a.socket(), a.socket(), a.socket()
    first.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_REUSEADDR, 1)
    first.bind(("", 5000))
    with pytest.raises(OSError):
        second.bind(("", 5000))
    third.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_REUSEADDR, 1)
    third.bind(("", 5000))
    assert third.getsockname() == ("0.0.0.0", 5000)


def test_closing_reuseaddr_sockets_frees_the_port(pair):
    net, a, b = pair
    first, second = a.socket(), a.socket()
    for s in (first, second):
        s.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_REUSEADDR, 1)
        s.bind(("", 5000))
    first.close()
    second.close()
    plain = a.socket()
    plain.bind(("", 5000))                            # nobody holds the port any more
    assert plain.getsockname()[1] == 5000


def test_closing_one_reuseaddr_socket_leaves_the_other_receiving(pair, server):
    net, a, b = pair
    first, second = b.socket(), b.socket()
    for s in (first, second):
        s.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_REUSEADDR, 1)
        s.bind(("", 6000))
        s.settimeout(1)
    second.close()
    a.socket().sendto(b"still here", ("10.0.0.2", 6000))
    assert first.recv(100) == b"still here"


def test_ephemeral_ports(pair):
    net, a, b = pair
    ports = set()
    for _ in range(50):
        s = a.socket()
        s.bind(("", 0))
        ports.add(s.getsockname()[1])
    assert len(ports) == 50
    assert all(EPHEMERAL_LOW <= p <= EPHEMERAL_HIGH for p in ports)
    implicit = a.socket()
    implicit.sendto(b"x", ("10.0.0.2", 9))            # sending binds implicitly
    assert EPHEMERAL_LOW <= implicit.getsockname()[1] <= EPHEMERAL_HIGH


def test_ephemeral_range_exhausted(pair):
    net, a, b = pair
    table = a.host.udp
    table.low, table.high = 40000, 40002
    sockets = [a.socket() for _ in range(3)]
    for s in sockets:
        s.bind(("", 0))
    with pytest.raises(OSError) as info:
        a.socket().bind(("", 0))
    assert info.value.errno == errno.EAGAIN


def test_connect_filters_other_sources(net, pair, server):
    net, a, b = pair
    c = net.stack("ip=10.0.0.3/24")
    server.connect(("10.0.0.1", 4000))
    assert server.getsockname() == ("10.0.0.2", 7)    # the source address is fixed on connect
    assert server.getpeername() == ("10.0.0.1", 4000)
    c.socket().sendto(b"stranger", ("10.0.0.2", 7))
    sa = a.socket()
    sa.bind(("", 4001))
    sa.sendto(b"wrong port", ("10.0.0.2", 7))
    friend = a.socket()
    friend.bind(("", 4000))
    friend.sendto(b"friend", ("10.0.0.2", 7))
    assert server.recvfrom(100) == (b"friend", ("10.0.0.1", 4000))
    server.settimeout(0)
    with pytest.raises(BlockingIOError):
        server.recv(100)


def test_connection_refused_on_a_connected_socket(pair):
    net, a, b = pair
    s = a.socket()
    s.settimeout(1)
    s.connect(("10.0.0.2", 9))
    s.send(b"anyone?")
    with pytest.raises(ConnectionRefusedError):
        s.recv(100)
    assert net.now < 1.0
    s.send(b"again")                                   # the error was reported once
    net.run(0.1)
    with pytest.raises(ConnectionRefusedError):
        s.send(b"and again")                          # pending error reported by send too


def test_no_error_on_an_unconnected_socket(pair):
    net, a, b = pair
    s = a.socket()
    s.settimeout(1)
    s.sendto(b"anyone?", ("10.0.0.2", 9))
    with pytest.raises(TimeoutError):
        s.recvfrom(100)
    assert b.stats()["drop.udp_no_listener"] == 1
    assert a.stats()["drop.icmp_error_unmatched"] == 1


def test_blocking_nonblocking_and_timeout(pair, server):
    net, a, b = pair
    server.setblocking(False)
    assert server.gettimeout() == 0.0 and not server.getblocking()
    with pytest.raises(BlockingIOError):
        server.recvfrom(100)
    assert net.now == 0.0
    server.settimeout(2.5)
    start = net.now
    with pytest.raises(TimeoutError):
        server.recvfrom(100)
    assert net.now == start + 2.5                      # exactly the virtual timeout
    server.setblocking(True)
    assert server.gettimeout() is None
    a.socket().sendto(b"wake up", ("10.0.0.2", 7))
    assert server.recv(100) == b"wake up"
    with pytest.raises(BlockingIOError):
        server.recv(100, lwsocket.MSG_DONTWAIT)


def test_nonblocking_socket_type_flag(pair):
    net, a, b = pair
    s = a.socket(lwsocket.AF_INET, lwsocket.SOCK_DGRAM | lwsocket.SOCK_NONBLOCK)
    s.bind(("", 0))
    with pytest.raises(BlockingIOError) as info:
        s.recv(10)
    assert info.value.errno == errno.EAGAIN


def test_truncation_to_bufsize_and_peek(pair, server):
    net, a, b = pair
    client = a.socket()
    client.sendto(b"0123456789", ("10.0.0.2", 7))
    client.sendto(b"second", ("10.0.0.2", 7))
    assert server.recv(4, lwsocket.MSG_PEEK) == b"0123"
    assert server.recvfrom(100, lwsocket.MSG_PEEK)[0] == b"0123456789"
    data, ancdata, flags, _ = server.recvmsg(4)
    assert data == b"0123" and flags & lwsocket.MSG_TRUNC    # the rest is discarded
    assert server.recv(100) == b"second"
    buffer = bytearray(3)
    client.sendto(b"abcdef", ("10.0.0.2", 7))
    assert server.recv_into(buffer) == 3 and buffer == b"abc"


def test_rcvbuf_bound_drops_are_counted(pair, server):
    net, a, b = pair
    server.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_RCVBUF, 1)   # Linux's floor: 2304
    assert server.getsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_RCVBUF) == 2304
    client = a.socket()
    for n in range(5):  # each costs 800 bytes + DATAGRAM_OVERHEAD (256): two fit in 2304
        client.sendto(bytes([n]) * 800, ("10.0.0.2", 7))
    net.run(0)
    assert b.stats()["drop.udp_rcvbuf_full"] == 3
    assert server._endpoint.dropped == 3
    assert [server.recv(2000)[0] for _ in range(2)] == [0, 1]       # whole datagrams kept


def test_empty_datagrams_are_bounded_too(pair, server):
    net, a, b = pair
    client = a.socket()
    client.sendto(b"", ("10.0.0.2", 7))   # resolve ARP first: its queue holds only 16
    net.run(1)
    for _ in range(999):                  # within the switch's 1024-frame port queue
        client.sendto(b"", ("10.0.0.2", 7))
    net.run(0)
    queued = len(server._endpoint.queue)
    assert queued == 212992 // 256        # the default SO_RCVBUF, 256 bytes a datagram
    assert b.stats()["drop.udp_rcvbuf_full"] == 1000 - queued


def test_broadcast_needs_so_broadcast(pair):
    net, a, b = pair
    listener = b.socket()
    listener.bind(("", 67))
    listener.settimeout(1)
    s = a.socket()
    for target in ("255.255.255.255", "10.0.0.255", "<broadcast>"):
        with pytest.raises(PermissionError) as info:
            s.sendto(b"x", (target, 67))
        assert info.value.errno == errno.EACCES
    with pytest.raises(PermissionError):
        s.connect(("10.0.0.255", 67))
    s.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_BROADCAST, 1)
    s.sendto(b"hello all", ("<broadcast>", 67))
    assert listener.recvfrom(100) == (b"hello all", ("10.0.0.1", s.getsockname()[1]))


def test_beyond_the_mtu_datagrams_are_fragmented_and_beyond_65507_refused(net):
    a = net.stack("ip=10.0.0.1/24,mtu=576")
    b = net.stack("ip=10.0.0.2/24")
    r = b.socket()
    r.bind(("", 7))
    r.settimeout(1)
    s = a.socket()
    s.sendto(bytes(576 - 28), ("10.0.0.2", 7))      # exactly fits
    assert len(r.recv(2000)) == 548
    assert a.host.stats["ipv4_fragmented"] == 0
    s.sendto(bytes(range(256)) * 8, ("10.0.0.2", 7))  # as Linux: fragmented locally
    assert r.recv(4000) == bytes(range(256)) * 8
    assert a.host.stats["ipv4_fragments_sent"] == 4   # 552 + 552 + 552 + 392 bytes
    assert b.host.stats["ipv4_reassembled"] == 1
    with pytest.raises(OSError) as info:
        s.sendto(bytes(65508), ("10.0.0.2", 7))
    assert info.value.errno == errno.EMSGSIZE


def test_ebadf_after_close_and_the_port_is_released(pair):
    net, a, b = pair
    s = a.socket()
    s.bind(("", 5000))
    s.close()
    s.close()                                          # harmless
    for call in (lambda: s.sendto(b"x", ("10.0.0.2", 7)), lambda: s.recv(1),
                 lambda: s.bind(("", 5001)), lambda: s.getsockname()):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF
    again = a.socket()
    again.bind(("", 5000))
    assert again.getsockname() == ("0.0.0.0", 5000)


def test_closed_endpoint_refuses_to_send_at_the_host_level(pair):
    net, a, b = pair
    endpoint = a.host.open_endpoint("udp")
    a.host.close_endpoint(endpoint)
    with pytest.raises(OSError) as info:
        a.host.sendto(endpoint, b"x", ip("10.0.0.2"), 7, net.now)
    assert info.value.errno == errno.EBADF


def test_datagrams_after_close_are_port_unreachable(pair, server):
    net, a, b = pair
    server.close()
    s = a.socket()
    s.settimeout(1)
    s.connect(("10.0.0.2", 7))
    s.send(b"x")
    with pytest.raises(ConnectionRefusedError):
        s.recv(10)


def test_source_port_and_address_reach_the_peer(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    s = stack.socket()
    s.bind(("", 4242))
    s.sendto(b"payload", ("10.0.0.99", 53))
    peer.answer_arp(peer.collect())
    (header, (sport, dport, payload)), = Peer.udps(peer.run(0))
    assert (header.src, sport, dport, payload) == (ip("10.0.0.1"), 4242, 53, b"payload")
