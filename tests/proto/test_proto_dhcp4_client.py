"""The DHCPv4 client (RFC 2131, RFC 5227) on virtual time, against scripted server messages;
and, as root with dnsmasq installed, against Debian's dnsmasq in a network namespace."""
import math
import os
import random
import subprocess

import pytest
from support import wait_for

from lwstack.proto import dhcp4 as client_mod
from lwstack.proto.dhcp4 import (BOUND, INIT, PROBING, REBINDING, REBOOTING, RENEWING,
                                 REQUESTING, SELECTING, STOPPED, ConflictDetection, Dhcp4Client)
from lwstack.wire import dhcp4
from lwstack.wire.dhcp4 import (ACK, BOOTREPLY, DECLINE, DISCOVER, NAK, OFFER, RELEASE, REQUEST,
                                ClientFqdn, DhcpMessage)


def ip(text):
    return bytes(int(part) for part in text.split("."))


MAC = bytes.fromhex("020000000002")
SERVER = ip("10.0.0.1")
OTHER_SERVER = ip("10.0.0.2")
ADDR = ip("10.0.0.100")
ANY = bytes(4)
BCAST = ip("255.255.255.255")


def new_client(seed=1, **kwargs):
    client = Dhcp4Client(MAC, random.Random(seed), **kwargs)
    client.start(0.0)
    return client


def take(client):
    """The client's actions so far, DHCP datagrams parsed: ("udp", src, dst, msg) or events."""
    out = []
    for action in client.outbox:
        if action[0] == "udp":
            _, src, dst, sport, dport, payload, link = action
            assert (sport, dport, link) == (68, 67, None)
            out.append(("udp", src, dst, DhcpMessage.parse(payload)))
        else:
            out.append(action)
    client.outbox.clear()
    return out


def one_message(client, kind):
    actions = take(client)
    assert len(actions) == 1 and actions[0][0] == "udp", actions
    _, src, dst, msg = actions[0]
    assert msg.message_type == kind, dhcp4.MESSAGE_NAMES.get(msg.message_type)
    return src, dst, msg


def run_until(client, end):
    """Poll at every deadline up to ``end``; returns the last poll time."""
    now = 0.0
    while client.poll_at() is not None and client.poll_at() <= end:
        now = client.poll_at()
        client.poll(now)
    return now


def reply(request, kind, yiaddr=ADDR, server=SERVER, lease=1000, **options):
    """A server's answer to ``request``; options by name (router=..., t1=...)."""
    msg = DhcpMessage(BOOTREPLY, request.xid, yiaddr=yiaddr if kind != NAK else ANY,
                      chaddr=request.chaddr, flags=request.flags)
    msg.set(dhcp4.OPT_MESSAGE_TYPE, kind)
    if server is not None:
        msg.set(dhcp4.OPT_SERVER_ID, server)
    if kind != NAK:
        msg.set(dhcp4.OPT_LEASE_TIME, lease)
        msg.set(dhcp4.OPT_SUBNET_MASK, ip("255.255.255.0"))
    codes = {"router": 3, "dns": 6, "domain": 15, "mtu": 26, "t1": 58, "t2": 59,
             "routes": 121, "mask": 1}
    for name, value in options.items():
        msg.set(codes[name], value)
    return msg.emit()


def requesting(client, now=0.0, offered_at=None):
    """Poll a started client at ``now`` and answer its DISCOVER with SERVER's OFFER (received
    at ``offered_at``, by default ``now``); returns the REQUEST the client sends."""
    client.poll(now)
    _, _, discover = one_message(client, DISCOVER)
    client.receive(reply(discover, OFFER), SERVER, now if offered_at is None else offered_at)
    return one_message(client, REQUEST)[2]


def offer_and_ack(client, now=0.0, **ack_options):
    """Drive a started client through DISCOVER/OFFER/REQUEST/ACK at ``now``."""
    request = requesting(client, now)
    client.receive(reply(request, ACK, **ack_options), SERVER, now)
    return request


