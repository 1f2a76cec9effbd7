"""The host: one Ethernet interface with its IPv4 and IPv6 addresses, the sans-IO heart of a
stack.  The IPv6 half lives in :mod:`lwstack.iface.host6` (a mixin of :class:`Host`).

Design note.  ``Host`` turns frames into deliveries and API calls into frames, and nothing
else: it never touches a socket, a thread or the clock.

- Input: :meth:`Host.receive` (one frame, at time ``now``) and :meth:`Host.poll` (timers).
- Output: frames appended to :attr:`Host.outbox`; the runtime drains it after each call.
- Timers: :meth:`Host.poll_at` says when :meth:`poll` next has work (None: never).
- Application events: endpoints call their ``on_change`` hook when they become readable.

Malformed or unwanted input is counted in :attr:`Host.stats` under ``drop.<reason>`` and
dropped; no exception escapes :meth:`receive`.  Misuse through the API (sending to an
unreachable network, an oversized datagram, binding a used port) raises ``OSError`` with the
errno Linux would give, for the socket facade to pass on.

Loopback.  Every stack has what Linux's ``lo`` gives: 127.0.0.0/8 (each of its addresses is
local, and 127.0.0.1 is the source for any of them, as Linux's ``local 127.0.0.0/8 ... src
127.0.0.1`` route says) and ``::1`` (:mod:`lwstack.iface.host6`).  Packets to those and to
our own interface addresses go through :attr:`loopback` (a bounded deque, LOOPBACK_LIMIT
packets, drops counted in ``drop.loopback_full``) and come back in on the next :meth:`poll`,
the way Linux routes them through ``lo``; nothing looped back is ever a frame.  The rules
(RFC 1122 3.2.1.3(g): 127/8 "MUST NOT appear outside a host"; RFC 4291 2.5.3 for ``::1``):

- from the wire, a loopback source or destination is a martian, counted and dropped
  (``drop.ipv4_martian_source`` / ``_destination``, ``drop.ipv6_martian_*``); what
  :meth:`receive` gets is checked (``offset`` HEADER_LEN), what :meth:`poll` loops back (and
  what is reassembled from checked fragments, ``offset`` 0) is not;
- ARP never answers or learns from a packet naming a 127/8 address (``drop.arp_loopback``,
  as Linux's arp_process), neighbour discovery never answers for ``::1``;
- a packet with a loopback source never leaves: a socket bound to 127.x that sends to another
  host gets EINVAL as on Linux (``__mkroute_output``: UDP and ICMP at ``sendto``/``connect``;
  TCP's SYN is refused locally and its connect fails with EINVAL after the next poll, since
  the TCP table routes by destination only).  IPv6 differs on Linux: a socket bound to ``::1``
  may send to another host and Linux does put the packet on the wire (the peer drops it, as
  RFC 4291 2.5.3 asks); we drop it before the wire instead, counted in
  ``drop.loopback_source_off_host``, so the socket sees what a Linux socket sees (the send
  succeeds, a TCP connect times out);
- the fast paths (:meth:`link_header`, ``_link_header6``) never give a header for a loopback
  destination, so TCP's cached-frame path takes :meth:`_send_ipv4` / ``_send_ipv6`` like a
  connection to our own address;
- MTU: a datagram to a local destination is not fragmented below LOOPBACK_MTU (65536, Linux's
  ``lo``); TCP's MSS stays the interface's (the table takes the link MTU for every peer);
- :meth:`unspecified_destination`: where a connect to 0.0.0.0 or ``::`` goes (Linux's rules).

Services.  Sans-IO protocol engines that speak UDP without a socket (DHCP clients and
servers, the DNS resolver and server) plug in with :meth:`Host.add_service`.  A service has

- ``udp_ports``: the local UDP ports whose datagrams it takes (before any socket);
- ``receive_udp(src, src_port, dst, dst_port, payload, now)``;
- ``poll(now)`` and ``poll_at()`` (None: nothing scheduled), like the host's own;
- ``outbox``: a list the host drains after every call into the service.  Records the host
  performs itself: ``("udp", src, dst, src_port, dst_port, payload[, link_dst])`` (``src``
  None: the host picks it, 0.0.0.0 while it has no address; ``dst`` 255.255.255.255 is a
  link broadcast; ``link_dst`` a MAC to send to without ARP, RFC 2131 section 4.1),
  ``("probe", addr)`` and ``("announce", addr)`` (RFC 5227 ARP probe and announcement; while
  an address is being probed, ARP traffic claiming it calls ``service.conflict(addr, now)``).
  Any other record (a lease bound, a TCP query to make, ...) goes to the service owner's
  :attr:`Host.on_service_event` ``(service, record, now)``.

Whoever calls into a service from outside the host (starting it, asking it something)
calls :meth:`Host.drain_service` afterwards.

IPv6 "udp" records work the same way with 16-byte addresses: ``src`` None is our link-local
address for a link-local or multicast ``dst`` (DHCPv6), else the RFC 6724 choice; a multicast
``dst`` goes to its 33:33 MAC with hop limit 1.

Router side (for lwrouter).  A stack becomes its link's IPv6 router and DHCPv6 server with
:meth:`Host.start_router` and :meth:`Host.start_dhcp6_server` (under the driver's lock, then
``driver.after_call()``)::

    from lwstack.proto.ra_server import RaPrefix, RaServer, RouterConfig
    from lwstack.proto.dhcp6_server import Dhcp6Server
    from lwstack.wire.dhcp6 import duid_ll
    with stack.driver.lock:
        now = stack.driver.now()
        stack.host.start_router(RaServer(RouterConfig(
            prefixes=[RaPrefix(fd00_prefix)], dns_servers=[fd00_1], domains=["lan"],
            managed=True)), now)
        stack.host.start_dhcp6_server(Dhcp6Server(duid_ll(stack.host.mac),
                                                  pool=(first, last), dns_servers=[...]), now)
        stack.driver.after_call()

- ``start_router(server, now)``: joins ff02::2, answers Router Solicitations, sends RAs from
  the link-local address (the first once it passed DAD) with our MAC as SLLA, sets the R
  flag in our NAs and ignores other routers' RAs.  ``stop_router(now)`` sends the final RA
  (router lifetime 0); :meth:`lwstack.Stack.close` does it too (:meth:`Host.stop_ipv6`).
- ``start_dhcp6_server(server, now)``: joins ff02::1:2 and runs the server on UDP port 547
  as a service (a request not sent to ff02::1:2 is passed as unicast, RFC 8415 18.4);
  returns the service, for :meth:`remove_service` and :meth:`leave_group`.
- The host does not forward packets: a router that should not be the default route
  advertises ``router_lifetime=0``; the configuration's ``ip=`` address gives the on-link
  prefix.  The DHCPv4 server is a service like the others (see above).

TCP's view (:class:`lwstack.proto.tcp.table.TcpTable` gets these at construction).  Every
callback takes 4-byte (IPv4) or 16-byte (IPv6) addresses and dispatches on the length:

- ``route(dst) -> (source, next_hop)``: for IPv6 the source is chosen by RFC 6724 section 5
  (:mod:`lwstack.iface.addrselect`) among the usable addresses, the next hop by neighbour
  discovery; ENETUNREACH without a route, EADDRNOTAVAIL with a route but no usable source
  (every address still in DAD).
- ``is_local(addr)``: one of our usable addresses (tentative IPv6 addresses are not).
- ``link_header(src, dst, protocol, now) -> (header, valid_until)`` or None: for IPv6, 54
  bytes = Ethernet (14, EtherType 0x86DD) + an IPv6 header (40) with payload length 0 and
  the hop limit to use, while the next hop is REACHABLE (RFC 4861 7.3); the builder patches
  the payload length at offset 14 + 4 (no IP checksum in IPv6).
- ``send_tcp(src, dst, segment, now)``: IPv6 segments are never fragmented: a segment over the
  path MTU raises EMSGSIZE (TCP counts it as unroutable); neighbour resolution queues it.
- ICMP errors quoting a TCP segment reach ``tcp.icmp_error(src, dst, transport, errno, hard,
  now)`` for both families: IPv6 destination unreachable codes 1, 4, 5, 6 and parameter
  problems are hard (Linux's icmpv6_err_convert), Packet Too Big is soft with EMSGSIZE after
  the path MTU cache learnt it (IPv4 Fragmentation Needed likewise).  TCP then reads the new
  value with :meth:`Host.path_mtu` ``(dst, now)`` (the link MTU when nothing was learnt;
  IPv6's link MTU is :attr:`Host.mtu6`, which an RA's MTU option may lower).
"""
import collections
import errno
import os
import random

