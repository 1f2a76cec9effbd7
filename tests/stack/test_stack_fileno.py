"""``fileno()`` of lwstack sockets: a real descriptor whose readiness follows the socket.

The readiness rules run side by side on kernel sockets over 127.0.0.1 and on lwstack sockets
(two stacks on a real-time in-memory switch, each with its reactor thread): the same steps,
and after each step ``select`` with timeout 0 must say the same thing in both worlds.  Where a
step's effect comes from the network (data, a FIN, an RST, an ICMP error) the test waits for
it (:func:`settle`, bounded); where an API call changes the socket's own readiness (``recv``
draining, ``accept``, ``getsockopt(SO_ERROR)``, ``shutdown``) the descriptor must already say
so when the call returns, so it is checked at once.  States are written ``"rw"``, ``"r-"``,
``"-w"``, ``"--"``.

Then lwstack alone: select/poll/selectors on lwstack and host descriptors mixed, an echo
server and clients written with selectors only, ``dup()``, descriptor life (closing a socket
or a stack closes them; no leaks), the write-readiness threshold on virtual time.
"""
import errno
import gc
import os
import select
import selectors
import socket as stdsocket
import ssl
import struct
import threading
import time

import pytest

from support import wait_for

import lwstack
from lwstack import readiness
from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork
from vde.memory import MemorySwitch

SOCK_STREAM = stdsocket.SOCK_STREAM
SOCK_DGRAM = stdsocket.SOCK_DGRAM
SOL_SOCKET = stdsocket.SOL_SOCKET
SO_ERROR = stdsocket.SO_ERROR
#: How long a step whose effect comes from the network may take to show (a bound, not a
#: timing assertion: the test fails only if the state never comes).
SETTLE = 10.0


def state(sock):
    """What ``select`` with timeout 0 says: ``"rw"``, ``"r-"``, ``"-w"`` or ``"--"``."""
    readable, writable, _ = select.select([sock], [sock], [], 0)
    return ("r" if readable else "-") + ("w" if writable else "-")


def settle(sock, expected, timeout=SETTLE):
    """Wait (bounded) until ``sock`` is in state ``expected``; return the state seen last."""
    deadline = time.monotonic() + timeout
    seen = state(sock)
    while seen != expected and time.monotonic() < deadline:
        select.select([sock], [sock] if "w" in expected else [], [], 0.05)
        seen = state(sock)
    return seen


# -- the two worlds ---------------------------------------------------------------------------

class KernelWorld:
    """Kernel sockets on 127.0.0.1."""

    name = "kernel"
    client_ip = server_ip = "127.0.0.1"

    def __init__(self):
        self.opened = []

    def socket(self, type=SOCK_STREAM, side="client"):
        sock = stdsocket.socket(stdsocket.AF_INET, type)
        self.opened.append(sock)
        return sock

    def unanswered(self):
        """An address where a SYN goes unanswered: a listener whose accept queue is full."""
        listener = self.socket(side="server")
        listener.bind((self.server_ip, 0))
        listener.listen(0)
        for _ in range(2):
            filler = self.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
        time.sleep(0.1)
        return listener.getsockname()

    def close(self):
        for sock in self.opened:
            sock.close()


class LwstackWorld(KernelWorld):
    """lwstack sockets: clients on one stack, servers on another, on a MemorySwitch."""

    name = "lwstack"
    client_ip = "10.3.0.1"
    server_ip = "10.3.0.2"

    def __init__(self):
        super().__init__()
        switch = MemorySwitch()
        self.client = lwstack.Stack(switch, f"ip={self.client_ip}/24")
        self.server = lwstack.Stack(switch, f"ip={self.server_ip}/24")

    def socket(self, type=SOCK_STREAM, side="client"):
        stack = self.client if side == "client" else self.server
        sock = lwsocket.socket(stdsocket.AF_INET, type, stack=stack)
        self.opened.append(sock)
        return sock

    def unanswered(self):
        """An address nobody has (ARP goes unanswered, the SYN never leaves for a while)."""
        return "10.3.0.99", 80

    def close(self):
        super().close()
        self.client.close(timeout=1)
        self.server.close(timeout=1)


@pytest.fixture(params=["kernel", "lwstack"])
def world(request):
    w = KernelWorld() if request.param == "kernel" else LwstackWorld()
    yield w
    w.close()