def bind(client, **ack_options):
    """The whole way to BOUND, probes included; returns the lease."""
    offer_and_ack(client, **ack_options)
    end = run_until(client, 20.0)
    events = [a for a in take(client) if a[0] == "bound"]
    assert client.state == BOUND and len(events) == 1, (client.state, end)
    return client.lease


# -- INIT and SELECTING ------------------------------------------------------------------------

def test_discover_is_broadcast_with_our_identity():
    client = new_client(fqdn="web.lan")
    assert client.poll_at() == 0.0
    client.poll(0.0)
    src, dst, msg = one_message(client, DISCOVER)
    assert (src, dst) == (ANY, BCAST)
    assert msg.chaddr == MAC and msg.broadcast and msg.ciaddr == ANY and msg.secs == 0
    assert msg.get(dhcp4.OPT_CLIENT_ID) == b"\x01" + MAC
    prl = msg.get(dhcp4.OPT_PARAM_REQUEST)
    assert prl.index(121) < prl.index(3)                     # RFC 3442 section 3
    assert {1, 3, 6, 15, 26, 51, 58, 59, 121} <= set(prl)
    # RFC 4702 section 3.1: with option 81, no host name option.
    assert msg.get(dhcp4.OPT_CLIENT_FQDN) == ClientFqdn(dhcp4.FQDN_S | dhcp4.FQDN_E, "web.lan.")
    assert dhcp4.OPT_HOST_NAME not in msg.options
    assert dhcp4.OPT_SERVER_ID not in msg.options and dhcp4.OPT_REQUESTED_IP not in msg.options
    assert client.state == SELECTING


def test_a_bare_host_name_goes_in_option_12():
    client = new_client(fqdn="box", client_id=b"\xffmine", broadcast_flag=False)
    client.poll(0.0)
    _, _, msg = one_message(client, DISCOVER)
    assert msg.get(dhcp4.OPT_HOST_NAME) == "box" and dhcp4.OPT_CLIENT_FQDN not in msg.options
    assert msg.get(dhcp4.OPT_CLIENT_ID) == b"\xffmine" and not msg.broadcast


def test_discover_retransmission_backoff():
    # RFC 2131 section 4.1: 4, 8, 16, 32, 64, 64 s, each randomised by +-1 s; same xid.
    client = new_client(seed=7)
    client.poll(0.0)
    first = one_message(client, DISCOVER)[2]
    times, now = [0.0], 0.0
    for _ in range(7):
        now = client.poll_at()
        client.poll(now)
        msg = one_message(client, DISCOVER)[2]
        assert msg.xid == first.xid and msg.secs == int(now)
        times.append(now)
    gaps = [b - a for a, b in zip(times, times[1:])]
    for gap, base in zip(gaps, [4, 8, 16, 32, 64, 64, 64]):
        assert base - 1 <= gap <= base + 1, gaps
    assert len({round(g - b, 6) for g, b in zip(gaps, [4, 8, 16, 32, 64, 64, 64])}) > 1
    assert client.state == SELECTING and client.stats["tx.discover"] == 8


def test_initial_delay_is_random_up_to_the_limit():
    client = Dhcp4Client(MAC, random.Random(3), initial_delay=10.0)
    client.start(100.0)
    assert 100.0 < client.poll_at() <= 110.0
    with pytest.raises(RuntimeError):
        client.start(100.0)


def test_request_after_offer_names_the_server_and_address():
    client = new_client()
    client.poll(0.0)
    _, _, discover = one_message(client, DISCOVER)
    client.receive(reply(discover, OFFER), SERVER, 1.5)
    src, dst, request = one_message(client, REQUEST)
    assert (src, dst) == (ANY, BCAST) and client.state == REQUESTING
    assert request.xid == discover.xid and request.ciaddr == ANY and request.broadcast
    assert request.get(dhcp4.OPT_REQUESTED_IP) == ADDR
    assert request.get(dhcp4.OPT_SERVER_ID) == SERVER
    assert request.get(dhcp4.OPT_PARAM_REQUEST) == discover.get(dhcp4.OPT_PARAM_REQUEST)
    assert request.secs == 1
    # A second offer (another server, slower) is not taken.
    client.receive(reply(discover, OFFER, yiaddr=ip("10.0.0.200"), server=OTHER_SERVER),
                   OTHER_SERVER, 1.6)
    assert take(client) == [] and client.stats["drop.unexpected_offer"] == 1


