"""ICMPv4 messages (RFC 792): echo, destination unreachable, time exceeded."""
import struct

from lwstack.wire import WireError
from lwstack.wire.checksum import internet_checksum

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
