"""Interface identifiers and the addresses made from them: pure functions, no state.

Three ways to choose the low 64 bits of an address, as the stack's configuration says:

- EUI-64 from the MAC (RFC 4291 appendix A): stable and simple, but it tells the world the
  MAC, on every network the host visits;
- stable privacy identifiers (RFC 7217): a hash of the prefix, the interface, the network and
  a secret, so they are stable on one network and unrelated across networks; the DAD counter
  is an argument, so SLAAC retries with the next value after a duplicate (section 6);
- hash addresses compatible with VirtualSquare's iothaddr (shared/reference/iothaddr.md): an
  MD5 of the node's fully qualified name, so that anybody who knows a name knows its address
  (and a DNS server can answer for it without being told), plus the one-time variant (OTIP)
  where a password and the time enter the hash.

Addresses and prefixes are 16-byte ``bytes`` (a 64-bit prefix may also be given as its
first 8 bytes); interface identifiers are 8 bytes; MACs 6 bytes.
"""
import hashlib
import math

from lwstack.wire.ipv6 import LINK_LOCAL_PREFIX

#: The OTIP period of iothaddr's tools, in seconds.
OTIP_PERIOD = 32


def eui64_iid(mac):
    """The modified EUI-64 interface identifier of a 48-bit MAC (RFC 4291 appendix A):
    ``ff:fe`` inserted in the middle and the universal/local bit inverted."""
    if len(mac) != 6:
        raise ValueError("a MAC is 6 bytes")
    return bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))


def combine(prefix, iid):
    """A /64 ``prefix`` (its first 8 bytes count) followed by the 8-byte ``iid``."""
    if len(prefix) < 8 or len(iid) != 8:
        raise ValueError("combine needs a 64-bit prefix and a 64-bit interface identifier")
    return bytes(prefix[:8]) + bytes(iid)


def link_local(iid):
    """The link-local address ``fe80::/64`` + ``iid`` (RFC 4862 section 5.3)."""
    return combine(LINK_LOCAL_PREFIX, iid)


def eui64_address(prefix, mac):
    """``prefix`` (/64) with the modified EUI-64 identifier of ``mac``."""
    return combine(prefix, eui64_iid(mac))


# -- RFC 7217 ---------------------------------------------------------------------------------

def is_reserved_iid(iid):
    """Interface identifiers that must not be used (RFC 7217 section 5, listed by RFC 5453):
    the Subnet-Router anycast one (all zeros), the block of the IANA Ethernet OUI
    ``0200:5eff:fe00:0000``-``0200:5eff:feff:ffff`` (Proxy Mobile IPv6's identifier is in it)
    and the subnet anycast range ``fdff:ffff:ffff:ff80``-``fdff:ffff:ffff:ffff`` (RFC 2526)."""
    if iid == bytes(8):
        return True
    if iid[:5] == b"\x02\x00\x5e\xff\xfe":
        return True
    return iid[:7] == b"\xfd\xff\xff\xff\xff\xff\xff" and iid[7] >= 0x80


def stable_privacy_iid(prefix, net_iface, network_id, dad_counter, secret_key):
    """An RFC 7217 semantically opaque interface identifier (section 5).

    ``F`` is SHA-256 over ``prefix | net_iface | network_id | dad_counter | secret_key``; the
    identifier is the first 64 bits of the digest.  ``prefix`` is the /64 being configured
    (its first 8 bytes; the link-local prefix for link-local addresses); ``net_iface`` names
    the interface (a name or the MAC, bytes or text); ``network_id`` tells networks apart
    (e.g. an SSID; ``b""`` when there is none); ``dad_counter`` is 0 at first and one more
    after each duplicate found by DAD (section 6); ``secret_key`` is at least 128 random bits
    kept for the life of the host (section 5: the secret is what makes it unpredictable).

    Two choices the RFC leaves open: the variable-length fields are each preceded by their
    length (2 bytes) so that different ``(net_iface, network_id)`` pairs cannot concatenate
    to the same input, and the counter is 4 bytes big-endian.  A result that is a reserved
    identifier (:func:`is_reserved_iid`) is replaced by the next counter's, as section 5
    says.
    """
    if len(prefix) < 8:
        raise ValueError("the prefix must hold at least 64 bits")
    if dad_counter < 0:
        raise ValueError("the DAD counter starts at 0")
    iface = net_iface.encode() if isinstance(net_iface, str) else bytes(net_iface)
    network = network_id.encode() if isinstance(network_id, str) else bytes(network_id)
    while True:
        digest = hashlib.sha256(b"".join((
            bytes(prefix[:8]), len(iface).to_bytes(2, "big"), iface,
            len(network).to_bytes(2, "big"), network, dad_counter.to_bytes(4, "big"),
            bytes(secret_key)))).digest()
        iid = digest[:8]
        if not is_reserved_iid(iid):
            return iid
        dad_counter += 1


