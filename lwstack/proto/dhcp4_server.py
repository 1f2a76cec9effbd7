"""A DHCPv4 server for one subnet (RFC 2131 section 4.3), sans-IO.

Design note.  The host passes in the payloads that reach UDP port 67
(:meth:`~Dhcp4Server.receive`) and polls the timers; replies go to ``outbox`` as

    ("udp", src, dst, 67, 68, payload, link_dst)

where ``link_dst`` is None (send as usual: 255.255.255.255 is a link broadcast, other
addresses go through ARP) or a MAC to send to directly.  The latter is RFC 2131 section 4.1's
case of a client without the broadcast flag and without an address yet: the reply goes to
``yiaddr`` at ``chaddr``, and ARP cannot work because the client does not own the address yet.

Addresses and bindings:

- The pool is a range of addresses inside the server's subnet (the server's own address is
  skipped); static reservations (MAC -> address) may lie inside or outside the range but
  must be in the subnet, and are never handed to anybody else.  The pool is the bound on
  bindings: a client holds at most one address, so there are never more records than
  addresses.
- A client is known by its client identifier (option 61), or by its MAC without one
  (section 4.2).  A record is OFFERED (held ``offer_time`` seconds), BOUND (until its lease
  expires) or FREE: an expired or released binding is remembered so that the client gets the
  same address again (section 4.3.1), and is handed to somebody else only when no address
  was never used, the least recently freed first.
- Address choice for a DISCOVER (section 4.3.1): the client's reservation, its current or
  remembered address, the address it asks for (option 50) if available, a fresh address.
- REQUEST (section 4.3.2): SELECTING (server id present: ours gets an ACK or NAK, another
  server's means the client went elsewhere and our offer is withdrawn), INIT-REBOOT (option 50,
  no ciaddr: NAK if the address is wrong for the client or the subnet), RENEWING/REBINDING
  (ciaddr: the binding is extended).  An unknown client asking for an address that is free
  gets it when ``authoritative`` (the default, like dnsmasq's dhcp-authoritative: a client
  keeps its address across a server restart); otherwise the server stays silent, as RFC 2131
  requires of servers that share a link with others.
- DECLINE marks the address unusable for ``decline_time`` seconds (section 4.3.3); RELEASE
  frees the binding (section 4.3.4); INFORM gets the options without an address (4.3.5).
- Replies carry the client identifier back (RFC 6842).  Classless routes (option 121) go
  only to clients that ask for them, with the default route added, because such clients
  ignore the router option (RFC 3442 section 3); the router option is still sent for those
  that do not.  MTU is also sent on request only.
- Not done: relay agents (messages with a giaddr are dropped and counted), the ICMP echo
  check before offering an address (section 4.4.1 says SHOULD; the clients' own ARP probe,
  RFC 5227, catches the same conflicts and they DECLINE), DNS updates from the client FQDN
  option (the name is only recorded in the binding, for a local DNS server to use).
"""
import collections
import heapq

from lwstack.wire import WireError
from lwstack.wire import dhcp4
from lwstack.wire.dhcp4 import (ACK, ANY, BOOTREPLY, BOOTREQUEST, BROADCAST, CLIENT_PORT,
                                DECLINE, DISCOVER, HTYPE_ETHERNET, INFORM, NAK, OFFER,
                                RELEASE, REQUEST, SERVER_PORT, DhcpMessage)

OFFERED = "OFFERED"
BOUND = "BOUND"
FREE = "FREE"


class Binding:
    """One client's address: ``state`` OFFERED, BOUND or FREE, until ``expires``."""

    __slots__ = ("key", "addr", "chaddr", "state", "expires", "hostname")

    def __init__(self, key, addr, chaddr):
        self.key = key
        self.addr = addr
        self.chaddr = chaddr
        self.state = FREE
        self.expires = 0.0
        self.hostname = None

    def __repr__(self):
        return (f"Binding({'.'.join(map(str, self.addr))}, {self.state}, "
                f"chaddr={self.chaddr.hex(':')}, expires={self.expires})")


