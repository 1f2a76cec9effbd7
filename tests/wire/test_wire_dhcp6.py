"""DHCPv6 messages (lwstack.wire.dhcp6): vectors from dnsmasq, round trips, garbage.

Provenance of DNSMASQ: Debian's dnsmasq 2.90 (``--port=0 --dhcp-range=fd00:d6::100,
fd00:d6::101,64,3600 --dhcp-option=option6:dns-server,[fd00:d6::1] --dhcp-option=
option6:domain-search,lan --dhcp-option=option6:information-refresh-time,7200``; the rapid
commit vector from a second run with ``--dhcp-range=fd00:d6::100,fd00:d6::1ff,64,600
--dhcp-rapid-commit --domain=lan``), bound to one end of a veth pair in a network namespace
of our own, MAC 02:00:00:00:d6:01.  The other end (MAC 02:00:00:00:d6:02, fe80::ff:fe00:d602)
sent the first message of each pair from a kernel UDP socket on port 546 to ff02::1:2 port
547; those messages were built with this module (so they check that dnsmasq understood
ours), and the second of each pair is dnsmasq's answer as received.  Each pair was also
decoded by tshark 4 with UDP checksum validation, which agreed with the fields asserted here.
"""
import ipaddress
import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lwstack.wire import WireError
from lwstack.wire import dhcp6 as w


def A(text):
    return ipaddress.IPv6Address(text).packed


def H(text):
    return bytes.fromhex(text)


CLIENT_DUID = H("00030001 02000000d602")
SERVER_DUID = H("00010001 3294166b 02000000d601")     # dnsmasq's DUID-LLT of the first run
OUR_ORO = [w.OPTION_DNS_SERVERS, w.OPTION_DOMAIN_LIST]

