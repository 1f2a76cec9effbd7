"""A port of an in-memory switch (:mod:`vde.memory`) as a phy for the threaded runtime."""
import threading


class MemoryPhy:
    """Frames through a :class:`vde.memory.MemoryPort`, on the given clock."""

    def __init__(self, port, clock):
        self.port = port
        self.clock = clock
        self.max_frame = port.switch.core.max_frame
        self._event = threading.Event()
        port.set_listener(self._event.set)
        self.link_down = False

    def send(self, frame):
        """Hand one frame to the switch."""
        self.port.send(frame, self.clock())
        return True

    def receive(self):
        """Frames due now."""
        return self.port.receive(self.clock())

    def wait(self, timeout):
        """Block until a frame is queued for us, a wake-up, or ``timeout``."""
        due = self.port.next_delivery()
        if due is not None:
            delay = due - self.clock()
            if delay <= 0:
                return
            timeout = delay if timeout is None else min(timeout, delay)
        self._event.wait(timeout)
        self._event.clear()

    def wake(self):
        """Interrupt :meth:`wait`."""
        self._event.set()

    def close(self):
        """Release the switch port."""
        self.port.close()
