"""The DHCPv4 server (RFC 2131 section 4.3) on virtual time: busybox udhcpc's messages, every
REQUEST case, DECLINE, RELEASE, INFORM, expiry, the pool running out; then our client and
server talking through a tiny in-test LAN (with loss and an address squatter); and, as root
with busybox's udhcpc installed, a real udhcpc in a network namespace leasing from it."""
import os
import queue
import random
import signal
import subprocess
import threading

import pytest

from lwstack.proto.dhcp4 import BOUND, ConflictDetection, Dhcp4Client
from lwstack.proto.dhcp4_server import FREE, OFFERED, Dhcp4Server
from lwstack.proto.dhcp4_server import BOUND as SERVER_BOUND
from lwstack.wire import dhcp4
from lwstack.wire.dhcp4 import (ACK, BOOTREPLY, BOOTREQUEST, DECLINE, DISCOVER, INFORM, NAK,
                                OFFER, RELEASE, REQUEST, ClientFqdn, DhcpMessage)


def ip(text):
    return bytes(int(part) for part in text.split("."))


def _udhcpc(head, tail, total):
    """A captured message: fixed fields up to chaddr, 192 zero bytes of sname and file
    (elided), cookie and options, zero padding up to ``total`` bytes."""
    return (bytes.fromhex(head) + bytes(192) + bytes.fromhex(tail)).ljust(total, b"\0")


# Provenance: Debian bookworm's busybox udhcpc 1.35.0 (udhcpc -f -i IF -s SCRIPT -t 5 -T 1
# -x hostname:lwclient -O staticroutes -O mtu) in a network namespace, leasing from this
# server over a veth pair (test_udhcpc_leases_from_our_server below repeats it as root; the
# xids are random per run).  Its MAC is 02:00:00:00:80:0c; the server was 198.18.80.1, pool
# .50-.60, and the payloads are as they arrived.  udhcpc sets no broadcast flag, sends a
# client id (type 1 + MAC), a vendor class "udhcp 1.35.0" and a 576-byte maximum size, asks
# for options 1, 3, 6, 12, 15, 26, 28, 42, 121, and renews with the first exchange's xid.
UDHCPC_MAC = bytes.fromhex("02000000800c")
UDHCPC_DISCOVER = _udhcpc(
    "01010600ecb0cd4b000000000000000000000000000000000000000002000000800c0000000000000000"
    "0000",
    "638253633501013902024037090103060c0f1a1c2a790c086c77636c69656e743c0c756468637020312e3335"
    "2e303d070102000000800cff", 300)
UDHCPC_REQUEST = _udhcpc(
    "01010600ecb0cd4b000000000000000000000000000000000000000002000000800c0000000000000000"
    "0000",
    "638253633501033204c61250323604c61250013902024037090103060c0f1a1c2a790c086c77636c69656e74"
    "3c0c756468637020312e33352e303d070102000000800cff", 304)
UDHCPC_RENEW = _udhcpc(
    "01010600ecb0cd4b00000000c612503200000000000000000000000002000000800c0000000000000000"
    "0000",
    "638253633501033902024037090103060c0f1a1c2a790c086c77636c69656e743c0c756468637020312e3335"
    "2e303d070102000000800cff", 300)
UDHCPC_RELEASE = _udhcpc(
    "010106008181312300000000c612503200000000000000000000000002000000800c0000000000000000"
    "0000",
    "638253633501073604c61250013d070102000000800cff", 300)

SERVER = ip("198.18.80.1")
ANY = bytes(4)
BCAST = ip("255.255.255.255")


def udhcpc_server(**kwargs):
    """The server as configured for the capture."""
    options = dict(routers=[SERVER], dns=[SERVER], domain="lwtest.lan", mtu=1400,
                   routes=[(ip("10.9.0.0"), 16, ip("198.18.80.254"))], lease_time=8)
    options.update(kwargs)
    return Dhcp4Server(SERVER, 24, ip("198.18.80.50"), ip("198.18.80.60"), **options)


def small_server(**kwargs):
    """10.0.0.1/24 handing out 10.0.0.10-10.0.0.12 (three addresses), leases of 100 s."""
    kwargs.setdefault("lease_time", 100)
    return Dhcp4Server(ip("10.0.0.1"), 24, ip("10.0.0.10"), ip("10.0.0.12"), **kwargs)


def mac(n):
    return bytes((2, 0, 0, 0, 0, n))