def test_offer_without_server_id_uses_the_ip_source():
    client = new_client()
    client.poll(0.0)
    _, _, discover = one_message(client, DISCOVER)
    client.receive(reply(discover, OFFER, server=None), OTHER_SERVER, 0.1)
    _, _, request = one_message(client, REQUEST)
    assert request.get(dhcp4.OPT_SERVER_ID) == OTHER_SERVER


@pytest.mark.parametrize("yiaddr", [ANY, ip("224.0.0.1"), ip("127.0.0.1"), BCAST])
def test_offer_of_an_unusable_address_is_dropped(yiaddr):
    client = new_client()
    client.poll(0.0)
    _, _, discover = one_message(client, DISCOVER)
    client.receive(reply(discover, OFFER, yiaddr=yiaddr), SERVER, 0.1)
    assert take(client) == [] and client.state == SELECTING
    assert client.stats["drop.bad_offer"] == 1


def test_request_retransmitted_then_back_to_init():
    client = new_client(seed=2)
    client.poll(0.0)
    _, _, discover = one_message(client, DISCOVER)
    client.receive(reply(discover, OFFER), SERVER, 0.0)
    one_message(client, REQUEST)
    times = [0.0]
    for _ in range(3):
        now = client.poll_at()
        client.poll(now)
        assert one_message(client, REQUEST)[2].xid == discover.xid
        times.append(now)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(base - 1 <= gap <= base + 1 for gap, base in zip(gaps, [4, 8, 16])), gaps
    now = client.poll_at()          # the 4th REQUEST went unanswered for ~32 s
    assert 32 - 1 <= now - times[-1] <= 32 + 1
    client.poll(now)
    _, _, again = one_message(client, DISCOVER)     # RFC 2131 3.1 step 5: back to INIT
    assert again.xid != discover.xid and client.stats["request_timeout"] == 1


# -- the ACK, conflict detection, BOUND --------------------------------------------------------

def test_ack_probes_then_binds_and_announces():
    client = new_client(seed=5)
    offer_and_ack(client, router=[SERVER], dns=[SERVER, OTHER_SERVER], domain="lan", mtu=1400)
    assert client.state == PROBING and take(client) == []
    probes = []
    while client.state == PROBING:
        now = client.poll_at()
        client.poll(now)
        for action in take(client):
            probes.append((now, action))
    # RFC 5227 2.1.1: a wait in [0, PROBE_WAIT], 3 probes 1-2 s apart, ANNOUNCE_WAIT, bind.
    kinds = [a[0] for _, a in probes]
    assert kinds == ["probe", "probe", "probe", "bound", "announce"], kinds
    times = [t for t, _ in probes]
    assert 0 <= times[0] <= 1 and all(1 <= b - a <= 2 for a, b in zip(times[:2], times[1:3]))
    assert times[3] - times[2] == pytest.approx(2.0) and times[4] == times[3]
    assert all(a[1] == ADDR for _, a in probes if a[0] != "bound")
    lease = probes[3][1][1]
    assert lease == client.lease
    assert (lease.address, lease.prefix_len, lease.server_id) == (ADDR, 24, SERVER)
    assert lease.routers == (SERVER,) and lease.routes == ((ANY, 0, SERVER),)
    assert lease.dns == (SERVER, OTHER_SERVER) and lease.domain == "lan" and lease.mtu == 1400
    assert (lease.lease_time, lease.t1, lease.t2, lease.obtained) == (1000, 500, 875, 0.0)
    # The second announcement ANNOUNCE_INTERVAL later, then nothing until T1.
    announce = client.poll_at()
    assert announce == pytest.approx(times[4] + 2.0)
    client.poll(announce)
    assert take(client) == [("announce", ADDR)]
    assert client.poll_at() == 500.0


