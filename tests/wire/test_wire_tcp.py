"""TCP segments (RFC 9293 3.1) and options (RFC 9293 3.2, RFC 7323, RFC 2018).

Kernel vectors, the Linux option layout reproduced byte for byte, every option alone and
together, the 40-byte limit, malformed input by reason, dpkt as an independent parser, and
32-bit sequence arithmetic across the wrap.
"""
import itertools

import dpkt
import pytest
from hypothesis import given, settings, strategies as st

from lwstack.wire import WireError
from lwstack.wire.checksum import internet_checksum, pseudo_header_sum
from lwstack.wire.ipv4 import build_ipv4, parse_ipv4
from lwstack.wire.tcp import (ACK, CWR, ECE, FIN, HEADER_LEN, MAX_OPTIONS_LEN, PSH, RST, SYN,
                              URG, TcpSegment, build_options, build_tcp, flags_to_str,
                              parse_tcp, parse_tcp_unchecked, seq_add, seq_diff, seq_ge,
                              seq_gt, seq_le, seq_lt)

# -- Provenance ------------------------------------------------------------------------------
# tcp_vectors_capture.py beside this file repeats both captures (as root); its frames have the
# same shapes with other sequence numbers and timestamps.
# 1. Kernel to kernel.  Two Linux 6.18 network namespaces joined by a veth pair (MACs
#    02:00:00:00:00:01 and :02, addresses 198.18.78.1 and .2), TX checksum offload turned off
#    on both ends (SIOCETHTOOL ETHTOOL_STXCSUM 0) so that the kernel itself computed every
#    checksum, captured with tshark on the client's veth (tshark's checksum validation agrees).
#    Python in .1 ran socket.create_connection(("198.18.78.2", 5001)), sendall(b"lwstack tcp
#    vector\n"), then sendall(bytes(i & 0xFF for i in range(2896))), then shutdown(SHUT_WR).
#    Default sysctls: timestamps, SACK and window scaling on (net.core.rmem_max gives WS=10).
SRC = bytes([198, 18, 78, 1])
DST = bytes([198, 18, 78, 2])
KERNEL_SYN_FRAME = bytes.fromhex(
    "02000000000202000000000108004500003c17df40004006fab4c6124e01c6124e02"
    "9f2413892534fc5900000000a002faf0f1390000"
    "020405b40402080a098855e6000000000103030a")
KERNEL_SYNACK_FRAME = bytes.fromhex(
    "02000000000102000000000208004500003c0000400040061294c6124e02c6124e01"
    "13899f24ef64ceca2534fc5aa012fe8837990000"
    "020405b40402080a7bf27bd5098855e60103030a")
KERNEL_ACK_FRAME = bytes.fromhex(
    "02000000000202000000000108004500003417e040004006fabbc6124e01c6124e02"
    "9f2413892534fc5aef64cecb8010003f64b20000"
    "0101080a098855e67bf27bd5")
KERNEL_DATA_FRAME = bytes.fromhex(
    "02000000000202000000000108004500004717e140004006faa7c6124e01c6124e02"
    "9f2413892534fc5aef64cecb8018003f80570000"
    "0101080a098855e67bf27bd5"
    "6c77737461636b2074637020766563746f720a")
KERNEL_FIN_FRAME = bytes.fromhex(
    "02000000000202000000000108004500003417e440004006fab7c6124e01c6124e02"
    "9f241389253507bdef64cecb8011003f56f50000"
    "0101080a098857777bf27c9d")
# The first full-sized segment of the 2896-byte write: a 66-byte frame header (Ethernet, IP,
# TCP with NOP NOP TS) and 1448 payload bytes 0x00, 0x01, ... 0xff, 0x00, ...
KERNEL_FULL_PAYLOAD = bytes(i & 0xFF for i in range(1448))
KERNEL_FULL_FRAME = bytes.fromhex(
    "0200000000020200000000010800450005dc17e240004006f511c6124e01c6124e02"
    "9f2413892534fc6def64cecb8010003f45450000"
    "0101080a098856ae7bf27bd5") + KERNEL_FULL_PAYLOAD

