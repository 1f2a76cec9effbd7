"""The DNS server (lwstack.proto.dns_server) on virtual time: local answers, hash names,
truncation, TCP, malformed queries and forwarding; and, where ``dig`` is installed, real dig
asking it over loopback sockets that the test drives."""
import ipaddress
import random
import shutil
import socket
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lwstack.proto.dns import TcpClose, TcpQuery, UdpSend
from lwstack.proto.dns_server import DnsServer, TcpReply, hash_address
from lwstack.wire import dns
from lwstack.wire.dns import (CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_CNAME, TYPE_MX,
                              TYPE_PTR, TYPE_SOA, TYPE_TXT, Edns, Message, Question, Record)

CLIENT = bytes([10, 0, 0, 2])
US = bytes([10, 0, 0, 1])
U1 = bytes([10, 9, 0, 1])
U2 = bytes([10, 9, 0, 2])


def ip(text):
    return ipaddress.ip_address(text).packed


def take(server):
    out = list(server.outbox)
    server.outbox.clear()
    return out


def ask(server, name, qtype, now=0.0, ident=0x4242, edns=None, rd=True, port=40000):
    """Send a query over UDP; return the parsed reply (or None if there was none)."""
    data = Message(ident, rd=rd, questions=[Question(name, qtype)], edns=edns).emit()
    assert server.receive(CLIENT, port, US, 53, data, now)
    out = take(server)
    if not out:
        return None
    (reply,) = out
    assert isinstance(reply, UdpSend) and reply.kind == "udp"
    assert (reply.src_addr, reply.dst_addr, reply.src_port, reply.dst_port) == \
        (US, CLIENT, 53, port)
    return Message.parse(reply.payload)


@pytest.fixture
def server():
    s = DnsServer(zones=["lan"], rng=random.Random(5), ttl=300, negative_ttl=30)
    s.add_host("web.lan", ["10.0.0.5", "fd00::5"])
    s.add_record("www.lan", TYPE_CNAME, "web.lan")
    s.add_record("ext.lan", TYPE_CNAME, "www.example.com")
    s.add_record("a.b.c.lan", TYPE_A, "10.0.0.6")
    s.add_record("txt.lan", TYPE_TXT, (b"hello",))
    s.add_record("mail.lan", TYPE_MX, (10, "web.lan"))
    return s


# ----------------------------------------------------------------------------- local data

def test_static_answer(server):
    reply = ask(server, "web.lan", TYPE_A)
    assert reply.id == 0x4242 and reply.qr and reply.aa and reply.rd and not reply.ra
    assert reply.rcode == 0 and reply.questions == [Question("web.lan", TYPE_A)]
    assert reply.answers == [Record("web.lan", TYPE_A, CLASS_IN, 300, ip("10.0.0.5"))]
    assert reply.authorities == [] and reply.edns is None
    assert ask(server, "web.lan", TYPE_AAAA).answers[0].data == ip("fd00::5")


def test_owner_names_keep_the_clients_case(server):
    reply = ask(server, "WeB.LaN", TYPE_A)
    assert reply.questions[0].name == "WeB.LaN" and reply.answers[0].name == "WeB.LaN"


def test_rd_is_copied_and_ra_tells_whether_we_recurse(server):
    assert not ask(server, "web.lan", TYPE_A, rd=False).rd
    server.set_upstreams([U1])
    assert ask(server, "web.lan", TYPE_A).ra


def test_cname_chain_is_followed_through_local_data(server):
    reply = ask(server, "www.lan", TYPE_AAAA)
    assert reply.aa and [(r.name, r.rtype, r.data) for r in reply.answers] == [
        ("www.lan", TYPE_CNAME, "web.lan"), ("web.lan", TYPE_AAAA, ip("fd00::5"))]
    assert [r.rtype for r in ask(server, "www.lan", TYPE_CNAME).answers] == [TYPE_CNAME]


def test_cname_leaving_our_data_ends_there(server):
    reply = ask(server, "ext.lan", TYPE_A)
    assert reply.rcode == dns.RCODE_NOERROR and reply.authorities == []
    assert [(r.rtype, r.data) for r in reply.answers] == [(TYPE_CNAME, "www.example.com")]


