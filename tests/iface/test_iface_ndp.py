"""IPv6 neighbour discovery (RFC 4861) on virtual time: NUD states, the NA flag rules of 7.2.5,
queue and cache bounds, the router and prefix lists, next-hop determination and redirects."""
import ipaddress
import math
import random

import pytest

from lwstack.iface import ndp
from lwstack.iface.ndp import (DELAY, INCOMPLETE, PROBE, REACHABLE, STALE, NeighbourCache,
                               NeighbourDiscovery, PrefixInfo, RouterAdvert)


def a(text):
    """16-byte address from text."""
    return ipaddress.IPv6Address(text).packed


MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
MAC3 = bytes.fromhex("020000000003")
HOST = a("fe80::10")
R1, R2, R3 = a("fe80::1"), a("fe80::2"), a("fe80::3")


def cache(**options):
    return NeighbourCache(random.Random(7), **options)


def reachable_entry(c, addr=HOST, mac=MAC1, now=0.0):
    """Resolve ``addr`` with a solicited NA; returns the queued packet list."""
    c.enqueue(addr, b"first", now)
    waiting, _ = c.receive_na(addr, mac, now, solicited=True, override=False, router=False)
    return waiting


def run(c, until):
    """Poll at every time poll_at() names up to ``until``; returns [(time, requests, failed)]."""
    log = []
    while True:
        when = c.poll_at()
        if when is None or when > until:
            return log
        requests, failed = c.poll(when)
        log.append((when, requests, failed))


# -- helpers with vectors --------------------------------------------------------------------

def test_solicited_node_and_multicast_mac_rfc_examples():
    # RFC 4291 2.7.1: 4037::01:800:200E:8C6C -> FF02::1:FF0E:8C6C.
    group = ndp.solicited_node(a("4037::01:800:200E:8C6C"))
    assert group == a("ff02::1:ff0e:8c6c")
    # RFC 2464 7: 33-33 followed by the last four octets of the group.
    assert ndp.multicast_mac(group) == bytes.fromhex("3333ff0e8c6c")
    assert ndp.multicast_mac(ndp.ALL_NODES) == bytes.fromhex("333300000001")


def test_solicitation_records():
    multicast = ndp.solicitation(HOST)
    assert multicast == ("ns", HOST, a("ff02::1:ff00:10"), None, True,
                         bytes.fromhex("3333ff000010"), None)
    assert ndp.solicitation(HOST, MAC1) == ("ns", HOST, HOST, None, True, MAC1, None)
    dad = ndp.solicitation(HOST, src=ndp.UNSPECIFIED, nonce=b"123456")
    assert dad.src == ndp.UNSPECIFIED and dad.source_lladdr is False and dad.nonce == b"123456"


def test_lifetime_and_mask_helpers():
    assert ndp.lifetime(0xFFFFFFFF) == math.inf and ndp.lifetime(600) == 600.0
    assert ndp.mask_prefix(a("2001:db8:1:2:3:4:5:6"), 64) == a("2001:db8:1:2::")
    assert ndp.mask_prefix(a("2001:db8::1"), 0) == bytes(16)
    with pytest.raises(ValueError):
        ndp.mask_prefix(HOST, 129)


# -- address resolution (7.2.2) ----------------------------------------------------------

def test_incomplete_three_multicast_solicitations_then_failure():
    lost = []
    c = cache(on_unreachable=lost.append)
    request, dropped = c.enqueue(HOST, b"p1", 0.0)
    assert request == (HOST, None) and dropped is None
    assert c.enqueue(HOST, b"p2", 0.2) == (None, None)  # no second resolution
    assert c.state(HOST, 0.5) == INCOMPLETE
    assert c.lookup(HOST, 0.5) == (None, None)
    log = run(c, 10.0)
    assert log == [(1.0, [(HOST, None)], []), (2.0, [(HOST, None)], []),
                   (3.0, [], [b"p1", b"p2"])]
    assert HOST not in c.entries and lost == [HOST]
    assert c.stats["resolution_failed"] == 1 and c.poll_at() is None


