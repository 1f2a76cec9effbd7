"""Unmodified asyncio (the selector event loop) on lwstack sockets, through their ``fileno()``.

No monkeypatching: the ``sock=`` forms of asyncio's API take lwstack sockets made by the
facade (``lwstack.socket``), on two stacks with reactor threads on a real-time in-memory
switch; asyncio waits on their descriptors (:mod:`lwstack.readiness`) beside its own.
"""
import asyncio
import errno
import gc
import os
import socket as stdsocket
import socketserver
import tempfile
import threading

import pytest

import lwstack
from lwstack import socket as lwsocket
from vde.memory import MemorySwitch

CLIENT_IP = "10.4.0.1"
SERVER_IP = "10.4.0.2"
#: A bound on each test's run (not a timing assertion).
LIMIT = 60


@pytest.fixture
def lan():
    """Two stacks on a real-time in-memory switch: ``(client_stack, server_stack)``."""
    switch = MemorySwitch()
    a = lwstack.Stack(switch, f"ip={CLIENT_IP}/24")
    b = lwstack.Stack(switch, f"ip={SERVER_IP}/24")
    yield a, b
    a.close(timeout=1)
    b.close(timeout=1)


def run(coro):
    """Run ``coro`` in a fresh selector event loop (bounded)."""
    return asyncio.run(asyncio.wait_for(coro, LIMIT))


def stream(stack):
    return lwsocket.socket(lwsocket.AF_INET, lwsocket.SOCK_STREAM, stack=stack)


def datagram(stack):
    return lwsocket.socket(lwsocket.AF_INET, lwsocket.SOCK_DGRAM, stack=stack)


async def connected(stack, address):
    sock = stream(stack)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address)
    return sock


def test_the_loop_is_a_selector_loop():
    async def main():
        return asyncio.get_running_loop()
    assert isinstance(run(main()), asyncio.selector_events.BaseSelectorEventLoop)


