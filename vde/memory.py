"""An in-memory switch: several stacks in one process, wired through a :class:`SwitchCore`.

Design
------
No sockets and no clock: :meth:`MemoryPort.send` takes ``now`` and forwards the frame at once
through the shared core into the *delivery queue* of every endpoint on the output ports;
:meth:`MemoryPort.receive` hands out the frames whose delivery time has come.  Driven by a
virtual clock, a whole network runs in milliseconds and exactly reproducibly; driven by
``time.monotonic()`` and the listener callback, it serves real-time reactors too.

Impairments (loss, duplication, reordering, delay, jitter) belong to the *egress* side of a
port: they act on the frames the switch delivers to that port's endpoint, as a wirefilter
between the switch and that host would.  Impairing both ends of a path impairs both
directions (wirefilter's LR and RL).  For each frame, in this order:

1. lost with probability ``loss`` (counted ``lost``);
2. due at ``now + delay + uniform(0, jitter)``;
3. with probability ``reorder`` held back ``reorder_delay`` seconds more, so frames sent after
   it overtake it (counted ``reordered``);
4. with probability ``duplicate`` queued twice (counted ``duplicated``).

Frames due at the same time are delivered in the order they were queued.  All randomness comes
from one ``random.Random(seed)`` per switch, drawn under the switch lock, so the same seed and
the same sequence of calls give the same deliveries.

Each delivery queue is bounded (``queue_limit`` frames, default 1024, like a unix socket's
finite queue): a frame that finds it full is dropped, counted in the port's ``queue_full``
statistic and reported to the core with ``count_drop(port, 'queue_full')``.

Several endpoints may plug into the same port number; a frame from one of them is not
delivered to the others (the core never sends a frame back to its ingress port), as with
vde_switch.  One lock per switch guards the core and the queues; listener callbacks run after
it is released, in the sending thread.
"""
import errno
import heapq
import os
import random
import threading

from vde.core import SwitchCore

#: Default bound on frames waiting in one endpoint's delivery queue.
DEFAULT_QUEUE_LIMIT = 1024
#: Default extra delay (seconds) of a frame picked for reordering.
DEFAULT_REORDER_DELAY = 0.001


def _closed_error():
    return OSError(errno.EBADF, os.strerror(errno.EBADF))


class MemorySwitch:
    """A switch living in this process.  ``core`` is its :class:`~vde.core.SwitchCore`."""

    def __init__(self, numports=32, *, seed=0, queue_limit=DEFAULT_QUEUE_LIMIT, **core_kwargs):
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be at least 1, not {queue_limit}")
        self.core = SwitchCore(numports, **core_kwargs)
        self.queue_limit = queue_limit
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._endpoints = {}        # port number -> list of MemoryPort
        self._sequence = 0          # tie-breaker: equal delivery times keep queueing order

    def plug(self, port=0, *, description="", loss=0.0, duplicate=0.0, reorder=0.0,
             delay=0.0, jitter=0.0, reorder_delay=DEFAULT_REORDER_DELAY):
        """Plug a new endpoint into ``port`` (0: the first free one); return its MemoryPort.

        Probabilities are in [0, 1]; ``delay``, ``jitter`` and ``reorder_delay`` in seconds.
        Raises :class:`~vde.core.SwitchError` like :meth:`SwitchCore.open_port`.
        """
        for name, probability in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], not {probability}")
        if delay < 0 or jitter < 0 or reorder_delay < 0:
            raise ValueError("delay, jitter and reorder_delay must not be negative")
        with self._lock:
            number = self.core.open_port(port)
            endpoint = MemoryPort(self, number, description, loss, duplicate, reorder,
                                  delay, jitter, reorder_delay)
            self._endpoints.setdefault(number, []).append(endpoint)
        return endpoint

    def _send(self, sender, frame, now):
        to_wake = []
        with self._lock:
            if sender.closed:
                raise _closed_error()
            out_ports = self.core.forward(sender.number, frame, now)
            for number in out_ports:
                for endpoint in self._endpoints[number]:
                    if self._enqueue(endpoint, frame, now) and endpoint.listener is not None:
                        to_wake.append(endpoint.listener)
        for listener in to_wake:
            listener()

    def _enqueue(self, endpoint, frame, now):
        """Apply ``endpoint``'s impairments and queue ``frame``; True if anything was queued."""
        rand = self._random.random
        stats = endpoint.stats
        if endpoint.loss and rand() < endpoint.loss:
            stats["lost"] += 1
            return False
        due = now + endpoint.delay
        if endpoint.jitter:
            due += rand() * endpoint.jitter
        if endpoint.reorder and rand() < endpoint.reorder:
            due += endpoint.reorder_delay
            stats["reordered"] += 1
        copies = 1
        if endpoint.duplicate and rand() < endpoint.duplicate:
            copies = 2
            stats["duplicated"] += 1
        queued = False
        for _ in range(copies):
            if len(endpoint.queue) >= self.queue_limit:
                stats["queue_full"] += 1
                self.core.count_drop(endpoint.number, "queue_full")
                continue
            self._sequence += 1
            heapq.heappush(endpoint.queue, (due, self._sequence, frame))
            queued = True
        return queued

    def _receive(self, endpoint, now):
        with self._lock:
            if endpoint.closed:
                raise _closed_error()
            queue = endpoint.queue
            frames = []
            while queue and queue[0][0] <= now:
                frames.append(heapq.heappop(queue)[2])
            return frames

    def _next_delivery(self, endpoint):
        with self._lock:
            return endpoint.queue[0][0] if endpoint.queue else None

    def _close(self, endpoint):
        with self._lock:
            if endpoint.closed:
                return
            endpoint.closed = True
            endpoint.queue.clear()
            siblings = self._endpoints[endpoint.number]
            siblings.remove(endpoint)
            if not siblings:
                del self._endpoints[endpoint.number]
            self.core.close_port(endpoint.number)


class MemoryPort:
    """One endpoint plugged into a :class:`MemorySwitch`; made by :meth:`MemorySwitch.plug`.

    ``stats`` counts this endpoint's impairments: ``lost``, ``duplicated``, ``reordered`` and
    ``queue_full`` (frames dropped because its delivery queue was full).
    """

    def __init__(self, switch, number, description, loss, duplicate, reorder, delay, jitter,
                 reorder_delay):
        self.switch = switch
        self.number = number
        self.description = description
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay = delay
        self.jitter = jitter
        self.reorder_delay = reorder_delay
        self.stats = {"lost": 0, "duplicated": 0, "reordered": 0, "queue_full": 0}
        self.queue = []
        self.listener = None
        self.closed = False

    def send(self, frame, now):
        """Send ``frame`` (bytes-like) into the switch at time ``now``; it is copied if mutable."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        self.switch._send(self, frame, now)

    def receive(self, now):
        """Remove and return, in delivery order, the frames due for this endpoint by ``now``."""
        return self.switch._receive(self, now)

    def next_delivery(self):
        """The earliest delivery time of a queued frame, or None if nothing is queued."""
        if self.closed:
            raise _closed_error()
        return self.switch._next_delivery(self)

    def set_listener(self, callback):
        """Call ``callback()`` (no arguments, no lock held) whenever a frame is queued here."""
        self.listener = callback

    def close(self):
        """Leave the switch: the port is released; later send/receive raise OSError(EBADF)."""
        self.switch._close(self)

    def __repr__(self):
        state = "closed" if self.closed else f"{len(self.queue)} queued"
        return f"<MemoryPort {self.number} {self.description!r} {state}>"