def test_solicited_na_resolves_and_releases_queue():
    c = cache()
    c.enqueue(HOST, b"p1", 0.0)
    c.enqueue(HOST, b"p2", 0.0)
    waiting, cleared = c.receive_na(HOST, MAC1, 0.4, solicited=True, override=True,
                                    router=False)
    assert waiting == [b"p1", b"p2"] and cleared is False
    assert c.state(HOST, 0.4) == REACHABLE
    assert c.reachable(HOST, 0.4) == (MAC1, 0.4 + c.reachable_time)
    assert c.lookup(HOST, 1.0) == (MAC1, None)
    assert not c.entries[HOST].pending


def test_unsolicited_na_in_incomplete_goes_stale_and_delay_for_the_queue():
    c = cache()
    c.enqueue(HOST, b"p", 0.0)
    waiting, _ = c.receive_na(HOST, MAC1, 0.5, solicited=False, override=True, router=False)
    # 7.2.5: STALE; the queued packet is sent at once, which is a use: DELAY (7.3.3).
    assert waiting == [b"p"] and c.state(HOST, 0.5) == DELAY
    assert c.entries[HOST].deadline == 5.5


def test_na_without_target_lladdr_cannot_resolve():
    c = cache()
    c.enqueue(HOST, b"p", 0.0)
    assert c.receive_na(HOST, None, 0.5, solicited=True, override=True,
                        router=False) == ([], False)
    assert c.state(HOST, 0.5) == INCOMPLETE and c.stats["na_no_lladdr"] == 1


def test_na_for_unknown_neighbour_is_discarded():
    c = cache()
    assert c.receive_na(HOST, MAC1, 0.0, solicited=False, override=True,
                        router=True) == ([], False)
    assert c.entries == {} and c.stats["na_no_entry"] == 1


# -- NUD (7.3) -------------------------------------------------------------------------------

def test_reachable_stale_delay_probe_then_deleted():
    lost = []
    c = cache(on_unreachable=lost.append)
    reachable_entry(c)
    expiry = c.reachable_time
    assert c.state(HOST, expiry - 0.001) == REACHABLE
    assert c.state(HOST, expiry) == STALE
    assert c.reachable(HOST, expiry) is None
    # Using a STALE entry sends with the cached MAC and starts DELAY.
    assert c.lookup(HOST, 40.0) == (MAC1, None)
    assert c.state(HOST, 40.0) == DELAY
    log = run(c, 100.0)
    assert log == [(45.0, [(HOST, MAC1)], []), (46.0, [(HOST, MAC1)], []),
                   (47.0, [(HOST, MAC1)], []), (48.0, [], [])]
    assert HOST not in c.entries and lost == [HOST] and c.stats["probe_failed"] == 1


def test_probe_state_uses_cached_mac_until_deleted():
    c = cache()
    reachable_entry(c)
    c.lookup(HOST, 40.0)
    c.poll(45.0)
    assert c.state(HOST, 45.5) == PROBE
    assert c.lookup(HOST, 45.5) == (MAC1, None)  # PROBE still sends to the old MAC


def test_upper_layer_confirmation_in_delay_avoids_probes():
    c = cache()
    reachable_entry(c)
    c.lookup(HOST, 40.0)
    assert c.confirm(HOST, 43.0) is True
    assert c.state(HOST, 43.0) == REACHABLE
    assert c.reachable(HOST, 43.0) == (MAC1, 43.0 + c.reachable_time)
    assert [r for _, r, _ in run(c, 60.0) if r] == []


def test_confirm_extends_reachable_and_ignores_unresolved():
    c = cache()
    reachable_entry(c)
    c.confirm(HOST, 10.0)
    assert c.entries[HOST].deadline == 10.0 + c.reachable_time
    c.enqueue(R1, b"x", 10.0)
    assert c.confirm(R1, 10.0) is False and c.state(R1, 10.0) == INCOMPLETE
    assert c.confirm(a("fe80::99"), 10.0) is False


