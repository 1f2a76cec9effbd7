"""The path-MTU cache (lwstack.iface.pmtu): RFC 1191 / RFC 8201 learning, floors, ageing and
the bound, on virtual time."""
import pytest

from lwstack.iface.pmtu import DEFAULT_EXPIRES, PathMtuCache

A4, B4 = bytes([10, 0, 1, 1]), bytes([10, 0, 1, 2])
A6 = bytes.fromhex("20010db8000000000000000000000001")
B6 = bytes.fromhex("20010db8000000000000000000000002")


def test_unknown_destination_uses_the_link_mtu():
    cache = PathMtuCache()
    assert cache.mtu_for(A4, 1500, 0.0) == 1500
    assert cache.dont_fragment(A4, 0.0)
    assert len(cache) == 0 and cache.poll_at() is None


def test_learning_lowers_the_estimate_per_destination():
    cache = PathMtuCache()
    assert cache.learn(A4, 1400, 10.0, link_mtu=1500)
    assert cache.mtu_for(A4, 1500, 11.0) == 1400
    assert cache.mtu_for(B4, 1500, 11.0) == 1500        # only that destination
    assert cache.learn(A6, 1300, 10.0)
    assert cache.mtu_for(A6, 1500, 11.0) == 1300
    assert cache.stats["learnt"] == 2 and len(cache) == 2


def test_the_link_mtu_still_bounds_a_learnt_value():
    cache = PathMtuCache()
    cache.learn(A4, 1400, 0.0)
    assert cache.mtu_for(A4, 1280, 1.0) == 1280          # the link shrank since


def test_increases_are_ignored():
    """RFC 8201 section 4 / RFC 1191 section 6.1: never raise the estimate from a report."""
    cache = PathMtuCache()
    cache.learn(A4, 1200, 0.0, link_mtu=1500)
    assert not cache.learn(A4, 1400, 1.0, link_mtu=1500)
    assert cache.mtu_for(A4, 1500, 2.0) == 1200
    # Reports at or above the link MTU cannot be about our packets.
    assert not cache.learn(B4, 1500, 1.0, link_mtu=1500)
    assert not cache.learn(B4, 9000, 1.0, link_mtu=1500)
    assert len(cache) == 1 and cache.stats["ignored_increase"] == 3


def test_a_further_decrease_is_learnt():
    cache = PathMtuCache()
    cache.learn(A6, 1450, 0.0, link_mtu=1500)
    assert cache.learn(A6, 1400, 100.0, link_mtu=1500)
    assert cache.mtu_for(A6, 1500, 101.0) == 1400
    assert cache.poll_at() == 100.0 + DEFAULT_EXPIRES


def test_ipv6_never_goes_below_1280():
    """RFC 8201 section 4: a report below the IPv6 minimum link MTU sets 1280."""
    cache = PathMtuCache()
    assert cache.learn(A6, 1000, 0.0, link_mtu=1500)
    assert cache.mtu_for(A6, 1500, 1.0) == 1280
    assert cache.dont_fragment(A6, 1.0)                 # nothing like IPv4's lock
    assert cache.stats["clamped"] == 1
    assert not cache.learn(A6, 0, 2.0, link_mtu=1500)   # 1280 again: no decrease
    assert cache.mtu_for(A6, 1500, 3.0) == 1280


@pytest.mark.parametrize("reported", [0, 68, 296, 551])
def test_ipv4_below_the_floor_is_used_at_the_floor_without_df(reported):
    """Linux's min_pmtu (552): smaller reports, and old routers' 0, lock the route MTU at the
    floor and the packets go without DF so that routers fragment them."""
    cache = PathMtuCache()
    assert cache.learn(A4, reported, 0.0, link_mtu=1500)
    assert cache.mtu_for(A4, 1500, 1.0) == 552
    assert not cache.dont_fragment(A4, 1.0)
    assert cache.dont_fragment(B4, 1.0)
    # A later in-range report at the floor keeps the lock until the entry expires.
    cache.learn(A4, 552, 10.0, link_mtu=1500)
    assert not cache.dont_fragment(A4, 11.0)
    assert cache.dont_fragment(A4, 10.0 + DEFAULT_EXPIRES)


def test_ipv4_floor_is_configurable():
    cache = PathMtuCache(min_mtu_v4=68)
    assert cache.learn(A4, 296, 0.0, link_mtu=1500)
    assert cache.mtu_for(A4, 1500, 1.0) == 296 and cache.dont_fragment(A4, 1.0)
    with pytest.raises(ValueError):
        PathMtuCache(min_mtu_v4=67)
    with pytest.raises(ValueError):
        PathMtuCache(min_mtu_v6=1279)


def test_entries_expire_after_ten_minutes():
    """RFC 8201 section 5.3 / Linux mtu_expires: after 600 s the link MTU is tried again."""
    cache = PathMtuCache()
    cache.learn(A4, 1400, 50.0)
    assert cache.poll_at() == 650.0
    assert cache.poll(649.9) == []
    assert cache.mtu_for(A4, 1500, 649.9) == 1400
    assert cache.poll(650.0) == [A4]
    assert cache.mtu_for(A4, 1500, 650.0) == 1500
    assert cache.stats["expired"] == 1 and cache.poll_at() is None


def test_lookups_ignore_expired_entries_without_poll():
    cache = PathMtuCache(expires=10.0)
    cache.learn(A4, 1400, 0.0)
    assert cache.mtu_for(A4, 1500, 10.0) == 1500
    assert len(cache) == 0
    # And after expiry a higher report is a decrease from the link MTU again.
    cache.learn(B4, 1400, 0.0)
    assert cache.learn(B4, 1450, 20.0, link_mtu=1500)
    assert cache.mtu_for(B4, 1500, 21.0) == 1450


def test_a_repeated_report_restarts_the_timer():
    cache = PathMtuCache(expires=100.0)
    cache.learn(A4, 1400, 0.0)
    cache.learn(B4, 1400, 10.0)
    assert not cache.learn(A4, 1400, 50.0)              # not lowered, but confirmed
    assert cache.poll_at() == 110.0                     # B4 is now the oldest
    assert cache.poll(110.0) == [B4]
    assert cache.mtu_for(A4, 1500, 149.0) == 1400
    assert cache.poll(150.0) == [A4]


def test_the_cache_is_bounded_and_drops_the_oldest():
    cache = PathMtuCache(max_entries=3)
    dsts = [bytes([10, 0, 2, k]) for k in range(5)]
    for k, dst in enumerate(dsts):
        cache.learn(dst, 1400 - k, float(k))
    assert len(cache) == 3 and cache.stats["evicted"] == 2
    assert [cache.mtu_for(dst, 1500, 5.0) for dst in dsts] == [1500, 1500, 1398, 1397, 1396]
    with pytest.raises(ValueError):
        PathMtuCache(max_entries=0)


def test_forget():
    cache = PathMtuCache()
    cache.learn(A6, 1300, 0.0)
    cache.forget(A6)
    cache.forget(B6)                                    # unknown: nothing happens
    assert cache.mtu_for(A6, 1500, 1.0) == 1500 and len(cache) == 0
