"""lwstack.launcher in a program (``with routed(stack)``): what is patched and restored, the
class's isinstance and subclass rules, refusals, names, and stdlib clients over an in-memory
switch (real time, one process)."""
import _socket
import http.client
import socket
import ssl
import sys
import threading
import types
import urllib.request

import pytest
import support

import lwstack
from lwstack import launcher
from lwstack import socket as lws
from lwstack import tls as lwtls
from vde.memory import MemorySwitch

A, B = "10.0.0.1", "10.0.0.2"
PATCHED = ("socket", "SocketType", "create_connection", "create_server", "getaddrinfo",
           "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo", "getfqdn",
           "gethostname", "has_ipv6", "setdefaulttimeout", "getdefaulttimeout",
           "has_dualstack_ipv6", "if_nameindex", "if_nametoindex", "if_indextoname")


@pytest.fixture
def stacks():
    """Two stacks on one in-memory switch: ``a`` (routed to in the tests, fqdn a.lan) and
    ``b`` (the other host, used through lwstack's own API)."""
    switch = MemorySwitch()
    with lwstack.Stack(switch, f"ip={A}/24,fqdn=alpha.lan") as a, \
            lwstack.Stack(switch, f"ip={B}/24") as b:
        yield a, b
    assert launcher.installed() is None


def _http_server(stack, body):
    """One HTTP/1.0 answer to each connection on ``stack`` port 80, from a thread."""
    listener = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("", 80))
    listener.listen()

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                path = request.split(b" ")[1] if request else b"?"
                reply = body + b" for " + path
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(reply), reply))
    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_install_patches_and_uninstall_restores(stacks):
    a, _b = stacks
    before = {name: getattr(socket, name) for name in PATCHED}
    ssl_before = ssl.create_connection
    with launcher.routed(a) as router:
        assert launcher.installed() is router
        for name in PATCHED:
            if name != "has_ipv6":
                assert getattr(socket, name) is not before[name], name
        assert ssl.create_connection == router.create_connection      # bound before: rebound
        assert lwtls.installed()
        with pytest.raises(RuntimeError):
            launcher.install(a)
    assert {name: getattr(socket, name) for name in PATCHED} == before
    assert ssl.create_connection is ssl_before
    assert not lwtls.installed()


def test_names_bound_before_the_patch_are_rebound(stacks):
    a, _b = stacks
    module = types.ModuleType("lwrun_test_early_importer")
    module.create_connection = socket.create_connection    # as "from socket import ..." does
    module.sock_class = socket.socket
    module.unrelated = True
    sys.modules[module.__name__] = module
    try:
        with launcher.routed(a):
            assert module.create_connection == launcher.installed().create_connection
            assert module.sock_class is socket.socket is launcher.socket
            assert module.unrelated is True
        assert module.create_connection is socket.create_connection
        assert module.sock_class is socket.socket
    finally:
        del sys.modules[module.__name__]


def test_what_the_class_makes(stacks):
    a, _b = stacks
    with launcher.routed(a):
        with socket.socket() as tcp, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
            assert isinstance(tcp, launcher.RoutedStreamSocket) and tcp.stack is a
            assert isinstance(udp, launcher.RoutedDatagramSocket)
            assert (tcp.family, tcp.type, udp.family, udp.type) == (
                socket.AF_INET, socket.SOCK_STREAM, socket.AF_INET6, socket.SOCK_DGRAM)
        left, right = socket.socketpair()                   # AF_UNIX: the kernel's
        with left, right:
            assert isinstance(left, socket.socket) and isinstance(left, _socket.socket)
            left.sendall(b"kernel")
            assert right.recv(10) == b"kernel"
        ping = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        assert ping.proto == socket.IPPROTO_ICMP
        ping.close()


def test_isinstance_and_issubclass(stacks):
    a, _b = stacks
    kernel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with launcher.routed(a):
        routed = socket.socket()
        assert isinstance(kernel, socket.socket)
        assert isinstance(routed, socket.socket)
        assert isinstance(a.socket(), socket.socket)          # lwstack's own sockets too
        assert not isinstance(object(), socket.socket)
        assert issubclass(ssl.SSLSocket, socket.socket)
        assert issubclass(lws.socket, socket.socket)
        assert issubclass(lwtls.SSLSocket, socket.socket)
        assert not issubclass(int, socket.socket)
        routed.close()
    kernel.close()


def test_class_attributes_call_the_socket_given(stacks):
    a, _b = stacks
    with launcher.routed(a):
        with socket.socket() as sock:
            socket.socket.bind(sock, ("", 4321))             # as trio's wrappers call it
            assert socket.socket.getsockname(sock) == ("0.0.0.0", 4321)
        assert socket.socket.accept.__name__ == "accept"
        assert isinstance(socket.socket.family, property)


