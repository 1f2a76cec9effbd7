"""``lwstack.router.Router``: a stack that hands out network configuration to its LAN.

It is what ``lwrouter`` runs, and what tests and programs can start in-process: a
:class:`lwstack.Stack` with static addresses and, as host services (no sockets, no threads
of its own),

- a DHCPv4 server (:mod:`lwstack.proto.dhcp4_server`) for a pool inside one of the stack's
  IPv4 subnets, giving out the router as gateway (``gateway=`` to name another) and as name
  server when the DNS server runs (else the ``dns_forward`` servers), the ``domain``, the
  lease time;
- a DNS server (:mod:`lwstack.proto.dns_server`) on UDP and TCP port 53 answering for the
  router's own name (``fqdn=`` of its configuration, else ``router``), for ``host_records``
  and for every DHCP client that sent a name (host name option or FQDN, RFC 4702) while its
  lease runs, as ``NAME`` and ``NAME.DOMAIN``, with PTR records back; authoritative for
  ``domain`` (unknown names there are NXDOMAIN); anything else is forwarded to
  ``dns_forward`` (REFUSED without them).

and for IPv6 (the host's router side, :meth:`lwstack.iface.host.Host.start_router`):

- router advertisements (``ra="fd00::/64"``, :mod:`lwstack.proto.ra_server`) for the prefix,
  on-link and, for a /64, autonomous (hosts form SLAAC addresses from it), with the router's
  IPv6 address in the prefix as RDNSS when the DNS server runs and ``domain`` as DNSSL; the
  M and O flags are set when the DHCPv6 server runs;
- a DHCPv6 server (``dhcp6="FIRST-LAST"`` or ``"hash"``, :mod:`lwstack.proto.dhcp6_server`):
  IA_NA leases from the range, or the iothaddr hash address of each client's FQDN in the
  prefix (namedhcp-style), the router as name server and ``domain`` as search list, and
  the Preference option at 255 (RFC 8415 18.2.1: as the link's DHCPv6 server it lets
  clients go on at once instead of collecting advertisements for a second).  With
  the DNS server, a DHCPv6 client is named like a DHCPv4 one: by the name in its Client
  FQDN option (RFC 4704; the reply's S flag says the router did the update), else by the
  name of the DHCPv4 lease held by the MAC in its DUID (DUID-LL or DUID-LLT), while its
  lease runs: AAAA records for its IA_NA address and a PTR record in ip6.arpa.

Names in the DNS server belong to one lease per family at a time (a restarted client's new
lease takes its name over) and never override the router's own names or ``host_records``.
SLAAC addresses are not named: the router never learns them (a host forms them itself
from the advertised prefix, and nothing in DHCP reports them); a host that must be found
over IPv6 by name takes a DHCPv6 address (``dhcp6`` or ``auto`` in its configuration).

The router does not forward packets between networks: the gateway it announces is the
address clients use for everything off their subnet, as a DHCP server on a LAN's router would.
"""
import ipaddress
import random

from lwstack.iface.autoconf import Dhcp4ServerService
from lwstack.proto.dhcp6_server import Dhcp6Server
from lwstack.proto.ra_server import RaPrefix, RaServer, RouterConfig
from lwstack.wire.dhcp6 import duid_ll
from lwstack.wire.ipv6 import addr6_to_str, in_prefix, parse_prefix6, prefix_bytes
from lwstack.iface.names import DnsServerService
from lwstack.proto.dhcp4_server import BOUND as DHCP4_BOUND
from lwstack.proto.dhcp4_server import Dhcp4Server
from lwstack.proto.dns_server import DnsServer
from lwstack.stack import Stack
from lwstack.wire import WireError
from lwstack.wire import dhcp6 as dhcp6wire
from lwstack.wire.dns import TYPE_A, TYPE_AAAA, TYPE_PTR, name_key, reverse_name
from lwstack.wire.ipv4 import addr_to_int, addr_to_str, prefix_mask

DEFAULT_LEASE_TIME = 3600
DEFAULT_NAME = "router"


def parse_range(text):
    """``"10.0.0.100-10.0.0.200"`` -> ``(start, end)`` as 4-byte addresses; ValueError."""
    start, sep, end = text.partition("-")
    try:
        first = ipaddress.IPv4Address(start.strip())
        last = ipaddress.IPv4Address(end.strip()) if sep else None
    except ValueError:
        raise ValueError(f"{text}: a DHCP range is FIRST-LAST, e.g. 10.0.0.100-10.0.0.200") \
            from None
    if last is None:
        raise ValueError(f"{text}: a DHCP range is FIRST-LAST, e.g. 10.0.0.100-10.0.0.200")
    if int(first) > int(last):
        raise ValueError(f"{text}: the range's first address is after its last")
    return first.packed, last.packed


