"""lwstack's TCP over IPv6 against the Linux kernel, through a tap.

The kernel lives in a network namespace made for each test, on a tap (lwtcp6tap) that Debian's
``vde_plug2tap`` plugs into an ``lwswitch``; lwstack is an ``lwperf``/``lwecho`` process or a
stack inside this process on the same switch.  Every packet stays on the switch, the
namespaces and loopback.

- Bulk: ``lwperf`` over IPv6, SHA-256 of every byte on both ends, 100 MB each way with the
  kernel as client (to lwstack and, ``-R``, from it) and with lwstack as client; the
  namespace's counters must show no RST and no reset afterwards.
- The handshake as each side sees it: the kernel's SYN carries MSS 1440 (MTU - 60) and
  lwstack's too; TCP_INFO in the namespace reports window scaling, SACK and timestamps.
- Refused ports both ways; lwecho's dual-stack TCP echo with the kernel as its IPv6 client.
- Path MTU: a second namespace routes between the tap and a 1300-byte link to a third one
  where the kernel listens; lwstack sends 1440-byte segments, the router answers ICMPv6
  Packet Too Big, and lwstack's connection goes on in 1240-byte segments (RFC 8201), every
  byte intact.

Addresses: the kernel fd00:79::1, lwstack fd00:79::2 (both /64, no DAD wait on the kernel).
"""
import hashlib
import itertools
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import require
from netns_support import KernelNamespace
from support import read_line, wait_for

import lwstack

KERNEL6 = "fd00:79::1"
OURS6 = "fd00:79::2"
TAP = "lwtcp6tap"
MB = 1024 * 1024
BULK = 100 * MB

_names = itertools.count()


class Namespace(KernelNamespace):
    """A network namespace (the kernel's end)."""

    def ipv6_up(self, ifname, *addresses, mtu=None):
        for key, value in (("accept_dad", 0), ("accept_ra", 0), ("disable_ipv6", 0)):
            self.sysctl(f"net.ipv6.conf.{ifname}.{key}", value)
        if mtu:
            self.run("ip", "link", "set", ifname, "mtu", str(mtu), check=True)
        for address in addresses:
            self.run("ip", "-6", "addr", "add", address, "dev", ifname, "nodad", check=True)
        self.run("ip", "link", "set", ifname, "up", check=True)


@pytest.fixture
def namespaces(processes):
    """``make() -> Namespace``: fresh namespaces, deleted after the test."""
    require("vde_plug2tap", "ip", "ss", "nstat", "sysctl", root=True, tun=True)
    names = []

    def make():
        name = f"lwtcp6{os.getpid()}x{next(_names)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        names.append(name)
        ns = Namespace(processes, name)
        ns.run("ip", "link", "set", "lo", "up", check=True)
        return ns

    yield make
    processes.stop_all()
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False)


def plug(ns, locator, *addresses):
    """Plug a tap of ``ns`` into the switch at ``locator`` and give it ``addresses``."""
    ns.plug_tap(locator, TAP)
    ns.ipv6_up(TAP, *addresses)


@pytest.fixture
def kernel(namespaces, lwswitch):
    """A namespace on the test's lwswitch at KERNEL6; yields ``(ns, locator)``."""
    ns = namespaces()
    plug(ns, lwswitch, f"{KERNEL6}/64")
    return ns, lwswitch


# -- bulk ------------------------------------------------------------------------------------------

def lwperf_server(processes, ns, locator):
    """An lwperf server: in ``ns`` (the kernel, ``--once``) or an lwstack process at OURS6."""
    if ns is not None:
        proc = ns.start(sys.executable, "-m", "lwperf", "--net", "kernel", "-s", "--once",
                        "--json", "-B", KERNEL6)
        address = KERNEL6
    else:
        proc = processes.python("lwperf", "--net", locator, "--conf", f"ip={OURS6}/64", "-s",
                                "-6", "--json")
        address = OURS6
    line = read_line(proc, timeout=30)
    assert line == f"lwperf: server listening on [{address}]:5201\n", \
        line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc


def verdict(text, role, nbytes, reverse):
    result = json.loads(text.strip().splitlines()[-1])
    assert result["role"] == role and result["reverse"] == reverse
    assert result["bytes"] == nbytes and result["sha256_ok"] is True, result
    return result["mbps"]


