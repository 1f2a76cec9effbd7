"""Automatic IPv6 configuration between stacks on virtual time: SLAAC and router discovery
from a stack running the RA server (RFC 4861 6, RFC 4862), DAD conflicts between stacks,
DHCPv6 (RFC 8415) against the DHCPv6 server as a host service, and "configured"."""
import random

import pytest

from ipv6_helpers import A, A6_MAC, B6_MAC, Peer6, icmp6_of_type, ipv6_packets, link_local_of
from lwstack import socket as lwsocket
from lwstack.iface.addrgen import eui64_address, hash_address
from lwstack.proto.dhcp6_server import Dhcp6Server
from lwstack.proto.ra_server import RaPrefix, RaServer, RouterConfig
from lwstack.wire import dhcp6 as dhcp6wire
from lwstack.wire import icmpv6
from lwstack.wire.ipv6 import addr6_to_str

ROUTER_MAC = "02:00:00:00:00:01"
PREFIX = A("fd00::")


def router_stack(net, *, managed=False, other=False, dhcp6=False, **config):
    """A stack at fd00::1 advertising fd00::/64 with DNS (and a DHCPv6 server if asked)."""
    stack = net.stack(f"ip=fd00::1/64,mac={ROUTER_MAC}")
    options = dict(prefixes=[RaPrefix(PREFIX)], max_interval=30, managed=managed,
                   other=other, dns_servers=[A("fd00::53")], domains=["lan"])
    options.update(config)
    router = RaServer(RouterConfig(**options), random.Random(7))
    with stack.driver.lock:
        now = net.now
        stack.host.start_router(router, now)
        if dhcp6:
            server = Dhcp6Server(dhcp6wire.duid_ll(stack.host.mac),
                                 pool=(A("fd00::100"), A("fd00::1ff")),
                                 dns_servers=[A("fd00::1")], domains=["example"])
            stack.host.start_dhcp6_server(server, now)
        stack.driver.after_call()
    return stack, router


def eui64(mac_text, prefix=PREFIX):
    return eui64_address(prefix, bytes.fromhex(mac_text.replace(":", "")))


# -- SLAAC and router discovery -----------------------------------------------------------------

def test_slaac_address_default_router_dns_hop_limit_and_mtu_from_the_router(net):
    router, _ = router_stack(net, hop_limit=32, mtu=1400)
    client = net.stack(f"mac={A6_MAC},rd,slaac")
    assert client.wait_ipv6_configured(10)
    address = addr6_to_str(eui64(A6_MAC))
    assert (address + "/64", "preferred", "slaac") in client.ipv6_addresses
    host = client.host
    assert list(host.nd.routers) == [link_local_of(ROUTER_MAC)]
    assert host.all_name_servers() == ([A("fd00::53")], ["lan"])
    assert host.hop_limit6 == 32 and host.mtu6 == 1400
    # Off-link destinations go to the router's MAC (learnt from the RA's SLLA option), from
    # the global address (RFC 6724 rule 2).
    sock = client.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
    sock.connect(("2001:db8::1", 53))
    assert sock.getsockname()[0] == address
    sock.send(b"far away")
    net.run(0.5)
    assert router.host.stats["drop.ipv6_not_for_us"] == 1     # a host does not forward


def test_the_slaac_address_follows_the_fqdn_hash_when_configured(net):
    router_stack(net)
    client = net.stack(f"mac={A6_MAC},slaac,fqdn=web.lan")
    assert client.wait_ipv6_configured(10)
    expected = addr6_to_str(hash_address(PREFIX, "web.lan"))
    assert (expected + "/64", "preferred", "slaac") in client.ipv6_addresses


def test_rd_without_slaac_learns_the_router_but_forms_no_address(net):
    router_stack(net)
    client = net.stack(f"mac={A6_MAC},rd")
    assert client.wait_ipv6_configured(10)
    assert [origin for _, _, origin in client.ipv6_addresses] == ["link-local"]
    assert client.host.nd.routers


def test_without_rd_router_advertisements_are_ignored(net):
    router_stack(net)
    client = net.stack(f"mac={A6_MAC}")
    net.run(40)
    assert not client.host.nd.routers
    assert client.stats()["drop.ra_ignored"] >= 1


