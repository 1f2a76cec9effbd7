"""The DHCPv6 server (lwstack.proto.dhcp6_server) on virtual time.

Two kinds of test: the server alone, fed messages built with the codec (each RFC 8415
section 18.3 case), and whole lease lives where our clients and the server talk through
``Link``, a loop that delivers every datagram at once and advances virtual time to the next
``poll_at``.  Hash addresses are checked against iothaddr's published values
(shared/reference/iothaddr.md).
"""
import ipaddress
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lwstack.proto import dhcp6 as c
from lwstack.proto import dhcp6_server as s
from lwstack.wire import dhcp6 as w


def A(text):
    return ipaddress.IPv6Address(text).packed


SERVER_DUID = w.duid_ll(bytes.fromhex("020000000001"))
OTHER_SERVER = w.duid_ll(bytes.fromhex("0200000000ff"))
POOL = (A("fd00::100"), A("fd00::1ff"))
PREFIX = (A("fd00::"), 64)
DNS = A("fd00::53")
CLIENT_LL = A("fe80::2")


def server(**kwargs):
    kwargs.setdefault("pool", POOL)
    kwargs.setdefault("prefix", PREFIX)
    kwargs.setdefault("dns_servers", [DNS])
    kwargs.setdefault("domains", ["lan"])
    kwargs.setdefault("preferred_lifetime", 100)
    kwargs.setdefault("valid_lifetime", 200)
    return s.Dhcp6Server(SERVER_DUID, **kwargs)


def duid(n):
    return w.duid_ll(bytes([2, 0, 0, 0, 0x10, n]))


def ask(srv, kind, client=1, now=0.0, src=CLIENT_LL, unicast=False, server_id=SERVER_DUID,
        **fields):
    """Send one message from client ``client``; return the server's reply (or None)."""
    if kind in (w.SOLICIT, w.CONFIRM, w.REBIND):
        server_id = None
    fields.setdefault("client_id", duid(client))
    msg = w.Message(kind, 0x1234 + client, server_id=server_id, elapsed_time=0, **fields)
    srv.receive(msg.emit(), src, now, unicast=unicast)
    if not srv.outbox:
        return None
    [(proto, source, dst, sport, dport, payload)] = srv.outbox
    srv.outbox.clear()
    assert (proto, source, dst, sport, dport) == ("udp", None, src, 547, 546)
    reply = w.parse_message(payload)
    assert reply.xid == msg.xid and reply.server_id == SERVER_DUID
    assert reply.client_id == fields["client_id"]
    return reply


def ia(iaid=1, *addresses):
    return w.IaNa(iaid, addresses=[w.IaAddress(a) for a in addresses])


def lease_of(reply, iaid=1):
    [address] = reply.find_ia(iaid).addresses
    return address.address


# --- SOLICIT / REQUEST (sections 18.3.1, 18.3.2) ---------------------------------------------

def test_solicit_advertises_and_request_commits():
    srv = server(preference=7)
    adv = ask(srv, w.SOLICIT, ia_na=[ia()], oro=[w.OPTION_DNS_SERVERS])
    assert adv.msg_type == w.ADVERTISE and adv.preference == 7 and not adv.rapid_commit
    [got] = adv.ia_na
    assert (got.iaid, got.t1, got.t2, got.status) == (1, 50, 80, None)
    assert got.addresses == [w.IaAddress(A("fd00::100"), 100, 200)]
    assert adv.dns_servers == [DNS] and adv.domains == ["lan"]
    assert srv.leases[A("fd00::100")].state == s.OFFERED
    assert srv.poll_at() == 60.0                                 # offer_time
    reply = ask(srv, w.REQUEST, now=1.0, ia_na=[ia(1, A("fd00::100"))])
    assert reply.msg_type == w.REPLY and reply.preference is None
    assert reply.ia_na == [w.IaNa(1, 50, 80, [w.IaAddress(A("fd00::100"), 100, 200)])]
    lease = srv.leases[A("fd00::100")]
    assert (lease.state, lease.duid, lease.iaid, lease.expires) == (s.BOUND, duid(1), 1, 201.0)
    assert srv.stats["tx.ADVERTISE"] == srv.stats["tx.REPLY"] == 1


