"""DHCPv4 messages (RFC 2131/2132, 3396, 3442, 4702): dnsmasq's replies, dpkt, bad input."""
import dpkt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lwstack.wire import WireError
from lwstack.wire import dhcp4
from lwstack.wire.dhcp4 import (ACK, BOOTREPLY, BOOTREQUEST, DISCOVER, FQDN_E, FQDN_S, NAK,
                                OFFER, ClientFqdn, DhcpMessage, mask_to_prefix, prefix_to_mask)


def ip(text):
    return bytes(int(part) for part in text.split("."))


def _dnsmasq(head, tail):
    """A captured message: fixed fields up to chaddr, then sname and file (192 zero bytes in
    every capture, elided here), then the cookie and options, zero-padded to 300 bytes."""
    data = bytes.fromhex(head) + bytes(192) + bytes.fromhex(tail)
    return data.ljust(300, b"\0")


# Provenance: Debian bookworm's dnsmasq 2.90 in a network namespace, answering lwstack's
# client (tests/proto/test_proto_dhcp4_client.py, test_dnsmasq_gives_a_lease, which repeats
# the capture as root) over a veth pair with TX checksum offload off; the UDP payloads as
# they arrived.  dnsmasq ran with --dhcp-range=198.18.79.100,198.18.79.150,255.255.255.0,2m
# --dhcp-option=option:router,198.18.79.1 --dhcp-option=option:dns-server,198.18.79.1
# --domain=lwtest.lan --dhcp-option=option:mtu,1400 --dhcp-authoritative
# --dhcp-option=121,10.9.0.0/16,198.18.79.254,0.0.0.0/0,198.18.79.1.
# The client (MAC 02:00:00:00:79:02, broadcast flag set) sent its FQDN lwhost.lwtest.lan.
DNSMASQ_OFFER = _dnsmasq(
    "020106003c6da5d70000800000000000c6124f8ac6124f01000000000200000079020000000000000000"
    "0000",
    "638253633501023604c6124f013304000000783a040000003c3b04000000690104ffffff001c04c6124fff0f"
    "0a6c77746573742e6c616e511605ffff066c77686f7374066c7774657374036c616e00790c100a09c6124ffe"
    "00c6124f011a0205780604c6124f010304c6124f01ff")
DNSMASQ_ACK = _dnsmasq(
    "020106003c6da5d70003800000000000c6124f8ac6124f01000000000200000079020000000000000000"
    "0000",
    "638253633501053604c6124f013304000000783a040000003c3b04000000690104ffffff001c04c6124fff0f"
    "0a6c77746573742e6c616e511605ffff066c77686f7374066c7774657374036c616e00790c100a09c6124ffe"
    "00c6124f011a0205780604c6124f010304c6124f01ff")
# The ACK to the same client's renewal 60 s later (unicast REQUEST with ciaddr): dnsmasq
# echoes ciaddr and counts T1/T2 down by the time its lease has run (54 s, 99 s).
DNSMASQ_RENEW_ACK = _dnsmasq(
    "020106008ca5996600000000c6124f8ac6124f8ac6124f01000000000200000079020000000000000000"
    "0000",
    "638253633501053604c6124f013304000000783a04000000363b04000000630104ffffff001c04c6124fff0f"
    "0a6c77746573742e6c616e511605ffff066c77686f7374066c7774657374036c616e00790c100a09c6124ffe"
    "00c6124f011a0205780604c6124f010304c6124f01ff")
# An INIT-REBOOT REQUEST for 10.99.0.5 from 02:00:00:00:79:03: "wrong network" (option 56).
DNSMASQ_NAK = _dnsmasq(
    "020106009f767c45000080000000000000000000000000000000000002000000790300000000000000000000",
    "638253633501063604c6124f01380d77726f6e67206e6574776f726bff")
SERVER = ip("198.18.79.1")
CLIENT_MAC = bytes.fromhex("020000007902")


# -- the dnsmasq captures -------------------------------------------------------------------

