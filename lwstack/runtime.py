"""Runtimes: what drives a :class:`~lwstack.iface.host.Host` in real time.

Design note.  One reactor thread per stack, and no thread hop per frame:

- The reactor sleeps in the phy's ``wait`` (``poll`` on the switch socket) until frames arrive
  or the host's next timer is due, then takes the stack lock once for the whole batch, feeds
  every frame to the host, runs due timers, sends the host's output, and wakes application
  threads only if some endpoint changed.
- Application threads call into the host directly under the same lock and send their own
  frames from their own thread.  If a call made the next timer earlier (an ARP request now
  waits for an answer), the reactor is woken so it can shorten its sleep.
- A stack with nothing to do sleeps in ``poll`` with no timeout: no CPU at all.
- The output of a batch leaves in one ``phy.send_batch`` call when the phy has one (the VDE
  plug: ``sendmmsg``).  With the compiled plug I/O (:mod:`lwstack.phy._plugio`) a ping costs
  the reactor three system calls (ppoll, recvmmsg, send) and one Python-level ``host.receive``.

- Descriptors (``socket.fileno()``, :mod:`lwstack.readiness`): endpoints whose socket has one
  mark themselves while the batch runs; the batch ends by bringing the marked descriptors up
  to date (one system call per readiness bit that flipped), under the lock, before waking
  anyone.  A stack whose sockets never had a descriptor pays one empty-list test per batch.

The virtual-time runtime for tests lives in :mod:`lwstack.sim`; both share
:class:`DriverBase`, so sockets see one interface: a lock, a condition, ``now()``,
``flush()`` and ``wait_for()``.
"""
import threading
import time
import weakref

from lwstack import readiness as _readiness


class DriverBase:
    """What a socket needs from whatever drives the stack."""

    #: True when the driver brings descriptors up to date at the end of each batch
    #: (:func:`lwstack.readiness.flush`); False: each endpoint change updates its descriptor
    #: at once.
    defers_readiness = False

    def __init__(self, phy):
        self.phy = phy
        self.host = None
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.closed = False
        self._changed = False
        #: :class:`lwstack.readiness.Readiness` objects marked during the current batch.
        self.readiness_pending = []
        #: Every live descriptor pair of this stack's sockets (closed with the stack).
        self.descriptors = weakref.WeakSet()

    def attach(self, host):
        """Start driving ``host``; endpoints report readiness through :meth:`endpoint_changed`."""
        self.host = host
        self.flush()

    def endpoint_changed(self, endpoint):
        """Called by endpoints (under the lock) when they become readable or get an error."""
        self._changed = True

    def flush(self):
        """Send every frame the host has produced (caller holds the lock or is single-threaded)."""
        outbox = self.host.outbox
        if outbox:
            send = self.phy.send
            for frame in outbox:
                if not send(frame):
                    self.host.stats["drop.tx_queue_full"] += 1
            outbox.clear()


class ThreadedDriver(DriverBase):
    """Drives a host on the monotonic clock with one reactor thread (see the module note)."""

    defers_readiness = True

    def __init__(self, phy, clock=time.monotonic, name="lwstack"):
        super().__init__(phy)
        self.now = clock
        self._deadline = None
        self._send_batch = getattr(phy, "send_batch", None)
        self._thread = threading.Thread(target=self._run, name=f"{name}-reactor", daemon=True)

    def attach(self, host):
        """Start driving ``host`` and start the reactor thread."""
        super().attach(host)
        self._thread.start()

    def after_call(self):
        """After an API call under the lock: send its frames, re-arm the reactor if needed,
        update the descriptors the call changed."""
        self.flush()
        if self.readiness_pending:
            _readiness.flush(self)
        due = self.host.poll_at()
        if due is not None and (self._deadline is None or due < self._deadline):
            self._deadline = due
            self.phy.wake()

    def wait_for(self, predicate, timeout):
        """Block (lock held) until ``predicate()`` or ``timeout`` seconds; return the predicate."""
        return self.cond.wait_for(predicate, timeout)

    def flush(self):
        """Send every frame the host has produced (caller holds the lock): one ``send_batch``
        call when the phy has it (the VDE plug: ``sendmmsg``), else frame by frame."""
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

    def _run(self):
        # The per-batch path, kept short: a ping costs one wait, one receive, one host.receive
        # and one send.  Bound methods are looked up once; with the compiled VDE plug, wait,
        # receive and send_batch are C functions (lwstack.phy._plugio).
        host = self.host
        phy = self.phy
        lock = self.lock
        clock = self.now
        wait = phy.wait
        receive = phy.receive
        host_receive = host.receive
        poll_at = host.poll_at
        flush = self.flush
        flush_readiness = _readiness.flush
        with lock:
            self._deadline = poll_at()
        while not self.closed:
            # One lock round trip per batch: the deadline was computed at the end of the last
            # one; an application thread that arms an earlier timer lowers it and wakes us.
            deadline = self._deadline
            if deadline is None:
                wait(None)
            else:
                timeout = deadline - clock()
                wait(timeout if timeout > 0.0 else 0.0)
            if self.closed:
                break
            frames = receive()
            with lock:
                now = clock()
                for frame in frames:
                    host_receive(frame, now)
                if host.outbox:
                    flush()               # answers leave before timers run
                due = poll_at()
                if due is not None and due <= now:
                    host.poll(now)
                    flush()
                    due = poll_at()
                self._deadline = due
                if self.readiness_pending:
                    flush_readiness(self)
                if self._changed:
                    self._changed = False
                    self.cond.notify_all()

    def close(self):
        """Stop the reactor, wake every waiter, close the sockets' descriptors, release the
        phy."""
        with self.lock:
            self.closed = True
            self.cond.notify_all()
            _readiness.close_all(self)
        self.phy.wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.phy.close()