from lwstack.iface.arp import NeighbourCache
from lwstack.iface.config import parse_config, random_mac
from lwstack.iface.host6 import ANY6, LOOPBACK6, Ipv6Host
from lwstack.iface.routes import Route, RouteTable
from lwstack.proto.datagram import ANY, DatagramEndpoint, PortTable
from lwstack.proto.icmp import TokenBucket
from lwstack.proto.tcp.table import TcpTable
from lwstack.storage.fragments import fragment_v4
from lwstack.wire import WireError
from lwstack.wire import arp as arpwire
from lwstack.wire import icmpv4
from lwstack.wire.ethernet import (BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, HEADER_LEN,
                                   build_ethernet, parse_ethernet)
from lwstack.wire.ipv4 import (DEFAULT_TTL, FLAG_DF, FLAG_MF, OFFSET_MASK, PROTO_ICMP, PROTO_TCP,
                               PROTO_UDP, build_ipv4, ipv4_template, parse_ipv4)
from lwstack.wire.ipv6 import ETHERTYPE_IPV6
from lwstack.wire.udp import HEADER_LEN as UDP_HEADER_LEN, build_udp, parse_udp

LIMITED_BROADCAST = b"\xff\xff\xff\xff"
#: The largest UDP payload one IPv4 datagram carries (65535 - 20 - 8).
MAX_UDP4_PAYLOAD = 0xFFFF - 20 - UDP_HEADER_LEN
#: Packets to our own addresses waiting for the next poll (Linux's backlog is 1000 too).
LOOPBACK_LIMIT = 1000
#: 127.0.0.1, the source of every packet to 127.0.0.0/8 (Linux's lo route's ``src``).
LOOPBACK4 = b"\x7f\0\0\1"
#: The MTU of loopback traffic (Linux's ``lo``): datagrams to local destinations up to this
#: size are not fragmented.
LOOPBACK_MTU = 65536
#: ICMP errors turned into socket errors on connected sockets (RFC 1122 section 4.1.3.3).
_UNREACH_ERRNO = {
    icmpv4.CODE_NET_UNREACHABLE: errno.ENETUNREACH,
    icmpv4.CODE_HOST_UNREACHABLE: errno.EHOSTUNREACH,
    icmpv4.CODE_PROTOCOL_UNREACHABLE: errno.ENOPROTOOPT,
    icmpv4.CODE_PORT_UNREACHABLE: errno.ECONNREFUSED,
    icmpv4.CODE_FRAGMENTATION_NEEDED: errno.EMSGSIZE,
}


def _fail(code, detail=None):
    """An ``OSError`` with the errno and message Linux would give."""
    message = os.strerror(code) + (f": {detail}" if detail else "")
    return OSError(code, message)