def test_subclasses_made_after_the_patch_are_kernel_af_unix_only(stacks):
    a, _b = stacks
    with launcher.routed(a):
        class Tagged(socket.socket):
            tag = "mine"

            def hello(self):
                return self.family
        with Tagged(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            assert sock.hello() == socket.AF_UNIX and sock.tag == "mine"
            assert isinstance(sock, socket.socket)
        with pytest.raises(launcher.NotRoutable):
            Tagged(socket.AF_INET, socket.SOCK_STREAM)


def test_refusals_are_oserrors_of_the_right_class_and_reported_once(stacks):
    a, _b = stacks
    said = []
    with launcher.routed(a, report=said.append) as router:
        for _ in range(2):
            with pytest.raises(PermissionError) as raw:
                socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        assert isinstance(raw.value, launcher.NotRoutable) and router.reported(raw.value)
        with pytest.raises(launcher.NotRoutable) as packet:
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        assert packet.value.errno == launcher._errno.EAFNOSUPPORT
        with pytest.raises(launcher.NotRoutable) as seqpacket:
            socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET)
        assert "SOCK_SEQPACKET" in str(seqpacket.value)
        with socket.socket() as sock:
            with pytest.raises(launcher.NotRoutable) as option:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            assert option.value.errno == launcher._errno.ENOPROTOOPT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)      # lwstack's own
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        with pytest.raises(launcher.NotRoutable):
            socket.create_server(("", 80), reuse_port=True)
        kernel = _socket.socket()                 # the C module is not routed: see the notes
        with pytest.raises(launcher.NotRoutable):
            socket.socket(fileno=kernel.fileno())
        assert kernel.fileno() >= 0               # refused, but the descriptor stays ours
        kernel.close()
    assert len(said) == len(set(said)) == 5
    assert said[0].startswith("raw sockets (SOCK_RAW) are not available over lwstack")


def test_names_come_from_the_stack(stacks):
    a, _b = stacks
    a.hosts.add(B, "files.lan")
    with launcher.routed(a):
        assert socket.gethostname() == "alpha"
        assert socket.getfqdn() == "alpha.lan"
        assert socket.gethostbyname("files.lan") == B
        assert socket.getaddrinfo("files.lan", 80, socket.AF_INET, socket.SOCK_STREAM) == [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (B, 80))]
        assert socket.has_ipv6 and socket.has_dualstack_ipv6()
        assert socket.if_nameindex() == [(1, "lw0")]
        assert socket.if_nametoindex("lw0") == 1 and socket.if_indextoname(1) == "lw0"
        with pytest.raises(OSError):
            socket.if_nametoindex("eth0")


def test_default_timeout_is_shared(stacks):
    a, _b = stacks
    with launcher.routed(a):
        try:
            socket.setdefaulttimeout(7.5)
            assert socket.getdefaulttimeout() == 7.5 == lws.getdefaulttimeout()
            assert _socket.getdefaulttimeout() == 7.5
            with socket.socket() as sock:
                assert sock.gettimeout() == 7.5
        finally:
            socket.setdefaulttimeout(None)
    assert socket.getdefaulttimeout() is None and lws.getdefaulttimeout() is None


def test_stdlib_clients_over_the_stack(stacks):
    a, b = stacks
    listener = _http_server(b, b"served by b")
    try:
        with launcher.routed(a):
            # http.client passes socket._GLOBAL_DEFAULT_TIMEOUT to create_connection.
            connection = http.client.HTTPConnection(B, 80)
            connection.request("GET", "/one")
            assert connection.getresponse().read() == b"served by b for /one"
            with urllib.request.urlopen(f"http://{B}/two", timeout=10) as reply:
                assert reply.read() == b"served by b for /two"
            with socket.create_connection((B, 80), timeout=10) as conn:
                assert isinstance(conn, launcher.RoutedStreamSocket)
                assert conn.getsockname()[0] == A
    finally:
        listener.close()


def test_a_stack_per_thread(stacks):
    a, _b = stacks
    switch = MemorySwitch()
    made = []

    def factory():
        stack = lwstack.Stack(switch, f"ip=10.1.0.{len(made) + 1}/24")
        made.append(stack)
        return stack
    seen = {}

    def use(name):
        with socket.socket() as sock:
            seen[name] = sock.stack
    with launcher.routed(stack_factory=factory) as router:
        use("main")
        use("main again")
        threads = [threading.Thread(target=use, args=(n,)) for n in ("t1", "t2")]
        for thread in threads:
            thread.start()
            thread.join()
        assert seen["main"] is seen["main again"] is router.stack()
        assert len({id(s) for s in seen.values()}) == 3 == len(made)
        # t1 had ended when t2 made its stack: t1's is closed in the background.
        assert support.wait_for(lambda: made[1].closed)
        assert router.stacks == [made[0], made[2]]
        router.close_stacks()
    assert all(stack.closed for stack in made)


def test_a_kept_reference_makes_kernel_sockets_after_uninstall(stacks):
    a, _b = stacks
    with launcher.routed(a):
        routed_class = socket.socket
    with routed_class(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert type(sock) is socket.socket
