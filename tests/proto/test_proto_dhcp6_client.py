"""The DHCPv6 client (lwstack.proto.dhcp6) on virtual time, against scripted servers.

Server messages are either dnsmasq's own (captured from Debian's dnsmasq 2.90 on a veth pair
of our own; see tests/wire/test_wire_dhcp6.py for the setup), with the transaction id
patched to the client's, or built with the codec.  ``FixedRng`` makes every random choice
the same fraction of its range, so retransmission times can be asserted exactly; seeded
``random.Random`` runs check the RFC 8415 section 15 bounds.
"""
import ipaddress
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lwstack.proto import dhcp6 as c
from lwstack.wire import dhcp6 as w


def A(text):
    return ipaddress.IPv6Address(text).packed


MAC = bytes.fromhex("02000000d602")            # the MAC the dnsmasq captures were made with
IAID = 0xD602
DUID = w.duid_ll(MAC)
SERVER_B = w.duid_ll(bytes.fromhex("02000000000b"))
SERVER_C = w.duid_ll(bytes.fromhex("02000000000c"))
SERVER_D = w.duid_ll(bytes.fromhex("02000000000d"))
LL_B = A("fe80::b")
LL_C = A("fe80::c")
ADDR1 = A("2001:db8::1")
ADDR2 = A("2001:db8::2")

# dnsmasq 2.90's answers (server DUID-LLT 00010001 3294166b 02000000d601, lease 3600 s,
# T1 1800, T2 3150, DNS fd00:d6::1, domain search "lan").
DNSMASQ_SERVER = bytes.fromhex("000100013294166b02000000d601")
DNSMASQ_ADVERTISE = bytes.fromhex("""
    020a0b0c0001000a0003000102000000d6020002000e000100013294166b0200
    0000d601000300280000d6020000070800000c4e00050018fd0000d600000000
    000000000000010000000e1000000e10000d0009000073756363657373000700
    010000180005036c616e0000170010fd0000d600000000000000000000000100
    2700070305686f737431""")
DNSMASQ_REPLY = bytes.fromhex("""
    070a0b0d0001000a0003000102000000d6020002000e000100013294166b0200
    0000d601000300280000d6020000070800000c4e00050018fd0000d600000000
    000000000000010000000e1000000e10000d0009000073756363657373001800
    05036c616e0000170010fd0000d6000000000000000000000001002700070305
    686f737431""")
DNSMASQ_RENEW_REPLY = bytes.fromhex("""
    070a0b0e0001000a0003000102000000d6020002000e000100013294166b0200
    0000d601000300280000d6020000063e00000b8400050018fd0000d600000000
    000000000000010000000e1000000e1000180005036c616e0000170010fd0000
    d6000000000000000000000001002700070305686f737431""")
DNSMASQ_INFO_REPLY = bytes.fromhex("""
    070a0b100001000a0003000102000000d6020002000e000100013294166b0200
    0000d6010020000400001c2000180005036c616e0000170010fd0000d6000000
    000000000000000001""")
DNSMASQ_NO_ADDRS = bytes.fromhex("""
    020a0b130001000a0003000102000000d6040002000e000100013294166b0200
    0000d601000d001800026e6f2061646472657373657320617661696c61626c65""")
DNSMASQ_RAPID_REPLY = bytes.fromhex("""
    070c0d0e0001000a0003000102000000d6050002000e000100013294167302000000
    d601000e000000030028000001050000012c0000020d00050018fd0000d600000000
    00000000000001360000025800000258000d0009000073756363657373000700010000
    170010fd0000d60000000000000000000000010027000c0105686f737435036c616e00""")
DNSMASQ_LL = A("fe80::ff:fe00:d601")


class FixedRng:
    """``uniform(a, b)`` is always ``a + fraction * (b - a)``; transaction ids count up."""

    def __init__(self, fraction=0.5):
        self.fraction = fraction
        self.xid = 0x100

    def uniform(self, low, high):
        return low + self.fraction * (high - low)

    def getrandbits(self, bits):
        self.xid += 1
        return self.xid


def client(rng=None, **kwargs):
    kwargs.setdefault("fqdn", "host1.lan")
    return c.Dhcp6Client(MAC, rng or FixedRng(), **kwargs)


def take(cl):
    """The messages the client sent since last time, checking the record's shape."""
    out = []
    for record in cl.outbox:
        kind, src, dst, sport, dport, payload = record
        assert (kind, src, dst, sport, dport) == (
            "udp", None, A("ff02::1:2"), w.CLIENT_PORT, w.SERVER_PORT)
        out.append(w.parse_message(payload))
    cl.outbox.clear()
    return out


def events(cl):
    out = list(cl.events)
    cl.events.clear()
    return out


def advance(cl, until):
    """Poll at every ``poll_at`` up to ``until``; returns [(time, message sent)]."""
    sent = []
    for _ in range(10000):
        at = cl.poll_at()
        if at is None or at > until:
            return sent
        cl.poll(at)
        sent += [(at, msg) for msg in take(cl)]
    raise AssertionError("the client polls without end")


