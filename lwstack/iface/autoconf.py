"""IPv4 automatic configuration in the host: the DHCPv4 client and server as host services.

Design note.  :class:`Dhcp4Service` and :class:`Dhcp4ServerService` are the adapters between
the sans-IO DHCP machines (:mod:`lwstack.proto.dhcp4`, :mod:`lwstack.proto.dhcp4_server`) and
:class:`~lwstack.iface.host.Host`'s service interface (see the host's module docstring).
Each adapter keeps an ``outbox`` of its own: after every call into its machine it moves the
records the host performs ("udp", "probe", "announce") there, and acts on the others itself,
so the host's single ``on_service_event`` hook stays free for whoever owns the host.  Order
is kept: before acting on an event the adapter has the host perform the records queued
ahead of it (the DHCPRELEASE leaves from the address that "lost" then removes).

The client's events are applied to the host:

- "bound": the address and prefix (:meth:`Host.add_address`; the client announces it, RFC
  5227 section 2.3), the routes of the lease (option 121 classless routes if the server sent
  them, else a default route through the first router; a route whose gateway is not on a
  connected subnet is skipped and counted; a prefix that already has a route from elsewhere,
  e.g. a static ``gw=``, keeps it), the MTU (option 26, never above the configured one), the
  name servers and domain (``host.set_name_servers("dhcp4", ...)``).
- "renewed": the same address; routes, MTU and name servers are brought in line with the
  new ACK (a server may change them).
- "lost" (expiry, NAK, RELEASE): everything "bound" configured is removed again.  Sockets
  using the address then fail the way Linux's do when an address is deleted (see
  :meth:`Host.remove_address`).

RFC 5227 timing.  The RFC's constants (probe for 1-7 s) are chosen for Ethernet with hubs,
spanning-tree ports that take seconds to forward and sleeping hosts; section 2.2 foresees
shorter ones "on appropriate network technologies".  A VDE switch forwards in microseconds to
milliseconds and every station on it is a process that answers ARP within milliseconds, so
:data:`VIRTUAL_LINK_ACD` keeps the three probes (losing one is still survivable) but spaces
them 0.2-0.4 s apart, after a random wait of up to 0.2 s, and waits 0.5 s for a defence:
at most 1.5 s instead of 7 s, which lets an ``auto`` stack be usable within seconds.  A stack
on a real segment (a tap bridged to hardware) should pass the RFC's :class:`ConflictDetection`
defaults (``Stack(..., acd=ConflictDetection())``).
"""
import collections
import math

from lwstack.iface.config import Interface
from lwstack.iface.routes import Route
from lwstack.proto.dhcp4 import ConflictDetection, Dhcp4Client
from lwstack.proto.dhcp4_server import Dhcp4Server
from lwstack.wire import WireError
from lwstack.wire import dhcp4 as dhcp4wire
from lwstack.wire.ipv4 import addr_to_str

#: RFC 5227 timings for a virtual link (see the module notes): at most 1.5 s of probing.
VIRTUAL_LINK_ACD = ConflictDetection(probe_wait=0.2, probe_num=3, probe_min=0.2, probe_max=0.4,
                                     announce_wait=0.5, announce_num=2, announce_interval=0.5)
#: Records the host performs itself (the host module's service notes).
_HOST_RECORDS = ("udp", "probe", "announce")


