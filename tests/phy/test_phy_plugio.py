"""PlugIO, both implementations, the same tests: the pure lwstack.phy.plugio and the compiled
lwstack.phy._plugio (skipped in the pure build; run the installed accelerated build's tests to
exercise both).

The "switch" is the other end of a connected unix datagram socketpair, the control stream the
other end of a stream socketpair, as on a real VDE plug.
"""
import errno
import os
import socket

import pytest

from lwstack.phy import plugio as pure_module
from lwstack.phy import vdeplug

NOT_BUILT = "lwstack.phy._plugio is not built (pure build): only the pure PlugIO is tested"
MAX_FRAME = 1514


def frame(n, size=60):
    """A frame of ``size`` bytes whose first two bytes say ``n``."""
    return n.to_bytes(2, "big") + bytes(size - 2)


@pytest.fixture(params=[False, True], ids=["pure", "compiled"])
def module(request):
    if request.param and vdeplug._compiled is None:
        pytest.skip(NOT_BUILT)
    return vdeplug.plugio_module(request.param)


class Wire:
    """A PlugIO over socketpairs; ``switch`` and ``control`` are the far ends."""

    def __init__(self, module, max_frame=MAX_FRAME, sndbuf=None):
        self.ours, self.switch = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        if sndbuf:
            self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.ours.setblocking(False)
        self.switch.settimeout(5)
        self.control_ours, self.control = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.io = module.PlugIO(self.ours.fileno(), self.control_ours.fileno(), self.wake_fd,
                                max_frame)

    def close(self):
        self.io.close()
        for sock in (self.ours, self.switch, self.control_ours, self.control):
            sock.close()
        os.close(self.wake_fd)


@pytest.fixture
def wire(module):
    made = []

    def make(**kwargs):
        made.append(Wire(module, **kwargs))
        return made[-1]

    yield make
    for item in made:
        item.close()


def test_module_is_the_one_asked_for(module):
    if module is pure_module:
        assert module.__file__.endswith(".py")
    else:
        assert module.__file__.endswith(".so")
    assert (module.READABLE, module.CONTROL, module.WOKEN) == (1, 2, 4)


def test_recv_batch_drains_waiting_frames_in_order(wire):
    w = wire()
    assert w.io.recv_batch() == []
    for n in range(40):                      # more than one recvmmsg batch (VLEN 16)
        w.switch.send(frame(n))
    frames = w.io.recv_batch()
    assert [int.from_bytes(f[:2], "big") for f in frames] == list(range(40))
    assert all(type(f) is bytes and len(f) == 60 for f in frames)
    assert w.io.recv_batch() == []
    assert w.io.rx_frames == 40


def test_recv_batch_respects_its_limit(wire):
    w = wire()
    for n in range(20):
        w.switch.send(frame(n))
    first = w.io.recv_batch(7)
    rest = w.io.recv_batch(100)
    assert [int.from_bytes(f[:2], "big") for f in first + rest] == list(range(20))
    assert len(first) == 7


def test_oversized_frame_is_dropped_and_counted_not_cut(wire):
    w = wire(max_frame=100)
    w.switch.send(frame(1, 100))             # exactly max_frame: delivered whole
    w.switch.send(frame(2, 101))             # one byte too long: dropped
    w.switch.send(frame(3, 5000))            # far too long: dropped, not truncated to 101
    w.switch.send(frame(4, 14))
    frames = w.io.recv_batch()
    assert [(f[1], len(f)) for f in frames] == [(1, 100), (4, 14)]
    assert w.io.rx_oversize == 2


def test_send_is_one_datagram_per_frame(wire):
    w = wire()
    assert w.io.send(frame(1)) is True
    assert w.io.send(bytearray(frame(2, 1514))) is True
    assert w.io.send(memoryview(frame(3, 100))[:14]) is True
    assert w.switch.recv(4096) == frame(1)
    assert w.switch.recv(4096) == frame(2, 1514)
    assert w.switch.recv(4096) == frame(3, 14)
    assert w.io.tx_frames == 3


@pytest.mark.parametrize("size", [0, 13, MAX_FRAME + 1])
def test_send_rejects_impossible_frames(wire, size):
    w = wire()
    with pytest.raises(ValueError):
        w.io.send(bytes(size))
    assert w.io.tx_frames == 0