def test_clients_get_distinct_addresses_and_several_ias_each():
    srv = server()
    first = ask(srv, w.SOLICIT, client=1, ia_na=[ia(1), ia(2)])
    second = ask(srv, w.SOLICIT, client=2, ia_na=[ia(1)])
    assert [lease_of(first, 1), lease_of(first, 2), lease_of(second)] == [
        A("fd00::100"), A("fd00::101"), A("fd00::102")]
    # Asking again gives the same offer.
    assert lease_of(ask(srv, w.SOLICIT, client=2, ia_na=[ia(1)])) == A("fd00::102")


def test_request_without_offer_allocates_and_lists_foreign_addresses_with_zero_lifetimes():
    srv = server()
    reply = ask(srv, w.REQUEST, ia_na=[ia(1, A("2001:db8::1"))])
    assert reply.find_ia(1).addresses == [w.IaAddress(A("fd00::100"), 100, 200),
                                          w.IaAddress(A("2001:db8::1"), 0, 0)]


def test_offers_are_held_then_released():
    srv = server(pool=(A("fd00::100"), A("fd00::100")), offer_time=30.0)
    assert lease_of(ask(srv, w.SOLICIT, client=1, ia_na=[ia()])) == A("fd00::100")
    refused = ask(srv, w.SOLICIT, client=2, now=10.0, ia_na=[ia()])
    assert refused.ia_na == []
    assert refused.status == w.StatusCode(w.STATUS_NO_ADDRS_AVAIL, "no addresses available")
    srv.poll(30.0)
    assert srv.leases == {} and srv.stats["expired.offered"] == 1 and srv.poll_at() is None
    assert lease_of(ask(srv, w.SOLICIT, client=2, now=31.0, ia_na=[ia()])) == A("fd00::100")


def test_rapid_commit():
    srv = server()
    reply = ask(srv, w.SOLICIT, rapid_commit=True, ia_na=[ia()])
    assert reply.msg_type == w.REPLY and reply.rapid_commit
    assert srv.leases[lease_of(reply)].state == s.BOUND
    srv = server(rapid_commit=False)
    adv = ask(srv, w.SOLICIT, rapid_commit=True, ia_na=[ia()])
    assert adv.msg_type == w.ADVERTISE and not adv.rapid_commit


def test_pool_exhaustion_and_partial_success():
    srv = server(pool=(A("fd00::100"), A("fd00::101")), reserved=[A("fd00::100")])
    two = ask(srv, w.REQUEST, ia_na=[ia(1), ia(2)])
    assert lease_of(two, 1) == A("fd00::101")
    assert two.find_ia(2) == w.IaNa(2, status=w.StatusCode(w.STATUS_NO_ADDRS_AVAIL,
                                                            "no addresses available"))
    assert srv.stats["pool_exhausted"] == 1


def test_the_lease_table_is_bounded():
    srv = server(max_leases=2)
    for n in (1, 2):
        assert ask(srv, w.REQUEST, client=n, ia_na=[ia()]).find_ia(1).addresses
    third = ask(srv, w.SOLICIT, client=3, ia_na=[ia()])
    assert third.status.code == w.STATUS_NO_ADDRS_AVAIL
    assert srv.stats["lease_table_full"] == 1 and len(srv.leases) == 2


# --- RENEW / REBIND (sections 18.3.4, 18.3.5) ------------------------------------------------

def test_renew_extends_and_unknown_ia_gets_no_binding():
    srv = server()
    got = lease_of(ask(srv, w.REQUEST, ia_na=[ia()]))
    reply = ask(srv, w.RENEW, now=50.0, ia_na=[ia(1, got), ia(7, A("fd00::150"))])
    assert reply.find_ia(1).addresses == [w.IaAddress(got, 100, 200)]
    assert reply.find_ia(7) == w.IaNa(7, status=w.StatusCode(w.STATUS_NO_BINDING,
                                                              "no binding"))
    assert srv.leases[got].expires == 250.0 and srv.stats["no_binding"] == 1
    assert srv.poll_at() == 250.0


def test_rebind_after_a_server_restart_keeps_the_client_address():
    srv = server()
    reply = ask(srv, w.REBIND, ia_na=[ia(1, A("fd00::1a0"))])
    assert reply.find_ia(1).addresses == [w.IaAddress(A("fd00::1a0"), 100, 200)]
    assert srv.leases[A("fd00::1a0")].state == s.BOUND
    # Another client cannot rebind to it; an address off the link comes back with zeros.
    taken = ask(srv, w.REBIND, client=2, ia_na=[ia(1, A("fd00::1a0"))])
    assert taken.find_ia(1).status.code == w.STATUS_NO_BINDING
    offlink = ask(srv, w.REBIND, client=3, ia_na=[ia(1, A("2001:db8::5"))])
    assert offlink.find_ia(1) == w.IaNa(1, addresses=[w.IaAddress(A("2001:db8::5"), 0, 0)])
    outside_pool = ask(srv, w.REBIND, client=4, ia_na=[ia(1, A("fd00::5"))])
    assert outside_pool.find_ia(1).status.code == w.STATUS_NO_BINDING


