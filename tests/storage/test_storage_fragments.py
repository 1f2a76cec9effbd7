"""IP fragmentation and reassembly (lwstack.storage.fragments), IPv4 and IPv6, on virtual time.

Fragments are fed the way the host will feed them: IPv4 packets built by fragment_v4 are
parsed back with lwstack.wire.ipv4.parse_ipv4; IPv6 fragments (Fragment header + data) are
split with struct.  The Linux kernel's own fragments (captured by fragment_vectors_capture.py
beside this file) are reassembled, and fragment_v4 / fragment_v6 must produce the same bytes
from the same datagram; dpkt parses our fragments as an independent reader.
"""
import itertools
import random
import struct

import dpkt
import pytest
from hypothesis import given, settings, strategies as st

from lwstack.storage.fragments import (DEFAULT_FRAGMENT_COST, Expired, FragmentReassembler,
                                       FragmentationNeeded, ParamProblem, Reassembled,
                                       fragment_v4, fragment_v6)
from lwstack.wire.checksum import internet_checksum
from lwstack.wire.ipv4 import FLAG_DF, FLAG_MF, OFFSET_MASK, parse_ipv4

SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC6 = bytes.fromhex("fd000000000000000000000000000001")
DST6 = bytes.fromhex("fd000000000000000000000000000002")
COST = DEFAULT_FRAGMENT_COST
UDP, TCP, ICMPV6, DEST_OPTS, AH, ESP, NO_NEXT = 17, 6, 58, 60, 51, 50, 59


def data(size, seed=0):
    """Deterministic bytes: byte i is (i * 13 + seed) % 251."""
    return bytes((i * 13 + seed) % 251 for i in range(size))


def feed_v4(r, packet, now, context=None):
    """Parse an IPv4 fragment as the host does and give it to ``r``."""
    ip = parse_ipv4(packet)
    flags = ip.flags_fragment
    return r.add_v4(ip.src, ip.dst, ip.protocol, ip.ident, (flags & OFFSET_MASK) * 8,
                    bool(flags & FLAG_MF), packet[ip.header_len:ip.total_len], now,
                    header_len=ip.header_len, context=context)


def split_v6(fragment):
    """A Fragment header + data (as fragment_v6 returns) -> (next_header, offset, more, ident,
    data)."""
    next_header, _, field, ident = struct.unpack_from("!BBHI", fragment)
    return next_header, field & 0xFFF8, bool(field & 1), ident, fragment[8:]


def feed_v6(r, fragment, now, context=None, src=SRC6, dst=DST6, unfragmentable_len=0):
    next_header, offset, more, ident, body = split_v6(fragment)
    return r.add_v6(src, dst, ident, offset, more, next_header, body, now,
                    unfragmentable_len=unfragmentable_len, context=context)


def v4(r, offset, size, more, now=0.0, ident=7, protocol=UDP, src=SRC4, context=None,
       seed=0):
    """A hand-made IPv4 fragment: bytes [offset, offset + size) of data(65535, seed)."""
    return r.add_v4(src, DST4, protocol, ident, offset, more,
                    data(offset + size, seed)[offset:], now, context=context)


def v6(r, offset, size, more, now=0.0, ident=7, next_header=UDP, src=SRC6, context=None,
       body=None, unfragmentable_len=0):
    if body is None:
        body = data(offset + size)[offset:]
    return r.add_v6(src, DST6, ident, offset, more, next_header, body, now,
                    unfragmentable_len=unfragmentable_len, context=context)


def check_empty(r):
    assert len(r) == 0
    assert r.memory == 0
    assert r.poll_at() is None


# -- the Linux kernel's fragments ------------------------------------------------------------
# From fragment_vectors_capture.py (Linux 6.18, iputils ping, veth MTU 1280, IPv4 route
# "mtu lock 576"): the Ethernet + IP (+ Fragment) headers of each fragment of one echo
# request, and the first 24 bytes of the ICMP message (header and ping's timestamp).  The rest
# of the message is ping's fill pattern (data byte j is j & 0xFF) and was checked against the
# captured frames byte for byte; the ICMP checksums below verify it again.

KERNEL_V4_HEADERS = [bytes.fromhex(h) for h in (
    "02000000790202000000790108004500023c461d20004001e87bc6124f01c6124f02",
    "02000000790202000000790108004500023c461d20454001e836c6124f01c6124f02",
    "02000000790202000000790108004500007c461d008a400109b2c6124f01c6124f02",
)]
KERNEL_V4_MESSAGE = bytes.fromhex("080001fc0bbb0001775a016b0000000095650d0000000000") + \
    bytes(j & 0xFF for j in range(16, 1200))
