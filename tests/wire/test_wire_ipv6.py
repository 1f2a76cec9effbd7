"""IPv6 (RFC 8200): the fixed header, extension headers, addresses, the pseudo-header sum.

Kernel frames come from ipv6_vectors.py (captured by ipv6_vectors_capture.py); dpkt is the
independent parser.
"""
import ipaddress
import random

import dpkt
import pytest
from hypothesis import given, strategies as st

import ipv6_vectors as v
from lwstack.wire import WireError
from lwstack.wire import ipv6
from lwstack.wire.checksum import ones_sum, pseudo_header_sum6
from lwstack.wire.ethernet import ETHERTYPE_IPV6 as ETHERNET_IPV6
from lwstack.wire.ipv6 import (ALL_MLDV2_ROUTERS, ALL_NODES, ALL_ROUTERS, NH_DSTOPTS,
                               NH_FRAGMENT, NH_HOPOPTS, NH_ICMPV6, NH_NONE, NH_ROUTING, NH_UDP,
                               ParameterProblem, addr6_to_str, build_fragment_header,
                               build_ipv6, build_router_alert_header, parse_addr6,
                               parse_fragment_header, parse_ipv6, walk_extension_headers)

CAPTURED = [value for name, value in sorted(vars(v).items())
            if isinstance(value, bytes) and value[12:14] == b"\x86\xdd"] + v.FRAGMENTS
A = parse_addr6("2001:db8::1")
B = parse_addr6("2001:db8::2")


def a6(text):
    return parse_addr6(text)


# -- The fixed header -------------------------------------------------------------------------

def test_parse_the_kernel_echo_request():
    header = parse_ipv6(v.ECHO_REQUEST, 14)
    assert (header.traffic_class, header.payload_len, header.next_header, header.hop_limit,
            header.src, header.dst) == (0, 24, NH_ICMPV6, 64, v.SLAAC_A, v.ADDR_B)
    assert header.flow_label == int.from_bytes(v.ECHO_REQUEST[14:18], "big") & 0xFFFFF != 0
    assert header.total_len == 64 == len(v.ECHO_REQUEST) - 14
    assert "fd00:6::ff:fe00:1 -> fd00:6::2" in repr(header)


@pytest.mark.parametrize("frame", CAPTURED, ids=range(len(CAPTURED)))
def test_every_captured_frame_agrees_with_dpkt(frame):
    header = parse_ipv6(frame, 14)
    ip = dpkt.ip6.IP6(frame[14:])
    assert (header.traffic_class, header.flow_label, header.payload_len, header.hop_limit,
            header.src, header.dst) == (ip.fc, ip.flow, ip.plen, ip.hlim, ip.src, ip.dst)
    # dpkt's nxt is the upper layer after its own extension-header walk.
    chain = walk_extension_headers(frame, 54, header.next_header, 14 + header.total_len) \
        if header.next_header != 60 else None
    if chain is not None and chain.fragment is None:
        assert chain.protocol == ip.p


def test_ethernet_padding_after_the_payload_is_allowed():
    padded = v.ECHO_REQUEST + bytes(20)
    assert parse_ipv6(padded, 14).payload_len == 24


@pytest.mark.parametrize("length", range(ipv6.HEADER_LEN))
def test_truncated_header(length):
    with pytest.raises(WireError) as info:
        parse_ipv6(v.ECHO_REQUEST[14:14 + length])
    assert info.value.reason == "ipv6_truncated"


def test_payload_longer_than_the_bytes_received():
    with pytest.raises(WireError) as info:
        parse_ipv6(v.ECHO_REQUEST[:-1], 14)
    assert info.value.reason == "ipv6_bad_payload_len"


@pytest.mark.parametrize("version", [0, 4, 5, 7, 15])
def test_bad_version(version):
    packet = bytearray(v.ECHO_REQUEST[14:])
    packet[0] = (version << 4) | (packet[0] & 0x0F)
    with pytest.raises(WireError) as info:
        parse_ipv6(bytes(packet))
    assert info.value.reason == "ipv6_bad_version"


def test_build_reproduces_the_kernel_packets():
    for frame in (v.ECHO_REQUEST, v.ECHO_REPLY, v.DAD_NS, v.RA, v.UDP):
        h = parse_ipv6(frame, 14)
        built = build_ipv6(h.src, h.dst, h.next_header, frame[54:], h.hop_limit,
                           h.traffic_class, h.flow_label)
        assert built == frame[14:]


