"""The switch itself, without I/O: a learning Ethernet switch as a pure state machine.

Design
------
:class:`SwitchCore` owns the ports, the MAC table and the counters.  It never touches a socket
or the clock: the caller passes each received frame and the current time (float seconds, any
monotonic origin) to :meth:`SwitchCore.forward`, which answers with the port numbers the frame
must go out on.  The unix-socket daemon (:mod:`vde.server`) and the in-memory switch
(:mod:`vde.memory`) both drive this one core, so they forward identically.

Behaviour follows vde_switch 2.3.2 (see shared/reference/vde-protocol.md) with these choices:

- **Frame size.**  Frames shorter than 14 bytes are dropped (reason ``'runt'``, also for an
  802.1Q frame too short to hold its tag).  Frames longer than ``max_frame`` are dropped
  (``'oversize'``), never truncated: vde_switch truncates to 1518 bytes, which silently breaks
  jumbo frames; the default 9234 is vdeplug4's own limit (9216-byte MTU).
- **Invalid source.**  A frame whose source MAC has the group bit set, or is all zeros, is
  dropped and counted as ``'bad_source'`` (as the Linux bridge does): no station sends from
  such an address, and learning it would poison the table.
- **Bounded MAC table (vde_switch has no cap).**  At most ``max_mac_entries`` entries.  When a
  new address arrives at a full table, expired entries are swept first (at most once per
  expiry horizon, so a flood against a full table costs O(1) a frame, not a scan); if the table
  is still full the address is *not learned* and ``'mac_table_full'`` is counted on the ingress
  port.  The frame itself is still forwarded (flooded if its destination is unknown), so a MAC
  flood degrades the switch towards a hub instead of evicting the live stations' entries.
- **Ageing and moves.**  An entry not refreshed for ``expire`` seconds is treated as unknown at
  once (lookups check the age) and removed by :meth:`expire_entries`, which the I/O layer runs
  at :meth:`poll_at` (every 2 s while the table is not empty, as vde_switch's GC).  A MAC seen
  on a different port re-learns to that port only if its entry was last refreshed more than
  ``min_persist`` seconds ago; otherwise the entry keeps its port (vde_switch's protection
  against flapping), and the frame is forwarded as usual.
- **VLANs, minimal.**  Each open port is an *untagged* member of one VLAN (``untagged_vlan``,
  0 by default, changed with :meth:`set_port_vlan`); learning and flooding stay inside the
  VLAN.  Tagged (trunk) membership is not supported, so no frame ever needs a tag added or
  removed and :meth:`forward` can return port numbers only.  Consequently an 802.1Q frame with
  a non-zero VID is never for a VLAN enabled on the port and is dropped (``'vlan'``); a
  priority-tagged frame (VID 0) belongs to the port's untagged VLAN and is forwarded unchanged
  (vde_switch strips that tag; receivers must accept it either way, IEEE 802.1Q 6.9).
- **Hub mode** sends every frame to all other open ports of the ingress VLAN and learns nothing
  (the table of a vde_switch started with ``-x`` stays empty).
- **Ports.**  :attr:`SwitchCore.ports` holds the *open* ports only: a port exists while at
  least one endpoint uses it; when the last endpoint leaves, the port, its counters, its VLAN
  and its MAC entries go away (vde_switch keeps an inactive port's counters; nobody needed it).
- **Counters.**  Every frame handed to :meth:`forward` counts as received on its port (dropped
  ones too: ``frames_in`` is what arrived); each returned port counts it as sent.  If the I/O
  layer then fails to deliver, it reports that with :meth:`count_drop`.

Speed
-----
:meth:`forward` runs once a frame.  It allocates as little as Python allows: MAC-table keys are
the 6-byte slices themselves for VLAN 0 (MAC + 2-byte VID otherwise), a learned entry carries
a ready-made one-element tuple of its port, and each port carries the tuple of ports it floods
to, rebuilt only when a port opens, closes or changes VLAN.  ``vde/core.pxd`` gives Cython the
C types; the module also runs unchanged as plain Python.
"""
import errno

