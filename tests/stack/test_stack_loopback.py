"""The loopback interface every stack has, as Linux's ``lo``: 127.0.0.0/8 and ``::1``.

Everything runs on virtual time.  :class:`Wire` records every frame that enters the in-memory
switch, so "nothing left the host" is checked where it matters, on the switch.  The expected
behaviour is what Linux does (checked in a network namespace: ``ip route get 127.1.2.3`` says
``src 127.0.0.1``; a socket bound to 127.0.0.1 gets EINVAL sending to another host; one bound
to ``::1`` may send, and Linux puts that packet on the wire where we drop it, RFC 4291 2.5.3).
Frames from the wire carrying loopback addresses are martians (RFC 1122 3.2.1.3(g)).
"""
import errno

import pytest

from ipv6_helpers import A6_MAC, Peer6, icmp6_of_type, link_local_of
from lwstack import socket as lwsocket
from lwstack.iface.host import LOOPBACK4
from lwstack.iface.host6 import LOOPBACK6
from lwstack.proto.datagram import ANY, ANY6
from lwstack.sim import VirtualNetwork
from lwstack.wire import icmpv4, icmpv6
from lwstack.wire.arp import OP_REPLY, OP_REQUEST
from lwstack.wire.ipv4 import build_ipv4
from lwstack.wire.ipv6 import parse_addr6, solicited_node
from lwstack.wire.tcp import SYN, build_tcp
from stack_helpers import A_MAC, Peer, ip, mac_bytes

AF_INET, AF_INET6 = lwsocket.AF_INET, lwsocket.AF_INET6
SOCK_STREAM, SOCK_DGRAM = lwsocket.SOCK_STREAM, lwsocket.SOCK_DGRAM
FAMILIES = [pytest.param(AF_INET, "127.0.0.1", id="127.0.0.1"),
            pytest.param(AF_INET6, "::1", id="::1")]


def a6(text):
    return parse_addr6(text)


class Wire:
    """Every frame that enters the switch after :meth:`start`, with the port it came from."""

    def __init__(self, net, monkeypatch):
        self.frames = []
        self.recording = False
        switch = net.switch
        send = switch._send

        def recording_send(sender, frame, now):
            if self.recording:
                self.frames.append((sender.number, bytes(frame)))
            return send(sender, frame, now)

        monkeypatch.setattr(switch, "_send", recording_send)

    def start(self):
        self.frames.clear()
        self.recording = True


@pytest.fixture
def lan(monkeypatch):
    """``(net, a, b, wire)``: two dual-stack stacks past DAD and their first MLD reports."""
    net = VirtualNetwork(seed=5)
    a = net.stack(f"ip=10.0.0.1/24,ip=fd00::1/64,mac={A_MAC}")
    b = net.stack("ip=10.0.0.2/24,ip=fd00::2/64,mac=02:00:00:00:00:0b")
    wire = Wire(net, monkeypatch)
    net.run(10)
    wire.start()
    return net, a, b, wire


def sock(stack, family, kind=SOCK_DGRAM, proto=0, timeout=2.0):
    s = stack.socket(family, kind, proto)
    s.settimeout(timeout)
    return s


# -- addresses and routes ----------------------------------------------------------------------

def test_the_loopback_addresses_are_local_but_not_interface_addresses(lan):
    net, a, b, wire = lan
    host = a.host
    for text in ("127.0.0.1", "127.0.0.0", "127.1.2.3", "127.255.255.254"):
        assert host.is_local(ip(text))
    assert host.is_local(LOOPBACK6) and not host.is_local(a6("::2"))
    # Linux: "local 127.0.0.0/8 dev lo src 127.0.0.1": the source for all of 127/8.
    assert host.route(ip("127.1.2.3")) == (LOOPBACK4, ip("127.1.2.3"))
    assert host.route(LOOPBACK4) == (LOOPBACK4, LOOPBACK4)
    assert host.route(LOOPBACK6) == (LOOPBACK6, LOOPBACK6)
    # ::1 is lo's, not the Ethernet interface's: not offered as a source, not listed.
    assert LOOPBACK6 not in [s.addr for s in host.source_addresses6]
    assert LOOPBACK6 not in [x.addr for x in host.ipv6_addresses()]
    assert all(not text.startswith(("127.", "::1/")) for text in a.addresses)


