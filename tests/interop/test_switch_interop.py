"""lwswitch against vde2's own tools: vde_plug, unixterm, wirefilter, dpipe, vde_plug2tap,
and Debian's vde_switch at the other end of a wirefilter cable."""
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
from conftest import require

import support

from vde import protocol

TIMEOUT = 10.0
BROADCAST = b"\xff" * 6
MAC_A = bytes.fromhex("020000aa0001")
MAC_B = bytes.fromhex("020000bb0002")


def frame(dst, src, size=100, fill=0x5A):
    return dst + src + b"\x88\xb5" + bytes([fill]) * (size - 14)


def wait_path(path, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


class Processes(support.Processes):
    """The shared registry, with binary pipes (frames) and a shortcut for our switch."""

    def start(self, argv, **kwargs):
        kwargs.setdefault("stdin", subprocess.PIPE)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("text", False)
        return super().start(argv, **kwargs)

    def lwswitch(self, directory, *extra):
        process = self.start([sys.executable, "-m", "lwswitch", "-s", directory, *extra],
                             stdin=subprocess.DEVNULL)
        wait_path(os.path.join(directory, "ctl"))
        return process


@pytest.fixture
def procs():
    processes = Processes()
    yield processes
    processes.stop_all()




class StreamPlug:
    """Debian's ``vde_plug DIR``, spoken to in the stream format on its stdin/stdout."""

    def __init__(self, procs, locator):
        self.process = procs.start(["vde_plug", locator], stdout=subprocess.PIPE)
        self.decoder = protocol.StreamDecoder()
        self.frames = []

    def send(self, data):
        self.process.stdin.write(protocol.encode_stream_frame(data))
        self.process.stdin.flush()

    def receive_until(self, predicate, timeout=TIMEOUT):
        """Read frames until one satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while True:
            for index, data in enumerate(self.frames):
                if predicate(data):
                    del self.frames[:index + 1]
                    return data
            remaining = deadline - time.monotonic()
            assert remaining > 0, "expected frame never arrived"
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, "vde_plug exited"
                self.frames.extend(self.decoder.feed(chunk))


def send_until_received(sender, receiver, data, timeout=TIMEOUT):
    """Send ``data`` once a second until it arrives (plugs may still be connecting)."""
    deadline = time.monotonic() + timeout
    while True:
        sender.send(data)
        try:
            return receiver.receive_until(lambda got: got == data, timeout=1.0)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def port_count(directory):
    return sum(1 for name in os.listdir(directory) if name != "ctl")


def wait_ports(directory, count):
    deadline = time.monotonic() + TIMEOUT
    while port_count(directory) < count:
        assert time.monotonic() < deadline, f"only {port_count(directory)} ports in {directory}"
        time.sleep(0.02)


def test_two_vde_plugs_talk_through_lwswitch(procs, workdir):
    require("vde_plug")
    switch_dir = os.path.join(workdir, "sw")
    switch = procs.lwswitch(switch_dir, "-M", os.path.join(workdir, "mgmt"))
    a, b = StreamPlug(procs, switch_dir), StreamPlug(procs, switch_dir)
    wait_ports(switch_dir, 2)
    first = frame(BROADCAST, MAC_A)
    a.send(first)
    assert b.receive_until(lambda got: got == first) == first
    reply = frame(MAC_A, MAC_B, 1514, 0x33)
    b.send(reply)
    assert a.receive_until(lambda got: got == reply) == reply
    jumbo = frame(MAC_B, MAC_A, 9000, 0x77)
    a.send(jumbo)
    assert b.receive_until(lambda got: len(got) == 9000) == jumbo
    # SIGTERM: a clean exit that removes every socket file.
    switch.send_signal(signal.SIGTERM)
    assert switch.wait(TIMEOUT) == 0
    assert not os.path.exists(switch_dir)
    assert not os.path.exists(os.path.join(workdir, "mgmt"))


def test_unixterm_reads_port_print(procs, workdir):
    require("unixterm", "vde_plug")
    switch_dir = os.path.join(workdir, "sw")
    mgmt = os.path.join(workdir, "mgmt")
    procs.lwswitch(switch_dir, "-M", mgmt)
    StreamPlug(procs, switch_dir)
    wait_ports(switch_dir, 1)
    master, slave = pty.openpty()           # unixterm wants a terminal
    procs.start(["unixterm", mgmt], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = b""

    def read_until(marker):
        nonlocal output
        deadline = time.monotonic() + TIMEOUT
        while marker not in output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} in {output!r}"
            if select.select([master], [], [], remaining)[0]:
                output += os.read(master, 65536)

    read_until(b"vde$ ")
    os.write(master, b"port/print\n")
    read_until(b"1000 Success")
    os.close(master)
    text = output.decode().replace("\r\n", "\n")
    assert "0000 DATA END WITH '.'\nPort 0001 untagged_vlan=0000 ACTIVE" in text
    assert "  -- endpoint ID 0001 module unix prog   : vdeplug: user=" in text


def test_wirefilter_cable_between_lwswitch_and_vde_switch(procs, workdir):
    require("wirefilter", "vde_switch", "vde_plug")
    ours = os.path.join(workdir, "ours")
    theirs = os.path.join(workdir, "theirs")
    procs.lwswitch(ours)
    # Debian's vde_switch in the foreground: its console is stdin, kept open as a pipe.
    procs.start(["vde_switch", "-s", theirs])
    wait_path(os.path.join(theirs, "ctl"))
    procs.start(["wirefilter", "-v", f"{ours}:{theirs}"])
    wait_ports(ours, 1)
    a, b = StreamPlug(procs, ours), StreamPlug(procs, theirs)
    wait_ports(ours, 2)
    first = frame(BROADCAST, MAC_A)
    assert send_until_received(a, b, first) == first
    back = frame(MAC_A, MAC_B, 500, 0x11)
    assert send_until_received(b, a, back) == back


def test_dpipe_wirefilter_between_two_lwswitches(procs, workdir):
    require("dpipe", "wirefilter", "vde_plug")
    left, right = os.path.join(workdir, "left"), os.path.join(workdir, "right")
    switches = [procs.lwswitch(left), procs.lwswitch(right)]
    cable = procs.start(["dpipe", "vde_plug", left, "=", "wirefilter", "=", "vde_plug", right],
                        stdin=subprocess.DEVNULL)
    wait_ports(left, 1)
    wait_ports(right, 1)
    a, b = StreamPlug(procs, left), StreamPlug(procs, right)
    first = frame(BROADCAST, MAC_A, 1000, 0x42)
    assert send_until_received(a, b, first) == first
    back = frame(MAC_A, MAC_B, 1000, 0x24)
    assert send_until_received(b, a, back) == back
    # Unplugging the switches ends the cable: dpipe reaps its programs and exits by itself
    # (killing dpipe first would orphan them).
    for switch in switches:
        switch.terminate()
        assert switch.wait(TIMEOUT) == 0
    cable.wait(TIMEOUT)


def test_vde_plug2tap_bridges_the_kernel(procs, workdir):
    require("vde_plug2tap", "ip", "vde_plug", root=True, tun=True)
    switch_dir = os.path.join(workdir, "sw")
    procs.lwswitch(switch_dir)
    tap = f"lwsw{os.getpid() % 100000}"
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    try:
        subprocess.run(["ip", "link", "set", tap, "address", "02:00:00:cc:00:01"], check=True)
        subprocess.run(["ip", "addr", "add", "10.213.77.1/24", "dev", tap], check=True)
        procs.start(["vde_plug2tap", "-s", switch_dir, tap])
        wait_ports(switch_dir, 1)
        subprocess.run(["ip", "link", "set", tap, "up"], check=True)
        host = StreamPlug(procs, switch_dir)
        wait_ports(switch_dir, 2)
        # An ARP request for the tap's address; the kernel answers through vde_plug2tap.
        arp_request = (BROADCAST + MAC_B + b"\x08\x06" + bytes.fromhex("0001080006040001")
                       + MAC_B + bytes([10, 213, 77, 2]) + bytes(6) + bytes([10, 213, 77, 1]))
        deadline = time.monotonic() + TIMEOUT
        while True:
            host.send(arp_request)
            try:
                reply = host.receive_until(
                    lambda got: got[12:14] == b"\x08\x06" and got[20:22] == b"\x00\x02",
                    timeout=1.0)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "the kernel never answered the ARP request"
        tap_mac = bytes.fromhex("020000cc0001")
        assert reply[:6] == MAC_B
        assert reply[6:12] == tap_mac and reply[22:28] == tap_mac
        assert reply[28:32] == bytes([10, 213, 77, 1])
    finally:
        subprocess.run(["ip", "link", "del", tap], check=False)