def listener(world, backlog=8):
    sock = world.socket(side="server")
    sock.bind((world.server_ip, 0))
    sock.listen(backlog)
    return sock


def connected_pair(world):
    """``(client, accepted, listener)``, all blocking with a timeout."""
    server = listener(world)
    client = world.socket()
    client.settimeout(SETTLE)
    client.connect(server.getsockname())
    server.settimeout(SETTLE)
    accepted, _ = server.accept()
    accepted.settimeout(SETTLE)
    return client, accepted, server


def drain(sock, expected_bytes):
    got = 0
    while got < expected_bytes:
        data = sock.recv(65536)
        assert data, "end of stream before everything arrived"
        got += len(data)
    return got


# -- stream rules, side by side -------------------------------------------------------------

def test_stream_socket_through_its_life(world):
    sock = world.socket()
    assert state(sock) == "rw"                    # a fresh socket: POLLHUP | POLLOUT
    sock.bind((world.client_ip, 0))
    assert state(sock) == "rw"
    server = listener(world)
    assert state(server) == "--"                  # nothing to accept, never writable
    sock.settimeout(SETTLE)
    sock.connect(server.getsockname())
    assert state(sock) == "-w"
    assert settle(server, "r-") == "r-"           # a connection to accept
    accepted, _ = server.accept()
    assert state(server) == "--"                  # accept emptied the queue: at once
    assert state(accepted) == "-w"
    accepted.sendall(b"x" * 5000)
    assert settle(sock, "rw") == "rw"
    sock.settimeout(SETTLE)
    drain(sock, 5000)
    assert state(sock) == "-w"                    # recv drained it: at once
    sock.shutdown(stdsocket.SHUT_WR)
    assert state(sock) == "-w"                    # our FIN: sending cannot block
    assert settle(accepted, "rw") == "rw"         # the peer's FIN
    assert accepted.recv(10) == b""
    assert state(accepted) == "rw"                # still: end of stream stays readable
    accepted.shutdown(stdsocket.SHUT_WR)
    assert settle(sock, "rw") == "rw"


def test_shutdown_read_makes_a_stream_readable(world):
    client, accepted, _ = connected_pair(world)
    assert state(client) == "-w"
    client.shutdown(stdsocket.SHUT_RD)
    assert state(client) == "rw"
    assert state(accepted) == "-w"


