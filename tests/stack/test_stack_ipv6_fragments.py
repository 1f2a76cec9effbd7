"""Fragments and path MTU, both families, on virtual time: fragmentation at the source
(RFC 791, RFC 8200 5), reassembly in the host, reassembly timeouts answered with Time
Exceeded (RFC 792, RFC 8200 4.5), Packet Too Big / Fragmentation Needed (RFC 8201, RFC 1191)."""
import errno
import struct

import pytest

from ipv6_helpers import A, A6_MAC, Peer6, icmp6_of_type, ipv6_packets, settled_pair
from lwstack import socket as lwsocket
from lwstack.storage.fragments import fragment_v4, fragment_v6
from lwstack.wire import icmpv4, icmpv6
from lwstack.wire.ipv4 import FLAG_DF, build_ipv4
from lwstack.wire.ipv6 import build_ipv6, parse_fragment_header
from lwstack.wire.udp import build_udp, build_udp6
from stack_helpers import Peer, drops, ip

US6 = A("fd00::1")
US4 = ip("10.0.0.1")
OUR_MAC = bytes.fromhex("02000000000a")


@pytest.fixture
def stack(net):
    s = net.stack(f"ip=10.0.0.1/24,ip=fd00::1/64,mac={A6_MAC}")
    net.run(3.0)
    return s


def bound(stack, family, port=9):
    sock = stack.socket(family, lwsocket.SOCK_DGRAM)
    sock.bind(("", port))
    sock.settimeout(0)
    return sock


# -- fragmentation at the source ------------------------------------------------------------------

def test_large_udp6_datagrams_are_fragmented_and_reassembled(net):
    a, b = settled_pair(net, "ip=fd00::1/64", "ip=fd00::2/64")
    server = bound(b, lwsocket.AF_INET6)
    arrived = []
    receive = b.host.receive
    b.host.receive = lambda frame, now: arrived.append(bytes(frame)) or receive(frame, now)
    payload = bytes(i % 251 for i in range(4000))
    a.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM).sendto(payload, ("fd00::2", 9))
    net.run(0.1)
    assert server.recvfrom(5000)[0] == payload
    fragments = [p for p in ipv6_packets(arrived) if p.chain.fragment is not None]
    # 8 + 4000 bytes of UDP in pieces of (1500 - 40 - 8) // 8 * 8 = 1448: 1448, 1448, 1112.
    assert [len(p.payload) for p in fragments] == [1448, 1448, 1112]
    assert [p.chain.fragment.offset for p in fragments] == [0, 1448, 2896]
    assert len({p.chain.fragment.ident for p in fragments}) == 1
    assert b.host.stats["ipv6_reassembled"] == 1


def test_fragmented_echo_requests_get_fragmented_replies(net):
    a, b = settled_pair(net, "ip=fd00::1/64", "ip=fd00::2/64")
    sock = a.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM, lwsocket.IPPROTO_ICMPV6)
    sock.settimeout(1)
    data = bytes(range(256)) * 12
    sock.sendto(struct.pack("!BBHHH", 128, 0, 0, 0, 1) + data, ("fd00::2", 0))
    reply, _ = sock.recvfrom(5000)
    assert reply[8:] == data
    assert a.host.stats["ipv6_reassembled"] == 1 and b.host.stats["ipv6_reassembled"] == 1


def test_udp4_datagrams_fit_with_df_and_fragment_without(net, stack):
    peer = Peer(net)
    sock = stack.socket()
    sock.sendto(b"small", ("10.0.0.99", 9))
    frames = peer.run(0.0)
    peer.answer_arp(frames)
    peer.run(0.0)
    sock.sendto(bytes(3000), ("10.0.0.99", 9))
    net.run(0.0)
    peer.collect()
    packets = [h for _, h, _ in Peer.ipv4s(peer.received)]
    small = [h for h in packets if h.total_len == 20 + 8 + 5]
    pieces = [h for h in packets if h.total_len != 20 + 8 + 5]
    assert small[0].flags_fragment == FLAG_DF         # Linux: DF while it fits (PMTUDISC_WANT)
    assert [(h.flags_fragment, h.total_len) for h in pieces] == [
        (0x2000 | 0, 1500), (0x2000 | 185, 1500), (370, 20 + 3008 - 2960)]


# -- reassembly -----------------------------------------------------------------------------------