# -- iothaddr hash addresses and one-time addresses ------------------------------------------

def hash_digest(name, password=None, otiptime=0):
    """iothaddr's MD5 of ``name`` (one trailing dot removed), then ``password`` if given,
    then ``otiptime`` as 4 bytes big-endian if it is not 0."""
    raw = name.encode() if isinstance(name, str) else bytes(name)
    if not raw:
        raise ValueError("a hash address needs a name")
    if raw.endswith(b"."):
        raw = raw[:-1]
    md5 = hashlib.md5(raw)
    if password is not None:
        md5.update(password.encode() if isinstance(password, str) else bytes(password))
    if otiptime:
        md5.update((otiptime & 0xFFFFFFFF).to_bytes(4, "big"))
    return md5.digest()


def hash_address(base, name, password=None, otiptime=0):
    """iothaddr's hash address: ``base`` (16 bytes, normally a /64 prefix) with its low 64
    bits XORed with the first 8 bytes of :func:`hash_digest`, then the universal/local and
    group bits of the identifier cleared (``byte 8 &= ~3``).

    Because it is an XOR, a base whose low bits are not zero gives another address, exactly
    as iothaddr does.
    """
    if len(base) != 16:
        raise ValueError("the base is a 16-byte IPv6 address")
    digest = hash_digest(name, password, otiptime)
    low = bytearray(a ^ b for a, b in zip(base[8:], digest))
    low[0] &= ~0x03 & 0xFF
    return bytes(base[:8]) + bytes(low)


def hash_mac(name, password=None):
    """iothaddr's hash MAC: digest bytes 0, 1, 2, 5, 6, 7, made locally administered and
    unicast."""
    digest = hash_digest(name, password)
    return bytes(((digest[0] | 0x02) & 0xFE, digest[1], digest[2], digest[5], digest[6],
                  digest[7]))


def iothaddr_eui64(base, mac):
    """iothaddr's EUI-64 address: ``base`` with bytes 8-12 set to the modified EUI-64 of
    ``mac`` and bytes 13-15 XORed with the MAC's last three (iothaddr_eui64's own rule, the
    same as :func:`eui64_address` when the base's low 64 bits are zero)."""
    if len(base) != 16 or len(mac) != 6:
        raise ValueError("iothaddr_eui64 takes a 16-byte base and a 6-byte MAC")
    tail = bytes(b ^ m for b, m in zip(base[13:], mac[3:]))
    return bytes(base[:8]) + bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE)) + tail


def otiptime(now, period=OTIP_PERIOD, offset=0):
    """The OTIP time slot: ``floor((now + offset) / period)``, or 0 (no time in the hash)
    when ``period`` is 0.  ``now`` is Unix time in seconds, passed in (no clock here)."""
    if not period:
        return 0
    return math.floor((now + offset) / period)


def otip_address(base, name, password, now, period=OTIP_PERIOD, offset=0):
    """The one-time address of ``name`` for the slot containing ``now``: the hash address of
    ``(base, name, password, otiptime(now, period, offset))``."""
    return hash_address(base, name, password, otiptime(now, period, offset))