def test_rebind_of_a_hash_address_and_one_address_per_ia():
    srv = s.Dhcp6Server(SERVER_DUID, hash_base=A("fc00::"), pool=POOL)
    name = w.ClientFqdn(0, "renzo.hash.local")
    mine = A("fc00::4cc:8049:6765:d03a")
    assert lease_of(ask(srv, w.REBIND, ia_na=[ia(1, mine)], fqdn=name)) == mine
    assert ask(srv, w.REBIND, client=2, ia_na=[ia(1, A("fc00::1234"))],
               fqdn=name).find_ia(1).status.code == w.STATUS_NO_BINDING
    # An offer, then a REBIND to another free address: the IA keeps one address.
    offered = lease_of(ask(srv, w.SOLICIT, client=3, ia_na=[ia()]))
    rebound = lease_of(ask(srv, w.REBIND, client=3, ia_na=[ia(1, A("fd00::1f0"))]))
    assert rebound == A("fd00::1f0") and offered not in srv.leases


def test_rebind_extends_a_known_binding():
    srv = server()
    got = lease_of(ask(srv, w.REQUEST, ia_na=[ia()]))
    reply = ask(srv, w.REBIND, now=150.0, ia_na=[ia(1, got)])
    assert reply.find_ia(1).addresses == [w.IaAddress(got, 100, 200)]
    assert srv.leases[got].expires == 350.0


def test_leases_expire():
    srv = server()
    got = lease_of(ask(srv, w.REQUEST, ia_na=[ia()]))
    assert srv.active(100.0)[0].address == got
    srv.poll(200.0)
    assert srv.leases == {} and srv.active(200.0) == [] and srv.stats["expired.bound"] == 1
    assert ask(srv, w.RENEW, now=201.0, ia_na=[ia(1, got)]).find_ia(1).status.code == (
        w.STATUS_NO_BINDING)


def test_timer_heap_stays_bounded_under_renewals():
    srv = server()
    got = lease_of(ask(srv, w.REQUEST, ia_na=[ia()]))
    for n in range(1000):
        ask(srv, w.RENEW, now=float(n), ia_na=[ia(1, got)])
    assert len(srv._timers) <= 2 * len(srv.leases) + 65
    assert srv.poll_at() == 999.0 + 200


def test_infinite_lifetimes():
    srv = server(preferred_lifetime=w.INFINITY, valid_lifetime=w.INFINITY)
    reply = ask(srv, w.REQUEST, ia_na=[ia()])
    assert (reply.find_ia(1).t1, reply.find_ia(1).t2) == (w.INFINITY, w.INFINITY)
    assert srv.leases[lease_of(reply)].expires == math.inf and srv.poll_at() is None


# --- RELEASE, DECLINE, CONFIRM (sections 18.3.3, 18.3.7, 18.3.8) -----------------------------

def test_release_frees_the_address():
    srv = server()
    got = lease_of(ask(srv, w.REQUEST, ia_na=[ia()]))
    reply = ask(srv, w.RELEASE, ia_na=[ia(1, got), ia(9, A("fd00::1ff"))])
    assert reply.status == w.StatusCode(w.STATUS_SUCCESS, "release received")
    assert reply.find_ia(9).status.code == w.STATUS_NO_BINDING and reply.find_ia(1) is None
    assert srv.leases == {} and srv.stats["released"] == 1


def test_decline_quarantines_the_address():
    srv = server(pool=(A("fd00::100"), A("fd00::101")), decline_time=500.0)
    got = lease_of(ask(srv, w.REQUEST, ia_na=[ia()]))
    reply = ask(srv, w.DECLINE, ia_na=[ia(1, got)])
    assert reply.status.code == w.STATUS_SUCCESS and srv.leases[got].state == s.DECLINED
    # The same client, asking again, gets the other address; nobody gets the declined one.
    assert lease_of(ask(srv, w.SOLICIT, now=1.0, ia_na=[ia()])) == A("fd00::101")
    assert ask(srv, w.SOLICIT, client=2, now=2.0, ia_na=[ia()]).status.code == (
        w.STATUS_NO_ADDRS_AVAIL)
    srv.poll(500.0)
    assert got not in srv.leases and srv.stats["expired.declined"] == 1


