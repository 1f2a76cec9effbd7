"""A stub DNS resolver, sans-IO (RFC 1034 5.3.1, RFC 1035, RFC 2308, RFC 5452, resolv.conf(5)).

Design note.  Four layers, each a small object:

    Lookup        what the caller asked: a name and record types (or an address, for PTR)
      candidate   the name with a search domain applied, tried one after another
        _Chase    one record type for the current candidate, all types in parallel (glibc
                  sends A and AAAA together); it follows CNAMEs, from the cache first
          _Transaction   one question on the wire: tries over servers and attempts

- A lookup is answered, in order, from an address literal, the static :class:`HostsTable`
  (``hosts: files dns``), then the cache, then the network.
- Search domains follow resolv.conf: a name ending in a dot is absolute; a name with at least
  ``ndots`` (1) dots is tried as-is first, then with each search domain; a shorter one with
  the search domains first and as-is last.  NXDOMAIN, NODATA and SERVFAIL move on to the next
  candidate; a timeout ends the lookup (glibc's res_search does the same).  If any candidate
  had NODATA the final error is NODATA, else after a SERVFAIL it is "try again".
- A transaction tries ``servers`` in order (``rotate`` starts each at the next server), each
  for ``timeout`` seconds, ``attempts`` rounds.  SERVFAIL, REFUSED or NOTIMP from a server
  moves to the next try at once.  FORMERR to a query with EDNS repeats it without EDNS
  (RFC 6891 section 7).  TC=1 repeats the question over TCP to the same server.
- Every try has a fresh random 16-bit id and a fresh random source port (RFC 5452 section
  9.2): the resolver picks the port from ``port_range`` with its ``rng``, skipping ports that
  ``port_busy(port)`` (a host callback: its socket table, and a DNS server's forwarding
  ports if it runs one) reports as taken.  The default ``rng`` is ``random.SystemRandom``
  (ids and ports must be unpredictable); tests pass a seeded ``random.Random``.  An answer is accepted only from the
  server address and port the try went to, on the try's port, with its id, QR set, opcode
  QUERY and the same single question (case-insensitively); everything else is counted in
  ``stats`` and ignored.  Answers to earlier tries of the same transaction stay acceptable
  until it ends (a slow first server may still answer).
- Answers: the CNAME chain is followed from the question's name inside the answer section,
  then across new queries when a server stops short; the chain is bounded (``max_chain``
  links, which also stops loops).  NXDOMAIN and NODATA refer to the last name of the chain
  (RFC 2308 section 2).
- Cache: positive RRsets and CNAME links for their TTL (the smallest in the set, capped at
  ``max_ttl``); NXDOMAIN (for the name, every type) and NODATA (for the name and type) for
  min(SOA TTL, SOA MINIMUM) capped at ``max_negative_ttl`` (RFC 2308 section 5); negative
  answers without an SOA are not cached (ibid.).  Least recently used entries are evicted
  beyond ``cache_size``.  Only records on the chain from the question are cached.
- Bounds: ``max_lookups`` pending lookups (beyond: EAI_AGAIN at once), ``cache_size``
  entries, ``max_servers`` servers (3, MAXNS), ``max_chain`` CNAME links, and per
  transaction servers x attempts tries (plus one EDNS-less retry) and one TCP connection.

Driving it (the host):

    lookup = resolver.resolve("www.example.com", (TYPE_A, TYPE_AAAA), now, callback)
    send every record in ``resolver.outbox`` (then clear it):
      UdpSend("udp", None, server_addr, src_port, server_port, payload)
          send a datagram from local port ``src_port`` (source address: the host's choice by
          route, hence None); deliver every datagram arriving for a port in
          ``resolver.ports`` to ``resolver.receive(src_addr, src_port, dst_addr, dst_port,
          payload, now)`` before the host's own socket table;
      TcpQuery("tcp", token, server_addr, server_port, payload)
          open a TCP connection, send ``payload`` (already length-prefixed), pass every byte
          received to ``resolver.receive_tcp(token, data, now)``; if the connection fails or
          ends first, call ``resolver.tcp_failed(token, now)``;
      TcpClose("tcp_close", token)
          the resolver is done with that connection: close it (a no-op if it is gone).
    call ``resolver.poll(now)`` at ``resolver.poll_at()``.

The lookup's ``callback(lookup)`` runs once when it completes, possibly inside ``resolve``
itself (hosts, cache and literals answer at once): check ``lookup.done`` after the call.
Errors are the names of the ``socket`` module's ``EAI_*`` constants (this module must not
import ``socket``): the facade maps them with ``getattr(socket, lookup.error)``.  NODATA gives
``EAI_NONAME`` with ``lookup.nodata`` set (glibc says ``EAI_NODATA`` there; the facade
chooses).
"""
import collections
import ipaddress
import random
from collections import namedtuple

