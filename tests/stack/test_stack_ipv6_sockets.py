"""AF_INET6 datagram sockets against the stdlib's contract, side by side with the kernel.

Each comparison runs on real kernel sockets (::1 and 127.0.0.1 on the loopback interface) and
on lwstack sockets (two stacks on a virtual network, fd00::1 / 10.0.0.1 and fd00::2 /
10.0.0.2); both runs must give the same results, exception types and errno values.  Address
formats (4-tuples, ``::ffff:a.b.c.d`` for IPv4 peers of a dual-stack socket), IPV6_V6ONLY,
IPV6_UNICAST_HOPS and the errors of bind, connect and sendto are what is compared.
"""
import errno
import socket as stdsocket

import pytest

from lwstack import socket as lwsocket
from lwstack.sim import VirtualNetwork

AF_INET, AF_INET6, SOCK_DGRAM = stdsocket.AF_INET, stdsocket.AF_INET6, stdsocket.SOCK_DGRAM
IPPROTO_IPV6 = stdsocket.IPPROTO_IPV6
V6ONLY, HOPS = stdsocket.IPV6_V6ONLY, stdsocket.IPV6_UNICAST_HOPS


def outcome(call, *args):
    try:
        return "ok", call(*args)
    except Exception as exc:                  # noqa: BLE001 - the type is the result
        return type(exc).__name__, getattr(exc, "errno", None)


class KernelWorld:
    name = "kernel"
    client6 = server6 = "::1"
    client4 = server4 = "127.0.0.1"
    not_ours6 = "2001:db8::77"

    def __init__(self):
        self.opened = []

    def socket(self, family=AF_INET6, side="client"):
        sock = stdsocket.socket(family, SOCK_DGRAM)
        self.opened.append(sock)
        return sock

    def recvfrom(self, sock, size=100):
        sock.settimeout(2)
        return sock.recvfrom(size)

    def nothing_arrives(self, sock):
        sock.settimeout(0.2)
        return outcome(sock.recvfrom, 100)[0] == "TimeoutError"

    def close(self):
        for sock in self.opened:
            sock.close()


class LwWorld(KernelWorld):
    name = "lwstack"
    client6, server6 = "fd00::1", "fd00::2"
    client4, server4 = "10.0.0.1", "10.0.0.2"

    def __init__(self):
        super().__init__()
        self.net = VirtualNetwork(seed=61)
        self.client = self.net.stack("ip=10.0.0.1/24,ip=fd00::1/64")
        self.server = self.net.stack("ip=10.0.0.2/24,ip=fd00::2/64")
        self.net.run(3)

    def socket(self, family=AF_INET6, side="client"):
        stack = self.client if side == "client" else self.server
        sock = stack.socket(family, SOCK_DGRAM)
        self.opened.append(sock)
        return sock


@pytest.fixture(params=["kernel", "lwstack"])
def world(request):
    made = KernelWorld() if request.param == "kernel" else LwWorld()
    yield made
    made.close()


def test_fresh_and_bound_socket_names(world):
    sock = world.socket()
    assert sock.getsockname() == ("::", 0, 0, 0)
    assert outcome(sock.getpeername) == ("OSError", errno.ENOTCONN)
    sock.bind(("", 0))
    host, port, flowinfo, scope_id = sock.getsockname()
    assert (host, flowinfo, scope_id) == ("::", 0, 0) and port > 0
    assert sock.family == AF_INET6 and sock.type == SOCK_DGRAM


def test_bind_errors(world):
    assert outcome(world.socket().bind, (world.not_ours6, 0)) == ("OSError",
                                                                 errno.EADDRNOTAVAIL)
    assert outcome(world.socket().bind, ("::ffff:192.168.254.254", 0)) == (
        "OSError", errno.EADDRNOTAVAIL)
    assert outcome(world.socket().bind, ("fe80::1", 0)) == ("OSError", errno.EINVAL)
    sock = world.socket()
    sock.bind((world.client6, 0))
    assert outcome(sock.bind, ("", 0)) == ("OSError", errno.EINVAL)      # already bound


def test_address_tuple_errors_are_the_stdlib_s(world):
    sock = world.socket()
    for address, expected in [((world.server6,), "TypeError"),
                              ((world.server6, 7, 0, 0, 1), "TypeError"),
                              ((world.server6, 70000), "OverflowError"),
                              ((world.server6, 7, 1 << 20), "OverflowError"),
                              ((world.server6, "7"), "TypeError"),
                              ((7, 7), "TypeError"),
                              ((world.server4, 7), "gaierror")]:
        assert outcome(sock.sendto, b"x", address)[0] == expected, address


def test_v6only_defaults_off_and_is_fixed_at_bind(world):
    sock = world.socket()
    assert sock.getsockopt(IPPROTO_IPV6, V6ONLY) == 0
    sock.setsockopt(IPPROTO_IPV6, V6ONLY, 1)
    assert sock.getsockopt(IPPROTO_IPV6, V6ONLY) == 1
    sock.bind(("", 0))
    assert outcome(sock.setsockopt, IPPROTO_IPV6, V6ONLY, 0) == ("OSError", errno.EINVAL)


