"""Automatic configuration against real peers, through a tap into a network namespace.

- Debian's dnsmasq, bound to the namespace's tap only (``--bind-interfaces --interface``,
  ``--except-interface=lo``, ``--no-resolv``, ``--no-hosts``, ``--conf-file=/dev/null``, its
  pid and leases files in a temporary directory, stopped by PID), gives an lwstack stack a
  DHCPv4 lease and answers its DNS queries: names from dnsmasq's own records and from its
  DHCP leases, a truncated answer taken again over TCP, PTR; the lease is released when the
  stack closes.
- One dnsmasq doing DHCPv4, router advertisements (SLAAC, RDNSS), DHCPv6 IA_NA and DNS at
  once configures a fresh ``auto`` stack (issue 4's end state): a DHCPv4, a SLAAC and a
  DHCPv6 address, both default routes through dnsmasq's addresses, its three name servers;
  A, AAAA and PTR of its names over each server, the stack's name in both leases and in
  dnsmasq's leases file; pings both ways in both families, also through the default routes
  to addresses on the namespace's loopback.
- lwrouter gives the Linux kernel's DHCP client (busybox ``udhcpc`` in the namespace) a
  lease; the kernel then pings the router and resolves names through its DNS server.

The tap is made by Debian's ``vde_plug2tap`` inside the namespace, plugged into an lwswitch;
nothing leaves the switch, the namespace and loopback.  Addresses: 10.81.0.0/24 (dnsmasq),
10.82.0.0/24 (lwrouter), 10.83.0.0/24 and fd83::/64 (dnsmasq for both families; 10.84.0.1
and fd84::1 beyond it).
"""
import ipaddress
import itertools
import os
import subprocess
import sys

import pytest

from conftest import require
from linereader import LineReader
from netns_support import KernelNamespace
from support import wait_for

import lwstack
from lwstack import socket as lws
from lwstack.iface.addrgen import eui64_address, hash_address
from lwstack.wire.dns import TYPE_A, TYPE_AAAA, Message, build_query
from lwstack.wire.ipv6 import addr6_to_str, parse_addr6

TAP = "lwtap0"
_names = itertools.count()
BIG = 100                    # A records of big.lan: the answer does not fit 1232 bytes


class Namespace(KernelNamespace):
    """A network namespace whose tap ``lwtap0`` is plugged into a switch (up, with the
    namespace's loopback); IPv6 is off on the tap unless ``ipv6``, then on without DAD
    delays (``accept_dad=0``)."""

    def __init__(self, processes, name):
        super().__init__(processes, name)
        subprocess.run(["ip", "netns", "add", name], check=True)

    def plug(self, locator, ipv6=False):
        """Make the tap with ``vde_plug2tap`` on ``locator`` and bring it up."""
        plug = self.start("vde_plug2tap", "-s", locator.removeprefix("vde://"), TAP)
        assert wait_for(lambda: plug.poll() is not None
                        or self.run("ip", "link", "show", TAP).returncode == 0), \
            "vde_plug2tap did not create its tap"
        assert plug.poll() is None, plug.stderr.read()
        if ipv6:
            self.sysctl(f"net.ipv6.conf.{TAP}.accept_dad", 0)
        else:
            self.sysctl(f"net.ipv6.conf.{TAP}.disable_ipv6", 1)
        self.run("ip", "link", "set", TAP, "up", check=True)
        self.run("ip", "link", "set", "lo", "up", check=True)

    def delete(self):
        """Delete the namespace (the tap goes with it)."""
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def namespace(processes, lwswitch):
    """``make(ipv6=False) -> Namespace`` plugged into the test's lwswitch; the processes
    stopped (by PID) and the namespaces deleted afterwards."""
    require("vde_plug2tap", "ip", "sysctl", root=True, tun=True)
    made = []

    def make(ipv6=False):
        ns = Namespace(processes, f"lwac{os.getpid()}x{next(_names)}")
        made.append(ns)
        ns.plug(lwswitch, ipv6)
        return ns
    yield make
    processes.stop_all()
    for ns in made:
        ns.delete()


# -- dnsmasq serving lwstack ------------------------------------------------------------------

