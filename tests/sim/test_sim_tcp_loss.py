"""Whole-network TCP on virtual time: two lwstack stacks on a lossy VirtualNetwork.

Every transfer is checked byte for byte (length and SHA-256) at the receiver, through the
socket API as a program uses it: ``sendall`` then ``shutdown(SHUT_WR)`` (or ``close``) on one
side, ``recv`` until ``b""`` on the other.  Impairments are the in-memory switch's seeded
loss, duplication, reordering, delay and jitter, on both ports (so both directions).

A virtual network runs in one thread: a blocking call runs the network until it can return.
So the bulk transfers come in two styles:

- blocking: the sender's buffer holds the whole payload (``SO_SNDBUF``), so ``sendall``
  returns at once and the receiver's blocking ``recv`` loop drives the network;
- non-blocking: a tiny event loop (:class:`Loop`) runs one generator per socket task, each
  using non-blocking calls and yielding what it waits for, as a ``selectors`` program does.
  This is how small buffers, both directions at once and many connections are exercised.

``LWSTACK_SIM_SOAK=N`` multiplies the number of seeds of every seeded test by N, for a long
soak run (the default, 1, keeps this file within about a minute in the pure build).
"""
import errno
import hashlib
import os
import random
import struct

import pytest

from lwstack import socket as lwsocket
from lwstack._stream import SO_LINGER, TCP_CONGESTION
from lwstack.sim import VirtualNetwork

AF_INET = lwsocket.AF_INET
SOCK_STREAM = lwsocket.SOCK_STREAM
SOL_SOCKET = lwsocket.SOL_SOCKET
SHUT_WR = lwsocket.SHUT_WR

SOAK = max(1, int(os.environ.get("LWSTACK_SIM_SOAK", "1") or 1))
MB = 1 << 20
LOSS_RATES = (0.0, 0.01, 0.05, 0.10)
#: The impairments every lossy test adds to loss, on both ports.
MESS = {"duplicate": 0.01, "reorder": 0.02, "delay": 0.005, "jitter": 0.002}
#: Virtual seconds a transfer may take before the test calls it stuck.
PATIENCE = 1800.0


def seeds(count):
    """``count`` seeds, times ``LWSTACK_SIM_SOAK``."""
    return range(count * SOAK)


def payload(size, seed):
    """``size`` reproducible pseudo-random bytes."""
    return random.Random(seed * 7919 + size).randbytes(size)


def digest(data):
    """What the receiver must end up with: ``(length, sha256 hex)``."""
    return len(data), hashlib.sha256(data).hexdigest()


# -- building networks and connections --------------------------------------------------------

def network(seed, loss=0.0, *, sack=True, timestamps=True, **impairments):
    """A seeded virtual network with stacks ``a`` (10.0.0.1) and ``b`` (10.0.0.2).

    ``loss`` and ``impairments`` (duplicate, reorder, delay, jitter) apply to both ports;
    ``sack``/``timestamps`` False turn the TCP options off on both hosts.
    """
    net = VirtualNetwork(seed=seed)
    options = dict(impairments, loss=loss)
    a = net.stack("ip=10.0.0.1/24", **options)
    b = net.stack("ip=10.0.0.2/24", **options)
    for stack in (a, b):
        stack.host.tcp.sack_enabled = sack
        stack.host.tcp.timestamps_enabled = timestamps
    return net, a, b


def configure(sock, buf=None, cc=None):
    """Socket options a test asks for: small buffers and the congestion control."""
    if buf is not None:
        sock.setsockopt(SOL_SOCKET, lwsocket.SO_RCVBUF, buf)
        sock.setsockopt(SOL_SOCKET, lwsocket.SO_SNDBUF, buf)
    if cc is not None:
        sock.setsockopt(lwsocket.IPPROTO_TCP, TCP_CONGESTION, cc.encode())