class Dhcp4Service:
    """The DHCPv4 client of a host, configuring it from its leases (see the module notes).

    ``fqdn``: the stack's name, sent to the server (option 81 with a dot, else option 12).
    ``max_mtu``: the MTU never exceeded whatever the server says (the configured one).
    ``on_change``: called with no argument when the configuration changes (a lease bound,
    renewed or lost), e.g. to wake threads waiting for it.  Other arguments go to
    :class:`~lwstack.proto.dhcp4.Dhcp4Client`.
    """

    udp_ports = frozenset([dhcp4wire.CLIENT_PORT])

    def __init__(self, host, rng, *, fqdn=None, acd=VIRTUAL_LINK_ACD, max_mtu=None,
                 on_change=None, **client_options):
        self.host = host
        self.client = Dhcp4Client(host.mac, rng, fqdn=fqdn, acd=acd, **client_options)
        self.max_mtu = max_mtu if max_mtu is not None else host.mtu
        self.on_change = on_change
        self.outbox = []
        self.stats = collections.Counter()
        self.lease = None            # the lease configured on the host, if any
        self._interface = None
        self._routes = []            # the Route objects we installed
        self._mtu_before = None

    # -- state -----------------------------------------------------------------------------

    @property
    def configured(self):
        """True while a lease is configured on the host."""
        return self.lease is not None

    @property
    def state(self):
        """The client's RFC 2131 state (INIT, SELECTING, ..., BOUND, ...)."""
        return self.client.state

    # -- life ------------------------------------------------------------------------------

    def start(self, now):
        """Start asking for a lease (the caller drains the service afterwards)."""
        self.client.start(now)
        self._pump(now)

    def stop(self, now):
        """Stop; a lease in use is released (RFC 2131 section 4.4.6: DHCPRELEASE) and its
        configuration removed.  The caller drains the service afterwards."""
        self.client.stop(now)
        self._pump(now)

    # -- the host's calls --------------------------------------------------------------------

    def receive_udp(self, src, src_port, dst, dst_port, payload, now):
        """A datagram for UDP port 68."""
        self.client.receive(payload, src, now)
        self._pump(now)

    def conflict(self, addr, now):
        """Another machine claimed ``addr`` while we probed it (RFC 5227): DECLINE follows."""
        self.client.conflict(addr, now)
        self._pump(now)

    def poll(self, now):
        """Run the client's timers."""
        self.client.poll(now)
        self._pump(now)

    def poll_at(self):
        """When the client next has work, or None."""
        return self.client.poll_at()

    # -- events ----------------------------------------------------------------------------

    def _pump(self, now):
        records = self.client.outbox
        while records:
            record = records.pop(0)
            kind = record[0]
            if kind in _HOST_RECORDS:
                self.outbox.append(record)
                continue
            if self.outbox:
                # What came first leaves first: a RELEASE before "lost" removes its address.
                self.host.drain_service(self, now)
            if kind == "bound":
                self._bound(record[1], now)
            elif kind == "renewed":
                self._renewed(record[1], now)
            elif kind == "lost":
                self._lost(record[1], now)
            else:
                self.stats["unknown_record." + str(kind)] += 1

    def _bound(self, lease, now):
        self.stats["bound"] += 1
        self.lease = lease
        interface = Interface(lease.address, lease.prefix_len)
        if interface not in self.host.interfaces:       # not a static address already
            self._interface = interface
            # The client announces the address itself (RFC 5227 section 2.3).
            self.host.add_address(interface, now, announce=False)
        self._apply_options(lease)
        self._changed()

    def _renewed(self, lease, now):
        self.stats["renewed"] += 1
        self.lease = lease
        self._apply_options(lease)
        self._changed()

    def _lost(self, lease, now):
        self.stats["lost"] += 1
        self._remove_routes()
        if self._mtu_before is not None:
            self.host.set_mtu(self._mtu_before)
            self._mtu_before = None
        self.host.set_name_servers("dhcp4", [])
        if self._interface is not None:
            self.host.remove_address(self._interface, now)
        self.lease = None
        self._interface = None
        self._changed()

    def _apply_options(self, lease):
        self._remove_routes()
        self._install_routes(lease)
        if lease.mtu is not None:
            if self._mtu_before is None:
                self._mtu_before = self.host.mtu
            self.host.set_mtu(min(lease.mtu, self.max_mtu))
        elif self._mtu_before is not None:
            self.host.set_mtu(self._mtu_before)
            self._mtu_before = None
        domains = [lease.domain] if lease.domain else []
        self.host.set_name_servers("dhcp4", list(lease.dns), domains)

    def _install_routes(self, lease):
        """Install the lease's routes: on-link ones first (RFC 3442 allows a gateway reached
        through another classless route), then the gatewayed ones whose gateway is on a
        connected subnet."""
        routes = self.host.routes
        taken = {(r.network, r.prefix_len) for r in routes.routes}
        ordered = sorted(lease.routes, key=lambda r: r[2] != dhcp4wire.ANY)
        for destination, prefix_len, gateway in ordered:
            route = Route(destination, prefix_len,
                          gateway=None if gateway == dhcp4wire.ANY else gateway,
                          source=lease.address)
            if (route.network, route.prefix_len) in taken:
                self.stats["route_kept_existing"] += 1
                continue
            if route.gateway is not None:
                via, _ = routes.lookup(route.gateway)
                if via is None or via.gateway is not None:
                    self.stats["route_gateway_not_on_link"] += 1
                    continue
            self.host.add_route(route)
            taken.add((route.network, route.prefix_len))
            self._routes.append(route)

    def _remove_routes(self):
        for route in self._routes:
            self.host.remove_route(route)
        self._routes = []

    def _changed(self):
        if self.on_change is not None:
            self.on_change()