def test_cname_loop_is_servfail():
    s = DnsServer(rng=random.Random(1), max_chain=3)
    s.add_record("a.lan", TYPE_CNAME, "b.lan")
    s.add_record("b.lan", TYPE_CNAME, "a.lan")
    assert ask(s, "a.lan", TYPE_A).rcode == dns.RCODE_SERVFAIL
    assert s.stats["chain_too_long"] == 1


def test_nxdomain_in_our_zone_carries_the_soa(server):
    reply = ask(server, "nope.lan", TYPE_A)
    assert reply.rcode == dns.RCODE_NXDOMAIN and reply.aa and reply.answers == []
    (soa,) = reply.authorities
    assert soa.name == "lan" and soa.rtype == TYPE_SOA and soa.ttl == 30
    assert soa.data.minimum == 30 and soa.data.rname == "hostmaster.lan"


def test_nxdomain_at_the_end_of_a_chain():
    s = DnsServer(zones=["lan"], rng=random.Random(1))
    s.add_record("old.lan", TYPE_CNAME, "gone.lan")
    reply = ask(s, "old.lan", TYPE_A)
    assert reply.rcode == dns.RCODE_NXDOMAIN               # RFC 6604: the chain's last name
    assert [r.rtype for r in reply.answers] == [TYPE_CNAME] and reply.authorities[0].name == "lan"


def test_nodata_and_empty_non_terminals(server):
    for name in ("txt.lan", "b.c.lan", "c.lan"):           # b.c.lan, c.lan: RFC 8020
        reply = ask(server, name, TYPE_AAAA)
        assert reply.rcode == dns.RCODE_NOERROR and reply.answers == [], name
        assert [r.rtype for r in reply.authorities] == [TYPE_SOA], name


def test_zone_apex_answers_soa(server):
    reply = ask(server, "lan", TYPE_SOA)
    assert [r.rtype for r in reply.answers] == [TYPE_SOA] and reply.aa


def test_any_returns_every_record(server):
    reply = ask(server, "web.lan", TYPE_ANY)
    assert sorted(r.rtype for r in reply.answers) == [TYPE_A, TYPE_AAAA]


def test_other_types_are_served_raw(server):
    assert ask(server, "txt.lan", TYPE_TXT).answers[0].data == (b"hello",)
    assert ask(server, "mail.lan", TYPE_MX).answers[0].data == (10, "web.lan")


def test_reverse_records_from_add_host(server):
    reply = ask(server, dns.reverse_name(ip("10.0.0.5")), TYPE_PTR)
    assert [r.data for r in reply.answers] == ["web.lan"]
    reply = ask(server, dns.reverse_name(ip("fd00::5")), TYPE_PTR)
    assert [r.data for r in reply.answers] == ["web.lan"]
    server.add_ptr("10.0.0.77", "printer.lan")
    assert ask(server, "77.0.0.10.in-addr.arpa", TYPE_PTR).answers[0].data == "printer.lan"


def test_names_outside_our_data_without_upstreams_are_refused(server):
    reply = ask(server, "www.example.com", TYPE_A)
    assert reply.rcode == dns.RCODE_REFUSED and not reply.aa and server.stats["refused"] == 1


def test_record_rules_and_bounds():
    s = DnsServer(rng=random.Random(1), max_records=3)
    s.add_record("x.lan", TYPE_A, "10.0.0.1")
    with pytest.raises(ValueError):
        s.add_record("x.lan", TYPE_CNAME, "y.lan")           # RFC 1034 3.6.2
    s.add_record("y.lan", TYPE_CNAME, "x.lan")
    with pytest.raises(ValueError):
        s.add_record("y.lan", TYPE_A, "10.0.0.2")
    with pytest.raises(ValueError):
        s.add_record("x.lan", TYPE_A, "fd00::1")             # not an IPv4 address
    s.add_record("x.lan", TYPE_A, "10.0.0.1")                # the same record again: no-op
    s.add_record("z.lan", TYPE_A, "10.0.0.3")
    with pytest.raises(ValueError):
        s.add_record("w.lan", TYPE_A, "10.0.0.4")
    assert s.remove("z.lan") == 1 and s.remove("z.lan") == 0
    s.add_record("w.lan", TYPE_A, "10.0.0.4")


