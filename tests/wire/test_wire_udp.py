"""UDP (RFC 768) with the pseudo-header checksum: a kernel capture, dpkt, bad input."""
import random

import dpkt
import pytest

from lwstack.wire import WireError
from lwstack.wire.checksum import internet_checksum, pseudo_header_sum
from lwstack.wire.ipv4 import build_ipv4, parse_ipv4
from lwstack.wire.udp import HEADER_LEN, PROTO_UDP, build_udp, parse_udp

# Provenance: captured with tshark on a veth pair between two Linux 6.18 network namespaces,
# with the veth's TX checksum offload turned off (ETHTOOL_STXCSUM 0) so that the kernel itself
# computed the checksum: python's socket.sendto(b"lwstack udp vector", ("198.18.77.2", 9)) from
# 198.18.77.1 port 46013 (0xb3bd); UDP checksum 0x4a8a (dpkt computes the same).
KERNEL_UDP_FRAME = bytes.fromhex(
    "02000000000202000000000108004500002ee20d400040113289c6124d01c612"
    "4d02b3bd0009001a4a8a6c77737461636b2075647020766563746f72")
KERNEL_UDP_SEGMENT = KERNEL_UDP_FRAME[34:]
# The same datagram captured with offload on: the checksum field then holds only the
# pseudo-header sum (0x2654) for the "hardware" to finish: a capture pitfall, not a checksum.
OFFLOADED_UDP_SEGMENT = bytes.fromhex("b3bd0009001a26546c77737461636b2075647020766563746f72")
SRC = bytes([198, 18, 77, 1])
DST = bytes([198, 18, 77, 2])


def test_parse_kernel_datagram():
    assert parse_udp(KERNEL_UDP_SEGMENT, SRC, DST) == (46013, 9, b"lwstack udp vector")


def test_build_reproduces_the_kernel_datagram():
    assert build_udp(SRC, DST, 46013, 9, b"lwstack udp vector") == KERNEL_UDP_SEGMENT


def test_kernel_frame_is_consistent():
    assert parse_ipv4(KERNEL_UDP_FRAME, 14).total_len == 46
    assert KERNEL_UDP_SEGMENT[6:8] == b"\x4a\x8a"


def test_offloaded_capture_holds_the_partial_pseudo_header_sum():
    assert int.from_bytes(OFFLOADED_UDP_SEGMENT[6:8], "big") == \
        pseudo_header_sum(SRC, DST, PROTO_UDP, len(OFFLOADED_UDP_SEGMENT))
    with pytest.raises(WireError) as info:
        parse_udp(OFFLOADED_UDP_SEGMENT, SRC, DST)
    assert info.value.reason == "udp_bad_checksum"


def test_checksum_covers_the_pseudo_header():
    # The same bytes between other addresses fail: the pseudo-header is part of the sum.
    with pytest.raises(WireError) as info:
        parse_udp(KERNEL_UDP_SEGMENT, SRC, bytes([198, 18, 77, 3]))
    assert info.value.reason == "udp_bad_checksum"


def test_zero_checksum_means_none():
    segment = KERNEL_UDP_SEGMENT[:6] + b"\0\0" + KERNEL_UDP_SEGMENT[8:]
    assert parse_udp(segment, SRC, bytes(4))[2] == b"lwstack udp vector"


def test_computed_zero_is_sent_as_ffff():
    # Search for a payload whose checksum computes to 0; RFC 768 sends it as all ones.
    rng = random.Random(768)
    for _ in range(200000):
        payload = rng.getrandbits(16).to_bytes(2, "big")
        segment = build_udp(SRC, DST, 1, 2, payload)
        if segment[6:8] == b"\xff\xff":
            break
    else:
        pytest.fail("no payload with a zero checksum found")
    assert internet_checksum(segment[:6] + b"\0\0" + segment[8:],
                             pseudo_header_sum(SRC, DST, PROTO_UDP, len(segment))) == 0
    assert parse_udp(segment, SRC, DST)[2] == payload


def test_bytes_beyond_the_udp_length_are_ignored():
    assert parse_udp(KERNEL_UDP_SEGMENT + b"pad", SRC, DST)[2] == b"lwstack udp vector"


@pytest.mark.parametrize("payload", [b"", b"a", b"ab", bytes(range(256)) * 5 + b"z"])
def test_dpkt_verifies_what_we_build(payload):
    segment = build_udp(SRC, DST, 5353, 53, payload)
    ip = dpkt.ip.IP(build_ipv4(SRC, DST, PROTO_UDP, segment))
    udp = ip.data
    assert isinstance(udp, dpkt.udp.UDP)
    assert (udp.sport, udp.dport, udp.ulen, udp.data) == (5353, 53, 8 + len(payload), payload)
    sent = udp.sum
    udp.sum = 0
    ip.sum = 0
    assert dpkt.ip.IP(bytes(ip)).data.sum == sent   # dpkt recomputes zero checksums when packing


def test_we_read_what_dpkt_builds():
    udp = dpkt.udp.UDP(sport=1000, dport=2000, data=b"from dpkt")
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=SRC, dst=DST, p=PROTO_UDP, data=udp)
    ip.len = len(ip)
    packet = bytes(ip)
    assert parse_udp(packet[20:], SRC, DST) == (1000, 2000, b"from dpkt")


@pytest.mark.parametrize("length", range(HEADER_LEN))
def test_truncated(length):
    with pytest.raises(WireError) as info:
        parse_udp(KERNEL_UDP_SEGMENT[:length], SRC, DST)
    assert info.value.reason == "udp_truncated"


@pytest.mark.parametrize("ulen", [0, 7, len(KERNEL_UDP_SEGMENT) + 1, 0xFFFF])
def test_bad_length(ulen):
    segment = KERNEL_UDP_SEGMENT[:4] + ulen.to_bytes(2, "big") + KERNEL_UDP_SEGMENT[6:]
    with pytest.raises(WireError) as info:
        parse_udp(segment, SRC, DST)
    assert info.value.reason == "udp_bad_length"


def test_a_flipped_payload_bit_fails_the_checksum():
    segment = bytearray(KERNEL_UDP_SEGMENT)
    segment[-1] ^= 0x80
    with pytest.raises(WireError) as info:
        parse_udp(bytes(segment), SRC, DST)
    assert info.value.reason == "udp_bad_checksum"


def test_build_refuses_oversized():
    with pytest.raises(ValueError, match="65535"):
        build_udp(SRC, DST, 1, 2, bytes(0xFFFF - 7))
