"""IPv6 in the host on virtual time: link-local addresses and DAD, MLD, ping6, neighbour
discovery and NUD (RFC 4861 7.3), ICMPv6 errors (RFC 4443), extension headers (RFC 8200 4).

Two stacks talk through sockets, or a scripted peer (:class:`ipv6_helpers.Peer6`) speaks raw
frames to one stack and checks what it answers byte for byte.
"""
import errno
import struct

import pytest

from ipv6_helpers import (A, A6_MAC, B6_MAC, PEER6_MAC, Peer6, icmp6_of_type, ipv6_packets,
                          link_local_of, settled_pair)
from lwstack import socket as lwsocket
from lwstack.iface import ndp
from lwstack.iface.addrgen import hash_address
from lwstack.wire import icmpv6
from lwstack.wire.ipv6 import (ALL_NODES, LINK_LOCAL_PREFIX, addr6_to_str, build_ipv6,
                               multicast_mac, solicited_node)
from lwstack.wire.udp import build_udp6
from stack_helpers import drops

US = A("fd00::1")


@pytest.fixture
def stack(net):
    """One stack at fd00::1 (MAC 02:00:00:00:00:0a) whose addresses passed DAD."""
    s = net.stack(f"ip=fd00::1/64,mac={A6_MAC}")
    net.run(3.0)
    return s


@pytest.fixture
def peer(net):
    return Peer6(net)


def echo_request(ident, sequence, data=b"ping"):
    return struct.pack("!BBHHH", 128, 0, 0, ident, sequence) + data


# -- addresses ------------------------------------------------------------------------------

def test_link_local_from_eui64_goes_through_dad_first(net, peer):
    stack = net.stack(f"mac={A6_MAC}")
    ll = link_local_of(A6_MAC)
    net.run(0)
    assert stack.ipv6_addresses == [] and stack.link_local is None
    frames = peer.run(1.0)           # RFC 4862 5.4.2: a random delay up to 1 s, then a probe
    reports = icmp6_of_type(frames, icmpv6.TYPE_MLDV2_REPORT)
    probes = icmp6_of_type(frames, icmpv6.TYPE_NEIGHBOR_SOLICITATION)
    assert len(probes) == 1
    probe = probes[0]
    assert probe.header.src == bytes(16) and probe.header.dst == solicited_node(ll)
    assert probe.eth_dst == bytes.fromhex("3333ff00000a") and probe.header.hop_limit == 255
    ns = probe.nd
    assert ns.target == ll and ns.source_lladdr is None and len(ns.nonce) == 6
    # The solicited-node group is joined (and reported, from ::, hop limit 1, Router Alert)
    # before the probe goes out (RFC 4862 5.4.2).
    assert reports and reports[0].header.src == bytes(16) and reports[0].header.hop_limit == 1
    assert reports[0].chain.router_alert == 0
    assert reports[0].eth_dst == multicast_mac(icmpv6.ALL_MLDV2_ROUTERS)
    record = icmpv6.parse_mldv2_report(*reports[0].icmp[2:])
    assert record.records[0].address == solicited_node(ll)
    assert record.records[0].record_type == icmpv6.CHANGE_TO_EXCLUDE
    assert stack.ipv6_addresses == [(addr6_to_str(ll) + "/64", "tentative", "link-local")]
    net.run(1.0)                     # RetransTimer after the probe: assigned
    assert stack.link_local == addr6_to_str(ll)
    assert stack.addresses == [addr6_to_str(ll) + "/64"]


def test_link_local_from_the_fqdn_hash_as_iothaddr(net):
    stack = net.stack(f"mac={A6_MAC},fqdn=web.lan")
    net.run(3.0)
    assert stack.link_local == addr6_to_str(hash_address(LINK_LOCAL_PREFIX + bytes(8),
                                                         "web.lan"))


def test_static_addresses_are_listed_with_their_state(stack):
    assert stack.addresses == ["fe80::ff:fe00:a/64", "fd00::1/64"]
    assert sorted(stack.ipv6_addresses) == [("fd00::1/64", "preferred", "manual"),
                                            ("fe80::ff:fe00:a/64", "preferred", "link-local")]
    assert stack.ipv6_configured