def test_solicited_na_in_probe_makes_reachable():
    c = cache()
    reachable_entry(c)
    c.lookup(HOST, 40.0)
    c.poll(45.0)
    c.receive_na(HOST, None, 45.3, solicited=True, override=False, router=False)
    assert c.state(HOST, 45.3) == REACHABLE and c.entries[HOST].probes == 0
    assert run(c, 60.0) == []


def test_unused_stale_entries_are_collected():
    c = cache(stale_time=60.0)
    reachable_entry(c)
    expiry = c.reachable_time
    assert c.poll_at() == expiry + 60.0
    assert run(c, 1000.0) == [(expiry + 60.0, [], [])]
    assert c.entries == {} and c.stats["gc"] == 1


# -- the NA rules of 7.2.5 on a resolved entry -------------------------------------------

# (state before, override, solicited, lladdr, state after, mac after)
NA_MATRIX = [
    (REACHABLE, False, False, MAC2, STALE, MAC1),    # different, no O: REACHABLE -> STALE only
    (REACHABLE, False, True, MAC2, STALE, MAC1),
    (STALE, False, True, MAC2, STALE, MAC1),         # different, no O: ignored
    (STALE, False, False, MAC2, STALE, MAC1),
    (REACHABLE, False, False, MAC1, REACHABLE, MAC1),  # same address: no change without S
    (STALE, False, True, MAC1, REACHABLE, MAC1),
    (STALE, False, True, None, REACHABLE, MAC1),     # no option: S decides
    (STALE, False, False, None, STALE, MAC1),
    (REACHABLE, True, False, MAC2, STALE, MAC2),     # O: take it; not solicited -> STALE
    (STALE, True, True, MAC2, REACHABLE, MAC2),      # O and S: REACHABLE at the new address
    (DELAY, True, False, MAC1, DELAY, MAC1),         # same address, no S: unchanged
    (PROBE, True, True, MAC1, REACHABLE, MAC1),
    (PROBE, False, False, MAC2, PROBE, MAC1),
]


def entry_in(state):
    c = cache()
    reachable_entry(c, now=0.0)
    now = 1.0
    if state in (STALE, DELAY, PROBE):
        now = 100.0
        c.state(HOST, now)
        if state != STALE:
            c.lookup(HOST, now)
        if state == PROBE:
            now = 105.0
            c.poll(now)
    assert c.state(HOST, now) == state
    return c, now


@pytest.mark.parametrize("before,override,solicited,lladdr,after,mac", NA_MATRIX)
def test_na_flag_matrix(before, override, solicited, lladdr, after, mac):
    c, now = entry_in(before)
    c.receive_na(HOST, lladdr, now, solicited=solicited, override=override, router=False)
    assert c.state(HOST, now) == after
    assert c.entries[HOST].mac == mac


def test_na_router_flag_cleared_is_reported():
    c = cache()
    reachable_entry(c)
    c.set_router(HOST, True)
    _, cleared = c.receive_na(HOST, MAC1, 1.0, solicited=False, override=False, router=True)
    assert cleared is False and c.entries[HOST].is_router
    _, cleared = c.receive_na(HOST, MAC1, 2.0, solicited=False, override=False, router=False)
    assert cleared is True and not c.entries[HOST].is_router
    # An NA ignored for a changed address without O does not touch IsRouter either.
    c.set_router(HOST, True)
    assert c.receive_na(HOST, MAC2, 3.0, solicited=False, override=False,
                        router=False) == ([], False)
    assert c.entries[HOST].is_router


# -- learning from solicitations (7.2.3) ------------------------------------------------

