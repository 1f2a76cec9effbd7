"""The IPv6 half of the host: addresses, neighbour discovery, ICMPv6, MLD and IPv6 datagrams.

Design note.  :class:`Ipv6Host` is a mixin of :class:`lwstack.iface.host.Host`: one object,
one ``outbox``, one ``stats``, one clock argument; this module holds what only IPv6 needs so
that ``host.py`` stays about the shared parts and the IPv4 paths.  It drives the sans-IO parts
written beside it, in the order their docstrings ask:

- :class:`lwstack.iface.slaac.Slaac` owns the address table: the link-local address, ``ip=``
  addresses, SLAAC addresses (``slaac``) and DHCPv6 ones, every one through DAD.  Its events
  are the only way an address becomes usable here (:meth:`Ipv6Host._slaac_event`).  The
  interface identifiers of the link-local and SLAAC addresses come from the generator
  ``iid=`` names (:meth:`Ipv6Host._make_address`; the default is the ``fqdn`` hashed like
  iothaddr when there is one, else EUI-64): only ``iid=stable`` (RFC 7217) makes a new address
  from the next DAD counter after a duplicate; with the other two a duplicate is final
  (RFC 4862 5.4.5), counted in ``ipv6_dad_final`` and named by :meth:`Ipv6Host.ipv6_pending`.
- :class:`lwstack.iface.ndp.NeighbourDiscovery` does next-hop determination, the neighbour
  cache with NUD, the router and prefix lists; ``gw=`` is a static router and each ``ip=``
  prefix a static on-link prefix.  Router Advertisements count only with ``rd`` (or
  ``slaac``), and never while the host runs a router itself.
- :class:`lwstack.iface.mld.Mld` keeps the groups (the solicited-node group of every address,
  ff02::2 and ff02::1:2 for a router) and sends MLDv2 reports; :attr:`Ipv6Host._mcast_macs`
  is the set of 33:33 MACs the receive path accepts.
- :class:`lwstack.iface.pmtu.PathMtuCache` (shared with IPv4) and
  :class:`lwstack.storage.fragments.FragmentReassembler` (both families).

Receiving: the fixed header is parsed once; TCP, UDP and ICMPv6 right after it take the
short way, anything else walks the extension headers (RFC 8200 4), and a Parameter Problem
from the walk is answered (RFC 4443 2.4 rules, rate limited).  Fragments are reassembled and
the whole packet goes through the receive path again, rebuilt without the headers already
processed.  A packet to a tentative address is dropped unless it is neighbour discovery
(RFC 4862 5.4).

Sending: :meth:`Ipv6Host._send_ipv6` picks nothing itself; callers give the source (socket
binding, RFC 6724 selection through :meth:`Ipv6Host._source_for`, or the link-local address
for link-scoped traffic).  Packets larger than the path MTU are fragmented at the source when
the caller allows it (UDP, ICMPv6; RFC 8200 5), else refused with EMSGSIZE (TCP: its MSS
follows the path MTU).  Multicast goes to its 33:33 MAC; unicast to the neighbour's MAC, or
waits in the neighbour cache while NS/NA resolve it.

Loopback (see :mod:`lwstack.iface.host` for the rules of both families): ``::1`` is local
but never one of the interface's addresses (:attr:`Ipv6Host._local6`), so neighbour discovery
never answers for it, source selection never offers it for another destination, and the
checks for it sit where ordinary traffic does not pass (after a set lookup failed).  Packets
to ``::1`` loop back like those to our own addresses, even while the interface's IPv6 is
disabled (Linux's ``lo`` is an interface of its own); from the wire, ``::1`` as source or
destination is dropped (RFC 4291 2.5.3).

Timers are gathered lazily: IPv6 activity marks ``_due6`` stale and :meth:`Host.poll_at`
recomputes it only then, so IPv4-only traffic pays one attribute test for all of this.
"""
import errno
import math
import os

from lwstack.iface import addrgen
from lwstack.iface.addrselect import LocalAddress, select_source
from lwstack.iface.mld import Mld
from lwstack.iface.ndp import NeighbourDiscovery, PrefixInfo, RouterAdvert, lifetime, solicitation
from lwstack.iface.pmtu import PathMtuCache
from lwstack.iface.slaac import DEPRECATED, PREFERRED, SAME_IDENTIFIER, TENTATIVE, Slaac
from lwstack.proto.icmp import TokenBucket
from lwstack.storage.fragments import FragmentReassembler, fragment_v6
from lwstack.wire import WireError
from lwstack.wire import icmpv6
from lwstack.wire.ethernet import build_ethernet
from lwstack.wire.ipv6 import (ALL_NODES, ALL_ROUTERS, ETHERTYPE_IPV6, MIN_MTU, NH_FRAGMENT,
                               NH_ICMPV6, NH_NONE, NH_TCP, NH_UDP, PARAM_UNKNOWN_NEXT_HEADER,
                               UNSPECIFIED,
                               ParameterProblem, build_ipv6, build_router_alert_header,
                               addr6_to_str, ipv6_template, is_link_local, multicast_mac,
                               parse_ipv6,
                               walk_extension_headers)
from lwstack.wire.ipv6 import HEADER_LEN as IPV6_HEADER_LEN
from lwstack.wire.udp import HEADER_LEN as UDP_HEADER_LEN, build_udp6, parse_udp6

ETHERTYPE_IPV6_BYTES = b"\x86\xdd"
#: ff02::1:2, All_DHCP_Relay_Agents_and_Servers (RFC 8415 section 7.1).
ALL_DHCP_SERVERS = bytes.fromhex("ff020000000000000000000000010002")
#: The largest UDP payload one IPv6 datagram carries (65535 - 8).
MAX_UDP6_PAYLOAD = 0xFFFF - UDP_HEADER_LEN
#: Packets to our own addresses waiting for the next poll (as for IPv4).
LOOPBACK_LIMIT = 1000
#: ``::1`` (RFC 4291 2.5.3), and the MTU of loopback traffic (Linux's ``lo``).
LOOPBACK6 = bytes(15) + b"\1"
LOOPBACK_MTU = 65536
#: RFC 7217's Network_ID: none (section 5 makes it optional; the prefix tells networks apart).
NETWORK_ID = b""
#: Interface index of the stack's one interface (``scope_id`` of link-local socket addresses).
IFINDEX = 1
#: Hop limit of packets to multicast groups (Linux's IPV6_MULTICAST_HOPS default).
MULTICAST_HOPS = 1
#: Linux's icmpv6_err_convert: ICMPv6 error -> (errno, fatal).  Fatal errors reach connected
#: UDP sockets (RFC 1122 4.1.3.3 spirit, Linux without IPV6_RECVERR) and end a TCP handshake.
_UNREACH6 = {
    icmpv6.CODE_NO_ROUTE: (errno.ENETUNREACH, False),
    icmpv6.CODE_ADMIN_PROHIBITED: (errno.EACCES, True),
    icmpv6.CODE_BEYOND_SCOPE: (errno.EHOSTUNREACH, False),
    icmpv6.CODE_ADDRESS_UNREACHABLE: (errno.EHOSTUNREACH, False),
    icmpv6.CODE_PORT_UNREACHABLE: (errno.ECONNREFUSED, True),
    icmpv6.CODE_SOURCE_POLICY: (errno.EACCES, True),
    icmpv6.CODE_REJECT_ROUTE: (errno.EACCES, True),
}


def _fail(code, detail=None):
    return OSError(code, os.strerror(code) + (f": {detail}" if detail else ""))