def test_a_small_mtu_disables_ipv6(net):
    stack = net.stack("ip=10.0.0.1/24,mtu=1000")
    net.run(3.0)
    assert stack.host.ipv6_disabled and stack.ipv6_addresses == []
    sock = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
    with pytest.raises(OSError) as info:
        sock.sendto(b"x", ("fd00::2", 7))
    assert info.value.errno == errno.ENETUNREACH


# -- ping6 and UDP between two stacks ---------------------------------------------------------

@pytest.mark.parametrize("target", ["fd00::2", "link-local"])
def test_ping6_between_two_stacks(net, target):
    a, b = settled_pair(net, "ip=fd00::1/64", "ip=fd00::2/64")
    address = (addr6_to_str(link_local_of(B6_MAC)), 0, 0, 1) if target == "link-local" \
        else ("fd00::2", 0)
    sock = a.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM, lwsocket.IPPROTO_ICMPV6)
    sock.settimeout(2)
    sock.setsockopt(lwsocket.IPPROTO_IPV6, lwsocket.IPV6_RECVHOPLIMIT, 1)
    sock.connect(address)
    sock.send(echo_request(0, 7, b"abcdef"))
    reply, ancdata, _flags, source = sock.recvmsg(200, 64)
    ident = struct.unpack_from("!H", reply, 4)[0]
    assert reply[0] == icmpv6.TYPE_ECHO_REPLY and reply[6:] == struct.pack("!H", 7) + b"abcdef"
    assert ident != 0                                   # the socket's identifier, not ours
    assert source[0] == address[0] and source[3] == (1 if target == "link-local" else 0)
    assert ancdata == [(lwsocket.IPPROTO_IPV6, lwsocket.IPV6_HOPLIMIT, struct.pack("i", 64))]
    assert b.host.stats["icmpv6_echo_replied"] == 1


def test_echo_to_all_nodes_is_answered_from_a_unicast_address(net, stack, peer):
    peer.send_icmp(multicast_mac(ALL_NODES), ALL_NODES,
                   icmpv6.build_echo(128, 5, 1, b"hello", peer.link_local, ALL_NODES),
                   src=peer.link_local)
    frames = peer.run(0.1)
    peer.answer_ns(frames)
    frames = peer.run(0.1)
    replies = icmp6_of_type(peer.received, icmpv6.TYPE_ECHO_REPLY)
    assert len(replies) == 1
    assert replies[0].header.src == link_local_of(A6_MAC)      # RFC 6724: same scope
    assert replies[0].icmp[2] == (5 << 16) | 1 and replies[0].icmp[3] == b"hello"


def test_udp_over_ipv6_between_sockets(net):
    a, b = settled_pair(net, "ip=fd00::1/64", "ip=fd00::2/64")
    server = b.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
    server.bind(("fd00::2", 9000))
    server.settimeout(1)
    client = a.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
    client.sendto(b"over six", ("fd00::2", 9000))
    data, source = server.recvfrom(100)
    assert data == b"over six"
    assert source == ("fd00::1", client.getsockname()[1], 0, 0)
    server.sendto(b"back", source)
    client.settimeout(1)
    assert client.recvfrom(100) == (b"back", ("fd00::2", 9000, 0, 0))


# -- neighbour discovery ----------------------------------------------------------------------

def test_solicitation_for_our_address_is_answered_with_a_solicited_override_na(net, stack,
                                                                              peer):
    peer.send_ns(US)
    frames = peer.run(0.0)
    adverts = icmp6_of_type(frames, icmpv6.TYPE_NEIGHBOR_ADVERTISEMENT)
    assert len(adverts) == 1
    na = adverts[0]
    assert na.eth_dst == PEER6_MAC and na.header.dst == peer.addr
    assert na.header.src == US and na.header.hop_limit == 255
    assert na.nd == icmpv6.NeighborAdvertisement(US, False, True, True,
                                                 bytes.fromhex("02000000000a"))
    # The solicitation taught the stack the peer's MAC (RFC 4861 7.2.3: STALE).
    assert stack.host.nd.cache.state(peer.addr, net.now) == ndp.STALE


def test_dad_probe_for_an_address_we_hold_is_answered_to_all_nodes(net, stack, peer):
    peer.send_ns(US, src=bytes(16))
    frames = peer.run(0.0)
    na = icmp6_of_type(frames, icmpv6.TYPE_NEIGHBOR_ADVERTISEMENT)[0]
    assert na.header.dst == ALL_NODES and na.eth_dst == multicast_mac(ALL_NODES)
    assert not na.nd.solicited and na.nd.override


