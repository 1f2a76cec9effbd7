"""IPv4 input validation, addressing, fragments, TTL and routing (RFC 791, RFC 1122 3.2-3.3)."""
import errno

import pytest

from lwstack import socket as lwsocket
from lwstack.wire.checksum import internet_checksum
from lwstack.wire.ethernet import BROADCAST
from lwstack.wire.ipv4 import FLAG_MF, build_ipv4
from lwstack.wire.udp import build_udp
from stack_helpers import PEER_MAC, Peer, drops, ip

PEER_IP = ip("10.0.0.99")
US = ip("10.0.0.1")


@pytest.fixture
def host(net):
    stack = net.stack("ip=10.0.0.1/24")
    sock = stack.socket()
    sock.bind(("", 7))
    sock.settimeout(0)
    return stack, sock


def udp_packet(payload=b"data", src=PEER_IP, dst=US, **kwargs):
    return build_ipv4(src, dst, 17, build_udp(src, dst, 4000, 7, payload), **kwargs)


def patched(packet, index, value, fix_checksum=True):
    data = bytearray(packet)
    data[index] = value
    if fix_checksum:
        data[10:12] = b"\0\0"
        data[10:12] = internet_checksum(bytes(data[:20])).to_bytes(2, "big")
    return bytes(data)


def test_a_valid_datagram_is_delivered(net, peer, host):
    stack, sock = host
    peer.send_ipv4(stack.host.mac, udp_packet(b"fine"))
    net.run(0)
    assert sock.recvfrom(10) == (b"fine", ("10.0.0.99", 4000))


@pytest.mark.parametrize("make,reason", [
    (lambda p: patched(p, 11, p[11] ^ 1, fix_checksum=False), "ipv4_bad_checksum"),
    (lambda p: patched(p, 0, 0x65), "ipv4_bad_version"),
    (lambda p: patched(p, 0, 0x44), "ipv4_bad_header_len"),
    (lambda p: p[:19], "ipv4_truncated"),
    (lambda p: patched(p, 3, p[3] + 1), "ipv4_bad_total_len"),     # one byte beyond the frame
    (lambda p: patched(p, 3, 19), "ipv4_bad_total_len"),
], ids=["checksum", "version", "ihl", "short", "total_long", "total_short"])
def test_bad_headers_are_dropped_by_reason(net, peer, host, make, reason):
    stack, sock = host
    # 50 bytes of payload and no Ethernet padding (VDE needs none), so "short" and "beyond"
    # really are beyond the end of the frame.
    peer.send(stack.host.mac + peer.mac + b"\x08\x00" + make(udp_packet(b"p" * 50)))
    net.run(0)
    assert drops(stack, reason) == 1
    with pytest.raises(BlockingIOError):
        sock.recv(10)
    assert peer.collect()[1:] == []          # nothing answered (only the announcement)


def test_not_for_us(net, peer, host):
    stack, _ = host
    peer.send_ipv4(stack.host.mac, udp_packet(dst=ip("10.0.0.200")))
    peer.send_ipv4(PEER_MAC[:5] + b"\x01", udp_packet())     # another MAC: the switch floods
    net.run(0)
    assert drops(stack, "ipv4_not_for_us") == 1


@pytest.mark.parametrize("dst", ["10.0.0.255", "255.255.255.255"])
def test_broadcasts_reach_wildcard_sockets(net, peer, host, dst):
    stack, sock = host
    bound_specific = stack.socket()
    bound_specific.bind(("10.0.0.1", 8))
    peer.send_ipv4(BROADCAST, udp_packet(b"to all", dst=ip(dst)))
    net.run(0)
    assert sock.recv(10) == b"to all"
    assert peer.collect()[1:] == []          # no port unreachable for a broadcast


def test_unicast_ip_in_a_link_broadcast_is_dropped(net, peer, host):
    stack, sock = host
    peer.send_ipv4(BROADCAST, udp_packet())
    net.run(0)
    assert drops(stack, "ipv4_unicast_in_link_broadcast") == 1


@pytest.mark.parametrize("source", ["255.255.255.255", "224.0.0.1", "240.0.0.1", "10.0.0.255"])
def test_martian_sources_are_dropped(net, peer, host, source):
    stack, sock = host
    peer.send_ipv4(stack.host.mac, udp_packet(src=ip(source)))
    net.run(0)
    assert drops(stack, "ipv4_martian_source") == 1
    assert peer.collect()[1:] == []


