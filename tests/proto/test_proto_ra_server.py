"""The router-advertisement sender (RFC 4861 6.2) on virtual time: when RAs go out
(initial, periodic, solicited, final) and what they say (RFC 4861 4.2, 4.6, RFC 8106)."""
import random

import pytest

from lwstack.proto.ra_server import (MAX_INITIAL_RTR_ADVERT_INTERVAL, MAX_RA_DELAY_TIME,
                                     MIN_DELAY_BETWEEN_RAS, RaPrefix, RaServer, RouterConfig)
from lwstack.wire import icmpv6
from lwstack.wire.ipv6 import parse_addr6

A = parse_addr6
LL = A("fe80::1")
ALL_NODES = A("ff02::1")


def run(server, start, end):
    """Poll ``server`` at every time it names until ``end``; returns the RA send times."""
    times = []
    now = start
    while True:
        due = server.poll_at()
        if due is None or due > end:
            return times
        now = max(now, due)
        before = len(server.outbox)
        server.poll(now)
        times += [now] * (len(server.outbox) - before)


def test_defaults_follow_rfc_4861_6_2_1():
    config = RouterConfig()
    assert config.max_interval == 600 and config.min_interval == pytest.approx(198)
    assert config.router_lifetime == 1800 and config.hop_limit == 64
    assert config.dns_lifetime == 1800
    prefix = RaPrefix(A("fd00::"))
    assert (prefix.valid_lifetime, prefix.preferred_lifetime) == (2592000, 604800)
    assert prefix.on_link and prefix.autonomous


@pytest.mark.parametrize("options", [dict(max_interval=3), dict(max_interval=2000),
                                     dict(max_interval=10, min_interval=8),
                                     dict(max_interval=100, router_lifetime=50),
                                     dict(router_lifetime=9001),
                                     dict(mtu=1000), dict(hop_limit=256),
                                     dict(domains=["bad..name"]),
                                     dict(prefixes=[RaPrefix(A("fd00::"), 64, True, True, 10,
                                                             20)])])
def test_bad_configurations_are_refused_at_once(options):
    with pytest.raises(ValueError):
        RouterConfig(**options)


def test_the_advertisement_carries_the_configuration():
    config = RouterConfig(prefixes=[RaPrefix(A("fd00:1::"), 64),
                                    RaPrefix(A("fd00:2::"), 64, on_link=False,
                                             autonomous=False, valid_lifetime=100,
                                             preferred_lifetime=50)],
                          max_interval=60, managed=True, other=True, hop_limit=32, mtu=1400,
                          reachable_time=30000, retrans_timer=1000, preference=1,
                          dns_servers=[A("fd00::53")], domains=["lan", "example.org"])
    message = config.advertisement(False)._replace(source_lladdr=bytes.fromhex("020000000001"))
    ra = icmpv6.parse_nd(message.emit(LL, ALL_NODES), LL, ALL_NODES, 255)
    assert (ra.hop_limit, ra.managed, ra.other, ra.router_lifetime) == (32, True, True, 180)
    assert (ra.reachable_time, ra.retrans_timer, ra.preference, ra.mtu) == (30000, 1000, 1,
                                                                            1400)
    assert ra.prefixes == (icmpv6.PrefixInfo(A("fd00:1::"), 64, True, True, 2592000, 604800),
                           icmpv6.PrefixInfo(A("fd00:2::"), 64, False, False, 100, 50))
    assert ra.rdnss == (icmpv6.Rdnss(180, (A("fd00::53"),)),)
    assert ra.dnssl == (icmpv6.Dnssl(180, ("lan", "example.org")),)
    assert ra.source_lladdr == bytes.fromhex("020000000001")
    assert config.advertisement(True).router_lifetime == 0


def test_first_ra_at_start_then_three_fast_ones_then_the_configured_interval():
    server = RaServer(RouterConfig(max_interval=600), random.Random(1))
    server.start(100.0)
    assert [(kind, dst) for kind, dst, _ in server.outbox] == [("ra", ALL_NODES)]
    times = [100.0] + run(server, 100.0, 5000.0)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g <= MAX_INITIAL_RTR_ADVERT_INTERVAL for g in gaps[:3])
    assert all(198 <= g <= 600 for g in gaps[3:]) and len(gaps) > 6


def test_a_solicitation_is_answered_within_max_ra_delay_time():
    server = RaServer(RouterConfig(max_interval=600), random.Random(2))
    server.start(0.0)
    run(server, 0.0, 1000.0)
    server.outbox.clear()
    server.receive_rs(A("fe80::2"), 1000.0)
    due = server.poll_at()
    assert 1000.0 <= due <= 1000.0 + MAX_RA_DELAY_TIME
    server.receive_rs(A("fe80::3"), 1000.1)          # a second one shares the answer
    assert server.poll_at() <= due
    server.poll(due)
    assert len(server.outbox) == 1


def test_answers_keep_min_delay_between_ras():
    server = RaServer(RouterConfig(max_interval=600), random.Random(3))
    server.start(0.0)
    server.receive_rs(A("fe80::2"), 1.0)
    due = server.poll_at()
    assert 0.0 + MIN_DELAY_BETWEEN_RAS <= due <= 0.0 + MIN_DELAY_BETWEEN_RAS + MAX_RA_DELAY_TIME


def test_a_sooner_unsolicited_ra_is_not_postponed_by_a_solicitation():
    server = RaServer(RouterConfig(max_interval=4, min_interval=3), random.Random(4))
    server.start(0.0)
    due = server.poll_at()                          # 3..4 s
    server.receive_rs(A("fe80::2"), 2.9)            # its answer would be 3.0 + delay
    assert MIN_DELAY_BETWEEN_RAS <= server.poll_at() <= due


def test_stop_sends_a_final_ra_with_router_lifetime_zero_and_nothing_more():
    server = RaServer(RouterConfig(prefixes=[RaPrefix(A("fd00::"))]), random.Random(5))
    server.start(0.0)
    server.outbox.clear()
    server.stop(10.0)
    assert [advert.router_lifetime for _, _, advert in server.outbox] == [0]
    assert server.outbox[0][2].prefixes[0].prefix == A("fd00::")
    assert server.poll_at() is None
    server.receive_rs(A("fe80::2"), 11.0)
    assert server.poll_at() is None
