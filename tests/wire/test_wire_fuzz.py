"""Garbage in: every parser raises WireError (and nothing else) or returns something sane.

DESIGN.md section 5: malformed frames never raise out of the stack.  Besides arbitrary bytes,
mutations of valid packets reach the deeper checks (lengths, checksums) that random bytes
rarely get past.
"""
from hypothesis import HealthCheck, given, settings, strategies as st

from lwstack.iface.host import Host, parse_ipv4_quoted
from lwstack.wire import WireError
from lwstack.wire import icmpv4
from lwstack.wire.arp import ArpPacket
from lwstack.wire.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, build_ethernet, parse_ethernet
from lwstack.wire.ipv4 import build_ipv4, parse_ipv4
from lwstack.wire.tcp import (ACK, PSH, SYN, build_options, build_tcp, parse_tcp,
                              parse_tcp_unchecked)
from lwstack.wire.udp import build_udp, parse_udp

SRC = bytes([10, 0, 0, 2])
DST = bytes([10, 0, 0, 1])
MAC = bytes.fromhex("020000000001")
PEER = bytes.fromhex("020000000002")
FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def valid_frames():
    udp = build_udp(SRC, DST, 1234, 7, b"hello")
    echo = icmpv4.build_echo(8, 1, 1, b"ping")
    arp = ArpPacket(1, PEER, SRC, bytes(6), DST).emit()
    return [
        build_ethernet(MAC, PEER, ETHERTYPE_IPV4, build_ipv4(SRC, DST, 17, udp)),
        build_ethernet(MAC, PEER, ETHERTYPE_IPV4, build_ipv4(SRC, DST, 1, echo)),
        build_ethernet(b"\xff" * 6, PEER, ETHERTYPE_ARP, arp),
    ]


def mutated(draw_frame, flips):
    data = bytearray(draw_frame)
    for index, value in flips:
        data[index % len(data)] = value
    return bytes(data)


mutations = st.tuples(st.sampled_from(valid_frames()),
                      st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
                      st.integers(0, 120))


def expect_wire_error_or_result(parse, *args):
    try:
        return parse(*args)
    except WireError as exc:
        assert isinstance(exc, ValueError) and exc.reason
        return None


@FUZZ
@given(st.binary(max_size=120), st.integers(0, 30))
def test_parsers_on_arbitrary_bytes(data, offset):
    expect_wire_error_or_result(parse_ethernet, data)
    expect_wire_error_or_result(ArpPacket.parse, data)
    expect_wire_error_or_result(ArpPacket.parse, data, offset)
    expect_wire_error_or_result(parse_ipv4, data)
    expect_wire_error_or_result(parse_ipv4, data, offset)
    expect_wire_error_or_result(icmpv4.parse_icmpv4, data)
    expect_wire_error_or_result(parse_udp, data, SRC, DST)
    expect_wire_error_or_result(parse_ipv4_quoted, data)
    assert_sane_tcp(expect_wire_error_or_result(parse_tcp, data, SRC, DST), data)
    assert_sane_tcp(expect_wire_error_or_result(parse_tcp_unchecked, data), data)


@FUZZ
@given(mutations)
def test_parsers_on_mutated_packets(case):
    frame, flips, cut = case
    data = mutated(frame, flips)[:len(frame) - cut if cut < len(frame) else len(frame)]
    header = expect_wire_error_or_result(parse_ipv4, data, 14)
    if header is not None:
        # A header that parses is self-consistent.
        assert 20 <= header.header_len <= header.total_len <= len(data) - 14
        payload = data[14 + header.header_len:14 + header.total_len]
        result = expect_wire_error_or_result(parse_udp, payload, header.src, header.dst)
        if result is not None:
            assert len(result[2]) <= len(payload) - 8
        expect_wire_error_or_result(icmpv4.parse_icmpv4, payload)
    expect_wire_error_or_result(ArpPacket.parse, data, 14)


def make_host():
    return Host("ip=10.0.0.1/24,mac=02:00:00:00:00:01,gw=10.0.0.254", 0.0)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=100), mutations), max_size=6))
