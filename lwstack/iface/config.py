"""Stack configuration strings in libioth's iothconf syntax.

``"eth,ip=10.0.0.2/24,ip=fd00::2/64,gw=10.0.0.1,gw=fd00::1,dns=10.0.0.1,domain=lan,
mac=02:00:00:00:00:02,mtu=1500,fqdn=web.lan,dhcp,dhcp6,rd,slaac"``: a comma separated list of
``key`` or ``key=value`` items.  ``ip=``, ``gw=`` (one per family), ``dns=`` and ``domain=``
may repeat; addresses of either family go in the same items, as in iothconf.

Automatic configuration (issue 4):

- ``dhcp``: a DHCPv4 client; ``dhcp6``: a DHCPv6 client (stateful, IA_NA; a router's
  advertisement may still ask for stateless only); ``rd``: router discovery (IPv6 default
  routers, on-link prefixes, RA-given DNS); ``slaac``: addresses from the advertised prefixes
  (implies ``rd``).
- ``auto4`` = ``dhcp``; ``auto6`` = ``dhcp6,rd,slaac``; ``auto`` = both.  (iothconf's
  ``auto6`` is ``dhcp6,rd``; lwstack also takes SLAAC addresses there, as a laptop does.)

Interface identifiers (the low 64 bits of the link-local and SLAAC addresses):

- ``iid=eui64``: modified EUI-64 from the MAC (RFC 4291 appendix A);
- ``iid=hash``: the MD5 of ``fqdn=`` as iothaddr makes it (needs ``fqdn=``); anybody who knows
  the name knows the address;
- ``iid=stable``: stable privacy identifiers (RFC 7217): SHA-256 over the prefix, Net_Iface,
  Network_ID, the DAD counter and a secret key.  lwstack's Net_Iface is the interface's MAC
  (RFC 7217 appendix A's link-layer address, as Linux does), so stacks that share a secret
  still get different addresses; Network_ID is empty (optional in section 5: a virtual switch
  has nothing like an SSID, and the prefix already tells networks apart).  The key is
  ``secret=TEXT`` hashed with SHA-256 (256 bits; section 5 asks for 128 at least): a stack
  restarted elsewhere with the same ``secret=`` and the same ``mac=`` gets the same addresses
  on the same prefixes.  Without ``secret=`` the key is drawn from the stack's random
  generator, so the addresses are stable only for the life of the stack.  A duplicate found
  by DAD is retried with the next DAD counter, a new address, up to IDGEN_RETRIES times
  (RFC 7217 section 6).

Without ``iid=`` the identifiers are ``hash`` when ``fqdn=`` is given, else ``eui64``; with
those two a duplicate address is final (RFC 4862 5.4.5: a duplicate link-local address turns
IPv6 off).  ``secret=`` without ``iid=stable``, and ``iid=hash`` without ``fqdn=``, are
refused.

Unknown items, and values that do not parse, raise ``ValueError`` naming the item, so a
configuration never silently means less than it says.
"""
import hashlib

from lwstack.wire.ethernet import parse_mac
from lwstack.wire.ipv4 import addr_to_int, parse_addr, prefix_mask
from lwstack.wire.ipv6 import addr6_to_str, parse_addr6

#: Items that are flags (no value) and what each switches on.
FLAGS = {
    "dhcp": ("dhcp",),
    "dhcp6": ("dhcp6",),
    "rd": ("rd",),
    "slaac": ("rd", "slaac"),
    "auto4": ("dhcp",),
    "auto6": ("dhcp6", "rd", "slaac"),
    "auto": ("dhcp", "dhcp6", "rd", "slaac"),
}
#: The interface identifier generators ``iid=`` names (see the module notes).
IID_METHODS = ("eui64", "stable", "hash")
#: What parses but the stack does not act on yet (issue 4 in progress): refused by
#: :func:`check_supported` rather than silently ignored.  Entries leave as they are wired in.
NOT_YET = set()
DEFAULT_MTU = 1500
MIN_MTU = 68
#: The largest frame vdeplug4 carries is 9234 bytes: 14 of header leave 9220, but we keep the
#: conventional 9216 jumbo MTU (vde-protocol.md).
MAX_MTU = 9216