#: vde_switch's garbage-collection interval (seconds).
GC_INTERVAL = 2.0
#: The shortest frame anyone forwards: two MAC addresses and an EtherType.
MIN_FRAME = 14
#: vdeplug4's largest frame (a 9216-byte MTU plus Ethernet and 802.1Q headers and slack).
DEFAULT_MAX_FRAME = 9234
#: Highest 802.1Q VLAN identifier.
MAX_VLAN = 4094

_TPID_8021Q_HIGH = 0x81
_TPID_8021Q_LOW = 0x00
_ZERO_MAC = bytes(6)


class SwitchError(OSError):
    """A switch operation that cannot be done, with an errno (ENOSPC, EINVAL, EADDRINUSE)."""

    def __init__(self, code, message):
        super().__init__(code, message)


class Port:
    """An open switch port and its counters.

    ``endpoints`` is how many clients share the port.  ``drops`` maps a reason (``'runt'``,
    ``'oversize'``, ``'vlan'``, ``'bad_source'``, ``'mac_table_full'``, or whatever the I/O
    layer reports, e.g. ``'queue_full'``) to a count.  ``flood`` is the tuple of other open
    ports in the same VLAN: where a frame from this port goes when its destination is unknown.
    """

    def __init__(self, number):
        self.number = number
        self.endpoints = 0
        self.untagged_vlan = 0
        self.vlan_suffix = b""
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.drops = {}
        self.flood = ()
        self.flood_ports = ()
        self.only_me = (number,)

    def count_drop(self, reason):
        """Count one frame dropped for ``reason``."""
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def reset_counters(self):
        """Zero the frame, byte and drop counters."""
        self.frames_in = self.bytes_in = self.frames_out = self.bytes_out = 0
        self.drops = {}

    def __repr__(self):
        return (f"Port({self.number}, endpoints={self.endpoints}, vlan={self.untagged_vlan}, "
                f"in={self.frames_in}, out={self.frames_out}, drops={self.drops})")


class MacEntry:
    """Where a MAC address (in one VLAN) was last seen, and when."""

    def __init__(self, mac, vlan, port, now):
        self.mac = mac
        self.vlan = vlan
        self.port = port
        self.out = port.only_me
        self.last_seen = now