def with_xid(raw, xid):
    return raw[:1] + xid.to_bytes(3, "big") + raw[4:]


def answer(msg, kind=w.REPLY, server=SERVER_B, **fields):
    return w.Message(kind, msg.xid, client_id=msg.client_id, server_id=server,
                     **fields).emit()


def ia(*addresses, t1=0, t2=0, iaid=IAID, status=None):
    """An IA_NA of ``(address, preferred, valid)`` triples."""
    return w.IaNa(iaid, t1, t2, [w.IaAddress(a, p, v) for a, p, v in addresses], status)


def requesting(cl=None, t1=0, t2=0, addresses=((ADDR1, 10, 20),)):
    """A client that took SERVER_B's ADVERTISE (preference 255, an IA_NA of ``addresses``)
    for its first SOLICIT; returns (client, time, the SOLICIT, the REQUEST it sent)."""
    cl = cl or client()
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    cl.receive(answer(solicit, w.ADVERTISE, preference=255,
                      ia_na=[ia(*addresses, t1=t1, t2=t2)]), LL_B, t)
    [request] = take(cl)
    assert request.msg_type == w.REQUEST
    return cl, t, solicit, request


def bound(cl=None, t1=100, t2=160, addresses=((ADDR1, 200, 300),), at=None):
    """A client BOUND to SERVER_B; returns (client, time of binding)."""
    cl, t, _, request = requesting(cl, t1, t2, addresses)
    cl.receive(answer(request, ia_na=[ia(*addresses, t1=t1, t2=t2)]), LL_B, t)
    assert cl.state == c.BOUND
    [(kind, _)] = events(cl)
    assert kind == "configured"
    return cl, t


# --- the whole life against dnsmasq's messages ----------------------------------------------

def test_lease_life_with_dnsmasq_messages():
    cl = client()
    cl.start(10.0)
    assert take(cl) == [] and cl.poll_at() == 10.5          # SOL_MAX_DELAY * 0.5
    [(t, solicit)] = advance(cl, 10.5)
    assert t == 10.5 and cl.state == c.SOLICITING
    assert solicit.msg_type == w.SOLICIT and solicit.client_id == DUID
    assert solicit.server_id is None and solicit.elapsed_time == 0
    assert solicit.oro == [w.OPTION_DNS_SERVERS, w.OPTION_DOMAIN_LIST, w.OPTION_SOL_MAX_RT]
    assert solicit.ia_na == [w.IaNa(IAID)] and not solicit.rapid_commit
    assert solicit.fqdn == w.ClientFqdn(w.FQDN_S, "host1.lan")

    # dnsmasq's ADVERTISE (preference 0): kept until the first RT (1.05 s) is over.
    cl.receive(with_xid(DNSMASQ_ADVERTISE, solicit.xid), DNSMASQ_LL, 10.6)
    assert take(cl) == [] and cl.poll_at() == pytest.approx(11.55)
    [(t, request)] = advance(cl, 11.55)
    assert request.msg_type == w.REQUEST and request.xid != solicit.xid
    assert request.server_id == DNSMASQ_SERVER and request.elapsed_time == 0
    assert request.ia_na == [w.IaNa(IAID, addresses=[w.IaAddress(A("fd00:d6::100"))])]
    assert request.fqdn == solicit.fqdn and request.oro == solicit.oro

    cl.receive(with_xid(DNSMASQ_REPLY, request.xid), DNSMASQ_LL, 11.7)
    assert cl.state == c.BOUND
    [(kind, info)] = events(cl)
    assert kind == "configured"
    assert info.addresses == [c.LeasedAddress(A("fd00:d6::100"), 11.7 + 3600, 11.7 + 3600)]
    assert info.dns_servers == [A("fd00:d6::1")] and info.domains == ["lan"]
    assert info.fqdn == "host1"             # dnsmasq's answer: the bare host name
    assert info.server_id == DNSMASQ_SERVER and info.server_address == DNSMASQ_LL
    assert cl.poll_at() == pytest.approx(11.7 + 1800)        # T1

    [(t, renew)] = advance(cl, 11.7 + 1800)
    assert renew.msg_type == w.RENEW and renew.server_id == DNSMASQ_SERVER
    assert renew.ia_na == request.ia_na and renew.elapsed_time == 0
    cl.receive(with_xid(DNSMASQ_RENEW_REPLY, renew.xid), DNSMASQ_LL, t + 0.01)
    [(kind, info)] = events(cl)
    assert kind == "renewed" and cl.state == c.BOUND
    assert info.addresses[0].valid_until == pytest.approx(t + 0.01 + 3600)
    assert cl.poll_at() == pytest.approx(t + 0.01 + 1598)    # dnsmasq's new T1

    cl.stop(t + 1)
    [release] = take(cl)
    assert release.msg_type == w.RELEASE and release.server_id == DNSMASQ_SERVER
    assert release.ia_na == request.ia_na and release.oro is None and release.fqdn is None
    [(kind, info)] = events(cl)
    assert kind == "lost" and info.reason == "released" and info.addresses[0].address == A(
        "fd00:d6::100")
    assert cl.info.addresses == []


