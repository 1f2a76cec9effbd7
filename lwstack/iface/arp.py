"""The ARP neighbour cache (RFC 826, with RFC 1122 section 2.3.2 and Linux's behaviour).

Design note.  One entry per neighbour IPv4 address, in one of these states:

    INCOMPLETE --reply--> REACHABLE --reachable_time--> STALE --used--> PROBE
        |                     ^                                           |
        +--max_probes-->(deleted, queued packets fail)      <--reply------+  (no reply: deleted)

- An INCOMPLETE entry holds the packets waiting for the answer, at most ``max_pending`` per
  neighbour (Linux's unres_qlen idea); the oldest is dropped first.  Requests are broadcast
  every ``retrans_time`` seconds, ``max_probes`` times; then the entry is deleted and its
  packets are handed back as failures so the host can report "host unreachable".
- A STALE entry is still used (its MAC is probably right), but using it moves it to PROBE:
  unicast requests to the known MAC, and deletion if none is answered (a moved or dead host).
- The cache is bounded (``max_entries``).  When full, the least recently confirmed entry that
  has no queued packets is evicted; if every entry is waiting, the new resolution is refused.
- RFC 826's merge rule: a packet from a sender already in the cache refreshes it; a request
  addressed to us creates an entry for its sender (we are about to talk to it anyway).

Sans-IO: methods take ``now`` and return the ARP requests to send; the host builds frames.
"""
import collections

INCOMPLETE = "INCOMPLETE"
REACHABLE = "REACHABLE"
STALE = "STALE"
PROBE = "PROBE"


class NeighbourEntry:
    """The cache's knowledge of one neighbour."""

    __slots__ = ("ip", "mac", "state", "deadline", "probes", "pending", "confirmed")

    def __init__(self, ip, state, now):
        self.ip = ip
        self.mac = None
        self.state = state
        self.deadline = now
        self.probes = 0
        self.pending = collections.deque()
        self.confirmed = now

    def __repr__(self):
        mac = self.mac.hex(":") if self.mac else None
        return f"NeighbourEntry({'.'.join(map(str, self.ip))}, {self.state}, mac={mac})"


class NeighbourCache:
    """A bounded ARP cache with request retries and per-neighbour packet queues."""

    def __init__(self, *, max_entries=512, max_pending=16, reachable_time=30.0,
                 retrans_time=1.0, max_probes=3, stale_time=60.0):
        if max_entries < 1 or max_pending < 1:
            raise ValueError("max_entries and max_pending must be at least 1")
        self.max_entries = max_entries
        self.max_pending = max_pending
        self.reachable_time = reachable_time
        self.retrans_time = retrans_time
        self.max_probes = max_probes
        self.stale_time = stale_time
        self.entries = {}
        self.stats = collections.Counter()

    def lookup(self, ip, now):
        """Return ``(mac, request)`` for sending to ``ip`` right now.

        ``mac`` is None when the caller must queue the packet with :meth:`enqueue`.
        ``request`` is ``None`` or ``(target_ip, target_mac_or_None)``: an ARP request to send
        (broadcast when the MAC is None).
        """
        entry = self.entries.get(ip)
        if entry is None:
            return None, None
        if entry.state == REACHABLE:
            if now < entry.deadline:
                return entry.mac, None
            entry.state = STALE
        if entry.state == STALE:
            # RFC 1122 2.3.2.1: revalidate a stale entry while still using it.
            entry.state = PROBE
            entry.probes = 1
            entry.deadline = now + self.retrans_time
            return entry.mac, (ip, entry.mac)
        return entry.mac, None  # PROBE uses the old MAC; INCOMPLETE has none

    def reachable(self, ip, now):
        """``(mac, valid_until)`` if ``ip`` is REACHABLE now, else None.

        For callers that cache the link header (the TCP fast path): until ``valid_until`` the
        MAC may be used without asking again; after it, :meth:`lookup` revalidates.
        """
        entry = self.entries.get(ip)
        if entry is None or entry.state != REACHABLE or now >= entry.deadline:
            return None
        return entry.mac, entry.deadline

    def enqueue(self, ip, packet, now):
        """Queue ``packet`` until ``ip`` resolves.

        Returns ``(request, dropped)``: the ARP request to broadcast if this starts a
        resolution, and a packet dropped to make room (or the packet itself when the cache is
        full of waiting entries), else None.
        """
        entry = self.entries.get(ip)
        request = None
        if entry is None:
            if not self._make_room():
                self.stats["cache_full"] += 1
                return None, packet
            entry = self.entries[ip] = NeighbourEntry(ip, INCOMPLETE, now)
            entry.probes = 1
            entry.deadline = now + self.retrans_time
            request = (ip, None)
        dropped = None
        if len(entry.pending) >= self.max_pending:
            dropped = entry.pending.popleft()
            self.stats["pending_overflow"] += 1
        entry.pending.append(packet)
        return request, dropped

    def confirm(self, ip, mac, now, create=False):
        """Record that ``ip`` is at ``mac`` (an ARP reply, or a request from it).

        Creates the entry only if ``create`` (RFC 826: the packet was addressed to us).
        Returns the packets that were waiting for this neighbour.
        """
        entry = self.entries.get(ip)
        if entry is None:
            if not create or not self._make_room():
                return ()
            entry = self.entries[ip] = NeighbourEntry(ip, REACHABLE, now)
        if entry.mac is not None and entry.mac != mac:
            self.stats["mac_changed"] += 1
        entry.mac = mac
        entry.state = REACHABLE
        entry.deadline = now + self.reachable_time
        entry.confirmed = now
        entry.probes = 0
        waiting = list(entry.pending)
        entry.pending.clear()
        return waiting

    def poll(self, now):
        """Run retries and expiry.  Returns ``(requests, failed_packets)``."""
        requests = []
        failed = []
        for ip, entry in list(self.entries.items()):
            if entry.state in (INCOMPLETE, PROBE) and now >= entry.deadline:
                if entry.probes >= self.max_probes:
                    del self.entries[ip]
                    self.stats["resolution_failed"] += 1
                    failed.extend(entry.pending)
                    continue
                entry.probes += 1
                entry.deadline = now + self.retrans_time
                requests.append((ip, entry.mac if entry.state == PROBE else None))
            elif entry.state == REACHABLE and now >= entry.deadline:
                entry.state = STALE
            # The same expression as poll_at(): with floats, now - confirmed >= stale_time can be
            # false at the very instant poll_at() named (a virtual-time livelock).
            if entry.state == STALE and now >= entry.confirmed + self.stale_time:
                del self.entries[ip]
        return requests, failed

    def poll_at(self):
        """The earliest time :meth:`poll` has work, or None."""
        earliest = None
        for entry in self.entries.values():
            if entry.state in (REACHABLE, STALE):  # REACHABLE turns STALE lazily on use
                when = entry.confirmed + self.stale_time
            else:
                when = entry.deadline
            if earliest is None or when < earliest:
                earliest = when
        return earliest

    def _make_room(self):
        if len(self.entries) < self.max_entries:
            return True
        victims = [e for e in self.entries.values() if not e.pending]
        if not victims:
            return False
        victim = min(victims, key=lambda e: e.confirmed)
        del self.entries[victim.ip]
        self.stats["evicted"] += 1
        return True
