"""The router's DNS names for DHCPv6 clients (lwstack.router.Router on virtual time): a
client's IA_NA address gets AAAA records under the name from its Client FQDN option (RFC
4704) or, without one, the name of the DHCPv4 lease held by the MAC in its DUID, and a PTR
record in ip6.arpa; the records go when the lease ends.  The DNS server is asked with raw
queries (no resolver cache in the way).  Also DnsServer.remove by a record's data."""
import ipaddress
import itertools
import socket

import pytest

from lwstack.proto.dns_server import DnsServer
from lwstack.router import Router
from lwstack.sim import VirtualNetwork
from lwstack.wire import dhcp6 as w
from lwstack.wire.dns import (RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA, TYPE_PTR,
                              Message, build_query, reverse_name)

ROUTER_CONF = "ip=10.0.0.1/24,ip=fd00::1/64,mac=02:00:00:00:00:01,fqdn=gw.lan"
CLIENT_LL = bytes.fromhex("fe80000000000000000000fffe0000aa")
_ids = itertools.count(1)


@pytest.fixture
def net():
    return VirtualNetwork(seed=7)


@pytest.fixture
def lan(net):
    log = []
    router = Router(net, ROUTER_CONF, dhcp="10.0.0.100-10.0.0.200", dns=True, domain="lan",
                    ra="fd00::/64", dhcp6="fd00::100-fd00::1ff", log=log.append)
    asker = net.stack("ip=10.0.0.9/24,mac=02:00:00:00:00:09,dns=10.0.0.1,domain=lan")
    return net, router, asker, log


def ask(stack, name, qtype):
    """Ask the router's DNS server: ``(rcode, [answer data])``."""
    with stack.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(("10.0.0.1", 53))
        ident = next(_ids)
        sock.send(build_query(ident, name, qtype))
        reply = Message.parse(sock.recv(4096))
    assert reply.id == ident
    return reply.rcode, [record.data for record in reply.answers if record.rtype == qtype]


def text(address):
    return str(ipaddress.ip_address(address))


def dhcp6(router, kind, duid, *, fqdn=None, address=None, iaid=1):
    """Hand the router's DHCPv6 server one client message (as a client on the link would
    send it to ff02::1:2); returns the server's reply."""
    msg = w.Message(kind, next(_ids), client_id=duid, ia_na=[w.IaNa(iaid)],
                    rapid_commit=kind == w.SOLICIT)
    if kind != w.SOLICIT:
        msg.server_id = router.dhcp6_server.server.duid
    if address is not None:
        msg.ia_na[0].addresses.append(w.IaAddress(address, 0, 0))
    if fqdn is not None:
        msg.fqdn = w.ClientFqdn(w.FQDN_S, fqdn, partial="." not in fqdn)
    server = router.dhcp6_server.server
    with router.stack.driver.lock:
        sent = len(server.outbox)
        server.receive(msg.emit(), CLIENT_LL, router.stack.driver.now())
        reply = w.parse_message(server.outbox[sent][5])
        router.stack.driver.after_call()
    return reply


def leased(reply):
    return reply.ia_na[0].addresses[0].address


