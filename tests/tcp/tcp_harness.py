"""A scripted TCP peer for state-machine tests (imported by name: ``from tcp_harness import ...``).

Design note.  A :class:`TcpPeer` is a raw host on a :class:`lwstack.sim.VirtualNetwork`, next to
one lwstack :class:`~lwstack.Stack`.  The test *is* the peer's TCP: it sends hand-built segments
(:meth:`TcpPeer.send`, built with :func:`lwstack.wire.tcp.build_tcp`) at chosen virtual times
and checks every segment the stack answers with (:meth:`TcpPeer.expect`, :func:`assert_segment`).

- The peer joins the simulation as one more "driver" of the network, so it sees each frame at
  the virtual instant it is delivered: every :class:`Arrival` carries its arrival time, which
  is how a test checks an RTO or a TIME-WAIT expiry without any wall clock.
- ARP is out of the way: the stack's neighbour cache is seeded with the peer's MAC up front
  and kept reachable for the whole test; the peer still answers ARP requests for its address
  by itself (for a second peer address, say).
- Everything the peer sends and receives is also decoded by dpkt and its TCP checksum is summed
  by an independent few lines here, so a bug in ``lwstack.wire.tcp`` cannot hide itself.
- Blocking socket calls advance virtual time by themselves, while the test is stuck in the call:
  set :attr:`TcpPeer.responder` to a function of each :class:`Arrival` that answers it with
  ``peer.send(..., run=False)`` (e.g. a RST to a SYN, to see ``connect`` refused).
- Batching: :meth:`TcpPeer.send` runs the network for the current instant by default, so the
  stack reads the segment, flushes its batch (lwstack sends ACKs once per batch) and answers.
  ``send(..., run=False)`` queues segments so that several arrive in one batch.
- Sequence numbers are 32-bit wire values throughout (tests reason about them as RFC 9293
  does); :func:`assert_segment` compares them modulo 2**32.
- IPv6: give IPv6 addresses (``TcpPeer(net, "fd00::1", "fd00::99")``) and the same peer speaks
  TCP over IPv6 to an AF_INET6 socket: the stack gets ``ip=fd00::1/64``, is left to finish
  DAD of its addresses first (``settle`` seconds, 3 by default: the log starts after that),
  the peer is seeded REACHABLE in its neighbour cache and answers Neighbour Solicitations as
  it answers ARP; frames are cross-checked by dpkt's IPv6 decoder.

Typical use::

    net = VirtualNetwork(seed=1)
    peer = TcpPeer(net)
    flow = peer.handshake_passive(port=80, isn=1000)     # lwstack listens, peer connects
    peer.send("A", 1001, flow.iss + 1, payload=b"hello")
    peer.expect("A", seq=flow.iss + 1, ack=1006, within=1.0)   # delayed ACK
"""
import errno

import dpkt

from lwstack import socket as lwsocket
from lwstack.wire.ethernet import (BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, build_ethernet,
                                   parse_ethernet)
from lwstack.wire.arp import OP_REPLY, OP_REQUEST, ArpPacket
from lwstack.wire import icmpv6
from lwstack.wire.ipv4 import addr_to_str, build_ipv4, parse_addr, parse_ipv4
from lwstack.wire.ipv6 import (ETHERTYPE_IPV6, addr6_to_str, build_ipv6, parse_addr6,
                               parse_ipv6)
from lwstack.wire.tcp import (ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, build_options, build_tcp,
                              flags_to_str, parse_tcp)

STACK_MAC = "02:00:00:00:00:01"
PEER_MAC = bytes.fromhex("0200000000ee")
PEER_IP = "10.0.0.99"
STACK_IP = "10.0.0.1"
#: The peer's default source port.
PEER_PORT = 40000
MASK = 0xFFFFFFFF

_LETTERS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, "A": ACK, "U": URG, "E": ECE, "C": CWR}


class _Any:
    """Matches any value in :func:`assert_segment` (e.g. ``options={"ts": ANY}``)."""

    def __eq__(self, other):
        return True

    def __repr__(self):
        return "ANY"


#: Wildcard for :func:`assert_segment` fields and options.
ANY = _Any()


