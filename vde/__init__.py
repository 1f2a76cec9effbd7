"""vde: a VDE-compatible virtual Ethernet switch and the plug protocol.

- :mod:`vde.core`: the sans-IO switch (forwarding database, flooding, counters).
- :mod:`vde.protocol`: vde_switch's control-protocol messages and the stream framing.
- :mod:`vde.locator`: vdeplug4 locators (``vde:///tmp/sw[3]``).
- :mod:`vde.plug`: a client plug for a vde_switch-compatible switch.
- :mod:`vde.server`: the unix-socket switch daemon and its management console.
- :mod:`vde.memory`: an in-memory switch for stacks in one process, with impairments.
"""