def test_classless_routes_override_the_router_option():
    client = new_client()
    routes = ((ip("10.9.0.0"), 16, ip("10.0.0.254")), (ANY, 0, ip("10.0.0.253")))
    lease = bind(client, router=[SERVER], routes=routes)
    assert lease.routes == routes and lease.routers == ()     # RFC 3442 section 3


def test_lease_options_edge_cases():
    # No mask: the classful prefix; no T1/T2: RFC 2131 4.4.5's defaults; MTU < 68 ignored.
    client = new_client()
    request = requesting(client)
    ack = DhcpMessage.parse(reply(request, ACK, yiaddr=ip("172.16.5.5"), lease=800, mtu=60))
    del ack.options[dhcp4.OPT_SUBNET_MASK]
    client.receive(ack.emit(), SERVER, 0.0)
    run_until(client, 20.0)
    lease = client.lease
    assert (lease.prefix_len, lease.t1, lease.t2, lease.mtu) == (16, 400, 700, None)
    assert lease.routes == () and lease.dns == () and lease.domain is None


@pytest.mark.parametrize("t1,t2", [(900, 100), (0, 500), (100, 2000)])
def test_inconsistent_t1_t2_fall_back_to_defaults(t1, t2):
    lease = bind(new_client(), t1=t1, t2=t2)
    assert (lease.t1, lease.t2) == (500, 875)


def test_server_t1_t2_are_used():
    lease = bind(new_client(), t1=100, t2=200)
    assert (lease.t1, lease.t2, lease.renew_at, lease.rebind_at, lease.expires) == (
        100, 200, 100, 200, 1000)


def test_infinite_lease_never_renews():
    client = new_client()
    lease = bind(client, lease=dhcp4.INFINITE)
    assert math.isinf(lease.expires) and math.isinf(lease.t1)
    run_until(client, 1e9)
    assert client.poll_at() is None and client.state == BOUND


def test_lease_counts_from_the_first_request():
    # RFC 2131 4.4.1: the lease starts when the REQUEST was sent, not when the ACK came.
    client = new_client(seed=4)
    request = requesting(client, offered_at=2.0)
    resend = client.poll_at()
    client.poll(resend)
    one_message(client, REQUEST)
    client.receive(reply(request, ACK), SERVER, resend + 0.5)
    run_until(client, 40.0)
    assert client.lease.obtained == 2.0 and client.lease.renew_at == 502.0


def test_without_conflict_detection_the_ack_binds_at_once():
    client = new_client(acd=None)
    offer_and_ack(client)
    assert client.state == BOUND
    assert [a[0] for a in take(client)] == ["bound"]


def test_unusable_acks_are_dropped():
    client = new_client()
    request = requesting(client)
    ack = DhcpMessage.parse(reply(request, ACK))
    del ack.options[dhcp4.OPT_LEASE_TIME]
    client.receive(ack.emit(), SERVER, 0.0)
    assert client.state == REQUESTING and client.stats["drop.ack_without_lease_time"] == 1
    for code, raw, reason in ((dhcp4.OPT_SUBNET_MASK, b"\xff\x00\xff\x00", "dhcp4_bad_mask"),
                              (dhcp4.OPT_LEASE_TIME, b"\x01", "dhcp4_bad_option")):
        ack = DhcpMessage.parse(reply(request, ACK))
        ack.options[code] = raw
        client.receive(ack.emit(), SERVER, 0.0)
        assert client.state == REQUESTING and client.stats["drop." + reason] == 1
    client.receive(reply(request, ACK, server=OTHER_SERVER), OTHER_SERVER, 0.0)
    assert client.state == REQUESTING and client.stats["drop.other_server"] == 1
    client.receive(reply(request, ACK), SERVER, 0.0)
    assert client.state == PROBING


def test_a_malformed_optional_option_costs_only_that_option():
    client = new_client(acd=None)
    request = requesting(client)
    ack = DhcpMessage.parse(reply(request, ACK, dns=[SERVER]))
    ack.options[dhcp4.OPT_ROUTER] = b"\x0a\x00\x00"
    ack.options[dhcp4.OPT_DOMAIN_NAME] = "l\u00e4n".encode()
    client.receive(ack.emit(), SERVER, 0.0)
    lease = client.lease
    assert client.state == BOUND and lease.dns == (SERVER,)
    assert (lease.routers, lease.routes, lease.domain) == ((), (), None)
    assert client.stats["ignored.dhcp4_bad_option.3"] == 1
    assert client.stats["ignored.dhcp4_bad_option.15"] == 1