def test_ns_creates_stale_entry_and_updates_changed_address():
    c = cache()
    assert c.learn(HOST, MAC1, 0.0) == []
    entry = c.entries[HOST]
    assert (entry.state, entry.mac, entry.is_router) == (STALE, MAC1, False)
    c.confirm(HOST, 1.0)
    c.learn(HOST, MAC1, 2.0)                  # same address: no change
    assert c.state(HOST, 2.0) == REACHABLE
    c.learn(HOST, MAC2, 3.0)                  # new address: STALE
    assert (c.state(HOST, 3.0), c.entries[HOST].mac) == (STALE, MAC2)
    assert c.stats["mac_changed"] == 1


def test_ns_resolves_an_incomplete_entry():
    c = cache()
    c.enqueue(HOST, b"q", 0.0)
    assert c.learn(HOST, MAC1, 0.3) == [b"q"]
    assert c.state(HOST, 0.3) == DELAY and c.lookup(HOST, 0.3) == (MAC1, None)


def test_learn_without_lladdr_only_sets_router_flag():
    c = cache()
    assert c.learn(HOST, None, 0.0, is_router=True) == [] and c.entries == {}
    c.learn(HOST, MAC1, 0.0)
    c.learn(HOST, None, 0.0, is_router=True)
    assert c.entries[HOST].is_router


# -- bounds ----------------------------------------------------------------------------------

def test_pending_queue_bound_drops_oldest():
    c = cache(max_pending=2)
    c.enqueue(HOST, b"1", 0.0)
    c.enqueue(HOST, b"2", 0.0)
    assert c.enqueue(HOST, b"3", 0.0) == (None, b"1")
    assert list(c.entries[HOST].pending) == [b"2", b"3"]
    assert c.stats["pending_overflow"] == 1


def test_cache_bound_evicts_idle_entries_and_refuses_when_all_wait():
    c = cache(max_entries=2)
    c.learn(R1, MAC1, 0.0)
    c.learn(R2, MAC2, 1.0)
    assert c.enqueue(R3, b"x", 2.0) == ((R3, None), None)
    assert R1 not in c.entries and c.stats["evicted"] == 1   # least recently updated
    c.enqueue(HOST, b"y", 2.0)                                # evicts R2
    assert set(c.entries) == {R3, HOST}
    assert c.enqueue(a("fe80::77"), b"z", 2.0) == (None, b"z")  # both wait: refused
    assert c.stats["cache_full"] == 1


def test_enqueue_on_resolved_neighbour_is_a_caller_error():
    c = cache()
    reachable_entry(c)
    with pytest.raises(ValueError):
        c.enqueue(HOST, b"p", 1.0)
    with pytest.raises(ValueError):
        NeighbourCache(max_entries=0)


# -- ReachableTime (6.3.2, 6.3.4) -------------------------------------------------------------

def test_reachable_time_is_randomised_and_recomputed():
    twin = random.Random(7)
    c = cache(recompute_interval=300.0)
    first = 30.0 * twin.uniform(0.5, 1.5)
    assert c.reachable_time == first and 15.0 <= first <= 45.0
    reachable_entry(c, now=0.0)
    assert c.entries[HOST].deadline == first
    c.confirm(HOST, 299.0)                     # same draw until the interval is over
    assert c.entries[HOST].deadline == 299.0 + first
    c.confirm(HOST, 300.0)
    second = 30.0 * twin.uniform(0.5, 1.5)
    assert c.entries[HOST].deadline == 300.0 + second
    c.set_base_reachable_time(30.0, 301.0)     # unchanged base: no new draw
    assert c.reachable_time == second
    c.set_base_reachable_time(10.0, 302.0)
    third = 10.0 * twin.uniform(0.5, 1.5)
    assert c.reachable_time == third and 5.0 <= third <= 15.0


def test_reachable_time_bounds_over_many_draws():
    c = NeighbourCache(random.Random(1), recompute_interval=1.0)
    draws = set()
    for step in range(2000):
        c._reachable_time(float(step))
        draws.add(c.reachable_time)
    assert min(draws) >= 15.0 and max(draws) <= 45.0
    assert min(draws) < 16.0 and max(draws) > 44.0