def request_msg(kind, chaddr, xid=1, *, ciaddr=ANY, requested=None, server=None,
                broadcast=False, client_id=None, **options):
    msg = DhcpMessage(BOOTREQUEST, xid, chaddr=chaddr, ciaddr=ciaddr,
                      flags=dhcp4.FLAG_BROADCAST if broadcast else 0)
    msg.set(dhcp4.OPT_MESSAGE_TYPE, kind)
    msg.set(dhcp4.OPT_CLIENT_ID, client_id)
    msg.set(dhcp4.OPT_REQUESTED_IP, requested)
    msg.set(dhcp4.OPT_SERVER_ID, server)
    for code, value in options.items():
        msg.set(int(code[1:]), value)               # o12="name", o55=(1, 3) ...
    return msg.emit()


def replies(server):
    """The server's outbox, parsed: (dst, link_dst, message)."""
    out = []
    for kind, src, dst, sport, dport, payload, link in server.outbox:
        assert (kind, src, sport, dport) == ("udp", server.server_addr, 67, 68)
        out.append((dst, link, DhcpMessage.parse(payload)))
    server.outbox.clear()
    return out


def one_reply(server, kind):
    out = replies(server)
    assert len(out) == 1, out
    dst, link, msg = out[0]
    assert msg.message_type == kind and msg.op == BOOTREPLY
    return dst, link, msg


def lease_for(server, chaddr, now=0.0, xid=1, **kwargs):
    """DISCOVER and REQUEST for ``chaddr``; the ACKed address."""
    server.receive(request_msg(DISCOVER, chaddr, xid, **kwargs), ANY, now)
    offered = one_reply(server, OFFER)[2].yiaddr
    server.receive(request_msg(REQUEST, chaddr, xid, requested=offered,
                               server=server.server_addr, **kwargs), ANY, now)
    return one_reply(server, ACK)[2].yiaddr


# -- udhcpc's messages -------------------------------------------------------------------------

def test_offer_to_udhcpc_goes_to_yiaddr_at_its_mac():
    server = udhcpc_server()
    server.receive(UDHCPC_DISCOVER, ANY, 0.0)
    dst, link, offer = one_reply(server, OFFER)
    # RFC 2131 4.1: no broadcast flag, no ciaddr: unicast to yiaddr at chaddr, without ARP.
    assert (dst, link) == (ip("198.18.80.50"), UDHCPC_MAC)
    assert (offer.xid, offer.flags, offer.yiaddr, offer.ciaddr, offer.chaddr) == (
        0xECB0CD4B, 0, ip("198.18.80.50"), ANY, UDHCPC_MAC)
    assert offer.get(dhcp4.OPT_SERVER_ID) == SERVER
    assert offer.get(dhcp4.OPT_LEASE_TIME) == 8
    assert offer.get(dhcp4.OPT_SUBNET_MASK) == ip("255.255.255.0")
    assert offer.get(dhcp4.OPT_ROUTER) == (SERVER,)
    assert offer.get(dhcp4.OPT_DNS) == (SERVER,)
    assert offer.get(dhcp4.OPT_DOMAIN_NAME) == "lwtest.lan"
    assert offer.get(dhcp4.OPT_MTU) == 1400                    # asked for (26 in its list)
    # Asked for 121: the default route rides along, as such clients ignore option 3.
    assert offer.get(dhcp4.OPT_CLASSLESS_ROUTES) == (
        (ip("10.9.0.0"), 16, ip("198.18.80.254")), (ANY, 0, SERVER))
    assert offer.get(dhcp4.OPT_CLIENT_ID) == b"\x01" + UDHCPC_MAC       # RFC 6842
    assert dhcp4.OPT_RENEWAL_TIME not in offer.options      # not configured: client defaults
    assert server.bindings[("id", b"\x01" + UDHCPC_MAC)].state == OFFERED


def test_udhcpc_request_renew_release():
    server = udhcpc_server()
    server.receive(UDHCPC_DISCOVER, ANY, 0.0)
    replies(server)
    server.receive(UDHCPC_REQUEST, ANY, 0.5)
    dst, link, ack = one_reply(server, ACK)
    assert (dst, link, ack.yiaddr, ack.ciaddr) == (ip("198.18.80.50"), UDHCPC_MAC,
                                                   ip("198.18.80.50"), ANY)
    binding = server.active(1.0)[0]
    assert (binding.addr, binding.chaddr, binding.hostname, binding.expires) == (
        ip("198.18.80.50"), UDHCPC_MAC, "lwclient", 8.5)
    # RENEWING: ciaddr set, unicast to it through ARP as usual; ciaddr echoed (table 3).
    server.receive(UDHCPC_RENEW, ip("198.18.80.50"), 4.5)
    dst, link, ack = one_reply(server, ACK)
    assert (dst, link, ack.ciaddr, ack.yiaddr) == (ip("198.18.80.50"), None,
                                                   ip("198.18.80.50"), ip("198.18.80.50"))
    assert binding.expires == 12.5 and server.poll_at() == 12.5
    server.receive(UDHCPC_RELEASE, ip("198.18.80.50"), 5.0)
    assert replies(server) == [] and binding.state == FREE and server.active(5.0) == []
    assert server.stats["released"] == 1