# -- conflicts and DECLINE ---------------------------------------------------------------------

def test_conflict_while_probing_declines_and_waits_ten_seconds():
    client = new_client(seed=9)
    request = offer_and_ack(client)
    first_probe = client.poll_at()
    client.poll(first_probe)
    assert take(client) == [("probe", ADDR)]
    client.conflict(ADDR, first_probe + 0.3)
    src, dst, decline = one_message(client, DECLINE)
    assert (src, dst) == (ANY, BCAST) and decline.ciaddr == ANY and decline.secs == 0
    assert decline.xid == request.xid
    assert decline.get(dhcp4.OPT_REQUESTED_IP) == ADDR
    assert decline.get(dhcp4.OPT_SERVER_ID) == SERVER
    # RFC 2131 table 5: MUST NOT carry the parameter list or names.
    assert set(decline.options) == {53, 61, 50, 54}
    assert client.state == INIT and client.lease is None
    assert client.poll_at() == pytest.approx(first_probe + 10.3)      # RFC 2131 3.1 step 5
    client.poll(client.poll_at())
    assert one_message(client, DISCOVER)[2].xid != request.xid


def test_conflicts_for_other_addresses_or_after_binding_are_ignored():
    client = new_client()
    offer_and_ack(client)
    client.conflict(ip("10.0.0.99"), 0.1)
    assert client.state == PROBING and take(client) == []
    run_until(client, 20.0)
    take(client)
    client.conflict(ADDR, 21.0)                      # RFC 5227 2.4: the host defends
    assert client.state == BOUND and take(client) == []
    assert client.stats["conflict_ignored"] == 2


def test_ten_conflicts_in_a_row_slow_down_to_one_attempt_a_minute():
    client = new_client(seed=11)
    now, waits = 0.0, []
    for _ in range(10):
        offer_and_ack(client, now)
        now = client.poll_at()
        client.poll(now)
        take(client)
        client.conflict(ADDR, now)
        take(client)
        waits.append(client.poll_at() - now)
        now = client.poll_at()
    assert waits == [pytest.approx(10.0)] * 9 + [pytest.approx(60.0)]  # RFC 5227 MAX_CONFLICTS


# -- RENEWING, REBINDING, expiry ---------------------------------------------------------------

def test_renewing_rebinding_and_expiry_schedule():
    client = new_client()
    bind(client)
    assert client.poll_at() == 500.0
    log = []
    while not client.stats["lease_expired"]:
        now = client.poll_at()
        client.poll(now)
        for action in take(client):
            log.append((now, client.state, action))
    sends = [(t, src, dst, m) for t, _, (kind, *rest) in log if kind == "udp"
             for src, dst, m in [rest]]
    # RFC 2131 4.4.5: half the time left until T2 (875) or expiry (1000), at least 60 s.
    assert [t for t, *_ in sends] == [500.0, 687.5, 781.25, 841.25, 875.0, 937.5, 997.5, 1000.0]
    renewing, rebinding = sends[:4], sends[4:7]
    assert all(dst == SERVER and src == ADDR for _, src, dst, _ in renewing)
    assert all(dst == BCAST and src == ADDR for _, src, dst, _ in rebinding)
    for _, _, _, msg in renewing + rebinding:
        assert msg.message_type == REQUEST and msg.ciaddr == ADDR and not msg.broadcast
        assert dhcp4.OPT_SERVER_ID not in msg.options          # RFC 2131 table 5
        assert dhcp4.OPT_REQUESTED_IP not in msg.options
    assert len({m.xid for *_, m in renewing}) == 1 and len({m.xid for *_, m in rebinding}) == 1
    assert renewing[0][3].xid != rebinding[0][3].xid
    assert [m.secs for *_, m in renewing] == [0, 187, 281, 341]
    # At expiry: "lost", then a DISCOVER that asks for the old address.
    lost = [a for t, _, a in log if a[0] == "lost"]
    assert len(lost) == 1 and lost[0][1].address == ADDR and client.lease is None
    t, src, dst, discover = sends[7]
    assert (t, src, dst, discover.message_type) == (1000.0, ANY, BCAST, DISCOVER)
    assert discover.get(dhcp4.OPT_REQUESTED_IP) == ADDR
    assert client.stats["lease_expired"] == 1