class Interface:
    """One configured IPv4 address: ``address`` (4 bytes) and its ``prefix_len``."""

    __slots__ = ("address", "prefix_len")

    def __init__(self, address, prefix_len):
        self.address = address
        self.prefix_len = prefix_len

    @property
    def network(self):
        """The network number as an int."""
        return addr_to_int(self.address) & prefix_mask(self.prefix_len)

    @property
    def broadcast(self):
        """The subnet-directed broadcast address (4 bytes)."""
        host_bits = ~prefix_mask(self.prefix_len) & 0xFFFFFFFF
        return (self.network | host_bits).to_bytes(4, "big")

    def __eq__(self, other):
        return (isinstance(other, Interface) and self.address == other.address
                and self.prefix_len == other.prefix_len)

    def __repr__(self):
        return f"Interface({'.'.join(map(str, self.address))}/{self.prefix_len})"


class Interface6:
    """One configured IPv6 address: ``address`` (16 bytes) and its ``prefix_len``."""

    __slots__ = ("address", "prefix_len")

    def __init__(self, address, prefix_len):
        self.address = address
        self.prefix_len = prefix_len

    def __eq__(self, other):
        return (isinstance(other, Interface6) and self.address == other.address
                and self.prefix_len == other.prefix_len)

    def __repr__(self):
        return f"Interface6({addr6_to_str(self.address)}/{self.prefix_len})"


class StackConfig:
    """The parsed configuration of a stack.

    ``addresses`` (IPv4 :class:`Interface`) and ``addresses6`` (:class:`Interface6`) are the
    static addresses; ``gateway`` (4 bytes) and ``gateway6`` (16 bytes) the static default
    routes; ``dns`` name servers (4 or 16 bytes each) and ``domains`` search domains given
    statically; ``dhcp``, ``dhcp6``, ``rd`` and ``slaac`` the automatic configuration asked
    for (see the module notes).  ``iid`` is the interface identifier generator asked for
    (``"eui64"``, ``"stable"``, ``"hash"``, or None for the default, see :attr:`iid_method`)
    and ``secret_key`` the RFC 7217 key made from ``secret=`` (32 bytes, or None).
    """

    def __init__(self, mac=None, addresses=(), gateway=None, mtu=DEFAULT_MTU, fqdn=None,
                 addresses6=(), gateway6=None, dns=(), domains=(), dhcp=False, dhcp6=False,
                 rd=False, slaac=False, iid=None, secret_key=None):
        self.mac = mac
        self.addresses = list(addresses)
        self.gateway = gateway
        self.mtu = mtu
        self.fqdn = fqdn
        self.addresses6 = list(addresses6)
        self.gateway6 = gateway6
        self.dns = list(dns)
        self.domains = list(domains)
        self.dhcp = dhcp
        self.dhcp6 = dhcp6
        self.rd = rd
        self.slaac = slaac
        self.iid = iid
        self.secret_key = secret_key

    @property
    def iid_method(self):
        """The interface identifier generator in force: ``iid=`` if given, else ``"hash"``
        with an ``fqdn``, else ``"eui64"``."""
        if self.iid is not None:
            return self.iid
        return "hash" if self.fqdn else "eui64"

    @property
    def automatic(self):
        """True if any automatic configuration was asked for."""
        return self.dhcp or self.dhcp6 or self.rd or self.slaac

    def __repr__(self):
        auto = [name for name in ("dhcp", "dhcp6", "rd", "slaac") if getattr(self, name)]
        return (f"StackConfig(mac={self.mac.hex(':') if self.mac else None}, "
                f"addresses={self.addresses + self.addresses6}, "
                f"gateway={'.'.join(map(str, self.gateway)) if self.gateway else None}, "
                f"gateway6={addr6_to_str(self.gateway6) if self.gateway6 else None}, "
                f"mtu={self.mtu}, auto={auto}, iid={self.iid_method})")


