"""The stub resolver (lwstack.proto.dns) on virtual time.

Most tests play the name server by hand: they read the resolver's outbox, check the exact
query, and feed back answers built with the codec.  The last ones run it against
lwstack.proto.dns_server through an in-test loop.
"""
import ipaddress
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lwstack.proto.dns import (EAI_AGAIN, EAI_FAIL, EAI_NONAME, Resolver, TcpClose, TcpQuery,
                               UdpSend)
from lwstack.proto.dns_server import DnsServer
from lwstack.proto.hosts import HostsTable
from lwstack.wire import dns
from lwstack.wire.dns import (CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_PTR, TYPE_SOA,
                              Message, Question, Record, Soa)

S1 = bytes([10, 0, 0, 53])
S2 = bytes([10, 0, 1, 53])
S6 = bytes.fromhex("fd000000000000000000000000000053")


def ip(text):
    return ipaddress.ip_address(text).packed


def make(servers=(S1,), seed=1, **kwargs):
    return Resolver(servers, rng=random.Random(seed), **kwargs)


def take(resolver):
    out = list(resolver.outbox)
    resolver.outbox.clear()
    return out


def query_of(send):
    """The DNS message inside a UdpSend or a TcpQuery."""
    if isinstance(send, TcpQuery):
        data, rest = dns.unframe_tcp(send.payload)
        assert rest == b""
        return Message.parse(data)
    return Message.parse(send.payload)


def a(name, text, ttl=300):
    return Record(name, TYPE_A if "." in text else TYPE_AAAA, CLASS_IN, ttl, ip(text))


def cname(name, target, ttl=300):
    return Record(name, TYPE_CNAME, CLASS_IN, ttl, target)


def soa(zone, ttl=3600, minimum=60):
    return Record(zone, TYPE_SOA, CLASS_IN, ttl,
                  Soa(f"ns.{zone}", f"hostmaster.{zone}", 1, 3600, 600, 86400, minimum))


def response(send, answers=(), rcode=0, authorities=(), tc=False, **changes):
    """The bytes of a server's answer to ``send``'s query (``changes`` override fields)."""
    query = query_of(send)
    msg = query.reply(rcode, ra=True)
    msg.answers = list(answers)
    msg.authorities = list(authorities)
    msg.tc = tc
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg.emit()


def answer(resolver, send, data, now, src=None, sport=None):
    """Deliver ``data`` as the server's datagram answering ``send``."""
    return resolver.receive(src or send.dst_addr, sport or send.dst_port, ip("10.0.0.2"),
                            send.src_port, data, now)


def answered(r, name, qtype, answers=(), now=0.0, **fields):
    """``r.resolve(name, qtype, now)`` with its one query answered at once by ``answers``
    (``fields`` as for :func:`response`: rcode, authorities...); returns the lookup."""
    lookup = r.resolve(name, qtype, now)
    (send,) = take(r)
    answer(r, send, response(send, answers, **fields), now)
    return lookup


def done_list():
    finished = []
    return finished, finished.append


# ------------------------------------------------------------------------ the basic exchange

def test_one_a_query_and_its_answer():
    r = make()
    finished, callback = done_list()
    lookup = r.resolve("web.example.com", TYPE_A, 0.0, callback)
    (send,) = take(r)
    assert isinstance(send, UdpSend) and send.kind == "udp" and send.src_addr is None
    assert (send.dst_addr, send.dst_port) == (S1, 53)
    assert 32768 <= send.src_port <= 60999 and send.src_port in r.ports
    query = query_of(send)
    assert query.rd and not query.qr and query.questions == [Question("web.example.com", TYPE_A)]
    assert query.edns.udp_size == 1232
    assert not lookup.done and r.poll_at() == 5.0
    assert answer(r, send, response(send, [a("web.example.com", "10.1.2.3")]), 0.02)
    assert lookup.done and finished == [lookup]
    assert (lookup.error, lookup.addresses, lookup.canonical, lookup.source) == \
        (None, [ip("10.1.2.3")], "web.example.com", "dns")
    assert r.poll_at() is None and not r.ports and take(r) == []


def test_a_and_aaaa_go_out_together_and_results_keep_the_asked_order():
    r = make()
    lookup = r.resolve("web.example.com", (TYPE_A, TYPE_AAAA), 0.0)
    s_a, s_aaaa = take(r)
    assert [query_of(s).questions[0].qtype for s in (s_a, s_aaaa)] == [TYPE_A, TYPE_AAAA]
    assert s_a.src_port != s_aaaa.src_port                            # RFC 5452
    assert query_of(s_a).id != query_of(s_aaaa).id
    answer(r, s_aaaa, response(s_aaaa, [a("web.example.com", "fd00::1")]), 0.01)
    assert not lookup.done
    answer(r, s_a, response(s_a, [a("web.example.com", "10.0.0.1"), a("web.example.com",
                                                                      "10.0.0.2")]), 0.02)
    assert lookup.addresses == [ip("10.0.0.1"), ip("10.0.0.2"), ip("fd00::1")]


def test_nodata_for_one_family_is_not_an_error():
    r = make()
    lookup = r.resolve("v4only.example.com", (TYPE_A, TYPE_AAAA), 0.0)
    s_a, s_aaaa = take(r)
    answer(r, s_aaaa, response(s_aaaa, authorities=[soa("example.com")]), 0.0)
    answer(r, s_a, response(s_a, [a("v4only.example.com", "10.0.0.9")]), 0.0)
    assert lookup.error is None and lookup.addresses == [ip("10.0.0.9")]