def test_host_receive_never_raises(inputs):
    host = make_host()
    host.outbox.clear()
    now = 0.0
    for item in inputs:
        frame = item if isinstance(item, bytes) else \
            mutated(item[0], item[1])[:max(0, len(item[0]) - item[2])]
        host.receive(frame, now)
        host.poll(now)
        now += 0.5
    assert host.stats["rx_frames"] == len(inputs)
    for frame in host.outbox:        # whatever we answered parses
        assert parse_ethernet(frame)[1] == MAC


@FUZZ
@given(st.binary(min_size=0, max_size=64), st.integers(0, 255), st.binary(max_size=40))
def test_host_receive_arbitrary_ipv4_payloads(payload, protocol, options):
    # Valid IPv4 headers carrying garbage reach the ICMP and UDP parsers through the host.
    host = make_host()
    packet = build_ipv4(SRC, DST, protocol, payload)
    host.receive(build_ethernet(host.mac, PEER, ETHERTYPE_IPV4, packet), 0.0)
    host.poll(1.0)
    assert host.stats["rx_frames"] == 1


@FUZZ
@given(st.binary(min_size=8, max_size=64))
def test_host_receive_icmp_errors_with_garbage_quotes(quote):
    host = make_host()
    message = icmpv4.build_error(3, 3, b"\x45" + bytes(27))[:8] + quote
    message = bytearray(message)
    message[2:4] = b"\0\0"
    from lwstack.wire.checksum import internet_checksum
    message[2:4] = internet_checksum(bytes(message)).to_bytes(2, "big")
    packet = build_ipv4(SRC, DST, 1, bytes(message))
    host.receive(build_ethernet(host.mac, PEER, ETHERTYPE_IPV4, packet), 0.0)
    assert sum(v for k, v in host.stats.items() if k.startswith("drop.")) + \
        host.stats["icmp_error_delivered"] >= 1


@FUZZ
@given(st.binary(min_size=4, max_size=4), st.sampled_from([1, 17, 6, 99]),
       st.binary(max_size=1600), st.booleans())
def test_host_without_default_route_never_raises(source, protocol, payload, as_echo):
    # Answers (echo replies, ICMP errors) to unroutable or oversized requests are dropped and
    # counted, not raised out of receive().
    host = Host("ip=10.0.0.1/24,mac=02:00:00:00:00:01,mtu=576", 0.0)
    if as_echo and protocol == 1:
        payload = icmpv4.build_echo(8, 7, 1, payload)
    elif protocol == 17:
        payload = build_udp(source, DST, 1, 9, payload)
    packet = build_ipv4(source, DST, protocol, payload)
    host.receive(build_ethernet(host.mac, PEER, ETHERTYPE_IPV4, packet), 0.0)
    host.poll(0.0)
    assert host.stats["rx_frames"] == 1


# -- TCP -------------------------------------------------------------------------------------

def assert_sane_tcp(seg, data):
    """A TCP segment that parsed is self-consistent (or the parse failed: ``seg`` is None)."""
    if seg is None:
        return
    assert 20 <= seg.header_len <= min(60, len(data)) and seg.header_len % 4 == 0
    assert len(seg.payload) == len(data) - seg.header_len
    assert 0 <= seg.mss <= 0xFFFF and -1 <= seg.wscale <= 255
    assert seg.has_timestamps or (seg.ts_val, seg.ts_ecr) == (0, 0)
    assert len(seg.sack_blocks) <= 4 and all(
        0 <= left <= 0xFFFFFFFF and 0 <= right <= 0xFFFFFFFF for left, right in seg.sack_blocks)
    repr(seg)


def valid_tcp_segments():
    return [
        build_tcp(SRC, DST, 40000, 80, 1, 0, SYN, 64240,
                  build_options(mss=1460, wscale=7, sack_permitted=True, timestamps=(9, 0))),
        build_tcp(SRC, DST, 40000, 80, 2, 3, ACK, 501,
                  build_options(timestamps=(10, 11), sack_blocks=[(5, 6), (7, 8), (9, 10)])),
        build_tcp(SRC, DST, 40000, 80, 2, 3, PSH | ACK, 501, build_options(timestamps=(1, 2)),
                  b"payload"),
    ]


tcp_mutations = st.tuples(st.sampled_from(valid_tcp_segments()),
                          st.lists(st.tuples(st.integers(0, 70), st.integers(0, 255)),
                                   max_size=4),
                          st.integers(0, 70))


