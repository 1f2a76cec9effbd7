"""DNS messages (lwstack.wire.dns): vectors from real tools, RFC examples, dpkt as a cross-check,
compression (and its abuse), EDNS, truncation, and garbage.

Provenance of ``CAPTURED``: tests/wire/dns_vectors_capture.py, run as root on Debian 12 (Linux
6.18) with dig 9.18.49 (Debian's bind9-dnsutils) asking dnsmasq 2.90 on 127.0.0.1 in a network
namespace of its own; each entry is ``(question label, direction, transport)``.  dnsmasq gives
its local names TTL 0, truncates by dropping records (and its OPT) with TC set, and sends an
Extended DNS Error (option 15) with REFUSED.  test_live_capture repeats the capture when it can.
"""
import ipaddress

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lwstack.wire import WireError
from lwstack.wire import dns
from lwstack.wire.dns import (CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_MX, TYPE_NS,
                              TYPE_PTR, TYPE_SOA, TYPE_TXT, Edns, Message, Question, Record,
                              Soa)

CAPTURED = {
    ("a_cname", "query", "udp"): bytes.fromhex(
        "c3b60120000100000000000103777777036c616e000001000100002904d000000000000c000a00086ec2396a"
        "7775c6dd"
    ),
    ("a_cname", "answer", "udp"): bytes.fromhex(
        "c3b68580000100020000000103777777036c616e0000010001c00c0005000100000000000903776562036c61"
        "6e00c025000100010000000000040a4d000500002904d0000000000000"
    ),
    ("aaaa", "query", "udp"): bytes.fromhex(
        "63590120000100000000000103776562036c616e00001c000100002904d000000000000c000a000866f1b380"
        "a07ac9b2"
    ),
    ("aaaa", "answer", "udp"): bytes.fromhex(
        "63598580000100010000000103776562036c616e00001c0001c00c001c0001000000000010fd770000000000"
        "00000000000000000500002904d0000000000000"
    ),
    ("nxdomain", "query", "udp"): bytes.fromhex(
        "a6ed01200001000000000001046e6f7065036c616e000001000100002904d000000000000c000a00081a65fb"
        "8c22ec625e"
    ),
    ("nxdomain", "answer", "udp"): bytes.fromhex(
        "a6ed81830001000000000001046e6f7065036c616e000001000100002904d0000000000000"
    ),
    ("nodata", "query", "udp"): bytes.fromhex(
        "07890120000100000000000103747874036c616e00001c000100002904d000000000000c000a000865456948"
        "64092ae6"
    ),
    ("nodata", "answer", "udp"): bytes.fromhex(
        "07898180000100000000000103747874036c616e00001c000100002904d0000000000000"
    ),
    ("txt", "query", "udp"): bytes.fromhex(
        "74130120000100000000000103747874036c616e000010000100002904d000000000000c000a0008ec8a7879"
        "846ff59d"
    ),
    ("txt", "answer", "udp"): bytes.fromhex(
        "74138580000100010000000103747874036c616e0000100001c00c0010000100000000001a0b68656c6c6f20"
        "776f726c640d7365636f6e6420737472696e6700002904d0000000000000"
    ),
    ("ptr", "query", "udp"): bytes.fromhex(
        "3dd4012000010000000000010135013002373702313007696e2d61646472046172706100000c000100002904"
        "d000000000000c000a0008369e917233e12c61"
    ),
    ("ptr", "answer", "udp"): bytes.fromhex(
        "3dd4858000010001000000010135013002373702313007696e2d61646472046172706100000c0001c00c000c"
        "000100000000000903776562036c616e0000002904d0000000000000"
    ),
    ("ptr6", "query", "udp"): bytes.fromhex(
        "1dca012000010000000000010135013001300130013001300130013001300130013001300130013001300130"
        "013001300130013001300130013001300130013001300130013701370164016603697036046172706100000c"
        "000100002904d000000000000c000a00088623292576ff4962"
    ),
    ("ptr6", "answer", "udp"): bytes.fromhex(
        "1dca858000010001000000010135013001300130013001300130013001300130013001300130013001300130"
        "013001300130013001300130013001300130013001300130013701370164016603697036046172706100000c"
        "0001c00c000c000100000000000903776562036c616e0000002904d0000000000000"
    ),
    ("refused", "query", "udp"): bytes.fromhex(
        "84840120000100000000000103777777076578616d706c6503636f6d000001000100002904d000000000000c"
        "000a0008d7701ca68ce864f1"
    ),
    ("refused", "answer", "udp"): bytes.fromhex(
        "84848185000100000000000103777777076578616d706c6503636f6d000001000100002904d0000000000006"
        "000f0002000e"
    ),
    ("noedns", "query", "udp"): bytes.fromhex(
        "ae100120000100000000000003776562036c616e0000010001"
    ),
    ("noedns", "answer", "udp"): bytes.fromhex(
        "ae108580000100010000000003776562036c616e0000010001c00c000100010000000000040a4d0005"
    ),
    ("big", "query", "udp"): bytes.fromhex(
        "91bc0120000100000000000103626967036c616e000001000100002904d000000000000c000a000843acbfd9"
        "9eea66a5"
    ),
    ("big", "answer", "udp"): bytes.fromhex(
        "91bc87800001004b0000000003626967036c616e0000010001c00c000100010000000000040a4d010dc00c00"
        "0100010000000000040a4d0133c00c000100010000000000040a4d011ac00c000100010000000000040a4d01"
        "34c00c000100010000000000040a4d0107c00c000100010000000000040a4d0135c00c000100010000000000"
        "040a4d011bc00c000100010000000000040a4d0136c00c000100010000000000040a4d010ec00c0001000100"
        "00000000040a4d0137c00c000100010000000000040a4d011cc00c000100010000000000040a4d0138c00c00"
        "0100010000000000040a4d0104c00c000100010000000000040a4d0139c00c000100010000000000040a4d01"
        "1dc00c000100010000000000040a4d013ac00c000100010000000000040a4d010fc00c000100010000000000"
        "040a4d013bc00c000100010000000000040a4d011ec00c000100010000000000040a4d013cc00c0001000100"
        "00000000040a4d0108c00c000100010000000000040a4d013dc00c000100010000000000040a4d011fc00c00"
        "0100010000000000040a4d013ec00c000100010000000000040a4d0110c00c000100010000000000040a4d01"
        "3fc00c000100010000000000040a4d0120c00c000100010000000000040a4d0140c00c000100010000000000"
        "040a4d0101c00c000100010000000000040a4d0141c00c000100010000000000040a4d0121c00c0001000100"
        "00000000040a4d0142c00c000100010000000000040a4d0111c00c000100010000000000040a4d0143c00c00"
        "0100010000000000040a4d0122c00c000100010000000000040a4d0144c00c000100010000000000040a4d01"
        "09c00c000100010000000000040a4d0145c00c000100010000000000040a4d0123c00c000100010000000000"
        "040a4d0146c00c000100010000000000040a4d0112c00c000100010000000000040a4d0147c00c0001000100"
        "00000000040a4d0124c00c000100010000000000040a4d0148c00c000100010000000000040a4d0105c00c00"
        "0100010000000000040a4d0149c00c000100010000000000040a4d0125c00c000100010000000000040a4d01"
        "4ac00c000100010000000000040a4d0113c00c000100010000000000040a4d014bc00c000100010000000000"
        "040a4d0126c00c000100010000000000040a4d014cc00c000100010000000000040a4d010ac00c0001000100"
        "00000000040a4d014dc00c000100010000000000040a4d0127c00c000100010000000000040a4d014ec00c00"
        "0100010000000000040a4d0114c00c000100010000000000040a4d014fc00c000100010000000000040a4d01"
        "28c00c000100010000000000040a4d0150c00c000100010000000000040a4d0103c00c000100010000000000"
        "040a4d0151c00c000100010000000000040a4d0129c00c000100010000000000040a4d0152c00c0001000100"
        "00000000040a4d0115c00c000100010000000000040a4d0153c00c000100010000000000040a4d012ac00c00"
        "0100010000000000040a4d0154c00c000100010000000000040a4d010bc00c000100010000000000040a4d01"
        "55c00c000100010000000000040a4d012bc00c000100010000000000040a4d0156c00c000100010000000000"
        "040a4d0116c00c000100010000000000040a4d0157c00c000100010000000000040a4d012c"
    ),
    ("big", "query", "tcp"): bytes.fromhex(
        "7f2f0120000100000000000103626967036c616e000001000100002904d000000000000c000a000843acbfd9"
        "9eea66a5"
    ),
    ("big", "answer", "tcp"): bytes.fromhex(
        "7f2f8580000100640000000103626967036c616e0000010001c00c000100010000000000040a4d0133c00c00"
        "0100010000000000040a4d011ac00c000100010000000000040a4d0134c00c000100010000000000040a4d01"
        "07c00c000100010000000000040a4d0135c00c000100010000000000040a4d011bc00c000100010000000000"
        "040a4d0136c00c000100010000000000040a4d010ec00c000100010000000000040a4d0137c00c0001000100"
        "00000000040a4d011cc00c000100010000000000040a4d0138c00c000100010000000000040a4d0104c00c00"
        "0100010000000000040a4d0139c00c000100010000000000040a4d011dc00c000100010000000000040a4d01"
        "3ac00c000100010000000000040a4d010fc00c000100010000000000040a4d013bc00c000100010000000000"
        "040a4d011ec00c000100010000000000040a4d013cc00c000100010000000000040a4d0108c00c0001000100"
        "00000000040a4d013dc00c000100010000000000040a4d011fc00c000100010000000000040a4d013ec00c00"
        "0100010000000000040a4d0110c00c000100010000000000040a4d013fc00c000100010000000000040a4d01"
        "20c00c000100010000000000040a4d0140c00c000100010000000000040a4d0101c00c000100010000000000"
        "040a4d0141c00c000100010000000000040a4d0121c00c000100010000000000040a4d0142c00c0001000100"
        "00000000040a4d0111c00c000100010000000000040a4d0143c00c000100010000000000040a4d0122c00c00"
        "0100010000000000040a4d0144c00c000100010000000000040a4d0109c00c000100010000000000040a4d01"
        "45c00c000100010000000000040a4d0123c00c000100010000000000040a4d0146c00c000100010000000000"
        "040a4d0112c00c000100010000000000040a4d0147c00c000100010000000000040a4d0124c00c0001000100"
        "00000000040a4d0148c00c000100010000000000040a4d0105c00c000100010000000000040a4d0149c00c00"
        "0100010000000000040a4d0125c00c000100010000000000040a4d014ac00c000100010000000000040a4d01"
        "13c00c000100010000000000040a4d014bc00c000100010000000000040a4d0126c00c000100010000000000"
        "040a4d014cc00c000100010000000000040a4d010ac00c000100010000000000040a4d014dc00c0001000100"
        "00000000040a4d0127c00c000100010000000000040a4d014ec00c000100010000000000040a4d0114c00c00"
        "0100010000000000040a4d014fc00c000100010000000000040a4d0128c00c000100010000000000040a4d01"
        "50c00c000100010000000000040a4d0103c00c000100010000000000040a4d0151c00c000100010000000000"
        "040a4d0129c00c000100010000000000040a4d0152c00c000100010000000000040a4d0115c00c0001000100"
        "00000000040a4d0153c00c000100010000000000040a4d012ac00c000100010000000000040a4d0154c00c00"
        "0100010000000000040a4d010bc00c000100010000000000040a4d0155c00c000100010000000000040a4d01"
        "2bc00c000100010000000000040a4d0156c00c000100010000000000040a4d0116c00c000100010000000000"
        "040a4d0157c00c000100010000000000040a4d012cc00c000100010000000000040a4d0158c00c0001000100"
        "00000000040a4d0106c00c000100010000000000040a4d0159c00c000100010000000000040a4d012dc00c00"
        "0100010000000000040a4d015ac00c000100010000000000040a4d0117c00c000100010000000000040a4d01"
        "5bc00c000100010000000000040a4d012ec00c000100010000000000040a4d015cc00c000100010000000000"
        "040a4d010cc00c000100010000000000040a4d015dc00c000100010000000000040a4d012fc00c0001000100"
        "00000000040a4d015ec00c000100010000000000040a4d0118c00c000100010000000000040a4d015fc00c00"
        "0100010000000000040a4d0130c00c000100010000000000040a4d0160c00c000100010000000000040a4d01"
        "02c00c000100010000000000040a4d0161c00c000100010000000000040a4d0131c00c000100010000000000"
        "040a4d0162c00c000100010000000000040a4d0119c00c000100010000000000040a4d0163c00c0001000100"
        "00000000040a4d0132c00c000100010000000000040a4d0164c00c000100010000000000040a4d010d000029"
        "04d0000000000000"
    ),
}


