"""A VDE plug (unix datagram socket to a vde_switch-compatible switch) as a phy."""
import errno
import os
import select

from vde.plug import open_plug


class PlugPhy:
    """Frames through a :class:`vde.plug.VdePlug`; waits with ``poll`` on the plug and an eventfd."""

    def __init__(self, locator, description="lwstack", timeout=5.0):
        self.plug = open_plug(locator, description=description, timeout=timeout)
        self.max_frame = getattr(self.plug, "max_frame", 9234)
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poller = select.poll()
        self._poller.register(self.plug.fileno(), select.POLLIN)
        self._poller.register(self.plug.control_fileno(), select.POLLIN)
        self._poller.register(self._wake_fd, select.POLLIN)
        self.link_down = False

    def send(self, frame):
        """Send one frame; False if it was dropped (full queue, or the switch is gone)."""
        if self.link_down:
            return False
        try:
            return self.plug.send(frame)
        except ConnectionError:
            self.link_down = True
            return False

    def receive(self):
        """Every frame waiting in the socket (up to a batch)."""
        return self.plug.recv_batch(256)

    def wait(self, timeout):
        """Block until a frame, a wake-up, or ``timeout`` seconds."""
        millis = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
        for fd, _events in self._poller.poll(millis):
            if fd == self._wake_fd:
                try:
                    os.eventfd_read(self._wake_fd)
                except BlockingIOError:
                    pass
            elif fd == self.plug.control_fileno():
                # EOF on the control stream: the switch went away (vde-protocol.md).
                self.link_down = True
                self._poller.unregister(fd)

    def wake(self):
        """Interrupt :meth:`wait` from another thread."""
        try:
            os.eventfd_write(self._wake_fd, 1)
        except OSError as exc:  # counter overflow cannot lose the wake-up
            if exc.errno != errno.EAGAIN:
                raise

    def close(self):
        """Release the switch port."""
        self.plug.close()
        os.close(self._wake_fd)