def test_no_addrs_avail_advertise_is_ignored():
    cl = client()
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    cl.receive(with_xid(DNSMASQ_NO_ADDRS, solicit.xid).replace(
        bytes.fromhex("02000000d604"), MAC), DNSMASQ_LL, t)
    assert cl.stats["drop.advertise_status_2"] == 1
    # An IA-level NoAddrsAvail, or an IA without addresses, is no better.
    cl.receive(answer(solicit, w.ADVERTISE, ia_na=[ia(status=w.StatusCode(2))]), LL_B, t)
    cl.receive(answer(solicit, w.ADVERTISE, ia_na=[ia()]), LL_C, t)
    cl.receive(answer(solicit, w.ADVERTISE, ia_na=[ia((ADDR1, 0, 0))]), LL_C, t)
    assert cl.stats["drop.advertise_no_addrs"] == 3
    later = advance(cl, 10.0)
    assert [m.msg_type for _, m in later] == [w.SOLICIT] * 3 and cl.state == c.SOLICITING


def test_rapid_commit_with_dnsmasq():
    cl = c.Dhcp6Client(bytes.fromhex("02000000d605"), FixedRng(), fqdn="host5.lan",
                       iaid=0x105, rapid_commit=True)
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    assert solicit.rapid_commit
    cl.receive(with_xid(DNSMASQ_RAPID_REPLY, solicit.xid), DNSMASQ_LL, t)
    assert cl.state == c.BOUND and take(cl) == []
    [(kind, info)] = events(cl)
    assert kind == "configured" and info.fqdn == "host5.lan"
    assert [a.address for a in info.addresses] == [A("fd00:d6::136")]
    assert cl.poll_at() == pytest.approx(t + 300)


def test_reply_to_solicit_needs_rapid_commit_on_both_sides():
    cl = client()                                # did not ask for rapid commit
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    cl.receive(answer(solicit, rapid_commit=True, ia_na=[ia((ADDR1, 10, 20))]), LL_B, t)
    assert cl.stats["drop.reply_without_rapid_commit"] == 1 and cl.state == c.SOLICITING
    cl = client(rapid_commit=True)
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    cl.receive(answer(solicit, ia_na=[ia((ADDR1, 10, 20))]), LL_B, t)   # no rapid commit
    assert cl.stats["drop.reply_without_rapid_commit"] == 1 and cl.state == c.SOLICITING
    # A refused rapid commit leaves the client soliciting (its backoff untouched).
    cl.receive(answer(solicit, rapid_commit=True, ia_na=[ia(status=w.StatusCode(2))]), LL_B, t)
    assert cl.state == c.SOLICITING and cl._exchange.xid == solicit.xid


# --- choosing among ADVERTISEs (RFC 8415 section 18.2.1) ------------------------------------

def test_highest_preference_wins_after_the_first_rt():
    cl = client()
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    offers = [(SERVER_B, LL_B, 10, ADDR1), (SERVER_C, LL_C, 50, ADDR2),
              (SERVER_D, A("fe80::d"), 50, A("2001:db8::3"))]
    for server, src, preference, address in offers:
        cl.receive(answer(solicit, w.ADVERTISE, server=server, preference=preference,
                          ia_na=[ia((address, 10, 20))]), src, t + 0.1)
    assert take(cl) == []
    [(when, request)] = advance(cl, t + 1.05)
    assert when == pytest.approx(t + 1.05)
    assert request.server_id == SERVER_C          # 50 beats 10; C came before D
    assert [a.address for a in request.ia_na[0].addresses] == [ADDR2]


def test_preference_255_is_taken_at_once():
    cl = client()
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    cl.receive(answer(solicit, w.ADVERTISE, preference=10, ia_na=[ia((ADDR1, 10, 20))]),
               LL_B, t)
    cl.receive(answer(solicit, w.ADVERTISE, server=SERVER_C, preference=255,
                      ia_na=[ia((ADDR2, 10, 20))]), LL_C, t + 0.2)
    [request] = take(cl)
    assert request.msg_type == w.REQUEST and request.server_id == SERVER_C


def test_after_the_first_rt_the_first_advertise_is_taken():
    cl = client()
    cl.start(0.0)
    sent = advance(cl, 2.0)
    assert [m.msg_type for _, m in sent] == [w.SOLICIT, w.SOLICIT]
    cl.receive(answer(sent[-1][1], w.ADVERTISE, ia_na=[ia((ADDR1, 10, 20))]), LL_B, 2.0)
    [request] = take(cl)
    assert request.msg_type == w.REQUEST and request.server_id == SERVER_B


