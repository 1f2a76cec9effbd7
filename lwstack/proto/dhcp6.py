"""DHCPv6 client (RFC 8415): stateless configuration and one IA_NA, sans-IO.

Design note.  One object per interface, in one of two modes:

- ``"stateless"`` (RFC 8415 section 18.2.6): INFORMATION-REQUEST for DNS servers and domains,
  sent again when the Information Refresh Time runs out (default 86400 s, never below 600 s,
  section 21.23)::

      INFORMING --reply--> INFORMED --refresh time--> INFORMING

- ``"stateful"``: one IA_NA (section 18.2)::

      SOLICIT --advertise--> REQUEST --reply--> BOUND --T1--> RENEW --T2--> REBIND
         ^  (or reply with rapid commit) ----------^ ^------reply---+-----------+  |
         +-------- request failed / all addresses expired or declined --------------+

  The first SOLICIT waits a random 0..1 s (SOL_MAX_DELAY).  ADVERTISEs are collected until the
  first retransmission timeout; one with preference 255 is taken at once, and after the first
  RT the first acceptable one is (section 18.2.1).  An ADVERTISE without addresses is ignored
  (section 18.2.9).  RENEW goes at T1 to the server that gave the lease (its Server Identifier;
  still to ff02::1:2, since we never act on the Server Unicast option) until T2; REBIND, to any
  server, until the last valid lifetime ends; then the lease is lost and discovery starts
  again.  T1/T2 of 0 mean "client's choice": 0.5 and 0.8 of the shortest preferred lifetime
  (section 18.2.4).  ``conflict`` (the host's DAD failed) removes the address and sends
  DECLINE; ``stop`` sends RELEASE.  Both end on any valid REPLY, whatever its status
  (section 18.2.10.2).

Retransmission (section 15): for each exchange RT = IRT + RAND*IRT, then 2*RT + RAND*RT,
capped at MRT + RAND*MRT, RAND uniform in [-0.1, 0.1] from the injected ``rng`` (for the first
SOLICIT, RAND > 0 so RT > IRT).  An exchange ends after MRC transmissions or MRD seconds.
The Elapsed Time option counts hundredths of a second since the exchange's first transmission.

Interface with the host.  Every message goes in ``outbox`` as ``("udp", None, ff02::1:2, 546,
547, payload)``: the source None means "our link-local address".  The host passes every UDP
payload for port 546 to :meth:`Dhcp6Client.receive`, calls :meth:`Dhcp6Client.poll` when
:meth:`Dhcp6Client.poll_at` comes, and drains ``events``: ``("configured", info)`` when a lease
(or, stateless, the first answer) arrives, ``("renewed", info)`` whenever it changes after that,
``("lost", info)`` when its addresses must go (``info.reason`` says why: "expired" when
the lifetimes ran out or the server set them to 0, "declined", "released", "request_failed"
when the server lost our binding and would not give it back).  ``info`` (:class:`Dhcp6Info`) always holds the
complete current set: the host configures exactly ``info.addresses`` (as /128s: DHCPv6 says
nothing about prefixes, RFC 8415 section 21.6), deprecates an address at its
``preferred_until`` and removes it at ``valid_until``, and runs DAD on new ones.
Malformed or unexpected messages are counted in ``stats`` ("drop.<reason>") and dropped.
"""
import collections
import dataclasses
import math
import typing

from lwstack.wire import WireError
from lwstack.wire import dhcp6 as w

# Transmission parameters (RFC 8415 section 7.6): (IRT, MRT, MRC); 0 means "no limit".
SOL_MAX_DELAY = 1.0
INF_MAX_DELAY = 1.0
SOLICIT_PARAMS = (1.0, 3600.0, 0)
REQUEST_PARAMS = (1.0, 30.0, 10)
RENEW_PARAMS = (10.0, 600.0, 0)           # MRD: until T2
REBIND_PARAMS = (10.0, 600.0, 0)          # MRD: until the valid lifetimes end (expiry)
RELEASE_PARAMS = (1.0, 0.0, 4)
DECLINE_PARAMS = (1.0, 0.0, 4)
INFO_PARAMS = (1.0, 3600.0, 0)
#: Information Refresh Time when the server sends none, and its floor (section 21.23).
IRT_DEFAULT = 86400.0
IRT_MINIMUM = 600.0
#: SOL_MAX_RT / INF_MAX_RT options are honoured in this range (sections 21.24, 21.25).
MAX_RT_RANGE = (60, 86400)
#: T1 never comes sooner than this after a reply (a lease with preferred lifetime 0 would
#: otherwise renew in a tight loop).
MIN_T1 = 1.0

