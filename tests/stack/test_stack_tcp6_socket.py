"""AF_INET6 stream sockets against the stdlib's contract, side by side with kernel sockets.

As in test_stack_tcp_socket.py, each scenario runs on real kernel sockets (over ::1 and, for
IPv4 through an IPv6 socket, 127.0.0.1) and on lwstack sockets (two stacks on a virtual
network, each with an IPv6 and an IPv4 address), through the same :class:`World6` interface,
and both must give the same results, exception types and errno values: address formats
(``(host, port, flowinfo, scope_id)``), dual stack (IPv4 peers as ``::ffff:a.b.c.d``,
Linux's ``bindv6only=0``), IPV6_V6ONLY, the bind matrix between families, and errors.  A few
lwstack-only tests follow (a transfer with the MSS of IPv6, a dual-stack server).
"""
import errno
import socket as stdsocket

import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork

AF_INET, AF_INET6, SOCK_STREAM = stdsocket.AF_INET, stdsocket.AF_INET6, stdsocket.SOCK_STREAM
SOL_SOCKET, SO_REUSEADDR = stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR
IPPROTO_IPV6, IPV6_V6ONLY = stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY
IPPROTO_TCP = stdsocket.IPPROTO_TCP


def outcome(call, *args, **kwargs):
    """``("ok", result)`` or ``(exception type name, errno)``."""
    try:
        return "ok", call(*args, **kwargs)
    except Exception as exc:                  # noqa: BLE001 - the type is the result
        return type(exc).__name__, getattr(exc, "errno", None)


def error(exc_type, code=None):
    return exc_type.__name__, code


class World6:
    """Sockets and addresses of one implementation.  ``server6``/``client6`` are the IPv6
    addresses of the two sides, ``server4``/``client4`` their IPv4 ones (the same host for
    the kernel: ::1 and 127.0.0.1)."""

    name = ""
    server6 = client6 = server4 = client4 = ""

    def __init__(self):
        self.opened = []

    def _new(self, side, family):
        raise NotImplementedError

    def socket(self, family=AF_INET6, side="client", v6only=None):
        sock = self._new(side, family)
        self.opened.append(sock)
        if v6only is not None:
            sock.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, v6only)
        return sock

    def listener(self, host="", family=AF_INET6, v6only=None, port=0):
        """A listening server-side socket: ``(sock, its address)``."""
        sock = self.socket(family, "server", v6only)
        sock.bind((host, port))
        sock.listen(8)
        sock.settimeout(5)
        return sock, sock.getsockname()

    def free_port(self):
        sock = self.socket(AF_INET6, "server")
        sock.bind(("", 0))
        port = sock.getsockname()[1]
        sock.close()
        return port

    def close(self):
        for sock in self.opened:
            try:
                sock.close()
            except OSError:
                pass


class KernelWorld6(World6):
    name = "kernel"
    server6 = client6 = "::1"
    server4 = client4 = "127.0.0.1"

    def _new(self, side, family):
        return stdsocket.socket(family, SOCK_STREAM)

    def create_server(self, address, **kwargs):
        sock = stdsocket.create_server(address, **kwargs)
        self.opened.append(sock)
        return sock

    def create_connection(self, address, timeout):
        sock = stdsocket.create_connection(address, timeout)
        self.opened.append(sock)
        return sock


class LwWorld6(World6):
    name = "lwstack"
    client6, server6 = "fd00::1", "fd00::2"
    client4, server4 = "10.0.0.1", "10.0.0.2"

    def __init__(self):
        super().__init__()
        self.net = VirtualNetwork(seed=66)
        self.client = self.net.stack(f"ip={self.client4}/24,ip={self.client6}/64")
        self.server = self.net.stack(f"ip={self.server4}/24,ip={self.server6}/64")
        self.net.run(3.0)                         # DAD of the IPv6 addresses

    def _new(self, side, family):
        stack = self.client if side == "client" else self.server
        return stack.socket(family, SOCK_STREAM)

    def create_server(self, address, **kwargs):
        sock = lwsocket.create_server(address, stack=self.server, **kwargs)
        self.opened.append(sock)
        return sock

    def create_connection(self, address, timeout):
        sock = lwsocket.create_connection(address, timeout, stack=self.client)
        self.opened.append(sock)
        return sock


@pytest.fixture(params=["kernel", "lwstack"])
def world(request):
    made = KernelWorld6() if request.param == "kernel" else LwWorld6()
    yield made
    made.close()


def mapped(ip4):
    return "::ffff:" + ip4


# -- addresses -----------------------------------------------------------------------------------

def test_connect_accept_and_four_tuple_addresses(world):
    listener, address = world.listener()
    assert address[0] == "::" and address[2:] == (0, 0)
    client = world.socket()
    assert client.getsockname() == ("::", 0, 0, 0)
    assert outcome(client.getpeername) == error(OSError, errno.ENOTCONN)
    client.settimeout(5)
    client.connect((world.server6, address[1]))
    accepted, peer = listener.accept()
    assert client.getpeername() == (world.server6, address[1], 0, 0)
    assert accepted.getsockname() == (world.server6, address[1], 0, 0)
    assert peer == client.getsockname() == accepted.getpeername()
    assert peer[0] == world.client6 and peer[2:] == (0, 0)
    assert accepted.family == AF_INET6 and accepted.type == SOCK_STREAM
    client.sendall(b"over IPv6")
    accepted.settimeout(5)
    assert accepted.recv(100) == b"over IPv6"