def ip(text):
    return ipaddress.ip_address(text).packed


def parsed(label, direction="answer", transport="udp"):
    return Message.parse(CAPTURED[(label, direction, transport)])


# ------------------------------------------------------------------------ real tools' bytes

def test_dig_query_shape():
    msg = parsed("a_cname", "query")
    assert not msg.qr and msg.rd and not msg.aa and msg.opcode == 0 and msg.rcode == 0
    assert msg.ad          # dig sets AD in queries (RFC 6840 5.7)
    assert msg.questions == [Question("www.lan", TYPE_A, CLASS_IN)]
    assert msg.answers == msg.authorities == msg.additionals == []
    assert msg.edns.udp_size == 1232 and msg.edns.version == 0 and not msg.edns.do
    (code, cookie), = msg.edns.options
    assert code == 10 and len(cookie) == 8        # a client COOKIE (RFC 7873)


def test_dnsmasq_cname_answer():
    query, msg = parsed("a_cname", "query"), parsed("a_cname")
    assert msg.id == query.id and msg.qr and msg.aa and msg.rd and msg.ra
    assert msg.questions == query.questions
    assert msg.answers == [Record("www.lan", TYPE_CNAME, CLASS_IN, 0, "web.lan"),
                           Record("web.lan", TYPE_A, CLASS_IN, 0, ip("10.77.0.5"))]
    assert msg.edns == Edns(1232, 0, False, ())


