"""DHCPv4 in the stack, on virtual time: a stack with ``dhcp`` leasing from a router stack
(lwstack.router.Router), renewal, expiry, RELEASE at close, DECLINE after a conflict, the
options of a lease (routes, classless routes, MTU, name servers) applied to the host and
taken back, and Stack.wait_configured."""
import errno
import socket

import pytest

from lwstack.iface.autoconf import VIRTUAL_LINK_ACD, Dhcp4ServerService
from lwstack.proto.dhcp4 import BOUND, ConflictDetection
from lwstack.proto.dhcp4_server import Dhcp4Server
from lwstack.router import Router
from lwstack.sim import VirtualNetwork
from stack_helpers import Peer, ip

ROUTER_CONF = "ip=10.0.0.1/24,mac=02:00:00:00:00:01"


def ipv4(stack):
    """The stack's IPv4 addresses (``stack.addresses`` also lists IPv6 ones, link-local
    included)."""
    return [a for a in stack.addresses if ":" not in a]


def routes_of(stack):
    return sorted((str(r.network >> 24) + "." + str((r.network >> 16) & 255) + "."
                   + str((r.network >> 8) & 255) + "." + str(r.network & 255),
                   r.prefix_len, r.gateway and ".".join(map(str, r.gateway)))
                  for r in stack.host.routes.routes)


@pytest.fixture
def lan():
    net = VirtualNetwork(seed=7)
    log = []
    router = Router(net, ROUTER_CONF, dhcp="10.0.0.100-10.0.0.110", dns=True, domain="lan",
                    lease_time=600, log=log.append)
    return net, router, log


def test_a_dhcp_stack_is_configured_by_the_router_within_two_seconds(lan):
    net, router, log = lan
    client = net.stack("dhcp,fqdn=alpha,mac=02:00:00:00:00:0a")
    assert not client.configured and ipv4(client) == []
    client.wait_configured(timeout=10)
    # RFC 5227 probing on a virtual link (VIRTUAL_LINK_ACD) takes at most 1.5 s.
    assert net.now <= 2.0
    assert ipv4(client) == ["10.0.0.100/24"]
    assert routes_of(client) == [("0.0.0.0", 0, "10.0.0.1"), ("10.0.0.0", 24, None)]
    assert client.name_servers() == (["10.0.0.1"], ["lan"])
    assert client.dhcp4.state == BOUND
    assert log[:4] == ["DHCPDISCOVER 02:00:00:00:00:0a alpha",
                       "DHCPOFFER 10.0.0.100 02:00:00:00:00:0a",
                       "DHCPREQUEST 10.0.0.100 02:00:00:00:00:0a alpha",
                       "DHCPACK 10.0.0.100 02:00:00:00:00:0a"]
    assert router.leases()[0][:3] == ("10.0.0.100", "02:00:00:00:00:0a", "alpha")
    # The address works: the router pings it through its own stack.
    with router.stack.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) as ping:
        ping.settimeout(1)
        ping.sendto(b"\x08\0\0\0\0\0\0\1hello", ("10.0.0.100", 0))
        reply, source = ping.recvfrom(100)
    assert reply[0] == 0 and source[0] == "10.0.0.100"


def test_probes_announce_and_the_address_is_not_used_before_them(lan):
    net, router, _ = lan
    peer = Peer(net)
    client = net.stack("dhcp,mac=02:00:00:00:00:0a")
    client.wait_configured(timeout=10)
    arps = [(p.sender_ip, p.target_ip) for _, p in peer.arps(peer.collect())
            if p.sender_mac == bytes.fromhex("02000000000a")]
    # Three probes from 0.0.0.0, then two announcements (RFC 5227 2.1.1 and 2.3), and no
    # separate gratuitous ARP from add_address.
    assert arps[:3] == [(ip("0.0.0.0"), ip("10.0.0.100"))] * 3
    net.run(2)
    peer.collect()
    arps = [(p.sender_ip, p.target_ip) for _, p in peer.arps(peer.received)
            if p.sender_mac == bytes.fromhex("02000000000a")]
    assert arps[3:] == [(ip("10.0.0.100"), ip("10.0.0.100"))] * 2


