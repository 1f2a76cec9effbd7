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