def test_unicast_hops_option(world):
    sock = world.socket()
    assert sock.getsockopt(IPPROTO_IPV6, HOPS) == 64
    sock.setsockopt(IPPROTO_IPV6, HOPS, 9)
    assert sock.getsockopt(IPPROTO_IPV6, HOPS) == 9
    sock.setsockopt(IPPROTO_IPV6, HOPS, -1)
    assert sock.getsockopt(IPPROTO_IPV6, HOPS) == 64
    for bad in (256, -2):
        assert outcome(sock.setsockopt, IPPROTO_IPV6, HOPS, bad) == ("OSError", errno.EINVAL)


def test_a_dual_stack_socket_hears_ipv4_peers_as_mapped_addresses(world):
    server = world.socket(side="server")
    server.bind(("", 0))
    port = server.getsockname()[1]
    client4 = world.socket(AF_INET)
    client4.sendto(b"from four", (world.server4, port))
    data, source = world.recvfrom(server)
    assert data == b"from four"
    assert source == (f"::ffff:{world.client4}", client4.getsockname()[1], 0, 0)
    server.sendto(b"answer", source)
    assert world.recvfrom(client4) == (b"answer", (world.server4, port))
    client6 = world.socket()
    client6.sendto(b"from six", (world.server6, port))
    assert world.recvfrom(server) == (b"from six",
                                      (world.client6, client6.getsockname()[1], 0, 0))


def test_v6only_frees_the_port_for_ipv4_and_ignores_ipv4(world):
    server = world.socket(side="server")
    server.setsockopt(IPPROTO_IPV6, V6ONLY, 1)
    server.bind(("", 0))
    port = server.getsockname()[1]
    four = world.socket(AF_INET, side="server")
    four.bind(("", port))                               # no conflict now
    world.socket(AF_INET).sendto(b"to four", (world.server4, port))
    assert world.recvfrom(four)[0] == b"to four"
    assert world.nothing_arrives(server)


def test_dual_stack_and_ipv4_wildcards_conflict(world):
    dual = world.socket(side="server")
    dual.bind(("", 0))
    port = dual.getsockname()[1]
    assert outcome(world.socket(AF_INET, side="server").bind, ("", port)) == (
        "OSError", errno.EADDRINUSE)
    four = world.socket(AF_INET, side="server")
    four.bind(("", 0))
    assert outcome(world.socket(side="server").bind, ("", four.getsockname()[1])) == (
        "OSError", errno.EADDRINUSE)


def test_connecting_to_a_mapped_address_fixes_a_mapped_source(world):
    server = world.socket(AF_INET, side="server")
    server.bind(("", 0))
    port = server.getsockname()[1]
    sock = world.socket()
    sock.connect((f"::ffff:{world.server4}", port))
    assert sock.getsockname()[0] == f"::ffff:{world.client4}"
    assert sock.getpeername() == (f"::ffff:{world.server4}", port, 0, 0)
    sock.send(b"mapped")
    assert world.recvfrom(server)[0] == b"mapped"


def test_v6only_socket_cannot_reach_ipv4(world):
    sock = world.socket()
    sock.setsockopt(IPPROTO_IPV6, V6ONLY, 1)
    assert outcome(sock.sendto, b"x", (f"::ffff:{world.server4}", 9)) == (
        "OSError", errno.ENETUNREACH)
    assert outcome(sock.bind, (f"::ffff:{world.client4}", 0)) == ("OSError", errno.EINVAL)


def test_connect_to_link_local_needs_a_scope(world):
    sock = world.socket()
    assert sock.connect_ex(("fe80::1", 9)) == errno.EINVAL


def test_connect_to_ipv6_and_names(world):
    server = world.socket(side="server")
    server.bind((world.server6, 0))
    port = server.getsockname()[1]
    sock = world.socket()
    sock.connect((world.server6, port))
    assert sock.getpeername() == (world.server6, port, 0, 0)
    assert sock.getsockname()[0] == world.client6
    sock.send(b"connected")
    assert world.recvfrom(server)[0] == b"connected"


# -- lwstack only -----------------------------------------------------------------------------

def test_link_local_peers_carry_the_interface_as_scope_id():
    net = VirtualNetwork(seed=3)
    a = net.stack("mac=02:00:00:00:00:0a")
    b = net.stack("mac=02:00:00:00:00:0b")
    net.run(3)
    server = b.socket(AF_INET6, SOCK_DGRAM)
    server.bind((b.link_local, 9, 0, 1))
    assert server.getsockname() == (b.link_local, 9, 0, 1)
    server.settimeout(1)
    client = a.socket(AF_INET6, SOCK_DGRAM)
    client.connect((b.link_local, 9, 0, 1))
    client.send(b"on the link")
    assert server.recvfrom(100) == (b"on the link", (a.link_local, client.getsockname()[1],
                                                     0, 1))
    assert outcome(client.connect, (b.link_local, 9, 0, 7)) == ("OSError", errno.ENETUNREACH)
    assert outcome(a.socket(AF_INET6, SOCK_DGRAM).bind, (a.link_local, 0, 0, 7)) == (
        "OSError", errno.ENODEV)
    assert lwsocket.has_ipv6


def test_sending_before_dad_is_over_has_no_source_address():
    net = VirtualNetwork(seed=4)
    a = net.stack("ip=fd00::1/64")
    sock = a.socket(AF_INET6, SOCK_DGRAM)
    assert outcome(sock.sendto, b"x", ("fd00::2", 9)) == ("OSError", errno.EADDRNOTAVAIL)
    net.run(3)
    assert sock.sendto(b"x", ("fd00::2", 9)) == 1
