"""A VDE plug (unix datagram socket to a vde_switch-compatible switch) as a phy.

Design note.  :class:`vde.plug.VdePlug` does the handshake and owns the sockets; the frames
themselves go through a ``PlugIO`` (:mod:`lwstack.phy.plugio`): the compiled one
(``lwstack.phy._plugio``: one ``ppoll`` to wait, one ``recvmmsg`` per batch, ``send`` or
``sendmmsg`` out) when the accelerated build has it, the pure one otherwise or when
``LWSTACK_PLUGIO=pure`` is set.  :class:`PlugPhy` binds the PlugIO's methods as its own
``wait``/``receive``/``send``/``send_batch``, so the reactor calls C directly, without a
Python frame per call: per ping that path is three system calls (ppoll, recvmmsg, send).
"""
import errno
import os

from vde.plug import open_plug

from lwstack.phy import plugio as _pure

try:
    from lwstack.phy import _plugio as _compiled
except ImportError:  # pure build
    _compiled = None

#: Environment variable: ``pure`` forces the pure-Python PlugIO even when the compiled one is
#: built (benchmarks and tests compare the two).
PLUGIO_ENV = "LWSTACK_PLUGIO"


def plugio_module(compiled=None):
    """The PlugIO module to use: ``compiled`` True/False forces one (True fails with
    ``ValueError`` in the pure build); None picks the compiled one unless ``LWSTACK_PLUGIO=pure``."""
    if compiled is None:
        compiled = _compiled is not None and os.environ.get(PLUGIO_ENV, "") != "pure"
    if not compiled:
        return _pure
    if _compiled is None:
        raise ValueError("compiled=True but lwstack.phy._plugio is not built (pure build)")
    return _compiled


class PlugPhy:
    """Frames through a :class:`vde.plug.VdePlug`; waits with ``poll`` on the plug, its control
    stream and an eventfd.  ``compiled`` chooses the PlugIO (see :func:`plugio_module`)."""

    def __init__(self, locator, description="lwstack", timeout=5.0, compiled=None):
        module = plugio_module(compiled)
        self.plug = open_plug(locator, description=description, timeout=timeout)
        self.max_frame = getattr(self.plug, "max_frame", 9234)
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        #: The frame mover (compiled or pure); its counters are the phy's statistics.
        self.io = io = module.PlugIO(self.plug.fileno(), self.plug.control_fileno(),
                                     self._wake_fd, self.max_frame)
        #: True when the compiled PlugIO moves the frames.
        self.compiled = module is not _pure
        # The reactor calls these per batch: bound straight to the PlugIO, no wrapper frame.
        #: ``wait(timeout)``: block until a frame, a wake-up, the switch hanging up, or
        #: ``timeout`` seconds (None: no limit).
        self.wait = io.wait
        #: ``send(frame)``: send one frame; False if it was dropped (full queue, switch gone).
        self.send = io.send
        #: ``send_batch(frames)``: send a list of frames in order; return how many dropped.
        self.send_batch = io.send_batch
        #: ``receive()``: every frame waiting in the socket, up to 256 (``recv_batch``'s limit).
        self.receive = io.recv_batch

    @property
    def link_down(self):
        """True once the switch dropped us (EOF on the control stream) or vanished."""
        return bool(self.io.hangup or self.io.gone)

    def stats(self):
        """Frames and system calls counted by the PlugIO."""
        io = self.io
        return {name: getattr(io, name) for name in (
            "rx_frames", "rx_oversize", "tx_frames", "tx_dropped", "tx_invalid",
            "recv_calls", "send_calls", "poll_calls")}

    def wake(self):
        """Interrupt :meth:`wait` from another thread."""
        try:
            os.eventfd_write(self._wake_fd, 1)
        except OSError as exc:  # counter overflow cannot lose the wake-up
            if exc.errno != errno.EAGAIN:
                raise

    def close(self):
        """Release the switch port."""
        self.io.close()
        self.plug.close()
        os.close(self._wake_fd)