def test_ipv6_fragments_out_of_order_are_reassembled(net, stack):
    peer = Peer6(net)
    sock = bound(stack, lwsocket.AF_INET6)
    payload = bytes(range(200)) * 10
    segment = build_udp6(peer.addr, US6, 4000, 9, payload)
    pieces = fragment_v6(segment, 1280, ident=0x1234, next_header=17)
    for piece in reversed(pieces):
        peer.send_packet(OUR_MAC, US6, 44, piece)
    net.run(0.0)
    assert sock.recvfrom(3000) == (payload, ("fd00::99", 4000, 0, 0))


def test_ipv4_fragments_out_of_order_are_reassembled_and_overlaps_dropped(net, stack):
    peer = Peer(net)
    sock = bound(stack, lwsocket.AF_INET)
    payload = bytes(range(250)) * 8
    segment = build_udp(peer.ip, US4, 4000, 9, payload)
    packets = fragment_v4(peer.ip, US4, 17, segment, 576, ident=77)
    for packet in reversed(packets):
        peer.send_ipv4(OUR_MAC, packet)
    net.run(0.0)
    assert sock.recvfrom(3000) == (payload, ("10.0.0.99", 4000))
    # RFC 5722 for IPv4 too (Linux since 4.19): an overlap discards the datagram.
    peer.send_ipv4(OUR_MAC, build_ipv4(peer.ip, US4, 17, segment[:64], ident=78,
                                       flags_fragment=0x2000))
    peer.send_ipv4(OUR_MAC, build_ipv4(peer.ip, US4, 17, segment[32:], ident=78,
                                       flags_fragment=4))
    net.run(0.0)
    assert stack.stats()["frag.drop.frag_overlap"] == 1
    with pytest.raises(BlockingIOError):
        sock.recvfrom(3000)


def test_ipv6_reassembly_timeout_sends_time_exceeded_only_with_fragment_zero(net, stack):
    peer = Peer6(net)
    segment = build_udp6(peer.addr, US6, 4000, 9, bytes(2000))
    first, second = fragment_v6(segment, 1280, ident=1, next_header=17)
    peer.send_packet(OUR_MAC, US6, 44, first)                  # the rest never comes
    fragments = fragment_v6(segment, 1280, ident=2, next_header=17)
    peer.send_packet(OUR_MAC, US6, 44, fragments[1])           # no fragment zero
    frames = peer.run(59.9)
    peer.answer_ns(frames)
    assert icmp6_of_type(peer.collect(), icmpv6.TYPE_TIME_EXCEEDED) == []
    frames = peer.run(0.2)
    peer.answer_ns(frames)
    peer.run(0.0)
    exceeded = icmp6_of_type(peer.received, icmpv6.TYPE_TIME_EXCEEDED)
    assert len(exceeded) == 1
    _type, code, _rest, body = exceeded[0].icmp
    assert code == icmpv6.CODE_REASSEMBLY_TIME_EXCEEDED
    assert parse_fragment_header(body, 40).ident == 1           # it quotes fragment zero
    assert stack.stats()["frag.frag.timeout"] == 2


def test_ipv4_reassembly_timeout_sends_time_exceeded_after_30_seconds(net, stack):
    peer = Peer(net)
    segment = build_udp(peer.ip, US4, 4000, 9, bytes(2000))
    first = fragment_v4(peer.ip, US4, 17, segment, 1500, ident=5)[0]
    peer.send_ipv4(OUR_MAC, first)
    frames = peer.run(29.9)
    peer.answer_arp(frames)
    assert [m for _, m in Peer.icmps(peer.collect()) if m[0] == icmpv4.TYPE_TIME_EXCEEDED] == []
    frames = peer.run(0.2)
    peer.answer_arp(frames)
    peer.run(0.0)
    exceeded = [m for _, m in Peer.icmps(peer.received) if m[0] == icmpv4.TYPE_TIME_EXCEEDED]
    assert len(exceeded) == 1 and exceeded[0][1] == 1          # code 1: reassembly
    assert exceeded[0][3][:20] == first[:20]                   # it quotes fragment zero


# -- path MTU -----------------------------------------------------------------------------------

def packet_too_big(peer, mtu, offending):
    return icmpv6.build_error(icmpv6.TYPE_PACKET_TOO_BIG, 0, offending, peer.link_local,
                              US6, rest=mtu)


