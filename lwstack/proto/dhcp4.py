"""The DHCPv4 client (RFC 2131), with address conflict detection (RFC 5227).

Design note.  One :class:`Dhcp4Client` per interface, sans-IO: the host passes in the DHCP
payloads that reach UDP port 68 (:meth:`~Dhcp4Client.receive`), the ARP conflicts it sees
(:meth:`~Dhcp4Client.conflict`) and the time (:meth:`~Dhcp4Client.poll` at
:meth:`~Dhcp4Client.poll_at`); the client appends what the host must do to ``outbox``:

    ("udp", src, dst, 68, 67, payload, None)   send a datagram; src is 0.0.0.0 until bound;
                                               dst 255.255.255.255 is a link broadcast
    ("probe", addr)        send an ARP probe for addr (sender IP 0.0.0.0, RFC 5227 2.1.1)
    ("announce", addr)     send an ARP announcement of addr (RFC 5227 2.3)
    ("bound", lease)       configure lease.address/prefix_len, lease.routes, lease.dns ...
    ("renewed", lease)     the same address, new times (and possibly new options)
    ("lost", lease)        remove what "bound" configured (expiry, NAK, RELEASE on stop)

The 7-field "udp" record is shared with the server, whose last field can be a MAC to send to
without ARP; here it is always None.  The states, after RFC 2131 figure 5:

    INIT --DISCOVER--> SELECTING --OFFER/REQUEST--> REQUESTING --ACK--> PROBING --> BOUND
     ^  ^                                              |  NAK, no answer    | conflict:
     |  +----------------------------------------------+                    | DECLINE, 10 s
     |  +-------------------------------------------------------------------+
     |                                      BOUND --T1--> RENEWING --T2--> REBINDING
     +--NAK, lease expiry------------------------------------+----------------+
    INIT-REBOOT --REQUEST(previous address)--> REBOOTING --ACK--> PROBING (NAK: INIT)

- Retransmissions (RFC 2131 section 4.1): 4, 8, 16, 32, 64, 64 ... s, each +-1 s at random;
  DISCOVER forever, REQUEST ``request_tries`` times before going back to INIT (section 3.1
  step 5).  In RENEWING and REBINDING the wait is half the time left until T2 or expiry,
  at least 60 s (section 4.4.5).  Consecutive NAKs back off the same way, so a server that
  offers and then refuses cannot make the client loop at network speed.
- Lease times count from when the first REQUEST of the exchange was sent, not from the ACK
  (section 4.4.1): a slow answer shortens the lease rather than stretching it.
- After an ACK the address is probed (RFC 5227 2.1.1: a random wait up to PROBE_WAIT, then
  PROBE_NUM probes PROBE_MIN..PROBE_MAX apart, then ANNOUNCE_WAIT); the host owns ARP and
  reports conflicts.  A conflict sends DECLINE and waits 10 s before starting again (RFC 2131
  section 3.1 step 5), 60 s once MAX_CONFLICTS have happened in a row (RFC 5227 2.1.1).
  Conflicts after binding are the host's to defend (RFC 5227 2.4); they are only counted.
- The broadcast flag is set by default (``broadcast_flag``): a host that accepts unicast
  datagrams only for configured addresses can then receive the OFFER and ACK (section 4.1).
- A name from the stack's ``fqdn``: with a dot it goes in option 81 (RFC 4702, flags S and E:
  please register it; the host name option is then not sent, section 3.1), without one in
  option 12.  The client identifier is type 1 + MAC unless given.
- Malformed or foreign replies are counted in ``stats`` ("drop.<reason>") and dropped.
"""
import collections
import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

from lwstack.wire import WireError
from lwstack.wire import dhcp4
from lwstack.wire.dhcp4 import (ACK, ANY, BOOTREPLY, BOOTREQUEST, BROADCAST, CLIENT_PORT,
                                DECLINE, DISCOVER, FLAG_BROADCAST, FQDN_E, FQDN_S, INFINITE,
                                NAK, OFFER, RELEASE, REQUEST, SERVER_PORT, ClientFqdn,
                                DhcpMessage)

INIT = "INIT"
SELECTING = "SELECTING"
REQUESTING = "REQUESTING"
PROBING = "PROBING"
BOUND = "BOUND"
RENEWING = "RENEWING"
REBINDING = "REBINDING"
INIT_REBOOT = "INIT-REBOOT"
REBOOTING = "REBOOTING"
STOPPED = "STOPPED"

