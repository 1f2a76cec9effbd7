"""Router advertisements for one link, router side (RFC 4861 section 6.2), sans-IO.

Design note.  :class:`RaServer` decides *when* a Router Advertisement goes out and *what* it
says; the host (:meth:`lwstack.iface.host.Host.start_router`) sends it from its link-local
address with its MAC in the Source Link-Layer Address option, joins ff02::2 and hands it the
Router Solicitations that arrive.

When (section 6.2.4 and 6.2.6, constants of section 10)::

    start --> RA at once --[random in Min..Max, capped at 16 s for the first 3]--> RA --> ...
    RS    --> RA to all-nodes after a random 0..MAX_RA_DELAY_TIME (0.5 s), but never sooner
              than MIN_DELAY_BETWEEN_RAS (3 s) after the previous multicast RA, and never
              later than an unsolicited RA already due
    stop  --> a final RA with Router Lifetime 0 (6.2.5), at once

- Every multicast RA restarts the unsolicited timer with a new random interval (6.2.4).
  The first MAX_INITIAL_RTR_ADVERTISEMENTS (3) intervals are capped at
  MAX_INITIAL_RTR_ADVERT_INTERVAL (16 s), so a link hears a new router quickly.
- Answers to solicitations go to ff02::1 like every RA here (6.2.6 allows unicast too; one
  multicast answer serves every node that solicited in the same window, which is why
  solicitations arriving while an answer is pending add nothing).
- The first RA goes out at start rather than after a random interval (radvd does the same;
  hosts on the link are then configured without waiting up to 16 s).

What (section 6.2.1 defaults in :class:`RouterConfig`): the M and O flags, hop limit, router
lifetime (3 x MaxRtrAdvInterval unless given), reachable and retransmission times, the MTU
option, Prefix Information options with their L and A flags and lifetimes, RDNSS and DNSSL
options (RFC 8106, lifetime 3 x MaxRtrAdvInterval by default, section 5.1).

Output: ``outbox`` receives ``("ra", dst, advert)`` records, ``advert`` a
:class:`lwstack.wire.icmpv6.RouterAdvertisement` without Source Link-Layer Address (the host
adds its own), ``dst`` ff02::1.  Time is the float ``now``; randomness the injected ``rng``.
"""
import collections
import dataclasses
import random
import typing

from lwstack.wire import icmpv6

ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")

# RFC 4861 section 10, router constants.
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MAX_FINAL_RTR_ADVERTISEMENTS = 3
MIN_DELAY_BETWEEN_RAS = 3.0
MAX_RA_DELAY_TIME = 0.5
#: Prefix lifetimes' defaults (RFC 4861 6.2.1): 30 days valid, 7 days preferred.
DEFAULT_VALID_LIFETIME = 2592000
DEFAULT_PREFERRED_LIFETIME = 604800


@dataclasses.dataclass(frozen=True)
class RaPrefix:
    """A prefix to advertise (RFC 4861 4.6.2): ``prefix`` 16 bytes, ``on_link`` the L flag,
    ``autonomous`` the A flag (hosts form SLAAC addresses from it), lifetimes in seconds
    (0xffffffff: infinity)."""

    prefix: bytes
    prefix_len: int = 64
    on_link: bool = True
    autonomous: bool = True
    valid_lifetime: int = DEFAULT_VALID_LIFETIME
    preferred_lifetime: int = DEFAULT_PREFERRED_LIFETIME