def test_connect_to_the_unspecified_address_goes_where_linux_sends_it(lan):
    net, a, b, wire = lan
    unspecified = a.host.unspecified_destination
    assert unspecified(ANY, ANY) == LOOPBACK4
    assert unspecified(ANY, ANY6) == LOOPBACK4
    assert unspecified(ANY, ip("10.0.0.1")) == ip("10.0.0.1")          # the bound source
    assert unspecified(ANY, ip("127.3.3.3")) == ip("127.3.3.3")
    assert unspecified(ANY6, ANY6) == LOOPBACK6
    assert unspecified(ANY6, a6("fd00::1")) == LOOPBACK6
    assert unspecified(ANY6, ip("10.0.0.1")) == LOOPBACK4     # bound to ::ffff:10.0.0.1
    assert unspecified(ip("10.0.0.2"), ANY) == ip("10.0.0.2")
    # Datagram sockets over IPv6 already take it from the host.
    server = sock(a, AF_INET6)
    server.bind(("::1", 9000))
    client = sock(a, AF_INET6)
    client.connect(("::", 9000))
    assert client.getpeername() == ("::1", 9000, 0, 0)
    assert client.getsockname()[0] == "::1"
    client.send(b"to ::")
    assert server.recvfrom(100) == (b"to ::", client.getsockname())
    bound = sock(a, AF_INET6)
    bound.bind(("fd00::1", 0))
    bound.connect(("::", 9000))                   # Linux: peer ::1, source stays fd00::1
    assert bound.getpeername() == ("::1", 9000, 0, 0)
    assert bound.getsockname()[0] == "fd00::1"
    assert wire.frames == []


@pytest.mark.parametrize("family, any_addr, expected", [
    (AF_INET, "0.0.0.0", "127.0.0.1"), (AF_INET6, "::", "::1")])
def test_tcp_connect_to_the_unspecified_address_reaches_loopback(lan, family, any_addr,
                                                                 expected):
    net, a, b, wire = lan
    listener = sock(a, family, SOCK_STREAM)
    listener.bind((expected, 8080))
    listener.listen()
    client = sock(a, family, SOCK_STREAM)
    client.connect((any_addr, 8080))
    assert client.getpeername()[0] == expected
    assert wire.frames == []


def test_udp_connect_to_0_0_0_0_reaches_127_0_0_1(lan):
    net, a, b, wire = lan
    udp = sock(a, AF_INET)
    udp.connect(("0.0.0.0", 9))
    assert udp.getpeername() == ("127.0.0.1", 9)
    assert udp.getsockname()[0] == "127.0.0.1"


# -- UDP ---------------------------------------------------------------------------------------

def test_udp_over_127_slash_8(lan):
    net, a, b, wire = lan
    server = sock(a, AF_INET)
    server.bind(("127.0.0.1", 7000))
    client = sock(a, AF_INET)
    assert client.sendto(b"hello", ("127.0.0.1", 7000)) == 5
    data, peer = server.recvfrom(100)
    assert data == b"hello" and peer[0] == "127.0.0.1"
    assert client.getsockname() == ("0.0.0.0", peer[1])      # sendto does not fix the source
    server.sendto(b"back", peer)
    assert client.recvfrom(100) == (b"back", ("127.0.0.1", 7000))
    # Any 127.x is ours; the source towards all of them is 127.0.0.1.
    other = sock(a, AF_INET)
    other.bind(("127.9.9.9", 7000))
    client.sendto(b"nine", ("127.9.9.9", 7000))
    assert other.recvfrom(100) == (b"nine", ("127.0.0.1", peer[1]))
    connected = sock(a, AF_INET)
    connected.connect(("127.1.2.3", 7001))
    assert connected.getsockname()[0] == "127.0.0.1"
    assert connected.getpeername() == ("127.1.2.3", 7001)
    # From an interface address to 127.0.0.1 and back (Linux allows both ways).
    own = sock(a, AF_INET)
    own.bind(("10.0.0.1", 0))
    own.sendto(b"own", ("127.0.0.1", 7000))
    assert server.recvfrom(100) == (b"own", own.getsockname())
    server.sendto(b"to own", own.getsockname())
    assert own.recvfrom(100) == (b"to own", ("127.0.0.1", 7000))
    assert wire.frames == [] and a.host.stats["drop.loopback_full"] == 0


