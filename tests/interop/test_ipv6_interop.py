"""lwstack's IPv6 against real peers through a tap: the Linux kernel, Debian's radvd and
dnsmasq.

The kernel lives in a network namespace made for each test, on a tap (lwtap6) that Debian's
``vde_plug2tap`` plugs into an ``lwswitch``; radvd and dnsmasq run inside that namespace, bound
to the tap only.  lwstack is a stack inside this process on the same switch.  Every packet
stays on the switch, the namespace and loopback.

- The kernel pings lwstack (global and link-local, and 3000-byte requests that travel as
  fragments both ways), lwstack pings the kernel (its ping socket and ``lwping``), UDP both
  ways including fragmented datagrams.
- radvd advertises a prefix and RDNSS: lwstack forms its SLAAC address, takes the kernel as
  default router and the name server.
- dnsmasq does RA and DHCPv6 (``--enable-ra``, a DHCPv6 range with SLAAC): lwstack with
  ``auto6`` has a SLAAC and a DHCPv6 address, a default router and dnsmasq's DNS server.
- lwstack's own RA server gives the kernel (``accept_ra=2``) a SLAAC address and a default
  route through lwstack's link-local address.
"""
import itertools
import os
import re
import subprocess
import sys

import pytest

from conftest import require
from netns_support import KernelNamespace
from support import wait_for

import lwstack
from lwstack import socket as lwsocket
from lwstack.iface.addrgen import eui64_address
from lwstack.proto.ra_server import RaPrefix, RaServer, RouterConfig
from lwstack.wire.ipv6 import addr6_to_str, parse_addr6

TAP = "lwtap6"
_names = itertools.count()


def run_tool(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class Kernel(KernelNamespace):
    """The kernel's end: a namespace whose tap is plugged into the switch."""

    @property
    def mac(self):
        text = self.run("cat", f"/sys/class/net/{TAP}/address", check=True).stdout.strip()
        return bytes.fromhex(text.replace(":", ""))

    @property
    def link_local(self):
        return addr6_to_str(eui64_address(parse_addr6("fe80::"), self.mac))

    def addresses(self):
        """``ip -6 -o addr`` lines of the tap."""
        return self.run("ip", "-6", "-o", "addr", "show", "dev", TAP).stdout.splitlines()


@pytest.fixture
def kernel(processes, lwswitch):
    """``attach(*addresses, accept_ra=0) -> Kernel``: a fresh namespace, its tap plugged into
    the test's lwswitch, IPv6 up without DAD delays, the given addresses on the tap."""
    require("vde_plug2tap", "ip", "sysctl", root=True, tun=True)
    names = []

    def attach(*addresses, accept_ra=0, forwarding=0):
        name = f"lw6{os.getpid()}x{next(_names)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        names.append(name)
        ns = Kernel(processes, name)
        ns.plug_tap(lwswitch, TAP)
        ns.sysctl("net.ipv6.conf.all.forwarding", forwarding)
        for key, value in (("accept_dad", 0), ("accept_ra", accept_ra), ("autoconf", 1),
                           ("disable_ipv6", 0)):
            ns.sysctl(f"net.ipv6.conf.{TAP}.{key}", value)
        for address in addresses:
            ns.run("ip", "-6", "addr", "add", address, "dev", TAP, "nodad", check=True)
        ns.run("ip", "link", "set", TAP, "up", check=True)
        ns.run("ip", "link", "set", "lo", "up", check=True)
        assert wait_for(lambda: "fe80::" in "".join(ns.addresses()), 5)
        return ns

    yield attach
    processes.stop_all()
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False)


def stack_on(lwswitch, config):
    stack = lwstack.Stack(lwswitch, config)
    return stack


# -- the kernel and lwstack, static addresses ---------------------------------------------------

def test_kernel_pings_lwstack_global_link_local_and_fragmented(lwswitch, kernel):
    ns = kernel("fd79::1/64")
    with stack_on(lwswitch, "ip=fd79::2/64") as stack:
        assert stack.wait_ipv6_configured(5)
        for target in ("fd79::2", f"{stack.link_local}%{TAP}"):
            result = ns.run("ping", "-6", "-c", "3", "-i", "0.2", "-W", "5", target)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "3 received" in result.stdout
            assert re.search(r"64 bytes from \S+: icmp_seq=1 ttl=64 time=[\d.]+ ms",
                             result.stdout)
        big = ns.run("ping", "-6", "-c", "2", "-i", "0.2", "-W", "5", "-s", "3000", "fd79::2")
        assert big.returncode == 0, big.stdout + big.stderr
        assert "3008 bytes from fd79::2" in big.stdout
        assert stack.host.stats["ipv6_reassembled"] >= 2
        assert stack.host.stats["ipv6_fragmented"] >= 2


