"""The Internet checksum (RFC 1071) and the IPv4 pseudo-header sum.

Both code paths of :func:`ones_sum` are checked against a naive reference: the "big integer"
pure-Python path that runs by default, and ``_ones_sum_c``, the word loop that runs when the
module is compiled by Cython (it is plain Python too, so it can be called directly here).
"""
import os
import random
import struct

import pytest
from hypothesis import given, settings, strategies as st

from lwstack.wire import checksum
from lwstack.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum


def naive_ones_sum(data, initial=0):
    """RFC 1071 section 4.1's C loop, transcribed: add 16-bit words, then fold the carries."""
    total = initial
    count = len(data)
    i = 0
    while count > 1:
        total += (data[i] << 8) | data[i + 1]
        i += 2
        count -= 2
    if count > 0:
        total += data[i] << 8   # the odd byte is the high half of a zero-padded word
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def naive_checksum(data, initial=0):
    return ~naive_ones_sum(data, initial) & 0xFFFF


# RFC 1071 section 3 ("Numerical Examples"): the bytes 00 01 f2 03 f4 f5 f6 f7 sum to
# 2ddf0 with the carries, ddf2 after folding; the checksum is its complement, 220d.
RFC1071_BYTES = bytes.fromhex("0001f203f4f5f6f7")


@pytest.mark.parametrize("impl", [ones_sum, checksum._ones_sum_c], ids=["bigint", "wordloop"])
def test_rfc1071_section3_example(impl):
    assert impl(RFC1071_BYTES, 0) == 0xDDF2
    assert internet_checksum(RFC1071_BYTES) == 0x220D


def test_rfc1071_byte_order_independence():
    # RFC 1071 section 2(B): swapping the bytes of every word swaps the bytes of the sum.
    swapped = bytes(b for i in range(0, 8, 2) for b in (RFC1071_BYTES[i + 1], RFC1071_BYTES[i]))
    assert ones_sum(swapped) == 0xF2DD


def test_verification_of_a_checksummed_block_gives_zero():
    data = bytearray(RFC1071_BYTES + b"\x00\x00")
    csum = internet_checksum(data)
    data[8:10] = csum.to_bytes(2, "big")
    assert internet_checksum(data) == 0


def test_rfc1071_example_ipv4_header():
    # The IPv4 header of a kernel-captured ICMP echo request (see test_wire_icmpv4.py):
    # checksum field 0x0d2c; the checksum over the whole header verifies to 0.
    header = bytes.fromhex("450000540755400040010d2cc6124d01c6124d02")
    assert internet_checksum(header) == 0
    zeroed = header[:10] + b"\0\0" + header[12:]
    assert internet_checksum(zeroed) == 0x0D2C


@pytest.mark.parametrize("impl", [ones_sum, checksum._ones_sum_c], ids=["bigint", "wordloop"])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 19, 20, 1479, 1480, 9216])
def test_edge_patterns_match_the_reference(impl, length):
    for data in (bytes(length), b"\xff" * length, bytes(range(256)) * (length // 256)
                 + bytes(length % 256)):
        assert impl(data, 0) == naive_ones_sum(data), (length, data[:4])
        assert internet_checksum(data) == naive_checksum(data)


def test_all_zero_and_all_ones_have_the_two_zeros():
    # One's complement arithmetic has +0 (0x0000) and -0 (0xFFFF): all-zero data sums to +0,
    # any non-empty all-0xFF data to -0 (and its checksum is then 0).
    assert ones_sum(bytes(100)) == 0
    assert internet_checksum(bytes(100)) == 0xFFFF
    assert ones_sum(b"\xff" * 100) == 0xFFFF
    assert ones_sum(b"\xff" * 101) == 0xFF00  # -0 plus the padded last word ff00
    assert internet_checksum(b"\xff" * 100) == 0


@pytest.mark.parametrize("impl", [ones_sum, checksum._ones_sum_c], ids=["bigint", "wordloop"])
def test_random_data_against_the_reference(impl):
    rng = random.Random(1071)
    for _ in range(500):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        initial = rng.choice([0, 0xFFFF, rng.randrange(0x20000)])
        assert impl(data, initial) == naive_ones_sum(data, initial), (data.hex(), initial)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 0x3FFFF))
def test_property_equals_reference(data, initial):
    assert ones_sum(data, initial) == naive_ones_sum(data, initial)
    assert checksum._ones_sum_c(data, initial) == naive_ones_sum(data, initial)
    assert internet_checksum(data, initial) == naive_checksum(data, initial)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_chaining_even_pieces_equals_the_whole(head, tail):
    # ones_sum's result is meant to be chained: the sum of head then tail (head of even length)
    # equals the sum of the concatenation.
    if len(head) % 2:
        head = head[:-1]
    assert ones_sum(tail, ones_sum(head)) == ones_sum(head + tail)


def test_accepts_bytearray_and_memoryview():
    data = os.urandom(333)
    expected = naive_ones_sum(data)
    assert ones_sum(bytearray(data)) == expected
    assert ones_sum(memoryview(data)[0:333]) == expected


def test_pseudo_header_sum_matches_a_packed_pseudo_header():
    # RFC 768: source, destination, zero, protocol, UDP length.
    rng = random.Random(768)
    for _ in range(200):
        src, dst = os.urandom(4), os.urandom(4)
        length = rng.randrange(8, 0x10000)
        protocol = rng.choice([6, 17])
        packed = src + dst + struct.pack("!BBH", 0, protocol, length)
        assert pseudo_header_sum(src, dst, protocol, length) == naive_ones_sum(packed)