def test_dnsmasq_aaaa_ptr_txt():
    assert parsed("aaaa").answers == [Record("web.lan", TYPE_AAAA, CLASS_IN, 0, ip("fd77::5"))]
    assert parsed("ptr").answers == [
        Record("5.0.77.10.in-addr.arpa", TYPE_PTR, CLASS_IN, 0, "web.lan")]
    assert parsed("ptr", "query").questions[0].name == dns.reverse_name(ip("10.77.0.5"))
    (record,) = parsed("ptr6").answers
    assert record.name == dns.reverse_name(ip("fd77::5")) and record.data == "web.lan"
    assert parsed("txt").answers[0].data == (b"hello world", b"second string")


def test_dnsmasq_negative_answers():
    nx = parsed("nxdomain")
    assert nx.rcode == dns.RCODE_NXDOMAIN and not nx.answers and not nx.authorities
    assert not nx.aa                      # dnsmasq sets AA on positive local answers only
    nodata = parsed("nodata")
    assert nodata.rcode == dns.RCODE_NOERROR and not nodata.answers
    assert nodata.questions == [Question("txt.lan", TYPE_AAAA)]
    refused = parsed("refused")
    assert refused.rcode == dns.RCODE_REFUSED
    assert refused.edns.options == ((15, b"\x00\x0e"),)     # EDE 14, "Not Ready" (RFC 8914)


