"""IPv6 neighbour discovery for a host (RFC 4861): the neighbour cache with unreachability
detection, the default router and prefix lists, next-hop determination and redirects.

Design note.

*Neighbour cache* (:class:`NeighbourCache`, RFC 4861 7.3.2 and appendix C).  One entry per
neighbour address::

    (none) --send--> INCOMPLETE --NA, S=1--> REACHABLE --ReachableTime--> STALE
                        |   \\--NA, S=0 / NS--> STALE        ^                |  send
      3 multicast NS unanswered: deleted,                    |  solicited NA  v
      queued packets returned as failed          REACHABLE <-+-- DELAY --5 s--> PROBE
                                                 (or upper-layer confirm)   3 unicast NS
                                                                            unanswered: deleted

- REACHABLE turns STALE lazily: an entry is REACHABLE while ``now < deadline``; every method
  that looks at it first moves an expired one to STALE (so no timer fires every ReachableTime).
- Sending through a STALE entry uses its MAC and moves it to DELAY; DELAY gives upper layers
  DELAY_FIRST_PROBE_TIME to confirm reachability (:meth:`NeighbourCache.confirm`, 7.3.1: a
  TCP ACK for new data), then PROBE sends unicast solicitations to the cached MAC.
- STALE entries nobody uses are deleted after ``stale_time`` (Linux's gc_stale_time); the
  cache is bounded, and when full the least recently updated entry with no queued packets goes.
- ReachableTime is BaseReachableTime times a random factor in [0.5, 1.5] (6.3.2), drawn again
  when an RA changes BaseReachableTime and, lazily, every ``recompute_interval`` (6.3.4 asks for
  "at least every few hours"; Linux uses 300 s).
- An INCOMPLETE entry that learns its MAC while packets wait goes to DELAY rather than STALE:
  the waiting packets are sent at once, and sending through STALE means DELAY (7.3.3).

The cache has the shape of :class:`lwstack.iface.arp.NeighbourCache` (lookup / reachable /
enqueue / poll / poll_at / stats, requests as ``(target, mac_or_None)``), so the host drives
both the same way.  It is not one shared core with ARP: ARP's cache has no DELAY state and
revalidates STALE entries at once (RFC 1122 2.3.2.1), and the host's ARP behaviour is tested as
it is.  This cache is address-length agnostic, so ARP could later move onto it (as Linux's
neighbour subsystem serves both) by a deliberate change in the host.

*Routers, prefixes, destinations* (:class:`NeighbourDiscovery`, 5.2, 6.3.4, 6.3.6, 8.3).  It
owns a :class:`NeighbourCache` and adds the default router list, the on-link prefix list and a
destination cache (destination -> next hop).  Next-hop determination: multicast and link-local
destinations are on-link; then the destination cache (which holds redirects); then the longest
on-link prefix; then a default router, remembered per destination so a destination keeps its
router until that router goes away or fails NUD.  No router: unreachable (RFC 4861 5.2 no longer
assumes on-link).  Default router selection (6.3.6): REACHABLE routers first, then routers in
any other state but INCOMPLETE, else round robin over all.  All lists are bounded.

Sans-IO: messages arrive as already-parsed fields (``RouterAdvert``, keyword arguments), time
is the float ``now`` in seconds; solicitations are returned as ``(target, mac_or_None)`` and
:func:`solicitation` turns one into an ``"ns"`` record the host can build a frame from.

How a host drives it, with :mod:`lwstack.iface.slaac` and :mod:`lwstack.iface.mld` beside it:

- send: ``hop = nd.next_hop(dst, now)`` (None: unreachable), then ``nd.cache.lookup(hop, now)``
  and, without a MAC, ``nd.cache.enqueue(hop, packet, now)`` as with the ARP cache;
- NS in: if ``slaac.receive_ns(...)`` is True (a tentative target) stop; else
  ``nd.receive_ns(src, slla, now)`` and answer with an NA when the target is ours;
- NA in: if ``slaac.receive_na(...)`` is True stop; else ``nd.receive_na(...)``;
- RA in: ``nd.receive_ra(ra, now)`` and ``slaac.receive_ra(ra, now)``; Redirect in:
  ``nd.receive_redirect(...)``; a TCP ACK for new data: ``nd.cache.confirm(hop, now)``;
- timers: ``nd.poll(now)`` gives requests (send :func:`solicitation` of each) and failed
  packets (ICMPv6 destination unreachable, code 3 "address unreachable").
"""
import collections
import math
import random
from dataclasses import dataclass