def test_renewal_at_t1_keeps_the_address_and_extends_the_lease(lan):
    net, router, log = lan
    client = net.stack("dhcp,mac=02:00:00:00:00:0a")
    client.wait_configured(timeout=10)
    bound_at = net.now
    first_expiry = router.leases()[0][3]
    net.run(320)                                  # T1 = 300 s (50 % of 600)
    assert client.dhcp4.stats["renewed"] == 1
    assert ipv4(client) == ["10.0.0.100/24"] and client.configured
    assert router.leases()[0][3] > first_expiry + 290
    assert client.dhcp4.lease.obtained == pytest.approx(bound_at + 300, abs=2)
    # The renewal went unicast to the server (RENEWING, RFC 2131 4.4.5).
    assert log[-2:] == ["DHCPREQUEST 10.0.0.100 02:00:00:00:00:0a",
                        "DHCPACK 10.0.0.100 02:00:00:00:00:0a"]
    net.run(3600)
    assert client.dhcp4.stats["renewed"] >= 7 and ipv4(client) == ["10.0.0.100/24"]


def test_expiry_removes_the_address_and_sockets_fail_like_linux(lan):
    net, router, _ = lan
    client = net.stack("dhcp,mac=02:00:00:00:00:0a")
    client.wait_configured(timeout=10)
    udp = client.socket()
    udp.bind(("10.0.0.100", 5000))
    listener = router.stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("", 80))
    listener.listen()
    tcp = client.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.settimeout(5)
    tcp.connect(("10.0.0.1", 80))
    accepted, _ = listener.accept()
    with router.stack.driver.lock:                 # the DHCP server stops: no renewal
        router.stack.host.remove_service(router.dhcp_server)
    net.run(600)
    assert ipv4(client) == [] and not client.configured
    assert client.dhcp4.stats["lost"] == 1
    assert routes_of(client) == []
    assert client.name_servers() == ([], [])
    with pytest.raises(OSError) as failure:
        udp.sendto(b"x", ("10.0.0.1", 9))
    assert failure.value.errno == errno.EINVAL
    # TCP: the connection cannot send any more and times out, as on Linux.
    sent_before = client.host.tcp.stats["segments_unroutable"]
    tcp.settimeout(None)
    tcp.sendall(b"hello")
    with pytest.raises(OSError) as failure:
        for _ in range(100):
            tcp.send(b"x" * 1000)
            net.run(60)
    assert failure.value.errno == errno.ETIMEDOUT
    accepted.close()
    assert client.host.tcp.stats["segments_unroutable"] > sent_before
    with pytest.raises(TimeoutError, match="DHCPv4 lease"):
        client.wait_configured(timeout=5)


def test_release_at_close_frees_the_lease(lan):
    net, router, log = lan
    client = net.stack("dhcp,fqdn=alpha,mac=02:00:00:00:00:0a")
    client.wait_configured(timeout=10)
    assert len(router.leases()) == 1
    client.close()
    net.run(1)
    assert router.leases() == []
    assert router.dhcp_server.server.stats["released"] == 1
    assert log[-1] == "DHCPRELEASE 10.0.0.100 02:00:00:00:00:0a"
    # The name went with the lease.
    with router.stack.as_default():
        with pytest.raises(socket.gaierror):
            socket_mod().getaddrinfo("alpha.lan", 80)


def socket_mod():
    from lwstack import socket as lws
    return lws


def test_an_address_in_use_is_declined_and_the_next_one_taken(lan):
    net, router, log = lan
    net.stack("ip=10.0.0.100/24,mac=02:00:00:00:00:99")      # a squatter without a lease
    client = net.stack("dhcp,mac=02:00:00:00:00:0a")
    client.wait_configured(timeout=30)
    assert ipv4(client) == ["10.0.0.101/24"]
    assert client.host.stats["arp_probe_conflict"] == 1
    assert "DHCPDECLINE 10.0.0.100 02:00:00:00:00:0a" in log
    assert router.dhcp_server.server.stats["declined"] == 1
    # RFC 2131 3.1 step 5: at least 10 s between the DECLINE and the next DISCOVER.
    assert net.now >= 10