def test_query_without_edns():
    query, msg = parsed("noedns", "query"), parsed("noedns")
    assert query.edns is None and msg.edns is None and query.additionals == []
    assert msg.answers == [Record("web.lan", TYPE_A, CLASS_IN, 0, ip("10.77.0.5"))]


def test_truncated_udp_then_tcp():
    udp = parsed("big")
    assert udp.tc and len(udp.answers) == 75 and udp.edns is None
    tcp = parsed("big", "answer", "tcp")
    assert not tcp.tc and len(tcp.answers) == 100 and tcp.edns is not None
    assert sorted(r.data for r in tcp.answers) == sorted(ip(f"10.77.1.{i}") for i in range(1, 101))
    assert len(CAPTURED[("big", "answer", "tcp")]) > 1232
    assert parsed("big", "query", "tcp").questions == [Question("big.lan", TYPE_A)]


@pytest.mark.parametrize("key", sorted(CAPTURED))
def test_round_trip_and_dpkt_agree(key):
    data = CAPTURED[key]
    msg = Message.parse(data)
    again = msg.emit()
    assert Message.parse(again) == msg
    assert len(again) <= len(data)            # our compression is at least as tight
    for raw in (data, again):
        other = dpkt.dns.DNS(raw)
        assert other.id == msg.id and other.qr == msg.qr and other.rcode == msg.rcode & 0xF
        assert [(q.name, q.type) for q in other.qd] == [(q.name, q.qtype) for q in msg.questions]
        assert [(r.name, r.type, r.ttl) for r in other.an] == \
            [(r.name, r.rtype, r.ttl) for r in msg.answers]
        assert sum(r.type == dns.TYPE_OPT for r in other.ar) == (msg.edns is not None)