# -- router list, prefix list, next hop -------------------------------------------------------

def nd(**options):
    return NeighbourDiscovery(random.Random(3), **options)


def ra(source=R1, lifetime=1800.0, lladdr=None, prefixes=(), **fields):
    return RouterAdvert(source=source, router_lifetime=lifetime, source_lladdr=lladdr,
                        prefixes=tuple(prefixes), **fields)


def test_ra_adds_router_and_learns_its_address():
    d = nd()
    assert d.receive_ra(ra(lladdr=MAC1), 0.0) == []
    assert d.routers == {R1: 1800.0}
    entry = d.cache.entries[R1]
    assert (entry.state, entry.mac, entry.is_router) == (STALE, MAC1, True)


def test_ra_refresh_expiry_and_zero_lifetime():
    d = nd()
    d.receive_ra(ra(lifetime=100.0), 0.0)
    d.receive_ra(ra(lifetime=100.0), 50.0)
    assert d.routers[R1] == 150.0 and d.poll_at() == 150.0
    d.poll(149.9)
    assert R1 in d.routers
    d.poll(150.0)
    assert d.routers == {} and d.stats["router_expired"] == 1
    d.receive_ra(ra(lifetime=100.0), 200.0)
    d.receive_ra(ra(lifetime=0.0), 201.0)       # router lifetime 0: removed at once
    assert d.routers == {} and d.poll_at() is None


def test_ra_resolves_a_waiting_router_and_sets_router_flag_without_option():
    d = nd()
    d.cache.enqueue(R1, b"p", 0.0)
    assert d.receive_ra(ra(lladdr=MAC1), 0.5) == [b"p"]
    d.cache.learn(R2, MAC2, 0.0)
    d.receive_ra(ra(source=R2), 1.0)
    assert d.cache.entries[R2].is_router


def test_ra_parameters_for_nud():
    d = nd()
    d.receive_ra(ra(reachable_time=10.0, retrans_timer=2.5), 0.0)
    assert d.cache.base_reachable_time == 10.0 and 5.0 <= d.cache.reachable_time <= 15.0
    assert d.cache.retrans_time == 2.5
    d.cache.enqueue(HOST, b"p", 1.0)
    assert d.poll_at() == 3.5


def test_router_list_is_bounded():
    d = nd(max_routers=2)
    for router in (R1, R2, R3):
        d.receive_ra(ra(source=router), 0.0)
    assert list(d.routers) == [R1, R2] and d.stats["router_list_full"] == 1
    d.receive_ra(ra(source=R1, lifetime=10.0), 1.0)   # known routers still refresh
    assert d.routers[R1] == 11.0


def test_default_router_selection_prefers_reachable_then_round_robin():
    d = nd()
    for router in (R1, R2, R3):
        d.receive_ra(ra(source=router), 0.0)
    # None known: round robin, each router in turn.
    assert [d.default_router(0.0) for _ in range(4)] == [R1, R2, R3, R1]
    d.cache.learn(R3, MAC3, 1.0)                        # STALE: probably reachable
    assert d.default_router(1.0) == R3
    d.cache.learn(R2, MAC2, 1.0)
    d.cache.confirm(R2, 1.0)                            # REACHABLE beats STALE
    assert d.default_router(1.0) == R2
    d.cache.enqueue(R1, b"p", 1.0)                      # INCOMPLETE is not preferred
    assert d.default_router(1.0) == R2