from lwstack.proto.hosts import HostsTable
from lwstack.wire import WireError
from lwstack.wire.dns import (CLASS_IN, DEFAULT_EDNS_SIZE, RCODE_FORMERR, RCODE_NOERROR,
                              RCODE_NOTIMP, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL,
                              TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_PTR, TYPE_SOA, Message,
                              build_query, clamp_ttl, frame_tcp, is_subdomain, name_key,
                              name_to_labels, reverse_name, unframe_tcp)

#: Errors a lookup ends with: the names of ``socket``'s constants.
EAI_NONAME = "EAI_NONAME"     # NXDOMAIN, NODATA, or a name that cannot be a DNS name
EAI_AGAIN = "EAI_AGAIN"       # timeouts, SERVFAIL/REFUSED everywhere, no server, too busy
EAI_FAIL = "EAI_FAIL"         # a CNAME chain too long (or looping)

DNS_PORT = 53

UdpSend = namedtuple("UdpSend", "kind src_addr dst_addr src_port dst_port payload")
UdpSend.__doc__ = "Output: send ``payload`` by UDP from ``src_port`` (``kind`` is ``\"udp\"``)."
TcpQuery = namedtuple("TcpQuery", "kind token dst_addr dst_port payload")
TcpQuery.__doc__ = ("Output: open a TCP connection for ``token`` and send ``payload`` "
                    "(``kind`` is ``\"tcp\"``).")
TcpClose = namedtuple("TcpClose", "kind token")
TcpClose.__doc__ = "Output: close the TCP connection of ``token`` (``kind`` is ``\"tcp_close\"``)."


def pick_port(rng, port_range, taken, port_busy=None):
    """A random source port from ``port_range`` (low, high: inclusive) that is not in
    ``taken`` and that ``port_busy(port)`` does not report (RFC 5452 section 9.2); None
    when 64 draws found none."""
    low, high = port_range
    for _ in range(64):
        port = rng.randint(low, high)
        if port not in taken and not (port_busy and port_busy(port)):
            return port
    return None


class TcpQueries:
    """Questions asked again over TCP after a truncated answer (RFC 7766), for the resolver
    and for the server's forwarding: a token per connection, the :class:`TcpQuery` and
    :class:`TcpClose` records in ``outbox``, and the answer's bytes kept until the
    length-prefixed message is whole.

    A query (a resolver transaction, a forwarded query) carries ``tcp``, ``(token, id,
    server)`` while its connection is open and None otherwise, and ``tcp_buffer``.
    """

    def __init__(self, outbox):
        self.outbox = outbox
        self.queries = {}               # token -> query
        self._next_token = 1

    def ask(self, query, server, ident, message):
        """Open a connection to ``server`` (address, port) for ``query`` and send ``message``,
        whose id is ``ident``."""
        token = self._next_token
        self._next_token += 1
        query.tcp = (token, ident, server)
        query.tcp_buffer = b""
        self.queries[token] = query
        self.outbox.append(TcpQuery("tcp", token, server[0], server[1], frame_tcp(message)))

    def close(self, query):
        """Close the connection of ``query`` (it has one) and forget it."""
        token = query.tcp[0]
        query.tcp = None
        query.tcp_buffer = b""
        if self.queries.pop(token, None) is not None:
            self.outbox.append(TcpClose("tcp_close", token))

    def receive(self, token, data):
        """Bytes received on the connection of ``token``: ``(query, answer)``, where
        ``answer`` is ``(message, id, server)`` once the whole message is in (the connection
        is then closed) and None before; ``(None, None)`` for an unknown token."""
        query = self.queries.get(token)
        if query is None:
            return None, None
        query.tcp_buffer += bytes(data)
        message, _ = unframe_tcp(query.tcp_buffer)
        if message is None:
            return query, None
        _, ident, server = query.tcp
        self.close(query)
        return query, (message, ident, server)

    def failed(self, token):
        """The connection of ``token`` could not be opened or ended early: its query, now
        forgotten (no :class:`TcpClose` is due), or None."""
        query = self.queries.pop(token, None)
        if query is not None:
            query.tcp = None
        return query

