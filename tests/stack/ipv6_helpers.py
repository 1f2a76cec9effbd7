"""Helpers for IPv6 whole-stack tests (``from ipv6_helpers import ...``).

:class:`Peer6` is a scripted IPv6 node on the virtual switch: it sends hand-built frames,
collects what arrives, and can answer neighbour solicitations for its own address so a test
speaks raw IPv6 to a stack and checks every byte of the answers.
"""
from lwstack.iface.addrgen import eui64_address
from lwstack.wire import icmpv6
from lwstack.wire.ethernet import build_ethernet, parse_ethernet
from lwstack.wire.ipv6 import (ALL_NODES, ETHERTYPE_IPV6, LINK_LOCAL_PREFIX, build_ipv6,
                               multicast_mac, parse_addr6, parse_ipv6, solicited_node,
                               walk_extension_headers)
from lwstack.wire.udp import build_udp6, parse_udp6

PEER6_MAC = bytes.fromhex("0200000000ee")
A6_MAC = "02:00:00:00:00:0a"
B6_MAC = "02:00:00:00:00:0b"


def A(text):
    """IPv6 text -> 16 bytes."""
    return parse_addr6(text)


def link_local_of(mac_text):
    """The EUI-64 link-local address of a MAC given as text."""
    return eui64_address(LINK_LOCAL_PREFIX + bytes(8), bytes.fromhex(mac_text.replace(":", "")))


def settled_pair(net, config_a="", config_b="", seconds=3.0):
    """Two stacks with known MACs whose link-local (and ``ip=``) addresses passed DAD."""
    a = net.stack(",".join(filter(None, [f"mac={A6_MAC}", config_a])))
    b = net.stack(",".join(filter(None, [f"mac={B6_MAC}", config_b])))
    net.run(seconds)
    return a, b


class Packet6:
    """One received IPv6 packet: Ethernet destination, header, upper protocol and payload."""

    def __init__(self, eth_dst, header, protocol, payload, chain):
        self.eth_dst = eth_dst
        self.header = header
        self.protocol = protocol
        self.payload = payload
        self.chain = chain

    @property
    def icmp(self):
        """``(type, code, rest, body)`` of an ICMPv6 packet (checksum verified)."""
        return icmpv6.parse_icmpv6(self.payload, self.header.src, self.header.dst)

    @property
    def nd(self):
        """The ND record of an ND packet."""
        icmp_type, code, rest, body = self.icmp
        return icmpv6.parse_nd_message(icmp_type, rest, body)

    @property
    def udp(self):
        """``(src_port, dst_port, payload)`` of a UDP packet (checksum verified)."""
        return parse_udp6(self.payload, self.header.src, self.header.dst)


def ipv6_packets(frames):
    """Every IPv6 packet in ``frames`` as a :class:`Packet6` (extension headers walked)."""
    out = []
    for frame in frames:
        dst, _src, ethertype = parse_ethernet(frame)
        if ethertype != ETHERTYPE_IPV6:
            continue
        header = parse_ipv6(frame, 14)
        end = 14 + header.total_len
        chain = walk_extension_headers(frame, 54, header.next_header, end, 14)
        out.append(Packet6(dst, header, chain.protocol, bytes(frame[chain.offset:end]), chain))
    return out


def icmp6_of_type(frames, icmp_type):
    """The ICMPv6 packets of one type among ``frames``."""
    return [p for p in ipv6_packets(frames) if p.protocol == 58 and p.payload[0] == icmp_type]


class Peer6:
    """A scripted IPv6 host on the switch (raw frames in and out, on the network's clock)."""

    def __init__(self, net, address="fd00::99", mac=PEER6_MAC):
        self.net = net
        self.port = net.switch.plug(description="scripted IPv6 peer")
        self.mac = mac
        self.addr = A(address)
        self.link_local = eui64_address(LINK_LOCAL_PREFIX + bytes(8), mac)
        self.received = []

    def send(self, frame):
        self.port.send(frame, self.net.now)

    def send_ipv6(self, dst_mac, packet):
        self.send(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV6, packet))

    def send_packet(self, dst_mac, dst, next_header, payload, src=None, hop_limit=64):
        src = src or self.addr
        self.send_ipv6(dst_mac, build_ipv6(src, dst, next_header, payload, hop_limit))

    def send_udp(self, dst_mac, dst, sport, dport, payload, src=None):
        src = src or self.addr
        self.send_packet(dst_mac, dst, 17, build_udp6(src, dst, sport, dport, payload), src)

    def send_icmp(self, dst_mac, dst, message, src=None, hop_limit=64):
        self.send_packet(dst_mac, dst, 58, message, src, hop_limit)

    def send_ns(self, target, src=None, dst=None, dst_mac=None, lladdr=True, nonce=None):
        """A Neighbour Solicitation (multicast to the target's solicited-node group unless
        ``dst`` is given; ``src`` :: makes it a DAD probe)."""
        src = self.addr if src is None else src
        dst = dst or solicited_node(target)
        dst_mac = dst_mac or multicast_mac(dst)
        ns = icmpv6.NeighborSolicitation(target, self.mac if lladdr and any(src) else None,
                                         nonce)
        self.send_icmp(dst_mac, dst, ns.emit(src, dst), src, 255)

    def send_na(self, target, dst=ALL_NODES, dst_mac=None, solicited=False, override=True,
                router=False, src=None):
        src = src or target
        na = icmpv6.NeighborAdvertisement(target, router, solicited, override, self.mac)
        self.send_icmp(dst_mac or multicast_mac(dst), dst, na.emit(src, dst), src, 255)

    def collect(self):
        """Frames delivered since the last call (also kept in :attr:`received`)."""
        new = self.port.receive(self.net.now)
        self.received.extend(new)
        return new

    def run(self, seconds=0.0):
        self.net.run(seconds)
        return self.collect()

    def answer_ns(self, frames, for_addresses=None):
        """Answer every NS in ``frames`` for one of our addresses with a solicited NA."""
        mine = for_addresses or (self.addr, self.link_local)
        for packet in icmp6_of_type(frames, icmpv6.TYPE_NEIGHBOR_SOLICITATION):
            ns = packet.nd
            if ns.target in mine and any(packet.header.src):
                na = icmpv6.NeighborAdvertisement(ns.target, False, True, True, self.mac)
                src, dst = ns.target, packet.header.src
                self.send_icmp(ns.source_lladdr, dst, na.emit(src, dst), src, 255)