def test_udp_over_ipv6_loopback(lan):
    net, a, b, wire = lan
    with pytest.raises(OSError) as info:
        sock(a, AF_INET6).bind(("::2", 0))
    assert info.value.errno == errno.EADDRNOTAVAIL
    server = sock(a, AF_INET6)
    server.bind(("::1", 7000))
    assert server.getsockname() == ("::1", 7000, 0, 0)
    client = sock(a, AF_INET6)
    client.sendto(b"six", ("::1", 7000))
    data, peer = server.recvfrom(100)
    assert data == b"six" and peer[0] == "::1" and peer[2:] == (0, 0)
    server.sendto(b"back", peer)
    assert client.recvfrom(100) == (b"back", ("::1", 7000, 0, 0))
    client.connect(("::1", 7000))
    assert client.getsockname()[0] == "::1"
    assert client.getpeername() == ("::1", 7000, 0, 0)
    # fd00::1 -> ::1, and a dual-stack socket reaching 127.0.0.1 (IPv4-mapped).
    own = sock(a, AF_INET6)
    own.bind(("fd00::1", 0))
    own.sendto(b"own", ("::1", 7000))
    assert server.recvfrom(100) == (b"own", own.getsockname())
    v4server = sock(a, AF_INET)
    v4server.bind(("127.0.0.1", 7002))
    dual = sock(a, AF_INET6)
    dual.sendto(b"mapped", ("::ffff:127.0.0.1", 7002))
    data, peer = v4server.recvfrom(100)
    assert (data, peer[0]) == (b"mapped", "127.0.0.1")
    v4server.sendto(b"mapped back", peer)
    assert dual.recvfrom(100) == (b"mapped back", ("::ffff:127.0.0.1", 7002, 0, 0))
    bound_mapped = sock(a, AF_INET6)
    bound_mapped.bind(("::ffff:127.0.0.1", 0))
    assert bound_mapped.getsockname()[0] == "::ffff:127.0.0.1"
    assert wire.frames == []


@pytest.mark.parametrize("family, host", FAMILIES)
def test_udp_to_a_closed_loopback_port_is_refused(lan, family, host):
    net, a, b, wire = lan
    client = sock(a, family)
    client.connect((host, 7999))
    client.send(b"anyone?")
    with pytest.raises(ConnectionRefusedError):      # the port unreachable, looped back
        client.recv(100)
    assert wire.frames == []


def test_big_datagrams_over_loopback_are_not_fragmented_below_65536(lan):
    net, a, b, wire = lan
    stats = a.host.stats
    for family, host, size in ((AF_INET, "127.0.0.1", 65507), (AF_INET6, "::1", 60000)):
        server = sock(a, family)
        server.bind((host, 7100))
        server.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_RCVBUF, 1 << 20)
        payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        sock(a, family).sendto(payload, (host, 7100))
        assert server.recvfrom(70000)[0] == payload
    assert stats["ipv4_fragmented"] == 0 and stats["ipv6_fragmented"] == 0
    # The largest UDP payload IPv6 carries is 65575 bytes with its header: over 65536, so
    # it is fragmented and reassembled, as on Linux's lo.
    server = sock(a, AF_INET6)
    server.bind(("::1", 7101))
    server.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_RCVBUF, 1 << 20)
    biggest = b"\xa5" * 65527
    sock(a, AF_INET6).sendto(biggest, ("::1", 7101))
    assert server.recvfrom(70000)[0] == biggest
    assert stats["ipv6_fragmented"] == 1 and stats["ipv6_reassembled"] == 1
    assert wire.frames == []


