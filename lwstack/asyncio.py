"""The native asyncio driver: a stack that runs inside the event loop, with no thread.

Use it as ``import lwstack.asyncio as lwasyncio`` (the module is named after the stdlib's, as
:mod:`lwstack.socket` is; inside lwstack, ``import asyncio`` still means the stdlib)::

    async def main():
        async with lwasyncio.AsyncioStack("vde:///tmp/sw", "ip=10.0.0.2/24") as stack:
            reader, writer = await lwasyncio.open_connection("10.0.0.1", 7, stack=stack)
            writer.write(b"hello")
            await writer.drain()
            print(await reader.read(100))
            writer.close()
            await writer.wait_closed()

Design note.

- Driving.  :class:`AsyncioDriver` is a :class:`~lwstack.runtime.DriverBase` whose "reactor" is
  the event loop: the VDE plug's data socket is registered with ``loop.add_reader`` (its
  control stream too, to notice the switch hanging up), and ONE ``loop.call_at`` timer is kept
  armed at ``host.poll_at()``.  A reader callback is one batch, as in the threaded reactor:
  every waiting frame (``recvmmsg`` with the compiled plug I/O) goes to ``host.receive``, due
  timers run, the answers leave in one ``send_batch``, then the endpoints that changed are
  dispatched to their transports, and whatever those callbacks produced leaves in a second
  ``send_batch``.  The clock is ``loop.time()``, so the stack's timers and the loop's agree.
- The timer is re-armed lazily: it moves only when the next deadline comes *earlier* than the
  armed one (the first RTO of a burst, an ARP retry); a deadline that moved later (the RTO
  restarted by every ACK) is found when the timer fires early, and re-armed then.  So a bulk
  transfer does not cancel and create a timer handle per ACK.
- Readiness.  Endpoints call ``on_change(endpoint)`` (the facade wires it to the driver's
  :meth:`~AsyncioDriver.endpoint_changed`); the driver notes the endpoint and, after the batch,
  calls the watcher registered for it (a transport, a server, a pending connect).  Nothing is
  called back from inside ``host.receive``: protocols never re-enter the stack mid-frame.
  A change made outside a batch (an application call from a task) is dispatched by one
  ``call_soon``.
- Output of application calls (``transport.write``) leaves at once (one ``send_batch``), as
  in the threaded runtime, except during a batch, where it waits for the batch's final flush.
- In-memory switches have no descriptor: :class:`LoopMemoryPhy` makes the port's listener
  schedule the batch with ``call_soon`` (``call_soon_threadsafe`` when a frame comes from
  another thread, e.g. a threaded stack on the same switch), and the timer also covers the
  port's next delivery (impairment delays).
- Transports and protocols are our own (:class:`StreamTransport`, :class:`DatagramTransport`,
  :class:`Server`), written against the asyncio ABCs, never CPython's socket transports: they
  use an lwstack socket in non-blocking mode for setup, teardown, addresses and errors, and
  the TCP connection itself for the data path and its readiness.  Flow control both ways:
  ``pause_reading`` leaves data in the connection's receive buffer so the advertised window
  closes; the write buffer (``set_write_buffer_limits``, 64 KiB high water by default) holds
  only what the connection's send buffer (``SO_SNDBUF``) has no room for, and pauses the
  protocol (``StreamWriter.drain`` waits) above the high-water mark.  The stdlib's
  ``StreamReader``/``StreamWriter`` run unchanged on top.
- Other threads may still use the same stack's blocking sockets: API calls take the stack
  lock, and wake the loop (``call_soon_threadsafe``) to re-arm the timer; the loop notifies the
  stack's condition after each batch when a thread waits.  A blocking call made *in the loop's
  thread* would stop the loop that must make it progress: it raises ``RuntimeError`` instead
  (non-blocking socket calls are fine).
- Closing: ``await stack.aclose()`` (or ``async with``) closes every connection, lets them
  deliver their queued data and FIN for up to ``timeout`` seconds while the loop runs, then
  resets what is left; the synchronous :meth:`Stack.close <lwstack.Stack.close>` called in
  the loop cannot wait, so it resets connections that still owe data at once (from another
  thread it waits, the loop driving the stack meanwhile).
- Names: :meth:`AsyncioStack.getaddrinfo` answers numeric hosts at once and looks names up
  (:func:`lwstack.socket.getaddrinfo`: hosts table, the stack's resolver) as asyncio's own
  ``loop.getaddrinfo`` does, in the loop's default executor: that lookup blocks a worker
  thread on the stack's condition while the loop goes on driving the stack.
- Coupling: the facade has no public accessor for a socket's endpoint yet, so the transports
  read ``sock._conn`` / ``sock._listener`` / ``sock._endpoint`` (in :func:`_endpoint_of`).
  :class:`AsyncioStack` is a :class:`lwstack.Stack` built with ``driver_factory``: the
  stack makes the phy as always and the factory wraps it in an :class:`AsyncioDriver`.

Not here yet: TLS (``ssl=``), IPv6 (the facade's sockets are AF_INET so far).
"""
import asyncio
import collections
import errno
import functools
import logging
import math
import os
import socket as _stdlib
import struct
import threading

from lwstack import readiness as _readiness
from lwstack import socket as lwsocket
from lwstack.proto.tcp.connection import HANDSHAKE
from lwstack.runtime import DriverBase
from lwstack.sim import VirtualNetwork
from lwstack.stack import CLOSE_TIMEOUT, Stack

__all__ = ["AsyncioStack", "AsyncioDriver", "LoopMemoryPhy", "StreamTransport",
           "DatagramTransport", "Server", "open_connection", "start_server"]