def test_lwstack_pings_the_kernel(lwswitch, kernel):
    ns = kernel("fd79::1/64")
    with stack_on(lwswitch, "ip=fd79::2/64") as stack:
        assert stack.wait_ipv6_configured(5)
        sock = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM, lwsocket.IPPROTO_ICMPV6)
        sock.settimeout(5)
        for address in (("fd79::1", 0), (ns.link_local, 0, 0, stack.host.ifindex)):
            sock.sendto(bytes((128, 0, 0, 0, 0, 0, 0, 1)) + b"from lwstack", address)
            reply, source = sock.recvfrom(200)
            assert reply[0] == 129 and reply[8:] == b"from lwstack"
            assert source[0] == address[0]
        sock.close()
    result = run_tool("lwping", "--net", lwswitch, "--conf", "ip=fd79::3/64", "-c", "3",
                      "-i", "0.2", "fd79::1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("PING fd79::1(fd79::1) 56 data bytes")
    assert "3 packets transmitted, 3 received, 0% packet loss" in result.stdout
    assert re.search(r"64 bytes from fd79::1: icmp_seq=1 ttl=64 time=[\d.]+ ms", result.stdout)


def test_udp_both_ways_with_fragments(lwswitch, kernel):
    ns = kernel("fd79::1/64")
    with stack_on(lwswitch, "ip=fd79::2/64") as stack:
        assert stack.wait_ipv6_configured(5)
        server = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
        server.bind(("", 7007))
        server.settimeout(10)
        script = ("import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
                  "s.settimeout(5); s.bind(('fd79::1', 7008)); "
                  "[s.sendto(bytes(i % 251 for i in range(n)), ('fd79::2', 7007)) "
                  " for n in (5, 3000)]; "
                  "data, peer = s.recvfrom(9000); print(len(data), data == bytes(i % 241 for "
                  "i in range(len(data))), peer[:2])")
        kernel_side = ns.start(sys.executable, "-c", script)
        received = [server.recvfrom(9000) for _ in range(2)]
        assert [(len(d), d == bytes(i % 251 for i in range(len(d)))) for d, _ in received] == \
            [(5, True), (3000, True)]
        assert received[0][1] == ("fd79::1", 7008, 0, 0)
        server.sendto(bytes(i % 241 for i in range(4000)), received[0][1])
        out, err = kernel_side.communicate(timeout=10)
        assert kernel_side.returncode == 0, err
        assert out.strip() == "4000 True ('fd79::2', 7007)"


def test_kernel_port_unreachable_refuses_a_connected_socket(lwswitch, kernel):
    kernel("fd79::1/64")
    with stack_on(lwswitch, "ip=fd79::2/64") as stack:
        assert stack.wait_ipv6_configured(5)
        sock = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM)
        sock.settimeout(5)
        sock.connect(("fd79::1", 9))
        sock.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            sock.recv(100)


# -- autoconfiguration from real routers -----------------------------------------------------------

RADVD_CONF = """interface %s {
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 10;
    prefix fd80::/64 { AdvOnLink on; AdvAutonomous on; };
    RDNSS fd80::53 { };
    DNSSL radvd.test { };
};
"""


