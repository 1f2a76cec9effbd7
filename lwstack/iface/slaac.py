"""Stateless address autoconfiguration for a host (RFC 4862), with router solicitation
(RFC 4861 6.3.7, RFC 7559), duplicate address detection for every address, and the
parameters a Router Advertisement gives the host (hop limit, MTU, DNS by RFC 8106, M/O flags).

Design note.  :class:`Slaac` keeps the interface's IPv6 address table.  Each address is::

    TENTATIVE --DAD passed--> PREFERRED --preferred lifetime--> DEPRECATED --valid--> (removed)
        |                         ^------- new preferred lifetime ----/
        +--NS from :: or NA for it--> duplicate: retry with the next DAD counter (RFC 7217),
                                      or give up (link-local: IPv6 is disabled, 5.4.5)

- Every address, whatever made it (link-local, SLAAC, ``ip=``, DHCPv6 via :meth:`add_address`),
  goes through DAD (5.4): after a random delay in [0, MAX_RTR_SOLICITATION_DELAY] (5.4.2: for
  the first message after interface start and for addresses from a multicast RA alike), the
  host joins the solicited-node group and DupAddrDetectTransmits solicitations from :: go out
  RetransTimer apart; no answer RetransTimer after the last one: the address is assigned.
  Each probe carries a random Nonce option (RFC 7527) so a looped-back copy of our own probe
  is not taken for another node's.
- A duplicate SLAAC or link-local address is generated again with ``dad_counter + 1`` after a
  random delay in [0, IDGEN_DELAY], up to IDGEN_RETRIES times (RFC 7217 section 6); a counter
  whose address the interface already has is skipped (RFC 7217 section 5).  When the
  generator gives the same address again (EUI-64 and hash identifiers do), there is nothing to
  retry: the duplicate is final (RFC 4862 5.4.5), and a ``dad_final`` event says which of the
  two ended it.  A SLAAC prefix that failed keeps a DUPLICATE placeholder until its valid
  lifetime ends, so each further RA does not start the same failure again.
- The link-local address comes first (fe80::/64 + identifier).  Router solicitations start
  when it is assigned (as Linux does, so they carry a source address and the SLLA option):
  a random delay in [0, 1] s, then MAX_RTR_SOLICITATIONS RS RTR_SOLICITATION_INTERVAL apart,
  then RFC 7559's exponential backoff (RFC 8415 section 15 with IRT 4 s, MRT 3600 s, no
  count limit: RT = 2 RTprev + RAND RTprev, RAND in [-0.1, 0.1]) until an RA with a non-zero
  router lifetime arrives (none at all if one came first).
- Prefix Information options (5.5.3): the A flag, no link-local prefix, preferred <= valid,
  prefix length + identifier length = 128; an existing prefix gets the new preferred lifetime
  and its valid lifetime by the two-hour rule (5.5.3 e), which keeps an unauthenticated RA from
  shortening a lifetime below two hours.

Sans-IO: the address generator comes in as ``make_address(prefix, dad_counter) -> 16 bytes``
(``prefix`` is 16 bytes with the identifier bits zero), so EUI-64, RFC 7217 stable identifiers
or iothaddr hashes are the host's choice.  Time is the float ``now``; randomness is the
injected ``rng``.  Everything the host must do is appended to ``outbox``, in order:

- ``("rs", src)``: send a Router Solicitation to ff02::2 from ``src`` (the link-local address,
  with the SLLA option; :: without it, RFC 4861 4.1).
- ``ndp.Solicit("ns", target, dst, ::, False, dst_mac, nonce)``: a DAD probe.
- ``("address_added", addr, prefix_len, state)``: a new address, state ``"tentative"`` (join its
  solicited-node group and hand NS/NA about it to :meth:`receive_ns` / :meth:`receive_na`, but
  neither use it nor answer for it, 5.4.3) or, without DAD, ``"preferred"`` or
  ``"deprecated"``.
- ``("address_preferred", addr)``: usable, and preferred as a source.
- ``("address_deprecated", addr)``: usable, not for new communications (5.5.4).
- ``("address_removed", addr, reason)``: reason ``"expired"``, ``"duplicate"`` or ``"removed"``
  (a duplicate is reported even before its ``address_added``, so a DHCPv6 client can decline it).
  A ``"duplicate"`` SLAAC or link-local address may be followed by a new tentative one.
- ``("dad_retry", old, new, counter)``: the duplicate SLAAC or link-local address ``old``
  is replaced by the tentative ``new`` made with DAD counter ``counter`` (RFC 7217 section 6;
  its ``address_added`` comes with its first probe, after a delay up to IDGEN_DELAY).
- ``("dad_final", addr, origin, why)``: the duplicate SLAAC or link-local ``addr`` is not
  replaced: ``why`` is :data:`SAME_IDENTIFIER` (the generator ignores the DAD counter, as
  EUI-64 and hash identifiers do) or :data:`RETRIES_EXHAUSTED` (IDGEN_RETRIES new addresses
  were duplicates too).  For the link-local address ``disabled`` follows.
- ``("disabled", reason)``: the link-local address is a duplicate; IPv6 should stop (5.4.5).
- ``("hop_limit", n)``, ``("mtu", n)``, ``("reachable_time", s)``, ``("retrans_timer", s)``:
  RA parameters that changed.  :class:`lwstack.iface.ndp.NeighbourDiscovery` applies the last two
  itself when it is fed the same RA.
- ``("dhcpv6", managed, other)``: the M/O flags changed (M: stateful DHCPv6, O: stateless).
- ``("dns_servers", addrs)``, ``("dns_search", domains)``: the RDNSS / DNSSL lists changed.
"""
import collections
import math
import random