logger = logging.getLogger("lwstack.asyncio")

#: asyncio's defaults: the write buffer's high-water mark, and the most one read delivers.
DEFAULT_HIGH_WATER = 64 * 1024
MAX_READ = 256 * 1024
#: asyncio.streams' default buffer limit for StreamReader.
DEFAULT_LIMIT = 2 ** 16
#: Rounds of dispatching per batch before the rest is left to the next loop iteration (a
#: protocol that keeps changing other endpoints cannot starve the loop).
MAX_DISPATCH_ROUNDS = 16
_LINGER_ABORT = struct.pack("ii", 1, 0)


def _set_result(future, result):
    if not future.done():
        future.set_result(result)


def _oserror(code, detail=None):
    message = os.strerror(code)
    return OSError(code, f"{message}: {detail}" if detail else message)


# ---------------------------------------------------------------------------------- phy

class LoopMemoryPhy:
    """A :class:`vde.memory.MemoryPort` driven by an event loop: no descriptor, so the port's
    listener schedules the driver's batch (``call_soon``, or ``call_soon_threadsafe`` when the
    frame comes from another thread), and :meth:`next_delivery` tells the driver's timer when
    a delayed frame falls due."""

    def __init__(self, port, clock):
        self.port = port
        self.clock = clock
        self.max_frame = port.switch.core.max_frame
        self.link_down = False
        self._kick = None

    def set_kick(self, kick):
        """Call ``kick()`` (from any thread) whenever a frame is queued for us."""
        self._kick = kick
        self.port.set_listener(kick)

    def send(self, frame):
        """Hand one frame to the switch."""
        self.port.send(frame, self.clock())
        return True

    def receive(self):
        """Frames due now."""
        return self.port.receive(self.clock())

    def next_delivery(self):
        """When the next queued frame falls due, or None."""
        return self.port.next_delivery()

    def wake(self):
        """Nothing to interrupt: the loop is the only waiter."""

    def close(self):
        """Release the switch port."""
        self.port.set_listener(None)
        self.port.close()


# ---------------------------------------------------------------------------------- driver