def icmp6_errno(icmp_type, code):
    """``(errno, fatal)`` for an ICMPv6 error, as Linux's icmpv6_err_convert."""
    if icmp_type == icmpv6.TYPE_DEST_UNREACHABLE:
        return _UNREACH6.get(code, (errno.EPROTO, True))
    if icmp_type == icmpv6.TYPE_PACKET_TOO_BIG:
        return errno.EMSGSIZE, True
    if icmp_type == icmpv6.TYPE_PARAM_PROBLEM:
        return errno.EPROTO, True
    return errno.EHOSTUNREACH, False           # time exceeded


class Address6:
    """One IPv6 address of the host as the host sees it: ``prefix_len``, ``state``
    ("tentative", "preferred", "deprecated") and ``origin`` ("link-local", "slaac", "manual",
    "dhcpv6")."""

    __slots__ = ("addr", "prefix_len", "state", "origin")

    def __init__(self, addr, prefix_len, state, origin):
        self.addr = addr
        self.prefix_len = prefix_len
        self.state = state
        self.origin = origin

    def __repr__(self):
        from lwstack.wire.ipv6 import addr6_to_str
        return f"Address6({addr6_to_str(self.addr)}/{self.prefix_len}, {self.state}, {self.origin})"


class Ipv6Host:
    """IPv6 for :class:`lwstack.iface.host.Host` (see the module's design note)."""

    # -- set-up ----------------------------------------------------------------------------

    def _init_ipv6(self, config, now, icmp_rate, icmp_burst):
        self.ifindex = IFINDEX
        self.fqdn = config.fqdn
        #: IPv6 is off when the link MTU is below 1280 (RFC 8200 5) or the link-local address
        #: was a duplicate (RFC 4862 5.4.5).
        self.ipv6_disabled = self.mtu < MIN_MTU
        self.mtu6 = max(self.mtu, MIN_MTU)
        self.hop_limit6 = 64
        self.accept_ra = bool(config.rd or config.slaac)
        self.want_dhcp6 = bool(config.dhcp6)
        self.want_global6 = bool(config.slaac or config.dhcp6)
        #: The configuration mentions IPv6 (addresses, a gateway, autoconfiguration): only
        #: then does a "stack configured" wait include :meth:`ipv6_configured`.
        self.ipv6_wanted = bool(config.addresses6 or config.gateway6 is not None or
                                config.rd or config.slaac or config.dhcp6)
        self.nd = NeighbourDiscovery(self.rng, max_pending=64)
        #: The interface identifier generator: "eui64", "stable" (RFC 7217) or "hash".
        self.iid_method = config.iid_method
        self._iid_secret = None
        if self.iid_method == "stable":
            # RFC 7217 5: at least 128 bits; without secret= a random key for this stack's
            # life (from its rng, so a virtual network's runs stay reproducible).
            self._iid_secret = config.secret_key or \
                self.rng.getrandbits(256).to_bytes(32, "big")
        self._dad_final = None          # (addr, origin, why) of the last final duplicate
        self.slaac = Slaac(self._make_address, self.rng, autoconf=bool(config.slaac),
                           router_solicit=self.accept_ra, link_mtu=self.mtu6)
        self.mld = Mld(self.rng)
        self.pmtu = PathMtuCache()
        self.fragments = FragmentReassembler()
        self.icmp6_limiter = TokenBucket(icmp_rate, icmp_burst)
        self.addresses6 = {}            # addr -> Address6, tentative ones included
        self._local6 = frozenset()      # usable (preferred or deprecated) addresses
        self._sources6 = []             # the same as addrselect.LocalAddress
        self._source_cache = {}
        self._groups6 = frozenset([ALL_NODES])
        self._mcast_macs = frozenset([multicast_mac(ALL_NODES)])
        self._now = now
        self._due6 = None
        self._due6_stale = True
        self.dhcp6 = None               # the DHCPv6 client's service, once started
        self.router = None              # the router-advertisement sender (start_router)
        self._router_pending = False
        self.on_ipv6_change = None
        self._static6 = frozenset()
        if self.ipv6_disabled:
            return
        self.slaac.start(now)
        self._static6 = frozenset(i.address for i in config.addresses6)
        for interface in config.addresses6:
            self.add_address6(interface.address, interface.prefix_len, now)
        if config.gateway6 is not None:
            self.nd.add_router(config.gateway6)

    def _make_address(self, prefix, dad_counter):
        """The address for ``prefix`` (16 bytes, identifier zero) by :attr:`iid_method`:

        - ``"stable"``: RFC 7217 section 5 with Net_Iface the MAC, Network_ID empty, the
          ``dad_counter`` and the secret key (see :mod:`lwstack.iface.config`); each counter
          gives another address, so SLAAC retries a duplicate (section 6);
        - ``"hash"``: iothaddr's hash of the fqdn; ``"eui64"``: modified EUI-64 of the MAC.
          The counter changes neither, so a duplicate is final (RFC 4862 5.4.5).
        """
        method = self.iid_method
        if method == "stable":
            return addrgen.combine(prefix, addrgen.stable_privacy_iid(
                prefix, self.mac, NETWORK_ID, dad_counter, self._iid_secret))
        if method == "hash":
            return addrgen.hash_address(prefix, self.fqdn)
        return addrgen.eui64_address(prefix, self.mac)

    def add_address6(self, addr, prefix_len, now, *, preferred=math.inf, valid=math.inf,
                     origin="manual", on_link=True):
        """Add a static IPv6 address (it goes through DAD first); ``on_link`` also makes its
        prefix on-link (as ``ip=fd00::2/64`` does)."""
        if self.ipv6_disabled:
            raise _fail(errno.EADDRNOTAVAIL, "IPv6 is disabled on this interface")
        self.slaac.add_address(addr, prefix_len, now, preferred=preferred, valid=valid,
                               origin=origin)
        if on_link and prefix_len < 128:
            self.nd.add_prefix(addr, prefix_len)
        self._after6(now)

    def remove_address6(self, addr, now):
        """Remove an IPv6 address."""
        self.slaac.remove_address(addr, now)
        self._after6(now)

    def add_router6(self, addr):
        """A static default router (``gw=``), 16 bytes."""
        self.nd.add_router(addr)
        self._source_cache.clear()

    # -- what the stack shows --------------------------------------------------------------

    @property
    def link_local(self):
        """The assigned link-local address, or None (none yet, or IPv6 disabled)."""
        return self.slaac.link_local

    def ipv6_addresses(self):
        """Every IPv6 address with its state: ``[Address6]`` (tentative ones included)."""
        return list(self.addresses6.values())

    @property
    def source_addresses6(self):
        """The IPv6 addresses usable as sources (past DAD, preferred or deprecated), as RFC
        6724's :class:`~lwstack.iface.addrselect.LocalAddress` (a list not to modify)."""
        return self._sources6

    def ipv6_configured(self):
        """True once IPv6 is as configured, for a "stack configured" wait:

        - the link-local address passed DAD and every ``ip=`` address too (one that failed
          DAD keeps the stack unconfigured);
        - with ``rd``: a default router is known (from an RA, or ``gw=``);
        - with ``slaac`` or ``dhcp6``: a preferred global address (any origin);
        - when an RA asked for stateful DHCPv6 (M flag) and our client runs stateful: an
          address from it as well;
        - no address still in DAD (a SLAAC address for every advertised prefix, not just
          the first to finish).

        Always False while IPv6 is disabled.  :meth:`ipv6_pending` says what is missing.
        """
        return self.ipv6_pending() is None

    def ipv6_pending(self):
        """What IPv6 still waits for, as a short text, or None when :meth:`ipv6_configured`."""
        if self.ipv6_disabled:
            if self.mtu < MIN_MTU:
                return "IPv6 (disabled: link MTU below 1280)"
            return "IPv6 (disabled: " + self._final_text("link-local") + ")"
        if self.link_local is None:
            return "IPv6 link-local address (DAD)"
        missing = [addr6_to_str(a) for a in sorted(self._static6 - self._local6)]
        if missing:
            return "IPv6 address " + ", ".join(missing) + " (DAD)"
        if self.accept_ra and not self.nd.routers:
            return "IPv6 default router (RA)"
        if self.want_global6 and not any(
                a.state == PREFERRED and not is_link_local(a.addr)
                for a in self.addresses6.values()):
            if self._dad_final is not None and self._dad_final[1] == "slaac":
                return "IPv6 global address (SLAAC or DHCPv6; " + self._final_text("slaac") \
                    + ")"
            return "IPv6 global address (SLAAC or DHCPv6)"
        if self.slaac.managed and self.dhcp6 is not None and \
                self.dhcp6.client.mode == "stateful" and \
                not any(a.origin == "dhcpv6" and a.state != TENTATIVE
                        for a in self.addresses6.values()):
            return f"DHCPv6 lease ({self.dhcp6.client.state})"
        tentative = [addr6_to_str(a.addr) for a in self.addresses6.values()
                     if a.state == TENTATIVE]
        if tentative:                    # every address asked for, not just the first one
            return "IPv6 address " + ", ".join(sorted(tentative)) + " (DAD)"
        return None

    def _final_text(self, origin):
        """Why the last duplicate ``origin`` address was final, as a short text."""
        final = self._dad_final
        label = "SLAAC" if origin == "slaac" else origin
        if final is None or final[1] != origin:
            return f"duplicate {label} address"
        addr, _, why = final
        if why == SAME_IDENTIFIER:
            because = (f"iid={self.iid_method} gives the same address on every try, "
                       "RFC 4862 5.4.5")
        else:
            because = f"{self.slaac.idgen_retries} new addresses were in use too, RFC 7217 6"
        return f"duplicate {label} address {addr6_to_str(addr)}, final: {because}"

    def path_mtu(self, dst, now):
        """The MTU to send to ``dst`` (4 or 16 bytes) with: the path MTU learnt from ICMP
        Fragmentation Needed / Packet Too Big, else the link's (for TCP's MSS)."""
        link = self.mtu6 if len(dst) == 16 else self.mtu
        return self.pmtu.mtu_for(dst, link, now)

    # -- addresses (SLAAC's events) --------------------------------------------------------

    def _after6(self, now):
        """Perform what the IPv6 state machines queued, until none has more to say."""
        self._due6_stale = True
        slaac, mld = self.slaac, self.mld
        while slaac.outbox or mld.outbox:
            while slaac.outbox:
                self._slaac_event(slaac.outbox.pop(0), now)
            while mld.outbox:
                self._mld_record(mld.outbox.pop(0))

    def _slaac_event(self, record, now):
        kind = record[0]
        if kind == "ns":                     # a DAD probe
            self._emit_solicit(record, None)
        elif kind == "rs":
            src = record[1]
            rs = icmpv6.RouterSolicitation(self.mac if src != UNSPECIFIED else None)
            self._emit6(multicast_mac(ALL_ROUTERS),
                        build_ipv6(src, ALL_ROUTERS, NH_ICMPV6, rs.emit(src, ALL_ROUTERS), 255))
            self.stats["rs_sent"] += 1
        elif kind == "address_added":
            _, addr, prefix_len, state = record
            entry = self.slaac.addresses.get(addr)
            origin = entry.origin if entry is not None else "manual"
            self.addresses6[addr] = Address6(addr, prefix_len, state, origin)
            self.mld.add_address(addr, now)
            self._groups_changed()
            if state != TENTATIVE:
                self._addresses6_changed(now)
        elif kind in ("address_preferred", "address_deprecated"):
            entry = self.addresses6.get(record[1])
            if entry is not None:
                entry.state = PREFERRED if kind == "address_preferred" else DEPRECATED
                if self._dad_final is not None and self._dad_final[1] == entry.origin:
                    self._dad_final = None      # an address of that kind made it after all
                self._addresses6_changed(now)
        elif kind == "address_removed":
            _, addr, reason = record
            entry = self.addresses6.pop(addr, None)
            if entry is not None:
                self.mld.remove_address(addr, now)
                self._groups_changed()
                self._addresses6_changed(now)
            if reason == "duplicate":
                self.stats["ipv6_dad_failed"] += 1
                if self.dhcp6 is not None:
                    self.dhcp6.address_conflict(addr, now)
        elif kind == "dad_retry":
            self.stats["ipv6_dad_retry"] += 1
        elif kind == "dad_final":
            _, addr, origin, why = record
            self._dad_final = (addr, origin, why)
            self.stats["ipv6_dad_final"] += 1
            self.stats["ipv6_dad_final." + why] += 1
        elif kind == "disabled":
            self.ipv6_disabled = True
            self.stats["ipv6_disabled_duplicate_link_local"] += 1
        elif kind == "hop_limit":
            self.hop_limit6 = record[1]
        elif kind == "mtu":
            self.mtu6 = record[1]
        elif kind == "dhcpv6":
            self._ra_dhcp6(record[1], record[2], now)
        elif kind == "dns_servers":
            self.set_name_servers("ra", record[1], self.name_servers.get("ra", ((), ()))[1])
        elif kind == "dns_search":
            self.set_name_servers("ra", self.name_servers.get("ra", ((), ()))[0], record[1])
        # reachable_time / retrans_timer: NeighbourDiscovery took them from the same RA.

    def _addresses6_changed(self, now):
        usable = [a for a in self.addresses6.values() if a.state in (PREFERRED, DEPRECATED)]
        self._local6 = frozenset(a.addr for a in usable)
        self._sources6 = [LocalAddress(a.addr, a.prefix_len, deprecated=a.state == DEPRECATED)
                          for a in usable]
        self._source_cache.clear()
        link_local = self.slaac.link_local
        if link_local is not None:
            self._ensure_dhcp6(now)
            if self._router_pending:
                self._router_pending = False
                self.router.start(now)
                self._drain_router(now)
        if self.on_ipv6_change is not None:
            self.on_ipv6_change()

    def _groups_changed(self):
        self._groups6 = frozenset(self.mld.memberships())
        self._mcast_macs = frozenset(self.mld.macs())

    def join_group(self, group, now):
        """Listen to IPv6 multicast ``group`` (reference counted; MLD reports it)."""
        if not self.mld.join(group, now):
            raise _fail(errno.ENOBUFS, "too many multicast groups")
        self._groups_changed()
        self._after6(now)

    def leave_group(self, group, now):
        """Drop one reference to ``group``."""
        self.mld.leave(group, now)
        self._groups_changed()
        self._after6(now)

    def _mld_record(self, record):
        src = self.slaac.link_local or UNSPECIFIED      # RFC 3810 5.2.13
        kind = record[0]
        if kind == "mld_report":
            report = icmpv6.Mldv2Report(tuple(icmpv6.MulticastRecord(t, g, s)
                                              for t, g, s in record[1]))
            dst = icmpv6.ALL_MLDV2_ROUTERS
            message = report.emit(src, dst)
        else:
            group = record[1]
            dst = group if kind == "mld1_report" else ALL_ROUTERS
            icmp_type = icmpv6.TYPE_MLDV1_REPORT if kind == "mld1_report" \
                else icmpv6.TYPE_MLDV1_DONE
            message = icmpv6.build_icmpv6(icmp_type, 0, 0, group, src, dst)
        # Hop limit 1 and a Router Alert option (RFC 3810 section 5).
        payload = build_router_alert_header(NH_ICMPV6) + message
        self._emit6(multicast_mac(dst), build_ipv6(src, dst, 0, payload, 1))
        self.stats["mld_sent"] += 1

    # -- source selection and routing ------------------------------------------------------

    def _source_for(self, dst):
        """Our source address for ``dst`` by RFC 6724 section 5, or None."""
        cache = self._source_cache
        found = cache.get(dst)
        if found is None:
            chosen = select_source(dst, self._sources6)
            if chosen is None:
                return None
            if len(cache) >= 1024:
                cache.clear()
            found = cache[dst] = chosen.addr
        return found

    def _route6(self, dst):
        """``(source, next_hop)`` for an IPv6 destination (see :meth:`Host.route`)."""
        if dst in self._local6:
            return dst, dst
        if dst == LOOPBACK6:
            return dst, dst
        if self.ipv6_disabled:
            raise _fail(errno.ENETUNREACH)
        hop = self.nd.next_hop(dst, self._now)
        if hop is None:
            raise _fail(errno.ENETUNREACH)
        self._due6_stale = True
        source = self._source_for(dst)
        if source is None:
            raise _fail(errno.EADDRNOTAVAIL)
        return source, hop

    def _link_header6(self, src, dst, protocol, now):
        # (A ::1 source is not in _local6: it never gets a header either.)
        if dst in self._local6 or dst[0] == 0xFF or self.ipv6_disabled or \
                src not in self._local6 or dst == LOOPBACK6:
            return None
        hop = self.nd.next_hop(dst, now)
        if hop is None:
            return None
        neighbour = self.nd.cache.reachable(hop, now)
        if neighbour is None:
            return None
        mac, valid_until = neighbour
        header = mac + self.mac + ETHERTYPE_IPV6_BYTES + ipv6_template(src, dst, protocol,
                                                                        self.hop_limit6)
        return header, valid_until

    # -- output ----------------------------------------------------------------------------

    def _send_ipv6(self, src, dst, next_header, payload, hop_limit, now, fragment=False):
        """Send one IPv6 datagram; over the path MTU it is fragmented when ``fragment``
        (RFC 8200 section 5: by the source only), else EMSGSIZE."""
        if self.ipv6_disabled and dst != LOOPBACK6:
            raise _fail(errno.ENETUNREACH, "IPv6 is disabled on this interface")
        self._now = now
        self._due6_stale = True
        size = IPV6_HEADER_LEN + len(payload)
        mtu = self.pmtu.mtu_for(dst, self.mtu6, now) if len(self.pmtu) else self.mtu6
        if size > mtu and (dst in self._local6 or dst == LOOPBACK6):
            mtu = LOOPBACK_MTU                    # looped back: Linux's lo MTU
        if size <= mtu:
            self._output6(build_ipv6(src, dst, next_header, payload, hop_limit), src, dst, now)
            return
        if not fragment:
            raise _fail(errno.EMSGSIZE, f"{size} bytes > path MTU {mtu}")
        if dst not in self._local6 and dst[0] != 0xFF and dst != LOOPBACK6 and \
                self.nd.next_hop(dst, now) is None:
            raise _fail(errno.ENETUNREACH)
        ident = self.rng.getrandbits(32)          # RFC 7739: unpredictable identifications
        self.stats["ipv6_fragmented"] += 1
        for piece in fragment_v6(payload, mtu, ident=ident, next_header=next_header):
            self._output6(build_ipv6(src, dst, NH_FRAGMENT, piece, hop_limit), src, dst, now)
            self.stats["ipv6_fragments_sent"] += 1

    def _output6(self, packet, src, dst, now):
        if dst in self._local6 or dst == LOOPBACK6:
            if len(self.loopback) >= LOOPBACK_LIMIT:
                self._drop("loopback_full")
                return
            self.loopback.append(packet)
            return
        if src == LOOPBACK6:
            # RFC 4291 2.5.3: never sent outside the node (senders took this path already).
            self._drop("loopback_source_off_host")
            return
        if dst[0] == 0xFF:
            self._emit6(multicast_mac(dst), packet)
            return
        hop = self.nd.next_hop(dst, now)
        if hop is None:
            raise _fail(errno.ENETUNREACH)
        cache = self.nd.cache
        mac, _ = cache.lookup(hop, now)
        if mac is not None:
            self._emit6(mac, packet)
            return
        request, dropped = cache.enqueue(hop, packet, now)
        if request is not None:
            self._emit_solicit(solicitation(*request), src)
        if dropped is not None:
            self._drop("ndp_queue_full")

    def _emit6(self, mac, packet):
        self.outbox.append(build_ethernet(mac, self.mac, ETHERTYPE_IPV6, packet))
        self.stats["tx_frames"] += 1

    def _emit_solicit(self, sol, src_hint):
        """Send a :class:`lwstack.iface.ndp.Solicit` (RFC 4861 7.2.2 for the source)."""
        src = sol.src
        if src is None:
            if src_hint is not None and src_hint in self._local6:
                src = src_hint
            else:
                src = self._source_for(sol.target) or self.slaac.link_local
            if src is None:
                self._drop("ns_no_source")
                return
        lladdr = self.mac if src != UNSPECIFIED and sol.source_lladdr else None
        ns = icmpv6.NeighborSolicitation(sol.target, lladdr, sol.nonce)
        self._emit6(sol.dst_mac, build_ipv6(src, sol.dst, NH_ICMPV6, ns.emit(src, sol.dst), 255))
        self.stats["ns_sent"] += 1

    def _send_waiting(self, mac, packets):
        for packet in packets:
            self._emit6(mac, packet)

    def _send_icmp6_error(self, icmp_type, code, offending, now, *, rest=0, multicast=False,
                          to_multicast=False):
        """Answer ``offending`` (the packet from its IPv6 header) with an ICMPv6 error when
        RFC 4443 2.4(e) allows it and the rate limit (2.4(f)) has a token."""
        osrc, odst = bytes(offending[8:24]), bytes(offending[24:40])
        is_error = offending[6] == NH_ICMPV6 and len(offending) > IPV6_HEADER_LEN and \
            (offending[IPV6_HEADER_LEN] < 128 or offending[IPV6_HEADER_LEN] == icmpv6.TYPE_REDIRECT)
        if not icmpv6.may_send_error(icmp_type, osrc, odst, multicast, is_error, to_multicast):
            self._drop("icmpv6_error_not_allowed")
            return
        if not self.icmp6_limiter.take(now):
            self._drop("icmpv6_rate_limited")
            return
        src = odst if odst in self._local6 or odst == LOOPBACK6 else self._source_for(osrc)
        if src is None:
            self._drop("icmpv6_error_no_source")
            return
        message = icmpv6.build_error(icmp_type, code, offending, src, osrc, rest)
        try:
            self._send_ipv6(src, osrc, NH_ICMPV6, message, self.hop_limit6, now)
            self.stats["icmpv6_errors_sent"] += 1
        except OSError:
            self._drop("icmpv6_error_unroutable")

    # -- input -----------------------------------------------------------------------------

    def _ipv6_in(self, packet, offset, link_multicast, now):
        """One IPv6 packet at ``packet[offset:]``; ``offset`` 0 is a packet already inside
        the host (looped back, or reassembled from fragments checked one by one), which may
        carry ``::1``; one from the wire (``offset`` HEADER_LEN) may not (RFC 4291 2.5.3)."""
        self._now = now
        self._due6_stale = True
        if self.ipv6_disabled and offset:
            self._drop("ipv6_disabled")
            return
        header = parse_ipv6(packet, offset)
        src, dst = header.src, header.dst
        first = src[0]
        if first == 0xFF:
            self._drop("ipv6_multicast_source")
            return
        if first == 0 and offset and src == LOOPBACK6:
            self._drop("ipv6_martian_source")
            return
        tentative = multicast = False
        if dst in self._local6:
            pass
        elif dst[0] == 0xFF:
            if dst not in self._groups6:
                self._drop("ipv6_not_our_group")
                return
            multicast = True
        elif dst in self.addresses6:
            tentative = True
        elif dst == LOOPBACK6 and not offset:
            pass                                  # looped back
        else:
            self._drop("ipv6_martian_destination" if dst == LOOPBACK6 else "ipv6_not_for_us")
            return
        start = offset + IPV6_HEADER_LEN
        end = start + header.payload_len
        protocol = header.next_header
        router_alert = None
        nh_field = offset + 6
        if protocol != NH_TCP and protocol != NH_UDP and protocol != NH_ICMPV6:
            try:
                chain = walk_extension_headers(packet, start, protocol, end, offset)
            except ParameterProblem as exc:
                self._drop(exc.reason)
                self._send_icmp6_error(icmpv6.TYPE_PARAM_PROBLEM, exc.code,
                                       packet[offset:end], now, rest=exc.pointer,
                                       multicast=multicast or link_multicast,
                                       to_multicast=exc.to_multicast)
                return
            if chain.fragment is not None:
                self._ipv6_fragment(header, packet, offset, end, chain.fragment,
                                    multicast or link_multicast, now)
                return
            protocol, start, router_alert, nh_field = (chain.protocol, chain.offset,
                                                       chain.router_alert, chain.nh_field)
        if tentative and protocol != NH_ICMPV6:
            self._drop("ipv6_to_tentative")      # RFC 4862 5.4
            return
        if protocol == NH_TCP:
            if multicast:
                self._drop("tcp_multicast")
                return
            self.tcp.receive(src, dst, memoryview(packet)[start:end], now)
        elif protocol == NH_UDP:
            self._udp6_in(header, packet, offset, start, end, multicast, link_multicast, now)
        elif protocol == NH_ICMPV6:
            self._icmp6_in(header, packet, offset, start, end, multicast, link_multicast,
                           tentative, router_alert, now)
        elif protocol == NH_NONE:
            self._drop("ipv6_no_next_header")
        else:
            self._drop("ipv6_unknown_next_header")
            # RFC 8200 section 4: Parameter Problem code 1 pointing at the Next Header.
            self._send_icmp6_error(icmpv6.TYPE_PARAM_PROBLEM, PARAM_UNKNOWN_NEXT_HEADER,
                                   packet[offset:end], now, rest=nh_field - offset,
                                   multicast=multicast or link_multicast)
        self._after6(now)

    def _ipv6_fragment(self, header, packet, offset, end, fragment, multicast, now):
        data = packet[fragment.data_offset:end]
        quote = bytes(packet[offset:min(end, offset + icmpv6.MAX_QUOTE)])
        result = self.fragments.add_v6(
            header.src, header.dst, fragment.ident, fragment.offset, fragment.more,
            fragment.next_header, data, now,
            unfragmentable_len=fragment.header_offset - offset - IPV6_HEADER_LEN,
            context=(quote, multicast))
        self._due6_stale = True
        errors = self.fragments.errors
        while errors:
            problem = errors.pop(0)
            quoted, was_multicast = problem.context
            self._send_icmp6_error(icmpv6.TYPE_PARAM_PROBLEM, problem.code, quoted, now,
                                   rest=problem.pointer, multicast=was_multicast)
        if result is None:
            return
        if result.protocol == NH_FRAGMENT:
            self._drop("ipv6_nested_fragment")
            return
        self.stats["ipv6_reassembled"] += 1
        whole = build_ipv6(header.src, header.dst, result.protocol, result.payload,
                           header.hop_limit, header.traffic_class, header.flow_label)
        self._ipv6_in(whole, 0, multicast, now)

    def _udp6_in(self, header, packet, offset, start, end, multicast, link_multicast, now):
        src, dst = header.src, header.dst
        src_port, dst_port, payload = parse_udp6(packet[start:end], src, dst)
        if self.services:
            for service in self.services:
                if dst_port in service.udp_ports:
                    service.receive_udp(src, src_port, dst, dst_port, payload, now)
                    self.drain_service(service, now)
                    return
        if multicast:
            receivers = [e for e in self.udp.all_on_port(dst_port)
                         if e.family == 6 and e.local_addr == ANY6]
        else:
            endpoint = self.udp.lookup(dst, dst_port)
            receivers = [endpoint] if endpoint is not None else []
        delivered = False
        for endpoint in receivers:
            if endpoint.remote is not None and endpoint.remote != (src, src_port):
                continue
            delivered = True
            if not endpoint.deliver(payload, (src, src_port), header.hop_limit):
                self._drop("udp_rcvbuf_full")
        if not delivered:
            self._drop("udp_no_listener")
            if not multicast:
                self._send_icmp6_error(icmpv6.TYPE_DEST_UNREACHABLE,
                                       icmpv6.CODE_PORT_UNREACHABLE, packet[offset:end], now,
                                       multicast=link_multicast)

    def _icmp6_in(self, header, packet, offset, start, end, multicast, link_multicast,
                  tentative, router_alert, now):
        src, dst = header.src, header.dst
        message = packet[start:end]
        icmp_type, code, rest, body = icmpv6.parse_icmpv6(message, src, dst)
        if icmp_type in icmpv6.ND_TYPES:
            record = icmpv6.parse_nd_message(icmp_type, rest, body)
            icmpv6.check_nd(record, code, header.hop_limit, src, dst)
            self._nd_in(record, src, dst, now)
            return
        if tentative:
            self._drop("ipv6_to_tentative")
            return
        if icmp_type == icmpv6.TYPE_ECHO_REQUEST:
            self._echo6_answer(src, dst, rest, body, multicast, now)
        elif icmp_type == icmpv6.TYPE_ECHO_REPLY:
            endpoint = self.echo.lookup(dst, rest >> 16)
            if endpoint is None or endpoint.family != 6 or \
                    (endpoint.remote and endpoint.remote[0] != src):
                self._drop("icmpv6_echo_reply_unmatched")
                return
            if not endpoint.deliver(bytes(message), (src, 0), header.hop_limit):
                self._drop("icmp_rcvbuf_full")
        elif icmp_type == icmpv6.TYPE_MLD_QUERY:
            icmpv6.check_mld(header.hop_limit, src, router_alert)
            query = icmpv6.parse_mld_query(rest, body)
            self.mld.receive_query(query.address, query.sources,
                                   query.max_response_delay / 1000.0, now,
                                   version=query.version, qrv=query.robustness,
                                   qqi=query.interval)
        elif icmp_type in (icmpv6.TYPE_MLDV1_REPORT, icmpv6.TYPE_MLDV1_DONE,
                           icmpv6.TYPE_MLDV2_REPORT):
            self.stats["mld_report_ignored"] += 1       # hosts do not track other listeners
        elif icmp_type < 128:
            self._icmp6_error_in(icmp_type, code, rest, body, now)
        else:
            self._drop("icmpv6_unhandled_type")

    def _echo6_answer(self, src, dst, rest, body, multicast, now):
        """RFC 4443 4.2; requests to a multicast group are answered from a unicast address
        (Linux's default, echo_ignore_multicast 0)."""
        source = dst if not multicast else self._source_for(src)
        if source is None:
            self._drop("icmpv6_echo_no_source")
            return
        reply = icmpv6.build_echo(icmpv6.TYPE_ECHO_REPLY, rest >> 16, rest & 0xFFFF, body,
                                  source, src)
        try:
            self._send_ipv6(source, src, NH_ICMPV6, reply, self.hop_limit6, now, fragment=True)
        except OSError:
            self._drop("icmpv6_echo_unroutable")
            return
        self.stats["icmpv6_echo_replied"] += 1

    def _icmp6_error_in(self, icmp_type, code, rest, body, now):
        """Hand an ICMPv6 error to whatever sent the packet it quotes (RFC 4443 3, RFC 8201)."""
        try:
            quoted = icmpv6.parse_quote(body)
        except WireError:
            self._drop("icmpv6_bad_quote")
            return
        qsrc, qdst, protocol, transport = quoted
        if qsrc not in self._local6 and qsrc != LOOPBACK6:
            self._drop("icmpv6_error_not_ours")
            return
        error, fatal = icmp6_errno(icmp_type, code)
        if icmp_type == icmpv6.TYPE_PACKET_TOO_BIG:
            if self.pmtu.learn(qdst, rest, now, link_mtu=self.mtu6):
                self.stats["pmtu_learnt"] += 1
            self._due6_stale = True
        if protocol == NH_UDP and len(transport) >= 4:
            sport = (transport[0] << 8) | transport[1]
            dport = (transport[2] << 8) | transport[3]
            endpoint = self.udp.lookup(qsrc, sport)
            if endpoint is not None and endpoint.remote == (qdst, dport) and fatal:
                endpoint.set_error(error)
                self.stats["icmp_error_delivered"] += 1
                return
        elif protocol == NH_TCP:
            hard = fatal and icmp_type != icmpv6.TYPE_PACKET_TOO_BIG
            if self.tcp.icmp_error(qsrc, qdst, transport, error, hard, now):
                self.stats["icmp_error_delivered"] += 1
                return
        elif protocol == NH_ICMPV6 and len(transport) >= 8 and \
                transport[0] == icmpv6.TYPE_ECHO_REQUEST:
            endpoint = self.echo.lookup(qsrc, (transport[4] << 8) | transport[5])
            if endpoint is not None and endpoint.family == 6:
                endpoint.set_error(error)
                self.stats["icmp_error_delivered"] += 1
                return
        self._drop("icmp_error_unmatched")

    # -- neighbour discovery ---------------------------------------------------------------

    def _nd_in(self, record, src, dst, now):
        kind = type(record)
        nd = self.nd
        if kind is icmpv6.NeighborSolicitation:
            target = record.target
            if self.slaac.receive_ns(target, src, now, record.nonce):
                return                            # about a tentative address of ours
            if target not in self._local6:
                self._drop("ns_not_our_target")
                return
            self._send_waiting(record.source_lladdr, nd.receive_ns(src, record.source_lladdr, now))
            self._answer_ns(record, src, now)
        elif kind is icmpv6.NeighborAdvertisement:
            if self.slaac.receive_na(record.target, now):
                return
            waiting = nd.receive_na(record.target, record.target_lladdr, now,
                                    solicited=record.solicited, override=record.override,
                                    router=record.router)
            if waiting:
                entry = nd.cache.entries.get(record.target)
                if entry is not None and entry.mac is not None:
                    self._send_waiting(entry.mac, waiting)
        elif kind is icmpv6.RouterAdvertisement:
            if not self.accept_ra or self.router is not None:
                self._drop("ra_ignored")
                return
            self.stats["ra_received"] += 1
            advert = RouterAdvert(
                source=src, cur_hop_limit=record.hop_limit, managed=record.managed,
                other=record.other, router_lifetime=float(record.router_lifetime),
                reachable_time=record.reachable_time / 1000.0,
                retrans_timer=record.retrans_timer / 1000.0,
                source_lladdr=record.source_lladdr, mtu=record.mtu,
                prefixes=tuple(PrefixInfo(p.prefix, p.prefix_len, p.on_link, p.autonomous,
                                          lifetime(p.valid_lifetime),
                                          lifetime(p.preferred_lifetime))
                               for p in record.prefixes),
                rdnss=tuple((lifetime(r.lifetime), r.servers) for r in record.rdnss),
                dnssl=tuple((lifetime(d.lifetime), d.domains) for d in record.dnssl))
            self._send_waiting(record.source_lladdr, nd.receive_ra(advert, now))
            self._source_cache.clear()
            self.slaac.receive_ra(advert, now)
        elif kind is icmpv6.RouterSolicitation:
            if self.router is None:
                self._drop("rs_not_a_router")
                return
            if src != UNSPECIFIED and record.source_lladdr is not None:
                # RFC 4861 6.2.6: the SLLA option creates or updates a STALE entry.
                self._send_waiting(record.source_lladdr,
                                   nd.cache.learn(src, record.source_lladdr, now))
            self.router.receive_rs(src, now)
            self._drain_router(now)
        else:                                     # Redirect
            waiting = nd.receive_redirect(src, record.target, record.destination,
                                          record.target_lladdr, now)
            if waiting and record.target_lladdr is not None:
                self._send_waiting(record.target_lladdr, waiting)

    def _answer_ns(self, ns, src, now):
        """RFC 4861 7.2.4: a solicited NA to the solicitor, or to all-nodes when it came from
        :: (someone's DAD for an address we hold: our answer tells it so)."""
        target = ns.target
        router = self.router is not None
        if src == UNSPECIFIED:
            na = icmpv6.NeighborAdvertisement(target, router, False, True, self.mac)
            self._emit6(multicast_mac(ALL_NODES),
                        build_ipv6(target, ALL_NODES, NH_ICMPV6, na.emit(target, ALL_NODES), 255))
        else:
            na = icmpv6.NeighborAdvertisement(target, router, True, True, self.mac)
            packet = build_ipv6(target, src, NH_ICMPV6, na.emit(target, src), 255)
            if ns.source_lladdr is not None:
                self._emit6(ns.source_lladdr, packet)
            else:                                 # a NUD probe: the cache knows the MAC
                try:
                    self._output6(packet, target, src, now)
                except OSError:
                    self._drop("na_unroutable")
                    return
        self.stats["na_sent"] += 1

    # -- timers ----------------------------------------------------------------------------

    def _poll6(self, now):
        """IPv6 timers, fragment reassembly (both families) and the path-MTU cache."""
        self._now = now
        if not self.ipv6_disabled:
            due = self.slaac.poll_at()
            if due is not None and due <= now:
                self.slaac.poll(now)
            due = self.mld.poll_at()
            if due is not None and due <= now:
                self.mld.poll(now)
            due = self.nd.poll_at()
            if due is not None and due <= now:
                requests, failed = self.nd.poll(now)
                for target, mac in requests:
                    self._emit_solicit(solicitation(target, mac), None)
                for packet in failed:
                    # RFC 4861 7.2.2: address unreachable, reported to the local sender.
                    self.stats["ndp_failed_packets"] += 1
                    self._icmp6_error_in(icmpv6.TYPE_DEST_UNREACHABLE,
                                         icmpv6.CODE_ADDRESS_UNREACHABLE, 0, packet, now)
            if self.router is not None:
                due = self.router.poll_at()
                if due is not None and due <= now:
                    self.router.poll(now)
                    self._drain_router(now)
        due = self.fragments.poll_at()
        if due is not None and due <= now:
            for expired in self.fragments.poll(now):
                self._reassembly_expired(expired, now)
        due = self.pmtu.poll_at()
        if due is not None and due <= now:
            self.pmtu.poll(now)
        self._after6(now)

    def _reassembly_expired(self, expired, now):
        """RFC 792 / RFC 8200 4.5: Time Exceeded, code 1, when fragment zero had arrived."""
        if not expired.first_arrived:
            return
        if len(expired.src) == 4:
            self._reassembly_expired4(expired, now)
            return
        quote, multicast = expired.first
        self._send_icmp6_error(icmpv6.TYPE_TIME_EXCEEDED, icmpv6.CODE_REASSEMBLY_TIME_EXCEEDED,
                               quote, now, multicast=multicast)

    def _poll_at6(self):
        """The earliest IPv6 (and fragment / path MTU) timer, recomputed only when stale."""
        if not self._due6_stale:
            return self._due6
        self._due6_stale = False
        times = [self.fragments.poll_at(), self.pmtu.poll_at()]
        if not self.ipv6_disabled:
            times += [self.slaac.poll_at(), self.mld.poll_at(), self.nd.poll_at()]
            if self.router is not None:
                times.append(self.router.poll_at())
        due = min((t for t in times if t is not None), default=None)
        self._due6 = due
        return due

    # -- datagram sockets over IPv6 --------------------------------------------------------

    def _bind6(self, endpoint, addr, port):
        """Bind an IPv6 endpoint: ``::``, one of our addresses, or an IPv4-mapped one."""
        if addr[:12] == MAPPED_PREFIX:
            if endpoint.v6only:
                raise _fail(errno.EINVAL)
            addr = addr[12:]
            if addr != ANY and not self.is_local(addr) and not self._is_broadcast(addr):
                raise _fail(errno.EADDRNOTAVAIL)
            endpoint.dual = False
        elif addr != ANY6 and addr not in self._local6 and addr != LOOPBACK6:
            raise _fail(errno.EADDRNOTAVAIL)
        if self._table(endpoint).bind(endpoint, addr, port) is None:
            raise _fail(errno.EADDRINUSE if port else errno.EAGAIN)

    def _connect6(self, endpoint, addr, port, now):
        self._now = now
        if addr == ANY6:
            addr = self.unspecified_destination(addr, endpoint.local_addr)
            if len(addr) == 4:
                addr = MAPPED_PREFIX + addr
        if addr[:12] == MAPPED_PREFIX:
            if endpoint.v6only or endpoint.kind != "udp":
                raise _fail(errno.ENETUNREACH)
            if len(endpoint.local_addr) == 16 and endpoint.local_addr != ANY6:
                raise _fail(errno.ENETUNREACH)
            v4 = self.unspecified_destination(addr[12:], endpoint.local_addr)
            source, _ = self.route(v4)
            self._loopback_source_refused(endpoint.local_addr, v4)
            if not endpoint.local_port:
                self._bind6(endpoint, ANY6, 0)
            if endpoint.local_addr in (ANY, ANY6):
                self._rebind(endpoint, source)
            endpoint.remote = (v4, port)
            return
        if len(endpoint.local_addr) == 4 and endpoint.local_port:
            raise _fail(errno.ENETUNREACH)        # bound to an IPv4(-mapped) address
        source, _ = self._route6(addr)
        if not endpoint.local_port:
            self._bind6(endpoint, ANY6, 0)
        if endpoint.local_addr == ANY6 and addr[0] != 0xFF:
            self._rebind(endpoint, source)
        endpoint.remote = (addr, port)

    def _rebind(self, endpoint, source):
        """Linux fixes the source address on connect (visible in getsockname)."""
        table = self._table(endpoint)
        previous = endpoint.local_addr
        table.unbind(endpoint)
        if table.bind(endpoint, source, endpoint.local_port) is None:
            table.bind(endpoint, previous, endpoint.local_port)

    def _sendto6(self, endpoint, payload, addr, port, now):
        self._now = now
        if len(addr) == 4:                    # a connected socket's IPv4(-mapped) peer
            addr = MAPPED_PREFIX + addr
        if addr[:12] == MAPPED_PREFIX:
            if endpoint.v6only or endpoint.kind != "udp":
                raise _fail(errno.ENETUNREACH)
            if len(endpoint.local_addr) == 16 and endpoint.local_addr != ANY6:
                raise _fail(errno.ENETUNREACH)
            return self._sendto4(endpoint, payload, addr[12:], port, now)
        if len(endpoint.local_addr) == 4 and endpoint.local_port:
            raise _fail(errno.ENETUNREACH)
        bound = endpoint.local_addr
        if bound != ANY6 and bound not in self._local6 and bound != LOOPBACK6:
            raise _fail(errno.EINVAL)         # bound to an address that went (Linux: EINVAL)
        # Bound to ::1 and sending elsewhere: Linux sends it (the peer drops it, RFC 4291
        # 2.5.3); _output6 drops it before the wire, and the sender sees the same success.
        source, _ = self._route6(addr)
        if bound != ANY6:
            source = bound
        multicast = addr[0] == 0xFF
        hop_limit = MULTICAST_HOPS if multicast else (endpoint.hop_limit or self.hop_limit6)
        if endpoint.kind == "udp":
            if len(payload) > MAX_UDP6_PAYLOAD:
                raise _fail(errno.EMSGSIZE)
            if not endpoint.local_port:
                self._bind6(endpoint, ANY6, 0)
            segment = build_udp6(source, addr, endpoint.local_port, port, payload)
            self._send_ipv6(source, addr, NH_UDP, segment, hop_limit, now, fragment=True)
        else:
            if len(payload) < icmpv6.HEADER_LEN or payload[0] != icmpv6.TYPE_ECHO_REQUEST \
                    or payload[1] != 0:
                raise _fail(errno.EINVAL, "an ICMPv6 socket sends echo requests only")
            if len(payload) > MAX_UDP6_PAYLOAD:
                raise _fail(errno.EMSGSIZE)
            if not endpoint.local_port:
                self._bind6(endpoint, ANY6, 0)
            sequence = (payload[6] << 8) | payload[7]
            message = icmpv6.build_echo(icmpv6.TYPE_ECHO_REQUEST, endpoint.local_port, sequence,
                                        bytes(payload[icmpv6.HEADER_LEN:]), source, addr)
            self._send_ipv6(source, addr, NH_ICMPV6, message, hop_limit, now, fragment=True)
        return len(payload)

    # -- services over IPv6 ----------------------------------------------------------------

    def _service_udp6(self, src, dst, src_port, dst_port, payload, now):
        """A service's IPv6 "udp" record: ``src`` None is our link-local address for
        link-local and multicast destinations, else RFC 6724's choice."""
        if src is None:
            if dst[0] == 0xFF or is_link_local(dst):
                src = self.slaac.link_local
            else:
                src = self._source_for(dst)
            if src is None:
                self._drop("service_no_ipv6_source")
                return
        hop_limit = MULTICAST_HOPS if dst[0] == 0xFF else self.hop_limit6
        try:
            self._send_ipv6(src, dst, NH_UDP, build_udp6(src, dst, src_port, dst_port, payload),
                            hop_limit, now, fragment=True)
        except OSError:
            self._drop("service_unroutable")

    # -- DHCPv6 client ---------------------------------------------------------------------

    def _start_dhcp6(self, mode, now):
        service = Dhcp6ClientService(self, mode)
        self.dhcp6 = service
        self.add_service(service, now)
        service.client.start(now)
        self.drain_service(service, now)

    def _ra_dhcp6(self, managed, other, now):
        """An RA's M/O flags changed (RFC 4861 4.2)."""
        self._ensure_dhcp6(now)

    def _ensure_dhcp6(self, now):
        """Run the DHCPv6 client the configuration and the last RA ask for, once the
        link-local address exists (its messages come from it): stateful for ``dhcp6`` or
        the M flag, stateless for the O flag alone; a stateless client gives way to a
        stateful one when M appears.  Nothing stops a running client when the flags go
        away (its lease ends by itself)."""
        if self.link_local is None or self.ipv6_disabled:
            return
        managed = self.want_dhcp6 or (self.accept_ra and self.slaac.managed)
        other = self.accept_ra and self.slaac.other
        if not (managed or other):
            return
        mode = "stateful" if managed else "stateless"
        current = self.dhcp6
        if current is not None:
            if current.client.mode == "stateful" or mode == "stateless":
                return
            current.client.stop(now)
            self.drain_service(current, now)
            self.remove_service(current)
            self.dhcp6 = None
        self._start_dhcp6(mode, now)

    def stop_ipv6(self, now):
        """Leave the link cleanly (the stack is closing): the DHCPv6 client RELEASEs its
        addresses (RFC 8415 18.2.7) and a running router sends its final RA (RFC 4861
        6.2.5).  The messages are in :attr:`outbox` on return."""
        if self.dhcp6 is not None:
            service = self.dhcp6
            service.client.stop(now)
            self.drain_service(service, now)
        if self.router is not None:
            self.stop_router(now)

    # -- router side -----------------------------------------------------------------------

    def start_dhcp6_server(self, server, now):
        """Run a :class:`lwstack.proto.dhcp6_server.Dhcp6Server` on UDP port 547 (joins
        ff02::1:2); returns its service (for :meth:`remove_service`)."""
        service = Dhcp6ServerService(server)
        self.join_group(ALL_DHCP_SERVERS, now)
        self.add_service(service, now)
        return service

    def start_router(self, router, now):
        """Run ``router`` (a :class:`lwstack.proto.ra_server.RaServer`) on this host: join
        ff02::2, answer Router Solicitations, set the R flag in our NAs, ignore other
        routers' RAs; the first RA leaves once the link-local address passed DAD."""
        if self.router is not None:
            raise ValueError("a router is already running on this host")
        self.router = router
        self.join_group(ALL_ROUTERS, now)
        if self.link_local is not None:
            router.start(now)
            self._drain_router(now)
        else:
            self._router_pending = True
        self._due6_stale = True

    def stop_router(self, now):
        """Stop the router: its final RA (router lifetime 0, RFC 4861 6.2.5) goes out now."""
        router = self.router
        if router is None:
            return
        if not self._router_pending:
            router.stop(now)
            self._drain_router(now)
        self.router = None
        self._router_pending = False
        self.leave_group(ALL_ROUTERS, now)

    def _drain_router(self, now):
        router = self.router
        src = self.link_local
        while router.outbox:
            _kind, dst, advert = router.outbox.pop(0)
            if src is None:
                self._drop("ra_no_link_local")
                continue
            advert = advert._replace(source_lladdr=self.mac)
            packet = build_ipv6(src, dst, NH_ICMPV6, advert.emit(src, dst), 255)
            if dst[0] == 0xFF:
                self._emit6(multicast_mac(dst), packet)
            else:
                try:
                    self._output6(packet, src, dst, now)
                except OSError:
                    self._drop("ra_unroutable")
                    continue
            self.stats["ra_sent"] += 1
        self._due6_stale = True