def test_a_late_host_solicits_and_gets_an_answer_within_half_a_second(net):
    _, router = router_stack(net)
    net.run(100)                           # the initial RAs are long gone
    before = router.stats["ra_sent"]
    peer = Peer6(net)
    client = net.stack(f"mac={A6_MAC},rd,slaac")
    net.run_until(lambda: client.host.stats["rs_sent"] == 1, 5)
    rs_at = net.now
    assert net.run_until(lambda: router.stats["ra_sent"] > before, 1)
    assert net.now - rs_at <= 0.5                      # MAX_RA_DELAY_TIME
    solicitations = icmp6_of_type(peer.collect(), icmpv6.TYPE_ROUTER_SOLICITATION)
    assert solicitations[0].header.src == link_local_of(A6_MAC)     # after DAD, with SLLA
    assert solicitations[0].nd.source_lladdr == bytes.fromhex("02000000000a")
    assert client.wait_ipv6_configured(5)


def test_stopping_the_router_sends_a_final_advertisement_that_removes_it(net):
    router, _ = router_stack(net)
    client = net.stack(f"mac={A6_MAC},rd,slaac")
    assert client.wait_ipv6_configured(10)
    peer = Peer6(net)
    with router.driver.lock:
        router.host.stop_router(net.now)
        router.driver.after_call()
    net.run(0.1)
    final = icmp6_of_type(peer.collect(), icmpv6.TYPE_ROUTER_ADVERTISEMENT)
    assert [p.nd.router_lifetime for p in final] == [0]
    assert not client.host.nd.routers
    assert not client.ipv6_configured


# -- duplicate address detection between stacks ---------------------------------------------------

def test_a_second_stack_with_the_same_static_address_loses_it(net):
    first = net.stack(f"mac={A6_MAC},ip=fd00::5/64")
    net.run(3)
    second = net.stack(f"mac={B6_MAC},ip=fd00::5/64")
    net.run(3)
    assert ("fd00::5/64", "preferred", "manual") in first.ipv6_addresses
    assert all(a != "fd00::5/64" for a, _, _ in second.ipv6_addresses)
    assert second.host.stats["ipv6_dad_failed"] == 1
    assert not second.ipv6_configured


def test_a_duplicate_link_local_address_disables_ipv6(net):
    first = net.stack(f"mac={A6_MAC},fqdn=twin.lan")
    net.run(3)
    twin = net.stack(f"mac={B6_MAC},fqdn=twin.lan")     # one name: one hash link-local
    net.run(3)
    assert first.link_local is not None
    assert twin.host.ipv6_disabled and twin.link_local is None   # RFC 4862 5.4.5
    assert not twin.ipv6_configured


def test_two_slaac_hosts_with_one_fqdn_do_not_both_use_the_hash_address(net):
    router_stack(net)
    first = net.stack(f"mac={A6_MAC},slaac,fqdn=web.lan")
    assert first.wait_ipv6_configured(10)
    second = net.stack(f"mac={B6_MAC},slaac,fqdn=web.lan")
    net.run(10)
    hashed = addr6_to_str(hash_address(PREFIX, "web.lan")) + "/64"
    assert (hashed, "preferred", "slaac") in first.ipv6_addresses
    assert all(a != hashed for a, _, _ in second.ipv6_addresses)


# -- DHCPv6 -------------------------------------------------------------------------------------

def test_dhcp6_from_the_configuration_leases_an_address_and_name_servers(net):
    router_stack(net, dhcp6=True)
    client = net.stack(f"mac={A6_MAC},dhcp6")
    assert client.wait_ipv6_configured(15)
    assert ("fd00::100/128", "preferred", "dhcpv6") in client.ipv6_addresses
    assert client.host.name_servers["dhcp6"] == ((A("fd00::1"),), ("example",))


def test_the_managed_flag_starts_stateful_dhcp6_beside_slaac(net):
    router_stack(net, managed=True, dhcp6=True)
    client = net.stack(f"mac={A6_MAC},rd,slaac")
    assert client.wait_ipv6_configured(15)
    origins = sorted(origin for _, _, origin in client.ipv6_addresses)
    assert origins == ["dhcpv6", "link-local", "slaac"]
    assert client.host.dhcp6.client.mode == "stateful"
    servers, domains = client.host.all_name_servers()
    assert servers == [A("fd00::1"), A("fd00::53")] and domains == ["example", "lan"]


def test_the_other_flag_starts_stateless_dhcp6_for_name_servers_only(net):
    router_stack(net, other=True, dhcp6=True)
    client = net.stack(f"mac={A6_MAC},rd,slaac")
    assert client.wait_ipv6_configured(15)
    net.run_until(lambda: "dhcp6" in client.host.name_servers, 5)
    assert client.host.dhcp6.client.mode == "stateless"
    assert client.host.name_servers["dhcp6"] == ((A("fd00::1"),), ("example",))
    assert "dhcpv6" not in [origin for _, _, origin in client.ipv6_addresses]