def parse_prefix(text):
    """``"fd00::/64"`` -> ``(16-byte prefix, length)``; ValueError naming the text."""
    try:
        prefix, length = parse_prefix6(text.strip())
    except ValueError:
        raise ValueError(f"{text}: an IPv6 prefix is ADDR/LEN, e.g. fd00::/64") from None
    return prefix_bytes(prefix, length), length


def parse_range6(text):
    """``"fd00::100-fd00::1ff"`` -> ``(first, last)`` 16-byte addresses, or ``"hash"``."""
    if text.strip() == "hash":
        return "hash"
    start, sep, end = text.partition("-")
    try:
        first = ipaddress.IPv6Address(start.strip())
        last = ipaddress.IPv6Address(end.strip()) if sep else None
    except ValueError:
        last = first = None
    if first is None or last is None:
        raise ValueError(f"{text}: a DHCPv6 range is FIRST-LAST (fd00::100-fd00::1ff) or hash")
    if int(first) > int(last):
        raise ValueError(f"{text}: the range's first address is after its last")
    return first.packed, last.packed


def _addr(text):
    return ipaddress.ip_address(text).packed if isinstance(text, str) else bytes(text)


def _text(address):
    return addr_to_str(address) if len(address) == 4 else addr6_to_str(address)


def _mac_of(duid):
    """The Ethernet MAC in a DUID-LL or DUID-LLT, else None."""
    try:
        parsed = dhcp6wire.parse_duid(duid)
    except WireError:
        return None
    mac = parsed.link_addr
    if parsed.hw_type != dhcp6wire.HW_TYPE_ETHERNET or mac is None or len(mac) != 6:
        return None
    return mac


class _RouterDhcp6Server(Dhcp6Server):
    """The DHCPv6 server as the router runs it: a log line per message in and out, in the
    style of dnsmasq's (``DHCPSOLICIT 02:00:00:00:00:0a web``, ``DHCPREPLY fd00::100
    02:00:00:00:00:0a``: the client's MAC from its DUID, else the DUID in hex), and
    ``on_leases_change({address: (FQDN or None, MAC or None)})`` for the bound leases
    whenever they change (the router's DNS names follow them)."""

    def __init__(self, duid, *, on_log=None, on_leases_change=None, **options):
        super().__init__(duid, **options)
        self.on_log = on_log
        self.on_leases_change = on_leases_change
        self._reported = {}

    def receive(self, payload, src, now, unicast=False):
        """As :meth:`Dhcp6Server.receive`, logging the message and the reply."""
        sent = len(self.outbox)
        if self.on_log is not None:
            self._log(payload)
        super().receive(payload, src, now, unicast)
        if self.on_log is not None:
            for record in self.outbox[sent:]:
                self._log(record[5])
        self._report(now)

    def poll(self, now):
        """As :meth:`Dhcp6Server.poll`, reporting leases that ended."""
        super().poll(now)
        self._report(now)

    def _report(self, now):
        if self.on_leases_change is None:
            return
        leases = {lease.address: (lease.fqdn, _mac_of(lease.duid)) for lease in self.active(now)}
        if leases != self._reported:
            self._reported = leases
            self.on_leases_change(dict(leases))

    def _log(self, payload):
        try:
            msg = dhcp6wire.parse_message(payload)
        except WireError:
            return
        parts = ["DHCP" + dhcp6wire.MESSAGE_NAMES[msg.msg_type]]
        server = msg.msg_type in (dhcp6wire.ADVERTISE, dhcp6wire.REPLY)
        # A server's addresses with lifetimes 0 are ones it takes back: not shown.
        parts += [addr6_to_str(a.address) for ia in msg.ia_na for a in ia.addresses
                  if a.valid or not server]
        if msg.client_id is not None:
            mac = _mac_of(msg.client_id)
            parts.append(mac.hex(":") if mac is not None else msg.client_id.hex(":"))
        if msg.fqdn is not None and msg.fqdn.name and not server:
            parts.append(msg.fqdn.name)
        self.on_log(" ".join(parts))