# RFC 4861 section 10: host constants.
MAX_MULTICAST_SOLICIT = 3
MAX_UNICAST_SOLICIT = 3
RETRANS_TIMER = 1.0
REACHABLE_TIME = 30.0
DELAY_FIRST_PROBE_TIME = 5.0
MIN_RANDOM_FACTOR = 0.5
MAX_RANDOM_FACTOR = 1.5

INCOMPLETE = "INCOMPLETE"
REACHABLE = "REACHABLE"
STALE = "STALE"
DELAY = "DELAY"
PROBE = "PROBE"

UNSPECIFIED = bytes(16)
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
LINK_LOCAL_PREFIX = bytes.fromhex("fe80") + bytes(14)


def is_multicast(addr):
    """True for an IPv6 multicast address (ff00::/8)."""
    return addr[0] == 0xFF


def is_link_local(addr):
    """True for an IPv6 link-local unicast address (fe80::/10)."""
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


def solicited_node(addr):
    """The solicited-node multicast group of ``addr``: ff02::1:ff00:0/104 + its low 24 bits
    (RFC 4291 2.7.1)."""
    return b"\xff\x02" + bytes(9) + b"\x01\xff" + bytes(addr[13:16])


def multicast_mac(group):
    """The Ethernet MAC of an IPv6 multicast group: 33:33 + its low 32 bits (RFC 2464 7)."""
    return b"\x33\x33" + bytes(group[12:16])


def mask_prefix(addr, prefix_len):
    """``addr`` with every bit past ``prefix_len`` cleared (16 bytes)."""
    if not 0 <= prefix_len <= 128:
        raise ValueError(f"prefix length {prefix_len} out of range")
    value = int.from_bytes(addr, "big") >> (128 - prefix_len) << (128 - prefix_len)
    return value.to_bytes(16, "big")


Solicit = collections.namedtuple(
    "Solicit", "kind target dst src source_lladdr dst_mac nonce")
Solicit.__doc__ = """A neighbour solicitation to send: ``("ns", target, dst, src, source_lladdr,
dst_mac, nonce)``.

``dst`` is the IPv6 destination and ``dst_mac`` its Ethernet address; ``src`` is the IPv6 source,
or None when the host picks it (RFC 4861 7.2.2: the source of the packet that prompted the
solicitation if it is ours, else any of our addresses on the link); ``source_lladdr`` says
whether to include the Source Link-Layer Address option (never with the unspecified source,
7.2.2); ``nonce`` is the 6 bytes of a Nonce option (RFC 3971 5.3.2, RFC 7527) or None."""


def solicitation(target, mac=None, *, src=None, nonce=None):
    """The :class:`Solicit` for a request ``(target, mac_or_None)``: multicast to the target's
    solicited-node group when ``mac`` is None, else unicast to ``target`` at ``mac`` (7.3.3
    PROBE).  ``src=UNSPECIFIED`` makes a duplicate address detection probe (no SLLA option)."""
    if mac is None:
        dst = solicited_node(target)
        mac = multicast_mac(dst)
    else:
        dst = target
    return Solicit("ns", target, dst, src, src != UNSPECIFIED, mac, nonce)


@dataclass
class PrefixInfo:
    """A Prefix Information option (RFC 4861 4.6.2), lifetimes in seconds (``math.inf`` for
    0xffffffff, see :func:`lifetime`)."""

    prefix: bytes
    prefix_len: int
    on_link: bool = True
    autonomous: bool = True
    valid_lifetime: float = math.inf
    preferred_lifetime: float = math.inf


@dataclass
class RouterAdvert:
    """A validated Router Advertisement (RFC 4861 4.2, 6.1.2), as :class:`NeighbourDiscovery`
    and :class:`lwstack.iface.slaac.Slaac` take it.

    Times are seconds: ``router_lifetime`` (0: not a default router), ``reachable_time`` and
    ``retrans_timer`` (the wire's milliseconds / 1000; 0: unspecified).  ``cur_hop_limit`` 0 is
    unspecified; ``mtu`` is the MTU option or None.  ``rdnss`` is a sequence of
    ``(lifetime, addresses)`` and ``dnssl`` of ``(lifetime, domains)`` (RFC 8106), one per
    option.
    """

    source: bytes
    cur_hop_limit: int = 0
    managed: bool = False
    other: bool = False
    router_lifetime: float = 0.0
    reachable_time: float = 0.0
    retrans_timer: float = 0.0
    source_lladdr: bytes = None
    mtu: int = None
    prefixes: tuple = ()
    rdnss: tuple = ()
    dnssl: tuple = ()