def test_broadcast_flag_means_a_broadcast_answer_and_naks_are_always_broadcast():
    server = small_server()
    server.receive(request_msg(DISCOVER, mac(1), broadcast=True), ANY, 0.0)
    dst, link, offer = one_reply(server, OFFER)
    assert (dst, link) == (BCAST, None) and offer.broadcast
    server.receive(request_msg(REQUEST, mac(1), requested=ip("10.0.0.11"),
                               server=ip("10.0.0.1")), ANY, 0.0)
    dst, link, nak = one_reply(server, NAK)
    assert (dst, link, nak.yiaddr) == (BCAST, None, ANY)
    assert set(nak.options) == {53, 54}


# -- choosing addresses (RFC 2131 4.3.1) -------------------------------------------------------

def test_two_clients_get_different_addresses_and_keep_them():
    server = small_server()
    first = lease_for(server, mac(1))
    second = lease_for(server, mac(2))
    assert (first, second) == (ip("10.0.0.10"), ip("10.0.0.11"))
    assert lease_for(server, mac(1), now=5.0) == first
    # After expiry and after a release the client still gets its old address back.
    server.poll(200.0)
    assert server.active(200.0) == [] and server.stats["expired.bound"] == 2
    assert lease_for(server, mac(2), now=201.0) == second
    server.receive(request_msg(RELEASE, mac(2), ciaddr=second, server=ip("10.0.0.1")),
                   second, 202.0)
    assert lease_for(server, mac(2), now=203.0) == second


def test_clients_known_by_client_id_before_mac():
    server = small_server()
    a = lease_for(server, mac(1), client_id=b"\x00one")
    b = lease_for(server, mac(1), client_id=b"\x00two")        # same MAC, another client
    assert a != b and set(server.bindings) == {("id", b"\x00one"), ("id", b"\x00two")}


def test_requested_address_is_honoured_when_free():
    server = small_server()
    server.receive(request_msg(DISCOVER, mac(1), requested=ip("10.0.0.12")), ANY, 0.0)
    assert one_reply(server, OFFER)[2].yiaddr == ip("10.0.0.12")
    server.receive(request_msg(DISCOVER, mac(2), requested=ip("10.0.0.12")), ANY, 0.0)
    assert one_reply(server, OFFER)[2].yiaddr == ip("10.0.0.10")     # held for mac 1
    for outside in (ip("10.0.0.200"), ip("10.1.0.5"), ip("10.0.0.1")):
        server.receive(request_msg(DISCOVER, mac(3), requested=outside), ANY, 0.0)
        assert one_reply(server, OFFER)[2].yiaddr == ip("10.0.0.11")


def test_the_servers_own_address_is_never_offered():
    server = Dhcp4Server(ip("10.0.0.1"), 24, ip("10.0.0.1"), ip("10.0.0.2"))
    assert lease_for(server, mac(1)) == ip("10.0.0.2")
    server.receive(request_msg(DISCOVER, mac(2)), ANY, 0.0)
    assert replies(server) == [] and server.stats["pool_exhausted"] == 1