def test_address_resolution_then_nud_through_reachable_stale_delay_probe(net, stack, peer):
    sock = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
    sock.sendto(b"one", ("fd00::99", 9))
    frames = peer.run(0.0)
    ns = icmp6_of_type(frames, icmpv6.TYPE_NEIGHBOR_SOLICITATION)
    assert len(ns) == 1 and ns[0].header.dst == solicited_node(peer.addr)
    assert ns[0].nd.source_lladdr == bytes.fromhex("02000000000a")   # RFC 4861 7.2.2
    assert ns[0].header.src == US                     # the source of the waiting packet
    peer.answer_ns(frames)
    frames = peer.run(0.0)
    assert [p.udp[2] for p in ipv6_packets(frames) if p.protocol == 17] == [b"one"]
    cache = stack.host.nd.cache
    assert cache.state(peer.addr, net.now) == ndp.REACHABLE
    net.run(cache.reachable_time + 0.01)
    assert cache.state(peer.addr, net.now) == ndp.STALE
    sock.sendto(b"two", ("fd00::99", 9))            # sent at once through the STALE entry
    frames = peer.run(0.0)
    assert [p.udp[2] for p in ipv6_packets(frames) if p.protocol == 17] == [b"two"]
    assert cache.state(peer.addr, net.now) == ndp.DELAY
    start = net.now
    probes = []
    for _ in range(80):                             # nobody answers the unicast probes
        net.run(0.1)
        for packet in icmp6_of_type(peer.collect(), icmpv6.TYPE_NEIGHBOR_SOLICITATION):
            probes.append((round(net.now - start, 1), packet.header.dst, packet.eth_dst))
    assert probes == [(5.0, peer.addr, PEER6_MAC), (6.0, peer.addr, PEER6_MAC),
                      (7.0, peer.addr, PEER6_MAC)]
    assert cache.state(peer.addr, net.now) is None   # deleted after MAX_UNICAST_SOLICIT


def test_unanswered_resolution_reports_address_unreachable(net, stack, peer):
    sock = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM, lwsocket.IPPROTO_ICMPV6)
    sock.connect(("fd00::77", 0))
    sock.send(echo_request(0, 1))
    sock.settimeout(5)
    with pytest.raises(OSError) as info:
        sock.recv(100)
    assert info.value.errno == errno.EHOSTUNREACH
    solicitations = icmp6_of_type(peer.collect(), icmpv6.TYPE_NEIGHBOR_SOLICITATION)
    assert len([p for p in solicitations if p.nd.target == A("fd00::77")]) == 3


def test_packets_to_a_tentative_address_are_dropped(net, peer):
    stack = net.stack(f"mac={A6_MAC},ip=fd00::1/64")
    assert net.run_until(lambda: ("fd00::1/64", "tentative", "manual") in stack.ipv6_addresses,
                         2.0)
    peer.send_udp(bytes.fromhex("02000000000a"), US, 4000, 9, b"too early")
    net.run(0.0)
    assert drops(stack, "ipv6_to_tentative") == 1


def test_frames_to_groups_we_did_not_join_are_filtered_by_mac(net, stack, peer):
    group = A("ff02::1234")
    peer.send_udp(multicast_mac(group), group, 4000, 9, b"not for us")
    net.run(0.0)
    assert drops(stack, "not_our_mac") >= 1
    assert stack.host.stats.get("drop.ipv6_not_our_group", 0) == 0


# -- ICMPv6 errors ------------------------------------------------------------------------------

def test_closed_port_gets_port_unreachable_and_a_connected_socket_econnrefused(net):
    a, b = settled_pair(net, "ip=fd00::1/64", "ip=fd00::2/64")
    sock = a.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
    sock.connect(("fd00::2", 9999))
    sock.send(b"anyone?")
    sock.settimeout(1)
    with pytest.raises(ConnectionRefusedError):
        sock.recv(10)
    assert b.host.stats["icmpv6_errors_sent"] == 1