# 2. Kernel SACKs.  The same namespaces; a scripted peer in the first one sent frames from
#    198.18.78.3 (MAC 02:00:00:00:00:03, owned by no kernel) through an AF_PACKET socket, built
#    by this module, to a Linux listener on 198.18.78.2 whose veth had RX checksum offload
#    off (ETHTOOL_SRXCSUM 0), so the kernel verified our checksums: it answered our SYN, and
#    stayed silent to the same SYN with one checksum bit flipped.  The peer sent SYN (seq 1000,
#    MSS 1460, SACK permitted, WS 7, with and without timestamps), ACK, then 100-byte segments
#    at 1101, 1301, 1501, 1701, 1901 leaving holes; the kernel's duplicate ACKs carry SACK
#    blocks, newest first (RFC 2018 4): 3 blocks at most with timestamps, 4 without.
PEER = bytes([198, 18, 78, 3])
KERNEL_SACK3_TS_FRAME = bytes.fromhex(
    "0200000000030200000000020800450000503c5a40004006d623c6124e02c6124e03"
    "138aafca90551cfa000003e9f01000401f530000"
    "0101080af05318e400001b59"
    "0101051a000005dd0000064100000515000005790000044d000004b1")
KERNEL_SACK4_FRAME = bytes.fromhex(
    "02000000000302000000000208004500004c7536400040069d4bc6124e02c6124e03"
    "138bafcb890c00ae000003e9e010003f72d10000"
    "01010522000006a500000709000005dd0000064100000515000005790000044d000004b1")
KERNEL_SYNACK_NO_TS_FRAME = bytes.fromhex(
    "020000000003020000000002080045000034000040004006129ac6124e02c6124e03"
    "138bafcb890c00ad000003e98012faf0fae90000"
    "020405b4010104020103030a")

KERNEL_FRAMES = {
    "syn": KERNEL_SYN_FRAME, "synack": KERNEL_SYNACK_FRAME, "ack": KERNEL_ACK_FRAME,
    "data": KERNEL_DATA_FRAME, "fin": KERNEL_FIN_FRAME, "full": KERNEL_FULL_FRAME,
    "sack3_ts": KERNEL_SACK3_TS_FRAME, "sack4": KERNEL_SACK4_FRAME,
    "synack_no_ts": KERNEL_SYNACK_NO_TS_FRAME,
}


def split(frame):
    """(src, dst, tcp segment) of an Ethernet/IPv4/TCP frame."""
    ip = parse_ipv4(frame, 14)
    assert ip.protocol == 6
    return ip.src, ip.dst, frame[14 + ip.header_len:14 + ip.total_len]


def kernel(name):
    src, dst, segment = split(KERNEL_FRAMES[name])
    return parse_tcp(segment, src, dst)


# -- kernel vectors --------------------------------------------------------------------------

def test_parse_kernel_syn():
    seg = kernel("syn")
    assert (seg.src_port, seg.dst_port) == (40740, 5001)
    assert (seg.seq, seg.ack, seg.flags) == (0x2534FC59, 0, SYN)
    assert (seg.window, seg.urgent, seg.header_len) == (64240, 0, 40)
    assert (seg.mss, seg.wscale, seg.sack_permitted) == (1460, 10, True)
    assert seg.has_timestamps and (seg.ts_val, seg.ts_ecr) == (0x098855E6, 0)
    assert seg.sack_blocks == () and len(seg.payload) == 0


def test_parse_kernel_synack_echoes_the_timestamp():
    syn, synack = kernel("syn"), kernel("synack")
    assert synack.flags == SYN | ACK
    assert synack.ack == syn.seq + 1 and synack.seq == 0xEF64CECA
    assert (synack.mss, synack.wscale, synack.sack_permitted) == (1460, 10, True)
    assert synack.ts_ecr == syn.ts_val and synack.window == 65160


def test_parse_kernel_ack_and_data():
    ack, data, fin = kernel("ack"), kernel("data"), kernel("fin")
    assert ack.flags == ACK and data.flags == PSH | ACK and fin.flags == FIN | ACK
    assert ack.header_len == data.header_len == 32
    assert (ack.mss, ack.wscale, ack.sack_permitted) == (0, -1, False)   # SYN-only options
    assert ack.has_timestamps and ack.ts_ecr == kernel("synack").ts_val
    assert bytes(data.payload) == b"lwstack tcp vector\n"
    assert data.window == 63                 # raw field: scaled by 2**10 it is 64512
    assert fin.seq == data.seq + 19 + 2 * 1448


def test_parse_kernel_full_sized_segment_without_copying():
    src, dst, segment = split(KERNEL_FULL_FRAME)
    seg = parse_tcp(segment, src, dst)
    assert len(seg.payload) == 1448 and seg.payload == KERNEL_FULL_PAYLOAD
    assert isinstance(seg.payload, memoryview) and seg.payload.obj is segment
    assert (seg.ts_val, seg.ts_ecr) == (0x098856AE, 0x7BF27BD5)