def test_an_auto_client_is_found_by_name_in_both_families(lan):
    net, router, asker, log = lan
    laptop = net.stack("auto,mac=02:00:00:00:00:0a,fqdn=laptop")
    laptop.wait_configured(10)
    v4 = laptop.addresses[0].split("/")[0]
    v6 = next(a for a, _, origin in laptop.ipv6_addresses if origin == "dhcpv6").split("/")[0]
    assert v6 == "fd00::100"
    for name in ("laptop", "laptop.lan"):
        assert ask(asker, name, TYPE_A) == (RCODE_NOERROR, [bytes([10, 0, 0, 100])])
        assert ask(asker, name, TYPE_AAAA) == (RCODE_NOERROR,
                                               [ipaddress.ip_address(v6).packed])
    assert ask(asker, reverse_name(ipaddress.ip_address(v6).packed), TYPE_PTR) == (
        RCODE_NOERROR, ["laptop.lan"])
    # The client's own resolver sees both, through the router.
    from lwstack import socket as lws
    found = {info[4][0] for info in lws.getaddrinfo("laptop", 7, type=socket.SOCK_DGRAM,
                                                   stack=asker)}
    assert found == {v4, v6}
    assert f"DNS laptop.lan -> {v6}" in log
    assert "DHCPSOLICIT 02:00:00:00:00:0a laptop" in log
    assert f"DHCPREPLY {v6} 02:00:00:00:00:0a" in log
    # Closing the stack RELEASEs both leases: both families' records go, the PTR too.
    laptop.close()
    net.run(1)
    assert f"DHCPRELEASE {v6} 02:00:00:00:00:0a" in log
    assert ask(asker, "laptop.lan", TYPE_AAAA) == (RCODE_NXDOMAIN, [])
    assert ask(asker, "laptop.lan", TYPE_A) == (RCODE_NXDOMAIN, [])
    assert ask(asker, reverse_name(ipaddress.ip_address(v6).packed), TYPE_PTR)[1] == []


def test_the_fqdn_option_is_answered_with_s_set_and_names_the_lease_until_it_expires(lan):
    net, router, asker, _ = lan
    reply = dhcp6(router, w.SOLICIT, w.duid_ll(bytes.fromhex("020000000021")), fqdn="box")
    assert reply.msg_type == w.REPLY
    # RFC 4704 4.2: S in the reply says the server did the AAAA update (it did).
    assert reply.fqdn == w.ClientFqdn(w.FQDN_S, "box.lan", partial=False)
    address = leased(reply)
    assert ask(asker, "box.lan", TYPE_AAAA) == (RCODE_NOERROR, [address])
    assert ask(asker, "box.lan", TYPE_A)[1] == []              # no DHCPv4 lease: NODATA
    net.run(router.dhcp6_server.server.valid_lifetime + 1)     # never renewed
    assert ask(asker, "box.lan", TYPE_AAAA) == (RCODE_NXDOMAIN, [])
    assert ask(asker, reverse_name(address), TYPE_PTR)[1] == []


def test_a_client_without_fqdn_is_named_after_the_dhcpv4_lease_of_its_mac(lan):
    net, router, asker, _ = lan
    nas = net.stack("dhcp,mac=02:00:00:00:00:0b,fqdn=nas")
    nas.wait_configured(10)
    reply = dhcp6(router, w.SOLICIT, w.duid_llt(bytes.fromhex("02000000000b"), 12345))
    assert reply.fqdn is None
    address = leased(reply)
    assert ask(asker, "nas", TYPE_AAAA) == (RCODE_NOERROR, [address])
    assert ask(asker, reverse_name(address), TYPE_PTR) == (RCODE_NOERROR, ["nas.lan"])
    # A DUID without a MAC (DUID-EN) and no FQDN: a lease, but no name.
    other = dhcp6(router, w.SOLICIT, bytes.fromhex("0002000000090102"))
    assert ask(asker, reverse_name(leased(other)), TYPE_PTR)[1] == []
    # The DHCPv4 lease ends (RELEASE at close): the name it lent goes too.
    nas.close()
    net.run(1)
    assert ask(asker, "nas.lan", TYPE_AAAA) == (RCODE_NXDOMAIN, [])


