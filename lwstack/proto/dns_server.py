"""A small DNS server, sans-IO: static records, hash-derived names, forwarding.

Design note.  A query is answered from local data when the name is ours, else forwarded.

- Local data: static records (A, AAAA, PTR, CNAME, and any other type as raw data) added with
  :meth:`DnsServer.add_record` / :meth:`add_host` / :meth:`add_ptr`; zones (:meth:`add_zone`)
  under which we are authoritative, so a missing name is NXDOMAIN there; and hash rules
  (:meth:`add_hash_rule`, iothnamed's ``hash DOMAIN BASE``): the AAAA of any name under
  DOMAIN is BASE with its low 64 bits mixed with the MD5 of the name (iothaddr's algorithm,
  ``/work/shared/reference/iothaddr.md``; the name is hashed as the client wrote it, as
  iothnamed does), and PTR queries for an address handed out that way name it back
  (iothnamed's ``hrev`` with ``hrevmode always``; the last ``max_hash_reverse`` addresses).
  Static records win over hash rules.
- Local answers have AA set.  CNAMEs are followed through local data (bounded by
  ``max_chain``); a chain that leaves our data ends there with NOERROR and the client's
  resolver asks on (RFC 1034 4.3.2).  A name that exists without the asked type is NODATA
  (NOERROR, no answer), an unknown name inside a zone is NXDOMAIN; either carries the zone's
  SOA so resolvers can cache it (RFC 2308 section 3), with ``negative_ttl``.  A name with
  nothing of its own but names under it exists (an empty non-terminal, RFC 8020): NODATA.
- Forwarding: any other name goes to the ``upstreams`` in order, each for ``timeout`` seconds;
  the client's message is relayed with a fresh random id from a fresh random port (RFC 5452;
  ports from ``port_range`` skipping ``port_busy(port)``), and the answer must come from that
  upstream, to that port, with that id and question.  It goes back to the client with the
  client's id.  SERVFAIL or REFUSED moves to the next upstream; when none is left the client
  gets SERVFAIL (or the last upstream's own answer).  No upstreams: REFUSED.  At most
  ``max_pending`` forwarded queries are in flight (beyond: SERVFAIL at once); a client's
  retransmission of a query already in flight is not forwarded twice.  For a TCP client a
  truncated upstream answer is asked again over TCP.
- UDP answers longer than 512 bytes, or the client's EDNS size (capped at
  ``max_udp_size``), lose their additional records, then everything, with TC set (RFC 1035
  4.2.1, RFC 2181 9, RFC 6891 7); the client asks again over TCP.

Driving it (the host):

    server.receive(src_addr, src_port, dst_addr, dst_port, payload, now)
        every UDP datagram to ``server.port`` (53) or to a port in ``server.ports`` (the
        forwarding ports); returns False for any other port.
    server.receive_tcp_client(conn, data, now)
        bytes from an accepted TCP connection to port 53 (``conn`` is the host's handle);
        ``server.client_closed(conn)`` when it ends.
    outbox records:
        UdpSend("udp", src_addr, dst_addr, src_port, dst_port, payload)  (src_addr None:
            the host's choice by route, used for forwarding)
        TcpReply("tcp_reply", conn, payload)      payload is length-prefixed
        TcpQuery / TcpClose as for the resolver, for upstream TCP: feed ``receive_tcp`` and
            ``tcp_failed``
    server.poll(now) at server.poll_at().

Malformed queries get FORMERR when their header is readable, and are counted in ``stats``.
"""
import collections
import hashlib
import ipaddress
import random
import struct
from collections import namedtuple

from lwstack.proto.dns import TcpQueries, UdpSend, pick_port
from lwstack.wire import WireError
from lwstack.wire.dns import (CLASS_IN, CLASSIC_UDP_SIZE, DEFAULT_EDNS_SIZE, RCODE_BADVERS,
                              RCODE_FORMERR, RCODE_NOTIMP, RCODE_NXDOMAIN,
                              RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA, TYPE_ANY,
                              TYPE_CNAME, TYPE_PTR, TYPE_SOA, Message, Record, Soa,
                              address_from_reverse, frame_tcp, is_subdomain, name_key,
                              name_to_labels, reverse_name, unframe_tcp)

