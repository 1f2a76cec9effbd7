"""The threaded runtime: real time, reactor threads, in-memory and unix-socket switches."""
import os
import struct
import threading
import time

import pytest

import lwstack
from lwstack import socket as lws
from vde.memory import MemorySwitch


@pytest.fixture
def pair():
    switch = MemorySwitch()
    a = lwstack.Stack(switch, "ip=10.1.0.1/24")
    b = lwstack.Stack(switch, "ip=10.1.0.2/24")
    yield switch, a, b
    a.close()
    b.close()


def test_udp_round_trip_between_threads(pair):
    _switch, a, b = pair
    server = b.socket()
    server.bind(("", 7))
    server.settimeout(5)
    ready = threading.Event()
    received = []

    def serve():
        ready.set()
        data, peer = server.recvfrom(2048)
        received.append((data, peer))
        server.sendto(data.upper(), peer)

    thread = threading.Thread(target=serve)
    thread.start()
    ready.wait(5)
    client = a.socket()
    client.settimeout(5)
    client.sendto(b"hello", ("10.1.0.2", 7))
    reply, source = client.recvfrom(2048)
    thread.join(5)
    assert reply == b"HELLO"
    assert source == ("10.1.0.2", 7)
    assert received[0][0] == b"hello"
    assert received[0][1] == ("10.1.0.1", client.getsockname()[1])


def test_ping_socket_gets_echo_reply_with_ttl(pair):
    _switch, a, _b = pair
    sock = a.socket(lws.AF_INET, lws.SOCK_DGRAM, lws.IPPROTO_ICMP)
    sock.setsockopt(lws.IPPROTO_IP, lws.IP_RECVTTL, 1)
    sock.settimeout(5)
    sock.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 42) + b"payload", ("10.1.0.2", 0))
    message, ancdata, flags, source = sock.recvmsg(2048, 64)
    assert message[0] == 0 and struct.unpack("!H", message[6:8])[0] == 42
    assert message[8:] == b"payload"
    assert source == ("10.1.0.2", 0)
    assert ancdata == [(lws.IPPROTO_IP, lws.IP_TTL, struct.pack("i", 64))]
    assert flags == 0


def test_timeout_expires_in_real_time(pair):
    _switch, a, _b = pair
    sock = a.socket()
    sock.bind(("", 9999))
    sock.settimeout(0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sock.recvfrom(100)
    assert time.monotonic() - started >= 0.19


def test_arp_failure_wakes_blocked_reader(pair):
    # The reactor must shorten its sleep for the ARP retry timer an application thread armed.
    _switch, a, _b = pair
    sock = a.socket()
    sock.connect(("10.1.0.99", 9))
    sock.send(b"x")
    sock.settimeout(10)
    started = time.monotonic()
    with pytest.raises(OSError) as info:
        sock.recv(10)
    assert info.value.errno == 113  # EHOSTUNREACH, after 3 requests 1 s apart
    assert 2.5 <= time.monotonic() - started < 8


def test_close_wakes_blocked_reader_with_ebadf_or_enetdown(pair):
    _switch, a, _b = pair
    sock = a.socket()
    sock.bind(("", 5000))
    errors = []

    def reader():
        try:
            sock.recvfrom(10)
        except OSError as exc:
            errors.append(exc.errno)

    thread = threading.Thread(target=reader)
    thread.start()
    a.close()  # whether the reader is already blocked or not, it must not hang
    thread.join(5)
    assert not thread.is_alive()
    assert errors and errors[0] in (9, 100)  # EBADF or ENETDOWN


def test_idle_stack_uses_no_cpu(pair):
    # Two idle stacks (two reactor threads) sleep in their phy's wait without a timeout.
    before = os.times()
    time.sleep(1.0)  # wall time is the point here: measure CPU over an idle second
    after = os.times()
    used = (after.user - before.user) + (after.system - before.system)
    assert used < 0.1, f"idle stacks used {used:.3f} s of CPU in 1 s"


def test_closing_stack_releases_switch_port(pair):
    switch, a, _b = pair
    open_before = len(switch.core.ports)
    a.close()
    assert len(switch.core.ports) == open_before - 1
    with pytest.raises(OSError):
        a.socket()


def test_default_stack_per_thread(pair):
    _switch, a, b = pair
    seen = {}

    def worker(stack, name):
        with stack.as_default():
            seen[name] = lws.socket(lws.AF_INET, lws.SOCK_DGRAM).stack

    threads = [threading.Thread(target=worker, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert seen == {"a": a, "b": b}
    with pytest.raises(OSError) as info:
        lws.socket(lws.AF_INET, lws.SOCK_DGRAM)  # this thread has no default stack
    assert info.value.errno == 100  # ENETDOWN