INIT = "INIT"
SOLICITING = "SOLICIT"
REQUESTING = "REQUEST"
BOUND = "BOUND"
RENEWING = "RENEW"
REBINDING = "REBIND"
DECLINING = "DECLINE"
RELEASING = "RELEASE"
INFORMING = "INFORMING"
INFORMED = "INFORMED"
STOPPED = "STOPPED"


@dataclasses.dataclass
class LeasedAddress:
    """An address from the server, with absolute deadlines (``math.inf`` for "infinity")."""

    address: bytes
    preferred_until: float
    valid_until: float


@dataclasses.dataclass
class Dhcp6Info:
    """What the client holds now: addresses, DNS servers (16-byte), search domains, name.

    ``fqdn`` is the name the server confirmed (RFC 4704 option) or else the one we sent;
    ``refresh_at`` the stateless refresh time; ``reason`` is set on "lost" events.
    """

    addresses: list
    dns_servers: list
    domains: list
    fqdn: typing.Optional[str] = None
    server_id: typing.Optional[bytes] = None
    server_address: typing.Optional[bytes] = None
    refresh_at: typing.Optional[float] = None
    reason: typing.Optional[str] = None


class _Exchange:
    """One message exchange with its retransmission state (RFC 8415 section 15)."""

    __slots__ = ("msg_type", "xid", "irt", "mrt", "mrc", "mrd_deadline", "started", "rt",
                 "count", "next_at", "addresses")

    def __init__(self, msg_type, xid, params, first_at, mrd_deadline, addresses):
        self.msg_type = msg_type
        self.xid = xid
        self.irt, self.mrt, self.mrc = params
        self.mrd_deadline = mrd_deadline
        self.started = None          # time of the first transmission
        self.rt = 0.0
        self.count = 0
        self.next_at = first_at
        self.addresses = addresses   # the IA's addresses this message carries


def _lifetime(seconds):
    return math.inf if seconds == w.INFINITY else float(seconds)


