"""Helpers for whole-stack tests (imported by name: ``from stack_helpers import ...``).

:class:`Peer` is a *scripted peer*: a bare switch port that sends hand-built frames and
collects what arrives, so a test can speak raw Ethernet/ARP/IPv4 to a stack and check every
byte it answers with.
"""
from lwstack.wire import icmpv4
from lwstack.wire.arp import OP_REPLY, OP_REQUEST, ArpPacket
from lwstack.wire.ethernet import (BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, build_ethernet,
                                   parse_ethernet)
from lwstack.wire.ipv4 import build_ipv4, parse_addr, parse_ipv4
from lwstack.wire.udp import build_udp, parse_udp

A_MAC = "02:00:00:00:00:0a"
B_MAC = "02:00:00:00:00:0b"
PEER_MAC = bytes.fromhex("0200000000ee")


def ip(text):
    return parse_addr(text)


def mac_bytes(text):
    return bytes.fromhex(text.replace(":", ""))


class Peer:
    """A scripted host on the switch: raw frames in, raw frames out, on the network's clock."""

    def __init__(self, net, address="10.0.0.99", mac=PEER_MAC):
        self.net = net
        self.port = net.switch.plug(description="scripted peer")
        self.mac = mac
        self.ip = ip(address)
        self.received = []

    def send(self, frame):
        self.port.send(frame, self.net.now)

    def send_ipv4(self, dst_mac, packet):
        self.send(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV4, packet))

    def send_udp(self, dst_mac, dst_ip, sport, dport, payload, src_ip=None):
        src_ip = src_ip or self.ip
        segment = build_udp(src_ip, dst_ip, sport, dport, payload)
        self.send_ipv4(dst_mac, build_ipv4(src_ip, dst_ip, 17, segment))

    def send_arp(self, operation, target_ip, *, target_mac=bytes(6), eth_dst=BROADCAST,
                 sender_ip=None, sender_mac=None):
        packet = ArpPacket(operation, sender_mac or self.mac, sender_ip or self.ip, target_mac,
                           target_ip)
        self.send(build_ethernet(eth_dst, sender_mac or self.mac, ETHERTYPE_ARP, packet.emit()))

    def collect(self):
        """Frames delivered so far (kept in :attr:`received`), as a list of new ones."""
        new = self.port.receive(self.net.now)
        self.received.extend(new)
        return new

    def run(self, seconds=0.0):
        self.net.run(seconds)
        return self.collect()

    # -- decoding what arrived ---------------------------------------------------------------

    @staticmethod
    def arps(frames):
        out = []
        for frame in frames:
            dst, src, ethertype = parse_ethernet(frame)
            if ethertype == ETHERTYPE_ARP:
                out.append((dst, ArpPacket.parse(frame, 14)))
        return out

    @staticmethod
    def ipv4s(frames):
        out = []
        for frame in frames:
            dst, src, ethertype = parse_ethernet(frame)
            if ethertype == ETHERTYPE_IPV4:
                header = parse_ipv4(frame, 14)
                out.append((dst, header, frame[14 + header.header_len:14 + header.total_len]))
        return out

    @classmethod
    def icmps(cls, frames):
        return [(header, icmpv4.parse_icmpv4(payload))
                for _, header, payload in cls.ipv4s(frames) if header.protocol == 1]

    @classmethod
    def udps(cls, frames):
        return [(header, parse_udp(payload, header.src, header.dst))
                for _, header, payload in cls.ipv4s(frames) if header.protocol == 17]

    def answer_arp(self, frames):
        """Reply to every ARP request in ``frames`` asking for our address."""
        for dst, packet in self.arps(frames):
            if packet.operation == OP_REQUEST and packet.target_ip == self.ip:
                self.send_arp(OP_REPLY, packet.sender_ip, target_mac=packet.sender_mac,
                              eth_dst=packet.sender_mac)


def drops(stack, reason):
    """The stack's drop counter for ``reason``."""
    return stack.stats().get("drop." + reason, 0)