def test_confirm():
    srv = server()
    ok = ask(srv, w.CONFIRM, ia_na=[ia(1, A("fd00::1:2"))])
    assert ok.status.code == w.STATUS_SUCCESS
    bad = ask(srv, w.CONFIRM, ia_na=[ia(1, A("fd00::1")), ia(2, A("fd01::1"))])
    assert bad.status.code == w.STATUS_NOT_ON_LINK
    assert ask(srv, w.CONFIRM, ia_na=[ia(1)]) is None


def test_on_link_without_a_prefix_is_the_pool_and_the_hash_base():
    srv = s.Dhcp6Server(SERVER_DUID, pool=POOL, hash_base=A("fc00::"))
    assert ask(srv, w.CONFIRM, ia_na=[ia(1, A("fd00::120"), A("fc00::99"))]).status.code == 0
    assert ask(srv, w.CONFIRM, ia_na=[ia(1, A("fd00::99"))]).status.code == (
        w.STATUS_NOT_ON_LINK)


# --- stateless (section 18.3.6) ---------------------------------------------------------------

def test_information_request():
    srv = server(refresh_time=3600)
    reply = ask(srv, w.INFORMATION_REQUEST, oro=[23, 24, 32])
    assert reply.msg_type == w.REPLY and reply.ia_na == []
    assert (reply.dns_servers, reply.domains, reply.refresh_time) == ([DNS], ["lan"], 3600)
    anonymous = ask(srv, w.INFORMATION_REQUEST, client_id=None)
    assert anonymous.client_id is None and anonymous.dns_servers == [DNS]
    assert anonymous.refresh_time == 3600
    # Another server's, or with an IA (section 16.12): no answer.
    assert ask(srv, w.INFORMATION_REQUEST, server_id=OTHER_SERVER) is None
    assert ask(srv, w.INFORMATION_REQUEST, ia_na=[ia()]) is None
    assert srv.stats["drop.ia_in_information_request"] == 1
    # A REPLY to a stateful message carries no refresh time.
    assert ask(srv, w.REQUEST, ia_na=[ia()]).refresh_time is None


def test_stateless_only_server_refuses_addresses():
    srv = s.Dhcp6Server(SERVER_DUID, dns_servers=[DNS])
    assert ask(srv, w.SOLICIT, ia_na=[ia()]).status.code == w.STATUS_NO_ADDRS_AVAIL
    assert ask(srv, w.INFORMATION_REQUEST).dns_servers == [DNS]


# --- validation (section 16) and unicast (section 18.4) --------------------------------------

def test_messages_that_are_not_for_us_or_malformed():
    srv = server()
    assert ask(srv, w.REQUEST, server_id=OTHER_SERVER, ia_na=[ia()]) is None
    assert ask(srv, w.RENEW, server_id=None, ia_na=[ia()]) is None
    assert srv.stats["other_server"] == 2
    assert ask(srv, w.SOLICIT, client_id=None, ia_na=[ia()]) is None
    bad = w.Message(w.SOLICIT, 1, client_id=duid(1), server_id=SERVER_DUID).emit()
    srv.receive(bad, CLIENT_LL, 0.0)
    srv.receive(w.Message(w.ADVERTISE, 1, client_id=duid(1),
                          server_id=SERVER_DUID).emit(), CLIENT_LL, 0.0)
    srv.receive(b"\x01\x00", CLIENT_LL, 0.0)
    assert srv.outbox == [] and srv.leases == {}
    assert (srv.stats["drop.no_client_id"], srv.stats["drop.unexpected_server_id"],
            srv.stats["drop.not_a_client_message"], srv.stats["drop.dhcp6_truncated"]) == (
        1, 1, 1, 1)


def test_unicast_messages():
    srv = server()
    assert ask(srv, w.SOLICIT, unicast=True, ia_na=[ia()]) is None
    assert ask(srv, w.REBIND, unicast=True, ia_na=[ia()]) is None
    reply = ask(srv, w.REQUEST, unicast=True, ia_na=[ia()])
    assert reply.status.code == w.STATUS_USE_MULTICAST and reply.ia_na == []
    assert srv.leases == {} and srv.stats["drop.unicast"] == 2