def test_streams_echo_with_start_server_and_open_connection(lan):
    a, b = lan
    payload = os.urandom(1_500_000)

    async def main():
        async def handle(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        listening = lwsocket.create_server((SERVER_IP, 8000), stack=b)
        server = await asyncio.start_server(handle, sock=listening)
        async with server:
            assert server.sockets[0].getsockname() == (SERVER_IP, 8000)
            reader, writer = await asyncio.open_connection(
                sock=await connected(a, (SERVER_IP, 8000)))
            assert writer.get_extra_info("peername") == (SERVER_IP, 8000)
            assert writer.get_extra_info("sockname")[0] == CLIENT_IP
            sock = writer.get_extra_info("socket")      # asyncio's TransportSocket
            assert sock.getsockopt(lwsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY) == 1
            assert f"fd={sock.fileno()}" in repr(sock) and not sock.get_inheritable()

            async def send():
                for i in range(0, len(payload), 100_000):
                    writer.write(payload[i:i + 100_000])
                    await writer.drain()
                writer.write_eof()
            sending = asyncio.ensure_future(send())
            echoed = await reader.read()              # until the server's FIN
            await sending
            writer.close()
            await writer.wait_closed()
        return echoed
    assert run(main()) == payload


def test_create_connection_with_a_protocol(lan):
    a, b = lan

    class Collect(asyncio.Protocol):
        def __init__(self):
            self.data = bytearray()
            self.done = asyncio.get_running_loop().create_future()

        def connection_made(self, transport):
            self.transport = transport
            transport.write(b"hello ")
            transport.writelines([b"over ", b"lwstack"])
            transport.write_eof()

        def data_received(self, data):
            self.data += data

        def eof_received(self):
            return False

        def connection_lost(self, exc):
            self.done.set_result(exc)

    async def main():
        loop = asyncio.get_running_loop()
        listening = lwsocket.create_server((SERVER_IP, 8001), stack=b)
        listening.setblocking(False)

        async def serve_one():
            conn, _ = await loop.sock_accept(listening)
            data = bytearray()
            while chunk := await loop.sock_recv(conn, 1024):
                data += chunk
            await loop.sock_sendall(conn, bytes(data).upper())
            conn.close()
        serving = asyncio.ensure_future(serve_one())
        sock = await connected(a, (SERVER_IP, 8001))
        transport, protocol = await loop.create_connection(Collect, sock=sock)
        assert await protocol.done is None
        await serving
        listening.close()
        return bytes(protocol.data), sock.fileno()
    data, fileno = run(main())
    assert data == b"HELLO OVER LWSTACK"
    assert fileno == -1                               # the transport closed the socket


def test_sock_methods_stream(lan):
    a, b = lan
    payload = os.urandom(2_000_000)

    async def main():
        loop = asyncio.get_running_loop()
        listening = lwsocket.create_server((SERVER_IP, 8002), stack=b)
        listening.setblocking(False)
        client = stream(a)
        client.setblocking(False)
        accepting = asyncio.ensure_future(loop.sock_accept(listening))
        await loop.sock_connect(client, (SERVER_IP, 8002))
        conn, peer = await accepting
        assert peer == client.getsockname() and conn.gettimeout() == 0.0
        sending = asyncio.ensure_future(loop.sock_sendall(client, payload))
        buf = bytearray(65536)
        got = bytearray()
        while len(got) < len(payload):
            n = await loop.sock_recv_into(conn, buf)
            got += buf[:n]
        await sending
        await loop.sock_sendall(conn, b"bye")
        conn.close()
        tail = b""
        while chunk := await loop.sock_recv(client, 10):
            tail += chunk
        client.close()
        listening.close()
        return bytes(got), tail
    got, tail = run(main())
    assert got == payload and tail == b"bye"


def test_sock_methods_datagram(lan):
    a, b = lan
    if not hasattr(asyncio.AbstractEventLoop, "sock_recvfrom"):
        pytest.skip("loop.sock_recvfrom/sock_sendto are Python 3.11+")

    async def main():
        loop = asyncio.get_running_loop()
        server = datagram(b)
        server.bind((SERVER_IP, 5353))
        server.setblocking(False)
        client = datagram(a)
        client.setblocking(False)
        receiving = asyncio.ensure_future(loop.sock_recvfrom(server, 100))
        await asyncio.sleep(0.05)                      # the receive waits on the descriptor
        await loop.sock_sendto(client, b"question", (SERVER_IP, 5353))
        data, source = await receiving
        await loop.sock_sendto(server, data.upper(), source)
        buf = bytearray(100)
        n, origin = await loop.sock_recvfrom_into(client, buf)
        client.close()
        server.close()
        return bytes(buf[:n]), origin, source[0]
    answer, origin, source_ip = run(main())
    assert answer == b"QUESTION"
    assert origin == (SERVER_IP, 5353) and source_ip == CLIENT_IP


def test_datagram_endpoint_on_lwstack_sockets(lan):
    a, b = lan

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data[::-1], addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self):
            self.answers = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.answers.put_nowait((data, addr))

        def error_received(self, exc):
            self.answers.put_nowait(exc)

    async def main():
        loop = asyncio.get_running_loop()
        server_sock = datagram(b)
        server_sock.bind((SERVER_IP, 9999))
        server, _ = await loop.create_datagram_endpoint(Echo, sock=server_sock)
        client_sock = datagram(a)
        client, protocol = await loop.create_datagram_endpoint(Client, sock=client_sock)
        client.sendto(b"abc", (SERVER_IP, 9999))
        first = await protocol.answers.get()
        refused_sock = datagram(a)
        refused_sock.connect((SERVER_IP, 9998))        # nothing there: ICMP unreachable
        refused, refused_protocol = await loop.create_datagram_endpoint(
            Client, sock=refused_sock)
        refused.sendto(b"anyone?")
        error = await refused_protocol.answers.get()
        for transport in (client, server, refused):
            transport.close()
        await asyncio.sleep(0)
        return first, error
    first, error = run(main())
    assert first == (b"cba", (SERVER_IP, 9999))
    assert isinstance(error, ConnectionRefusedError)


def test_sock_connect_refused(lan):
    a, _ = lan

    async def main():
        sock = stream(a)
        sock.setblocking(False)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.get_running_loop().sock_connect(sock, (SERVER_IP, 1))
        sock.close()
    run(main())


def test_nonblocking_connect_refused_seen_through_the_writable_descriptor(lan):
    a, _ = lan

    async def main():
        loop = asyncio.get_running_loop()
        sock = stream(a)
        sock.setblocking(False)
        assert sock.connect_ex((SERVER_IP, 1)) == errno.EINPROGRESS
        writable = loop.create_future()
        loop.add_writer(sock.fileno(), writable.set_result, None)
        await writable
        loop.remove_writer(sock.fileno())
        code = sock.getsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_ERROR)
        sock.close()
        return code
    assert run(main()) == errno.ECONNREFUSED