def test_a_leased_address_in_use_is_declined_and_another_one_leased(net):
    router_stack(net, dhcp6=True)
    squatter = net.stack(f"mac={B6_MAC},ip=fd00::100/64")    # holds the first pool address
    net.run(3)
    client = net.stack(f"mac={A6_MAC},dhcp6")
    assert client.wait_ipv6_configured(30)
    addresses = [a for a, _, origin in client.ipv6_addresses if origin == "dhcpv6"]
    assert addresses == ["fd00::101/128"]
    assert client.host.stats["ipv6_dad_failed"] == 1
    assert ("fd00::100/64", "preferred", "manual") in squatter.ipv6_addresses


def test_auto6_is_configured_with_slaac_dhcp6_and_a_router(net):
    router_stack(net, managed=True, dhcp6=True)
    client = net.stack(f"mac={A6_MAC},auto6")
    assert client.wait_ipv6_configured(15)
    origins = sorted(origin for _, _, origin in client.ipv6_addresses)
    assert origins == ["dhcpv6", "link-local", "slaac"]


def test_configured_means_every_advertised_prefix_has_its_address(net):
    # Two prefixes: "configured" waits until both SLAAC addresses passed DAD, not just the
    # first global address to do so.
    router_stack(net, prefixes=[RaPrefix(PREFIX), RaPrefix(A("fd01::"))])
    client = net.stack(f"mac={A6_MAC},rd,slaac")
    assert client.wait_ipv6_configured(15)
    assert sorted(client.ipv6_addresses) == sorted([
        (addr6_to_str(eui64(A6_MAC)) + "/64", "preferred", "slaac"),
        (addr6_to_str(eui64(A6_MAC, A("fd01::"))) + "/64", "preferred", "slaac"),
        (client.link_local + "/64", "preferred", "link-local")])


def test_not_configured_without_a_router_when_rd_was_asked(net):
    client = net.stack(f"mac={A6_MAC},rd,slaac")
    assert not client.wait_ipv6_configured(20)
    assert client.link_local is not None
    # RFC 7559: three solicitations 4 s apart, then a backoff.
    assert client.host.stats["rs_sent"] >= 3


@pytest.mark.parametrize("config", ["rd", "slaac", "dhcp6", "auto6"])
def test_autoconfiguration_items_are_accepted_now(net, config):
    net.stack(config)


def test_closing_stacks_releases_the_lease_and_withdraws_the_router(net):
    router, _ = router_stack(net, managed=True, dhcp6=True)
    server = router.host.services[-1].server
    client = net.stack(f"mac={A6_MAC},rd,slaac")
    watcher = net.stack(f"mac={B6_MAC},rd")
    assert client.wait_ipv6_configured(15) and watcher.wait_ipv6_configured(15)
    assert len(server.active(net.now)) == 2          # the M flag counts for "rd" too
    client.close()                                   # RFC 8415 18.2.7: RELEASE
    net.run(1)
    assert [lease.address for lease in server.active(net.now)] == [
        watcher.host.dhcp6.client.info.addresses[0].address]
    router.close()                                   # RFC 4861 6.2.5: the final RA
    net.run(1)
    assert not watcher.host.nd.routers


def test_an_ra_heard_before_the_link_local_address_still_starts_dhcp6(net):
    peer = Peer6(net)
    client = net.stack(f"mac={A6_MAC},rd")
    net.run(0.1)
    advert = icmpv6.RouterAdvertisement(managed=True, router_lifetime=600,
                                        source_lladdr=peer.mac)
    peer.send_icmp(bytes.fromhex("333300000001"), A("ff02::1"),
                   advert.emit(peer.link_local, A("ff02::1")), src=peer.link_local,
                   hop_limit=255)
    net.run(0.0)
    assert client.link_local is None and client.host.slaac.managed
    net.run(5)
    peer.collect()
    dhcp = [p for p in ipv6_packets(peer.received) if p.protocol == 17 and p.udp[1] == 547]
    assert dhcp and dhcp[0].header.src == link_local_of(A6_MAC)
    assert dhcp[0].header.dst == A("ff02::1:2") and dhcp[0].udp[2][0] == 1   # SOLICIT
