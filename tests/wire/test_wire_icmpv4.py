"""ICMPv4 (RFC 792): echo and errors against kernel captures and dpkt."""
import dpkt
import pytest

from lwstack.wire import WireError
from lwstack.wire import icmpv4
from lwstack.wire.ipv4 import build_ipv4, parse_ipv4

# Provenance: frames captured with tshark on a veth pair between two Linux 6.18 network
# namespaces (198.18.77.1 at 02:00:00:00:00:01, 198.18.77.2 at 02:00:00:00:00:02):
#   `ping -c 1 198.18.77.2`: the echo request and the kernel's echo reply (ident 0x2546, seq 1,
#   56 bytes of data: a struct timeval then 0x10..0x37);
#   a UDP datagram to port 9 (nobody listening) and the kernel's port unreachable, which
#   quotes the whole offending datagram (RFC 1812 allows more than 8 bytes) with TOS 0xc0.
#   (TX checksum offload was on for this one: the UDP checksum field 0x2654 holds only the
#   pseudo-header sum; see test_wire_udp.py.  It is quoted as it was received.)
KERNEL_ECHO_REQUEST = bytes.fromhex(
    "0200000000020200000000010800450000540755400040010d2cc6124d01c612"
    "4d020800f0a3254600010739016b00000000129e080000000000101112131415"
    "161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435"
    "3637")
KERNEL_ECHO_REPLY = bytes.fromhex(
    "0200000000010200000000020800450000544f4c000040010535c6124d02c612"
    "4d010000f8a3254600010739016b00000000129e080000000000101112131415"
    "161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435"
    "3637")
KERNEL_UDP = bytes.fromhex(
    "02000000000202000000000108004500002ecc42400040114854c6124d01c612"
    "4d02b3bd0009001a26546c77737461636b2075647020766563746f72")
KERNEL_PORT_UNREACHABLE = bytes.fromhex(
    "020000000001020000000002080045c0004a4f4f00004001047cc6124d02c612"
    "4d0103034787000000004500002ecc42400040114854c6124d01c6124d02b3bd"
    "0009001a26546c77737461636b2075647020766563746f72")
IP1 = bytes([198, 18, 77, 1])
IP2 = bytes([198, 18, 77, 2])


def icmp_of(frame):
    header = parse_ipv4(frame, 14)
    return frame[14 + header.header_len:14 + header.total_len]


def test_parse_kernel_echo_request_and_reply():
    request = icmp_of(KERNEL_ECHO_REQUEST)
    reply = icmp_of(KERNEL_ECHO_REPLY)
    t, code, rest, body = icmpv4.parse_icmpv4(request)
    assert (t, code, rest >> 16, rest & 0xFFFF) == (icmpv4.TYPE_ECHO_REQUEST, 0, 0x2546, 1)
    assert body[16:] == bytes(range(0x10, 0x38))   # after the 16-byte struct timeval
    t2, code2, rest2, body2 = icmpv4.parse_icmpv4(reply)
    assert (t2, code2, rest2, body2) == (icmpv4.TYPE_ECHO_REPLY, 0, rest, body)


def test_build_echo_reproduces_the_kernel_reply():
    _, _, rest, body = icmpv4.parse_icmpv4(icmp_of(KERNEL_ECHO_REQUEST))
    reply = icmpv4.build_echo(icmpv4.TYPE_ECHO_REPLY, rest >> 16, rest & 0xFFFF, body)
    assert reply == icmp_of(KERNEL_ECHO_REPLY)
    request = icmpv4.build_echo(icmpv4.TYPE_ECHO_REQUEST, rest >> 16, rest & 0xFFFF, body)
    assert request == icmp_of(KERNEL_ECHO_REQUEST)


def test_parse_kernel_port_unreachable():
    t, code, rest, body = icmpv4.parse_icmpv4(icmp_of(KERNEL_PORT_UNREACHABLE))
    assert (t, code, rest) == (icmpv4.TYPE_DEST_UNREACHABLE, icmpv4.CODE_PORT_UNREACHABLE, 0)
    assert body == KERNEL_UDP[14:]


def test_build_error_quotes_header_and_8_bytes():
    offending = KERNEL_UDP[14:]
    message = icmpv4.build_error(icmpv4.TYPE_DEST_UNREACHABLE, icmpv4.CODE_PORT_UNREACHABLE,
                                 offending)
    # Same type/code/body as the kernel's, but the classic RFC 792 quote: 20 + 8 bytes.
    assert message[:2] == b"\x03\x03" and message[4:8] == bytes(4)
    assert message[8:] == offending[:28]
    t, code, _, body = icmpv4.parse_icmpv4(message)
    assert (t, code, body) == (3, 3, offending[:28])


def test_build_error_carries_the_next_hop_mtu():
    message = icmpv4.build_error(icmpv4.TYPE_DEST_UNREACHABLE, icmpv4.CODE_FRAGMENTATION_NEEDED,
                                 KERNEL_UDP[14:], rest=1400)
    assert icmpv4.parse_icmpv4(message)[2] == 1400
    icmp = dpkt.icmp.ICMP(message)
    assert (icmp.type, icmp.code) == (3, 4)