@pytest.mark.parametrize("flags_fragment", [FLAG_MF, 100, FLAG_MF | 100])
def test_a_lone_fragment_waits_for_the_rest_and_delivers_nothing(net, peer, host,
                                                                 flags_fragment):
    stack, sock = host
    peer.send_ipv4(stack.host.mac, udp_packet(b"12345678", flags_fragment=flags_fragment))
    net.run(0)
    assert len(stack.host.fragments) == 1
    with pytest.raises(BlockingIOError):
        sock.recv(10)


def test_ethernet_padding_is_not_payload(net, peer, host):
    stack, sock = host
    packet = udp_packet(b"x")                 # 29 bytes: the frame gets 17 bytes of padding
    peer.send_ipv4(stack.host.mac, packet)
    net.run(0)
    assert sock.recv(100) == b"x"


def test_sent_packets_have_ttl_64_df_and_fresh_idents(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    s = stack.socket()
    s.sendto(b"a", ("10.0.0.99", 9))
    peer.answer_arp(peer.collect())
    net.run(0)
    s.setsockopt(lwsocket.IPPROTO_IP, lwsocket.IP_TTL, 5)
    s.sendto(b"b", ("10.0.0.99", 9))
    headers = [h for _, h, _ in Peer.ipv4s(peer.collect())]
    assert [h.ttl for h in headers] == [64, 5]
    assert all(h.flags_fragment == 0x4000 for h in headers)
    assert headers[0].ident != headers[1].ident
    assert s.getsockopt(lwsocket.IPPROTO_IP, lwsocket.IP_TTL) == 5


def test_off_subnet_traffic_goes_to_the_gateway(net):
    gateway = Peer(net, "10.0.0.254", mac=bytes.fromhex("0200000000fe"))
    stack = net.stack("ip=10.0.0.1/24,gw=10.0.0.254")
    gateway.collect()
    s = stack.socket()
    s.sendto(b"far away", ("192.0.2.7", 53))
    frames = gateway.collect()
    (_, request), = Peer.arps(frames)
    assert request.target_ip == ip("10.0.0.254")       # ARP for the gateway, not 192.0.2.7
    gateway.answer_arp(frames)
    (dst, header, _), = Peer.ipv4s(gateway.run(0))
    assert dst == gateway.mac
    assert (header.src, header.dst) == (ip("10.0.0.1"), ip("192.0.2.7"))


def test_on_link_traffic_bypasses_the_gateway(net, peer):
    stack = net.stack("ip=10.0.0.1/24,gw=10.0.0.254")
    peer.collect()
    stack.socket().sendto(b"near", ("10.0.0.99", 9))
    assert [p.target_ip for _, p in Peer.arps(peer.collect())] == [ip("10.0.0.99")]


def test_longest_prefix_wins(net):
    stack = net.stack("ip=10.0.0.1/24,ip=10.0.0.129/25,gw=10.0.0.254")
    assert stack.host.route(ip("10.0.0.200")) == (ip("10.0.0.129"), ip("10.0.0.200"))
    assert stack.host.route(ip("10.0.0.7")) == (ip("10.0.0.1"), ip("10.0.0.7"))
    # The gateway is on 10.0.0.128/25: off-link traffic leaves from that subnet's address.
    assert stack.host.route(ip("8.8.8.8")) == (ip("10.0.0.129"), ip("10.0.0.254"))


def test_no_route_is_enetunreach(net):
    stack = net.stack("ip=10.0.0.1/24")
    s = stack.socket()
    with pytest.raises(OSError) as info:
        s.sendto(b"x", ("192.0.2.7", 53))
    assert info.value.errno == errno.ENETUNREACH
    assert s.connect_ex(("192.0.2.7", 53)) == errno.ENETUNREACH
    unconfigured = net.stack("")
    with pytest.raises(OSError) as info:
        unconfigured.socket().sendto(b"x", ("255.255.255.255", 9))
    assert info.value.errno in (errno.ENETUNREACH, errno.EACCES)


def test_packets_to_our_own_address_are_looped_back(net, peer):
    stack = net.stack("ip=10.0.0.1/24,ip=10.0.1.1/24")
    peer.collect()
    receiver = stack.socket()
    receiver.bind(("", 7))
    receiver.settimeout(1)
    sender = stack.socket()
    sender.sendto(b"to myself", ("10.0.1.1", 7))
    data, (addr, port) = receiver.recvfrom(100)
    assert data == b"to myself" and addr == "10.0.1.1"
    assert port == sender.getsockname()[1]
    assert peer.collect() == []                 # nothing went on the wire
    assert net.now == 0.0
