"""lwecho's TCP echo (RFC 862): lwstack clients in this process, lwecho in another, on lwswitch.

The kernel as a client of lwecho's TCP echo is in tests/interop/test_tcp_interop.py.
"""
import re
import socket
import threading

import pytest

import lwstack
from support import read_line


def pattern(size, seed=0):
    return bytes((i * 7 + seed) % 251 for i in range(size))


def echo_round_trip(stack, address, payload, timeout=10):
    """Send ``payload`` on a new connection, half-close, read to EOF; return what came back."""
    with stack.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        received = bytearray()
        errors = []

        def write():
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                errors.append(exc)

        # Write and read at once: the echo of a large payload fills both windows.
        writer = threading.Thread(target=write)
        writer.start()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        writer.join()
        assert not errors, errors
        return bytes(received)


def test_lwecho_echoes_tcp_until_eof_then_closes(lwswitch, lwecho):
    proc = lwecho(lwswitch, "ip=10.0.0.1/24")
    with lwstack.Stack(lwswitch, "ip=10.0.0.3/24") as stack:
        with stack.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(("10.0.0.1", 7))
            port = sock.getsockname()[1]
            for size in (1, 100, 1460, 5000):
                payload = pattern(size, size)
                sock.sendall(payload)
                echoed = bytearray()
                while len(echoed) < size:
                    chunk = sock.recv(size - len(echoed))
                    assert chunk, "lwecho closed before echoing everything"
                    echoed += chunk
                assert echoed == payload
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""         # lwecho's FIN follows ours
        assert read_line(proc) == f"lwecho: TCP 10.0.0.3:{port}: 6561 bytes echoed, closed\n"


def test_lwecho_tcp_and_udp_share_the_port_and_connections_run_at_once(lwswitch, lwecho):
    lwecho(lwswitch, "ip=10.0.0.1/24")
    with lwstack.Stack(lwswitch, "ip=10.0.0.4/24") as stack:
        payloads = [pattern(size, seed) for seed, size in enumerate((300_000, 70_000, 1))]
        results = [None] * len(payloads)

        def client(index):
            results[index] = echo_round_trip(stack, ("10.0.0.1", 7), payloads[index])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(payloads))]
        for thread in threads:
            thread.start()
        with stack.socket() as udp:                # UDP on the same port, meanwhile
            udp.settimeout(5)
            udp.sendto(b"datagram", ("10.0.0.1", 7))
            assert udp.recvfrom(100) == (b"datagram", ("10.0.0.1", 7))
        for thread in threads:
            thread.join(30)
        assert [len(r) if r is not None else None for r in results] == \
            [len(p) for p in payloads]
        assert results == payloads


def test_lwecho_tcp_follows_port_option(lwswitch, processes):
    proc = processes.python("lwecho", "--net", lwswitch, "--conf", "ip=10.0.0.1/24",
                            "--port", "2007", "-q")
    line = read_line(proc)
    assert re.match(r"lwecho: 10\.0\.0\.1/24 \(.*\) answering ping and echoing UDP and TCP "
                    r"port 2007$", line), line
    with lwstack.Stack(lwswitch, "ip=10.0.0.5/24") as stack:
        assert echo_round_trip(stack, ("10.0.0.1", 2007), b"ping") == b"ping"
        with stack.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            with pytest.raises(ConnectionRefusedError):
                sock.connect(("10.0.0.1", 7))     # nothing listens on 7 any more