class SwitchCore:
    """A sans-IO learning switch: ports, MAC table, flooding, counters.  See the module notes."""

    def __init__(self, numports=32, *, hub=False, max_mac_entries=4096, expire=100.0,
                 max_frame=DEFAULT_MAX_FRAME, min_persist=3.0):
        if numports < 1:
            raise ValueError(f"numports must be at least 1, not {numports}")
        if max_mac_entries < 1:
            raise ValueError(f"max_mac_entries must be at least 1, not {max_mac_entries}")
        if max_frame < MIN_FRAME:
            raise ValueError(f"max_frame must be at least {MIN_FRAME}, not {max_frame}")
        if expire <= 0 or min_persist < 0:
            raise ValueError("expire must be positive and min_persist not negative")
        self.numports = numports
        self.hub = bool(hub)
        self.max_mac_entries = max_mac_entries
        self.expire = float(expire)
        self.max_frame = max_frame
        self.min_persist = float(min_persist)
        self.ports = {}
        self._table = [None] * (numports + 1)   # port number -> open Port, or None
        self._macs = {}                          # key (MAC, or MAC + VID) -> MacEntry
        self._gc_due = None                      # when expire_entries should run next
        self._full_sweep_due = float("-inf")     # a full table is not swept again before this

    # ----------------------------------------------------------------- ports

    def open_port(self, requested=0):
        """Attach one endpoint to port ``requested`` (0: the first free port >= 1).

        A port already open may be requested again: its endpoint count grows.  Returns the
        port number.  Raises :class:`SwitchError` with EINVAL for a port out of range and
        ENOSPC when no port is free.
        """
        if requested == 0:
            for number in range(1, self.numports + 1):
                if self._table[number] is None:
                    requested = number
                    break
            else:
                raise SwitchError(errno.ENOSPC, f"no free port (all {self.numports} in use)")
        elif not 1 <= requested <= self.numports:
            raise SwitchError(errno.EINVAL, f"port {requested} out of range 1..{self.numports}")
        port = self._table[requested]
        if port is None:
            port = Port(requested)
            self._table[requested] = port
            self.ports[requested] = port
            self._rebuild_flood_sets()
        port.endpoints += 1
        return requested

    def close_port(self, port):
        """Detach one endpoint from ``port``; the last one closes it and forgets its MACs."""
        state = self._open(port)
        state.endpoints -= 1
        if state.endpoints > 0:
            return
        self._table[port] = None
        del self.ports[port]
        self._forget_port(state)
        self._rebuild_flood_sets()

    def set_port_vlan(self, port, vlan):
        """Make open ``port`` an untagged member of ``vlan`` (0..4094); its MACs are forgotten."""
        state = self._open(port)
        if not 0 <= vlan <= MAX_VLAN:
            raise SwitchError(errno.EINVAL, f"VLAN {vlan} out of range 0..{MAX_VLAN}")
        state.untagged_vlan = vlan
        state.vlan_suffix = vlan.to_bytes(2, "big") if vlan else b""
        self._forget_port(state)
        self._rebuild_flood_sets()

    def set_numports(self, numports):
        """Change the number of ports; EADDRINUSE if an open port would fall off the end."""
        if numports < 1:
            raise SwitchError(errno.EINVAL, f"numports must be at least 1, not {numports}")
        if any(number > numports for number in self.ports):
            raise SwitchError(errno.EADDRINUSE, f"a port above {numports} is in use")
        table = [None] * (numports + 1)
        for number, port in self.ports.items():
            table[number] = port
        self._table = table
        self.numports = numports

    def _open(self, port):
        if not 1 <= port <= self.numports or self._table[port] is None:
            raise SwitchError(errno.EINVAL, f"port {port} is not open")
        return self._table[port]

    def _rebuild_flood_sets(self):
        for port in self.ports.values():
            peers = tuple(other for number, other in sorted(self.ports.items())
                          if other is not port and other.untagged_vlan == port.untagged_vlan)
            port.flood_ports = peers
            port.flood = tuple(other.number for other in peers)

    def _forget_port(self, port):
        stale = [key for key, entry in self._macs.items() if entry.port is port]
        for key in stale:
            del self._macs[key]

    # ------------------------------------------------------------- data path

    def forward(self, in_port, frame, now):
        """Return the ports ``frame`` (received on ``in_port`` at ``now``) must go out on.

        ``frame`` is bytes, bytearray or memoryview; it is not kept.  The result never contains
        ``in_port``; it is empty for a dropped frame (counted by reason on ``in_port``) and for
        a frame addressed to a station on ``in_port`` itself.  Raises :class:`SwitchError`
        (EINVAL) if ``in_port`` is not open.
        """
        if in_port < 1 or in_port > self.numports:
            raise SwitchError(errno.EINVAL, f"port {in_port} is not open")
        port = self._table[in_port]
        if port is None:
            raise SwitchError(errno.EINVAL, f"port {in_port} is not open")
        length = len(frame)
        port.frames_in += 1
        port.bytes_in += length
        if length < MIN_FRAME:
            port.count_drop("runt")
            return ()
        if length > self.max_frame:
            port.count_drop("oversize")
            return ()
        if frame[12] == _TPID_8021Q_HIGH and frame[13] == _TPID_8021Q_LOW:
            if length < MIN_FRAME + 4:
                port.count_drop("runt")
                return ()
            if (frame[14] & 0x0F) or frame[15]:
                port.count_drop("vlan")
                return ()
        if frame[6] & 1:
            port.count_drop("bad_source")
            return ()
        source = frame[6:12]
        if type(source) is not bytes:
            source = bytes(source)
        if source == _ZERO_MAC:
            port.count_drop("bad_source")
            return ()

        if self.hub:
            out = port.flood
        else:
            if port.untagged_vlan:
                source = source + port.vlan_suffix
            self._learn(source, port, now)
            if frame[0] & 1:
                out = port.flood
            else:
                destination = frame[0:6]
                if type(destination) is not bytes:
                    destination = bytes(destination)
                if port.untagged_vlan:
                    destination = destination + port.vlan_suffix
                entry = self._macs.get(destination)
                if entry is None or now - entry.last_seen > self.expire:
                    out = port.flood
                elif entry.port is port:
                    return ()
                else:
                    target = entry.port
                    target.frames_out += 1
                    target.bytes_out += length
                    return entry.out
        for target in port.flood_ports:
            target.frames_out += 1
            target.bytes_out += length
        return out

    def _learn(self, key, port, now):
        """Record that ``key`` (MAC, or MAC + VID) was seen on ``port`` at ``now``."""
        entry = self._macs.get(key)
        if entry is not None:
            if entry.port is not port:
                if now - entry.last_seen <= self.min_persist:
                    return
                entry.port = port
                entry.out = port.only_me
            entry.last_seen = now
            return
        if len(self._macs) >= self.max_mac_entries:
            if now > self._full_sweep_due:
                self.expire_entries(now)
            if len(self._macs) >= self.max_mac_entries:
                port.count_drop("mac_table_full")
                return
        self._macs[key] = MacEntry(key[:6], port.untagged_vlan, port, now)
        if self._gc_due is None:
            self._gc_due = now + GC_INTERVAL

    def count_drop(self, port, reason):
        """Count a frame for ``port`` dropped by the I/O layer (e.g. ``'queue_full'``)."""
        state = self._table[port] if 1 <= port <= self.numports else None
        if state is not None:
            state.count_drop(reason)

    # --------------------------------------------------------------- MAC table

    def expire_entries(self, now):
        """Remove the entries not refreshed for ``expire`` seconds; return how many."""
        horizon = now - self.expire
        stale = []
        oldest = None
        for key, entry in self._macs.items():
            if entry.last_seen < horizon:
                stale.append(key)
            elif oldest is None or entry.last_seen < oldest:
                oldest = entry.last_seen
        for key in stale:
            del self._macs[key]
        # A full table gains nothing from another sweep before its oldest entry can expire.
        self._full_sweep_due = now if oldest is None else oldest + self.expire
        self._gc_due = now + GC_INTERVAL if self._macs else None
        return len(stale)

    def poll_at(self):
        """When :meth:`expire_entries` should next run (None: the table is empty)."""
        return self._gc_due

    def lookup(self, mac, vlan=0):
        """The port ``mac`` (6 bytes) was learned on in ``vlan``, or None.

        This is the table as stored: an entry past its age but not yet collected by
        :meth:`expire_entries` is still reported (``forward`` already ignores it).
        """
        entry = self._macs.get(bytes(mac) + vlan.to_bytes(2, "big") if vlan else bytes(mac))
        return None if entry is None else entry.port.number

    def mac_entries(self):
        """The learned entries, as (mac, vlan, port, last_seen) tuples."""
        return [(entry.mac, entry.vlan, entry.port.number, entry.last_seen)
                for entry in self._macs.values()]

    def mac_count(self):
        """How many entries the MAC table holds."""
        return len(self._macs)

    def clear_macs(self):
        """Forget every learned address."""
        self._macs.clear()
        self._gc_due = None

    def reset_counters(self, port=None):
        """Zero the counters of ``port``, or of every open port."""
        if port is None:
            for state in self.ports.values():
                state.reset_counters()
        else:
            self._open(port).reset_counters()