def test_remove_updates_existence():
    s = DnsServer(zones=["lan"], rng=random.Random(1))
    s.add_host("h.sub.lan", ["10.0.0.1"], ptr=False)
    assert ask(s, "sub.lan", TYPE_A).rcode == dns.RCODE_NOERROR
    s.remove("h.sub.lan", TYPE_A)
    assert ask(s, "h.sub.lan", TYPE_A).rcode == dns.RCODE_NXDOMAIN
    assert ask(s, "sub.lan", TYPE_A).rcode == dns.RCODE_NXDOMAIN


# ---------------------------------------------------------------------------- hash names

# iothnamed's manual (iothnamed.conf.5) and the reference note's check values.
HASH_VECTORS = [
    ("fc00::", "renzo.hash.local", "fc00::4cc:8049:6765:d03a"),
    ("fc00::", "hic_sunt_leones.hash.local", "fc00::9c8f:74b4:705f:6512"),
    ("2001:760:2e00:ff00::", "renzo.hash.v2.cs.unibo.it", "2001:760:2e00:ff00:6066:4f84:db3e:c9cb"),
    ("2001:760:2e00:ff00::", "lucia.hash.v2.cs.unibo.it", "2001:760:2e00:ff00:cf1:1fe9:aad4:e838"),
    ("2001:760:2e00:ff00::", "whatever-you-want.hash.v2.cs.unibo.it",
     "2001:760:2e00:ff00:542d:ffcb:17e:8fa7"),
    ("2000:760::", "test.v2.cs.unibo.it", "2000:760::68d6:2fac:95a:5a2e"),
    ("2000:760::", "test.v2.cs.unibo.it.", "2000:760::68d6:2fac:95a:5a2e"),
]


@pytest.mark.parametrize("base, name, expected", HASH_VECTORS)
def test_hash_address_vectors(base, name, expected):
    assert hash_address(ip(base), name) == ip(expected)


def test_hash_rule_answers_aaaa_under_its_domain():
    s = DnsServer(rng=random.Random(1))
    s.add_hash_rule("hash.local", "fc00::", ttl=600)
    reply = ask(s, "hic_sunt_leones.hash.local", TYPE_AAAA)
    assert reply.aa and reply.answers == [Record("hic_sunt_leones.hash.local", TYPE_AAAA,
                                                 CLASS_IN, 600, ip("fc00::9c8f:74b4:705f:6512"))]
    nodata = ask(s, "renzo.hash.local", TYPE_A)
    assert nodata.rcode == 0 and nodata.answers == [] and nodata.authorities[0].name == "hash.local"
    apex = ask(s, "hash.local", TYPE_AAAA)               # the domain itself is not hashed
    assert apex.rcode == 0 and apex.answers == []


def test_static_records_win_over_the_hash_rule():
    s = DnsServer(rng=random.Random(1))
    s.add_hash_rule("hash.local", "fc00::")
    s.add_record("fixed.hash.local", TYPE_AAAA, "fc00::1")
    assert ask(s, "fixed.hash.local", TYPE_AAAA).answers[0].data == ip("fc00::1")


def test_hash_reverse_names_what_was_handed_out_and_is_bounded():
    s = DnsServer(rng=random.Random(1), max_hash_reverse=2)
    s.add_hash_rule("hash.local", "fc00::")
    renzo = ip("fc00::4cc:8049:6765:d03a")
    assert ask(s, dns.reverse_name(renzo), TYPE_PTR).rcode == dns.RCODE_REFUSED   # not yet
    ask(s, "renzo.hash.local", TYPE_AAAA)
    assert ask(s, dns.reverse_name(renzo), TYPE_PTR).answers[0].data == "renzo.hash.local"
    ask(s, "a.hash.local", TYPE_AAAA)
    ask(s, "b.hash.local", TYPE_AAAA)
    assert ask(s, dns.reverse_name(renzo), TYPE_PTR).rcode == dns.RCODE_REFUSED   # evicted


# ---------------------------------------------------------------------------- truncation

@pytest.fixture
def big():
    s = DnsServer(rng=random.Random(1))
    for i in range(100):
        s.add_record("big.lan", TYPE_A, f"10.7.0.{i + 1}")
    for i in range(20):
        s.add_record("mid.lan", TYPE_A, f"10.8.0.{i + 1}")
    return s


