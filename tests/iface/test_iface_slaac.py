"""SLAAC (RFC 4862) on virtual time: router solicitation with RFC 7559 backoff, DAD for every
address (NS and NA conflicts, looped-back probes, RFC 7217 retries, link-local failure), prefix
rules, lifetimes and the two-hour rule, RA parameters, RDNSS/DNSSL (RFC 8106)."""
import hashlib
import ipaddress
import math
import random

import pytest

from lwstack.iface import ndp
from lwstack.iface.ndp import PrefixInfo, RouterAdvert
from lwstack.iface.slaac import (DEPRECATED, DUPLICATE, PREFERRED, TENTATIVE, TWO_HOURS,
                                 Slaac)


def a(text):
    return ipaddress.IPv6Address(text).packed


ROUTER = a("fe80::1")
PREFIX = a("2001:db8:1::")


def stable(prefix, counter):
    """An RFC 7217-like generator: a different identifier for each DAD counter."""
    return prefix[:8] + hashlib.sha256(prefix + bytes([counter]) + b"secret").digest()[:8]


def eui64(prefix, counter):
    """A hardware-derived identifier: the same whatever the counter (MAC 02:00:00:00:00:05)."""
    return prefix[:8] + bytes.fromhex("000000fffe000005")


def slaac(make=stable, seed=1, **options):
    return Slaac(make, random.Random(seed), **options)


def run(s, until):
    """Poll at each time poll_at() names up to ``until``; returns [(time, outbox records)]."""
    log = []
    while True:
        when = s.poll_at()
        if when is None or when > until:
            return log
        s.poll(when)
        if s.outbox:
            log.append((when, list(s.outbox)))
            s.outbox.clear()


def events(log, kind=None):
    return [(t, r) for t, records in log for r in records if kind is None or r[0] == kind]


def ra(prefixes=(), lifetime=1800.0, **fields):
    return RouterAdvert(source=ROUTER, router_lifetime=lifetime, prefixes=tuple(prefixes),
                        **fields)


def pio(prefix=PREFIX, valid=3600.0, preferred=1800.0, **fields):
    return PrefixInfo(prefix, 64, valid_lifetime=valid, preferred_lifetime=preferred, **fields)


def configured(s, upto=20.0):
    """Start ``s`` and run until its link-local address is assigned; returns the log."""
    s.start(0.0)
    return run(s, upto)


def ll(make=stable, counter=0):
    return make(ndp.LINK_LOCAL_PREFIX, counter)


# -- link-local DAD and the RS that follow -----------------------------------------------------

def test_link_local_dad_then_router_solicitations():
    twin = random.Random(1)
    s = slaac()
    s.start(0.0)
    assert s.outbox == [] and s.is_tentative(ll())
    delay = twin.uniform(0.0, 1.0)
    assert s.poll_at() == delay
    s.poll(delay)
    added, probe = s.outbox
    assert added == ("address_added", ll(), 64, TENTATIVE)
    nonce = twin.getrandbits(48).to_bytes(6, "big")
    assert probe == ndp.Solicit("ns", ll(), ndp.solicited_node(ll()), ndp.UNSPECIFIED, False,
                                ndp.multicast_mac(ndp.solicited_node(ll())), nonce)
    s.outbox.clear()
    s.poll(delay + 0.999)
    assert s.outbox == [] and s.link_local is None
    s.poll(delay + 1.0)                      # RetransTimer after the only probe: assigned
    assert s.outbox == [("address_preferred", ll())]
    assert s.link_local == ll() and s.usable() == [(ll(), 64, PREFERRED)]
    s.outbox.clear()
    rs_at = delay + 1.0 + twin.uniform(0.0, 1.0)
    assert s.poll_at() == rs_at
    s.poll(rs_at)
    assert s.outbox == [("rs", ll())]


