"""ICMPv6 (RFC 4443), Neighbor Discovery (RFC 4861, RFC 8106) and MLDv2 (RFC 3810).

Kernel and radvd messages come from ipv6_vectors.py (captured by ipv6_vectors_capture.py);
where a builder reproduces one byte for byte, the kernel vouches for our checksum and layout.
dpkt is the independent parser for echo and errors (it knows no ND or MLD).
"""
import struct

import dpkt
import pytest

import ipv6_vectors as v
from lwstack.wire import WireError
from lwstack.wire import icmpv6
from lwstack.wire.ethernet import ETHERTYPE_IPV6, build_ethernet
from lwstack.wire.icmpv6 import (Dnssl, MldQuery, Mldv2Report, MulticastRecord,
                                 NeighborAdvertisement, NeighborSolicitation, PrefixInfo,
                                 Rdnss, Redirect, RouterAdvertisement, RouterSolicitation,
                                 build_echo, build_error, build_icmpv6, check_nd, parse_icmpv6,
                                 parse_nd, parse_nd_message)
from lwstack.wire.ipv6 import (ALL_MLDV2_ROUTERS, ALL_NODES, ALL_ROUTERS, NH_HOPOPTS,
                               NH_ICMPV6, UNSPECIFIED, build_ipv6, build_router_alert_header,
                               multicast_mac, parse_addr6, parse_ipv6, solicited_node,
                               walk_extension_headers)


def a6(text):
    return parse_addr6(text)


def icmp_of(frame):
    """(message, src, dst, hop_limit) of a captured frame's ICMPv6 message."""
    h = parse_ipv6(frame, 14)
    chain = walk_extension_headers(frame, 54, h.next_header, 14 + h.total_len)
    assert chain.protocol == NH_ICMPV6
    return frame[chain.offset:14 + h.total_len], h.src, h.dst, h.hop_limit


def nd_of(frame):
    message, src, dst, hop_limit = icmp_of(frame)
    return parse_nd(message, src, dst, hop_limit)


# -- Common header, echo ----------------------------------------------------------------------

def test_parse_the_kernels_echo():
    message, src, dst, _ = icmp_of(v.ECHO_REQUEST)
    t, code, rest, body = parse_icmpv6(message, src, dst)
    # ping -s 16: the data is all timestamp (iputils puts a struct timeval first).
    assert (t, code, rest & 0xFFFF, len(body)) == (icmpv6.TYPE_ECHO_REQUEST, 0, 1, 16)
    reply, rsrc, rdst, _ = icmp_of(v.ECHO_REPLY)
    assert parse_icmpv6(reply, rsrc, rdst) == (icmpv6.TYPE_ECHO_REPLY, 0, rest, body)


def test_build_echo_reproduces_the_kernels_reply():
    message, src, dst, _ = icmp_of(v.ECHO_REQUEST)
    _, _, rest, body = parse_icmpv6(message, src, dst)
    reply = build_echo(icmpv6.TYPE_ECHO_REPLY, rest >> 16, rest & 0xFFFF, body, dst, src)
    assert reply == icmp_of(v.ECHO_REPLY)[0]
    assert build_echo(icmpv6.TYPE_ECHO_REQUEST, rest >> 16, rest & 0xFFFF, body, src, dst) == \
        message


def test_the_kernel_answered_our_echo():
    # OUR_ECHO was built by lwstack.wire; the kernel checked its checksum and replied.
    ours, src, dst, _ = icmp_of(v.OUR_ECHO)
    assert ours == build_echo(128, 0x1234, 1, b"lwstack icmpv6 vector", v.ADDR_A, v.ADDR_B)
    assert icmp_of(v.KERNEL_REPLY_TO_OUR_ECHO)[0] == \
        build_echo(129, 0x1234, 1, b"lwstack icmpv6 vector", v.ADDR_B, v.ADDR_A)


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 7, 8, 20])
def test_bad_checksum(index):
    message, src, dst, _ = icmp_of(v.ECHO_REQUEST)
    broken = bytearray(message)
    broken[index] ^= 0x40
    with pytest.raises(WireError) as info:
        parse_icmpv6(bytes(broken), src, dst)
    assert info.value.reason == "icmpv6_bad_checksum"


