"""Whole networks on virtual time, in one process: switch, stacks, loss and delay.

Design note.  A :class:`VirtualNetwork` owns a virtual clock and an in-memory switch
(:class:`vde.memory.MemorySwitch`).  Nothing runs by itself: :meth:`VirtualNetwork.run_until`
repeatedly finds the earliest thing that can happen (a frame due at some port, a stack timer),
jumps the clock there and does it.  A 30-second ARP timeout therefore takes microseconds, and a
run with a given seed is exactly reproducible.

Blocking socket calls on a stack of a virtual network advance the simulation: ``recvfrom``
with a 5-second timeout runs the network until a datagram arrives or 5 virtual seconds pass.
There are no threads here; use a network from one thread.
"""
import math
import random

from lwstack import readiness as _readiness
from lwstack.runtime import DriverBase
from vde.memory import MemorySwitch


class _SimPhy:
    """A memory port on virtual time (the simulation, not a thread, decides when to wait)."""

    def __init__(self, port, network):
        self.port = port
        self.network = network
        self.max_frame = port.switch.core.max_frame
        self.link_down = False

    def send(self, frame):
        self.port.send(frame, self.network.now)
        return True

    def receive(self):
        return self.port.receive(self.network.now)

    def wake(self):
        pass

    def close(self):
        self.port.close()


class SimDriver(DriverBase):
    """Drives a host as part of a :class:`VirtualNetwork`."""

    defers_readiness = True

    def __init__(self, phy, network):
        super().__init__(phy)
        self.network = network

    def now(self):
        """The network's virtual time."""
        return self.network.now

    def after_call(self):
        """Send what an API call produced; the next :meth:`VirtualNetwork.run_until` does the rest."""
        self.flush()
        if self.readiness_pending:
            _readiness.flush(self)

    def wait_for(self, predicate, timeout):
        """Run the network until ``predicate()`` or ``timeout`` virtual seconds.

        Waiting forever on a network where nothing more can happen would hang a real program;
        here it raises, naming the deadlock, instead of returning.
        """
        if self.network.run_until(predicate, math.inf if timeout is None else timeout):
            return True
        if timeout is None:
            raise RuntimeError("virtual network is idle: this call would block forever")
        return False

    def step(self, now):
        """Process frames due now and timers due now; return True if anything happened."""
        host = self.host
        frames = self.phy.receive()
        for frame in frames:
            host.receive(frame, now)
        due = host.poll_at()
        progressed = bool(frames)
        if due is not None and due <= now:
            host.poll(now)
            progressed = True
        self.flush()
        self._changed = False
        if self.readiness_pending:
            _readiness.flush(self)
        return progressed

    def next_event(self):
        """The earliest time this stack has something to do, or None."""
        times = [t for t in (self.phy.port.next_delivery(), self.host.poll_at()) if t is not None]
        return min(times) if times else None

    def close(self):
        """Leave the network (closing the sockets' descriptors)."""
        self.closed = True
        _readiness.close_all(self)
        self.network.drivers.remove(self)
        self.phy.close()


class VirtualNetwork:
    """A virtual-time network: one in-memory switch and the stacks plugged into it.

    ``seed`` makes impairments, MAC addresses and ephemeral ports reproducible.
    """

    #: Guard against a livelock at one instant (e.g. a frame storm between two stacks).
    MAX_STEPS_PER_INSTANT = 1_000_000

    def __init__(self, seed=0, numports=32, start=0.0, **switch_options):
        self.now = float(start)
        self.rng = random.Random(seed)
        self.switch = MemorySwitch(numports, seed=self.rng.getrandbits(32), **switch_options)
        self.drivers = []

    def stack(self, config="", **port_options):
        """A new :class:`lwstack.Stack` on this network; ``port_options`` set impairments
        (``loss``, ``duplicate``, ``reorder``, ``delay``, ``jitter``) on its switch port."""
        from lwstack.stack import Stack
        return Stack(self, config, **port_options)

    def attach(self, **port_options):
        """Plug a new port and return its driver (used by :class:`lwstack.Stack`)."""
        port = self.switch.plug(**port_options)
        driver = SimDriver(_SimPhy(port, self), self)
        self.drivers.append(driver)
        return driver

    def run(self, duration):
        """Advance virtual time by ``duration`` seconds, doing everything that falls due."""
        self.run_until(None, duration)

    def run_until(self, predicate=None, timeout=math.inf):
        """Run until ``predicate()`` is true (return True) or ``timeout`` virtual seconds pass.

        With no predicate, runs for exactly ``timeout`` seconds (which must then be finite).
        """
        if predicate is None and math.isinf(timeout):
            raise ValueError("run_until needs a predicate or a finite timeout")
        deadline = self.now + timeout
        steps = 0
        while True:
            if predicate is not None and predicate():
                return True
            progressed = False
            for driver in list(self.drivers):
                if driver.step(self.now):
                    progressed = True
            if progressed:
                steps += 1
                if steps > self.MAX_STEPS_PER_INSTANT:
                    raise RuntimeError(f"livelock: {steps} steps at t={self.now}")
                continue
            steps = 0
            upcoming = [t for t in (d.next_event() for d in self.drivers) if t is not None]
            nxt = min(upcoming) if upcoming else None
            if nxt is None or nxt > deadline:
                if not math.isinf(deadline):
                    self.now = max(self.now, deadline)
                return predicate is not None and predicate()
            self.now = max(self.now, nxt)