def test_parse_kernel_sack_blocks():
    with_ts, without_ts = kernel("sack3_ts"), kernel("sack4")
    assert with_ts.ack == without_ts.ack == 1001
    assert with_ts.sack_blocks == ((1501, 1601), (1301, 1401), (1101, 1201))
    assert with_ts.has_timestamps and with_ts.ts_ecr == 7001
    assert without_ts.sack_blocks == ((1701, 1801), (1501, 1601), (1301, 1401), (1101, 1201))
    assert not without_ts.has_timestamps and without_ts.ts_val == 0


def test_parse_kernel_synack_without_timestamps():
    seg = kernel("synack_no_ts")
    assert (seg.mss, seg.wscale, seg.sack_permitted, seg.has_timestamps) == (1460, 10, True,
                                                                            False)


@pytest.mark.parametrize("name", sorted(KERNEL_FRAMES))
def test_build_reproduces_the_kernel_segment(name):
    # Same fields and options -> the same bytes: the option layout is Linux's, and the
    # checksum is right.
    src, dst, segment = split(KERNEL_FRAMES[name])
    seg = parse_tcp(segment, src, dst)
    options = build_options(**seg.options())
    assert build_tcp(src, dst, seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags,
                     seg.window, options, bytes(seg.payload), seg.urgent) == segment


@pytest.mark.parametrize("name", sorted(KERNEL_FRAMES))
def test_dpkt_agrees_on_kernel_segments(name):
    src, dst, segment = split(KERNEL_FRAMES[name])
    ours = parse_tcp(segment, src, dst)
    theirs = dpkt.tcp.TCP(segment)
    assert (theirs.sport, theirs.dport, theirs.seq, theirs.ack) == \
        (ours.src_port, ours.dst_port, ours.seq, ours.ack)
    assert (theirs.flags, theirs.win, theirs.off * 4) == (ours.flags, ours.window, ours.header_len)
    assert theirs.data == ours.payload
    assert_dpkt_options(theirs.opts, ours)


def assert_dpkt_options(opts, seg):
    """dpkt's reading of an options field matches what we decoded into ``seg``."""
    found = {kind: data for kind, data in dpkt.tcp.parse_opts(bytes(opts)) if kind > 1}
    assert found.get(dpkt.tcp.TCP_OPT_MSS) == (seg.mss.to_bytes(2, "big") if seg.mss else None)
    assert found.get(dpkt.tcp.TCP_OPT_WSCALE) == (bytes([seg.wscale]) if seg.wscale >= 0
                                                   else None)
    assert (dpkt.tcp.TCP_OPT_SACKOK in found) == seg.sack_permitted
    if seg.has_timestamps:
        assert found[dpkt.tcp.TCP_OPT_TIMESTAMP] == seg.ts_val.to_bytes(4, "big") + \
            seg.ts_ecr.to_bytes(4, "big")
    else:
        assert dpkt.tcp.TCP_OPT_TIMESTAMP not in found
    sack = found.get(dpkt.tcp.TCP_OPT_SACK, b"")
    assert tuple((int.from_bytes(sack[i:i + 4], "big"), int.from_bytes(sack[i + 4:i + 8], "big"))
                 for i in range(0, len(sack), 8)) == seg.sack_blocks


# -- building options ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,expected", [
    ({}, ""),
    ({"mss": 536}, "02040218"),
    ({"wscale": 7}, "01030307"),
    ({"wscale": 0}, "01030300"),
    ({"sack_permitted": True}, "01010402"),
    ({"timestamps": (0x01020304, 0xA0B0C0D0)}, "0101080a01020304a0b0c0d0"),
    ({"sack_blocks": [(1, 2)]}, "0101050a0000000100000002"),
    # the SYN layouts tcpdump shows as "mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7" and
    # "mss 1460,nop,nop,sackOK,nop,wscale 7"
    ({"mss": 1460, "sack_permitted": True, "timestamps": (1, 0), "wscale": 7},
     "020405b40402080a00000001000000000103030" "7"),
    ({"mss": 1460, "sack_permitted": True, "wscale": 7}, "020405b4010104020103030" "7"),
    ({"mss": 1460, "timestamps": (1, 0)}, "020405b40101080a0000000100000000"),
    ({"timestamps": (5, 6), "sack_blocks": [(7, 8)]},
     "0101080a00000005000000060101050a0000000700000008"),
], ids=["none", "mss", "wscale", "wscale0", "sackok", "ts", "sack", "syn", "syn_no_ts",
        "mss_ts", "ts_sack"])