def test_packet_too_big_lowers_the_path_mtu_and_a_connected_socket_hears_emsgsize(net, stack):
    peer = Peer6(net)
    sock = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
    sock.connect(("fd00::99", 9))
    sock.send(bytes(1400))
    frames = peer.run(0.0)
    peer.answer_ns(frames)
    frames = peer.run(0.0)
    sent = [p for p in ipv6_packets(frames) if p.protocol == 17][0]
    offending = build_ipv6(US6, peer.addr, 17, sent.payload)
    peer.send_icmp(OUR_MAC, US6, packet_too_big(peer, 1280, offending), src=peer.link_local)
    net.run(0.0)
    assert stack.host.path_mtu(peer.addr, net.now) == 1280
    with pytest.raises(OSError) as info:
        sock.send(b"x")
    assert info.value.errno == errno.EMSGSIZE          # fatal for UDP (Linux)
    sock.send(bytes(1400))                             # now fragmented to 1280
    frames = peer.run(0.0)
    fragments = [p for p in ipv6_packets(frames) if p.chain.fragment is not None]
    assert len(fragments) == 2 and max(p.header.total_len for p in fragments) <= 1280
    net.run(600.0)                                     # RFC 8201 5.3: tried again later
    assert stack.host.path_mtu(peer.addr, net.now) == 1500


def test_packet_too_big_below_1280_and_unrelated_quotes_are_ignored(net, stack):
    peer = Peer6(net)
    sock = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
    offending = build_ipv6(US6, peer.addr, 17, build_udp6(US6, peer.addr, 1, 9, bytes(1400)))
    peer.send_icmp(OUR_MAC, US6, packet_too_big(peer, 600, offending), src=peer.link_local)
    foreign = build_ipv6(A("fd00::55"), peer.addr, 17, bytes(16))
    peer.send_icmp(OUR_MAC, US6, packet_too_big(peer, 1300, foreign), src=peer.link_local)
    net.run(0.0)
    assert stack.host.path_mtu(peer.addr, net.now) == 1280     # the IPv6 floor
    assert drops(stack, "icmpv6_error_not_ours") == 1
    sock.close()


def test_packet_too_big_about_tcp_reaches_tcp_as_a_soft_emsgsize(net, stack, monkeypatch):
    peer = Peer6(net)
    calls = []
    monkeypatch.setattr(stack.host.tcp, "icmp_error",
                        lambda *args: calls.append(args) or True)
    segment = struct.pack("!HHIIHHHH", 40000, 80, 1000, 0, 0x5010, 100, 0, 0) + bytes(1300)
    offending = build_ipv6(US6, peer.addr, 6, segment)
    peer.send_icmp(OUR_MAC, US6, packet_too_big(peer, 1400, offending), src=peer.link_local)
    net.run(0.0)
    assert len(calls) == 1
    src, dst, transport, code, hard, _now = calls[0]
    assert (src, dst, code, hard) == (US6, peer.addr, errno.EMSGSIZE, False)
    assert transport[:4] == segment[:4]
    assert stack.host.path_mtu(peer.addr, net.now) == 1400


def test_fragmentation_needed_lowers_the_ipv4_path_mtu(net, stack):
    peer = Peer(net)
    sock = stack.socket()
    sock.sendto(b"hello", ("10.0.0.99", 9))
    peer.answer_arp(peer.run(0.0))
    peer.run(0.0)
    offending = build_ipv4(US4, peer.ip, 17, build_udp(US4, peer.ip, 1, 9, bytes(1000)))
    error = icmpv4.build_error(icmpv4.TYPE_DEST_UNREACHABLE, icmpv4.CODE_FRAGMENTATION_NEEDED,
                               offending, rest=576)
    peer.send_ipv4(OUR_MAC, build_ipv4(peer.ip, US4, 1, error))
    net.run(0.0)
    assert stack.host.path_mtu(peer.ip, net.now) == 576
    peer.collect()
    sock.sendto(bytes(1000), ("10.0.0.99", 9))
    net.run(0.0)
    sizes = [h.total_len for _, h, _ in Peer.ipv4s(peer.collect())]
    assert sizes == [572, 20 + 1008 - 552]              # (576 - 20) // 8 * 8 = 552 a piece