@dataclasses.dataclass
class RouterConfig:
    """What a router advertises and how often (RFC 4861 6.2.1 names in the comments).

    Intervals in seconds: ``max_interval`` (MaxRtrAdvInterval, 4..1800, default 600) and
    ``min_interval`` (MinRtrAdvInterval, default 0.33 x max, at least 3 s when max allows,
    at most 0.75 x max).  ``router_lifetime`` (AdvDefaultLifetime, seconds, 0 = "not a default
    router"; default 3 x max, at most 9000).  ``reachable_time`` / ``retrans_timer`` in
    milliseconds (0: unspecified), ``hop_limit`` AdvCurHopLimit, ``mtu`` AdvLinkMTU (None: no
    MTU option), ``managed`` / ``other`` the M / O flags, ``preference`` RFC 4191's (-1, 0,
    1).  ``dns_servers`` (16-byte addresses) and ``domains`` become RDNSS and DNSSL options
    with ``dns_lifetime`` (default 3 x max).
    """

    prefixes: typing.Sequence[RaPrefix] = ()
    max_interval: float = 600.0
    min_interval: typing.Optional[float] = None
    router_lifetime: typing.Optional[int] = None
    hop_limit: int = 64
    reachable_time: int = 0
    retrans_timer: int = 0
    mtu: typing.Optional[int] = None
    managed: bool = False
    other: bool = False
    preference: int = 0
    dns_servers: typing.Sequence[bytes] = ()
    domains: typing.Sequence[str] = ()
    dns_lifetime: typing.Optional[int] = None

    def __post_init__(self):
        if not 4 <= self.max_interval <= 1800:
            raise ValueError("max_interval (MaxRtrAdvInterval) must be 4..1800 s")
        if self.min_interval is None:
            self.min_interval = max(min(3.0, 0.75 * self.max_interval), 0.33 * self.max_interval)
        if not 0 < self.min_interval <= 0.75 * self.max_interval:
            raise ValueError("min_interval must be above 0 and at most 0.75 x max_interval")
        if self.router_lifetime is None:
            self.router_lifetime = min(9000, int(3 * self.max_interval))
        if not (self.router_lifetime == 0 or
                self.max_interval <= self.router_lifetime <= 9000):
            raise ValueError("router_lifetime must be 0 or between max_interval and 9000 s")
        if self.dns_lifetime is None:
            self.dns_lifetime = int(3 * self.max_interval)
        for prefix in self.prefixes:
            if len(prefix.prefix) != 16 or not 0 <= prefix.prefix_len <= 128:
                raise ValueError(f"bad prefix {prefix!r}")
            if prefix.preferred_lifetime > prefix.valid_lifetime:
                raise ValueError("a prefix's preferred lifetime exceeds its valid lifetime")
        if self.mtu is not None and not 1280 <= self.mtu <= 0xFFFFFFFF:
            raise ValueError("the MTU option must be at least 1280")
        # Refuse what the wire cannot say now, not at the first RA.
        self.advertisement(stopping=False).emit(bytes(16), ALL_NODES)

    def advertisement(self, stopping):
        """The :class:`lwstack.wire.icmpv6.RouterAdvertisement` (router lifetime 0 when
        ``stopping``)."""
        options = {}
        if self.dns_servers:
            options["rdnss"] = (icmpv6.Rdnss(self.dns_lifetime,
                                             tuple(bytes(a) for a in self.dns_servers)),)
        if self.domains:
            options["dnssl"] = (icmpv6.Dnssl(self.dns_lifetime, tuple(self.domains)),)
        return icmpv6.RouterAdvertisement(
            hop_limit=self.hop_limit, managed=self.managed, other=self.other,
            router_lifetime=0 if stopping else self.router_lifetime,
            reachable_time=self.reachable_time, retrans_timer=self.retrans_timer,
            preference=self.preference, mtu=self.mtu,
            prefixes=tuple(icmpv6.PrefixInfo(p.prefix, p.prefix_len, p.on_link, p.autonomous,
                                             p.valid_lifetime, p.preferred_lifetime)
                           for p in self.prefixes),
            **options)


class RaServer:
    """Sends Router Advertisements for one link (see the module's design note)."""

    def __init__(self, config, rng=None):
        self.config = config
        self.rng = rng if rng is not None else random.Random()
        self.outbox = []
        self.stats = collections.Counter()
        self.running = False
        self.sent = 0                  # multicast RAs sent since start
        self._last_multicast = None    # when the last multicast RA went
        self._next_at = None           # the next RA (unsolicited or an answer)

    def start(self, now):
        """Become an advertising interface: the first RA goes out now."""
        if self.running:
            return
        self.running = True
        self.sent = 0
        self._send(now)

    def stop(self, now):
        """Cease advertising (6.2.5): one final RA with Router Lifetime 0, now."""
        if not self.running:
            return
        self.running = False
        self._next_at = None
        self.outbox.append(("ra", ALL_NODES, self.config.advertisement(stopping=True)))
        self.stats["ra_final"] += 1

    def receive_rs(self, src, now):
        """A valid Router Solicitation from ``src`` (6.2.6): schedule an answer."""
        if not self.running:
            return
        self.stats["rs_received"] += 1
        when = now + self.rng.uniform(0.0, MAX_RA_DELAY_TIME)
        if self._last_multicast is not None and \
                when < self._last_multicast + MIN_DELAY_BETWEEN_RAS:
            # "scheduled at MIN_DELAY_BETWEEN_RAS plus the random value after the previous"
            when = self._last_multicast + MIN_DELAY_BETWEEN_RAS + (when - now)
        if self._next_at is None or when < self._next_at:
            self._next_at = when
            self.stats["rs_answer_scheduled"] += 1

    def poll_at(self):
        """When the next RA is due, or None (stopped)."""
        return self._next_at

    def poll(self, now):
        """Send the RA that is due."""
        if self._next_at is not None and now >= self._next_at:
            self._send(now)

    def _send(self, now):
        self.outbox.append(("ra", ALL_NODES, self.config.advertisement(stopping=False)))
        self.stats["ra_sent"] += 1
        self.sent += 1
        self._last_multicast = now
        interval = self.rng.uniform(self.config.min_interval, self.config.max_interval)
        if self.sent <= MAX_INITIAL_RTR_ADVERTISEMENTS:
            interval = min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        self._next_at = now + interval