def test_udp_answers_over_512_bytes_are_truncated(big):
    reply = ask(big, "mid.lan", TYPE_A)              # 20 records: 25 + 20*16 = 345 bytes
    assert not reply.tc and len(reply.answers) == 20
    reply = ask(big, "big.lan", TYPE_A)
    assert reply.tc and reply.answers == [] and reply.questions[0].name == "big.lan"


def test_edns_size_raises_the_limit_up_to_our_own(big):
    # 100 records are 1625 bytes: over our 1232 even when the client offers 4096.
    reply = ask(big, "big.lan", TYPE_A, edns=Edns(4096))
    assert reply.tc and reply.edns.udp_size == 1232
    s = DnsServer(rng=random.Random(1), max_udp_size=4096)
    for i in range(100):
        s.add_record("big.lan", TYPE_A, f"10.7.0.{i + 1}")
    reply = ask(s, "big.lan", TYPE_A, edns=Edns(4096))
    assert not reply.tc and len(reply.answers) == 100
    reply = ask(s, "big.lan", TYPE_A, edns=Edns(100))       # below 512 counts as 512
    assert reply.tc


def test_tcp_gets_the_whole_answer_and_pipelined_queries(big):
    q1 = dns.frame_tcp(Message(1, questions=[Question("big.lan", TYPE_A)]).emit())
    q2 = dns.frame_tcp(Message(2, questions=[Question("mid.lan", TYPE_A)]).emit())
    stream = q1 + q2
    big.receive_tcp_client("c1", stream[:5], 0.0)
    assert take(big) == []
    big.receive_tcp_client("c1", stream[5:len(q1) + 3], 0.0)
    (first,) = take(big)
    big.receive_tcp_client("c1", stream[len(q1) + 3:], 0.0)
    (second,) = take(big)
    for reply, (ident, count) in ((first, (1, 100)), (second, (2, 20))):
        assert isinstance(reply, TcpReply) and reply.kind == "tcp_reply" and reply.conn == "c1"
        message, rest = dns.unframe_tcp(reply.payload)
        msg = Message.parse(message)
        assert rest == b"" and msg.id == ident and len(msg.answers) == count and not msg.tc
    big.client_closed("c1")
    assert not big._tcp_clients


def test_tcp_clients_are_bounded(big):
    s = DnsServer(rng=random.Random(1), max_tcp_clients=1)
    s.receive_tcp_client("c1", b"\x00", 0.0)
    s.receive_tcp_client("c2", b"\x00", 0.0)
    assert list(s._tcp_clients) == ["c1"] and s.stats["drop.too_many_tcp_clients"] == 1


# ------------------------------------------------------------------------ malformed input

def raw(server, data):
    assert server.receive(CLIENT, 40000, US, 53, data, 0.0)
    out = take(server)
    return Message.parse(out[0].payload) if out else None


def test_garbage_with_a_readable_header_gets_formerr(server):
    reply = raw(server, bytes.fromhex("beef 0100 0001 0000 0000 0000") + b"\x07trunc")
    assert reply.id == 0xBEEF and reply.rcode == dns.RCODE_FORMERR and reply.rd
    assert server.stats["drop.dns_truncated"] == 1


def test_short_garbage_and_responses_get_nothing(server):
    assert raw(server, b"\x01\x02\x03") is None
    response = Message(7, qr=True, questions=[Question("web.lan", TYPE_A)]).emit()
    assert raw(server, response) is None                   # no reply to a reply: no loops
    assert raw(server, bytes.fromhex("beef 8100 0001 0000 0000 0000") + b"\x07") is None
    assert server.stats["drop.dns_not_query"] == 1


