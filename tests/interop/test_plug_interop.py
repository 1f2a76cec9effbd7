"""Our VdePlug against Debian's vde2 ``vde_switch`` and vdeplug4's ``vde_plug``.

Each test starts its own ``vde_switch`` in the foreground in a pytest temporary directory,
with a management socket (``-M``).  The switch reads console commands on stdin and exits on
EOF there, so its stdin is a pipe we hold open and close to stop it; it is terminated, then
killed, by PID if it does not exit.  All traffic goes over unix sockets.
"""
import errno
import os
import pwd
import re
import select
import socket
import subprocess
import time

import pytest
from conftest import require

from vde.plug import open_plug
from vde.protocol import StreamDecoder, encode_stream_frame

STARTUP_TIMEOUT = 5.0
FRAME_TIMEOUT = 5.0
#: The console's last line for a command: ``1000 Success`` or ``1NNN <strerror>``.
STATUS_LINE = re.compile(rb"\n1\d{3} [^\n]*\n")
MAC_A = bytes.fromhex("020000000a0a")
MAC_B = bytes.fromhex("020000000b0b")
BROADCAST = b"\xff" * 6


def frame(destination, source, payload=b"interop"):
    """An Ethernet frame with the local-experimental EtherType 0x88b5."""
    return destination + source + b"\x88\xb5" + payload


def stop_process(process):
    """Stop a process we started: close its stdin, then terminate, then kill, by PID."""
    if process.stdin:
        process.stdin.close()
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=2)


def wait_for_paths(process, *paths):
    """Poll until every path exists, failing if the process exits or the deadline passes."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not all(os.path.exists(path) for path in paths):
        assert process.poll() is None, f"{process.args[0]} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{paths} did not appear in {STARTUP_TIMEOUT}s"
        time.sleep(0.01)


class Switch:
    """A running Debian vde_switch: its directory, management socket and process."""

    def __init__(self, directory, mgmt, process):
        self.directory = directory
        self.mgmt = mgmt
        self.process = process

    def console(self, command):
        """Run one management command; return its output up to the status line."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as console:
            console.settimeout(FRAME_TIMEOUT)
            console.connect(self.mgmt)
            read_until(console, b"vde$ ")
            console.sendall(command.encode() + b"\n")
            output = read_until(console, STATUS_LINE)
        assert b"\n1000 Success" in output, output
        return output.decode(errors="replace")


def read_until(sock, pattern):
    """Read from ``sock`` until ``pattern`` (bytes or compiled regex) matches; return it all."""
    if isinstance(pattern, bytes):
        pattern = re.compile(re.escape(pattern))
    data = b""
    while not pattern.search(data):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before {pattern.pattern!r}: {data!r}"
        data += chunk
    return data


