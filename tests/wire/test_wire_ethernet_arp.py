"""Ethernet II framing and ARP packets (RFC 826), against kernel captures and dpkt."""
import dpkt
import pytest

from lwstack.wire import WireError
from lwstack.wire import arp
from lwstack.wire.arp import ArpPacket
from lwstack.wire.ethernet import (BROADCAST, ETHERTYPE_ARP, HEADER_LEN, MIN_FRAME_LEN,
                                   build_ethernet, is_multicast, mac_to_str, parse_ethernet,
                                   parse_mac)

# Provenance: captured with tshark on a veth pair between two Linux 6.18 network namespaces
# (198.18.77.1 at 02:00:00:00:00:01, 198.18.77.2 at 02:00:00:00:00:02), triggered by
# `ping -c 1 198.18.77.2`.  Captured on the sender side, so the frames are unpadded (42 bytes).
KERNEL_ARP_REQUEST = bytes.fromhex(
    "ffffffffffff020000000001080600010800060400010200000000"
    "01c6124d01000000000000c6124d02")
KERNEL_ARP_REPLY = bytes.fromhex(
    "020000000001020000000002080600010800060400020200000000"
    "02c6124d02020000000001c6124d01")
MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
IP1 = bytes([198, 18, 77, 1])
IP2 = bytes([198, 18, 77, 2])


# -- Ethernet -------------------------------------------------------------------------------

def test_parse_kernel_frame_header():
    dst, src, ethertype = parse_ethernet(KERNEL_ARP_REQUEST)
    assert (dst, src, ethertype) == (BROADCAST, MAC1, ETHERTYPE_ARP)


def test_build_pads_to_60_bytes_like_linux():
    frame = build_ethernet(BROADCAST, MAC1, ETHERTYPE_ARP, KERNEL_ARP_REQUEST[HEADER_LEN:])
    assert len(frame) == MIN_FRAME_LEN
    assert frame[:42] == KERNEL_ARP_REQUEST
    assert frame[42:] == bytes(18)


def test_build_does_not_pad_long_frames():
    payload = bytes(range(100))
    frame = build_ethernet(MAC2, MAC1, 0x88B5, payload)
    assert len(frame) == HEADER_LEN + 100
    eth = dpkt.ethernet.Ethernet(frame)
    assert (eth.dst, eth.src, eth.type) == (MAC2, MAC1, 0x88B5)


@pytest.mark.parametrize("length", range(HEADER_LEN))
def test_runt_frames_are_refused(length):
    with pytest.raises(WireError) as info:
        parse_ethernet(KERNEL_ARP_REQUEST[:length])
    assert info.value.reason == "runt"


def test_header_only_frame_parses():
    assert parse_ethernet(KERNEL_ARP_REQUEST[:HEADER_LEN])[2] == ETHERTYPE_ARP


def test_mac_text_round_trip_and_multicast_bit():
    assert mac_to_str(MAC1) == "02:00:00:00:00:01"
    assert parse_mac("02:00:00:00:00:01") == MAC1
    assert parse_mac("02-00-00-00-00-01") == MAC1
    assert parse_mac("2:0:0:0:0:1") == MAC1
    assert is_multicast(BROADCAST) and is_multicast(bytes.fromhex("01005e000001"))
    assert not is_multicast(MAC1)


@pytest.mark.parametrize("text", ["", "02:00:00:00:00", "02:00:00:00:00:01:02", "02:00:00:00:00:zz",
                                  "020:00:00:00:00:01", "02::00:00:00:01", "0x:00:00:00:00:01",
                                  " 2:00:00:00:00:01", "+2:00:00:00:00:01"])
def test_bad_mac_text(text):
    with pytest.raises(ValueError, match="invalid MAC address"):
        parse_mac(text)


# -- ARP ------------------------------------------------------------------------------------

def test_parse_kernel_request():
    packet = ArpPacket.parse(KERNEL_ARP_REQUEST, HEADER_LEN)
    assert packet.operation == arp.OP_REQUEST
    assert (packet.sender_mac, packet.sender_ip) == (MAC1, IP1)
    assert (packet.target_mac, packet.target_ip) == (bytes(6), IP2)


def test_parse_kernel_reply():
    packet = ArpPacket.parse(KERNEL_ARP_REPLY, HEADER_LEN)
    assert packet.operation == arp.OP_REPLY
    assert (packet.sender_mac, packet.sender_ip) == (MAC2, IP2)
    assert (packet.target_mac, packet.target_ip) == (MAC1, IP1)


@pytest.mark.parametrize("vector", [KERNEL_ARP_REQUEST, KERNEL_ARP_REPLY], ids=["request", "reply"])
def test_emit_reproduces_the_kernel_bytes(vector):
    packet = ArpPacket.parse(vector, HEADER_LEN)
    assert packet.emit() == vector[HEADER_LEN:]
    assert len(packet.emit()) == arp.PACKET_LEN


def test_parse_accepts_ethernet_padding_after_the_packet():
    padded = KERNEL_ARP_REQUEST + bytes(18)
    assert ArpPacket.parse(padded, HEADER_LEN).emit() == KERNEL_ARP_REQUEST[HEADER_LEN:]


def test_dpkt_reads_what_we_emit():
    packet = ArpPacket(arp.OP_REPLY, MAC2, IP2, MAC1, IP1)
    frame = build_ethernet(MAC1, MAC2, ETHERTYPE_ARP, packet.emit())
    eth = dpkt.ethernet.Ethernet(frame)
    assert eth.type == dpkt.ethernet.ETH_TYPE_ARP
    a = eth.data
    assert (a.hrd, a.pro, a.hln, a.pln, a.op) == (1, 0x0800, 6, 4, dpkt.arp.ARP_OP_REPLY)
    assert (a.sha, a.spa, a.tha, a.tpa) == (MAC2, IP2, MAC1, IP1)


def test_we_read_what_dpkt_emits():
    a = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=MAC1, spa=IP1, tha=bytes(6), tpa=IP2)
    packet = ArpPacket.parse(bytes(a))
    assert (packet.operation, packet.sender_ip, packet.target_ip) == (arp.OP_REQUEST, IP1, IP2)


@pytest.mark.parametrize("length", range(0, arp.PACKET_LEN))
def test_truncated(length):
    with pytest.raises(WireError) as info:
        ArpPacket.parse(KERNEL_ARP_REQUEST[:HEADER_LEN + length], HEADER_LEN)
    assert info.value.reason == "arp_truncated"


@pytest.mark.parametrize("offset,value,reason", [
    (0, b"\x00\x06", "arp_unsupported"),      # htype IEEE 802 instead of Ethernet
    (2, b"\x86\xdd", "arp_unsupported"),      # ptype IPv6
    (4, b"\x08", "arp_unsupported"),          # hlen 8
    (5, b"\x10", "arp_unsupported"),          # plen 16
    (6, b"\x00\x03", "arp_bad_operation"),    # RARP request
    (6, b"\x00\x00", "arp_bad_operation"),
])
def test_unsupported_fields(offset, value, reason):
    body = bytearray(KERNEL_ARP_REQUEST[HEADER_LEN:])
    body[offset:offset + len(value)] = value
    with pytest.raises(WireError) as info:
        ArpPacket.parse(bytes(body))
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_repr_names_the_addresses():
    text = repr(ArpPacket.parse(KERNEL_ARP_REPLY, HEADER_LEN))
    assert "198.18.77.2" in text and "02:00:00:00:00:02" in text
