"""A DHCPv6 server for one link (RFC 8415 section 18.3): stateless answers and IA_NA leases.

Design note.  Sans-IO: the host passes in what reaches UDP port 547
(:meth:`~Dhcp6Server.receive`, with ``unicast=True`` when it was not sent to ff02::1:2) and
polls the timers; replies go to ``outbox`` as ``("udp", None, client, 547, 546, payload)``,
``None`` meaning "our link-local address" and ``client`` the link-local source of the request.

Addresses come from two sources, tried in this order for an IA without a binding:

- hash addresses (``hash_base``): a client that sends a Client FQDN option (RFC 4704) gets the
  iothaddr hash address of its name (:func:`lwstack.iface.addrgen.hash_address`), like
  VirtualSquare's namedhcp.  The address belongs to the name, not to the client: a new client
  (a restarted process with a new MAC and DUID) that sends the same name takes the binding
  over; duplicate address detection guards against two live nodes with one name.  A partial
  name (no dots) is completed with the first of ``domains``.
- a pool, ``pool=(first, last)`` (16-byte addresses, inclusive), handed out in order from a
  cursor, skipping addresses in use, declined or ``reserved``.

Leases live in one table bounded by ``max_leases``: an address is OFFERED after an ADVERTISE
(held ``offer_time`` seconds, so two soliciting clients do not get the same one), BOUND after
a REPLY (until its valid lifetime ends, renewed by RENEW/REBIND), or DECLINED (kept out of use
for ``decline_time`` seconds, section 18.3.8).  A full table answers NoAddrsAvail.

Messages (section 16 validation first: a Client Identifier always, our Server Identifier in
REQUEST/RENEW/RELEASE/DECLINE, none in SOLICIT/CONFIRM/REBIND; a REQUEST for another server
is its business, silently dropped):

- SOLICIT: ADVERTISE with an address per IA_NA (and the Preference option if configured),
  or a REPLY with the lease committed when both sides want rapid commit (section 18.3.1).
  Nothing to give: ADVERTISE with only a NoAddrsAvail status, as dnsmasq sends it.
- REQUEST: commit (the offered address, or a new one); an IA that gets nothing carries
  NoAddrsAvail.  Addresses the client lists that are not its lease come back with lifetimes
  0 (section 18.3.2), so it drops them.
- RENEW: extend the client's binding; without one, NoBinding (section 18.3.4).
- REBIND: extend; without a binding, re-create it when the client's address is on the link
  and free (a restarted server keeps its clients, section 18.3.5), return addresses that are
  not on the link with lifetimes 0, else NoBinding.
- RELEASE / DECLINE: free / quarantine the client's addresses; Success, NoBinding per unknown
  IA (sections 18.3.7, 18.3.8).  CONFIRM: Success if every address is on the link, else
  NotOnLink; no reply without addresses (section 18.3.3).
- INFORMATION-REQUEST: DNS servers, domains and ``refresh_time`` if configured (18.3.6).
- Received by unicast (we never send the Server Unicast option): SOLICIT, CONFIRM and REBIND
  are dropped, the others answered with UseMulticast (section 18.4).

DNS servers and domains are sent in every reply.  The Client FQDN option is echoed with the
name we used; we perform no DNS update ourselves (RFC 4704 section 4.1: N set, O when we
override the client's S), unless ``register_names`` says a local DNS server answers for the
names in :meth:`~Dhcp6Server.active` (then S is echoed).  Relay messages are not supported.
"""
import collections
import dataclasses
import heapq
import math
import typing

from lwstack.iface.addrgen import hash_address
from lwstack.wire import WireError
from lwstack.wire import dhcp6 as w

OFFERED = "OFFERED"
BOUND = "BOUND"
DECLINED = "DECLINED"


@dataclasses.dataclass
class Lease6:
    """One address in the table: who has it (DUID and IAID), in which state, until when."""

    address: bytes
    duid: typing.Optional[bytes]
    iaid: typing.Optional[int]
    state: str
    expires: float
    fqdn: typing.Optional[str] = None


def _lifetime(seconds):
    return math.inf if seconds == w.INFINITY else float(seconds)