def test_the_pseudo_header_is_in_the_checksum():
    message, src, dst, _ = icmp_of(v.ECHO_REQUEST)
    for other_src, other_dst in [(a6("fd00:6::3"), dst), (src, a6("fd00:6::3"))]:
        with pytest.raises(WireError):
            parse_icmpv6(message, other_src, other_dst)


@pytest.mark.parametrize("length", range(icmpv6.HEADER_LEN))
def test_truncated(length):
    message, src, dst, _ = icmp_of(v.ECHO_REQUEST)
    with pytest.raises(WireError) as info:
        parse_icmpv6(message[:length], src, dst)
    assert info.value.reason == "icmpv6_truncated"


@pytest.mark.parametrize("payload", [b"", b"x", b"odd length!", bytes(range(256)) * 5])
def test_dpkt_verifies_our_echo_checksum(payload):
    src, dst = a6("2001:db8::1"), a6("2001:db8::2")
    message = build_echo(128, 0xBEEF, 0x0102, payload, src, dst)
    icmp = dpkt.icmp6.ICMP6(message)
    assert (icmp.type, icmp.code, icmp.data.id, icmp.data.seq, icmp.data.data) == \
        (128, 0, 0xBEEF, 0x0102, payload)
    sent = icmp.sum
    icmp.sum = 0
    ip = dpkt.ip6.IP6(src=src, dst=dst, nxt=58, hlim=64, data=icmp, plen=len(message))
    bytes(ip)                   # dpkt fills in a zero checksum
    assert icmp.sum == sent


def test_we_read_what_dpkt_builds():
    src, dst = a6("2001:db8::1"), a6("2001:db8::2")
    icmp = dpkt.icmp6.ICMP6(type=129, code=0, data=dpkt.icmp6.ICMP6.Echo(id=7, seq=9,
                                                                          data=b"abc"))
    ip = dpkt.ip6.IP6(src=src, dst=dst, nxt=58, hlim=64, data=icmp, plen=len(bytes(icmp)))
    packet = bytes(ip)
    assert parse_icmpv6(packet[40:], src, dst) == (129, 0, (7 << 16) | 9, b"abc")


def test_is_error():
    assert icmpv6.is_error(1) and icmpv6.is_error(127)
    assert not icmpv6.is_error(128) and not icmpv6.is_error(255)


# -- Errors -----------------------------------------------------------------------------------

def test_port_unreachable_as_the_kernel_builds_it():
    message, src, dst, _ = icmp_of(v.PORT_UNREACHABLE)
    assert build_error(icmpv6.TYPE_DEST_UNREACHABLE, icmpv6.CODE_PORT_UNREACHABLE,
                       v.UDP[14:], src, dst) == message


def test_an_error_quotes_1232_bytes_at_most():
    # RFC 4443 section 2.4(c): the error must not exceed the minimum MTU, 1280 bytes.
    message, src, dst, _ = icmp_of(v.PORT_UNREACHABLE_REASSEMBLED)
    reassembled = build_ipv6(v.SLAAC_A, v.ADDR_B, 17, v.UDP_3000, 64, 0, 0x0B3450)
    assert len(reassembled) == 3048
    error = build_error(1, 4, reassembled, src, dst)
    assert error == message and len(error) == 1280 - 40


def test_packet_too_big_as_the_kernel_builds_it():
    message, src, dst, _ = icmp_of(v.PACKET_TOO_BIG)
    t, code, mtu, quote = parse_icmpv6(message, src, dst)
    assert (t, code, mtu, len(quote)) == (icmpv6.TYPE_PACKET_TOO_BIG, 0, 1280, 1232)
    # The 1400-byte ping: IPv6 header, ICMP header, timestamp, then iputils' pattern.
    ping = bytes(quote[:64]) + v.pattern(16, 1400)
    assert len(ping) == 1448
    assert build_error(icmpv6.TYPE_PACKET_TOO_BIG, 0, ping, src, dst, rest=1280) == message
    icmp = dpkt.icmp6.ICMP6(message)
    assert isinstance(icmp.data, dpkt.icmp6.ICMP6.TooBig) and icmp.data.mtu == 1280


def test_time_exceeded_as_the_kernel_builds_it():
    message, src, dst, _ = icmp_of(v.TIME_EXCEEDED)
    assert build_error(icmpv6.TYPE_TIME_EXCEEDED, icmpv6.CODE_HOP_LIMIT_EXCEEDED,
                       v.HOP_LIMIT_1_ECHO[14:], src, dst) == message