def test_dnsmasq_offer_fields():
    msg = DhcpMessage.parse(DNSMASQ_OFFER)
    assert (msg.op, msg.htype, msg.hops, msg.xid, msg.secs) == (BOOTREPLY, 1, 0, 0x3C6DA5D7, 0)
    assert msg.broadcast and msg.flags == 0x8000
    assert (msg.ciaddr, msg.yiaddr, msg.siaddr, msg.giaddr) == (
        bytes(4), ip("198.18.79.138"), SERVER, bytes(4))
    assert msg.chaddr == CLIENT_MAC and msg.sname == b"" and msg.file == b""
    assert msg.message_type == OFFER
    assert list(msg.options) == [53, 54, 51, 58, 59, 1, 28, 15, 81, 121, 26, 6, 3]


def test_dnsmasq_offer_options_decoded():
    msg = DhcpMessage.parse(DNSMASQ_OFFER)
    assert msg.get(dhcp4.OPT_SERVER_ID) == SERVER
    assert msg.get(dhcp4.OPT_LEASE_TIME) == 120
    assert msg.get(dhcp4.OPT_RENEWAL_TIME) == 60
    assert msg.get(dhcp4.OPT_REBINDING_TIME) == 105
    assert msg.get(dhcp4.OPT_SUBNET_MASK) == ip("255.255.255.0")
    assert msg.get(dhcp4.OPT_BROADCAST_ADDR) == ip("198.18.79.255")
    assert msg.get(dhcp4.OPT_DOMAIN_NAME) == "lwtest.lan"
    assert msg.get(dhcp4.OPT_MTU) == 1400
    assert msg.get(dhcp4.OPT_DNS) == (SERVER,)
    assert msg.get(dhcp4.OPT_ROUTER) == (SERVER,)
    assert msg.get(dhcp4.OPT_CLASSLESS_ROUTES) == (
        (ip("10.9.0.0"), 16, ip("198.18.79.254")), (bytes(4), 0, SERVER))
    # RFC 4702 section 2.2: a server sends both RCODEs as 255; dnsmasq echoes S and E.
    assert msg.get(dhcp4.OPT_CLIENT_FQDN) == ClientFqdn(FQDN_S | FQDN_E, "lwhost.lwtest.lan.",
                                                        255, 255)


def test_dnsmasq_ack_and_nak():
    ack = DhcpMessage.parse(DNSMASQ_ACK)
    assert ack.message_type == ACK and ack.secs == 3 and ack.yiaddr == ip("198.18.79.138")
    renew = DhcpMessage.parse(DNSMASQ_RENEW_ACK)
    assert renew.ciaddr == renew.yiaddr == ip("198.18.79.138") and not renew.broadcast
    assert (renew.get(dhcp4.OPT_RENEWAL_TIME), renew.get(dhcp4.OPT_REBINDING_TIME)) == (54, 99)
    nak = DhcpMessage.parse(DNSMASQ_NAK)
    assert nak.message_type == NAK and nak.yiaddr == bytes(4) and len(DNSMASQ_NAK) == 300
    assert nak.get(dhcp4.OPT_MESSAGE) == "wrong network"
    assert list(nak.options) == [53, 54, 56]


@pytest.mark.parametrize("vector", [DNSMASQ_OFFER, DNSMASQ_ACK, DNSMASQ_RENEW_ACK, DNSMASQ_NAK],
                         ids=["offer", "ack", "renew-ack", "nak"])
def test_dnsmasq_messages_emit_back_to_the_same_bytes(vector):
    # Same option order, same END, the NAK's padding to 300 bytes: byte for byte.
    assert DhcpMessage.parse(vector).emit() == vector


@pytest.mark.parametrize("vector", [DNSMASQ_OFFER, DNSMASQ_NAK], ids=["offer", "nak"])
def test_dpkt_reads_the_captures_like_we_do(vector):
    ours = DhcpMessage.parse(vector)
    theirs = dpkt.dhcp.DHCP(vector)
    assert (theirs.op, theirs.xid, theirs.flags, theirs.chaddr) == (
        ours.op, ours.xid, ours.flags, ours.chaddr)
    assert theirs.yiaddr == int.from_bytes(ours.yiaddr, "big")
    assert dict(theirs.opts) == ours.options


# -- emitting, with dpkt as the independent reader -----------------------------------------