TcpReply = namedtuple("TcpReply", "kind conn payload")
TcpReply.__doc__ = ("Output: send ``payload`` (length-prefixed) on the client TCP connection "
                    "``conn`` (``kind`` is ``\"tcp_reply\"``).")

_FLAGS = struct.Struct("!HH")


def hash_address(base, name):
    """iothaddr's hash address: ``base`` (16 bytes) with bytes 8..15 XORed with the MD5 of
    ``name`` (a trailing dot removed), then the two low bits of byte 8 cleared."""
    if name.endswith(".") and not name.endswith("\\."):
        name = name[:-1]
    digest = hashlib.md5(name.encode("ascii")).digest()
    out = bytearray(base)
    for i in range(8):
        out[8 + i] ^= digest[i]
    out[8] &= 0xFC
    return bytes(out)


class _Forward:
    """A client's query on its way to the upstreams."""

    __slots__ = ("client", "conn", "client_id", "question", "query", "limit", "next_upstream",
                 "tries", "deadline", "tcp", "tcp_buffer", "last_answer")

    def __init__(self, client, conn, query_bytes, msg, limit):
        self.client = client            # (client addr, client port, our addr) for UDP
        self.conn = conn                # the host's TCP handle for TCP clients
        self.client_id = msg.id
        self.question = msg.questions[0]
        self.query = query_bytes
        self.limit = limit
        self.next_upstream = 0
        self.tries = {}                 # local port -> (id, upstream)
        self.deadline = None
        self.tcp = None                 # (token, id, upstream)
        self.tcp_buffer = b""
        self.last_answer = None


def _address(value, size):
    if isinstance(value, str):
        value = ipaddress.ip_address(value).packed
    value = bytes(value)
    if len(value) != size:
        raise ValueError(f"expected a {size}-byte address, got {len(value)} bytes")
    return value