DNSMASQ = {
    "advertise": (
        """010a0b0c0001000a0003000102000000d6020006000400170018000800020000
           0003000c0000d60200000000000000000027000c0005686f737431036c616e00""",
        """020a0b0c0001000a0003000102000000d6020002000e000100013294166b0200
           0000d601000300280000d6020000070800000c4e00050018fd0000d600000000
           000000000000010000000e1000000e10000d0009000073756363657373000700
           010000180005036c616e0000170010fd0000d600000000000000000000000100
           2700070305686f737431""",
    ),
    "reply_request": (
        """030a0b0d0001000a0003000102000000d6020002000e000100013294166b0200
           0000d6010006000400170018000800020000000300280000d602000000000000
           000000050018fd0000d600000000000000000000010000000000000000000027
           000c0005686f737431036c616e00""",
        """070a0b0d0001000a0003000102000000d6020002000e000100013294166b0200
           0000d601000300280000d6020000070800000c4e00050018fd0000d600000000
           000000000000010000000e1000000e10000d0009000073756363657373001800
           05036c616e0000170010fd0000d6000000000000000000000001002700070305
           686f737431""",
    ),
    "reply_renew": (
        """050a0b0e0001000a0003000102000000d6020002000e000100013294166b0200
           0000d6010006000400170018000800020000000300280000d602000000000000
           000000050018fd0000d600000000000000000000010000000000000000000027
           000c0005686f737431036c616e00""",
        """070a0b0e0001000a0003000102000000d6020002000e000100013294166b0200
           0000d601000300280000d6020000063e00000b8400050018fd0000d600000000
           000000000000010000000e1000000e1000180005036c616e0000170010fd0000
           d6000000000000000000000001002700070305686f737431""",
    ),
    "reply_rebind": (
        """060a0b0f0001000a0003000102000000d6020006000400170018000800020000
           000300280000d602000000000000000000050018fd0000d60000000000000000
           0000010000000000000000000027000c0005686f737431036c616e00""",
        """070a0b0f0001000a0003000102000000d6020002000e000100013294166b0200
           0000d601000300280000d6020000065900000b9f00050018fd0000d600000000
           000000000000010000000e1000000e1000180005036c616e0000170010fd0000
           d6000000000000000000000001002700070305686f737431""",
    ),
    "reply_inforeq": (
        """0b0a0b100001000a0003000102000000d6020006000600170018002000080002
           0000""",
        """070a0b100001000a0003000102000000d6020002000e000100013294166b0200
           0000d6010020000400001c2000180005036c616e0000170010fd0000d6000000
           000000000000000001""",
    ),
    "advertise2": (
        """010a0b110001000a0003000102000000d6030006000400170018000800020000
           0003000c000000070000000000000000""",
        """020a0b110001000a0003000102000000d6030002000e000100013294166b0200
           0000d60100030028000000070000070800000c4e00050018fd0000d600000000
           000000000000010100000e1000000e10000d0009000073756363657373000700
           010000180005036c616e0000170010fd0000d6000000000000000000000001""",
    ),
    "reply_request2": (
        """030a0b120001000a0003000102000000d6030002000e000100013294166b0200
           0000d6010008000200000003002800000007000000000000000000050018fd00
           00d60000000000000000000001010000000000000000""",
        """070a0b120001000a0003000102000000d6030002000e000100013294166b0200
           0000d60100030028000000070000070800000c4e00050018fd0000d600000000
           000000000000010100000e1000000e10000d0009000073756363657373002000
           0400001c2000180005036c616e0000170010fd0000d600000000000000000000
           0001""",
    ),
    "advertise_noaddrs": (
        """010a0b130001000a0003000102000000d6040006000400170018000800020000
           0003000c000000090000000000000000""",
        """020a0b130001000a0003000102000000d6040002000e000100013294166b0200
           0000d601000d001800026e6f2061646472657373657320617661696c61626c65""",
    ),
    "reply_renew_nobinding": (
        """050a0b140001000a0003000102000000d6040002000e000100013294166b0200
           0000d6010008000200000003002800000009000000000000000000050018fd00
           00d60000000000000000000001500000000000000000""",
        """070a0b140001000a0003000102000000d6040002000e000100013294166b0200
           0000d60100030022000000090000000000000000000d001200036e6f2062696e
           64696e6720666f756e640020000400001c2000180005036c616e0000170010fd
           0000d6000000000000000000000001""",
    ),
    "reply_decline": (
        """090a0b150001000a0003000102000000d6030002000e000100013294166b0200
           0000d6010008000200000003002800000007000000000000000000050018fd00
           00d60000000000000000000001010000000000000000""",
        """070a0b150001000a0003000102000000d6030002000e000100013294166b0200
           0000d601000d0009000073756363657373""",
    ),
    "reply_release": (
        """080a0b160001000a0003000102000000d6020002000e000100013294166b0200
           0000d601000800020000000300280000d602000000000000000000050018fd00
           00d60000000000000000000001000000000000000000""",
        """070a0b160001000a0003000102000000d6020002000e000100013294166b0200
           0000d601000d0012000072656c65617365207265636569766564""",
    ),
    "reply_confirm_offlink": (
        """040a0b170001000a0003000102000000d602000800020000000300280000d602
           000000000000000000050018fd0000d700000000000000000000010000000000
           00000000""",
        """070a0b170001000a0003000102000000d6020002000e000100013294166b0200
           0000d601000d00100004636f6e6669726d206661696c6564""",
    ),
    "reply_rapid_commit": (
        """010c0d0e0001000a0003000102000000d6050006000400170018000800020000
           000e00000003000c0000010500000000000000000027000c0105686f73743503
           6c616e00""",
        """070c0d0e0001000a0003000102000000d6050002000e00010001329416730200
           0000d601000e000000030028000001050000012c0000020d00050018fd0000d6
           0000000000000000000001360000025800000258000d00090000737563636573
           73000700010000170010fd0000d60000000000000000000000010027000c0105
           686f737435036c616e00""",
    ),
}


def vector(name):
    sent, received = DNSMASQ[name]
    return H(sent), H(received)


# --- dnsmasq's answers, field by field ------------------------------------------------------

def test_dnsmasq_advertise():
    msg = w.parse_message(vector("advertise")[1])
    assert (msg.msg_type, msg.xid) == (w.ADVERTISE, 0x0A0B0C)
    assert msg.client_id == CLIENT_DUID and msg.server_id == SERVER_DUID
    duid = w.parse_duid(msg.server_id)
    assert (duid.kind, duid.hw_type, duid.time) == (w.DUID_LLT, w.HW_TYPE_ETHERNET, 0x3294166B)
    assert duid.link_addr == H("02000000d601")
    [ia] = msg.ia_na
    assert (ia.iaid, ia.t1, ia.t2) == (0xD602, 1800, 3150)
    assert ia.addresses == [w.IaAddress(A("fd00:d6::100"), 3600, 3600)]
    # dnsmasq puts its Success status at the top level, after the IA_NA.
    assert ia.status is None and msg.status == w.StatusCode(w.STATUS_SUCCESS, "success")
    assert msg.preference == 0
    assert msg.dns_servers == [A("fd00:d6::1")] and msg.domains == ["lan"]
    # dnsmasq without --domain answers with the bare host name: a partial name (RFC 4704 4.2),
    # flags S and O.
    assert msg.fqdn == w.ClientFqdn(w.FQDN_S | w.FQDN_O, "host1", partial=True)
    assert msg.options == [] and not msg.rapid_commit