class Dhcp6Client:
    """A DHCPv6 client for one interface (see the module's design note).

    ``mac`` (6 bytes) gives the DUID-LL and, unless ``iaid`` is given, the IAID (its last
    four bytes).  ``fqdn`` is sent in a Client FQDN option (RFC 4704) with ``fqdn_flags``
    (S by default: please register our AAAA), so a namedhcp-style server can answer with the
    name's hash address.  ``rapid_commit`` asks for a two-message exchange.  ``rng`` is a
    ``random.Random``.  ``max_advertises`` bounds the ADVERTISEs held while choosing,
    ``max_queue`` the outbox and the event list (the host drains both after every call).
    """

    def __init__(self, mac, rng, *, mode="stateful", fqdn=None, fqdn_flags=w.FQDN_S,
                 duid=None, iaid=None, rapid_commit=False, max_advertises=8, max_queue=64):
        if mode not in ("stateful", "stateless"):
            raise ValueError(f"mode must be 'stateful' or 'stateless', not {mode!r}")
        if len(mac) != 6:
            raise ValueError("a MAC is 6 bytes")
        if fqdn is not None:
            w.encode_name(fqdn)  # refuse a bad name here, not when sending
        self.mode = mode
        self.rng = rng
        self.duid = duid if duid is not None else w.duid_ll(mac)
        self.iaid = iaid if iaid is not None else int.from_bytes(mac[2:], "big")
        self.fqdn = fqdn.rstrip(".") if fqdn else None
        self.fqdn_flags = fqdn_flags
        self.rapid_commit = rapid_commit
        self.max_advertises = max_advertises
        self.max_queue = max_queue
        self.sol_max_rt = SOLICIT_PARAMS[1]
        self.inf_max_rt = INFO_PARAMS[1]
        self.state = INIT
        self.outbox = []
        self.events = []
        self.stats = collections.Counter()
        self._exchange = None
        self._advertises = []        # (preference, arrival order, message, source)
        self._arrivals = 0
        self._server_id = None
        self._server_address = None
        self._addresses = {}         # address -> LeasedAddress
        self._dns = []
        self._domains = []
        self._fqdn_reply = None
        self._t1_at = math.inf
        self._t2_at = math.inf
        self._refresh_at = None
        self._configured = False     # a "configured" event went out for the current lease

    # --- the host's API -------------------------------------------------------------------

    def start(self, now):
        """Begin (once): the first SOLICIT or INFORMATION-REQUEST after a random delay."""
        if self.state != INIT:
            raise RuntimeError(f"start() in state {self.state}")
        if self.mode == "stateless":
            self._start_inform(now, self.rng.uniform(0.0, INF_MAX_DELAY))
        else:
            self._start_solicit(now)

    def stop(self, now):
        """Stop; with addresses held, RELEASE them (the "lost" event says so at once)."""
        if self._addresses and self._server_id is not None:
            released = list(self._addresses)
            self._lose(now, "released")
            self.state = RELEASING
            self._begin(w.RELEASE, RELEASE_PARAMS, now, addresses=released)
            self._fire(now)
        else:
            self.state = STOPPED
            self._exchange = None

    def conflict(self, address, now):
        """The host's duplicate address detection failed for ``address``: DECLINE it.

        The address leaves the lease at once ("renewed" without it, or "lost" when it was the
        only one); after the DECLINE exchange the client goes on with what is left, or
        solicits again.
        """
        if address not in self._addresses:
            self.stats["conflict_unknown_address"] += 1
            return
        declined = [address]
        if self.state == DECLINING:      # a second conflict: one DECLINE for both
            declined += self._exchange.addresses
        self.stats["declined"] += 1
        if len(self._addresses) == 1:
            self._lose(now, "declined")  # the event lists the address
        else:
            del self._addresses[address]
            self._event("renewed")
        self.state = DECLINING
        self._begin(w.DECLINE, DECLINE_PARAMS, now, addresses=declined)
        self._fire(now)

    def poll_at(self):
        """When :meth:`poll` next has work (None: never, until new input)."""
        times = []
        if self._exchange is not None:
            times.append(self._exchange.next_at)
        if self.state == BOUND:
            times.append(self._t1_at)
        if self._addresses:
            times.append(min(a.valid_until for a in self._addresses.values()))
        if self.state == INFORMED:
            times.append(self._refresh_at)
        times = [t for t in times if t != math.inf]
        return min(times) if times else None

    def poll(self, now):
        """Run the timers due at ``now``: retransmissions, T1, T2, expiry, refresh."""
        if self._addresses:
            self._expire(now)
        ex = self._exchange
        if ex is not None and now >= ex.next_at:
            if (ex.msg_type == w.SOLICIT and ex.count == 1 and self._advertises):
                self._choose_advertise(now)
            elif self._exhausted(ex, now):
                self._give_up(ex, now)
            else:
                self._fire(now)
        if self.state == BOUND:
            if now >= self._t2_at:           # polled late, or a DECLINE took until after T2
                self._start_rebind(now)
            elif now >= self._t1_at:
                self._start_renew(now)
        elif self.state == INFORMED and now >= self._refresh_at:
            self._start_inform(now, 0.0)

    def receive(self, payload, src, now):
        """A UDP payload that came to port 546 from ``src`` (a 16-byte address)."""
        try:
            msg = w.parse_message(payload)
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1
            return
        ex = self._exchange
        if ex is None or ex.count == 0 or msg.xid != ex.xid:
            self.stats["drop.unexpected_xid"] += 1
            return
        if msg.msg_type not in (w.ADVERTISE, w.REPLY):
            self.stats["drop.unexpected_type"] += 1
            return
        # RFC 8415 sections 16.3 and 16.10: a Server Identifier, and our Client Identifier.
        if msg.server_id is None:
            self.stats["drop.no_server_id"] += 1
            return
        if msg.client_id != self.duid:
            self.stats["drop.client_id_mismatch"] += 1
            return
        if msg.msg_type == w.ADVERTISE:
            if ex.msg_type == w.SOLICIT:
                self._on_advertise(msg, src, now)
            else:
                self.stats["drop.unexpected_type"] += 1
            return
        self._on_reply(ex, msg, src, now)

    @property
    def info(self):
        """A :class:`Dhcp6Info` snapshot of what the client holds now."""
        return Dhcp6Info(
            addresses=[dataclasses.replace(a) for a in self._addresses.values()],
            dns_servers=list(self._dns), domains=list(self._domains),
            fqdn=self._fqdn_reply or self.fqdn, server_id=self._server_id,
            server_address=self._server_address, refresh_at=self._refresh_at)

    # --- exchanges ------------------------------------------------------------------------

    def _begin(self, msg_type, params, now, delay=0.0, mrd_deadline=None, addresses=()):
        xid = self.rng.getrandbits(24)
        self._exchange = _Exchange(msg_type, xid, params, now + delay, mrd_deadline,
                                   list(addresses))

    def _exhausted(self, ex, now):
        if ex.count == 0:
            return False
        if ex.mrc and ex.count >= ex.mrc:
            return True
        return ex.mrd_deadline is not None and now >= ex.mrd_deadline

    def _fire(self, now):
        """Transmit the current exchange's message and schedule the next retransmission."""
        ex = self._exchange
        mrt = ex.mrt
        if ex.msg_type == w.SOLICIT:
            mrt = self.sol_max_rt
        elif ex.msg_type == w.INFORMATION_REQUEST:
            mrt = self.inf_max_rt
        if ex.count == 0:
            ex.started = now
            if ex.msg_type == w.SOLICIT:     # section 15: the first RT strictly above IRT
                rand = self.rng.uniform(0.0, 0.1) or 0.1
            else:
                rand = self.rng.uniform(-0.1, 0.1)
            ex.rt = ex.irt + rand * ex.irt
        else:
            ex.rt = 2 * ex.rt + self.rng.uniform(-0.1, 0.1) * ex.rt
        if mrt and ex.rt > mrt:
            ex.rt = mrt + self.rng.uniform(-0.1, 0.1) * mrt
        ex.next_at = now + ex.rt
        if ex.mrd_deadline is not None:
            ex.next_at = min(ex.next_at, ex.mrd_deadline)
        ex.count += 1
        elapsed = min(int(round((now - ex.started) * 100)), 0xFFFF)
        self.stats["tx." + w.MESSAGE_NAMES[ex.msg_type]] += 1
        self._push(self.outbox, ("udp", None, w.ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
                                 w.CLIENT_PORT, w.SERVER_PORT,
                                 self._build(ex, elapsed).emit()))

    def _build(self, ex, elapsed):
        msg = w.Message(ex.msg_type, ex.xid, client_id=self.duid, elapsed_time=elapsed)
        if ex.msg_type == w.INFORMATION_REQUEST:
            msg.oro = [w.OPTION_DNS_SERVERS, w.OPTION_DOMAIN_LIST,
                       w.OPTION_INFORMATION_REFRESH_TIME, w.OPTION_INF_MAX_RT]
            return msg
        if ex.msg_type in (w.REQUEST, w.RENEW, w.RELEASE, w.DECLINE):
            msg.server_id = self._server_id
        # Lifetimes in client messages are 0 (section 21.6); T1/T2 too (section 21.4).
        msg.ia_na = [w.IaNa(self.iaid, addresses=[w.IaAddress(a) for a in ex.addresses])]
        if ex.msg_type in (w.SOLICIT, w.REQUEST, w.RENEW, w.REBIND):
            msg.oro = [w.OPTION_DNS_SERVERS, w.OPTION_DOMAIN_LIST, w.OPTION_SOL_MAX_RT]
            if self.fqdn:
                msg.fqdn = w.ClientFqdn(self.fqdn_flags, self.fqdn)
        if ex.msg_type == w.SOLICIT and self.rapid_commit:
            msg.rapid_commit = True
        return msg

    def _give_up(self, ex, now):
        """An exchange ran out of MRC/MRD (section 18.2)."""
        self.stats["exhausted." + w.MESSAGE_NAMES[ex.msg_type]] += 1
        if ex.msg_type == w.REQUEST:
            self._start_solicit(now)
        elif ex.msg_type == w.RENEW:          # MRD: T2 has come
            self._start_rebind(now)
        elif ex.msg_type == w.RELEASE:
            self._exchange = None
            self.state = STOPPED
        elif ex.msg_type == w.DECLINE:
            self._after_decline(now)

    def _start_solicit(self, now):
        if self._addresses:                  # a failed re-REQUEST after NoBinding
            self._lose(now, "request_failed")
        self._clear_lease()
        self._advertises = []
        self.state = SOLICITING
        self._begin(w.SOLICIT, SOLICIT_PARAMS, now, delay=self.rng.uniform(0.0, SOL_MAX_DELAY))

    def _start_request(self, adv, src, now):
        self._server_id = adv.server_id
        self._server_address = src
        self._advertises = []
        self.state = REQUESTING
        ia = self._our_ia(adv)
        self._begin(w.REQUEST, REQUEST_PARAMS, now,
                    addresses=[a.address for a in self._usable(ia)])
        self._fire(now)

    def _start_renew(self, now):
        self.state = RENEWING
        self._begin(w.RENEW, RENEW_PARAMS, now, mrd_deadline=self._t2_at,
                    addresses=list(self._addresses))
        self._fire(now)

    def _start_rebind(self, now):
        # MRD is "until the valid lifetimes end": the expiry in poll() ends the exchange.
        self.state = REBINDING
        self._begin(w.REBIND, REBIND_PARAMS, now, addresses=list(self._addresses))
        self._fire(now)

    def _start_inform(self, now, delay):
        self.state = INFORMING
        self._begin(w.INFORMATION_REQUEST, INFO_PARAMS, now, delay=delay)
        if delay <= 0:
            self._fire(now)

    def _after_decline(self, now):
        self._exchange = None
        if self._addresses:
            self.state = BOUND           # poll() renews or rebinds if T1/T2 passed meanwhile
        else:
            self._start_solicit(now)

    # --- input ----------------------------------------------------------------------------

    def _our_ia(self, msg):
        """Our IA_NA in ``msg``, or None (also when T1 > T2 > 0 makes it invalid, 21.4).

        namedhcp answers with an IAID of its own (a hash of the address); a message with a
        single IA_NA is taken as ours.
        """
        ia = msg.find_ia(self.iaid)
        if ia is None and len(msg.ia_na) == 1:
            ia = msg.ia_na[0]
            self.stats["foreign_iaid"] += 1
        if ia is not None and 0 < ia.t2 < ia.t1:
            self.stats["drop.ia_t1_above_t2"] += 1
            return None
        return ia

    @staticmethod
    def _usable(ia):
        """The IA's addresses that can be used (section 18.2.10.1 and 21.6)."""
        if ia is None or (ia.status is not None and ia.status.code != w.STATUS_SUCCESS):
            return []
        return [a for a in ia.addresses
                if a.valid and a.preferred <= a.valid
                and (a.status is None or a.status.code == w.STATUS_SUCCESS)]

    def _on_advertise(self, msg, src, now):
        if msg.sol_max_rt is not None and MAX_RT_RANGE[0] <= msg.sol_max_rt <= MAX_RT_RANGE[1]:
            self.sol_max_rt = float(msg.sol_max_rt)
        if msg.status is not None and msg.status.code != w.STATUS_SUCCESS:
            self.stats["drop.advertise_status_%d" % msg.status.code] += 1
            return
        if not self._usable(self._our_ia(msg)):
            self.stats["drop.advertise_no_addrs"] += 1
            return
        preference = msg.preference or 0
        if preference == 255 or self._exchange.count > 1:
            self._start_request(msg, src, now)
            return
        self._arrivals += 1
        entry = (preference, -self._arrivals, msg, src)
        if len(self._advertises) >= self.max_advertises:
            self.stats["drop.advertise_overflow"] += 1
            worst = min(self._advertises, key=lambda e: e[:2])
            if worst[:2] >= entry[:2]:
                return
            self._advertises.remove(worst)
        self._advertises.append(entry)

    def _choose_advertise(self, now):
        """The first RT is over: the highest preference wins, the earliest among equals."""
        _, _, msg, src = max(self._advertises, key=lambda e: e[:2])
        self._start_request(msg, src, now)

    def _on_reply(self, ex, msg, src, now):
        status = msg.status.code if msg.status is not None else w.STATUS_SUCCESS
        if ex.msg_type in (w.RELEASE, w.DECLINE):
            # Section 18.2.10.2: complete whatever the status says.
            if ex.msg_type == w.RELEASE:
                self._exchange = None
                self.state = STOPPED
            else:
                self._after_decline(now)
            return
        if status in (w.STATUS_UNSPEC_FAIL, w.STATUS_USE_MULTICAST):
            # Section 18.2.10: the server could not answer now; keep retransmitting.
            self.stats["drop.reply_status_%d" % status] += 1
            return
        if ex.msg_type == w.INFORMATION_REQUEST:
            self._on_information(msg, src, now)
            return
        if ex.msg_type == w.SOLICIT and not (self.rapid_commit and msg.rapid_commit):
            self.stats["drop.reply_without_rapid_commit"] += 1
            return
        ia = self._our_ia(msg)
        if ex.msg_type in (w.SOLICIT, w.REQUEST):
            if status != w.STATUS_SUCCESS or not self._usable(ia):
                self.stats["request_refused"] += 1
                if ex.msg_type == w.REQUEST:  # a refused rapid commit: keep soliciting
                    self._start_solicit(now)
                return
            self._clear_lease()
            self._accept(msg, ia, src, now)
            return
        # RENEW or REBIND (section 18.2.10.1).
        if ia is None:
            self.stats["drop.reply_without_ia"] += 1
            return
        code = ia.status.code if ia.status is not None else w.STATUS_SUCCESS
        if code == w.STATUS_NO_BINDING:
            # The server lost our binding: REQUEST the same addresses from it.
            self.stats["no_binding"] += 1
            self._server_id = msg.server_id
            self._server_address = src
            self.state = REQUESTING
            self._begin(w.REQUEST, REQUEST_PARAMS, now, addresses=list(self._addresses))
            self._fire(now)
            return
        if code != w.STATUS_SUCCESS:
            self.stats["drop.renew_status_%d" % code] += 1    # keep the leases, keep trying
            return
        self._accept(msg, ia, src, now)

    def _accept(self, msg, ia, src, now):
        """Record the lease in a REPLY: add, update, drop valid-0 addresses (18.2.10.1)."""
        for addr in ia.addresses:
            if addr.status is not None and addr.status.code != w.STATUS_SUCCESS:
                continue
            if addr.valid == 0:
                self._addresses.pop(addr.address, None)
            elif addr.preferred <= addr.valid:
                self._addresses[addr.address] = LeasedAddress(
                    addr.address, now + _lifetime(addr.preferred), now + _lifetime(addr.valid))
        self._server_id = msg.server_id
        self._server_address = src
        if msg.dns_servers is not None:
            self._dns = list(msg.dns_servers)
        if msg.domains is not None:
            self._domains = list(msg.domains)
        if msg.fqdn is not None and msg.fqdn.name:
            self._fqdn_reply = msg.fqdn.name
        self._exchange = None
        if not self._addresses:
            self._lose(now, "expired")
            self._start_solicit(now)
            return
        self._set_timers(ia.t1, ia.t2, now)
        self.state = BOUND
        self._event("renewed" if self._configured else "configured")
        self._configured = True

    def _set_timers(self, t1, t2, now):
        """T1 and T2 from the IA, or 0.5/0.8 of the shortest preferred lifetime (18.2.4)."""
        leases = self._addresses.values()
        preferred = [a.preferred_until - now for a in leases if a.preferred_until > now]
        base = min(preferred or [a.valid_until - now for a in leases])
        t1 = _lifetime(t1) if t1 else 0.5 * base
        t2 = _lifetime(t2) if t2 else 0.8 * base
        t1 = max(t1, MIN_T1)
        t2 = max(t2, t1)
        self._t1_at = now + t1
        self._t2_at = now + t2

    def _on_information(self, msg, src, now):
        if msg.inf_max_rt is not None and MAX_RT_RANGE[0] <= msg.inf_max_rt <= MAX_RT_RANGE[1]:
            self.inf_max_rt = float(msg.inf_max_rt)
        self._dns = list(msg.dns_servers or ())
        self._domains = list(msg.domains or ())
        self._server_id = msg.server_id
        self._server_address = src
        refresh = IRT_DEFAULT if msg.refresh_time is None else _lifetime(msg.refresh_time)
        self._refresh_at = now + max(refresh, IRT_MINIMUM)
        self._exchange = None
        self.state = INFORMED
        self._event("renewed" if self._configured else "configured")
        self._configured = True

    # --- lease bookkeeping ----------------------------------------------------------------

    def _expire(self, now):
        gone = [a for a, lease in self._addresses.items() if lease.valid_until <= now]
        if not gone:
            return
        self.stats["expired"] += len(gone)
        if len(gone) == len(self._addresses):
            self._lose(now, "expired")       # the event lists what is being lost
            self._start_solicit(now)
            return
        for address in gone:
            del self._addresses[address]
        self._event("renewed")

    def _lose(self, now, reason):
        info = self.info
        info.reason = reason
        self._push(self.events, ("lost", info))
        self._addresses = {}
        self._configured = False
        self._t1_at = self._t2_at = math.inf
        self._exchange = None

    def _clear_lease(self):
        self._addresses = {}
        self._t1_at = self._t2_at = math.inf

    def _event(self, kind):
        self._push(self.events, (kind, self.info))

    def _push(self, queue, item):
        if len(queue) >= self.max_queue:
            del queue[0]
            self.stats["queue_overflow"] += 1
        queue.append(item)
