"""``lwstack.Stack``: a network identity (MAC, addresses, routes) owned by a program or thread."""
import atexit
import random
import secrets
import threading
import time
import weakref

from lwstack.iface.autoconf import VIRTUAL_LINK_ACD, Dhcp4Service
from lwstack.iface.config import check_supported, parse_config
from lwstack.iface.host import Host
from lwstack.iface.names import ResolverService
from lwstack.proto.tcp.table import OWING_STATES
from lwstack.runtime import ThreadedDriver
from lwstack.wire.ethernet import mac_to_str
from lwstack.wire.ipv4 import addr_to_str
from lwstack.wire.ipv6 import addr6_to_str

_thread_default = threading.local()
#: Seconds :meth:`Stack.close` lets TCP connections finish delivering (see there).
CLOSE_TIMEOUT = 5.0
#: Seconds :meth:`Stack.close` waits for the DHCPRELEASE to find the server's MAC (ARP).
RELEASE_TIMEOUT = 1.0
#: Stacks not closed yet; closed at interpreter exit so queued TCP data is not lost.
_open_stacks = weakref.WeakSet()


@atexit.register
def _close_open_stacks():
    for stack in list(_open_stacks):
        try:
            stack.close()
        except Exception:  # noqa: BLE001 (exiting: one stack must not keep the others open)
            pass