# -- TCP ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, host", FAMILIES)
def test_tcp_handshake_bulk_and_close_over_loopback(lan, family, host):
    net, a, b, wire = lan
    listener = sock(a, family, SOCK_STREAM)
    listener.bind((host, 8080))
    listener.listen()
    client = sock(a, family, SOCK_STREAM)
    client.connect((host, 8080))
    server, peer = listener.accept()
    server.settimeout(2.0)
    assert client.getpeername()[:2] == (host, 8080)
    assert client.getsockname()[0] == host and server.getsockname()[:2] == (host, 8080)
    assert peer == client.getsockname()
    sent_before = a.host.tcp.stats["segments_sent"]
    data = bytes(range(256)) * 4096                          # 1 MiB: many segments
    client.sendall(data)
    client.shutdown(lwsocket.SHUT_WR)
    received = bytearray()
    while True:
        chunk = server.recv(65536)
        if not chunk:
            break
        received += chunk
    assert received == data
    server.sendall(b"got %d" % len(received))
    server.close()
    assert client.recv(100) == b"got %d" % len(data)
    assert client.recv(100) == b""                             # the server's FIN
    client.close()
    assert a.host.tcp.stats["segments_sent"] - sent_before > len(data) // 1500
    assert a.host.stats["drop.loopback_full"] == 0
    assert wire.frames == []