from lwstack.iface.ndp import (LINK_LOCAL_PREFIX, UNSPECIFIED, is_link_local, mask_prefix,
                               solicitation)

# RFC 4861 section 10 and RFC 7559 section 2.
MAX_RTR_SOLICITATION_DELAY = 1.0
RTR_SOLICITATION_INTERVAL = 4.0
MAX_RTR_SOLICITATIONS = 3
MAX_RTR_SOLICITATION_INTERVAL = 3600.0
# RFC 7217 section 7.
IDGEN_RETRIES = 3
IDGEN_DELAY = 1.0
# RFC 4862 5.5.3 e.
TWO_HOURS = 7200.0
# RFC 8200 section 5.
IPV6_MIN_MTU = 1280

#: Why a duplicate SLAAC or link-local address was not generated again (``dad_final``):
#: the generator gives the same address whatever the DAD counter (EUI-64, hash identifiers;
#: RFC 4862 5.4.5: manual intervention), or IDGEN_RETRIES new addresses were duplicates too.
SAME_IDENTIFIER = "same_identifier"
RETRIES_EXHAUSTED = "retries_exhausted"

TENTATIVE = "tentative"
PREFERRED = "preferred"
DEPRECATED = "deprecated"
DUPLICATE = "duplicate"

LINK_LOCAL = "link-local"
AUTOCONF = "slaac"
MANUAL = "manual"


class Address:
    """One address of the interface.

    ``origin`` is ``"link-local"``, ``"slaac"``, or what :meth:`Slaac.add_address` was given;
    ``prefix`` and ``dad_counter`` are what the generator was called with; ``deadline`` is the
    next DAD step while TENTATIVE; ``reported`` says whether the host has heard of it.
    """

    __slots__ = ("addr", "prefix_len", "prefix", "origin", "state", "preferred_until",
                 "valid_until", "dad_counter", "deadline", "sent", "nonces", "reported")

    def __init__(self, addr, prefix_len, prefix, origin, dad_counter, preferred_until,
                 valid_until):
        self.addr = addr
        self.prefix_len = prefix_len
        self.prefix = prefix
        self.origin = origin
        self.state = TENTATIVE
        self.preferred_until = preferred_until
        self.valid_until = valid_until
        self.dad_counter = dad_counter
        self.deadline = None
        self.sent = 0
        self.nonces = set()
        self.reported = False

    def __repr__(self):
        return f"Address({self.addr.hex()}/{self.prefix_len}, {self.state}, {self.origin})"