def assert_no_resets(ns):
    assert wait_for(lambda: all(line.split()[0] in ("TIME-WAIT", "LAST-ACK")
                                for line in ns.sockets())), ns.sockets()
    counters = ns.counters("TcpOutRsts", "TcpEstabResets", "TcpExtTCPAbortOnData",
                           "TcpExtTCPAbortOnClose")
    assert counters == {"TcpOutRsts": 0, "TcpEstabResets": 0, "TcpExtTCPAbortOnData": 0,
                        "TcpExtTCPAbortOnClose": 0}, counters


@pytest.mark.parametrize("client, reverse", [
    ("kernel", False), ("kernel", True), ("lwstack", False), ("lwstack", True)],
    ids=["kernel_client-to_lwstack", "kernel_client-from_lwstack",
         "lwstack_client-to_kernel", "lwstack_client-from_kernel"])
def test_bulk_over_ipv6_with_the_kernel_is_byte_exact(kernel, processes, client, reverse):
    ns, locator = kernel
    extra = ["-n", str(BULK), "--json"] + (["-R"] if reverse else [])
    if client == "kernel":
        server = lwperf_server(processes, None, locator)
        result = ns.run(sys.executable, "-m", "lwperf", "--net", "kernel", "-c", OURS6, *extra,
                        timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        out = read_line(server, timeout=60)
    else:
        server = lwperf_server(processes, ns, locator)
        result = subprocess.run([sys.executable, "-m", "lwperf", "--net", locator, "--conf",
                                 f"ip={OURS6}/64", "-c", KERNEL6, *extra], capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        out, err = server.communicate(timeout=60)
        assert server.returncode == 0, out + err
    mbps = verdict(result.stdout, "client", BULK, reverse)
    assert verdict(out, "server", BULK, reverse) == mbps
    print(f"IPv6, 100 MB, {client} client, reverse={reverse}: {mbps} MB/s")
    assert_no_resets(ns)


# -- handshakes and errors --------------------------------------------------------------------------

KERNEL_CLIENT = r'''
import json, socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
sock.sendall(b"hello over IPv6")
sock.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
print(json.dumps({"data": data.decode(), "options": info[5], "snd_wscale": info[6] & 0x0F,
                  "mss": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG),
                  "local": sock.getsockname()[:2]}), flush=True)
sock.close()
'''


def test_kernel_connects_to_lwstack_and_options_are_negotiated(kernel):
    ns, locator = kernel
    with lwstack.Stack(locator, f"ip={OURS6}/64") as stack:
        assert stack.wait_ipv6_configured(5)
        with stack.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
            listener.bind(("", 8000))
            listener.listen(1)
            proc = ns.python(KERNEL_CLIENT, OURS6, "8000")
            listener.settimeout(10)
            conn, peer = listener.accept()
            assert peer[0] == KERNEL6 and peer[2:] == (0, 0)
            assert conn.getsockname() == (OURS6, 8000, 0, 0)
            # The kernel's SYN over IPv6: MSS = 1500 - 60, every option offered.
            assert conn._conn.peer_mss == 1440
            assert (conn._conn.sack_ok, conn._conn.ts_ok) == (True, True)
            conn.settimeout(10)
            data = b""
            while True:
                chunk = conn.recv(100)
                if not chunk:
                    break
                data += chunk
            conn.sendall(data.upper())
            conn.close()
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["data"] == "HELLO OVER IPV6"
    # TCP_INFO: TCPI_OPT_TIMESTAMPS 1 | SACK 2 | WSCALE 4; our window scale is 9.
    assert report["options"] & 7 == 7 and report["snd_wscale"] == 9
    assert report["mss"] == 1440 - 12                 # lwstack's MSS less the timestamps
    assert report["local"] == [KERNEL6, report["local"][1]]


def test_lwstack_connects_to_the_kernel_and_refusals_both_ways(kernel):
    ns, locator = kernel
    server = ns.python(r'''
import socket
listener = socket.create_server(("::", 8001), family=socket.AF_INET6)
print("ready", flush=True)
listener.settimeout(20)
conn, peer = listener.accept()
conn.sendall(("peer " + peer[0]).encode())
conn.close()
''')
    assert read_line(server) == "ready\n"
    with lwstack.Stack(locator, f"ip={OURS6}/64") as stack:
        assert stack.wait_ipv6_configured(5)
        with stack.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect((KERNEL6, 8001))
            assert sock.getpeername() == (KERNEL6, 8001, 0, 0)
            assert sock.recv(100) == f"peer {OURS6}".encode()
            assert sock.getsockopt(socket.IPPROTO_TCP, 2) == 1440 - 12
        with stack.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            with pytest.raises(ConnectionRefusedError):
                sock.connect((KERNEL6, 9))
        refused = ns.run(sys.executable, "-c", r'''
import errno, socket, sys
s = socket.socket(socket.AF_INET6)
s.settimeout(10)
print(errno.errorcode.get(s.connect_ex((sys.argv[1], 9)), "0"))
''', OURS6)
        assert refused.stdout.strip() == "ECONNREFUSED", refused.stdout + refused.stderr
    server.communicate(timeout=10)


def test_kernel_gets_lwechos_tcp_echo_over_ipv6(kernel, lwecho):
    ns, locator = kernel
    lwecho(locator, f"ip={OURS6}/64")
    client = r'''
import socket, sys
payload = bytes(i % 251 for i in range(200000))
for attempt in range(50):              # lwecho's address may still be in DAD
    try:
        sock = socket.create_connection((sys.argv[1], 7), timeout=10)
        break
    except ConnectionRefusedError:
        raise
    except OSError:
        import time; time.sleep(0.1)
sock.sendall(payload)
sock.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
print(data == payload, len(data), flush=True)
'''
    result = ns.run(sys.executable, "-c", client, OURS6, timeout=60)
    assert result.stdout.split() == ["True", "200000"], result.stdout + result.stderr


# -- path MTU discovery with a real router -----------------------------------------------------------

def test_packet_too_big_from_a_kernel_router_lowers_lwstacks_mss(namespaces, lwswitch):
    """lwstack -- tap -- router (forwarding) -- 1300-byte link -- server: the server's own
    link is 1500 bytes on its side, so it announces MSS 1440; lwstack's full-sized packets
    (1500 bytes) cannot cross the router's 1300-byte link, the router sends Packet Too Big,
    lwstack resends in 1240-byte segments and the transfer completes."""
    router, server_ns = namespaces(), namespaces()
    plug(router, lwswitch, "fd00:79::1/64")
    router.sysctl("net.ipv6.conf.all.forwarding", 1)
    veth_r, veth_s = f"lwr{os.getpid() % 10000}", f"lws{os.getpid() % 10000}"
    subprocess.run(["ip", "link", "add", veth_r, "netns", router.name, "type", "veth",
                    "peer", "name", veth_s, "netns", server_ns.name], check=True)
    router.ipv6_up(veth_r, "fd00:80::1/64", mtu=1300)
    server_ns.ipv6_up(veth_s, "fd00:80::2/64", mtu=1500)
    server_ns.run("ip", "-6", "route", "add", "default", "via", "fd00:80::1", check=True)
    size = 4 * MB
    server = server_ns.python(r'''
import hashlib, socket, sys
listener = socket.create_server(("::", 8002), family=socket.AF_INET6)
print("ready", flush=True)
listener.settimeout(30)
conn, peer = listener.accept()
conn.settimeout(30)
digest, total = hashlib.sha256(), 0
while True:
    chunk = conn.recv(1 << 16)
    if not chunk:
        break
    digest.update(chunk)
    total += len(chunk)
conn.sendall(f"{total} {digest.hexdigest()}".encode())
conn.close()
''')
    assert read_line(server) == "ready\n"
    data = os.urandom(size)
    with lwstack.Stack(lwswitch, f"ip={OURS6}/64,gw=fd00:79::1") as stack:
        assert stack.wait_ipv6_configured(5)
        with stack.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(("fd00:80::2", 8002))
            assert sock._conn.peer_mss == 1440        # the server's side of the link
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                chunk = sock.recv(200)
                if not chunk:
                    break
                answer += chunk
            mss = sock.getsockopt(socket.IPPROTO_TCP, 2)
        stats = stack.host.tcp.stats
        host_stats = stack.host.stats
    assert answer.decode() == f"{size} {hashlib.sha256(data).hexdigest()}"
    assert mss == 1300 - 60 - 12                      # the path's MTU less the headers and TS
    assert stats["pmtu_mss_lowered"] >= 1 and host_stats["pmtu_learnt"] >= 1
    server.communicate(timeout=10)
