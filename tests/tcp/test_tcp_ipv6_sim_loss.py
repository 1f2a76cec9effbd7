"""TCP over IPv6 on a lossy virtual network: two whole stacks (IPv6 and IPv4 addresses each),
AF_INET6 sockets, 10 MB byte-exact (length and SHA-256) through seeded loss, duplication,
reordering, delay and jitter on both ports, as tests/sim/test_sim_tcp_loss.py does for IPv4;
plus both directions at once through small buffers, and IPv4 clients of a dual-stack
listener in the same lossy network.  Every segment must fit the IPv6 MTU (none refused as
unroutable: an IPv6 packet over the MTU is never fragmented by its TCP source)."""
import errno
import hashlib
import random

import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork

AF_INET, AF_INET6, SOCK_STREAM = lwsocket.AF_INET, lwsocket.AF_INET6, lwsocket.SOCK_STREAM
SOL_SOCKET, SHUT_WR = lwsocket.SOL_SOCKET, lwsocket.SHUT_WR
MB = 1 << 20
MESS = {"duplicate": 0.01, "reorder": 0.02, "delay": 0.005, "jitter": 0.002}
PATIENCE = 1800.0


def payload(size, seed):
    return random.Random(seed * 7919 + size).randbytes(size)


def digest(data):
    return len(data), hashlib.sha256(data).hexdigest()


def network(seed, loss, **impairments):
    """Stacks ``a`` (fd00::1, 10.0.0.1) and ``b`` (fd00::2, 10.0.0.2), their addresses past
    DAD, with ``loss`` and ``impairments`` on both ports."""
    net = VirtualNetwork(seed=seed)
    options = dict(impairments, loss=loss)
    a = net.stack("ip=10.0.0.1/24,ip=fd00::1/64", **options)
    b = net.stack("ip=10.0.0.2/24,ip=fd00::2/64", **options)
    net.run(5.0)                  # DAD (its probes may be lost too: it only takes longer)
    assert a.host.is_local(bytes.fromhex("fd000000000000000000000000000001"))
    return net, a, b


def recv_to_eof(sock):
    hasher = hashlib.sha256()
    total = 0
    while True:
        data = sock.recv(1 << 18)
        if not data:
            return total, hasher.hexdigest()
        hasher.update(data)
        total += len(data)


def accept_one(net, a, b, family=AF_INET6, server="fd00::2", port=8080, buf=None):
    listener = b.socket(AF_INET6, SOCK_STREAM)
    listener.bind(("", port))
    listener.listen(4)
    client = a.socket(family, SOCK_STREAM)
    for sock in (listener, client):
        if buf:
            sock.setsockopt(SOL_SOCKET, lwsocket.SO_RCVBUF, buf)
            sock.setsockopt(SOL_SOCKET, lwsocket.SO_SNDBUF, buf)
    client.setblocking(False)
    assert client.connect_ex((server, port)) == errno.EINPROGRESS
    listener.settimeout(PATIENCE)
    accepted, peer = listener.accept()
    net.run_until(lambda: client._conn.writable, PATIENCE)
    assert client.getsockopt(SOL_SOCKET, lwsocket.SO_ERROR) == 0
    listener.close()
    return client, accepted, peer


def no_unroutable(*stacks):
    return all(s.host.tcp.stats["segments_unroutable"] == 0 for s in stacks)


@pytest.mark.parametrize("loss", [0.0, 0.01, 0.05, 0.10])
def test_ten_megabytes_over_ipv6_byte_exact(loss):
    net, a, b = network(61 + int(loss * 100), loss, **MESS)
    client, server, peer = accept_one(net, a, b)
    assert peer[0] == "fd00::1" and peer[2:] == (0, 0)
    data = payload(10 * MB, 6)
    client.setblocking(True)
    client.setsockopt(SOL_SOCKET, lwsocket.SO_SNDBUF, 8 * MB)
    client.sendall(data)
    client.shutdown(SHUT_WR)
    server.settimeout(PATIENCE)
    assert recv_to_eof(server) == digest(data)
    server.close()
    client.settimeout(PATIENCE)
    assert client.recv(100) == b""
    client.close()
    assert no_unroutable(a, b)
    conn_stats = a.host.tcp.stats
    if loss:
        assert conn_stats["segments_retransmitted"] > 0
    assert a.host.stats["drop.tcp_bad_checksum"] == b.host.stats["drop.tcp_bad_checksum"] == 0