def connect_many(net, a, b, count=1, *, port=8080, buf=None, cc=None):
    """``count`` connections from ``a`` to a listener on ``b``: ``[(client, server), ...]``.

    The clients connect non-blocking (EINPROGRESS), the server accepts them with blocking
    calls (which run the network), then each client's SO_ERROR must say 0.
    """
    listener = b.socket(AF_INET, SOCK_STREAM)
    configure(listener, buf, cc)          # accepted sockets inherit the listener's options
    listener.bind(("", port))
    listener.listen(count)
    clients = {}
    for _ in range(count):
        client = a.socket(AF_INET, SOCK_STREAM)
        configure(client, buf, cc)
        client.setblocking(False)
        assert client.connect_ex(("10.0.0.2", port)) == errno.EINPROGRESS
        clients[client.getsockname()[1]] = client
    listener.settimeout(PATIENCE)
    pairs = []
    for _ in range(count):
        server, (host, peer_port) = listener.accept()
        assert host == "10.0.0.1"
        client = clients.pop(peer_port)
        Loop(net).run_tasks([wait_writable(client)])
        assert client.getsockopt(SOL_SOCKET, lwsocket.SO_ERROR) == 0
        assert client.getpeername() == ("10.0.0.2", port)
        pairs.append((client, server))
    listener.close()
    return pairs


# -- a tiny event loop for non-blocking sockets on virtual time --------------------------------

def _readable(sock):
    # lwstack stream sockets have no fileno() for select() yet, so the loop asks the
    # connection for the readiness select() would report.
    return sock._conn.readable


def _writable(sock):
    return sock._conn.writable


def wait_writable(sock):
    """A task that ends when ``sock`` is writable (a non-blocking connect completed)."""
    while not _writable(sock):
        yield lambda: _writable(sock)


def send_task(sock, data, *, chunk=65536, close=False):
    """Send ``data`` with non-blocking ``send`` calls, then ``shutdown(SHUT_WR)`` or close."""
    view = memoryview(data)
    sent = 0
    while sent < len(view):
        try:
            sent += sock.send(view[sent:sent + chunk])
        except BlockingIOError:
            yield lambda: _writable(sock)
    if close:
        sock.close()
    else:
        sock.shutdown(SHUT_WR)


def recv_task(sock, results, *, bufsize=65536):
    """Receive to end of stream; append ``(length, sha256 hex)`` to ``results``."""
    hasher = hashlib.sha256()
    total = 0
    while True:
        try:
            data = sock.recv(bufsize)
        except BlockingIOError:
            yield lambda: _readable(sock)
            continue
        if not data:
            break
        hasher.update(data)
        total += len(data)
    results.append((total, hasher.hexdigest()))


class Loop:
    """Runs generator tasks over one virtual network.

    A task yields what it waits for: a predicate (resumed once it is true) or a number (a
    virtual time to sleep until).  The loop runs the network in between; an exception in a
    task propagates at once.
    """

    def __init__(self, net):
        self.net = net

    def run_tasks(self, tasks, timeout=PATIENCE):
        """Run ``tasks`` to completion within ``timeout`` virtual seconds."""
        net = self.net
        waiting = [[task, None, None] for task in tasks]     # task, predicate, wake-up time
        deadline = net.now + timeout
        while waiting:
            for entry in list(waiting):
                while entry[1] is None or entry[1]():
                    try:
                        wanted = next(entry[0])
                    except StopIteration:
                        waiting.remove(entry)
                        break
                    if callable(wanted):
                        entry[1], entry[2] = wanted, None
                    else:
                        entry[1], entry[2] = (lambda t=wanted: net.now >= t), wanted
            if not waiting:
                return
            until = min([deadline] + [entry[2] for entry in waiting if entry[2] is not None])
            if not net.run_until(lambda: any(entry[1]() for entry in waiting),
                                 until - net.now) and net.now >= deadline:
                raise AssertionError(f"stuck at t={net.now:.1f}: {len(waiting)} tasks "
                                     "still waiting")