@pytest.mark.parametrize("family, host", FAMILIES)
def test_tcp_to_a_closed_loopback_port_is_refused(lan, family, host):
    net, a, b, wire = lan
    client = sock(a, family, SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        client.connect((host, 8999))
    assert wire.frames == []


def test_tcp_to_any_127_address_comes_from_127_0_0_1(lan):
    net, a, b, wire = lan
    listener = sock(a, AF_INET, SOCK_STREAM)
    listener.bind(("", 8081))
    listener.listen()
    client = sock(a, AF_INET, SOCK_STREAM)
    client.connect(("127.9.9.9", 8081))
    server, peer = listener.accept()
    assert client.getsockname()[0] == "127.0.0.1" and peer == client.getsockname()
    assert server.getsockname() == ("127.9.9.9", 8081)
    assert wire.frames == []


def test_loopback_traffic_never_takes_the_cached_link_header_path(monkeypatch):
    """With a gateway whose MAC is REACHABLE, the fast path would build whole frames for any
    destination the routes send through it, 127/8 and ::1 included, unless it refuses them:
    connections between an interface address and loopback must stay off the switch."""
    net = VirtualNetwork(seed=6)
    a = net.stack(f"ip=10.0.0.1/24,gw=10.0.0.2,ip=fd00::1/64,gw=fd00::2,mac={A_MAC}")
    b = net.stack("ip=10.0.0.2/24,ip=fd00::2/64,mac=02:00:00:00:00:0b")
    wire = Wire(net, monkeypatch)
    net.run(10)
    for family, gateway, port in ((AF_INET, "10.0.0.2", 7), (AF_INET6, "fd00::2", 8)):
        echo = sock(b, family)
        echo.bind(("", port))
        probe = sock(a, family)
        probe.sendto(b"resolve", (gateway, port))
        echo.sendto(*echo.recvfrom(100))
        probe.recvfrom(100)
    host, now = a.host, net.now
    assert host.arp.reachable(ip("10.0.0.2"), now) is not None
    assert host.nd.cache.reachable(a6("fd00::2"), now) is not None
    assert host.link_header(ip("10.0.0.1"), ip("198.18.0.1"), 6, now) is not None  # control
    assert host.link_header(ip("10.0.0.1"), ip("127.0.0.1"), 6, now) is None
    assert host.link_header(ip("10.0.0.1"), ip("127.7.7.7"), 6, now) is None
    assert host.link_header(LOOPBACK4, ip("10.0.0.2"), 6, now) is None
    assert host.link_header(a6("fd00::1"), a6("2001:db8::1"), 6, now) is not None  # control
    assert host.link_header(a6("fd00::1"), LOOPBACK6, 6, now) is None
    assert host.link_header(LOOPBACK6, a6("fd00::2"), 6, now) is None
    wire.start()
    for family, source, target in ((AF_INET, "10.0.0.1", "127.0.0.1"),
                                   (AF_INET6, "fd00::1", "::1"),
                                   (AF_INET, "127.0.0.1", "10.0.0.1"),
                                   (AF_INET6, "::1", "fd00::1")):
        listener = sock(a, family, SOCK_STREAM)
        listener.bind((target, 0))
        listener.listen()
        client = sock(a, family, SOCK_STREAM)
        client.bind((source, 0))
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        server.settimeout(2.0)
        client.sendall(b"x" * 200_000)
        client.close()
        total = 0
        while True:
            chunk = server.recv(65536)
            if not chunk:
                break
            total += len(chunk)
        assert total == 200_000
        server.close()
        listener.close()
    assert wire.frames == []


def test_create_connection_to_localhost(lan):
    """The resolver gives ::1 then 127.0.0.1 for "localhost" (RFC 6724 order);
    create_connection tries them in turn, as the stdlib does."""
    net, a, b, wire = lan
    v4only = lwsocket.create_server(("127.0.0.1", 8100), stack=a)
    v6only = lwsocket.create_server(("::1", 8101), family=AF_INET6, stack=a)
    dual = lwsocket.create_server(("", 8102), family=AF_INET6, dualstack_ipv6=True, stack=a)
    for server in (v4only, v6only, dual):
        server.settimeout(2.0)
    expectations = ((v4only, 8100, "127.0.0.1"), (v6only, 8101, "::1"), (dual, 8102, "::1"))
    for server, port, peer_host in expectations:
        client = lwsocket.create_connection(("localhost", port), timeout=2.0, stack=a)
        accepted, peer = server.accept()
        assert client.getpeername()[:2] == (peer_host, port)
        assert peer == client.getsockname()
        client.sendall(b"ping")
        assert accepted.recv(10) == b"ping"
        accepted.sendall(b"pong")
        assert client.recv(10) == b"pong"
        client.close()
        accepted.close()
    assert wire.frames == []


# -- ICMP echo ---------------------------------------------------------------------------------

@pytest.mark.parametrize("family, host, reply_from", [
    (AF_INET, "127.0.0.1", "127.0.0.1"), (AF_INET, "127.4.4.4", "127.4.4.4"),
    (AF_INET6, "::1", "::1")])
def test_ping_over_loopback(lan, family, host, reply_from):
    net, a, b, wire = lan
    proto = lwsocket.IPPROTO_ICMP if family == AF_INET else lwsocket.IPPROTO_ICMPV6
    request_type = 8 if family == AF_INET else 128
    pinger = sock(a, family, SOCK_DGRAM, proto)
    pinger.sendto(bytes([request_type, 0, 0, 0, 0, 0, 0, 7]) + b"loop", (host, 0))
    reply, peer = pinger.recvfrom(100)
    assert reply[0] == (0 if family == AF_INET else 129)
    assert reply[6:] == b"\x00\x07loop" and peer[:2] == (reply_from, 0)
    replied = a.host.stats["icmp_echo_replied"] + a.host.stats["icmpv6_echo_replied"]
    assert replied == 1
    assert wire.frames == []


# -- a loopback source never leaves ----------------------------------------------------------

def test_a_socket_bound_to_127_cannot_reach_another_host(lan):
    """Linux: EINVAL (__mkroute_output: a loopback source only leaves through lo)."""
    net, a, b, wire = lan
    udp = sock(a, AF_INET)
    udp.bind(("127.0.0.1", 0))
    with pytest.raises(OSError) as info:
        udp.sendto(b"x", ("10.0.0.2", 9))
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        udp.connect(("10.0.0.2", 9))
    assert info.value.errno == errno.EINVAL
    pinger = sock(a, AF_INET, SOCK_DGRAM, lwsocket.IPPROTO_ICMP)
    pinger.bind(("127.0.0.1", 0))
    with pytest.raises(OSError) as info:
        pinger.sendto(bytes([8, 0, 0, 0, 0, 0, 0, 1]), ("10.0.0.2", 0))
    assert info.value.errno == errno.EINVAL
    tcp = sock(a, AF_INET, SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    with pytest.raises(OSError) as info:
        tcp.connect(("10.0.0.2", 80))
    assert info.value.errno == errno.EINVAL
    # Non-blocking, the error comes through SO_ERROR (Linux refuses in connect itself).
    nonblocking = sock(a, AF_INET, SOCK_STREAM)
    nonblocking.bind(("127.0.0.1", 0))
    nonblocking.setblocking(False)
    assert nonblocking.connect_ex(("10.0.0.2", 80)) in (errno.EINVAL, errno.EINPROGRESS)
    net.run(0.001)
    assert nonblocking.getsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_ERROR) in (0, errno.EINVAL)
    # Our own interface address is fine (it is local).
    udp.sendto(b"to own", ("10.0.0.1", 9))
    assert wire.frames == []
    assert a.host.stats["drop.loopback_source_off_host"] >= 1      # the refused SYN


def test_a_socket_bound_to_ipv6_loopback_sends_nothing_to_another_host(lan):
    """Linux lets it send and puts the packet on the wire (the peer drops it); we drop it
    before the wire, so the socket sees the same: success, and a TCP connect that times out."""
    net, a, b, wire = lan
    receiver = sock(b, AF_INET6)
    receiver.bind(("", 9))
    udp = sock(a, AF_INET6)
    udp.bind(("::1", 0))
    assert udp.sendto(b"x", ("fd00::2", 9)) == 1
    udp.connect(("fd00::2", 9))
    assert udp.getsockname()[0] == "::1" and udp.getpeername()[0] == "fd00::2"
    assert udp.send(b"y") == 1
    receiver.settimeout(1.0)
    with pytest.raises(TimeoutError):
        receiver.recvfrom(100)
    tcp = sock(a, AF_INET6, SOCK_STREAM, timeout=3.0)
    tcp.bind(("::1", 0))
    with pytest.raises(TimeoutError):
        tcp.connect(("fd00::2", 80))
    assert a.host.stats["drop.loopback_source_off_host"] >= 3
    assert wire.frames == []


# -- from the wire: martians -------------------------------------------------------------------

def test_ipv4_martians_from_the_wire_are_dropped(lan):
    net, a, b, wire = lan
    peer = Peer(net, address="10.0.0.99")
    a_mac = mac_bytes(A_MAC)
    listener = sock(a, AF_INET)
    listener.bind(("", 7))
    tcp = sock(a, AF_INET, SOCK_STREAM)
    tcp.bind(("", 80))
    tcp.listen()
    loop = ip("127.0.0.1")
    ours = ip("10.0.0.1")
    peer.send_udp(a_mac, loop, 5000, 7, b"to 127")                     # destination
    peer.send_udp(a_mac, ours, 5000, 7, b"from 127", src_ip=loop)      # source
    peer.send_udp(a_mac, ours, 5000, 7, b"from 127.5", src_ip=ip("127.5.0.1"))
    for src, dst in ((loop, ours), (peer.ip, loop)):
        echo = icmpv4.build_echo(icmpv4.TYPE_ECHO_REQUEST, 1, 1, b"ping")
        peer.send_ipv4(a_mac, build_ipv4(src, dst, 1, echo))
        syn = build_tcp(src, dst, 40000, 80, 1000, 0, SYN, 65535)
        peer.send_ipv4(a_mac, build_ipv4(src, dst, 6, syn))
    net.run(1.0)
    listener.settimeout(0.5)
    with pytest.raises(TimeoutError):
        listener.recvfrom(100)
    stats = a.host.stats
    assert stats["drop.ipv4_martian_destination"] == 3
    assert stats["drop.ipv4_martian_source"] == 4
    assert stats["icmp_echo_replied"] == 0 and a.host.tcp.stats["segments_received"] == 0
    assert peer.collect() == []
    assert [port for port, _ in wire.frames] == [peer.port.number] * 7   # only the peer's


def test_ipv6_martians_from_the_wire_are_dropped(lan):
    net, a, b, wire = lan
    peer = Peer6(net)
    a_mac = mac_bytes(A6_MAC)
    listener = sock(a, AF_INET6)
    listener.bind(("", 7))
    tcp = sock(a, AF_INET6, SOCK_STREAM)
    tcp.bind(("", 80))
    tcp.listen()
    ours = a6("fd00::1")
    peer.send_udp(a_mac, LOOPBACK6, 5000, 7, b"to ::1")
    peer.send_udp(a_mac, ours, 5000, 7, b"from ::1", src=LOOPBACK6)
    for src, dst in ((LOOPBACK6, ours), (peer.addr, LOOPBACK6)):
        peer.send_icmp(a_mac, dst, icmpv6.build_echo(128, 1, 1, b"ping", src, dst), src)
        peer.send_packet(a_mac, dst, 6, build_tcp(src, dst, 40000, 80, 1000, 0, SYN, 65535),
                         src)
    net.run(1.0)
    listener.settimeout(0.5)
    with pytest.raises(TimeoutError):
        listener.recvfrom(100)
    stats = a.host.stats
    assert stats["drop.ipv6_martian_destination"] == 3
    assert stats["drop.ipv6_martian_source"] == 3
    assert stats["icmpv6_echo_replied"] == 0 and a.host.tcp.stats["segments_received"] == 0
    assert peer.collect() == []
    assert [port for port, _ in wire.frames] == [peer.port.number] * 6


# -- ARP and NDP never answer for loopback -----------------------------------------------------

def test_arp_never_answers_or_learns_for_127(lan):
    net, a, b, wire = lan
    peer = Peer(net, address="10.0.0.99")
    peer.send_arp(OP_REQUEST, ip("127.0.0.1"))                          # who has 127.0.0.1?
    peer.send_arp(OP_REQUEST, ip("127.0.0.1"), eth_dst=mac_bytes(A_MAC))
    peer.send_arp(OP_REQUEST, ip("10.0.0.1"), sender_ip=ip("127.0.0.5"))  # a loopback sender
    peer.send_arp(OP_REPLY, ip("10.0.0.1"), sender_ip=ip("127.0.0.6"),
                  eth_dst=mac_bytes(A_MAC), target_mac=mac_bytes(A_MAC))
    net.run(1.0)
    assert Peer.arps(peer.collect()) == []
    assert a.host.stats["drop.arp_loopback"] == 4
    assert not any(addr[0] == 127 for addr in a.host.arp.entries)
    peer.send_arp(OP_REQUEST, ip("10.0.0.1"))                             # control
    net.run(1.0)
    replies = Peer.arps(peer.collect())
    assert [(p.operation, p.sender_ip) for _, p in replies] == [(OP_REPLY, ip("10.0.0.1"))]


def test_ndp_never_answers_for_ipv6_loopback(lan):
    """fd00::1 and ::1 share the solicited-node group ff02::1:ff00:1, so an NS for ::1 does
    reach the stack; it must not answer, multicast or unicast."""
    net, a, b, wire = lan
    assert solicited_node(LOOPBACK6) == solicited_node(a6("fd00::1"))
    peer = Peer6(net)
    na_before = a.host.stats["na_sent"]
    peer.send_ns(LOOPBACK6)
    peer.send_ns(LOOPBACK6, dst=link_local_of(A6_MAC), dst_mac=mac_bytes(A6_MAC))
    peer.send_ns(LOOPBACK6, src=bytes(16))                   # a DAD probe for ::1
    net.run(1.0)
    assert a.host.stats["drop.ns_not_our_target"] == 3
    assert a.host.stats["na_sent"] == na_before
    assert icmp6_of_type(peer.collect(), icmpv6.TYPE_NEIGHBOR_ADVERTISEMENT) == []
    assert [port for port, _ in wire.frames] == [peer.port.number] * 3
    peer.send_ns(a6("fd00::1"))                                          # control
    net.run(1.0)
    answers = icmp6_of_type(peer.collect(), icmpv6.TYPE_NEIGHBOR_ADVERTISEMENT)
    assert [p.nd.target for p in answers] == [a6("fd00::1")]


# -- loopback without the Ethernet side ------------------------------------------------------

@pytest.mark.parametrize("config", ["", "ip=10.0.0.1/24,mtu=1000"],
                         ids=["no address", "IPv6 disabled"])
def test_loopback_works_without_addresses_or_ipv6_on_the_link(monkeypatch, config):
    """Linux's lo is an interface of its own: no address on the Ethernet side, or its IPv6
    disabled (MTU below 1280), leaves 127.0.0.1 and ::1 working."""
    net = VirtualNetwork(seed=7)
    stack = net.stack(config)
    wire = Wire(net, monkeypatch)
    net.run(5)
    wire.start()
    for family, host in (("4", "127.0.0.1"), ("6", "::1")):
        fam = AF_INET if family == "4" else AF_INET6
        server = sock(stack, fam)
        server.bind((host, 7))
        client = sock(stack, fam)
        client.sendto(b"hi " + family.encode(), (host, 7))
        assert server.recvfrom(100)[0] == b"hi " + family.encode()
        listener = sock(stack, fam, SOCK_STREAM)
        listener.bind((host, 80))
        listener.listen()
        conn = sock(stack, fam, SOCK_STREAM)
        conn.connect((host, 80))
        accepted, _ = listener.accept()
        conn.sendall(b"stream")
        assert accepted.recv(100) == b"stream"
    assert wire.frames == []