def test_parameter_problems_from_our_walk_are_the_kernels():
    # The walk's code and pointer, put into build_error, give the kernel's message exactly.
    from lwstack.wire.ipv6 import ParameterProblem
    with pytest.raises(ParameterProblem) as info:
        walk_extension_headers(v.UNKNOWN_OPTION, 54, 60, len(v.UNKNOWN_OPTION))
    message, src, dst, _ = icmp_of(v.PARAM_PROBLEM_OPTION)
    assert build_error(icmpv6.TYPE_PARAM_PROBLEM, info.value.code, v.UNKNOWN_OPTION[14:],
                       src, dst, rest=info.value.pointer) == message
    chain = walk_extension_headers(v.UNKNOWN_NEXT_HEADER, 54, 253, len(v.UNKNOWN_NEXT_HEADER))
    message, src, dst, _ = icmp_of(v.PARAM_PROBLEM_NEXT_HEADER)
    assert build_error(icmpv6.TYPE_PARAM_PROBLEM, 1, v.UNKNOWN_NEXT_HEADER[14:], src, dst,
                       rest=chain.nh_field - 14) == message
    icmp = dpkt.icmp6.ICMP6(message)
    assert isinstance(icmp.data, dpkt.icmp6.ICMP6.ParamProb) and icmp.data.ptr == 6


def test_parse_quote_of_the_kernels_errors():
    def quote(frame):
        message, src, dst, _ = icmp_of(frame)
        return icmpv6.parse_quote(parse_icmpv6(message, src, dst)[3])
    q = quote(v.PORT_UNREACHABLE)
    assert (q.src, q.dst, q.protocol, q.payload) == (v.SLAAC_A, v.ADDR_B, 17, v.UDP[54:])
    q = quote(v.PACKET_TOO_BIG)
    assert (q.dst, q.protocol, len(q.payload)) == (v.ADDR_C, 58, 1232 - 40)
    q = quote(v.PARAM_PROBLEM_OPTION)           # the Destination Options header is skipped
    assert (q.protocol, q.payload[:4]) == (58, bytes((128, 0)) + v.UNKNOWN_OPTION[64:66])
    q = quote(v.PARAM_PROBLEM_NEXT_HEADER)
    assert (q.protocol, q.payload) == (253, b"experimental protocol 253")


def test_parse_quote_of_fragments():
    first = v.FRAGMENTS[0][14:14 + 200]
    q = icmpv6.parse_quote(first)
    assert (q.protocol, q.payload[:8]) == (17, v.UDP_3000[:8])
    later = icmpv6.parse_quote(v.FRAGMENTS[1][14:14 + 100])
    assert (later.src, later.dst, later.protocol, later.payload) == \
        (v.SLAAC_A, v.ADDR_B, None, b"")


@pytest.mark.parametrize("quote", [
    b"", bytes(39), b"\x40" + bytes(39),                           # short, IPv4
    v.UNKNOWN_OPTION[14:14 + 45],                                   # cut in the options
    v.FRAGMENTS[0][14:14 + 44],                                     # cut in the fragment hdr
])
def test_parse_quote_refuses(quote):
    with pytest.raises(WireError) as info:
        icmpv6.parse_quote(quote)
    assert info.value.reason == "icmpv6_bad_quote"


def test_parse_quote_refuses_endless_headers():
    header = bytes(40)
    header = b"\x60" + header[1:6] + bytes((60,)) + header[7:]
    chain = bytes((60, 0)) + bytes(6)
    with pytest.raises(WireError):
        icmpv6.parse_quote(header + chain * 9)


@pytest.mark.parametrize("kind, src, dst, link_multicast, is_err, to_mc, allowed", [
    (1, "fd00::1", "fd00::2", False, False, False, True),
    (1, "fd00::1", "fd00::2", False, True, False, False),     # e.1, e.2
    (1, "::", "fd00::2", False, False, False, False),         # e.6
    (1, "ff02::1", "fd00::2", False, False, False, False),    # e.6
    (1, "fd00::1", "ff02::1", False, False, False, False),    # e.3
    (1, "fd00::1", "fd00::2", True, False, False, False),     # e.4, e.5
    (2, "fd00::1", "ff02::1", False, False, False, True),     # e.3's exception: Too Big
    (2, "fd00::1", "fd00::2", True, False, False, True),
    (4, "fd00::1", "ff02::1", False, False, True, True),      # option with action 10
    (4, "fd00::1", "ff02::1", False, False, False, False),    # action 11, or other codes
    (2, "::", "fd00::2", False, False, False, False),
])
def test_may_send_error(kind, src, dst, link_multicast, is_err, to_mc, allowed):
    # RFC 4443 section 2.4(e).
    assert icmpv6.may_send_error(kind, a6(src), a6(dst), link_multicast, is_err, to_mc) == \
        allowed