class Stack:
    """A userspace TCP/IP stack plugged into a virtual Ethernet switch.

    ``network`` says where to plug in:

    - a vdeplug4 locator string: ``"vde:///tmp/sw"``, ``"vde:///tmp/sw[3]"``, or ``""``/None
      for the default switch;
    - a :class:`vde.memory.MemorySwitch` (a new port is plugged) or one of its ports;
    - a :class:`lwstack.sim.VirtualNetwork` (virtual time, for tests).

    ``config`` is an iothconf string: ``"eth,ip=10.0.0.2/24,gw=10.0.0.1,mac=...,mtu=..."``,
    or with automatic configuration ``"dhcp"`` (see :meth:`wait_configured`).
    ``port_options`` are passed to the in-memory switch port (impairments).
    ``acd``: the RFC 5227 timings of the DHCP client's address probe
    (:data:`lwstack.iface.autoconf.VIRTUAL_LINK_ACD` by default; the RFC's are
    :class:`lwstack.proto.dhcp4.ConflictDetection`).  ``hosts``: a
    :class:`~lwstack.proto.hosts.HostsTable` the resolver consults before DNS;
    ``resolver_options``: keyword arguments for :class:`lwstack.proto.dns.Resolver`
    (``timeout``, ``attempts``, ``ndots``, ...).  ``driver_factory(phy)`` makes what drives
    the stack on a real-time network (default: :class:`~lwstack.runtime.ThreadedDriver`, a
    reactor thread; :class:`lwstack.asyncio.AsyncioStack` passes its event-loop driver).
    Close the stack (or use it as a context manager) to release its switch port.
    """

    def __init__(self, network=None, config="", *, description=None, rng=None,
                 timeout=5.0, acd=VIRTUAL_LINK_ACD, hosts=None, resolver_options=None,
                 driver_factory=None, **port_options):
        from lwstack.sim import VirtualNetwork  # avoid importing the simulator eagerly
        from vde.memory import MemoryPort, MemorySwitch

        self.config = parse_config(config)
        check_supported(self.config)
        description = description or f"lwstack {config}"
        if isinstance(network, VirtualNetwork):
            driver = network.attach(description=description, **port_options)
            rng = rng or random.Random(network.rng.getrandbits(64))
        else:
            if isinstance(network, MemorySwitch):
                network = network.plug(description=description, **port_options)
            elif port_options:
                raise TypeError("impairment options apply to in-memory switches only: "
                                + ", ".join(sorted(port_options)))
            if isinstance(network, MemoryPort):
                from lwstack.phy.memory import MemoryPhy
                phy = MemoryPhy(network, time.monotonic)
            elif network is None or isinstance(network, str):
                from lwstack.phy.vdeplug import PlugPhy
                phy = PlugPhy(network or "", description=description, timeout=timeout)
            else:
                raise TypeError("network must be a locator string, a MemorySwitch, a MemoryPort "
                                f"or a VirtualNetwork, not {type(network).__name__}")
            driver = ThreadedDriver(phy) if driver_factory is None else driver_factory(phy)
            if self.config.iid == "stable" and self.config.secret_key is None:
                # RFC 7217 section 5 (and RFC 4086): the key must be unpredictable, which a
                # seeded random.Random is not; virtual networks keep their seeded key.
                self.config.secret_key = secrets.token_bytes(32)
        self.driver = driver
        self.dhcp4 = None
        with driver.lock:
            self.host = Host(self.config, driver.now(), rng=rng)
            # Address changes wake threads waiting on the stack (wait_ipv6_configured).
            self.host.on_ipv6_change = lambda: driver.endpoint_changed(None)
            driver.attach(self.host)
            self._start_services(driver.now(), rng, acd, hosts, resolver_options or {})
        _open_stacks.add(self)

    def _start_services(self, now, rng, acd, hosts, resolver_options):
        """The resolver always; the DHCPv4 client with ``dhcp`` (under the driver lock)."""
        host = self.host
        config = self.config
        host.set_name_servers("static", config.dns, config.domains)
        # Query ids and ports must be unpredictable (RFC 5452): the system's randomness,
        # except on a virtual network, whose runs are reproducible from its seed.
        resolver_rng = random.Random(rng.getrandbits(64)) if rng is not None else None
        self.resolver = ResolverService(host, rng=resolver_rng, hosts=hosts,
                                        **resolver_options)
        if config.dhcp:
            self.dhcp4 = Dhcp4Service(host, host.rng, fqdn=config.fqdn, acd=acd,
                                      max_mtu=config.mtu, on_change=self._configuration_changed)
            host.add_service(self.dhcp4, now)
            self.dhcp4.start(now)
            host.drain_service(self.dhcp4, now)
        self.driver.after_call()

    def _configuration_changed(self):
        self.driver.endpoint_changed(None)        # wake threads in wait_configured

    # -- identity --------------------------------------------------------------------------

    @property
    def mac(self):
        """The interface's MAC address as text."""
        return mac_to_str(self.host.mac)

    @property
    def addresses(self):
        """Usable addresses with prefix lengths, IPv4 first, then IPv6 (link-local first), e.g.
        ``['10.0.0.2/24', 'fe80::ff:fe00:2/64', 'fd00::2/64']``; IPv6 addresses still in
        duplicate address detection are not listed (see :attr:`ipv6_addresses`)."""
        with self.driver.lock:
            host = self.host
            found = [f"{addr_to_str(i.address)}/{i.prefix_len}" for i in host.interfaces]
            usable = [a for a in host.ipv6_addresses() if a.state != "tentative"]
        usable.sort(key=lambda a: a.origin != "link-local")
        return found + [f"{addr6_to_str(a.addr)}/{a.prefix_len}" for a in usable]

    @property
    def ipv6_addresses(self):
        """Every IPv6 address with its state and origin: ``[(address/len, state, origin)]``,
        state ``"tentative"`` (DAD running), ``"preferred"`` or ``"deprecated"``, origin
        ``"link-local"``, ``"manual"`` (``ip=``), ``"slaac"`` or ``"dhcpv6"``."""
        with self.driver.lock:
            return [(f"{addr6_to_str(a.addr)}/{a.prefix_len}", a.state, a.origin)
                    for a in self.host.ipv6_addresses()]

    @property
    def link_local(self):
        """The IPv6 link-local address as text, or None before it passed DAD."""
        with self.driver.lock:
            addr = self.host.link_local
        return addr6_to_str(addr) if addr is not None else None

    @property
    def ipv6_configured(self):
        """True once IPv6 is as the configuration asked
        (:meth:`lwstack.iface.host.Host.ipv6_configured` says what that means)."""
        with self.driver.lock:
            return self.host.ipv6_configured()

    def wait_ipv6_configured(self, timeout=None):
        """Block until :attr:`ipv6_configured` (True) or ``timeout`` seconds (False); on a
        :class:`~lwstack.sim.VirtualNetwork` the seconds are virtual."""
        host = self.host
        with self.driver.lock:
            try:
                return self.driver.wait_for(
                    lambda: host.ipv6_configured() or self.driver.closed, timeout) \
                    and host.ipv6_configured()
            except RuntimeError:          # a virtual network with nothing left to run
                return host.ipv6_configured()

    @property
    def mtu(self):
        """The interface MTU."""
        return self.host.mtu

    @property
    def fqdn(self):
        """The stack's name (``fqdn=`` in the configuration), or None."""
        return self.config.fqdn

    @property
    def hosts(self):
        """The static name table (a :class:`~lwstack.proto.hosts.HostsTable`) the resolver
        consults before DNS; assign a new one to replace it."""
        return self.resolver.hosts

    @hosts.setter
    def hosts(self, table):
        with self.driver.lock:
            self.resolver.hosts = table

    def name_servers(self):
        """``(servers, search domains)`` the resolver uses now, as text."""
        import ipaddress
        with self.driver.lock:
            servers, domains = self.host.all_name_servers()
        return [str(ipaddress.ip_address(s)) for s in servers], list(domains)

    # -- automatic configuration -----------------------------------------------------------

    def _pending_configuration(self):
        """What the configuration still waits for (empty when configured): one line per
        family, so a family joins with one line."""
        pending = []
        if self.dhcp4 is not None and not self.dhcp4.configured:
            pending.append(f"DHCPv4 lease ({self.dhcp4.state})")
        if self.host.ipv6_wanted:
            missing = self.host.ipv6_pending()
            if missing is not None:
                pending.append(missing)
        return pending

    @property
    def configured(self):
        """True when everything the configuration asked for is in place (static IPv4 items
        at once; a DHCPv4 lease once bound; IPv6, when the configuration mentions it, as
        :meth:`lwstack.iface.host.Host.ipv6_configured` says)."""
        with self.driver.lock:
            return not self._pending_configuration()

    def wait_configured(self, timeout=None):
        """Block until :attr:`configured` (``timeout`` seconds at most, None: no limit;
        virtual seconds on a :class:`~lwstack.sim.VirtualNetwork`).  Raises ``TimeoutError``
        naming what is missing, or ``OSError(ENETDOWN)`` if the stack closes meanwhile."""
        import errno
        import os
        driver = self.driver
        with driver.lock:
            if driver.closed:
                raise OSError(errno.ENETDOWN, os.strerror(errno.ENETDOWN))
            done = driver.wait_for(lambda: driver.closed or not self._pending_configuration(),
                                   timeout)
            if driver.closed:
                raise OSError(errno.ENETDOWN, os.strerror(errno.ENETDOWN))
            if not done:
                raise TimeoutError("not configured within %g s: waiting for %s"
                                   % (timeout, ", ".join(self._pending_configuration())))
        return self

    def stats(self):
        """A snapshot of the stack's counters (frames, drops by reason, ...)."""
        with self.driver.lock:
            host = self.host
            counters = dict(host.stats)
            for prefix, part in (("arp", host.arp), ("nd", host.nd), ("slaac", host.slaac),
                                 ("mld", host.mld), ("frag", host.fragments),
                                 ("pmtu", host.pmtu)):
                counters.update({f"{prefix}.{k}": v for k, v in part.stats.items()})
        return counters

    # -- sockets ---------------------------------------------------------------------------

    def socket(self, family=None, type=None, proto=0):
        """A socket on this stack, like :func:`socket.socket` (AF_INET by default; AF_INET6
        too; SOCK_DGRAM by default)."""
        from lwstack import socket as lwsocket
        return lwsocket.socket(family if family is not None else lwsocket.AF_INET,
                               type if type is not None else lwsocket.SOCK_DGRAM,
                               proto, stack=self)

    # -- default stack per thread ------------------------------------------------------------

    def make_default(self):
        """Make this the stack used by :mod:`lwstack.socket` in the current thread."""
        _thread_default.stack = self
        return self

    def as_default(self):
        """Context manager: this stack is the thread's default inside the ``with`` block."""
        return _DefaultStack(self)

    # -- life --------------------------------------------------------------------------------

    @property
    def closed(self):
        """True once :meth:`close` has run."""
        return self.driver.closed

    def close(self, timeout=CLOSE_TIMEOUT):
        """Stop the stack and release its switch port.

        TCP first finishes the way the kernel finishes an exiting process's connections: every
        socket still open is closed (FIN after its queued data; RST if it has unread data),
        listeners stop, and the stack waits up to ``timeout`` seconds (virtual ones on a
        :class:`~lwstack.sim.VirtualNetwork`) until no connection still owes its peer data or
        a FIN.  What is left then is reset, so no peer waits forever.  After closing, the
        stack's sockets fail with ENETDOWN (the network they lived on is gone); a closed socket
        itself fails with EBADF.  A DHCPv6 client releases its addresses and a router sends
        its final advertisement (:meth:`lwstack.iface.host.Host.stop_ipv6`) before the port
        is released.
        """
        driver = self.driver
        if driver.closed:
            return
        tcp = self.host.tcp
        with driver.lock:
            now = driver.now()
            for listener in list(tcp.listeners.values()):
                listener.close(now)
            for conn in list(tcp.connections.values()):
                if not conn.orphaned:
                    conn.close(now)
            driver.after_call()
            if timeout and tcp.owes_data():
                try:
                    driver.wait_for(lambda: driver.closed or not tcp.owes_data(), timeout)
                except RuntimeError:      # a virtual network with nothing left to run
                    pass
            now = driver.now()
            for conn in list(tcp.connections.values()):
                if conn.state in OWING_STATES:
                    conn.abort(now)
            self.host.stop_ipv6(now)          # DHCPv6 RELEASE, a router's final RA
            driver.flush()
            self._stop_dhcp(driver)
        driver.close()
        _open_stacks.discard(self)
        if getattr(_thread_default, "stack", None) is self:
            _thread_default.stack = None

    def _stop_dhcp(self, driver):
        """RELEASE the lease (RFC 2131 section 4.4.6), letting ARP find the server's MAC
        for up to RELEASE_TIMEOUT seconds so the message leaves before the port closes."""
        if self.dhcp4 is None or driver.closed:
            return
        host = self.host
        now = driver.now()
        self.dhcp4.stop(now)
        host.drain_service(self.dhcp4, now)
        driver.after_call()
        arp = host.arp

        def sent():
            return driver.closed or not any(e.pending for e in arp.entries.values())
        # ARP progress wakes no waiter, so look again every 20 ms.
        deadline = driver.now() + RELEASE_TIMEOUT
        try:
            while not sent() and driver.now() < deadline:
                driver.wait_for(sent, 0.02)
        except RuntimeError:          # a virtual network with nothing left to run
            pass
        driver.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else ", ".join(self.addresses) or "no address"
        return f"<lwstack.Stack {self.mac} {state}>"


class _DefaultStack:
    def __init__(self, stack):
        self.stack = stack
        self.previous = None

    def __enter__(self):
        self.previous = getattr(_thread_default, "stack", None)
        _thread_default.stack = self.stack
        return self.stack

    def __exit__(self, *exc_info):
        _thread_default.stack = self.previous


def default_stack():
    """The current thread's default stack; ``OSError(ENETDOWN)`` if there is none."""
    stack = getattr(_thread_default, "stack", None)
    if stack is None or stack.closed:
        import errno
        import os
        raise OSError(errno.ENETDOWN, os.strerror(errno.ENETDOWN) +
                      ": no lwstack.Stack is the default for this thread "
                      "(call stack.make_default() or pass stack=)")
    return stack