def test_outbox_is_bounded():
    srv = server(max_outbox=3)
    for n in range(5):
        srv.receive(w.Message(w.INFORMATION_REQUEST, n, client_id=duid(n)).emit(),
                    CLIENT_LL, 0.0)
    assert len(srv.outbox) == 3 and srv.stats["outbox_full"] == 2


def test_constructor_checks():
    with pytest.raises(ValueError):
        s.Dhcp6Server(SERVER_DUID, pool=(POOL[1], POOL[0]))
    with pytest.raises(ValueError):
        s.Dhcp6Server(SERVER_DUID, preferred_lifetime=300, valid_lifetime=200)
    with pytest.raises(ValueError):
        s.Dhcp6Server(SERVER_DUID, t1=100, t2=50)
    with pytest.raises(ValueError):
        s.Dhcp6Server(SERVER_DUID, max_leases=0)
    with pytest.raises(ValueError):
        s.Dhcp6Server(b"\x00")
    with pytest.raises(ValueError):
        s.Dhcp6Server(SERVER_DUID, domains=["caf\u00e9.lan"])


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(st.binary(max_size=150), max_size=5), st.booleans())
def test_garbage_never_raises(payloads, unicast):
    srv = server(hash_base=A("fc00::"))
    ask(srv, w.REQUEST, ia_na=[ia()])
    for payload in payloads:
        srv.receive(payload, CLIENT_LL, 1.0, unicast=unicast)
    for _, _, _, _, _, payload in srv.outbox:
        w.parse_message(payload)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([w.SOLICIT, w.REQUEST, w.RENEW, w.REBIND,
                                           w.RELEASE, w.DECLINE, w.CONFIRM]),
                          st.integers(1, 4), st.integers(1, 2), st.integers(0x100, 0x104),
                          st.floats(0, 50)), max_size=30))
def test_random_conversations_keep_the_tables_consistent(steps):
    srv = server(pool=(A("fd00::100"), A("fd00::103")), max_leases=3)
    now = 0.0
    for kind, client, iaid, low, dt in steps:
        now += dt
        address = A("fd00::") [:14] + low.to_bytes(2, "big")
        ask(srv, kind, client=client, now=now, ia_na=[ia(iaid, address)])
        assert len(srv.leases) <= 3
        for key, addr in srv._bindings.items():
            lease = srv.leases[addr]
            assert (lease.duid, lease.iaid) == key and lease.state != s.DECLINED
        bound = [(x.duid, x.iaid) for x in srv.leases.values() if x.state != s.DECLINED]
        assert len(bound) == len(set(bound))          # one address per IA


# --- hash addresses (namedhcp-style) ---------------------------------------------------------

def test_hash_addresses_match_iothaddr():
    srv = s.Dhcp6Server(SERVER_DUID, hash_base=A("fc00::"))
    reply = ask(srv, w.SOLICIT, ia_na=[ia()], fqdn=w.ClientFqdn(0, "renzo.hash.local"))
    assert lease_of(reply) == A("fc00::4cc:8049:6765:d03a")
    srv = s.Dhcp6Server(SERVER_DUID, hash_base=A("2000:760::"))
    reply = ask(srv, w.REQUEST, ia_na=[ia()], fqdn=w.ClientFqdn(0, "test.v2.cs.unibo.it."))
    assert lease_of(reply) == A("2000:760::68d6:2fac:95a:5a2e")
    assert srv.active(0.0)[0].fqdn == "test.v2.cs.unibo.it"
    # No name, no hash address (and no pool): NoAddrsAvail.
    assert ask(srv, w.SOLICIT, client=2, ia_na=[ia()]).status.code == w.STATUS_NO_ADDRS_AVAIL


def test_hash_address_follows_the_name_to_a_new_client():
    srv = s.Dhcp6Server(SERVER_DUID, hash_base=A("fc00::"), pool=POOL)
    name = w.ClientFqdn(0, "renzo.hash.local")
    first = lease_of(ask(srv, w.REQUEST, client=1, ia_na=[ia()], fqdn=name))
    second = lease_of(ask(srv, w.REQUEST, client=2, ia_na=[ia(5)], fqdn=name), 5)
    assert first == second == A("fc00::4cc:8049:6765:d03a")
    assert srv.stats["hash_takeover"] == 1
    lease = srv.leases[first]
    assert (lease.duid, lease.iaid) == (duid(2), 5)
    assert ask(srv, w.RENEW, client=1, ia_na=[ia(1, first)]).find_ia(1).status.code == (
        w.STATUS_NO_BINDING)
    # A client without a name still gets a pool address.
    assert lease_of(ask(srv, w.REQUEST, client=3, ia_na=[ia()])) == A("fd00::100")