def test_advertises_held_are_bounded_and_the_best_kept():
    cl = client(max_advertises=3)
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    for n, preference in enumerate([5, 1, 7, 3, 9, 2]):
        server = w.duid_ll(bytes([2, 0, 0, 0, 1, n]))
        cl.receive(answer(solicit, w.ADVERTISE, server=server, preference=preference,
                          ia_na=[ia((ADDR1, 10, 20))]), LL_B, t)
    assert sorted(e[0] for e in cl._advertises) == [5, 7, 9]
    assert cl.stats["drop.advertise_overflow"] == 3       # 1 and 3 pushed out, 2 refused
    [(_, request)] = advance(cl, t + 2)
    assert request.server_id == w.duid_ll(bytes([2, 0, 0, 0, 1, 4]))


# --- retransmission (RFC 8415 section 15) ---------------------------------------------------

def gaps(sent):
    times = [t for t, _ in sent]
    return [round(b - a, 6) for a, b in zip(times, times[1:])]


def test_solicit_backoff_exact_and_capped_at_sol_max_rt():
    for fraction, first, rand in ((0.5, 1.05, 0.0), (1.0, 1.1, 0.1), (0.0, 1.1, -0.1)):
        cl = client(FixedRng(fraction))
        cl.start(0.0)
        sent = advance(cl, 20000.0)
        assert sent[0][0] == fraction * 1.0               # the random initial delay
        expected = [first]
        while len(expected) < len(sent) - 1:
            rt = 2 * expected[-1] + rand * expected[-1]
            expected.append(rt if rt <= 3600 else 3600 + rand * 3600)
        assert gaps(sent) == pytest.approx(expected)
        assert max(gaps(sent)) == pytest.approx(3600 * (1 + rand))
        assert {m.xid for _, m in sent} == {sent[0][1].xid}
        # Elapsed time in hundredths since the first SOLICIT, capped at 0xffff.
        assert [m.elapsed_time for _, m in sent[:4]] == [
            round((t - sent[0][0]) * 100) for t, _ in sent[:4]]
        assert sent[-1][1].elapsed_time == 0xFFFF


def test_sol_max_rt_option_changes_the_cap():
    cl = client()
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    # Honoured even from an ADVERTISE that is otherwise ignored (RFC 8415 section 18.2.9).
    cl.receive(answer(solicit, w.ADVERTISE, sol_max_rt=100,
                      status=w.StatusCode(w.STATUS_NO_ADDRS_AVAIL)), LL_B, t)
    assert max(gaps(advance(cl, 2000.0))) == pytest.approx(100)
    cl.receive(answer(solicit, w.ADVERTISE, sol_max_rt=10), LL_B, t)   # out of range
    assert cl.sol_max_rt == 100


def test_random_runs_stay_within_the_rfc_bounds():
    for seed in range(20):
        cl = client(random.Random(seed))
        cl.start(0.0)
        sent = advance(cl, 30000.0)
        assert 0.0 <= sent[0][0] <= 1.0
        intervals = gaps(sent)
        assert 1.0 < intervals[0] <= 1.1                     # strictly above IRT
        for previous, rt in zip(intervals, intervals[1:]):
            if rt < 3240:
                assert 1.9 * previous - 1e-6 <= rt <= 2.1 * previous + 1e-6
            else:
                assert rt <= 3960
        assert len({m.xid for _, m in sent}) == 1


def test_request_gives_up_after_mrc_10_and_solicits_again():
    cl, t, solicit, request = requesting()
    sent = [(t, request)] + advance(cl, t + 300.0)
    requests = [(when, m) for when, m in sent if m.msg_type == w.REQUEST]
    assert len(requests) == 10 and {m.xid for _, m in requests} == {request.xid}
    assert gaps(requests) == pytest.approx([1, 2, 4, 8, 16, 30, 30, 30, 30])   # MRT 30
    assert cl.stats["exhausted.REQUEST"] == 1
    # After the 10th, one more RT, then discovery again after SOL_MAX_DELAY * 0.5.
    solicits = [(when, m) for when, m in sent if m.msg_type == w.SOLICIT]
    assert solicits[0][0] == pytest.approx(requests[-1][0] + 30 + 0.5)
    assert solicits[0][1].xid not in (solicit.xid, request.xid)
    assert cl.state == c.SOLICITING and events(cl) == []


def test_unspec_fail_keeps_retransmitting_not_on_link_solicits():
    cl, t, _, request = requesting()
    cl.receive(answer(request, status=w.StatusCode(w.STATUS_UNSPEC_FAIL)), LL_B, t)
    cl.receive(answer(request, status=w.StatusCode(w.STATUS_USE_MULTICAST)), LL_B, t)
    assert cl.state == c.REQUESTING and cl.stats["drop.reply_status_1"] == 1
    [(_, again)] = advance(cl, t + 1.0)
    assert again.xid == request.xid
    cl.receive(answer(request, ia_na=[ia(status=w.StatusCode(w.STATUS_NOT_ON_LINK))]), LL_B, t)
    assert cl.state == c.SOLICITING and cl.stats["request_refused"] == 1


# --- T1, T2, expiry --------------------------------------------------------------------------