# -- Neighbor Discovery: the kernel's and radvd's messages ------------------------------------

def test_dad_probe():
    ns = nd_of(v.DAD_NS)
    assert ns.target == v.LL_A and ns.source_lladdr is None and len(ns.nonce) == 6
    # The whole frame again, from our builders: Ethernet to 33:33:ff:00:00:01, IPv6 from ::
    # to the solicited-node group with hop limit 255, the NS with its nonce.
    group = solicited_node(v.LL_A)
    packet = build_ipv6(UNSPECIFIED, group, NH_ICMPV6, ns.emit(UNSPECIFIED, group), 255)
    assert build_ethernet(multicast_mac(group), v.MAC_A, ETHERTYPE_IPV6, packet) == v.DAD_NS


def test_router_solicitation():
    rs = nd_of(v.RS)
    assert rs == RouterSolicitation(v.MAC_A)
    assert rs.emit(v.LL_A, ALL_ROUTERS) == icmp_of(v.RS)[0]


def test_router_advertisement_from_radvd():
    ra = nd_of(v.RA)
    assert ra == RouterAdvertisement(
        hop_limit=64, managed=False, other=True, router_lifetime=1800, reachable_time=30000,
        retrans_timer=1000, preference=1, source_lladdr=v.MAC_B, mtu=1500,
        prefixes=(PrefixInfo(a6("fd00:6::"), 64, True, True, 86400, 14400),
                  PrefixInfo(a6("fd00:8::"), 64, True, False, 7200, 3600)),
        rdnss=(Rdnss(600, (a6("fd00:6::53"), a6("fd00:6::54"))),),
        dnssl=(Dnssl(600, ("lan.example", "example.org")),))
    assert ra.emit(v.LL_B, ALL_NODES) == icmp_of(v.RA)[0]


def test_radvds_farewell():
    ra = nd_of(v.RA_FINAL)
    assert ra.router_lifetime == 0
    assert ra.rdnss[0].lifetime == 0 and ra.dnssl[0].lifetime == 0
    assert ra.emit(v.LL_B, ALL_NODES) == icmp_of(v.RA_FINAL)[0]


@pytest.mark.parametrize("frame, record", [
    (v.NS_RESOLUTION, NeighborSolicitation(v.ADDR_B, v.MAC_A)),
    (v.NA_ROUTER, NeighborAdvertisement(v.ADDR_B, True, True, True, v.MAC_B)),
    (v.NS_FROM_ROUTER, NeighborSolicitation(v.ADDR_A, v.MAC_B)),
    (v.NA_SOLICITED, NeighborAdvertisement(v.ADDR_A, False, True, True, v.MAC_A)),
    (v.NUD_NS, NeighborSolicitation(v.SLAAC_A, v.MAC_B)),
    (v.NUD_NA, NeighborAdvertisement(v.SLAAC_A, False, True, False, None)),
    (v.NS_LINK_LOCAL, NeighborSolicitation(v.LL_B, v.MAC_A)),
    (v.NA_LINK_LOCAL_ROUTER, NeighborAdvertisement(v.LL_B, True, True, False, None)),
])
def test_neighbor_messages(frame, record):
    message, src, dst, _ = icmp_of(frame)
    assert nd_of(frame) == record
    assert record.emit(src, dst) == message


# -- Neighbor Discovery: validity (RFC 4861 sections 6.1, 7.1, 8.1) ---------------------------

def test_hop_limit_must_be_255():
    message, src, dst, _ = icmp_of(v.NA_ROUTER)
    for hop_limit in (0, 1, 64, 254):
        with pytest.raises(WireError) as info:
            parse_nd(message, src, dst, hop_limit)
        assert info.value.reason == "nd_bad_hop_limit"


