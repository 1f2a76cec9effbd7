"""ARP (RFC 826, RFC 1122 2.3.2, RFC 5227 announcements) through a stack on virtual time."""
import errno

import pytest

from stack_helpers import PEER_MAC, Peer, drops, ip, mac_bytes
from lwstack.iface import arp as cache
from lwstack.wire.arp import OP_REPLY, OP_REQUEST
from lwstack.wire.ethernet import BROADCAST


def test_resolution_between_two_stacks(pair):
    net, a, b = pair
    sb = b.socket()
    sb.bind(("", 7))
    sb.settimeout(5)
    a.socket().sendto(b"hello", ("10.0.0.2", 7))
    assert sb.recvfrom(100)[0] == b"hello"
    entry = a.host.arp.entries[ip("10.0.0.2")]
    assert entry.state == cache.REACHABLE and entry.mac == b.host.mac
    # b learnt a from the request addressed to it (merge rule), without asking.
    assert b.host.arp.entries[ip("10.0.0.1")].mac == a.host.mac
    assert b.stats().get("tx_frames") == 2       # its announcement and the ARP reply


def test_gratuitous_arp_announces_a_new_address(net, peer):
    stack = net.stack("ip=10.0.0.5/24,mac=02:00:00:00:00:05")
    frames = peer.collect()
    assert len(frames) == 1 and len(frames[0]) == 60
    (dst, packet), = Peer.arps(frames)
    assert dst == BROADCAST and frames[0][6:12] == stack.host.mac
    assert packet.operation == OP_REQUEST
    assert (packet.sender_mac, packet.sender_ip) == (stack.host.mac, ip("10.0.0.5"))
    assert (packet.target_mac, packet.target_ip) == (bytes(6), ip("10.0.0.5"))


def test_announcement_for_each_address(net, peer):
    net.stack("ip=10.0.0.5/24,ip=10.0.1.5/24")
    announced = [p.target_ip for _, p in Peer.arps(peer.collect())]
    assert announced == [ip("10.0.0.5"), ip("10.0.1.5")]


