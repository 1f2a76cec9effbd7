"""ICMP (RFC 792, RFC 1122 3.2.2): echo, errors we send, errors we receive, rate limiting."""
import errno

import pytest

from lwstack import socket as lwsocket
from lwstack.proto.icmp import TokenBucket
from lwstack.wire import icmpv4
from lwstack.wire.ethernet import BROADCAST
from lwstack.wire.ipv4 import build_ipv4
from lwstack.wire.udp import build_udp
from stack_helpers import Peer, drops, ip

PEER_IP = ip("10.0.0.99")
US = ip("10.0.0.1")


@pytest.fixture
def stack(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    # The peer introduces itself, so answers go out without an ARP exchange.
    peer.send_arp(1, US)
    net.run(0)
    peer.collect()
    return stack


def echo_request(payload, ident=0x1234, seq=7, dst=US):
    return build_ipv4(PEER_IP, dst, 1, icmpv4.build_echo(8, ident, seq, payload))


def udp_to(port, dst=US, payload=b"knock"):
    return build_ipv4(PEER_IP, dst, 17, build_udp(PEER_IP, dst, 4000, port, payload))


def test_echo_reply_mirrors_the_request(net, peer, stack):
    payload = bytes(range(256)) * 4 + b"odd"
    peer.send_ipv4(stack.host.mac, echo_request(payload))
    (header, (t, code, rest, body)), = Peer.icmps(peer.run(0))
    assert (header.src, header.dst, header.ttl) == (US, PEER_IP, 64)
    assert (t, code, rest, body) == (0, 0, (0x1234 << 16) | 7, payload)
    assert stack.stats()["icmp_echo_replied"] == 1


def test_ping_socket_between_two_stacks(pair):
    net, a, b = pair
    s = a.socket(lwsocket.AF_INET, lwsocket.SOCK_DGRAM, lwsocket.IPPROTO_ICMP)
    s.settimeout(2)
    request = icmpv4.build_echo(8, 0, 42, b"are you there?")
    s.sendto(request, ("10.0.0.2", 0))
    reply, (addr, _) = s.recvfrom(200)
    assert addr == "10.0.0.2"
    t, code, rest, body = icmpv4.parse_icmpv4(reply)
    assert (t, code, rest & 0xFFFF, body) == (0, 0, 42, b"are you there?")
    assert rest >> 16 == s._endpoint.local_port        # the stack chose the identifier


def test_no_reply_to_a_broadcast_echo(net, peer, stack):
    for dst in ("10.0.0.255", "255.255.255.255"):
        peer.send_ipv4(BROADCAST, echo_request(b"smurf", dst=ip(dst)))
    assert peer.run(0) == []
    assert drops(stack, "icmp_echo_broadcast") == 2


def test_port_unreachable_quotes_the_datagram(net, peer, stack):
    datagram = udp_to(9)
    peer.send_ipv4(stack.host.mac, datagram)
    (header, (t, code, rest, body)), = Peer.icmps(peer.run(0))
    assert (header.src, header.dst) == (US, PEER_IP)
    assert (t, code, rest) == (3, 3, 0)
    assert body == datagram[:28]                     # IP header + 8 bytes (RFC 792)
    assert drops(stack, "udp_no_listener") == 1


def test_no_port_unreachable_for_broadcasts(net, peer, stack):
    peer.send_ipv4(BROADCAST, udp_to(9, dst=ip("10.0.0.255")))
    peer.send_ipv4(BROADCAST, udp_to(9, dst=ip("255.255.255.255")))
    assert peer.run(0) == []
    assert drops(stack, "udp_no_listener") == 2


def test_protocol_unreachable(net, peer, stack):
    packet = build_ipv4(PEER_IP, US, 132, b"SCTP? never heard of it")
    peer.send_ipv4(stack.host.mac, packet)
    (_, (t, code, _, body)), = Peer.icmps(peer.run(0))
    assert (t, code) == (3, 2) and body == packet[:28]
    assert drops(stack, "ipv4_unknown_protocol") == 1


def test_no_error_about_an_icmp_error(net, peer, stack):
    error = icmpv4.build_error(3, 3, udp_to(9, dst=PEER_IP))
    peer.send_ipv4(stack.host.mac, build_ipv4(PEER_IP, US, 1, error))
    assert peer.run(0) == []
    assert drops(stack, "icmp_error_unmatched") == 1


def test_rate_limit_burst_then_rate(net, peer, stack):
    stack.host.icmp_limiter = TokenBucket(rate=10.0, burst=5)
    for _ in range(8):
        peer.send_ipv4(stack.host.mac, udp_to(9))
    assert len(Peer.icmps(peer.run(0))) == 5                 # the burst
    assert drops(stack, "icmp_rate_limited") == 3
    net.run(0.25)                                             # 2.5 tokens come back
    for _ in range(4):
        peer.send_ipv4(stack.host.mac, udp_to(9))
    assert len(Peer.icmps(peer.run(0))) == 2
    net.run(10)                                               # never more than the burst
    for _ in range(8):
        peer.send_ipv4(stack.host.mac, udp_to(9))
    assert len(Peer.icmps(peer.run(0))) == 5


def test_token_bucket_alone():
    bucket = TokenBucket(rate=1000.0, burst=50)
    assert sum(bucket.take(0.0) for _ in range(60)) == 50
    assert sum(bucket.take(0.010) for _ in range(20)) == 10
    assert sum(bucket.take(100.0) for _ in range(100)) == 50


def test_echo_request_rate_is_not_limited(net, peer, stack):
    stack.host.icmp_limiter = TokenBucket(rate=1.0, burst=1)
    for seq in range(5):
        peer.send_ipv4(stack.host.mac, echo_request(b"x", seq=seq))
    assert len(Peer.icmps(peer.run(0))) == 5


def test_unreachable_from_a_router_reaches_the_connected_socket(net, peer, stack):
    s = stack.socket()
    s.connect(("10.0.0.99", 53))
    s.send(b"query")
    (_, _, sent), = Peer.ipv4s(peer.collect())
    quoted = build_ipv4(US, PEER_IP, 17, sent)
    error = icmpv4.build_error(3, icmpv4.CODE_HOST_UNREACHABLE, quoted)
    peer.send_ipv4(stack.host.mac, build_ipv4(PEER_IP, US, 1, error))
    net.run(0)
    assert s.getsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_ERROR) == errno.EHOSTUNREACH
    assert s.getsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_ERROR) == 0   # reported once