@pytest.mark.parametrize("msg, rcode", [
    (Message(1, opcode=2, questions=[Question("web.lan", TYPE_A)]), dns.RCODE_NOTIMP),
    (Message(1, questions=[Question("web.lan", TYPE_A)] * 2), dns.RCODE_FORMERR),
    (Message(1), dns.RCODE_FORMERR),
    (Message(1, questions=[Question("web.lan", TYPE_A, 3)]), dns.RCODE_REFUSED),    # CH
    (Message(1, questions=[Question("web.lan", TYPE_A)], edns=Edns(1232, 1)),
     dns.RCODE_BADVERS),                                                            # RFC 6891
])
def test_queries_we_do_not_serve(server, msg, rcode):
    reply = raw(server, msg.emit())
    assert reply.id == 1 and reply.rcode == rcode


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.booleans())
def test_garbage_never_raises(data, tcp):
    s = DnsServer(zones=["lan"], upstreams=[U1], rng=random.Random(1))
    s.add_host("web.lan", ["10.0.0.5"])
    if tcp:
        s.receive_tcp_client("c", data, 0.0)
        s.receive_tcp_client("c", dns.frame_tcp(data), 0.0)
    else:
        s.receive(CLIENT, 40000, US, 53, data, 0.0)
    for record in take(s):
        payload = dns.unframe_tcp(record.payload)[0] if tcp else record.payload
        if record.kind == "udp" and record.dst_addr == U1:
            continue                                # a well-formed query, forwarded
        reply = Message.parse(payload)              # whatever we send back parses
        assert reply.qr and reply.id == int.from_bytes(data[:2].ljust(2, b"\0"), "big")


def test_other_ports_are_not_ours(server):
    data = Message(1, questions=[Question("web.lan", TYPE_A)]).emit()
    assert not server.receive(CLIENT, 40000, US, 5353, data, 0.0) and take(server) == []


# ----------------------------------------------------------------------------- forwarding

@pytest.fixture
def fwd(server):
    server.set_upstreams([U1, U2])
    return server


def forward_query(server, name="www.example.com", qtype=TYPE_A, ident=0x1111, port=40000,
                  now=0.0, edns=Edns(1232)):
    data = Message(ident, rd=True, questions=[Question(name, qtype)], edns=edns).emit()
    assert server.receive(CLIENT, port, US, 53, data, now)
    return data


def upstream_reply(server, send, answers=(), rcode=0, now=0.1, ident=None, src=None, **changes):
    query = Message.parse(send.payload)
    msg = query.reply(rcode, ra=True)
    msg.answers = list(answers)
    if ident is not None:
        msg.id = ident
    for key, value in changes.items():
        setattr(msg, key, value)
    data = msg.emit()
    assert server.receive(src or send.dst_addr, send.dst_port, US, send.src_port, data, now)
    return data


def test_forwarding_relays_with_a_fresh_id_and_port(fwd):
    query = forward_query(fwd)
    (send,) = take(fwd)
    assert (send.kind, send.src_addr, send.dst_addr, send.dst_port) == ("udp", None, U1, 53)
    assert send.src_port in fwd.ports and send.src_port >= 32768
    assert send.payload[2:] == query[2:] and send.payload[:2] != query[:2]
    assert fwd.poll_at() == 2.0
    upstream = upstream_reply(fwd, send, [Record("www.example.com", TYPE_A, CLASS_IN, 60,
                                                 ip("93.184.216.34"))])
    (reply,) = take(fwd)
    assert (reply.src_addr, reply.dst_addr, reply.src_port, reply.dst_port) == \
        (US, CLIENT, 53, 40000)
    assert reply.payload == query[:2] + upstream[2:]         # relayed as is, with the client's id
    assert not fwd.ports and fwd.poll_at() is None


def test_forwarded_answers_must_match(fwd):
    forward_query(fwd)
    (send,) = take(fwd)
    ident = Message.parse(send.payload).id
    upstream_reply(fwd, send, ident=ident ^ 1)
    upstream_reply(fwd, send, src=U2)
    upstream_reply(fwd, send, questions=[Question("evil.example.com", TYPE_A)])
    assert fwd.receive(U1, 53, US, send.src_port, b"\x00garbage", 0.1)
    assert take(fwd) == []
    assert fwd.stats["drop.dns_mismatch"] == 2 and fwd.stats["drop.dns_wrong_source"] == 1
    upstream_reply(fwd, send)
    assert len(take(fwd)) == 1