def test_template_with_the_payload_length_patched_is_the_header():
    h = parse_ipv6(v.UDP, 14)
    template = bytearray(ipv6.ipv6_template(h.src, h.dst, NH_UDP, 64, 0, h.flow_label))
    assert len(template) == 40 and template[4:6] == b"\0\0"
    template[ipv6.PAYLOAD_LEN_OFFSET:ipv6.PAYLOAD_LEN_OFFSET + 2] = \
        h.payload_len.to_bytes(2, "big")
    assert bytes(template) == v.UDP[14:54]


def test_dpkt_reads_what_we_build():
    packet = build_ipv6(A, B, NH_UDP, b"\x12\x34\x00\x07\x00\x0a\x00\x00ab", hop_limit=7,
                        traffic_class=0xB8, flow_label=0x12345)
    ip = dpkt.ip6.IP6(packet)
    assert (ip.v, ip.fc, ip.flow, ip.plen, ip.nxt, ip.hlim, ip.src, ip.dst) == \
        (6, 0xB8, 0x12345, 10, NH_UDP, 7, A, B)


@pytest.mark.parametrize("kwargs", [
    {"src": bytes(4)}, {"dst": bytes(15)}, {"flow_label": 1 << 20}, {"traffic_class": 256},
    {"hop_limit": 256}, {"next_header": -1}, {"payload": bytes(65536)},
])
def test_build_refuses_out_of_range_fields(kwargs):
    args = {"src": A, "dst": B, "next_header": NH_UDP, "payload": b""}
    args.update(kwargs)
    with pytest.raises(ValueError):
        build_ipv6(**args)


# -- Extension headers ------------------------------------------------------------------------

def walk(packet, **kwargs):
    """Walk a bare IPv6 packet (no Ethernet header)."""
    h = parse_ipv6(packet)
    return walk_extension_headers(packet, 40, h.next_header, h.total_len, **kwargs)


def problem(packet):
    """The (code, pointer) of the ParameterProblem that walking ``packet`` must raise."""
    with pytest.raises(ParameterProblem) as info:
        walk(packet)
    return info.value.code, info.value.pointer


def packet_with(headers, next_header, payload=b"", dst=B):
    """An IPv6 packet whose first header is ``next_header`` followed by ``headers`` bytes."""
    return build_ipv6(A, dst, next_header, headers + payload)