def test_a_name_belongs_to_the_newest_lease_and_returns_to_the_older_one(lan):
    net, router, asker, _ = lan
    old = w.duid_ll(bytes.fromhex("020000000031"))
    new = w.duid_ll(bytes.fromhex("020000000032"))
    first = leased(dhcp6(router, w.SOLICIT, old, fqdn="web"))
    second = leased(dhcp6(router, w.SOLICIT, new, fqdn="web"))
    assert first != second
    assert ask(asker, "web", TYPE_AAAA) == (RCODE_NOERROR, [second])
    assert ask(asker, reverse_name(first), TYPE_PTR)[1] == []
    # The older lease renewing does not take the name back ...
    dhcp6(router, w.RENEW, old, fqdn="web", address=first)
    assert ask(asker, "web", TYPE_AAAA) == (RCODE_NOERROR, [second])
    # ... but it has it again once the newer one is released.
    dhcp6(router, w.RELEASE, new, address=second)
    assert ask(asker, "web", TYPE_AAAA) == (RCODE_NOERROR, [first])
    assert ask(asker, reverse_name(first), TYPE_PTR) == (RCODE_NOERROR, ["web.lan"])


def test_a_client_cannot_take_a_static_name(lan):
    net, router, asker, log = lan
    reply = dhcp6(router, w.SOLICIT, w.duid_ll(bytes.fromhex("020000000041")), fqdn="gw")
    assert ask(asker, "gw.lan", TYPE_AAAA) == (RCODE_NOERROR, [ipaddress.ip_address(
        "fd00::1").packed])
    assert ask(asker, "gw.lan", TYPE_A) == (RCODE_NOERROR, [bytes([10, 0, 0, 1])])
    assert f"DNS gw.lan not given to {text(leased(reply))}: a static name" in log
    # Nor can a DHCPv4 client.
    impostor = net.stack("dhcp,mac=02:00:00:00:00:42,fqdn=gw")
    impostor.wait_configured(10)
    assert ask(asker, "gw", TYPE_A) == (RCODE_NOERROR, [bytes([10, 0, 0, 1])])


def test_without_the_dns_server_the_fqdn_option_says_no_update(net):
    router = Router(net, ROUTER_CONF, ra="fd00::/64", dhcp6="fd00::100-fd00::1ff")
    reply = dhcp6(router, w.SOLICIT, w.duid_ll(bytes.fromhex("020000000051")), fqdn="box")
    assert reply.fqdn.flags == w.FQDN_N | w.FQDN_O


def test_dns_server_removes_one_record_by_its_data():
    server = DnsServer()
    server.add_host("h.lan", ["10.0.0.5", "10.0.0.6", "fd00::5"], ptr=False)
    server.add_ptr("fd00::5", "h.lan")
    server.add_ptr("fd00::5", "alias.lan")
    assert server.remove("h.lan", TYPE_A, "10.0.0.5") == 1
    assert server.remove("h.lan", TYPE_A, "10.0.0.5") == 0
    assert server.remove("H.LAN.", TYPE_AAAA, ipaddress.ip_address("fd00::5").packed) == 1
    ptr = reverse_name(ipaddress.ip_address("fd00::5").packed)
    assert server.remove(ptr, TYPE_PTR, "ALIAS.lan.") == 1
    assert server.remove("h.lan", TYPE_A, "10.0.0.6") == 1    # the last record
    assert server.remove("h.lan") == 0                      # the name is gone entirely
    assert server.remove(ptr) == 1                          # h.lan's PTR stayed
    with pytest.raises(ValueError, match="needs its type"):
        server.remove("h.lan", data="10.0.0.5")


def test_the_router_is_the_links_preferred_dhcpv6_server_and_says_its_addresses(lan):
    net, router, _, _ = lan
    solicit = w.Message(w.SOLICIT, 99, client_id=w.duid_ll(bytes.fromhex("020000000061")),
                        ia_na=[w.IaNa(1)])
    server = router.dhcp6_server.server
    with router.stack.driver.lock:
        server.receive(solicit.emit(), CLIENT_LL, router.stack.driver.now())
        advertise = w.parse_message(server.outbox[-1][5])
    # RFC 8415 18.2.1: 255 lets the client request at once, not wait out its first RT.
    assert (advertise.msg_type, advertise.preference) == (w.ADVERTISE, 255)
    # Its IPv6 address is listed while still in DAD (the line is printed at start).
    assert router.describe().startswith("10.0.0.1/24, fd00::1/64 (02:00:00:00:00:01); ")