class Slaac:
    """Address autoconfiguration and DAD for one interface (see the module's design note).

    ``autoconf`` False keeps router discovery and RA parameters but forms no addresses from
    prefixes (iothconf's ``rd`` without ``slaac``); ``router_solicit`` False sends no RS.
    """

    def __init__(self, make_address, rng=None, *, autoconf=True, router_solicit=True,
                 dad_transmits=1, retrans_timer=1.0, idgen_retries=IDGEN_RETRIES,
                 max_addresses=16, link_mtu=1500, iid_len=64, max_dns_servers=3,
                 max_dns_domains=6, max_rtr_solicitations=MAX_RTR_SOLICITATIONS,
                 rtr_solicitation_interval=RTR_SOLICITATION_INTERVAL,
                 max_rtr_solicitation_interval=MAX_RTR_SOLICITATION_INTERVAL):
        if max_addresses < 1 or max_dns_servers < 1 or max_dns_domains < 1:
            raise ValueError("table bounds must be at least 1")
        self.make_address = make_address
        self.rng = rng if rng is not None else random.Random()
        self.autoconf = autoconf
        self.router_solicit = router_solicit
        self.dad_transmits = dad_transmits
        self.retrans_timer = retrans_timer
        self.idgen_retries = idgen_retries
        self.max_addresses = max_addresses
        self.link_mtu = link_mtu
        self.iid_len = iid_len
        self.max_dns_servers = max_dns_servers
        self.max_dns_domains = max_dns_domains
        self.max_rtr_solicitations = max_rtr_solicitations
        self.rtr_solicitation_interval = rtr_solicitation_interval
        self.max_rtr_solicitation_interval = max_rtr_solicitation_interval
        self.outbox = []
        self.addresses = {}
        self.disabled = False
        self.hop_limit = None
        self.mtu = None
        self.reachable_time = None
        self.managed = False
        self.other = False
        self.dns_servers = {}
        self.dns_domains = {}
        self.rs_sent = 0
        self.router_seen = False
        self.stats = collections.Counter()
        self._rs_at = None
        self._rs_interval = None

    # -- the host's calls ------------------------------------------------------------------

    def start(self, now):
        """Bring the interface up: the link-local address goes through DAD, then RS start."""
        addr = self._generate(LINK_LOCAL_PREFIX, 0)
        self._new(addr, 64, LINK_LOCAL_PREFIX, LINK_LOCAL, 0, math.inf, math.inf, now,
                  MAX_RTR_SOLICITATION_DELAY)

    def add_address(self, addr, prefix_len, now, *, preferred=math.inf, valid=math.inf,
                    origin=MANUAL):
        """Add a configured or DHCPv6 address (it goes through DAD), or set new lifetimes
        (seconds from ``now``) of one already there; ``valid`` 0 removes it."""
        if preferred > valid:
            raise ValueError("preferred lifetime longer than valid lifetime")
        entry = self.addresses.get(addr)
        if valid == 0:
            if entry is not None:
                self.remove_address(addr, now)
            return
        if entry is not None:
            entry.preferred_until = now + preferred
            entry.valid_until = now + valid
            self._lifetimes_changed(entry, now)
            return
        self._new(addr, prefix_len, mask_prefix(addr, prefix_len), origin, 0, now + preferred,
                  now + valid, now, MAX_RTR_SOLICITATION_DELAY)

    def remove_address(self, addr, now, reason="removed"):
        """Remove ``addr`` (an ``address_removed`` event if the host knew it)."""
        entry = self.addresses.pop(addr, None)
        if entry is not None and entry.reported:
            self.outbox.append(("address_removed", addr, reason))

    def receive_ns(self, target, src, now, nonce=None):
        """A Neighbour Solicitation for ``target`` from ``src`` (with its Nonce option, if any).

        Returns True when ``target`` is one of our tentative addresses: the host must not
        answer it (5.4.3).  One from :: that is not our own looped-back probe means another
        node is checking the same address: ours is a duplicate.
        """
        entry = self.addresses.get(target)
        if entry is None or entry.state != TENTATIVE:
            return False
        if src != UNSPECIFIED:
            return True  # address resolution for an address not yet ours: ignored
        if nonce is not None and nonce in entry.nonces:
            self.stats["dad_looped_back"] += 1
            return True
        self._duplicate(entry, now)
        return True

    def receive_na(self, target, now):
        """A Neighbour Advertisement for ``target``.  Returns True when ``target`` is one of
        our addresses (the host must not learn it as a neighbour): a tentative one is a
        duplicate (5.4.4); for an assigned one there is nothing reliable to do but count it."""
        entry = self.addresses.get(target)
        if entry is None or entry.state == DUPLICATE:
            return False
        if entry.state == TENTATIVE:
            self._duplicate(entry, now)
        else:
            self.stats["na_for_assigned_address"] += 1
        return True

    def receive_ra(self, ra, now):
        """Process a validated :class:`lwstack.iface.ndp.RouterAdvert`."""
        if self.disabled:
            return
        if ra.router_lifetime > 0:
            self.router_seen = True
            self._rs_at = None  # RFC 4861 6.3.7: desist once a default router answered
        self._parameters(ra)
        self._dns(ra, now)
        if self.autoconf:
            for info in ra.prefixes:
                self._prefix(info, now)

    # -- queries ---------------------------------------------------------------------------

    def is_tentative(self, addr):
        """True while ``addr`` is ours but not yet through DAD."""
        entry = self.addresses.get(addr)
        return entry is not None and entry.state == TENTATIVE

    def usable(self):
        """``[(addr, prefix_len, state)]`` of the assigned (preferred or deprecated) addresses."""
        return [(e.addr, e.prefix_len, e.state) for e in self.addresses.values()
                if e.state in (PREFERRED, DEPRECATED)]

    @property
    def link_local(self):
        """The assigned link-local address, or None."""
        for entry in self.addresses.values():
            if entry.origin == LINK_LOCAL and entry.state in (PREFERRED, DEPRECATED):
                return entry.addr
        return None

    # -- timers ----------------------------------------------------------------------------

    def poll(self, now):
        """Send what is due (RS, DAD probes) and run address and DNS lifetimes."""
        if self._rs_at is not None and now >= self._rs_at:
            self._send_rs(now)
        for entry in list(self.addresses.values()):
            self._advance(entry, now)
        self._expire_dns(self.dns_servers, "dns_servers", now)
        self._expire_dns(self.dns_domains, "dns_search", now)

    def poll_at(self):
        """The earliest time :meth:`poll` has work, or None."""
        times = [*self.dns_servers.values(), *self.dns_domains.values()]
        if self._rs_at is not None:
            times.append(self._rs_at)
        for entry in self.addresses.values():
            times.append(entry.valid_until)
            if entry.state == TENTATIVE:
                times.append(entry.deadline)
            elif entry.state == PREFERRED:
                times.append(entry.preferred_until)
        return min((t for t in times if t != math.inf), default=None)

    # -- addresses -------------------------------------------------------------------------

    def _generate(self, prefix, counter):
        addr = self.make_address(prefix, counter)
        if len(addr) != 16:
            raise ValueError("make_address must return 16 bytes")
        return bytes(addr)

    def _new(self, addr, prefix_len, prefix, origin, counter, preferred_until, valid_until,
             now, max_delay):
        if addr in self.addresses:
            self.stats["address_exists"] += 1  # 5.5.3 d: e.g. also configured by hand
            return None
        if len(self.addresses) >= self.max_addresses:
            self.stats["drop.address_table_full"] += 1
            return None
        entry = Address(addr, prefix_len, prefix, origin, counter, preferred_until, valid_until)
        self.addresses[addr] = entry
        if self.dad_transmits <= 0:  # DAD disabled (DupAddrDetectTransmits 0)
            entry.state = PREFERRED if now < preferred_until else DEPRECATED
            entry.reported = True
            self.outbox.append(("address_added", addr, prefix_len, entry.state))
            self._assigned(entry, now)
        else:
            entry.deadline = now + self.rng.uniform(0.0, max_delay)
        return entry

    def _advance(self, entry, now):
        if now >= entry.valid_until:
            del self.addresses[entry.addr]
            if entry.reported:
                self.outbox.append(("address_removed", entry.addr, "expired"))
            return
        if entry.state == TENTATIVE:
            if now < entry.deadline:
                return
            if entry.sent < self.dad_transmits:
                if not entry.reported:
                    entry.reported = True
                    self.outbox.append(("address_added", entry.addr, entry.prefix_len,
                                        TENTATIVE))
                nonce = self.rng.getrandbits(48).to_bytes(6, "big")
                entry.nonces.add(nonce)
                entry.sent += 1
                entry.deadline = now + self.retrans_timer
                self.outbox.append(solicitation(entry.addr, src=UNSPECIFIED, nonce=nonce))
                return
            entry.nonces.clear()
            if now < entry.preferred_until:
                entry.state = PREFERRED
                self.outbox.append(("address_preferred", entry.addr))
            else:
                entry.state = DEPRECATED
                self.outbox.append(("address_deprecated", entry.addr))
            self._assigned(entry, now)
        elif entry.state == PREFERRED and now >= entry.preferred_until:
            entry.state = DEPRECATED
            self.outbox.append(("address_deprecated", entry.addr))

    def _assigned(self, entry, now):
        """DAD is over for ``entry``: the link-local address starts router solicitation."""
        if (entry.origin == LINK_LOCAL and self.router_solicit and self.rs_sent == 0
                and not self.router_seen):
            self._rs_at = now + self.rng.uniform(0.0, MAX_RTR_SOLICITATION_DELAY)

    def _duplicate(self, entry, now):
        self.stats["dad_failed"] += 1
        del self.addresses[entry.addr]
        # Also when the host has not heard of it yet: a DHCPv6 client declines it on this.
        self.outbox.append(("address_removed", entry.addr, "duplicate"))
        if entry.origin not in (LINK_LOCAL, AUTOCONF):
            return
        why = RETRIES_EXHAUSTED
        for counter in range(entry.dad_counter + 1, self.idgen_retries + 1):
            addr = self._generate(entry.prefix, counter)
            if addr == entry.addr:
                why = SAME_IDENTIFIER       # EUI-64, hash: the counter changes nothing
                break
            if addr in self.addresses:
                continue    # RFC 7217 5: an identifier this prefix already has: next counter
            self.stats["dad_retry"] += 1
            self.outbox.append(("dad_retry", entry.addr, addr, counter))
            self._new(addr, entry.prefix_len, entry.prefix, entry.origin, counter,
                      entry.preferred_until, entry.valid_until, now, IDGEN_DELAY)
            return
        self.stats["dad_final." + why] += 1
        self.outbox.append(("dad_final", entry.addr, entry.origin, why))
        if entry.origin == LINK_LOCAL:
            self.disabled = True
            self._rs_at = None
            self.outbox.append(("disabled", "duplicate link-local address"))
            return
        # Keep the prefix's place so the next RA does not run the same failure again.
        entry.state = DUPLICATE
        entry.reported = False
        self.addresses[entry.addr] = entry

    def _lifetimes_changed(self, entry, now):
        if entry.state == DEPRECATED and now < entry.preferred_until:
            entry.state = PREFERRED
            self.outbox.append(("address_preferred", entry.addr))
        self._advance(entry, now)

    def _prefix(self, info, now):
        """RFC 4862 5.5.3 for one Prefix Information option."""
        if not info.autonomous or is_link_local(info.prefix):
            return
        if info.preferred_lifetime > info.valid_lifetime:
            self.stats["drop.ra_preferred_over_valid"] += 1
            return
        prefix = mask_prefix(info.prefix, info.prefix_len)
        for entry in self.addresses.values():
            if entry.origin == AUTOCONF and entry.prefix == prefix:
                self._update_lifetimes(entry, info, now)
                return
        if info.valid_lifetime == 0:
            return
        if info.prefix_len + self.iid_len != 128:
            self.stats["drop.ra_prefix_length"] += 1
            return
        self._new(self._generate(prefix, 0), info.prefix_len, prefix, AUTOCONF, 0,
                  now + info.preferred_lifetime, now + info.valid_lifetime, now,
                  MAX_RTR_SOLICITATION_DELAY)

    def _update_lifetimes(self, entry, info, now):
        """5.5.3 e: the preferred lifetime is taken; the valid lifetime by the two-hour rule."""
        entry.preferred_until = now + info.preferred_lifetime
        remaining = entry.valid_until - now
        received = info.valid_lifetime
        if received > TWO_HOURS or received > remaining:
            entry.valid_until = now + received
        elif remaining <= TWO_HOURS:
            self.stats["two_hour_rule_ignored"] += 1
        else:
            entry.valid_until = now + TWO_HOURS
            self.stats["two_hour_rule_capped"] += 1
        if entry.state != DUPLICATE:
            self._lifetimes_changed(entry, now)

    # -- router solicitation ---------------------------------------------------------------

    def _send_rs(self, now):
        self.outbox.append(("rs", self.link_local or UNSPECIFIED))
        self.rs_sent += 1
        if self.rs_sent < self.max_rtr_solicitations:
            interval = self.rtr_solicitation_interval
        else:  # RFC 7559: RFC 8415 section 15 backoff, IRT 4 s, MRT 3600 s, MRC 0
            previous = self._rs_interval or self.rtr_solicitation_interval
            interval = previous * (2.0 + self.rng.uniform(-0.1, 0.1))
            ceiling = self.max_rtr_solicitation_interval
            if interval > ceiling:
                interval = ceiling * (1.0 + self.rng.uniform(-0.1, 0.1))
        self._rs_interval = interval
        self._rs_at = now + interval

    # -- RA parameters ---------------------------------------------------------------------

    def _parameters(self, ra):
        if ra.cur_hop_limit and ra.cur_hop_limit != self.hop_limit:
            self.hop_limit = ra.cur_hop_limit
            self.outbox.append(("hop_limit", ra.cur_hop_limit))
        if ra.mtu is not None:
            if not IPV6_MIN_MTU <= ra.mtu <= self.link_mtu:
                self.stats["drop.ra_mtu"] += 1  # RFC 4861 6.3.4
            elif ra.mtu != self.mtu:
                self.mtu = ra.mtu
                self.outbox.append(("mtu", ra.mtu))
        if ra.reachable_time and ra.reachable_time != self.reachable_time:
            self.reachable_time = ra.reachable_time
            self.outbox.append(("reachable_time", ra.reachable_time))
        if ra.retrans_timer and ra.retrans_timer != self.retrans_timer:
            self.retrans_timer = ra.retrans_timer  # also the DAD probe interval (5.4)
            self.outbox.append(("retrans_timer", ra.retrans_timer))
        if (ra.managed, ra.other) != (self.managed, self.other):
            self.managed, self.other = ra.managed, ra.other
            self.outbox.append(("dhcpv6", ra.managed, ra.other))

    def _dns(self, ra, now):
        """RFC 8106 5.3.1: lifetime 0 removes; a full list loses its entry that expires first."""
        for table, options, bound, kind in ((self.dns_servers, ra.rdnss, self.max_dns_servers,
                                             "dns_servers"),
                                            (self.dns_domains, ra.dnssl, self.max_dns_domains,
                                             "dns_search")):
            before = tuple(table)
            for life, items in options:
                for item in items:
                    if life == 0:
                        table.pop(item, None)
                    elif item in table:
                        table[item] = now + life
                    else:
                        if len(table) >= bound:
                            del table[min(table, key=table.get)]
                            self.stats[f"{kind}_replaced"] += 1
                        table[item] = now + life
            if tuple(table) != before:
                self.outbox.append((kind, tuple(table)))

    def _expire_dns(self, table, kind, now):
        expired = [item for item, until in table.items() if now >= until]
        for item in expired:
            del table[item]
        if expired:
            self.outbox.append((kind, tuple(table)))