def transfer(net, pairs, sizes, seed, *, both_ways=False, close=False):
    """Send ``sizes[i]`` bytes over each pair (and back if ``both_ways``); check every byte."""
    tasks, expected, results = [], [], []
    for index, (client, server) in enumerate(pairs):
        client.setblocking(False)
        server.setblocking(False)
        forward = payload(sizes[index % len(sizes)], seed + index)
        forward_results, back_results = [], []
        tasks += [send_task(client, forward, close=close), recv_task(server, forward_results)]
        expected.append(digest(forward))
        results.append(forward_results)
        if both_ways:
            back = payload(sizes[index % len(sizes)] // 2 + 1, seed + index + 10_000)
            tasks += [send_task(server, back), recv_task(client, back_results)]
            expected.append(digest(back))
            results.append(back_results)
        else:
            server.shutdown(SHUT_WR)
            tasks.append(recv_task(client, back_results))
    Loop(net).run_tasks(tasks)
    for got, want in zip(results, expected):
        assert got == [want]


def no_unroutable_segments(*stacks):
    """Every segment TCP built made it out (none refused by IPv4, e.g. over the MTU)."""
    return all(s.host.tcp.stats["segments_unroutable"] == 0 for s in stacks)


# -- bulk transfers ------------------------------------------------------------------------------

def recv_to_eof(sock):
    """Blocking receive until ``b""``: ``(length, sha256 hex)``."""
    hasher = hashlib.sha256()
    total = 0
    while True:
        data = sock.recv(1 << 18)
        if not data:
            return total, hasher.hexdigest()
        hasher.update(data)
        total += len(data)


@pytest.mark.parametrize("seed", seeds(4))
@pytest.mark.parametrize("loss", LOSS_RATES)
def test_ten_megabytes_byte_exact(loss, seed):
    """The issue's case: 10 MB, byte-exact at 0-10 % loss with duplication and reordering;
    sendall + shutdown(SHUT_WR) on one side, recv to EOF on the other, blocking calls."""
    net, a, b = network(seed, loss, **MESS)
    [(client, server)] = connect_many(net, a, b)
    data = payload(10 * MB, seed)
    client.setblocking(True)
    client.setsockopt(SOL_SOCKET, lwsocket.SO_SNDBUF, 8 * MB)    # the kernel doubles: 16 MB
    client.sendall(data)
    client.shutdown(SHUT_WR)
    server.settimeout(PATIENCE)
    assert recv_to_eof(server) == digest(data)
    server.close()
    client.settimeout(PATIENCE)
    assert client.recv(100) == b""                # the server's FIN, after its close
    client.close()
    assert no_unroutable_segments(a, b)


@pytest.mark.parametrize("seed", seeds(1))
@pytest.mark.parametrize("loss", [0.01, 0.05])
def test_ten_megabytes_flow_controlled_both_ways(loss, seed):
    """10 MB one way and 5 MB back at once through 128 KiB buffers: the windows, not the
    buffers, pace the transfer (non-blocking sockets and the event loop)."""
    net, a, b = network(500 + seed, loss, **MESS)
    pairs = connect_many(net, a, b, buf=65536)
    transfer(net, pairs, [10 * MB], seed, both_ways=True)
    assert no_unroutable_segments(a, b)


#: Transfer variants for the many-seed runs: (name, transfer options, network options).
VARIANTS = [
    ("cubic", {"cc": "cubic"}, {}),
    ("reno", {"cc": "reno"}, {}),
    ("both-ways", {"both_ways": True}, {}),
    ("both-ways-reno-small-buffers", {"both_ways": True, "cc": "reno", "buf": 16384}, {}),
    ("small-buffers", {"buf": 4096}, {}),
    ("no-sack", {"cc": "reno"}, {"sack": False}),
    ("no-timestamps", {}, {"timestamps": False}),
    ("no-sack-no-timestamps-both-ways", {"both_ways": True, "buf": 32768},
     {"sack": False, "timestamps": False}),
]


@pytest.mark.parametrize("seed", seeds(8))
@pytest.mark.parametrize("loss", LOSS_RATES)
@pytest.mark.parametrize("name,options,net_options", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_one_megabyte_many_seeds(name, options, net_options, loss, seed):
    """1 MB (and half a megabyte back, both ways at once) with every combination of
    congestion control, SACK, timestamps and buffer sizes, over many seeds."""
    options = dict(options)
    both_ways = options.pop("both_ways", False)
    net, a, b = network(1000 + seed, loss, **MESS, **net_options)
    pairs = connect_many(net, a, b, **options)
    transfer(net, pairs, [MB], seed, both_ways=both_ways)
    assert no_unroutable_segments(a, b)


def test_full_segments_with_sack_blocks_fit_the_mtu():
    """Data segments that also carry SACK blocks (both directions busy, data reordered)
    shrink their payload by the option bytes (RFC 6691 section 3; Linux's tcp_current_mss),
    so no segment exceeds the MTU.  It used to be built at MSS + SACK options, refused by
    IPv4 as EMSGSIZE, and the connection stalled until it timed out."""
    net, a, b = network(3, 0.0, reorder=0.02, delay=0.005, jitter=0.003)
    pairs = connect_many(net, a, b)
    transfer(net, pairs, [256 * 1024], 3, both_ways=True)
    assert a.host.tcp.stats["segments_out_of_order"] and b.host.tcp.stats["segments_out_of_order"]
    assert no_unroutable_segments(a, b)


def set_loss(stack, loss):
    """Change the loss rate of frames delivered to ``stack`` (its switch port's egress)."""
    stack.driver.phy.port.loss = loss


def test_lost_window_update_with_a_small_window_is_recovered():
    """The receiver's buffer fills until the window left is smaller than a segment (and than
    half the largest window), which the sender's SWS avoidance will not use; nothing is in
    flight.  The receiver then reads everything, and its window update is lost.  The sender
    must not wait forever: RFC 9293 section 3.8.6.2.1's override timeout (Linux: the probe
    timer, armed whenever data waits and nothing is in flight) sends into the small window,
    and the answer carries the open window."""
    net, a, b = network(7, 0.0, delay=0.005)
    [(client, server)] = connect_many(net, a, b, buf=4096)       # 8 KiB buffers
    data = payload(64 * 1024, 7)
    client.setblocking(False)
    sent = client.send(data)
    net.run(2.0)                                  # the server reads nothing meanwhile
    conn = client._conn
    assert 0 < conn.snd_wnd < conn.mss and conn.snd_nxt == conn.snd_una
    set_loss(a, 1.0)                              # the window update is lost
    server.setblocking(False)
    first = server.recv(1 << 20)
    net.run(0.5)
    set_loss(a, 0.0)
    results = []
    Loop(net).run_tasks([send_task(client, data[sent:]), recv_task(server, results)],
                        timeout=120.0)
    assert first == data[:len(first)]
    assert results == [digest(data[len(first):])]


def close_and_settle(net, stacks, sockets, seconds=400.0):
    """Close ``sockets``, run past TIME-WAIT and the FIN retransmissions, and check that
    every connection was released (and none was aborted on close)."""
    for sock in sockets:
        sock.close()
    net.run(seconds)
    for stack in stacks:
        table = stack.host.tcp
        assert table.connections == {}, table.connections
        assert table.stats["abort_on_close"] == 0
        assert table.stats["connection_timeouts"] == 0


# -- many connections, outages, closing ------------------------------------------------------------

@pytest.mark.parametrize("seed", seeds(1))
def test_fifty_concurrent_connections_through_one_lossy_network(seed):
    """50 connections at once, both directions, through 5 % loss with duplication and
    reordering: every stream byte-exact, and all of them released after close."""
    net, a, b = network(2000 + seed, 0.05, **MESS)
    pairs = connect_many(net, a, b, 50)
    sizes = [16 * 1024, 40 * 1024, 100 * 1024, 3, 64 * 1024 + 1]
    transfer(net, pairs, sizes, seed, both_ways=True)
    assert no_unroutable_segments(a, b)
    close_and_settle(net, (a, b), [sock for pair in pairs for sock in pair])


def outage(net, stacks, start, length):
    """A task: the links of ``stacks`` drop every frame from ``start`` for ``length`` s."""
    yield start
    saved = [stack.driver.phy.port.loss for stack in stacks]
    for stack in stacks:
        set_loss(stack, 1.0)
    yield start + length
    for stack, loss in zip(stacks, saved):
        set_loss(stack, loss)


@pytest.mark.parametrize("seed", seeds(2))
@pytest.mark.parametrize("sack", [True, False], ids=["sack", "no-sack"])
def test_link_silent_for_twenty_seconds_then_back(sack, seed):
    """100 % loss both ways for 20 virtual seconds in the middle of a transfer in both
    directions: the retransmission timer backs off (RFC 6298 section 5.5) without giving
    up, and once the link is back everything arrives."""
    net, a, b = network(3000 + seed, 0.01, sack=sack, **MESS)
    [(client, server)] = connect_many(net, a, b)
    start = net.now + 0.3
    forward, back = payload(3 * MB, seed), payload(MB, seed + 1)
    results = {"forward": [], "back": []}
    for sock in (client, server):
        sock.setblocking(False)
    Loop(net).run_tasks([outage(net, (a, b), start, 20.0),
                         send_task(client, forward), recv_task(server, results["forward"]),
                         send_task(server, back), recv_task(client, results["back"])])
    assert results == {"forward": [digest(forward)], "back": [digest(back)]}
    assert net.now > start + 20.0                 # it really had to wait for the link
    stats = a.host.tcp.stats + b.host.tcp.stats
    assert stats["rto_expired"] >= 4 and stats["connection_timeouts"] == 0
    close_and_settle(net, (a, b), (client, server))


def test_idle_connection_survives_a_silent_link():
    """An idle connection does not notice an outage at all; data flows after it."""
    net, a, b = network(11, 0.0, delay=0.005)
    [(client, server)] = connect_many(net, a, b)
    set_loss(a, 1.0)
    set_loss(b, 1.0)
    net.run(30.0)
    set_loss(a, 0.0)
    set_loss(b, 0.0)
    client.setblocking(True)
    client.sendall(b"after the outage")
    server.settimeout(5)
    assert server.recv(100) == b"after the outage"


CLOSE_LOSSES = (0.0, 0.05, 0.10)


@pytest.mark.parametrize("seed", seeds(3))
@pytest.mark.parametrize("loss", CLOSE_LOSSES)
@pytest.mark.parametrize("buffered", [True, False], ids=["all-queued", "sendall-blocked"])
def test_close_right_after_sendall_delivers_every_byte_before_fin(buffered, loss, seed):
    """``sendall(data); close()`` must not lose the tail of ``data`` (RFC 9293 section
    3.10.4: CLOSE means "I have no more to send", the queued data and then the FIN still go
    out).  ``all-queued``: a large send buffer, so close() finds everything unsent;
    ``sendall-blocked``: a small one, so sendall waited for the network and close() comes
    while its last bytes are in flight.  PyTCP loses data here."""
    net, a, b = network(4000 + seed, loss, **MESS)
    [(client, server)] = connect_many(net, a, b)
    data = payload(2 * MB if buffered else 600 * 1024, seed)
    client.setsockopt(SOL_SOCKET, lwsocket.SO_SNDBUF, 4 * MB if buffered else 8192)
    client.setblocking(True)
    client.settimeout(PATIENCE)
    client.sendall(data)
    queued = client._conn.send_queue_bytes
    client.close()
    if buffered:
        assert queued > len(data) // 2           # close() really found the data unsent
    server.settimeout(PATIENCE)
    assert recv_to_eof(server) == digest(data)
    assert server.recv(10) == b""                 # end of stream, not a reset
    close_and_settle(net, (a, b), (server,))


def test_so_linger_zero_aborts_with_rst():
    """SO_LINGER {on, 0}: close() discards the send buffer and sends RST (RFC 9293 section
    3.10.5, ABORT); the peer reads what had arrived, then gets ConnectionResetError; after
    that its recv returns b"" and send raises BrokenPipeError, as on Linux."""
    net, a, b = network(12, 0.0, delay=0.005)
    [(client, server)] = connect_many(net, a, b)
    data = payload(500 * 1024, 12)
    client.setblocking(True)
    client.sendall(data)                          # queued: the 1 MB buffer takes it all
    client.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
    assert struct.unpack("ii", client.getsockopt(SOL_SOCKET, SO_LINGER, 8)) == (1, 0)
    client.close()
    assert a.host.tcp.stats["rst_sent"] == 1
    assert a.host.tcp.connections == {}           # gone at once: no FIN-WAIT, no TIME-WAIT
    server.settimeout(5)
    received = bytearray()
    with pytest.raises(ConnectionResetError):
        while True:
            chunk = server.recv(65536)
            assert chunk, "end of stream instead of a reset"
            received += chunk
    assert 0 < len(received) < len(data) and received == data[:len(received)]
    assert server.recv(10) == b""
    with pytest.raises(BrokenPipeError):
        server.send(b"more")


@pytest.mark.parametrize("seed", seeds(3))
def test_so_linger_zero_reset_reaches_the_peer_through_loss(seed):
    """If the RST itself is lost, the peer's next segment meets no connection and is answered
    with a RST (RFC 9293 section 3.10.7.1): the peer still ends with ConnectionResetError."""
    net, a, b = network(5000 + seed, 0.0, delay=0.005)
    [(client, server)] = connect_many(net, a, b)
    client.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
    set_loss(b, 1.0)
    client.close()                                # its RST is lost
    net.run(0.1)
    set_loss(a, 0.3)
    set_loss(b, 0.3)
    server.settimeout(1.0)
    start = net.now
    with pytest.raises(ConnectionResetError):
        while net.now < start + 300:
            server.sendall(b"ping")
            try:
                assert server.recv(100) != b"", "end of stream instead of a reset"
            except TimeoutError as exc:
                assert exc.errno is None          # the socket timeout, not ETIMEDOUT
    assert b.host.tcp.connections == {}
    assert a.host.tcp.stats["rst_sent"] >= 2      # the abort's, then the answer to a segment