def test_code_must_be_0():
    message, src, dst, _ = icmp_of(v.NS_RESOLUTION)
    t, _, rest, body = parse_icmpv6(message, src, dst)
    with pytest.raises(WireError) as info:
        parse_nd(build_icmpv6(t, 1, rest, body, src, dst), src, dst, 255)
    assert info.value.reason == "nd_bad_code"


@pytest.mark.parametrize("record, src, dst, reason", [
    (RouterAdvertisement(router_lifetime=600), "fd00::1", "ff02::1", "nd_src_not_link_local"),
    (RouterAdvertisement(), "::", "ff02::1", "nd_src_not_link_local"),
    (RouterSolicitation(b"\x02" * 6), "::", "ff02::2", "nd_lladdr_from_unspecified"),
    (NeighborSolicitation(a6("fe80::1"), b"\x02" * 6), "::", "ff02::1:ff00:1",
     "nd_lladdr_from_unspecified"),
    (NeighborSolicitation(a6("fe80::1")), "::", "fe80::1", "nd_dad_not_to_solicited_node"),
    (NeighborSolicitation(a6("ff02::1")), "fe80::2", "ff02::1", "nd_multicast_target"),
    (NeighborAdvertisement(a6("ff02::1")), "fe80::2", "fe80::1", "nd_multicast_target"),
    (NeighborAdvertisement(a6("fe80::2"), solicited=True), "fe80::2", "ff02::1",
     "nd_solicited_to_multicast"),
    (Redirect(a6("fe80::9"), a6("2001:db8::5")), "fd00::1", "fe80::1",
     "nd_src_not_link_local"),
    (Redirect(a6("fe80::9"), a6("ff0e::5")), "fe80::2", "fe80::1",
     "nd_redirect_multicast_destination"),
    (Redirect(a6("2001:db8::9"), a6("2001:db8::5")), "fe80::2", "fe80::1",
     "nd_redirect_bad_target"),
])
def test_invalid_nd_messages(record, src, dst, reason):
    src, dst = a6(src), a6(dst)
    with pytest.raises(WireError) as info:
        parse_nd(record.emit(src, dst), src, dst, 255)
    assert info.value.reason == reason


@pytest.mark.parametrize("record, src, dst", [
    (RouterSolicitation(), "::", "ff02::2"),
    (RouterSolicitation(b"\x02" * 6), "fe80::1", "ff02::2"),
    (NeighborSolicitation(a6("fe80::1"), nonce=b"123456"), "::", "ff02::1:ff00:1"),
    (NeighborAdvertisement(a6("fe80::2"), override=True), "fe80::2", "ff02::1"),
    (Redirect(a6("fe80::9"), a6("2001:db8::5"), b"\x02" * 6), "fe80::2", "fe80::1"),
    (Redirect(a6("2001:db8::5"), a6("2001:db8::5")), "fe80::2", "fe80::1"),
])
def test_valid_nd_messages_round_trip(record, src, dst):
    src, dst = a6(src), a6(dst)
    assert parse_nd(record.emit(src, dst), src, dst, 255) == record


def test_check_nd_alone():
    check_nd(NeighborSolicitation(v.LL_A), 0, 255, UNSPECIFIED, solicited_node(v.LL_A))
    with pytest.raises(WireError):
        check_nd(NeighborSolicitation(v.LL_A), 0, 255, UNSPECIFIED, ALL_NODES)


@pytest.mark.parametrize("icmp_type, length", [(134, 15), (135, 23), (136, 23), (137, 39)])
def test_nd_minimum_lengths(icmp_type, length):
    with pytest.raises(WireError) as info:
        parse_nd_message(icmp_type, 0, bytes(length - 8))
    assert info.value.reason == "nd_truncated"
    assert parse_nd_message(icmp_type, 0, bytes(length - 7)) is not None


def test_a_bare_router_solicitation():
    assert parse_nd_message(133, 0, b"") == RouterSolicitation()


def test_not_an_nd_type():
    with pytest.raises(WireError) as info:
        parse_nd_message(128, 0, bytes(16))
    assert info.value.reason == "nd_not_nd"


def rs_with_options(options):
    src = v.LL_A
    return build_icmpv6(133, 0, 0, options, src, ALL_ROUTERS), src