def options_header(next_header, options):
    """A Hop-by-Hop or Destination Options header around ``options``, padded to 8n bytes."""
    body = bytes(options)
    pad = -(len(body) + 2) % 8
    if pad == 1:
        body += b"\x00"
    elif pad:
        body += bytes((1, pad - 2)) + bytes(pad - 2)
    return bytes((next_header, (len(body) + 2) // 8 - 1)) + body


def test_no_extension_headers():
    chain = walk_extension_headers(v.ECHO_REQUEST, 54, NH_ICMPV6, len(v.ECHO_REQUEST))
    assert (chain.protocol, chain.offset, chain.nh_field, chain.fragment,
            chain.router_alert) == (NH_ICMPV6, 54, 20, None, None)


def test_the_kernels_mld_report_has_a_router_alert():
    chain = walk_extension_headers(v.MLD_REPORT, 54, NH_HOPOPTS, len(v.MLD_REPORT))
    assert (chain.protocol, chain.offset, chain.nh_field, chain.router_alert) == \
        (NH_ICMPV6, 62, 54, 0)
    assert build_router_alert_header(NH_ICMPV6) == v.MLD_REPORT[54:62]


def test_unknown_option_matches_the_kernels_parameter_problem():
    with pytest.raises(ParameterProblem) as info:
        walk_extension_headers(v.UNKNOWN_OPTION, 54, NH_DSTOPTS, len(v.UNKNOWN_OPTION))
    problem = info.value
    # The kernel's answer: Parameter Problem, code 2, pointer 42 (the option type byte).
    answer = v.PARAM_PROBLEM_OPTION[54:]
    assert (answer[0], answer[1]) == (4, ipv6.PARAM_UNKNOWN_OPTION)
    assert (problem.code, problem.pointer) == (answer[1], int.from_bytes(answer[4:8], "big"))
    assert problem.reason == "ipv6_unknown_option" and problem.to_multicast


def test_unknown_next_header_points_where_the_kernel_points():
    chain = walk_extension_headers(v.UNKNOWN_NEXT_HEADER, 54, 253, len(v.UNKNOWN_NEXT_HEADER))
    assert chain.protocol == 253
    answer = v.PARAM_PROBLEM_NEXT_HEADER[54:]
    assert (answer[0], answer[1]) == (4, ipv6.PARAM_UNKNOWN_NEXT_HEADER)
    assert chain.nh_field - 14 == int.from_bytes(answer[4:8], "big") == 6


def test_the_kernels_fragments_and_their_reassembly():
    data = []
    for frame, (offset, more) in zip(v.FRAGMENTS, [(0, True), (1448, True), (2896, False)]):
        h = parse_ipv6(frame, 14)
        chain = walk_extension_headers(frame, 54, h.next_header, 14 + h.total_len)
        frag = chain.fragment
        assert (chain.protocol, chain.offset, chain.nh_field) == (NH_UDP, 62, 20)
        assert frag == ipv6.FragmentHeader(NH_UDP, offset, more, 0x2B4E4F30, 54)
        assert (frag.data_offset, frag.is_atomic) == (62, False)
        assert parse_fragment_header(frame, 54) == frag
        assert build_fragment_header(NH_UDP, offset, more, 0x2B4E4F30) == frame[54:62]
        data.append(frame[62:14 + h.total_len])
    udp = b"".join(data)
    assert udp == v.UDP_3000
    # The kernel's UDP checksum covers the reassembled datagram (RFC 8200 section 8.1).
    assert ones_sum(udp, pseudo_header_sum6(v.SLAAC_A, v.ADDR_B, NH_UDP, len(udp))) == 0xFFFF


@pytest.mark.parametrize("kind, action", [(0x1E, 0), (0x5E, 1), (0x9E, 2), (0xDE, 3)])
@pytest.mark.parametrize("next_header", [NH_HOPOPTS, NH_DSTOPTS])
def test_unknown_option_actions(kind, action, next_header):
    # RFC 8200 section 4.2: 00 skip, 01 discard, 10 discard + ICMP, 11 discard + ICMP unless
    # the destination was multicast.
    header = options_header(NH_ICMPV6, [1, 0, kind, 2, 0xAB, 0xCD])     # PadN(0), then it
    packet = packet_with(header, next_header, b"payload!")
    if action == 0:
        chain = walk(packet)
        assert (chain.protocol, chain.offset) == (NH_ICMPV6, 48)
        return
    with pytest.raises(WireError) as info:
        walk(packet)
    assert info.value.reason == "ipv6_unknown_option"
    if action == 1:
        assert not isinstance(info.value, ParameterProblem)
    else:
        assert (info.value.code, info.value.pointer) == (2, 44)
        assert info.value.to_multicast == (action == 2)


def test_router_alert_with_other_options():
    header = options_header(NH_UDP, [0x1E, 1, 0, 5, 2, 0x12, 0x34])
    chain = walk(packet_with(header, NH_HOPOPTS))
    assert (chain.protocol, chain.router_alert) == (NH_UDP, 0x1234)
    # In a Destination Options header it is not a router alert.
    assert walk(packet_with(header, NH_DSTOPTS)).router_alert is None


def test_hop_by_hop_only_first():
    # RFC 8200 section 4: Next Header 0 in any header but the IPv6 header is answered with
    # code 1 pointing at that Next Header field.
    hbh = options_header(NH_ICMPV6, [])
    dst = options_header(NH_HOPOPTS, [])
    with pytest.raises(ParameterProblem) as info:
        walk(packet_with(dst + hbh, NH_DSTOPTS))
    assert (info.value.code, info.value.pointer, info.value.to_multicast) == (1, 40, False)


def test_chain_of_headers():
    hbh = options_header(NH_DSTOPTS, [5, 2, 0, 0])
    dst = options_header(NH_ROUTING, [])
    routing = bytes((NH_FRAGMENT, 0, 4, 0)) + bytes(4)            # type 4, segments left 0
    atomic = build_fragment_header(NH_DSTOPTS, 0, False, 99)      # RFC 6946: walk through it
    dst2 = options_header(NH_NONE, [0x1E, 4, 1, 2, 3, 4])
    packet = packet_with(hbh + dst + routing + atomic + dst2, NH_HOPOPTS)
    chain = walk(packet)
    assert (chain.protocol, chain.offset, chain.nh_field, chain.fragment, chain.router_alert) \
        == (NH_NONE, 40 + 8 * 5, 40 + 8 * 4, None, 0)


def test_routing_header_with_segments_left():
    # RFC 8200 section 4.4: unrecognized type (a host processes none) with segments left:
    # code 0 pointing at the Routing Type field.
    routing = bytes((NH_UDP, 2, 0, 1)) + bytes(4) + bytes(16)
    assert problem(packet_with(routing, NH_ROUTING)) == (0, 42)
    assert walk(packet_with(bytes((NH_UDP, 2, 0, 0)) + bytes(20), NH_ROUTING)).offset == 64


def test_fragment_length_not_a_multiple_of_8():
    # RFC 8200 section 4.5: code 0, pointer to the Payload Length field.
    frag = build_fragment_header(NH_UDP, 8, True, 1)
    assert problem(packet_with(frag, NH_FRAGMENT, bytes(12))) == (0, 4)
    assert walk(packet_with(frag, NH_FRAGMENT, bytes(16))).fragment.offset == 8
    # The last fragment may have any length.
    last = build_fragment_header(NH_UDP, 8, False, 1)
    assert walk(packet_with(last, NH_FRAGMENT, bytes(13))).fragment.more is False


def test_fragment_beyond_65535():
    # RFC 8200 section 4.5: code 0, pointer to the Fragment Offset field.
    frag = build_fragment_header(NH_UDP, 65528, False, 1)
    assert problem(packet_with(frag, NH_FRAGMENT, bytes(8))) == (0, 42)
    assert walk(packet_with(frag, NH_FRAGMENT, bytes(7))).fragment.offset == 65528


def test_first_fragment_without_the_whole_header_chain():
    # RFC 8200 section 4.5 / RFC 7112: code 3, pointer 0.
    frag = build_fragment_header(NH_DSTOPTS, 0, True, 1)
    cut_options = bytes((NH_UDP, 1)) + bytes(6)          # says 16 bytes, 8 present
    assert problem(packet_with(frag, NH_FRAGMENT, cut_options)) == (3, 0)
    whole = options_header(NH_UDP, [])
    chain = walk(packet_with(frag, NH_FRAGMENT, whole + bytes(8)))
    assert (chain.protocol, chain.offset) == (NH_DSTOPTS, 48)
    # A later fragment is not judged on that.
    later = build_fragment_header(NH_DSTOPTS, 8, True, 1)
    assert walk(packet_with(later, NH_FRAGMENT, cut_options)).fragment.offset == 8


def test_the_walk_is_bounded():
    many = b"".join(options_header(NH_DSTOPTS, []) for _ in range(ipv6.MAX_EXTENSION_HEADERS))
    last = options_header(NH_UDP, [])
    assert walk(packet_with(many[:-8] + last, NH_DSTOPTS)).offset == \
        40 + 8 * ipv6.MAX_EXTENSION_HEADERS
    with pytest.raises(WireError) as info:
        walk(packet_with(many + last, NH_DSTOPTS))
    assert info.value.reason == "ipv6_too_many_headers"
    options = [0x1E, 0] * (ipv6.MAX_OPTIONS + 1)
    with pytest.raises(WireError) as info:
        walk(packet_with(options_header(NH_UDP, options), NH_DSTOPTS))
    assert info.value.reason == "ipv6_too_many_options"
    assert walk(packet_with(options_header(NH_UDP, options[2:]), NH_DSTOPTS)).protocol == 17
    with pytest.raises(WireError) as info:
        walk(packet_with(options_header(NH_UDP, [1, 6] + [0] * 6), NH_DSTOPTS))
    assert info.value.reason == "ipv6_excess_padding"
    assert walk(packet_with(options_header(NH_UDP, [0] * 6), NH_DSTOPTS)).protocol == 17


@pytest.mark.parametrize("next_header, headers, reason", [
    (NH_DSTOPTS, bytes((NH_UDP,)), "ipv6_truncated_header"),
    (NH_DSTOPTS, bytes((NH_UDP, 1)) + bytes(6), "ipv6_truncated_header"),
    (NH_ROUTING, bytes((NH_UDP, 0, 0)), "ipv6_truncated_header"),
    (NH_FRAGMENT, bytes((NH_UDP, 0, 0, 0, 0, 0, 0)), "ipv6_truncated_header"),
    (NH_DSTOPTS, bytes((NH_UDP, 0, 0x1E, 5, 0, 0, 0, 0)), "ipv6_bad_option_len"),
    (NH_DSTOPTS, bytes((NH_UDP, 0, 0, 0, 0, 0, 0, 0x1E)), "ipv6_bad_option_len"),
])
def test_truncated_extension_headers(next_header, headers, reason):
    with pytest.raises(WireError) as info:
        walk(packet_with(headers, next_header))
    assert info.value.reason == reason


def test_fragment_header_helpers():
    assert build_fragment_header(NH_UDP, 65528, True, 0x1_0000_0001) == \
        bytes((17, 0, 0xFF, 0xF9, 0, 0, 0, 1))
    header = parse_fragment_header(bytes((6, 0xFF, 0x00, 0x0E, 1, 2, 3, 4)), 0)
    # Reserved bits (the 8-bit field and the 2 bits before M) are ignored.
    assert (header.next_header, header.offset, header.more, header.ident) == \
        (6, 8, False, 0x01020304)
    with pytest.raises(ValueError):
        build_fragment_header(NH_UDP, 12, True, 1)
    with pytest.raises(ValueError):
        build_fragment_header(NH_UDP, 65536, True, 1)
    with pytest.raises(WireError):
        parse_fragment_header(bytes(7), 0)


# -- Addresses --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, canonical", [
    # RFC 5952 section 4: lower case, leading zeros dropped, the longest run of zeros
    # compressed (the first if two are as long), a single zero field not compressed.
    ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
    ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
    ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
    ("0:0:0:0:0:0:0:0", "::"),
    ("::1", "::1"),
    ("FE80::0200:00FF:FE00:0001", "fe80::200:ff:fe00:1"),
    ("64:ff9b::10.1.2.3", "64:ff9b::a01:203"),
])
def test_address_text(text, canonical):
    addr = parse_addr6(text)
    assert len(addr) == 16 and addr == ipaddress.IPv6Address(text).packed
    assert addr6_to_str(addr) == canonical
    assert addr6_to_str(memoryview(addr)) == canonical