def test_ids_and_ports_come_from_the_rng():
    def first_query(seed):
        r = make(seed=seed)
        r.resolve("x.example.com", TYPE_A, 0.0)
        (send,) = take(r)
        return send.src_port, query_of(send).id
    assert first_query(7) == first_query(7)
    assert len({first_query(seed) for seed in range(20)}) == 20


def test_busy_ports_are_skipped():
    r = make(port_range=(40000, 40003), port_busy=lambda port: port != 40002)
    r.resolve("x.example.com", TYPE_A, 0.0)
    (send,) = take(r)
    assert send.src_port == 40002


def test_a_server_over_ipv6_and_a_server_port():
    r = make(servers=[(S6, 5353)])
    r.resolve("x.example.com", TYPE_A, 0.0)
    (send,) = take(r)
    assert (send.dst_addr, send.dst_port) == (S6, 5353)


# ---------------------------------------------------------------------------------- CNAMEs

def test_cname_chain_inside_one_answer():
    r = make()
    lookup = answered(r, "www.example.com", TYPE_A,
                      [cname("www.example.com", "alias.example.net"),
                       cname("alias.example.net", "web.cdn.example"),
                       a("web.cdn.example", "10.9.9.9")])
    assert lookup.addresses == [ip("10.9.9.9")] and lookup.canonical == "web.cdn.example"
    assert take(r) == []


def test_chain_continues_with_a_new_query_when_the_server_stops_short():
    r = make()
    lookup = answered(r, "www.example.com", TYPE_AAAA,
                      [cname("www.example.com", "web.other.example")])
    (again,) = take(r)
    assert query_of(again).questions == [Question("web.other.example", TYPE_AAAA)]
    answer(r, again, response(again, [a("web.other.example", "fd00::7")]), 0.1)
    assert lookup.addresses == [ip("fd00::7")] and lookup.canonical == "web.other.example"


def test_cname_to_a_missing_name_is_nxdomain_of_the_target():
    r = make()
    lookup = answered(r, "www.example.com", TYPE_A, [cname("www.example.com", "gone.example.com")],
                      rcode=dns.RCODE_NXDOMAIN, authorities=[soa("example.com")])
    assert lookup.error == EAI_NONAME and not lookup.nodata
    # RFC 2308 2.1: the NXDOMAIN is about the target; the alias itself is cached as a CNAME.
    again = r.resolve("www.example.com", TYPE_A, 1.0)
    assert again.error == EAI_NONAME and again.source == "cache" and take(r) == []
    alias = r.resolve("www.example.com", TYPE_CNAME, 1.0)
    assert alias.names == ["gone.example.com"] and alias.source == "cache" and take(r) == []


def test_cname_loop_ends_with_eai_fail():
    r = make(max_chain=4)
    lookup = r.resolve("a.example.com", TYPE_A, 0.0)
    for step in range(10):
        sends = take(r)
        if not sends:
            break
        (send,) = sends
        name = query_of(send).questions[0].name
        nxt = "b.example.com" if name == "a.example.com" else "a.example.com"
        answer(r, send, response(send, [cname(name, nxt, ttl=0)]), step)
    assert lookup.error == EAI_FAIL and r.stats["chain_too_long"] == 1
    assert step == 5      # four links followed, the fifth refused


def test_cname_loop_inside_one_answer():
    r = make()
    lookup = answered(r, "a.example.com", TYPE_A, [cname("a.example.com", "b.example.com"),
                                                   cname("b.example.com", "a.example.com")])
    # Each link of the answer is followed once, then the cached links (no new query) run the
    # chain past max_chain.
    assert lookup.error == EAI_FAIL and take(r) == []


# -------------------------------------------------------------------------- search domains

def questions(sends):
    return [query_of(s).questions[0].name for s in sends]


def test_single_label_uses_the_search_list_first_then_as_is():
    r = make(search=["a.lan", "b.lan"])
    lookup = r.resolve("web", TYPE_A, 0.0)
    names = []
    for _ in range(3):
        (send,) = take(r)
        names += questions([send])
        answer(r, send, response(send, rcode=dns.RCODE_NXDOMAIN), 0.0)
    assert names == ["web.a.lan", "web.b.lan", "web"]
    assert lookup.error == EAI_NONAME and not lookup.nodata


def test_search_stops_at_the_first_answer():
    r = make(search=["a.lan", "b.lan"])
    lookup = r.resolve("web", TYPE_A, 0.0)
    (send,) = take(r)
    answer(r, send, response(send, rcode=dns.RCODE_NXDOMAIN), 0.0)
    (send,) = take(r)
    answer(r, send, response(send, [a("web.b.lan", "10.0.0.5")]), 0.0)
    assert lookup.addresses == [ip("10.0.0.5")] and lookup.canonical == "web.b.lan"
    assert take(r) == []