def test_next_hop_determination():
    d = nd()
    assert d.next_hop(a("2001:db8::9"), 0.0) is None    # no router, not on-link: unreachable
    assert d.next_hop(HOST, 0.0) == HOST                # link-local: on-link
    assert d.next_hop(a("ff02::1:ff00:1"), 0.0) == a("ff02::1:ff00:1")
    d.receive_ra(ra(prefixes=[PrefixInfo(a("2001:db8:1::"), 64, valid_lifetime=600.0)]), 0.0)
    assert d.next_hop(a("2001:db8:1::5"), 0.0) == a("2001:db8:1::5")
    assert d.next_hop(a("2001:db8:2::5"), 0.0) == R1
    assert a("2001:db8:1::5") not in d.destinations     # on-link answers are not cached
    assert d.destinations[a("2001:db8:2::5")].next_hop == R1


def test_destination_keeps_its_router_until_it_fails_nud():
    d = nd()
    d.receive_ra(ra(source=R1), 0.0)
    d.receive_ra(ra(source=R2), 0.0)
    far = a("2001:db8:9::1")
    assert d.next_hop(far, 0.0) == R1                   # round robin starts at R1
    assert d.next_hop(far, 0.1) == R1                   # remembered, not round robin
    d.cache.enqueue(R1, b"p", 0.1)
    failed = []
    t = d.poll_at()
    while t is not None and t < 10.0:
        failed += d.poll(t)[1]
        t = d.poll_at()
    assert failed == [b"p"] and far not in d.destinations
    assert d.next_hop(far, 5.0) == R2


def test_router_removal_forgets_its_destinations():
    d = nd()
    d.receive_ra(ra(source=R1), 0.0)
    d.receive_ra(ra(source=R2), 0.0)
    far = a("2001:db8:9::1")
    assert d.next_hop(far, 0.0) == R1
    d.receive_ra(ra(source=R1, lifetime=0.0), 1.0)
    assert d.next_hop(far, 1.0) == R2


def test_na_clearing_router_flag_removes_the_router():
    d = nd()
    d.receive_ra(ra(source=R1, lladdr=MAC1), 0.0)
    far = a("2001:db8:9::1")
    assert d.next_hop(far, 0.0) == R1
    d.receive_na(R1, MAC1, 1.0, solicited=False, override=True, router=False)
    assert d.routers == {} and d.next_hop(far, 1.0) is None


def test_prefix_list_rules():
    d = nd(max_prefixes=2)
    p1 = a("2001:db8:1::")
    d.receive_ra(ra(prefixes=[PrefixInfo(p1, 64, valid_lifetime=600.0)]), 0.0)
    assert d.prefixes == {(p1, 64): 600.0}
    d.receive_ra(ra(prefixes=[PrefixInfo(p1, 64, valid_lifetime=100.0)]), 10.0)
    assert d.prefixes == {(p1, 64): 110.0}              # reset to the new lifetime
    d.receive_ra(ra(prefixes=[PrefixInfo(p1, 64, valid_lifetime=0.0)]), 20.0)
    assert d.prefixes == {}                             # 0: timed out at once
    d.receive_ra(ra(prefixes=[
        PrefixInfo(p1, 64, valid_lifetime=0.0),                         # new with 0: ignored
        PrefixInfo(a("fe80::"), 64, valid_lifetime=600.0),              # link-local: ignored
        PrefixInfo(a("2001:db8:5::"), 64, on_link=False, valid_lifetime=600.0),  # L=0
        PrefixInfo(a("2001:db8:2:ff::1"), 48, valid_lifetime=math.inf),  # masked
    ]), 30.0)
    assert d.prefixes == {(a("2001:db8:2::"), 48): math.inf}
    d.receive_ra(ra(prefixes=[PrefixInfo(a("2001:db8:3::"), 64, valid_lifetime=60.0),
                              PrefixInfo(a("2001:db8:4::"), 64, valid_lifetime=60.0)]), 40.0)
    assert len(d.prefixes) == 2 and d.stats["prefix_list_full"] == 1
    assert d.poll_at() == 100.0
    d.poll(100.0)
    assert list(d.prefixes) == [(a("2001:db8:2::"), 48)] and d.stats["prefix_expired"] == 1


