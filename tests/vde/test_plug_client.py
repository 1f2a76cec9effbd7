"""VdePlug against a tiny fake switch that speaks vde_switch's control protocol.

The fake switch runs its side of one handshake in a thread: it accepts on ``DIR/ctl``, reads
the request with one ``recv(256)`` (as vde_switch does), then answers, stays silent or hangs
up.  When it answers it binds ``DIR/NNN.7`` and connects it to the client's path, like
vde_switch, so the data path can be checked frame by frame.
"""
import errno
import os
import pwd
import re
import select
import socket
import stat
import threading

import pytest

from vde.locator import LocatorError, parse_locator
from vde.plug import MAX_FRAME, VdePlug, open_plug
from vde.protocol import (MAX_REQUEST_LEN, pack_reply, pack_request, pack_sockaddr_un,
                          parse_request)

JOIN_TIMEOUT = 5.0
BROADCAST_FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + b"hello"


class FakeSwitch:
    """One handshake of a vde_switch look-alike, served from a thread.

    ``behaviour`` is ``"reply"`` (answer and keep a connected datagram socket), ``"silent"``
    (read the request, never answer), ``"hangup"`` (close the connection) or a ``bytes``
    reply to send verbatim.
    """

    def __init__(self, directory, behaviour="reply"):
        self.directory = str(directory)
        self.behaviour = behaviour
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.path.join(self.directory, "ctl"))
        self.listener.listen(4)
        self.listener.settimeout(JOIN_TIMEOUT)
        self.raw_request = None
        self.request = None
        self.client_mode = None
        self.connection = None
        self.data = None
        self.data_path = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve_one, daemon=True)
        self.thread.start()

    def _serve_one(self):
        try:
            self.connection, _ = self.listener.accept()
            self.raw_request = self.connection.recv(MAX_REQUEST_LEN)
            self.request = parse_request(self.raw_request)
            self.client_mode = stat.S_IMODE(os.stat(self.request.client_path).st_mode)
            if self.behaviour == "hangup":
                self.connection.close()
            elif isinstance(self.behaviour, bytes):
                self.connection.sendall(self.behaviour)
            elif self.behaviour == "reply":
                port = self.request.port or 1
                self.data_path = os.path.join(self.directory, f"{port:03d}.7")
                self.data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.data.bind(self.data_path)
                self.data.connect(self.request.client_path)
                self.data.settimeout(JOIN_TIMEOUT)
                self.connection.sendall(pack_reply(self.data_path))
        finally:
            self.done.set()

    def wait(self):
        """Wait until the handshake thread has done its part."""
        assert self.done.wait(JOIN_TIMEOUT), "fake switch thread did not finish"

    def die(self):
        """Disappear like a killed switch: close every socket, remove the files."""
        for sock in (self.connection, self.data, self.listener):
            if sock is not None:
                sock.close()
        for path in (self.data_path, os.path.join(self.directory, "ctl")):
            if path and os.path.exists(path):
                os.unlink(path)

    def entries(self):
        """Names in the switch directory other than the switch's own sockets."""
        own = {"ctl", os.path.basename(self.data_path or "")}
        return sorted(set(os.listdir(self.directory)) - own)


@pytest.fixture
def switch_dir(tmp_path):
    directory = tmp_path / "sw"
    directory.mkdir()
    return directory


@pytest.fixture
def make_switch(switch_dir):
    switches = []

    def make(behaviour="reply"):
        switch = FakeSwitch(switch_dir, behaviour)
        switches.append(switch)
        return switch

    yield make
    for switch in switches:
        switch.die()
        switch.thread.join(JOIN_TIMEOUT)


@pytest.fixture
def connected(make_switch, switch_dir):
    """A plug on a fake switch that answered; yields (plug, switch)."""
    switch = make_switch()
    plug = open_plug(f"vde://{switch_dir}", description="test", timeout=JOIN_TIMEOUT)
    switch.wait()
    yield plug, switch
    plug.close()


def user_suffix():
    return f" user={pwd.getpwuid(os.geteuid()).pw_name} pid={os.getpid()}"


def wait_readable(fd):
    readable, _, _ = select.select([fd], [], [], JOIN_TIMEOUT)
    assert readable, "descriptor did not become readable"


# --- handshake -------------------------------------------------------------------------

def test_request_bytes_are_exactly_vdeplug4s(make_switch, switch_dir):
    switch = make_switch()
    with open_plug(str(switch_dir), description="lwstack eth0", timeout=JOIN_TIMEOUT):
        switch.wait()
        client_path = switch.request.client_path
        assert re.fullmatch(re.escape(str(switch_dir)) + rf"/\.{os.getpid():05d}-\d{{5}}",
                            client_path)
        expected = pack_request(client_path, 0, "lwstack eth0" + user_suffix())
        assert switch.raw_request == expected
        assert switch.raw_request[:12] == bytes.fromhex("cefaedfe" "03000000" "00000000")
        assert switch.request.description == "lwstack eth0" + user_suffix()