def _pump(net, jobs):
    """Non-blocking send/recv jobs on one virtual network until all are done."""
    while jobs:
        progressed = False
        for job in list(jobs):
            if job():
                jobs.remove(job)
                progressed = True
        if jobs and not progressed:
            assert net.run_until(lambda: any(_ready(job) for job in jobs), PATIENCE), \
                f"stuck at t={net.now}"


def _ready(job):
    return job.ready()


class _Sender:
    def __init__(self, sock, data):
        self.sock, self.view, self.sent = sock, memoryview(data), 0

    def ready(self):
        return self.sock._conn.writable

    def __call__(self):
        while self.sent < len(self.view):
            try:
                self.sent += self.sock.send(self.view[self.sent:self.sent + 65536])
            except BlockingIOError:
                return False
        self.sock.shutdown(SHUT_WR)
        return True


class _Receiver:
    def __init__(self, sock):
        self.sock, self.hasher, self.total, self.result = sock, hashlib.sha256(), 0, None

    def ready(self):
        return self.sock._conn.readable

    def __call__(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return False
            if not data:
                self.result = (self.total, self.hasher.hexdigest())
                return True
            self.hasher.update(data)
            self.total += len(data)


def test_both_ways_at_once_through_small_buffers_over_ipv6():
    """4 MB one way and 2 MB back at once, 64 KiB buffers, 3 % loss: flow control and
    recovery in both directions of one IPv6 connection."""
    net, a, b = network(71, 0.03, **MESS)
    client, server, _ = accept_one(net, a, b, buf=32768)
    forward, back = payload(4 * MB, 1), payload(2 * MB, 2)
    for sock in (client, server):
        sock.setblocking(False)
    into_server, into_client = _Receiver(server), _Receiver(client)
    _pump(net, [_Sender(client, forward), into_server, _Sender(server, back), into_client])
    assert into_server.result == digest(forward)
    assert into_client.result == digest(back)
    assert no_unroutable(a, b)


def test_ipv4_and_ipv6_clients_of_one_dual_stack_listener_through_loss():
    """An AF_INET6 listener on :: serves an IPv4 client (as ::ffff:10.0.0.1) and an IPv6 one
    at the same time, 2 MB each, 5 % loss."""
    net, a, b = network(81, 0.05, **MESS)
    listener = b.socket(AF_INET6, SOCK_STREAM)
    listener.bind(("", 9000))
    listener.listen(4)
    clients = {}
    for family, host in ((AF_INET, "10.0.0.2"), (AF_INET6, "fd00::2")):
        sock = a.socket(family, SOCK_STREAM)
        sock.setblocking(False)
        assert sock.connect_ex((host, 9000)) == errno.EINPROGRESS
        clients[family] = sock
    listener.settimeout(PATIENCE)
    accepted = dict(listener.accept()[::-1] for _ in range(2))
    peers = {peer[0] for peer in accepted}
    assert peers == {"::ffff:10.0.0.1", "fd00::1"}
    data = {AF_INET: payload(2 * MB, 4), AF_INET6: payload(2 * MB, 6)}
    jobs, receivers = [], {}
    for family, sock in clients.items():
        net.run_until(lambda s=sock: s._conn.writable, PATIENCE)
        jobs.append(_Sender(sock, data[family]))
    for peer, sock in accepted.items():
        sock.setblocking(False)
        family = AF_INET if peer[0].startswith("::ffff:") else AF_INET6
        receivers[family] = _Receiver(sock)
        jobs.append(receivers[family])
    _pump(net, jobs)
    for family in (AF_INET, AF_INET6):
        assert receivers[family].result == digest(data[family])
    assert no_unroutable(a, b)