def test_zero_length_option_invalidates_the_message():
    # RFC 4861 section 4.6: "Nodes MUST silently discard an ND packet that contains an
    # option with length zero."
    message, src = rs_with_options(bytes((1, 1)) + v.MAC_A + bytes((200, 0)) + bytes(6))
    with pytest.raises(WireError) as info:
        parse_nd(message, src, ALL_ROUTERS, 255)
    assert info.value.reason == "nd_zero_length_option"


@pytest.mark.parametrize("options", [bytes((1,)), bytes((1, 2)) + bytes(8)])
def test_option_past_the_end(options):
    message, src = rs_with_options(options)
    with pytest.raises(WireError) as info:
        parse_nd(message, src, ALL_ROUTERS, 255)
    assert info.value.reason == "nd_truncated_option"


def test_unknown_options_are_skipped_and_the_first_lladdr_counts():
    options = bytes((200, 2)) + bytes(14) + bytes((1, 1)) + v.MAC_A + bytes((1, 1)) + v.MAC_B
    message, src = rs_with_options(options)
    assert parse_nd(message, src, ALL_ROUTERS, 255) == RouterSolicitation(v.MAC_A)
    # A longer link-layer option (another link type's): the first 6 bytes are the MAC.
    message, src = rs_with_options(bytes((1, 2)) + v.MAC_B + bytes(8))
    assert parse_nd(message, src, ALL_ROUTERS, 255).source_lladdr == v.MAC_B


def ra_with_options(options, rest=(64 << 24) | 1800):
    return parse_nd_message(134, rest, bytes(8) + options)


def test_malformed_ra_options_are_ignored_one_by_one():
    mtu = bytes((5, 1, 0, 0)) + (1400).to_bytes(4, "big")
    good_prefix = PrefixInfo(a6("2001:db8:1::"), 64).option()
    short_prefix = bytes((3, 3)) + good_prefix[2:24]
    long_prefix_len = good_prefix[:2] + bytes((129,)) + good_prefix[3:]
    even_rdnss = bytes((25, 2)) + bytes(14)
    rdnss = Rdnss(300, (a6("2001:db8::53"),)).option()
    pointer_dnssl = bytes((31, 2, 0, 0)) + (60).to_bytes(4, "big") + bytes((0xC0, 12)) + bytes(6)
    dirty_padding = bytes((31, 2, 0, 0)) + (60).to_bytes(4, "big") + b"\x01a\x00\x00\x07" + \
        bytes(3)
    unterminated = bytes((31, 2, 0, 0)) + (60).to_bytes(4, "big") + b"\x07example"[:8]
    non_ascii = bytes((31, 2, 0, 0)) + (60).to_bytes(4, "big") + b"\x02\xc3\xa9\x00" + bytes(4)
    mtu_long = bytes((5, 2)) + bytes(14)
    ra = ra_with_options(short_prefix + long_prefix_len + even_rdnss + pointer_dnssl +
                         dirty_padding + unterminated + non_ascii + mtu_long + good_prefix +
                         rdnss + mtu)
    assert ra.prefixes == (PrefixInfo(a6("2001:db8:1::"), 64),)
    assert ra.rdnss == (Rdnss(300, (a6("2001:db8::53"),)),)
    assert ra.dnssl == () and ra.mtu == 1400


def test_ra_flags_and_preference():
    # RFC 4191 section 2.2: 01 high, 00 medium, 11 low, 10 reserved (read as medium).
    for bits, preference in [(0b01, 1), (0b00, 0), (0b11, -1), (0b10, 0)]:
        ra = ra_with_options(b"", (64 << 24) | (bits << 19) | 600)
        assert ra.preference == preference and ra.router_lifetime == 600
    for preference in (1, 0, -1):
        ra = RouterAdvertisement(router_lifetime=1, preference=preference, managed=True)
        message = ra.emit(v.LL_B, ALL_NODES)
        assert parse_nd(message, v.LL_B, ALL_NODES, 255) == ra
        assert message[5] == 0x80 | {1: 0x08, 0: 0, -1: 0x18}[preference]


@pytest.mark.parametrize("field", [{"hop_limit": 256}, {"router_lifetime": 65536},
                                   {"router_lifetime": -1}, {"preference": 2},
                                   {"reachable_time": 1 << 32}])
def test_ra_fields_out_of_range(field):
    with pytest.raises((ValueError, struct.error)):
        RouterAdvertisement(**field).emit(v.LL_B, ALL_NODES)


