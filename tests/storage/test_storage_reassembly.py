"""The out-of-order reassembler: overlaps, merging, the memory bound, RFC 2018 SACK order."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from lwstack.storage.reassembly import Reassembler

BASE = 1_000_000          # absolute, unwrapped sequence numbers need not start at 0


def payload(start, end):
    """Deterministic bytes for sequence numbers [start, end): byte i is (i * 7) % 251."""
    return bytes((i * 7) % 251 for i in range(start, end))


def put(r, start, end):
    return r.add(start, payload(start, end))


def check_invariants(r):
    """Blocks sorted, disjoint and non-adjacent, contents right, bytes_held their sum."""
    ranges = r.ranges()
    assert ranges == sorted(ranges)
    for (_, a_end), (b_start, _) in zip(ranges, ranges[1:]):
        assert a_end < b_start
    assert r.bytes_held == sum(end - start for start, end in ranges)
    assert len(r) == len(ranges)
    assert bool(r) == bool(ranges)


def contents(r):
    """Every held block's bytes, read back through a copy that pops nothing."""
    out = {}
    for block in r._blocks:
        out[(block[0], block[1])] = bytes(block[2])
    return out


def test_empty():
    r = Reassembler(1000)
    assert len(r) == 0 and not r and r.bytes_held == 0
    assert r.pop_ready(BASE) is None
    assert r.sack_blocks() == []


def test_single_block_then_in_order_pop():
    r = Reassembler(1000)
    assert put(r, BASE + 10, BASE + 20)
    assert r and len(r) == 1 and r.bytes_held == 10
    assert r.pop_ready(BASE) is None                      # the hole [BASE, BASE+10) is open
    assert r.pop_ready(BASE + 10) == payload(BASE + 10, BASE + 20)
    assert not r and r.bytes_held == 0


def test_in_order_arrivals_above_a_hole_grow_one_block():
    r = Reassembler(10_000)
    for k in range(10):
        assert put(r, BASE + 100 + 50 * k, BASE + 150 + 50 * k)
        assert len(r) == 1
    assert r.ranges() == [(BASE + 100, BASE + 600)]
    assert r.pop_ready(BASE + 100) == payload(BASE + 100, BASE + 600)


def test_data_is_copied():
    r = Reassembler(100)
    buf = bytearray(b"abcdef")
    r.add(BASE + 5, buf)
    r.add(BASE + 20, memoryview(buf)[1:3])
    buf[:] = b"XXXXXX"
    assert r.pop_ready(BASE + 5) == b"abcdef"
    assert r.pop_ready(BASE + 20) == b"bc"


@pytest.mark.parametrize("new, held_after", [
    ((5, 15), [(5, 30)]),          # overlaps the left edge
    ((25, 35), [(10, 35)]),        # overlaps the right edge
    ((5, 35), [(5, 35)]),          # covers the block
    ((12, 18), [(10, 30)]),        # inside it (duplicate)
    ((10, 30), [(10, 30)]),        # exactly it (duplicate)
    ((0, 10), [(0, 30)]),          # touches the left edge
    ((30, 40), [(10, 40)]),        # touches the right edge
    ((0, 9), [(0, 9), (10, 30)]),  # one byte short of touching: stays apart
    ((31, 40), [(10, 30), (31, 40)]),
])
def test_overlap_on_every_side(new, held_after):
    r = Reassembler(1000)
    put(r, BASE + 10, BASE + 30)
    assert put(r, BASE + new[0], BASE + new[1])
    assert r.ranges() == [(BASE + a, BASE + b) for a, b in held_after]
    check_invariants(r)
    for (start, end), data in contents(r).items():
        assert data == payload(start, end)


def test_one_arrival_bridges_several_blocks():
    r = Reassembler(1000)
    for a, b in ((10, 20), (30, 40), (50, 60), (70, 80)):
        put(r, BASE + a, BASE + b)
    assert len(r) == 4 and r.bytes_held == 40
    assert put(r, BASE + 15, BASE + 55)                    # fills two holes, joins three blocks
    assert r.ranges() == [(BASE + 10, BASE + 60), (BASE + 70, BASE + 80)]
    assert r.bytes_held == 60
    assert put(r, BASE + 0, BASE + 100)                    # swallows everything
    assert r.ranges() == [(BASE, BASE + 100)]
    assert r.bytes_held == 100
    assert r.pop_ready(BASE) == payload(BASE, BASE + 100)


def test_duplicates_are_stored_once():
    r = Reassembler(1000)
    for _ in range(5):
        assert put(r, BASE + 100, BASE + 200)
    assert r.bytes_held == 100 and len(r) == 1


