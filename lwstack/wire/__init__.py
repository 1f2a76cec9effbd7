"""Packet formats: one module per protocol, each a parser and an emitter over bytes.

Every parser raises :class:`WireError` (a ``ValueError``) with a short ``reason`` for
malformed input; the stack counts drops by that reason.  Nothing here does I/O.
"""


class WireError(ValueError):
    """A malformed packet.  ``reason`` is a short identifier used in drop counters."""

    def __init__(self, reason, detail=""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