def test_requests_every_second_then_host_unreachable(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    peer.collect()
    s = stack.socket()
    s.connect(("10.0.0.77", 9))
    s.send(b"one")
    s.send(b"two")
    times = []
    for _ in range(8):
        for _, packet in Peer.arps(peer.collect()):
            assert packet.target_ip == ip("10.0.0.77")
            times.append(net.now)
        net.run(0.5)
    assert times == [0.0, 1.0, 2.0]
    stats = stack.stats()
    assert stats["arp.resolution_failed"] == 1 and stats["arp_failed_packets"] == 2
    assert ip("10.0.0.77") not in stack.host.arp.entries
    with pytest.raises(OSError) as info:
        s.recv(10)
    assert info.value.errno == errno.EHOSTUNREACH


def test_resolution_failure_wakes_a_blocked_receiver(net):
    stack = net.stack("ip=10.0.0.1/24")
    s = stack.socket()
    s.settimeout(10)
    s.connect(("10.0.0.77", 9))
    s.send(b"x")
    with pytest.raises(OSError) as info:
        s.recvfrom(10)
    assert info.value.errno == errno.EHOSTUNREACH
    assert net.now == 3.0                        # requests at 0, 1, 2; given up at 3


def test_unconnected_socket_gets_no_error(net):
    stack = net.stack("ip=10.0.0.1/24")
    s = stack.socket()
    s.sendto(b"x", ("10.0.0.77", 9))
    net.run(5)
    assert stack.stats()["arp_failed_packets"] == 1
    s.settimeout(0)
    with pytest.raises(BlockingIOError):
        s.recv(10)


def test_reply_delivers_the_queued_datagrams_in_order(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    peer.collect()
    s = stack.socket()
    s.bind(("", 5000))
    for n in range(3):
        s.sendto(b"%d" % n, ("10.0.0.99", 9))
    frames = peer.collect()
    assert [p.target_ip for _, p in Peer.arps(frames)] == [ip("10.0.0.99")]  # one request
    peer.answer_arp(frames)
    udps = Peer.udps(peer.run(0))
    assert [payload for _, (_, _, payload) in udps] == [b"0", b"1", b"2"]


def test_pending_queue_is_bounded(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    stack.host.arp.max_pending = 4
    peer.collect()
    s = stack.socket()
    for n in range(10):
        s.sendto(b"%d" % n, ("10.0.0.99", 9))
    assert stack.stats()["arp.pending_overflow"] == 6
    assert drops(stack, "arp_queue_full") == 6
    peer.answer_arp(peer.collect())
    payloads = [p for _, (_, _, p) in Peer.udps(peer.run(0))]
    assert payloads == [b"6", b"7", b"8", b"9"]  # the oldest were dropped first


def request_from(peer, sender_ip, target="10.0.0.1", mac=None):
    peer.send_arp(OP_REQUEST, ip(target), sender_ip=ip(sender_ip), sender_mac=mac)


def test_cache_bound_evicts_the_oldest_idle_entry(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    stack.host.arp.max_entries = 2
    for n, sender in enumerate(["10.0.0.50", "10.0.0.51", "10.0.0.52"]):
        request_from(peer, sender, mac=bytes([2, 0, 0, 0, 1, n]))
        net.run(1)
    entries = stack.host.arp.entries
    assert set(entries) == {ip("10.0.0.51"), ip("10.0.0.52")}
    assert stack.stats()["arp.evicted"] == 1


def test_entries_with_pending_packets_are_not_evicted(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    stack.host.arp.max_entries = 2
    s = stack.socket()
    s.sendto(b"a", ("10.0.0.60", 9))
    s.sendto(b"b", ("10.0.0.61", 9))
    s.sendto(b"c", ("10.0.0.62", 9))                # every entry is waiting: refused
    stats = stack.stats()
    assert stats["arp.cache_full"] == 1 and "arp.evicted" not in stats
    assert set(stack.host.arp.entries) == {ip("10.0.0.60"), ip("10.0.0.61")}
    request_from(peer, "10.0.0.70")                 # nor does a new neighbour get in
    net.run(0)
    assert ip("10.0.0.70") not in stack.host.arp.entries
    assert len(Peer.arps(peer.collect())) >= 2      # yet it was answered


def test_stale_entry_is_revalidated_with_a_unicast_request(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    s = stack.socket()
    s.sendto(b"first", ("10.0.0.99", 9))
    peer.answer_arp(peer.collect())
    peer.run(0)
    net.run(31)                                     # reachable_time is 30 s
    peer.collect()
    s.sendto(b"second", ("10.0.0.99", 9))
    frames = peer.collect()
    (dst, probe), = Peer.arps(frames)
    assert dst == PEER_MAC                          # unicast to the MAC we still believe
    assert (probe.operation, probe.target_ip) == (OP_REQUEST, ip("10.0.0.99"))
    assert [p for _, (_, _, p) in Peer.udps(frames)] == [b"second"]  # sent meanwhile
    assert stack.host.arp.entries[ip("10.0.0.99")].state == cache.PROBE
    peer.answer_arp(frames)
    net.run(0)
    assert stack.host.arp.entries[ip("10.0.0.99")].state == cache.REACHABLE


def test_unanswered_probes_delete_the_entry(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    s = stack.socket()
    s.sendto(b"first", ("10.0.0.99", 9))
    peer.answer_arp(peer.collect())
    net.run(31)
    peer.collect()
    s.sendto(b"second", ("10.0.0.99", 9))
    net.run(5)
    probes = Peer.arps(peer.collect())
    assert len(probes) == 3 and all(dst == PEER_MAC for dst, _ in probes)
    assert ip("10.0.0.99") not in stack.host.arp.entries


def test_merge_rule_request_to_us_creates_an_entry_and_is_answered(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    peer.collect()
    request_from(peer, "10.0.0.99")
    frames = peer.run(0)
    (dst, reply), = Peer.arps(frames)
    assert dst == PEER_MAC and reply.operation == OP_REPLY
    assert (reply.sender_mac, reply.sender_ip) == (stack.host.mac, ip("10.0.0.1"))
    assert (reply.target_mac, reply.target_ip) == (PEER_MAC, ip("10.0.0.99"))
    assert stack.host.arp.entries[ip("10.0.0.99")].mac == PEER_MAC


def test_merge_rule_others_only_refresh(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    peer.collect()
    request_from(peer, "10.0.0.99", target="10.0.0.200")     # not for us: no entry, no answer
    assert peer.run(0) == []
    assert ip("10.0.0.99") not in stack.host.arp.entries
    request_from(peer, "10.0.0.99")                          # for us: entry
    net.run(10)
    new_mac = mac_bytes("02:00:00:00:00:ef")
    request_from(peer, "10.0.0.99", target="10.0.0.200", mac=new_mac)   # refresh, new MAC
    net.run(0)
    entry = stack.host.arp.entries[ip("10.0.0.99")]
    assert entry.mac == new_mac and entry.confirmed == 10.0
    assert stack.stats()["arp.mac_changed"] == 1


def test_address_conflict_is_counted_not_learnt(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    peer.collect()
    peer.send_arp(OP_REPLY, ip("10.0.0.1"), sender_ip=ip("10.0.0.1"))
    peer.send_arp(OP_REQUEST, ip("10.0.0.1"), sender_ip=ip("10.0.0.1"))   # gratuitous
    net.run(0)
    assert drops(stack, "arp_address_conflict") == 2
    assert ip("10.0.0.1") not in stack.host.arp.entries
    assert peer.collect() == []


def test_arp_probe_from_unconfigured_host_is_answered_but_not_learnt(net, peer):
    # RFC 5227 section 2.1.1: a probe has sender IP 0.0.0.0; the owner of the address answers
    # (so the prober sees the conflict), but 0.0.0.0 is no neighbour to remember.
    stack = net.stack("ip=10.0.0.1/24")
    peer.collect()
    peer.send_arp(OP_REQUEST, ip("10.0.0.1"), sender_ip=bytes(4))
    frames = peer.run(0)
    assert [p.operation for _, p in Peer.arps(frames)] == [OP_REPLY]
    assert bytes(4) not in stack.host.arp.entries


def test_own_frames_and_unknown_ethertypes_are_dropped(net, peer):
    stack = net.stack("ip=10.0.0.1/24")
    peer.send_arp(OP_REQUEST, ip("10.0.0.1"), sender_mac=stack.host.mac)
    peer.send(stack.host.mac + PEER_MAC + b"\x88\xb5" + bytes(46))
    net.run(0)
    assert drops(stack, "own_source_mac") == 1 and drops(stack, "unknown_ethertype") == 1


def test_stale_expiry_at_a_float_instant_does_not_livelock(net):
    # confirmed + stale_time is when poll_at() says the entry expires; poll() must agree at
    # exactly that instant (102.2 + 60 - 102.2 < 60 in floating point).
    stack = net.stack("ip=10.0.0.1/24")
    net.run(102.2)
    stack.host.arp.confirm(ip("10.0.0.5"), bytes.fromhex("020000000005"), net.now, create=True)
    net.run(61)
    assert ip("10.0.0.5") not in stack.host.arp.entries