def test_pool_runs_out_then_expired_offers_and_oldest_free_leases_are_reused():
    server = small_server(offer_time=30.0)
    for n in (1, 2, 3):
        lease_for(server, mac(n))
    server.receive(request_msg(DISCOVER, mac(4)), ANY, 1.0)
    assert replies(server) == [] and server.stats["pool_exhausted"] == 1
    # Leases end at 100 s; mac 2's is renewed, so mac 1's and 3's become FREE, 1's first.
    server.receive(request_msg(REQUEST, mac(2), ciaddr=ip("10.0.0.11")), ip("10.0.0.11"), 50.0)
    one_reply(server, ACK)
    assert server.poll_at() == 100.0
    server.poll(100.0)
    assert [b.addr for b in server.active(100.0)] == [ip("10.0.0.11")]
    server.receive(request_msg(DISCOVER, mac(4)), ANY, 101.0)
    assert one_reply(server, OFFER)[2].yiaddr == ip("10.0.0.10")      # oldest FREE first
    assert ("hw", mac(1)) not in server.bindings                      # forgotten for mac 1
    # An offer nobody takes is held offer_time, then free again (for its client first).
    server.receive(request_msg(DISCOVER, mac(5)), ANY, 102.0)
    assert one_reply(server, OFFER)[2].yiaddr == ip("10.0.0.12")
    server.receive(request_msg(DISCOVER, mac(6)), ANY, 103.0)
    assert replies(server) == []
    assert server.poll_at() == 131.0                                   # mac 4's offer
    server.poll(133.0)
    server.receive(request_msg(DISCOVER, mac(6)), ANY, 133.0)
    assert one_reply(server, OFFER)[2].yiaddr == ip("10.0.0.10")
    assert server.stats["expired.offered"] == 2 and server.stats["pool_exhausted"] == 2


# -- REQUEST (RFC 2131 4.3.2) ------------------------------------------------------------------

def test_selecting_request_for_another_server_withdraws_our_offer():
    server = small_server()
    server.receive(request_msg(DISCOVER, mac(1)), ANY, 0.0)
    offered = one_reply(server, OFFER)[2].yiaddr
    server.receive(request_msg(REQUEST, mac(1), requested=ip("10.0.0.99"),
                               server=ip("10.0.0.2")), ANY, 0.0)
    assert replies(server) == [] and server.bindings[("hw", mac(1))].state == FREE
    assert server.stats["other_server"] == 1
    # Fresh addresses go first; the withdrawn one stays remembered for mac 1.
    assert lease_for(server, mac(2)) == ip("10.0.0.11")
    assert lease_for(server, mac(1)) == offered


def test_init_reboot_requests():
    server = small_server()
    addr = lease_for(server, mac(1))
    reboot = dict(requested=addr)
    server.receive(request_msg(REQUEST, mac(1), 7, **reboot), ANY, 10.0)     # right: ACK
    dst, link, ack = one_reply(server, ACK)
    assert ack.yiaddr == addr and (dst, link) == (addr, mac(1))
    server.receive(request_msg(REQUEST, mac(1), 8, requested=ip("10.0.0.12")), ANY, 10.0)
    one_reply(server, NAK)                                                  # not its address
    server.receive(request_msg(REQUEST, mac(2), 9, requested=ip("192.168.1.5")), ANY, 10.0)
    one_reply(server, NAK)                                                  # wrong network
    server.receive(request_msg(REQUEST, mac(3), 10, requested=addr), ANY, 10.0)
    one_reply(server, NAK)                                                  # somebody else's
    # An unknown client asking for a free pool address gets it (authoritative, like dnsmasq
    # after a restart) ...
    server.receive(request_msg(REQUEST, mac(4), 11, requested=ip("10.0.0.12")), ANY, 10.0)
    assert one_reply(server, ACK)[2].yiaddr == ip("10.0.0.12")
    # ... but outside the pool it is NAKed, and a non-authoritative server stays silent.
    server.receive(request_msg(REQUEST, mac(5), 12, requested=ip("10.0.0.200")), ANY, 10.0)
    one_reply(server, NAK)
    quiet = small_server(authoritative=False)
    quiet.receive(request_msg(REQUEST, mac(4), 11, requested=ip("10.0.0.12")), ANY, 10.0)
    assert replies(quiet) == [] and quiet.stats["unknown_client"] == 1


def test_renewing_and_rebinding_extend_the_binding():
    server = small_server()
    addr = lease_for(server, mac(1))
    server.receive(request_msg(REQUEST, mac(1), 2, ciaddr=addr), addr, 50.0)
    dst, link, ack = one_reply(server, ACK)
    assert (dst, link, ack.ciaddr) == (addr, None, addr)
    assert server.bindings[("hw", mac(1))].expires == 150.0
    # A renewal for an address the client does not hold is refused.
    server.receive(request_msg(REQUEST, mac(2), 3, ciaddr=addr), addr, 50.0)
    one_reply(server, NAK)
    # After expiry the client may still rebind its remembered address.
    server.poll(150.0)
    server.receive(request_msg(REQUEST, mac(1), 4, ciaddr=addr), addr, 160.0)
    one_reply(server, ACK)
    assert server.bindings[("hw", mac(1))].state == SERVER_BOUND


# -- DECLINE, RELEASE, INFORM ------------------------------------------------------------------

