"""lwstack.readiness on its own, and how each driver keeps descriptors up to date.

The descriptor pair (:class:`lwstack.readiness.Readiness`) is driven here by a fake driver
and a settable state, and observed with ``select.poll`` as any user of ``fileno()`` would;
then the drivers: the threaded reactor (deferred to the end of a batch, flushed by
``after_call`` for changes an application call makes), and the asyncio driver, which updates
at once.
"""
import asyncio
import errno
import os
import select
import socket as stdsocket
import weakref

import pytest

import lwstack
import lwstack.asyncio as lwasyncio
from lwstack import readiness
from lwstack import socket as lwsocket
from lwstack.readiness import READABLE, WRITABLE
from vde.memory import MemorySwitch

BOTH = READABLE | WRITABLE


class FakeDriver:
    """What a Readiness needs from a driver."""

    def __init__(self, defers=False):
        self.defers_readiness = defers
        self.readiness_pending = []
        self.descriptors = weakref.WeakSet()


class Endpoint:
    def __init__(self):
        self.on_change = None

    def changed(self):
        if self.on_change is not None:
            self.on_change(self)


def polled(fd):
    """The POLLIN/POLLOUT bits ``poll`` reports for ``fd`` now, as READABLE/WRITABLE."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLOUT)
    found = poller.poll(0)
    events = found[0][1] if found else 0
    return (READABLE if events & select.POLLIN else 0) | \
        (WRITABLE if events & select.POLLOUT else 0)


@pytest.fixture
def pair():
    driver = FakeDriver()
    box = {"state": WRITABLE}
    ready = readiness.Readiness(driver, lambda: box["state"])
    yield driver, box, ready
    ready.close()


def test_every_state_shows_through_poll(pair):
    _driver, box, ready = pair
    fd = ready.new_fd()
    assert polled(fd) == WRITABLE
    for state in (BOTH, READABLE, 0, WRITABLE, 0, BOTH, WRITABLE):
        box["state"] = state
        ready.update()
        assert polled(fd) == state == ready.state


def test_endpoint_hooks_update_at_once_or_at_the_batch_end():
    endpoint = Endpoint()
    seen = []
    endpoint.on_change = seen.append
    for defers in (False, True):
        driver = FakeDriver(defers)
        box = {"state": WRITABLE}
        ready = readiness.Readiness(driver, lambda: box["state"])
        fd = ready.new_fd()
        ready.watch(endpoint)
        box["state"] = BOTH
        endpoint.changed()
        endpoint.changed()
        assert seen[-2:] == [endpoint, endpoint]      # the previous hook still runs
        if defers:
            assert polled(fd) == WRITABLE and driver.readiness_pending == [ready]
            readiness.flush(driver)
            assert driver.readiness_pending == [] and not ready.queued
        assert polled(fd) == BOTH
        ready.close()
        assert endpoint.on_change == seen.append      # unhooked


def test_nothing_can_be_written_through_the_descriptor(pair):
    _driver, box, ready = pair
    fd = ready.new_fd()
    for write in (lambda: os.write(fd, b"x"),
                  lambda: stdsocket.socket(fileno=os.dup(fd)).send(b"x")):
        with pytest.raises(OSError) as info:
            write()
        assert info.value.errno == errno.ENOTCONN
    assert polled(fd) == WRITABLE


def test_a_token_taken_through_the_descriptor_does_not_wedge_it(pair):
    _driver, box, ready = pair
    fd = ready.new_fd()
    box["state"] = BOTH
    ready.update()
    stdsocket.socket(fileno=os.dup(fd)).recv(1)       # someone reads the descriptor
    box["state"] = WRITABLE
    ready.update()                                    # nothing left to take: no error
    box["state"] = BOTH
    ready.update()
    assert polled(fd) == BOTH and ready.errors == 0


def test_copies_share_the_pair_and_it_closes_with_the_last(pair):
    driver, box, ready = pair
    first = ready.new_fd()
    second = ready.new_fd()
    third = ready.new_fd()
    assert len({first, second, third}) == 3 and ready.in_use == 3
    box["state"] = BOTH
    ready.update()
    ready.release_fd(first)                           # the pair's own reference goes
    assert polled(second) == polled(third) == BOTH
    with pytest.raises(OSError):
        os.fstat(first)
    box["state"] = 0
    ready.update()                                    # through the remaining copies
    assert polled(second) == 0
    ready.release_fd(third)
    assert polled(second) == 0 and not ready.closed
    ready.release_fd(second)
    assert ready.closed and ready not in driver.descriptors


def test_a_relinquished_descriptor_is_left_to_its_new_owner(pair):
    _driver, box, ready = pair
    fd = ready.new_fd()
    ready.relinquish_fd(fd)
    adopted = stdsocket.socket(fileno=fd)
    adopted.close()                                   # the new owner closes it
    again = ready.new_fd()
    box["state"] = READABLE
    ready.update()
    assert polled(again) == READABLE and ready.errors == 0


def test_close_spares_a_number_that_is_no_longer_ours(pair):
    _driver, _box, ready = pair
    fd = ready.new_fd()
    os.close(fd)                                      # closed behind our back...
    reused_r, reused_w = os.pipe()                    # ...and the number reused
    try:
        ready.close()
        for number in (reused_r, reused_w):
            os.fstat(number)                          # still open
    finally:
        os.close(reused_r)
        os.close(reused_w)


def test_raising_the_send_buffer_makes_a_full_socket_writable_at_once():
    """setsockopt(SO_SNDBUF) makes the connection notify from the application's thread: the
    threaded driver defers the update, and ``after_call`` flushes it before the call returns."""
    switch = MemorySwitch()
    client_stack = lwstack.Stack(switch, "ip=10.6.0.1/24")
    server_stack = lwstack.Stack(switch, "ip=10.6.0.2/24")
    try:
        server = lwsocket.create_server(("10.6.0.2", 80), stack=server_stack)
        client = lwsocket.create_connection(("10.6.0.2", 80), timeout=10, stack=client_stack)
        accepted, _ = server.accept()
        accepted.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_RCVBUF, 4096)
        client.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_SNDBUF, 4096)
        client.setblocking(False)
        fd = client.fileno()
        with pytest.raises(BlockingIOError):
            while True:
                client.send(b"x" * 4096)
        assert polled(fd) == 0
        client.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_SNDBUF, 1 << 20)
        assert polled(fd) == WRITABLE
    finally:
        client_stack.close(timeout=0)
        server_stack.close(timeout=0)


def test_asyncio_driver_sockets_follow_each_batch():
    """The native asyncio driver updates descriptors at the end of each batch and after each
    API call: asyncio's selector loop can wait on facade sockets of an AsyncioStack, and
    they close with it."""
    async def main():
        loop = asyncio.get_running_loop()
        switch = MemorySwitch()
        a = lwasyncio.AsyncioStack(switch, "ip=10.6.1.1/24")
        b = lwasyncio.AsyncioStack(switch, "ip=10.6.1.2/24")
        assert a.driver.defers_readiness
        listening = lwsocket.create_server(("10.6.1.2", 80), stack=b)
        listening.setblocking(False)
        client = lwsocket.socket(lwsocket.AF_INET, lwsocket.SOCK_STREAM, stack=a)
        client.setblocking(False)
        await loop.sock_connect(client, ("10.6.1.2", 80))
        conn, _ = await loop.sock_accept(listening)
        data = os.urandom(1_000_000)
        sending = asyncio.ensure_future(loop.sock_sendall(client, data))
        got = bytearray()
        while len(got) < len(data):
            got += await loop.sock_recv(conn, 65536)
        await sending
        client.close()
        assert await loop.sock_recv(conn, 10) == b""
        listening.fileno()
        conn.close()
        await asyncio.gather(a.aclose(timeout=1), b.aclose(timeout=1))
        return bytes(got) == data, conn.fileno(), listening.fileno()
    assert asyncio.run(asyncio.wait_for(main(), 60)) == (True, -1, -1)   # closed with the stack