def test_option_layout(kwargs, expected):
    assert build_options(**kwargs).hex() == expected


def segment_with(options, payload=b"", flags=ACK):
    return build_tcp(SRC, DST, 1234, 80, 1, 2, flags, 1000, options, payload)


@pytest.mark.parametrize("kwargs,attribute,value", [
    ({"mss": 1}, "mss", 1),
    ({"mss": 0xFFFF}, "mss", 0xFFFF),
    ({"wscale": 14}, "wscale", 14),
    ({"wscale": 0}, "wscale", 0),
    ({"wscale": 15}, "wscale", 15),            # kept as received; the caller clamps
    ({"wscale": 255}, "wscale", 255),
    ({"sack_permitted": True}, "sack_permitted", True),
    ({"timestamps": (0xFFFFFFFF, 1)}, "ts_val", 0xFFFFFFFF),
    ({"timestamps": (0, 0xFFFFFFFF)}, "ts_ecr", 0xFFFFFFFF),
    ({"sack_blocks": [(0xFFFFFFF0, 0x10)]}, "sack_blocks", ((0xFFFFFFF0, 0x10),)),
], ids=["mss1", "mss_max", "ws14", "ws0", "ws15", "ws255", "sackok", "tsval", "tsecr", "sack"])
def test_each_option_alone_round_trips(kwargs, attribute, value):
    seg = parse_tcp(segment_with(build_options(**kwargs)), SRC, DST)
    assert getattr(seg, attribute) == value
    defaults = TcpSegment()
    for other in ("mss", "wscale", "sack_permitted", "has_timestamps", "sack_blocks"):
        if other != attribute and not (attribute.startswith("ts_") and other == "has_timestamps"):
            assert getattr(seg, other) == getattr(defaults, other), other


OPTION_CHOICES = list(itertools.product(
    (0, 1460), (-1, 7), (False, True), (None, (0xDEADBEEF, 0x12345678)), range(6)))


@pytest.mark.parametrize("mss,wscale,sack_permitted,timestamps,nblocks", OPTION_CHOICES)
def test_options_together_and_the_40_byte_limit(mss, wscale, sack_permitted, timestamps,
                                                 nblocks):
    blocks = [(1000 * k, 1000 * k + 500) for k in range(1, nblocks + 1)]
    size = (4 if mss else 0) + (4 if wscale >= 0 else 0) + (12 if timestamps else 0) + \
        (4 if sack_permitted and not timestamps else 0) + (4 + 8 * nblocks if nblocks else 0)
    kwargs = dict(mss=mss, wscale=wscale, sack_permitted=sack_permitted,
                  timestamps=timestamps, sack_blocks=blocks)
    if size > MAX_OPTIONS_LEN:
        with pytest.raises(ValueError, match="exceed 40"):
            build_options(**kwargs)
        return
    options = build_options(**kwargs)
    assert len(options) == size and size % 4 == 0
    segment = segment_with(options, b"data")
    seg = parse_tcp(segment, SRC, DST)
    assert seg.header_len == HEADER_LEN + size and bytes(seg.payload) == b"data"
    assert (seg.mss, seg.wscale, seg.sack_permitted) == (mss, wscale, sack_permitted)
    assert seg.has_timestamps == (timestamps is not None)
    assert (seg.ts_val, seg.ts_ecr) == (timestamps or (0, 0))
    assert seg.sack_blocks == tuple(blocks)
    assert seg.options() == dict(kwargs, sack_blocks=tuple(blocks))
    assert_dpkt_options(dpkt.tcp.TCP(segment).opts, seg)


def test_the_limit_in_sack_blocks():
    # RFC 2018 3: 4 blocks fit in 40 bytes, 3 when timestamps take 10 (+2 NOP).
    assert len(build_options(sack_blocks=[(1, 2)] * 4)) == 36
    assert len(build_options(timestamps=(1, 2), sack_blocks=[(1, 2)] * 3)) == 40
    for kwargs in ({"sack_blocks": [(1, 2)] * 5},
                   {"timestamps": (1, 2), "sack_blocks": [(1, 2)] * 4},
                   {"mss": 1460, "wscale": 7, "timestamps": (1, 2),
                    "sack_blocks": [(1, 2)] * 3}):
        with pytest.raises(ValueError, match="exceed 40"):
            build_options(**kwargs)


def test_option_values_are_taken_modulo_2_32():
    assert build_options(timestamps=(-1, 2**32 + 3)) == build_options(
        timestamps=(0xFFFFFFFF, 3))
    assert build_options(sack_blocks=[(-1, 2**32)]) == build_options(
        sack_blocks=[(0xFFFFFFFF, 0)])