def test_dnsmasq_replies_to_request_renew_rebind():
    for name, xid, t1, t2 in (("reply_request", 0x0A0B0D, 1800, 3150),
                              ("reply_renew", 0x0A0B0E, 1598, 2948),
                              ("reply_rebind", 0x0A0B0F, 1625, 2975)):
        msg = w.parse_message(vector(name)[1])
        assert (msg.msg_type, msg.xid) == (w.REPLY, xid)
        ia = msg.find_ia(0xD602)
        assert (ia.t1, ia.t2) == (t1, t2)
        assert [(a.address, a.preferred, a.valid) for a in ia.addresses] == [
            (A("fd00:d6::100"), 3600, 3600)]
        assert msg.server_id == SERVER_DUID and msg.dns_servers == [A("fd00:d6::1")]


def test_dnsmasq_information_reply():
    msg = w.parse_message(vector("reply_inforeq")[1])
    assert msg.msg_type == w.REPLY and msg.ia_na == []
    assert msg.refresh_time == 7200
    assert msg.domains == ["lan"] and msg.dns_servers == [A("fd00:d6::1")]


def test_dnsmasq_no_addrs_avail_is_a_top_level_status_without_ia():
    msg = w.parse_message(vector("advertise_noaddrs")[1])
    assert msg.msg_type == w.ADVERTISE and msg.ia_na == []
    assert msg.status == w.StatusCode(w.STATUS_NO_ADDRS_AVAIL, "no addresses available")


def test_dnsmasq_no_binding_is_an_ia_status():
    msg = w.parse_message(vector("reply_renew_nobinding")[1])
    [ia] = msg.ia_na
    assert ia.iaid == 9 and ia.addresses == []
    assert ia.status == w.StatusCode(w.STATUS_NO_BINDING, "no binding found")


def test_dnsmasq_release_decline_confirm_replies():
    statuses = {name: w.parse_message(vector(name)[1]).status
                for name in ("reply_release", "reply_decline", "reply_confirm_offlink")}
    assert statuses == {
        "reply_release": w.StatusCode(w.STATUS_SUCCESS, "release received"),
        "reply_decline": w.StatusCode(w.STATUS_SUCCESS, "success"),
        "reply_confirm_offlink": w.StatusCode(w.STATUS_NOT_ON_LINK, "confirm failed")}


def test_dnsmasq_rapid_commit_reply():
    msg = w.parse_message(vector("reply_rapid_commit")[1])
    assert msg.msg_type == w.REPLY and msg.rapid_commit
    ia = msg.find_ia(0x105)
    assert (ia.t1, ia.t2) == (300, 525)
    assert ia.addresses == [w.IaAddress(A("fd00:d6::136"), 600, 600)]
    assert msg.fqdn == w.ClientFqdn(w.FQDN_S, "host5.lan")


# --- what we sent, byte for byte ------------------------------------------------------------

def test_our_solicit_bytes():
    msg = w.Message(w.SOLICIT, 0x0A0B0C, client_id=w.duid_ll(H("02000000d602")), oro=OUR_ORO,
                    elapsed_time=0, ia_na=[w.IaNa(0xD602)], fqdn=w.ClientFqdn(0, "host1.lan"))
    assert msg.emit() == vector("advertise")[0]
    rapid = w.Message(w.SOLICIT, 0x0C0D0E, client_id=w.duid_ll(H("02000000d605")),
                      oro=OUR_ORO, elapsed_time=0, rapid_commit=True, ia_na=[w.IaNa(0x105)],
                      fqdn=w.ClientFqdn(w.FQDN_S, "host5.lan"))
    assert rapid.emit() == vector("reply_rapid_commit")[0]