def test_limit_refuses_new_bytes_but_not_duplicates():
    r = Reassembler(100)
    assert put(r, BASE + 10, BASE + 70)                    # 60 held
    assert not put(r, BASE + 100, BASE + 141)              # 41 new: over the limit
    assert r.ranges() == [(BASE + 10, BASE + 70)] and r.bytes_held == 60
    assert not put(r, BASE + 0, BASE + 120)                # 60 new (0-10 and 70-120): refused
    assert r.ranges() == [(BASE + 10, BASE + 70)]
    assert put(r, BASE + 20, BASE + 70)                    # duplicate: always fine
    assert put(r, BASE + 60, BASE + 100)                   # 30 new: exactly the limit
    assert r.bytes_held == 90
    assert put(r, BASE + 0, BASE + 10)                     # 10 new: 100
    assert r.bytes_held == 100
    assert not put(r, BASE + 100, BASE + 101)
    assert r.pop_ready(BASE) == payload(BASE, BASE + 100)
    assert r.bytes_held == 0
    assert put(r, BASE + 200, BASE + 300)                  # room again


def test_zero_limit_and_empty_data():
    r = Reassembler(0)
    assert r.add(BASE, b"")
    assert not r.add(BASE, b"x")
    assert not r and r.bytes_held == 0


def test_max_blocks_bounds_the_number_of_holes():
    r = Reassembler(10_000, max_blocks=3)
    for k in range(3):
        assert put(r, BASE + 10 * k, BASE + 10 * k + 1)
    assert not put(r, BASE + 100, BASE + 101)              # a fourth block
    assert put(r, BASE + 1, BASE + 10)                      # merging is always allowed
    assert put(r, BASE + 100, BASE + 101)
    assert len(r) == 3


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        Reassembler(-1)
    with pytest.raises(ValueError):
        Reassembler(10, max_blocks=0)


def test_pop_ready_with_next_seq_inside_the_block():
    # The in-order path delivered part of what we hold: return only the rest.
    r = Reassembler(1000)
    put(r, BASE + 100, BASE + 200)
    assert r.pop_ready(BASE + 150) == payload(BASE + 150, BASE + 200)
    assert not r and r.bytes_held == 0


def test_pop_ready_discards_blocks_below_next_seq():
    r = Reassembler(1000)
    put(r, BASE + 10, BASE + 20)
    put(r, BASE + 30, BASE + 40)
    put(r, BASE + 50, BASE + 60)
    assert r.pop_ready(BASE + 40) is None                  # [10,20) and [30,40) are stale
    assert r.ranges() == [(BASE + 50, BASE + 60)] and r.bytes_held == 10
    assert r.pop_ready(BASE + 55) == payload(BASE + 55, BASE + 60)


def test_pop_ready_takes_only_the_lowest_block():
    r = Reassembler(1000)
    put(r, BASE + 10, BASE + 20)
    put(r, BASE + 30, BASE + 40)
    assert r.pop_ready(BASE + 10) == payload(BASE + 10, BASE + 20)
    assert r.pop_ready(BASE + 20) is None                  # hole [20, 30)
    assert r.ranges() == [(BASE + 30, BASE + 40)]


def test_sack_blocks_most_recent_first():
    # RFC 2018 section 4: the block holding the segment that triggered the ACK first, then the
    # other blocks by how recently they were reported.  Example in the spirit of section 5.
    r = Reassembler(100_000)
    put(r, BASE + 5000, BASE + 5500)     # A
    assert r.sack_blocks() == [(BASE + 5000, BASE + 5500)]
    put(r, BASE + 6000, BASE + 6500)     # B
    put(r, BASE + 7000, BASE + 7500)     # C
    put(r, BASE + 8000, BASE + 8500)     # D
    assert r.sack_blocks() == [(BASE + 8000, BASE + 8500), (BASE + 7000, BASE + 7500),
                               (BASE + 6000, BASE + 6500), (BASE + 5000, BASE + 5500)]
    put(r, BASE + 5500, BASE + 5700)     # extends A: A is the newest again
    assert r.sack_blocks(3) == [(BASE + 5000, BASE + 5700), (BASE + 8000, BASE + 8500),
                                (BASE + 7000, BASE + 7500)]
    put(r, BASE + 9000, BASE + 9500)     # E: five blocks, four reported
    assert r.sack_blocks() == [(BASE + 9000, BASE + 9500), (BASE + 5000, BASE + 5700),
                               (BASE + 8000, BASE + 8500), (BASE + 7000, BASE + 7500)]
    put(r, BASE + 6500, BASE + 7000)     # fills the B-C hole: B+C merged is the newest
    assert r.sack_blocks() == [(BASE + 6000, BASE + 7500), (BASE + 9000, BASE + 9500),
                               (BASE + 5000, BASE + 5700), (BASE + 8000, BASE + 8500)]
    put(r, BASE + 8100, BASE + 8200)     # a duplicate inside D still makes D the newest
    assert r.sack_blocks(2) == [(BASE + 8000, BASE + 8500), (BASE + 6000, BASE + 7500)]
    assert r.sack_blocks(0) == []