def test_radvd_gives_lwstack_a_slaac_address_a_router_and_dns(lwswitch, kernel, tmp_path):
    require("radvd", root=True)
    ns = kernel("fd80::1/64", forwarding=1)
    conf = tmp_path / "radvd.conf"
    conf.write_text(RADVD_CONF % TAP)
    radvd = ns.start("radvd", "-n", "-C", str(conf), "-p", str(tmp_path / "radvd.pid"),
                     "-m", "stderr", stdout=subprocess.DEVNULL)
    with stack_on(lwswitch, "mac=02:00:00:00:77:01,rd,slaac") as stack:
        assert stack.wait_ipv6_configured(20), (radvd.poll(), stack.ipv6_addresses)
        expected = addr6_to_str(eui64_address(parse_addr6("fd80::"),
                                              bytes.fromhex("020000007701")))
        assert (expected + "/64", "preferred", "slaac") in stack.ipv6_addresses
        assert [addr6_to_str(r) for r in stack.host.nd.routers] == [ns.link_local]
        assert stack.host.name_servers["ra"] == ((parse_addr6("fd80::53"),), ("radvd.test",))
        # The kernel reaches the SLAAC address.
        result = ns.run("ping", "-6", "-c", "2", "-i", "0.2", "-W", "5", expected)
        assert result.returncode == 0, result.stdout + result.stderr


def test_dnsmasq_ra_and_dhcpv6_configure_auto6(lwswitch, kernel, tmp_path):
    require("dnsmasq", root=True)
    ns = kernel("fd81::1/64", forwarding=1)
    dnsmasq = ns.start("dnsmasq", "--no-daemon", "--conf-file=/dev/null", f"--interface={TAP}",
                       "--bind-interfaces", "--except-interface=lo", "--port=0",
                       "--enable-ra", "--dhcp-range=fd81::100,fd81::1ff,slaac,64,1h",
                       "--dhcp-option=option6:dns-server,[fd81::53]",
                       "--dhcp-option=option6:domain-search,dnsmasq.test",
                       "--no-resolv", "--no-hosts", "--leasefile-ro",
                       f"--pid-file={tmp_path / 'dnsmasq.pid'}", "--log-facility=-",
                       stdout=subprocess.DEVNULL)
    with stack_on(lwswitch, "mac=02:00:00:00:77:02,auto6") as stack:
        assert stack.wait_ipv6_configured(30), (dnsmasq.poll(), stack.ipv6_addresses)
        assert wait_for(lambda: any(o == "dhcpv6" for _, _, o in stack.ipv6_addresses), 15)
        by_origin = {origin: address for address, _, origin in stack.ipv6_addresses}
        slaac = addr6_to_str(eui64_address(parse_addr6("fd81::"),
                                           bytes.fromhex("020000007702")))
        assert by_origin["slaac"] == slaac + "/64"
        leased = parse_addr6(by_origin["dhcpv6"].split("/")[0])
        assert parse_addr6("fd81::100") <= leased <= parse_addr6("fd81::1ff")
        assert [addr6_to_str(r) for r in stack.host.nd.routers] == [ns.link_local]
        servers, domains = stack.host.name_servers["dhcp6"]
        assert servers == (parse_addr6("fd81::53"),) and domains == ("dnsmasq.test",)
        result = ns.run("ping", "-6", "-c", "2", "-i", "0.2", "-W", "5",
                        by_origin["dhcpv6"].split("/")[0])
        assert result.returncode == 0, result.stdout + result.stderr


def test_lwstack_router_advertisements_give_the_kernel_an_address(lwswitch, kernel):
    ns = kernel(accept_ra=2)
    with stack_on(lwswitch, "ip=fd82::1/64") as stack:
        config = RouterConfig(prefixes=[RaPrefix(parse_addr6("fd82::"))], max_interval=10,
                              dns_servers=[parse_addr6("fd82::1")])
        with stack.driver.lock:
            stack.host.start_router(RaServer(config), stack.driver.now())
            stack.driver.after_call()
        expected = addr6_to_str(eui64_address(parse_addr6("fd82::"), ns.mac))

        def configured():
            routes = ns.run("ip", "-6", "route", "show", "default", "dev", TAP).stdout
            return expected in "".join(ns.addresses()) and stack.link_local in routes
        assert wait_for(configured, 20), (ns.addresses(), stack.ipv6_addresses)
        assert any("dynamic" in line for line in ns.addresses() if expected in line)
        result = ns.run("ping", "-6", "-c", "2", "-i", "0.2", "-W", "5", "fd82::1")
        assert result.returncode == 0, result.stdout + result.stderr
        # Stopping the router withdraws the default route (final RA, lifetime 0).
        with stack.driver.lock:
            stack.host.stop_router(stack.driver.now())
            stack.driver.after_call()
        assert wait_for(lambda: "default" not in
                        ns.run("ip", "-6", "route", "show", "default", "dev", TAP).stdout, 10)