def test_declined_address_is_set_aside_for_a_while():
    server = small_server(decline_time=600.0)
    addr = lease_for(server, mac(1))
    server.receive(request_msg(DECLINE, mac(1), requested=addr, server=ip("10.0.0.1")), ANY, 1.0)
    assert replies(server) == [] and server.stats["declined"] == 1
    assert ("hw", mac(1)) not in server.bindings
    again = lease_for(server, mac(1), now=11.0)
    assert again != addr
    server.receive(request_msg(DISCOVER, mac(2), requested=addr), ANY, 12.0)
    assert one_reply(server, OFFER)[2].yiaddr not in (addr, again)
    server.receive(request_msg(REQUEST, mac(3), requested=addr), ANY, 12.0)
    one_reply(server, NAK)
    # 600 s later it can be handed out again.
    server.receive(request_msg(DISCOVER, mac(4), requested=addr), ANY, 602.0)
    assert one_reply(server, OFFER)[2].yiaddr == addr


def test_decline_or_release_for_somebody_elses_address_is_ignored():
    server = small_server()
    addr = lease_for(server, mac(1))
    server.receive(request_msg(DECLINE, mac(2), requested=addr, server=ip("10.0.0.1")), ANY, 1.0)
    server.receive(request_msg(RELEASE, mac(2), ciaddr=addr, server=ip("10.0.0.1")), addr, 1.0)
    server.receive(request_msg(DECLINE, mac(1), requested=addr, server=ip("10.0.0.7")), ANY, 1.0)
    assert server.bindings[("hw", mac(1))].state == SERVER_BOUND
    assert server.stats["drop.decline_unknown"] == 1
    assert server.stats["drop.release_unknown"] == 1 and server.stats["other_server"] == 1


def test_inform_gets_options_without_a_lease():
    server = small_server(routers=[ip("10.0.0.1")], dns=[ip("10.0.0.53")], domain="lan")
    server.receive(request_msg(INFORM, mac(9), ciaddr=ip("10.0.0.77")), ip("10.0.0.77"), 0.0)
    dst, link, ack = one_reply(server, ACK)
    assert (dst, link, ack.yiaddr, ack.ciaddr) == (ip("10.0.0.77"), None, ANY, ip("10.0.0.77"))
    assert dhcp4.OPT_LEASE_TIME not in ack.options                  # RFC 2131 4.3.5
    assert ack.get(dhcp4.OPT_DNS) == (ip("10.0.0.53"),) and ack.get(dhcp4.OPT_DOMAIN_NAME) == "lan"
    assert server.bindings == {}


# -- configuration -----------------------------------------------------------------------------

def test_reservations():
    server = small_server(reservations={mac(7): ip("10.0.0.50"), mac(8): ip("10.0.0.11")})
    assert lease_for(server, mac(7)) == ip("10.0.0.50")            # outside the range
    assert lease_for(server, mac(1)) == ip("10.0.0.10")
    assert lease_for(server, mac(2)) == ip("10.0.0.12")            # .11 is mac 8's
    server.receive(request_msg(DISCOVER, mac(3), requested=ip("10.0.0.11")), ANY, 0.0)
    assert replies(server) == []                                   # the pool is used up
    assert lease_for(server, mac(8)) == ip("10.0.0.11")
    with pytest.raises(ValueError):
        small_server(reservations={mac(1): ip("10.9.9.9")})


def test_times_and_names_in_the_binding():
    server = small_server(lease_time=1000, t1=300, t2=600)
    server.receive(request_msg(DISCOVER, mac(1), o81=ClientFqdn(5, "box.lan.")), ANY, 0.0)
    offer = one_reply(server, OFFER)[2]
    assert [offer.get(c) for c in (51, 58, 59)] == [1000, 300, 600]
    assert server.bindings[("hw", mac(1))].hostname == "box.lan"
    lease_for(server, mac(2), o12="other")
    assert server.bindings[("hw", mac(2))].hostname == "other"
    for bad in (dict(t1=700, t2=600), dict(t2=2000), dict(lease_time=0)):
        with pytest.raises(ValueError):
            small_server(**{"lease_time": 1000, **bad})
    with pytest.raises(ValueError):
        Dhcp4Server(ip("10.0.0.1"), 24, ip("10.0.0.20"), ip("10.0.0.10"))