def test_renewal_ack_extends_the_lease():
    client = new_client()
    bind(client, dns=[SERVER])
    client.poll(500.0)
    _, _, renew = one_message(client, REQUEST)
    client.receive(reply(renew, ACK, dns=[OTHER_SERVER], lease=600), SERVER, 500.2)
    (kind, lease), = take(client)
    assert kind == "renewed" and client.state == BOUND and lease is client.lease
    assert (lease.obtained, lease.expires, lease.dns) == (500.0, 1100.0, (OTHER_SERVER,))
    assert client.poll_at() == 800.0


def test_rebinding_ack_from_another_server():
    client = new_client()
    bind(client)
    run_until(client, 875.0)
    assert client.state == REBINDING
    rebind = [a for a in take(client) if a[0] == "udp"][-1][3]
    client.receive(reply(rebind, ACK, server=OTHER_SERVER), OTHER_SERVER, 880.0)
    assert client.state == BOUND and client.lease.server_id == OTHER_SERVER
    assert client.lease.renew_at == 875.0 + 500


def test_renewal_ack_with_another_address_rebinds_through_probing():
    client = new_client()
    bind(client)
    client.poll(500.0)
    _, _, renew = one_message(client, REQUEST)
    client.receive(reply(renew, ACK, yiaddr=ip("10.0.0.101")), SERVER, 500.0)
    assert [a[0] for a in take(client)] == ["lost"] and client.state == PROBING
    run_until(client, 520.0)
    assert client.lease.address == ip("10.0.0.101")


def test_nak_while_renewing_loses_the_lease():
    client = new_client()
    bind(client)
    client.poll(500.0)
    _, _, renew = one_message(client, REQUEST)
    client.receive(reply(renew, NAK), SERVER, 500.1)
    actions = take(client)
    assert actions[0][0] == "lost" and client.state == INIT and client.lease is None
    client.poll(500.1)
    _, _, discover = one_message(client, DISCOVER)
    assert dhcp4.OPT_REQUESTED_IP not in discover.options


# -- NAK ---------------------------------------------------------------------------------------

def test_nak_in_requesting_restarts_and_repeated_naks_back_off():
    client = new_client(seed=13)
    now, restarts = 0.0, []
    for _ in range(4):
        request = requesting(client, now)
        client.receive(reply(request, NAK, server=OTHER_SERVER), SERVER, now)
        assert client.state == REQUESTING                 # not from the chosen server
        client.receive(reply(request, NAK), SERVER, now)
        assert client.state == INIT
        restarts.append(client.poll_at() - now)
        now = client.poll_at()
    assert restarts[0] == 0.0
    assert [base - 1 <= r <= base + 1 for r, base in zip(restarts[1:], [4, 8, 16])] == [True] * 3
    assert client.stats["nak"] == 4


# -- INIT-REBOOT -------------------------------------------------------------------------------

def test_init_reboot_asks_for_the_previous_address():
    client = new_client(previous_address=ADDR)
    client.poll(0.0)
    src, dst, request = one_message(client, REQUEST)
    assert client.state == REBOOTING and (src, dst) == (ANY, BCAST)
    assert request.ciaddr == ANY and request.get(dhcp4.OPT_REQUESTED_IP) == ADDR
    assert dhcp4.OPT_SERVER_ID not in request.options
    client.receive(reply(request, ACK), SERVER, 0.2)
    assert client.state == PROBING
    run_until(client, 20.0)
    assert client.state == BOUND and client.lease.server_id == SERVER