def test_reset_is_readable_and_writable_with_the_error_pending(world):
    client, accepted, _ = connected_pair(world)
    accepted.setsockopt(SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
    accepted.close()
    assert settle(client, "rw") == "rw"
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == errno.ECONNRESET
    assert state(client) == "rw"                  # closed: POLLHUP stays


def fill(client, accepted):
    """Small buffers, then send until the send buffer stays full; the bytes sent."""
    accepted.setsockopt(SOL_SOCKET, stdsocket.SO_RCVBUF, 4096)
    client.setsockopt(SOL_SOCKET, stdsocket.SO_SNDBUF, 4096)
    client.setblocking(False)
    sent = 0
    quiet_rounds = 0
    while quiet_rounds < 3:                       # until the peer's window stays closed
        before = sent
        try:
            while True:
                sent += client.send(b"y" * 4096)
        except BlockingIOError:
            pass
        quiet_rounds = quiet_rounds + 1 if sent == before else 0
        time.sleep(0.05)
    return sent


def test_full_send_buffer_is_not_writable_until_the_peer_reads(world):
    client, accepted, _ = connected_pair(world)
    sent = fill(client, accepted)
    assert state(client) == "--"
    drain(accepted, sent)
    assert settle(client, "-w") == "-w"


def test_raising_so_sndbuf_makes_a_full_socket_writable_at_once(world):
    client, accepted, _ = connected_pair(world)
    fill(client, accepted)
    assert state(client) == "--"
    client.setsockopt(SOL_SOCKET, stdsocket.SO_SNDBUF, 1 << 20)
    assert state(client) == "-w"


def test_nonblocking_connect_completes_by_becoming_writable(world):
    server = listener(world)
    client = world.socket()
    client.setblocking(False)
    assert client.connect_ex(server.getsockname()) == errno.EINPROGRESS
    assert settle(client, "-w") == "-w"
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == 0
    assert client.getpeername() == server.getsockname()


def test_refused_nonblocking_connect_is_readable_and_writable_with_so_error(world):
    probe = world.socket(side="server")
    probe.bind((world.server_ip, 0))
    address = probe.getsockname()
    probe.close()
    client = world.socket()
    client.setblocking(False)
    assert client.connect_ex(address) == errno.EINPROGRESS
    assert settle(client, "rw") == "rw"
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == errno.ECONNREFUSED
    assert state(client) == "rw"
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == 0


def test_connecting_socket_is_neither_readable_nor_writable(world):
    address = world.unanswered()
    client = world.socket()
    client.setblocking(False)
    assert client.connect_ex(address) == errno.EINPROGRESS
    assert state(client) == "--"


def test_listener_is_readable_while_connections_wait(world):
    server = listener(world)
    clients = []
    for _ in range(2):
        client = world.socket()
        client.settimeout(SETTLE)
        client.connect(server.getsockname())
        clients.append(client)
    assert settle(server, "r-") == "r-"
    server.settimeout(SETTLE)
    server.accept()
    wait_for(lambda: state(server) == "r-", SETTLE)     # the second may still be on its way
    assert state(server) == "r-"
    server.accept()
    assert state(server) == "--"


# -- datagram rules, side by side -----------------------------------------------------------

def test_datagram_readable_while_datagrams_wait(world):
    receiver = world.socket(SOCK_DGRAM, side="server")
    assert state(receiver) == "-w"
    receiver.bind((world.server_ip, 0))
    assert state(receiver) == "-w"
    sender = world.socket(SOCK_DGRAM)
    sender.sendto(b"one", receiver.getsockname())
    sender.sendto(b"two", receiver.getsockname())
    assert settle(receiver, "rw") == "rw"
    receiver.settimeout(SETTLE)
    assert receiver.recv(10) == b"one"
    assert settle(receiver, "rw") == "rw"         # the second (it may still be on its way)
    assert receiver.recv(10) == b"two"
    assert state(receiver) == "-w"                # recv took the last one: at once


def refused_udp(world):
    """A connected UDP socket whose datagram drew an ICMP port unreachable (in state "rw")."""
    probe = world.socket(SOCK_DGRAM, side="server")
    probe.bind((world.server_ip, 0))
    address = probe.getsockname()
    probe.close()
    sock = world.socket(SOCK_DGRAM)
    sock.connect(address)
    sock.send(b"anyone?")
    assert settle(sock, "rw") == "rw"
    return sock


def test_datagram_icmp_error_is_readable_until_so_error_reads_it(world):
    sock = refused_udp(world)
    assert sock.getsockopt(SOL_SOCKET, SO_ERROR) == errno.ECONNREFUSED
    assert state(sock) == "-w"


def test_datagram_icmp_error_is_readable_until_recv_reports_it(world):
    sock = refused_udp(world)
    with pytest.raises(ConnectionRefusedError):
        sock.recv(10)
    assert state(sock) == "-w"


def test_datagram_shutdown_read_is_readable_for_good(world):
    receiver = world.socket(SOCK_DGRAM, side="server")
    receiver.bind((world.server_ip, 0))
    sock = world.socket(SOCK_DGRAM)
    sock.connect(receiver.getsockname())
    sock.shutdown(stdsocket.SHUT_RD)
    assert state(sock) == "rw"                    # Linux's RCV_SHUTDOWN, though recv waits
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(10)


# -- after close, side by side --------------------------------------------------------------

def outcome(call, *args):
    try:
        call(*args)
        return "ok"
    except Exception as exc:                      # noqa: BLE001 - the type is the result
        return type(exc).__name__, getattr(exc, "errno", None)


@pytest.mark.parametrize("type_", [SOCK_STREAM, SOCK_DGRAM])
def test_closed_socket_has_no_descriptor(world, type_):
    sock = world.socket(type_)
    assert sock.fileno() >= 0
    sock.close()
    assert sock.fileno() == -1
    assert outcome(select.select, [sock], [], [], 0) == ("ValueError", None)
    assert outcome(selectors.DefaultSelector().register, sock,
                   selectors.EVENT_READ) == ("ValueError", None)
    poller = select.poll()
    assert outcome(poller.register, sock, select.POLLIN) == ("ValueError", None)


def test_selector_with_a_socket_closed_under_it(world):
    sock = world.socket(SOCK_DGRAM)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_WRITE)
    assert [key.fileobj for key, _ in selector.select(0)] == [sock]
    sock.close()
    assert selector.select(0) == []               # epoll forgets a closed descriptor
    selector.unregister(sock)                     # found by object, as the stdlib does
    selector.close()