def test_upstream_timeouts_then_servfail(fwd):
    query = forward_query(fwd)
    (first,) = take(fwd)
    fwd.poll(2.0)
    (second,) = take(fwd)
    assert second.dst_addr == U2 and second.src_port != first.src_port
    assert fwd.poll_at() == 4.0
    fwd.poll(4.0)
    (reply,) = take(fwd)
    msg = Message.parse(reply.payload)
    assert msg.id == Message.parse(query).id and msg.rcode == dns.RCODE_SERVFAIL
    assert msg.questions == [Question("www.example.com", TYPE_A)]
    assert fwd.stats["forward.timeout"] == 1 and not fwd.ports


def test_a_late_answer_from_the_first_upstream_still_counts(fwd):
    forward_query(fwd)
    (first,) = take(fwd)
    fwd.poll(2.0)
    take(fwd)
    upstream_reply(fwd, first, now=2.5)
    (reply,) = take(fwd)
    assert reply.dst_addr == CLIENT and not fwd.ports


def test_servfail_moves_on_and_the_last_answer_is_relayed(fwd):
    forward_query(fwd)
    (send,) = take(fwd)
    upstream_reply(fwd, send, rcode=dns.RCODE_SERVFAIL)
    (send,) = take(fwd)
    assert send.dst_addr == U2
    upstream_reply(fwd, send, rcode=dns.RCODE_REFUSED)
    (reply,) = take(fwd)
    assert Message.parse(reply.payload).rcode == dns.RCODE_REFUSED


def test_a_retransmitted_client_query_is_not_forwarded_twice(fwd):
    forward_query(fwd)
    forward_query(fwd, now=1.0)
    assert len(take(fwd)) == 1 and fwd.stats["forward.duplicate"] == 1
    forward_query(fwd, port=40001)                      # another client (port): forwarded
    assert len(take(fwd)) == 1


def test_pending_forwards_are_bounded():
    s = DnsServer(upstreams=[U1], rng=random.Random(1), max_pending=2)
    forward_query(s, ident=1)
    forward_query(s, ident=2)
    assert len(take(s)) == 2
    forward_query(s, ident=3)
    (reply,) = take(s)
    assert reply.dst_addr == CLIENT and Message.parse(reply.payload).rcode == dns.RCODE_SERVFAIL


def test_a_large_forwarded_answer_is_truncated_for_a_small_client(fwd):
    forward_query(fwd, edns=None)                        # the client can take 512 bytes
    (send,) = take(fwd)
    records = [Record("www.example.com", TYPE_A, CLASS_IN, 60, ip(f"10.1.0.{i}"))
               for i in range(1, 60)]
    upstream_reply(fwd, send, records)
    (reply,) = take(fwd)
    msg = Message.parse(reply.payload)
    assert len(reply.payload) <= 512 and msg.tc and msg.answers == []
    assert msg.id == 0x1111


def truncated_for_a_tcp_client(fwd):
    """TCP client "c1" asks big.example.com and the first upstream's UDP answer is truncated:
    returns (the client's query, the TcpQuery the server sends to ask again)."""
    query = Message(0x2222, rd=True, questions=[Question("big.example.com", TYPE_A)]).emit()
    fwd.receive_tcp_client("c1", dns.frame_tcp(query), 0.0)
    (send,) = take(fwd)
    upstream_reply(fwd, send, tc=True)
    (tcp,) = take(fwd)
    return query, tcp


def test_tcp_client_and_a_truncated_upstream_answer(fwd):
    query, tcp = truncated_for_a_tcp_client(fwd)
    assert isinstance(tcp, TcpQuery) and (tcp.dst_addr, tcp.dst_port) == (U1, 53)
    inner, _ = dns.unframe_tcp(tcp.payload)
    assert inner[2:] == query[2:]
    msg = Message.parse(inner).reply(ra=True)
    msg.answers = [Record("big.example.com", TYPE_A, CLASS_IN, 60, ip(f"10.1.{i // 200}.{i % 200}"))
                   for i in range(300)]
    framed = dns.frame_tcp(msg.emit())
    assert fwd.receive_tcp(tcp.token, framed[:100], 0.2) and take(fwd) == []
    fwd.receive_tcp(tcp.token, framed[100:], 0.3)
    close, reply = take(fwd)
    assert close == TcpClose("tcp_close", tcp.token)
    assert isinstance(reply, TcpReply) and reply.conn == "c1"
    answer = Message.parse(dns.unframe_tcp(reply.payload)[0])
    assert answer.id == 0x2222 and len(answer.answers) == 300