def _int(addr):
    return int.from_bytes(addr, "big")


class Dhcp6Server:
    """A DHCPv6 server identified by ``duid`` (see the module's design note).

    ``prefix`` = (16-byte network, prefix length) is the link's prefix, used to tell
    addresses on the link (CONFIRM, REBIND); without it, the pool and the hash base's /64
    are.  Lifetimes in seconds (:data:`~lwstack.wire.dhcp6.INFINITY` for ever); ``t1``/``t2``
    default to 0.5/0.8 of the preferred lifetime.
    """

    def __init__(self, duid, *, pool=None, hash_base=None, prefix=None, dns_servers=(),
                 domains=(), preferred_lifetime=3600, valid_lifetime=7200, t1=None, t2=None,
                 preference=None, rapid_commit=True, refresh_time=None, register_names=False,
                 reserved=(), max_leases=1024, offer_time=60.0, decline_time=3600.0,
                 max_outbox=256):
        w.parse_duid(duid)
        if pool is not None and _int(pool[0]) > _int(pool[1]):
            raise ValueError("the pool's first address is after its last")
        if not 0 < preferred_lifetime <= valid_lifetime <= w.INFINITY:
            raise ValueError("need 0 < preferred_lifetime <= valid_lifetime")
        if t1 is not None and t2 is not None and t1 > t2:
            raise ValueError("t1 must not exceed t2")
        if max_leases < 1:
            raise ValueError("max_leases must be at least 1")
        self.duid = bytes(duid)
        self.pool = (bytes(pool[0]), bytes(pool[1])) if pool is not None else None
        self.hash_base = bytes(hash_base) if hash_base is not None else None
        self.prefix = (bytes(prefix[0]), prefix[1]) if prefix is not None else None
        self.dns_servers = [bytes(a) for a in dns_servers]
        self.domains = [d.rstrip(".") for d in domains]
        for domain in self.domains:
            w.encode_name(domain)            # refuse a bad name here, not in every reply
        self.preferred_lifetime = preferred_lifetime
        self.valid_lifetime = valid_lifetime
        infinite = preferred_lifetime == w.INFINITY
        self.t1 = t1 if t1 is not None else (w.INFINITY if infinite else preferred_lifetime // 2)
        self.t2 = t2 if t2 is not None else (w.INFINITY if infinite
                                             else preferred_lifetime * 4 // 5)
        self.preference = preference
        self.rapid_commit = rapid_commit
        self.refresh_time = refresh_time
        self.register_names = register_names
        self.reserved = {bytes(a) for a in reserved}
        self.max_leases = max_leases
        self.offer_time = offer_time
        self.decline_time = decline_time
        self.max_outbox = max_outbox
        self.outbox = []
        self.stats = collections.Counter()
        self.leases = {}                 # address -> Lease6
        self._bindings = {}              # (duid, iaid) -> address
        self._timers = []                # heap of (expires, address); stale entries skipped
        self._cursor = _int(self.pool[0]) if self.pool else 0

    # --- the host's calls -----------------------------------------------------------------

    def receive(self, payload, src, now, unicast=False):
        """A datagram that reached UDP port 547 from ``src`` (the client's 16-byte address)."""
        self.poll(now)
        try:
            msg = w.parse_message(payload)
            reply = self._dispatch(msg, now, unicast)
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1
            return
        if reply is None:
            return
        self.stats["tx." + w.MESSAGE_NAMES[reply.msg_type]] += 1
        if len(self.outbox) >= self.max_outbox:
            self.stats["outbox_full"] += 1
            return
        self.outbox.append(("udp", None, bytes(src), w.SERVER_PORT, w.CLIENT_PORT,
                            reply.emit()))

    def poll_at(self):
        """The next time :meth:`poll` has work (an offer, lease or quarantine ending), or None."""
        while self._timers:
            expires, address = self._timers[0]
            lease = self.leases.get(address)
            if lease is not None and lease.expires == expires:
                return expires
            heapq.heappop(self._timers)
        return None

    def poll(self, now):
        """Forget the offers, leases and declined addresses whose time is over."""
        while self._timers and self._timers[0][0] <= now:
            expires, address = heapq.heappop(self._timers)
            lease = self.leases.get(address)
            if lease is not None and lease.expires == expires:
                self.stats["expired." + lease.state.lower()] += 1
                self._drop(lease)

    def active(self, now):
        """The BOUND leases valid at ``now`` (with their ``fqdn``, for a DNS server)."""
        return [lease for lease in self.leases.values()
                if lease.state == BOUND and lease.expires > now]

    # --- messages -------------------------------------------------------------------------

    def _dispatch(self, msg, now, unicast):
        kind = msg.msg_type
        if kind in (w.ADVERTISE, w.REPLY, w.RECONFIGURE):
            raise WireError("not_a_client_message")
        # Section 16: what each message must and must not carry.
        if msg.client_id is None and kind != w.INFORMATION_REQUEST:
            raise WireError("no_client_id")
        if kind in (w.SOLICIT, w.CONFIRM, w.REBIND):
            if msg.server_id is not None:
                raise WireError("unexpected_server_id")
            if unicast:
                raise WireError("unicast")              # section 18.4
        elif kind == w.INFORMATION_REQUEST:
            if msg.server_id is not None and msg.server_id != self.duid:
                self.stats["other_server"] += 1
                return None
            if msg.ia_na:
                raise WireError("ia_in_information_request")   # section 16.12
        elif msg.server_id != self.duid:
            self.stats["other_server"] += 1
            return None
        if unicast:
            reply = self._reply(msg)
            reply.status = w.StatusCode(w.STATUS_USE_MULTICAST, "use multicast")
            return reply
        handler = {w.SOLICIT: self._solicit, w.REQUEST: self._request, w.RENEW: self._renew,
                   w.REBIND: self._rebind, w.RELEASE: self._release,
                   w.DECLINE: self._decline, w.CONFIRM: self._confirm,
                   w.INFORMATION_REQUEST: self._information}[kind]
        return handler(msg, now)

    def _reply(self, msg, kind=w.REPLY):
        return w.Message(kind, msg.xid, client_id=msg.client_id, server_id=self.duid)

    def _with_options(self, reply, msg):
        if self.dns_servers:
            reply.dns_servers = list(self.dns_servers)
        if self.domains:
            reply.domains = list(self.domains)
        if msg.fqdn is not None:
            reply.fqdn = self._fqdn_reply(msg.fqdn)
        return reply

    def _solicit(self, msg, now):
        commit = msg.rapid_commit and self.rapid_commit
        answers = [(ia, self._allocate(msg, ia, now, commit)) for ia in msg.ia_na]
        if not any(address for _, address in answers):
            self.stats["no_addrs_avail"] += 1
            reply = self._reply(msg, w.ADVERTISE)
            reply.status = w.StatusCode(w.STATUS_NO_ADDRS_AVAIL, "no addresses available")
            return reply
        reply = self._reply(msg, w.REPLY if commit else w.ADVERTISE)
        reply.rapid_commit = commit
        if not commit and self.preference is not None:
            reply.preference = self.preference
        reply.ia_na = [self._ia_answer(ia, address) for ia, address in answers]
        return self._with_options(reply, msg)

    def _request(self, msg, now):
        reply = self._reply(msg)
        reply.ia_na = [self._ia_answer(ia, self._allocate(msg, ia, now, True))
                       for ia in msg.ia_na]
        return self._with_options(reply, msg)

    def _renew(self, msg, now):
        reply = self._reply(msg)
        for ia in msg.ia_na:
            address = self._bound(msg.client_id, ia.iaid)
            if address is None:
                self.stats["no_binding"] += 1
                reply.ia_na.append(self._no_binding(ia))
            else:
                self._commit(address, msg, ia, now)
                reply.ia_na.append(self._ia_answer(ia, address))
        return self._with_options(reply, msg)

    def _rebind(self, msg, now):
        reply = self._reply(msg)
        for ia in msg.ia_na:
            address = self._bound(msg.client_id, ia.iaid)
            if address is None:
                address = next((a.address for a in ia.addresses
                                if self._free_for(a.address, msg, ia)
                                and self._room_for(a.address)), None)
            if address is not None:
                self._commit(address, msg, ia, now)
                reply.ia_na.append(self._ia_answer(ia, address))
            elif any(not self._on_link(a.address) for a in ia.addresses):
                reply.ia_na.append(self._ia_answer(ia, None, False))   # lifetimes 0
            else:
                self.stats["no_binding"] += 1
                reply.ia_na.append(self._no_binding(ia))
        return self._with_options(reply, msg)

    def _release(self, msg, now):
        return self._give_back(msg, now, declined=False)

    def _decline(self, msg, now):
        return self._give_back(msg, now, declined=True)

    def _give_back(self, msg, now, declined):
        reply = self._reply(msg)
        for ia in msg.ia_na:
            address = self._bindings.get((msg.client_id, ia.iaid))
            if address is None or address not in [a.address for a in ia.addresses]:
                reply.ia_na.append(self._no_binding(ia))
                continue
            lease = self.leases[address]
            if declined:
                self.stats["declined"] += 1
                del self._bindings[(lease.duid, lease.iaid)]
                lease.duid = lease.iaid = None
                lease.state = DECLINED
                self._set_expiry(lease, now + self.decline_time)
            else:
                self.stats["released"] += 1
                self._drop(lease)
        reply.status = w.StatusCode(w.STATUS_SUCCESS,
                                    "decline received" if declined else "release received")
        return reply

    def _confirm(self, msg, now):
        addresses = [a.address for ia in msg.ia_na for a in ia.addresses]
        if not addresses:
            return None
        reply = self._reply(msg)
        if all(self._on_link(a) for a in addresses):
            reply.status = w.StatusCode(w.STATUS_SUCCESS, "all addresses still on link")
        else:
            reply.status = w.StatusCode(w.STATUS_NOT_ON_LINK, "not on link")
        return reply

    def _information(self, msg, now):
        reply = self._with_options(self._reply(msg), msg)
        if self.refresh_time is not None:
            reply.refresh_time = self.refresh_time
        return reply

    # --- addresses ------------------------------------------------------------------------

    def _complete(self, name):
        """A host name without dots completed with our first domain (if it still fits)."""
        if name and "." not in name and self.domains:
            full = f"{name}.{self.domains[0]}"
            if len(full) <= 253:           # 255 bytes in wire form
                return full
        return name

    def _name(self, msg):
        """The client's name from its FQDN option (completed if partial), or None."""
        if msg.fqdn is None or not msg.fqdn.name:
            return None
        return self._complete(msg.fqdn.name)

    def _fqdn_reply(self, fqdn):
        name = self._complete(fqdn.name)
        if self.register_names:
            flags = fqdn.flags & w.FQDN_S
        else:
            flags = w.FQDN_N | (w.FQDN_O if fqdn.flags & w.FQDN_S else 0)
        return w.ClientFqdn(flags, name, partial="." not in name)

    def _bound(self, duid, iaid):
        address = self._bindings.get((duid, iaid))
        if address is not None and self.leases[address].state == BOUND:
            return address
        return None

    def _allocate(self, msg, ia, now, commit):
        """An address for this IA (offered, or committed), or None when none is left."""
        key = (msg.client_id, ia.iaid)
        address = self._bindings.get(key)
        if address is None:
            address = self._hash_candidate(msg, key)
        if address is None and self.pool is not None:
            address = self._pool_candidate()
        if address is None:
            self.stats["pool_exhausted"] += 1
            return None
        if not self._room_for(address):
            return None
        if commit:
            self._commit(address, msg, ia, now)
        else:
            self._offer(address, msg, ia, now)
        return address

    def _hash_candidate(self, msg, key):
        name = self._name(msg)
        if self.hash_base is None or name is None:
            return None
        address = hash_address(self.hash_base, name)
        lease = self.leases.get(address)
        if lease is None:
            return address
        if lease.state == DECLINED or lease.fqdn != name:
            self.stats["hash_address_unavailable"] += 1
            return None
        if (lease.duid, lease.iaid) != key:     # the name moved to a new client
            self.stats["hash_takeover"] += 1
            self._bindings.pop((lease.duid, lease.iaid), None)
        return address

    def _pool_candidate(self):
        first, last = _int(self.pool[0]), _int(self.pool[1])
        size = last - first + 1
        for _ in range(min(size, len(self.leases) + len(self.reserved) + 1)):
            candidate = self._cursor.to_bytes(16, "big")
            self._cursor = first if self._cursor >= last else self._cursor + 1
            if candidate not in self.leases and candidate not in self.reserved:
                return candidate
        return None

    def _room_for(self, address):
        """Whether the table can take ``address`` (``max_leases``)."""
        if address in self.leases or len(self.leases) < self.max_leases:
            return True
        self.stats["lease_table_full"] += 1
        return False

    def _free_for(self, address, msg, ia):
        """Whether a REBINDing client without a binding may have ``address`` back."""
        if address in self.reserved or not self._on_link(address):
            return False
        in_pool = self.pool is not None and (
            _int(self.pool[0]) <= _int(address) <= _int(self.pool[1]))
        name = self._name(msg)
        is_hash = (self.hash_base is not None and name is not None
                   and hash_address(self.hash_base, name) == address)
        if not (in_pool or is_hash):
            return False
        lease = self.leases.get(address)
        return lease is None or (lease.state != DECLINED
                                 and (lease.duid, lease.iaid) == (msg.client_id, ia.iaid))

    def _on_link(self, address):
        if self.prefix is not None:
            network, length = self.prefix
            shift = 128 - length
            return _int(address) >> shift == _int(network) >> shift
        if self.pool is not None and _int(self.pool[0]) <= _int(address) <= _int(self.pool[1]):
            return True
        return self.hash_base is not None and address[:8] == self.hash_base[:8]

    def _offer(self, address, msg, ia, now):
        lease = self._hold(address, msg, ia)
        if lease.state != BOUND:
            lease.state = OFFERED
            self._set_expiry(lease, now + self.offer_time)

    def _commit(self, address, msg, ia, now):
        lease = self._hold(address, msg, ia)
        lease.state = BOUND
        self._set_expiry(lease, now + _lifetime(self.valid_lifetime))

    def _hold(self, address, msg, ia):
        key = (msg.client_id, ia.iaid)
        previous = self._bindings.get(key)
        if previous is not None and previous != address:     # one address per IA
            self._drop(self.leases[previous])
        lease = self.leases.get(address)
        if lease is None:
            lease = self.leases[address] = Lease6(address, *key, OFFERED, math.inf)
        lease.duid, lease.iaid = key
        lease.fqdn = self._name(msg) or lease.fqdn
        self._bindings[key] = address
        return lease

    def _drop(self, lease):
        del self.leases[lease.address]
        if self._bindings.get((lease.duid, lease.iaid)) == lease.address:
            del self._bindings[(lease.duid, lease.iaid)]

    def _set_expiry(self, lease, expires):
        lease.expires = expires
        if expires != math.inf:
            heapq.heappush(self._timers, (expires, lease.address))
        if len(self._timers) > 2 * len(self.leases) + 64:    # renewals leave stale entries
            self._timers = [(x.expires, a) for a, x in self.leases.items()
                            if x.expires != math.inf]
            heapq.heapify(self._timers)

    def _ia_answer(self, ia, address, no_address_status=True):
        """The IA_NA for a reply: ``address`` with our lifetimes, and any other address the
        client listed with lifetimes 0 (so it stops using them).  Without an address, a
        NoAddrsAvail status unless ``no_address_status`` is false."""
        answer = w.IaNa(ia.iaid)
        if address is not None:
            answer.t1, answer.t2 = self.t1, self.t2
            answer.addresses.append(w.IaAddress(address, self.preferred_lifetime,
                                                self.valid_lifetime))
        elif no_address_status:
            answer.status = w.StatusCode(w.STATUS_NO_ADDRS_AVAIL, "no addresses available")
        answer.addresses += [w.IaAddress(listed.address, 0, 0) for listed in ia.addresses
                             if listed.address != address]
        return answer

    @staticmethod
    def _no_binding(ia):
        return w.IaNa(ia.iaid, status=w.StatusCode(w.STATUS_NO_BINDING, "no binding"))