class Dhcp4ServerService:
    """A :class:`~lwstack.proto.dhcp4_server.Dhcp4Server` on a host (UDP port 67).

    ``on_log(line)``: called with one line per message in and out, in the spirit of dnsmasq's
    log (``DHCPDISCOVER 02:00:00:00:00:0a``, ``DHCPACK 10.0.0.100 02:00:00:00:00:0a web``).
    ``on_leases_change(leases)``: called with ``{address: name}`` for the named leases in
    force whenever that set changes (a local DNS server keeps its records in step).
    """

    udp_ports = frozenset([dhcp4wire.SERVER_PORT])

    def __init__(self, server, *, on_log=None, on_leases_change=None):
        if not isinstance(server, Dhcp4Server):
            raise TypeError("server must be a Dhcp4Server")
        self.server = server
        self.on_log = on_log
        self.on_leases_change = on_leases_change
        self.outbox = []
        self._named = {}

    def receive_udp(self, src, src_port, dst, dst_port, payload, now):
        """A datagram for UDP port 67."""
        if self.on_log is not None:
            self._log_message(payload)
        self.server.receive(payload, src, now)
        self._pump(now)

    def poll(self, now):
        """Expire offers and leases."""
        self.server.poll(now)
        self._pump(now)

    def poll_at(self):
        """When the server next has work, or None."""
        return self.server.poll_at()

    def conflict(self, addr, now):
        """Not used: the server never probes."""

    def leases(self, now):
        """The leases in force: ``[(address text, MAC text, name or None, expires)]``."""
        return [(addr_to_str(b.addr), b.chaddr.hex(":"), b.hostname, b.expires)
                for b in self.server.active(now)]

    def _pump(self, now):
        for record in self.server.outbox:
            if self.on_log is not None:
                self._log_message(record[5])
            self.outbox.append(record)
        self.server.outbox.clear()
        if self.on_leases_change is not None:
            named = {b.addr: b.hostname for b in self.server.active(now) if b.hostname}
            if named != self._named:
                self._named = named
                self.on_leases_change(dict(named))

    def _log_message(self, payload):
        try:
            msg = dhcp4wire.DhcpMessage.parse(payload)
            kind = dhcp4wire.MESSAGE_NAMES.get(msg.message_type, "BOOTP")
            parts = [kind]
            address = msg.yiaddr if msg.yiaddr != dhcp4wire.ANY else msg.ciaddr
            if msg.message_type in (dhcp4wire.REQUEST, dhcp4wire.DECLINE):
                address = msg.get(dhcp4wire.OPT_REQUESTED_IP) or address
            if address != dhcp4wire.ANY:
                parts.append(addr_to_str(address))
            parts.append(msg.chaddr.hex(":"))
            name = _client_name(msg)
            if name and msg.op == dhcp4wire.BOOTREQUEST:
                parts.append(name)
        except WireError:
            return
        self.on_log(" ".join(parts))


def _client_name(msg):
    try:
        fqdn = msg.get(dhcp4wire.OPT_CLIENT_FQDN)
        return fqdn.name.rstrip(".") if fqdn else msg.get(dhcp4wire.OPT_HOST_NAME)
    except WireError:
        return None


def lease_summary(lease):
    """One line describing a lease, for tools: address, routers, DNS, domain, MTU, time."""
    parts = [f"{addr_to_str(lease.address)}/{lease.prefix_len}"]
    gateways = [addr_to_str(g) for _, width, g in lease.routes if width == 0]
    if gateways:
        parts.append("gateway " + gateways[0])
    if lease.dns:
        parts.append("dns " + ",".join(addr_to_str(a) for a in lease.dns))
    if lease.domain:
        parts.append("domain " + lease.domain)
    if lease.mtu:
        parts.append(f"mtu {lease.mtu}")
    parts.append("lease forever" if math.isinf(lease.lease_time)
                 else f"lease {lease.lease_time:g} s")
    return ", ".join(parts)