class Host(Ipv6Host):
    """The sans-IO stack for one Ethernet interface (see the module docstring)."""

    def __init__(self, config, now, *, rng=None, arp_options=None, icmp_rate=1000.0,
                 icmp_burst=50, default_ttl=DEFAULT_TTL, tcp_options=None):
        if isinstance(config, str) or config is None:
            config = parse_config(config)
        self.rng = rng if rng is not None else random.Random()
        self.mac = config.mac or random_mac(self.rng)
        self.mtu = config.mtu
        self.default_ttl = default_ttl
        self.interfaces = []
        self._local_addresses = frozenset()
        self._broadcast_addresses = frozenset([LIMITED_BROADCAST])
        self.routes = RouteTable()
        self.arp = NeighbourCache(**(arp_options or {}))
        self.udp = PortTable(self.rng)
        self.echo = PortTable(self.rng, low=1, high=0xFFFF)
        self.icmp_limiter = TokenBucket(icmp_rate, icmp_burst)
        self.outbox = []
        self.loopback = collections.deque()
        self.stats = collections.Counter()
        self._ident = self.rng.randrange(0x10000)
        self.services = []
        self.on_service_event = None
        #: Name servers and search domains by where they came from ("static", "dhcp4",
        #: "dhcp6", "ra"): ``{source: (servers, domains)}``; see :meth:`set_name_servers`.
        self.name_servers = {}
        self.on_name_servers_change = None
        self._probing = {}              # RFC 5227: address being probed -> its service
        self.tcp = TcpTable(self._send_tcp, self.route, self.is_local, self.rng, mtu=self.mtu,
                            link_header=self.link_header, emit_frame=self._emit_frame,
                            path_mtu=self.path_mtu, **(tcp_options or {}))
        for interface in config.addresses:
            self.add_address(interface, now)
        if config.gateway is not None:
            self.set_gateway(config.gateway)
        self._init_ipv6(config, now, icmp_rate, icmp_burst)

    # -- configuration ---------------------------------------------------------------------

    def add_address(self, interface, now, announce=True):
        """Add an IPv4 address with its connected route, and announce it (gratuitous ARP;
        ``announce`` False when the caller announces it itself, e.g. a DHCP client)."""
        if interface in self.interfaces:
            return
        self.interfaces.append(interface)
        self._addresses_changed()
        self._add_connected_route(interface)
        if announce:
            # RFC 5227 section 3: announce with an ARP request whose sender and target are ours.
            self._emit_arp(arpwire.OP_REQUEST, BROADCAST, interface.address, b"\0" * 6,
                           interface.address)

    # -- IPv4 configuration from DHCP (lwstack.iface.autoconf) --------------------------------

    def remove_address(self, interface, now):
        """Remove an IPv4 address (a lease that ended), with the routes that used it as their
        source.  As on Linux, nothing is reset: TCP connections bound to the address can no
        longer send (their segments are unroutable) and time out; datagram sockets bound to
        it get EINVAL on send; sockets bound to 0.0.0.0 pick another source."""
        if interface not in self.interfaces:
            return
        self.interfaces.remove(interface)
        self._addresses_changed()
        address = interface.address
        for route in [r for r in self.routes.routes if r.source == address]:
            self.remove_route(route)
        for other in self.interfaces:               # a subnet shared with another address
            self._add_connected_route(other)
        for conn in self.tcp.connections.values():
            if conn.local_addr == address:
                conn._link_valid_until = float("-inf")    # drop the cached frame header

    def _add_connected_route(self, interface):
        """The route to the subnet of ``interface``, unless another address of the same
        subnet has it already (the first address stays the subnet's source)."""
        network = interface.network
        if not any(r.network == network and r.prefix_len == interface.prefix_len
                   and r.gateway is None for r in self.routes.routes):
            self.routes.add(Route(network.to_bytes(4, "big"), interface.prefix_len,
                                  source=interface.address))

    def add_route(self, route):
        """Install ``route`` (a :class:`Route`), replacing one for the same prefix."""
        self.routes.add(route)

    def remove_route(self, route):
        """Remove ``route`` if it is still the table's route for its prefix; True if it was."""
        if not any(r is route for r in self.routes.routes):
            return False
        self.routes.remove(route.network.to_bytes(4, "big"), route.prefix_len)
        return True

    def set_mtu(self, mtu):
        """Change the interface MTU (a DHCP option 26, or its end); new TCP connections
        announce the MSS that follows from it."""
        self.mtu = mtu
        self.tcp.mtu = mtu

    def _addresses_changed(self):
        self._local_addresses = frozenset(i.address for i in self.interfaces)
        self._broadcast_addresses = frozenset(
            [LIMITED_BROADCAST] + [i.broadcast for i in self.interfaces])

    def set_gateway(self, gateway):
        """Install the default route through ``gateway`` (4 bytes)."""
        route, _ = self.routes.lookup(gateway)
        if route is None or route.gateway is not None:
            raise ValueError("the gateway must be on a connected subnet")
        self.routes.add(Route(ANY, 0, gateway=gateway, source=route.source))

    def is_local(self, addr):
        """True if ``addr`` (4 or 16 bytes) is one of our (usable) addresses, loopback ones
        (127.0.0.0/8, ``::1``) included."""
        if addr in self._local_addresses or addr in self._local6:
            return True
        return addr[0] == 127 if len(addr) == 4 else addr == LOOPBACK6

    def unspecified_destination(self, addr, local_addr):
        """Where a ``connect`` to ``addr`` goes when it is 0.0.0.0 or ``::`` (anything else is
        returned as it is), for a socket bound to ``local_addr``, as Linux does it:

        - 0.0.0.0: the bound address, else 127.0.0.1 (``ip_route_output_key_hash_rcu`` makes a
          missing destination the source, or loopback);
        - ``::``: ``::1``, or 127.0.0.1 (4 bytes) for a socket bound to an IPv4(-mapped)
          address (``ip6_datagram_connect``, ``tcp_v6_connect``).
        """
        if addr == ANY:
            return local_addr if len(local_addr) == 4 and local_addr != ANY else LOOPBACK4
        if addr == ANY6:
            return LOOPBACK4 if len(local_addr) == 4 and local_addr != ANY else LOOPBACK6
        return addr

    def _loopback_source_refused(self, bound, dst):
        """EINVAL for a socket bound to 127.x sending to ``dst`` off this host (Linux's
        ``__mkroute_output``: a loopback source only leaves through ``lo``)."""
        if len(bound) == 4 and bound[0] == 127 and not self.is_local(dst):
            raise _fail(errno.EINVAL, "a loopback source cannot reach another host")

    def _is_broadcast(self, addr):
        return addr in self._broadcast_addresses

    # -- input -----------------------------------------------------------------------------

    def receive(self, frame, now):
        """Process one Ethernet frame.  Never raises for bad input: drops are counted."""
        self.stats["rx_frames"] += 1
        try:
            dst, src, ethertype = parse_ethernet(frame)
            if dst != self.mac and dst != BROADCAST and dst not in self._mcast_macs:
                self._drop("not_our_mac")
                return
            if src == self.mac:
                self._drop("own_source_mac")
                return
            if ethertype == ETHERTYPE_IPV4:
                self._ipv4_in(frame, HEADER_LEN, dst == BROADCAST, now)
            elif ethertype == ETHERTYPE_ARP:
                self._arp_in(arpwire.ArpPacket.parse(frame, HEADER_LEN), now)
            elif ethertype == ETHERTYPE_IPV6:
                self._ipv6_in(frame, HEADER_LEN, dst[0] & 1, now)
            else:
                self._drop("unknown_ethertype")
        except WireError as exc:
            self._drop(exc.reason)

    def _drop(self, reason):
        self.stats["drop." + reason] += 1

    def _arp_in(self, packet, now):
        if packet.sender_mac == self.mac:
            self._drop("arp_own")
            return
        if packet.target_ip[0] == 127 or packet.sender_ip[0] == 127:
            # RFC 1122 3.2.1.3(g): 127/8 never appears on a link; Linux's arp_process drops
            # loopback targets (and its route check loopback senders).
            self._drop("arp_loopback")
            return
        if self._probing:
            self._check_probe_conflict(packet, now)
        if self.is_local(packet.sender_ip):
            self._drop("arp_address_conflict")  # someone else claims our address
            return
        for_us = self.is_local(packet.target_ip)
        # An RFC 5227 probe (sender 0.0.0.0) is answered but teaches us no neighbour.
        if packet.sender_ip != ANY:
            waiting = self.arp.confirm(packet.sender_ip, packet.sender_mac, now, create=for_us)
            for ip_packet in waiting:
                self._emit_ipv4_frame(packet.sender_mac, ip_packet)
        if for_us and packet.operation == arpwire.OP_REQUEST:
            self._emit_arp(arpwire.OP_REPLY, packet.sender_mac, packet.target_ip,
                           packet.sender_mac, packet.sender_ip)

    def _ipv4_in(self, packet, offset, link_broadcast, now):
        """One IPv4 packet at ``packet[offset:]``: ``offset`` is HEADER_LEN for a frame from
        the wire, 0 for a packet already inside the host (looped back, or reassembled from
        fragments that were checked one by one): 127/8 is refused in the former only."""
        header = parse_ipv4(packet, offset)
        dst = header.dst
        if dst in self._local_addresses:
            broadcast = False
        elif dst in self._broadcast_addresses:
            broadcast = True
        elif dst[0] == 127 and not offset:
            broadcast = False                      # looped back: 127.0.0.0/8 is all ours
        else:
            # RFC 1122 3.2.1.3(g): a 127/8 destination from the wire is a martian.
            self._drop("ipv4_martian_destination" if dst[0] == 127 else "ipv4_not_for_us")
            return
        if link_broadcast and not broadcast:
            self._drop("ipv4_unicast_in_link_broadcast")  # RFC 1122 section 3.3.6
            return
        src = header.src
        first = src[0]
        # (The limited broadcast is among the broadcast addresses; 127/8 only from loopback.)
        if first >= 224 or src in self._broadcast_addresses or (first == 127 and offset):
            self._drop("ipv4_martian_source")
            return
        if header.is_fragment:
            self._ipv4_fragment(header, packet, offset, link_broadcast, now)
            return
        start = offset + header.header_len
        if header.protocol == PROTO_TCP:
            if broadcast:
                self._drop("tcp_broadcast")   # RFC 1122 section 4.2.3.10
                return
            self.tcp.receive(header.src, header.dst,
                             memoryview(packet)[start:offset + header.total_len], now)
        elif header.protocol == PROTO_UDP:
            payload = packet[start:offset + header.total_len]
            self._udp_in(header, payload, broadcast, packet[offset:offset + header.total_len], now)
        elif header.protocol == PROTO_ICMP:
            end = offset + header.total_len
            if end > start and packet[start] == icmpv4.TYPE_ECHO_REQUEST and not broadcast:
                self._answer_echo(header, packet[start:end], now)
            else:
                self._icmp_in(header, packet[start:end], broadcast, now)
        else:
            self._drop("ipv4_unknown_protocol")
            if not broadcast:
                self._send_icmp_error(icmpv4.TYPE_DEST_UNREACHABLE,
                                      icmpv4.CODE_PROTOCOL_UNREACHABLE,
                                      packet[offset:offset + header.total_len], header, now)

    def _udp_in(self, header, segment, broadcast, datagram, now):
        src_port, dst_port, payload = parse_udp(segment, header.src, header.dst)
        if self.services:
            for service in self.services:
                if dst_port in service.udp_ports:
                    service.receive_udp(header.src, src_port, header.dst, dst_port, payload, now)
                    self.drain_service(service, now)
                    return
        if broadcast:
            receivers = [e for e in self.udp.all_on_port(dst_port)
                         if e.local_addr in (ANY, header.dst) or
                         (e.dual and e.local_addr == ANY6)]
        else:
            endpoint = self.udp.lookup(header.dst, dst_port)
            receivers = [endpoint] if endpoint is not None else []
        delivered = False
        for endpoint in receivers:
            if endpoint.remote is not None and endpoint.remote != (header.src, src_port):
                continue
            delivered = True
            if not endpoint.deliver(payload, (header.src, src_port), header.ttl):
                self._drop("udp_rcvbuf_full")
        if not delivered:
            self._drop("udp_no_listener")
            if not broadcast:  # RFC 1122 section 4.1.3.1: no errors for broadcasts
                self._send_icmp_error(icmpv4.TYPE_DEST_UNREACHABLE,
                                      icmpv4.CODE_PORT_UNREACHABLE, datagram, header, now)

    def _answer_echo(self, header, request, now):
        """Answer a unicast echo request.  While the requester's next hop is REACHABLE the
        whole reply frame is built in one buffer (compiled); otherwise the reply takes the
        general path (loopback, ARP resolution, ...)."""
        link = self.link_header(header.dst, header.src, PROTO_ICMP, now)
        if link is None or 20 + len(request) > self.mtu:
            _type, _code, rest, body = icmpv4.parse_icmpv4(request)
            reply = icmpv4.build_echo(icmpv4.TYPE_ECHO_REPLY, rest >> 16, rest & 0xFFFF, body)
            try:
                self._send_ipv4(header.dst, header.src, PROTO_ICMP, reply, self.default_ttl, now,
                                fragment=True)
            except OSError as exc:  # no route back
                self._drop("icmp_echo_too_big" if exc.errno == errno.EMSGSIZE
                           else "icmp_echo_unroutable")
                return
        else:
            self._ident = ident = (self._ident + 1) & 0xFFFF
            self._emit_frame(icmpv4.build_echo_reply_frame(link[0], ident, request))
        self.stats["icmp_echo_replied"] += 1

    def _icmp_in(self, header, message, broadcast, now):
        icmp_type, code, rest, body = icmpv4.parse_icmpv4(message)
        if icmp_type == icmpv4.TYPE_ECHO_REQUEST:
            # Unicast requests take _answer_echo; broadcast ones are ignored like Linux's
            # icmp_echo_ignore_broadcasts=1.
            self._drop("icmp_echo_broadcast")
        elif icmp_type == icmpv4.TYPE_ECHO_REPLY:
            endpoint = self.echo.lookup(header.dst, rest >> 16)
            if endpoint is None or (endpoint.remote and endpoint.remote[0] != header.src):
                self._drop("icmp_echo_reply_unmatched")
                return
            # Linux ping sockets report the peer with port 0.
            if not endpoint.deliver(message, (header.src, 0), header.ttl):
                self._drop("icmp_rcvbuf_full")
        elif icmp_type in (icmpv4.TYPE_DEST_UNREACHABLE, icmpv4.TYPE_TIME_EXCEEDED):
            self._icmp_error_in(icmp_type, code, body, now, rest)
        else:
            self._drop("icmp_unhandled_type")

    def _icmp_error_in(self, icmp_type, code, quoted, now, rest=0):
        """Hand an ICMP error to the socket whose datagram it quotes (RFC 1122 3.2.2); a
        Fragmentation Needed also teaches the path MTU (RFC 1191: next-hop MTU in ``rest``)."""
        try:
            inner = parse_ipv4_quoted(quoted)
        except WireError:
            self._drop("icmp_bad_quote")
            return
        src, dst, protocol, transport = inner
        if icmp_type == icmpv4.TYPE_DEST_UNREACHABLE and \
                code == icmpv4.CODE_FRAGMENTATION_NEEDED and src in self._local_addresses:
            if self.pmtu.learn(dst, rest & 0xFFFF, now, link_mtu=self.mtu):
                self.stats["pmtu_learnt"] += 1
            self._due6_stale = True
        if icmp_type == icmpv4.TYPE_DEST_UNREACHABLE:
            error = _UNREACH_ERRNO.get(code, errno.EHOSTUNREACH)
        else:
            error = errno.EHOSTUNREACH
        if protocol == PROTO_UDP and len(transport) >= 4:
            sport = (transport[0] << 8) | transport[1]
            dport = (transport[2] << 8) | transport[3]
            endpoint = self.udp.lookup(src, sport)
            # Linux reports ICMP errors only on connected UDP sockets (without IP_RECVERR).
            if endpoint is not None and endpoint.remote == (dst, dport):
                endpoint.set_error(error)
                self.stats["icmp_error_delivered"] += 1
                return
        elif protocol == PROTO_TCP:
            hard = icmp_type == icmpv4.TYPE_DEST_UNREACHABLE and \
                code != icmpv4.CODE_FRAGMENTATION_NEEDED
            if self.tcp.icmp_error(src, dst, transport, error, hard, now):
                self.stats["icmp_error_delivered"] += 1
                return
        elif protocol == PROTO_ICMP and len(transport) >= 8 and \
                transport[0] == icmpv4.TYPE_ECHO_REQUEST:
            endpoint = self.echo.lookup(src, (transport[4] << 8) | transport[5])
            if endpoint is not None:
                endpoint.set_error(error)
                self.stats["icmp_error_delivered"] += 1
                return
        self._drop("icmp_error_unmatched")

    # -- timers ----------------------------------------------------------------------------

    def poll(self, now):
        """Run what is due at ``now``: looped-back packets, TCP's batch flush and timers,
        ARP retries and expiry."""
        while self.loopback:
            packet = self.loopback.popleft()
            if type(packet) is tuple:
                # A TCP segment with a loopback source refused on its way out (_send_tcp):
                # its connection fails as Linux's connect does, with EINVAL.
                self.tcp.icmp_error(*packet, errno.EINVAL, True, now)
                continue
            try:
                if packet[0] >> 4 == 6:
                    self._ipv6_in(packet, 0, False, now)
                else:
                    self._ipv4_in(packet, 0, False, now)
            except WireError as exc:
                self._drop(exc.reason)
        requests, failed = self.arp.poll(now)
        for target_ip, target_mac in requests:
            self._send_arp_request(target_ip, target_mac)
        for packet in failed:
            # Linux reports a failed resolution to the sender as host unreachable
            # (ip_link_failure); we do the same, locally.
            self.stats["arp_failed_packets"] += 1
            self._icmp_error_in(icmpv4.TYPE_DEST_UNREACHABLE, icmpv4.CODE_HOST_UNREACHABLE,
                                packet, now)
        self.tcp.poll(now)
        for service in self.services:
            due = service.poll_at()
            if due is not None and due <= now:
                service.poll(now)
                self.drain_service(service, now)
        due = self._due6 if not self._due6_stale else self._poll_at6()
        if due is not None and due <= now:
            self._poll6(now)

    def poll_at(self):
        """When :meth:`poll` next has work: a time, or None for "nothing scheduled"."""
        if self.loopback:
            return float("-inf")
        arp = self.arp.poll_at()
        tcp = self.tcp.poll_at()
        due = arp if tcp is None or (arp is not None and arp < tcp) else tcp
        for service in self.services:
            when = service.poll_at()
            if when is not None and (due is None or when < due):
                due = when
        when = self._due6 if not self._due6_stale else self._poll_at6()
        if when is not None and (due is None or when < due):
            due = when
        return due

    # -- names ---------------------------------------------------------------------------------

    def set_name_servers(self, source, servers, domains=()):
        """Record the name servers (4- or 16-byte addresses) and search domains that
        ``source`` ("static", "dhcp4", "dhcp6", "ra") gives; empty lists forget them.  The
        resolver hears of every change through :attr:`on_name_servers_change`."""
        entry = (tuple(servers), tuple(domains))
        if self.name_servers.get(source, ((), ())) == entry:
            return
        if entry == ((), ()):
            self.name_servers.pop(source, None)
        else:
            self.name_servers[source] = entry
        if self.on_name_servers_change is not None:
            self.on_name_servers_change()

    def all_name_servers(self):
        """``(servers, domains)`` from every source, static first, without repeats."""
        servers, domains = [], []
        for source in ("static", "dhcp4", "dhcp6", "ra"):
            got_servers, got_domains = self.name_servers.get(source, ((), ()))
            servers += [s for s in got_servers if s not in servers]
            domains += [d for d in got_domains if d not in domains]
        return servers, domains

    # -- services (see the module notes) ---------------------------------------------------------

    def add_service(self, service, now):
        """Plug in a sans-IO service; sends whatever it already has to say."""
        if service in self.services:
            raise ValueError("this service is already running on the host")
        self.services.append(service)
        self.drain_service(service, now)

    def remove_service(self, service):
        """Unplug ``service`` (its output should have been drained)."""
        if service in self.services:
            self.services.remove(service)
        for addr in [a for a, s in self._probing.items() if s is service]:
            del self._probing[addr]

    def drain_service(self, service, now):
        """Perform the records in ``service.outbox``: datagrams and ARP probes go out, other
        records go to :attr:`on_service_event`."""
        outbox = service.outbox
        while outbox:
            record = outbox.pop(0)
            kind = record[0]
            if kind == "udp":
                self._service_udp(record, now)
            elif kind == "probe":
                self._probing[record[1]] = service
                # RFC 5227 section 2.1.1: sender IP 0.0.0.0, target the address, broadcast.
                self._emit_arp(arpwire.OP_REQUEST, BROADCAST, ANY, b"\0" * 6, record[1])
            elif kind == "announce":
                self._probing.pop(record[1], None)
                self._emit_arp(arpwire.OP_REQUEST, BROADCAST, record[1], b"\0" * 6, record[1])
            elif self.on_service_event is not None:
                self.on_service_event(service, record, now)
            else:
                self.stats["service_event_unhandled"] += 1

    def _service_udp(self, record, now):
        _, src, dst, src_port, dst_port, payload = record[:6]
        link_dst = record[6] if len(record) > 6 else None
        if len(dst) == 16:
            self._service_udp6(src, dst, src_port, dst_port, payload, now)
            return
        if src is None:
            if dst == LIMITED_BROADCAST or not self.interfaces:
                src = self.interfaces[0].address if self.interfaces else ANY
            else:
                try:
                    src, _ = self.route(dst)
                except OSError:
                    self._drop("service_unroutable")
                    return
        segment = build_udp(src, dst, src_port, dst_port, payload)
        if link_dst is not None or dst == LIMITED_BROADCAST:
            self._ident = (self._ident + 1) & 0xFFFF
            packet = build_ipv4(src, dst, PROTO_UDP, segment, ttl=self.default_ttl,
                                ident=self._ident, flags_fragment=FLAG_DF)
            self._emit_ipv4_frame(link_dst or BROADCAST, packet)
            return
        try:
            self._send_ipv4(src, dst, PROTO_UDP, segment, self.default_ttl, now)
        except OSError:
            self._drop("service_unroutable")

    def _check_probe_conflict(self, packet, now):
        """RFC 5227 section 2.1.1: while probing an address, any ARP packet whose sender IP
        is that address, or another host's probe for it, is a conflict."""
        for addr in (packet.sender_ip, packet.target_ip):
            service = self._probing.get(addr)
            if service is None:
                continue
            if addr == packet.sender_ip or (packet.sender_ip == ANY and
                                            packet.operation == arpwire.OP_REQUEST):
                del self._probing[addr]
                self.stats["arp_probe_conflict"] += 1
                service.conflict(addr, now)
                self.drain_service(service, now)
                return

    # -- output ----------------------------------------------------------------------------

    def route(self, dst):
        """Return ``(source_address, next_hop)`` for ``dst`` (4 or 16 bytes);
        ``OSError(ENETUNREACH)`` if there is no route (IPv6: EADDRNOTAVAIL when there is one
        but no usable source address yet, e.g. during DAD).  The IPv6 source is chosen by
        RFC 6724."""
        if len(dst) == 16:
            return self._route6(dst)
        if dst == LIMITED_BROADCAST:
            if not self.interfaces:
                raise _fail(errno.ENETUNREACH)
            return self.interfaces[0].address, dst
        if dst in self._local_addresses:
            return dst, dst
        if dst[0] == 127:
            return LOOPBACK4, dst        # Linux: local 127.0.0.0/8 dev lo src 127.0.0.1
        route, next_hop = self.routes.lookup(dst)
        if route is None:
            raise _fail(errno.ENETUNREACH)
        return route.source, next_hop

    def _send_ipv4(self, src, dst, protocol, payload, ttl, now, fragment=False):
        """Send one IPv4 datagram.  With ``fragment`` (UDP, ICMP) it goes as Linux sends a
        socket's datagram under its default PMTU discovery (IP_PMTUDISC_WANT): DF set when
        it fits the path MTU (unless the path reported a tiny MTU, see
        :mod:`lwstack.iface.pmtu`), fragmented locally without DF when it does not.  Without
        ``fragment`` (TCP) it always has DF, and EMSGSIZE when too big."""
        self._ident = (self._ident + 1) & 0xFFFF
        mtu = self.pmtu.mtu_for(dst, self.mtu, now) if len(self.pmtu) else self.mtu
        if 20 + len(payload) > mtu and ((dst not in self._local_addresses and dst[0] != 127)
                                        or 20 + len(payload) > LOOPBACK_MTU):
            if not fragment:
                raise _fail(errno.EMSGSIZE, f"{20 + len(payload)} bytes > path MTU {mtu}")
            self.route(dst)                   # unroutable: fail before sending anything
            self.stats["ipv4_fragmented"] += 1
            for packet in fragment_v4(src, dst, protocol, payload, mtu, ident=self._ident,
                                      ttl=ttl):
                self._output4(packet, dst, now)
                self.stats["ipv4_fragments_sent"] += 1
            return
        flags = FLAG_DF if not fragment or self.pmtu.dont_fragment(dst, now) else 0
        packet = build_ipv4(src, dst, protocol, payload, ttl=ttl, ident=self._ident,
                            flags_fragment=flags)
        self._output4(packet, dst, now)

    def _output4(self, packet, dst, now):
        if dst in self._local_addresses or dst[0] == 127:
            if len(self.loopback) >= LOOPBACK_LIMIT:
                self._drop("loopback_full")
                return
            self.loopback.append(packet)
            return
        if packet[12] == 127:
            # RFC 1122 3.2.1.3(g): never on the wire (sockets were refused EINVAL before).
            self._drop("loopback_source_off_host")
            return
        if self._is_broadcast(dst):
            self._emit_ipv4_frame(BROADCAST, packet)
            return
        _, next_hop = self.route(dst)
        mac, request = self.arp.lookup(next_hop, now)
        if request is not None:
            self._send_arp_request(*request)
        if mac is not None:
            self._emit_ipv4_frame(mac, packet)
            return
        request, dropped = self.arp.enqueue(next_hop, packet, now)
        if request is not None:
            self._send_arp_request(*request)
        if dropped is not None:
            self._drop("arp_queue_full")

    def link_header(self, src, dst, protocol, now):
        """``(header, valid_until)``: the Ethernet and IPv4 headers (34 bytes, IPv4 length, ident
        and checksum left zero) of a unicast packet to ``dst`` whose next hop is REACHABLE, so a
        transport can build whole frames until ``valid_until``; None when the packet must take
        :meth:`_send_ipv4` (loopback, broadcast, a neighbour to resolve or revalidate).

        For a 16-byte ``dst``: the Ethernet header and an IPv6 header (14 + 40 = 54 bytes,
        payload length 0, hop limit the RA's or 64), on the same conditions (None also for
        multicast and while IPv6 is disabled).
        """
        if len(dst) == 16:
            return self._link_header6(src, dst, protocol, now)
        # route() inlined (the per-ping path): local and broadcast destinations excluded,
        # the limited broadcast among them, sources that are no longer ours (a lease ended)
        # or loopback ones (127/8 is not in _local_addresses), and loopback destinations.
        if dst in self._local_addresses or dst in self._broadcast_addresses or \
                src not in self._local_addresses or dst[0] == 127:
            return None
        route, next_hop = self.routes.lookup(dst)
        if route is None:
            return None
        neighbour = self.arp.reachable(next_hop, now)
        if neighbour is None:
            return None
        mac, valid_until = neighbour
        header = mac + self.mac + b"\x08\x00" + ipv4_template(src, dst, protocol,
                                                              self.default_ttl)
        return header, valid_until

    def _emit_frame(self, frame):
        self.outbox.append(frame)
        self.stats["tx_frames"] += 1

    def _send_tcp(self, src, dst, segment, now):
        if len(dst) == 16:
            if src not in self._local6 and src != LOOPBACK6:
                raise _fail(errno.EINVAL, "the source address is gone")  # e.g. a lease ended
            # From ::1 to another host: Linux sends it and the peer drops it (RFC 4291 2.5.3),
            # so the connect times out; _output6 drops it before the wire, same outcome.
            self._send_ipv6(src, dst, PROTO_TCP, segment, self.hop_limit6, now)
            return
        if src not in self._local_addresses:
            if src[0] != 127:
                raise _fail(errno.EINVAL, "the source address is gone")    # a lease ended
            if dst[0] != 127 and dst not in self._local_addresses:
                # A socket bound to 127.x connecting to another host: Linux's connect says
                # EINVAL (__mkroute_output); the table routes by destination only, so the
                # segment is refused here and the error reaches the connection on the next
                # poll (see poll).
                self._drop("loopback_source_off_host")
                if len(self.loopback) < LOOPBACK_LIMIT:
                    self.loopback.append((src, dst, bytes(segment[:8])))
                return
        self._send_ipv4(src, dst, PROTO_TCP, segment, self.default_ttl, now)

    def _emit_ipv4_frame(self, mac, packet):
        self.outbox.append(build_ethernet(mac, self.mac, ETHERTYPE_IPV4, packet))
        self.stats["tx_frames"] += 1

    def _emit_arp(self, operation, eth_dst, sender_ip, target_mac, target_ip):
        packet = arpwire.ArpPacket(operation, self.mac, sender_ip, target_mac, target_ip)
        self.outbox.append(build_ethernet(eth_dst, self.mac, ETHERTYPE_ARP, packet.emit()))
        self.stats["tx_frames"] += 1

    def _send_arp_request(self, target_ip, target_mac):
        source, _ = self.route(target_ip)
        self._emit_arp(arpwire.OP_REQUEST, target_mac or BROADCAST, source, b"\0" * 6,
                       target_ip)

    def _send_icmp_error(self, icmp_type, code, datagram, header, now):
        # RFC 1122 section 3.2.2: never about ICMP errors, fragments or broadcasts.
        if header.protocol == PROTO_ICMP and len(datagram) > header.header_len and \
                datagram[header.header_len] not in (icmpv4.TYPE_ECHO_REQUEST,
                                                    icmpv4.TYPE_ECHO_REPLY):
            return
        if not self.icmp_limiter.take(now):
            self._drop("icmp_rate_limited")
            return
        message = icmpv4.build_error(icmp_type, code, datagram)
        try:
            self._send_ipv4(header.dst, header.src, PROTO_ICMP, message, self.default_ttl, now)
        except OSError:
            self._drop("icmp_error_unroutable")

    # -- IPv4 fragments ----------------------------------------------------------------------

    def _ipv4_fragment(self, header, packet, offset, broadcast, now):
        """Reassemble (RFC 791, RFC 815; bounds and overlap policy in
        :mod:`lwstack.storage.fragments`); the whole datagram then takes the receive path."""
        start = offset + header.header_len
        end = offset + header.total_len
        frag_offset = (header.flags_fragment & OFFSET_MASK) * 8
        # Fragment zero's header and first 8 bytes: the quote of a Time Exceeded.
        context = (bytes(packet[offset:start + 8]), header) if frag_offset == 0 else None
        result = self.fragments.add_v4(header.src, header.dst, header.protocol, header.ident,
                                       frag_offset, bool(header.flags_fragment & FLAG_MF),
                                       packet[start:end], now, header_len=header.header_len,
                                       context=context)
        self._due6_stale = True
        if result is None:
            return
        self.stats["ipv4_reassembled"] += 1
        first = result.first[1]
        whole = build_ipv4(result.src, result.dst, result.protocol, result.payload,
                           ttl=first.ttl, ident=first.ident, flags_fragment=0, tos=first.tos)
        self._ipv4_in(whole, 0, broadcast, now)

    def _reassembly_expired4(self, expired, now):
        quote, header = expired.first
        if self._is_broadcast(header.dst):
            return
        self._send_icmp_error(icmpv4.TYPE_TIME_EXCEEDED, 1, quote, header, now)

    # -- datagram sockets ------------------------------------------------------------------

    def open_endpoint(self, kind, family=4):
        """A new unbound endpoint: ``"udp"`` or ``"icmp"`` (a Linux-style ping socket), of
        ``family`` 4 or 6.

        IPv6 endpoints take 16-byte addresses in :meth:`bind`, :meth:`connect` and
        :meth:`sendto`; an IPv4-mapped one (``::ffff:a.b.c.d``) means IPv4, and the endpoint
        then holds and reports the 4-byte address (see :mod:`lwstack.proto.datagram`).
        """
        if kind not in ("udp", "icmp"):
            raise ValueError(f"unknown endpoint kind {kind!r}")
        if family not in (4, 6):
            raise ValueError(f"unknown family {family!r}")
        return DatagramEndpoint(kind, family=family)

    def _table(self, endpoint):
        return self.udp if endpoint.kind == "udp" else self.echo

    def bind(self, endpoint, addr, port):
        """Bind to ``addr`` (ANY or one of ours) and ``port`` (0: ephemeral)."""
        if endpoint.local_port:
            raise _fail(errno.EINVAL, "already bound")
        if endpoint.family == 6:
            self._bind6(endpoint, addr, port)
            return
        if addr != ANY and not self.is_local(addr) and not self._is_broadcast(addr):
            raise _fail(errno.EADDRNOTAVAIL)
        if self._table(endpoint).bind(endpoint, addr, port) is None:
            raise _fail(errno.EADDRINUSE if port else errno.EAGAIN)

    def connect(self, endpoint, addr, port, now):
        """Set the default destination and filter; binds an ephemeral port if needed."""
        if endpoint.family == 6:
            self._connect6(endpoint, addr, port, now)
            return
        addr = self.unspecified_destination(addr, endpoint.local_addr)
        if self._is_broadcast(addr) and not endpoint.broadcast:
            raise _fail(errno.EACCES)
        source, _ = self.route(addr)
        self._loopback_source_refused(endpoint.local_addr, addr)
        if not endpoint.local_port:
            self.bind(endpoint, ANY, 0)
        if endpoint.local_addr == ANY and not self._is_broadcast(addr):
            # Linux fixes the source address on connect (visible in getsockname).
            table = self._table(endpoint)
            table.unbind(endpoint)
            if table.bind(endpoint, source, endpoint.local_port) is None:
                table.bind(endpoint, ANY, endpoint.local_port)
        endpoint.remote = (addr, port)

    def disconnect(self, endpoint):
        """Forget the default destination (connect to AF_UNSPEC)."""
        endpoint.remote = None

    def sendto(self, endpoint, payload, addr, port, now):
        """Send one datagram; returns its payload length (the stdlib's return value)."""
        if endpoint.closed:
            raise _fail(errno.EBADF)
        if endpoint.family == 6:
            return self._sendto6(endpoint, payload, addr, port, now)
        return self._sendto4(endpoint, payload, addr, port, now)

    def _sendto4(self, endpoint, payload, addr, port, now):
        if self._is_broadcast(addr) and not endpoint.broadcast:
            raise _fail(errno.EACCES)  # SO_BROADCAST is required, as on Linux
        bound = endpoint.local_addr
        if bound != ANY and bound != ANY6 and bound not in self._local_addresses:
            if bound[0] == 127:
                self._loopback_source_refused(bound, addr)
            elif not self._is_broadcast(bound):
                raise _fail(errno.EINVAL)     # bound to an address that went (Linux: EINVAL)
        source, _ = self.route(addr)
        if len(payload) > MAX_UDP4_PAYLOAD:
            raise _fail(errno.EMSGSIZE)
        if not endpoint.local_port:
            if endpoint.family == 6:
                self._bind6(endpoint, ANY6, 0)
            else:
                self.bind(endpoint, ANY, 0)
        local = endpoint.local_addr
        if local != ANY and local != ANY6 and not self._is_broadcast(local):
            source = local
        ttl = endpoint.ttl or self.default_ttl
        if endpoint.kind == "udp":
            segment = build_udp(source, addr, endpoint.local_port, port, payload)
            self._send_ipv4(source, addr, PROTO_UDP, segment, ttl, now, fragment=True)
        else:
            message = self._echo_request(endpoint, payload)
            self._send_ipv4(source, addr, PROTO_ICMP, message, ttl, now, fragment=True)
        return len(payload)

    @staticmethod
    def _echo_request(endpoint, message):
        """Linux ping-socket semantics: the caller writes an echo request; we set the ident."""
        if len(message) < icmpv4.HEADER_LEN or message[0] != icmpv4.TYPE_ECHO_REQUEST \
                or message[1] != 0:
            raise _fail(errno.EINVAL, "an ICMP socket sends echo requests only")
        sequence = (message[6] << 8) | message[7]
        return icmpv4.build_echo(icmpv4.TYPE_ECHO_REQUEST, endpoint.local_port, sequence,
                                 bytes(message[icmpv4.HEADER_LEN:]))

    def close_endpoint(self, endpoint):
        """Release the endpoint's port; queued datagrams are discarded."""
        self._table(endpoint).unbind(endpoint)
        endpoint.closed = True
        endpoint.queue.clear()
        endpoint.queued_bytes = 0


def parse_ipv4_quoted(quoted):
    """Parse the IP header an ICMP error quotes: ``(src, dst, protocol, transport_bytes)``.

    The quote is truncated by design (header + 8 bytes), so only the header is validated.
    """
    if len(quoted) < 20 or quoted[0] >> 4 != 4:
        raise WireError("icmp_bad_quote")
    header_len = (quoted[0] & 0x0F) * 4
    if header_len < 20 or len(quoted) < header_len:
        raise WireError("icmp_bad_quote")
    return (bytes(quoted[12:16]), bytes(quoted[16:20]), quoted[9],
            bytes(quoted[header_len:]))