def test_our_request_and_information_request_bytes():
    request = w.Message(w.REQUEST, 0x0A0B0D, client_id=CLIENT_DUID, server_id=SERVER_DUID,
                        oro=OUR_ORO, elapsed_time=0, fqdn=w.ClientFqdn(0, "host1.lan"),
                        ia_na=[w.IaNa(0xD602, addresses=[w.IaAddress(A("fd00:d6::100"))])])
    assert request.emit() == vector("reply_request")[0]
    inform = w.Message(w.INFORMATION_REQUEST, 0x0A0B10, client_id=CLIENT_DUID,
                       oro=OUR_ORO + [w.OPTION_INFORMATION_REFRESH_TIME], elapsed_time=0)
    assert inform.emit() == vector("reply_inforeq")[0]


@pytest.mark.parametrize("name", sorted(DNSMASQ))
def test_every_vector_survives_parse_emit_parse(name):
    for raw in vector(name):
        msg = w.parse_message(raw)
        again = msg.emit()
        assert w.parse_message(again) == msg
        assert len(again) == len(raw)       # same options, maybe in another order


# --- round trips and small pieces -----------------------------------------------------------

def full_message():
    return w.Message(
        w.REPLY, 0xFFFFFF, client_id=CLIENT_DUID, server_id=SERVER_DUID,
        ia_na=[w.IaNa(1, 100, 160, [w.IaAddress(A("2001:db8::1"), 200, 300,
                                                w.StatusCode(0, "ok"), [(99, b"x")])],
                      w.StatusCode(w.STATUS_SUCCESS, "fine \u2713"), [(98, b"yy")]),
               w.IaNa(2, status=w.StatusCode(w.STATUS_NO_ADDRS_AVAIL, ""))],
        oro=[23, 24, 39], preference=255, elapsed_time=0xFFFF,
        status=w.StatusCode(w.STATUS_SUCCESS, "all done"), rapid_commit=True,
        dns_servers=[A("2001:db8::53"), A("2001:db8::54")], domains=["a.example", "example"],
        fqdn=w.ClientFqdn(w.FQDN_N, "node.example"), refresh_time=w.INFINITY,
        sol_max_rt=3600, inf_max_rt=600, options=[(12, A("2001:db8::9")), (200, b"")])


def test_full_round_trip_keeps_unknown_options_in_order():
    msg = full_message()
    assert w.parse_message(msg.emit()) == msg
    assert msg.find_ia(2).status.code == w.STATUS_NO_ADDRS_AVAIL and msg.find_ia(3) is None
    assert msg.emit() == w.parse_message(msg.emit()).emit()


def test_elapsed_time_is_capped_at_0xffff():
    raw = w.Message(w.SOLICIT, 1, client_id=CLIENT_DUID, elapsed_time=10 ** 6).emit()
    assert w.parse_message(raw).elapsed_time == 0xFFFF


def test_duids():
    mac = H("020000abcdef")
    assert w.duid_ll(mac) == H("00030001 020000abcdef")
    assert w.parse_duid(w.duid_ll(mac)) == w.Duid(w.DUID_LL, hw_type=1, identifier=mac)
    assert w.parse_duid(w.duid_llt(mac, 0x01020304)).time == 0x01020304
    en = w.parse_duid(H("0002 00000009 0102030405"))
    assert (en.kind, en.enterprise, en.identifier, en.link_addr) == (w.DUID_EN, 9,
                                                                      H("0102030405"), None)
    uuid = w.parse_duid(H("0004") + bytes(range(16)))
    assert uuid.kind == w.DUID_UUID and uuid.identifier == bytes(range(16))
    assert w.parse_duid(H("0063 aabb")) == w.Duid(99, identifier=H("aabb"))
    for bad in (H("0003"), H("000100010000"), H("0002000000"), H("0003 0001"),
                H("0004 00"), H("0003 0001") + bytes(127)):
        with pytest.raises(WireError) as info:
            w.parse_duid(bad)
        assert info.value.reason == "dhcp6_bad_duid"
    with pytest.raises(ValueError):
        w.duid_ll(b"\x01\x02")
    with pytest.raises(ValueError):
        w.duid_llt(b"\x01\x02", 0)


def test_names():
    assert w.encode_name("a.bc") == b"\x01a\x02bc\x00"
    assert w.encode_name("a.bc.") == b"\x01a\x02bc\x00"
    assert w.encode_name("host", partial=True) == b"\x04host"
    assert w.decode_names(b"\x01a\x02bc\x00\x03lan\x00") == ["a.bc", "lan"]
    assert w.decode_names(b"\x04host", allow_partial=True) == (["host"], True)
    for bad in ("a..b", "x" * 64, ".".join(["abcdefg"] * 40)):
        with pytest.raises(ValueError):
            w.encode_name(bad)