def start_dnsmasq(ns, workdir, *options):
    """dnsmasq in ``ns`` bound to its tap only, with none of the host's configuration, its
    pid, leases and log (``dnsmasq.log``, every DHCP exchange) files in ``workdir`` and
    ``options``; returns the leases file's path once dnsmasq has written it (it then
    serves).  The test's registry stops it by PID."""
    require("dnsmasq", root=True)
    leases = os.path.join(workdir, "leases")
    log = os.path.join(workdir, "dnsmasq.log")
    with open(log, "w") as stderr:          # a file, not a pipe nobody drains
        proc = ns.start("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                        "--no-resolv", "--no-hosts", "--bind-interfaces", f"--interface={TAP}",
                        "--except-interface=lo", f"--pid-file={workdir}/dnsmasq.pid",
                        f"--dhcp-leasefile={leases}", "--user=root", "--group=root",
                        "--log-facility=-", "--log-dhcp", "--dhcp-authoritative", *options,
                        stdout=subprocess.DEVNULL, stderr=stderr)
    assert wait_for(lambda: proc.poll() is not None or os.path.exists(leases)), \
        "dnsmasq did not start"
    assert proc.poll() is None, open(log).read()
    return leases


@pytest.fixture
def dnsmasq(namespace, workdir):
    """dnsmasq on the namespace's tap (10.81.0.1): DHCP 10.81.0.100-150 for 120 s, domain
    lan, a few static names.  Yields ``(namespace, leases file)``."""
    require("dnsmasq", root=True)
    ns = namespace()
    ns.run("ip", "addr", "add", "10.81.0.1/24", "dev", TAP, check=True)
    leases = start_dnsmasq(
        ns, workdir, "--dhcp-range=10.81.0.100,10.81.0.150,255.255.255.0,120",
        "--domain=lan", "--local=/lan/", "--host-record=files.lan,10.81.0.5",
        *[f"--host-record=big.lan,10.81.1.{i}" for i in range(1, BIG + 1)])
    yield ns, leases


def test_dnsmasq_leases_to_lwstack_and_answers_its_queries(lwswitch, dnsmasq):
    ns, leases = dnsmasq
    with lwstack.Stack(lwswitch, "dhcp,fqdn=lwclient") as client:
        client.wait_configured(15)
        address = client.addresses[0]
        assert address.endswith("/24") and address.startswith("10.81.0.1")
        assert client.name_servers() == (["10.81.0.1"], ["lan"])
        routes = [(r.prefix_len, r.gateway) for r in client.host.routes.routes]
        assert (0, bytes([10, 81, 0, 1])) in routes
        assert wait_for(lambda: client.mac in open(leases).read())
        # dnsmasq's own names, with the search domain from DHCP.
        assert lws.gethostbyname("files", stack=client) == "10.81.0.5"
        with pytest.raises(lws.gaierror) as failure:
            lws.getaddrinfo("nobody.lan", 80, stack=client)
        assert failure.value.errno == lws.EAI_NONAME
        # 100 addresses: dnsmasq truncates the UDP answer, the resolver asks over TCP.
        infos = lws.getaddrinfo("big.lan", 80, lws.AF_INET, lws.SOCK_STREAM, stack=client)
        assert len(infos) == BIG
        assert client.resolver.resolver.stats["query.tcp"] == 1
        # Another stack, statically configured, finds the DHCP client by the name it sent.
        with lwstack.Stack(lwswitch, "ip=10.81.0.9/24,dns=10.81.0.1,domain=lan") as other:
            mine = address.split("/")[0]
            assert lws.gethostbyname("lwclient", stack=other) == mine
            assert lws.gethostbyaddr(mine, stack=other)[0] == "lwclient.lan"
    # Closing the stack released the lease (RFC 2131 4.4.6): dnsmasq forgot it.
    assert wait_for(lambda: client.mac not in open(leases).read(), timeout=5)


# -- one dnsmasq serving both families ---------------------------------------------------------

#: dnsmasq's link (10.83.0.1/24, fd83::1/64 on the tap) and, on the namespace's loopback, an
#: address of each family that lwstack reaches only through its default routes.
LINK4, LINK6, BEYOND4, BEYOND6 = "10.83.0.1", "fd83::1", "10.84.0.1", "fd84::1"
CLIENT = "laptop.lan"        # the stack's fqdn=: DHCPv4 option 81, DHCPv6 option 39


