"""SwitchServer over real unix sockets: handshakes good and bad, the data path, the console."""
import os
import socket
import struct
import time

import pytest

from support import wait_for
from vde import protocol
from vde.server import SwitchServer

BROADCAST = b"\xff" * 6
TIMEOUT = 5.0


def mac(n):
    return bytes([0x02, 0, 0, 0, 0, n])


def frame(dst, src, size=60):
    """A ``size``-byte frame with a counting payload, so truncation would show."""
    return dst + src + b"\x88\xb5" + bytes(i & 0xFF for i in range(size - 14))






@pytest.fixture
def server(workdir):
    switch = SwitchServer(os.path.join(workdir, "sw"), numports=8,
                          mgmt=os.path.join(workdir, "mgmt")).start()
    yield switch
    switch.stop()


class RawClient:
    """A client speaking vde_switch's protocol with vde.protocol, nothing else."""

    count = 0

    def __init__(self, server, port=0, description="raw", request=None):
        RawClient.count += 1
        self.path = os.path.join(os.path.dirname(server.directory), f"c{RawClient.count}")
        self.data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.data.bind(self.path)
        self.data.settimeout(TIMEOUT)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.settimeout(TIMEOUT)
        self.control.connect(server.ctl_path)
        self.control.send(request if request is not None else
                          protocol.pack_request(self.path, port=port, description=description))

    def finish(self):
        """Read the reply, connect the datagram socket; return the switch-side path."""
        reply = self.control.recv(256)
        switch_path = protocol.parse_reply(reply)
        self.data.connect(switch_path)
        return switch_path

    def close(self):
        self.control.close()
        self.data.close()


