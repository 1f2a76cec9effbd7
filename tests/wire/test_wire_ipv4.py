"""IPv4 headers (RFC 791 / RFC 1122 section 3.2.1): kernel vectors, dpkt, validation."""
import dpkt
import pytest

from lwstack.wire import WireError
from lwstack.wire.checksum import internet_checksum
from lwstack.wire.ipv4 import (FLAG_DF, FLAG_MF, HEADER_LEN, PROTO_ICMP, PROTO_UDP,
                               Ipv4Header, addr_to_int, addr_to_str, build_ipv4, parse_addr,
                               parse_ipv4, prefix_mask)

# Provenance: the IPv4 part of a frame captured with tshark on a veth pair between two
# Linux 6.18 network namespaces: `ping -c 1 198.18.77.2` from 198.18.77.1 (echo request,
# ident 0x0755, DF, TTL 64, checksum 0x0d2c, 84 bytes).  The full frame is in
# test_wire_icmpv4.py.
KERNEL_ECHO_IP = bytes.fromhex(
    "450000540755400040010d2cc6124d01c6124d02"
    "0800f0a3254600010739016b00000000129e080000000000"
    "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
    "3031323334353637")
SRC = bytes([198, 18, 77, 1])
DST = bytes([198, 18, 77, 2])


def test_parse_kernel_header():
    header = parse_ipv4(KERNEL_ECHO_IP)
    assert (header.tos, header.total_len, header.ident) == (0, 84, 0x0755)
    assert header.flags_fragment == FLAG_DF and not header.is_fragment
    assert (header.ttl, header.protocol, header.header_len) == (64, PROTO_ICMP, 20)
    assert (header.src, header.dst) == (SRC, DST)
    assert "198.18.77.1 -> 198.18.77.2" in repr(header)


def test_build_reproduces_the_kernel_header():
    payload = KERNEL_ECHO_IP[HEADER_LEN:]
    assert build_ipv4(SRC, DST, PROTO_ICMP, payload, ttl=64, ident=0x0755) == KERNEL_ECHO_IP


def test_parse_at_an_offset_with_ethernet_padding_after_it():
    frame = bytes(14) + KERNEL_ECHO_IP + bytes(6)
    header = parse_ipv4(frame, 14)
    assert header.total_len == 84 and header.src == SRC


def test_dpkt_reads_what_we_build_checksum_included():
    packet = build_ipv4(DST, SRC, PROTO_UDP, b"x" * 13, ttl=17, ident=4242, tos=0x10)
    ip = dpkt.ip.IP(packet)
    assert (ip.v, ip.hl, ip.len, ip.id, ip.ttl, ip.p, ip.tos) == (4, 5, 33, 4242, 17, 17, 0x10)
    assert (ip.src, ip.dst) == (DST, SRC)
    assert ip.df == 1 and ip.mf == 0 and ip.offset == 0
    sent = ip.sum
    ip.sum = 0
    assert dpkt.ip.IP(bytes(ip)).sum == sent  # dpkt recomputes a zero checksum when packing


def test_we_read_what_dpkt_builds_including_options():
    ip = dpkt.ip.IP(src=SRC, dst=DST, p=PROTO_UDP, ttl=3, id=7, data=b"payload!")
    ip.opts = b"\x01\x01\x01\x00"   # NOP NOP NOP EOL: a 24-byte header
    ip.hl = 6
    ip.len = 24 + 8
    packet = bytes(ip)
    header = parse_ipv4(packet)
    assert header.header_len == 24
    assert packet[header.header_len:header.total_len] == b"payload!"


@pytest.mark.parametrize("flags_fragment,expected", [
    (0, False), (FLAG_DF, False), (FLAG_MF, True), (1, True), (FLAG_DF | 185, True)])
def test_fragment_flag(flags_fragment, expected):
    header = parse_ipv4(build_ipv4(SRC, DST, 17, b"", flags_fragment=flags_fragment))
    assert header.is_fragment is expected


def corrupt(packet, index, value):
    data = bytearray(packet)
    data[index] = value
    return bytes(data)


def refix_checksum(packet):
    """Recompute the checksum of the first 20 bytes, so only the intended defect remains."""
    data = bytearray(packet)
    data[10:12] = b"\0\0"
    data[10:12] = internet_checksum(bytes(data[:HEADER_LEN])).to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("length", range(HEADER_LEN))
def test_truncated_header(length):
    with pytest.raises(WireError) as info:
        parse_ipv4(KERNEL_ECHO_IP[:length])
    assert info.value.reason == "ipv4_truncated"


@pytest.mark.parametrize("packet,reason", [
    (refix_checksum(corrupt(KERNEL_ECHO_IP, 0, 0x65)), "ipv4_bad_version"),
    (refix_checksum(corrupt(KERNEL_ECHO_IP, 0, 0x44)), "ipv4_bad_header_len"),
    (refix_checksum(corrupt(KERNEL_ECHO_IP, 3, 85)), "ipv4_bad_total_len"),     # beyond the data
    (refix_checksum(corrupt(KERNEL_ECHO_IP, 3, 19)), "ipv4_bad_total_len"),     # below the header
    (corrupt(KERNEL_ECHO_IP, 8, 63), "ipv4_bad_checksum"),                      # TTL changed
    (corrupt(KERNEL_ECHO_IP, 11, 0x2d), "ipv4_bad_checksum"),
], ids=["version6", "ihl4", "total_beyond", "total_below", "ttl", "checksum"])
def test_malformed(packet, reason):
    with pytest.raises(WireError) as info:
        parse_ipv4(packet)
    assert info.value.reason == reason


def test_header_length_beyond_the_data():
    # IHL 15 (60 bytes) in a 40-byte packet with total length 40: refused, not read past.
    packet = bytearray(build_ipv4(SRC, DST, 17, bytes(20)))
    packet[0] = 0x4F
    with pytest.raises(WireError) as info:
        parse_ipv4(bytes(packet))
    assert info.value.reason == "ipv4_bad_total_len"


def test_build_refuses_oversized_datagrams():
    with pytest.raises(ValueError, match="65535"):
        build_ipv4(SRC, DST, 17, bytes(0xFFFF - 19))
    assert len(build_ipv4(SRC, DST, 17, bytes(0xFFFF - 20))) == 0xFFFF


def test_header_record_fields():
    header = Ipv4Header(0, 20, 1, 0, 64, 17, SRC, DST)
    assert header.header_len == HEADER_LEN and not header.is_fragment


# -- addresses ------------------------------------------------------------------------------

def test_address_text():
    assert parse_addr("198.18.77.1") == SRC
    assert addr_to_str(SRC) == "198.18.77.1"
    assert parse_addr("0.0.0.0") == bytes(4) and parse_addr("255.255.255.255") == b"\xff" * 4
    assert addr_to_int(SRC) == 0xC6124D01


@pytest.mark.parametrize("text", ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.-4", "1..2.3",
                                  "a.b.c.d", "1.2.3.4 ", "1.2.3.0004", "\u0661.2.3.4",
                                  "\u00b2.2.3.4", None, 16909060, b"1.2.3.4"])
def test_bad_address_text(text):
    with pytest.raises(ValueError, match="invalid IPv4 address"):
        parse_addr(text)


def test_prefix_mask():
    assert prefix_mask(0) == 0
    assert prefix_mask(24) == 0xFFFFFF00
    assert prefix_mask(32) == 0xFFFFFFFF
    for bad in (-1, 33):
        with pytest.raises(ValueError):
            prefix_mask(bad)