def test_renew_until_t2_then_rebind_until_expiry_then_lost():
    cl, t0 = bound(t1=100, t2=160, addresses=((ADDR1, 200, 300),))
    sent = advance(cl, t0 + 1000)
    renews = [(t, m) for t, m in sent if m.msg_type == w.RENEW]
    rebinds = [(t, m) for t, m in sent if m.msg_type == w.REBIND]
    assert renews[0][0] == pytest.approx(t0 + 100)
    assert gaps(renews) == pytest.approx([10, 20])            # REN_TIMEOUT doubling ...
    assert rebinds[0][0] == pytest.approx(t0 + 160)           # ... cut short by T2
    assert all(m.server_id == SERVER_B for _, m in renews)
    assert all(m.server_id is None for _, m in rebinds)
    assert all(m.ia_na[0].addresses == [w.IaAddress(ADDR1)] for _, m in renews + rebinds)
    assert gaps(rebinds) == pytest.approx([10, 20, 40])      # next one due after expiry
    [(kind, info)] = events(cl)
    assert kind == "lost" and info.reason == "expired"
    assert info.addresses[0].address == ADDR1
    solicits = [t for t, m in sent if m.msg_type == w.SOLICIT]
    assert solicits[0] == pytest.approx(t0 + 300 + 0.5)       # at valid expiry + delay
    assert cl.state == c.SOLICITING


def test_rebind_answered_by_another_server():
    cl, t0 = bound()
    sent = advance(cl, t0 + 165)
    rebind = [m for _, m in sent if m.msg_type == w.REBIND][0]
    cl.receive(answer(rebind, server=SERVER_C, ia_na=[ia((ADDR1, 500, 600), t1=250, t2=400)]),
               LL_C, t0 + 165)
    [(kind, info)] = events(cl)
    assert kind == "renewed" and info.server_id == SERVER_C and info.server_address == LL_C
    assert cl.state == c.BOUND and cl.poll_at() == pytest.approx(t0 + 165 + 250)
    [(_, renew)] = advance(cl, t0 + 165 + 250)
    assert renew.msg_type == w.RENEW and renew.server_id == SERVER_C


def test_t1_t2_zero_means_half_and_four_fifths_of_preferred():
    cl, t0 = bound(t1=0, t2=0, addresses=((ADDR1, 1000, 2000), (ADDR2, 400, 2000)))
    assert cl.poll_at() == pytest.approx(t0 + 200)              # 0.5 * 400
    sent = advance(cl, t0 + 320)
    assert [(round(t - t0, 6), m.msg_type) for t, m in sent][0] == (200, w.RENEW)
    assert [m.msg_type for t, m in sent if t == pytest.approx(t0 + 320)] == [w.REBIND]


def test_infinite_lifetimes_never_renew():
    # namedhcp's way: T1 = T2 = 0, lifetimes all ones, and an IAID of its own.
    cl = client()
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    forever = [ia((ADDR1, w.INFINITY, w.INFINITY), iaid=0x12345678)]
    cl.receive(answer(solicit, w.ADVERTISE, ia_na=forever), LL_B, t)
    [(t, request)] = advance(cl, 1.55)
    cl.receive(answer(request, ia_na=forever), LL_B, t)
    [(kind, info)] = events(cl)
    assert kind == "configured" and info.addresses == [c.LeasedAddress(ADDR1, math.inf,
                                                                        math.inf)]
    assert cl.poll_at() is None and cl.stats["foreign_iaid"] > 0


def test_t1_above_t2_makes_the_ia_invalid():
    cl = client()
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    cl.receive(answer(solicit, w.ADVERTISE, preference=255,
                      ia_na=[ia((ADDR1, 100, 200), t1=90, t2=80)]), LL_B, t)
    assert cl.state == c.SOLICITING and cl.stats["drop.ia_t1_above_t2"] == 1


def test_renew_reply_adds_updates_and_removes_addresses():
    cl, t0 = bound(addresses=((ADDR1, 200, 300), (ADDR2, 200, 300)))
    [(t, renew)] = advance(cl, t0 + 100)
    addr3 = A("2001:db8::3")
    # ADDR1 dropped (valid 0), ADDR2 not mentioned (kept as it was), addr3 new.
    cl.receive(answer(renew, ia_na=[ia((ADDR1, 0, 0), (addr3, 50, 80), t1=30, t2=40)]),
               LL_B, t)
    [(kind, info)] = events(cl)
    assert kind == "renewed"
    assert info.addresses == [c.LeasedAddress(ADDR2, t0 + 200, t0 + 300),
                              c.LeasedAddress(addr3, t + 50, t + 80)]
    assert cl.poll_at() == pytest.approx(t + 30)
    # addr3 expires first: a "renewed" without it, then ADDR2's end loses the lease.
    advance(cl, t + 80)
    assert [(k, [a.address for a in i.addresses]) for k, i in events(cl)] == [
        ("renewed", [ADDR2])]