def test_two_clients_get_different_addresses(lan):
    net, router, _ = lan
    a = net.stack("dhcp,mac=02:00:00:00:00:0a")
    b = net.stack("dhcp,mac=02:00:00:00:00:0b")
    a.wait_configured(timeout=10)
    b.wait_configured(timeout=10)
    assert {a.addresses[0], b.addresses[0]} == {"10.0.0.100/24", "10.0.0.101/24"}


def _custom_server(net, **options):
    server_stack = net.stack("ip=10.0.0.1/24")
    server = Dhcp4Server(ip("10.0.0.1"), 24, ip("10.0.0.50"), ip("10.0.0.60"), **options)
    with server_stack.driver.lock:
        server_stack.host.add_service(Dhcp4ServerService(server), net.now)
    return server_stack, server


def test_classless_routes_mtu_and_their_removal():
    net = VirtualNetwork(seed=3)
    _custom_server(net, routers=(ip("10.0.0.1"),), dns=(ip("10.0.0.53"),), domain="corp",
                   mtu=1400, lease_time=100,
                   routes=((ip("192.168.7.0"), 24, ip("10.0.0.254")),
                           (ip("172.16.0.0"), 12, ip("192.0.0.9"))))   # gateway off-link
    client = net.stack("dhcp,mtu=1500")
    client.wait_configured(timeout=10)
    # RFC 3442: with option 121 the router option is ignored; the server adds the default.
    assert routes_of(client) == [("0.0.0.0", 0, "10.0.0.1"), ("10.0.0.0", 24, None),
                                 ("192.168.7.0", 24, "10.0.0.254")]
    assert client.dhcp4.stats["route_gateway_not_on_link"] == 1
    assert client.mtu == 1400 and client.host.tcp.mtu == 1400
    assert client.name_servers() == (["10.0.0.53"], ["corp"])
    client.close()
    assert client.mtu == 1500 and routes_of(client) == []


def test_a_server_mtu_never_raises_the_configured_one():
    net = VirtualNetwork(seed=3)
    _custom_server(net, mtu=9000)
    client = net.stack("dhcp")
    client.wait_configured(timeout=10)
    assert client.mtu == 1500


def test_a_static_gateway_and_static_name_servers_stay():
    net = VirtualNetwork(seed=4)
    _custom_server(net, routers=(ip("10.0.0.1"),), dns=(ip("10.0.0.1"),), domain="lan",
                   lease_time=100)
    client = net.stack("ip=10.0.0.2/24,gw=10.0.0.254,dns=10.0.0.53,domain=corp,dhcp")
    client.wait_configured(timeout=10)
    assert ipv4(client) == ["10.0.0.2/24", "10.0.0.50/24"]
    assert ("0.0.0.0", 0, "10.0.0.254") in routes_of(client)
    assert client.name_servers() == (["10.0.0.53", "10.0.0.1"], ["corp", "lan"])
    client.close()
    assert routes_of(client) == [("0.0.0.0", 0, "10.0.0.254"), ("10.0.0.0", 24, None)]


def test_wait_configured_times_out_naming_what_is_missing():
    net = VirtualNetwork(seed=5)
    client = net.stack("dhcp")
    with pytest.raises(TimeoutError, match=r"DHCPv4 lease \(SELECTING\)"):
        client.wait_configured(timeout=3)
    assert net.now == pytest.approx(3)
    static = net.stack("ip=10.0.0.9/24")
    assert static.configured and static.wait_configured(0) is static


def test_the_rfc_timings_can_be_asked_for():
    net = VirtualNetwork(seed=6)
    Router(net, ROUTER_CONF, dhcp="10.0.0.100-10.0.0.110")
    client = net.stack("dhcp", acd=ConflictDetection())
    client.wait_configured(timeout=20)
    assert net.now > 3.0              # three probes 1-2 s apart, then 2 s (RFC 5227 1.1)
    assert VIRTUAL_LINK_ACD.probe_num == 3
