"""The tools over TCP/IPv6, as separate processes on lwswitch: lwecho's dual-stack TCP echo
answering an IPv6 client (and still an IPv4 one), and lwperf between two lwstack processes
over IPv6 with every byte checked, the server dual-stack.  (The Linux kernel as their peer over
IPv6 is in tests/interop/test_tcp6_interop.py.)"""
import re
import socket
import subprocess
import sys

import lwstack
from support import read_line


def pattern(size, seed=0):
    return bytes((i * 7 + seed) % 251 for i in range(size))


def round_trip(sock, payload):
    sock.sendall(payload)
    echoed = bytearray()
    while len(echoed) < len(payload):
        chunk = sock.recv(len(payload) - len(echoed))
        assert chunk, "lwecho closed before echoing everything"
        echoed += chunk
    return bytes(echoed)


def test_lwecho_echoes_tcp_over_ipv6_and_ipv4(lwswitch, lwecho):
    proc = lwecho(lwswitch, "ip=10.0.0.1/24,ip=fd00::1/64")
    with lwstack.Stack(lwswitch, "ip=10.0.0.3/24,ip=fd00::3/64") as stack:
        assert stack.wait_ipv6_configured(10)
        with stack.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(("fd00::1", 7))          # lwecho's own DAD may still be running:
            port = sock.getsockname()[1]          # the SYN is retried until it is done
            for size in (1, 1440, 5000):
                assert round_trip(sock, pattern(size, size)) == pattern(size, size)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""
        line = read_line(proc)
        assert line == f"lwecho: TCP [fd00::3]:{port}: 6441 bytes echoed, closed\n", line
        with stack.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(("10.0.0.1", 7))
            port = sock.getsockname()[1]
            assert round_trip(sock, b"v4") == b"v4"
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""
        # IPv4 clients of the dual-stack listener print as before (not ::ffff:10.0.0.3).
        assert read_line(proc) == f"lwecho: TCP 10.0.0.3:{port}: 2 bytes echoed, closed\n"


def test_lwecho_echoes_udp_over_ipv6(lwswitch, lwecho):
    proc = lwecho(lwswitch, "ip=fd00::1/64")
    with lwstack.Stack(lwswitch, "ip=fd00::4/64") as stack:
        assert stack.wait_ipv6_configured(10)
        with stack.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            for _ in range(5):                    # until lwecho's address passed DAD
                sock.sendto(b"dgram6", ("fd00::1", 7))
                try:
                    data, peer = sock.recvfrom(100)
                    break
                except TimeoutError:
                    continue
            assert (data, peer) == (b"dgram6", ("fd00::1", 7, 0, 0))
            port = sock.getsockname()[1]
    assert read_line(proc) == f"lwecho: 6 bytes from [fd00::4]:{port} echoed\n"


def test_lwperf_over_ipv6_between_two_lwstack_processes(lwswitch, processes):
    server = processes.python("lwperf", "--net", lwswitch, "--conf",
                              "ip=10.0.0.1/24,ip=fd00::1/64", "-s", "--once", "-6")
    line = read_line(server, timeout=20)
    assert line == "lwperf: server listening on [fd00::1]:5201\n", line
    result = subprocess.run([sys.executable, "-m", "lwperf", "--net", lwswitch, "--conf",
                             "ip=fd00::2/64", "-c", "fd00::1", "-n", "8M"],
                            capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"8388608 bytes in .* \(sender\), sha256 ok$", result.stdout), result.stdout
    out, err = server.communicate(timeout=30)
    assert server.returncode == 0, out + err
    lines = out.splitlines()
    assert re.fullmatch(r"lwperf: test from \[fd00::2\]:\d+: 1 stream\(s\), 8388608 bytes "
                        r"each, client sends", lines[0]), lines
    assert lines[-1].endswith("(receiver), sha256 ok"), lines


def test_lwperf_server_is_dual_stack(lwswitch, processes):
    server = processes.python("lwperf", "--net", lwswitch, "--conf",
                              "ip=10.0.0.1/24,ip=fd00::1/64", "-s", "--once")
    assert read_line(server, timeout=20) == "lwperf: server listening on 10.0.0.1:5201\n"
    result = subprocess.run([sys.executable, "-m", "lwperf", "--net", lwswitch, "--conf",
                             "ip=10.0.0.2/24", "-c", "10.0.0.1", "-n", "1M", "-R"],
                            capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    out, _err = server.communicate(timeout=30)
    assert re.match(r"lwperf: test from 10\.0\.0\.2:\d+: ", out), out