@pytest.mark.parametrize("kwargs", [{"mss": 0x10000}, {"mss": -1}, {"wscale": 256}])
def test_option_values_that_do_not_fit(kwargs):
    with pytest.raises(ValueError):
        build_options(**kwargs)


# -- building segments -----------------------------------------------------------------------

def test_build_takes_seq_and_ack_modulo_2_32():
    seg = parse_tcp(build_tcp(SRC, DST, 1, 2, 2**32 + 5, -1, ACK, 0), SRC, DST)
    assert (seg.seq, seg.ack) == (5, 0xFFFFFFFF)


def test_build_fields_and_urgent_pointer():
    segment = build_tcp(SRC, DST, 65535, 0, 7, 9, URG | ACK | PSH, 0xFFFF, payload=b"!",
                        urgent=1)
    seg = parse_tcp(segment, SRC, DST)
    assert (seg.src_port, seg.dst_port, seg.window, seg.urgent) == (65535, 0, 0xFFFF, 1)
    assert seg.flags == URG | ACK | PSH and seg.header_len == 20 and bytes(seg.payload) == b"!"


@pytest.mark.parametrize("options", [b"\x01", b"\x01" * 6, b"\x01" * 44])
def test_build_refuses_bad_options_length(options):
    with pytest.raises(ValueError, match="multiple of 4"):
        build_tcp(SRC, DST, 1, 2, 0, 0, SYN, 0, options)


@pytest.mark.parametrize("field", ["src_port", "dst_port", "flags", "window", "urgent"])
@pytest.mark.parametrize("bad", ["too_big", "negative"])
def test_build_refuses_fields_that_do_not_fit(field, bad):
    kwargs = dict(src_port=1, dst_port=2, flags=ACK, window=3, urgent=0)
    kwargs[field] = (0x10000 if field != "flags" else 0x100) if bad == "too_big" else -70000
    with pytest.raises(ValueError, match="out of range"):
        build_tcp(SRC, DST, seq=0, ack=0, **kwargs)


@pytest.mark.parametrize("payload", [b"", b"a", b"ab", bytes(range(256)) * 5 + b"z"],
                         ids=["empty", "odd", "even", "long_odd"])
def test_dpkt_verifies_what_we_build(payload):
    options = build_options(timestamps=(123456, 654321), sack_blocks=[(10, 20)])
    segment = build_tcp(SRC, DST, 5000, 443, 0xFFFFFFFF, 17, PSH | ACK, 512, options, payload)
    ip = dpkt.ip.IP(build_ipv4(SRC, DST, 6, segment))
    tcp = ip.data
    assert isinstance(tcp, dpkt.tcp.TCP) and tcp.data == payload
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags, tcp.win, tcp.off) == \
        (5000, 443, 0xFFFFFFFF, 17, PSH | ACK, 512, 11)
    sent = tcp.sum
    tcp.sum = 0
    ip.sum = 0
    assert dpkt.ip.IP(bytes(ip)).data.sum == sent   # dpkt recomputes zero checksums


def dpkt_segment(opts, data=b"payload", flags=ACK):
    """A segment built by dpkt (checksum computed by dpkt's IP packing)."""
    tcp = dpkt.tcp.TCP(sport=4242, dport=22, seq=100, ack=200, flags=flags, win=4096,
                       opts=opts, data=data)
    tcp.off = (20 + len(opts)) // 4
    ip = dpkt.ip.IP(src=SRC, dst=DST, p=6, data=tcp)
    ip.len = len(ip)
    return bytes(ip)[20:]


def test_we_read_what_dpkt_builds_in_another_layout():
    # Not Linux's layout: WS without a NOP, SACK_PERM alone, TS unaligned, EOL padding.
    opts = b"\x02\x04\x02\x18" + b"\x03\x03\x0e" + b"\x04\x02" + \
        b"\x08\x0a\x00\x00\x00\x2a\x00\x00\x00\x2b" + b"\x00"
    seg = parse_tcp(dpkt_segment(opts, flags=SYN), SRC, DST)
    assert (seg.mss, seg.wscale, seg.sack_permitted) == (536, 14, True)
    assert (seg.ts_val, seg.ts_ecr) == (42, 43) and seg.header_len == 40
    assert (seg.flags, seg.src_port, seg.window, bytes(seg.payload)) == (SYN, 4242, 4096,
                                                                         b"payload")


# -- option parsing rules (RFC 9293 3.2, Linux's tcp_parse_options) ------------------------