class Dhcp4Server:
    """Hands out ``pool_start``..``pool_end`` (4-byte addresses, inclusive) in the subnet
    ``server_addr``/``prefix_len``; see the module notes.

    Options given to clients: ``routers`` and ``dns`` (lists of addresses), ``domain``,
    ``mtu``, ``routes`` (classless routes: ``(destination, prefix_len, gateway)``).  Times in
    seconds: ``lease_time`` (and optional ``t1``/``t2``, else the clients use 50 % / 87.5 %),
    ``offer_time``, ``decline_time``.  ``reservations``: MAC -> address.

    ``bindings`` maps each known client (``("id", client_id)`` or ``("hw", mac)``) to its
    :class:`Binding`; :meth:`active` lists the leases in force, e.g. for a DNS server.
    """

    def __init__(self, server_addr, prefix_len, pool_start, pool_end, *, routers=(), dns=(),
                 domain=None, mtu=None, routes=(), lease_time=3600, t1=None, t2=None,
                 offer_time=30.0, decline_time=600.0, reservations=None, authoritative=True,
                 max_outbox=256):
        self.server_addr = bytes(server_addr)
        self.prefix_len = prefix_len
        self.mask = dhcp4.prefix_to_mask(prefix_len)
        self._net_mask = int.from_bytes(self.mask, "big")
        self._network = _int(server_addr) & self._net_mask
        self._first = _int(pool_start)
        self._last = _int(pool_end)
        if self._first > self._last:
            raise ValueError("the pool's start is after its end")
        self.reservations = {bytes(mac): bytes(addr)
                             for mac, addr in (reservations or {}).items()}
        for addr in (pool_start, pool_end, *self.reservations.values()):
            if not self._in_subnet(addr):
                raise ValueError(f"{'.'.join(map(str, addr))} is not in the server's subnet")
        self._reserved = set(self.reservations.values())
        self.routers = tuple(routers)
        self.dns = tuple(dns)
        self.domain = domain
        self.mtu = mtu
        self.routes = tuple(routes)
        if not 0 < (t1 or 1) <= (t2 or lease_time) <= lease_time <= dhcp4.INFINITE:
            raise ValueError("need 0 < t1 <= t2 <= lease_time <= 0xFFFFFFFF")
        self.lease_time = lease_time
        self.t1 = t1
        self.t2 = t2
        self.offer_time = offer_time
        self.decline_time = decline_time
        self.authoritative = authoritative
        self.max_outbox = max_outbox
        self.outbox = []
        self.stats = collections.Counter()
        self.bindings = {}              # client key -> Binding
        self._by_addr = {}              # address -> Binding
        self._declined = {}             # address -> unusable until
        self._freed = collections.OrderedDict()    # FREE bindings' addresses, oldest first
        self._timers = []               # heap of (expires, address); stale entries skipped
        self._cursor = self._first

    # -- the host's calls -------------------------------------------------------------------

    def receive(self, payload, src, now):
        """A datagram that arrived on UDP port 67 from IPv4 address ``src``."""
        try:
            msg = DhcpMessage.parse(payload)
            kind = msg.message_type
            if msg.op != BOOTREQUEST:
                raise WireError("not_a_request")
            if msg.htype != HTYPE_ETHERNET or len(msg.chaddr) != 6:
                raise WireError("unsupported_hardware")
            if msg.giaddr != ANY:
                raise WireError("relayed")
            handler = {DISCOVER: self._discover, REQUEST: self._request,
                       DECLINE: self._decline, RELEASE: self._release,
                       INFORM: self._inform}.get(kind)
            if handler is None:
                raise WireError("not_dhcp" if kind is None else f"unexpected_type_{kind}")
            handler(msg, now)
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1

    def poll_at(self):
        """The next time :meth:`poll` has work (an offer or lease running out), or None."""
        while self._timers:
            expires, addr = self._timers[0]
            binding = self._by_addr.get(addr)
            if binding is not None and binding.state != FREE and binding.expires == expires:
                return expires
            heapq.heappop(self._timers)
        return None

    def poll(self, now):
        """Expire the offers and leases due at ``now``."""
        while self._timers and self._timers[0][0] <= now:
            expires, addr = heapq.heappop(self._timers)
            binding = self._by_addr.get(addr)
            if binding is not None and binding.state != FREE and binding.expires == expires:
                self.stats["expired." + binding.state.lower()] += 1
                self._free(binding)

    def active(self, now):
        """The BOUND bindings whose lease runs at ``now`` (for a DNS server or a listing)."""
        return [b for b in self.bindings.values() if b.state == BOUND and b.expires > now]

    # -- messages ---------------------------------------------------------------------------

    def _discover(self, msg, now):
        key = _client_key(msg)
        binding = self._allocate(key, msg.chaddr, msg.get(dhcp4.OPT_REQUESTED_IP), now)
        if binding is None:
            self.stats["pool_exhausted"] += 1
            return
        if binding.state != BOUND:
            self._hold(binding, OFFERED, now + self.offer_time)
        self._note_name(binding, msg)
        self._reply(msg, OFFER, binding.addr)

    def _request(self, msg, now):
        key = _client_key(msg)
        binding = self.bindings.get(key)
        server = msg.get(dhcp4.OPT_SERVER_ID)
        requested = msg.get(dhcp4.OPT_REQUESTED_IP)
        if server is not None:                          # SELECTING
            if server != self.server_addr:
                if binding is not None and binding.state == OFFERED:
                    self._free(binding)                 # the client took another offer
                self.stats["other_server"] += 1
                return
            wanted = requested if requested is not None else msg.ciaddr
            ok = binding is not None and binding.addr == wanted
        else:                                           # INIT-REBOOT, RENEWING, REBINDING
            wanted = msg.ciaddr if msg.ciaddr != ANY else requested
            if wanted is None:
                raise WireError("request_without_address")
            if binding is not None:
                ok = binding.addr == wanted and self._in_subnet(wanted)
            elif not self._in_subnet(wanted):
                ok = False
            elif self.authoritative:
                binding = self._allocate(key, msg.chaddr, wanted, now, only_requested=True)
                ok = binding is not None and binding.addr == wanted
            else:
                self.stats["unknown_client"] += 1       # RFC 2131 4.3.2: remain silent
                return
        if ok and self._declined.get(wanted, now) > now:
            ok = False
        if not ok:
            self.stats["nak"] += 1
            self._reply(msg, NAK, ANY)
            return
        self._hold(binding, BOUND, now + self.lease_time)
        self._note_name(binding, msg)
        self.stats["ack"] += 1
        self._reply(msg, ACK, binding.addr)

    def _decline(self, msg, now):
        addr = msg.get(dhcp4.OPT_REQUESTED_IP)
        binding = self.bindings.get(_client_key(msg))
        if msg.get(dhcp4.OPT_SERVER_ID) not in (None, self.server_addr):
            self.stats["other_server"] += 1
            return
        if binding is None or binding.addr != addr:
            raise WireError("decline_unknown")
        self.stats["declined"] += 1
        self._declined[addr] = now + self.decline_time
        self._forget(binding)

    def _release(self, msg, now):
        binding = self.bindings.get(_client_key(msg))
        if binding is None or binding.addr != msg.ciaddr or binding.state != BOUND:
            raise WireError("release_unknown")
        self.stats["released"] += 1
        self._free(binding)

    def _inform(self, msg, now):
        if msg.ciaddr == ANY:
            raise WireError("inform_without_ciaddr")
        self._reply(msg, ACK, ANY)

    # -- bindings ---------------------------------------------------------------------------

    def _allocate(self, key, chaddr, requested, now, only_requested=False):
        """A binding for this client, by section 4.3.1's order; None if nothing is left.
        ``only_requested``: ``requested`` or nothing (an INIT-REBOOT from an unknown client)."""
        binding = self.bindings.get(key)
        reserved = self.reservations.get(chaddr)
        if reserved is not None and self._usable(reserved, key, now):
            candidate = reserved
        elif binding is not None and binding.addr not in self._reserved \
                and self._declined.get(binding.addr, now) <= now:
            return binding
        elif requested is not None and self._in_pool(requested) \
                and requested not in self._reserved and self._usable(requested, key, now):
            candidate = requested
        elif only_requested:
            return None
        else:
            candidate = self._fresh(now) or self._oldest_free(now)
            if candidate is None:
                return None
        if binding is not None and binding.addr == candidate:
            return binding
        if binding is not None:
            self._forget(binding)
        holder = self._by_addr.get(candidate)
        if holder is not None:
            self._forget(holder)                        # a FREE binding remembered for another
        binding = Binding(key, candidate, chaddr)
        self.bindings[key] = binding
        self._by_addr[candidate] = binding
        return binding

    def _usable(self, addr, key, now):
        holder = self._by_addr.get(addr)
        return (addr != self.server_addr and self._declined.get(addr, now) <= now
                and (holder is None or holder.key == key or holder.state == FREE))

    def _fresh(self, now):
        """The next address from the pool nobody has a record of (a rotating scan)."""
        size = self._last - self._first + 1
        for _ in range(size):
            addr = self._cursor.to_bytes(4, "big")
            self._cursor = self._cursor + 1 if self._cursor < self._last else self._first
            if (addr not in self._by_addr and addr not in self._reserved
                    and addr != self.server_addr and self._declined.get(addr, now) <= now):
                return addr
        return None

    def _oldest_free(self, now):
        for addr in self._freed:
            if self._declined.get(addr, now) <= now and addr not in self._reserved:
                return addr
        return None

    def _hold(self, binding, state, expires):
        binding.state = state
        binding.expires = expires
        self._freed.pop(binding.addr, None)
        heapq.heappush(self._timers, (expires, binding.addr))
        if len(self._timers) > 4 * len(self._by_addr) + 64:
            self._compact_timers()

    def _free(self, binding):
        binding.state = FREE
        self._freed[binding.addr] = None

    def _forget(self, binding):
        self._freed.pop(binding.addr, None)
        self.bindings.pop(binding.key, None)
        self._by_addr.pop(binding.addr, None)

    def _compact_timers(self):
        self._timers = [(b.expires, a) for a, b in self._by_addr.items() if b.state != FREE]
        heapq.heapify(self._timers)

    def _note_name(self, binding, msg):
        try:
            fqdn = msg.get(dhcp4.OPT_CLIENT_FQDN)
            name = fqdn.name.rstrip(".") if fqdn else msg.get(dhcp4.OPT_HOST_NAME)
        except WireError:
            name = None
        if name:
            binding.hostname = name

    def _in_subnet(self, addr):
        return _int(addr) & self._net_mask == self._network

    def _in_pool(self, addr):
        return self._first <= _int(addr) <= self._last

    # -- replies ----------------------------------------------------------------------------

    def _reply(self, request, kind, yiaddr):
        reply = DhcpMessage(BOOTREPLY, request.xid, flags=request.flags, yiaddr=yiaddr,
                            chaddr=request.chaddr,
                            ciaddr=request.ciaddr if kind == ACK else ANY)
        reply.set(dhcp4.OPT_MESSAGE_TYPE, kind)
        reply.set(dhcp4.OPT_SERVER_ID, self.server_addr)
        if kind != NAK:
            self._add_options(reply, request, kind == ACK and yiaddr == ANY)
        client_id = request.options.get(dhcp4.OPT_CLIENT_ID)
        if client_id is not None:
            reply.options[dhcp4.OPT_CLIENT_ID] = client_id      # RFC 6842
        self.stats["tx." + dhcp4.MESSAGE_NAMES[kind][4:].lower()] += 1
        dst, link_dst = self._destination(request, kind, yiaddr)
        if len(self.outbox) >= self.max_outbox:
            self.stats["outbox_full"] += 1
            return
        self.outbox.append(("udp", self.server_addr, dst, SERVER_PORT, CLIENT_PORT,
                            reply.emit(), link_dst))

    def _add_options(self, reply, request, inform):
        try:
            wanted = set(request.get(dhcp4.OPT_PARAM_REQUEST, ()))
        except WireError:
            wanted = set()
        if not inform:          # RFC 2131 4.3.5: no lease time in an answer to INFORM
            reply.set(dhcp4.OPT_LEASE_TIME, self.lease_time)
            reply.set(dhcp4.OPT_RENEWAL_TIME, self.t1)
            reply.set(dhcp4.OPT_REBINDING_TIME, self.t2)
        reply.set(dhcp4.OPT_SUBNET_MASK, self.mask)
        if self.routes and dhcp4.OPT_CLASSLESS_ROUTES in wanted:
            routes = self.routes
            if self.routers and not any(width == 0 for _, width, _ in routes):
                routes += ((ANY, 0, self.routers[0]),)
            reply.set(dhcp4.OPT_CLASSLESS_ROUTES, routes)
        if self.routers:
            reply.set(dhcp4.OPT_ROUTER, self.routers)
        if self.dns:
            reply.set(dhcp4.OPT_DNS, self.dns)
        if self.domain:
            reply.set(dhcp4.OPT_DOMAIN_NAME, self.domain)
        if self.mtu and dhcp4.OPT_MTU in wanted:
            reply.set(dhcp4.OPT_MTU, self.mtu)

    def _destination(self, request, kind, yiaddr):
        """RFC 2131 section 4.1's rules (without relays): NAKs are broadcast; a client with
        ciaddr gets unicast to it; else broadcast if it asked, else to yiaddr at chaddr."""
        if kind == NAK:
            return BROADCAST, None
        if request.ciaddr != ANY:
            return request.ciaddr, None
        if request.broadcast:
            return BROADCAST, None
        return yiaddr, request.chaddr


def _client_key(msg):
    """RFC 2131 section 4.2: the client identifier, or the hardware address without one."""
    client_id = msg.options.get(dhcp4.OPT_CLIENT_ID)
    return ("id", client_id) if client_id else ("hw", msg.chaddr)


def _int(addr):
    return int.from_bytes(addr, "big")