@pytest.fixture
def dnsmasq_dual(namespace, workdir):
    """One dnsmasq doing DHCPv4 (10.83.0.100-150), router advertisements (fd83::/64 with the
    A and M flags, its link-local address as RDNSS), DHCPv6 IA_NA (fd83::100-1ff) and DNS
    (domain lan, files.lan with an A and an AAAA record) on the namespace's tap.  Yields
    ``(namespace, leases file)``."""
    ns = namespace(ipv6=True)
    # The kernel hears dnsmasq's advertisements too: it must not take a SLAAC address of its
    # own, which dnsmasq would then hand out as the DHCPv6 DNS server instead of fd83::1.
    ns.sysctl(f"net.ipv6.conf.{TAP}.accept_ra", 0)
    ns.run("ip", "addr", "add", f"{LINK4}/24", "dev", TAP, check=True)
    ns.run("ip", "-6", "addr", "add", f"{LINK6}/64", "dev", TAP, "nodad", check=True)
    ns.run("ip", "addr", "add", f"{BEYOND4}/32", "dev", "lo", check=True)
    ns.run("ip", "-6", "addr", "add", f"{BEYOND6}/128", "dev", "lo", check=True)
    leases = start_dnsmasq(
        ns, workdir, "--dhcp-range=10.83.0.100,10.83.0.150,255.255.255.0,120",
        "--enable-ra", "--dhcp-range=fd83::100,fd83::1ff,slaac,64,1h",
        "--domain=lan", "--local=/lan/", "--host-record=files.lan,10.83.0.5,fd83::5")
    yield ns, leases