#: Options asked for.  RFC 3442 section 3: 121 must come before 3 in the list.
DEFAULT_PARAMS = (dhcp4.OPT_SUBNET_MASK, dhcp4.OPT_CLASSLESS_ROUTES, dhcp4.OPT_ROUTER,
                  dhcp4.OPT_DNS, dhcp4.OPT_DOMAIN_NAME, dhcp4.OPT_MTU,
                  dhcp4.OPT_LEASE_TIME, dhcp4.OPT_RENEWAL_TIME, dhcp4.OPT_REBINDING_TIME)
#: RFC 2131 section 3.1 step 5: wait at least this long after a DECLINE.
DECLINE_WAIT = 10.0
#: RFC 2131 section 4.4.5: the shortest wait between REQUESTs while renewing or rebinding.
MIN_RENEW_WAIT = 60.0


class ConflictDetection(NamedTuple):
    """RFC 5227 section 1.1's timing constants (seconds); the defaults are the RFC's."""

    probe_wait: float = 1.0
    probe_num: int = 3
    probe_min: float = 1.0
    probe_max: float = 2.0
    announce_wait: float = 2.0
    announce_num: int = 2
    announce_interval: float = 2.0
    max_conflicts: int = 10
    rate_limit_interval: float = 60.0


@dataclass(frozen=True)
class Lease:
    """What an ACK gave us, for the host to configure.

    ``routes`` is what to install: the classless static routes when the server sent option
    121 (RFC 3442 section 3: the router option is then ignored, and ``routers`` is empty),
    else a default route via the first router; each is ``(destination, prefix_len,
    gateway)``, a gateway of 0.0.0.0 meaning on-link.  Times are seconds; ``lease_time``,
    ``t1`` and ``t2`` are durations from ``obtained`` (math.inf for an infinite lease).
    """

    address: bytes
    prefix_len: int
    server_id: bytes
    routers: tuple
    dns: tuple
    domain: Optional[str]
    mtu: Optional[int]
    routes: tuple
    lease_time: float
    t1: float
    t2: float
    obtained: float

    @property
    def renew_at(self):
        """When RENEWING starts (T1)."""
        return self.obtained + self.t1

    @property
    def rebind_at(self):
        """When REBINDING starts (T2)."""
        return self.obtained + self.t2

    @property
    def expires(self):
        """When the address must stop being used."""
        return self.obtained + self.lease_time