class AsyncioDriver(DriverBase):
    """Drives a host from an asyncio event loop, in the loop's thread (see the module note).

    Build it in the thread that runs ``loop``; :class:`AsyncioStack` does.
    """

    #: Sockets' descriptors (``fileno()``) are brought up to date at the end of each batch
    #: and after each API call, as the threaded runtime does.
    defers_readiness = True

    def __init__(self, phy, loop):
        super().__init__(phy)
        self.loop = loop
        #: The stack's clock is the loop's (``time.monotonic`` for the default loops).
        self.now = loop.time
        self._loop_thread = threading.get_ident()
        self._send_batch = getattr(phy, "send_batch", None)
        self._next_delivery = getattr(phy, "next_delivery", None)
        self._timer = None
        self._timer_when = None
        self._in_batch = False
        self._kick_pending = False
        self._dispatch_scheduled = False
        self._rearm_scheduled = False
        self._changed = {}              # endpoints changed since the last dispatch (ordered)
        self._watchers = {}             # endpoint -> callback()
        self._predicates = []           # [(predicate, future)] of wait_until
        self._foreign_waiters = 0       # threads blocked in wait_for
        self._readers = []              # descriptors registered with the loop
        #: Stream transports not closed yet (:meth:`AsyncioStack.aclose` closes them first).
        self.transports = set()
        #: Batches run (reader callbacks, timer expiries, memory kicks), for tests and benches.
        self.stats = collections.Counter()

    # -- life -------------------------------------------------------------------------------

    def attach(self, host):
        """Start driving ``host``: watch the phy's descriptor (or its listener), send what
        the host queued at creation, arm the timer."""
        self.host = host
        phy = self.phy
        loop = self.loop
        if hasattr(phy, "set_kick"):
            phy.set_kick(self._kick)
        elif hasattr(phy, "plug"):
            data_fd = phy.plug.fileno()
            loop.add_reader(data_fd, self._on_input)
            self._readers.append(data_fd)
            control_fd = phy.plug.control_fileno()
            if control_fd >= 0:
                loop.add_reader(control_fd, self._on_control, control_fd)
                self._readers.append(control_fd)
        elif hasattr(phy, "fileno"):
            fd = phy.fileno()
            loop.add_reader(fd, self._on_input)
            self._readers.append(fd)
        else:
            raise TypeError(f"{type(phy).__name__} has neither a descriptor nor set_kick")
        with self.lock:
            self.flush()
            self._rearm()

    def close(self):
        """Stop driving: unregister from the loop, tell every watcher, release the phy.

        From another thread while the loop runs, the loop does the unregistering (and
        releases the phy) on its next iteration: its reader table is not thread-safe.
        """
        with self.lock:
            if self.closed:
                return
            self.closed = True
            _readiness.close_all(self)       # sockets' descriptors close with their stack
            self.cond.notify_all()
            watchers = list(self._watchers.values())
            predicates, self._predicates = self._predicates, []
        loop = self.loop
        if not loop.is_closed():
            for callback in watchers:      # each sees driver.closed and ends (ENETDOWN)
                self._call_soon(callback)
            for _predicate, future in predicates:
                self._call_soon(_set_result, future, False)
        if threading.get_ident() != self._loop_thread and loop.is_running():
            try:
                loop.call_soon_threadsafe(self._release)
                return
            except RuntimeError:           # closed meanwhile: nothing is registered any more
                pass
        self._release()

    def _release(self):
        loop = self.loop
        for fd in self._readers:
            if not loop.is_closed():
                loop.remove_reader(fd)
        self._readers = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.phy.close()

    def _call_soon(self, callback, *args):
        try:
            if threading.get_ident() == self._loop_thread:
                self.loop.call_soon(callback, *args)
            else:
                self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:            # the loop is closed: nobody is left to tell
            pass

    # -- what sockets call ------------------------------------------------------------------

    def endpoint_changed(self, endpoint):
        """Called by endpoints (lock held) when they change: dispatched after the batch."""
        self._changed[endpoint] = None
        if self._in_batch or self._dispatch_scheduled or self.closed:
            return
        self._dispatch_scheduled = True
        self._call_soon(self._dispatch_later)

    def after_call(self):
        """After an API call (lock held): send its frames, and re-arm the timer if the call
        armed an earlier one.  Inside a batch both wait for the batch's end."""
        if self._in_batch:
            return
        self.flush()
        if self.readiness_pending:
            _readiness.flush(self)
        if threading.get_ident() == self._loop_thread:
            self._rearm()
        elif not self._rearm_scheduled:
            self._rearm_scheduled = True
            self._call_soon(self._rearm_later)

    def wait_for(self, predicate, timeout):
        """Block (lock held) until ``predicate()`` or ``timeout`` seconds: possible from
        another thread only.  In the loop's thread, a predicate not true yet raises
        ``RuntimeError``: waiting there would stop the loop that makes it come true."""
        if predicate():
            return True
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("this lwstack call would block the event loop that drives its "
                               "stack: use a non-blocking socket or lwstack.asyncio's "
                               "transports and streams")
        self._foreign_waiters += 1
        try:
            return self.cond.wait_for(lambda: predicate() or self.closed, timeout) \
                and predicate()
        finally:
            self._foreign_waiters -= 1

    def flush(self):
        """Send every frame the host has produced (lock held): one ``send_batch`` call when
        the phy has one (the VDE plug: ``sendmmsg``), else frame by frame."""
        outbox = self.host.outbox
        if outbox:
            send_batch = self._send_batch
            if send_batch is None:
                DriverBase.flush(self)
                return
            dropped = send_batch(outbox)
            outbox.clear()
            if dropped:
                self.host.stats["drop.tx_queue_full"] += dropped

    # -- watchers (transports, servers, connects) -------------------------------------------

    def watch(self, endpoint, callback):
        """Call ``callback()`` after every batch in which ``endpoint`` changed."""
        self._watchers[endpoint] = callback

    def unwatch(self, endpoint):
        """Stop calling the watcher of ``endpoint``."""
        self._watchers.pop(endpoint, None)

    async def wait_until(self, predicate, timeout=None):
        """Wait in the loop until ``predicate()`` (checked after every batch) or ``timeout``
        seconds; return whether it came true."""
        if predicate():
            return True
        if self.closed:
            return False
        future = self.loop.create_future()
        entry = (predicate, future)
        self._predicates.append(entry)
        try:
            if timeout is None:
                return await future
            try:
                return await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                return predicate()
        finally:
            try:
                self._predicates.remove(entry)
            except ValueError:
                pass

    # -- the loop's callbacks ---------------------------------------------------------------

    def _kick(self):
        # The memory port's listener: called (without the switch lock) in the sending thread.
        if self._kick_pending:
            return
        self._kick_pending = True
        self._call_soon(self._on_input)

    def _on_input(self):
        """Reader callback: one batch of frames."""
        self._kick_pending = False
        if self.closed:                 # a kick scheduled before the stack closed
            return
        frames = self.phy.receive()
        with self.lock:
            if self.closed:
                return
            self.stats["batches"] += 1
            self._run(frames)
        if not frames and getattr(self.phy, "link_down", False):
            self._stop_reading_data()

    def _on_timer(self):
        self._timer = None
        self._timer_when = None
        if self.closed:
            return
        frames = self.phy.receive() if self._next_delivery is not None else ()
        with self.lock:
            if self.closed:
                return
            self.stats["timer_runs"] += 1
            self._run(frames)

    def _on_control(self, fd):
        # The switch's control stream fired: it dropped us (EOF stays readable, so stop
        # watching it).  The PlugIO notes the hangup when it polls its descriptors.
        self.loop.remove_reader(fd)
        if fd in self._readers:
            self._readers.remove(fd)
        io = getattr(self.phy, "io", None)
        if io is not None:
            io.wait(0)
        logger.debug("lwstack: the switch closed our control stream")

    def _stop_reading_data(self):
        # A vanished switch leaves the data socket readable with nothing to read.
        io = getattr(self.phy, "io", None)
        if io is not None and io.gone:
            fd = io.data_fd
            if fd in self._readers:
                self.loop.remove_reader(fd)
                self._readers.remove(fd)

    def _run(self, frames):
        """One batch (lock held): frames in, due timers, answers out, then the watchers."""
        host = self.host
        self._in_batch = True
        try:
            now = self.now()
            if frames:
                receive = host.receive
                for frame in frames:
                    receive(frame, now)
            due = host.poll_at()
            if due is not None and due <= now:
                host.poll(now)
            if host.outbox:
                self.flush()              # answers leave before the protocols run
            self._dispatch_rounds()
        finally:
            self._in_batch = False
        self._end_batch()

    def _dispatch_rounds(self):
        """Call the watchers of changed endpoints (a bounded number of rounds: a watcher may
        change endpoints again) and settle the futures whose predicates now hold."""
        rounds = 0
        while self._changed and rounds < MAX_DISPATCH_ROUNDS:
            self._dispatch()
            rounds += 1
        if self._predicates:
            self._check_predicates()

    def _end_batch(self):
        """What is left for the next loop iteration, the output, and the timer."""
        if self.readiness_pending:
            _readiness.flush(self)
        if self._changed and not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            self.loop.call_soon(self._dispatch_later)
        if self.host.outbox:
            self.flush()
        self._rearm()

    def _dispatch(self):
        changed = self._changed
        self._changed = {}
        if self._foreign_waiters:
            self.cond.notify_all()
        watchers = self._watchers
        for endpoint in changed:
            callback = watchers.get(endpoint)
            if callback is not None:
                try:
                    callback()
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:  # noqa: BLE001 (one watcher must not stop the rest)
                    self.loop.call_exception_handler({
                        "message": "lwstack.asyncio: exception in a watcher callback",
                        "exception": exc, "endpoint": endpoint})

    def _dispatch_later(self):
        self._dispatch_scheduled = False
        with self.lock:
            if self.closed:
                return
            self._in_batch = True
            try:
                self._dispatch_rounds()
            finally:
                self._in_batch = False
            self._end_batch()

    def _check_predicates(self):
        for predicate, future in list(self._predicates):
            if not future.done() and predicate():
                future.set_result(True)

    def _forget_transport(self, transport):
        self.transports.discard(transport)
        if self._predicates:
            with self.lock:
                self._check_predicates()

    def _rearm_later(self):
        self._rearm_scheduled = False
        with self.lock:
            if not self.closed:
                self._rearm()

    def _rearm(self):
        """Keep the one timer at the host's next deadline (lazily: see the module note)."""
        due = self.host.poll_at()
        if self._next_delivery is not None:
            delivery = self._next_delivery()
            if delivery is not None and (due is None or delivery < due):
                due = delivery
        if due is None:
            return
        if self._timer is not None:
            if self._timer_when <= due:
                return
            self._timer.cancel()
        loop = self.loop
        if loop.is_closed() or self.closed:
            return
        self._timer_when = due
        self._timer = loop.call_at(due if due != -math.inf else loop.time(), self._on_timer)