def test_refused_arrival_does_not_reorder_sack_blocks():
    r = Reassembler(200)
    put(r, BASE + 100, BASE + 200)
    put(r, BASE + 300, BASE + 350)
    assert not put(r, BASE + 190, BASE + 300)              # 100 new bytes: refused
    assert r.sack_blocks() == [(BASE + 300, BASE + 350), (BASE + 100, BASE + 200)]


def test_clear():
    r = Reassembler(1000)
    put(r, BASE + 10, BASE + 20)
    put(r, BASE + 30, BASE + 40)
    r.clear()
    assert not r and len(r) == 0 and r.bytes_held == 0 and r.sack_blocks() == []
    assert put(r, BASE + 10, BASE + 20) and r.bytes_held == 10


# Properties ----------------------------------------------------------------------------------

@st.composite
def arrivals(draw):
    """A byte string cut into segments, plus duplicates and overlapping retransmissions,
    in a random order."""
    data = draw(st.binary(min_size=1, max_size=300))
    n = len(data)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=20))) | {0, n})
    segments = [(a, b) for a, b in zip(cuts, cuts[1:]) if a < b]
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 60)), max_size=10))
    segments += [(a, min(n, a + length)) for a, length in extra]
    segments += draw(st.lists(st.sampled_from(segments), max_size=5))   # exact duplicates
    order = draw(st.permutations(segments))
    return data, order


@settings(max_examples=300, deadline=None)
@given(arrivals(), st.integers(0, 2**40))
def test_any_arrival_order_reassembles_the_stream(case, base):
    # What a receiver does with each segment: deliver it if it starts at or below RCV.NXT
    # (trimmed), then drain the reassembler; hold it if it is above RCV.NXT.
    data, order = case
    r = Reassembler(len(data))
    rcv_nxt = base
    delivered = []
    for a, b in order:
        start, end = base + a, base + b
        if end <= rcv_nxt:
            continue
        if start <= rcv_nxt:
            delivered.append(data[rcv_nxt - base:b])
            rcv_nxt = end
            while True:
                chunk = r.pop_ready(rcv_nxt)
                if chunk is None:
                    break
                delivered.append(chunk)
                rcv_nxt += len(chunk)
        else:
            assert r.add(start, data[a:b])                 # the window is the whole stream
        check_invariants(r)
        assert r.bytes_held <= len(data)
    assert b"".join(delivered) == data
    assert rcv_nxt == base + len(data)
    assert not r and r.bytes_held == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)), max_size=25),
       st.integers(0, 400))
def test_held_bytes_match_a_byte_map_model(adds, limit):
    # Model: a dict from sequence number to byte; an add is accepted iff its new bytes fit.
    r = Reassembler(limit)
    model = {}
    for start, length in adds:
        new = [i for i in range(start, start + length) if i not in model]
        accepted = r.add(start, payload(start, start + length))
        assert accepted == (len(model) + len(new) <= limit)
        if accepted:
            model.update((i, (i * 7) % 251) for i in new)
        check_invariants(r)
        assert r.bytes_held == len(model)
        for (s, e), chunk in contents(r).items():
            assert chunk == payload(s, e)
            assert all(i in model for i in range(s, e))
        held = {i for s, e in r.ranges() for i in range(s, e)}
        assert held == set(model)
        assert len(r.sack_blocks(limit=100)) == len(r)


def test_many_random_segments_of_a_large_stream():
    rng = random.Random(7)
    data = bytes(rng.getrandbits(8) for _ in range(200_000))
    segments = [(a, min(len(data), a + 1448)) for a in range(0, len(data), 1448)]
    rng.shuffle(segments)
    r = Reassembler(len(data))
    for a, b in segments:
        if a:                                              # hold all but the first
            assert r.add(BASE + a, data[a:b])
    assert len(r) == 1 and r.bytes_held == len(data) - 1448
    assert r.pop_ready(BASE) is None
    assert r.pop_ready(BASE + 1448) == data[1448:]