def test_rs_schedule_three_at_four_seconds_then_backoff_to_an_hour():
    s = slaac()
    log = configured(s, 2 * 86400.0)
    times = [t for t, r in events(log, "rs")]
    assert all(r == ("rs", ll()) for _, r in events(log, "rs"))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[:2] == [pytest.approx(4.0), pytest.approx(4.0)]
    previous = 4.0
    capped = 0
    for gap in gaps[2:]:
        if gap >= 3240.0:
            assert gap <= 3960.0              # MRT + RAND * MRT
            capped += 1
        else:
            assert 1.9 * previous <= gap <= 2.1 * previous
            assert capped == 0                # once at the ceiling, it stays there
        previous = gap
    assert capped >= 40 and len(times) < 70


def test_ra_with_router_lifetime_stops_solicitations():
    s = slaac()
    log = configured(s, 12.0)
    assert len(events(log, "rs")) == 3
    s.receive_ra(ra(lifetime=0.0), 12.0)      # not a default router: keep asking
    assert len(events(run(s, 20.0), "rs")) == 1
    s.receive_ra(ra(), 20.0)
    assert run(s, 100000.0) == []


def test_no_rs_when_a_router_advertised_before_the_link_local_was_ready():
    s = slaac()
    s.start(0.0)
    s.receive_ra(ra(), 0.1)
    assert events(run(s, 100.0), "rs") == []


def test_no_rs_when_disabled_by_configuration():
    s = slaac(router_solicit=False)
    assert events(configured(s, 1000.0), "rs") == []


# -- DAD conflicts -----------------------------------------------------------------------------

def start_dad(s, now=0.0):
    """Start ``s`` and poll until its first DAD probe went out; returns (time, probe)."""
    s.start(now)
    when = s.poll_at()
    s.poll(when)
    probe = s.outbox[-1]
    s.outbox.clear()
    return when, probe


def test_ns_from_another_node_makes_link_local_duplicate_and_rfc7217_retries():
    s = slaac()
    when, _ = start_dad(s)
    assert s.receive_ns(ll(), ndp.UNSPECIFIED, when + 0.5, nonce=b"other1") is True
    assert s.outbox == [("address_removed", ll(), "duplicate"),
                        ("dad_retry", ll(), ll(counter=1), 1)]
    assert s.is_tentative(ll(counter=1)) and ll() not in s.addresses
    s.outbox.clear()
    log = run(s, when + 10.0)
    kinds = [r[0] for _, r in events(log)]
    assert kinds[:3] == ["address_added", "ns", "address_preferred"]
    assert events(log)[0][1] == ("address_added", ll(counter=1), 64, TENTATIVE)
    assert events(log)[0][0] <= when + 0.5 + 1.0        # IDGEN_DELAY
    assert s.link_local == ll(counter=1) and s.stats["dad_retry"] == 1


def test_na_for_tentative_address_is_a_duplicate():
    s = slaac()
    when, _ = start_dad(s)
    assert s.receive_na(ll(), when + 0.2) is True
    assert s.outbox[0] == ("address_removed", ll(), "duplicate")
    assert s.stats["dad_failed"] == 1


def test_own_looped_back_probe_and_address_resolution_are_not_conflicts():
    s = slaac()
    when, probe = start_dad(s)
    assert s.receive_ns(ll(), ndp.UNSPECIFIED, when + 0.1, nonce=probe.nonce) is True
    assert s.receive_ns(ll(), a("fe80::99"), when + 0.2) is True   # not answered, not a dup
    assert s.stats["dad_looped_back"] == 1 and s.outbox == []
    s.poll(when + 1.0)
    assert s.outbox == [("address_preferred", ll())]


def test_conflict_during_the_initial_delay_is_a_duplicate_too():
    s = slaac()
    s.start(0.0)
    assert s.receive_ns(ll(), ndp.UNSPECIFIED, 0.0) is True
    assert s.outbox[0] == ("address_removed", ll(), "duplicate")
    assert s.outbox[1][0] == "dad_retry"