def test_dnssl_encoding():
    option = Dnssl(1200, ("lan.example.", "a.b.c")).option()
    assert option == bytes((31, 4, 0, 0)) + (1200).to_bytes(4, "big") + \
        b"\x03lan\x07example\x00\x01a\x01b\x01c\x00" + bytes(4)
    ra = ra_with_options(option)
    assert ra.dnssl == (Dnssl(1200, ("lan.example", "a.b.c")),)
    for bad in ["", "a..b", "x" * 64 + ".lan", "caf\u00e9.lan"]:
        with pytest.raises(ValueError):
            Dnssl(1, (bad,)).option()
    with pytest.raises(ValueError):
        Rdnss(1, ()).option()


def test_prefix_information_layout():
    # RFC 4861 section 4.6.2, byte by byte.
    option = PrefixInfo(a6("2001:db8::"), 48, False, True, 7200, 1800).option()
    assert option == bytes((3, 4, 48, 0x40)) + struct.pack("!II", 7200, 1800) + bytes(4) + \
        a6("2001:db8::")


def test_redirect_with_a_redirected_header():
    src, dst = v.LL_B, v.LL_A
    quoted = v.ECHO_REQUEST[14:]
    redirect = Redirect(a6("fe80::9"), a6("fd00:7::3"), v.MAC_B, quoted)
    message = redirect.emit(src, dst)
    assert len(message) % 8 == 0
    parsed = parse_nd(message, src, dst, 255)
    assert parsed == redirect._replace(redirected=quoted[:len(quoted) & ~7])
    # A long packet is cut so that the Redirect fits in 1280 bytes (RFC 4861 section 4.6.3).
    big = Redirect(a6("fe80::9"), a6("fd00:7::3"), v.MAC_B, bytes(2000)).emit(src, dst)
    assert len(big) + 40 <= 1280 and len(big) + 40 > 1280 - 16


# -- MLDv2 ------------------------------------------------------------------------------------

def join(group):
    return MulticastRecord(icmpv6.CHANGE_TO_EXCLUDE, group)


@pytest.mark.parametrize("frame, src, groups", [
    (v.MLD_REPORT, v.LL_A, ["ff02::1:ff00:1"]),
    (v.MLD_REPORT_UNSPECIFIED, UNSPECIFIED, ["ff02::1:ff00:1"]),
    (v.MLD_REPORT_ROUTER_UNSPECIFIED, UNSPECIFIED,
     ["ff02::1:ff00:0", "ff02::1:ff00:2", "ff05::2", "ff02::2"]),
])
def test_the_kernels_mldv2_reports(frame, src, groups):
    message, msrc, dst, hop_limit = icmp_of(frame)
    assert (msrc, dst, hop_limit) == (src, ALL_MLDV2_ROUTERS, 1)
    t, code, rest, body = parse_icmpv6(message, msrc, dst)
    assert (t, code) == (icmpv6.TYPE_MLDV2_REPORT, 0)
    report = icmpv6.parse_mldv2_report(rest, body)
    assert report == Mldv2Report(tuple(join(a6(g)) for g in groups))
    # Rebuilt from our records: the whole frame, Hop-by-Hop Router Alert included.
    packet = build_ipv6(src, ALL_MLDV2_ROUTERS, NH_HOPOPTS,
                        build_router_alert_header(NH_ICMPV6) + report.emit(src), hop_limit=1)
    mac = v.MAC_A if frame is not v.MLD_REPORT_ROUTER_UNSPECIFIED else v.MAC_B
    assert build_ethernet(multicast_mac(ALL_MLDV2_ROUTERS), mac, ETHERTYPE_IPV6, packet) == \
        frame


def test_mldv2_records_with_sources_and_aux_data():
    records = (MulticastRecord(icmpv6.MODE_IS_INCLUDE, a6("ff3e::1234"),
                               (a6("2001:db8::1"), a6("2001:db8::2")), b"\x01\x02\x03\x04"),
               MulticastRecord(icmpv6.CHANGE_TO_INCLUDE, a6("ff02::fb")))
    message = Mldv2Report(records).emit(v.LL_A)
    assert len(message) == 8 + (20 + 32 + 4) + 20
    t, _, rest, body = parse_icmpv6(message, v.LL_A, ALL_MLDV2_ROUTERS)
    assert icmpv6.parse_mldv2_report(rest, body).records == records
    with pytest.raises(ValueError):
        Mldv2Report((MulticastRecord(1, a6("ff02::1"), (), b"\x01"),)).emit(v.LL_A)