def test_new_on_link_prefix_overrides_a_remembered_router_choice():
    d = nd()
    d.receive_ra(ra(), 0.0)
    dst = a("2001:db8:1::5")
    assert d.next_hop(dst, 0.0) == R1
    d.receive_ra(ra(prefixes=[PrefixInfo(a("2001:db8:1::"), 64, valid_lifetime=60.0)]), 1.0)
    assert d.next_hop(dst, 1.0) == dst


def test_static_router_and_prefix_ignore_ras():
    d = nd()
    d.add_router(R1)
    d.add_prefix(a("fd00::1"), 64)
    d.receive_ra(ra(source=R1, lifetime=0.0,
                    prefixes=[PrefixInfo(a("fd00::"), 64, valid_lifetime=0.0)]), 0.0)
    assert d.routers == {R1: math.inf} and d.prefixes == {(a("fd00::"), 64): math.inf}
    assert d.poll_at() is None
    assert d.next_hop(a("fd00::9"), 0.0) == a("fd00::9")
    assert d.next_hop(a("2001:db8::9"), 0.0) == R1
    d.remove_router(R1)
    d.remove_prefix(a("fd00::"), 64)
    assert d.routers == {} and d.prefixes == {} and d.destinations == {}


def test_destination_cache_is_bounded_lru():
    d = nd(max_destinations=2)
    d.receive_ra(ra(), 0.0)
    x, y, z = a("2001:db8::1"), a("2001:db8::2"), a("2001:db8::3")
    for dst in (x, y, x, z):
        d.next_hop(dst, 0.0)
    assert list(d.destinations) == [x, z]


# -- redirect (8.3) ----------------------------------------------------------------------------

def test_redirect_to_a_better_router():
    d = nd()
    d.receive_ra(ra(source=R1), 0.0)
    far = a("2001:db8:9::1")
    d.next_hop(far, 0.0)
    assert d.receive_redirect(R1, R2, far, MAC2, 1.0) == []
    assert d.next_hop(far, 1.0) == R2
    entry = d.cache.entries[R2]
    assert (entry.state, entry.mac, entry.is_router) == (STALE, MAC2, True)
    # A redirect survives a change of default routers: it is not a default-router choice.
    d.receive_ra(ra(source=R1, lifetime=0.0), 2.0)
    assert d.next_hop(far, 2.0) == R2


def test_redirect_to_an_on_link_destination_releases_waiting_packets():
    d = nd()
    d.receive_ra(ra(source=R1), 0.0)
    near = a("2001:db8:9::7")
    d.next_hop(near, 0.0)
    d.cache.enqueue(near, b"w", 0.5)
    assert d.receive_redirect(R1, near, near, MAC3, 1.0) == [b"w"]
    assert d.next_hop(near, 1.0) == near and not d.cache.entries[near].is_router


def test_redirect_validation():
    d = nd()
    d.receive_ra(ra(source=R1), 0.0)
    far = a("2001:db8:9::1")
    d.receive_redirect(R2, R3, far, None, 1.0)           # not our first hop for far
    d.receive_redirect(R1, a("2001:db8::3"), far, None, 1.0)   # global router target
    d.receive_redirect(R1, R2, a("ff05::1"), None, 1.0)
    assert d.next_hop(far, 1.0) == R1
    assert d.stats["drop.redirect_not_first_hop"] == 1
    assert d.stats["drop.redirect_target"] == 1
    assert d.stats["drop.redirect_multicast_destination"] == 1


def test_redirected_neighbour_failing_nud_falls_back_to_a_default_router():
    d = nd()
    d.receive_ra(ra(source=R1), 0.0)
    far = a("2001:db8:9::1")
    d.next_hop(far, 0.0)
    d.receive_redirect(R1, R2, far, None, 1.0)
    d.cache.enqueue(R2, b"p", 1.0)
    for t in (2.0, 3.0, 4.0):
        d.poll(t)
    assert d.next_hop(far, 4.0) == R1
