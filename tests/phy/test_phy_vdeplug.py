"""Stacks on a real unix-socket switch through PlugPhy, with each PlugIO (pure and compiled),
and the threaded reactor's batched send path.

The switch is vde.server.SwitchServer in a thread of this process; the stacks run their own
reactor threads, so these tests exercise the real wait/receive/send_batch calls.
"""
import os
import struct
import threading

import pytest

import lwstack
from lwstack import socket as lws
from lwstack.phy import vdeplug
from lwstack.runtime import ThreadedDriver
from vde.server import SwitchServer

from support import wait_for

NOT_BUILT = "lwstack.phy._plugio is not built (pure build): only the pure PlugIO is tested"


@pytest.fixture(params=[False, True], ids=["pure", "compiled"])
def compiled(request, monkeypatch):
    if request.param and vdeplug._compiled is None:
        pytest.skip(NOT_BUILT)
    if request.param:
        monkeypatch.delenv(vdeplug.PLUGIO_ENV, raising=False)
    else:
        monkeypatch.setenv(vdeplug.PLUGIO_ENV, "pure")
    return request.param


@pytest.fixture
def switch(workdir):
    server = SwitchServer(os.path.join(workdir, "sw"), numports=8).start()
    yield server
    if not server._closed:
        server.stop()


@pytest.fixture
def pair(switch, compiled):
    stacks = [lwstack.Stack(f"vde://{switch.directory}", f"ip=10.3.0.{n}/24")
              for n in (1, 2)]
    yield stacks
    for stack in stacks:
        stack.close()


def test_stacks_use_the_requested_plugio(pair, compiled):
    for stack in pair:
        assert stack.driver.phy.compiled is compiled
        assert stack.driver._send_batch is not None


def test_ping_and_udp_echo_through_the_switch(pair):
    a, b = pair
    ping = a.socket(lws.AF_INET, lws.SOCK_DGRAM, lws.IPPROTO_ICMP)
    ping.settimeout(5)
    for seq in range(20):
        ping.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, seq) + b"payload", ("10.3.0.2", 0))
        reply, source = ping.recvfrom(2048)
        assert reply[0] == 0 and struct.unpack("!H", reply[6:8])[0] == seq
        assert reply[8:] == b"payload" and source == ("10.3.0.2", 0)
    server = b.socket()
    server.bind(("", 7))
    server.settimeout(5)
    client = a.socket()
    client.settimeout(5)
    client.sendto(b"hello", ("10.3.0.2", 7))
    data, peer = server.recvfrom(100)
    server.sendto(data.upper(), peer)
    assert client.recvfrom(100) == (b"HELLO", ("10.3.0.2", 7))
    stats = b.driver.phy.stats()
    assert stats["rx_frames"] >= 21 and stats["tx_frames"] >= 21   # ARP, 20 echoes, UDP
    assert stats["tx_dropped"] == stats["tx_invalid"] == stats["rx_oversize"] == 0
    assert b.stats()["icmp_echo_replied"] == 20


def test_a_burst_is_delivered_whole_and_in_order(pair):
    a, b = pair
    server = b.socket()
    server.bind(("", 9))
    server.setsockopt(lws.SOL_SOCKET, lws.SO_RCVBUF, 1 << 20)
    server.settimeout(5)
    client = a.socket()
    client.sendto(b"first", ("10.3.0.2", 9))       # resolves ARP before the burst
    assert server.recvfrom(100)[0] == b"first"
    for n in range(300):
        client.sendto(n.to_bytes(2, "big") * 100, ("10.3.0.2", 9))
    got = [int.from_bytes(server.recvfrom(1000)[0][:2], "big") for _ in range(300)]
    assert got == list(range(300))
    assert b.driver.phy.stats()["rx_frames"] >= 302


def test_switch_going_away_marks_the_link_down_and_the_reactor_survives(switch, pair):
    a, _b = pair
    assert not a.driver.phy.link_down
    switch.stop()
    assert wait_for(lambda: a.driver.phy.link_down, timeout=5)
    sock = a.socket()
    sock.sendto(b"into the void", ("10.3.0.2", 9))  # queued for ARP, or dropped: no exception
    assert a.driver._thread.is_alive()
    a.close()
    assert not a.driver._thread.is_alive()


class _BatchPhy:
    """A phy whose send_batch reports a given number of drops and records what it sent."""

    max_frame = 1514
    link_down = False

    def __init__(self, drop):
        self.drop = drop
        self.batches = []
        self._event = threading.Event()

    def send_batch(self, frames):
        self.batches.append(list(frames))
        return self.drop

    def send(self, frame):
        raise AssertionError("the reactor must use send_batch when the phy has it")

    def receive(self):
        return []

    def wait(self, timeout):
        self._event.wait(timeout)
        self._event.clear()

    def wake(self):
        self._event.set()

    def close(self):
        pass


def test_flush_sends_the_outbox_as_one_batch_and_counts_drops():
    phy = _BatchPhy(drop=2)
    driver = ThreadedDriver(phy)
    stack_host = lwstack.stack.Host(lwstack.stack.parse_config("ip=10.4.0.1/24"), driver.now())
    driver.host = stack_host                  # not attached: no reactor thread
    stack_host.outbox[:] = []                 # the gratuitous ARP of a new address
    stack_host.outbox.extend([b"a" * 60, b"b" * 60, b"c" * 60])
    before = stack_host.stats["drop.tx_queue_full"]
    with driver.lock:
        driver.flush()
    assert phy.batches == [[b"a" * 60, b"b" * 60, b"c" * 60]]
    assert stack_host.outbox == []
    assert stack_host.stats["drop.tx_queue_full"] == before + 2
    with driver.lock:
        driver.flush()                        # nothing queued: no call
    assert len(phy.batches) == 1