# -- lwstack alone: mixing, selectors programs, dup, life -----------------------------------

@pytest.fixture
def lan():
    """Two stacks on a real-time in-memory switch: ``(client_stack, server_stack)``."""
    switch = MemorySwitch()
    a = lwstack.Stack(switch, "ip=10.3.1.1/24")
    b = lwstack.Stack(switch, "ip=10.3.1.2/24")
    yield a, b
    a.close(timeout=1)
    b.close(timeout=1)


SELECTORS = [name for name in ("SelectSelector", "PollSelector", "EpollSelector",
                               "DefaultSelector") if hasattr(selectors, name)]


@pytest.mark.parametrize("selector_name", SELECTORS)
def test_selectors_mix_lwstack_and_host_descriptors(lan, selector_name):
    a, b = lan
    receiver = b.socket(stdsocket.AF_INET, SOCK_DGRAM)
    receiver.bind(("10.3.1.2", 9000))
    sender = a.socket(stdsocket.AF_INET, SOCK_DGRAM)
    pipe_r, pipe_w = os.pipe()
    selector = getattr(selectors, selector_name)()
    try:
        selector.register(receiver, selectors.EVENT_READ, "udp")
        selector.register(pipe_r, selectors.EVENT_READ, "pipe")
        assert selector.select(0) == []
        os.write(pipe_w, b"!")
        assert [key.data for key, _ in selector.select(SETTLE)] == ["pipe"]
        sender.sendto(b"hello", ("10.3.1.2", 9000))
        deadline = time.monotonic() + SETTLE
        ready = set()
        while ready != {"pipe", "udp"} and time.monotonic() < deadline:
            ready = {key.data for key, _ in selector.select(0.05)}
        assert ready == {"pipe", "udp"}
        os.read(pipe_r, 1)
        assert receiver.recvfrom(100) == (b"hello", ("10.3.1.1", sender.getsockname()[1]))
        assert selector.select(0) == []
        selector.modify(receiver, selectors.EVENT_READ | selectors.EVENT_WRITE, "udp")
        assert [(key.data, events) for key, events in selector.select(0)] == \
            [("udp", selectors.EVENT_WRITE)]
    finally:
        selector.close()
        os.close(pipe_r)
        os.close(pipe_w)


def test_poll_and_select_on_mixed_descriptors(lan):
    a, b = lan
    server = b.socket(stdsocket.AF_INET, SOCK_STREAM)
    server.bind(("10.3.1.2", 9001))
    server.listen()
    pipe_r, pipe_w = os.pipe()
    try:
        poller = select.poll()
        poller.register(server, select.POLLIN)
        poller.register(pipe_r, select.POLLIN)
        assert poller.poll(0) == []
        client = a.socket(stdsocket.AF_INET, SOCK_STREAM)
        client.settimeout(SETTLE)
        client.connect(("10.3.1.2", 9001))
        assert poller.poll(SETTLE * 1000) == [(server.fileno(), select.POLLIN)]
        os.write(pipe_w, b"!")
        assert sorted(poller.poll(0)) == sorted([(server.fileno(), select.POLLIN),
                                                 (pipe_r, select.POLLIN)])
        readable, writable, _ = select.select([server, pipe_r], [client, pipe_w], [], 0)
        assert readable == [server, pipe_r] and writable == [client, pipe_w]
        server.accept()[0].close()
        os.read(pipe_r, 1)
        assert poller.poll(0) == []
    finally:
        os.close(pipe_r)
        os.close(pipe_w)


def selectors_echo_server(sock, stop, clients):
    """An echo server written with selectors only (non-blocking, buffered writes)."""
    selector = selectors.DefaultSelector()
    sock.setblocking(False)
    selector.register(sock, selectors.EVENT_READ, None)
    pending = {}
    served = 0
    while served < clients and not stop.is_set():
        for key, events in selector.select(0.5):
            if key.data is None:
                conn, _ = sock.accept()
                conn.setblocking(False)
                pending[conn] = bytearray()
                selector.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj
            if events & selectors.EVENT_READ:
                data = conn.recv(65536)
                if not data:
                    selector.unregister(conn)
                    conn.close()
                    del pending[conn]
                    served += 1
                    continue
                pending[conn] += data
            if pending[conn]:
                try:
                    n = conn.send(pending[conn])
                except BlockingIOError:
                    n = 0
                del pending[conn][:n]
            selector.modify(conn, selectors.EVENT_READ |
                            (selectors.EVENT_WRITE if pending[conn] else 0), "conn")
    selector.close()
    return served