def test_renew_reply_edge_cases():
    cl, t0 = bound(addresses=((ADDR1, 200, 300), (ADDR2, 200, 300)))
    [(t, renew)] = advance(cl, t0 + 100)
    # An ADVERTISE with the RENEW's xid, and a REPLY without our IA: ignored.
    cl.receive(answer(renew, w.ADVERTISE, ia_na=[ia((ADDR1, 10, 20))]), LL_B, t)
    cl.receive(answer(renew, ia_na=[ia((ADDR1, 10, 20), iaid=1), ia(iaid=2)]), LL_B, t)
    assert cl.stats["drop.unexpected_type"] == 1 and cl.stats["drop.reply_without_ia"] == 1
    assert cl.state == c.RENEWING and events(cl) == []
    # An address refused by its own status is left as it was.
    refused = w.IaAddress(ADDR2, 5, 5, w.StatusCode(w.STATUS_NOT_ON_LINK))
    cl.receive(answer(renew, ia_na=[w.IaNa(IAID, 50, 80, [w.IaAddress(ADDR1, 90, 100),
                                                          refused])]), LL_B, t)
    [(kind, info)] = events(cl)
    assert kind == "renewed" and info.addresses == [
        c.LeasedAddress(ADDR1, t + 90, t + 100), c.LeasedAddress(ADDR2, t0 + 200, t0 + 300)]


def test_renew_reply_with_every_lifetime_zero_loses_the_lease():
    cl, t0 = bound()
    [(t, renew)] = advance(cl, t0 + 100)
    cl.receive(answer(renew, ia_na=[ia((ADDR1, 0, 0))]), LL_B, t)
    [(kind, info)] = events(cl)
    assert kind == "lost" and info.reason == "expired" and cl.state == c.SOLICITING


def test_a_late_poll_after_t2_rebinds_at_once():
    cl, t0 = bound(t1=100, t2=160)
    cl.poll(t0 + 200)
    [rebind] = take(cl)
    assert rebind.msg_type == w.REBIND and cl.state == c.REBINDING


def test_no_binding_in_renew_reply_requests_the_addresses_again():
    cl, t0 = bound()
    [(t, renew)] = advance(cl, t0 + 100)
    cl.receive(answer(renew, ia_na=[ia(status=w.StatusCode(w.STATUS_NO_BINDING))]), LL_B, t)
    [request] = take(cl)
    assert request.msg_type == w.REQUEST and request.server_id == SERVER_B
    assert request.ia_na[0].addresses == [w.IaAddress(ADDR1)]
    cl.receive(answer(request, ia_na=[ia((ADDR1, 200, 300), t1=100, t2=160)]), LL_B, t)
    assert [k for k, _ in events(cl)] == ["renewed"] and cl.state == c.BOUND


def test_failed_re_request_after_no_binding_loses_the_lease():
    cl, t0 = bound()
    [(t, renew)] = advance(cl, t0 + 100)
    cl.receive(answer(renew, ia_na=[ia(status=w.StatusCode(w.STATUS_NO_BINDING))]), LL_B, t)
    [request] = take(cl)
    cl.receive(answer(request, ia_na=[ia(status=w.StatusCode(w.STATUS_NO_ADDRS_AVAIL))]),
               LL_B, t)
    [(kind, info)] = events(cl)
    assert kind == "lost" and info.reason == "request_failed" and cl.state == c.SOLICITING


def test_no_addrs_avail_in_renew_reply_keeps_the_lease_and_retries():
    cl, t0 = bound()
    [(t, renew)] = advance(cl, t0 + 100)
    cl.receive(answer(renew, ia_na=[ia(status=w.StatusCode(w.STATUS_NO_ADDRS_AVAIL))]),
               LL_B, t)
    assert cl.state == c.RENEWING and events(cl) == []
    [(when, again)] = advance(cl, t + 10)
    assert again.xid == renew.xid and when == pytest.approx(t + 10)


# --- DECLINE and RELEASE ---------------------------------------------------------------------

def test_conflict_declines_the_only_address_and_solicits_again():
    cl, t0 = bound()
    cl.conflict(ADDR1, t0 + 1)
    [decline] = take(cl)
    assert decline.msg_type == w.DECLINE and decline.server_id == SERVER_B
    assert decline.ia_na == [w.IaNa(IAID, addresses=[w.IaAddress(ADDR1)])]
    [(kind, info)] = events(cl)
    assert kind == "lost" and info.reason == "declined" and info.addresses[0].address == ADDR1
    cl.receive(answer(decline, status=w.StatusCode(w.STATUS_SUCCESS)), LL_B, t0 + 1.1)
    assert cl.state == c.SOLICITING
    [(t, solicit)] = advance(cl, t0 + 1.6)
    assert solicit.msg_type == w.SOLICIT and t == pytest.approx(t0 + 1.1 + 0.5)