def ask(stack, server, name, qtype):
    """Ask ``server`` (a socket address of the stack's family) for ``name`` with a UDP
    socket of ``stack``; the answer's addresses of type ``qtype`` as text."""
    family = lws.AF_INET6 if ":" in server[0] else lws.AF_INET
    with stack.socket(family, lws.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(build_query(0x5EED, name, qtype), server)
        reply = Message.parse(sock.recv(4096))
    return sorted(str(ipaddress.ip_address(bytes(r.data))) for r in reply.answers
                  if r.rtype == qtype)


def ping(stack, address):
    """One echo request from ``stack``'s ping socket to ``address`` (text, either family);
    the reply's source and payload."""
    six = ":" in address
    family, proto, request = ((lws.AF_INET6, lws.IPPROTO_ICMPV6, 128) if six
                              else (lws.AF_INET, lws.IPPROTO_ICMP, 8))
    with stack.socket(family, lws.SOCK_DGRAM, proto) as sock:
        sock.settimeout(5)
        sock.sendto(bytes((request, 0, 0, 0, 0, 0, 0, 1)) + b"via dnsmasq", (address, 0))
        reply, source = sock.recvfrom(200)
    return source[0], reply[8:]


def test_one_dnsmasq_configures_auto_for_both_families(lwswitch, dnsmasq_dual):
    ns, leases = dnsmasq_dual
    router = addr6_to_str(eui64_address(parse_addr6("fe80::"), bytes.fromhex(
        ns.run("cat", f"/sys/class/net/{TAP}/address", check=True).stdout.strip()
        .replace(":", ""))))
    with lwstack.Stack(lwswitch, f"auto,fqdn={CLIENT}") as stack:
        stack.wait_configured(30)
        # The SLAAC address is formed once the RA came; DAD may still run on it.
        slaac = addr6_to_str(hash_address(parse_addr6("fd83::"), CLIENT))
        assert wait_for(lambda: (f"{slaac}/64", "preferred", "slaac") in stack.ipv6_addresses,
                        10), stack.ipv6_addresses
        # DHCPv4 address and default route through dnsmasq.
        address4, length = stack.addresses[0].split("/")
        assert length == "24"
        assert ipaddress.ip_address("10.83.0.100") <= ipaddress.ip_address(address4) \
            <= ipaddress.ip_address("10.83.0.150")
        host = stack.host
        assert host.routes.lookup(bytes(4))[0].gateway == ipaddress.ip_address(LINK4).packed
        assert host.route(ipaddress.ip_address(BEYOND4).packed) == \
            (ipaddress.ip_address(address4).packed, ipaddress.ip_address(LINK4).packed)
        # DHCPv6 address (IA_NA, /128) and the default router: dnsmasq's link-local address.
        leased = [a.split("/") for a, state, origin in stack.ipv6_addresses
                  if origin == "dhcpv6" and state == "preferred"]
        assert len(leased) == 1 and leased[0][1] == "128", stack.ipv6_addresses
        address6 = leased[0][0]
        assert ipaddress.ip_address("fd83::100") <= ipaddress.ip_address(address6) \
            <= ipaddress.ip_address("fd83::1ff")
        assert [addr6_to_str(r) for r in host.nd.routers] == [router]
        source6, next_hop6 = host.route(parse_addr6(BEYOND6))
        assert next_hop6 == parse_addr6(router)
        assert addr6_to_str(source6) in (slaac, address6)
        # Name servers: DHCPv4's, DHCPv6's (dnsmasq's address) and the RA's RDNSS (its
        # link-local address); the domain from DHCPv4.
        assert stack.name_servers() == ([LINK4, LINK6, router], ["lan"])
        # dnsmasq registered our name from each lease, and wrote the leases with it.
        lines = [line.split() for line in open(leases).read().splitlines()]
        assert [stack.mac, address4, CLIENT.split(".")[0]] in [line[1:4] for line in lines]
        assert [address6, CLIENT.split(".")[0]] in [line[2:4] for line in lines]
        # DNS over each family and each server the stack learnt.
        servers = [(LINK4, 53), (LINK6, 53), (router, 53, 0, host.ifindex)]
        for server in servers:
            assert ask(stack, server, "files.lan", TYPE_AAAA) == ["fd83::5"], server
            assert ask(stack, server, CLIENT, TYPE_A) == [address4], server
            assert ask(stack, server, CLIENT, TYPE_AAAA) == [address6], server
        # The resolver: A and AAAA with the search domain, each family alone, and PTR.
        infos = lws.getaddrinfo("files", 80, type=lws.SOCK_STREAM, stack=stack)
        assert sorted(info[4][0] for info in infos) == ["10.83.0.5", "fd83::5"]
        assert lws.gethostbyname("files", stack=stack) == "10.83.0.5"
        infos = lws.getaddrinfo("files.lan", 80, lws.AF_INET6, lws.SOCK_STREAM, stack=stack)
        assert [info[4][:2] for info in infos] == [("fd83::5", 80)]
        assert lws.gethostbyaddr("10.83.0.5", stack=stack)[0] == "files.lan"
        assert lws.gethostbyaddr("fd83::5", stack=stack)[0] == "files.lan"
        assert lws.getnameinfo(("fd83::5", 80), lws.NI_NUMERICSERV, stack=stack) == \
            ("files.lan", "80")
        # Traffic both ways, both families: lwstack pings the tap's addresses and, through
        # its default routes, the namespace's loopback addresses; the kernel pings each of
        # lwstack's addresses.
        for target in (LINK4, BEYOND4, LINK6, BEYOND6):
            assert ping(stack, target) == (target, b"via dnsmasq")
        for target in (address4, slaac, address6):
            result = ns.run("ping", "-c", "2", "-i", "0.2", "-W", "5", target)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "2 received" in result.stdout
    # Closing the stack released both leases (RFC 2131 4.4.6, RFC 8415 18.2.7).
    assert wait_for(lambda: not {address4, address6} & set(open(leases).read().split()), 5)


def test_the_stack_knows_its_own_ipv6_addresses_by_name(lwswitch, dnsmasq_dual):
    """glibc's ``hosts: files myhostname dns`` (which lwstack.resolver says it follows):
    the stack's own name is all its addresses, each of them has its name, and AI_ADDRCONFIG
    keeps IPv6 once the stack has an IPv6 address other than loopback."""
    with lwstack.Stack(lwswitch, f"auto,fqdn={CLIENT}") as stack:
        stack.wait_configured(30)
        slaac = addr6_to_str(hash_address(parse_addr6("fd83::"), CLIENT))
        if not wait_for(lambda: (f"{slaac}/64", "preferred", "slaac")
                        in stack.ipv6_addresses, 10):
            pytest.fail(f"no SLAAC address: {stack.ipv6_addresses}")     # not the bug
        address4 = stack.addresses[0].split("/")[0]
        address6 = next(a.split("/")[0] for a, _, o in stack.ipv6_addresses if o == "dhcpv6")
        # Without AI_ADDRCONFIG both of dnsmasq's records come back (as the test above shows).
        infos = lws.getaddrinfo("files.lan", 80, 0, lws.SOCK_STREAM, 0, lws.AI_ADDRCONFIG,
                                stack=stack)
        assert sorted(info[4][0] for info in infos) == ["10.83.0.5", "fd83::5"]
        # Today: [address4] (own IPv4 only) and, for AF_INET6, dnsmasq's [address6] by DNS.
        infos = lws.getaddrinfo("laptop", 80, type=lws.SOCK_STREAM, stack=stack)
        assert {address4, slaac, address6} <= {info[4][0] for info in infos}
        infos = lws.getaddrinfo(CLIENT, 80, lws.AF_INET6, lws.SOCK_STREAM, stack=stack)
        assert {slaac, address6} <= {info[4][0] for info in infos}
        # Today: a PTR query for the SLAAC address, which dnsmasq refuses (herror 2).
        assert lws.gethostbyaddr(slaac, stack=stack)[0] == CLIENT


# -- lwrouter serving the kernel --------------------------------------------------------------

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
bound|renew)
    env | sort > "{out}"
    ip addr add "$ip/${{mask:-24}}" dev "$interface"
    ;;
