"""UDP datagrams (RFC 768) over IPv4 and IPv6 (RFC 8200 section 8.1), with the pseudo-header
checksum."""
import struct

from lwstack.wire import WireError
from lwstack.wire.checksum import (internet_checksum, ones_sum, pseudo_header_sum,
                                   pseudo_header_sum6)

HEADER_LEN = 8
PROTO_UDP = 17
_HEADER = struct.Struct("!HHHH")


def parse_udp(segment, src, dst):
    """Return ``(src_port, dst_port, payload)`` for a UDP datagram from ``src`` to ``dst``.

    The checksum is verified unless the sender left it 0 (allowed for IPv4, RFC 768).
    The UDP length must fit the IP payload; bytes beyond it are ignored.
    """
    if len(segment) < HEADER_LEN:
        raise WireError("udp_truncated", f"{len(segment)} bytes")
    src_port, dst_port, length, checksum = _HEADER.unpack_from(segment)
    if length < HEADER_LEN or length > len(segment):
        raise WireError("udp_bad_length", f"{length} (have {len(segment)})")
    if checksum and internet_checksum(segment[:length],
                                      pseudo_header_sum(src, dst, PROTO_UDP, length)) != 0:
        raise WireError("udp_bad_checksum")
    return src_port, dst_port, segment[HEADER_LEN:length]


def build_udp(src, dst, src_port, dst_port, payload):
    """A UDP datagram with its checksum (a computed 0 is sent as 0xFFFF, RFC 768)."""
    length = HEADER_LEN + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram of {length} bytes exceeds 65535")
    header = _HEADER.pack(src_port, dst_port, length, 0)
    total = ones_sum(payload, ones_sum(header, pseudo_header_sum(src, dst, PROTO_UDP, length)))
    total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF or 0xFFFF
    return _HEADER.pack(src_port, dst_port, length, checksum) + payload


def parse_udp6(segment, src, dst):
    """:func:`parse_udp` for IPv6 (16-byte ``src`` and ``dst``): the checksum is mandatory, so
    a datagram whose checksum field is 0 is dropped (RFC 8200 section 8.1)."""
    if len(segment) < HEADER_LEN:
        raise WireError("udp_truncated", f"{len(segment)} bytes")
    src_port, dst_port, length, checksum = _HEADER.unpack_from(segment)
    if length < HEADER_LEN or length > len(segment):
        raise WireError("udp_bad_length", f"{length} (have {len(segment)})")
    if not checksum:
        raise WireError("udp6_zero_checksum")
    if internet_checksum(segment[:length], pseudo_header_sum6(src, dst, PROTO_UDP, length)):
        raise WireError("udp_bad_checksum")
    return src_port, dst_port, segment[HEADER_LEN:length]


def build_udp6(src, dst, src_port, dst_port, payload):
    """:func:`build_udp` for IPv6: the checksum over the IPv6 pseudo-header (never 0)."""
    length = HEADER_LEN + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram of {length} bytes exceeds 65535")
    header = _HEADER.pack(src_port, dst_port, length, 0)
    total = ones_sum(payload, ones_sum(header, pseudo_header_sum6(src, dst, PROTO_UDP, length)))
    total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF or 0xFFFF
    return _HEADER.pack(src_port, dst_port, length, checksum) + payload