def test_two_tuple_and_scope_tuple_addresses_connect(world):
    listener, address = world.listener(world.server6)
    for form in ((world.server6, address[1]), (world.server6, address[1], 0),
                 (world.server6, address[1], 0, 0)):
        client = world.socket()
        client.settimeout(5)
        client.connect(form)
        listener.accept()


def test_listen_without_bind_is_on_any6(world):
    sock = world.socket(side="server")
    sock.listen(1)
    host, port, flowinfo, scope_id = sock.getsockname()
    assert (host, flowinfo, scope_id) == ("::", 0, 0) and port > 0


def test_connect_refused_over_ipv6(world):
    port = world.free_port()
    assert outcome(world.socket().connect, (world.server6, port)) == \
        error(ConnectionRefusedError, errno.ECONNREFUSED)
    assert world.socket().connect_ex((world.server6, port)) == errno.ECONNREFUSED


def test_bad_address_tuples(world):
    sock = world.socket()
    assert outcome(sock.connect, ("::1", 80, 0, 0, 0))[0] == "TypeError"
    assert outcome(sock.connect, ("::1", 80, 1 << 20, 0))[0] == "OverflowError"
    assert outcome(sock.connect, ("::1", 70000))[0] == "OverflowError"
    assert outcome(sock.connect, ("::1",))[0] == "TypeError"
    assert outcome(sock.bind, ("127.0.0.1", 0))[0] == "gaierror"     # IPv4 text on AF_INET6


def test_bind_errors(world):
    assert outcome(world.socket().bind, ("2001:db8::9", 0)) == \
        error(OSError, errno.EADDRNOTAVAIL)
    assert outcome(world.socket().bind, ("::ffff:10.9.9.9", 0)) == \
        error(OSError, errno.EADDRNOTAVAIL)
    # A link-local address without an interface (scope_id).
    assert outcome(world.socket().bind, ("fe80::99", 0)) == error(OSError, errno.EINVAL)
    sock = world.socket()
    sock.bind(("", 0))
    assert outcome(sock.bind, ("", 0)) == error(OSError, errno.EINVAL)


def test_connect_to_multicast_or_unscoped_link_local(world):
    assert outcome(world.socket().connect, ("ff02::1", 80)) == \
        error(OSError, errno.ENETUNREACH)
    assert outcome(world.socket().connect, ("fe80::1", 80)) == error(OSError, errno.EINVAL)
    assert outcome(world.socket(AF_INET).connect, ("224.0.0.1", 80)) == \
        error(OSError, errno.ENETUNREACH)


def test_create_server_and_create_connection_over_ipv6(world):
    server = world.create_server(("", 0), family=AF_INET6, dualstack_ipv6=True)
    port = server.getsockname()[1]
    assert server.getsockopt(IPPROTO_IPV6, IPV6_V6ONLY) == 0
    assert server.getsockopt(SOL_SOCKET, SO_REUSEADDR) == 1
    server.settimeout(5)
    for host in (world.server6, world.server4):
        client = world.create_connection((host, port), 5)
        accepted, peer = server.accept()
        want = world.client6 if ":" in host else mapped(world.client4)
        assert peer[0] == want
        assert client.getpeername()[:2] == (host, port)
        assert client.family == (AF_INET6 if ":" in host else AF_INET)
    only6 = world.create_server(("", 0), family=AF_INET6)
    assert only6.getsockopt(IPPROTO_IPV6, IPV6_V6ONLY) == 1
    assert outcome(world.create_connection, (world.server4, only6.getsockname()[1]), 5) == \
        error(ConnectionRefusedError, errno.ECONNREFUSED)


# -- dual stack ----------------------------------------------------------------------------------

def test_dual_stack_listener_accepts_ipv4_as_mapped(world):
    listener, address = world.listener()
    client = world.socket(AF_INET)
    client.settimeout(5)
    client.connect((world.server4, address[1]))
    accepted, peer = listener.accept()
    assert peer == (mapped(world.client4), client.getsockname()[1], 0, 0)
    assert accepted.getsockname() == (mapped(world.server4), address[1], 0, 0)
    assert accepted.getpeername() == peer
    client.sendall(b"v4 in v6")
    accepted.settimeout(5)
    assert accepted.recv(100) == b"v4 in v6"
    accepted.sendall(b"back")
    assert client.recv(100) == b"back"


def test_ipv6_socket_connects_to_a_mapped_address(world):
    listener, address = world.listener(family=AF_INET)
    client = world.socket()
    client.settimeout(5)
    client.connect((mapped(world.server4), address[1]))
    accepted, peer = listener.accept()
    assert client.getpeername() == (mapped(world.server4), address[1], 0, 0)
    assert client.getsockname() == (mapped(peer[0]), peer[1], 0, 0)
    assert peer[0] == world.client4