esac
"""

DNS_QUERY = r"""
import socket, sys
from lwstack.wire.dns import build_query, Message, TYPE_A
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(3)
for name in sys.argv[2:]:
    sock.sendto(build_query(7, name, TYPE_A), (sys.argv[1], 53))
    reply = Message.parse(sock.recv(4096))
    print(name, reply.rcode, *[".".join(map(str, r.data)) for r in reply.answers
                               if r.rtype == TYPE_A])
"""


def test_lwrouter_leases_to_the_kernels_dhcp_client(lwswitch, namespace, processes, workdir):
    require("udhcpc", "ping", root=True)
    router = processes.python("lwrouter", "--net", lwswitch, "--conf",
                              "ip=10.82.0.1/24,fqdn=gw.lan", "--dhcp", "10.82.0.100-10.82.0.150",
                              "--dns", "--domain", "lan", "--host-record", "files,10.82.0.5",
                              "--lease-time", "300")
    log = LineReader(router)
    assert log.take(1)[0].startswith("lwrouter: serving 10.82.0.1/24")
    ns = namespace()
    out = os.path.join(workdir, "udhcpc.env")
    script = os.path.join(workdir, "udhcpc.sh")
    with open(script, "w") as handle:
        handle.write(UDHCPC_SCRIPT.format(out=out))
    os.chmod(script, 0o755)
    result = ns.run("udhcpc", "-i", "lwtap0", "-f", "-q", "-n", "-t", "5", "-T", "1",
                    "-s", script, "-x", "hostname:kernelbox", timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    env = dict(line.split("=", 1) for line in open(out).read().splitlines() if "=" in line)
    assert env["ip"].startswith("10.82.0.1") and env["router"] == "10.82.0.1"
    assert env["dns"].strip() == "10.82.0.1" and env["domain"] == "lan"
    assert env["lease"] == "300" and env["subnet"] == "255.255.255.0"
    # The kernel uses its lease: it pings the router and asks the router's DNS.
    ping = ns.run("ping", "-c", "1", "-W", "2", "10.82.0.1")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    query = ns.run(sys.executable, "-c", DNS_QUERY, "10.82.0.1", "gw.lan", "files.lan",
                   "kernelbox.lan", "nobody.lan")
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines() == ["gw.lan 0 10.82.0.1", "files.lan 0 10.82.0.5",
                                         f"kernelbox.lan 0 {env['ip']}", "nobody.lan 3"]
    mac = ns.run("cat", "/sys/class/net/lwtap0/address").stdout.strip()
    lines = log.take(5)
    assert lines[0] == f"lwrouter: DHCPDISCOVER {mac} kernelbox"
    assert f"lwrouter: DHCPACK {env['ip']} {mac}" in lines
    assert f"lwrouter: DNS kernelbox.lan -> {env['ip']}" in lines