def lifetime(value):
    """A 32-bit lifetime field in seconds, 0xffffffff meaning infinity (RFC 4861 4.6.2)."""
    return math.inf if value == 0xFFFFFFFF else float(value)


class Neighbour:
    """The cache's knowledge of one neighbour.

    ``deadline`` depends on the state: REACHABLE until it, then STALE; the garbage-collection
    time of a STALE entry; the next solicitation (INCOMPLETE, PROBE) or the first probe (DELAY).
    """

    __slots__ = ("addr", "mac", "state", "deadline", "probes", "pending", "is_router", "updated")

    def __init__(self, addr, state, now):
        self.addr = addr
        self.mac = None
        self.state = state
        self.deadline = now
        self.probes = 0
        self.pending = collections.deque()
        self.is_router = False
        self.updated = now

    def __repr__(self):
        mac = self.mac.hex(":") if self.mac else None
        return f"Neighbour({self.addr.hex()}, {self.state}, mac={mac}, router={self.is_router})"


class NeighbourCache:
    """A bounded IPv6 neighbour cache with neighbour unreachability detection (RFC 4861 7.3).

    ``on_unreachable(addr)``, if given, is called when an entry is deleted because its
    neighbour did not answer (INCOMPLETE or PROBE exhausted).
    """

    def __init__(self, rng=None, *, max_entries=512, max_pending=16,
                 base_reachable_time=REACHABLE_TIME, retrans_time=RETRANS_TIMER,
                 delay_first_probe_time=DELAY_FIRST_PROBE_TIME,
                 max_multicast_solicit=MAX_MULTICAST_SOLICIT,
                 max_unicast_solicit=MAX_UNICAST_SOLICIT, stale_time=60.0,
                 recompute_interval=300.0, on_unreachable=None):
        if max_entries < 1 or max_pending < 1:
            raise ValueError("max_entries and max_pending must be at least 1")
        self.rng = rng if rng is not None else random.Random()
        self.max_entries = max_entries
        self.max_pending = max_pending
        self.base_reachable_time = base_reachable_time
        self.retrans_time = retrans_time
        self.delay_first_probe_time = delay_first_probe_time
        self.max_multicast_solicit = max_multicast_solicit
        self.max_unicast_solicit = max_unicast_solicit
        self.stale_time = stale_time
        self.recompute_interval = recompute_interval
        self.on_unreachable = on_unreachable
        self.reachable_time = self._draw_reachable_time()
        self._recompute_at = None  # set on first use: no clock here
        self.entries = {}
        self.stats = collections.Counter()

    # -- sending ---------------------------------------------------------------------------

    def lookup(self, addr, now):
        """Return ``(mac, request)`` for sending to ``addr`` right now.

        ``mac`` is None when the caller must queue the packet with :meth:`enqueue`.  Using a
        STALE entry moves it to DELAY (7.3.3).  ``request`` is always None (the shape of the
        ARP cache's lookup; here probes come from :meth:`poll`).
        """
        entry = self.entries.get(addr)
        if entry is None:
            return None, None
        if self._state(entry, now) == STALE:
            entry.state = DELAY
            entry.deadline = now + self.delay_first_probe_time
        return entry.mac, None

    def reachable(self, addr, now):
        """``(mac, valid_until)`` if ``addr`` is REACHABLE now, else None (for callers that
        cache the link header until ``valid_until``)."""
        entry = self.entries.get(addr)
        if entry is None or self._state(entry, now) != REACHABLE:
            return None
        return entry.mac, entry.deadline

    def enqueue(self, addr, packet, now):
        """Queue ``packet`` until ``addr`` resolves.

        Returns ``(request, dropped)``: the multicast solicitation ``(addr, None)`` to send if
        this starts a resolution, and a packet dropped to make room (the oldest queued one, or
        ``packet`` itself when the cache is full of waiting entries), else None.  Raises
        ValueError if the entry already has a MAC (send with :meth:`lookup`'s).
        """
        entry = self.entries.get(addr)
        request = None
        if entry is None:
            if not self._make_room():
                self.stats["cache_full"] += 1
                return None, packet
            entry = self.entries[addr] = Neighbour(addr, INCOMPLETE, now)
            entry.probes = 1
            entry.deadline = now + self.retrans_time
            request = (addr, None)
        elif entry.mac is not None:
            raise ValueError("neighbour already resolved: send with lookup()'s MAC")
        dropped = None
        if len(entry.pending) >= self.max_pending:
            dropped = entry.pending.popleft()
            self.stats["pending_overflow"] += 1
        entry.pending.append(packet)
        return request, dropped

    def confirm(self, addr, now):
        """Upper-layer reachability confirmation (7.3.1): e.g. a TCP ACK for new data from
        ``addr``.  A resolved entry becomes REACHABLE for ReachableTime; returns True if so."""
        entry = self.entries.get(addr)
        if entry is None or entry.mac is None:
            return False
        self._set_reachable(entry, now)
        return True

    # -- receiving -------------------------------------------------------------------------

    def receive_na(self, target, lladdr, now, *, solicited, override, router):
        """Process a Neighbour Advertisement for ``target`` (7.2.5).

        ``lladdr`` is its Target Link-Layer Address option or None; ``solicited``, ``override``
        and ``router`` its S, O and R flags.  Returns ``(waiting, router_cleared)``: packets
        that waited for this neighbour (send them to its MAC now) and whether the neighbour's
        IsRouter flag went from true to false (it must leave the default router list).
        """
        entry = self.entries.get(target)
        if entry is None:
            self.stats["na_no_entry"] += 1  # 7.2.5: no entry, silently discarded
            return [], False
        state = self._state(entry, now)
        if state == INCOMPLETE:
            if lladdr is None:
                self.stats["na_no_lladdr"] += 1
                return [], False
            entry.mac = lladdr
            if solicited:
                self._set_reachable(entry, now)
            else:
                self._set_stale(entry, now)
            return self._flush(entry, now), self._set_router(entry, router)
        changed = lladdr is not None and lladdr != entry.mac
        if changed and not override:
            # 7.2.5: a different address without O only makes a REACHABLE entry STALE.
            if state == REACHABLE:
                self._set_stale(entry, now)
            self.stats["na_ignored"] += 1
            return [], False
        if changed:
            entry.mac = lladdr
            self.stats["mac_changed"] += 1
        if solicited:
            self._set_reachable(entry, now)
        elif changed:
            self._set_stale(entry, now)
        return [], self._set_router(entry, router)

    def learn(self, addr, lladdr, now, *, is_router=None):
        """Learn ``addr``'s link-layer address from a message that is not an answer to us: a
        Neighbour Solicitation (7.2.3), Router Solicitation (6.2.6), Router Advertisement
        (6.3.4) or Redirect (8.3) carrying it.

        Creates a STALE entry, or makes an existing one STALE if the address changed; an
        INCOMPLETE entry gets its MAC and its waiting packets are returned (send them now).
        ``is_router`` True/False sets the IsRouter flag; None leaves it (new entries: False).
        With ``lladdr`` None only the flag of an existing entry is updated.
        """
        entry = self.entries.get(addr)
        if lladdr is None:
            if entry is not None and is_router is not None:
                entry.is_router = is_router
            return []
        if entry is None:
            if not self._make_room():
                self.stats["cache_full"] += 1
                return []
            entry = self.entries[addr] = Neighbour(addr, STALE, now)
        state = self._state(entry, now)
        if is_router is not None:
            entry.is_router = is_router
        if state == INCOMPLETE or entry.mac is None:
            entry.mac = lladdr
            self._set_stale(entry, now)
            return self._flush(entry, now)
        if lladdr != entry.mac:
            entry.mac = lladdr
            self.stats["mac_changed"] += 1
            self._set_stale(entry, now)
        return []

    def set_router(self, addr, is_router):
        """Set the IsRouter flag of ``addr``'s entry if there is one."""
        entry = self.entries.get(addr)
        if entry is not None:
            entry.is_router = is_router

    def set_base_reachable_time(self, value, now):
        """Take BaseReachableTime from an RA; a new value draws a new ReachableTime (6.3.4)."""
        if value != self.base_reachable_time:
            self.base_reachable_time = value
            self.reachable_time = self._draw_reachable_time()
            self._recompute_at = now + self.recompute_interval

    def state(self, addr, now):
        """The NUD state of ``addr`` at ``now``, or None when it has no entry."""
        entry = self.entries.get(addr)
        return None if entry is None else self._state(entry, now)

    def remove(self, addr):
        """Forget ``addr``; returns the packets that were waiting for it."""
        entry = self.entries.pop(addr, None)
        return list(entry.pending) if entry is not None else []

    # -- timers ----------------------------------------------------------------------------

    def poll(self, now):
        """Run solicitations, state timeouts and garbage collection.

        Returns ``(requests, failed_packets)``: requests are ``(target, mac_or_None)`` (None:
        multicast; see :func:`solicitation`), failed packets waited for a neighbour that never
        answered (RFC 4861 7.2.2: report ICMPv6 destination unreachable, address unreachable).
        """
        requests = []
        failed = []
        for addr, entry in list(self.entries.items()):
            if now < self._due(entry):
                continue
            state = entry.state
            if state == INCOMPLETE:
                if entry.probes >= self.max_multicast_solicit:
                    self._delete_unreachable(entry)
                    failed.extend(entry.pending)
                    continue
                entry.probes += 1
                entry.deadline = now + self.retrans_time
                requests.append((addr, None))
            elif state == DELAY:
                entry.state = PROBE
                entry.probes = 1
                entry.deadline = now + self.retrans_time
                requests.append((addr, entry.mac))
            elif state == PROBE:
                if entry.probes >= self.max_unicast_solicit:
                    self._delete_unreachable(entry)
                    continue
                entry.probes += 1
                entry.deadline = now + self.retrans_time
                requests.append((addr, entry.mac))
            else:  # REACHABLE or STALE, unused for stale_time
                del self.entries[addr]
                self.stats["gc"] += 1
        return requests, failed

    def poll_at(self):
        """The earliest time :meth:`poll` has work, or None."""
        return min((self._due(e) for e in self.entries.values()), default=None)

    # -- internals -------------------------------------------------------------------------

    def _due(self, entry):
        # The same expression in poll() and poll_at(), so a poll at the named time acts.
        if entry.state == REACHABLE:
            return entry.deadline + self.stale_time
        return entry.deadline

    def _state(self, entry, now):
        if entry.state == REACHABLE and now >= entry.deadline:
            entry.state = STALE  # STALE since the deadline: collect stale_time after it
            entry.deadline += self.stale_time
        return entry.state

    def _draw_reachable_time(self):
        return self.base_reachable_time * self.rng.uniform(MIN_RANDOM_FACTOR, MAX_RANDOM_FACTOR)

    def _reachable_time(self, now):
        if self._recompute_at is None:
            self._recompute_at = now + self.recompute_interval
        elif now >= self._recompute_at:
            self.reachable_time = self._draw_reachable_time()
            self._recompute_at = now + self.recompute_interval
        return self.reachable_time

    def _set_reachable(self, entry, now):
        entry.state = REACHABLE
        entry.deadline = now + self._reachable_time(now)
        entry.probes = 0
        entry.updated = now

    def _set_stale(self, entry, now):
        entry.state = STALE
        entry.deadline = now + self.stale_time
        entry.probes = 0
        entry.updated = now

    def _flush(self, entry, now):
        waiting = list(entry.pending)
        entry.pending.clear()
        if waiting and entry.state == STALE:
            entry.state = DELAY  # the waiting packets are sent now: 7.3.3
            entry.deadline = now + self.delay_first_probe_time
        return waiting

    @staticmethod
    def _set_router(entry, router):
        cleared = entry.is_router and not router
        entry.is_router = router
        return cleared

    def _delete_unreachable(self, entry):
        del self.entries[entry.addr]
        self.stats["resolution_failed" if entry.state == INCOMPLETE else "probe_failed"] += 1
        if self.on_unreachable is not None:
            self.on_unreachable(entry.addr)

    def _make_room(self):
        if len(self.entries) < self.max_entries:
            return True
        victims = [e for e in self.entries.values() if not e.pending]
        if not victims:
            return False
        victim = min(victims, key=lambda e: e.updated)
        del self.entries[victim.addr]
        self.stats["evicted"] += 1
        return True