def full_request():
    msg = DhcpMessage(BOOTREQUEST, 0xDEADBEEF, secs=7, flags=dhcp4.FLAG_BROADCAST,
                      ciaddr=ip("10.0.0.9"), chaddr=CLIENT_MAC)
    msg.set(dhcp4.OPT_MESSAGE_TYPE, DISCOVER)
    msg.set(dhcp4.OPT_CLIENT_ID, b"\x01" + CLIENT_MAC)
    msg.set(dhcp4.OPT_REQUESTED_IP, ip("10.0.0.9"))
    msg.set(dhcp4.OPT_PARAM_REQUEST, (1, 121, 3, 6, 15, 26, 51, 58, 59))
    msg.set(dhcp4.OPT_HOST_NAME, "web")
    msg.set(dhcp4.OPT_CLIENT_FQDN, ClientFqdn(FQDN_S | FQDN_E, "web.lan."))
    return msg


def test_emitted_request_read_by_dpkt():
    data = full_request().emit()
    assert len(data) == 300                              # padded to the BOOTP minimum
    parsed = dpkt.dhcp.DHCP(data)
    assert (parsed.op, parsed.xid, parsed.secs, parsed.flags) == (1, 0xDEADBEEF, 7, 0x8000)
    assert parsed.ciaddr == int.from_bytes(ip("10.0.0.9"), "big")
    assert parsed.chaddr == CLIENT_MAC and parsed.hln == 6
    assert parsed.opts == [
        (53, b"\x01"), (61, b"\x01" + CLIENT_MAC), (50, ip("10.0.0.9")),
        (55, bytes((1, 121, 3, 6, 15, 26, 51, 58, 59))), (12, b"web"),
        (81, b"\x05\x00\x00\x03web\x03lan\x00")]


def test_message_type_goes_first_whatever_the_insertion_order():
    msg = DhcpMessage(BOOTREPLY, 1, chaddr=CLIENT_MAC)
    msg.set(dhcp4.OPT_SERVER_ID, SERVER)
    msg.set(dhcp4.OPT_MESSAGE_TYPE, ACK)
    assert [code for code, _ in dpkt.dhcp.DHCP(msg.emit()).opts] == [53, 54]


def test_dpkt_built_message_parses():
    built = dpkt.dhcp.DHCP(op=2, xid=77, yiaddr=int.from_bytes(ip("10.1.2.3"), "big"),
                           chaddr=CLIENT_MAC,
                           opts=[(53, b"\x05"), (1, ip("255.255.0.0")), (3, ip("10.1.0.1")),
                                 (51, (3600).to_bytes(4, "big"))])
    msg = DhcpMessage.parse(bytes(built))
    assert (msg.op, msg.xid, msg.yiaddr, msg.message_type) == (2, 77, ip("10.1.2.3"), ACK)
    assert msg.get(dhcp4.OPT_SUBNET_MASK) == ip("255.255.0.0")
    assert msg.get(dhcp4.OPT_ROUTER) == (ip("10.1.0.1"),)
    assert msg.get(dhcp4.OPT_LEASE_TIME) == 3600


def test_round_trip_keeps_every_field():
    msg = full_request()
    msg.sname, msg.file, msg.hops, msg.giaddr = b"srv", b"boot.img", 2, ip("10.0.0.254")
    back = DhcpMessage.parse(msg.emit())
    for field in DhcpMessage.__slots__:
        assert getattr(back, field) == getattr(msg, field), field


def test_set_none_removes_and_get_default():
    msg = full_request()
    msg.set(dhcp4.OPT_HOST_NAME, None)
    assert msg.get(dhcp4.OPT_HOST_NAME, "none") == "none"
    assert dhcp4.OPT_HOST_NAME not in DhcpMessage.parse(msg.emit()).options


def test_unknown_options_stay_raw():
    msg = DhcpMessage(BOOTREQUEST, 1, chaddr=CLIENT_MAC)
    msg.set(dhcp4.OPT_MESSAGE_TYPE, DISCOVER)
    msg.set(60, b"lwstack")                     # vendor class: not a kind we decode
    assert DhcpMessage.parse(msg.emit()).get(60) == b"lwstack"


# -- RFC 3442 classless routes --------------------------------------------------------------