def test_dotted_name_is_tried_as_is_first():
    r = make(search=["a.lan"])
    lookup = r.resolve("web.x", TYPE_A, 0.0)
    (send,) = take(r)
    assert questions([send]) == ["web.x"]
    answer(r, send, response(send, rcode=dns.RCODE_NXDOMAIN), 0.0)
    (send,) = take(r)
    assert questions([send]) == ["web.x.a.lan"]
    answer(r, send, response(send, authorities=[soa("a.lan")]), 0.0)       # NODATA
    assert lookup.error == EAI_NONAME and lookup.nodata


def test_ndots_two():
    r = make(search=["a.lan"], ndots=2)
    r.resolve("web.x", TYPE_A, 0.0)
    assert questions(take(r)) == ["web.x.a.lan"]


def test_trailing_dot_means_absolute():
    r = make(search=["a.lan"])
    lookup = r.resolve("web.", TYPE_A, 0.0)
    (send,) = take(r)
    assert questions([send]) == ["web"]
    answer(r, send, response(send, rcode=dns.RCODE_NXDOMAIN), 0.0)
    assert lookup.error == EAI_NONAME and take(r) == []


def test_search_with_both_families_moves_on_together():
    r = make(search=["a.lan", "b.lan"])
    lookup = r.resolve("web", (TYPE_A, TYPE_AAAA), 0.0)
    first = take(r)
    assert questions(first) == ["web.a.lan", "web.a.lan"]
    for send in first:
        answer(r, send, response(send, rcode=dns.RCODE_NXDOMAIN), 0.0)
    second = take(r)
    assert questions(second) == ["web.b.lan", "web.b.lan"]
    answer(r, second[1], response(second[1], [a("web.b.lan", "fd00::5")]), 0.0)
    answer(r, second[0], response(second[0], authorities=[soa("b.lan")]), 0.0)
    assert lookup.addresses == [ip("fd00::5")]


def test_a_timeout_ends_the_search():
    r = make(search=["a.lan", "b.lan"], attempts=1)
    lookup = r.resolve("web", TYPE_A, 0.0)
    take(r)
    r.poll(5.0)
    assert lookup.error == EAI_AGAIN and take(r) == []


def test_servfail_moves_the_search_on_and_the_end_is_eai_again():
    r = make(search=["a.lan"], attempts=1)
    lookup = r.resolve("web", TYPE_A, 0.0)
    (send,) = take(r)
    answer(r, send, response(send, rcode=dns.RCODE_SERVFAIL), 0.0)
    (send,) = take(r)
    assert questions([send]) == ["web"]
    answer(r, send, response(send, rcode=dns.RCODE_NXDOMAIN), 0.0)
    assert lookup.error == EAI_AGAIN


def test_too_long_candidates_are_skipped_and_bad_names_refused():
    long_label = "x" * 63
    r = make(search=[".".join([long_label] * 3)])
    lookup = r.resolve(".".join([long_label] * 2), TYPE_A, 0.0)
    assert questions(take(r)) == [".".join([long_label] * 2)]
    bad = r.resolve("a..b", TYPE_A, 0.0)
    assert bad.done and bad.error == EAI_NONAME and not lookup.done


# ------------------------------------------------------------------------- negative answers

def nxdomain(r, *authorities):
    """Ask ``r`` for nope.example.com (A) at time 0, answered NXDOMAIN with ``authorities``;
    returns the lookup."""
    return answered(r, "nope.example.com", TYPE_A, rcode=dns.RCODE_NXDOMAIN,
                    authorities=authorities)


def test_nxdomain_is_cached_for_the_soa_minimum():
    r = make()
    lookup = nxdomain(r, soa("example.com", ttl=3600, minimum=60))
    assert lookup.error == EAI_NONAME
    # min(SOA TTL, MINIMUM) = 60 s (RFC 2308 5), for every type of that name.
    cached = r.resolve("nope.example.com", (TYPE_A, TYPE_AAAA), 59.9)
    assert cached.done and cached.error == EAI_NONAME and cached.source == "cache"
    assert take(r) == []
    r.resolve("nope.example.com", TYPE_A, 60.0)
    assert len(take(r)) == 1


@pytest.mark.parametrize("ttl,minimum,kept", [(30, 600, 30),         # the SOA's TTL is smaller
                                              (3600, 3600, 100)])    # max_negative_ttl
def test_negative_ttl_is_the_smaller_of_soa_ttl_and_minimum_and_is_capped(ttl, minimum, kept):
    r = make(max_negative_ttl=100)
    nxdomain(r, soa("example.com", ttl=ttl, minimum=minimum))
    assert r.resolve("nope.example.com", TYPE_A, kept - 1.0).done
    assert not r.resolve("nope.example.com", TYPE_A, kept).done


def test_negative_answers_without_soa_are_not_cached():
    r = make()
    nxdomain(r)
    assert not r.resolve("nope.example.com", TYPE_A, 0.1).done


def test_an_unrelated_soa_does_not_make_a_negative_cache_entry():
    r = make()
    nxdomain(r, soa("other.example"))
    assert not r.resolve("nope.example.com", TYPE_A, 0.1).done


def test_nodata_is_cached_per_type():
    r = make()
    answered(r, "v4.example.com", TYPE_AAAA, authorities=[soa("example.com", minimum=30)])
    again = r.resolve("v4.example.com", TYPE_AAAA, 10.0)
    assert again.done and again.nodata and again.source == "cache"
    other = r.resolve("v4.example.com", TYPE_A, 10.0)
    assert not other.done and len(take(r)) == 1


