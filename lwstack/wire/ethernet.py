"""Ethernet II frames (IEEE 802.3 with EtherType) and MAC addresses.

Frames on a VDE switch carry no preamble, no FCS and no padding requirement (see
shared/reference/vde-protocol.md), so a frame is just ``dst | src | ethertype | payload``.
"""
from lwstack.wire import WireError

HEADER_LEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV6 = 0x86DD
BROADCAST = b"\xff\xff\xff\xff\xff\xff"
#: Frames shorter than this are padded when sent towards real Ethernet; VDE does not need it,
#: but the kernel's tap driver and some peers expect the 802.3 minimum, so we pad like Linux.
MIN_FRAME_LEN = 60
_HEX = frozenset("0123456789abcdefABCDEF")


def parse_ethernet(frame):
    """Return ``(dst, src, ethertype)`` of a frame; the payload starts at :data:`HEADER_LEN`.

    Raises :class:`WireError` ('runt') for a frame shorter than the header.
    """
    if len(frame) < HEADER_LEN:
        raise WireError("runt", f"{len(frame)} bytes")
    return bytes(frame[0:6]), bytes(frame[6:12]), (frame[12] << 8) | frame[13]


def build_ethernet(dst, src, ethertype, payload):
    """Return a frame: 14-byte header then ``payload``, padded to 60 bytes like Linux."""
    frame = dst + src + bytes(((ethertype >> 8) & 0xFF, ethertype & 0xFF)) + payload
    if len(frame) < MIN_FRAME_LEN:
        frame += bytes(MIN_FRAME_LEN - len(frame))
    return frame


def is_multicast(mac):
    """True for group addresses (the I/G bit), which includes broadcast."""
    return bool(mac[0] & 1)


def mac_to_str(mac):
    """``b'\\x02\\x00...'`` -> ``'02:00:...'``."""
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text):
    """``'02:00:00:00:00:01'`` (or with ``-``) -> 6 bytes; ``ValueError`` if malformed."""
    parts = text.replace("-", ":").split(":")
    try:
        # Hex digits only: int(p, 16) alone would also take " 2", "+2" or "0_".
        if len(parts) != 6 or not all(1 <= len(p) <= 2 and all(c in _HEX for c in p)
                                      for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"invalid MAC address {text!r}") from None
