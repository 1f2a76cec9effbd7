"""MemorySwitch: synchronous delivery, seeded impairments, bounded queues, threads."""
import errno
import threading

import pytest

from vde.memory import MemorySwitch

BROADCAST = b"\xff" * 6


def mac(n):
    return bytes([0x02, 0, 0, 0, n >> 8, n & 0xFF])


def frame(dst, src, tag=0):
    """A 60-byte frame whose payload carries ``tag`` (to check order and identity)."""
    return dst + src + b"\x88\xb5" + tag.to_bytes(4, "big") + bytes(42)


def tag_of(data):
    return int.from_bytes(data[14:18], "big")


def test_unicast_and_broadcast_delivery():
    switch = MemorySwitch(8)
    a, b, c = switch.plug(), switch.plug(), switch.plug()
    a.send(frame(BROADCAST, mac(1), 1), 0.0)
    assert [tag_of(f) for f in b.receive(0.0)] == [1]
    assert [tag_of(f) for f in c.receive(0.0)] == [1]
    assert a.receive(0.0) == []
    b.send(frame(mac(1), mac(2), 2), 0.0)
    assert [tag_of(f) for f in a.receive(0.0)] == [2]
    assert c.receive(0.0) == []


def test_endpoints_sharing_a_port_do_not_hear_each_other():
    switch = MemorySwitch(8)
    first, second = switch.plug(3), switch.plug(3)
    other = switch.plug()
    assert first.number == second.number == 3
    first.send(frame(BROADCAST, mac(1), 7), 0.0)
    assert second.receive(0.0) == []
    assert len(other.receive(0.0)) == 1
    other.send(frame(BROADCAST, mac(2), 8), 0.0)
    assert len(first.receive(0.0)) == len(second.receive(0.0)) == 1


def test_delay_holds_frames_until_due():
    switch = MemorySwitch(4)
    a, b = switch.plug(), switch.plug(delay=0.05)
    a.send(frame(BROADCAST, mac(1), 1), 1.0)
    assert b.next_delivery() == pytest.approx(1.05)
    assert b.receive(1.04) == []
    assert len(b.receive(1.05)) == 1
    assert b.next_delivery() is None


def test_jitter_stays_within_bounds():
    switch = MemorySwitch(4, seed=3)
    a, b = switch.plug(), switch.plug(delay=0.01, jitter=0.02)
    for i in range(200):
        a.send(frame(BROADCAST, mac(1), i), 0.0)
    assert b.receive(0.0099) == []
    assert len(b.receive(0.03)) == 200


def run_impaired(seed, count=2000, **impairments):
    switch = MemorySwitch(4, seed=seed, queue_limit=10 * count)
    a, b = switch.plug(), switch.plug(**impairments)
    for i in range(count):
        a.send(frame(BROADCAST, mac(1), i), i * 0.0001)
    return [tag_of(f) for f in b.receive(1000.0)], b.stats


def test_same_seed_same_deliveries_other_seed_different():
    impairments = dict(loss=0.1, duplicate=0.05, reorder=0.05, jitter=0.001)
    first = run_impaired(42, **impairments)
    assert run_impaired(42, **impairments) == first
    assert run_impaired(43, **impairments)[0] != first[0]


def test_loss_rate_matches_probability():
    tags, stats = run_impaired(1, count=4000, loss=0.25)
    assert 900 <= stats["lost"] <= 1100
    assert len(tags) == 4000 - stats["lost"]
    assert tags == sorted(tags)


def test_duplication_delivers_extra_copies():
    tags, stats = run_impaired(2, count=4000, duplicate=0.1)
    assert 300 <= stats["duplicated"] <= 500
    assert len(tags) == 4000 + stats["duplicated"]
    assert set(tags) == set(range(4000))


def test_reordered_frames_are_overtaken():
    tags, stats = run_impaired(5, count=4000, reorder=0.1)
    assert 300 <= stats["reordered"] <= 500
    assert sorted(tags) == list(range(4000))
    inversions = sum(1 for x, y in zip(tags, tags[1:]) if x > y)
    assert inversions >= stats["reordered"] // 2


def test_delivery_queue_is_bounded_and_overflow_counted():
    switch = MemorySwitch(4, queue_limit=10)
    a, b = switch.plug(), switch.plug()
    for i in range(25):
        a.send(frame(BROADCAST, mac(1), i), 0.0)
    assert b.stats["queue_full"] == 15
    assert switch.core.ports[b.number].drops == {"queue_full": 15}
    assert [tag_of(f) for f in b.receive(0.0)] == list(range(10))


def test_close_releases_the_port_and_later_use_raises_ebadf():
    switch = MemorySwitch(2)
    a, b = switch.plug(), switch.plug()
    b.close()
    assert b.number not in switch.core.ports
    a.send(frame(BROADCAST, mac(1)), 0.0)
    for call in (lambda: b.send(frame(BROADCAST, mac(2)), 0.0), lambda: b.receive(0.0)):
        with pytest.raises(OSError) as error:
            call()
        assert error.value.errno == errno.EBADF
    assert switch.plug().number == b.number


def test_mutable_frames_are_copied():
    switch = MemorySwitch(2)
    a, b = switch.plug(), switch.plug()
    data = bytearray(frame(BROADCAST, mac(1), 5))
    a.send(data, 0.0)
    data[14:18] = b"\0\0\0\0"
    assert tag_of(b.receive(0.0)[0]) == 5


def test_listener_wakes_a_reader_thread():
    switch = MemorySwitch(4)
    a, b = switch.plug(), switch.plug()
    arrived = threading.Event()
    received = []

    def reader():
        assert arrived.wait(5)
        received.extend(b.receive(0.0))

    b.set_listener(arrived.set)
    thread = threading.Thread(target=reader)
    thread.start()
    a.send(frame(BROADCAST, mac(1), 9), 0.0)
    thread.join(5)
    assert [tag_of(f) for f in received] == [9]


def test_listener_not_called_for_lost_frames():
    switch = MemorySwitch(4)
    a, b = switch.plug(), switch.plug(loss=1.0)
    calls = []
    b.set_listener(lambda: calls.append(1))
    a.send(frame(BROADCAST, mac(1)), 0.0)
    assert calls == [] and b.stats["lost"] == 1


def test_concurrent_senders_lose_nothing():
    switch = MemorySwitch(8, queue_limit=100000)
    sink = switch.plug()
    senders = [switch.plug() for _ in range(4)]

    def blast(port, base):
        for i in range(2000):
            port.send(frame(BROADCAST, mac(base), i), 0.0)

    threads = [threading.Thread(target=blast, args=(p, n + 1)) for n, p in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sink.receive(0.0)) == 8000


def test_bad_impairment_values_are_rejected():
    switch = MemorySwitch(2)
    with pytest.raises(ValueError):
        switch.plug(loss=1.5)
    with pytest.raises(ValueError):
        switch.plug(delay=-1)
