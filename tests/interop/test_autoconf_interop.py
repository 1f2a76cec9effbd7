"""Automatic configuration against real peers, through a tap into a network namespace.

- Debian's dnsmasq, bound to the namespace's tap only (``--bind-interfaces --interface``,
  ``--except-interface=lo``, ``--no-resolv``, ``--no-hosts``, ``--conf-file=/dev/null``, its
  pid and leases files in a temporary directory, stopped by PID), gives an lwstack stack a
  DHCPv4 lease and answers its DNS queries: names from dnsmasq's own records and from its
  DHCP leases, a truncated answer taken again over TCP, PTR; the lease is released when the
  stack closes.
- lwrouter gives the Linux kernel's DHCP client (busybox ``udhcpc`` in the namespace) a
  lease; the kernel then pings the router and resolves names through its DNS server.

The tap is made by Debian's ``vde_plug2tap`` inside the namespace, plugged into an lwswitch;
nothing leaves the switch, the namespace and loopback.  Addresses: 10.81.0.0/24 (dnsmasq)
and 10.82.0.0/24 (lwrouter).
"""
import itertools
import os
import subprocess
import sys

import pytest

from conftest import require
from linereader import LineReader
from support import wait_for

import lwstack
from lwstack import socket as lws

_names = itertools.count()
BIG = 100                    # A records of big.lan: the answer does not fit 1232 bytes


class Namespace:
    """A network namespace whose tap ``lwtap0`` is plugged into a switch."""

    def __init__(self, processes, locator):
        self.processes = processes
        self.name = f"lwac{os.getpid()}x{next(_names)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        plug = self.start("vde_plug2tap", "-s", locator.removeprefix("vde://"), "lwtap0")
        assert wait_for(lambda: plug.poll() is not None
                        or self.run("ip", "link", "show", "lwtap0").returncode == 0), \
            "vde_plug2tap did not create its tap"
        assert plug.poll() is None, plug.stderr.read()
        for argv in (("ip", "link", "set", "lwtap0", "up"), ("ip", "link", "set", "lo", "up"),
                     ("sysctl", "-q", "net.ipv6.conf.lwtap0.disable_ipv6=1")):
            result = self.run(*argv)
            assert result.returncode == 0, result.stderr

    def argv(self, *argv):
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv, timeout=60):
        return subprocess.run(self.argv(*argv), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    def start(self, *argv, **kwargs):
        return self.processes.start(self.argv(*argv), **kwargs)

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def namespace(processes, lwswitch):
    require("vde_plug2tap", "ip", root=True, tun=True)
    made = []

    def make():
        ns = Namespace(processes, lwswitch)
        made.append(ns)
        return ns
    yield make
    processes.stop_all()
    for ns in made:
        ns.delete()


# -- dnsmasq serving lwstack ------------------------------------------------------------------

@pytest.fixture
def dnsmasq(namespace, workdir):
    """dnsmasq on the namespace's tap (10.81.0.1): DHCP 10.81.0.100-150 for 120 s, domain
    lan, a few static names.  Yields ``(namespace, leases file)``."""
    require("dnsmasq", root=True)
    ns = namespace()
    result = ns.run("ip", "addr", "add", "10.81.0.1/24", "dev", "lwtap0")
    assert result.returncode == 0, result.stderr
    leases = os.path.join(workdir, "leases")
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--bind-interfaces", "--interface=lwtap0", "--except-interface=lo",
            f"--pid-file={workdir}/dnsmasq.pid", f"--dhcp-leasefile={leases}",
            "--user=root", "--group=root", "--log-facility=-", "--log-dhcp",
            "--dhcp-range=10.81.0.100,10.81.0.150,255.255.255.0,120",
            "--dhcp-authoritative", "--domain=lan", "--local=/lan/",
            "--host-record=files.lan,10.81.0.5"]
    argv += [f"--host-record=big.lan,10.81.1.{i}" for i in range(1, BIG + 1)]
    proc = ns.start(*argv, stdout=subprocess.DEVNULL)
    assert wait_for(lambda: proc.poll() is not None or os.path.exists(leases)), \
        "dnsmasq did not start"
    assert proc.poll() is None, proc.stderr.read()
    yield ns, leases
    proc.terminate()                   # by PID ("ip netns exec" execs dnsmasq itself)
    proc.wait(timeout=5)


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