def test_init_reboot_nak_falls_back_to_discover():
    client = new_client(previous_address=ADDR)
    client.poll(0.0)
    _, _, request = one_message(client, REQUEST)
    client.receive(reply(request, NAK), SERVER, 0.1)
    client.poll(0.1)
    _, _, discover = one_message(client, DISCOVER)
    assert dhcp4.OPT_REQUESTED_IP not in discover.options


def test_init_reboot_without_answer_falls_back_to_discover():
    client = new_client(previous_address=ADDR)
    sent = []
    while client.state != SELECTING:
        now = client.poll_at()
        client.poll(now)
        sent += [(now, a[3].message_type) for a in take(client)]
    assert [kind for _, kind in sent] == [REQUEST] * 4 + [DISCOVER]
    assert 55 <= sent[-1][0] <= 64


# -- RELEASE -----------------------------------------------------------------------------------

def test_stop_releases_the_lease():
    client = new_client()
    bind(client)
    client.stop(100.0)
    actions = take(client)
    assert [a[0] for a in actions] == ["udp", "lost"]        # released before it is removed
    _, src, dst, release = actions[0]
    assert (src, dst, release.message_type) == (ADDR, SERVER, RELEASE)
    assert release.ciaddr == ADDR and release.secs == 0
    assert set(release.options) == {53, 61, 54}
    assert client.state == STOPPED and client.poll_at() is None and client.lease is None


def test_stop_before_binding_sends_nothing():
    client = new_client()
    offer_and_ack(client)
    client.stop(1.0)
    assert take(client) == [] and client.poll_at() is None


# -- bad and foreign input ---------------------------------------------------------------------

def test_garbage_and_foreign_replies_are_counted_and_dropped():
    client = new_client()
    client.poll(0.0)
    _, _, discover = one_message(client, DISCOVER)
    offer = DhcpMessage.parse(reply(discover, OFFER))
    rng = random.Random(1)
    client.receive(bytes(rng.getrandbits(8) for _ in range(300)), SERVER, 0.1)
    client.receive(offer.emit()[:100], SERVER, 0.1)
    foreign = DhcpMessage.parse(offer.emit())
    foreign.xid ^= 1
    client.receive(foreign.emit(), SERVER, 0.1)
    foreign = DhcpMessage.parse(offer.emit())
    foreign.chaddr = bytes(6)
    client.receive(foreign.emit(), SERVER, 0.1)
    request_echo = DhcpMessage.parse(offer.emit())
    request_echo.op = 1
    client.receive(request_echo.emit(), SERVER, 0.1)
    client.receive(reply(discover, ACK), SERVER, 0.1)          # ACK while SELECTING
    bootp = DhcpMessage.parse(offer.emit())
    del bootp.options[dhcp4.OPT_MESSAGE_TYPE]
    client.receive(bootp.emit(), SERVER, 0.1)
    assert take(client) == [] and client.state == SELECTING
    assert client.stats["drop.dhcp4_truncated"] == 1
    assert client.stats["drop.not_ours"] == 3
    assert client.stats["drop.unexpected_ack"] == 1 and client.stats["drop.unexpected_bootp"] == 1
    assert sum(v for k, v in client.stats.items() if k.startswith("drop.")) >= 7
    client.receive(offer.emit(), SERVER, 0.2)                    # the real one still works
    assert client.state == REQUESTING


def test_outbox_is_bounded():
    client = new_client(max_outbox=8)
    run_until(client, 10000.0)                        # nobody empties the outbox
    assert len(client.outbox) == 8 and client.stats["outbox_full"] > 0
    with pytest.raises(ValueError):
        Dhcp4Client(MAC[:5], random.Random(1))


def test_states_are_the_rfc_names():
    assert (client_mod.INIT_REBOOT, REBOOTING, RENEWING) == ("INIT-REBOOT", "REBOOTING",
                                                             "RENEWING")


# -- against dnsmasq ---------------------------------------------------------------------------

