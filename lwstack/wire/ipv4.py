"""IPv4 headers (RFC 791): validation on the way in, construction on the way out.

Addresses are 4-byte ``bytes`` throughout the stack: they are dictionary keys, they go into
packets as they are, and converting to text happens only at the API edge
(:func:`addr_to_str`, :func:`parse_addr`).
"""
import struct

from lwstack.wire import WireError
from lwstack.wire.checksum import internet_checksum

HEADER_LEN = 20
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF
DEFAULT_TTL = 64
_HEADER = struct.Struct("!BBHHHBBH4s4s")


class Ipv4Header:
    """A validated IPv4 header; the payload is ``packet[header_len:total_len]``."""

    __slots__ = ("tos", "total_len", "ident", "flags_fragment", "ttl", "protocol",
                 "src", "dst", "header_len")

    def __init__(self, tos, total_len, ident, flags_fragment, ttl, protocol, src, dst,
                 header_len=HEADER_LEN):
        self.tos = tos
        self.total_len = total_len
        self.ident = ident
        self.flags_fragment = flags_fragment
        self.ttl = ttl
        self.protocol = protocol
        self.src = src
        self.dst = dst
        self.header_len = header_len

    @property
    def is_fragment(self):
        """True if this is part of a fragmented datagram (MF set or a non-zero offset)."""
        return bool(self.flags_fragment & (FLAG_MF | OFFSET_MASK))

    def __repr__(self):
        return (f"Ipv4Header({addr_to_str(self.src)} -> {addr_to_str(self.dst)}, "
                f"proto={self.protocol}, ttl={self.ttl}, len={self.total_len})")


def parse_ipv4(packet, offset=0):
    """Validate the IPv4 header at ``packet[offset:]`` and return an :class:`Ipv4Header`.

    Checks (RFC 1122 section 3.2.1.1-3.2.1.2): version 4, header length >= 20 and within the
    packet, total length >= header length and not beyond the bytes received (Ethernet padding
    after it is allowed), header checksum.  Raises :class:`WireError` with the reason.
    """
    available = len(packet) - offset
    if available < HEADER_LEN:
        raise WireError("ipv4_truncated", f"{available} bytes")
    vihl, tos, total_len, ident, flags_fragment, ttl, protocol, _csum, src, dst = \
        _HEADER.unpack_from(packet, offset)
    if vihl >> 4 != 4:
        raise WireError("ipv4_bad_version", str(vihl >> 4))
    header_len = (vihl & 0x0F) * 4
    if header_len < HEADER_LEN:
        raise WireError("ipv4_bad_header_len", str(header_len))
    if total_len < header_len or total_len > available:
        raise WireError("ipv4_bad_total_len", f"{total_len} (header {header_len}, have {available})")
    if internet_checksum(packet[offset:offset + header_len]) != 0:
        raise WireError("ipv4_bad_checksum")
    return Ipv4Header(tos, total_len, ident, flags_fragment, ttl, protocol, src, dst, header_len)


def build_ipv4(src, dst, protocol, payload, ttl=DEFAULT_TTL, ident=0, flags_fragment=FLAG_DF,
               tos=0):
    """Return header + payload for a datagram with no options; the checksum is filled in."""
    total_len = HEADER_LEN + len(payload)
    if total_len > 0xFFFF:
        raise ValueError(f"IPv4 datagram of {total_len} bytes exceeds 65535")
    header = bytearray(_HEADER.pack(0x45, tos, total_len, ident, flags_fragment, ttl, protocol,
                                    0, src, dst))
    checksum = internet_checksum(header)
    header[10] = checksum >> 8
    header[11] = checksum & 0xFF
    return bytes(header) + payload


def ipv4_template(src, dst, protocol, ttl=DEFAULT_TTL, flags_fragment=FLAG_DF, tos=0):
    """A 20-byte header with total length, identification and checksum left zero, for
    builders that fill them per packet (:func:`lwstack.wire.tcp.build_tcp_frame`)."""
    return _HEADER.pack(0x45, tos, 0, 0, flags_fragment, ttl, protocol, 0, src, dst)


def addr_to_str(addr):
    """4 bytes -> dotted quad."""
    return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"


def parse_addr(text):
    """Dotted quad -> 4 bytes; ``ValueError`` naming the text if it is not one."""
    # ASCII digits only: str.isdigit() and int() also take other scripts' digits ("\u0661").
    parts = text.split(".") if isinstance(text, str) else ()
    try:
        if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3
                                      for p in parts):
            raise ValueError
        value = bytes(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"invalid IPv4 address {text!r}") from None
    return value


def prefix_mask(prefix_len):
    """Netmask as a 32-bit int for a prefix length 0..32."""
    if not 0 <= prefix_len <= 32:
        raise ValueError(f"invalid IPv4 prefix length {prefix_len}")
    return (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF


def addr_to_int(addr):
    """4 bytes -> int, for prefix arithmetic."""
    return int.from_bytes(addr, "big")