class Dhcp6ClientService:
    """The DHCPv6 client (:class:`lwstack.proto.dhcp6.Dhcp6Client`) as a host service on UDP
    port 546.  Its events are the host's to act on: the addresses of a lease are added with
    their lifetimes (through DAD; a duplicate is declined, RFC 8415 18.2.8), addresses no
    longer leased are removed, DNS servers and domains go to ``set_name_servers("dhcp6")``;
    then the event goes on to :attr:`Host.on_service_event` as ``("dhcp6_<kind>", info)``."""

    def __init__(self, host, mode):
        from lwstack.proto.dhcp6 import Dhcp6Client
        self.host = host
        self.client = Dhcp6Client(host.mac, host.rng, mode=mode, fqdn=host.fqdn)
        self.udp_ports = frozenset([546])
        self.outbox = self.client.outbox
        self.addresses = set()

    def receive_udp(self, src, src_port, dst, dst_port, payload, now):
        """A datagram for port 546."""
        self.client.receive(payload, src, now)
        self._events(now)

    def poll(self, now):
        """Run the client's timers."""
        self.client.poll(now)
        self._events(now)

    def poll_at(self):
        """When the client next has work."""
        return self.client.poll_at()

    def conflict(self, addr, now):
        """ARP probe conflicts do not concern DHCPv6."""

    def address_conflict(self, addr, now):
        """DAD found ``addr`` in use: the client declines it."""
        if addr not in self.addresses:
            return
        self.addresses.discard(addr)
        self.client.conflict(addr, now)
        self._events(now)
        self.host.drain_service(self, now)

    def _events(self, now):
        host = self.host
        events = self.client.events
        while events:
            kind, info = events.pop(0)
            leased = {} if kind == "lost" else {a.address: a for a in info.addresses}
            for gone in self.addresses - set(leased):
                host.remove_address6(gone, now)
            self.addresses = set(leased)
            for lease in leased.values():
                valid = lease.valid_until - now
                preferred = min(max(0.0, lease.preferred_until - now), valid)
                if valid > 0:
                    host.add_address6(lease.address, 128, now, preferred=preferred, valid=valid,
                                      origin="dhcpv6", on_link=False)
            if kind == "lost":
                host.set_name_servers("dhcp6", [], [])
            else:
                host.set_name_servers("dhcp6", info.dns_servers, info.domains)
            host.stats["dhcp6_" + kind] += 1
            if host.on_service_event is not None:
                host.on_service_event(self, ("dhcp6_" + kind, info), now)


class Dhcp6ServerService:
    """A :class:`lwstack.proto.dhcp6_server.Dhcp6Server` as a host service on UDP port 547;
    a request that did not come to ff02::1:2 is passed on as unicast (RFC 8415 18.4)."""

    def __init__(self, server):
        self.server = server
        self.udp_ports = frozenset([547])
        self.outbox = server.outbox

    def receive_udp(self, src, src_port, dst, dst_port, payload, now):
        """A datagram for port 547."""
        self.server.receive(payload, src, now, unicast=dst != ALL_DHCP_SERVERS)

    def poll(self, now):
        """Run the server's timers."""
        self.server.poll(now)

    def poll_at(self):
        """When the server next has work."""
        return self.server.poll_at()

    def conflict(self, addr, now):
        """ARP probe conflicts do not concern DHCPv6."""


ANY = b"\0\0\0\0"
ANY6 = bytes(16)
MAPPED_PREFIX = bytes(10) + b"\xff\xff"
