"""Names through a stack: lwstack.socket's getaddrinfo & co. against the stdlib's for what
needs no DNS (numeric hosts, services, flags, errors), and through a router stack's DNS
server on virtual time (DHCP-given servers and search domain, static dns=/domain=, caching,
TC -> TCP fallback, forwarding, PTR, RFC 6724 order, create_connection falling over)."""
import socket

import pytest

from lwstack import socket as lws
from lwstack.proto.hosts import HostsTable
from lwstack.router import Router
from lwstack.sim import VirtualNetwork

ROUTER_CONF = "ip=10.0.0.1/24,fqdn=gw.lan"


def outcome(function, *args, **kwargs):
    """The result, or the exception's type and arguments, for side-by-side comparisons."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:             # noqa: BLE001 (compared, not swallowed)
        return type(exc), exc.args


@pytest.fixture
def stack():
    net = VirtualNetwork(seed=11)
    return net.stack("ip=10.0.0.2/24")


# -- side by side with the stdlib (no DNS involved) -----------------------------------------------

GETADDRINFO_CASES = [
    ("127.0.0.1", 80), ("127.0.0.1", "80"), ("127.0.0.1", b"80"), (b"10.1.2.3", None),
    ("127.0.0.1", "domain"), ("127.0.0.1", "http"), ("10.0.0.1", "nosuchservice"),
    ("127.1", 7), ("0x7f.1", 7), ("1.2.3", 0), ("017.0.0.1", 1), ("1.2.3.256", 1, 0, 0, 0, socket.AI_NUMERICHOST),
    ("127.0.0.1", 70000), ("127.0.0.1", -1), ("127.0.0.1", "  80"), ("127.0.0.1", "+80"),
    ("127.0.0.1", ""), ("127.0.0.1", 80.0), ("::1", 80), ("fe80::1%3", 22), ("::ffff:1.2.3.4", 5),
    (None, 80), (None, None), ("", 80),
    ("127.0.0.1", 80, socket.AF_INET6), ("::1", 80, socket.AF_INET), ("127.0.0.1", 80, 12345),
    ("127.0.0.1", 80, 0, socket.SOCK_STREAM), ("127.0.0.1", 80, 0, socket.SOCK_DGRAM),
    ("127.0.0.1", 80, 0, socket.SOCK_RAW), ("127.0.0.1", None, 0, socket.SOCK_RAW),
    ("127.0.0.1", 80, 0, socket.SOCK_SEQPACKET), ("127.0.0.1", 80, 0, 12345),
    ("127.0.0.1", 80, 0, socket.SOCK_STREAM, socket.IPPROTO_UDP),
    ("127.0.0.1", 80, 0, 0, socket.IPPROTO_UDP), ("127.0.0.1", 80, 0, 0, socket.IPPROTO_ICMP),
    ("127.0.0.1", None, 0, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    ("127.0.0.1", "http", 0, socket.SOCK_RAW), ("127.0.0.1", "http", 0, socket.SOCK_DGRAM, 6),
    ("127.0.0.1", "domain", 0, socket.SOCK_DGRAM), ("127.0.0.1", 80, 0, 0, 0, socket.AI_PASSIVE),
    (None, 80, 0, 0, 0, socket.AI_PASSIVE), (None, 80, socket.AF_INET, 0, 0, socket.AI_PASSIVE),
    (None, 80, socket.AF_INET6), ("127.0.0.1", 80, 0, 0, 0, socket.AI_CANONNAME),
    (None, 80, 0, 0, 0, socket.AI_CANONNAME), ("127.0.0.1", 80, 0, 0, 0, 0x10000),
    ("127.0.0.1", "80", 0, 0, 0, socket.AI_NUMERICSERV),
    ("127.0.0.1", "http", 0, 0, 0, socket.AI_NUMERICSERV),
    ("not.numeric", 80, 0, 0, 0, socket.AI_NUMERICHOST),
    ("127.0.0.1", 80, socket.AF_INET6, 0, 0, socket.AI_V4MAPPED),
    ("127.0.0.1", 80, socket.AF_INET6, socket.SOCK_STREAM, 0,
     socket.AI_V4MAPPED | socket.AI_ALL),
]


@pytest.mark.parametrize("args", GETADDRINFO_CASES, ids=repr)
def test_getaddrinfo_matches_the_stdlib(stack, args):
    assert outcome(lws.getaddrinfo, *args, stack=stack) == outcome(socket.getaddrinfo, *args)


@pytest.mark.parametrize("args", [
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("127.0.0.1", 53), socket.NI_NUMERICHOST), (("127.0.0.1", 53), socket.NI_NUMERICHOST
                                                 | socket.NI_DGRAM),
    (("127.0.0.1", 7777), socket.NI_NUMERICHOST), (("::1", 22, 0, 0), socket.NI_NUMERICHOST),
    (("127.0.0.1", 80, 0, 0), socket.NI_NUMERICHOST), (("example", 80), socket.NI_NUMERICHOST),
    (["127.0.0.1", 80], 0), (("127.0.0.1",), 0), (("127.0.0.1", "80"), 0),
], ids=repr)
def test_getnameinfo_matches_the_stdlib(stack, args):
    assert outcome(lws.getnameinfo, *args, stack=stack) == outcome(socket.getnameinfo, *args)


@pytest.mark.parametrize("name", ["127.0.0.1", "127.1", "", "<broadcast>", "::1", 42,
                                  b"127.0.0.1"])
def test_gethostbyname_matches_the_stdlib(stack, name):
    assert outcome(lws.gethostbyname, name, stack=stack) == outcome(socket.gethostbyname, name)


def test_gethostbyname_ex_of_a_numeric_address_matches_the_stdlib(stack):
    assert lws.gethostbyname_ex("10.1.2.3", stack=stack) == \
        socket.gethostbyname_ex("10.1.2.3") == ("10.1.2.3", [], ["10.1.2.3"])


def test_localhost_and_the_stacks_own_name():
    net = VirtualNetwork(seed=2)
    stack = net.stack("ip=10.0.0.2/24,fqdn=web.example.org")
    with stack.as_default():
        assert lws.gethostname() == "web"
        assert lws.getfqdn() == "web.example.org"
        assert lws.gethostbyname("localhost") == "127.0.0.1"
        assert lws.gethostbyname("web") == "10.0.0.2"
        assert lws.gethostbyaddr("10.0.0.2") == ("web.example.org", [], ["10.0.0.2"])
        assert lws.getaddrinfo("web.example.org", 80, type=socket.SOCK_STREAM,
                               flags=socket.AI_CANONNAME)[0][3] == "web.example.org"
    bare = net.stack("ip=10.0.0.3/24")
    assert lws.gethostname(stack=bare) == "localhost"


def test_the_stacks_own_name_has_its_ipv6_addresses_too():
    # glibc's "myhostname": every address of the stack, both families, once past DAD.
    net = VirtualNetwork(seed=4)
    stack = net.stack("ip=10.0.0.2/24,ip=fd00::2/64,fqdn=web.example.org")
    stack.wait_configured(10)
    with stack.as_default():
        found = {info[4][0] for info in lws.getaddrinfo("web", 80, type=socket.SOCK_STREAM)}
        assert found == {"10.0.0.2", "fd00::2", stack.link_local}   # as systemd's myhostname
        six = {info[4][0]: info[4][3] for info in lws.getaddrinfo("web", 80, socket.AF_INET6)}
        assert six.keys() == {"fd00::2", stack.link_local}
        assert six["fd00::2"] == 0 and six[stack.link_local] != 0      # its scope id
        assert lws.gethostbyaddr("fd00::2") == ("web.example.org", [], ["fd00::2"])
    v6only = net.stack("ip=fd00::3/64,fqdn=six")
    v6only.wait_configured(10)
    # AI_ADDRCONFIG keeps IPv6 answers on a stack whose only global address is IPv6.
    v6only.hosts = HostsTable.parse("fd00::9 db\n10.0.0.9 db\n")
    assert [info[4][0] for info in lws.getaddrinfo("db", 80, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_ADDRCONFIG, stack=v6only)] \
        == ["fd00::9"]


def test_the_hosts_table_answers_first(stack):
    stack.hosts = HostsTable.parse("10.9.9.9 db.internal db\n10.9.9.10 db.internal\n")
    assert lws.gethostbyname_ex("db", stack=stack) == ("db.internal", ["db"], ["10.9.9.9"])
    assert lws.gethostbyname_ex("db.internal", stack=stack) == \
        ("db.internal", [], ["10.9.9.9", "10.9.9.10"])
    assert lws.gethostbyaddr("10.9.9.10", stack=stack)[0] == "db.internal"
    assert lws.getnameinfo(("10.9.9.9", 80), 0, stack=stack) == ("db.internal", "http")
    assert lws.getnameinfo(("10.9.9.9", 80), socket.NI_NOFQDN, stack=stack) == ("db", "http")


def test_without_name_servers_lookups_fail_at_once_with_eai_again(stack):
    with pytest.raises(socket.gaierror) as failure:
        lws.getaddrinfo("anything.example", 80, stack=stack)
    assert failure.value.args == (socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert stack.driver.network.now == 0.0
    with pytest.raises(socket.herror, match="Unknown host|lookup failure"):
        lws.gethostbyaddr("10.7.7.7", stack=stack)
    assert lws.getnameinfo(("10.7.7.7", 80), 0, stack=stack) == ("10.7.7.7", "http")
    with pytest.raises(socket.gaierror):
        lws.getnameinfo(("10.7.7.7", 80), socket.NI_NAMEREQD, stack=stack)


def test_addrconfig_needs_an_address_of_the_family():
    net = VirtualNetwork(seed=3)
    bare = net.stack("")
    with pytest.raises(socket.gaierror) as failure:
        lws.getaddrinfo("some.name", 80, flags=socket.AI_ADDRCONFIG, stack=bare)
    assert failure.value.errno == socket.EAI_NONAME


# -- through a router's DNS server on virtual time ------------------------------------------------

@pytest.fixture
def lan():
    """A router (DHCP + DNS, domain lan, static records) and a DHCP client named alpha."""
    net = VirtualNetwork(seed=21)
    many = [("big", f"10.0.1.{i}") for i in range(1, 121)]      # 120 A records: > 1232 bytes
    router = Router(net, ROUTER_CONF, dhcp="10.0.0.100-10.0.0.150", dns=True, domain="lan",
                    host_records=[("printer", "10.0.0.9"), ("two", "10.0.0.77"),
                                  ("two", "10.0.0.1")] + many)
    alpha = net.stack("dhcp,fqdn=alpha")
    alpha.wait_configured(10)
    return net, router, alpha


def test_getaddrinfo_through_the_routers_dns(lan):
    net, router, alpha = lan
    beta = net.stack("dhcp,fqdn=beta")
    beta.wait_configured(10)
    with beta.as_default():
        # The search domain from DHCP completes a short name; DHCP clients are in the DNS.
        assert lws.getaddrinfo("alpha", 7, type=socket.SOCK_DGRAM) == [
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", (alpha.addresses[0][:-3], 7))]
        assert lws.gethostbyname("printer.lan") == "10.0.0.9"
        assert lws.gethostbyname("gw") == "10.0.0.1"
        assert lws.gethostbyaddr("10.0.0.9") == ("printer.lan", [], ["10.0.0.9"])
        assert lws.getfqdn("alpha") == "alpha.lan"
        assert lws.getnameinfo((alpha.addresses[0][:-3], 22), 0) == ("alpha.lan", "ssh")
        with pytest.raises(socket.gaierror) as failure:
            lws.getaddrinfo("nobody.lan", 80)
        assert failure.value.args == (socket.EAI_NONAME, "Name or service not known")
        # A name without an AAAA record: glibc's EAI_NODATA.
        with pytest.raises(socket.gaierror) as failure:
            lws.getaddrinfo("printer.lan", 80, socket.AF_INET6)
        assert failure.value.args == (-5, "No address associated with hostname")
        # Unknown outside the zone and no forwarders: REFUSED -> "try again".
        with pytest.raises(socket.gaierror) as failure:
            lws.getaddrinfo("www.example.com", 80)
        assert failure.value.errno == socket.EAI_AGAIN


def test_answers_are_cached_for_their_ttl(lan):
    net, router, alpha = lan
    server = router.dns_server.server
    with alpha.as_default():
        assert lws.gethostbyname("printer") == "10.0.0.9"
        asked = server.stats["queries"]
        assert lws.gethostbyname("printer") == "10.0.0.9"
        assert server.stats["queries"] == asked
        assert alpha.resolver.resolver.stats["cache.hit"] >= 1
        net.run(601)                                # the router's records live 600 s
        assert lws.gethostbyname("printer") == "10.0.0.9"
        assert server.stats["queries"] > asked


def test_a_truncated_answer_is_asked_again_over_tcp(lan):
    net, router, alpha = lan
    with alpha.as_default():
        infos = lws.getaddrinfo("big.lan", 80, socket.AF_INET, socket.SOCK_STREAM)
    assert sorted(i[4][0] for i in infos) == sorted(f"10.0.1.{i}" for i in range(1, 121))
    stats = alpha.resolver.resolver.stats
    assert stats["query.tcp"] == 1
    assert alpha.resolver.streams.stats["opened"] == 1
    assert len(alpha.resolver.streams) == 0           # closed once answered
    assert len(router.dns_server.clients) == 1        # the server side closes when idle
    net.run(11)
    assert len(router.dns_server.clients) == 0


def test_static_dns_and_domain_without_dhcp(lan):
    net, router, alpha = lan
    static = net.stack("ip=10.0.0.5/24,dns=10.0.0.1,domain=lan")
    with static.as_default():
        assert lws.gethostbyname("printer") == "10.0.0.9"
        assert static.name_servers() == (["10.0.0.1"], ["lan"])


def test_a_lookup_right_after_starting_waits_for_the_lease(lan):
    net, router, alpha = lan
    fresh = net.stack("dhcp")
    assert lws.gethostbyname("printer", stack=fresh) == "10.0.0.9"
    assert fresh.configured


def test_forwarding_to_an_upstream_router():
    net = VirtualNetwork(seed=5)
    Router(net, "ip=10.0.0.53/24,fqdn=ns.corp", dns=True, domain="corp",
           host_records=[("wiki", "10.0.0.80")])
    Router(net, ROUTER_CONF, dhcp="10.0.0.100-10.0.0.150", dns=True, domain="lan",
           dns_forward=["10.0.0.53"])
    client = net.stack("dhcp")
    client.wait_configured(10)
    assert lws.gethostbyname("wiki.corp", stack=client) == "10.0.0.80"


def test_sockets_resolve_names_in_their_addresses(lan):
    net, router, alpha = lan
    server = router.stack.socket()
    server.bind(("gw.lan", 7))
    with alpha.socket() as sock:
        sock.settimeout(2)
        sock.sendto(b"ping", ("gw", 7))
        assert server.recvfrom(10) == (b"ping", (alpha.addresses[0][:-3], sock.getsockname()[1]))


def test_destinations_are_tried_in_rfc6724_order_and_connections_fall_over(lan):
    net, router, alpha = lan
    listener = router.stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("", 80))
    listener.listen()
    # "two" is 10.0.0.77 (nobody) then 10.0.0.1 (the router): same subnet, same prefix
    # length in common, so DNS order stands (RFC 6724 rule 10).
    infos = lws.getaddrinfo("two", 80, type=socket.SOCK_STREAM, stack=alpha)
    assert [i[4][0] for i in infos] == ["10.0.0.77", "10.0.0.1"]
    started = net.now
    conn = lws.create_connection(("two", 80), timeout=10, stack=alpha)
    # The first attempt hangs in ARP; the second starts 250 ms later and wins (RFC 8305).
    assert conn.getpeername() == ("10.0.0.1", 80)
    assert 0.25 <= net.now - started < 0.5
    assert conn.gettimeout() == 10
    conn.close()


def test_create_connection_reports_the_last_error(lan):
    net, router, alpha = lan
    with pytest.raises(ConnectionRefusedError):
        lws.create_connection(("gw.lan", 81), timeout=5, stack=alpha)
    with pytest.raises(ExceptionGroup) as group:
        lws.create_connection(("two", 81), timeout=5, all_errors=True, stack=alpha)
    kinds = sorted(type(e).__name__ for e in group.value.exceptions)
    assert kinds == ["ConnectionRefusedError", "OSError"]     # refused, host unreachable