def test_port_unreachable_quotes_the_datagram(net, stack, peer):
    peer.send_udp(bytes.fromhex("02000000000a"), US, 4000, 9999, b"x" * 10)
    frames = peer.run(0.0)
    peer.answer_ns(frames)
    frames = peer.run(0.0)
    errors = icmp6_of_type(peer.received, icmpv6.TYPE_DEST_UNREACHABLE)
    assert len(errors) == 1
    icmp_type, code, rest, body = errors[0].icmp
    assert code == icmpv6.CODE_PORT_UNREACHABLE and rest == 0
    quoted = icmpv6.parse_quote(body)
    assert (quoted.src, quoted.dst, quoted.protocol) == (peer.addr, US, 17)
    assert len(body) == 40 + 8 + 10                  # the whole packet: it fits 1232 bytes


def test_unknown_next_header_gets_parameter_problem_code_1(net, stack, peer):
    peer.send_packet(bytes.fromhex("02000000000a"), US, 253, b"\0" * 16)
    frames = peer.run(0.0)
    peer.answer_ns(frames)
    peer.run(0.0)
    problems = icmp6_of_type(peer.received, icmpv6.TYPE_PARAM_PROBLEM)
    assert [(p.icmp[1], p.icmp[2]) for p in problems] == [(1, 6)]     # pointer: Next Header


def test_unknown_option_with_action_10_gets_parameter_problem_code_2(net, stack, peer):
    # Destination Options: an unknown option type 0x80 (action 10), then PadN.
    options = bytes((17, 0, 0x80, 2, 0, 0, 1, 0))
    segment = build_udp6(peer.addr, US, 4000, 9, b"x")
    peer.send_packet(bytes.fromhex("02000000000a"), US, 60, options + segment)
    frames = peer.run(0.0)
    peer.answer_ns(frames)
    peer.run(0.0)
    problems = icmp6_of_type(peer.received, icmpv6.TYPE_PARAM_PROBLEM)
    assert [(p.icmp[1], p.icmp[2]) for p in problems] == [(2, 42)]    # 40 + 2


def test_hop_by_hop_padding_is_walked_to_the_datagram(net, stack, peer):
    sock = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
    sock.bind(("", 9))
    sock.settimeout(0)
    hop_by_hop = bytes((17, 0, 1, 4, 0, 0, 0, 0))         # PadN of 6 bytes
    segment = build_udp6(peer.addr, US, 4000, 9, b"walked")
    peer.send_packet(bytes.fromhex("02000000000a"), US, 0, hop_by_hop + segment)
    net.run(0.0)
    assert sock.recvfrom(100) == (b"walked", ("fd00::99", 4000, 0, 0))


def test_errors_are_rate_limited(net, stack, peer):
    for i in range(80):
        peer.send_udp(bytes.fromhex("02000000000a"), US, 4000, 9999, bytes([i]))
    frames = peer.run(0.0)
    peer.answer_ns(frames)
    peer.run(0.0)
    sent = stack.host.stats["icmpv6_errors_sent"]
    assert sent == 50                                 # the burst (Linux: icmp_msgs_burst)
    assert drops(stack, "icmpv6_rate_limited") == 30


def test_no_port_unreachable_for_a_datagram_to_a_group(net, stack, peer):
    peer.send_udp(multicast_mac(ALL_NODES), ALL_NODES, 4000, 9999, b"x")
    net.run(0.0)
    peer.answer_ns(peer.collect())
    peer.run(0.0)
    assert drops(stack, "udp_no_listener") == 1
    assert icmp6_of_type(peer.received, icmpv6.TYPE_DEST_UNREACHABLE) == []


# -- MLD --------------------------------------------------------------------------------------

def test_general_query_is_answered_with_every_group(net, stack, peer):
    # RFC 3810 5.1: a general query, hop limit 1, link-local source, Router Alert.
    query = icmpv6.build_icmpv6(icmpv6.TYPE_MLD_QUERY, 0, 1000 << 16,
                                bytes(16) + bytes((2, 125, 0, 0)), peer.link_local, ALL_NODES)
    hop_by_hop = bytes((58, 0, 5, 2, 0, 0, 1, 0))
    peer.send_ipv6(multicast_mac(ALL_NODES),
                   build_ipv6(peer.link_local, ALL_NODES, 0, hop_by_hop + query, 1))
    frames = peer.run(1.1)
    reports = icmp6_of_type(frames, icmpv6.TYPE_MLDV2_REPORT)
    assert len(reports) == 1
    groups = {r.address for r in icmpv6.parse_mldv2_report(*reports[0].icmp[2:]).records}
    assert groups == {solicited_node(US), solicited_node(link_local_of(A6_MAC))}
    assert reports[0].header.src == link_local_of(A6_MAC)