# ------------------------------------------------------------------------------ the cache

def test_positive_answers_live_for_their_ttl():
    r = make()
    answered(r, "web.example.com", TYPE_A, [a("web.example.com", "10.0.0.1", ttl=20),
                                            a("web.example.com", "10.0.0.2", ttl=10)])
    hit = r.resolve("web.example.com", TYPE_A, 9.99)
    assert hit.source == "cache" and hit.addresses == [ip("10.0.0.1"), ip("10.0.0.2")]
    assert hit.canonical == "web.example.com"
    # The RRset lives for its smallest TTL.
    assert not r.resolve("web.example.com", TYPE_A, 10.0).done


def test_cached_cname_links_are_followed():
    r = make()
    answered(r, "www.example.com", TYPE_A,
             [cname("www.example.com", "web.example.com", ttl=100),
              a("web.example.com", "10.0.0.1", ttl=10)])
    # At 50 s the address has expired but the alias has not: only web.example.com is asked.
    lookup = r.resolve("www.example.com", TYPE_A, 50.0)
    (send,) = take(r)
    assert questions([send]) == ["web.example.com"]
    answer(r, send, response(send, [a("web.example.com", "10.0.0.3")]), 50.0)
    assert lookup.addresses == [ip("10.0.0.3")] and lookup.canonical == "web.example.com"


def test_ttl_cap_and_rfc2181_top_bit():
    r = make(max_ttl=100)
    r.resolve("a.example.com", TYPE_A, 0.0)
    r.resolve("b.example.com", TYPE_A, 0.0)
    s1, s2 = take(r)
    answer(r, s1, response(s1, [a("a.example.com", "10.0.0.1", ttl=86400)]), 0.0)
    answer(r, s2, response(s2, [a("b.example.com", "10.0.0.2", ttl=0x80000000)]), 0.0)
    assert r.resolve("a.example.com", TYPE_A, 99.0).done
    assert not r.resolve("a.example.com", TYPE_A, 100.0).done
    assert not r.resolve("b.example.com", TYPE_A, 0.0).done      # top bit set: TTL 0


def test_cache_is_bounded_lru():
    r = make(cache_size=2)
    for i, name in enumerate(["a.example.com", "b.example.com", "c.example.com"]):
        answered(r, name, TYPE_A, [a(name, f"10.0.0.{i + 1}")])
        if i == 1:
            assert r.resolve("a.example.com", TYPE_A, 0.0).done     # a is now the most recent
    assert len(r.cache) == 2
    assert r.resolve("a.example.com", TYPE_A, 1.0).done
    assert not r.resolve("b.example.com", TYPE_A, 1.0).done         # evicted
    assert r.resolve("c.example.com", TYPE_A, 1.0).done


# ---------------------------------------------------------------------- retries and timeouts

def test_servers_in_order_then_a_second_round():
    r = make(servers=[S1, S2])
    lookup = r.resolve("slow.example.com", TYPE_A, 0.0)
    plan = []
    now = 0.0
    while not lookup.done:
        for send in take(r):
            plan.append((now, send.dst_addr, send.src_port, query_of(send).id))
        now = r.poll_at()
        r.poll(now)
    assert [(t, s) for t, s, _, _ in plan] == [(0.0, S1), (5.0, S2), (10.0, S1), (15.0, S2)]
    assert len({p for _, _, p, _ in plan}) == 4 and len({i for _, _, _, i in plan}) == 4
    assert now == 20.0 and lookup.error == EAI_AGAIN and not r.ports


def test_a_late_answer_to_an_earlier_try_is_accepted():
    r = make(servers=[S1, S2])
    lookup = r.resolve("slow.example.com", TYPE_A, 0.0)
    (first,) = take(r)
    r.poll(5.0)
    (second,) = take(r)
    assert second.dst_addr == S2
    answer(r, first, response(first, [a("slow.example.com", "10.0.0.1")]), 6.0)
    assert lookup.addresses == [ip("10.0.0.1")]
    assert not answer(r, second, response(second, [a("slow.example.com", "10.6.6.6")]), 6.1)


def test_rotate_starts_each_query_at_the_next_server():
    r = make(servers=[S1, S2], rotate=True)
    r.resolve("a.example.com", TYPE_A, 0.0)
    r.resolve("b.example.com", TYPE_A, 0.0)
    r.resolve("c.example.com", TYPE_A, 0.0)
    assert [s.dst_addr for s in take(r)] == [S1, S2, S1]


def test_servfail_and_refused_try_the_next_server_at_once():
    r = make(servers=[S1, S2], attempts=1)
    lookup = r.resolve("x.example.com", TYPE_A, 0.0)
    (send,) = take(r)
    answer(r, send, response(send, rcode=dns.RCODE_SERVFAIL), 0.5)
    (send,) = take(r)
    assert send.dst_addr == S2 and r.poll_at() == 5.5
    answer(r, send, response(send, rcode=dns.RCODE_REFUSED), 0.6)
    assert lookup.error == EAI_AGAIN