# ------------------------------------------------------------------------------- building

def test_query_bytes_match_rfc_layout_and_dpkt():
    # RFC 1035 4.1: header (id, flags RD, QDCOUNT 1), then 3www7example3com0, QTYPE A, QCLASS IN.
    expected = bytes.fromhex("1234 0100 0001 0000 0000 0000"
                             "03777777 076578616d706c65 03636f6d 00 0001 0001")
    assert dns.build_query(0x1234, "www.example.com", TYPE_A, edns_size=None) == expected
    other = dpkt.dns.DNS(id=0x1234, op=dpkt.dns.DNS_RD, an=[], ns=[], ar=[],
                         qd=[dpkt.dns.DNS.Q(name="www.example.com", type=1, cls=1)])
    assert bytes(other) == expected


def test_query_with_edns_opt_record():
    data = dns.build_query(7, "example.com", TYPE_AAAA)
    # OPT: root owner, type 41, class = UDP size 1232, TTL 0 (ext rcode, version, flags), no rdata
    assert data.endswith(bytes.fromhex("00 0029 04d0 00000000 0000"))
    assert data[10:12] == b"\x00\x01"          # ARCOUNT counts the OPT record
    assert Message.parse(data).edns == Edns(1232)


def every_type_message():
    return Message(0xBEEF, qr=True, aa=True, rd=True, ra=True,
                   questions=[Question("www.Example.com", TYPE_A)],
                   answers=[Record("www.Example.com", TYPE_CNAME, CLASS_IN, 300, "web.example.com"),
                            Record("web.example.com", TYPE_A, CLASS_IN, 300, ip("10.0.0.1")),
                            Record("web.example.com", TYPE_AAAA, CLASS_IN, 300, ip("fd00::1"))],
                   authorities=[Record("example.com", TYPE_SOA, CLASS_IN, 60,
                                       Soa("ns.example.com", "host\\.master.example.com",
                                           2024010101, 3600, 600, 86400, 30)),
                                Record("example.com", TYPE_NS, CLASS_IN, 60, "ns.example.com")],
                   additionals=[Record("example.com", TYPE_MX, CLASS_IN, 5, (10, "mx.example.com")),
                                Record("example.com", TYPE_TXT, CLASS_IN, 5, (b"a", b"", b"b c")),
                                Record("example.com", 99, CLASS_IN, 5, b"\x01\x02raw")],
                   edns=Edns(4096, 0, True, ((10, b"12345678"),)))


