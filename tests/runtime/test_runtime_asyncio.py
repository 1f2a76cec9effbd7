"""The native asyncio driver (lwstack.asyncio): stacks inside the event loop, no thread.

Real time throughout (this is a runtime), on in-memory switches and through a real lwswitch
process; every test bounds itself with asyncio.wait_for so that a bug fails instead of hanging.
"""
import asyncio
import errno
import hashlib
import os
import struct
import threading

import pytest

import lwstack
import lwstack.asyncio as lwa
from lwstack import socket as lws
from vde.memory import MemorySwitch

A, B = "10.5.0.1", "10.5.0.2"


def run(coro, timeout=60):
    """Run ``coro`` on a fresh default loop, failing after ``timeout`` seconds, and failing
    if anything reached the loop's exception handler (an error inside a driver callback)."""
    errors = []

    async def guarded():
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        return await asyncio.wait_for(coro, timeout)
    result = asyncio.run(guarded())
    assert not errors, errors
    return result


def pattern(size, seed=0):
    """``size`` reproducible bytes (not a repeating short period)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d-%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


async def two_stacks(switch=None, a_options=None, b_options=None):
    switch = switch or MemorySwitch()
    a = lwa.AsyncioStack(switch, f"ip={A}/24", **(a_options or {}))
    b = lwa.AsyncioStack(switch, f"ip={B}/24", **(b_options or {}))
    return a, b


async def close_stacks(*stacks):
    """Close in this order: a stack whose connections still owe a FIN (LAST-ACK, the side
    that closed second) first, while its peer is there to acknowledge it."""
    for stack in stacks:
        await stack.aclose()


async def echo_handler(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


# ---------------------------------------------------------------------------- streams

def test_stream_echo_on_memory_switch_without_threads():
    threads_before = set(threading.enumerate())

    async def main():
        a, b = await two_stacks()
        server = await lwa.start_server(echo_handler, "", 7, stack=b)
        assert server.is_serving()
        assert server.sockets[0].getsockname() == ("0.0.0.0", 7)
        reader, writer = await lwa.open_connection(B, 7, stack=a)
        assert writer.get_extra_info("peername") == (B, 7)
        local = writer.get_extra_info("sockname")
        assert local[0] == A and 32768 <= local[1] <= 60999
        writer.write(b"hello, ")
        writer.write(b"world")
        await writer.drain()
        assert await reader.readexactly(12) == b"hello, world"
        writer.write_eof()
        assert await reader.read() == b""              # the server closed after our FIN
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        assert not server.is_serving() and server.sockets == ()
        # No thread was started for either stack: the loop drives them.
        assert set(threading.enumerate()) == threads_before
        assert a.driver.stats["batches"] > 0 and b.driver.stats["batches"] > 0
        await close_stacks(b, a)
        assert a.closed and b.closed
    run(main())


def test_large_transfer_both_ways_is_intact():
    size = 3_000_000
    blob = pattern(size)

    async def main():
        a, b = await two_stacks()
        server = await b.start_server(echo_handler, "", 9000)
        reader, writer = await a.open_connection(B, 9000)

        async def send():
            view = memoryview(blob)
            for offset in range(0, size, 100_000):
                writer.write(view[offset:offset + 100_000])
                await writer.drain()
            writer.write_eof()
        sender = asyncio.create_task(send())
        received = await reader.read(-1)
        await sender
        assert len(received) == size
        assert hashlib.sha256(received).digest() == hashlib.sha256(blob).digest()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        await close_stacks(b, a)
    run(main())


class Recorder(asyncio.Protocol):
    """A protocol that records what the transport tells it."""

    def __init__(self):
        self.transport = None
        self.data = bytearray()
        self.events = []
        self.lost = asyncio.get_running_loop().create_future()
        self.eof = asyncio.Event()
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()
        self.keep_open = True

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.events.append("eof")
        self.eof.set()
        return self.keep_open

    def pause_writing(self):
        self.events.append("pause")
        self.paused.set()

    def resume_writing(self):
        self.events.append("resume")
        self.resumed.set()

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


def test_flow_control_pause_reading_closes_the_window_and_pauses_the_writer():
    size = 4_000_000
    blob = pattern(size, seed=1)

    async def main():
        a, b = await two_stacks()
        server_side = []

        def factory():
            proto = Recorder()
            server_side.append(proto)
            return proto
        server = await b.create_server(factory, "", 5000)
        transport, client = await a.create_connection(Recorder, B, 5000)
        assert client.events == ["made"]
        await asyncio.sleep(0.05)
        receiver = server_side[0]
        receiver.transport.pause_reading()
        assert not receiver.transport.is_reading()
        transport.set_write_buffer_limits(high=256 * 1024)
        assert transport.get_write_buffer_limits() == (64 * 1024, 256 * 1024)
        transport.write(blob)
        await asyncio.wait_for(client.paused.wait(), 10)
        # Stalled: the receiver's buffer (1 MiB) is full, its window closed, our send buffer
        # (1 MiB) full, the rest waits in the transport above the high-water mark.
        for _ in range(20):
            await asyncio.sleep(0.02)
        conn = transport.get_extra_info("socket")._conn
        server_conn = receiver.transport.get_extra_info("socket")._conn
        assert len(receiver.data) < 2 * 1024 * 1024
        # Bounded by the receive buffer (give or take the window's 512-byte scale rounding,
        # which the core rounds up when it re-advertises an unchanged edge).
        assert server_conn.receive_queue_bytes <= server_conn.rcvbuf + 64 * 1024
        assert conn.snd_wnd < conn.mss                  # the peer's window closed
        assert transport.get_write_buffer_size() > 256 * 1024
        receiver.transport.resume_reading()
        await asyncio.wait_for(client.resumed.wait(), 20)
        while len(receiver.data) < size:
            await asyncio.sleep(0.01)
        assert bytes(receiver.data) == blob
        assert transport.get_write_buffer_size() == 0
        assert client.events[:3] == ["made", "pause", "resume"]
        transport.close()
        assert await receiver.eof.wait() is True
        receiver.transport.close()
        assert await client.lost is None
        assert await receiver.lost is None
        server.close()
        await close_stacks(b, a)
    run(main())


def test_stream_reader_backpressure_reads_everything_in_small_steps():
    # StreamReader pauses the transport above 2*limit; a slow reader still gets every byte.
    size = 600_000
    blob = pattern(size, seed=2)

    async def main():
        a, b = await two_stacks()
        done = asyncio.get_running_loop().create_future()

        async def slow(reader, writer):
            got = bytearray()
            while True:
                chunk = await reader.read(1000)
                if not chunk:
                    break
                got += chunk
                if len(got) % 50_000 < 1000:
                    await asyncio.sleep(0.001)
            done.set_result(bytes(got))
            writer.close()
        server = await b.start_server(slow, "", 5001, limit=4096)
        reader, writer = await a.open_connection(B, 5001)
        writer.write(blob)
        writer.write_eof()
        await writer.drain()
        assert await done == blob
        assert await reader.read() == b""
        writer.close()
        server.close()
        await close_stacks(b, a)
    run(main())


def test_many_concurrent_connections():
    count = 150

    async def main():
        a, b = await two_stacks()
        server = await b.start_server(echo_handler, "", 7, backlog=200)

        async def client(i):
            reader, writer = await a.open_connection(B, 7)
            message = pattern(1000 + i, seed=i)
            writer.write(message)
            await writer.drain()
            echoed = await reader.readexactly(len(message))
            writer.close()
            await writer.wait_closed()
            return echoed == message
        results = await asyncio.gather(*(client(i) for i in range(count)))
        assert all(results) and len(results) == count
        server.close()
        await server.wait_closed()
        assert b.host.tcp.stats["listen_overflow"] == 0
        await close_stacks(b, a)
    run(main())


def test_connection_refused_and_cancelled_connect():
    async def main():
        a, b = await two_stacks()
        with pytest.raises(ConnectionRefusedError) as info:
            await a.open_connection(B, 1)
        assert info.value.errno == errno.ECONNREFUSED
        # Nobody answers 10.5.0.9: ARP fails (EHOSTUNREACH after 3 s), or we give up first.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(a.open_connection("10.5.0.9", 80), 0.3)
        await asyncio.sleep(0)
        assert not [c for c in a.host.tcp.connections.values() if c.state == "SYN-SENT"]
        with pytest.raises(OSError) as info:
            await a.open_connection("10.5.0.9", 80)
        assert info.value.errno == errno.EHOSTUNREACH
        with pytest.raises(OSError):                    # no such name, no name server
            await a.open_connection("example.invalid", 80)
        await close_stacks(b, a)
    run(main())


def test_abort_resets_the_peer_and_peer_reset_reaches_the_protocol():
    async def main():
        a, b = await two_stacks()
        server_side = []

        def factory():
            server_side.append(Recorder())
            return server_side[-1]
        server = await b.create_server(factory, "", 6000)
        transport, client = await a.create_connection(Recorder, B, 6000)
        transport.write(b"x" * 1000)
        while not server_side or len(server_side[0].data) < 1000:
            await asyncio.sleep(0.01)
        transport.abort()
        assert await client.lost is None
        exc = await asyncio.wait_for(server_side[0].lost, 5)
        assert isinstance(exc, ConnectionResetError)
        assert a.host.tcp.stats["rst_sent"] == 1
        assert b.host.tcp.stats["rst_received"] == 1
        server.close()
        await close_stacks(b, a)
    run(main())


def test_eof_received_false_closes_and_write_after_eof_is_refused():
    async def main():
        a, b = await two_stacks()

        class CloseOnEof(Recorder):
            def __init__(self):
                super().__init__()
                self.keep_open = False
        server_side = []

        def factory():
            server_side.append(CloseOnEof())
            return server_side[-1]
        server = await b.create_server(factory, "", 6001)
        transport, client = await a.create_connection(Recorder, B, 6001)
        assert transport.can_write_eof()
        transport.write(b"last words")
        transport.write_eof()
        with pytest.raises(RuntimeError):
            transport.write(b"more")
        await asyncio.wait_for(client.eof.wait(), 5)    # the server closed in return
        assert bytes(server_side[0].data) == b"last words"
        assert await server_side[0].lost is None
        transport.close()
        assert await client.lost is None
        server.close()
        await close_stacks(b, a)
    run(main())


def test_host_names_from_the_hosts_table_and_from_dns():
    # Numeric hosts are answered in the loop; names go through lwstack.socket.getaddrinfo in
    # the default executor (as asyncio's loop.getaddrinfo), the loop driving the stack.
    from lwstack.router import Router

    async def main():
        switch = MemorySwitch()
        router = Router(switch, "ip=10.5.0.3/24", dns=True, domain="lan",
                        host_records=[("web", B)])
        try:
            a = lwa.AsyncioStack(switch, f"ip={A}/24,dns=10.5.0.3,domain=lan")
            b = lwa.AsyncioStack(switch, f"ip={B}/24")
            server = await b.start_server(echo_handler, "", 7)
            infos = await a.getaddrinfo(B, 7, type=lws.SOCK_STREAM)
            assert infos[0][4] == (B, 7)
            a.hosts.add(B, "echo.example")
            reader, writer = await a.open_connection("echo.example", 7)
            assert writer.get_extra_info("peername") == (B, 7)
            writer.close()
            # DNS: the router answers web.lan (the search domain completes "web").
            reader, writer = await a.open_connection("web", 7)
            writer.write(b"named")
            assert await reader.readexactly(5) == b"named"
            assert writer.get_extra_info("peername") == (B, 7)
            writer.close()
            await writer.wait_closed()
            with pytest.raises(lws.gaierror):
                await a.open_connection("nowhere.lan", 7)     # NXDOMAIN from the router
            transport, proto = await a.create_datagram_endpoint(
                DatagramRecorder, local_addr=(A, 0), remote_addr=("web.lan", 9))
            assert transport.get_extra_info("peername") == (B, 9)
            transport.close()
            server.close()
            await close_stacks(b, a)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, router.close)
    run(main())


def test_dhcp_configuration_awaited_in_the_loop():
    from lwstack.router import Router

    async def main():
        switch = MemorySwitch()
        router = Router(switch, "ip=10.5.0.3/24", dhcp="10.5.0.100-10.5.0.120", dns=True,
                        domain="lan", host_records=[("web", B)])
        try:
            b = lwa.AsyncioStack(switch, f"ip={B}/24")
            a = lwa.AsyncioStack(switch, "dhcp")
            assert not a.configured
            with pytest.raises(RuntimeError, match="block the event loop"):
                a.wait_configured(1)             # the blocking form cannot wait in the loop
            assert await a.wait_configured_async(30) is a
            assert a.addresses[0].startswith("10.5.0.1") and a.addresses[0].endswith("/24")
            server = await b.start_server(echo_handler, "", 7)
            reader, writer = await a.open_connection("web", 7)   # name server from the lease
            writer.write(b"leased")
            assert await reader.readexactly(6) == b"leased"
            writer.close()
            await writer.wait_closed()
            server.close()
            await close_stacks(b, a)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, router.close)
    run(main())


# ---------------------------------------------------------------------------- datagrams

class DatagramRecorder(asyncio.DatagramProtocol):
    def __init__(self):
        self.transport = None
        self.datagrams = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams.put_nowait((data, addr))

    def error_received(self, exc):
        self.errors.put_nowait(exc)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_datagram_endpoints_exchange_and_report_errors():
    async def main():
        a, b = await two_stacks()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                self.transport.sendto(data.upper(), addr)
        server_transport, _ = await b.create_datagram_endpoint(Echo, local_addr=("", 7))
        assert server_transport.get_extra_info("sockname") == ("0.0.0.0", 7)
        transport, proto = await a.create_datagram_endpoint(DatagramRecorder,
                                                            local_addr=(A, 5353))
        transport.sendto(b"first", (B, 7))        # resolves B's MAC (ARP queues 16 at most)
        assert await asyncio.wait_for(proto.datagrams.get(), 5) == (b"FIRST", (B, 7))
        for i in range(20):
            transport.sendto(b"ping %d" % i, (B, 7))
        got = [await asyncio.wait_for(proto.datagrams.get(), 5) for _ in range(20)]
        assert got == [(b"PING %d" % i, (B, 7)) for i in range(20)]
        assert transport.get_write_buffer_size() == 0
        # A connected endpoint hears ICMP port unreachable as ConnectionRefusedError.
        connected, cproto = await a.create_datagram_endpoint(DatagramRecorder,
                                                             remote_addr=(B, 9))
        assert connected.get_extra_info("peername") == (B, 9)
        connected.sendto(b"anyone?")
        exc = await asyncio.wait_for(cproto.errors.get(), 5)
        assert isinstance(exc, ConnectionRefusedError)
        with pytest.raises(ValueError):
            connected.sendto(b"x", (B, 7))
        for t in (transport, connected, server_transport):
            t.close()
        assert await proto.lost is None
        assert await cproto.lost is None
        await close_stacks(b, a)
    run(main())


# ---------------------------------------------------------------------------- timers

def test_retransmissions_on_a_lossy_port_run_on_the_loop_timer():
    size = 400_000
    blob = pattern(size, seed=3)
    threads_before = set(threading.enumerate())

    async def main():
        switch = MemorySwitch(seed=7)
        a, b = await two_stacks(switch, b_options={"loss": 0.15})
        received = asyncio.get_running_loop().create_future()

        async def sink(reader, writer):
            received.set_result(await reader.read(-1))
            writer.close()
        server = await b.start_server(sink, "", 8000)
        reader, writer = await a.open_connection(B, 8000)
        writer.write(blob)
        writer.write_eof()
        await writer.drain()
        data = await asyncio.wait_for(received, 60)
        assert hashlib.sha256(data).digest() == hashlib.sha256(blob).digest()
        stats = a.host.tcp.stats
        assert switch._endpoints and sum(
            port.stats["lost"] for ports in switch._endpoints.values() for port in ports) > 0
        assert stats["retransmitted_segments"] > 0 or stats["rto_expired"] > 0, dict(stats)
        assert a.driver.stats["timer_runs"] > 0
        assert set(threading.enumerate()) == threads_before
        writer.close()
        server.close()
        await close_stacks(b, a)
    run(main(), timeout=120)


def test_delayed_port_frames_are_delivered_by_the_timer():
    # Frames queued with a 30 ms delay are not due when the port's listener fires: the
    # driver's one timer covers the port's next delivery too.
    async def main():
        a, b = await two_stacks(b_options={"delay": 0.03})
        transport, proto = await b.create_datagram_endpoint(DatagramRecorder,
                                                            local_addr=("", 4000))
        sender, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol)
        loop = asyncio.get_running_loop()
        started = loop.time()
        sender.sendto(b"late", (B, 4000))
        data, addr = await asyncio.wait_for(proto.datagrams.get(), 5)
        assert data == b"late" and addr[0] == A
        assert loop.time() - started >= 0.029
        transport.close()
        sender.close()
        await close_stacks(b, a)
    run(main())


# ---------------------------------------------------------------------------- shutdown

def test_aclose_delivers_queued_data_before_closing():
    size = 2_000_000
    blob = pattern(size, seed=4)

    async def main():
        a, b = await two_stacks()
        received = asyncio.get_running_loop().create_future()

        async def sink(reader, writer):
            received.set_result(await reader.read(-1))
        server = await b.start_server(sink, "", 8001)
        reader, writer = await a.open_connection(B, 8001)
        writer.write(blob)                 # beyond the 1 MiB send buffer: the rest waits in
        assert writer.transport.get_write_buffer_size() > 0     # the transport's buffer
        await a.aclose()                   # FIN after every byte, waiting in the loop
        data = await asyncio.wait_for(received, 10)
        assert len(data) == size and data == blob
        assert a.closed
        assert writer.transport.is_closing()
        await writer.wait_closed()         # the protocol heard connection_lost
        server.close()
        b.close()                          # the peer is gone: nobody would ACK our FIN
    run(main())


def test_sync_close_inside_the_loop_resets_what_is_owed_and_ends_transports():
    async def main():
        a, b = await two_stacks()
        server_side = []

        def factory():
            server_side.append(Recorder())
            return server_side[-1]
        server = await b.create_server(factory, "", 8002)
        transport, client = await a.create_connection(Recorder, B, 8002)
        while not server_side:
            await asyncio.sleep(0.01)
        server_side[0].transport.pause_reading()
        transport.write(b"z" * 3_000_000)             # cannot all be delivered
        await asyncio.sleep(0.05)
        a.close()                                    # cannot wait in the loop: resets
        exc = await asyncio.wait_for(client.lost, 5)
        assert isinstance(exc, OSError) and exc.errno == errno.ENETDOWN
        server_side[0].transport.resume_reading()
        exc = await asyncio.wait_for(server_side[0].lost, 5)
        assert isinstance(exc, ConnectionResetError)
        with pytest.raises(OSError) as info:
            await a.open_connection(B, 8002)
        assert info.value.errno == errno.ENETDOWN
        server.close()
        await server.wait_closed()
        await b.aclose()
    run(main())


def test_close_from_another_thread_delivers_and_releases_in_the_loop():
    # Stack.close() from a thread can wait (the loop keeps driving the stack): queued data
    # is delivered; the loop then unregisters and releases the port itself.
    size = 1_500_000
    blob = pattern(size, seed=8)

    async def main():
        a, b = await two_stacks()
        received = asyncio.get_running_loop().create_future()

        async def sink(reader, writer):
            received.set_result(await reader.read(-1))
            writer.close()
        server = await b.start_server(sink, "", 8004)
        reader, writer = await a.open_connection(B, 8004)
        writer.write(blob)
        await writer.drain()            # in the connection's send buffer now (1 MiB + some)
        await asyncio.get_running_loop().run_in_executor(None, a.close)
        assert a.closed
        assert await asyncio.wait_for(received, 10) == blob
        await asyncio.sleep(0)
        assert a.driver.phy.port.closed
        with pytest.raises(OSError) as info:   # the transport heard the stack go down
            await asyncio.wait_for(writer.wait_closed(), 5)
        assert info.value.errno == errno.ENETDOWN
        server.close()
        b.close()                        # a is gone: b's FIN would wait for an ACK in vain
    run(main())


def test_server_wait_closed_waits_for_its_connections():
    async def main():
        a, b = await two_stacks()
        gate = asyncio.Event()

        async def handler(reader, writer):
            await gate.wait()
            writer.write(b"bye")
            await writer.drain()
            writer.close()
        server = await b.start_server(handler, "", 8003)
        reader, writer = await a.open_connection(B, 8003)
        await asyncio.sleep(0.05)
        server.close()
        waiting = asyncio.create_task(server.wait_closed())
        await asyncio.sleep(0.05)
        assert not waiting.done()                   # the accepted connection is still open
        with pytest.raises(ConnectionRefusedError):  # but nothing listens any more
            await a.open_connection(B, 8003)
        gate.set()
        assert await reader.read() == b"bye"
        await asyncio.wait_for(waiting, 5)
        writer.close()
        await writer.wait_closed()
        await close_stacks(a, b)           # a's FIN (LAST-ACK) goes first here
    run(main())


def test_closing_with_frames_on_the_way_reaches_no_callback():
    async def main():
        a, b = await two_stacks()
        receiver, proto = await b.create_datagram_endpoint(DatagramRecorder,
                                                           local_addr=("", 4001))
        sender, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol)
        sender.sendto(b"resolve", (B, 4001))
        await asyncio.wait_for(proto.datagrams.get(), 5)
        for _ in range(10):
            sender.sendto(b"x", (B, 4001))  # b's batch is scheduled (call_soon) ...
        b.close()                            # ... and b closes before it runs
        assert isinstance(await asyncio.wait_for(proto.lost, 5), OSError)
        await asyncio.sleep(0.05)            # the scheduled batch ran: nothing raised
        sender.close()
        await a.aclose()
    run(main())


# ---------------------------------------------------------------------------- threads and sockets

def test_sockets_of_an_asyncio_stack_refuse_to_block_the_loop_but_work_from_threads():
    async def main():
        a, b = await two_stacks()
        sock = a.socket()
        sock.bind(("", 7007))
        with pytest.raises(RuntimeError, match="block the event loop"):
            sock.recvfrom(100)                       # would stop the loop that drives it
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recvfrom(100)

        # A thread may block on the same stack's sockets: the loop keeps driving it.
        def blocking_client():
            s = a.socket(lws.AF_INET, lws.SOCK_STREAM)
            s.settimeout(10)
            s.connect((B, 7008))
            s.sendall(b"from a thread")
            reply = s.recv(100)
            s.close()
            return reply
        server = await b.start_server(echo_handler, "", 7008)
        reply = await asyncio.get_running_loop().run_in_executor(None, blocking_client)
        assert reply == b"from a thread"
        sock.close()
        server.close()
        await close_stacks(b, a)
    run(main())


def test_asyncio_stack_and_threaded_stack_on_one_memory_switch():
    # Frames from the threaded stack's reactor wake the loop with call_soon_threadsafe.
    async def main():
        switch = MemorySwitch()
        threaded = lwstack.Stack(switch, f"ip={B}/24")
        listener = threaded.socket(lws.AF_INET, lws.SOCK_STREAM)
        listener.bind(("", 7))
        listener.listen()

        def serve():
            conn, _ = listener.accept()
            conn.settimeout(10)
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(hashlib.sha256(data).digest())
            conn.close()
        thread = threading.Thread(target=serve)
        thread.start()
        a = lwa.AsyncioStack(switch, f"ip={A}/24")
        reader, writer = await a.open_connection(B, 7)
        blob = pattern(500_000, seed=5)
        writer.write(blob)
        writer.write_eof()
        digest = await reader.read()
        assert digest == hashlib.sha256(blob).digest()
        writer.close()
        await a.aclose()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
        listener.close()
        threaded.close()
    run(main())


def test_construction_errors():
    with pytest.raises(RuntimeError, match="event loop"):
        lwa.AsyncioStack(MemorySwitch(), f"ip={A}/24")       # no running loop
    from lwstack.sim import VirtualNetwork

    async def main():
        with pytest.raises(TypeError):
            lwa.AsyncioStack(VirtualNetwork(), f"ip={A}/24")
        threaded = lwstack.Stack(MemorySwitch(), f"ip={A}/24")
        try:
            with pytest.raises(TypeError, match="AsyncioStack"):
                await lwa.open_connection(B, 7, stack=threaded)
        finally:
            threaded.close()
    run(main())


# ---------------------------------------------------------------------------- through lwswitch

def test_echo_through_lwswitch_with_a_threaded_peer_process(lwswitch, lwecho):
    """lwecho (another process, the threaded runtime) echoes TCP and UDP on port 7."""
    lwecho(lwswitch, f"ip={B}/24")
    blob = pattern(1_000_000, seed=6)

    async def main():
        stack = lwa.AsyncioStack(lwswitch, f"ip={A}/24")
        assert stack.driver.stats["batches"] == 0
        reader, writer = await lwa.open_connection(B, 7, stack=stack)

        async def send():
            writer.write(blob)
            await writer.drain()
            writer.write_eof()
        task = asyncio.create_task(send())
        echoed = await reader.read(-1)
        await task
        assert echoed == blob
        writer.close()
        await writer.wait_closed()
        transport, proto = await stack.create_datagram_endpoint(
            DatagramRecorder, remote_addr=(B, 7))
        transport.sendto(b"datagram")
        assert await asyncio.wait_for(proto.datagrams.get(), 5) == (b"datagram", (B, 7))
        transport.close()
        assert stack.driver.stats["batches"] > 0
        await stack.aclose()
    run(main())


def test_two_asyncio_stacks_through_lwswitch(lwswitch):
    async def main():
        a = lwa.AsyncioStack(lwswitch, f"ip={A}/24")
        b = lwa.AsyncioStack(lwswitch, f"ip={B}/24")
        server = await b.start_server(echo_handler, B, 7)
        results = []
        for size in (1, 1460, 1461, 65536, 300_000):
            reader, writer = await a.open_connection(B, 7)
            message = pattern(size, seed=size)
            writer.write(message)
            await writer.drain()
            results.append(await reader.readexactly(size) == message)
            writer.close()
            await writer.wait_closed()
        assert all(results)
        plug_stats = a.driver.phy.stats()
        assert plug_stats["rx_frames"] > 0 and plug_stats["tx_frames"] > 0
        server.close()
        await server.wait_closed()
        await close_stacks(b, a)
    run(main())


def test_switch_going_away_does_not_spin_the_loop(lwswitch, processes):
    async def main():
        stack = lwa.AsyncioStack(lwswitch, f"ip={A}/24")
        for proc in processes.procs:            # the lwswitch fixture's process, by its pid
            proc.terminate()
            proc.wait(5)
        await asyncio.sleep(0.3)
        batches = stack.driver.stats["batches"]
        await asyncio.sleep(0.3)
        assert stack.driver.stats["batches"] - batches < 5
        assert stack.driver.phy.link_down
        await stack.aclose()
    run(main())


def test_ping_socket_in_non_blocking_mode_on_the_loop():
    # The facade's sockets work on an asyncio stack with loop.sock_* style polling.
    async def main():
        a, b = await two_stacks()
        sock = a.socket(lws.AF_INET, lws.SOCK_DGRAM, lws.IPPROTO_ICMP)
        sock.setblocking(False)
        sock.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"hi", (B, 0))
        ready = a.driver.wait_until(lambda: sock._endpoint.readable, 5)
        assert await ready
        message, source = sock.recvfrom(100)
        assert message[0] == 0 and message[8:] == b"hi" and source == (B, 0)
        sock.close()
        await close_stacks(b, a)
    run(main())


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="needs Linux eventfd (PlugPhy)")
def test_module_level_helpers_use_the_default_stack():
    async def main():
        a, b = await two_stacks()
        server = await lwa.start_server(echo_handler, "", 7, stack=b)
        with a.as_default():
            reader, writer = await lwa.open_connection(B, 7)
        writer.write(b"default")
        assert await reader.readexactly(7) == b"default"
        writer.close()
        server.close()
        await close_stacks(b, a)
    run(main())
