"""The issue's end state on virtual time: a stack with ``auto`` on a LAN served by
lwstack.router.Router (lwrouter) with DHCPv4, DNS, router advertisements and DHCPv6 gets a
DHCPv4 address, a SLAAC and a DHCPv6 address, a default route for both families and a
working resolver, within seconds."""
import ipaddress
import socket

import pytest

from lwstack import socket as lws
from lwstack.iface.addrgen import hash_address
from lwstack.router import Router, parse_prefix, parse_range6
from lwstack.wire.ipv6 import addr6_to_str, parse_addr6

ROUTER_CONF = "ip=10.0.0.1/24,ip=fd00::1/64,mac=02:00:00:00:00:01,fqdn=gw.lan"


def lan(net, **options):
    settings = dict(dhcp="10.0.0.100-10.0.0.200", dns=True, domain="lan", ra="fd00::/64",
                    dhcp6="fd00::100-fd00::1ff")
    settings.update(options)
    return Router(net, ROUTER_CONF, **settings)


def test_auto_gets_both_families_and_a_resolver_from_the_router(net):
    router = lan(net)
    client = net.stack("auto,mac=02:00:00:00:00:0a,fqdn=laptop.lan")
    start = net.now
    client.wait_configured(10)
    assert net.now - start < 5
    origins = {origin: address for address, _, origin in client.ipv6_addresses}
    # With an fqdn the SLAAC identifier is its iothaddr hash (as iothconf does).
    assert origins["slaac"] == addr6_to_str(hash_address(parse_addr6("fd00::"),
                                                         "laptop.lan")) + "/64"
    assert origins["dhcpv6"] == "fd00::100/128"
    assert client.addresses[0] == "10.0.0.100/24"
    host = client.host
    assert host.routes.lookup(bytes(4))[0].gateway == bytes([10, 0, 0, 1])
    assert addr6_to_str(list(host.nd.routers)[0]) == router.stack.link_local
    assert [str(ipaddress.ip_address(a)) for a in host.all_name_servers()[0]] == [
        "10.0.0.1", "fd00::1"]
    # The resolver answers through the router: the router's own name in both families.
    infos = lws.getaddrinfo("gw", 53, type=socket.SOCK_DGRAM, stack=client)
    assert {info[4][0] for info in infos} == {"10.0.0.1", "fd00::1"}
    six = client.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    six.connect(("gw.lan", 53))
    assert six.getpeername()[0] == "fd00::1"
    assert "RA fd00::/64 M O" in router.describe()
    assert "DHCPv6 fd00::100-fd00::1ff" in router.describe()


def test_hash_addresses_follow_the_client_name(net):
    lan(net, dhcp6="hash")
    client = net.stack("dhcp6,rd,mac=02:00:00:00:00:0b,fqdn=printer.lan")
    client.wait_configured(10)
    leased = [a for a, _, origin in client.ipv6_addresses if origin == "dhcpv6"]
    assert leased == [addr6_to_str(hash_address(parse_addr6("fd00::"), "printer.lan")) + "/128"]


def test_closing_the_router_withdraws_it(net):
    router = lan(net)
    client = net.stack("rd,slaac,mac=02:00:00:00:00:0c")
    client.wait_configured(10)
    router.close()
    net.run(1)
    assert not client.host.nd.routers


def test_argument_errors():
    assert parse_prefix("fd00::1/64") == (parse_addr6("fd00::"), 64)
    assert parse_range6("hash") == "hash"
    for bad in ("fd00::/129", "nonsense"):
        with pytest.raises(ValueError, match="an IPv6 prefix is ADDR/LEN"):
            parse_prefix(bad)
    with pytest.raises(ValueError, match="first address is after its last"):
        parse_range6("fd00::200-fd00::100")


def test_dns_advertised_needs_an_address_in_the_prefix(net):
    with pytest.raises(ValueError, match="give the router an address in the prefix"):
        Router(net, "ip=10.0.0.1/24", dns=True, ra="fd00::/64")
    with pytest.raises(ValueError, match="hash needs a /64 prefix"):
        Router(net, "ip=10.0.0.1/24", dhcp6="hash")