@FUZZ
@given(tcp_mutations)
def test_tcp_parsers_on_mutated_segments(case):
    segment, flips, cut = case
    data = mutated(segment, flips)[:max(0, len(segment) - cut)]
    # Without the checksum, mutations reach the header length and option checks.
    assert_sane_tcp(expect_wire_error_or_result(parse_tcp_unchecked, data), data)
    assert_sane_tcp(expect_wire_error_or_result(parse_tcp, data, SRC, DST), data)


@FUZZ
@given(st.binary(max_size=40), st.binary(max_size=30), st.integers(0, 0xFF))
def test_tcp_parser_on_arbitrary_options_with_a_valid_checksum(options, payload, flags):
    # The checksum is right, so every byte of the options is judged by the option parser.
    options = options[:len(options) & ~3]
    data = build_tcp(SRC, DST, 1, 2, 3, 4, flags, 5, options, payload)
    seg = expect_wire_error_or_result(parse_tcp, data, SRC, DST)
    assert_sane_tcp(seg, data)
    if seg is not None:
        assert seg.header_len == 20 + len(options) and bytes(seg.payload) == payload


# -- IPv6 and ICMPv6 -------------------------------------------------------------------------

SRC6 = bytes.fromhex("fe800000000000000000000000000001")
DST6 = bytes.fromhex("fe800000000000000000000000000002")


def valid_ipv6_packets():
    from lwstack.wire import icmpv6, ipv6
    from lwstack.wire.icmpv6 import (Dnssl, Mldv2Report, MulticastRecord, NeighborSolicitation,
                                     PrefixInfo, Rdnss, Redirect, RouterAdvertisement)
    ra = RouterAdvertisement(64, True, False, 1800, 30000, 1000, 1, MAC, 1500,
                             (PrefixInfo(bytes(16), 64),), (Rdnss(60, (DST6,)),),
                             (Dnssl(60, ("lan.example",)),)).emit(SRC6, ipv6.ALL_NODES)
    ns = NeighborSolicitation(DST6, MAC, b"nonce!").emit(SRC6, ipv6.solicited_node(DST6))
    redirect = Redirect(SRC6, DST6, MAC, bytes(48)).emit(SRC6, DST6)
    report = Mldv2Report((MulticastRecord(4, ipv6.ALL_NODES, (SRC6,), bytes(4)),)).emit(SRC6)
    echo = icmpv6.build_echo(128, 1, 2, b"ping", SRC6, DST6)
    error = icmpv6.build_error(1, 4, ipv6.build_ipv6(DST6, SRC6, 17, bytes(16)), SRC6, DST6)
    hbh = ipv6.build_router_alert_header(ipv6.NH_ICMPV6)
    dstopts = bytes((ipv6.NH_FRAGMENT, 0, 0x1E, 2, 0, 0, 1, 0))
    fragment = ipv6.build_fragment_header(ipv6.NH_UDP, 0, True, 7)
    return [
        ipv6.build_ipv6(SRC6, ipv6.ALL_NODES, ipv6.NH_ICMPV6, ra, 255),
        ipv6.build_ipv6(SRC6, DST6, ipv6.NH_ICMPV6, ns, 255),
        ipv6.build_ipv6(SRC6, DST6, ipv6.NH_ICMPV6, redirect, 255),
        ipv6.build_ipv6(SRC6, ipv6.ALL_MLDV2_ROUTERS, ipv6.NH_HOPOPTS, hbh + report, 1),
        ipv6.build_ipv6(SRC6, DST6, ipv6.NH_ICMPV6, echo),
        ipv6.build_ipv6(SRC6, DST6, ipv6.NH_ICMPV6, error),
        ipv6.build_ipv6(SRC6, DST6, ipv6.NH_DSTOPTS, dstopts + fragment + bytes(16)),
    ]


ipv6_mutations = st.tuples(st.sampled_from(valid_ipv6_packets()),
                           st.lists(st.tuples(st.integers(0, 250), st.integers(0, 255)),
                                    max_size=4),
                           st.integers(0, 200))


