"""A veth pair between two network namespaces, for running lwstack's DHCPv4 machines against
real peers (dnsmasq, busybox udhcpc).  Needs root and iproute2; callers skip otherwise.

One end of the pair is ours: an AF_PACKET socket opened inside its namespace (a thread
enters it with setns(2), opens the socket and ends; the socket stays in that namespace).
:class:`LinkDriver` is a tiny host for one sans-IO DHCP machine on that socket: it turns
the machine's "udp" actions into Ethernet/IPv4/UDP frames, its "probe"/"announce" actions
into ARP frames, feeds it the DHCP datagrams and ARP conflicts it sees, answers ARP for its
own addresses and keeps every DHCP payload it received (for vectors).  Its clock is the
monotonic clock plus ``offset``, which a test may push forward to reach T1 without waiting.
"""
import select
import time

import pytest

from lwstack.wire import WireError
from lwstack.wire.arp import OP_REPLY, OP_REQUEST, ArpPacket
from lwstack.wire.ethernet import (ETHERTYPE_ARP, ETHERTYPE_IPV4, HEADER_LEN, build_ethernet,
                                   parse_ethernet)
from lwstack.wire.ipv4 import PROTO_UDP, build_ipv4, parse_ipv4
from lwstack.wire.udp import build_udp, parse_udp

import netns_support
from netns_support import ETHTOOL_STXCSUM, Namespaces, add_veth, offloads_off, packet_socket, run

__all__ = ["LinkDriver", "VethPair", "packet_socket", "require_root_and"]   # for the tests

BROADCAST_MAC = b"\xff" * 6
BROADCAST = b"\xff\xff\xff\xff"
ANY = bytes(4)


def require_root_and(*programs):
    """Skip unless root with iproute2 and ``programs`` on PATH."""
    reason = netns_support.missing(*programs)
    if reason:
        pytest.skip(reason)


class VethPair(Namespaces):
    """Namespaces ``<prefix>a`` and ``<prefix>b`` joined by veth ``<prefix>A`` (in a) and
    ``<prefix>B`` (in b), up, without IPv6 (no router solicitations on the wire), with the
    given MACs, and TX checksum offload off (with it on, a veth peer's AF_PACKET socket sees
    only the pseudo-header sum of a UDP checksum).  Removed (namespaces deleted) by
    :meth:`close`."""

    def __init__(self, prefix, mac_a, mac_b):
        self.ns_a, self.ns_b = prefix + "a", prefix + "b"
        self.if_a, self.if_b = prefix + "A", prefix + "B"
        super().__init__(self.ns_a, self.ns_b)
        try:
            add_veth(self.ns_a, self.if_a, self.ns_b, self.if_b, mac_a, mac_b)
            for ns, ifname in ((self.ns_a, self.if_a), (self.ns_b, self.if_b)):
                run("ip", "netns", "exec", ns, "sysctl", "-q",
                    f"net.ipv6.conf.{ifname}.disable_ipv6=1")
                run("ip", "-n", ns, "link", "set", ifname, "up")
                offloads_off(ns, ifname, [ETHTOOL_STXCSUM])
        except BaseException:
            self.close()
            raise


class LinkDriver:
    """Runs one DHCP machine (client or server) on an AF_PACKET socket; see the module notes.

    ``addrs``: the IPv4 addresses this side owns (answered in ARP, used as frame sources).
    """

    def __init__(self, sock, mac, machine, port, addrs=()):
        self.sock = sock
        self.mac = mac
        self.machine = machine
        self.port = port                 # 68 for a client, 67 for a server
        self.addrs = set(addrs)
        self.neighbours = {}             # IPv4 address -> MAC, learnt from frames
        self.received = []               # DHCP payloads, in order
        self.events = []                 # non-"udp" actions, with the time
        self.probing = set()
        self.start = time.monotonic()
        self.offset = 0.0

    def now(self):
        """The machine's clock."""
        return time.monotonic() - self.start + self.offset

    def run(self, until, timeout):
        """Drive the machine until ``until()`` is true; fail after ``timeout`` real seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out; events {self.events}, stats {self.machine.stats}")
            self.machine.poll(self.now())
            self.flush()
            at = self.machine.poll_at()
            wait = 0.05 if at is None else min(max(at - self.now(), 0.0), 0.05)
            if select.select([self.sock], [], [], wait)[0]:
                self._frame(self.sock.recv(65536))
                self.flush()

    def flush(self):
        """Carry out the machine's pending actions."""
        for action in self.machine.outbox:
            if action[0] == "udp":
                _, src, dst, sport, dport, payload, link_dst = action
                self._send_udp(src, dst, sport, dport, payload, link_dst)
            else:
                self.events.append((round(self.now(), 3), action[0], action[1]))
                if action[0] in ("probe", "announce"):
                    self._send_arp(action[0], action[1])
                if action[0] == "bound":
                    self.addrs.add(action[1].address)
                if action[0] == "lost":
                    self.addrs.discard(action[1].address)
        self.machine.outbox.clear()

    def _send_udp(self, src, dst, sport, dport, payload, link_dst):
        if link_dst is None:
            link_dst = BROADCAST_MAC if dst == BROADCAST else self.neighbours[dst]
        packet = build_ipv4(src, dst, PROTO_UDP, build_udp(src, dst, sport, dport, payload),
                            flags_fragment=0)
        self.sock.send(build_ethernet(link_dst, self.mac, ETHERTYPE_IPV4, packet))

    def _send_arp(self, kind, addr):
        # RFC 5227 2.1.1 probe: sender IP 0; 2.3 announcement: sender and target IP = addr.
        self.probing.add(addr)
        sender = ANY if kind == "probe" else addr
        arp = ArpPacket(OP_REQUEST, self.mac, sender, bytes(6), addr).emit()
        self.sock.send(build_ethernet(BROADCAST_MAC, self.mac, ETHERTYPE_ARP, arp))

    def _frame(self, frame):
        try:
            dst_mac, src_mac, ethertype = parse_ethernet(frame)
            if src_mac == self.mac:
                return                   # our own frame, seen on the way out
            if ethertype == ETHERTYPE_ARP:
                self._arp(ArpPacket.parse(frame, HEADER_LEN), src_mac)
            elif ethertype == ETHERTYPE_IPV4:
                header = parse_ipv4(frame, HEADER_LEN)
                if header.protocol != PROTO_UDP:
                    return
                body = frame[HEADER_LEN + header.header_len:HEADER_LEN + header.total_len]
                sport, dport, payload = parse_udp(body, header.src, header.dst)
                if dport == self.port:
                    if header.src != ANY:
                        self.neighbours[header.src] = src_mac
                    self.received.append(bytes(payload))
                    self.machine.receive(bytes(payload), header.src, self.now())
        except WireError:
            pass

    def _arp(self, arp, src_mac):
        if arp.sender_ip != ANY:
            self.neighbours[arp.sender_ip] = src_mac
        claimed = arp.sender_ip if arp.sender_ip != ANY else (
            arp.target_ip if arp.operation == OP_REQUEST else None)
        if claimed in self.probing and hasattr(self.machine, "conflict"):
            self.machine.conflict(claimed, self.now())
        if arp.operation == OP_REQUEST and arp.target_ip in self.addrs and arp.sender_ip != ANY:
            reply = ArpPacket(OP_REPLY, self.mac, arp.target_ip, src_mac, arp.sender_ip).emit()
            self.sock.send(build_ethernet(src_mac, self.mac, ETHERTYPE_ARP, reply))