KERNEL_V6_HEADERS = [bytes.fromhex(h) for h in (
    "02000000790202000000790186dd60063e2404d82c40fd000079000000000000000000000001"
    "fd0000790000000000000000000000023a0000011f8ca752",
    "02000000790202000000790186dd60063e2404d82c40fd000079000000000000000000000001"
    "fd0000790000000000000000000000023a0004d11f8ca752",
    "02000000790202000000790186dd60063e2400342c40fd000079000000000000000000000001"
    "fd0000790000000000000000000000023a0009a01f8ca752",
)]
KERNEL_V6_MESSAGE = bytes.fromhex("800056660bbc0001775a016b00000000c1720d0000000000") + \
    bytes(j & 0xFF for j in range(16, 2500))
KERNEL_V6_SRC = bytes.fromhex("fd000079000000000000000000000001")
KERNEL_V6_DST = bytes.fromhex("fd000079000000000000000000000002")


def kernel_packets(headers, message):
    """The packets as the kernel sent them: each captured header (Ethernet removed) followed
    by the next bytes of ``message``, as many as the IP length field says (IPv4 total length;
    IPv6 payload length, which counts the Fragment header)."""
    packets, offset = [], 0
    for header in headers:
        ip = header[14:]
        if ip[0] >> 4 == 4:
            end = struct.unpack_from("!H", ip, 2)[0]
        else:
            end = 40 + struct.unpack_from("!H", ip, 4)[0]
        size = end - len(ip)
        packets.append(ip + message[offset:offset + size])
        offset += size
    return packets


def kernel_v4_packets():
    """The three IPv4 packets of the kernel's fragmented echo request."""
    return kernel_packets(KERNEL_V4_HEADERS, KERNEL_V4_MESSAGE)


def kernel_v6_packets():
    """The three IPv6 packets of the kernel's fragmented echo request."""
    return kernel_packets(KERNEL_V6_HEADERS, KERNEL_V6_MESSAGE)


def icmpv6_checksum_ok(src, dst, message):
    pseudo = src + dst + struct.pack("!I3xB", len(message), ICMPV6)
    return internet_checksum(pseudo + message) == 0


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_kernel_ipv4_fragments_reassemble_in_any_order(order):
    packets = kernel_v4_packets()
    r = FragmentReassembler()
    results = [feed_v4(r, packets[i], 1.0, context=i) for i in order]
    assert results[:2] == [None, None]
    done = results[2]
    assert done == Reassembled(bytes([198, 18, 79, 1]), bytes([198, 18, 79, 2]), 1,
                               KERNEL_V4_MESSAGE, 0)
    assert internet_checksum(done.payload) == 0          # the ICMP checksum covers it all
    assert r.stats["frag.reassembled"] == 1
    check_empty(r)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_kernel_ipv6_fragments_reassemble_in_any_order(order):
    packets = kernel_v6_packets()
    r = FragmentReassembler()
    results = []
    for i in order:
        packet = packets[i]
        assert packet[6] == 44                          # Next Header: Fragment
        results.append(feed_v6(r, packet[40:], 1.0, context=i, src=packet[8:24],
                               dst=packet[24:40]))
    assert results[:2] == [None, None]
    done = results[2]
    assert done == Reassembled(KERNEL_V6_SRC, KERNEL_V6_DST, ICMPV6, KERNEL_V6_MESSAGE, 0)
    assert icmpv6_checksum_ok(KERNEL_V6_SRC, KERNEL_V6_DST, done.payload)
    check_empty(r)


def test_fragment_v4_matches_the_kernel_byte_for_byte():
    packets = kernel_v4_packets()
    ident = struct.unpack_from("!H", packets[0], 4)[0]
    ours = fragment_v4(bytes([198, 18, 79, 1]), bytes([198, 18, 79, 2]), 1, KERNEL_V4_MESSAGE,
                       576, ident=ident)
    assert ours == packets


def test_fragment_v6_matches_the_kernel_byte_for_byte():
    packets = kernel_v6_packets()
    ident = struct.unpack_from("!I", packets[0], 44)[0]
    ours = fragment_v6(KERNEL_V6_MESSAGE, 1280, ident=ident, next_header=ICMPV6)
    # The IPv6 header is the caller's; take the kernel's (flow label included) for each.
    assert [packet[:4] + struct.pack("!H", len(f)) + packet[6:40] + f
            for packet, f in zip(packets, ours)] == packets


# -- fragment_v4 -----------------------------------------------------------------------------