def test_requested_port_is_sent_and_port_parsed_from_reply(make_switch, switch_dir):
    switch = make_switch()
    with open_plug(f"vde://{switch_dir}[7]", timeout=JOIN_TIMEOUT) as plug:
        switch.wait()
        assert switch.request.port == 7
        assert switch.raw_request[8:12] == (7 << 8).to_bytes(4, "little")
        assert plug.port == 7
        assert plug.remote_path == os.path.join(str(switch_dir), "007.7")
        assert plug.switch_path == str(switch_dir)


def test_parsed_locator_is_accepted(make_switch, switch_dir):
    switch = make_switch()
    with open_plug(parse_locator(f"{switch_dir}[port=3]"), timeout=JOIN_TIMEOUT) as plug:
        switch.wait()
        assert plug.port == 3


def test_long_description_is_cut_to_128_bytes(make_switch, switch_dir):
    switch = make_switch()
    with open_plug(str(switch_dir), description="x" * 300, timeout=JOIN_TIMEOUT):
        switch.wait()
        assert switch.request.description == "x" * 128
        assert len(switch.raw_request) == 122 + 128


def test_mode_option_sets_socket_permissions(make_switch, switch_dir):
    switch = make_switch()
    with open_plug(f"{switch_dir}[mode=0600]", timeout=JOIN_TIMEOUT):
        switch.wait()
        assert switch.client_mode == 0o600


def test_directory_too_long_for_our_socket_uses_a_private_temp_dir(tmp_path):
    # DIR/ctl fits in sun_path (108 bytes) but DIR/.PPPPP-NNNNN does not.
    deep = tmp_path / ("d" * max(1, 100 - len(str(tmp_path)) - 1))
    deep.mkdir()
    assert len(str(deep / "ctl")) < 108 <= len(str(deep / ".00000-00000"))
    switch = FakeSwitch(deep)
    try:
        with open_plug(str(deep), timeout=JOIN_TIMEOUT) as plug:
            switch.wait()
            client_dir = os.path.dirname(switch.request.client_path)
            assert client_dir != str(deep)
            assert os.path.basename(client_dir).startswith("lwstack-vde-")
            assert not os.path.exists(client_dir)
            assert plug.send(BROADCAST_FRAME)
            assert switch.data.recv(MAX_FRAME) == BROADCAST_FRAME
    finally:
        switch.die()


def test_our_socket_path_is_unlinked_after_the_handshake(connected):
    plug, switch = connected
    assert not os.path.exists(switch.request.client_path)
    assert switch.entries() == []


# --- handshake failures ----------------------------------------------------------------

def test_silent_switch_times_out(make_switch, switch_dir):
    switch = make_switch("silent")
    with pytest.raises(TimeoutError) as info:
        open_plug(f"{switch_dir}[40]", timeout=0.2)
    assert info.value.errno == errno.ETIMEDOUT
    assert str(switch_dir) in str(info.value)
    assert "port 40" in str(info.value)
    switch.wait()
    assert switch.entries() == []


def test_switch_hanging_up_is_a_refusal(make_switch, switch_dir):
    switch = make_switch("hangup")
    with pytest.raises(ConnectionRefusedError, match=f"VDE switch at {switch_dir} closed"):
        open_plug(str(switch_dir), timeout=JOIN_TIMEOUT)
    switch.wait()
    assert switch.entries() == []


def test_malformed_reply_is_a_protocol_error(make_switch, switch_dir):
    switch = make_switch(b"\x07\x00" + b"\x00" * 108)
    with pytest.raises(OSError, match="sent a bad reply") as info:
        open_plug(str(switch_dir), timeout=JOIN_TIMEOUT)
    assert info.value.errno == errno.EPROTO
    assert switch.entries() == []


def test_reply_naming_a_missing_socket_is_a_refusal(make_switch, switch_dir):
    make_switch(pack_sockaddr_un(str(switch_dir / "009.1")))
    with pytest.raises(ConnectionRefusedError, match="cannot connect to its port socket"):
        open_plug(str(switch_dir), timeout=JOIN_TIMEOUT)


def test_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"no VDE switch at {missing}: no such directory"):
        open_plug(str(missing))


def test_directory_without_control_socket(tmp_path):
    with pytest.raises(FileNotFoundError, match="no control socket"):
        open_plug(f"vde://{tmp_path}")