class Router:
    """A :class:`lwstack.Stack` on ``network`` with ``config`` (static addresses) serving DHCP
    and DNS to its LAN (see the module notes).

    ``dhcp``: the pool, ``"FIRST-LAST"`` or ``(first, last)`` (None: no DHCP server).
    ``dns``: run the DNS server.  ``domain``: the LAN's domain (DHCP option 15, the DNS zone).
    ``dns_forward``: upstream name servers (text or bytes, optionally ``(addr, port)``).
    ``host_records``: ``[(name, address)]`` static names.  ``gateway``: the default gateway
    handed out (default: the router's address in the pool's subnet).  ``lease_time`` in
    seconds.  ``log(line)``: called for each DHCP message and, with ``log_queries``, each
    DNS query (from the stack's reactor: keep it quick).  Other keyword arguments go to
    :class:`lwstack.Stack` (``rng``, ``description``, impairments ...).
    """

    def __init__(self, network, config, *, dhcp=None, dns=False, domain=None, dns_forward=(),
                 host_records=(), gateway=None, lease_time=DEFAULT_LEASE_TIME, ra=None,
                 dhcp6=None, log=None, log_queries=False, **stack_options):
        ra_prefix = parse_prefix(ra) if isinstance(ra, str) else ra
        pool6 = parse_range6(dhcp6) if isinstance(dhcp6, str) else dhcp6
        if dhcp is None and not dns and ra is None and dhcp6 is None:
            raise ValueError("nothing to serve: give a DHCP range, the DNS server, "
                             "router advertisements and/or a DHCPv6 range")
        pool = parse_range(dhcp) if isinstance(dhcp, str) else dhcp
        self.domain = domain.strip(".").lower() if domain else None
        self.log = log
        self.dns_forward = list(dns_forward)
        self.dhcp_server = None
        self.dns_server = None
        self.ra_server = None
        self.dhcp6_server = None
        self._client_names = {}             # address -> names registered for a lease
        self._static_names = set()          # name keys of the router's and host_records'
        self._named4 = {}                   # DHCPv4 address -> client name
        self._leases6 = {}                  # DHCPv6 address -> (FQDN or None, MAC or None)
        self._wanted = {}                   # 4 or 16 -> {address: name} of the last sync
        stack_options.setdefault("description", f"lwrouter {config}")
        from lwstack.sim import VirtualNetwork
        self._virtual = isinstance(network, VirtualNetwork)
        self.stack = stack = Stack(network, config, **stack_options)
        try:
            if not stack.host.interfaces and (pool is not None or dns):
                raise ValueError("the router needs a static IPv4 address (ip=ADDR/PREFIX)")
            self.name = (stack.fqdn or DEFAULT_NAME).split(".")[0]
            with stack.driver.lock:
                now = stack.driver.now()
                if dns:
                    self._start_dns(now, host_records, log_queries)
                if pool is not None:
                    self._start_dhcp(now, pool, dns, gateway, lease_time)
                if pool6 is not None:
                    self._start_dhcp6(now, pool6, ra_prefix, dns)
                if ra_prefix is not None:
                    self._start_ra(now, ra_prefix, pool6 is not None, dns)
                stack.driver.after_call()
        except BaseException:
            stack.close()
            raise

    # -- IPv6 ---------------------------------------------------------------------------------

    def _address6_in(self, prefix, length):
        """The router's static IPv6 address inside ``prefix/length``, or None."""
        for interface in self.stack.config.addresses6:
            if in_prefix(interface.address, prefix, length):
                return interface.address
        return None

    def _rng(self):
        host = self.stack.host
        return random.Random(host.rng.getrandbits(64)) if self._virtual else None

    def _start_ra(self, now, prefix, dhcp6, dns):
        network, length = prefix
        own = self._address6_in(network, length)
        if dns and own is None:
            raise ValueError(f"--ra {addr6_to_str(network)}/{length} with --dns: give the "
                             "router an address in the prefix (ip=...) to announce as DNS")
        config = RouterConfig(prefixes=[RaPrefix(network, length, autonomous=length == 64)],
                              managed=dhcp6, other=dhcp6,
                              dns_servers=[own] if dns else [],
                              domains=[self.domain] if self.domain else [])
        self.ra_server = RaServer(config, self._rng())
        self.stack.host.start_router(self.ra_server, now)

    def _start_dhcp6(self, now, pool, prefix, dns):
        host = self.stack.host
        if prefix is None:
            known = [(i.address, i.prefix_len) for i in self.stack.config.addresses6
                     if i.prefix_len < 128]
            prefix = (prefix_bytes(*known[0]), known[0][1]) if known else None
        hash_base = None
        if pool == "hash":
            if prefix is None or prefix[1] != 64:
                raise ValueError("--dhcp6 hash needs a /64 prefix (--ra or ip=ADDR/64)")
            hash_base, pool = prefix[0], None
        elif prefix is not None and not (in_prefix(pool[0], *prefix) and
                                         in_prefix(pool[1], *prefix)):
            raise ValueError("the DHCPv6 range is outside the router's IPv6 prefix")
        own = self._address6_in(*prefix) if prefix is not None else None
        server = _RouterDhcp6Server(
            duid_ll(host.mac), pool=pool, hash_base=hash_base, prefix=prefix,
            dns_servers=[own] if dns and own is not None else [],
            domains=[self.domain] if self.domain else [], register_names=dns, preference=255,
            on_log=self.log, on_leases_change=self._leases6_changed if dns else None)
        self.dhcp6_server = host.start_dhcp6_server(server, now)

    # -- IPv4 services ------------------------------------------------------------------------

    def _interface_for(self, addr):
        value = addr_to_int(addr)
        for interface in self.stack.host.interfaces:
            if value & prefix_mask(interface.prefix_len) == interface.network:
                return interface
        raise ValueError(f"{addr_to_str(addr)} is not in a subnet of the router "
                         f"({', '.join(self.stack.addresses)})")

    def _start_dhcp(self, now, pool, dns, gateway, lease_time):
        first, last = _addr(pool[0]), _addr(pool[1])
        interface = self._interface_for(first)
        self._interface_for(last)
        gateway = _addr(gateway) if gateway is not None else interface.address
        if dns:
            name_servers = [interface.address]
        else:
            name_servers = [_addr(s[0] if isinstance(s, tuple) else s) for s in self.dns_forward]
            name_servers = [s for s in name_servers if len(s) == 4]
        server = Dhcp4Server(interface.address, interface.prefix_len, first, last,
                             routers=(gateway,), dns=tuple(name_servers), domain=self.domain,
                             lease_time=lease_time)
        self.dhcp_server = Dhcp4ServerService(
            server, on_log=self.log,
            on_leases_change=self._leases_changed if dns else None)
        self.stack.host.add_service(self.dhcp_server, now)

    def _start_dns(self, now, host_records, log_queries):
        host = self.stack.host
        # Forwarded query ids and ports must be unpredictable (RFC 5452): the system's
        # randomness, except on a virtual network (reproducible runs).
        rng = random.Random(host.rng.getrandbits(64)) if self._virtual else None
        server = DnsServer(upstreams=self.dns_forward, rng=rng)
        if self.domain:
            server.add_zone(self.domain)
        addresses = [i.address for i in host.interfaces] + \
            [i.address for i in self.stack.config.addresses6]
        for name in self._names(self.name):
            server.add_host(name, addresses, ptr=False)
            self._static_names.add(name_key(name))
        for address in addresses:
            server.add_ptr(address, self._names(self.name)[-1])
        for name, address in host_records:
            for full in self._names(name):
                server.add_host(full, [_addr(address)], ptr=False)
                self._static_names.add(name_key(full))
            server.add_ptr(_addr(address), self._names(name)[-1])
        self.dns_server = DnsServerService(host, server, now,
                                           on_log=self.log if log_queries else None)
        host.add_service(self.dns_server, now)

    def _names(self, name):
        """The names a host is known by: ``name`` and, with a domain, ``name.domain`` (the
        last is the canonical one, which PTR records give).  A client's FQDN in another
        domain is taken by its first label, as dnsmasq does."""
        name = name.strip(".").lower()
        if not self.domain:
            return [name]
        short = name.split(".")[0]
        return [short, f"{short}.{self.domain}"]

    def _leases_changed(self, named):
        """The DHCPv4 server's named leases changed (``{address: name}``): keep the A and
        PTR records in step, and the AAAA records named after a DHCPv4 lease's MAC."""
        self._named4 = dict(named)
        self._sync_names(4, named)
        if self._leases6:
            self._sync_names(16, self._wanted6())

    def _leases6_changed(self, leases):
        """The DHCPv6 server's leases changed (``{address: (FQDN or None, MAC or None)}``):
        keep the AAAA and PTR records in step."""
        self._leases6 = dict(leases)
        self._sync_names(16, self._wanted6())

    def _wanted6(self):
        """``{address: name}`` for the DHCPv6 leases: the FQDN the client sent, else the
        name of a DHCPv4 lease held by the MAC of its DUID."""
        by_mac = {}
        if self.dhcp_server is not None:
            bindings = self.dhcp_server.server.bindings.values()
            by_mac = {b.chaddr: self._named4[b.addr] for b in bindings
                      if b.state == DHCP4_BOUND and b.addr in self._named4}
        wanted = {}
        for address, (fqdn, mac) in self._leases6.items():
            name = fqdn or by_mac.get(mac)
            if name:
                wanted[address] = name
        return wanted

    def _sync_names(self, size, wanted):
        """Make the client records of one family (``size``: 4 or 16 bytes) say ``wanted``
        (``{address: name}``).  A lease new to its name takes the name over from an older
        lease of the family; the older one gets it back if the newer one ends first."""
        previous = self._wanted.get(size, {})
        self._wanted[size] = dict(wanted)
        for address, names in list(self._client_names.items()):
            if len(address) == size and (wanted.get(address) is None
                                         or self._names(wanted[address]) != names):
                self._unregister(address)
        for take_over in (True, False):
            for address, hostname in wanted.items():
                if address not in self._client_names and \
                        (not take_over or previous.get(address) != hostname):
                    self._register(address, hostname, take_over)

    def _register(self, address, hostname, take_over):
        server = self.dns_server.server
        rtype = TYPE_A if len(address) == 4 else TYPE_AAAA
        try:
            names = self._names(hostname)
            keys = [name_key(name) for name in names]
        except ValueError:
            return                              # not a usable DNS name
        if any(key in self._static_names for key in keys):
            if take_over and self.log is not None:
                self.log(f"DNS {names[-1]} not given to {_text(address)}: a static name")
            return
        holders = [other for other, taken in self._client_names.items()
                   if len(other) == len(address) and {name_key(n) for n in taken} & set(keys)]
        if holders and not take_over:
            return
        for other in holders:                   # one lease of a family has a name at a time
            self._unregister(other)
        try:
            for name in names:
                server.add_record(name, rtype, address)
            server.add_ptr(address, names[-1])
        except ValueError:                      # a bad name, or the record table is full
            for name in names:
                server.remove(name, rtype, address)
            return
        self._client_names[address] = names
        if self.log is not None:
            self.log(f"DNS {names[-1]} -> {_text(address)}")

    def _unregister(self, address):
        server = self.dns_server.server
        names = self._client_names.pop(address)
        for name in names:
            server.remove(name, TYPE_A if len(address) == 4 else TYPE_AAAA, address)
        server.remove(reverse_name(address), TYPE_PTR, names[-1])

    # -- use ----------------------------------------------------------------------------------

    def leases(self):
        """The DHCP leases in force: ``[(address, MAC, name or None, expires)]``."""
        if self.dhcp_server is None:
            return []
        with self.stack.driver.lock:
            return self.dhcp_server.leases(self.stack.driver.now())

    def describe(self):
        """One line saying what this router serves."""
        # The configured addresses: IPv6 ones may still be in DAD (not in stack.addresses).
        addresses = [a for a in self.stack.addresses if ":" not in a] + \
            [f"{addr6_to_str(i.address)}/{i.prefix_len}" for i in self.stack.config.addresses6]
        parts = [f"{', '.join(addresses)} ({self.stack.mac})"]
        if self.dhcp_server is not None:
            server = self.dhcp_server.server
            parts.append(f"DHCP {addr_to_str(server._first.to_bytes(4, 'big'))}-"
                         f"{addr_to_str(server._last.to_bytes(4, 'big'))} lease "
                         f"{server.lease_time} s, gateway {addr_to_str(server.routers[0])}")
        if self.ra_server is not None:
            config = self.ra_server.config
            flags = "".join(f for f, on in ((" M", config.managed), (" O", config.other)) if on)
            parts.append("RA " + ", ".join(f"{addr6_to_str(p.prefix)}/{p.prefix_len}"
                                           for p in config.prefixes) + flags)
        if self.dhcp6_server is not None:
            server = self.dhcp6_server.server
            if server.pool is not None:
                parts.append(f"DHCPv6 {addr6_to_str(server.pool[0])}-"
                             f"{addr6_to_str(server.pool[1])}")
            else:
                parts.append(f"DHCPv6 hash addresses in {addr6_to_str(server.hash_base)}/64")
        if self.dns_server is not None:
            forward = ", ".join(addr_to_str(a) if len(a) == 4 else str(ipaddress.ip_address(a))
                                for a, _ in self.dns_server.server.upstreams)
            parts.append(f"DNS as {self._names(self.name)[-1]}"
                         + (f", domain {self.domain}" if self.domain else "")
                         + (f", forwarding to {forward}" if forward else ""))
        return "; ".join(parts)

    def close(self):
        """Stop serving and close the stack."""
        self.stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