@pytest.mark.parametrize("cut", [1, 4, 16, 20])
def test_truncated_mldv2_report(cut):
    records = (MulticastRecord(1, a6("ff3e::1"), (a6("2001:db8::1"),)),)
    message = Mldv2Report(records).emit(v.LL_A)
    _, _, rest, body = parse_icmpv6(message, v.LL_A, ALL_MLDV2_ROUTERS)
    with pytest.raises(WireError) as info:
        icmpv6.parse_mldv2_report(rest, body[:-cut])
    assert info.value.reason == "mld_truncated"


def test_the_kernels_mldv2_query():
    message, src, dst, hop_limit = icmp_of(v.MLD_QUERY)
    h = parse_ipv6(v.MLD_QUERY, 14)
    chain = walk_extension_headers(v.MLD_QUERY, 54, h.next_header, 14 + h.total_len)
    icmpv6.check_mld(hop_limit, src, chain.router_alert)
    t, code, rest, body = parse_icmpv6(message, src, dst)
    assert (t, dst) == (icmpv6.TYPE_MLD_QUERY, ALL_NODES)
    assert icmpv6.parse_mld_query(rest, body) == MldQuery(5000, UNSPECIFIED, False, 2, 125)


@pytest.mark.parametrize("hop_limit, src, alert, reason", [
    (255, "fe80::1", 0, "mld_bad_hop_limit"),
    (1, "fd00::1", 0, "mld_src_not_link_local"),
    (1, "::", 0, "mld_src_not_link_local"),
    (1, "fe80::1", None, "mld_no_router_alert"),
])
def test_mld_validity(hop_limit, src, alert, reason):
    with pytest.raises(WireError) as info:
        icmpv6.check_mld(hop_limit, a6(src), alert)
    assert info.value.reason == reason


def mld_query(max_resp_code, qqic, flags=0x02, sources=(), address=UNSPECIFIED):
    body = address + bytes((flags, qqic)) + len(sources).to_bytes(2, "big") + b"".join(sources)
    return icmpv6.parse_mld_query(max_resp_code << 16, body)


@pytest.mark.parametrize("code, delay", [
    # RFC 3810 section 5.1.3: below 32768 the code is the delay in ms; above, a float
    # 1|exp(3)|mant(12) meaning (mant | 0x1000) << (exp + 3).
    (0, 0), (1000, 1000), (32767, 32767), (0x8000, 0x1000 << 3), (0x8FFF, 0x1FFF << 3),
    (0xF000, 0x1000 << 10), (0xFFFF, 0x1FFF << 10),
])
def test_maximum_response_code(code, delay):
    assert mld_query(code, 125).max_response_delay == delay


@pytest.mark.parametrize("qqic, interval", [
    # RFC 3810 section 5.1.9: 1|exp(3)|mant(4) meaning (mant | 0x10) << (exp + 3).
    (0, 0), (125, 125), (127, 127), (0x80, 0x10 << 3), (0x8F, 0x1F << 3), (0xFF, 0x1F << 10),
])
def test_querier_query_interval_code(qqic, interval):
    assert mld_query(0, qqic).interval == interval


def test_group_and_source_specific_queries():
    group, sources = a6("ff3e::1"), (a6("2001:db8::1"), a6("2001:db8::2"))
    query = mld_query(100, 10, flags=0x0B, sources=sources, address=group)
    assert query == MldQuery(100, group, True, 3, 10, sources)
    with pytest.raises(WireError):
        icmpv6.parse_mld_query(0, (group + bytes((0, 0, 0, 2)) + sources[0]))


def test_mld_query_lengths():
    # RFC 3810 section 8.1: 24 bytes is MLDv1, 28 or more MLDv2, anything else is ignored.
    v1 = icmpv6.parse_mld_query(2500 << 16, a6("ff02::fb"))
    assert v1 == MldQuery(2500, a6("ff02::fb"), version=1)
    for size in (0, 15, 17, 18, 19):
        with pytest.raises(WireError):
            icmpv6.parse_mld_query(0, bytes(size))