def test_send_batch_keeps_order_across_sendmmsg_batches(wire):
    w = wire()
    frames = [frame(n) for n in range(40)]
    assert w.io.send_batch(frames) == 0
    got = [w.switch.recv(4096) for _ in range(40)]
    assert got == frames
    assert w.io.tx_frames == 40
    assert w.io.send_batch([]) == 0


def test_send_batch_drops_and_counts_impossible_frames_and_sends_the_rest(wire):
    w = wire()
    assert w.io.send_batch([frame(1), b"short", frame(2), bytes(MAX_FRAME + 1)]) == 2
    assert w.io.tx_invalid == 2
    assert [w.switch.recv(4096) for _ in range(2)] == [frame(1), frame(2)]
    w.switch.setblocking(False)
    with pytest.raises(BlockingIOError):
        w.switch.recv(4096)


def test_full_queue_drops_without_blocking(wire):
    w = wire(sndbuf=4096)                    # the peer never reads: the queue fills up
    results = [w.io.send(frame(n, 1000)) for n in range(200)]
    assert results[0] is True and results[-1] is False
    dropped_singly = results.count(False)
    assert w.io.tx_dropped == dropped_singly
    assert w.io.send_batch([frame(n, 1000) for n in range(50)]) == 50
    assert w.io.tx_dropped == dropped_singly + 50
    assert w.io.gone == 0                     # a full queue is not a dead switch


def test_wait_reports_a_waiting_frame(wire, module):
    w = wire()
    assert w.io.wait(0) == 0
    w.switch.send(frame(1))
    assert w.io.wait(5) == module.READABLE
    assert w.io.wait(None) == module.READABLE   # still there until received
    assert len(w.io.recv_batch()) == 1
    assert w.io.wait(0.001) == 0


def test_wait_drains_the_eventfd(wire, module):
    w = wire()
    os.eventfd_write(w.wake_fd, 1)
    os.eventfd_write(w.wake_fd, 1)
    assert w.io.wait(5) == module.WOKEN
    assert w.io.wait(0) == 0
    with pytest.raises(BlockingIOError):
        os.eventfd_read(w.wake_fd)


def test_control_hangup_is_reported_once(wire, module):
    w = wire()
    assert w.io.hangup is False
    w.control.close()
    assert w.io.wait(5) == module.CONTROL
    assert w.io.hangup is True
    assert w.io.wait(0) == 0                 # EOF stays readable, but is no longer polled


@pytest.mark.parametrize("timeout", [-3.0, float("-inf"), float("nan"), 0])
def test_timeouts_that_are_not_positive_poll_once(wire, timeout):
    w = wire()
    assert w.io.wait(timeout) == 0
    w.switch.send(frame(1))
    assert w.io.wait(timeout) == 1


def test_vanished_switch_sets_gone_and_drops_quietly(wire):
    w = wire()
    w.switch.close()
    assert w.io.send(frame(1)) is False
    assert w.io.gone in (errno.ECONNREFUSED, errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE)
    assert w.io.send(frame(2)) is False
    assert w.io.send_batch([frame(3), frame(4)]) == 2
    assert w.io.tx_dropped == 4
    assert w.io.recv_batch() == []
    assert w.io.wait(0) == 0                 # the dead data socket is no longer polled


def test_bad_arguments():
    for module in [pure_module] + ([vdeplug._compiled] if vdeplug._compiled else []):
        with pytest.raises(ValueError):
            module.PlugIO(-1)
        with pytest.raises(ValueError):
            module.PlugIO(0, max_frame=13)


def test_compiled_true_in_the_pure_build_is_an_error(monkeypatch):
    monkeypatch.setattr(vdeplug, "_compiled", None)
    with pytest.raises(ValueError):
        vdeplug.plugio_module(True)
    assert vdeplug.plugio_module() is pure_module


def test_environment_forces_the_pure_plugio(monkeypatch):
    monkeypatch.setenv(vdeplug.PLUGIO_ENV, "pure")
    assert vdeplug.plugio_module() is pure_module
    monkeypatch.delenv(vdeplug.PLUGIO_ENV)
    expected = vdeplug._compiled if vdeplug._compiled is not None else pure_module
    assert vdeplug.plugio_module() is expected