def test_dnsmasq_gives_a_lease(tmp_path):
    """Debian's dnsmasq in one namespace, our client on an AF_PACKET socket in the other:
    lease, options, renewal at T1 (the client's clock pushed forward), RELEASE, and a NAK for
    an INIT-REBOOT on the wrong network.  The replies' bytes are what test_wire_dhcp4.py
    keeps as vectors (the seeded clients repeat the xids; 'secs' and the renewal's T1/T2
    depend on timing)."""
    from dhcp4_netns import LinkDriver, VethPair, packet_socket, require_root_and
    require_root_and("dnsmasq")
    pair = VethPair(f"d4c{os.getpid() % 100000}", "02:00:00:00:79:01", "02:00:00:00:79:02")
    proc = None
    try:
        subprocess.run(["ip", "-n", pair.ns_a, "addr", "add", "198.18.79.1/24", "dev",
                        pair.if_a], check=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", pair.ns_a, "dnsmasq", "--keep-in-foreground",
             "--log-facility=-", "--conf-file=/dev/null", "--port=0", "--user=root",
             f"--interface={pair.if_a}", "--bind-interfaces",
             "--dhcp-range=198.18.79.100,198.18.79.150,255.255.255.0,2m",
             "--dhcp-option=option:router,198.18.79.1",
             "--dhcp-option=option:dns-server,198.18.79.1", "--domain=lwtest.lan",
             "--dhcp-option=option:mtu,1400",
             "--dhcp-option=121,10.9.0.0/16,198.18.79.254,0.0.0.0/0,198.18.79.1",
             f"--dhcp-leasefile={tmp_path / 'leases'}", f"--pid-file={tmp_path / 'pid'}",
             "--dhcp-authoritative", "--log-dhcp"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: os.path.exists(tmp_path / "pid"), timeout=5)
        sock = packet_socket(pair.ns_b, pair.if_b)
        fast = ConflictDetection(probe_wait=0.1, probe_min=0.1, probe_max=0.2,
                                 announce_wait=0.3, announce_interval=0.3)
        client = Dhcp4Client(bytes.fromhex("020000007902"), random.Random(4),
                             fqdn="lwhost.lwtest.lan", acd=fast)
        driver = LinkDriver(sock, client.mac, client, 68)
        client.start(driver.now())
        driver.run(lambda: client.state == BOUND, timeout=30)
        lease = client.lease
        assert lease.address[:3] == ip("198.18.79.0")[:3] and 100 <= lease.address[3] <= 150
        assert (lease.prefix_len, lease.server_id, lease.dns) == (24, ip("198.18.79.1"),
                                                                  (ip("198.18.79.1"),))
        assert lease.routes == ((ip("10.9.0.0"), 16, ip("198.18.79.254")),
                                (ANY, 0, ip("198.18.79.1")))
        assert (lease.domain, lease.mtu, lease.lease_time, lease.t1, lease.t2) == (
            "lwtest.lan", 1400, 120, 60, 105)
        assert [kind for _, kind, _ in driver.events[:3]] == ["probe"] * 3
        driver.offset += lease.renew_at - driver.now()
        driver.run(lambda: client.stats["renewed"] == 1, timeout=10)
        assert client.lease.address == lease.address
        client.stop(driver.now())
        driver.flush()
        kinds = [DhcpMessage.parse(p).message_type for p in driver.received]
        assert kinds[:2] == [OFFER, ACK] and kinds[-1] == ACK
        # INIT-REBOOT on the wrong network: dnsmasq (authoritative) NAKs, we DISCOVER.
        other = Dhcp4Client(bytes.fromhex("020000007903"), random.Random(5), acd=None,
                            previous_address=ip("10.99.0.5"))
        driver2 = LinkDriver(sock, other.mac, other, 68)
        other.start(driver2.now())
        driver2.run(lambda: other.state == BOUND, timeout=30)
        assert other.stats["nak"] == 1 and other.lease.address != lease.address
        nak = DhcpMessage.parse(driver2.received[0])
        assert nak.message_type == NAK and nak.get(dhcp4.OPT_MESSAGE) == "wrong network"
    finally:
        if proc is not None:
            proc.terminate()
            log = proc.communicate(timeout=10)[0]
            print(log)
        pair.close()
    assert "DHCPRELEASE" in log