# Outcomes of a chase.
_OK, _NXDOMAIN, _NODATA, _SERVFAIL, _TIMEOUT, _FAIL = range(6)
_NEGATIVE_NX = "nxdomain"
_NEGATIVE_NODATA = "nodata"


class Lookup:
    """One resolution the caller asked for; the handle ``resolve`` returns.

    When ``done``: ``error`` is None and ``addresses`` (4/16-byte bytes, in the order of the
    asked types) or ``names`` (the data of other types, e.g. PTR names) hold the answer, with
    ``canonical`` the name at the end of the CNAME chain; or ``error`` is one of the ``EAI_*`` constants (``nodata`` tells NODATA
    from NXDOMAIN).  ``source`` says where the answer came from: "literal", "hosts", "cache"
    or "dns" (the last step that was needed).
    """

    __slots__ = ("name", "qtypes", "callback", "done", "error", "nodata", "canonical",
                 "addresses", "names", "source", "_candidates", "_chases", "_got_nodata",
                 "_got_servfail", "_network")

    def __init__(self, name, qtypes, callback):
        self.name = name
        self.qtypes = qtypes
        self.callback = callback
        self.done = False
        self.error = None
        self.nodata = False
        self.canonical = None
        self.addresses = []
        self.names = []
        self.source = None
        self._candidates = []
        self._chases = []
        self._got_nodata = False
        self._got_servfail = False
        self._network = False

    def __repr__(self):
        state = (f"error={self.error}" if self.error else
                 f"{self.canonical} {self.addresses or self.names}") if self.done else "pending"
        return f"Lookup({self.name!r}, {self.qtypes}, {state})"


class _Chase:
    """One record type of the current candidate, following CNAMEs."""

    __slots__ = ("lookup", "qtype", "name", "links", "txn", "outcome", "data", "canonical")

    def __init__(self, lookup, qtype, name):
        self.lookup = lookup
        self.qtype = qtype
        self.name = name
        self.links = 0
        self.txn = None
        self.outcome = None
        self.data = []
        self.canonical = None


class _Transaction:
    """One question on the wire, with its tries."""

    __slots__ = ("chase", "name", "key", "qtype", "plan", "next_try", "deadline", "edns",
                 "ports", "tcp", "tcp_buffer", "failure")

    def __init__(self, chase, plan, edns):
        self.chase = chase
        self.name = chase.name
        self.key = name_key(chase.name)
        self.qtype = chase.qtype
        self.plan = plan                # servers, (addr, port), in try order
        self.next_try = 0
        self.deadline = None
        self.edns = edns
        self.ports = {}                 # local port -> (id, server) of each UDP try
        self.tcp = None                 # (token, id, server) while a TCP query runs
        self.tcp_buffer = b""
        self.failure = _TIMEOUT


class _Cache:
    """A bounded LRU map (name key, qtype or None) -> (expiry, value)."""

    def __init__(self, size):
        self.size = size
        self.entries = collections.OrderedDict()

    def get(self, key, now):
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return entry[1]

    def put(self, key, value, ttl, now):
        if ttl <= 0 or self.size <= 0:
            return
        self.entries[key] = (now + ttl, value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def __len__(self):
        return len(self.entries)


def _server(item):
    if isinstance(item, tuple):
        addr, port = item
    else:
        addr, port = item, DNS_PORT
    if isinstance(addr, str):
        addr = ipaddress.ip_address(addr).packed
    addr = bytes(addr)
    if len(addr) not in (4, 16):
        raise ValueError(f"server address of {len(addr)} bytes")
    return addr, port


def _literal(name):
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).packed
    except ValueError:
        return None