@pytest.mark.parametrize("text", ["", "1.2.3.4", "fe80::1%eth0", ":::", "1:2:3:4:5:6:7:8:9",
                                  "12345::", "g::", " ::1", None, b"::1"])
def test_bad_address_text(text):
    with pytest.raises(ValueError) as info:
        parse_addr6(text)
    assert "invalid IPv6 address" in str(info.value)


def test_prefix_text():
    assert ipv6.parse_prefix6("fd00::1/64") == (a6("fd00::1"), 64)
    assert ipv6.parse_prefix6("::/0") == (bytes(16), 0)
    for bad in ["fd00::", "fd00::/129", "fd00::/-1", "fd00::/six", "fd00::/", None]:
        with pytest.raises(ValueError):
            ipv6.parse_prefix6(bad)


def test_scope_predicates():
    assert ipv6.is_unspecified(ipv6.UNSPECIFIED) and not ipv6.is_unspecified(ipv6.LOOPBACK)
    assert ipv6.is_loopback(a6("::1")) and not ipv6.is_loopback(a6("::2"))
    assert ipv6.is_multicast(ALL_NODES) and not ipv6.is_multicast(a6("fe80::1"))
    for text, link_local in [("fe80::1", True), ("febf:ffff::1", True), ("fec0::1", False),
                             ("fe7f::1", False), ("ff02::1", False)]:
        assert ipv6.is_link_local(a6(text)) == link_local, text
    assert ipv6.is_unique_local(a6("fd00::1")) and ipv6.is_unique_local(a6("fc00::1"))
    assert not ipv6.is_unique_local(a6("fe00::1"))
    assert ipv6.is_ipv4_mapped(a6("::ffff:10.0.0.1")) and not ipv6.is_ipv4_mapped(a6("::1"))
    assert ipv6.multicast_scope(ALL_NODES) == ipv6.SCOPE_LINK_LOCAL
    assert ipv6.multicast_scope(a6("ff05::2")) == ipv6.SCOPE_SITE_LOCAL
    assert ipv6.multicast_scope(a6("ff1e::1")) == ipv6.SCOPE_GLOBAL
    # RFC 6724 section 3.1.
    assert [ipv6.addr_scope(a6(t)) for t in ("fe80::1", "::1", "fd00::1", "2001:db8::1",
                                             "ff02::1", "ff05::1", "ff01::1")] == \
        [2, 2, 14, 14, 2, 5, 1]