class _Destination:
    __slots__ = ("next_hop", "redirected")

    def __init__(self, next_hop, redirected):
        self.next_hop = next_hop
        self.redirected = redirected


class NeighbourDiscovery:
    """Host-side neighbour discovery for one interface: a :class:`NeighbourCache` (``cache``)
    plus the default router list, the on-link prefix list and the destination cache.

    ``routers`` maps a router address to its expiry time; ``prefixes`` maps
    ``(prefix, prefix_len)`` to its expiry time; ``static_routers`` and ``static_prefixes``
    hold configured entries that RAs neither refresh nor expire.  ``cache_options`` go to the
    :class:`NeighbourCache`.
    """

    def __init__(self, rng=None, *, max_routers=8, max_prefixes=16, max_destinations=1024,
                 **cache_options):
        if min(max_routers, max_prefixes, max_destinations) < 1:
            raise ValueError("list bounds must be at least 1")
        self.cache = NeighbourCache(rng, on_unreachable=self._neighbour_unreachable,
                                    **cache_options)
        self.max_routers = max_routers
        self.max_prefixes = max_prefixes
        self.max_destinations = max_destinations
        self.routers = {}
        self.static_routers = set()
        self.prefixes = {}
        self.static_prefixes = set()
        self.destinations = collections.OrderedDict()
        self.stats = self.cache.stats
        self._round_robin = 0

    # -- configuration ---------------------------------------------------------------------

    def add_router(self, addr):
        """A configured default router (``gw=``): never expires, RAs do not change it."""
        if addr not in self.routers and len(self.routers) >= self.max_routers:
            raise ValueError("default router list is full")
        self.routers[addr] = math.inf
        self.static_routers.add(addr)

    def add_prefix(self, prefix, prefix_len):
        """A configured on-link prefix (from ``ip=addr/len``): never expires."""
        key = (mask_prefix(prefix, prefix_len), prefix_len)
        if key not in self.prefixes and len(self.prefixes) >= self.max_prefixes:
            raise ValueError("prefix list is full")
        self.prefixes[key] = math.inf
        self.static_prefixes.add(key)
        self._forget_router_choices()

    def remove_router(self, addr):
        """Remove a default router (configured or learnt)."""
        self.static_routers.discard(addr)
        self._remove_router(addr)

    def remove_prefix(self, prefix, prefix_len):
        """Remove an on-link prefix (configured or learnt)."""
        key = (mask_prefix(prefix, prefix_len), prefix_len)
        self.static_prefixes.discard(key)
        self.prefixes.pop(key, None)

    # -- messages --------------------------------------------------------------------------

    def receive_ra(self, ra, now):
        """Process a validated :class:`RouterAdvert` (6.3.4).  Returns packets that waited for
        the router's address (its SLLA option resolved it)."""
        src = ra.source
        if ra.router_lifetime > 0:
            if src in self.routers or len(self.routers) < self.max_routers:
                if src not in self.static_routers:
                    self.routers[src] = now + ra.router_lifetime
            else:
                self.stats["router_list_full"] += 1
        elif src not in self.static_routers:
            self._remove_router(src)
        if ra.reachable_time:
            self.cache.set_base_reachable_time(ra.reachable_time, now)
        if ra.retrans_timer:
            self.cache.retrans_time = ra.retrans_timer
        for info in ra.prefixes:
            if info.on_link:
                self._on_link_prefix(info, now)
        return self.cache.learn(src, ra.source_lladdr, now, is_router=True)

    def receive_na(self, target, lladdr, now, *, solicited, override, router):
        """Process a Neighbour Advertisement (7.2.5); returns the packets that waited for it.
        A neighbour that stops being a router leaves the default router list and the
        destinations routed through it choose again."""
        waiting, cleared = self.cache.receive_na(target, lladdr, now, solicited=solicited,
                                                 override=override, router=router)
        if cleared:
            self.static_routers.discard(target)
            self._remove_router(target)
            self._forget(lambda dst, d: d.next_hop == target and dst != target)
        return waiting

    def receive_ns(self, src, lladdr, now):
        """Process a Neighbour Solicitation from ``src`` with its Source Link-Layer Address
        option (7.2.3; nothing to learn from the unspecified source or without the option).
        Returns packets that waited for ``src``."""
        if src == UNSPECIFIED or lladdr is None:
            return []
        return self.cache.learn(src, lladdr, now)

    def receive_redirect(self, src, target, destination, target_lladdr, now):
        """Process a Redirect from ``src`` (8.1 checks that need state, then 8.3).

        ``target`` becomes the next hop for ``destination`` (a better router, or the
        destination itself when it is on-link).  Returns packets that waited for ``target``.
        """
        if is_multicast(destination):
            self.stats["drop.redirect_multicast_destination"] += 1
            return []
        if target != destination and not is_link_local(target):
            self.stats["drop.redirect_target"] += 1  # 8.1: a router target is link-local
            return []
        if self.next_hop(destination, now) != src:
            self.stats["drop.redirect_not_first_hop"] += 1
            return []
        self._remember(destination, target, redirected=True)
        self.stats["redirected"] += 1
        is_router = True if target != destination else None
        if target_lladdr is None:
            if is_router:
                self.cache.set_router(target, True)
            return []
        return self.cache.learn(target, target_lladdr, now, is_router=is_router)

    # -- routing ---------------------------------------------------------------------------

    def next_hop(self, dst, now):
        """The neighbour to send a packet for ``dst`` to (5.2), or None if unreachable."""
        if is_multicast(dst) or is_link_local(dst):
            return dst
        known = self.destinations.get(dst)
        if known is not None:
            self.destinations.move_to_end(dst)
            return known.next_hop
        if self.on_link(dst):
            return dst
        router = self.default_router(now)
        if router is not None:
            self._remember(dst, router, redirected=False)
        return router

    def on_link(self, dst):
        """True if ``dst`` is covered by an on-link prefix or is link-local."""
        if is_link_local(dst):
            return True
        value = int.from_bytes(dst, "big")
        for prefix, prefix_len in self.prefixes:
            shift = 128 - prefix_len
            if value >> shift == int.from_bytes(prefix, "big") >> shift:
                return True
        return False

    def default_router(self, now):
        """Select a default router (6.3.6), or None when the list is empty."""
        routers = list(self.routers)
        if not routers:
            return None
        states = [self.cache.state(r, now) for r in routers]
        for router, state in zip(routers, states):
            if state == REACHABLE:
                return router
        for router, state in zip(routers, states):
            if state is not None and state != INCOMPLETE:
                return router
        # None known reachable: round robin, so the next request tries the next router.
        router = routers[self._round_robin % len(routers)]
        self._round_robin += 1
        return router

    # -- timers ----------------------------------------------------------------------------

    def poll(self, now):
        """Expire routers and prefixes, then run the cache; returns the cache's
        ``(requests, failed_packets)``."""
        for router, expires in list(self.routers.items()):
            if now >= expires:
                self._remove_router(router)
                self.stats["router_expired"] += 1
        for key, expires in list(self.prefixes.items()):
            if now >= expires:
                del self.prefixes[key]
                self.stats["prefix_expired"] += 1
        return self.cache.poll(now)

    def poll_at(self):
        """The earliest time :meth:`poll` has work, or None."""
        times = [t for t in (*self.routers.values(), *self.prefixes.values()) if t != math.inf]
        cache = self.cache.poll_at()
        if cache is not None:
            times.append(cache)
        return min(times, default=None)

    # -- internals -------------------------------------------------------------------------

    def _on_link_prefix(self, info, now):
        if is_link_local(info.prefix):
            return  # 6.3.4: the link-local prefix is ignored
        key = (mask_prefix(info.prefix, info.prefix_len), info.prefix_len)
        if key in self.static_prefixes:
            return
        if key in self.prefixes:
            if info.valid_lifetime == 0:
                del self.prefixes[key]  # 6.3.4: time out at once
            else:
                self.prefixes[key] = now + info.valid_lifetime
        elif info.valid_lifetime != 0:
            if len(self.prefixes) >= self.max_prefixes:
                self.stats["prefix_list_full"] += 1
                return
            self.prefixes[key] = now + info.valid_lifetime
            self._forget_router_choices()  # destinations sent to a router may be on-link now

    def _remove_router(self, addr):
        if self.routers.pop(addr, None) is not None:
            self._forget(lambda dst, d: d.next_hop == addr and not d.redirected)

    def _neighbour_unreachable(self, addr):
        # 7.3.3: NUD failed; destinations through it run next-hop determination again.
        self._forget(lambda dst, d: d.next_hop == addr)

    def _forget_router_choices(self):
        self._forget(lambda dst, d: not d.redirected)

    def _forget(self, predicate):
        for dst in [dst for dst, d in self.destinations.items() if predicate(dst, d)]:
            del self.destinations[dst]

    def _remember(self, dst, next_hop, redirected):
        self.destinations[dst] = _Destination(next_hop, redirected)
        self.destinations.move_to_end(dst)
        while len(self.destinations) > self.max_destinations:
            self.destinations.popitem(last=False)
