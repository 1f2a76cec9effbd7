"""The path-MTU cache: RFC 1191 (IPv4) and RFC 8201 (IPv6) path MTU discovery, host side.

Design note
-----------
One entry per destination address (4 or 16 bytes; the family follows the length) holds the
path MTU learnt from an ICMP Fragmentation Needed (RFC 1191) or ICMPv6 Packet Too Big (RFC
8201) about a packet we sent there.  Without an entry the path MTU is the link MTU.

- Only decreases are learnt (RFC 1191 section 6.1, RFC 8201 section 4: a node "MUST NOT
  increase its estimate ... in response to the contents of a Packet Too Big message").  A
  report equal to the estimate restarts its timer; a report at or above the link MTU is
  ignored (it cannot be about our packet, Linux ignores it too).
- Floors.  IPv6 never goes below 1280 (RFC 8201 section 4; RFC 8021 removed the atomic
  fragments that used to go with a smaller report).  IPv4 follows Linux: a report below
  ``min_mtu_v4`` (552 by default, Linux's net.ipv4.route.min_pmtu: 512 bytes of payload plus
  two headers), including the 0 that pre-RFC 1191 routers send, sets the floor and "locks"
  the entry: :meth:`PathMtuCache.dont_fragment` then says False, so the packets go without DF
  and a router with a smaller MTU fragments them instead of black-holing them.  (RFC 1191's
  plateau table for reports of 0 is not used, as Linux has not since 2012.)
- Ageing.  An entry expires ``expires`` seconds (600, Linux's mtu_expires and RFC 8201
  section 5.3's "no less than 5 minutes, 10 recommended") after it was last lowered or
  confirmed, so a path whose MTU grew is tried again at the link MTU.
- The cache is bounded (``max_entries``); when full, the entry nearest to expiry (the one
  learnt longest ago) makes room.

Sans-IO: every method takes ``now`` (seconds); :meth:`PathMtuCache.poll` removes expired
entries, and lookups ignore them anyway.  The host validates the ICMP message against the
packet it quotes before calling :meth:`PathMtuCache.learn` (RFC 8201 section 5.2, RFC 5927).
"""
import collections

__all__ = ["PathMtuCache", "IPV6_MIN_MTU", "LINUX_MIN_PMTU_V4", "DEFAULT_EXPIRES"]

#: RFC 8200 section 5.
IPV6_MIN_MTU = 1280
#: Linux's net.ipv4.route.min_pmtu.
LINUX_MIN_PMTU_V4 = 552
#: RFC 791's smallest MTU every IPv4 link must carry.
IPV4_MIN_MTU = 68
#: Linux's net.ipv4.route.mtu_expires (and RFC 8201 section 5.3's recommendation).
DEFAULT_EXPIRES = 600.0


class _Entry:
    __slots__ = ("mtu", "expires", "locked")

    def __init__(self, mtu, expires, locked):
        self.mtu = mtu
        self.expires = expires
        self.locked = locked


class PathMtuCache:
    """Learnt path MTUs per destination, bounded and ageing.

    ``stats`` counts ``learnt``, ``ignored_increase``, ``clamped``, ``expired`` and
    ``evicted``; ``len()`` is the number of entries.
    """

    def __init__(self, *, max_entries=1024, expires=DEFAULT_EXPIRES,
                 min_mtu_v4=LINUX_MIN_PMTU_V4, min_mtu_v6=IPV6_MIN_MTU):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if expires <= 0:
            raise ValueError("expires must be positive")
        if min_mtu_v4 < IPV4_MIN_MTU or min_mtu_v6 < IPV6_MIN_MTU:
            raise ValueError(f"floors below {IPV4_MIN_MTU} (IPv4) or {IPV6_MIN_MTU} (IPv6)")
        self.max_entries = max_entries
        self.expires = expires
        self.min_mtu_v4 = min_mtu_v4
        self.min_mtu_v6 = min_mtu_v6
        self.stats = collections.Counter()
        # Ordered by the last update, which with one ``expires`` is expiry order.
        self._entries = collections.OrderedDict()

    def __len__(self):
        return len(self._entries)

    def learn(self, dst, mtu, now, *, link_mtu=None):
        """Take a reported next-hop MTU for ``dst``; True if the path MTU estimate went down.

        ``mtu`` is the Fragmentation Needed's Next-Hop MTU (0 from an old router) or the
        Packet Too Big's MTU; ``link_mtu``, when given, is the MTU of the link the packet
        left by, and reports at or above it are ignored.
        """
        entry = self._live(dst, now)
        current = entry.mtu if entry is not None else link_mtu
        if link_mtu is not None and mtu >= link_mtu:
            self.stats["ignored_increase"] += 1
            return False
        floor = self.min_mtu_v6 if len(dst) == 16 else self.min_mtu_v4
        locked = False
        if mtu < floor:
            self.stats["clamped"] += 1
            # Linux: an IPv4 path below the floor is used at the floor, without DF.
            locked = len(dst) == 4
            mtu = floor
        if current is not None and mtu > current:
            self.stats["ignored_increase"] += 1
            return False
        lowered = current is None or mtu < current
        if entry is None:
            if len(self._entries) >= self.max_entries:
                self._entries.popitem(last=False)
                self.stats["evicted"] += 1
            entry = self._entries[dst] = _Entry(mtu, 0.0, False)
        else:
            self._entries.move_to_end(dst)
        entry.mtu = mtu
        entry.locked = entry.locked or locked
        entry.expires = now + self.expires
        if lowered:
            self.stats["learnt"] += 1
        return lowered

    def mtu_for(self, dst, link_mtu, now):
        """The MTU to send to ``dst`` with: the learnt path MTU if any, at most ``link_mtu``."""
        entry = self._live(dst, now)
        if entry is None or entry.mtu >= link_mtu:
            return link_mtu
        return entry.mtu

    def dont_fragment(self, dst, now):
        """False if IPv4 packets to ``dst`` should go without DF: the path reported an MTU
        below the floor (Linux's locked route MTU, see the module note); True otherwise."""
        entry = self._live(dst, now)
        return entry is None or not entry.locked

    def forget(self, dst):
        """Drop what is known about ``dst`` (for example when its route changes)."""
        self._entries.pop(dst, None)

    def poll(self, now):
        """Remove expired entries; return their destinations, oldest first."""
        gone = []
        entries = self._entries
        while entries:
            dst, entry = next(iter(entries.items()))
            if entry.expires > now:
                break
            del entries[dst]
            self.stats["expired"] += 1
            gone.append(dst)
        return gone

    def poll_at(self):
        """When the next entry expires, or None when the cache is empty."""
        if not self._entries:
            return None
        return next(iter(self._entries.values())).expires

    def _live(self, dst, now):
        entry = self._entries.get(dst)
        if entry is not None and entry.expires <= now:
            del self._entries[dst]
            self.stats["expired"] += 1
            return None
        return entry

    def __repr__(self):
        return f"<PathMtuCache {len(self._entries)}/{self.max_entries} entries>"