def test_hash_address_declined_is_not_handed_out_and_partial_names_are_completed():
    srv = s.Dhcp6Server(SERVER_DUID, hash_base=A("fc00::"), domains=["hash.local"])
    partial = w.ClientFqdn(w.FQDN_S, "renzo", partial=True)
    reply = ask(srv, w.REQUEST, ia_na=[ia()], fqdn=partial)
    assert lease_of(reply) == A("fc00::4cc:8049:6765:d03a")
    assert reply.fqdn == w.ClientFqdn(w.FQDN_N | w.FQDN_O, "renzo.hash.local")
    ask(srv, w.DECLINE, ia_na=[ia(1, lease_of(reply))])
    again = ask(srv, w.SOLICIT, client=2, ia_na=[ia()], fqdn=partial)
    assert again.status.code == w.STATUS_NO_ADDRS_AVAIL
    assert srv.stats["hash_address_unavailable"] == 1


def test_fqdn_flags_in_replies():
    plain = server()
    assert ask(plain, w.SOLICIT, ia_na=[ia()], fqdn=w.ClientFqdn(0, "a.lan")).fqdn == (
        w.ClientFqdn(w.FQDN_N, "a.lan"))
    registering = server(register_names=True)
    assert ask(registering, w.SOLICIT, ia_na=[ia()],
               fqdn=w.ClientFqdn(w.FQDN_S, "a.lan")).fqdn == w.ClientFqdn(w.FQDN_S, "a.lan")
    assert registering.leases[A("fd00::100")].fqdn == "a.lan"
    # A partial name that the domain would make too long stays as it is.
    long_domain = ".".join(["d" * 60] * 3) + "." + "e" * 30
    srv = server(domains=[long_domain])
    reply = ask(srv, w.SOLICIT, ia_na=[ia()], fqdn=w.ClientFqdn(0, "h" * 60, partial=True))
    assert reply.fqdn == w.ClientFqdn(w.FQDN_N, "h" * 60, partial=True)
    assert ask(srv, w.SOLICIT, client=2, ia_na=[ia()], fqdn=w.ClientFqdn(0, "h" * 10,
                                                                          partial=True)).fqdn == (
        w.ClientFqdn(w.FQDN_N, "h" * 10 + "." + long_domain))


# --- whole lease lives: our client and our server ---------------------------------------------

class Link:
    """Clients and one server on a lossless link, on virtual time."""

    def __init__(self, srv, *clients):
        self.server = srv
        self.clients = list(clients)
        self.address = {cl: A(f"fe80::{n + 2:x}") for n, cl in enumerate(clients)}
        self.events = {cl: [] for cl in clients}
        self.now = 0.0
        self.server_up = True

    def deliver(self):
        moved = True
        while moved:
            moved = False
            for cl in self.clients:
                for _, _, dst, _, _, payload in cl.outbox:
                    assert dst == w.ALL_DHCP_RELAY_AGENTS_AND_SERVERS
                    if self.server_up:
                        self.server.receive(payload, self.address[cl], self.now)
                    moved = True
                cl.outbox.clear()
                self.events[cl] += [(self.now, kind, info) for kind, info in cl.events]
                cl.events.clear()
            for _, _, dst, _, _, payload in self.server.outbox:
                for cl in self.clients:
                    if self.address[cl] == dst:
                        cl.receive(payload, A("fe80::1"), self.now)
                moved = True
            self.server.outbox.clear()

    def run(self, until):
        self.deliver()
        for _ in range(100000):
            times = [x.poll_at() for x in [self.server] + self.clients]
            times = [t for t in times if t is not None and t <= until]
            if not times:
                self.now = until
                return
            self.now = max(self.now, min(times))
            for x in [self.server] + self.clients:
                x.poll(self.now)
            self.deliver()
        raise AssertionError("the link never settles")


def new_client(n, seed, **kwargs):
    return c.Dhcp6Client(bytes([2, 0, 0, 0, 0x20, n]), random.Random(seed), **kwargs)