def flags_of(letters):
    """``"SA"`` -> ``SYN|ACK``; letters F S R P A U E C in any order (an int passes through)."""
    if isinstance(letters, int):
        return letters
    value = 0
    for letter in letters.upper():
        try:
            value |= _LETTERS[letter]
        except KeyError:
            raise ValueError(f"unknown TCP flag letter {letter!r} in {letters!r}") from None
    return value


def _inet_checksum(data):
    """RFC 1071 Internet checksum, written independently of lwstack.wire.checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def cross_check(frame, seg):
    """Decode ``frame`` with dpkt and check it agrees with lwstack's ``seg`` and sums right
    (over IPv4 or IPv6, whose pseudo-header RFC 8200 section 8.1 defines)."""
    eth = dpkt.ethernet.Ethernet(bytes(frame))
    packet = eth.data
    if isinstance(packet, dpkt.ip6.IP6):
        assert packet.nxt == 6, "not an IPv6/TCP frame without extension headers"
        raw = bytes(frame)[54:54 + packet.plen]
        pseudo = bytes(packet.src) + bytes(packet.dst) + len(raw).to_bytes(4, "big") + \
            bytes((0, 0, 0, 6))
    else:
        assert isinstance(packet, dpkt.ip.IP) and packet.p == 6, "not an IPv4/TCP frame"
        raw = bytes(packet)[packet.hl * 4:packet.len]
        pseudo = bytes(packet.src) + bytes(packet.dst) + bytes((0, 6)) + \
            len(raw).to_bytes(2, "big")
    tcp = dpkt.tcp.TCP(raw)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags, tcp.win) == \
        (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window), \
        f"dpkt disagrees with lwstack: {tcp!r} vs {seg!r}"
    assert bytes(tcp.data) == bytes(seg.payload), "dpkt sees another payload"
    assert _inet_checksum(pseudo + raw) == 0xFFFF, "bad TCP checksum"
    opts = {opt[0]: opt[1] for opt in dpkt.tcp.parse_opts(tcp.opts)}
    if seg.mss:
        assert int.from_bytes(opts[dpkt.tcp.TCP_OPT_MSS], "big") == seg.mss
    if seg.wscale >= 0:
        assert opts[dpkt.tcp.TCP_OPT_WSCALE][0] == seg.wscale
    if seg.has_timestamps:
        ts = opts[dpkt.tcp.TCP_OPT_TIMESTAMP]
        assert (int.from_bytes(ts[:4], "big"), int.from_bytes(ts[4:], "big")) == \
            (seg.ts_val, seg.ts_ecr)
    assert (dpkt.tcp.TCP_OPT_SACKOK in opts) == bool(seg.sack_permitted)


class Arrival:
    """A segment the stack sent, as the peer received it.

    ``time`` (virtual seconds), ``ip`` (the IPv4 or IPv6 header), ``frame`` (the whole frame),
    ``seg`` (the parsed :class:`~lwstack.wire.tcp.TcpSegment`, payload copied to bytes); the
    segment's fields are
    also readable directly (``arrival.seq``, ``arrival.flags``...), and :attr:`letters` gives
    the flags as letters in the order ``flags_to_str`` prints them (``"SA"`` for SYN-ACK).
    """

    __slots__ = ("time", "ip", "seg", "payload", "frame")

    def __init__(self, time, ip, seg, frame=b""):
        self.time = time
        self.ip = ip
        self.seg = seg
        self.payload = bytes(seg.payload)
        self.frame = bytes(frame)

    def __getattr__(self, name):
        return getattr(self.seg, name)

    @property
    def letters(self):
        """The flags as letters (``"SA"``, ``"AR"``...)."""
        return flags_to_str(self.seg.flags)

    def __repr__(self):
        return f"<t={self.time:.6f} {self.seg!r}>"


def _options_mismatches(seg, options):
    """The differences between ``seg``'s options and the exact set ``options`` describes."""
    known = {"mss", "wscale", "sack_permitted", "ts", "sack"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown option names {sorted(unknown)} (use {sorted(known)})")
    actual = {
        "mss": seg.mss or None,
        "wscale": seg.wscale if seg.wscale >= 0 else None,
        "sack_permitted": bool(seg.sack_permitted) or None,
        "ts": (seg.ts_val, seg.ts_ecr) if seg.has_timestamps else None,
        "sack": tuple(seg.sack_blocks) or None,
    }
    problems = []
    for name in sorted(known):
        want = options.get(name)
        if name == "sack" and want is not None and want is not ANY:
            want = tuple((l & MASK, r & MASK) for l, r in want)
        if name == "ts" and isinstance(want, tuple):
            want = tuple(ANY if v is ANY else v & MASK for v in want)
            if actual["ts"] is None or not all(w == a for w, a in zip(want, actual["ts"])):
                problems.append(f"ts={actual['ts']} (want {want})")
            continue
        if want is ANY:
            if actual[name] is None:
                problems.append(f"{name} absent (want present)")
            continue
        if actual[name] != want:
            problems.append(f"{name}={actual[name]} (want {want})")
    return problems


def assert_segment(seg, flags=None, seq=None, ack=None, window=None, payload_len=None,
                   payload=None, options=None, src_port=None, dst_port=None):
    """Assert that ``seg`` (an :class:`Arrival` or a TcpSegment) is exactly as described.

    ``flags`` are letters (``"SA"``, ``"AR"``, ``"FA"``; order does not matter) and must match
    exactly, PSH included.  ``seq`` and ``ack`` compare modulo 2**32.  ``options`` is the
    *complete* option set: a dict with any of ``mss``, ``wscale``, ``sack_permitted``, ``ts``
    (a ``(val, ecr)`` pair, either may be :data:`ANY`) and ``sack`` (blocks); names left out
    must be absent, ``{}`` means no options at all, ``ANY`` as a value means present.  Fields
    left at None are not checked.
    """
    __tracebackhide__ = True
    raw = seg.seg if isinstance(seg, Arrival) else seg
    problems = []
    if flags is not None and raw.flags != flags_of(flags):
        problems.append(f"flags={flags_to_str(raw.flags)!r} (want {flags!r})")
    for name, want in (("seq", seq), ("ack", ack)):
        if want is not None and want is not ANY and getattr(raw, name) != want & MASK:
            problems.append(f"{name}={getattr(raw, name)} (want {want & MASK})")
    for name, want in (("window", window), ("src_port", src_port), ("dst_port", dst_port)):
        if want is not None and getattr(raw, name) != want:
            problems.append(f"{name}={getattr(raw, name)} (want {want})")
    data = bytes(raw.payload)
    if payload_len is not None and len(data) != payload_len:
        problems.append(f"payload_len={len(data)} (want {payload_len})")
    if payload is not None and data != bytes(payload):
        problems.append(f"payload={data[:32]!r}... (want {bytes(payload)[:32]!r}...)")
    if options is not None:
        problems.extend(_options_mismatches(raw, options))
    assert not problems, f"{seg!r}: " + "; ".join(problems)
    return seg


class Flow:
    """One connection between the peer and the stack, as a handshake helper left it.

    ``sock`` is the lwstack socket, non-blocking (the accepted one for a passive open, or None
    when ``accept=False``), ``listener`` the listening socket (passive opens), ``iss`` the stack's
    ISN, ``irs`` the peer's ISN, ``stack_port`` / ``peer_port`` the ports, and ``syn`` /
    ``synack`` the stack's handshake segment (an :class:`Arrival`).  ``stack_nxt`` and
    ``peer_nxt`` are the next sequence numbers each side will send (ISN + 1 after the
    handshake), for tests to advance as they go.
    """

    def __init__(self, sock, iss, irs, stack_port, peer_port, syn=None, listener=None):
        self.sock = sock
        self.listener = listener
        self.iss = iss
        self.irs = irs
        self.stack_port = stack_port
        self.peer_port = peer_port
        self.syn = syn
        self.synack = syn
        self.stack_nxt = (iss + 1) & MASK
        self.peer_nxt = (irs + 1) & MASK

    def __repr__(self):
        return (f"<Flow stack:{self.stack_port} iss={self.iss} peer:{self.peer_port} "
                f"irs={self.irs}>")


class _PeerDriver:
    """The peer's port as one more participant of the simulation loop."""

    def __init__(self, peer):
        self.peer = peer

    def step(self, now):
        """Take frames due now: log TCP arrivals, answer ARP; True if anything arrived."""
        frames = self.peer.port.receive(now)
        for frame in frames:
            self.peer._frame_in(frame, now)
        return bool(frames)

    def next_event(self):
        """When the next frame is due at the peer's port."""
        return self.peer.port.next_delivery()


class TcpPeer:
    """A scripted TCP peer next to one lwstack stack on ``net`` (see the module note).

    ``stack_ip`` / ``peer_ip``: the two addresses on 10.0.0.0/24, or two IPv6 addresses on a
    /64 (TCP over IPv6, see the module note; ``settle``: seconds of DAD first).  ``mtu`` sets
    the stack's interface MTU.  ``tcp`` is a dict of TcpTable attributes to set on the stack (e.g.
    ``{"time_wait": 10.0, "syncookies": False, "timestamps_enabled": False}``).
    ``stack_options`` are impairments on the stack's switch port (frames *to* the stack),
    ``peer_options`` on the peer's port (frames *to* the peer), e.g. ``{"delay": 0.05}``.
    ``cross_check`` decodes every frame with dpkt too (see :func:`cross_check`).
    """

    def __init__(self, net, stack_ip=STACK_IP, peer_ip=PEER_IP, *, mtu=None, tcp=None,
                 stack_options=None, peer_options=None, mac=PEER_MAC, cross_check=True,
                 settle=3.0):
        self.net = net
        self.v6 = ":" in stack_ip
        self.family = lwsocket.AF_INET6 if self.v6 else lwsocket.AF_INET
        conf = f"ip={stack_ip}/{64 if self.v6 else 24},mac={STACK_MAC}" + \
            (f",mtu={mtu}" if mtu else "")
        self.stack = net.stack(conf, **(stack_options or {}))
        self.host = self.stack.host
        self.table = self.host.tcp
        for name, value in (tcp or {}).items():
            if not hasattr(self.table, name):
                raise AttributeError(f"TcpTable has no attribute {name!r}")
            setattr(self.table, name, value)
        self.port = net.switch.plug(description="scripted TCP peer", **(peer_options or {}))
        self.mac = mac
        self.stack_mac = bytes.fromhex(STACK_MAC.replace(":", ""))
        self.ip = self._parse(peer_ip)
        self.addresses = {self.ip}    # what the peer answers ARP for (send(src=...) adds)
        self.stack_ip = self._parse(stack_ip)
        self.check = cross_check
        self.log = []                 # every Arrival, in order
        self.others = []              # (time, frame) of non-TCP frames (ARP, ICMP...)
        self.sent = []                # (time, frame) of what the peer sent
        self._cursor = 0
        self.sport = PEER_PORT        # defaults for send(); handshake helpers set them
        self.dport = 80
        self.answer_arp = True
        self.responder = None         # callable(arrival), called as each segment arrives
        net.drivers.append(_PeerDriver(self))
        # ARP resolved up front: the stack knows our MAC, we know its.  The entry is kept
        # REACHABLE for the whole test: ARP is not under test here, and an entry refreshed at
        # some float times expires in NeighbourCache.poll_at() an ulp before poll() agrees
        # (confirmed + stale_time vs now - confirmed >= stale_time), which livelocks the
        # simulation (seen at t=162.2 after a refresh at 102.2).
        if self.v6:
            # The same for neighbour discovery, once the stack's addresses passed DAD.
            net.run(settle)
            cache = self.host.nd.cache
            cache.set_base_reachable_time(1e7, net.now)
            cache.learn(self.ip, self.mac, net.now)
            cache.confirm(self.ip, net.now)
        else:
            self.host.arp.reachable_time = 1e7
            self.host.arp.stale_time = 2e7
            self.host.arp.confirm(self.ip, self.mac, net.now, create=True)
        net.run(0)
        self._cursor = len(self.log)
        self.others.clear()

    # -- addresses ------------------------------------------------------------------------------

    def _parse(self, text):
        return parse_addr6(text) if self.v6 else parse_addr(text)

    def text(self, addr):
        """An address of the peer's family as text."""
        return addr6_to_str(addr) if self.v6 else addr_to_str(addr)

    def sockaddr(self, addr, port):
        """What the stack's socket API says for ``addr``, ``port`` (a 4-tuple over IPv6)."""
        return (self.text(addr), port, 0, 0) if self.v6 else (self.text(addr), port)

    # -- time -----------------------------------------------------------------------------------

    @property
    def now(self):
        """The network's virtual time."""
        return self.net.now

    def run(self, seconds=0.0):
        """Advance virtual time by ``seconds`` (0: finish the current instant); return the
        segments that arrived and were not read yet (and mark them read)."""
        self.net.run(seconds)
        return self.received()

    def run_to(self, at):
        """Advance virtual time to the absolute time ``at`` (no-op if already there)."""
        if at > self.net.now:
            self.net.run(at - self.net.now)
        else:
            self.net.run(0)

    # -- sending ---------------------------------------------------------------------------------

    def segment(self, flags, seq=0, ack=0, window=65535, payload=b"", *, sport=None,
                dport=None, mss=0, wscale=-1, sack_permitted=False, ts=None, sack=(),
                urgent=0, options=None):
        """The raw TCP segment bytes (no IP header) :meth:`send` would send."""
        if options is None:
            options = build_options(mss=mss, wscale=wscale, sack_permitted=sack_permitted,
                                    timestamps=ts, sack_blocks=sack)
        return build_tcp(self.ip, self.stack_ip, self.sport if sport is None else sport,
                         self.dport if dport is None else dport, seq & MASK, ack & MASK,
                         flags_of(flags), window, options, bytes(payload), urgent)

    def send(self, flags, seq=0, ack=0, window=65535, payload=b"", *, sport=None, dport=None,
             mss=0, wscale=-1, sack_permitted=False, ts=None, sack=(), urgent=0, options=None,
             at=None, run=True, src=None):
        """Send one segment to the stack.

        ``flags`` as letters (``"S"``, ``"A"``, ``"PA"``...); ``seq``/``ack`` wire values (taken
        modulo 2**32); options by keyword (``ts`` is ``(val, ecr)``, ``sack`` a list of
        ``(left, right)``), or raw ``options`` bytes.  ``at``: first advance virtual time to
        this absolute time.  ``run``: then let the stack process the instant (set False to
        queue several segments into one batch, then call :meth:`run`).  ``src``: another
        source address (text) on the peer's MAC, for a second remote host.
        """
        if at is not None:
            self.run_to(at)
        src_ip = self._parse(src) if src else self.ip
        self.addresses.add(src_ip)
        if options is None:
            options = build_options(mss=mss, wscale=wscale, sack_permitted=sack_permitted,
                                    timestamps=ts, sack_blocks=sack)
        tcp = build_tcp(src_ip, self.stack_ip, self.sport if sport is None else sport,
                        self.dport if dport is None else dport, seq & MASK, ack & MASK,
                        flags_of(flags), window, options, bytes(payload), urgent)
        self.send_ip(tcp, src=src_ip, run=run)

    def send_ip(self, transport, *, src=None, protocol=6, run=True):
        """Send an IPv4 (or IPv6) packet with ``transport`` as payload (a hand-made segment;
        ``protocol`` is the IPv6 Next Header too: 58 for ICMPv6)."""
        src_ip = src or self.ip
        if self.v6:
            frame = build_ethernet(self.stack_mac, self.mac, ETHERTYPE_IPV6,
                                   build_ipv6(src_ip, self.stack_ip, protocol, transport))
        else:
            frame = build_ethernet(self.stack_mac, self.mac, ETHERTYPE_IPV4,
                                   build_ipv4(src_ip, self.stack_ip, protocol, transport))
        if self.check and protocol == 6:
            cross_check(frame, parse_tcp(transport, src_ip, self.stack_ip))
        self.sent.append((self.net.now, frame))
        self.port.send(frame, self.net.now)
        if run:
            self.net.run(0)

    # -- receiving -------------------------------------------------------------------------------

    def send_packet_too_big(self, arrival, mtu, *, src=None, run=True):
        """An ICMPv6 Packet Too Big (RFC 4443 section 3.2) quoting ``arrival``'s packet, from
        ``src`` (text; default the peer's address: a router on the path would use its own),
        reporting ``mtu`` (IPv6 peers only)."""
        src_ip = self._parse(src) if src else self.ip
        quoted = arrival.frame[14:14 + 40 + arrival.ip.payload_len]
        message = icmpv6.build_error(icmpv6.TYPE_PACKET_TOO_BIG, 0, quoted, src_ip,
                                     self.stack_ip, rest=mtu)
        self.send_ip(message, src=src_ip, protocol=58, run=run)

    def _frame_in(self, frame, now):
        dst, src, ethertype = parse_ethernet(frame)
        if ethertype == ETHERTYPE_IPV6:
            self._frame6_in(frame, dst, now)
            return
        if ethertype == ETHERTYPE_ARP:
            packet = ArpPacket.parse(frame, 14)
            if self.answer_arp and packet.operation == OP_REQUEST and \
                    packet.target_ip in self.addresses:
                reply = ArpPacket(OP_REPLY, self.mac, packet.target_ip, packet.sender_mac,
                                  packet.sender_ip)
                self.port.send(build_ethernet(packet.sender_mac, self.mac, ETHERTYPE_ARP,
                                              reply.emit()), now)
            self.others.append((now, frame))
            return
        if ethertype != ETHERTYPE_IPV4 or dst not in (self.mac, BROADCAST):
            self.others.append((now, frame))
            return
        header = parse_ipv4(frame, 14)
        if header.protocol != 6:
            self.others.append((now, frame))
            return
        body = bytes(frame[14 + header.header_len:14 + header.total_len])
        seg = parse_tcp(body, header.src, header.dst)
        if self.check:
            cross_check(frame, seg)
        arrival = Arrival(now, header, seg, frame)
        self.log.append(arrival)
        if self.responder is not None:
            self.responder(arrival)

    def _frame6_in(self, frame, dst, now):
        header = parse_ipv6(frame, 14)
        body = bytes(frame[54:54 + header.payload_len])
        if header.next_header == 58 and body[:1] == bytes((icmpv6.TYPE_NEIGHBOR_SOLICITATION,)):
            icmp_type, _code, rest, message = icmpv6.parse_icmpv6(body, header.src, header.dst)
            ns = icmpv6.parse_nd_message(icmp_type, rest, message)
            if self.answer_arp and ns.target in self.addresses and any(header.src):
                na = icmpv6.NeighborAdvertisement(ns.target, False, True, True, self.mac)
                answer = build_ipv6(ns.target, header.src, 58,
                                    na.emit(ns.target, header.src), 255)
                self.port.send(build_ethernet(bytes(frame[6:12]), self.mac, ETHERTYPE_IPV6,
                                              answer), now)
            self.others.append((now, frame))
            return
        if header.next_header != 6 or dst != self.mac:
            self.others.append((now, frame))
            return
        seg = parse_tcp(body, header.src, header.dst)
        if self.check:
            cross_check(frame, seg)
        arrival = Arrival(now, header, seg, frame)
        self.log.append(arrival)
        if self.responder is not None:
            self.responder(arrival)

    @property
    def pending(self):
        """Arrivals not yet read by :meth:`received` / :meth:`expect` (without running)."""
        return self.log[self._cursor:]

    def received(self, within=0.0):
        """Run ``within`` seconds (0: the current instant), then return and consume every
        unread arrival."""
        self.net.run(within)
        new = self.log[self._cursor:]
        self._cursor = len(self.log)
        return new

    def next(self, within=0.0):
        """The next unread arrival, waiting up to ``within`` virtual seconds for it; None if
        nothing came (the clock then stands ``within`` seconds later)."""
        if self._cursor >= len(self.log):
            self.net.run_until(lambda: self._cursor < len(self.log), within)
            if self._cursor >= len(self.log):
                self.net.run(0)
        if self._cursor >= len(self.log):
            return None
        arrival = self.log[self._cursor]
        self._cursor += 1
        return arrival

    def expect(self, flags=None, seq=None, ack=None, window=None, payload_len=None, *,
               within=0.0, **fields):
        """Wait up to ``within`` virtual seconds for the next segment from the stack, assert it
        (see :func:`assert_segment` for the fields) and return it as an :class:`Arrival`."""
        __tracebackhide__ = True
        arrival = self.next(within)
        assert arrival is not None, \
            f"expected a segment ({flags}) within {within}s, got nothing (t={self.now})"
        return assert_segment(arrival, flags, seq, ack, window, payload_len, **fields)

    def expect_nothing(self, within=0.0):
        """Assert the stack sends nothing (more) in the next ``within`` virtual seconds."""
        __tracebackhide__ = True
        arrival = self.next(within)
        assert arrival is None, f"expected silence for {within}s, got {arrival!r}"

    # -- handshakes ------------------------------------------------------------------------------

    def socket(self):
        """A non-blocking TCP socket on the stack (so calls never advance the clock)."""
        sock = self.stack.socket(self.family, lwsocket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    def listen(self, port=80, backlog=16):
        """A non-blocking listening socket on the stack's ``port``."""
        sock = self.socket()
        sock.bind(("", port))
        sock.listen(backlog)
        return sock

    def connect(self, port=80, sock=None):
        """Start an active open from the stack to the peer's ``port``; return the socket and the
        SYN (asserted to be a SYN)."""
        sock = sock or self.socket()
        code = sock.connect_ex((self.text(self.ip), port))
        assert code == errno.EINPROGRESS, errno.errorcode.get(code, code)
        syn = self.expect("S", ack=0)
        self.sport = port
        self.dport = syn.src_port
        return sock, syn

    def handshake_active(self, port=80, isn=7000, window=65535, mss=1460, wscale=7,
                         sack_permitted=True, ts=None, sock=None):
        """The stack connects to the peer's ``port``; the peer answers SYN-ACK with ``isn`` and
        the options given (``ts``: the peer's TSval, echoing the SYN's).  Asserts the stack's
        ACK and returns a :class:`Flow`."""
        sock, syn = self.connect(port, sock)
        self.send("SA", isn, syn.seq + 1, window, mss=mss, wscale=wscale,
                  sack_permitted=sack_permitted,
                  ts=None if ts is None or not syn.has_timestamps else (ts, syn.ts_val))
        self.expect("A", seq=syn.seq + 1, ack=isn + 1)
        assert sock.connect_ex((self.text(self.ip), port)) == errno.EISCONN
        return Flow(sock, syn.seq, isn, syn.src_port, port, syn=syn)

    def handshake_passive(self, port=80, isn=1000, window=65535, mss=1460, wscale=7,
                          sack_permitted=True, ts=None, listener=None, accept=True,
                          sport=None):
        """The peer connects to ``port`` on the stack (listening there unless ``listener`` is
        given); ``ts``: the peer's TSval.  Asserts the SYN-ACK, sends the final ACK and, with
        ``accept``, accepts.  Returns a :class:`Flow`."""
        if listener is None:
            listener = self.listen(port)
        self.dport = port
        if sport is not None:
            self.sport = sport
        self.send("S", isn, 0, window, mss=mss, wscale=wscale, sack_permitted=sack_permitted,
                  ts=None if ts is None else (ts, 0))
        synack = self.expect("SA", ack=isn + 1)
        self.send("A", isn + 1, synack.seq + 1, window,
                  ts=None if ts is None or not synack.has_timestamps else (ts, synack.ts_val))
        sock = None
        if accept:
            sock, address = listener.accept()
            assert address == self.sockaddr(self.ip, self.sport)
            sock.setblocking(False)
        return Flow(sock, synack.seq, isn, port, self.sport, syn=synack, listener=listener)


def conn_of(peer, flow):
    """The stack's :class:`~lwstack.proto.tcp.connection.TcpConnection` for ``flow`` (None
    once the table forgot it)."""
    return peer.table.connections.get((peer.stack_ip, flow.stack_port, peer.ip, flow.peer_port))


def state_of(peer, flow):
    """The RFC 9293 state name of ``flow``'s connection on the stack (``"CLOSED"`` once the
    table forgot it)."""
    conn = conn_of(peer, flow)
    return "CLOSED" if conn is None else conn.state


__all__ = ["ANY", "Arrival", "Flow", "TcpPeer", "assert_segment", "conn_of", "cross_check",
           "flags_of", "state_of"]


def reno_flow(peer, mss, isn, port=80):
    """The classic loss-recovery setting (RFC 5681, RFC 6582): a passive flow with no SACK and
    no window scaling, Reno congestion control, the stack sending ``mss``-byte segments."""
    import socket as std
    flow = peer.handshake_passive(port=port, isn=isn, mss=mss, wscale=-1, sack_permitted=False)
    flow.sock.setsockopt(std.IPPROTO_TCP, std.TCP_CONGESTION, b"reno")
    return flow


def data_seq(flow, n, mss):
    """The wire sequence number of the stack's ``n``-th data segment (0-based)."""
    return flow.stack_nxt + n * mss