@pytest.fixture
def connect(server):
    clients = []

    def make(**kwargs):
        client = RawClient(server, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def plugged(connect, **kwargs):
    client = connect(**kwargs)
    client.switch_path = client.finish()
    return client


def test_handshake_replies_with_port_socket(server, connect):
    client = connect(description="hello switch")
    switch_path = client.finish()
    assert os.path.dirname(switch_path) == server.directory
    assert os.path.basename(switch_path).startswith("001.")
    assert os.path.exists(switch_path)
    assert wait_for(lambda: 1 in server.state.endpoints)
    assert server.state.endpoints[1][0].description == "hello switch"
    assert oct(os.stat(server.ctl_path).st_mode & 0o777) == oct(0o600)


def test_specific_port_and_out_of_range(server, connect):
    assert os.path.basename(plugged(connect, port=5).switch_path).startswith("005.")
    refused = connect(port=99)
    assert refused.control.recv(256) == b""      # closed at once; vde_switch 2.3.2 hangs
    assert server.state.counters["handshake_port_refused"] == 1


@pytest.mark.parametrize("request_bytes", [
    struct.pack("<III", 0xDEADBEEF, 3, 0) + bytes(110),
    struct.pack("<III", protocol.VDE_MAGIC, 2, 0) + protocol.pack_sockaddr_un("/tmp/x"),
    b"GET / HTTP/1.0\r\n\r\n",
], ids=["bad-magic", "version-2", "garbage"])
def test_bad_requests_are_closed_and_counted(server, connect, request_bytes):
    bad = connect(request=request_bytes)
    assert bad.control.recv(256) == b""
    assert server.state.counters["handshake_bad_requests"] == 1
    plugged(connect)                              # the switch still serves
    assert wait_for(lambda: 1 in server.core.ports)


def test_client_vanishing_mid_handshake(server, connect):
    for _ in range(3):
        ghost = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ghost.connect(server.ctl_path)
        ghost.close()
    assert wait_for(lambda: server.state.counters.get("handshake_vanished") == 3)
    assert plugged(connect).switch_path


def test_silent_client_times_out(workdir):
    switch = SwitchServer(os.path.join(workdir, "st"), handshake_timeout=0.2).start()
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.settimeout(TIMEOUT)
    silent.connect(switch.ctl_path)
    assert silent.recv(256) == b""
    assert switch.state.counters["handshake_timeouts"] == 1
    silent.close()
    switch.stop()


def test_client_path_that_is_not_a_socket_is_refused(server, workdir):
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.settimeout(TIMEOUT)
    control.connect(server.ctl_path)
    control.send(protocol.pack_request(os.path.join(workdir, "nowhere")))
    assert control.recv(256) == b""
    control.close()
    assert server.state.counters["handshake_bad_client_path"] == 1


def test_frames_flood_then_go_unicast(server, connect):
    a, b, c = (plugged(connect) for _ in range(3))
    first = frame(BROADCAST, mac(1))
    a.data.send(first)
    assert b.data.recv(65536) == first
    assert c.data.recv(65536) == first
    reply = frame(mac(1), mac(2), 100)
    b.data.send(reply)
    assert a.data.recv(65536) == reply
    third = frame(mac(2), mac(1), 80)
    a.data.send(third)
    assert b.data.recv(65536) == third
    c.data.settimeout(0.2)
    with pytest.raises(TimeoutError):
        c.data.recv(65536)
    assert server.core.lookup(mac(1)) == 1 and server.core.lookup(mac(2)) == 2


@pytest.mark.parametrize("size", [9000, 9234])
def test_jumbo_frames_forwarded_untruncated(server, connect, size):
    a, b = plugged(connect), plugged(connect)
    jumbo = frame(BROADCAST, mac(1), size)
    assert len(jumbo) == size
    a.data.send(jumbo)
    assert b.data.recv(65536) == jumbo


def test_oversize_dropped_and_counted(server, connect):
    a, b = plugged(connect), plugged(connect)
    a.data.send(frame(BROADCAST, mac(1), 9235))
    a.data.send(frame(BROADCAST, mac(1), 64))
    assert len(b.data.recv(65536)) == 64
    assert server.core.ports[1].drops == {"oversize": 1}


def test_endpoint_close_frees_the_port(server, connect):
    a, b = plugged(connect), plugged(connect)
    a.control.close()
    assert wait_for(lambda: 1 not in server.core.ports)
    assert not os.path.exists(a.switch_path)
    assert 1 not in server.state.endpoints
    again = plugged(connect)
    assert os.path.basename(again.switch_path).startswith("001.")
    assert b.switch_path != again.switch_path


def test_endpoints_sharing_a_port(server, connect):
    first, second = plugged(connect, port=3), plugged(connect, port=3)
    other = plugged(connect)
    assert server.core.ports[3].endpoints == 2
    first.data.send(frame(BROADCAST, mac(1)))
    assert len(other.data.recv(65536)) == 60
    other.data.send(frame(BROADCAST, mac(9), 70))
    assert len(first.data.recv(65536)) == 70
    assert len(second.data.recv(65536)) == 70
    second.data.settimeout(0.2)
    with pytest.raises(TimeoutError):            # only the frame from `other` arrived
        second.data.recv(65536)


def test_slow_reader_drops_without_blocking(workdir):
    # A connected unix datagram queue is bounded by the sender's (the switch's) send buffer:
    # 64 kB holds a few 8000-byte frames for a reader that never reads.
    switch = SwitchServer(os.path.join(workdir, "sb"), socket_buffer=65536).start()
    sender, slow, fast = (RawClient(switch) for _ in range(3))
    for client in (sender, slow, fast):
        client.finish()
    burst = 100
    received = 0
    for i in range(burst):
        sender.data.send(frame(BROADCAST, mac(1), 8000))
        if i % 4 == 3:          # pace the sender so the fast reader keeps up
            for _ in range(4):
                received += len(fast.data.recv(65536)) == 8000
    assert received == burst
    assert wait_for(lambda: switch.core.ports[2].drops.get("queue_full", 0) > 0)
    assert "queue_full" not in switch.core.ports[3].drops
    assert slow.data.recv(65536) == frame(BROADCAST, mac(1), 8000)
    switch.stop()
    for client in (sender, slow, fast):
        client.close()


def test_console_over_mgmt_socket_and_shutdown(server, connect, workdir):
    plugged(connect, description="console test")
    console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    console.settimeout(TIMEOUT)
    console.connect(server.mgmt_path)

    def read_until(marker):
        data = b""
        while marker not in data:
            chunk = console.recv(65536)
            assert chunk, f"EOF before {marker!r}: {data!r}"
            data += chunk
        return data.decode()

    assert read_until(b"vde$ ").endswith("\n\nvde$ ")
    console.send(b"port/print\n")
    text = read_until(b"vde$ ")
    assert text.startswith("0000 DATA END WITH '.'\nPort 0001 untagged_vlan=0000 ACTIVE")
    assert ": console test\n.\n1000 Success\n\nvde$ " in text
    console.send(b"bogus\n")
    assert read_until(b"vde$ ") == "1038 Function not implemented\n\nvde$ "
    console.send(b"shutdown\n")
    assert read_until(b"9999 END OF SESSION").endswith("9999 END OF SESSION")
    server._thread.join(TIMEOUT)
    assert not server._thread.is_alive()
    assert not os.path.exists(server.directory)
    assert not os.path.exists(server.mgmt_path)


def test_large_console_output_is_delivered_whole(server, connect):
    plugged(connect)
    for n in range(3000):       # the loop is idle: nothing else touches the core meanwhile
        source = bytes([0x02, 0, 0, 0, n >> 8, n & 0xFF])
        server.core.forward(1, BROADCAST + source + b"\x88\xb5" + bytes(46), time.monotonic())
    console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    console.settimeout(TIMEOUT)
    console.connect(server.mgmt_path)
    console.send(b"hash/print\n")
    data = b""
    while not data.endswith(b"1000 Success\n\nvde$ "):
        chunk = console.recv(65536)
        assert chunk
        data += chunk
    assert data.count(b"\nHash: ") == 3000
    console.close()


def test_stop_cleans_up_socket_files(workdir):
    switch = SwitchServer(os.path.join(workdir, "s2")).start()
    client = RawClient(switch)
    client.finish()
    switch.stop()
    assert not os.path.exists(switch.directory)
    assert client.control.recv(256) == b""       # the client sees EOF on its stream
    client.close()


def test_second_switch_on_same_directory_is_refused(server):
    with pytest.raises(OSError) as error:
        SwitchServer(server.directory).start()
    assert "another switch" in str(error.value)
    assert os.path.exists(server.ctl_path)


def test_max_frame_below_vdeplug_limit_is_rejected(workdir):
    with pytest.raises(ValueError):
        SwitchServer(os.path.join(workdir, "s3"), max_frame=1518)


def test_internal_error_in_a_handler_is_counted_and_the_switch_goes_on(tmp_path, monkeypatch):
    from vde import console
    from vde.server import SwitchServer
    import socket as stdsocket
    import threading

    called = threading.Event()

    def broken(*args, **kwargs):
        called.set()
        raise RuntimeError("injected")

    server = SwitchServer(str(tmp_path / "sw"), mgmt=str(tmp_path / "mgmt"))
    server.start()
    try:
        monkeypatch.setattr(console, "execute", broken)
        with stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM) as session:
            session.settimeout(5)
            session.connect(str(tmp_path / "mgmt"))
            session.recv(4096)
            session.sendall(b"showinfo\n")
            assert called.wait(5)
            monkeypatch.undo()
        # The switch still accepts endpoints after the failed command.
        from vde.plug import open_plug
        with open_plug(f"vde://{tmp_path / 'sw'}", timeout=5) as plug:
            assert plug.port >= 1
        assert server.state.counters.get("internal_errors", 0) >= 1
    finally:
        server.stop()


