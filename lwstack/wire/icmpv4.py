"""ICMPv4 messages (RFC 792): echo, destination unreachable, time exceeded.

Compiled by Cython in the accelerated build (``icmpv4.pxd``): answering a ping is the one
ICMP path whose speed users see, so :func:`build_echo_reply_frame` builds the whole answer in
one buffer, as :func:`lwstack.wire.tcp.build_tcp_frame` does for segments.
"""
import struct

from lwstack.wire import WireError
from lwstack.wire.checksum import internet_checksum, ones_sum

TYPE_ECHO_REPLY = 0
TYPE_DEST_UNREACHABLE = 3
TYPE_ECHO_REQUEST = 8
TYPE_TIME_EXCEEDED = 11
CODE_NET_UNREACHABLE = 0
CODE_HOST_UNREACHABLE = 1
CODE_PROTOCOL_UNREACHABLE = 2
CODE_PORT_UNREACHABLE = 3
CODE_FRAGMENTATION_NEEDED = 4
HEADER_LEN = 8
#: Ethernet (14) + IPv4 without options (20): the prefix :func:`build_echo_reply_frame` takes.
LINK_HEADER_LEN = 34
_MIN_FRAME = 60
_HEADER = struct.Struct("!BBHHH")
_ERROR_HEADER = struct.Struct("!BBHI")


def parse_icmpv4(message):
    """Return ``(type, code, rest_of_header: int, body)`` after checking length and checksum.

    ``rest_of_header`` is the 32-bit word after the checksum (identifier and sequence for
    echo, unused or next-hop MTU for errors); ``body`` is everything after the 8-byte header.
    """
    if len(message) < HEADER_LEN:
        raise WireError("icmp_truncated", f"{len(message)} bytes")
    if internet_checksum(message) != 0:
        raise WireError("icmp_bad_checksum")
    icmp_type, code, _csum, rest = _ERROR_HEADER.unpack_from(message)
    return icmp_type, code, rest, message[HEADER_LEN:]


def build_echo(icmp_type, ident, sequence, payload):
    """An echo request (type 8) or reply (type 0) with its checksum."""
    message = bytearray(_HEADER.pack(icmp_type, 0, 0, ident, sequence))
    message += payload
    checksum = internet_checksum(message)
    message[2] = checksum >> 8
    message[3] = checksum & 0xFF
    return bytes(message)


def build_error(icmp_type, code, offending_datagram, rest=0):
    """An ICMP error quoting the offending IP header and the first 8 bytes after it.

    RFC 792 asks for the IP header plus 64 bits; RFC 1812 section 4.3.2.3 allows more, but
    the classic quote is what every receiver understands.
    """
    header_len = (offending_datagram[0] & 0x0F) * 4
    quote = bytes(offending_datagram[:header_len + 8])
    message = bytearray(_ERROR_HEADER.pack(icmp_type, code, 0, rest))
    message += quote
    checksum = internet_checksum(message)
    message[2] = checksum >> 8
    message[3] = checksum & 0xFF
    return bytes(message)


def build_echo_reply_frame(link_header, ident, request):
    """The Ethernet frame answering the echo request ``request`` (the ICMP message).

    ``link_header`` is 34 bytes, an Ethernet header then an IPv4 header with no options whose
    total length, identification and checksum are left zero (the host's
    :meth:`~lwstack.iface.host.Host.link_header`).  The request is validated as
    :func:`parse_icmpv4` would (length, checksum: ``WireError`` otherwise) and echoed with
    type 0 (RFC 792: identifier, sequence number and data returned unchanged).  Returns a
    ``bytearray`` padded to the 60-byte Ethernet minimum.
    """
    length = len(request)
    if length < HEADER_LEN:
        raise WireError("icmp_truncated", f"{length} bytes")
    if ones_sum(request) != 0xFFFF:
        raise WireError("icmp_bad_checksum")
    total_len = 20 + length
    # Zero padding to the Ethernet minimum from the start: the frame is never resized once
    # the typed view below holds its buffer.
    frame = bytearray(max(_MIN_FRAME, LINK_HEADER_LEN + length))
    frame[0:LINK_HEADER_LEN] = link_header
    frame[LINK_HEADER_LEN:LINK_HEADER_LEN + length] = request
    buf = frame                       # a typed memoryview when compiled (icmpv4.pxd)
    buf[16] = total_len >> 8
    buf[17] = total_len & 0xFF
    buf[18] = (ident >> 8) & 0xFF
    buf[19] = ident & 0xFF
    total = 0
    for i in range(14, LINK_HEADER_LEN, 2):
        total += (buf[i] << 8) | buf[i + 1]
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    buf[24] = checksum >> 8
    buf[25] = checksum & 0xFF
    # Only the type changes (8 -> 0): update the checksum incrementally, RFC 1624 eqn. 3:
    # HC' = ~(~HC + ~m + m') with m = 0x0800 (type, code) and m' = 0x0000.
    at = LINK_HEADER_LEN
    buf[at] = TYPE_ECHO_REPLY
    total = (~((buf[at + 2] << 8) | buf[at + 3]) & 0xFFFF) + (~(TYPE_ECHO_REQUEST << 8) & 0xFFFF)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    buf[at + 2] = checksum >> 8
    buf[at + 3] = checksum & 0xFF
    return frame