# --- garbage --------------------------------------------------------------------------------

def opt(code, body):
    return struct.pack("!HH", code, len(body)) + body


HEAD = bytes([w.REPLY, 0, 0, 1])


@pytest.mark.parametrize("raw, reason", [
    (b"", "dhcp6_truncated"),
    (b"\x07\x00\x00", "dhcp6_truncated"),
    (bytes([w.RELAY_FORW]) + bytes(40), "dhcp6_relay_message"),
    (bytes([w.RELAY_REPL, 0, 0, 0]), "dhcp6_relay_message"),
    (bytes([0, 0, 0, 0]), "dhcp6_unknown_type"),
    (bytes([200, 0, 0, 0]), "dhcp6_unknown_type"),
    (HEAD + b"\x00\x01\x00", "dhcp6_truncated_option"),
    (HEAD + b"\x00\x01\x00\x05abcd", "dhcp6_option_overrun"),
    (HEAD + opt(1, b"\x00\x03"), "dhcp6_bad_duid"),
    (HEAD + opt(2, bytes(131)), "dhcp6_bad_duid"),
    (HEAD + opt(6, b"\x00\x17\x00"), "dhcp6_bad_option_length"),
    (HEAD + opt(7, b""), "dhcp6_bad_option_length"),
    (HEAD + opt(8, b"\x00"), "dhcp6_bad_option_length"),
    (HEAD + opt(13, b"\x00"), "dhcp6_bad_option_length"),
    (HEAD + opt(14, b"\x00"), "dhcp6_bad_option_length"),
    (HEAD + opt(23, bytes(17)), "dhcp6_bad_option_length"),
    (HEAD + opt(32, b"\x00\x00\x01"), "dhcp6_bad_option_length"),
    (HEAD + opt(39, b""), "dhcp6_bad_option_length"),
    (HEAD + opt(3, bytes(11)), "dhcp6_bad_option_length"),
    (HEAD + opt(3, bytes(12) + opt(5, bytes(23))), "dhcp6_bad_option_length"),
    (HEAD + opt(3, bytes(12) + b"\x00\x05\x00\x30" + bytes(24)), "dhcp6_option_overrun"),
    (HEAD + opt(3, bytes(12) + opt(13, b"\x00\x00") * 2), "dhcp6_duplicate_option"),
    (HEAD + opt(3, bytes(12) + opt(5, bytes(24) + opt(13, b"\x00\x00") * 2)),
     "dhcp6_duplicate_option"),
    (HEAD + opt(2, SERVER_DUID) * 2, "dhcp6_duplicate_option"),
    (HEAD + opt(14, b"") * 2, "dhcp6_duplicate_option"),
    (HEAD + opt(24, b"\x03lan"), "dhcp6_bad_name"),               # no root label
    (HEAD + opt(24, b"\xc0\x0c"), "dhcp6_bad_name"),              # compression pointer
    (HEAD + opt(24, b"\x05la\x00"), "dhcp6_bad_name"),            # label overruns
    (HEAD + opt(24, b"\x03l.n\x00"), "dhcp6_bad_name"),
    (HEAD + opt(24, b"\x03l\xe9n\x00"), "dhcp6_bad_name"),
    (HEAD + opt(24, (b"\x3f" + b"a" * 63) * 4 + b"\x00"), "dhcp6_bad_name"),   # 257 bytes
    (HEAD + opt(39, b"\x00\x01a\x00\x01b\x00"), "dhcp6_bad_name"),
    (HEAD + opt(99, b"") * (w.MAX_OPTIONS + 1), "dhcp6_too_many_options"),
    (HEAD + opt(3, bytes(12) + opt(99, b"") * (w.MAX_OPTIONS + 1)), "dhcp6_too_many_options"),
])
def test_malformed_messages(raw, reason):
    with pytest.raises(WireError) as info:
        w.parse_message(raw)
    assert info.value.reason == reason