@pytest.mark.parametrize("mtu", [68, 69, 75, 76, 576, 1006, 1280, 1500, 9000])
@pytest.mark.parametrize("size", [0, 1, 47, 48, 49, 552, 1480, 1481, 4000, 65515])
def test_fragment_v4_sizes_offsets_and_flags(mtu, size):
    payload = data(size)
    packets = fragment_v4(SRC4, DST4, UDP, payload, mtu, ident=0xBEEF, ttl=9, tos=0x10)
    chunk = (mtu - 20) // 8 * 8
    expected = 1 if size + 20 <= mtu else -(-size // chunk)
    assert len(packets) == expected
    offset = 0
    for i, packet in enumerate(packets):
        assert len(packet) <= mtu
        ip = parse_ipv4(packet)
        assert (ip.src, ip.dst, ip.protocol, ip.ident, ip.ttl, ip.tos) == \
            (SRC4, DST4, UDP, 0xBEEF, 9, 0x10)
        last = i == len(packets) - 1
        assert ip.flags_fragment == (offset >> 3) | (0 if last else FLAG_MF)
        body = packet[20:]
        if not last:
            assert len(body) == chunk
        assert body == payload[offset:offset + len(body)]
        # dpkt as an independent reader: header checksum, offset in 8-byte units, flags.
        parsed = dpkt.ip.IP(packet)
        assert parsed.offset == offset >> 3 and parsed.mf == (not last) and not parsed.df
        assert parsed.len == len(packet) and bytes(parsed.data) == body
        offset += len(body)
    assert offset == size


def test_fragment_v4_whole_datagram_keeps_df():
    (packet,) = fragment_v4(SRC4, DST4, UDP, data(1480), 1500, ident=3, dont_fragment=True)
    assert parse_ipv4(packet).flags_fragment == FLAG_DF
    (packet,) = fragment_v4(SRC4, DST4, UDP, data(1480), 1500, ident=3)
    assert parse_ipv4(packet).flags_fragment == 0


def test_fragment_v4_refuses_with_df():
    with pytest.raises(FragmentationNeeded) as info:
        fragment_v4(SRC4, DST4, UDP, data(1481), 1500, ident=3, dont_fragment=True)
    assert (info.value.size, info.value.mtu) == (1501, 1500)
    assert isinstance(info.value, ValueError)


def test_fragment_v4_misuse():
    with pytest.raises(ValueError, match="minimum"):
        fragment_v4(SRC4, DST4, UDP, data(100), 67, ident=1)
    with pytest.raises(ValueError, match="65535"):
        fragment_v4(SRC4, DST4, UDP, data(65516), 1500, ident=1)
    with pytest.raises(ValueError, match="identification"):
        fragment_v4(SRC4, DST4, UDP, data(100), 1500, ident=0x10000)


# -- fragment_v6 -----------------------------------------------------------------------------

@pytest.mark.parametrize("mtu", [1280, 1281, 1288, 1500, 9000])
@pytest.mark.parametrize("unfragmentable_len", [0, 8, 24])
@pytest.mark.parametrize("size", [0, 1, 1232, 1233, 3000, 65535 - 24])
def test_fragment_v6_sizes_offsets_and_flags(mtu, unfragmentable_len, size):
    payload = data(size)
    fragments = fragment_v6(payload, mtu, ident=0xDEADBEEF, next_header=UDP,
                            unfragmentable_len=unfragmentable_len)
    chunk = (mtu - 40 - unfragmentable_len - 8) // 8 * 8
    assert len(fragments) == max(1, -(-size // chunk))
    offset = 0
    for i, fragment in enumerate(fragments):
        assert 40 + unfragmentable_len + len(fragment) <= mtu
        next_header, frag_offset, more, ident, body = split_v6(fragment)
        last = i == len(fragments) - 1
        assert (next_header, frag_offset, more, ident) == (UDP, offset, not last, 0xDEADBEEF)
        assert fragment[1] == 0 and fragment[3] & 6 == 0      # reserved fields zero
        if not last:
            assert len(body) == chunk
        assert body == payload[offset:offset + len(body)]
        parsed = dpkt.ip6.IP6FragmentHeader(fragment)
        assert (parsed.nxt, parsed.frag_off * 8, parsed.m_flag, parsed.id) == \
            (UDP, offset, int(not last), 0xDEADBEEF)
        offset += len(body)
    assert offset == size


def test_fragment_v6_misuse():
    with pytest.raises(ValueError, match="minimum"):
        fragment_v6(data(2000), 1279, ident=1, next_header=UDP)
    with pytest.raises(ValueError, match="65535"):
        fragment_v6(data(65530), 1280, ident=1, next_header=UDP, unfragmentable_len=8)
    with pytest.raises(ValueError, match="no room"):
        fragment_v6(data(2000), 1280, ident=1, next_header=UDP, unfragmentable_len=1232)
    with pytest.raises(ValueError, match="identification"):
        fragment_v6(data(2000), 1280, ident=-1, next_header=UDP)


# -- round trips -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_round_trip_v4_many_sizes_mtus_orders_and_duplicates(seed):
    rng = random.Random(seed)
    r = FragmentReassembler()
    now = 0.0
    for n in range(60):
        size = rng.choice([rng.randrange(1, 200), rng.randrange(1, 9000),
                           rng.randrange(60000, 65516)])
        mtu = rng.choice([68, 576, 1006, 1280, 1500, rng.randrange(68, 9001)])
        payload = data(size, seed=n)
        packets = fragment_v4(SRC4, DST4, UDP, payload, mtu, ident=n)
        if len(packets) == 1:
            continue
        order = packets + rng.sample(packets, k=min(3, len(packets)))   # duplicates too
        rng.shuffle(order)
        results = [feed_v4(r, p, now) for p in order]
        done = [x for x in results if x is not None]
        # Duplicates that arrive after completion start a datagram of their own, which may
        # complete again (IP delivers duplicates) or expire.
        assert done and all(x.payload == payload and x.protocol == UDP for x in done)
        assert results.index(done[0]) >= len(packets) - 1
        now += 31.0
        for expired in r.poll(now):
            assert expired.src == SRC4
        check_empty(r)


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_v6_many_sizes_mtus_orders_and_duplicates(seed):
    rng = random.Random(100 + seed)
    r = FragmentReassembler()
    now = 0.0
    for n in range(40):
        size = rng.choice([rng.randrange(1300, 5000), rng.randrange(60000, 65536 - 16)])
        mtu = rng.choice([1280, 1500, rng.randrange(1280, 9001)])
        unfragmentable_len = rng.choice([0, 16])
        payload = data(size, seed=n)
        fragments = fragment_v6(payload, mtu, ident=n * 1000003, next_header=UDP,
                                unfragmentable_len=unfragmentable_len)
        order = fragments + rng.sample(fragments, k=min(2, len(fragments)))
        rng.shuffle(order)
        results = [feed_v6(r, f, now, unfragmentable_len=unfragmentable_len) for f in order]
        done = [x for x in results if x is not None]
        assert done and all(x.payload == payload and x.protocol == UDP for x in done)
        now += 61.0
        r.poll(now)
        check_empty(r)
        assert not r.errors


def test_interleaved_datagrams_of_both_families():
    """Fragments of several datagrams, both families, shuffled together."""
    rng = random.Random(7)
    r = FragmentReassembler()
    wanted, stream = {}, []
    for n in range(8):
        payload = data(3000 + 100 * n, seed=n)
        wanted[("4", n)] = payload
        stream += [("4", n, p) for p in fragment_v4(SRC4, DST4, UDP, payload, 576, ident=n)]
        payload6 = data(4000 + 100 * n, seed=50 + n)
        wanted[("6", n)] = payload6
        stream += [("6", n, f) for f in fragment_v6(payload6, 1280, ident=n, next_header=TCP)]
    rng.shuffle(stream)
    got = {}
    for family, n, item in stream:
        done = feed_v4(r, item, 1.0) if family == "4" else feed_v6(r, item, 1.0)
        if done is not None:
            got[(family, n)] = done.payload
    assert got == wanted
    check_empty(r)


# -- reassembly details ----------------------------------------------------------------------

def test_result_carries_fragment_zeros_context_and_protocol():
    r = FragmentReassembler()
    assert v6(r, 8, 8, False, next_header=99, context="last") is None
    assert r.memory == 8 + COST and len(r) == 1
    done = v6(r, 0, 8, True, next_header=UDP, context="zero")
    # RFC 8200 4.5: only fragment zero's Next Header counts.
    assert done == Reassembled(SRC6, DST6, UDP, data(16), "zero")


def test_a_whole_ipv4_datagram_passes_through():
    r = FragmentReassembler()
    v4(r, 8, 8, True)                                   # a datagram in progress, ident 7
    done = v4(r, 0, 20, False, context="whole")
    assert done == Reassembled(SRC4, DST4, UDP, data(20), "whole")
    assert len(r) == 1


def test_ipv6_atomic_fragment_does_not_touch_datagrams_in_progress():
    r = FragmentReassembler()
    v6(r, 8, 8, True)
    done = v6(r, 0, 24, False, context="atomic")       # RFC 6946
    assert done == Reassembled(SRC6, DST6, UDP, data(24), "atomic")
    assert r.stats["frag.atomic"] == 1
    assert len(r) == 1 and r.memory == 8 + COST
    assert v6(r, 0, 8, True) is None
    assert v6(r, 16, 4, False).payload == data(20)


def test_keys_separate_datagrams():
    r = FragmentReassembler()
    # IPv4: the protocol is part of the key; so are the addresses and the identification.
    v4(r, 0, 8, True, protocol=UDP)
    v4(r, 0, 8, True, protocol=TCP)
    v4(r, 0, 8, True, ident=8)
    v4(r, 0, 8, True, src=bytes([10, 0, 0, 9]))
    v6(r, 0, 8, True)
    v6(r, 0, 8, True, src=DST6)
    assert len(r) == 6
    assert v4(r, 8, 1, False, protocol=TCP).protocol == TCP
    assert v6(r, 8, 2, False, src=DST6).src == DST6
    assert len(r) == 4


def test_zero_length_last_fragment_ends_the_datagram():
    r = FragmentReassembler()
    assert v4(r, 16, 0, False) is None                  # total length 16, nothing held
    assert r.memory == 0 and len(r) == 1
    assert v4(r, 8, 8, True) is None
    assert v4(r, 0, 8, True).payload == data(16)


def test_duplicates_are_dropped_alone():
    r = FragmentReassembler()
    assert v4(r, 0, 16, True) is None
    assert v4(r, 0, 16, True) is None
    assert r.stats["drop.frag_duplicate"] == 1
    assert r.memory == 16 + COST
    assert v4(r, 32, 5, False) is None
    assert v4(r, 32, 5, False) is None                  # a duplicate of the last one
    assert r.stats["drop.frag_duplicate"] == 2
    assert v4(r, 16, 16, True).payload == data(37)


@pytest.mark.parametrize("offset,size,more", [
    (8, 16, True),      # straddles the end of [0, 16)
    (0, 8, True),       # inside it, same start
    (8, 8, True),       # inside it, same end
    (24, 16, True),     # straddles the start of [32, 48)
    (0, 48, True),      # covers both
    (16, 24, True),     # fills the hole and more
    (40, 8, False),     # a last fragment inside held data: wrong total length too
])
@pytest.mark.parametrize("family", [4, 6])
def test_overlaps_discard_the_whole_datagram(family, offset, size, more):
    r = FragmentReassembler()
    add = v4 if family == 4 else v6
    add(r, 0, 16, True, context="zero")
    add(r, 32, 16, True)
    assert add(r, offset, size, more) is None
    assert r.stats["drop.frag_overlap"] + r.stats["drop.frag_bad_end"] == 1
    assert r.memory == 0
    # RFC 5722: the fragments not yet received are discarded too, until the timeout.
    assert add(r, 16, 16, True) is None
    assert add(r, 48, 4, False) is None
    assert r.stats["drop.frag_discarded_datagram"] == 2
    assert len(r) == 1 and r.memory == 0
    timeout = 30.0 if family == 4 else 60.0
    assert r.poll_at() == timeout
    assert r.poll(timeout) == []                        # a tombstone expires silently
    check_empty(r)
    # The key is free again afterwards.
    add(r, 0, 8, True, now=timeout + 1)
    assert add(r, 8, 3, False, now=timeout + 1).payload == data(11)


@pytest.mark.parametrize("family", [4, 6])
def test_fragments_that_contradict_the_total_length(family):
    add = v4 if family == 4 else v6
    r = FragmentReassembler()
    add(r, 16, 8, False)                                # total length 24
    assert add(r, 24, 8, True) is None                  # data beyond it
    assert r.stats["drop.frag_bad_end"] == 1 and r.memory == 0
    r = FragmentReassembler()
    add(r, 16, 8, True)
    assert add(r, 8, 4, False) is None                  # a last fragment below held data
    assert r.stats["drop.frag_bad_end"] == 1
    r = FragmentReassembler()
    add(r, 16, 8, False)
    assert add(r, 32, 8, False) is None                 # a second, different last fragment
    assert r.stats["drop.frag_bad_end"] == 1
    assert add(r, 0, 8, True) is None                   # and the datagram is gone
    assert r.stats["drop.frag_discarded_datagram"] == 1


def test_ipv4_length_checks():
    r = FragmentReassembler()
    assert v4(r, 0, 12, True) is None                   # not a multiple of 8, MF set
    assert v4(r, 0, 0, True) is None
    assert r.stats["drop.frag_bad_length"] == 1 and r.stats["drop.frag_empty"] == 1
    # RFC 791: 65535 bytes with the header at most ("ping of death" beyond).
    assert v4(r, 65528, 8, False) is None
    assert r.stats["drop.frag_too_big"] == 1
    assert len(r) == 0
    big = r.add_v4(SRC4, DST4, UDP, 9, 65512, False, bytes(3), 0.0)   # ends at 65515
    assert big is None and len(r) == 1
    assert r.add_v4(SRC4, DST4, UDP, 10, 65504, False, bytes(3), 0.0, header_len=40) is None
    assert r.stats["drop.frag_too_big"] == 2
    assert not r.errors                                 # no ICMP for IPv4 fragments


def test_ipv6_length_checks_answer_with_parameter_problems():
    r = FragmentReassembler()
    assert v6(r, 0, 12, True, context="c1") is None
    # RFC 8200 4.5: code 0 pointing at the Payload Length.
    assert r.errors == [ParamProblem(SRC6, DST6, 0, 4, "c1")]
    assert v6(r, 65528, 8, False, context="c2") is None
    # code 0 pointing at the Fragment Offset: IPv6 header (40) + Fragment header offset 2.
    assert r.errors[1] == ParamProblem(SRC6, DST6, 0, 42, "c2")
    assert v6(r, 65512, 16, False, unfragmentable_len=16, context="c3") is None
    assert r.errors[2] == ParamProblem(SRC6, DST6, 0, 58, "c3")
    assert r.stats["drop.frag_bad_length"] == 1 and r.stats["drop.frag_too_big"] == 2
    assert v6(r, 0, 0, True) is None
    assert r.stats["drop.frag_empty"] == 1 and len(r.errors) == 3
    assert len(r) == 0
    assert v6(r, 65528, 7, False) is None               # 65535 exactly is fine
    assert len(r) == 1 and len(r.errors) == 3


def _options(next_header, length_units, fill=0):
    """A Destination Options / Hop-by-Hop header of (length_units + 1) * 8 bytes."""
    return bytes([next_header, length_units]) + bytes([fill]) * (length_units * 8 + 6)


@pytest.mark.parametrize("next_header,body,complete", [
    (UDP, bytes(8), True),
    (UDP, bytes(7) + b"x", True),
    (TCP, bytes(16), False),                            # TCP needs 20 bytes
    (TCP, bytes(24), True),
    (ICMPV6, bytes(8), True),
    (DEST_OPTS, _options(UDP, 0) + bytes(8), True),
    (DEST_OPTS, _options(UDP, 1) + bytes(8), True),
    (DEST_OPTS, _options(UDP, 1), False),               # no UDP header after the options
    (DEST_OPTS, _options(TCP, 0) + bytes(8), False),
    (DEST_OPTS, _options(DEST_OPTS, 0) + _options(UDP, 2)[:16], False),   # options cut
    (AH, bytes([UDP, 4]) + bytes(22) + bytes(8), True),  # (4 + 2) * 4 = 24 bytes of AH
    (AH, bytes([UDP, 4]) + bytes(22), False),
    (ESP, bytes(8), True),
    (NO_NEXT, bytes(8), True),
    (DEST_OPTS, _options(NO_NEXT, 0), True),
    (200, bytes(8), True),                              # unknown upper layer: 1 byte suffices
])
def test_ipv6_first_fragment_must_hold_the_header_chain(next_header, body, complete):
    r = FragmentReassembler()
    assert len(body) % 8 == 0
    assert v6(r, 0, 0, True, next_header=next_header, body=body, context="f0") is None
    if complete:
        assert not r.errors and len(r) == 1
    else:
        # RFC 8200 4.5 / RFC 7112: Parameter Problem code 3, pointer 0; fragment dropped.
        assert r.errors == [ParamProblem(SRC6, DST6, 3, 0, "f0")]
        assert r.stats["drop.frag_incomplete_chain"] == 1
        assert len(r) == 0


def test_later_fragments_are_not_walked():
    r = FragmentReassembler()
    assert v6(r, 8, 8, True, next_header=TCP) is None   # 8 bytes, not fragment zero
    assert not r.errors


def test_parameter_problem_queue_is_bounded():
    r = FragmentReassembler(max_errors=2)
    for n in range(5):
        v6(r, 0, 12, True, context=n)
    assert [e.context for e in r.errors] == [3, 4]
    assert r.stats["frag.errors_overflow"] == 3
    r = FragmentReassembler(max_errors=0)
    v6(r, 0, 12, True)
    assert r.errors == [] and r.stats["drop.frag_bad_length"] == 1


# -- timeouts ------------------------------------------------------------------------------

def test_ipv4_timeout_reports_fragment_zero():
    r = FragmentReassembler()
    v4(r, 0, 8, True, now=100.0, context="zero")
    v4(r, 16, 8, False, now=125.0)                      # later fragments do not restart it
    assert r.poll_at() == 130.0
    assert r.poll(129.999) == []
    expired = r.poll(130.0)
    assert expired == [Expired(SRC4, DST4, "zero")]
    assert expired[0].first_arrived
    assert r.stats["frag.timeout"] == 1
    check_empty(r)


def test_ipv4_timeout_without_fragment_zero_asks_for_no_icmp():
    r = FragmentReassembler()
    v4(r, 8, 8, True, now=5.0)
    (expired,) = r.poll(35.0)
    assert expired == Expired(SRC4, DST4, None) and not expired.first_arrived


def test_ipv6_timeout_is_60_seconds():
    r = FragmentReassembler()
    v6(r, 0, 8, True, now=10.0, context="zero")
    v6(r, 8, 8, True, now=20.0, ident=8)
    assert r.poll(69.0) == [] and r.poll_at() == 70.0
    assert r.poll(70.0) == [Expired(SRC6, DST6, "zero")]
    assert r.poll_at() == 80.0
    assert r.poll(80.0) == [Expired(SRC6, DST6, None)]
    check_empty(r)


def test_timeouts_of_both_families_and_poll_at():
    r = FragmentReassembler(timeout_v4=5.0, timeout_v6=2.0)
    v4(r, 8, 8, True, now=0.0)
    v6(r, 8, 8, True, now=1.0)
    assert r.poll_at() == 3.0
    assert r.poll(3.0) == [Expired(SRC6, DST6, None)]
    assert r.poll_at() == 5.0
    assert r.poll(10.0) == [Expired(SRC4, DST4, None)]
    check_empty(r)


def test_expired_datagram_can_start_again():
    r = FragmentReassembler()
    v4(r, 0, 8, True, now=0.0)
    r.poll(30.0)
    assert v4(r, 8, 8, False, now=31.0) is None         # fragment zero is gone with it
    assert v4(r, 0, 8, True, now=32.0).payload == data(16)


# -- bounds ----------------------------------------------------------------------------------

def test_memory_cap_evicts_the_oldest_datagram():
    r = FragmentReassembler(max_memory=3 * (1000 + COST), fragment_cost=COST)
    v4(r, 0, 1000, True, ident=1, now=0.0)
    v6(r, 0, 1000, True, ident=2, now=1.0)
    v4(r, 0, 1000, True, ident=3, now=2.0)
    assert r.memory == 3 * (1000 + COST) and len(r) == 3
    v4(r, 1000, 1000, True, ident=3, now=3.0)           # evicts ident 1 (the oldest)
    assert r.stats["frag.evicted"] == 1 and len(r) == 2
    assert r.memory == 3 * (1000 + COST)
    assert v4(r, 1000, 1, False, ident=1) is None       # starts afresh, without fragment zero
    assert r.stats["frag.evicted"] == 2                 # at the cost of the IPv6 one
    done = v4(r, 2000, 1, False, ident=3, now=4.0)
    assert done.payload == data(2001)
    assert r.memory == 1 + COST
    assert r.poll(100.0) == [Expired(SRC4, DST4, None)]   # evicted ones are not reported
    check_empty(r)


def test_a_datagram_larger_than_the_cap_is_discarded():
    r = FragmentReassembler(max_memory=2000, fragment_cost=0)
    v4(r, 0, 1000, True, ident=1)
    v4(r, 0, 1000, True, ident=2)
    v4(r, 1000, 1000, True, ident=2)                    # evicts ident 1
    assert r.memory == 2000
    assert v4(r, 2000, 8, True, ident=2) is None        # nothing else left to evict
    assert r.stats["drop.frag_memory"] == 1
    assert r.memory == 0
    assert v4(r, 3000, 8, False, ident=2) is None       # the rest of it is discarded too
    assert r.stats["drop.frag_discarded_datagram"] == 1


def test_fragment_cost_counts_tiny_fragments():
    r = FragmentReassembler(max_memory=10 * (8 + COST))
    for k in range(10):
        v4(r, 16 * k, 8, True)
    assert r.memory == 10 * (8 + COST)
    v4(r, 160, 8, True)                                 # the one datagram cannot grow
    assert r.stats["drop.frag_memory"] == 1 and r.memory == 0


def test_datagram_count_cap_evicts_the_oldest_across_families():
    r = FragmentReassembler(max_datagrams=3)
    v6(r, 8, 8, True, ident=1, now=0.0)
    v4(r, 8, 8, True, ident=2, now=1.0)
    v6(r, 8, 8, True, ident=3, now=2.0)
    v4(r, 8, 8, True, ident=4, now=3.0)
    assert len(r) == 3 and r.stats["frag.evicted"] == 1
    # The oldest, IPv6 ident 1, was evicted: two IPv4 datagrams and one IPv6 are left.
    assert r.poll(1000.0) == [Expired(SRC4, DST4, None), Expired(SRC4, DST4, None),
                              Expired(SRC6, DST6, None)]
    r2 = FragmentReassembler(max_datagrams=1)
    v4(r2, 0, 8, True, ident=1)
    v4(r2, 0, 8, True, ident=2)
    assert v4(r2, 8, 1, False, ident=2).payload == data(9)
    assert v4(r2, 8, 1, False, ident=1) is None         # ident 1 was evicted


def test_default_fragment_cap_takes_the_largest_datagram_at_the_smallest_mtu():
    packets = fragment_v4(SRC4, DST4, UDP, data(65515), 68, ident=1)
    assert len(packets) == FragmentReassembler().max_fragments == 1365
    r = FragmentReassembler()
    results = [feed_v4(r, p, 0.0) for p in reversed(packets)]
    assert results[-1].payload == data(65515) and results.count(None) == 1364


def test_fragments_per_datagram_cap():
    r = FragmentReassembler(max_fragments=4)
    for k in range(4):
        v4(r, 16 * k, 8, True)
    assert v4(r, 64, 8, True) is None
    assert r.stats["drop.frag_too_many"] == 1 and r.memory == 0
    # Exactly max_fragments pieces complete fine.
    r = FragmentReassembler(max_fragments=3)
    v4(r, 0, 8, True)
    v4(r, 8, 8, True)
    assert v4(r, 16, 8, False).payload == data(24)


def test_data_is_copied():
    r = FragmentReassembler()
    buf = bytearray(data(16))
    r.add_v4(SRC4, DST4, UDP, 1, 0, True, memoryview(buf)[:8], 0.0)
    buf[:8] = bytes(8)                                  # the receive buffer is reused
    assert r.add_v4(SRC4, DST4, UDP, 1, 8, False, memoryview(buf)[8:], 0.0).payload == data(16)


def test_constructor_checks_bounds():
    with pytest.raises(ValueError):
        FragmentReassembler(max_memory=0)
    with pytest.raises(ValueError):
        FragmentReassembler(max_fragments=0)
    with pytest.raises(ValueError):
        FragmentReassembler(timeout_v6=0)


# -- arbitrary input -------------------------------------------------------------------------

_fragment = st.tuples(
    st.sampled_from([4, 6]),                    # family
    st.integers(0, 2),                          # identification
    st.integers(0, 12).map(lambda k: 8 * k),    # offset
    st.sampled_from([0, 1, 5, 8, 16, 24]),      # size
    st.booleans(),                              # more fragments
    st.floats(0, 5),                            # time step
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_fragment, max_size=40), st.integers(1, 6), st.integers(1, 4))
def test_arbitrary_fragments_keep_the_books_straight(fragments, max_fragments, max_datagrams):
    """Whatever arrives: no exception, the bounds hold, memory is the sum of what is held,
    and anything handed back is a contiguous run of the sender's bytes."""
    cost = 16
    r = FragmentReassembler(max_memory=4 * (16 + cost), max_fragments=max_fragments,
                            max_datagrams=max_datagrams, fragment_cost=cost,
                            timeout_v4=6.0, timeout_v6=9.0)
    now = 0.0
    for family, ident, offset, size, more, step in fragments:
        now += step
        r.poll(now)
        body = data(offset + size)[offset:]
        if family == 4:
            done = r.add_v4(SRC4, DST4, UDP, ident, offset, more, body, now)
        else:
            done = r.add_v6(SRC6, DST6, ident, offset, more, UDP, body, now)
        if done is not None:
            assert done.payload == data(len(done.payload))
        held = [d for table in (r._v4, r._v6) for d in table.values()]
        assert len(held) == len(r) <= max_datagrams
        assert r.memory == sum(d.cost for d in held) <= r.max_memory
        for d in held:
            assert len(d.pieces) <= max_fragments
            assert d.cost == sum(end - start + cost for start, end, _ in d.pieces)
            assert d.received == sum(end - start for start, end, _ in d.pieces)
            assert all(a[1] <= b[0] for a, b in zip(d.pieces, d.pieces[1:]))
            if d.dead:
                assert not d.pieces and d.first is None
    r.poll(now + 10.0)
    check_empty(r)