def test_mtu_and_classless_routes_only_when_asked():
    server = small_server(mtu=1400, routes=[(ip("10.9.0.0"), 16, ip("10.0.0.254"))],
                          routers=[ip("10.0.0.1")])
    server.receive(request_msg(DISCOVER, mac(1)), ANY, 0.0)
    offer = one_reply(server, OFFER)[2]
    assert 26 not in offer.options and 121 not in offer.options and 3 in offer.options
    server.receive(request_msg(DISCOVER, mac(1), o55=(1, 121, 3, 26)), ANY, 0.0)
    offer = one_reply(server, OFFER)[2]
    assert offer.get(26) == 1400 and len(offer.get(121)) == 2


# -- bad input ---------------------------------------------------------------------------------

def test_garbage_and_unsupported_messages_are_counted_and_dropped():
    server = small_server()
    server.receive(b"\x01" * 100, ANY, 0.0)
    reply = DhcpMessage.parse(request_msg(DISCOVER, mac(1)))
    reply.op = BOOTREPLY
    server.receive(reply.emit(), ANY, 0.0)
    relayed = DhcpMessage.parse(request_msg(DISCOVER, mac(1)))
    relayed.giaddr = ip("10.5.0.1")
    server.receive(relayed.emit(), ANY, 0.0)
    token_ring = DhcpMessage.parse(request_msg(DISCOVER, mac(1)))
    token_ring.htype = 6
    server.receive(token_ring.emit(), ANY, 0.0)
    bootp = DhcpMessage.parse(request_msg(DISCOVER, mac(1)))
    del bootp.options[dhcp4.OPT_MESSAGE_TYPE]
    server.receive(bootp.emit(), ANY, 0.0)
    server.receive(request_msg(OFFER, mac(1)), ANY, 0.0)
    server.receive(request_msg(REQUEST, mac(1)), ANY, 0.0)             # no address at all
    server.receive(request_msg(INFORM, mac(1)), ANY, 0.0)              # no ciaddr
    bad_option = DhcpMessage.parse(request_msg(DISCOVER, mac(1)))
    bad_option.options[dhcp4.OPT_REQUESTED_IP] = b"\x0a"
    server.receive(bad_option.emit(), ANY, 0.0)
    rng = random.Random(5)
    for _ in range(200):
        data = bytearray(UDHCPC_REQUEST)
        for _ in range(4):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        server.receive(bytes(data[:rng.randrange(200, len(data) + 1)]), ANY, 0.0)
    drops = {k: v for k, v in server.stats.items() if k.startswith("drop.")}
    for reason in ("dhcp4_truncated", "not_a_request", "relayed", "unsupported_hardware",
                   "not_dhcp", "unexpected_type_2", "request_without_address",
                   "inform_without_ciaddr", "dhcp4_bad_option"):
        assert drops.get("drop." + reason, 0) >= 1, (reason, drops)
    assert len(server.bindings) <= 3


def test_outbox_is_bounded():
    server = small_server(max_outbox=2)
    for n in range(5):
        server.receive(request_msg(INFORM, mac(n), ciaddr=ip("10.0.0.77")), ANY, 0.0)
    assert len(server.outbox) == 2 and server.stats["outbox_full"] == 3


# -- our client and our server on a tiny LAN ---------------------------------------------------

FAST = ConflictDetection(probe_wait=0.5, probe_min=0.5, probe_max=1.0, announce_wait=1.0,
                         announce_interval=1.0)


class Lan:
    """A server and clients exchanging datagrams on virtual time.  ``loss`` drops datagrams
    at random (seeded); ``squatters`` are addresses another host answers ARP probes for."""

    def __init__(self, server, clients, loss=0.0, seed=0, squatters=()):
        self.server = server
        self.clients = clients
        self.loss = loss
        self.rng = random.Random(seed)
        self.squatters = set(squatters)
        self.now = 0.0
        self.events = {id(c): [] for c in clients}
        self.delivered = 0

    def run(self, until):
        machines = [self.server, *self.clients]
        while True:
            times = [t for t in (m.poll_at() for m in machines) if t is not None]
            if not times or min(times) > until:
                break
            self.now = max(self.now, min(times))
            for machine in machines:
                machine.poll(self.now)
            self._deliver()
        self.now = until

    def _lost(self):
        return self.rng.random() < self.loss

    def _deliver(self):
        moved = True
        while moved:
            moved = False
            for client in self.clients:
                actions, client.outbox[:] = list(client.outbox), []
                for action in actions:
                    if action[0] == "udp":
                        if not self._lost():
                            self.server.receive(action[5], action[1], self.now)
                            self.delivered += 1
                    else:
                        self.events[id(client)].append((self.now, action[0], action[1]))
                        if action[0] == "probe" and action[1] in self.squatters:
                            client.conflict(action[1], self.now)
                moved = moved or bool(actions)
            outbox, self.server.outbox[:] = list(self.server.outbox), []
            for _, src, dst, _, _, payload, link in outbox:
                for client in self.clients:
                    reached = (client.mac == link if link is not None else
                               dst == BCAST or (client.lease and client.lease.address == dst))
                    if reached and not self._lost():
                        client.receive(payload, src, self.now)
                        self.delivered += 1
                moved = True

    def kinds(self, client):
        return [kind for _, kind, _ in self.events[id(client)]]