# ---------------------------------------------------------------------------------- stack

def _loop_phy(phy, loop):
    """The phy :class:`lwstack.Stack` made, fit for the loop: an in-memory port has no
    descriptor, so it becomes a :class:`LoopMemoryPhy` (the port's listener wakes the loop)."""
    from lwstack.phy.memory import MemoryPhy
    if isinstance(phy, MemoryPhy):
        return LoopMemoryPhy(phy.port, loop.time)
    return phy


def _numeric_host(host):
    """True for None, ``""`` and literal IPv4/IPv6 addresses: answered without a lookup."""
    if host is None or host == "":
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode()
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    for family in (_stdlib.AF_INET, _stdlib.AF_INET6):
        try:
            _stdlib.inet_pton(family, host.split("%", 1)[0])
            return True
        except OSError:
            pass
    return False


class AsyncioStack(Stack):
    """A :class:`lwstack.Stack` driven by an asyncio event loop instead of a reactor thread.

    ``network``, ``config`` and the other arguments are those of :class:`lwstack.Stack`
    (a vdeplug4 locator, a :class:`vde.memory.MemorySwitch` or one of its ports, with
    impairments; not a virtual network).  ``loop`` defaults to the running loop: build the
    stack inside a coroutine, or pass the loop that this thread will run.  Its sockets
    (``stack.socket()``) keep the stdlib contract in non-blocking mode; the loop-facing API is
    :meth:`create_connection`, :meth:`create_server`, :meth:`create_datagram_endpoint`,
    :meth:`open_connection` and :meth:`start_server`.  Close with ``await stack.aclose()``
    (or ``async with``).
    """

    def __init__(self, network=None, config="", *, loop=None, timeout=5.0, **options):
        if isinstance(network, VirtualNetwork):
            raise TypeError("a VirtualNetwork runs on virtual time with its own driver; "
                            "AsyncioStack needs a real-time network (a locator or a "
                            "MemorySwitch)")
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError("AsyncioStack needs an event loop: build it inside a "
                                   "coroutine or pass loop=") from None
        self.loop = loop
        super().__init__(network, config, timeout=timeout, **options,
                         driver_factory=lambda phy: AsyncioDriver(_loop_phy(phy, loop), loop))

    # -- life --------------------------------------------------------------------------------

    async def aclose(self, timeout=CLOSE_TIMEOUT):
        """Close like :meth:`lwstack.Stack.close`, letting the loop run meanwhile: every
        connection is closed (FIN after its queued data) and has up to ``timeout`` seconds
        to deliver before what is left is reset."""
        driver = self.driver
        if driver.closed:
            return
        deadline = self.loop.time() + (timeout or 0)
        # Stream transports first: what waits in their write buffers goes into the
        # connections, then each closes its socket (FIN after the data).
        for transport in list(driver.transports):
            transport.close()
        if timeout and driver.transports:
            await driver.wait_until(lambda: not driver.transports, timeout)
        tcp = self.host.tcp
        with driver.lock:
            now = driver.now()
            for listener in list(tcp.listeners.values()):
                listener.close(now)
            for conn in list(tcp.connections.values()):
                if not conn.orphaned:
                    conn.close(now)
            driver.after_call()
        left = deadline - self.loop.time()
        if timeout and left > 0 and tcp.owes_data():
            await driver.wait_until(lambda: not tcp.owes_data(), left)
        self.close(timeout=0)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.aclose()

    async def wait_configured_async(self, timeout=None):
        """:meth:`lwstack.Stack.wait_configured` without blocking the loop: wait until
        everything the configuration asked for (a DHCP lease) is in place; ``TimeoutError``
        names what is missing, ``OSError(ENETDOWN)`` if the stack closes meanwhile."""
        driver = self.driver
        self._check_open()
        pending = self._pending_configuration
        await driver.wait_until(lambda: driver.closed or not pending(), timeout)
        self._check_open()
        with driver.lock:
            missing = pending()
        if missing:
            raise TimeoutError("not configured within %g s: waiting for %s"
                               % (timeout, ", ".join(missing)))
        return self

    # -- the loop-facing API ----------------------------------------------------------------

    def _check_open(self):
        if self.driver.closed:
            raise _oserror(errno.ENETDOWN, "the stack is closed")

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """:func:`lwstack.socket.getaddrinfo` on this stack, as
        :meth:`asyncio.loop.getaddrinfo`: numeric hosts are answered at once; a name (hosts
        table, DNS through the stack's resolver) is looked up as asyncio looks names up, in
        the loop's default executor, while the loop goes on driving the stack."""
        self._check_open()
        call = functools.partial(lwsocket.getaddrinfo, host, port, family, type, proto,
                                 flags, stack=self)
        if _numeric_host(host):
            return call()
        return await self.loop.run_in_executor(None, call)

    async def _addresses(self, host, port, socktype, passive=False):
        """IPv4 ``(address, port)`` pairs for ``host`` (sockets here are AF_INET so far)."""
        if host is None or host == "":
            return [("", port or 0)]
        infos = await self.getaddrinfo(host, port or 0, family=lwsocket.AF_INET,
                                       type=socktype,
                                       flags=_stdlib.AI_PASSIVE if passive else 0)
        addresses = []
        for info in infos:
            if info[4] not in addresses:
                addresses.append(info[4])
        if not addresses:
            raise _stdlib.gaierror(_stdlib.EAI_NONAME, "Name or service not known")
        return addresses

    async def create_connection(self, protocol_factory, host=None, port=None, *,
                                local_addr=None, ssl=None, sock=None):
        """Connect to ``(host, port)`` over TCP, as :meth:`asyncio.loop.create_connection`;
        return ``(transport, protocol)``.  ``sock`` may be a connected lwstack TCP socket."""
        if ssl is not None:
            raise ValueError("ssl= is not supported by lwstack.asyncio yet")
        self._check_open()
        if sock is None:
            if host is None or port is None:
                raise ValueError("host and port are required without sock=")
            sock = await self._connect_any(host, port, local_addr)
        else:
            if host is not None or port is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            sock.setblocking(False)
        waiter = self.loop.create_future()
        protocol = protocol_factory()
        transport = StreamTransport(self, sock, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    async def _connect_any(self, host, port, local_addr):
        """A connected socket to the first of ``host``'s addresses that accepts, tried in
        the resolver's order (as asyncio without happy eyeballs)."""
        addresses = await self._addresses(host, port, lwsocket.SOCK_STREAM)
        local = None
        if local_addr is not None:
            local = (await self._addresses(local_addr[0], local_addr[1],
                                           lwsocket.SOCK_STREAM, passive=True))[0]
        errors = []
        for address in addresses:
            sock = self.socket(lwsocket.AF_INET, lwsocket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                if local is not None:
                    sock.bind(local)
                await self._connect(sock, address)
                return sock
            except OSError as exc:
                sock.close()
                errors.append(exc)
            except BaseException:
                sock.close()
                raise
        if len(errors) == 1 or len({str(exc) for exc in errors}) == 1:
            raise errors[0]
        raise OSError("Multiple exceptions: " + ", ".join(str(exc) for exc in errors))

    async def _connect(self, sock, address):
        driver = self.driver
        conn = _endpoint_of(sock)
        code = sock.connect_ex(address)
        if code == errno.EINPROGRESS:
            future = self.loop.create_future()

            def check():
                if conn.state not in HANDSHAKE or driver.closed:
                    _set_result(future, None)
            driver.watch(conn, check)
            try:
                check()
                await future
            finally:
                driver.unwatch(conn)
            self._check_open()
            code = sock.getsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_ERROR)
            if not code and not conn.connected:
                code = errno.ECONNREFUSED
        if code:
            raise OSError(code, f"Connect call failed {address}: {os.strerror(code)}")

    async def create_server(self, protocol_factory, host=None, port=None, *, backlog=100,
                            reuse_address=True, start_serving=True, sock=None, ssl=None):
        """Listen on ``(host, port)`` (None or "" host: every address; port 0: ephemeral),
        as :meth:`asyncio.loop.create_server`; return a :class:`Server`."""
        if ssl is not None:
            raise ValueError("ssl= is not supported by lwstack.asyncio yet")
        self._check_open()
        if sock is None:
            sock = self.socket(lwsocket.AF_INET, lwsocket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                if reuse_address:
                    sock.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_REUSEADDR, 1)
                sock.bind((await self._addresses(host, port, lwsocket.SOCK_STREAM,
                                                 passive=True))[0])
            except BaseException:
                sock.close()
                raise
        else:
            sock.setblocking(False)
        server = Server(self, sock, protocol_factory, backlog)
        if start_serving:
            server._start_serving()
            await asyncio.sleep(0)       # as asyncio: let the listener settle
        return server

    async def create_datagram_endpoint(self, protocol_factory, local_addr=None,
                                       remote_addr=None, *, allow_broadcast=None, sock=None):
        """A UDP endpoint, as :meth:`asyncio.loop.create_datagram_endpoint`; return
        ``(transport, protocol)``."""
        self._check_open()
        if sock is None:
            sock = self.socket(lwsocket.AF_INET, lwsocket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                if allow_broadcast:
                    sock.setsockopt(lwsocket.SOL_SOCKET, lwsocket.SO_BROADCAST, 1)
                if local_addr is not None:
                    sock.bind((await self._addresses(*local_addr, lwsocket.SOCK_DGRAM,
                                                     passive=True))[0])
                if remote_addr is not None:
                    sock.connect((await self._addresses(*remote_addr,
                                                        lwsocket.SOCK_DGRAM))[0])
            except BaseException:
                sock.close()
                raise
        else:
            sock.setblocking(False)
        waiter = self.loop.create_future()
        protocol = protocol_factory()
        transport = DatagramTransport(self, sock, protocol, waiter,
                                      remote_addr is not None)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    async def open_connection(self, host=None, port=None, *, limit=DEFAULT_LIMIT, **kwds):
        """``(StreamReader, StreamWriter)`` of a new TCP connection, as
        :func:`asyncio.open_connection`."""
        loop = self.loop
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await self.create_connection(lambda: protocol, host, port, **kwds)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return reader, writer

    async def start_server(self, client_connected_cb, host=None, port=None, *,
                           limit=DEFAULT_LIMIT, **kwds):
        """A :class:`Server` calling ``client_connected_cb(reader, writer)`` for every
        connection (a coroutine function runs as a task), as :func:`asyncio.start_server`."""
        loop = self.loop

        def factory():
            reader = asyncio.StreamReader(limit=limit, loop=loop)
            return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)
        return await self.create_server(factory, host, port, **kwds)

    def __repr__(self):
        state = "closed" if self.closed else ", ".join(self.addresses) or "no address"
        return f"<lwstack.asyncio.AsyncioStack {self.mac} {state}>"


def _endpoint_of(sock):
    """The sans-IO endpoint behind a facade socket: its listener after ``listen``, else its
    TCP connection, else its datagram endpoint (what ``on_change`` reports to the driver)."""
    for name in ("_listener", "_conn", "_endpoint"):
        endpoint = getattr(sock, name, None)
        if endpoint is not None:
            return endpoint
    raise TypeError(f"not an lwstack socket: {sock!r}")


def _stack_or_default(stack):
    if stack is None:
        from lwstack.stack import default_stack
        stack = default_stack()
    if not isinstance(stack, AsyncioStack):
        raise TypeError("lwstack.asyncio needs an AsyncioStack (a stack driven by the event "
                        f"loop), not {type(stack).__name__}")
    return stack


async def open_connection(host=None, port=None, *, stack=None, limit=DEFAULT_LIMIT, **kwds):
    """:func:`asyncio.open_connection` on an :class:`AsyncioStack` (``stack=``, or the
    thread's default stack); returns ``(StreamReader, StreamWriter)``."""
    return await _stack_or_default(stack).open_connection(host, port, limit=limit, **kwds)


async def start_server(client_connected_cb, host=None, port=None, *, stack=None,
                       limit=DEFAULT_LIMIT, **kwds):
    """:func:`asyncio.start_server` on an :class:`AsyncioStack` (``stack=``, or the thread's
    default stack); returns a :class:`Server`."""
    return await _stack_or_default(stack).start_server(client_connected_cb, host, port,
                                                        limit=limit, **kwds)


# ---------------------------------------------------------------------------------- transports

class _TransportBase:
    """What stream and datagram transports share: extra info, write limits, the protocol's
    pause/resume, fatal errors."""

    def _init_base(self, stack, sock, protocol):
        self._stack = stack
        self._loop = stack.loop
        self._driver = stack.driver
        self._sock = sock
        self._protocol = protocol
        self._closing = False
        self._conn_lost = 0
        self._started = False
        self._protocol_paused = False
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_HIGH_WATER // 4
        self._extra["socket"] = sock
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None

    def _force_close(self, exc):
        """Close at once (an error, or abort): ``connection_lost(exc)`` follows."""
        if self._conn_lost:
            return
        self._drop_buffered()
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _drop_buffered(self):
        """Forget data not yet handed to the stack (stream transports buffer some)."""

    def _call_connection_lost(self, exc):
        try:
            if self._started:
                self._protocol.connection_lost(exc)
        finally:
            self._release()

    def _release(self):
        """Let go of the socket and the stack's watch (each transport kind knows how)."""
        raise NotImplementedError

    def get_protocol(self):
        """The protocol."""
        return self._protocol

    def set_protocol(self, protocol):
        """Replace the protocol."""
        self._protocol = protocol

    def is_closing(self):
        """True once closing started."""
        return self._closing

    def set_write_buffer_limits(self, high=None, low=None):
        """High- and low-water marks (bytes) of the write buffer, as asyncio's transports."""
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self):
        """``(low, high)``."""
        return self._low_water, self._high_water

    def _maybe_pause_protocol(self):
        if self._protocol_paused or self.get_write_buffer_size() <= self._high_water:
            return
        self._protocol_paused = True
        self._call_flow_control("pause_writing")

    def _maybe_resume_protocol(self):
        if self._protocol_paused and self.get_write_buffer_size() <= self._low_water:
            self._protocol_paused = False
            self._call_flow_control("resume_writing")

    def _call_flow_control(self, name):
        """Call the protocol's ``pause_writing``/``resume_writing``; its failure goes to the
        loop's exception handler, as asyncio's transports do."""
        try:
            getattr(self._protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001
            self._loop.call_exception_handler({
                "message": f"protocol.{name}() failed", "exception": exc,
                "transport": self, "protocol": self._protocol})

    def _fatal_error(self, exc, message):
        if isinstance(exc, OSError):
            logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message, "exception": exc, "transport": self,
                "protocol": self._protocol})
        self._force_close(exc)

    def _start(self, waiter):
        self._started = True
        if waiter is not None and not waiter.cancelled():
            waiter.set_result(None)
        self._on_change()