def test_conflict_with_one_of_two_addresses_keeps_the_other():
    cl, t0 = bound(addresses=((ADDR1, 200, 300), (ADDR2, 200, 300)))
    cl.conflict(ADDR2, t0 + 1)
    [(kind, info)] = events(cl)
    assert kind == "renewed" and [a.address for a in info.addresses] == [ADDR1]
    sent = [(t0 + 1, take(cl)[0])] + advance(cl, t0 + 50)
    assert [m.msg_type for _, m in sent] == [w.DECLINE] * 4        # DEC_MAX_RC
    assert gaps(sent) == pytest.approx([1, 2, 4])
    assert cl.state == c.BOUND and cl.stats["exhausted.DECLINE"] == 1
    [(t, renew)] = advance(cl, t0 + 100)
    assert renew.msg_type == w.RENEW and renew.ia_na[0].addresses == [w.IaAddress(ADDR1)]
    cl.conflict(A("2001:db8::99"), t)                # not ours: counted, nothing sent
    assert cl.stats["conflict_unknown_address"] == 1 and take(cl) == []


def test_a_second_conflict_during_decline_declines_both():
    addr3 = A("2001:db8::3")
    cl, t0 = bound(addresses=((ADDR1, 200, 300), (ADDR2, 200, 300), (addr3, 200, 300)))
    cl.conflict(ADDR1, t0 + 1)
    [first] = take(cl)
    cl.conflict(ADDR2, t0 + 1.5)
    [second] = take(cl)
    assert second.msg_type == w.DECLINE and second.xid != first.xid
    assert {a.address for a in second.ia_na[0].addresses} == {ADDR1, ADDR2}
    assert [[a.address for a in i.addresses] for _, i in events(cl)] == [[ADDR2, addr3],
                                                                          [addr3]]
    cl.receive(answer(second), LL_B, t0 + 2)
    assert cl.state == c.BOUND and [a.address for a in cl.info.addresses] == [addr3]


def test_release_is_sent_four_times_at_most():
    cl, t0 = bound()
    cl.stop(t0 + 5)
    sent = [(t0 + 5, take(cl)[0])] + advance(cl, t0 + 100)
    assert [m.msg_type for _, m in sent] == [w.RELEASE] * 4 and gaps(sent) == [1, 2, 4]
    assert cl.state == c.STOPPED and cl.poll_at() is None
    cl.receive(answer(sent[0][1]), LL_B, t0 + 100)
    assert cl.stats["drop.unexpected_xid"] == 1


def test_release_ends_on_any_reply_and_stop_without_lease_sends_nothing():
    cl, t0 = bound()
    cl.stop(t0)
    [release] = take(cl)
    cl.receive(answer(release, status=w.StatusCode(w.STATUS_NO_BINDING)), LL_B, t0)
    assert cl.state == c.STOPPED and cl.poll_at() is None
    fresh = client()
    fresh.start(0.0)
    fresh.stop(0.1)
    assert fresh.state == c.STOPPED and take(fresh) == [] and events(fresh) == []
    assert advance(fresh, 100) == []


# --- stateless (RFC 8415 section 18.2.6) -----------------------------------------------------

def test_stateless_with_dnsmasq_and_refresh():
    cl = client(mode="stateless")
    cl.start(0.0)
    [(t, inform)] = advance(cl, 1.0)
    assert t == 0.5 and inform.msg_type == w.INFORMATION_REQUEST
    assert inform.ia_na == [] and inform.fqdn is None and inform.client_id == DUID
    assert inform.oro == [w.OPTION_DNS_SERVERS, w.OPTION_DOMAIN_LIST,
                          w.OPTION_INFORMATION_REFRESH_TIME, w.OPTION_INF_MAX_RT]
    cl.receive(with_xid(DNSMASQ_INFO_REPLY, inform.xid), DNSMASQ_LL, 0.6)
    [(kind, info)] = events(cl)
    assert kind == "configured" and info.addresses == []
    assert info.dns_servers == [A("fd00:d6::1")] and info.domains == ["lan"]
    assert info.refresh_at == pytest.approx(0.6 + 7200) == cl.poll_at()
    [(t, again)] = advance(cl, 0.6 + 7200)
    assert again.msg_type == w.INFORMATION_REQUEST and again.xid != inform.xid
    cl.receive(answer(again, dns_servers=[A("2001:db8::53")]), LL_B, t)
    [(kind, info)] = events(cl)
    assert kind == "renewed" and info.dns_servers == [A("2001:db8::53")] and info.domains == []
    assert cl.poll_at() == pytest.approx(t + 86400)             # IRT_DEFAULT


@pytest.mark.parametrize("refresh, expected", [(10, 600), (600, 600), (5000, 5000),
                                               (w.INFINITY, None)])
def test_information_refresh_time_floor_and_infinity(refresh, expected):
    cl = client(mode="stateless")
    cl.start(0.0)
    [(t, inform)] = advance(cl, 1.0)
    cl.receive(answer(inform, refresh_time=refresh), LL_B, t)
    assert cl.poll_at() == (None if expected is None else pytest.approx(t + expected))