class Dhcp4Client:
    """A DHCPv4 client for one interface with MAC ``mac`` (6 bytes); see the module notes.

    ``rng`` (random.Random) draws transaction ids and jitter.  ``fqdn``: the stack's name
    (option 81 or 12).  ``previous_address``: start in INIT-REBOOT asking for it.
    ``acd``: a :class:`ConflictDetection`, or None to bind without probing.
    ``initial_delay``: wait up to this long before the first message (RFC 2131 section 4.4.1
    suggests 1-10 s to desynchronise hosts booting together; 0 by default).
    """

    def __init__(self, mac, rng, *, fqdn=None, client_id=None, previous_address=None,
                 broadcast_flag=True, acd=ConflictDetection(), request_tries=4,
                 params=DEFAULT_PARAMS, initial_delay=0.0, max_outbox=64):
        if len(mac) != 6:
            raise ValueError("mac must be 6 bytes")
        if max_outbox < 8:
            raise ValueError("max_outbox must be at least 8")
        self.mac = bytes(mac)
        self.rng = rng
        self.fqdn = fqdn.rstrip(".") if fqdn else None
        self.client_id = bytes(client_id) if client_id is not None else b"\x01" + self.mac
        self.broadcast_flag = broadcast_flag
        self.acd = acd
        self.request_tries = request_tries
        self.params = tuple(params)
        self.initial_delay = initial_delay
        self.max_outbox = max_outbox
        self.outbox = []
        self.stats = collections.Counter()
        self.state = STOPPED
        self.lease = None           # the lease in use (BOUND, RENEWING, REBINDING)
        self._previous = previous_address
        self._pending = None        # the lease being probed
        self._server = None         # the server id chosen in SELECTING
        self._offered = None        # the address offered
        self._xid = 0
        self._started = 0.0         # when this exchange began (the 'secs' field)
        self._sent_first = 0.0      # when its first REQUEST went out (lease start)
        self._tries = 0
        self._deadline = None
        self._naks = 0
        self._conflicts = 0
        self._probes_sent = 0
        self._announce_at = None
        self._announces_left = 0

    # -- the host's calls -------------------------------------------------------------------

    def start(self, now):
        """Begin: INIT-REBOOT if a previous address was given, else INIT."""
        if self.state != STOPPED:
            raise RuntimeError("the client is already running")
        delay = self.rng.uniform(0, self.initial_delay) if self.initial_delay else 0.0
        self._enter(INIT_REBOOT if self._previous else INIT, now + delay)

    def stop(self, now):
        """Stop; a lease in use is released (RFC 2131 section 4.4.6) and reported lost."""
        if self.lease is not None:
            msg = self._message(RELEASE, now, ciaddr=self.lease.address)
            msg.set(dhcp4.OPT_SERVER_ID, self.lease.server_id)
            self._send(msg, self.lease.address, self.lease.server_id)
            self._lose(now)
        self.state = STOPPED
        self._deadline = self._announce_at = None

    def poll_at(self):
        """The next time :meth:`poll` has work, or None."""
        times = [t for t in (self._deadline, self._announce_at) if t is not None]
        return min(times) if times else None

    def poll(self, now):
        """Run the timers due at ``now``."""
        if self._announce_at is not None and now >= self._announce_at:
            self._emit(("announce", self.lease.address))
            self._announces_left -= 1
            self._announce_at = (now + self.acd.announce_interval
                                 if self._announces_left > 0 else None)
        # A timer may hand over to a state whose work is due at once (no answer to REQUEST:
        # INIT, which sends a DISCOVER), hence the loop; every handler moves the deadline on.
        while self._deadline is not None and now >= self._deadline:
            getattr(self, "_timer_" + self.state.replace("-", "_").lower())(now)

    def receive(self, payload, src, now):
        """A datagram that arrived on UDP port 68 from IPv4 address ``src``."""
        try:
            msg = DhcpMessage.parse(payload)
            kind = msg.message_type
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1
            return
        if msg.op != BOOTREPLY or msg.xid != self._xid or msg.chaddr != self.mac:
            self.stats["drop.not_ours"] += 1
            return
        handler = {OFFER: self._on_offer, ACK: self._on_ack, NAK: self._on_nak}.get(kind)
        if handler is None or not handler(msg, src, now):
            self.stats["drop.unexpected_" + _short_name(kind)] += 1

    def conflict(self, addr, now):
        """The host saw another machine claim ``addr`` (RFC 5227 2.1.1 rules)."""
        if self.state != PROBING or addr != self._pending.address:
            self.stats["conflict_ignored"] += 1
            return
        self.stats["conflict"] += 1
        self._conflicts += 1
        msg = self._message(DECLINE, now)
        msg.set(dhcp4.OPT_REQUESTED_IP, addr)
        msg.set(dhcp4.OPT_SERVER_ID, self._pending.server_id)
        self._send(msg, ANY, BROADCAST)
        wait = (self.acd.rate_limit_interval if self._conflicts >= self.acd.max_conflicts
                else DECLINE_WAIT)
        self._pending = None
        self._enter(INIT, now + wait)

    # -- timers -----------------------------------------------------------------------------

    def _timer_init(self, now):
        self._new_exchange(now)
        self.state = SELECTING
        self._send_discover(now)

    def _timer_selecting(self, now):
        self._send_discover(now)

    def _timer_init_reboot(self, now):
        self._new_exchange(now)
        self._server = None
        self._offered = self._previous
        self.state = REBOOTING
        self._send_request(now)

    def _timer_requesting(self, now):
        if self._tries >= self.request_tries:
            self.stats["request_timeout"] += 1
            self._enter(INIT, now)
            return
        self._send_request(now)

    _timer_rebooting = _timer_requesting

    def _timer_probing(self, now):
        acd = self.acd
        if self._probes_sent < acd.probe_num:
            self._emit(("probe", self._pending.address))
            self._probes_sent += 1
            last = self._probes_sent == acd.probe_num
            self._deadline = now + (acd.announce_wait if last
                                    else self.rng.uniform(acd.probe_min, acd.probe_max))
        else:
            self._bind(self._pending, now)

    def _timer_bound(self, now):
        self._new_exchange(now)
        self.state = RENEWING
        self._timer_renewing(now)

    def _timer_renewing(self, now):
        lease = self.lease
        if now >= lease.rebind_at:
            self._new_exchange(now)
            self.state = REBINDING
            self._timer_rebinding(now)
            return
        self._send_renewal(now, lease.server_id, lease.rebind_at)

    def _timer_rebinding(self, now):
        lease = self.lease
        if now >= lease.expires:
            self.stats["lease_expired"] += 1
            self._previous = lease.address
            self._lose(now)
            self._enter(INIT, now)
            return
        self._send_renewal(now, BROADCAST, lease.expires)

    # -- replies ----------------------------------------------------------------------------

    def _on_offer(self, msg, src, now):
        if self.state != SELECTING:
            return False
        server = self._server_id(msg, src)
        if server is None or not _usable(msg.yiaddr):
            self.stats["drop.bad_offer"] += 1
            return True
        self._server = server
        self._offered = msg.yiaddr
        self.state = REQUESTING
        self._tries = 0
        self._send_request(now)
        return True

    def _on_ack(self, msg, src, now):
        if self.state not in (REQUESTING, REBOOTING, RENEWING, REBINDING):
            return False
        if self.state == REQUESTING and self._server_id(msg, src) != self._server:
            self.stats["drop.other_server"] += 1
            return True
        try:
            lease = self._make_lease(msg, src)
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1
            return True
        if self.state in (RENEWING, REBINDING):
            if lease.address == self.lease.address:
                self.lease = lease
                self.state = BOUND
                self._deadline = lease.renew_at
                self.stats["renewed"] += 1
                self._emit(("renewed", lease))
                return True
            self._lose(now)     # a different address: start using it like a new one
        self._naks = 0
        self._check_address(lease, now)
        return True

    def _on_nak(self, msg, src, now):
        if self.state not in (REQUESTING, REBOOTING, RENEWING, REBINDING):
            return False
        if self.state == REQUESTING and self._server_id(msg, src) not in (None, self._server):
            self.stats["drop.other_server"] += 1
            return True
        self.stats["nak"] += 1
        if self.lease is not None:
            self._lose(now)
        self._previous = None
        # The first NAK restarts at once (RFC 2131 section 3.1 step 5); repeated ones back off.
        self._naks += 1
        self._enter(INIT, now if self._naks == 1 else now + self._backoff(self._naks - 2))
        return True

    # -- helpers ----------------------------------------------------------------------------

    def _enter(self, state, when):
        self.state = state
        self._deadline = when
        self._tries = 0

    def _new_exchange(self, now):
        self._xid = self.rng.getrandbits(32)
        self._started = now
        self._tries = 0

    def _backoff(self, tries):
        """RFC 2131 section 4.1: 4 s doubling to 64 s, each +-1 s."""
        return 4.0 * 2 ** min(tries, 4) + self.rng.uniform(-1.0, 1.0)

    def _check_address(self, lease, now):
        if self.acd is None or self.acd.probe_num <= 0:
            self._bind(lease, now)
            return
        self._pending = lease
        self._probes_sent = 0
        self._enter(PROBING, now + self.rng.uniform(0, self.acd.probe_wait))

    def _bind(self, lease, now):
        self._pending = None
        self._conflicts = 0
        self.lease = lease
        self._previous = lease.address
        self._enter(BOUND, None if math.isinf(lease.t1) else lease.renew_at)
        self.stats["bound"] += 1
        self._emit(("bound", lease))
        if self.acd is not None and self.acd.announce_num > 0:
            self._emit(("announce", lease.address))
            self._announces_left = self.acd.announce_num - 1
            self._announce_at = (now + self.acd.announce_interval
                                 if self._announces_left else None)

    def _lose(self, now):
        lease, self.lease = self.lease, None
        self._announce_at = None
        self.stats["lost"] += 1
        self._emit(("lost", lease))

    def _server_id(self, msg, src):
        """Option 54; the IP source for servers that leave it out; None if neither."""
        try:
            server = msg.get(dhcp4.OPT_SERVER_ID)
        except WireError:
            server = None
        if server is None and src is not None and _usable(src):
            server = bytes(src)
        return server

    def _make_lease(self, msg, src):
        if not _usable(msg.yiaddr):
            raise WireError("ack_bad_address")
        lease_time = msg.get(dhcp4.OPT_LEASE_TIME)
        if lease_time is None:
            raise WireError("ack_without_lease_time")     # RFC 2131 table 3: MUST
        mask = msg.get(dhcp4.OPT_SUBNET_MASK)
        prefix_len = dhcp4.mask_to_prefix(mask) if mask else _classful(msg.yiaddr)
        # A malformed optional option costs that option, not the lease.
        routers = self._optional(msg, dhcp4.OPT_ROUTER, ())
        classless = self._optional(msg, dhcp4.OPT_CLASSLESS_ROUTES, None)
        if classless is not None:
            routers = ()
            routes = classless
        else:
            routes = ((ANY, 0, routers[0]),) if routers else ()
        mtu = self._optional(msg, dhcp4.OPT_MTU, None)
        if mtu is not None and mtu < 68:      # RFC 2132 section 5.1: at least 68
            mtu = None
        if lease_time == INFINITE:
            lease_time = t1 = t2 = math.inf
        else:
            t1 = msg.get(dhcp4.OPT_RENEWAL_TIME)
            t2 = msg.get(dhcp4.OPT_REBINDING_TIME)
            if t1 is None or t2 is None or not 0 < t1 <= t2 <= lease_time:
                # RFC 2131 section 4.4.5 defaults.
                t1 = 0.5 * lease_time
                t2 = 0.875 * lease_time
        return Lease(address=bytes(msg.yiaddr), prefix_len=prefix_len,
                     server_id=self._server_id(msg, src) or self._server or ANY,
                     routers=routers, dns=self._optional(msg, dhcp4.OPT_DNS, ()),
                     domain=self._optional(msg, dhcp4.OPT_DOMAIN_NAME, None), mtu=mtu,
                     routes=routes,
                     lease_time=lease_time, t1=t1, t2=t2, obtained=self._sent_first)

    def _optional(self, msg, code, default):
        try:
            return msg.get(code, default)
        except WireError as exc:
            self.stats[f"ignored.{exc.reason}.{code}"] += 1
            return default

    def _message(self, kind, now, ciaddr=ANY):
        # RFC 2131 table 5: 'secs' counts from the start of the exchange; 0 in DECLINE/RELEASE.
        secs = min(max(int(now - self._started), 0), 0xFFFF) if kind in (DISCOVER, REQUEST) else 0
        msg = DhcpMessage(BOOTREQUEST, self._xid, secs=secs, ciaddr=ciaddr, chaddr=self.mac)
        msg.set(dhcp4.OPT_MESSAGE_TYPE, kind)
        msg.set(dhcp4.OPT_CLIENT_ID, self.client_id)
        if kind in (DISCOVER, REQUEST):
            # RFC 2131 table 5: no parameter list or names in DECLINE and RELEASE.
            msg.set(dhcp4.OPT_PARAM_REQUEST, self.params)
            if self.fqdn and "." in self.fqdn:
                msg.set(dhcp4.OPT_CLIENT_FQDN, ClientFqdn(FQDN_S | FQDN_E, self.fqdn + "."))
            elif self.fqdn:
                msg.set(dhcp4.OPT_HOST_NAME, self.fqdn)
            if ciaddr == ANY and self.broadcast_flag:
                msg.flags = FLAG_BROADCAST
        return msg

    def _send_discover(self, now):
        msg = self._message(DISCOVER, now)
        if self._previous:
            msg.set(dhcp4.OPT_REQUESTED_IP, self._previous)
        self._send(msg, ANY, BROADCAST)
        self._deadline = now + self._backoff(self._tries)
        self._tries += 1

    def _send_request(self, now):
        """REQUEST in REQUESTING (option 54 and 50) or REBOOTING (50 only)."""
        if self._tries == 0:
            self._sent_first = now
        msg = self._message(REQUEST, now)
        msg.set(dhcp4.OPT_REQUESTED_IP, self._offered)
        if self.state == REQUESTING:
            msg.set(dhcp4.OPT_SERVER_ID, self._server)
        self._send(msg, ANY, BROADCAST)
        self._deadline = now + self._backoff(self._tries)
        self._tries += 1

    def _send_renewal(self, now, dst, limit):
        """REQUEST with ciaddr, to the server (RENEWING) or broadcast (REBINDING)."""
        if self._tries == 0:
            self._sent_first = now
        self._send(self._message(REQUEST, now, ciaddr=self.lease.address),
                   self.lease.address, dst)
        self._deadline = min(now + max(MIN_RENEW_WAIT, (limit - now) / 2), limit)
        self._tries += 1

    def _send(self, msg, src, dst):
        self.stats["tx." + _short_name(msg.message_type)] += 1
        self._emit(("udp", src, dst, CLIENT_PORT, SERVER_PORT, msg.emit(), None))

    def _emit(self, action):
        if len(self.outbox) >= self.max_outbox:
            self.stats["outbox_full"] += 1
            return
        self.outbox.append(action)


def _short_name(kind):
    """"offer" for DHCPOFFER ...; "bootp" when there is no message type."""
    return dhcp4.MESSAGE_NAMES[kind][4:].lower() if kind in dhcp4.MESSAGE_NAMES else "bootp"


def _usable(addr):
    """A unicast address a host can be given: not 0.0.0.0, loopback, multicast or broadcast."""
    return len(addr) == 4 and 0 < addr[0] < 224 and addr[0] != 127


def _classful(addr):
    """The prefix length implied by the address class, when no mask option came (RFC 1122
    section 3.3.1.1 falls back on it)."""
    return 8 if addr[0] < 128 else 16 if addr[0] < 192 else 24