def test_build_error_with_ip_options_quotes_the_whole_header():
    ip = dpkt.ip.IP(src=IP1, dst=IP2, p=17, data=bytes(range(12)))
    ip.opts = b"\x01\x01\x01\x00"
    ip.hl = 6
    ip.len = 24 + 12
    offending = bytes(ip)
    message = icmpv4.build_error(icmpv4.TYPE_DEST_UNREACHABLE, 3, offending)
    assert message[8:] == offending[:24 + 8]


@pytest.mark.parametrize("payload", [b"", b"x", b"odd length!", bytes(range(256)) * 5])
def test_dpkt_verifies_our_echo_checksum(payload):
    message = icmpv4.build_echo(icmpv4.TYPE_ECHO_REQUEST, 0xBEEF, 0x0102, payload)
    icmp = dpkt.icmp.ICMP(message)
    assert (icmp.type, icmp.code, icmp.data.id, icmp.data.seq) == (8, 0, 0xBEEF, 0x0102)
    assert icmp.data.data == payload
    sent = icmp.sum
    icmp.sum = 0
    assert dpkt.icmp.ICMP(bytes(icmp)).sum == sent   # dpkt recomputes a zero checksum


def test_we_read_what_dpkt_builds():
    icmp = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=7, seq=9, data=b"abc"))
    t, code, rest, body = icmpv4.parse_icmpv4(bytes(icmp))
    assert (t, code, rest, body) == (8, 0, (7 << 16) | 9, b"abc")


@pytest.mark.parametrize("length", range(icmpv4.HEADER_LEN))
def test_truncated(length):
    with pytest.raises(WireError) as info:
        icmpv4.parse_icmpv4(icmp_of(KERNEL_ECHO_REQUEST)[:length])
    assert info.value.reason == "icmp_truncated"


@pytest.mark.parametrize("index", [0, 2, 7, 40, 63])
def test_bad_checksum(index):
    message = bytearray(icmp_of(KERNEL_ECHO_REQUEST))
    message[index] ^= 0x01
    with pytest.raises(WireError) as info:
        icmpv4.parse_icmpv4(bytes(message))
    assert info.value.reason == "icmp_bad_checksum"


def test_a_truncated_echo_fails_the_checksum():
    with pytest.raises(WireError) as info:
        icmpv4.parse_icmpv4(icmp_of(KERNEL_ECHO_REQUEST)[:-1])
    assert info.value.reason == "icmp_bad_checksum"


def test_whole_echo_packet_round_trips_through_ipv4():
    message = icmpv4.build_echo(icmpv4.TYPE_ECHO_REQUEST, 1, 2, b"ping")
    packet = build_ipv4(IP1, IP2, 1, message)
    ip = dpkt.ip.IP(packet)
    assert isinstance(ip.data, dpkt.icmp.ICMP) and ip.data.data.data == b"ping"


# -- build_echo_reply_frame: the compiled ping-answering path ------------------------------------

def _kernel_reply_link_header():
    """The kernel reply's Ethernet and IPv4 headers with length, ident and checksum zeroed."""
    header = bytearray(KERNEL_ECHO_REPLY[:icmpv4.LINK_HEADER_LEN])
    header[16:20] = bytes(4)
    header[24:26] = bytes(2)
    return bytes(header)


def test_echo_reply_frame_reproduces_the_kernel_reply():
    ident = int.from_bytes(KERNEL_ECHO_REPLY[18:20], "big")
    frame = icmpv4.build_echo_reply_frame(_kernel_reply_link_header(), ident,
                                          KERNEL_ECHO_REQUEST[34:])
    assert bytes(frame) == KERNEL_ECHO_REPLY


@pytest.mark.parametrize("payload", [b"", b"x", b"ab" * 700, bytes(range(256)) * 5,
                                     b"\xff" * 64, b"\x00" * 64, b"\xf7\xff" * 3])
@pytest.mark.parametrize("sequence", [0, 1, 0x07FF, 0x0800, 0xF7FF, 0xFFFF])
def test_echo_reply_frame_checksums_hold_for_any_content(payload, sequence):
    # The ICMP checksum is updated incrementally (RFC 1624); dpkt recomputes both checksums
    # from scratch, and so does the general path (build_echo).
    request = icmpv4.build_echo(icmpv4.TYPE_ECHO_REQUEST, 0x1234, sequence, payload)
    frame = icmpv4.build_echo_reply_frame(_kernel_reply_link_header(), 77, request)
    eth = dpkt.ethernet.Ethernet(bytes(frame))
    ip = eth.data
    assert ip.len == 20 + len(request) and ip.id == 77 and ip.p == 1
    assert bytes(ip)[:20] == bytes(dpkt.ip.IP(bytes(ip)))[:20]   # header checksum as dpkt's
    assert bytes(ip.data) == icmpv4.build_echo(icmpv4.TYPE_ECHO_REPLY, 0x1234, sequence,
                                               payload)
    assert len(frame) == max(60, 34 + len(request))


def test_echo_reply_frame_refuses_what_parse_refuses():
    request = bytearray(KERNEL_ECHO_REQUEST[34:])
    request[20] ^= 1
    with pytest.raises(WireError) as info:
        icmpv4.build_echo_reply_frame(_kernel_reply_link_header(), 1, bytes(request))
    assert info.value.reason == "icmp_bad_checksum"
    with pytest.raises(WireError) as info:
        icmpv4.build_echo_reply_frame(_kernel_reply_link_header(), 1, b"\x08\x00\xf7\xff")
    assert info.value.reason == "icmp_truncated"