class DnsServer:
    """A sans-IO DNS server (see the module's design note)."""

    def __init__(self, *, upstreams=(), zones=(), rng=None, port=53, timeout=2.0, ttl=600,
                 negative_ttl=60, max_records=4096, max_pending=256, max_tcp_clients=64,
                 max_hash_reverse=1024, max_chain=8, max_udp_size=DEFAULT_EDNS_SIZE,
                 port_range=(32768, 60999), port_busy=None):
        self.port = port
        self.timeout = timeout
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_records = max_records
        self.max_pending = max_pending
        self.max_tcp_clients = max_tcp_clients
        self.max_hash_reverse = max_hash_reverse
        self.max_chain = max_chain
        self.max_udp_size = max(max_udp_size, CLASSIC_UDP_SIZE)
        self.port_range = port_range
        self.port_busy = port_busy
        self.rng = rng if rng is not None else random.SystemRandom()
        self.upstreams = []
        self.set_upstreams(upstreams)
        self.outbox = []
        self.stats = collections.Counter()
        self._names = {}                # name key -> {rtype: [Record]}
        self._nonterminals = collections.Counter()   # ancestors of names, for RFC 8020
        self._count = 0
        self._zones = set()
        self._hash_rules = []           # (domain key, base, ttl)
        self._hash_reverse = collections.OrderedDict()   # address -> name
        self._pending = {}              # local port -> _Forward
        self._tcp = TcpQueries(self.outbox)     # upstream TCP connections
        self._inflight = {}             # (client or conn, id, question key) -> _Forward
        self._tcp_clients = {}          # conn -> buffered bytes
        for zone in zones:
            self.add_zone(zone)

    # ------------------------------------------------------------------ configuration

    def set_upstreams(self, upstreams):
        """The servers to forward to: addresses (bytes or text) or ``(addr, port)``."""
        result = []
        for item in upstreams:
            addr, port = item if isinstance(item, tuple) else (item, 53)
            if isinstance(addr, str):
                addr = ipaddress.ip_address(addr).packed
            result.append((bytes(addr), port))
        self.upstreams = result

    def add_zone(self, domain):
        """Be authoritative for ``domain`` and everything under it (NXDOMAIN for unknown names)."""
        self._zones.add(name_key(domain))

    def add_record(self, name, rtype, data, ttl=None):
        """Add a static record.  ``data``: A/AAAA an address (bytes or text), CNAME/PTR/NS a
        name, SOA a :class:`Soa`, other types as in :mod:`lwstack.wire.dns`.  A CNAME cannot
        share its name with other data (RFC 1034 3.6.2): that raises ``ValueError``."""
        key = name_key(name)
        if not key:
            raise ValueError("records at the root are not supported")
        if rtype == TYPE_A:
            data = _address(data, 4)
        elif rtype == TYPE_AAAA:
            data = _address(data, 16)
        elif rtype in (TYPE_CNAME, TYPE_PTR):
            name_to_labels(data)
            data = data.rstrip(".")
        if self._count >= self.max_records:
            raise ValueError(f"record table full ({self.max_records} records)")
        rrsets = self._names.get(key)
        if rrsets and (rtype == TYPE_CNAME) != (TYPE_CNAME in rrsets):
            raise ValueError(f"{name}: a CNAME cannot coexist with other records")
        if rrsets is None:
            rrsets = self._names[key] = {}
            labels = key.split(".")
            for i in range(1, len(labels)):
                self._nonterminals[".".join(labels[i:])] += 1
        record = Record(name.rstrip("."), rtype, CLASS_IN, self.ttl if ttl is None else ttl,
                        data)
        if record not in rrsets.setdefault(rtype, []):
            rrsets[rtype].append(record)
            self._count += 1

    def add_ptr(self, address, name, ttl=None):
        """A PTR record naming ``address`` (bytes or text)."""
        if isinstance(address, str):
            address = ipaddress.ip_address(address).packed
        self.add_record(reverse_name(address), TYPE_PTR, name, ttl)

    def add_host(self, name, addresses, ttl=None, ptr=True):
        """A and AAAA records for ``name``, and with ``ptr`` the PTR records naming it back."""
        for address in addresses:
            if isinstance(address, str):
                address = ipaddress.ip_address(address).packed
            self.add_record(name, TYPE_A if len(address) == 4 else TYPE_AAAA, address, ttl)
            if ptr:
                self.add_ptr(address, name, ttl)

    def remove(self, name, rtype=None, data=None):
        """Remove the records of ``name`` (of one type, or all; with ``data``, only the
        record of type ``rtype`` holding it, given as to :meth:`add_record`); returns how
        many went."""
        if data is not None and rtype is None:
            raise ValueError("removing a record by its data needs its type")
        key = name_key(name)
        rrsets = self._names.get(key)
        if not rrsets:
            return 0
        if data is not None:
            removed = self._remove_data(rrsets, rtype, data)
        else:
            types = list(rrsets) if rtype is None else [rtype]
            removed = sum(len(rrsets.pop(t, ())) for t in types)
        self._count -= removed
        if not rrsets:
            del self._names[key]
            labels = key.split(".")
            for i in range(1, len(labels)):
                parent = ".".join(labels[i:])
                self._nonterminals[parent] -= 1
                if self._nonterminals[parent] <= 0:
                    del self._nonterminals[parent]
        return removed

    @staticmethod
    def _remove_data(rrsets, rtype, data):
        if rtype == TYPE_A:
            data = _address(data, 4)
        elif rtype == TYPE_AAAA:
            data = _address(data, 16)
        elif rtype in (TYPE_CNAME, TYPE_PTR):
            data = name_key(data)
        kept = [r for r in rrsets.get(rtype, ())
                if (name_key(r.data) if rtype in (TYPE_CNAME, TYPE_PTR) else r.data) != data]
        removed = len(rrsets.get(rtype, ())) - len(kept)
        if kept:
            rrsets[rtype] = kept
        else:
            rrsets.pop(rtype, None)
        return removed

    def add_hash_rule(self, domain, base, ttl=600):
        """iothnamed's ``hash DOMAIN BASE``: answer AAAA for any name under ``domain`` with
        its hash address over ``base`` (a 16-byte address or text, normally a /64 prefix)."""
        key = name_key(domain)
        self._hash_rules.append((key, _address(base, 16), ttl))

    # ------------------------------------------------------------------------- input

    @property
    def ports(self):
        """The local UDP ports used for forwarding (besides ``port``)."""
        return self._pending.keys()

    def receive(self, src_addr, src_port, dst_addr, dst_port, payload, now):
        """A UDP datagram: a client's query to ``port``, or an upstream's answer to one of
        ``ports``.  Returns False when the datagram is for neither."""
        forward = self._pending.get(dst_port)
        if forward is not None:
            self._upstream_answer(forward, dst_port, bytes(src_addr), src_port, payload, now)
            return True
        if dst_port != self.port:
            return False
        client = (bytes(src_addr), src_port, dst_addr)
        reply = self._query(payload, client, None, now)
        if reply is not None:
            self._send_udp(client, reply)
        return True

    def receive_tcp_client(self, conn, data, now):
        """Bytes from the client TCP connection ``conn``; whole queries are answered."""
        if conn not in self._tcp_clients and len(self._tcp_clients) >= self.max_tcp_clients:
            self.stats["drop.too_many_tcp_clients"] += 1
            return
        buffer = self._tcp_clients.get(conn, b"") + bytes(data)
        while True:
            message, buffer = unframe_tcp(buffer)
            if message is None:
                break
            reply = self._query(message, None, conn, now)
            if reply is not None:
                self.outbox.append(TcpReply("tcp_reply", conn, frame_tcp(reply)))
        self._tcp_clients[conn] = buffer

    def client_closed(self, conn):
        """The client TCP connection ``conn`` ended; answers still due to it are dropped."""
        self._tcp_clients.pop(conn, None)

    def receive_tcp(self, token, data, now):
        """Bytes on an upstream TCP connection (see :class:`TcpQuery`); False if unknown."""
        forward, answer = self._tcp.receive(token, data)
        if answer is None:
            return forward is not None  # False for an unknown token
        message, ident, upstream = answer
        msg = self._parse_answer(message, ident, forward)
        if msg is None:
            self._next_upstream(forward, now)
        else:
            self._relay(forward, message, msg, upstream, True, now)
        return True

    def tcp_failed(self, token, now):
        """An upstream TCP connection failed or closed early."""
        forward = self._tcp.failed(token)
        if forward is not None:
            self.stats["tcp_failed"] += 1
            self._next_upstream(forward, now)

    def poll(self, now):
        """Move forwarded queries whose upstream is late on to the next one."""
        for forward in {f for f in self._pending.values() if f.deadline <= now} | \
                {f for f in self._tcp.queries.values() if f.deadline <= now}:
            if forward.tcp is not None:
                self._tcp.close(forward)
            self._next_upstream(forward, now)

    def poll_at(self):
        """When ``poll`` next has work, or None."""
        deadlines = [f.deadline for f in self._pending.values()]
        deadlines += [f.deadline for f in self._tcp.queries.values()]
        return min(deadlines, default=None)

    # ---------------------------------------------------------------------- answering

    def _query(self, payload, client, conn, now):
        """Handle one query; returns the reply bytes, or None (dropped or forwarded)."""
        try:
            msg = Message.parse(payload)
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1
            if len(payload) < 12 or payload[2] & 0x80:
                return None
            ident, flags = _FLAGS.unpack_from(payload)
            return Message(ident, qr=True, opcode=(flags >> 11) & 0xF, rd=bool(flags & 0x100),
                           rcode=RCODE_FORMERR).emit()
        if msg.qr:
            self.stats["drop.dns_not_query"] += 1
            return None
        limit = 0xFFFF if conn is not None else CLASSIC_UDP_SIZE
        if msg.edns is not None and conn is None:
            limit = max(CLASSIC_UDP_SIZE, min(msg.edns.udp_size, self.max_udp_size))
        if msg.opcode != 0:
            return msg.reply(RCODE_NOTIMP).emit(limit)
        if len(msg.questions) != 1:
            return msg.reply(RCODE_FORMERR).emit(limit)
        if msg.edns is not None and msg.edns.version > 0:
            return msg.reply(RCODE_BADVERS).emit(limit)     # RFC 6891 6.1.3
        if msg.questions[0].qclass != CLASS_IN:
            return msg.reply(RCODE_REFUSED).emit(limit)
        self.stats["queries"] += 1
        reply = self._local(msg)
        if reply is not None:
            self.stats["answered"] += 1
            return reply.emit(limit)
        return self._forward(payload, msg, client, conn, limit, now)

    def _local(self, query):
        question = query.questions[0]
        name = question.name
        rrsets = self._rrsets(name, question.qtype)
        if rrsets is None and self._zone(name_key(name)) is None:
            return None
        reply = query.reply(aa=True, ra=bool(self.upstreams))
        for _ in range(self.max_chain + 1):
            if rrsets is None:
                if self._zone(name_key(name)) is not None:
                    reply.rcode = RCODE_NXDOMAIN        # RFC 6604: about the chain's end
                    self._add_soa(reply, name)
                return reply
            if question.qtype == TYPE_ANY and rrsets:
                reply.answers += [r for records in rrsets.values() for r in records]
                return reply
            if rrsets.get(question.qtype):
                reply.answers += rrsets[question.qtype]
                return reply
            cname = rrsets.get(TYPE_CNAME)
            if not cname:
                self._add_soa(reply, name)              # NODATA
                return reply
            reply.answers += cname
            name = cname[0].data
            rrsets = self._rrsets(name, question.qtype)
        self.stats["chain_too_long"] += 1
        return query.reply(RCODE_SERVFAIL, aa=True, ra=bool(self.upstreams))

    def _rrsets(self, name, qtype):
        """{rtype: [records owned by ``name`` as written]} if ``name`` exists here, else None."""
        key = name_key(name)
        static = self._names.get(key)
        if static:
            rrsets = {t: [r._replace(name=name) for r in records] for t, records in static.items()}
            if key in self._zones:
                rrsets.setdefault(TYPE_SOA, [self._soa(key)])
            return rrsets
        for domain, base, ttl in self._hash_rules:
            if key != domain and is_subdomain(key, domain):
                address = hash_address(base, name)
                if qtype in (TYPE_AAAA, TYPE_ANY):
                    self._hash_reverse[address] = name
                    self._hash_reverse.move_to_end(address)
                    while len(self._hash_reverse) > self.max_hash_reverse:
                        self._hash_reverse.popitem(last=False)
                return {TYPE_AAAA: [Record(name, TYPE_AAAA, CLASS_IN, ttl, address)]}
        address = address_from_reverse(key)
        if address is not None and address in self._hash_reverse:
            target = self._hash_reverse[address]
            return {TYPE_PTR: [Record(name, TYPE_PTR, CLASS_IN, self.ttl, target)]}
        if key in self._zones:
            return {TYPE_SOA: [self._soa(key)]}
        if key in self._nonterminals or any(key == d for d, _, _ in self._hash_rules):
            return {}
        return None

    def _zone(self, key):
        best = None
        for zone in (*self._zones, *(d for d, _, _ in self._hash_rules)):
            if is_subdomain(key, zone) and (best is None or len(zone) > len(best)):
                best = zone
        return best

    def _soa(self, zone):
        return Record(zone, TYPE_SOA, CLASS_IN, self.negative_ttl,
                      Soa(zone, f"hostmaster.{zone}", 1, 3600, 600, 86400, self.negative_ttl))

    def _add_soa(self, reply, name):
        zone = self._zone(name_key(name))
        if zone is not None:
            reply.authorities.append(self._soa(zone))

    def _send_udp(self, client, payload):
        addr, port, our_addr = client
        self.outbox.append(UdpSend("udp", our_addr, addr, self.port, port, payload))

    # ---------------------------------------------------------------------- forwarding

    def _forward(self, payload, msg, client, conn, limit, now):
        if not self.upstreams:
            self.stats["refused"] += 1
            return msg.reply(RCODE_REFUSED).emit(limit)
        question = msg.questions[0]
        key = (client if conn is None else ("tcp", conn), msg.id,
               name_key(question.name), question.qtype)
        if key in self._inflight:
            self.stats["forward.duplicate"] += 1
            return None
        if len(self._inflight) >= self.max_pending:
            self.stats["drop.too_many_pending"] += 1
            return msg.reply(RCODE_SERVFAIL).emit(limit)
        forward = _Forward(client, conn, bytes(payload), msg, limit)
        self._inflight[key] = forward
        self.stats["forwarded"] += 1
        self._next_upstream(forward, now)
        return None

    def _next_upstream(self, forward, now):
        if forward.next_upstream >= len(self.upstreams):
            self._end(forward)
            if forward.last_answer is not None:
                self._deliver(forward, forward.last_answer)
            else:
                self.stats["forward.timeout"] += 1
                reply = Message(forward.client_id, qr=True, rd=True, rcode=RCODE_SERVFAIL,
                                questions=[forward.question])
                self._deliver(forward, reply)
            return
        upstream = self.upstreams[forward.next_upstream]
        forward.next_upstream += 1
        forward.deadline = now + self.timeout
        port = pick_port(self.rng, self.port_range, self._pending, self.port_busy)
        if port is None:
            self.stats["drop.no_port"] += 1
            return
        ident = self.rng.getrandbits(16)
        forward.tries[port] = (ident, upstream)
        self._pending[port] = forward
        self.outbox.append(UdpSend("udp", None, upstream[0], port, upstream[1],
                                   ident.to_bytes(2, "big") + forward.query[2:]))

    def _parse_answer(self, payload, ident, forward):
        try:
            msg = Message.parse(payload)
        except WireError as exc:
            self.stats["drop." + exc.reason] += 1
            return None
        question = forward.question
        if (not msg.qr or msg.id != ident or len(msg.questions) != 1
                or msg.questions[0].qtype != question.qtype
                or msg.questions[0].qclass != question.qclass
                or name_key(msg.questions[0].name) != name_key(question.name)):
            self.stats["drop.dns_mismatch"] += 1
            return None
        return msg

    def _upstream_answer(self, forward, port, src_addr, src_port, payload, now):
        ident, upstream = forward.tries[port]
        if (src_addr, src_port) != upstream:
            self.stats["drop.dns_wrong_source"] += 1
            return
        msg = self._parse_answer(payload, ident, forward)
        if msg is not None:
            self._relay(forward, bytes(payload), msg, upstream, False, now)

    def _relay(self, forward, payload, msg, upstream, via_tcp, now):
        if msg.tc and not via_tcp and forward.conn is not None:
            if forward.tcp is None:
                self._start_tcp(forward, upstream, now)
            return
        if msg.rcode in (RCODE_SERVFAIL, RCODE_REFUSED) and \
                forward.next_upstream < len(self.upstreams):
            forward.last_answer = msg
            if forward.tcp is not None:
                self._tcp.close(forward)
            self._next_upstream(forward, now)
            return
        self._end(forward)
        self.stats["forward.answered"] += 1
        data = forward.client_id.to_bytes(2, "big") + payload[2:]
        if forward.conn is None and len(data) > forward.limit:
            msg.id = forward.client_id
            data = msg.emit(forward.limit)
        self._deliver(forward, data)

    def _deliver(self, forward, reply):
        if isinstance(reply, Message):
            reply.id = forward.client_id
            reply = reply.emit(forward.limit)
        if forward.conn is None:
            self._send_udp(forward.client, reply)
        elif forward.conn in self._tcp_clients:
            self.outbox.append(TcpReply("tcp_reply", forward.conn, frame_tcp(reply)))

    def _start_tcp(self, forward, upstream, now):
        ident = self.rng.getrandbits(16)
        forward.deadline = now + self.timeout
        self.stats["forward.tcp"] += 1
        self._tcp.ask(forward, upstream, ident, ident.to_bytes(2, "big") + forward.query[2:])

    def _end(self, forward):
        for port in forward.tries:
            self._pending.pop(port, None)
        forward.tries = {}
        if forward.tcp is not None:
            self._tcp.close(forward)
        question = forward.question
        key = (forward.client if forward.conn is None else ("tcp", forward.conn),
               forward.client_id, name_key(question.name), question.qtype)
        self._inflight.pop(key, None)