def make_clients(count, seed=0, **kwargs):
    return [Dhcp4Client(mac(n + 1), random.Random(seed + n), acd=FAST, fqdn=f"h{n}.lan",
                        **kwargs) for n in range(count)]


def test_whole_lease_life_for_two_clients():
    server = small_server(lease_time=60, routers=[ip("10.0.0.1")], dns=[ip("10.0.0.1")])
    clients = make_clients(2, broadcast_flag=False)    # the OFFER/ACK go to yiaddr at chaddr
    lan = Lan(server, clients)
    for client in clients:
        client.start(0.0)
    lan.run(10.0)
    assert [c.state for c in clients] == [BOUND, BOUND]
    first = [c.lease.address for c in clients]
    assert first == [ip("10.0.0.10"), ip("10.0.0.11")]
    assert {b.hostname for b in server.active(10.0)} == {"h0.lan", "h1.lan"}
    lan.run(3600.0)                     # an hour of virtual time: renewal every 30 s
    for client in clients:
        kinds = lan.kinds(client)
        assert kinds[:5] == ["probe", "probe", "probe", "bound", "announce"]
        assert kinds.count("renewed") >= 118 and "lost" not in kinds
        assert client.lease.address in first and client.state == BOUND
    # Stopping releases; the server frees the binding at once.
    clients[0].stop(lan.now)
    lan._deliver()
    assert [b.addr for b in server.active(lan.now)] == [clients[1].lease.address]
    assert lan.kinds(clients[0])[-1] == "lost" and server.stats["released"] == 1


def test_lease_expires_when_the_server_goes_away_and_comes_back():
    server = small_server(lease_time=60)
    client, = make_clients(1)
    lan = Lan(server, [client])
    client.start(0.0)
    lan.run(10.0)
    addr = client.lease.address
    lan.server = Dhcp4Server(ip("10.0.0.1"), 24, ip("10.0.0.100"), ip("10.0.0.100"))
    lan.loss = 1.0                      # silence: renew at T1, rebind at T2, expire at 60 s
    lan.run(200.0)
    kinds = lan.kinds(client)
    assert "lost" in kinds and client.state != BOUND
    expiry = [t for t, kind, _ in lan.events[id(client)] if kind == "lost"][0]
    assert expiry == 60.0 and client.stats["lease_expired"] == 1   # counted from the REQUEST
    # A different server (pool .100) comes up: the client's REQUEST for the old address
    # in its DISCOVER is not honoured; it binds the new server's address.
    lan.loss = 0.0
    lan.run(400.0)
    assert client.state == BOUND and client.lease.address == ip("10.0.0.100") != addr


def test_lossy_lan_still_converges_and_keeps_addresses():
    # 30 % of datagrams lost: exchanges take retries, and with a 120 s lease (one RENEWING
    # and one REBINDING attempt, RFC 2131 4.4.5's 60 s floor) some leases lapse.  Every
    # client still ends up bound, always to the same address (the server remembers it).
    server = small_server(lease_time=120)
    clients = make_clients(3, seed=10)
    lan = Lan(server, clients, loss=0.3, seed=3)
    for client in clients:
        client.start(0.0)
    lan.run(100.0)
    assert all(c.state == BOUND for c in clients), [c.state for c in clients]
    lan.run(3000.0)
    addresses = set()
    for client in clients:
        bound = {lease.address for _, kind, lease in lan.events[id(client)] if kind == "bound"}
        assert len(bound) == 1 and client.stats["renewed"] >= 10, client.stats
        addresses |= bound
    assert len(addresses) == 3
    assert sum(c.stats["lease_expired"] for c in clients) >= 1