def parse_options(options, flags=ACK):
    """Parse a checksummed segment carrying ``options`` (padded with NOPs to 4 bytes)."""
    options += b"\x01" * (-len(options) % 4)
    return parse_tcp(segment_with(options, b"xyz", flags), SRC, DST)


def test_unknown_options_are_skipped():
    # Kind 30 (MPTCP) and kind 254 (RFC 6994 experimental) with data, then a timestamp.
    seg = parse_options(b"\x1e\x04\xaa\xbb" + b"\xfe\x06\x12\x34\x56\x78" +
                        b"\x01\x01\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x02")
    assert seg.has_timestamps and (seg.ts_val, seg.ts_ecr) == (1, 2)
    assert bytes(seg.payload) == b"xyz"


def test_eol_ends_the_list():
    # After EOL the bytes are not options: neither the MSS nor the bad length counts.
    seg = parse_options(b"\x03\x03\x05" + b"\x00" + b"\x02\x04\x05\xb4" + b"\x08\x7f\x00\x00")
    assert seg.wscale == 5 and seg.mss == 0 and seg.header_len == 32


@pytest.mark.parametrize("options,attribute,value", [
    (b"\x02\x03\x05\x01", "mss", 0),                       # MSS of length 3
    (b"\x02\x06\x05\xb4\x00\x00", "mss", 0),               # MSS of length 6
    (b"\x03\x04\x07\x00", "wscale", -1),                   # WS of length 4
    (b"\x03\x02", "wscale", -1),                           # WS of length 2
    (b"\x04\x03\x00", "sack_permitted", False),            # SACK_PERM of length 3
    (b"\x08\x08\x00\x00\x00\x01\x00\x00", "has_timestamps", False),   # TS of length 8
    (b"\x05\x02", "sack_blocks", ()),                      # SACK without blocks
    (b"\x05\x06\x00\x00\x00\x01", "sack_blocks", ()),                 # half a block
    (b"\x05\x0b" + bytes(9), "sack_blocks", ()),           # 2 + 9
], ids=["mss3", "mss6", "ws4", "ws2", "sackok3", "ts8", "sack2", "sack6", "sack11"])
def test_a_known_option_with_the_wrong_length_is_ignored(options, attribute, value):
    # ... and parsing goes on after it: a window scale (or an MSS when WS is under test).
    trailer = b"\x02\x04\x01\x00" if attribute == "wscale" else b"\x01\x03\x03\x06"
    seg = parse_options(options + trailer)
    assert getattr(seg, attribute) == value
    assert seg.mss == 256 if attribute == "wscale" else seg.wscale == 6


def test_the_last_of_repeated_options_wins():
    seg = parse_options(b"\x02\x04\x05\xb4" + b"\x02\x04\x02\x18" + b"\x01\x03\x03\x02" +
                        b"\x01\x03\x03\x09")
    assert (seg.mss, seg.wscale) == (536, 9)


def test_options_on_any_segment_are_reported():
    # MSS and WS are SYN-only (RFC 9293 3.7.1, RFC 7323 2.2); deciding that is the caller's.
    seg = parse_options(build_options(mss=1000, wscale=3), flags=ACK)
    assert (seg.mss, seg.wscale) == (1000, 3)


@pytest.mark.parametrize("options", [
    b"\x02\x00\x00\x00",                   # length 0
    b"\x02\x01\x00\x00",                   # length 1
    b"\x1e\x00\x00\x00",                   # an unknown kind with length 0
    b"\x08\x0a\x00\x00",                   # TS running 6 bytes past the header
    b"\x01\x01\x02\x05",                   # MSS of length 5 in 2 remaining bytes
    b"\x01\x01\x01\x02",                   # MSS kind as the header's last byte, no length
    b"\x01\x01\x01\xfe",                   # unknown kind as the last byte
], ids=["len0", "len1", "unknown_len0", "ts_past_end", "mss_past_end", "no_length",
        "unknown_no_length"])
def test_an_option_that_cannot_be_delimited_is_refused(options):
    segment = segment_with(options)
    with pytest.raises(WireError) as info:
        parse_tcp(segment, SRC, DST)
    assert info.value.reason == "tcp_bad_option"
    with pytest.raises(WireError) as info:
        parse_tcp_unchecked(segment)
    assert info.value.reason == "tcp_bad_option"


def test_reserved_bits_do_not_leak_into_the_flags():
    segment = bytearray(segment_with(b"", flags=FIN | ACK))
    segment[12] |= 0x0F                    # the 4 reserved bits (RFC 9293 3.1 "Rsrvd")
    seg = parse_tcp_unchecked(bytes(segment))
    assert seg.flags == FIN | ACK and seg.header_len == 20