def test_link_local_duplicate_with_hardware_identifier_disables_ipv6():
    s = slaac(make=eui64)
    when, _ = start_dad(s)
    s.receive_ns(ll(eui64), ndp.UNSPECIFIED, when + 0.5)
    assert s.outbox == [("address_removed", ll(eui64), "duplicate"),
                        ("dad_final", ll(eui64), "link-local", "same_identifier"),
                        ("disabled", "duplicate link-local address")]
    assert s.disabled and s.addresses == {}
    s.outbox.clear()
    s.receive_ra(ra([pio()]), when + 1.0)
    assert run(s, 1000.0) == [] and s.outbox == []


def test_link_local_gives_up_after_idgen_retries():
    s = slaac()
    when, _ = start_dad(s)
    for counter in range(4):
        s.receive_na(ll(counter=counter), when)
    assert [r for r in s.outbox if r[0] == "address_removed"] == [
        ("address_removed", ll(counter=c), "duplicate") for c in range(4)]
    assert s.outbox[-2:] == [("dad_final", ll(counter=3), "link-local", "retries_exhausted"),
                             ("disabled", "duplicate link-local address")]
    assert s.stats["dad_retry"] == 3 and s.stats["dad_final.retries_exhausted"] == 1


def test_queries_after_dad():
    s = slaac()
    configured(s, 3.0)
    assert s.receive_ns(ll(), ndp.UNSPECIFIED, 3.0) is False    # assigned: the host answers
    assert s.receive_na(ll(), 3.0) is True and s.stats["na_for_assigned_address"] == 1
    assert s.receive_na(a("fe80::77"), 3.0) is False
    assert not s.is_tentative(ll())


# -- addresses from RAs ------------------------------------------------------------------------

def global_address(counter=0):
    return stable(PREFIX, counter)


def test_ra_prefix_forms_address_through_dad_and_its_lifetimes_run_out():
    s = slaac()
    configured(s, 3.0)
    s.receive_ra(ra([pio(valid=3600.0, preferred=1800.0)]), 10.0)
    addr = global_address()
    assert s.is_tentative(addr) and s.addresses[addr].prefix == PREFIX
    log = run(s, 10000.0)
    assert [(r[0], r[1]) for _, r in events(log) if r[1] == addr] == [
        ("address_added", addr), ("ns", addr), ("address_preferred", addr),
        ("address_deprecated", addr), ("address_removed", addr)]
    times = {r[0]: t for t, r in events(log) if r[1] == addr}
    assert times["address_deprecated"] == 1810.0 and times["address_removed"] == 3610.0
    assert events(log, "address_removed")[-1][1] == ("address_removed", addr, "expired")
    assert addr not in s.addresses


def test_lifetime_runs_from_the_ra_even_during_dad():
    s = slaac(dad_transmits=3)
    configured(s, 3.0)
    s.receive_ra(ra([pio(valid=2.0, preferred=1.0)]), 10.0)
    log = run(s, 20.0)
    addr = global_address()
    assert [(r[0], t) for t, r in events(log) if r[1] == addr][-1] == ("address_removed", 12.0)
    assert [r[0] for _, r in events(log) if r[1] == addr] == [
        "address_added", "ns", "ns", "address_removed"]


def test_zero_preferred_lifetime_makes_a_deprecated_address():
    s = slaac()
    configured(s, 3.0)
    s.receive_ra(ra([pio(valid=600.0, preferred=0.0)]), 10.0)
    log = run(s, 20.0)
    addr = global_address()
    assert [r[0] for _, r in events(log) if r[1] == addr] == [
        "address_added", "ns", "address_deprecated"]
    assert (addr, 64, DEPRECATED) in s.usable()


def test_deprecated_address_is_preferred_again_by_a_new_ra():
    s = slaac()
    configured(s, 3.0)
    s.receive_ra(ra([pio(valid=7000.0, preferred=100.0)]), 10.0)
    run(s, 200.0)
    addr = global_address()
    assert s.addresses[addr].state == DEPRECATED
    s.receive_ra(ra([pio(valid=7000.0, preferred=100.0)]), 200.0)
    assert s.outbox == [("address_preferred", addr)] and s.addresses[addr].state == PREFERRED
    assert s.addresses[addr].preferred_until == 300.0