# RFC 3442 section 3's table of destination descriptors.
RFC3442_DESCRIPTORS = [
    ("0.0.0.0", 0, "00"),
    ("10.0.0.0", 8, "080a"),
    ("10.0.0.0", 24, "180a0000"),
    ("10.17.0.0", 16, "100a11"),
    ("10.27.129.0", 24, "180a1b81"),
    ("10.229.0.128", 25, "190ae50080"),
    ("10.198.122.47", 32, "200ac67a2f"),
]


@pytest.mark.parametrize("dest,width,descriptor", RFC3442_DESCRIPTORS)
def test_rfc3442_destination_descriptors(dest, width, descriptor):
    router = ip("10.0.0.1")
    raw = bytes.fromhex(descriptor) + router
    msg = DhcpMessage()
    msg.set(dhcp4.OPT_CLASSLESS_ROUTES, [(ip(dest), width, router)])
    assert msg.options[dhcp4.OPT_CLASSLESS_ROUTES] == raw
    msg.options[dhcp4.OPT_CLASSLESS_ROUTES] = raw
    assert msg.get(dhcp4.OPT_CLASSLESS_ROUTES) == ((ip(dest), width, router),)


def test_rfc3442_bits_beyond_the_width_are_zeroed():
    msg = DhcpMessage(options={121: bytes.fromhex("0c0a1f") + ip("10.0.0.1")})
    assert msg.get(121) == ((ip("10.16.0.0"), 12, ip("10.0.0.1")),)


@pytest.mark.parametrize("raw,why", [
    ("21" + "0a000000" + "0a000001", "width 33"),
    ("18" + "0a00" + "0a000001", "descriptor cut short"),
    ("08" + "0a" + "0a0000", "router cut short"),
    ("", "empty"),
])
def test_rfc3442_malformed(raw, why):
    with pytest.raises(WireError) as info:
        DhcpMessage(options={121: bytes.fromhex(raw)}).get(121)
    assert info.value.reason == "dhcp4_bad_option", why


# -- RFC 4702 client FQDN --------------------------------------------------------------------

@pytest.mark.parametrize("value,raw", [
    (ClientFqdn(FQDN_S | FQDN_E, "a.example."), "050000" + "0161076578616d706c6500"),
    (ClientFqdn(FQDN_E, "host"), "040000" + "04686f7374"),          # partial: no root label
    (ClientFqdn(FQDN_E, "."), "040000" + "00"),
    (ClientFqdn(0, "old.style", 255, 255), "00ffff" + "6f6c642e7374796c65"),   # ASCII form
])
def test_client_fqdn_encodings(value, raw):
    msg = DhcpMessage()
    msg.set(dhcp4.OPT_CLIENT_FQDN, value)
    assert msg.options[81].hex() == raw
    assert msg.get(dhcp4.OPT_CLIENT_FQDN) == value


@pytest.mark.parametrize("raw", ["0500", "05000004616263", "0500000161000162", "050000c0"])
def test_client_fqdn_malformed(raw):
    # Too short; a label past the end; data after the root label; a compression pointer.
    with pytest.raises(WireError):
        DhcpMessage(options={81: bytes.fromhex(raw)}).get(81)


def test_client_fqdn_label_too_long_to_send():
    with pytest.raises(ValueError):
        DhcpMessage().set(81, ClientFqdn(FQDN_E, "x" * 64 + ".lan"))


# -- RFC 3396 long options and RFC 2131 overload ---------------------------------------------

def test_long_option_split_and_joined():
    names = bytes(range(256)) + bytes(range(100))        # 356 bytes of option 43
    msg = DhcpMessage(BOOTREPLY, 5, chaddr=CLIENT_MAC)
    msg.set(43, names)
    data = msg.emit()
    assert [(code, len(value)) for code, value in dpkt.dhcp.DHCP(data).opts] == [
        (43, 255), (43, 101)]
    assert DhcpMessage.parse(data).get(43) == names