def selectors_echo_clients(stack, address, payloads):
    """Clients driven by one selector: each sends its payload, half-closes, reads it back."""
    selector = selectors.DefaultSelector()
    state_of = {}
    for payload in payloads:
        sock = stack.socket(stdsocket.AF_INET, SOCK_STREAM)
        sock.setblocking(False)
        assert sock.connect_ex(address) == errno.EINPROGRESS
        state_of[sock] = {"out": memoryview(payload), "in": bytearray(), "connected": False}
        selector.register(sock, selectors.EVENT_WRITE)
    done = {}
    deadline = time.monotonic() + 60
    while state_of and time.monotonic() < deadline:
        for key, events in selector.select(0.5):
            sock = key.fileobj
            st = state_of[sock]
            if not st["connected"]:
                assert sock.getsockopt(SOL_SOCKET, SO_ERROR) == 0
                st["connected"] = True
            if events & selectors.EVENT_WRITE and st["out"]:
                try:
                    st["out"] = st["out"][sock.send(st["out"][:262144]):]
                except BlockingIOError:
                    pass
                if not st["out"]:
                    sock.shutdown(stdsocket.SHUT_WR)
            if events & selectors.EVENT_READ:
                data = sock.recv(65536)
                if not data:
                    selector.unregister(sock)
                    done[sock] = bytes(st["in"])
                    del state_of[sock]
                    sock.close()
                    continue
                st["in"] += data
            selector.modify(sock, selectors.EVENT_READ |
                            (selectors.EVENT_WRITE if st["out"] else 0))
    selector.close()
    assert not state_of, "clients did not finish"
    return list(done.values())


def test_echo_server_and_clients_with_selectors_only(lan):
    a, b = lan
    server = b.socket(stdsocket.AF_INET, SOCK_STREAM)
    server.bind(("10.3.1.2", 7))
    server.listen()
    payloads = [os.urandom(n) for n in (1, 1000, 300_000, 2_000_000)]
    stop = threading.Event()
    result = {}

    def serve():
        result["served"] = selectors_echo_server(server, stop, len(payloads))
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        echoed = selectors_echo_clients(a, ("10.3.1.2", 7), payloads)
    finally:
        stop.set()
        thread.join(30)
    assert sorted(echoed, key=len) == sorted(payloads, key=len)
    assert result["served"] == len(payloads)


def test_dup_shares_the_endpoint_and_its_readiness(lan):
    a, b = lan
    receiver = b.socket(stdsocket.AF_INET, SOCK_DGRAM)
    receiver.bind(("10.3.1.2", 9002))
    twin = receiver.dup()
    assert twin.getsockname() == receiver.getsockname()
    assert twin.gettimeout() is None
    fd, twin_fd = receiver.fileno(), twin.fileno()
    assert fd != twin_fd and os.path.samestat(os.fstat(fd), os.fstat(twin_fd))
    copy = os.dup(fd)                              # a plain os.dup follows too
    try:
        sender = a.socket(stdsocket.AF_INET, SOCK_DGRAM)
        sender.sendto(b"one", ("10.3.1.2", 9002))
        assert settle(twin, "rw") == "rw"
        assert state(receiver) == "rw"
        assert select.select([copy], [], [], 0)[0] == [copy]
        receiver.close()                           # the endpoint stays: twin is open
        assert receiver.fileno() == -1 and twin.fileno() == twin_fd
        assert twin.recv(10) == b"one"
        assert state(twin) == "-w"
        assert select.select([copy], [], [], 0)[0] == []
        sender.sendto(b"two", ("10.3.1.2", 9002))
        assert settle(twin, "rw") == "rw"
        assert twin.recv(10) == b"two"
        twin.close()
        assert twin.fileno() == -1
        rebound = b.socket(stdsocket.AF_INET, SOCK_DGRAM)
        rebound.bind(("10.3.1.2", 9002))           # the port is free: the endpoint closed
    finally:
        os.close(copy)