def test_pending_handshakes_and_console_sessions_are_bounded(tmp_path):
    import socket as stdsocket
    from vde import server as server_module
    from vde.server import SwitchServer

    server = SwitchServer(str(tmp_path / "sw"), mgmt=str(tmp_path / "mgmt"))
    server.start()
    held = []
    try:
        for _ in range(server_module.MAX_PENDING_HANDSHAKES + 5):
            client = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
            client.connect(str(tmp_path / "sw" / "ctl"))   # and never send a request
            held.append(client)
        consoles = []
        for _ in range(server_module.MAX_CONSOLE_SESSIONS + 3):
            console = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
            console.settimeout(5)
            console.connect(str(tmp_path / "mgmt"))
            consoles.append(console)
        held.extend(consoles)
        # Sessions within the bound get the banner; the surplus ones are closed (EOF).
        first_reads = [console.recv(4096) for console in consoles]
        assert all(first_reads[:server_module.MAX_CONSOLE_SESSIONS])
        assert first_reads[server_module.MAX_CONSOLE_SESSIONS:] == [b""] * 3
        counters = server.state.counters
        assert counters["handshakes_over_limit"] == 5
        assert counters["console_sessions_over_limit"] == 3
    finally:
        for sock in held:
            sock.close()
        server.stop()