@pytest.mark.parametrize("size", [1000, 300_000])
def test_sock_sendfile_falls_back_to_send(lan, size):
    """asyncio tries ``os.sendfile`` on the descriptor first: it fails (ENOTCONN: nothing can
    be written to it; EMSGSIZE for more than a datagram), and asyncio falls back to ``send``,
    so no byte is lost."""
    a, b = lan
    content = os.urandom(size)

    async def main():
        loop = asyncio.get_running_loop()
        listening = lwsocket.create_server((SERVER_IP, 8003), stack=b)
        listening.setblocking(False)
        client = await connected(a, (SERVER_IP, 8003))
        conn, _ = await loop.sock_accept(listening)
        with tempfile.TemporaryFile() as file:
            file.write(content)
            file.seek(0)
            sent = await loop.sock_sendfile(client, file)
        client.close()
        got = bytearray()
        while chunk := await loop.sock_recv(conn, 65536):
            got += chunk
        conn.close()
        listening.close()
        return sent, bytes(got)
    sent, got = run(main())
    assert sent == len(content) and got == content


def test_lwstack_and_kernel_sockets_in_one_loop(lan):
    a, b = lan

    async def main():
        loop = asyncio.get_running_loop()
        kernel_left, kernel_right = stdsocket.socketpair()
        kernel_left.setblocking(False)
        kernel_right.setblocking(False)
        listening = lwsocket.create_server((SERVER_IP, 8004), stack=b)
        listening.setblocking(False)
        client = await connected(a, (SERVER_IP, 8004))
        conn, _ = await loop.sock_accept(listening)
        kernel_wait = asyncio.ensure_future(loop.sock_recv(kernel_right, 10))
        lw_wait = asyncio.ensure_future(loop.sock_recv(conn, 10))
        await loop.sock_sendall(client, b"lwstack")
        assert await lw_wait == b"lwstack"
        assert not kernel_wait.done()
        await loop.sock_sendall(kernel_left, b"kernel")
        assert await kernel_wait == b"kernel"
        for sock in (kernel_left, kernel_right, client, conn, listening):
            sock.close()
    run(main())


def test_no_descriptor_left_after_asyncio(lan):
    a, b = lan

    def count():
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    async def main(port):
        listening = lwsocket.create_server((SERVER_IP, port), stack=b)

        async def handle(reader, writer):
            writer.write(await reader.read(100))
            writer.close()
        server = await asyncio.start_server(handle, sock=listening)
        for _ in range(5):
            reader, writer = await asyncio.open_connection(
                sock=await connected(a, (SERVER_IP, port)))
            writer.write(b"x")
            writer.write_eof()
            assert await reader.read() == b"x"
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
    run(main(8005))                                   # the loop's own descriptors come and go
    before = count()
    run(main(8006))
    assert count() == before


# -- the stdlib's selectors users ------------------------------------------------------------

class _Upper(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline().upper())


class _UpperDatagram(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data.upper(), self.client_address)


def serving(server_class, handler, listening):
    """A socketserver on an lwstack socket (its own is closed), serving in a thread."""
    server = server_class(("127.0.0.1", 0), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listening
    server.server_address = listening.getsockname()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    return server, thread


def test_socketserver_serve_forever_on_lwstack_sockets(lan):
    """socketserver waits in selectors (PollSelector) on the listener's descriptor."""
    a, b = lan
    tcp, tcp_thread = serving(socketserver.ThreadingTCPServer, _Upper,
                              lwsocket.create_server((SERVER_IP, 8010), stack=b))
    udp_sock = datagram(b)
    udp_sock.bind((SERVER_IP, 8011))
    udp, udp_thread = serving(socketserver.UDPServer, _UpperDatagram, udp_sock)
    try:
        answers = []
        for i in range(3):
            client = lwsocket.create_connection((SERVER_IP, 8010), timeout=LIMIT, stack=a)
            client.sendall(b"line %d\n" % i)
            answers.append(client.makefile("rb").readline())
            client.close()
        asker = datagram(a)
        asker.settimeout(LIMIT)
        asker.sendto(b"datagram", (SERVER_IP, 8011))
        answers.append(asker.recvfrom(100))
    finally:
        for server, thread in ((tcp, tcp_thread), (udp, udp_thread)):
            server.shutdown()
            server.server_close()
            thread.join(LIMIT)
    assert answers == [b"LINE 0\n", b"LINE 1\n", b"LINE 2\n",
                       (b"DATAGRAM", (SERVER_IP, 8011))]