def test_overloaded_file_then_sname_fields():
    # RFC 2131 section 4.1: options, then 'file', then 'sname'; RFC 3396 joins the parts.
    data = bytearray(DhcpMessage(BOOTREPLY, 9, chaddr=CLIENT_MAC).emit())
    options = bytes.fromhex("3501053401") + b"\x03" + b"\x0f\x02ab" + b"\xff"
    data[240:240 + len(options)] = options            # 53=ACK, 52=3 (both), 15="ab"
    data[108:115] = b"\x0f\x02cd\x06\x04\x0a"            # 'file': 15 "cd", 6 (continues)
    data[115:119] = b"\x00\x00\x01\xff"
    data[44:52] = b"\x06\x04\x0a\x00\x00\x02\xff\x00"       # 'sname': 6 10.0.0.2
    msg = DhcpMessage.parse(bytes(data))
    assert msg.get(dhcp4.OPT_DOMAIN_NAME) == "abcd"
    assert msg.get(dhcp4.OPT_DNS) == (ip("10.0.0.1"), ip("10.0.0.2"))
    assert msg.sname == b"" and msg.file == b"" and dhcp4.OPT_OVERLOAD not in msg.options


def test_bad_overload_value():
    data = bytearray(DhcpMessage(BOOTREPLY, 9, chaddr=CLIENT_MAC).emit())
    data[240:244] = bytes.fromhex("340104ff")
    with pytest.raises(WireError) as info:
        DhcpMessage.parse(bytes(data))
    assert info.value.reason == "dhcp4_bad_overload"


# -- lenient and strict parsing --------------------------------------------------------------

def test_pad_options_skipped_and_missing_end_tolerated():
    head = DNSMASQ_NAK[:240]
    msg = DhcpMessage.parse(head + bytes.fromhex("0000350106000f026162"))
    assert msg.message_type == NAK and msg.get(dhcp4.OPT_DOMAIN_NAME) == "ab"


def test_text_with_a_trailing_nul():
    assert DhcpMessage(options={15: b"lan\0"}).get(15) == "lan"


@pytest.mark.parametrize("data,reason", [
    (DNSMASQ_NAK[:239], "dhcp4_truncated"),
    (b"\x03" + DNSMASQ_NAK[1:], "dhcp4_bad_op"),
    (DNSMASQ_NAK[:2] + b"\x11" + DNSMASQ_NAK[3:], "dhcp4_bad_hlen"),
    (DNSMASQ_NAK[:236] + b"\x63\x82\x53\x64" + DNSMASQ_NAK[240:], "dhcp4_bad_cookie"),
    (DNSMASQ_NAK[:240] + b"\x35", "dhcp4_option_truncated"),
    (DNSMASQ_NAK[:240] + b"\x38\x05abc", "dhcp4_option_truncated"),
])
def test_malformed_messages(data, reason):
    with pytest.raises(WireError) as info:
        DhcpMessage.parse(data)
    assert info.value.reason == reason


@pytest.mark.parametrize("code,raw", [
    (dhcp4.OPT_SUBNET_MASK, "ffffff"), (dhcp4.OPT_ROUTER, "0a000001ff"), (dhcp4.OPT_DNS, ""),
    (dhcp4.OPT_LEASE_TIME, "0102"), (dhcp4.OPT_MTU, "05"), (dhcp4.OPT_MESSAGE_TYPE, "0102"),
    (dhcp4.OPT_DOMAIN_NAME, "6cc3a96e"),
])
def test_malformed_options_raise_when_read(code, raw):
    msg = DhcpMessage(options={code: bytes.fromhex(raw)})
    with pytest.raises(WireError) as info:
        msg.get(code)
    assert info.value.reason == "dhcp4_bad_option"


def test_masks():
    assert [mask_to_prefix(prefix_to_mask(n)) for n in range(33)] == list(range(33))
    assert prefix_to_mask(20) == ip("255.255.240.0")
    with pytest.raises(WireError):
        mask_to_prefix(ip("255.0.255.0"))
    with pytest.raises(ValueError):
        prefix_to_mask(33)


# -- garbage in --------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_everything(data):
    """Parse and decode every option; only WireError may come out."""
    try:
        msg = DhcpMessage.parse(data)
    except WireError:
        return
    for code in list(msg.options):
        try:
            msg.get(code)
        except WireError:
            pass
    repr(msg)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data):
    read_everything(data)


@FUZZ
@given(st.sampled_from([DNSMASQ_OFFER, DNSMASQ_NAK, full_request().emit()]),
       st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=8),
       st.integers(0, 400))
def test_mutated_messages(vector, flips, cut):
    data = bytearray(vector)
    for index, value in flips:
        if index < len(data):
            data[index] = value
    read_everything(bytes(data[:max(cut, 236)]))