@pytest.mark.parametrize("remaining,received,expected", [
    (1000.0, 9000.0, 9000.0),        # more than two hours: taken
    (1000.0, 3000.0, 3000.0),        # longer than what remains: taken
    (5000.0, 60.0, 5000.0),          # two hours or less remain: ignored
    (5000.0, 0.0, 5000.0),           # even a zero lifetime
    (90000.0, 60.0, TWO_HOURS),      # more than two hours remain: cut to two hours
    (90000.0, 0.0, TWO_HOURS),
    (math.inf, 3600.0, TWO_HOURS),   # infinite lifetimes are no exception
])
def test_two_hour_rule(remaining, received, expected):
    s = slaac(dad_transmits=0)
    now = 100.0
    s.receive_ra(ra([pio(valid=remaining, preferred=0.0)]), now)
    addr = global_address()
    assert s.addresses[addr].valid_until == now + remaining
    s.receive_ra(ra([pio(valid=received, preferred=0.0)]), now)
    assert s.addresses[addr].valid_until == now + expected


def test_prefix_information_that_forms_no_address():
    s = slaac(dad_transmits=0)
    s.receive_ra(ra([
        pio(autonomous=False),
        pio(prefix=a("fe80::")),
        pio(prefix=a("2001:db8:2::"), valid=100.0, preferred=200.0),
        pio(prefix=a("2001:db8:3::"), valid=0.0, preferred=0.0),
        PrefixInfo(a("2001:db8:4::"), 48, valid_lifetime=600.0, preferred_lifetime=600.0),
    ]), 0.0)
    assert s.addresses == {}
    assert s.stats["drop.ra_preferred_over_valid"] == 1
    assert s.stats["drop.ra_prefix_length"] == 1


def test_autoconf_off_keeps_parameters_but_forms_no_address():
    s = slaac(autoconf=False, dad_transmits=0)
    s.receive_ra(ra([pio()], cur_hop_limit=64), 0.0)
    assert s.addresses == {} and s.outbox == [("hop_limit", 64)]


def test_global_duplicate_retries_then_holds_the_prefix_until_it_expires():
    s = slaac()
    configured(s, 3.0)
    s.receive_ra(ra([pio(valid=600.0, preferred=600.0)]), 10.0)
    for counter in range(4):
        assert s.receive_na(global_address(counter), 10.0) is True
    assert [r for r in s.outbox if r[0] == "address_removed"] == [
        ("address_removed", global_address(c), "duplicate") for c in range(4)]
    holder = s.addresses[global_address(3)]
    assert holder.state == DUPLICATE and s.usable() == [(ll(), 64, PREFERRED)]
    assert s.receive_na(global_address(3), 10.0) is False       # another node's address now
    s.outbox.clear()
    s.receive_ra(ra([pio(valid=600.0, preferred=600.0)]), 20.0)   # no new attempt
    assert s.outbox == [] and list(s.addresses) == [ll(), global_address(3)]
    assert run(s, 700.0) == [] and global_address(3) not in s.addresses
    s.receive_ra(ra([pio(valid=600.0, preferred=600.0)]), 700.0)   # a fresh start
    assert s.is_tentative(global_address(0))


def test_hardware_identifier_global_duplicate_is_not_retried():
    s = slaac(make=eui64, dad_transmits=1)
    s.receive_ra(ra([pio()]), 0.0)
    s.receive_na(eui64(PREFIX, 0), 0.0)
    assert s.stats["dad_retry"] == 0 and s.addresses[eui64(PREFIX, 0)].state == DUPLICATE
    assert s.outbox[-1] == ("dad_final", eui64(PREFIX, 0), "slaac", "same_identifier")
    assert s.stats["dad_final.same_identifier"] == 1 and not s.disabled


def test_address_table_is_bounded():
    s = slaac(dad_transmits=0, max_addresses=2)
    s.receive_ra(ra([pio(prefix=a(f"2001:db8:{n}::")) for n in range(1, 4)]), 0.0)
    assert len(s.addresses) == 2 and s.stats["drop.address_table_full"] == 1