def test_constants():
    assert [addr6_to_str(x) for x in (ALL_NODES, ALL_ROUTERS, ALL_MLDV2_ROUTERS)] == \
        ["ff02::1", "ff02::2", "ff02::16"]
    assert ipv6.ETHERTYPE_IPV6 == ETHERNET_IPV6 == 0x86DD


def test_solicited_node_and_multicast_mac_as_the_kernel_uses_them():
    # The kernel's DAD probe for fe80::ff:fe00:1 goes to ff02::1:ff00:1, MAC 33:33:ff:00:00:01
    # (RFC 4291 section 2.7.1, RFC 2464 section 7).
    group = ipv6.solicited_node(v.LL_A)
    assert addr6_to_str(group) == "ff02::1:ff00:1" == addr6_to_str(v.DAD_NS[38:54])
    assert ipv6.multicast_mac(group) == v.DAD_NS[0:6] == bytes.fromhex("3333ff000001")
    assert ipv6.multicast_mac(ALL_MLDV2_ROUTERS) == v.MLD_REPORT[0:6]
    assert ipv6.multicast_mac(ALL_ROUTERS) == v.RS[0:6]
    assert ipv6.solicited_node(a6("2001:db8::abcd:1234:5678")) == a6("ff02::1:ff34:5678")
    assert ipv6.is_solicited_node(group) and not ipv6.is_solicited_node(ALL_NODES)