def test_every_type_round_trips_and_dpkt_decodes_it():
    msg = every_type_message()
    data = msg.emit()
    assert Message.parse(data) == Message.parse(Message.parse(data).emit())
    back = Message.parse(data)
    # Compression takes the case of the first occurrence (names compare case-insensitively).
    assert [dns.name_key(r.name) for r in back.answers] == \
        ["www.example.com", "web.example.com", "web.example.com"]
    assert back.authorities[0].data == Soa("ns.Example.com", "host\\.master.Example.com",
                                           2024010101, 3600, 600, 86400, 30)
    assert back.additionals[0].data == (10, "mx.Example.com")
    assert back.additionals[1].data == (b"a", b"", b"b c")
    assert back.additionals[2].data == b"\x01\x02raw"
    assert back.edns == Edns(4096, 0, True, ((10, b"12345678"),))
    msg.additionals.pop()                   # dpkt refuses unknown types
    other = dpkt.dns.DNS(msg.emit())
    assert other.an[0].cname.lower() == "web.example.com"
    assert other.an[1].ip == ip("10.0.0.1") and other.an[2].ip6 == ip("fd00::1")
    assert other.ns[0].mname.lower() == "ns.example.com" and other.ns[0].minimum == 30
    assert other.ns[0].rname.lower() == "host.master.example.com"   # dpkt drops the escape
    assert other.ar[0].mxname.lower() == "mx.example.com" and other.ar[0].rdata[:2] == b"\x00\x0a"
    assert other.ar[1].text == ["a", "", "b c"]
    assert other.ar[-1].type == dns.TYPE_OPT and other.ar[-1].cls == 4096


def test_compression_points_back_to_earlier_names():
    msg = Message(1, qr=True, questions=[Question("a.example.com", TYPE_A)],
                  answers=[Record("a.example.com", TYPE_A, CLASS_IN, 1, ip("10.0.0.1")),
                           Record("b.example.com", TYPE_CNAME, CLASS_IN, 1, "a.example.com")])
    data = msg.emit()
    # question name at 12; the first answer's owner is a pointer to it ...
    qlen = len(b"\x01a\x07example\x03com\x00")
    assert data[12 + qlen + 4:12 + qlen + 6] == b"\xc0\x0c"
    # ... "b" + pointer to "example.com" (offset 14), and the CNAME target points to offset 12
    assert b"\x01b\xc0\x0e" in data and data.endswith(b"\xc0\x0c")
    assert Message.parse(data) == msg


def test_truncation_drops_additionals_then_sets_tc():
    msg = every_type_message()
    full = msg.emit()
    without_additionals = len(Message(msg.id, qr=True, questions=msg.questions,
                                      answers=msg.answers, authorities=msg.authorities,
                                      edns=msg.edns).emit())
    cut = Message.parse(msg.emit(without_additionals))
    assert not cut.tc and cut.additionals == [] and cut.answers == Message.parse(full).answers
    assert cut.edns == msg.edns                   # the OPT record stays (RFC 6891 7)
    tiny = Message.parse(msg.emit(60))
    assert tiny.tc and tiny.answers == tiny.authorities == tiny.additionals == []
    assert tiny.questions == msg.questions and tiny.edns == msg.edns
    assert len(msg.emit(len(full))) == len(full)


def test_extended_rcode_lives_in_the_opt_record():
    msg = Message(5, qr=True, rcode=dns.RCODE_BADVERS, edns=Edns(1232))
    data = msg.emit()
    assert data[3] & 0xF == 0 and data[-6] == 1   # header rcode 0, OPT extended rcode 1
    assert Message.parse(data).rcode == dns.RCODE_BADVERS
    with pytest.raises(ValueError):
        Message(5, qr=True, rcode=dns.RCODE_BADVERS).emit()


def test_reply_echoes_the_query():
    query = parsed("a_cname", "query")
    reply = query.reply(dns.RCODE_NXDOMAIN, aa=True)
    assert (reply.id, reply.qr, reply.rd, reply.aa, reply.rcode) == (query.id, True, True, True, 3)
    assert reply.questions == query.questions and reply.edns == Edns(dns.DEFAULT_EDNS_SIZE)
    assert parsed("noedns", "query").reply().edns is None


# --------------------------------------------------------------------------------- names

def test_name_escapes_round_trip():
    labels = [b"a.b", b"back\\slash", b"\x00\xff", b"UP"]
    name = dns.labels_to_name(labels)
    assert name == "a\\.b.back\\\\slash.\\000\\255.UP"
    assert dns.name_to_labels(name) == labels
    msg = Message(1, questions=[Question(name, TYPE_TXT)])
    assert Message.parse(msg.emit()).questions[0].name == name