# -- configured and DHCPv6 addresses -------------------------------------------------------------

def test_configured_address_goes_through_dad():
    s = slaac(dad_transmits=2, retrans_timer=1.0)
    addr = a("fd00::5")
    s.add_address(addr, 64, 0.0)
    log = run(s, 10.0)
    kinds = [(t, r[0]) for t, r in events(log)]
    delay = kinds[0][0]
    assert kinds == [(delay, "address_added"), (delay, "ns"), (delay + 1.0, "ns"),
                     (delay + 2.0, "address_preferred")]
    assert s.addresses[addr].prefix == a("fd00::") and s.addresses[addr].origin == "manual"


def test_configured_duplicate_is_removed_without_retry():
    s = slaac()
    addr = a("fd00::5")
    s.add_address(addr, 64, 0.0, origin="dhcpv6")
    s.receive_ns(addr, ndp.UNSPECIFIED, 0.5)
    assert s.outbox == [("address_removed", addr, "duplicate")] and s.addresses == {}


def test_dhcpv6_lifetimes_update_and_release():
    s = slaac(dad_transmits=0)
    addr = a("2001:db8:1::99")
    s.add_address(addr, 128, 0.0, preferred=100.0, valid=200.0, origin="dhcpv6")
    assert s.outbox == [("address_added", addr, 128, PREFERRED)]
    s.outbox.clear()
    assert run(s, 150.0) == [(100.0, [("address_deprecated", addr)])]
    s.add_address(addr, 128, 150.0, preferred=100.0, valid=200.0, origin="dhcpv6")  # renew
    assert s.outbox == [("address_preferred", addr)] and s.addresses[addr].valid_until == 350.0
    s.outbox.clear()
    s.add_address(addr, 128, 160.0, valid=0.0, preferred=0.0)
    assert s.outbox == [("address_removed", addr, "removed")]
    with pytest.raises(ValueError):
        s.add_address(addr, 128, 0.0, preferred=10.0, valid=5.0)


# -- RA parameters -------------------------------------------------------------------------------

def test_ra_parameters_reported_on_change():
    s = slaac(dad_transmits=0, link_mtu=1500)
    s.receive_ra(ra(cur_hop_limit=64, mtu=1400, reachable_time=20.0, retrans_timer=2.0,
                    managed=True, other=True), 0.0)
    assert s.outbox == [("hop_limit", 64), ("mtu", 1400), ("reachable_time", 20.0),
                        ("retrans_timer", 2.0), ("dhcpv6", True, True)]
    s.outbox.clear()
    s.receive_ra(ra(cur_hop_limit=64, mtu=1400, reachable_time=20.0, retrans_timer=2.0,
                    managed=True, other=True), 1.0)
    assert s.outbox == []
    s.receive_ra(ra(cur_hop_limit=0, mtu=9000, managed=False, other=True), 2.0)
    assert s.outbox == [("dhcpv6", False, True)] and s.stats["drop.ra_mtu"] == 1
    s.outbox.clear()
    s.receive_ra(ra(mtu=1279, other=True), 3.0)
    assert s.outbox == [] and s.stats["drop.ra_mtu"] == 2 and s.hop_limit == 64


def test_retrans_timer_from_ra_spaces_dad_probes():
    s = slaac(dad_transmits=2)
    s.receive_ra(ra(retrans_timer=3.0), 0.0)
    s.add_address(a("fd00::5"), 64, 0.0)
    probes = [t for t, r in events(run(s, 20.0), "ns")]
    assert probes[1] - probes[0] == 3.0


