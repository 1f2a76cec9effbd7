"""ARP for IPv4 over Ethernet (RFC 826): the only hardware/protocol pair we speak."""
import struct

from lwstack.wire import WireError

OP_REQUEST = 1
OP_REPLY = 2
PACKET_LEN = 28
_ARP = struct.Struct("!HHBBH6s4s6s4s")


class ArpPacket:
    """An Ethernet/IPv4 ARP packet: operation, sender and target hardware/protocol addresses."""

    __slots__ = ("operation", "sender_mac", "sender_ip", "target_mac", "target_ip")

    def __init__(self, operation, sender_mac, sender_ip, target_mac, target_ip):
        self.operation = operation
        self.sender_mac = sender_mac
        self.sender_ip = sender_ip
        self.target_mac = target_mac
        self.target_ip = target_ip

    @classmethod
    def parse(cls, data, offset=0):
        """Parse ``data[offset:]``; :class:`WireError` for truncated or non-Ethernet/IPv4 ARP."""
        if len(data) - offset < PACKET_LEN:
            raise WireError("arp_truncated", f"{len(data) - offset} bytes")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(data, offset)
        if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
            raise WireError("arp_unsupported", f"htype={htype} ptype={ptype:#x}")
        if op not in (OP_REQUEST, OP_REPLY):
            raise WireError("arp_bad_operation", str(op))
        return cls(op, sha, spa, tha, tpa)

    def emit(self):
        """The 28 packet bytes."""
        return _ARP.pack(1, 0x0800, 6, 4, self.operation, self.sender_mac, self.sender_ip,
                         self.target_mac, self.target_ip)

    def __repr__(self):
        return (f"ArpPacket(op={self.operation}, sha={self.sender_mac.hex(':')}, "
                f"spa={'.'.join(map(str, self.sender_ip))}, tha={self.target_mac.hex(':')}, "
                f"tpa={'.'.join(map(str, self.target_ip))})")