def test_names_compare_case_insensitively():
    assert dns.name_key("WWW.Example.COM.") == "www.example.com"
    assert dns.name_key("\\065bc") == "abc"
    assert dns.name_key(".") == dns.name_key("") == ""
    assert dns.is_subdomain("a.b.lan", "lan") and dns.is_subdomain("lan", "lan")
    assert not dns.is_subdomain("alan", "lan") and dns.is_subdomain("x", "")


@pytest.mark.parametrize("bad", ["a..b", ".a", "x" * 64 + ".com", ".".join(["abcdefg"] * 32),
                                 "caf\u00e9.fr", "a\\", "a\\300"])
def test_bad_names_are_refused_when_building(bad):
    with pytest.raises(ValueError):
        dns.name_to_labels(bad)


def test_longest_legal_name():
    name = ".".join(["a" * 63] * 3 + ["b" * 61])       # 4 * 64 - 2 + 1 = 255 octets
    assert sum(len(x) + 1 for x in dns.name_to_labels(name)) + 1 == 255
    data = Message(1, questions=[Question(name, TYPE_A)]).emit()
    assert Message.parse(data).questions[0].name == name


def test_reverse_names_rfc_examples():
    # RFC 1035 3.5: 10.2.0.52 -> 52.0.2.10.IN-ADDR.ARPA
    assert dns.reverse_name(ip("10.2.0.52")) == "52.0.2.10.in-addr.arpa"
    # RFC 3596 2.5: 4321:0:1:2:3:4:567:89ab
    assert dns.reverse_name(ip("4321:0:1:2:3:4:567:89ab")) == (
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa")
    for text in ("10.2.0.52", "4321:0:1:2:3:4:567:89ab", "::", "255.255.255.255"):
        assert dns.address_from_reverse(dns.reverse_name(ip(text))) == ip(text)
    assert dns.address_from_reverse("52.0.2.10.IN-ADDR.ARPA.") == ip("10.2.0.52")
    for other in ("0.2.10.in-addr.arpa", "256.0.2.10.in-addr.arpa", "052.0.2.10.in-addr.arpa",
                  "1.0.ip6.arpa", "www.example.com", "a..b"):
        assert dns.address_from_reverse(other) is None


# ------------------------------------------------------------------------------- framing

def test_tcp_framing():
    message = parsed("a_cname")
    framed = dns.frame_tcp(message.emit())
    assert framed[:2] == len(message.emit()).to_bytes(2, "big")
    for cut in range(len(framed)):
        assert dns.unframe_tcp(framed[:cut]) == (None, framed[:cut])
    assert dns.unframe_tcp(framed + b"xy") == (message.emit(), b"xy")


# ----------------------------------------------------------------------- malformed input

def header(qd=0, an=0, ns=0, ar=0, flags=0x8180):
    return bytes.fromhex("abcd") + flags.to_bytes(2, "big") + bytes(
        b for n in (qd, an, ns, ar) for b in n.to_bytes(2, "big"))


@pytest.mark.parametrize("data, reason", [
    (b"\x00" * 11, "dns_truncated"),
    (header(qd=1) + b"\xc0\x0c\x00\x01\x00\x01", "dns_bad_pointer"),          # points at itself
    (header(qd=1) + b"\x01a\xc0\x0c\x00\x01\x00\x01", "dns_bad_pointer"),     # loops back to itself
    (header(qd=1) + b"\xc0\x20" + b"\x00" * 40, "dns_bad_pointer"),           # points forward
    (header(qd=1) + b"\x41a" + b"\x00" * 10, "dns_bad_label"),                # 0x40: extended label
    (header(qd=1) + b"\x81a" + b"\x00" * 10, "dns_bad_label"),
    (header(qd=1) + b"\x05abc", "dns_truncated"),
    (header(qd=1) + b"\x00\x00\x01", "dns_truncated"),
    (header(qd=1) + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", "dns_name_too_long"),
    (header(an=1) + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x05\x01\x02\x03\x04\x05",
     "dns_bad_rdata"),                                                        # A of 5 bytes
    (header(an=1) + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x08\x01\x02\x03\x04",
     "dns_truncated"),                                                        # rdlength too long
    (header(an=1) + b"\x00\x00\x05\x00\x01\x00\x00\x00\x00\x00\x03\x01a\x00\x00",
     "dns_trailing_bytes"),
    (header(an=1) + b"\x00\x00\x05\x00\x01\x00\x00\x00\x00\x00\x04\x01a\x00\x00",
     "dns_bad_rdata"),                                                # CNAME with a spare byte
    (header(an=1) + b"\x00\x00\x10\x00\x01\x00\x00\x00\x00\x00\x02\x05a", "dns_bad_rdata"),
    (header(an=1) + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00",
     "dns_bad_opt"),                                                  # OPT in the answers
    (header(ar=2) + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" * 2, "dns_bad_opt"),  # two OPTs
    (header(ar=1) + b"\x01a\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00",
     "dns_bad_opt"),                                                  # OPT not at the root
    (header(ar=1) + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x09", "dns_bad_opt"),
    (header(qd=1) + b"\x00\x00\x01\x00\x01" + b"junk", "dns_trailing_bytes"),
    (header(qd=2) + b"\x00\x00\x01\x00\x01", "dns_truncated"),
])
def test_malformed(data, reason):
    with pytest.raises(WireError) as info:
        Message.parse(data)
    assert info.value.reason == reason


def test_pointer_chains_are_bounded():
    # A chain of backward pointers, each to the previous one: legal, but only MAX_POINTERS deep.
    # The root name is at offset 12; pointer k at 13+2k points at the one before it (or 12).
    body = bytearray(b"\x00")
    positions = [12]
    for _ in range(dns.MAX_POINTERS + 1):
        positions.append(12 + len(body))
        body += (0xC000 | positions[-2]).to_bytes(2, "big")
    ok_at = positions[dns.MAX_POINTERS]
    data = header(qd=0) + bytes(body)
    assert dns.read_name(data, ok_at)[0] == ""
    with pytest.raises(WireError) as info:
        dns.read_name(data, positions[-1])
    assert info.value.reason == "dns_bad_pointer"


@pytest.mark.parametrize("key", sorted(CAPTURED))
def test_every_truncation_of_a_capture_is_a_wire_error(key):
    data = CAPTURED[key]
    for cut in range(len(data)):
        with pytest.raises(WireError):
            Message.parse(data[:cut])


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    try:
        msg = Message.parse(data)
    except WireError:
        return
    assert Message.parse(msg.emit()) == Message.parse(msg.emit())


@FUZZ
@given(st.sampled_from(sorted(CAPTURED)),
       st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_captures(key, flips):
    data = bytearray(CAPTURED[key])
    for index, value in flips:
        data[index % len(data)] = value
    try:
        msg = Message.parse(bytes(data))
    except WireError:
        return
    try:
        again = msg.emit()
    except ValueError:
        return            # e.g. a mutated extended rcode that needs EDNS: refused, not crashed
    assert Message.parse(again) == Message.parse(Message.parse(again).emit())


# --------------------------------------------------------------------- live, with the tools

def test_live_capture():
    """Repeat the capture (root, dnsmasq, dig): the fresh bytes have the vectors' shapes."""
    capture = pytest.importorskip("dns_vectors_capture")
    reason = capture.available()
    if reason:
        pytest.skip(reason)
    fresh = capture.capture()
    for label, messages in fresh.items():
        kinds = [(direction, transport) for direction, transport, _ in messages]
        expected = [(d, t) for (lab, d, t) in CAPTURED if lab == label]
        assert kinds == expected, label
        for (direction, transport, data), (lab, d, t) in zip(
                messages, [k for k in CAPTURED if k[0] == label]):
            new, old = Message.parse(data), Message.parse(CAPTURED[(lab, d, t)])
            assert (new.questions, new.answers, new.rcode, new.tc, new.aa) == \
                (old.questions, old.answers, old.rcode, old.tc, old.aa), label