def test_rdnss_and_dnssl_lists():
    s = slaac(dad_transmits=0, max_dns_servers=2)
    d1, d2, d3 = a("2001:db8::53"), a("2001:db8::54"), a("2001:db8::55")
    s.receive_ra(ra(rdnss=[(600.0, (d1, d2))], dnssl=[(600.0, ("lan", "example.org"))]), 0.0)
    assert s.outbox == [("dns_servers", (d1, d2)), ("dns_search", ("lan", "example.org"))]
    s.outbox.clear()
    s.receive_ra(ra(rdnss=[(900.0, (d1,))]), 100.0)       # refresh: same list, no event
    assert s.outbox == [] and s.dns_servers[d1] == 1000.0
    s.receive_ra(ra(rdnss=[(300.0, (d3,))]), 100.0)       # full: d2 expires first, replaced
    assert s.outbox == [("dns_servers", (d1, d3))]
    s.outbox.clear()
    s.receive_ra(ra(dnssl=[(0.0, ("lan",))]), 110.0)      # lifetime 0 removes
    assert s.outbox == [("dns_search", ("example.org",))]
    s.outbox.clear()
    assert run(s, 2000.0) == [(400.0, [("dns_servers", (d1,))]),
                              (600.0, [("dns_search", ())]),
                              (1000.0, [("dns_servers", ())])]


def test_rs_source_is_unspecified_without_link_local():
    s = slaac()
    log = configured(s, 3.0)
    assert events(log, "rs")[0][1] == ("rs", ll())
    s.remove_address(ll(), 3.0)
    assert s.outbox == [("address_removed", ll(), "removed")]
    s.outbox.clear()
    assert events(run(s, 6.0), "rs")[0][1] == ("rs", ndp.UNSPECIFIED)


def test_bounds_must_be_positive():
    with pytest.raises(ValueError):
        Slaac(stable, max_addresses=0)
    with pytest.raises(ValueError):
        slaac(make=lambda prefix, counter: b"short").start(0.0)


# -- two nodes on one link ------------------------------------------------------------------------

def simulate(nodes, until):
    """Run Slaac instances on one virtual link: a DAD probe reaches every other node, which
    either takes it as a conflict (its own tentative address) or, owning the address, answers
    with an NA (to all-nodes, RFC 4861 7.2.4) that the prober receives."""
    log = []
    while True:
        times = [n.poll_at() for n in nodes if n.poll_at() is not None]
        if not times or min(times) > until:
            return log
        now = min(times)
        for node in nodes:
            if node.poll_at() == now:
                node.poll(now)
        for node in nodes:
            records, node.outbox = node.outbox, []
            for record in records:
                log.append((now, nodes.index(node), record))
                if record[0] != "ns":
                    continue
                for other in nodes:
                    if other is node or other.receive_ns(record.target, record.src, now,
                                                         record.nonce):
                        continue
                    if record.target in [addr for addr, _, _ in other.usable()]:
                        node.receive_na(record.target, now)


def test_two_nodes_with_one_hardware_identifier():
    first, second = slaac(make=eui64, seed=1), slaac(make=eui64, seed=2)
    first.start(0.0)
    simulate([first, second], 5.0)
    second.start(10.0)
    log = simulate([first, second], 30.0)
    assert first.link_local == ll(eui64) and not first.disabled
    assert second.disabled and second.addresses == {}
    assert (1, ("disabled", "duplicate link-local address")) in [(n, r) for _, n, r in log]


def test_two_nodes_probing_one_address_at_once_the_later_one_moves():
    def colliding(secret):
        def make(prefix, counter):
            if counter == 0:
                return stable(prefix, 0)
            return prefix[:8] + hashlib.sha256(prefix + bytes([counter]) + secret).digest()[:8]
        return make
    nodes = [Slaac(colliding(b"a"), random.Random(1), router_solicit=False),
             Slaac(colliding(b"b"), random.Random(2), router_solicit=False)]
    for node in nodes:
        node.start(0.0)
    log = simulate(nodes, 30.0)
    first_probe = {n: t for t, n, r in reversed(log) if r[0] == "ns"}
    earlier, later = sorted(first_probe, key=first_probe.get)
    assert nodes[earlier].link_local == ll()
    assert nodes[later].link_local == colliding(b"ab"[later:later + 1])(
        ndp.LINK_LOCAL_PREFIX, 1)
    assert nodes[later].stats["dad_failed"] == 1 and nodes[earlier].stats["dad_failed"] == 0