def ipv6_parse_everything(packet):
    """Every IPv6-side parser over ``packet``, checking what parses is self-consistent."""
    from lwstack.wire import icmpv6, ipv6
    header = expect_wire_error_or_result(ipv6.parse_ipv6, packet)
    if header is None:
        return
    end = header.total_len
    assert end <= len(packet)
    chain = expect_wire_error_or_result(ipv6.walk_extension_headers, packet, 40,
                                        header.next_header, end)
    if chain is None:
        return
    assert 40 <= chain.offset <= end and 6 <= chain.nh_field < chain.offset
    if chain.fragment is not None:
        assert chain.fragment.data_offset == chain.offset
        return
    if chain.protocol != ipv6.NH_ICMPV6:
        return
    message = packet[chain.offset:end]
    expect_wire_error_or_result(icmpv6.parse_icmpv6, message, header.src, header.dst)
    if len(message) < 8:
        return
    # Past the checksum, as if it were right, so that mutations reach the body parsers.
    icmp_type, rest = message[0], int.from_bytes(message[4:8], "big")
    body = message[8:]
    if icmp_type in icmpv6.ND_TYPES:
        record = expect_wire_error_or_result(icmpv6.parse_nd_message, icmp_type, rest, body)
        if record is not None:
            expect_wire_error_or_result(icmpv6.check_nd, record, message[1], header.hop_limit,
                                        header.src, header.dst)
            record.emit(header.src, header.dst)       # what parsed builds again
    expect_wire_error_or_result(icmpv6.parse_mldv2_report, rest, body)
    expect_wire_error_or_result(icmpv6.parse_mld_query, rest, body)
    expect_wire_error_or_result(icmpv6.parse_quote, body)


@FUZZ
@given(st.binary(max_size=160), st.integers(0, 60), st.integers(0, 255))
def test_ipv6_parsers_on_arbitrary_bytes(data, offset, next_header):
    from lwstack.wire import icmpv6, ipv6
    expect_wire_error_or_result(ipv6.parse_ipv6, data, offset)
    chain = expect_wire_error_or_result(ipv6.walk_extension_headers, data, offset, next_header,
                                        None, 0)
    if chain is not None and chain.offset != offset:      # it stepped over headers
        assert offset < chain.offset <= len(data)
    expect_wire_error_or_result(ipv6.parse_fragment_header, data, offset)
    expect_wire_error_or_result(icmpv6.parse_icmpv6, data, SRC6, DST6)
    expect_wire_error_or_result(icmpv6.parse_quote, data)
    expect_wire_error_or_result(lambda: list(icmpv6.iter_nd_options(data)))
    for icmp_type in sorted(icmpv6.ND_TYPES):
        expect_wire_error_or_result(icmpv6.parse_nd_message, icmp_type, next_header << 24,
                                    data)
    expect_wire_error_or_result(icmpv6.parse_mldv2_report, next_header, data)
    expect_wire_error_or_result(icmpv6.parse_mld_query, next_header << 16, data)
    ipv6_parse_everything(data)


@FUZZ
@given(ipv6_mutations)
def test_ipv6_parsers_on_mutated_packets(case):
    packet, flips, cut = case
    data = mutated(packet, flips)[:max(0, len(packet) - cut)]
    ipv6_parse_everything(data)
    if len(data) >= 40:
        # The same bytes with a consistent version and payload length, so that cut and
        # mutated packets reach the extension-header walk and the ICMPv6 parsers.
        repaired = bytearray(data)
        repaired[0] = 0x60 | (repaired[0] & 0x0F)
        repaired[4:6] = (len(data) - 40).to_bytes(2, "big")
        ipv6_parse_everything(bytes(repaired))


@FUZZ
@given(st.binary(max_size=40), st.sampled_from(sorted(range(130, 138)) + [143]))
def test_nd_parsers_on_arbitrary_options(options, icmp_type):
    # Options with a valid checksum (built around them), so every byte reaches the options.
    from lwstack.wire import icmpv6, ipv6
    fixed = {133: 0, 134: 8, 135: 16, 136: 16, 137: 32}.get(icmp_type, 8)
    message = icmpv6.build_icmpv6(icmp_type, 0, 0, bytes(fixed) + options, SRC6, DST6)
    ipv6_parse_everything(ipv6.build_ipv6(SRC6, DST6, ipv6.NH_ICMPV6, message, 255))