class Resolver:
    """A sans-IO stub resolver (see the module's design note)."""

    def __init__(self, servers=(), *, search=(), ndots=1, timeout=5.0, attempts=2,
                 rotate=False, hosts=None, rng=None, cache_size=512, max_ttl=86400,
                 max_negative_ttl=10800, max_lookups=64, max_chain=8, max_servers=3,
                 edns_size=DEFAULT_EDNS_SIZE, port_range=(32768, 60999), port_busy=None):
        if attempts < 1 or timeout <= 0 or max_lookups < 1:
            raise ValueError("attempts, timeout and max_lookups must be positive")
        self.timeout = timeout
        self.attempts = attempts
        self.rotate = rotate
        self.ndots = ndots
        self.hosts = hosts if hosts is not None else HostsTable()
        self.rng = rng if rng is not None else random.SystemRandom()
        self.cache = _Cache(cache_size)
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.max_lookups = max_lookups
        self.max_chain = max_chain
        self.max_servers = max_servers
        self.edns_size = edns_size
        self.port_range = port_range
        self.port_busy = port_busy
        self.servers = []
        self.search = []
        self.configure(servers=servers, search=search)
        self.outbox = []
        self.stats = collections.Counter()
        self._lookups = set()
        self._txns = set()
        self._by_port = {}
        self._tcp = TcpQueries(self.outbox)
        self._rotation = 0

    # ------------------------------------------------------------------------------ public

    def configure(self, *, servers=None, search=None):
        """Replace the name servers (addresses as bytes or text, or ``(addr, port)``; at most
        ``max_servers`` are kept, like resolv.conf's MAXNS) and/or the search domains.
        Queries already on the wire keep their plan."""
        if servers is not None:
            self.servers = [_server(s) for s in servers][:self.max_servers]
        if search is not None:
            domains = []
            for domain in search:
                key = name_key(domain)
                if key and key not in domains:
                    domains.append(key)
            self.search = domains

    @property
    def ports(self):
        """The local UDP ports whose datagrams belong to the resolver."""
        return self._by_port.keys()

    def resolve(self, name, qtypes=(TYPE_A, TYPE_AAAA), now=0.0, callback=None):
        """Start resolving ``name`` for the record types ``qtypes`` (one type or a sequence:
        A and/or AAAA for addresses, or PTR, CNAME, ...); returns a :class:`Lookup`."""
        if isinstance(qtypes, int):
            qtypes = (qtypes,)
        if not qtypes:
            raise ValueError("no record type to resolve")
        lookup = Lookup(name, tuple(qtypes), callback)
        literal = _literal(name)
        if literal is not None:
            wanted = TYPE_A if len(literal) == 4 else TYPE_AAAA
            if wanted in lookup.qtypes:
                lookup.addresses = [literal]
                lookup.canonical = name
                self._finish(lookup, None, "literal")
            else:
                lookup.nodata = True
                self._finish(lookup, EAI_NONAME, "literal")
            return lookup
        if self._from_hosts(lookup):
            return lookup
        try:
            lookup._candidates = self._candidates(name)
        except ValueError:
            self.stats["bad_name"] += 1
            self._finish(lookup, EAI_NONAME, None)
            return lookup
        self._start_lookup(lookup, now)
        return lookup

    def resolve_address(self, addr, now=0.0, callback=None):
        """Start a reverse lookup (PTR) of a 4- or 16-byte address; the result is in ``names``."""
        addr = bytes(addr)
        lookup = Lookup(reverse_name(addr), (TYPE_PTR,), callback)
        name = self.hosts.reverse(addr)
        if name is not None:
            lookup.names = [name]
            lookup.canonical = lookup.name
            self._finish(lookup, None, "hosts")
            return lookup
        lookup._candidates = [lookup.name]
        self._start_lookup(lookup, now)
        return lookup

    def cancel(self, lookup):
        """Abandon a pending lookup (its callback is not called)."""
        if lookup not in self._lookups:
            return
        self._lookups.discard(lookup)
        for chase in lookup._chases:
            if chase.txn is not None:
                self._end_txn(chase.txn)
                chase.txn = None

    def receive(self, src_addr, src_port, dst_addr, dst_port, payload, now):
        """A UDP datagram for local port ``dst_port``; returns False if that port is not the
        resolver's (the host then handles the datagram as usual).  ``dst_addr`` is not used
        (the same signature as the server's)."""
        txn = self._by_port.get(dst_port)
        if txn is None:
            return False
        ident, server = txn.ports[dst_port]
        if (bytes(src_addr), src_port) != server:
            self.stats["drop.dns_wrong_source"] += 1
            return True
        try:
            msg = Message.parse(payload)
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1
            return True
        if not self._matches(msg, ident, txn):
            self.stats["drop.dns_mismatch"] += 1
            return True
        self._answer(txn, msg, server, False, now)
        return True

    def receive_tcp(self, token, data, now):
        """Bytes received on the TCP connection of ``token``; False if the token is unknown."""
        txn, answer = self._tcp.receive(token, data)
        if answer is None:
            return txn is not None      # False for an unknown token
        message, ident, server = answer
        try:
            msg = Message.parse(message)
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1
            msg = None
        if msg is None or not self._matches(msg, ident, txn):
            if msg is not None:
                self.stats["drop.dns_mismatch"] += 1
            txn.failure = _SERVFAIL
            self._send_next(txn, now)
            return True
        self._answer(txn, msg, server, True, now)
        return True

    def tcp_failed(self, token, now):
        """The TCP connection of ``token`` could not be opened or closed early."""
        txn = self._tcp.failed(token)
        if txn is None:
            return
        self.stats["tcp_failed"] += 1
        self._send_next(txn, now)

    def poll(self, now):
        """Handle the tries whose time is up."""
        for txn in [t for t in self._txns if t.deadline <= now]:
            if txn in self._txns:
                if txn.tcp is not None:
                    self._tcp.close(txn)
                self._send_next(txn, now)

    def poll_at(self):
        """When ``poll`` next has work, or None."""
        return min((t.deadline for t in self._txns), default=None)

    # ------------------------------------------------------------------------ lookups

    def _from_hosts(self, lookup):
        families = [4 if t == TYPE_A else 16 for t in lookup.qtypes if t in (TYPE_A, TYPE_AAAA)]
        if not families:
            return False
        found = self.hosts.lookup(lookup.name)
        if found is None:
            return False
        canonical, addresses = found
        addresses = [a for family in families for a in addresses if len(a) == family]
        if not addresses:
            return False          # glibc's files backend: not found here, ask DNS
        lookup.canonical = canonical
        lookup.addresses = addresses
        self._finish(lookup, None, "hosts")
        return True

    def _candidates(self, name):
        name_to_labels(name)                      # raises ValueError for a bad name
        if name.endswith(".") and not name.endswith("\\."):
            return [name[:-1]]
        names = []
        if name.count(".") >= self.ndots:
            names.append(name)
        for domain in self.search:
            try:
                candidate = f"{name}.{domain}"
                name_to_labels(candidate)
            except ValueError:
                continue                          # too long with this domain
            names.append(candidate)
        if name.count(".") < self.ndots:
            names.append(name)
        return names

    def _start_lookup(self, lookup, now):
        if len(self._lookups) >= self.max_lookups:
            self.stats["drop.too_many_lookups"] += 1
            self._finish(lookup, EAI_AGAIN, None)
            return
        self._lookups.add(lookup)
        self._next_candidate(lookup, now)

    def _next_candidate(self, lookup, now):
        if not lookup._candidates:
            source = "dns" if lookup._network else "cache"
            if lookup._got_nodata:
                lookup.nodata = True
                self._finish(lookup, EAI_NONAME, source)
            else:
                self._finish(lookup, EAI_AGAIN if lookup._got_servfail else EAI_NONAME, source)
            return
        name = lookup._candidates.pop(0)
        lookup._chases = [_Chase(lookup, qtype, name) for qtype in lookup.qtypes]
        chases = lookup._chases
        for chase in chases:
            # A chase answered at once may complete the candidate and start the next one.
            if lookup not in self._lookups or lookup._chases is not chases:
                return
            self._advance(chase, now)

    def _candidate_done(self, lookup, now):
        chases = lookup._chases
        if any(c.outcome is None for c in chases):
            return
        found = [c for c in chases if c.outcome == _OK]
        source = "dns" if lookup._network else "cache"
        if found:
            lookup.canonical = found[0].canonical
            for chase in found:
                if chase.qtype in (TYPE_A, TYPE_AAAA):
                    lookup.addresses.extend(chase.data)
                else:
                    lookup.names.extend(chase.data)
            self._finish(lookup, None, source)
            return
        outcomes = {c.outcome for c in chases}
        if _TIMEOUT in outcomes:
            self._finish(lookup, EAI_AGAIN, source)
        elif _FAIL in outcomes:
            self._finish(lookup, EAI_FAIL, source)
        else:
            lookup._got_nodata |= _NODATA in outcomes
            lookup._got_servfail |= _SERVFAIL in outcomes
            self._next_candidate(lookup, now)

    def _finish(self, lookup, error, source):
        self._lookups.discard(lookup)
        lookup.error = error
        lookup.source = source
        lookup.done = True
        if lookup.callback is not None:
            lookup.callback(lookup)

    # ------------------------------------------------------------------------- chases

    def _advance(self, chase, now):
        """Answer ``chase`` from the cache as far as it goes, then ask the network."""
        while True:
            key = name_key(chase.name)
            if self.cache.get((key, None), now) is not None:
                self.stats["cache.hit"] += 1
                return self._chase_done(chase, _NXDOMAIN, now)
            value = self.cache.get((key, chase.qtype), now)
            if value is not None:
                self.stats["cache.hit"] += 1
                if value == _NEGATIVE_NODATA:
                    return self._chase_done(chase, _NODATA, now)
                chase.data = list(value[1])
                chase.canonical = value[0]
                return self._chase_done(chase, _OK, now)
            link = self.cache.get((key, TYPE_CNAME), now) if chase.qtype != TYPE_CNAME else None
            if link is None:
                break
            self.stats["cache.hit"] += 1
            if not self._link(chase, link[1][0], now):
                return None
        if not self.servers:
            self.stats["no_server"] += 1
            return self._chase_done(chase, _TIMEOUT, now)
        chase.lookup._network = True
        plan = list(self.servers)
        if self.rotate:
            shift = self._rotation % len(plan)
            plan = plan[shift:] + plan[:shift]
            self._rotation += 1
        txn = _Transaction(chase, plan * self.attempts, bool(self.edns_size))
        chase.txn = txn
        self._txns.add(txn)
        self._send_next(txn, now)
        return None

    def _link(self, chase, target, now):
        chase.links += 1
        if chase.links > self.max_chain:
            self.stats["chain_too_long"] += 1
            self._chase_done(chase, _FAIL, now)
            return False
        chase.name = target
        return True

    def _chase_done(self, chase, outcome, now):
        chase.outcome = outcome
        if chase.lookup in self._lookups:
            self._candidate_done(chase.lookup, now)

    def _chase_answer(self, chase, msg, now):
        """Use a matching NOERROR or NXDOMAIN answer for ``chase``."""
        qtype = chase.qtype
        cnames, rrsets = {}, {}
        for rr in msg.answers:
            if rr.rclass != CLASS_IN:
                continue
            key = name_key(rr.name)
            if rr.rtype == qtype:
                rrsets.setdefault(key, []).append(rr)
            elif rr.rtype == TYPE_CNAME:
                cnames.setdefault(key, rr)
        followed = False
        while True:
            key = name_key(chase.name)
            records = rrsets.get(key)
            if records:
                ttl = min(min(clamp_ttl(r.ttl) for r in records), self.max_ttl)
                chase.data = [r.data for r in records]
                chase.canonical = records[0].name
                self.cache.put((key, qtype), (chase.canonical, tuple(chase.data)), ttl, now)
                return self._chase_done(chase, _OK, now)
            rr = cnames.pop(key, None)
            if rr is None:
                break
            self.cache.put((key, TYPE_CNAME), (rr.name, (rr.data,)),
                           min(clamp_ttl(rr.ttl), self.max_ttl), now)
            if not self._link(chase, rr.data, now):
                return None
            followed = True
        key = name_key(chase.name)
        soa = next((rr for rr in msg.authorities
                    if rr.rtype == TYPE_SOA and is_subdomain(key, name_key(rr.name))), None)
        negative_ttl = 0
        if soa is not None:
            negative_ttl = min(clamp_ttl(soa.ttl), soa.data.minimum, self.max_negative_ttl)
        if msg.rcode == RCODE_NXDOMAIN:
            self.cache.put((key, None), _NEGATIVE_NX, negative_ttl, now)
            return self._chase_done(chase, _NXDOMAIN, now)
        if followed and soa is None:
            return self._advance(chase, now)        # the server stopped at a CNAME: ask on
        self.cache.put((key, qtype), _NEGATIVE_NODATA, negative_ttl, now)
        return self._chase_done(chase, _NODATA, now)

    # -------------------------------------------------------------------- transactions

    def _send_next(self, txn, now):
        if txn.next_try >= len(txn.plan):
            self._end_txn(txn)
            chase = txn.chase
            chase.txn = None
            return self._chase_done(chase, txn.failure, now)
        server = txn.plan[txn.next_try]
        txn.next_try += 1
        port = pick_port(self.rng, self.port_range, self._by_port, self.port_busy)
        if port is None:
            self.stats["drop.no_port"] += 1
            txn.deadline = now + self.timeout
            return None
        ident = self.rng.getrandbits(16)
        payload = build_query(ident, txn.name, txn.qtype,
                              edns_size=self.edns_size if txn.edns else None)
        txn.ports[port] = (ident, server)
        self._by_port[port] = txn
        txn.deadline = now + self.timeout
        self.stats["query.udp"] += 1
        self.outbox.append(UdpSend("udp", None, server[0], port, server[1], payload))
        return None

    def _matches(self, msg, ident, txn):
        if not msg.qr or msg.opcode != 0 or msg.id != ident:
            return False
        if not msg.questions and msg.rcode in (RCODE_FORMERR, RCODE_NOTIMP):
            return True     # RFC 6891 7: a FORMERR may come without the question
        if len(msg.questions) != 1:
            return False
        question = msg.questions[0]
        return (question.qtype == txn.qtype and question.qclass == CLASS_IN
                and name_key(question.name) == txn.key)

    def _answer(self, txn, msg, server, via_tcp, now):
        if msg.tc and not via_tcp:
            if txn.tcp is None:
                self._start_tcp(txn, server, now)
            return
        if msg.rcode in (RCODE_NOERROR, RCODE_NXDOMAIN):
            self._end_txn(txn)
            chase = txn.chase
            chase.txn = None
            self._chase_answer(chase, msg, now)
            return
        if txn.tcp is not None:
            self._tcp.close(txn)
        if msg.rcode == RCODE_FORMERR and txn.edns:
            self.stats["edns_fallback"] += 1
            txn.edns = False
            txn.plan.insert(txn.next_try, server)
        elif msg.rcode in (RCODE_SERVFAIL, RCODE_REFUSED, RCODE_NOTIMP, RCODE_FORMERR):
            txn.failure = _SERVFAIL
        else:
            self.stats[f"rcode.{msg.rcode}"] += 1
            txn.failure = _SERVFAIL
        self._send_next(txn, now)

    def _start_tcp(self, txn, server, now):
        if txn.tcp is not None:
            self._tcp.close(txn)
        ident = self.rng.getrandbits(16)
        txn.deadline = now + self.timeout
        self.stats["query.tcp"] += 1
        self._tcp.ask(txn, server, ident, build_query(
            ident, txn.name, txn.qtype, edns_size=self.edns_size if txn.edns else None))

    def _end_txn(self, txn):
        self._txns.discard(txn)
        for port in txn.ports:
            self._by_port.pop(port, None)
        txn.ports = {}
        if txn.tcp is not None:
            self._tcp.close(txn)