def test_dup_of_a_stream_shares_shutdown_and_listen(lan):
    a, b = lan
    server = b.socket(stdsocket.AF_INET, SOCK_STREAM)
    server.bind(("10.3.1.2", 9003))
    twin = server.dup()
    twin.listen()
    assert state(server) == "--"                  # listening through either object
    client = a.socket(stdsocket.AF_INET, SOCK_STREAM)
    client.settimeout(SETTLE)
    client.connect(("10.3.1.2", 9003))
    assert settle(server, "r-") == "r-"
    accepted, _ = server.accept()
    assert state(twin) == "--"
    copy = accepted.dup()
    copy.shutdown(stdsocket.SHUT_RD)
    assert state(accepted) == "rw" and accepted.recv(10) == b""
    accepted.close()
    copy.sendall(b"still open")                    # the connection lives on in the copy
    assert client.recv(10) == b"still open"
    copy.close()
    assert client.recv(10) == b""                  # closing the last object sent the FIN


def test_descriptor_cannot_be_written_to(lan):
    a, _ = lan
    sock = a.socket(stdsocket.AF_INET, SOCK_DGRAM)
    fd = sock.fileno()
    with pytest.raises(OSError) as info:
        os.write(fd, b"lost?")
    assert info.value.errno == errno.ENOTCONN
    assert state(sock) == "-w"


def test_stdlib_ssl_adopting_the_descriptor_leaves_the_socket_whole(lan):
    """``ssl.SSLContext.wrap_socket`` (not routed to lwstack.tls) wraps ``fileno()`` in a
    kernel socket, then fails at ``detach()`` and closes what it wrapped: the socket gives
    that descriptor up and carries on with a new one."""
    a, b = lan
    server = b.socket(stdsocket.AF_INET, SOCK_STREAM)
    server.bind(("10.3.1.2", 9004))
    server.listen()
    client = a.socket(stdsocket.AF_INET, SOCK_STREAM)
    client.settimeout(SETTLE)
    client.connect(("10.3.1.2", 9004))
    client.fileno()
    with pytest.raises(OSError) as info:
        ssl.create_default_context().wrap_socket(client, server_hostname="x")
    assert info.value.errno == errno.EOPNOTSUPP   # detach()
    accepted, _ = server.accept()
    accepted.sendall(b"ping")
    assert settle(client, "rw") == "rw"
    assert client.fileno() >= 0
    assert client.recv(10) == b"ping"
    assert state(client) == "-w"
    gc.collect()                                   # the ssl object closes what it adopted
    accepted.sendall(b"pong")
    assert settle(client, "rw") == "rw"
    assert client.recv(10) == b"pong"
    assert state(client) == "-w"


def open_descriptors():
    gc.collect()                                   # what earlier tests left to the collector
    return len(os.listdir("/proc/self/fd"))


def test_descriptors_close_with_their_socket_and_their_stack():
    before = open_descriptors()
    switch = MemorySwitch()
    a = lwstack.Stack(switch, "ip=10.3.2.1/24")
    b = lwstack.Stack(switch, "ip=10.3.2.2/24")
    baseline = open_descriptors()
    server = b.socket(stdsocket.AF_INET, SOCK_STREAM)
    server.bind(("10.3.2.2", 80))
    server.listen()
    plain = [a.socket(stdsocket.AF_INET, SOCK_DGRAM) for _ in range(5)]
    assert open_descriptors() == baseline          # no fileno(): no descriptor
    server.fileno()
    pairs = []
    for _ in range(10):
        client = a.socket(stdsocket.AF_INET, SOCK_STREAM)
        client.settimeout(SETTLE)
        client.connect(("10.3.2.2", 80))
        accepted, _ = server.accept()
        client.fileno(), accepted.fileno()
        pairs.append((client, accepted))
    udp = [a.socket(stdsocket.AF_INET, SOCK_DGRAM) for _ in range(5)]
    for sock in udp:
        sock.fileno()
        sock.dup().fileno()
    assert open_descriptors() == baseline + 2 * (1 + 20 + 5) + 5
    for client, accepted in pairs[:5]:
        client.close()
        accepted.close()
    assert open_descriptors() == baseline + 2 * (1 + 10 + 5) + 5
    for sock in plain:
        sock.close()
    a.close(timeout=1)                             # sockets still open: closed with it
    b.close(timeout=1)
    assert open_descriptors() == before
    assert server.fileno() == -1 and pairs[-1][0].fileno() == -1 and udp[0].fileno() == -1