def test_limits_that_are_fine():
    many = HEAD + opt(99, b"") * w.MAX_OPTIONS
    assert len(w.parse_message(many).options) == w.MAX_OPTIONS
    longest = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"a" * 61 + b"\x00"      # 255 bytes
    assert len(longest) == 255
    assert len(w.parse_message(HEAD + opt(24, longest)).domains[0]) == 253
    # A repeated IA_NA is fine (one per IAID), and unknown options may repeat.
    two = w.parse_message(HEAD + opt(3, struct.pack("!III", 1, 0, 0)) * 2 + opt(99, b"") * 2)
    assert len(two.ia_na) == 2 and two.options == [(99, b""), (99, b"")]


def test_emit_refuses_what_cannot_be_encoded():
    with pytest.raises(ValueError):
        w.Message(w.SOLICIT, 1 << 24).emit()
    with pytest.raises(ValueError):
        w.Message(w.SOLICIT, 1, options=[(99, bytes(70000))]).emit()


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_error(raw):
    try:
        return w.parse_message(raw)
    except WireError as exc:
        assert exc.reason.startswith("dhcp6_")
        return None


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(raw):
    msg = _parse_or_error(raw)
    if msg is not None:
        assert w.parse_message(msg.emit()) == msg


@FUZZ
@given(st.sampled_from(sorted(DNSMASQ)), st.integers(0, 1),
       st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 400))
def test_mutated_vectors(name, which, flips, cut):
    data = bytearray(vector(name)[which])
    for index, value in flips:
        data[index % len(data)] = value
    msg = _parse_or_error(bytes(data[:max(cut, 4)]))
    if msg is not None:
        assert w.parse_message(msg.emit()) == msg


# --- an independent decoder -----------------------------------------------------------------

def _ones_complement(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv6_udp(src, dst, sport, dport, payload):
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!I3xB", length, 17)
    checksum = _ones_complement(pseudo + struct.pack("!HHHH", sport, dport, length, 0)
                                + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, checksum) + payload
    return struct.pack("!IHBB", 6 << 28, len(udp), 17, 1) + src + dst + udp


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_our_messages_as_we_mean_them(tmp_path):
    """Wireshark's DHCPv6 dissector decodes what we emit into the same fields."""
    messages = [full_message(), w.parse_message(vector("advertise")[1])]
    messages += [w.parse_message(vector(name)[0]) for name in sorted(DNSMASQ)]
    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]   # raw IP
    for msg in messages:
        packet = _ipv6_udp(A("fe80::2"), A("ff02::1:2"), 546, 547, msg.emit())
        records.append(struct.pack("<IIII", 0, 0, len(packet), len(packet)) + packet)
    capture = tmp_path / "dhcp6.pcap"
    capture.write_bytes(b"".join(records))
    fields = ["dhcpv6.msgtype", "dhcpv6.xid", "dhcpv6.iaid", "dhcpv6.iaaddr.ip",
              "dhcpv6.iaaddr.valid_lifetime", "dhcpv6.requested_option_code",
              "dhcpv6.client_domain", "dhcpv6.dns_server", "dhcpv6.status_code",
              "udp.checksum.status", "_ws.malformed"]
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-o", "udp.check_checksum:TRUE", "-T", "fields",
         "-E", "separator=|", "-E", "aggregator=,"] + sum((["-e", f] for f in fields), []),
        capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert len(out) == len(messages)
    for line, msg in zip(out, messages):
        (kind, xid, iaids, addrs, valids, oro, fqdn, dns, status, checksum,
         malformed) = line.split("|")
        assert int(kind) == msg.msg_type and int(xid, 16) == msg.xid
        assert [int(x, 16) for x in iaids.split(",") if x] == [ia.iaid for ia in msg.ia_na]
        ours = [a for ia in msg.ia_na for a in ia.addresses]
        assert [A(x) for x in addrs.split(",") if x] == [a.address for a in ours]
        assert [int(x) for x in valids.split(",") if x] == [a.valid for a in ours]
        assert [int(x) for x in oro.split(",") if x] == (msg.oro or [])
        expected_name = msg.fqdn.name + ("" if msg.fqdn.partial else ".") if msg.fqdn else ""
        assert fqdn == expected_name
        assert [A(x) for x in dns.split(",") if x] == (msg.dns_servers or [])
        statuses = [s.code for s in [msg.status] + [ia.status for ia in msg.ia_na]
                    + [a.status for a in ours] if s is not None]
        assert sorted(int(x) for x in status.split(",") if x) == sorted(statuses)
        assert checksum == "1" and malformed == ""       # 1: checksum verified good