@pytest.fixture
def vde_switch(tmp_path):
    require("vde_switch")
    directory = str(tmp_path / "sw")
    mgmt = str(tmp_path / "mgmt")
    process = subprocess.Popen(["vde_switch", "-s", directory, "-M", mgmt],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_paths(process, os.path.join(directory, "ctl"), mgmt)
        yield Switch(directory, mgmt, process)
    finally:
        stop_process(process)


def receive(plug, count=1):
    """Wait for ``count`` frames on ``plug`` and return them."""
    frames = []
    deadline = time.monotonic() + FRAME_TIMEOUT
    while len(frames) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"got {len(frames)} of {count} frames"
        select.select([plug.fileno()], [], [], remaining)
        frames += plug.recv_batch()
    return frames


def test_two_plugs_exchange_frames_through_vde_switch(vde_switch):
    with open_plug(vde_switch.directory, description="a") as plug_a, \
            open_plug(vde_switch.directory, description="b") as plug_b, \
            open_plug(vde_switch.directory, description="c") as plug_c:
        assert (plug_a.port, plug_b.port, plug_c.port) == (1, 2, 3)
        hello = frame(BROADCAST, MAC_A, b"who is there")
        assert plug_a.send(hello)
        assert receive(plug_b) == [hello]
        assert receive(plug_c) == [hello]
        reply = frame(MAC_A, MAC_B, b"b here")   # the switch has learned MAC_A on port 1
        assert plug_b.send(reply)
        assert receive(plug_a) == [reply]
        assert select.select([plug_c.fileno()], [], [], 0.2)[0] == []   # not flooded
        assert plug_c.recv_batch() == []


def test_largest_frame_is_truncated_to_1518_by_vde_switch(vde_switch):
    with open_plug(vde_switch.directory) as sender, open_plug(vde_switch.directory) as receiver:
        big = frame(BROADCAST, MAC_A, bytes(range(256)) * 36)
        assert sender.send(big)
        assert receive(receiver) == [big[:1518]]


def test_burst_to_a_peer_that_is_not_reading_is_not_cut_at_ten(vde_switch):
    # net.unix.max_dgram_qlen (10) does not apply between mutually connected sockets.
    with open_plug(vde_switch.directory) as sender, open_plug(vde_switch.directory) as receiver:
        burst = [frame(BROADCAST, MAC_A, n.to_bytes(2, "big")) for n in range(100)]
        assert all(sender.send(one) for one in burst)
        assert receive(receiver, 100) == burst


def test_port_out_of_range_times_out_and_switch_keeps_working(vde_switch):
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer a request for port 40"):
        open_plug(f"vde://{vde_switch.directory}[40]", timeout=0.5)
    assert time.monotonic() - started < 3
    # 32 ports by default: 0 (management) to 31; 32 is already out of range.
    with open_plug(f"{vde_switch.directory}[31]", timeout=FRAME_TIMEOUT) as plug:
        assert plug.port == 31
    with pytest.raises(TimeoutError):
        open_plug(f"vde://{vde_switch.directory}[32]", timeout=0.3)


def test_port_print_shows_our_description(vde_switch):
    with open_plug(f"{vde_switch.directory}[5]", description="lwstack-interop"):
        output = vde_switch.console("port/print")
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert "Port 0005 untagged_vlan=0000 ACTIVE" in output
    assert f": lwstack-interop user={user} pid={os.getpid()}" in output


def test_switch_exit_is_seen_on_control_socket_and_send(vde_switch):
    with open_plug(vde_switch.directory) as plug:
        stop_process(vde_switch.process)
        assert select.select([plug.control_fileno()], [], [], FRAME_TIMEOUT)[0]
        assert os.read(plug.control_fileno(), 1) == b""
        with pytest.raises(ConnectionError) as info:
            plug.send(frame(BROADCAST, MAC_A))
        assert info.value.errno == errno.ECONNREFUSED


def test_exchange_with_debian_vde_plug(vde_switch):
    require("vde_switch", "vde_plug")
    peer = subprocess.Popen(["vde_plug", f"vde://{vde_switch.directory}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        with open_plug(vde_switch.directory, description="lwstack") as plug:
            from_peer = frame(BROADCAST, MAC_B, b"from vde_plug")
            peer.stdin.write(encode_stream_frame(from_peer))
            peer.stdin.flush()
            assert receive(plug) == [from_peer]   # also proves vde_plug is connected
            to_peer = frame(MAC_B, MAC_A, b"from lwstack " * 20)
            assert plug.send(to_peer)
            decoder = StreamDecoder()
            received = []
            deadline = time.monotonic() + FRAME_TIMEOUT
            while not received:
                remaining = deadline - time.monotonic()
                assert remaining > 0, "vde_plug wrote nothing on stdout"
                if select.select([peer.stdout], [], [], remaining)[0]:
                    received += decoder.feed(os.read(peer.stdout.fileno(), 65536))
            assert received == [to_peer]
            assert "vdeplug: user=" in vde_switch.console("port/print")
    finally:
        stop_process(peer)