def test_formerr_to_edns_repeats_the_query_without_it():
    r = make()
    lookup = r.resolve("old.example.com", TYPE_A, 0.0)
    (send,) = take(r)
    bare = Message(query_of(send).id, qr=True, rcode=dns.RCODE_FORMERR).emit()   # no question
    answer(r, send, bare, 0.1)
    (again,) = take(r)
    assert again.dst_addr == S1 and query_of(again).edns is None
    assert r.stats["edns_fallback"] == 1
    answer(r, again, response(again, [a("old.example.com", "10.0.0.4")]), 0.2)
    assert lookup.addresses == [ip("10.0.0.4")]


def test_no_servers():
    r = make(servers=())
    lookup = r.resolve("x.example.com", TYPE_A, 0.0)
    assert lookup.done and lookup.error == EAI_AGAIN and take(r) == []


def test_configure_replaces_servers_and_search():
    r = make(servers=[S1, S2, S6, bytes([10, 9, 9, 9])])
    assert [s for s, _ in r.servers] == [S1, S2, S6]           # MAXNS: three
    r.configure(servers=["10.0.0.99"], search=["Corp.Example.", "corp.example"])
    assert r.servers == [(ip("10.0.0.99"), 53)] and r.search == ["corp.example"]


# ------------------------------------------------------------------ strict answer matching

def test_mismatched_answers_are_ignored():
    r = make()
    lookup = r.resolve("web.example.com", TYPE_A, 0.0)
    (send,) = take(r)
    good = response(send, [a("web.example.com", "10.0.0.1")])
    query = query_of(send)
    spoofs = {
        "id": response(send, [a("web.example.com", "6.6.6.6")], id=query.id ^ 1),
        "question": response(send, [a("evil.example.com", "6.6.6.6")],
                             questions=[Question("evil.example.com", TYPE_A)]),
        "qtype": response(send, questions=[Question("web.example.com", TYPE_AAAA)]),
        "not a response": response(send, [a("web.example.com", "6.6.6.6")], qr=False),
        "two questions": response(send, questions=query.questions * 2),
        "opcode": response(send, opcode=2),
    }
    for data in spoofs.values():
        assert answer(r, send, data, 0.1)
    assert answer(r, send, good, 0.1, src=S2)                       # wrong server
    assert answer(r, send, good, 0.1, sport=5353)                   # wrong server port
    assert answer(r, send, b"\x12\x34garbage", 0.1)
    assert not lookup.done
    assert r.stats["drop.dns_mismatch"] == len(spoofs)
    assert r.stats["drop.dns_wrong_source"] == 2 and r.stats["drop.dns_truncated"] == 1
    # A datagram for a port the resolver does not own is not taken.
    assert not r.receive(S1, 53, ip("10.0.0.2"), send.src_port + 1 if send.src_port < 60999
                         else 32768, good, 0.1)
    assert answer(r, send, good, 0.2)
    assert lookup.addresses == [ip("10.0.0.1")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(0, 0xFFFF))
def test_garbage_never_raises_and_never_answers(datagrams, bits):
    r = make()
    lookup = r.resolve("web.example.com", (TYPE_A, TYPE_AAAA), 0.0)
    sends = take(r)
    for i, data in enumerate(datagrams):
        send = sends[i % 2]
        # Garbage, or garbage behind the right id and the right question.
        query = send.payload
        forged = query[:2] + bytes([0x81 | (bits & 0x7E), bits >> 8]) + query[4:12] + data
        answer(r, send, data, 0.1)
        answer(r, send, forged, 0.1)
    assert not lookup.done
    while not lookup.done:
        r.poll(r.poll_at())
    assert lookup.error == EAI_AGAIN


def test_resolve_needs_a_type():
    with pytest.raises(ValueError):
        make().resolve("x.example.com", (), 0.0)


def test_question_matching_ignores_case():
    r = make()
    lookup = answered(r, "Web.Example.com", TYPE_A, [a("WEB.example.COM", "10.0.0.1")],
                      questions=[Question("web.EXAMPLE.com", TYPE_A)])
    assert lookup.addresses == [ip("10.0.0.1")]


def test_records_off_the_chain_are_neither_used_nor_cached():
    r = make()
    lookup = answered(r, "web.example.com", TYPE_A, [a("web.example.com", "10.0.0.1"),
                                                     a("bank.example", "6.6.6.6")])
    assert lookup.addresses == [ip("10.0.0.1")]
    assert not r.resolve("bank.example", TYPE_A, 0.0).done


# --------------------------------------------------------------------------- TCP fallback