# -- header length, truncation and checksum ------------------------------------------------

@pytest.mark.parametrize("length", range(HEADER_LEN))
def test_truncated(length):
    _, _, segment = split(KERNEL_SYN_FRAME)
    for parse in (lambda data: parse_tcp(data, SRC, DST), parse_tcp_unchecked):
        with pytest.raises(WireError) as info:
            parse(segment[:length])
        assert info.value.reason == "tcp_truncated"


def with_offset(segment, words):
    """``segment`` with its data offset set to ``words`` and the checksum made right again."""
    data = bytearray(segment)
    data[12] = (words << 4) | (data[12] & 0x0F)
    data[16:18] = b"\0\0"
    total = internet_checksum(bytes(data), pseudo_header_sum(SRC, DST, 6, len(data)))
    data[16:18] = total.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("words", [0, 1, 4, 11, 15])
def test_bad_header_length(words):
    # The SYN has 40 header bytes (10 words) and nothing after: 11 words run past it.
    _, _, segment = split(KERNEL_SYN_FRAME)
    segment = with_offset(segment, words)
    for parse in (lambda data: parse_tcp(data, SRC, DST), parse_tcp_unchecked):
        with pytest.raises(WireError) as info:
            parse(segment)
        assert info.value.reason == "tcp_bad_header_len"


def test_header_length_may_take_the_whole_segment_or_less():
    _, _, segment = split(KERNEL_SYN_FRAME)
    seg = parse_tcp(with_offset(segment, 5), SRC, DST)      # options read as payload
    assert seg.header_len == 20 and seg.mss == 0 and len(seg.payload) == 20


@pytest.mark.parametrize("index", [0, 4, 13, 16, 17, 19, 30, 39])
def test_a_flipped_bit_fails_the_checksum(index):
    _, _, segment = split(KERNEL_SYN_FRAME)
    data = bytearray(segment)
    data[index] ^= 0x01
    with pytest.raises(WireError) as info:
        parse_tcp(bytes(data), SRC, DST)
    assert info.value.reason == "tcp_bad_checksum"
    assert parse_tcp_unchecked(bytes(data)).header_len == 40     # no checksum there


def test_a_flipped_payload_bit_fails_the_checksum():
    src, dst, segment = split(KERNEL_FULL_FRAME)
    data = bytearray(segment)
    data[-1] ^= 0x80
    with pytest.raises(WireError) as info:
        parse_tcp(bytes(data), src, dst)
    assert info.value.reason == "tcp_bad_checksum"


def test_checksum_covers_the_pseudo_header():
    src, dst, segment = split(KERNEL_DATA_FRAME)
    # (Swapping source and destination leaves the sum alone: addition commutes.)
    for other_src, other_dst in ((src, PEER), (PEER, dst), (DST, DST)):
        with pytest.raises(WireError) as info:
            parse_tcp(segment, other_src, other_dst)
        assert info.value.reason == "tcp_bad_checksum"
    # The TCP length is in the pseudo-header too: trailing bytes change the sum.
    with pytest.raises(WireError):
        parse_tcp(segment + b"\0\0", src, dst)


def test_bad_header_length_is_reported_before_the_checksum():
    _, _, segment = split(KERNEL_SYN_FRAME)
    data = bytearray(segment)
    data[12] = 0x40
    with pytest.raises(WireError) as info:
        parse_tcp(bytes(data), SRC, DST)
    assert info.value.reason == "tcp_bad_header_len"


def test_an_icmp_quote_of_eight_bytes_is_truncated():
    _, _, segment = split(KERNEL_DATA_FRAME)
    with pytest.raises(WireError) as info:
        parse_tcp_unchecked(segment[:8])
    assert info.value.reason == "tcp_truncated"


@pytest.mark.parametrize("wrap", [bytearray, memoryview, lambda data: memoryview(
    bytearray(b"prefix" + data))[6:]], ids=["bytearray", "memoryview", "sliced_view"])
def test_any_bytes_like_input(wrap):
    src, dst, segment = split(KERNEL_SACK3_TS_FRAME)
    seg = parse_tcp(wrap(segment), src, dst)
    assert seg.sack_blocks == kernel("sack3_ts").sack_blocks
    assert bytes(seg.payload) == b""


# -- the record --------------------------------------------------------------------------

