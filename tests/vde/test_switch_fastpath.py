"""Both data paths of SwitchServer, the same tests: the Python loop and vde._fastpath.

The compiled variant is skipped in the pure build (no vde._fastpath).  Run against an installed
accelerated build (``VENV/bin/pytest tests/vde``) to exercise both.
"""
import os

import pytest

from vde import server as server_module
from vde.server import PYTHON_LOOP_ENV, SwitchServer

from support import wait_for
from test_switch_server import BROADCAST, RawClient, frame, mac

NOT_BUILT = "vde._fastpath is not built (pure build): only the Python loop is tested"


@pytest.fixture(params=[False, True], ids=["python-loop", "fastpath"])
def fastpath(request):
    if request.param and server_module._fastpath is None:
        pytest.skip(NOT_BUILT)
    return request.param


@pytest.fixture
def switch(workdir, fastpath):
    made = []

    def make(**kwargs):
        kwargs.setdefault("numports", 8)
        server = SwitchServer(os.path.join(workdir, f"sw{len(made)}"), fastpath=fastpath,
                              **kwargs).start()
        made.append(server)
        assert server.fastpath is fastpath
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def plug(switch):
    clients = []

    def make(server, **kwargs):
        client = RawClient(server, **kwargs)
        client.switch_path = client.finish()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_fastpath_variant_is_the_compiled_module(fastpath):
    if fastpath:
        assert server_module._fastpath.__file__.endswith(".so")
    else:
        unstarted = SwitchServer("/nonexistent-lwsw", fastpath=False)
        assert unstarted.fastpath is False
        unstarted.close()


def test_forwarding_between_two_clients(switch, plug):
    server = switch()
    a, b = plug(server), plug(server)
    hello = frame(BROADCAST, mac(1))
    a.data.send(hello)
    assert b.data.recv(65536) == hello
    reply = frame(mac(1), mac(2), 100)
    b.data.send(reply)
    assert a.data.recv(65536) == reply
    # A burst is delivered whole and in order (one recvmmsg/sendmmsg batch in the fast path).
    burst = [frame(mac(2), mac(1), 60 + i) for i in range(200)]
    for item in burst:
        a.data.send(item)
    assert [b.data.recv(65536) for _ in burst] == burst
    assert server.core.ports[1].frames_in == 201 and server.core.ports[2].frames_out == 201
    assert server.core.ports[1].drops == {} and server.core.ports[2].drops == {}


@pytest.mark.parametrize("size", [1514, 9000, 9234])
def test_jumbo_frames_forwarded_whole(switch, plug, size):
    server = switch()
    a, b = plug(server), plug(server)
    jumbo = frame(BROADCAST, mac(1), size)
    a.data.send(jumbo)
    assert b.data.recv(65536) == jumbo
    assert server.core.ports[2].bytes_out == size


def test_oversize_dropped_and_counted(switch, plug):
    server = switch()
    a, b = plug(server), plug(server)
    a.data.send(frame(BROADCAST, mac(1), 9235))      # max_frame + 1
    a.data.send(frame(BROADCAST, mac(1), 20000))     # truncated by the switch's receive: oversize
    small = frame(BROADCAST, mac(1), 64)
    a.data.send(small)
    assert b.data.recv(65536) == small
    assert server.core.ports[1].drops == {"oversize": 2}
    assert server.core.ports[2].frames_out == 1


def test_runts_dropped_and_counted(switch, plug):
    server = switch()
    a, b = plug(server), plug(server)
    for runt in (b"", b"\xff" * 13, BROADCAST + mac(1) + b"\x81\x00\x00"):  # last: short 802.1Q
        a.data.send(runt)
    good = frame(BROADCAST, mac(1))
    a.data.send(good)
    assert b.data.recv(65536) == good
    assert server.core.ports[1].drops == {"runt": 3}
    assert server.core.ports[1].frames_in == 4