def test_truncated_answer_is_asked_again_over_tcp():
    r = make()
    lookup = r.resolve("big.example.com", TYPE_A, 0.0)
    (send,) = take(r)
    answer(r, send, response(send, [a("big.example.com", "10.0.0.1")], tc=True), 0.1)
    (tcp,) = take(r)
    assert isinstance(tcp, TcpQuery) and tcp.kind == "tcp"
    assert (tcp.dst_addr, tcp.dst_port) == (S1, 53)
    assert query_of(tcp).questions == [Question("big.example.com", TYPE_A)]
    assert not lookup.done            # the truncated part is not used
    records = [a("big.example.com", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(300)]
    full = dns.frame_tcp(response(tcp, records))
    assert r.receive_tcp(tcp.token, full[:1], 0.2)
    assert r.receive_tcp(tcp.token, full[1:700], 0.2) and not lookup.done
    assert r.receive_tcp(tcp.token, full[700:], 0.3)
    assert lookup.done and len(lookup.addresses) == 300
    assert take(r) == [TcpClose("tcp_close", tcp.token)]
    assert not r.receive_tcp(tcp.token, b"more", 0.4)


def test_tcp_failure_moves_to_the_next_server():
    r = make(servers=[S1, S2])
    lookup = r.resolve("big.example.com", TYPE_A, 0.0)
    (send,) = take(r)
    answer(r, send, response(send, tc=True), 0.1)
    (tcp,) = take(r)
    r.tcp_failed(tcp.token, 0.2)
    (send,) = take(r)
    assert isinstance(send, UdpSend) and send.dst_addr == S2
    answer(r, send, response(send, [a("big.example.com", "10.0.0.1")]), 0.3)
    assert lookup.addresses == [ip("10.0.0.1")] and r.stats["tcp_failed"] == 1


def test_tcp_timeout_closes_the_connection():
    r = make(servers=[S1, S2])
    r.resolve("big.example.com", TYPE_A, 0.0)
    (send,) = take(r)
    answer(r, send, response(send, tc=True), 1.0)
    (tcp,) = take(r)
    assert r.poll_at() == 6.0
    r.poll(6.0)
    close, udp = take(r)
    assert close == TcpClose("tcp_close", tcp.token) and udp.dst_addr == S2


def test_a_wrong_tcp_answer_counts_as_a_failed_try():
    r = make(servers=[S1, S2])
    lookup = r.resolve("big.example.com", TYPE_A, 0.0)
    (send,) = take(r)
    answer(r, send, response(send, tc=True), 0.1)
    (tcp,) = take(r)
    wrong = response(tcp, [a("big.example.com", "6.6.6.6")], id=query_of(tcp).id ^ 0xFF)
    r.receive_tcp(tcp.token, dns.frame_tcp(wrong), 0.2)
    close, udp = take(r)
    assert close.kind == "tcp_close" and udp.dst_addr == S2 and not lookup.done
    assert r.stats["drop.dns_mismatch"] == 1


# ------------------------------------------------------------------------------- PTR

def test_reverse_lookups_v4_and_v6():
    r = make()
    v4 = r.resolve_address(ip("10.0.0.5"), 0.0)
    v6 = r.resolve_address(ip("fd00::5"), 0.0)
    s4, s6 = take(r)
    assert query_of(s4).questions == [Question("5.0.0.10.in-addr.arpa", TYPE_PTR)]
    assert query_of(s6).questions == [Question(
        "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", TYPE_PTR)]
    answer(r, s4, response(s4, [Record("5.0.0.10.in-addr.arpa", TYPE_PTR, CLASS_IN, 60,
                                       "web.lan")]), 0.0)
    answer(r, s6, response(s6, rcode=dns.RCODE_NXDOMAIN), 0.0)
    assert v4.names == ["web.lan"] and v4.error is None
    assert v6.error == EAI_NONAME


def test_reverse_lookup_follows_rfc2317_cnames():
    r = make(search=["a.lan"])
    lookup = r.resolve_address(ip("192.168.7.130"), 0.0)
    (send,) = take(r)
    assert questions([send]) == ["130.7.168.192.in-addr.arpa"]          # no search domains
    answer(r, send, response(send, [
        cname("130.7.168.192.in-addr.arpa", "130.128/25.7.168.192.in-addr.arpa"),
        Record("130.128/25.7.168.192.in-addr.arpa", TYPE_PTR, CLASS_IN, 60, "host.lan")]), 0.0)
    assert lookup.names == ["host.lan"]


# --------------------------------------------------------------------- hosts and literals

def test_hosts_table_wins_over_dns():
    hosts = HostsTable.parse("""
        # comment
        10.1.1.1   router.lan router gw    # trailing comment
        fd00::1    router.lan
        10.1.1.2   printer.lan
        not-an-ip  broken.lan
    """)
    r = make(hosts=hosts, search=["lan"])
    finished, callback = done_list()
    lookup = r.resolve("Router.LAN.", (TYPE_A, TYPE_AAAA), 0.0, callback)
    assert finished == [lookup] and lookup.source == "hosts"
    assert lookup.addresses == [ip("10.1.1.1"), ip("fd00::1")]
    assert lookup.canonical == "router.lan" and take(r) == []
    alias = r.resolve("gw", (TYPE_A, TYPE_AAAA), 0.0)
    assert alias.addresses == [ip("10.1.1.1")] and alias.canonical == "router.lan"
    # printer.lan has no IPv6 address in the table: DNS is asked (glibc's files backend).
    assert not r.resolve("printer.lan", TYPE_AAAA, 0.0).done and len(take(r)) == 1
    assert not r.resolve("broken.lan", TYPE_A, 0.0).done
    reverse = r.resolve_address(ip("10.1.1.1"), 0.0)
    assert reverse.names == ["router.lan"] and reverse.source == "hosts"


def test_hosts_table_bound():
    table = HostsTable(max_entries=2)
    table.add("10.0.0.1", "a")
    table.add(ip("fd00::1"), "a")
    with pytest.raises(ValueError):
        table.add("10.0.0.3", "c")
    with pytest.raises(ValueError):
        HostsTable.parse("10.0.0.1 a\n10.0.0.2 b\n10.0.0.3 c\n", max_entries=2)
    assert table.lookup("A.") == ("a", [ip("10.0.0.1"), ip("fd00::1")])
    assert table.lookup("a", 16) == ("a", [ip("fd00::1")])
    assert table.lookup("b") is None and table.reverse(ip("10.0.0.9")) is None


def test_address_literals_answer_at_once():
    r = make()
    v4 = r.resolve("10.2.3.4", (TYPE_A, TYPE_AAAA), 0.0)
    v6 = r.resolve("fd00::9", TYPE_AAAA, 0.0)
    wrong_family = r.resolve("10.2.3.4", TYPE_AAAA, 0.0)
    assert v4.addresses == [ip("10.2.3.4")] and v4.source == "literal"
    assert v6.addresses == [ip("fd00::9")]
    assert wrong_family.error == EAI_NONAME and take(r) == []


# --------------------------------------------------------------------------- bounds, cancel

def test_pending_lookups_are_bounded():
    r = make(max_lookups=2)
    r.resolve("a.example.com", TYPE_A, 0.0)
    r.resolve("b.example.com", TYPE_A, 0.0)
    third = r.resolve("c.example.com", TYPE_A, 0.0)
    assert third.done and third.error == EAI_AGAIN
    assert r.stats["drop.too_many_lookups"] == 1 and len(take(r)) == 2


def test_cancel_releases_everything():
    r = make()
    finished, callback = done_list()
    lookup = r.resolve("big.example.com", (TYPE_A, TYPE_AAAA), 0.0, callback)
    s_a, s_aaaa = take(r)
    answer(r, s_a, response(s_a, tc=True), 0.1)
    (tcp,) = take(r)
    r.cancel(lookup)
    assert take(r) == [TcpClose("tcp_close", tcp.token)]
    assert not r.ports and r.poll_at() is None
    assert not answer(r, s_aaaa, response(s_aaaa, [a("big.example.com", "fd00::1")]), 0.2)
    assert finished == [] and not lookup.done


# ---------------------------------------------------------- against lwstack's own server

class Loop:
    """A resolver and a DnsServer joined by an in-test loop on virtual time: every datagram
    and TCP exchange takes ``delay`` seconds; ``lose`` drops the next n datagrams."""

    CLIENT = ip("10.0.0.2")
    SERVER = ip("10.0.0.1")

    def __init__(self, server, delay=0.001, **kwargs):
        self.server = server
        self.resolver = Resolver([self.SERVER], rng=random.Random(3), **kwargs)
        self.delay = delay
        self.now = 0.0
        self.lose = 0
        self.queue = []          # (time, callable)
        self.tcp_conns = {}      # resolver token -> server-side conn id

    def step(self):
        for record in self.resolver.outbox:
            self.queue.append((self.now + self.delay, self._to_server(record)))
        self.resolver.outbox.clear()
        for record in self.server.outbox:
            self.queue.append((self.now + self.delay, self._to_client(record)))
        self.server.outbox.clear()

    def _datagram(self, machine, src_addr, dst_addr, record):
        """Delivery of the datagram ``record`` to ``machine``, unless it is one to lose."""
        def deliver():
            if self.lose:
                self.lose -= 1
                return
            machine.receive(src_addr, record.src_port, dst_addr, record.dst_port,
                            record.payload, self.now)
        return deliver

    def _to_server(self, record):
        if record.kind == "udp":
            return self._datagram(self.server, self.CLIENT, record.dst_addr, record)
        if record.kind == "tcp":
            def deliver():
                self.tcp_conns[record.token] = ("conn", record.token)
                self.server.receive_tcp_client(("conn", record.token), record.payload, self.now)
        else:
            def deliver():
                conn = self.tcp_conns.pop(record.token, None)
                if conn is not None:
                    self.server.client_closed(conn)
        return deliver

    def _to_client(self, record):
        if record.kind == "udp":
            return self._datagram(self.resolver, record.src_addr, self.CLIENT, record)
        assert record.kind == "tcp_reply"

        def deliver():
            self.resolver.receive_tcp(record.conn[1], record.payload, self.now)
        return deliver

    def _deliver_due(self):
        due = [item for item in self.queue if item[0] <= self.now]
        self.queue = [item for item in self.queue if item[0] > self.now]
        for _, deliver in due:
            deliver()

    def drain(self):
        """Deliver what is in flight (e.g. the closing of a TCP connection)."""
        self.step()
        while self.queue:
            self.now = max(self.now, min(t for t, _ in self.queue))
            self._deliver_due()
            self.step()

    def run(self, lookup, limit=60.0):
        self.step()
        while not lookup.done:
            timers = [t for t in (self.resolver.poll_at(), self.server.poll_at()) if t]
            nxt = min([t for t, _ in self.queue] + timers)
            assert nxt <= limit, "no progress"
            self.now = max(self.now, nxt)
            self._deliver_due()
            self.resolver.poll(self.now)
            self.server.poll(self.now)
            self.step()
        return lookup


@pytest.fixture
def lan():
    server = DnsServer(zones=["lan"], rng=random.Random(9), ttl=300, negative_ttl=30)
    server.add_host("web.lan", ["10.0.0.5", "fd00::5"])
    server.add_record("www.lan", TYPE_CNAME, "alias.lan")
    server.add_record("alias.lan", TYPE_CNAME, "web.lan")
    for i in range(100):
        server.add_record("big.lan", TYPE_A, f"10.7.0.{i + 1}")
    server.add_hash_rule("hash.local", "fc00::")
    return server


def test_against_our_server_cname_chain_and_search(lan):
    loop = Loop(lan, search=["lan"])
    lookup = loop.run(loop.resolver.resolve("www", (TYPE_A, TYPE_AAAA), 0.0))
    assert lookup.addresses == [ip("10.0.0.5"), ip("fd00::5")]
    assert lookup.canonical == "web.lan" and lookup.source == "dns"
    assert loop.resolver.stats["query.udp"] == 2


def test_against_our_server_nxdomain_is_negatively_cached(lan):
    loop = Loop(lan, search=["lan"])
    first = loop.run(loop.resolver.resolve("nope.lan", TYPE_A, 0.0))
    assert first.error == EAI_NONAME and not first.nodata
    queries = lan.stats["queries"]
    again = loop.run(loop.resolver.resolve("nope.lan", TYPE_A, loop.now + 29))
    assert again.source == "cache" and lan.stats["queries"] == queries
    loop.now += 31
    later = loop.run(loop.resolver.resolve("nope.lan", TYPE_A, loop.now))
    assert later.source == "dns" and lan.stats["queries"] > queries


def test_against_our_server_nodata(lan):
    loop = Loop(lan)
    lookup = loop.run(loop.resolver.resolve("renzo.hash.local", TYPE_A, 0.0))
    assert lookup.error == EAI_NONAME and lookup.nodata


def test_against_our_server_truncation_falls_back_to_tcp(lan):
    loop = Loop(lan)
    lookup = loop.run(loop.resolver.resolve("big.lan", TYPE_A, 0.0))
    assert sorted(lookup.addresses) == sorted(ip(f"10.7.0.{i}") for i in range(1, 101))
    assert loop.resolver.stats["query.tcp"] == 1 and loop.tcp_conns
    loop.drain()
    assert not loop.tcp_conns and not lan._tcp_clients


def test_against_our_server_hash_names_and_their_reverse(lan):
    loop = Loop(lan)
    lookup = loop.run(loop.resolver.resolve("renzo.hash.local", TYPE_AAAA, 0.0))
    assert lookup.addresses == [ip("fc00::4cc:8049:6765:d03a")]        # iothnamed's example
    reverse = loop.run(loop.resolver.resolve_address(ip("fc00::4cc:8049:6765:d03a"), loop.now))
    assert reverse.names == ["renzo.hash.local"]


def test_against_our_server_with_a_lost_query(lan):
    loop = Loop(lan)
    loop.lose = 1
    lookup = loop.run(loop.resolver.resolve("web.lan", TYPE_A, 0.0))
    assert lookup.addresses == [ip("10.0.0.5")]
    assert loop.now == pytest.approx(5.002)        # one timeout, then the retry's round trip


# ------------------------------------------------------------------ against real dnsmasq

@pytest.fixture
def dnsmasq(tmp_path):
    netns = pytest.importorskip("dns_netns")
    reason = netns.missing()
    if reason:
        pytest.skip(reason)
    with netns.Dnsmasq(str(tmp_path)):
        yield netns


def test_dnsmasq_search_cname_and_both_families(dnsmasq):
    r = dnsmasq.resolver()
    lookup = dnsmasq.resolve_in(r, lambda now: r.resolve("www", (TYPE_A, TYPE_AAAA), now))
    assert lookup.error is None and lookup.canonical == "web.lan"
    assert lookup.addresses == [ip("10.77.0.5"), ip("fd77::5")]
    # dnsmasq's --local-ttl=30: the second lookup comes from the cache.
    again = dnsmasq.resolve_in(r, lambda now: r.resolve("www.lan", TYPE_A, now))
    assert again.source == "cache" and again.addresses == [ip("10.77.0.5")]


def test_dnsmasq_negative_answers(dnsmasq):
    r = dnsmasq.resolver()
    nx = dnsmasq.resolve_in(r, lambda now: r.resolve("nope.lan", TYPE_A, now))
    assert nx.error == EAI_NONAME and not nx.nodata
    nodata = dnsmasq.resolve_in(r, lambda now: r.resolve("txt.lan", TYPE_AAAA, now))
    assert nodata.error == EAI_NONAME and nodata.nodata
    # No upstream servers: dnsmasq REFUSES other names, which is "try again" for getaddrinfo.
    refused = dnsmasq.resolve_in(r, lambda now: r.resolve("www.example.com", TYPE_A, now))
    assert refused.error == EAI_AGAIN


def test_dnsmasq_truncation_and_tcp(dnsmasq):
    r = dnsmasq.resolver()
    lookup = dnsmasq.resolve_in(r, lambda now: r.resolve("big.lan", TYPE_A, now))
    assert sorted(lookup.addresses) == sorted(ip(f"10.77.1.{i}") for i in range(1, 101))
    assert r.stats["query.tcp"] == 1


def test_dnsmasq_reverse(dnsmasq):
    r = dnsmasq.resolver()
    v4 = dnsmasq.resolve_in(r, lambda now: r.resolve_address(ip("10.77.0.5"), now))
    v6 = dnsmasq.resolve_in(r, lambda now: r.resolve_address(ip("fd77::5"), now))
    assert v4.names == ["web.lan"] and v6.names == ["web.lan"]
