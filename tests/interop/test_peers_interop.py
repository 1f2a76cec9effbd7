"""Other vde2-world peers plugged into lwswitch: LWIPv6 (Debian's liblwipv6) and slirpvde.

Everything stays on this machine: the LWIPv6 peer lives on our switch, and slirpvde's virtual
gateway 10.0.2.2 is the host's loopback, where the test runs its own UDP echo server.
"""
import socket
import subprocess
import sys
import threading

import pytest

from conftest import require
from support import read_line

import lwstack

BENCH = __file__.rsplit("/tests/", 1)[0] + "/bench"


@pytest.fixture
def lwip_peer(tmp_path):
    """bench/lwip_peer.c built against Debian's liblwipv6 into a temporary directory."""
    require("cc", files=["/usr/include/lwipv6.h"])  # Debian's liblwipv6-dev
    binary = tmp_path / "lwip_peer"
    build = subprocess.run(["cc", "-O2", "-o", str(binary), f"{BENCH}/lwip_peer.c", "-llwipv6",
                            "-ldl", "-lpthread"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return str(binary)


def test_lwstack_pings_and_echoes_with_an_lwipv6_peer_on_lwswitch(lwswitch, lwip_peer,
                                                                   processes):
    peer = processes.start([lwip_peer, "-s", lwswitch.removeprefix("vde://"),
                            "-a", "10.55.0.1/24", "-e", "7"], stdin=subprocess.PIPE)
    assert read_line(peer).strip() == "ready"
    with lwstack.Stack(lwswitch, "ip=10.55.0.2/24") as stack:
        ping = subprocess.run([sys.executable, "-m", "lwping", "--net", lwswitch, "--conf",
                               "ip=10.55.0.3/24", "-c", "3", "-i", "0.2", "10.55.0.1"],
                              capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "3 received, 0% packet loss" in ping.stdout
        with stack.socket() as sock:
            sock.settimeout(5)
            sock.connect(("10.55.0.1", 7))
            for size in (1, 512, 1472):
                payload = bytes(range(256)) * 6
                sock.send(payload[:size])
                assert sock.recv(2048) == payload[:size]


def test_slirpvde_plugs_into_lwswitch(lwswitch, processes):
    require("slirpvde")
    # A UDP echo server on the host's loopback; slirp maps its gateway 10.0.2.2 to it.
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(10)
    port = server.getsockname()[1]
    seen = []

    def echo_once():
        data, peer = server.recvfrom(2048)
        seen.append(peer)
        server.sendto(data, peer)

    thread = threading.Thread(target=echo_once)
    thread.start()
    processes.start(["slirpvde", "-s", lwswitch.removeprefix("vde://")],
                    stdout=subprocess.DEVNULL)
    try:
        with lwstack.Stack(lwswitch, "ip=10.0.2.15/24,gw=10.0.2.2") as stack, \
                stack.socket() as sock:
            sock.settimeout(2)
            sock.connect(("10.0.2.2", port))
            reply = None
            for _attempt in range(5):  # slirpvde may still be plugging in
                sock.send(b"through slirp")
                try:
                    reply = sock.recv(2048)
                    break
                except TimeoutError:
                    continue
            assert reply == b"through slirp"
    finally:
        thread.join(10)
        server.close()
    assert seen and seen[0][0] == "127.0.0.1"