def test_full_destination_queue_is_a_counted_drop_without_blocking(switch, plug):
    # The switch's 64 kB send buffer holds a few 8000-byte frames for a reader that never reads.
    server = switch(socket_buffer=65536)
    sender, slow, fast = plug(server), plug(server), plug(server)
    burst = 100
    received = 0
    for i in range(burst):
        sender.data.send(frame(BROADCAST, mac(1), 8000))
        if i % 4 == 3:          # pace the sender so the fast reader keeps up
            for _ in range(4):
                received += fast.data.recv(65536) == frame(BROADCAST, mac(1), 8000)
    assert received == burst                          # the full queue did not hold anyone up
    assert wait_for(lambda: server.core.ports[2].drops.get("queue_full", 0) > 0)
    assert "queue_full" not in server.core.ports[3].drops
    queued = 0
    slow.data.settimeout(0)
    try:
        while True:
            assert slow.data.recv(65536) == frame(BROADCAST, mac(1), 8000)
            queued += 1
    except BlockingIOError:
        pass
    assert 0 < queued < burst
    assert queued + server.core.ports[2].drops["queue_full"] == burst


def test_vanished_destination_is_counted_unreachable(switch, plug):
    server = switch()
    a, b, gone = plug(server), plug(server), plug(server)
    gone.data.close()           # its control stream stays open: the switch still sends to it
    first = frame(BROADCAST, mac(1))
    a.data.send(first)
    assert b.data.recv(65536) == first
    # b may get its copy before the switch has tried the vanished endpoint: wait for it.
    assert wait_for(lambda: server.core.ports[3].drops == {"unreachable": 1})


def test_frames_not_echoed_to_endpoints_of_the_same_port(switch, plug):
    server = switch()
    first, second = plug(server, port=3), plug(server, port=3)
    other = plug(server)
    own = frame(BROADCAST, mac(1))
    first.data.send(own)
    assert other.data.recv(65536) == own
    # The switch forwarded `own` before it read `marker`: had it sent `own` to `second`,
    # `second` would get it before the marker.
    marker = frame(BROADCAST, mac(9), 70)
    other.data.send(marker)
    assert first.data.recv(65536) == marker
    assert second.data.recv(65536) == marker
    assert server.core.ports[3].frames_out == 1


def test_flood_to_many_destinations(switch, plug):
    # More endpoints than the fast path batches per receive (vde._fastpath.MAX_DESTINATIONS).
    server = switch(numports=40)
    clients = [plug(server) for _ in range(36)]
    flood = [frame(BROADCAST, mac(1), 60 + i) for i in range(3)]
    for item in flood:
        clients[0].data.send(item)
    for client in clients[1:]:
        assert [client.data.recv(65536) for _ in flood] == flood
    assert server.core.ports[1].frames_in == 3
    assert all(server.core.ports[n].frames_out == 3 for n in range(2, 37))


def test_environment_variable_forces_the_python_loop(monkeypatch, workdir):
    monkeypatch.setenv(PYTHON_LOOP_ENV, "1")
    forced = SwitchServer(os.path.join(workdir, "env"))
    assert forced.fastpath is False
    forced.close()
    monkeypatch.delenv(PYTHON_LOOP_ENV)
    default = SwitchServer(os.path.join(workdir, "env"))
    assert default.fastpath is (server_module._fastpath is not None)
    default.close()


def test_fastpath_required_but_not_built(monkeypatch, workdir):
    monkeypatch.setattr(server_module, "_fastpath", None)
    with pytest.raises(ValueError, match="not built"):
        SwitchServer(os.path.join(workdir, "req"), fastpath=True)
    fallback = SwitchServer(os.path.join(workdir, "req"))
    assert fallback.fastpath is False
    fallback.close()


def test_client_leaving_mid_traffic_keeps_the_switch_serving(switch, plug):
    server = switch()
    a, b, c = plug(server), plug(server), plug(server)
    c.control.close()
    assert wait_for(lambda: 3 not in server.core.ports)
    item = frame(BROADCAST, mac(1))
    a.data.send(item)
    assert b.data.recv(65536) == item
    assert server.state.counters.get("internal_errors", 0) == 0
    assert server.core.ports[1].drops == {}