def test_information_request_backoff_and_inf_max_rt():
    cl = client(mode="stateless")
    cl.start(0.0)
    sent = advance(cl, 10000)
    assert gaps(sent)[:6] == pytest.approx([1, 2, 4, 8, 16, 32])
    assert max(gaps(sent)) == pytest.approx(3600)
    cl.receive(answer(sent[-1][1], status=w.StatusCode(w.STATUS_UNSPEC_FAIL),
                      inf_max_rt=120), LL_B, 10000)
    assert cl.state == c.INFORMING                      # UnspecFail: no answer yet
    cl.receive(answer(sent[-1][1], inf_max_rt=120, refresh_time=600), LL_B, 10000)
    assert cl.inf_max_rt == 120
    later = advance(cl, 20000)
    assert max(gaps(later)) == pytest.approx(120)


# --- validation and garbage -------------------------------------------------------------------

def test_foreign_and_malformed_messages_are_dropped():
    cl = client()
    cl.start(0.0)
    [(t, solicit)] = advance(cl, 1.0)
    good = [ia((ADDR1, 10, 20))]
    cl.receive(b"\x02\x00", LL_B, t)
    cl.receive(answer(solicit, w.ADVERTISE, ia_na=good)[:-3], LL_B, t)
    other = w.Message(w.ADVERTISE, solicit.xid ^ 1, client_id=DUID, server_id=SERVER_B,
                      ia_na=good, preference=255)
    cl.receive(other.emit(), LL_B, t)
    cl.receive(w.Message(w.ADVERTISE, solicit.xid, client_id=DUID, ia_na=good,
                         preference=255).emit(), LL_B, t)
    cl.receive(w.Message(w.ADVERTISE, solicit.xid, client_id=w.duid_ll(bytes(6)),
                         server_id=SERVER_B, ia_na=good, preference=255).emit(), LL_B, t)
    cl.receive(w.Message(w.ADVERTISE, solicit.xid, server_id=SERVER_B, ia_na=good,
                         preference=255).emit(), LL_B, t)
    cl.receive(answer(solicit, w.SOLICIT, ia_na=good), LL_B, t)
    cl.receive(answer(solicit, w.RECONFIGURE, ia_na=good), LL_B, t)
    assert cl.stats["drop.dhcp6_truncated"] == 1
    assert cl.stats["drop.dhcp6_option_overrun"] + cl.stats["drop.dhcp6_truncated_option"] == 1
    assert cl.stats["drop.unexpected_xid"] == 1 and cl.stats["drop.no_server_id"] == 1
    assert cl.stats["drop.client_id_mismatch"] == 2
    assert cl.stats["drop.unexpected_type"] == 2
    assert cl.state == c.SOLICITING and take(cl) == [] and cl._advertises == []


def test_messages_before_the_first_transmission_are_dropped():
    cl = client()
    cl.start(0.0)
    xid = cl._exchange.xid
    cl.receive(w.Message(w.ADVERTISE, xid, client_id=DUID, server_id=SERVER_B, preference=255,
                         ia_na=[ia((ADDR1, 10, 20))]).emit(), LL_B, 0.1)
    assert cl.state == c.SOLICITING and cl.stats["drop.unexpected_xid"] == 1


def test_api_misuse_raises():
    with pytest.raises(ValueError):
        c.Dhcp6Client(MAC, FixedRng(), mode="both")
    with pytest.raises(ValueError):
        c.Dhcp6Client(MAC[:5], FixedRng())
    with pytest.raises(ValueError):
        c.Dhcp6Client(MAC, FixedRng(), fqdn="a..b")
    cl = client()
    cl.start(0.0)
    with pytest.raises(RuntimeError):
        cl.start(1.0)


def test_outbox_and_events_are_bounded():
    cl = client(max_queue=2, mode="stateless")
    cl.start(0.0)
    while cl.poll_at() < 100:            # nobody drains the outbox
        cl.poll(cl.poll_at())
    assert cl.stats["tx.INFORMATION-REQUEST"] == 7
    assert len(cl.outbox) == 2 and cl.stats["queue_overflow"] == 5
    # Events too: five answers nobody collects leave the last two.
    for n in range(5):
        msg = w.parse_message(cl.outbox[-1][5])
        cl.receive(answer(msg, dns_servers=[bytes(15) + bytes([n])]), LL_B, 100 + 600 * n)
        cl.poll(cl.poll_at())
    assert [info.dns_servers[0][15] for _, info in cl.events] == [3, 4]


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(st.binary(max_size=120), max_size=6), st.booleans())
def test_garbage_never_raises(payloads, keep_xid):
    cl, t0 = bound()
    [(t, renew)] = advance(cl, t0 + 100)
    for payload in payloads:
        if keep_xid and len(payload) >= 4:
            payload = with_xid(payload, renew.xid)
        cl.receive(payload, LL_B, t)
    advance(cl, t + 1000)
    assert cl.state in (c.BOUND, c.RENEWING, c.REBINDING, c.SOLICITING, c.REQUESTING)