def test_conflict_on_the_lan_leads_to_decline_and_another_address():
    server = small_server()
    client, = make_clients(1)
    lan = Lan(server, [client], squatters=[ip("10.0.0.10")])
    client.start(0.0)
    lan.run(60.0)
    kinds = lan.kinds(client)
    assert kinds[0] == "probe" and kinds.count("bound") == 1
    assert client.stats["tx.decline"] == 1 and server.stats["declined"] == 1
    assert client.lease.address == ip("10.0.0.11")
    bound_at = [t for t, kind, _ in lan.events[id(client)] if kind == "bound"][0]
    assert bound_at >= 10.0                 # the 10 s wait after DECLINE (RFC 2131 3.1)


def test_pool_running_out_on_the_lan():
    server = Dhcp4Server(ip("10.0.0.1"), 24, ip("10.0.0.10"), ip("10.0.0.11"), lease_time=300)
    clients = make_clients(3, seed=20)
    lan = Lan(server, clients)
    for client in clients:
        client.start(0.0)
    lan.run(30.0)
    waiting = [c for c in clients if c.state != BOUND]
    assert len(waiting) == 1 and server.stats["pool_exhausted"] >= 1
    leaving = next(c for c in clients if c.state == BOUND)
    freed = leaving.lease.address
    leaving.stop(lan.now)
    lan._deliver()
    lan.run(200.0)                          # the waiting client's next DISCOVER finds room
    assert waiting[0].state == BOUND and waiting[0].lease.address == freed


# -- against busybox udhcpc --------------------------------------------------------------------

def test_udhcpc_leases_from_our_server(tmp_path):
    """busybox udhcpc in one namespace, our server on an AF_PACKET socket in the other: the
    lease with its options (udhcpc's script reports them), a renewal, and a RELEASE on
    SIGUSR2.  udhcpc sets no broadcast flag, so the OFFER and ACK go to its MAC directly;
    it renews by unicast from its address, so our side answers ARP for the server."""
    from dhcp4_netns import LinkDriver, VethPair, packet_socket, require_root_and
    require_root_and("udhcpc")
    script = tmp_path / "script.sh"
    script.write_text(
        "#!/bin/sh\n"
        'echo "EVENT $1 ip=$ip mask=$mask router=$router dns=$dns domain=$domain'
        ' lease=$lease mtu=$mtu staticroutes=$staticroutes serverid=$serverid"\n'
        'case "$1" in\n'
        '  bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;\n'
        '  deconfig) ip addr flush dev "$interface" ;;\n'
        "esac\n")
    os.chmod(script, 0o755)
    pair = VethPair(f"d4s{os.getpid() % 100000}", "02:00:00:00:80:0c", "02:00:00:00:80:01")
    proc = None
    try:
        server = udhcpc_server()
        sock = packet_socket(pair.ns_b, pair.if_b)
        driver = LinkDriver(sock, bytes.fromhex("020000008001"), server, 67, addrs=[SERVER])
        proc = subprocess.Popen(
            ["ip", "netns", "exec", pair.ns_a, "udhcpc", "-f", "-i", pair.if_a, "-s",
             str(script), "-t", "5", "-T", "1", "-x", "hostname:lwclient", "-O",
             "staticroutes", "-O", "mtu"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
        seen = []

        def saw(word):
            while not lines.empty():
                seen.append(lines.get())
            return any(line.startswith("EVENT " + word) for line in seen)

        driver.run(lambda: saw("bound"), timeout=20)
        bound = next(line for line in seen if line.startswith("EVENT bound")).split()
        assert bound[2:] == [
            "ip=198.18.80.50", "mask=24", "router=198.18.80.1", "dns=198.18.80.1",
            "domain=lwtest.lan", "lease=8", "mtu=1400", "staticroutes=10.9.0.0/16",
            "198.18.80.254", "0.0.0.0/0", "198.18.80.1", "serverid=198.18.80.1"]
        proc.send_signal(signal.SIGUSR1)              # renew now (busybox would wait 15 s)
        driver.run(lambda: saw("renew"), timeout=10)
        proc.send_signal(signal.SIGUSR2)
        driver.run(lambda: server.stats["released"] == 1, timeout=5)
        kinds = [DhcpMessage.parse(p).message_type for p in driver.received]
        # (udhcpc may repeat a REQUEST, e.g. a renewal that waited for ARP.)
        assert kinds[0] == DISCOVER and kinds[-1] == RELEASE
        assert set(kinds[1:-1]) == {REQUEST} and len(kinds) >= 4
        assert server.stats["tx.offer"] == 1 and server.stats["tx.ack"] == len(kinds) - 2
        assert server.bindings[("id", b"\x01" + UDHCPC_MAC)].hostname == "lwclient"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        pair.close()