def test_upstream_tcp_failure_tries_the_next_upstream(fwd):
    _, tcp = truncated_for_a_tcp_client(fwd)
    fwd.tcp_failed(tcp.token, 0.2)
    (send,) = take(fwd)
    assert send.kind == "udp" and send.dst_addr == U2


def test_answers_for_a_closed_tcp_client_are_dropped(fwd):
    query = Message(0x2222, rd=True, questions=[Question("x.example.com", TYPE_A)]).emit()
    fwd.receive_tcp_client("c1", dns.frame_tcp(query), 0.0)
    (send,) = take(fwd)
    fwd.client_closed("c1")
    upstream_reply(fwd, send)
    assert take(fwd) == [] and not fwd.ports


# ------------------------------------------------------------------- real dig, over loopback

class LoopbackServer:
    """Drives a DnsServer with kernel sockets on 127.0.0.1 (UDP and TCP on one port)."""

    def __init__(self, server):
        self.server = server
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.server.port = self.port
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(4)
        self.lock = threading.Lock()
        self.stop = False
        self.threads = [threading.Thread(target=self._udp_loop, daemon=True),
                        threading.Thread(target=self._tcp_loop, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _flush(self, conns):
        for record in self.server.outbox:
            if record.kind == "udp":
                self.udp.sendto(record.payload, ("127.0.0.1", record.dst_port))
            elif record.kind == "tcp_reply" and record.conn in conns:
                conns[record.conn].sendall(record.payload)
        self.server.outbox.clear()

    def _udp_loop(self):
        self.udp.settimeout(0.2)
        while not self.stop:
            try:
                data, (_, port) = self.udp.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.server.receive(bytes([127, 0, 0, 1]), port, bytes([127, 0, 0, 1]),
                                    self.port, data, 0.0)
                self._flush({})

    def _tcp_loop(self):
        self.tcp.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(2)
            with conn:
                while True:
                    try:
                        data = conn.recv(4096)
                    except OSError:
                        break
                    if not data:
                        break
                    with self.lock:
                        self.server.receive_tcp_client(id(conn), data, 0.0)
                        self._flush({id(conn): conn})
                with self.lock:
                    self.server.client_closed(id(conn))

    def close(self):
        self.stop = True
        for thread in self.threads:
            thread.join(2)
        self.udp.close()
        self.tcp.close()


def dig(port, *args):
    result = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2",
                             *args], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (bind9-dnsutils)")
def test_dig_reads_our_answers():
    s = DnsServer(zones=["lan"], rng=random.Random(1))
    s.add_host("web.lan", ["10.0.0.5", "fd00::5"])
    s.add_record("www.lan", TYPE_CNAME, "web.lan")
    s.add_hash_rule("hash.local", "fc00::")
    for i in range(100):
        s.add_record("big.lan", TYPE_A, f"10.7.0.{i + 1}")
    loop = LoopbackServer(s)
    try:
        assert dig(loop.port, "+short", "www.lan", "A").split() == ["web.lan.", "10.0.0.5"]
        assert dig(loop.port, "+short", "web.lan", "AAAA").split() == ["fd00::5"]
        assert dig(loop.port, "+short", "-x", "10.0.0.5").split() == ["web.lan."]
        assert dig(loop.port, "+short", "renzo.hash.local", "AAAA").split() == \
            ["fc00::4cc:8049:6765:d03a"]
        full = dig(loop.port, "nope.lan", "A")
        assert "status: NXDOMAIN" in full and "flags: qr aa rd" in full
        assert "lan.\t\t\t60\tIN\tSOA\tlan. hostmaster.lan." in full
        # 100 addresses do not fit in dig's 1232 bytes: dig sees TC and retries over TCP.
        big = dig(loop.port, "big.lan", "A")
        assert "Truncated, retrying in TCP mode." in big and "ANSWER: 100" in big
        assert "(TCP)" in big
        assert "status: NOERROR" in dig(loop.port, "+noedns", "web.lan", "A")
    finally:
        loop.close()
