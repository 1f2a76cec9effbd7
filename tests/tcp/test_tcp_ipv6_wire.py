"""TCP over IPv6 on the wire: lwstack.wire.tcp parses and builds IPv6 segments and whole frames
(build_tcp_frame6) byte for byte as the Linux kernel does, with the RFC 8200 section 8.1
pseudo-header in the checksum.

Vectors: frames captured from Linux 6.18 by tcp6_vectors_capture.py beside this file (two
network namespaces on a veth pair with checksum offloads off, so every checksum in them was
computed by the kernel): a connection fd00:78::1 -> fd00:78::2, and the kernel's SYN-ACK to a
SYN that lwstack built (the kernel verified lwstack's checksum; it ignored the same SYN with
one bit flipped).
"""
import pytest

from lwstack.wire import WireError
from lwstack.wire.tcp import (ACK, LINK_HEADER_LEN6, PSH, SYN, build_options, build_tcp,
                              build_tcp_frame, build_tcp_frame6, parse_tcp, parse_tcp_unchecked)

KERNEL6_SYN_FRAME = bytes.fromhex(
    "02000000000202000000000186dd600008fb00280640fd000078000000000000000000000001fd0000780000"
    "000000000000000000028a661389820274b700000000a002fd206c840000020405a00402080abf9f8f2e0000"
    "00000103030a")
KERNEL6_SYNACK_FRAME = bytes.fromhex(
    "02000000000102000000000286dd6006563200280640fd000078000000000000000000000002fd0000780000"
    "0000000000000000000113898a6605c12ede820274b8a012fb0495020000020405a00402080a707a3473bf9f"
    "8f2e0103030a")
KERNEL6_DATA_FRAME = bytes.fromhex(
    "02000000000202000000000186dd600008fb00340640fd000078000000000000000000000001fd0000780000"
    "000000000000000000028a661389820274b805c12edf80180040c10900000101080abf9f8f2e707a34736c77"
    "737461636b207463703620766563746f720a")
KERNEL6_FIN_FRAME = bytes.fromhex(
    "02000000000202000000000186dd600008fb00200640fd000078000000000000000000000001fd0000780000"
    "000000000000000000028a661389820274cc05c12edf80110040bda500000101080abf9f8ff6707a3473")
KERNEL6_REPLY_FRAME = bytes.fromhex(
    "02000000000102000000000286dd6006563200330640fd000078000000000000000000000002fd0000780000"
    "0000000000000000000113898a6605c12edf820274cd8018003f2f5e00000101080a707a353bbf9f8ff66c77"
    "737461636b2074637036207265706c790a")
KERNEL6_SYNACK_TO_LWSTACK_FRAME = bytes.fromhex(
    "02000000000302000000000286dd6007ef4100280640fd000078000000000000000000000002fd0000780000"
    "00000000000000000003138a9c4040481fca000003e9a012fb04940a0000020405a00402080ad27abc620000"
    "1b580103030a")

KERNEL6_FRAMES = {
    "syn": KERNEL6_SYN_FRAME, "synack": KERNEL6_SYNACK_FRAME, "data": KERNEL6_DATA_FRAME,
    "fin": KERNEL6_FIN_FRAME, "reply": KERNEL6_REPLY_FRAME,
    "synack_to_lwstack": KERNEL6_SYNACK_TO_LWSTACK_FRAME,
}
A = bytes.fromhex("fd000078000000000000000000000001")
B = bytes.fromhex("fd000078000000000000000000000002")
PEER = bytes.fromhex("fd000078000000000000000000000003")


def split(frame):
    """``(src, dst, segment)`` of an Ethernet/IPv6/TCP frame without extension headers."""
    assert frame[12:14] == b"\x86\xdd" and frame[20] == 6
    length = int.from_bytes(frame[18:20], "big")
    return frame[22:38], frame[38:54], frame[54:54 + length]


def test_parse_kernel_ipv6_syn():
    src, dst, segment = split(KERNEL6_SYN_FRAME)
    assert (src, dst) == (A, B)
    seg = parse_tcp(segment, src, dst)
    assert (seg.src_port, seg.dst_port, seg.flags, seg.ack, seg.window) == \
        (0x8A66, 5001, SYN, 0, 64800)
    # Linux announces MTU - 60 over IPv6 (RFC 6691): 1500 - 40 - 20.
    assert (seg.mss, seg.wscale, seg.sack_permitted, seg.has_timestamps, seg.ts_ecr) == \
        (1440, 10, True, True, 0)