def test_sockets_without_fileno_keep_the_drivers_hook(lan):
    a, _ = lan
    sock = a.socket(stdsocket.AF_INET, SOCK_STREAM)
    assert sock._conn.on_change == a.driver.endpoint_changed
    assert sock._readiness is None
    sock.fileno()
    assert sock._conn.on_change != a.driver.endpoint_changed
    sock.close()
    assert sock._conn.on_change == a.driver.endpoint_changed   # the orphan's hook restored


def test_the_kernel_behaves_as_the_module_needs():
    readiness._check_kernel()                      # raises OSError otherwise


# -- on virtual time: the write threshold, a handshake that fails -----------------------------

def test_writable_again_once_two_thirds_of_the_send_buffer_are_free():
    """Linux's sk_stream_is_writeable: free space at least half of what is queued."""
    net = VirtualNetwork(seed=3)
    a = net.stack("ip=10.0.0.1/24")
    b = net.stack("ip=10.0.0.2/24")
    server = b.socket(stdsocket.AF_INET, SOCK_STREAM)
    server.bind(("10.0.0.2", 80))
    server.listen()
    client = a.socket(stdsocket.AF_INET, SOCK_STREAM)
    client.setsockopt(SOL_SOCKET, stdsocket.SO_SNDBUF, 32768)
    client.settimeout(5)
    client.connect(("10.0.0.2", 80))
    accepted, _ = server.accept()
    accepted.setsockopt(SOL_SOCKET, stdsocket.SO_RCVBUF, 8192)
    client.setblocking(False)
    sent = 0
    with pytest.raises(BlockingIOError):
        while True:
            sent += client.send(b"z" * 4096)
            net.run(0.01)
    conn = client._conn
    assert state(client) == "--"
    seen = set()
    accepted.settimeout(5)
    received = 0
    while received < sent:
        received += len(accepted.recv(1000))
        net.run(0.01)
        writable = 3 * conn.send_queue_bytes <= 2 * conn.sndbuf
        assert state(client) == ("-w" if writable else "--")
        seen.add(writable)
    assert seen == {False, True}


def test_failed_handshake_turns_readable_and_writable_with_its_error():
    net = VirtualNetwork(seed=4)
    a = net.stack("ip=10.0.0.1/24")
    client = a.socket(stdsocket.AF_INET, SOCK_STREAM)
    client.setblocking(False)
    assert client.connect_ex(("10.0.0.77", 80)) == errno.EINPROGRESS
    assert state(client) == "--"
    net.run(1.0)
    assert state(client) == "--"                  # ARP still trying
    net.run(30.0)
    assert state(client) == "rw"
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == errno.EHOSTUNREACH
    assert state(client) == "rw"


def test_virtual_network_descriptors_close_with_the_network_stack():
    before = open_descriptors()
    net = VirtualNetwork(seed=5)
    a = net.stack("ip=10.0.0.1/24")
    sock = a.socket(stdsocket.AF_INET, SOCK_DGRAM)
    sock.fileno()
    assert open_descriptors() == before + 2
    a.close()
    assert open_descriptors() == before and sock.fileno() == -1


def test_ipv6_stream_and_datagram_sockets_follow_the_same_rules():
    net = VirtualNetwork(seed=6)
    a = net.stack("ip=fd00::1/64")
    b = net.stack("ip=fd00::2/64")
    net.run(5.0)                                   # duplicate address detection
    server = b.socket(stdsocket.AF_INET6, SOCK_STREAM)
    server.bind(("fd00::2", 80))
    server.listen()
    assert state(server) == "--"
    client = a.socket(stdsocket.AF_INET6, SOCK_STREAM)
    client.setblocking(False)
    assert client.connect_ex(("fd00::2", 80)) == errno.EINPROGRESS
    assert state(client) == "--"
    net.run(0.1)
    assert state(client) == "-w" and state(server) == "r-"
    accepted, _ = server.accept()
    accepted.sendall(b"six")
    net.run(0.1)
    assert state(client) == "rw"
    assert client.recv(10) == b"six" and state(client) == "-w"
    receiver = b.socket(stdsocket.AF_INET6, SOCK_DGRAM)
    receiver.bind(("::", 53))                      # dual stack: IPv4 too
    assert state(receiver) == "-w"
    a.socket(stdsocket.AF_INET6, SOCK_DGRAM).sendto(b"q", ("fd00::2", 53))
    net.run(0.1)
    assert state(receiver) == "rw"
    assert receiver.recvfrom(10)[0] == b"q" and state(receiver) == "-w"