def test_v6only_listener_refuses_ipv4(world):
    listener, address = world.listener(v6only=1)
    assert listener.getsockopt(IPPROTO_IPV6, IPV6_V6ONLY) == 1
    assert outcome(world.socket(AF_INET).connect, (world.server4, address[1])) == \
        error(ConnectionRefusedError, errno.ECONNREFUSED)


def test_v6only_rules(world):
    sock = world.socket()
    assert sock.getsockopt(IPPROTO_IPV6, IPV6_V6ONLY) == 0       # Linux's bindv6only=0
    assert outcome(world.socket(v6only=1).connect, (mapped(world.server4), 80)) == \
        error(OSError, errno.ENETUNREACH)
    assert outcome(world.socket(v6only=1).bind, (mapped(world.server4), 0)) == \
        error(OSError, errno.EINVAL)
    bound = world.socket()
    bound.bind(("", 0))
    assert outcome(bound.setsockopt, IPPROTO_IPV6, IPV6_V6ONLY, 1) == \
        error(OSError, errno.EINVAL)
    assert outcome(world.socket(AF_INET).setsockopt, IPPROTO_IPV6, IPV6_V6ONLY, 1) == \
        error(OSError, errno.ENOPROTOOPT)


def test_family_mismatches_between_bind_and_connect(world):
    listener6, address6 = world.listener(world.server6)
    bound6 = world.socket()
    bound6.bind((world.client6, 0))
    assert outcome(bound6.connect, (mapped(world.server4), 80)) == \
        error(OSError, errno.ENETUNREACH)
    bound4 = world.socket()
    bound4.bind((mapped(world.client4), 0))
    assert bound4.getsockname()[0] == mapped(world.client4)
    assert outcome(bound4.connect, (world.server6, address6[1])) == \
        error(OSError, errno.EAFNOSUPPORT)


# Linux's bind matrix on one port: (first socket, second socket, second bind's outcome);
# a socket is (family, address, v6only), "any" meaning the family's wildcard.
BIND_MATRIX = [
    ((AF_INET, "any", None), (AF_INET6, "any", 1), "ok"),
    ((AF_INET, "any", None), (AF_INET6, "any", 0), "EADDRINUSE"),
    ((AF_INET6, "any", 0), (AF_INET6, "any", 1), "EADDRINUSE"),
    ((AF_INET6, "any", 1), (AF_INET, "any", None), "ok"),
    ((AF_INET, "v4", None), (AF_INET6, "any", 0), "EADDRINUSE"),
    ((AF_INET, "v4", None), (AF_INET6, "v6", 0), "ok"),
    ((AF_INET, "v4", None), (AF_INET6, "mapped", 0), "EADDRINUSE"),
    ((AF_INET6, "v6", 0), (AF_INET6, "any", 1), "EADDRINUSE"),
    ((AF_INET6, "mapped", 0), (AF_INET, "any", None), "EADDRINUSE"),
]


@pytest.mark.parametrize("first, second, expected", BIND_MATRIX)
def test_bind_matrix_between_families(world, first, second, expected):
    def address(family, which):
        return {"any": "", "v4": world.server4, "v6": world.server6,
                "mapped": mapped(world.server4)}[which]

    one = world.socket(first[0], "server", first[2])
    one.bind((address(first[0], first[1]), 0))
    port = one.getsockname()[1]
    two = world.socket(second[0], "server", second[2])
    got = outcome(two.bind, (address(second[0], second[1]), port))
    assert got == (("ok", None) if expected == "ok"
                   else error(OSError, getattr(errno, expected)))


# -- lwstack alone ---------------------------------------------------------------------------------

def test_lwstack_ipv6_transfer_uses_the_ipv6_mss():
    world = LwWorld6()
    listener, address = world.listener()
    client = world.socket()
    client.settimeout(30)
    client.connect((world.server6, address[1]))
    accepted, _ = listener.accept()
    assert client.getsockopt(IPPROTO_TCP, stdsocket.TCP_MAXSEG) == 1440 - 12   # timestamps
    data = bytes(range(256)) * 4096                     # 1 MiB
    received = bytearray()
    accepted.settimeout(30)
    client.sendall(data)
    client.shutdown(stdsocket.SHUT_WR)
    while True:
        chunk = accepted.recv(1 << 16)
        if not chunk:
            break
        received += chunk
    assert received == data
    stats = world.server.host.stats
    assert stats["drop.tcp_bad_checksum"] == 0
    world.close()


def test_lwstack_dual_stack_server_serves_both_families_at_once():
    world = LwWorld6()
    listener, address = world.listener()
    clients = []
    for family, host in ((AF_INET6, world.server6), (AF_INET, world.server4)):
        client = world.socket(family)
        client.settimeout(5)
        client.connect((host, address[1]))
        client.sendall(host.encode())
        clients.append(client)
    peers = set()
    for _ in clients:
        accepted, peer = listener.accept()
        accepted.settimeout(5)
        peers.add((peer[0], accepted.recv(100).decode()))
    assert peers == {(world.client6, world.server6),
                     (mapped(world.client4), world.server4)}
    world.close()

