"""Stack configuration strings in libioth's iothconf syntax.

``"eth,ip=10.0.0.2/24,gw=10.0.0.1,mac=02:00:00:00:00:02,mtu=1500,fqdn=web.lan"``: a comma
separated list of ``key`` or ``key=value`` items.  ``ip=`` may repeat.  Items that iothconf knows
but lwstack does not implement yet (``dhcp``, ``slaac``, IPv6 addresses, ...) are refused with a
clear error rather than ignored, so a configuration never silently means less than it says.
"""
import hashlib

from lwstack.wire.ethernet import parse_mac
from lwstack.wire.ipv4 import addr_to_int, parse_addr, prefix_mask

#: iothconf items that later issues implement; refused with this message until then.
NOT_YET = {"dhcp", "dhcp6", "rd", "slaac", "auto", "auto4", "auto6", "dns", "domain"}
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


class StackConfig:
    """The parsed configuration of a stack."""

    def __init__(self, mac=None, addresses=(), gateway=None, mtu=DEFAULT_MTU, fqdn=None):
        self.mac = mac
        self.addresses = list(addresses)
        self.gateway = gateway
        self.mtu = mtu
        self.fqdn = fqdn

    def __repr__(self):
        return (f"StackConfig(mac={self.mac.hex(':') if self.mac else None}, "
                f"addresses={self.addresses}, gateway={self.gateway}, mtu={self.mtu})")


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
        if key in NOT_YET:
            raise ValueError(f"configuration item {key!r} is not supported yet")
        if not sep or not value:
            raise ValueError(f"configuration item {key!r} needs a value ({key}=...)")
        if key == "ip":
            config.addresses.append(_parse_interface(value))
        elif key == "gw":
            if ":" in value:
                raise ValueError(f"IPv6 gateway {value!r}: IPv6 is not supported yet")
            config.gateway = parse_addr(value)
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
        else:
            raise ValueError(f"unknown configuration item {key!r}")
    if config.gateway is not None and not any(
            addr_to_int(config.gateway) & prefix_mask(i.prefix_len) == i.network
            for i in config.addresses):
        raise ValueError(f"gateway {'.'.join(map(str, config.gateway))} is not on a "
                         "configured subnet")
    return config


def _is_decimal(text):
    """ASCII digits only: str.isdigit() also accepts "\u00b2", on which int() then fails."""
    return text.isascii() and text.isdigit()


def _parse_interface(value):
    address, _, prefix = value.partition("/")
    if ":" in address:
        raise ValueError(f"ip={value}: IPv6 addresses are not supported yet")
    if not _is_decimal(prefix) or int(prefix) > 32:
        raise ValueError(f"ip={value}: give the prefix length, e.g. ip={address}/24")
    return Interface(parse_addr(address), int(prefix))


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
