"""lwstack against real peers: Debian's vde_switch, and the Linux kernel through vde_plug2tap.

The kernel side lives in a network namespace created for the test, so the tap, its address
and every packet stay inside it; nothing touches the host's own interfaces.
"""
import itertools
import os
import re
import subprocess
import sys

import pytest

from conftest import require
from support import wait_for_path

import lwstack

_names = itertools.count()


def run_tool(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def vde_switch(processes, tmp_path):
    """Debian's vde_switch in a temporary directory (stdin kept open: EOF stops it)."""
    require("vde_switch")
    directory = tmp_path / "vdesw"
    proc = processes.start(["vde_switch", "-s", str(directory)], stdin=subprocess.PIPE)
    wait_for_path(directory / "ctl", proc)
    return f"vde://{directory}"


@pytest.fixture
def kernel_on(processes):
    """Plug a Linux tap, inside a fresh network namespace, into a switch.

    Returns ``attach(locator, address) -> ns_exec`` where ``ns_exec(argv)`` runs a command in
    the namespace.
    """
    require("vde_plug2tap", "ip", root=True, tun=True)
    namespaces = []

    def attach(locator, address):
        name = f"lwst{os.getpid()}x{next(_names)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        namespaces.append(name)
        ns = ["ip", "netns", "exec", name]
        switch_dir = locator.removeprefix("vde://")
        plug = processes.start([*ns, "vde_plug2tap", "-s", switch_dir, "lwtap0"])
        deadline_ok = _wait_for_link(ns, "lwtap0", plug)
        assert deadline_ok, "vde_plug2tap did not create its tap"
        subprocess.run([*ns, "ip", "addr", "add", address, "dev", "lwtap0"], check=True)
        subprocess.run([*ns, "ip", "link", "set", "lwtap0", "up"], check=True)
        subprocess.run([*ns, "ip", "link", "set", "lo", "up"], check=True)

        def ns_exec(argv, **kwargs):
            return subprocess.run([*ns, *argv], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=60, **kwargs)
        return ns_exec

    yield attach
    processes.stop_all()
    for name in namespaces:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _wait_for_link(ns, name, proc, timeout=10.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vde_plug2tap exited: {proc.stderr.read()}")
        if subprocess.run([*ns, "ip", "link", "show", name], capture_output=True).returncode == 0:
            return True
        time.sleep(0.05)
    return False


def test_two_lwstack_processes_ping_through_debian_vde_switch(vde_switch, lwecho):
    lwecho(vde_switch, "ip=10.66.0.1/24")
    result = run_tool("lwping", "--net", vde_switch, "--conf", "ip=10.66.0.2/24", "-c", "3",
                      "-i", "0.2", "10.66.0.1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 packets transmitted, 3 received, 0% packet loss" in result.stdout


def test_udp_between_lwstack_processes_through_debian_vde_switch(vde_switch, lwecho):
    lwecho(vde_switch, "ip=10.66.0.1/24")
    with lwstack.Stack(vde_switch, "ip=10.66.0.3/24") as stack, stack.socket() as sock:
        sock.settimeout(5)
        sock.connect(("10.66.0.1", 7))
        for size in (1, 100, 1472):
            payload = os.urandom(size)
            sock.send(payload)
            assert sock.recv(2048) == payload


def test_kernel_pings_lwstack_and_lwstack_pings_kernel(lwswitch, lwecho, kernel_on):
    ns_exec = kernel_on(lwswitch, "10.77.0.1/24")
    lwecho(lwswitch, "ip=10.77.0.2/24")
    kernel_ping = ns_exec(["ping", "-c", "3", "-i", "0.2", "-W", "5", "10.77.0.2"])
    assert kernel_ping.returncode == 0, kernel_ping.stdout + kernel_ping.stderr
    assert "3 received" in kernel_ping.stdout
    our_ping = run_tool("lwping", "--net", lwswitch, "--conf", "ip=10.77.0.3/24", "-c", "3",
                        "-i", "0.2", "10.77.0.1")
    assert our_ping.returncode == 0, our_ping.stdout + our_ping.stderr
    assert "3 packets transmitted, 3 received, 0% packet loss" in our_ping.stdout
    # Same reply-line shape as the kernel's own iputils ping printed above.
    shape = r"64 bytes from [\d.]+: icmp_seq=1 ttl=64 time=[\d.]+ ms"
    assert re.search(shape, kernel_ping.stdout) and re.search(shape, our_ping.stdout)


def test_kernel_udp_socket_talks_to_lwstack(lwswitch, lwecho, kernel_on):
    ns_exec = kernel_on(lwswitch, "10.77.0.1/24")
    lwecho(lwswitch, "ip=10.77.0.2/24")
    script = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "s.settimeout(5); s.sendto(b'x' * 1400, ('10.77.0.2', 7)); "
              "data, peer = s.recvfrom(2048); print(len(data), peer)")
    result = ns_exec([sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1400 ('10.77.0.2', 7)"


def test_kernel_port_unreachable_refuses_connected_lwstack_socket(lwswitch, kernel_on):
    kernel_on(lwswitch, "10.77.0.1/24")
    with lwstack.Stack(lwswitch, "ip=10.77.0.5/24") as stack, stack.socket() as sock:
        sock.settimeout(5)
        sock.connect(("10.77.0.1", 9))  # nothing listens on the kernel's port 9
        sock.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            sock.recv(100)


def test_lwstack_behind_kernel_router(lwswitch, kernel_on):
    # The kernel namespace is lwstack's default gateway; an address on the namespace's
    # loopback is off-subnet, so lwstack must ARP for the gateway and send through it.
    ns_exec = kernel_on(lwswitch, "10.77.0.1/24")
    assert ns_exec(["ip", "addr", "add", "10.88.0.1/32", "dev", "lo"]).returncode == 0
    result = run_tool("lwping", "--net", lwswitch, "--conf", "ip=10.77.0.6/24,gw=10.77.0.1",
                      "-c", "2", "-i", "0.2", "10.88.0.1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "64 bytes from 10.88.0.1: icmp_seq=1" in result.stdout