class StreamTransport(_TransportBase, asyncio.Transport):
    """An asyncio transport over an lwstack TCP connection (see the module note)."""

    def __init__(self, stack, sock, protocol, waiter=None, server=None, extra=None):
        asyncio.Transport.__init__(self, extra)
        self._init_base(stack, sock, protocol)
        self._conn = _endpoint_of(sock)
        self._server = server
        self._buffer = bytearray()  # what the connection's send buffer had no room for
        self._paused = False        # pause_reading
        self._eof_seen = False      # the peer's FIN was delivered
        self._eof = False           # write_eof called
        self._abort_close = False
        if server is not None:
            server._attach(self)
        self._driver.transports.add(self)
        self._driver.watch(self._conn, self._on_change)
        self._loop.call_soon(self._protocol.connection_made, self)
        self._loop.call_soon(self._start, waiter)

    def __repr__(self):
        state = "closing" if self._closing else "open"
        return (f"<lwstack.asyncio.StreamTransport {state} {self._extra.get('sockname')} -> "
                f"{self._extra.get('peername')}>")

    # -- readiness --------------------------------------------------------------------------

    def _on_change(self):
        """The connection changed (a batch, or an application call): read, write, end."""
        if not self._started or self._conn_lost:
            return
        if self._driver.closed:
            self._force_close(_oserror(errno.ENETDOWN, "the stack was closed"))
            return
        conn = self._conn
        if self._buffer and conn.writable:
            self._write_ready()
            if self._conn_lost:
                return
        if not self._paused and not self._eof_seen and not self._closing and conn.readable:
            self._read_ready()

    def _read_ready(self):
        conn = self._conn
        driver = self._driver
        protocol = self._protocol
        with driver.lock:
            try:
                while not self._paused and not self._closing:
                    try:
                        data = conn.recv(MAX_READ, driver.now())
                    except OSError as exc:
                        self._fatal_error(exc, "Fatal read error on lwstack transport")
                        return
                    if data is None:
                        return
                    if not data:
                        self._read_eof()
                        return
                    try:
                        protocol.data_received(data)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:  # noqa: BLE001
                        self._fatal_error(exc, "Fatal error: protocol.data_received() failed.")
                        return
            finally:
                driver.after_call()

    def _read_eof(self):
        self._eof_seen = True
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001
            self._fatal_error(exc, "Fatal error: protocol.eof_received() failed.")
            return
        if not keep_open:
            self.close()

    def _write_ready(self):
        conn = self._conn
        driver = self._driver
        with driver.lock:
            try:
                n = conn.send(self._buffer, driver.now())
            except OSError as exc:
                self._buffer.clear()
                self._fatal_error(exc, "Fatal write error on lwstack transport")
                return
            finally:
                driver.after_call()
        if n:
            del self._buffer[:n]
            self._maybe_resume_protocol()
        if not self._buffer:
            if self._closing:
                self._conn_lost += 1
                self._call_connection_lost(None)
            elif self._eof:
                self._shutdown_write()

    # -- reading ----------------------------------------------------------------------------

    def is_reading(self):
        """True unless reading is paused or the transport is closing."""
        return not self._paused and not self._closing

    def pause_reading(self):
        """Stop delivering data: it stays in the connection, whose window closes."""
        if self._closing or self._paused:
            return
        self._paused = True

    def resume_reading(self):
        """Deliver data again (what waited comes on the next loop iteration)."""
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop.call_soon(self._on_change)

    # -- writing ----------------------------------------------------------------------------

    def get_write_buffer_size(self):
        """Bytes waiting for room in the connection's send buffer."""
        return len(self._buffer)

    def write(self, data):
        """Queue ``data``; it leaves as soon as the connection's send buffer takes it."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= 5:
                logger.warning("lwstack transport: write() after the connection was lost")
            self._conn_lost += 1
            return
        if isinstance(data, memoryview):
            data = data.cast("B")
        if not self._buffer:
            driver = self._driver
            with driver.lock:
                try:
                    n = self._conn.send(data, driver.now())
                except OSError as exc:
                    self._fatal_error(exc, "Fatal write error on lwstack transport")
                    return
                finally:
                    driver.after_call()
            if n == len(data):
                return
            data = memoryview(data)[n:]
        self._buffer += data
        self._maybe_pause_protocol()

    def can_write_eof(self):
        """True: TCP has a half-close."""
        return True

    def write_eof(self):
        """Send FIN after everything written so far."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self):
        try:
            self._sock.shutdown(lwsocket.SHUT_WR)
        except OSError:
            pass

    # -- closing ----------------------------------------------------------------------------

    def close(self):
        """Stop reading; FIN once the buffered data left; then ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self):
        """Close at once: buffered data is dropped and the peer gets RST."""
        self._abort_close = True
        self._force_close(None)

    def _drop_buffered(self):
        self._buffer.clear()

    def _release(self):
        self._driver.unwatch(self._conn)
        sock = self._sock
        try:
            if self._abort_close and not self._driver.closed:
                sock.setsockopt(lwsocket.SOL_SOCKET, _stdlib.SO_LINGER, _LINGER_ABORT)
            sock.close()
        except (OSError, RuntimeError):
            pass
        self._protocol = None
        server, self._server = self._server, None
        if server is not None:
            server._detach(self)
        self._driver._forget_transport(self)


class DatagramTransport(_TransportBase, asyncio.DatagramTransport):
    """An asyncio datagram transport over an lwstack UDP socket."""

    max_size = 65536

    def __init__(self, stack, sock, protocol, waiter=None, connected=False, extra=None):
        asyncio.DatagramTransport.__init__(self, extra)
        self._init_base(stack, sock, protocol)
        self._endpoint = _endpoint_of(sock)
        self._connected = connected
        self._driver.watch(self._endpoint, self._on_change)
        self._loop.call_soon(self._protocol.connection_made, self)
        self._loop.call_soon(self._start, waiter)

    def __repr__(self):
        state = "closing" if self._closing else "open"
        return f"<lwstack.asyncio.DatagramTransport {state} {self._extra.get('sockname')}>"

    def get_write_buffer_size(self):
        """0: a datagram leaves at once or is dropped (UDP has no back-pressure)."""
        return 0

    def _on_change(self):
        if not self._started or self._conn_lost:
            return
        if self._driver.closed:
            self._force_close(_oserror(errno.ENETDOWN, "the stack was closed"))
            return
        endpoint = self._endpoint
        sock = self._sock
        while endpoint.readable and not self._closing:
            try:
                data, addr = sock.recvfrom(self.max_size)
            except BlockingIOError:
                return
            except OSError as exc:
                try:
                    self._protocol.error_received(exc)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as error:  # noqa: BLE001
                    self._fatal_error(error, "Fatal error: protocol.error_received() failed.")
                    return
                continue
            try:
                self._protocol.datagram_received(data, addr)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # noqa: BLE001
                self._fatal_error(exc, "Fatal error: protocol.datagram_received() failed.")
                return

    def sendto(self, data, addr=None):
        """Send one datagram to ``addr`` (or the connected peer); errors go to the
        protocol's ``error_received``, as asyncio's."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._connected:
            if addr not in (None, self._extra["peername"]):
                raise ValueError(f"Invalid address: must be None or "
                                 f"{self._extra['peername']}")
            addr = None
        if self._conn_lost:
            self._conn_lost += 1
            return
        try:
            if addr is None:
                self._sock.send(data)
            else:
                self._sock.sendto(data, addr)
        except OSError as exc:
            self._protocol.error_received(exc)

    def close(self):
        """Close the endpoint; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, None)

    def abort(self):
        """Same as :meth:`close` (nothing is ever buffered)."""
        self._force_close(None)

    def _release(self):
        self._driver.unwatch(self._endpoint)
        try:
            self._sock.close()
        except OSError:
            pass
        self._protocol = None


# ---------------------------------------------------------------------------------- server

class Server(asyncio.AbstractServer):
    """A listening lwstack TCP socket serving a protocol factory, like asyncio's ``Server``.

    :meth:`wait_closed` returns once :meth:`close` was called and every connection it
    accepted is closed (the behaviour of Python 3.12's asyncio).
    """

    def __init__(self, stack, sock, protocol_factory, backlog):
        self._stack = stack
        self._loop = stack.loop
        self._driver = stack.driver
        self._sock = sock
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        self._listener = None
        self._serving = False
        self._closed = False
        self._transports = set()
        self._waiters = []
        self._serving_forever = None

    def __repr__(self):
        return f"<lwstack.asyncio.Server sockets={self.sockets!r}>"

    # -- asyncio.AbstractServer ----------------------------------------------------------------

    def get_loop(self):
        """The loop serving."""
        return self._loop

    def is_serving(self):
        """True while accepting connections."""
        return self._serving

    @property
    def sockets(self):
        """The listening lwstack socket, in a tuple (empty once closed)."""
        return () if self._closed else (self._sock,)

    def _start_serving(self):
        if self._serving or self._closed:
            return
        self._sock.listen(self._backlog)
        self._listener = _endpoint_of(self._sock)
        self._serving = True
        self._driver.watch(self._listener, self._on_change)
        self._loop.call_soon(self._on_change)

    async def start_serving(self):
        """Start accepting connections (if ``start_serving=False`` was given)."""
        self._start_serving()
        await asyncio.sleep(0)

    async def serve_forever(self):
        """Accept until cancelled; closes the server then."""
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    def close(self):
        """Stop listening (connections not accepted yet are reset, as Linux does);
        connections already accepted go on."""
        if self._closed:
            return
        self._closed = True
        self._serving = False
        if self._listener is not None:
            self._driver.unwatch(self._listener)
        try:
            self._sock.close()
        except OSError:
            pass
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
            self._serving_forever = None
        self._wake_up_waiters()

    async def wait_closed(self):
        """Wait until closed and every accepted connection is gone."""
        if self._closed and not self._transports:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        self.close()
        await self.wait_closed()

    # -- inside ----------------------------------------------------------------------------

    def _on_change(self):
        if not self._serving:
            return
        if self._driver.closed:
            self.close()
            return
        sock = self._sock
        listener = self._listener
        while listener.accept_queue and self._serving:
            try:
                child, addr = sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self._loop.call_exception_handler({
                    "message": "lwstack.asyncio: accept failed", "exception": exc,
                    "socket": sock})
                return
            child.setblocking(False)
            try:
                protocol = self._protocol_factory()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # noqa: BLE001
                self._loop.call_exception_handler({
                    "message": "lwstack.asyncio: the protocol factory failed",
                    "exception": exc, "socket": child})
                child.close()
                continue
            StreamTransport(self._stack, child, protocol, server=self,
                            extra={"peername": addr})

    def _attach(self, transport):
        self._transports.add(transport)

    def _detach(self, transport):
        self._transports.discard(transport)
        if self._closed and not self._transports:
            self._wake_up_waiters()

    def _wake_up_waiters(self):
        if self._transports:
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