def test_whole_lease_life_with_renewals_server_outage_and_release():
    srv = server(preferred_lifetime=100, valid_lifetime=200)
    cl = new_client(1, 1, fqdn="one.lan")
    link = Link(srv, cl)
    cl.start(0.0)
    link.run(5.0)
    [(t, kind, info)] = link.events[cl]
    assert kind == "configured" and t < 2.2             # delay <= 1 s, first RT <= 1.1 s
    assert [a.address for a in info.addresses] == [A("fd00::100")]
    assert info.dns_servers == [DNS] and info.domains == ["lan"] and info.fqdn == "one.lan"
    link.run(1000.0)                                     # renews every T1 = 50 s
    renewals = [t for t, kind, _ in link.events[cl] if kind == "renewed"]
    assert len(renewals) == 19 and cl.stats["tx.REBIND"] == 0
    assert srv.leases[A("fd00::100")].expires > 1000.0
    # The server goes away: RENEW until T2, REBIND until the lease runs out, lost.
    link.server_up = False
    link.run(1300.0)
    lost = [(t, info) for t, kind, info in link.events[cl] if kind == "lost"]
    assert len(lost) == 1 and lost[0][1].reason == "expired"
    assert lost[0][0] == pytest.approx(renewals[-1] + 200)
    assert cl.stats["tx.RENEW"] > 20 and cl.stats["tx.REBIND"] >= 3
    # Back again: the client solicits and gets its address back (the server's lease
    # expired too, and the pool cursor moved on, so it is the next one).
    link.server_up = True
    link.run(6000.0)
    configured = [info for _, kind, info in link.events[cl] if kind == "configured"]
    assert len(configured) == 2 and cl.state == c.BOUND
    cl.stop(link.now)
    link.run(link.now + 10)
    assert srv.leases == {} and cl.state == c.STOPPED


def test_two_clients_one_address_then_release_frees_it():
    srv = server(pool=(A("fd00::100"), A("fd00::100")))
    one, two = new_client(1, 1), new_client(2, 2)
    link = Link(srv, one, two)
    one.start(0.0)
    link.run(10.0)
    two.start(10.0)
    link.run(100.0)
    assert one.state == c.BOUND and two.state == c.SOLICITING
    assert srv.stats["no_addrs_avail"] >= 3 and two.stats["drop.advertise_status_2"] >= 3
    one.stop(link.now)
    link.run(4000.0)                 # two's SOLICITs are up to an hour apart by now
    assert two.state == c.BOUND
    assert [a.address for a in two.info.addresses] == [A("fd00::100")]


def test_dad_conflict_declines_and_the_client_gets_another_address():
    srv = server(decline_time=1000.0)
    cl = new_client(1, 3)
    link = Link(srv, cl)
    cl.start(0.0)
    link.run(5.0)
    cl.conflict(A("fd00::100"), link.now)
    link.run(20.0)
    kinds = [(kind, [a.address for a in info.addresses]) for _, kind, info in link.events[cl]]
    assert kinds == [("configured", [A("fd00::100")]), ("lost", [A("fd00::100")]),
                     ("configured", [A("fd00::101")])]
    assert srv.leases[A("fd00::100")].state == s.DECLINED


def test_hash_addresses_end_to_end_and_rapid_commit():
    srv = s.Dhcp6Server(SERVER_DUID, hash_base=A("fc00::"), dns_servers=[DNS],
                        preferred_lifetime=w.INFINITY, valid_lifetime=w.INFINITY)
    cl = new_client(1, 4, fqdn="renzo.hash.local", rapid_commit=True)
    link = Link(srv, cl)
    cl.start(0.0)
    link.run(100.0)
    [(t, kind, info)] = link.events[cl]
    assert kind == "configured" and cl.stats["tx.REQUEST"] == 0     # rapid commit
    assert info.addresses == [c.LeasedAddress(A("fc00::4cc:8049:6765:d03a"), math.inf,
                                              math.inf)]
    assert cl.poll_at() is None and srv.poll_at() is None


def test_stateless_client_and_server():
    srv = server(refresh_time=700)
    cl = new_client(1, 5, mode="stateless")
    link = Link(srv, cl)
    cl.start(0.0)
    link.run(2200.0)
    kinds = [(kind, info.dns_servers, info.domains) for _, kind, info in link.events[cl]]
    assert kinds == [("configured", [DNS], ["lan"])] + [("renewed", [DNS], ["lan"])] * 3
    assert srv.leases == {}