def test_repr_shows_flags_numbers_options_and_length():
    text = repr(kernel("synack"))
    for part in ("5001->40740 SA", "seq=4016361162", "ack=624229466", "win=65160",
                 "mss=1460", "ws=10", "sackOK", "ts=2079488981/159929830", "len=0"):
        assert part in text, (part, text)
    text = repr(kernel("sack3_ts"))
    assert " A " in text and "sack=1501-1601,1301-1401,1101-1201" in text
    assert "len=19)" in repr(kernel("data")) and "PA" in repr(kernel("data"))


def test_flag_letters():
    assert [flags_to_str(flag) for flag in (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR)] == \
        list("FSRPAUEC")
    assert flags_to_str(SYN | ACK) == "SA" and flags_to_str(0) == "" and \
        flags_to_str(0xFF) == "FSRPAUEC"


def test_record_defaults_and_options():
    seg = TcpSegment()
    assert (seg.mss, seg.wscale, seg.sack_permitted, seg.has_timestamps) == (0, -1, False,
                                                                           False)
    assert (seg.ts_val, seg.ts_ecr, seg.sack_blocks, seg.header_len) == (0, 0, (), 20)
    assert build_options(**seg.options()) == b""
    seg = TcpSegment(seq=0xFFFFFFFF, flags=SYN, mss=536, payload=b"x")
    assert seg.seq == 0xFFFFFFFF and "S seq=4294967295" in repr(seg) and "len=1" in repr(seg)


# -- sequence numbers (RFC 9293 3.4, RFC 1982) -------------------------------------------

def test_sequence_comparisons_across_the_wrap():
    top = 0xFFFFFFFF
    assert seq_lt(top, 0) and seq_le(top, 0) and not seq_gt(top, 0) and not seq_ge(top, 0)
    assert seq_gt(0, top) and seq_ge(0, top) and not seq_lt(0, top)
    assert seq_lt(top - 10, 5) and seq_gt(5, top - 10)
    assert seq_le(7, 7) and seq_ge(7, 7) and not seq_lt(7, 7) and not seq_gt(7, 7)
    assert seq_add(top, 1) == 0 and seq_add(top, 2**32) == top and seq_add(0, -1) == top
    assert seq_diff(0, top) == 1 and seq_diff(top, 0) == -1 and seq_diff(5, top - 10) == 16
    assert seq_lt(0, 0x7FFFFFFF) and seq_gt(0, 0x80000001)


def test_sequence_numbers_half_the_space_apart():
    # RFC 1982 3.2 leaves this undefined; like Linux's before(), each is before the other.
    assert seq_lt(0, 0x80000000) and seq_lt(0x80000000, 0)
    assert seq_diff(0, 0x80000000) == seq_diff(0x80000000, 0) == -0x80000000


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.integers(-0x7FFFFFFF, 0x7FFFFFFF))
def test_sequence_arithmetic_agrees_with_a_signed_distance(a, distance):
    b = seq_add(a, distance)
    assert 0 <= b <= 0xFFFFFFFF
    assert seq_diff(b, a) == distance and seq_diff(a, b) == -distance
    assert seq_lt(a, b) == (distance > 0) and seq_gt(a, b) == (distance < 0)
    assert seq_le(a, b) == (distance >= 0) and seq_ge(a, b) == (distance <= 0)
    assert seq_le(a, b) == (not seq_gt(a, b)) and seq_ge(a, b) == (not seq_lt(a, b))


# -- round trips with anything ---------------------------------------------------------

blocks = st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)),
                  max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
       st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(-1, 255), st.booleans(),
       st.none() | st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)),
       blocks, st.binary(max_size=300))
def test_round_trip(sport, dport, seq, ack, flags, window, urgent, mss, wscale, sack_ok,
                    timestamps, sack_blocks, payload):
    try:
        options = build_options(mss, wscale, sack_ok, timestamps, sack_blocks)
    except ValueError:
        return                              # over 40 bytes: covered above
    segment = build_tcp(SRC, DST, sport, dport, seq, ack, flags, window, options, payload,
                        urgent)
    seg = parse_tcp(segment, SRC, DST)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window,
            seg.urgent) == (sport, dport, seq, ack, flags, window, urgent)
    assert seg.options() == dict(mss=mss, wscale=wscale, sack_permitted=sack_ok,
                                 timestamps=timestamps, sack_blocks=tuple(sack_blocks))
    assert bytes(seg.payload) == payload
    theirs = dpkt.tcp.TCP(segment)
    assert (theirs.seq, theirs.ack, theirs.flags & 0xFF, theirs.data) == (seq, ack, flags,
                                                                          payload)
    assert_dpkt_options(theirs.opts, seg)