def test_parse_kernel_ipv6_data_and_reply():
    src, dst, segment = split(KERNEL6_DATA_FRAME)
    seg = parse_tcp(segment, src, dst)
    assert bytes(seg.payload) == b"lwstack tcp6 vector\n" and seg.flags == PSH | ACK
    src, dst, segment = split(KERNEL6_REPLY_FRAME)
    assert (src, dst) == (B, A)
    assert bytes(parse_tcp(segment, src, dst).payload) == b"lwstack tcp6 reply\n"


def test_kernel_synack_answers_lwstacks_ipv6_syn():
    src, dst, segment = split(KERNEL6_SYNACK_TO_LWSTACK_FRAME)
    assert (src, dst) == (B, PEER)
    seg = parse_tcp(segment, src, dst)
    assert (seg.flags, seg.ack, seg.dst_port, seg.mss, seg.ts_ecr) == \
        (SYN | ACK, 1001, 40000, 1440, 7000)


@pytest.mark.parametrize("name", sorted(KERNEL6_FRAMES))
def test_ipv6_checksum_covers_the_pseudo_header(name):
    src, dst, segment = split(KERNEL6_FRAMES[name])
    parse_tcp(segment, src, dst)
    other = bytearray(dst)
    other[15] ^= 0x10                 # another destination: the sum no longer verifies
    with pytest.raises(WireError) as info:
        parse_tcp(segment, src, bytes(other))
    assert info.value.reason == "tcp_bad_checksum"
    # The IPv4 pseudo-header over the first 4 bytes of each address does not verify either.
    with pytest.raises(WireError):
        parse_tcp(segment, src[:4], dst[:4])


@pytest.mark.parametrize("name", sorted(KERNEL6_FRAMES))
def test_build_reproduces_the_kernel_ipv6_segment(name):
    src, dst, segment = split(KERNEL6_FRAMES[name])
    seg = parse_tcp(segment, src, dst)
    options = build_options(**seg.options())
    assert options == bytes(segment[20:seg.header_len])      # Linux's option layout
    built = build_tcp(src, dst, seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags,
                      seg.window, options, bytes(seg.payload))
    assert built == bytes(segment)


@pytest.mark.parametrize("name", sorted(KERNEL6_FRAMES))
def test_build_tcp_frame6_reproduces_the_kernel_frame(name):
    """The fast path: the kernel's Ethernet + IPv6 header with Payload Length zeroed is the
    link-header template; the rest is filled in one buffer."""
    frame = KERNEL6_FRAMES[name]
    src, dst, segment = split(frame)
    seg = parse_tcp(segment, src, dst)
    link = bytearray(frame[:LINK_HEADER_LEN6])
    link[18:20] = b"\0\0"
    built = build_tcp_frame6(bytes(link), seg.src_port, seg.dst_port, seg.seq, seg.ack,
                             seg.flags, seg.window, build_options(**seg.options()),
                             bytes(seg.payload))
    assert isinstance(built, bytearray) and bytes(built) == frame


def test_build_tcp_frame6_wraps_sequence_numbers_and_takes_memoryviews():
    link = KERNEL6_SYN_FRAME[:LINK_HEADER_LEN6]
    payload = memoryview(bytearray(b"abc" * 500))
    frame = build_tcp_frame6(link, 1, 2, (1 << 32) + 5, -1 & 0xFFFFFFFF, ACK, 100, b"", payload)
    src, dst, segment = split(bytes(frame))
    seg = parse_tcp(segment, src, dst)
    assert (seg.seq, seg.ack, bytes(seg.payload)) == (5, 0xFFFFFFFF, b"abc" * 500)
    assert int.from_bytes(frame[18:20], "big") == 20 + 1500


def test_ipv4_frame_builder_is_unchanged_by_ipv6():
    """build_tcp_frame keeps its 34-byte IPv4 template and its padding to 60 bytes."""
    from lwstack.wire.ipv4 import ipv4_template
    link = bytes(12) + b"\x08\x00" + ipv4_template(b"\x0a\0\0\1", b"\x0a\0\0\2", 6)
    frame = build_tcp_frame(link, 7, 1, 2, 3, 4, ACK, 5, b"", b"")
    assert len(frame) == 60
    seg = parse_tcp(bytes(frame[34:54]), b"\x0a\0\0\1", b"\x0a\0\0\2")
    assert (seg.seq, seg.ack) == (3, 4)


def test_unchecked_parse_of_a_quoted_ipv6_segment():
    """An ICMPv6 error quotes as much of the packet as fits in 1280 bytes (RFC 4443 2.4(c)):
    the TCP header parses without the pseudo-header."""
    _src, _dst, segment = split(KERNEL6_DATA_FRAME)
    seg = parse_tcp_unchecked(segment)
    assert seg.flags == PSH | ACK and bytes(seg.payload) == b"lwstack tcp6 vector\n"