def test_stale_control_socket_is_refused(switch_dir):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(switch_dir / "ctl"))
    stale.close()
    with pytest.raises(ConnectionRefusedError, match="refused the connection"):
        open_plug(str(switch_dir))


def test_other_schemes_are_not_openable_yet():
    with pytest.raises(NotImplementedError, match="scheme 'vxvde' not supported yet"):
        open_plug("vxvde://239.0.0.1/vni=5")


def test_unknown_vde_option_is_a_locator_error(switch_dir):
    with pytest.raises(LocatorError, match="unknown vde option"):
        open_plug(f"{switch_dir}[colour=blue]")


def test_out_of_range_port_is_a_locator_error(switch_dir):
    with pytest.raises(LocatorError, match="out of range"):
        open_plug(f"{switch_dir}[16777216]")


# --- data path -------------------------------------------------------------------------

def test_send_delivers_one_frame_per_datagram(connected):
    plug, switch = connected
    assert plug.send(BROADCAST_FRAME) is True
    assert plug.send(memoryview(BROADCAST_FRAME + b"!")) is True
    assert switch.data.recv(MAX_FRAME) == BROADCAST_FRAME
    assert switch.data.recv(MAX_FRAME) == BROADCAST_FRAME + b"!"
    assert plug.stats["tx_frames"] == 2
    assert plug.stats["tx_bytes"] == 2 * len(BROADCAST_FRAME) + 1


def test_largest_frame_goes_through(connected):
    plug, switch = connected
    frame = BROADCAST_FRAME[:14] + bytes(MAX_FRAME - 14)
    assert plug.send(frame)
    assert switch.data.recv(MAX_FRAME + 1) == frame


@pytest.mark.parametrize("size", [0, 13, MAX_FRAME + 1])
def test_send_rejects_impossible_frames(connected, size):
    plug, _ = connected
    with pytest.raises(ValueError, match=f"frame of {size} bytes"):
        plug.send(bytes(size))
    assert plug.stats["tx_frames"] == 0


def test_recv_batch_drains_waiting_frames_in_order(connected):
    plug, switch = connected
    frames = [BROADCAST_FRAME + bytes([n]) for n in range(5)]
    for frame in frames:
        switch.data.send(frame)
    wait_readable(plug.fileno())
    assert plug.recv_batch(max_frames=3) == frames[:3]
    assert plug.recv_batch() == frames[3:]
    assert plug.recv_batch() == []
    assert plug.stats["rx_frames"] == 5
    assert plug.stats["rx_bytes"] == sum(map(len, frames))


def test_recv_into(connected):
    plug, switch = connected
    buffer = bytearray(MAX_FRAME)
    with pytest.raises(BlockingIOError):
        plug.recv_into(buffer)
    switch.data.send(BROADCAST_FRAME)
    wait_readable(plug.fileno())
    size = plug.recv_into(buffer)
    assert buffer[:size] == BROADCAST_FRAME
    assert plug.stats["rx_frames"] == 1


def test_full_queue_drops_without_blocking(connected):
    plug, _ = connected   # the fake switch never reads its data socket
    frame = BROADCAST_FRAME[:14] + bytes(MAX_FRAME - 14)
    accepted = 0
    while plug.send(frame):
        accepted += 1
        assert accepted < 100_000, "send never reported a full queue"
    assert plug.stats["tx_dropped"] == 1
    assert plug.stats["tx_frames"] == accepted
    assert accepted > 10   # the 4 MiB send buffer holds far more than the qlen of 10


# --- the switch going away, closing ----------------------------------------------------

def test_switch_death_shows_on_control_socket_and_send(connected):
    plug, switch = connected
    switch.die()
    wait_readable(plug.control_fileno())
    assert os.read(plug.control_fileno(), 1) == b""
    with pytest.raises(ConnectionError) as info:
        plug.send(BROADCAST_FRAME)
    assert info.value.errno == errno.ECONNREFUSED
    assert "is gone" in str(info.value)


def test_close_is_idempotent_and_ends_the_endpoint(connected):
    plug, switch = connected
    assert not plug.closed
    plug.close()
    plug.close()
    assert plug.closed
    assert plug.fileno() == -1
    assert switch.connection.recv(1) == b""     # the switch sees its control stream end
    assert switch.entries() == []
    with pytest.raises(OSError) as info:
        plug.send(BROADCAST_FRAME)
    assert info.value.errno == errno.EBADF


def test_context_manager_closes(make_switch, switch_dir):
    make_switch()
    with open_plug(str(switch_dir), timeout=JOIN_TIMEOUT) as plug:
        assert isinstance(plug, VdePlug)
        assert "port=1" in repr(plug)
    assert plug.closed
    assert "closed" in repr(plug)