def parse_config(text):
    """Parse an iothconf string into a :class:`StackConfig`; ``ValueError`` on any mistake."""
    config = StackConfig()
    if text is None:
        return config
    if not isinstance(text, str):
        raise TypeError(f"configuration must be a string, not {type(text).__name__}")
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        value = value.strip()
        if key in ("eth", "iface", "stack"):
            continue  # one Ethernet interface per stack: nothing to choose yet
        if key in FLAGS:
            if sep:
                raise ValueError(f"configuration item {key!r} takes no value")
            for flag in FLAGS[key]:
                setattr(config, flag, True)
            continue
        if not sep or not value:
            raise ValueError(f"configuration item {key!r} needs a value ({key}=...)")
        if key == "ip":
            interface = _parse_interface(value)
            if isinstance(interface, Interface6):
                config.addresses6.append(interface)
            else:
                config.addresses.append(interface)
        elif key == "gw":
            if ":" in value:
                config.gateway6 = _parse_addr6(value, "gw")
            else:
                config.gateway = parse_addr(value)
        elif key == "dns":
            config.dns.append(_parse_addr6(value, "dns") if ":" in value else parse_addr(value))
        elif key == "domain":
            config.domains.append(value.rstrip(".").lower())
        elif key == "mac":
            config.mac = parse_mac(value)
            if config.mac[0] & 1:
                raise ValueError(f"mac={value}: a multicast address cannot be a host's MAC")
        elif key == "mtu":
            if not _is_decimal(value) or not MIN_MTU <= int(value) <= MAX_MTU:
                raise ValueError(f"mtu={value}: must be an integer from {MIN_MTU} to {MAX_MTU}")
            config.mtu = int(value)
        elif key == "fqdn":
            config.fqdn = value.rstrip(".")
        elif key == "iid":
            if value.lower() not in IID_METHODS:
                raise ValueError(f"iid={value}: must be one of " + ", ".join(IID_METHODS))
            config.iid = value.lower()
        elif key == "secret":
            config.secret_key = secret_key(value)
        else:
            raise ValueError(f"unknown configuration item {key!r}")
    if config.secret_key is not None and config.iid != "stable":
        raise ValueError("secret=: the key of stable privacy identifiers, used only with "
                         "iid=stable")
    if config.iid == "hash" and not config.fqdn:
        raise ValueError("iid=hash: hash identifiers are made from the name: give fqdn= too")
    if config.gateway is not None and not any(
            addr_to_int(config.gateway) & prefix_mask(i.prefix_len) == i.network
            for i in config.addresses):
        raise ValueError(f"gateway {'.'.join(map(str, config.gateway))} is not on a "
                         "configured subnet")
    return config


def check_supported(config):
    """``ValueError`` naming the first item of ``config`` the stack cannot act on yet."""
    present = {
        "dhcp": config.dhcp, "dhcp6": config.dhcp6, "rd": config.rd, "slaac": config.slaac,
        "ipv6": bool(config.addresses6) or config.gateway6 is not None,
        "dns": bool(config.dns), "domain": bool(config.domains),
    }
    for item, wanted in present.items():
        if wanted and item in NOT_YET:
            what = "IPv6 addresses and gateways" if item == "ipv6" else f"configuration item {item!r}"
            raise ValueError(f"{what}: not supported yet")


def _is_decimal(text):
    """ASCII digits only: str.isdigit() also accepts "\u00b2", on which int() then fails."""
    return text.isascii() and text.isdigit()


def _parse_addr6(value, key):
    try:
        return parse_addr6(value)
    except ValueError:
        raise ValueError(f"{key}={value}: invalid IPv6 address") from None


def _parse_interface(value):
    address, _, prefix = value.partition("/")
    if ":" in address:
        if not _is_decimal(prefix) or int(prefix) > 128:
            raise ValueError(f"ip={value}: give the prefix length, e.g. ip={address}/64")
        return Interface6(_parse_addr6(address, "ip"), int(prefix))
    if not _is_decimal(prefix) or int(prefix) > 32:
        raise ValueError(f"ip={value}: give the prefix length, e.g. ip={address}/24")
    return Interface(parse_addr(address), int(prefix))


def secret_key(text):
    """The RFC 7217 secret key of ``secret=TEXT``: SHA-256 of the text (UTF-8), 32 bytes."""
    return hashlib.sha256(text.encode()).digest()


def random_mac(rng):
    """A random locally administered unicast MAC, from a ``random.Random``-like ``rng``."""
    mac = bytearray(rng.getrandbits(8) for _ in range(6))
    mac[0] = (mac[0] | 0x02) & 0xFE
    return bytes(mac)


def stable_mac(seed_text):
    """A locally administered unicast MAC derived from text (e.g. the fqdn), stable across runs."""
    digest = hashlib.md5(seed_text.encode()).digest()
    mac = bytearray(digest[i] for i in (0, 1, 2, 5, 6, 7))
    mac[0] = (mac[0] | 0x02) & 0xFE
    return bytes(mac)