def test_prefix_arithmetic():
    addr = a6("2001:db8:1234:5678:9abc::1")
    assert ipv6.prefix_bytes(addr, 48) == a6("2001:db8:1234::")
    assert ipv6.prefix_bytes(addr, 0) == bytes(16) and ipv6.prefix_bytes(addr, 128) == addr
    assert ipv6.prefix_bytes(addr, 61) == a6("2001:db8:1234:5678::")
    assert ipv6.in_prefix(addr, a6("2001:db8:1234::"), 48)
    assert not ipv6.in_prefix(addr, a6("2001:db8:1235::"), 48)
    assert ipv6.in_prefix(addr, bytes(16), 0)
    assert ipv6.common_prefix_len(addr, addr) == 128
    assert ipv6.common_prefix_len(a6("2001:db8::1"), a6("2001:db8::3")) == 126
    assert ipv6.common_prefix_len(a6("::"), a6("8000::")) == 0
    with pytest.raises(ValueError):
        ipv6.prefix_bytes(addr, 129)


# -- The IPv6 pseudo-header sum ---------------------------------------------------------------

def naive_pseudo_sum(src, dst, next_header, length):
    """RFC 8200 section 8.1's pseudo-header as bytes, summed by 16-bit words."""
    pseudo = bytes(src) + bytes(dst) + length.to_bytes(4, "big") + bytes(3) + \
        bytes((next_header,))
    total = sum((pseudo[i] << 8) | pseudo[i + 1] for i in range(0, len(pseudo), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_pseudo_header_sum_verifies_the_kernels_udp_checksum():
    udp = v.UDP[54:]
    assert ones_sum(udp, pseudo_header_sum6(v.SLAAC_A, v.ADDR_B, NH_UDP, len(udp))) == 0xFFFF


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.integers(0, 255), st.integers(0, 0xFFFFFFFF), st.binary(max_size=64))
def test_pseudo_header_sum_against_the_naive_sum(src, dst, next_header, length, data):
    def fold(x):
        while x >> 16:
            x = (x & 0xFFFF) + (x >> 16)
        return x
    ours = pseudo_header_sum6(src, dst, next_header, length)
    naive = naive_pseudo_sum(src, dst, next_header, length)
    # Equal as one's complement numbers (0 and 0xFFFF are both zero), and as the start of a
    # checksum, which is how callers use it.
    assert fold(ours) % 0xFFFF == naive % 0xFFFF
    assert ones_sum(data, ours) % 0xFFFF == ones_sum(data, naive) % 0xFFFF


def test_pseudo_header_sum_refuses_ipv4_addresses():
    with pytest.raises(ValueError):
        pseudo_header_sum6(bytes(4), bytes(16), 17, 8)


def test_random_packets_round_trip_through_dpkt():
    rng = random.Random(6)
    for _ in range(200):
        src, dst = rng.randbytes(16), rng.randbytes(16)
        payload = rng.randbytes(rng.randrange(0, 200))
        packet = build_ipv6(src, dst, NH_NONE, payload, rng.randrange(256), rng.randrange(256),
                            rng.randrange(1 << 20))
        ip = dpkt.ip6.IP6(packet)
        h = parse_ipv6(packet)
        assert (h.src, h.dst, h.hop_limit, h.traffic_class, h.flow_label, h.payload_len) == \
            (ip.src, ip.dst, ip.hlim, ip.fc, ip.flow, len(payload))
        assert walk(packet).protocol == NH_NONE
