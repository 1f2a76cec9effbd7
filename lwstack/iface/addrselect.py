"""Default address selection (RFC 6724): the source address for a destination, and the order
in which to try the destinations a name resolved to.

Design note
-----------
Pure functions over addresses as bytes (4 bytes IPv4, 16 bytes IPv6).  IPv4 addresses are
looked up in the policy table as IPv4-mapped addresses (``::ffff:a.b.c.d``, RFC 6724 section
3.1), and an IPv4-mapped destination is treated as the IPv4 address it maps.  The host
describes its own addresses with :class:`LocalAddress` (prefix length, deprecated, temporary,
tentative, interface, ...); nothing here keeps state.

- :func:`select_source` applies section 5's rules 1-8 pairwise, in order, over the candidate
  set of section 4 (same family as the destination, not tentative, not multicast or
  unspecified; for link-local and multicast-link-local destinations, only addresses on the
  outgoing interface when one is named).  Rule 5.5 (prefer a prefix advertised by the chosen
  next hop) is not implemented: the RFC allows that, and lwstack has one router per link.
  Ties keep the candidate listed first.
- :func:`sort_destinations` applies section 6's rules 1-10 with a stable sort, ``Source(D)``
  being :func:`select_source`'s answer or the caller's ``source_for(D)`` (which can also say
  "unreachable", rule 1, by returning None).  When neither destination of a pair has a
  source, only the rules about the destinations themselves (6 and 8) apply.
- Rule 4 (Mobile IPv6 home addresses) is implemented from the flags the caller gives; lwstack
  itself never sets them.  Rule 7 (native transport) reads :attr:`LocalAddress.tunnel` of the
  source.
- CommonPrefixLen (section 2.2) counts at most the source's prefix length.  For IPv4, rule 9
  and source rule 8 count it only when the destination is inside the source's subnet (0
  otherwise), as glibc does: beyond the subnet, shared leading bits of IPv4 addresses say
  nothing about closeness, and sorting on them would defeat DNS round-robin across servers.
"""
import ipaddress
from dataclasses import dataclass
from functools import cmp_to_key
from typing import Any

__all__ = ["LocalAddress", "PolicyEntry", "DEFAULT_POLICY", "select_source",
           "sort_destinations", "scope", "policy_for", "common_prefix_len", "to_ipv6",
           "SCOPE_INTERFACE_LOCAL", "SCOPE_LINK_LOCAL", "SCOPE_SITE_LOCAL", "SCOPE_GLOBAL"]

#: Scope values (RFC 4291 section 2.7, RFC 6724 section 3.1).
SCOPE_INTERFACE_LOCAL = 0x1
SCOPE_LINK_LOCAL = 0x2
SCOPE_ADMIN_LOCAL = 0x4
SCOPE_SITE_LOCAL = 0x5
SCOPE_ORG_LOCAL = 0x8
SCOPE_GLOBAL = 0xE

_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


@dataclass(frozen=True)
class PolicyEntry:
    """A row of the policy table (RFC 6724 section 2.1): ``prefix`` (16 bytes) / ``length``."""
    prefix: bytes
    length: int
    precedence: int
    label: int


def _entry(text, precedence, label):
    network = ipaddress.IPv6Network(text)
    return PolicyEntry(network.network_address.packed, network.prefixlen, precedence, label)


#: RFC 6724 section 2.1's default policy table.
DEFAULT_POLICY = (
    _entry("::1/128", 50, 0),
    _entry("::/0", 40, 1),
    _entry("::ffff:0:0/96", 35, 4),
    _entry("2002::/16", 30, 2),
    _entry("2001::/32", 5, 5),
    _entry("fc00::/7", 3, 13),
    _entry("::/96", 1, 3),
    _entry("fec0::/10", 1, 11),
    _entry("3ffe::/16", 1, 12),
)


@dataclass(frozen=True)
class LocalAddress:
    """One of the host's addresses, with what RFC 6724 needs to know about it.

    ``addr`` is 4 or 16 bytes and ``prefix_len`` the length of its on-link prefix (the part
    before the interface identifier, RFC 6724 section 2.2).  ``deprecated``: past its
    preferred lifetime (RFC 4862).  ``temporary``: a privacy address (RFC 8981).
    ``tentative``: duplicate address detection still running, so not usable at all.
    ``home`` / ``care_of``: Mobile IPv6 roles (rule 4).  ``tunnel``: reached through an
    encapsulating transition mechanism (rule 7).  ``interface``: any identifier of the
    interface it is assigned to.
    """
    addr: bytes
    prefix_len: int
    deprecated: bool = False
    temporary: bool = False
    tentative: bool = False
    home: bool = False
    care_of: bool = False
    tunnel: bool = False
    interface: Any = None


def to_ipv6(addr):
    """16 bytes as they are; 4 bytes as the IPv4-mapped IPv6 address."""
    if len(addr) == 4:
        return _MAPPED_PREFIX + bytes(addr)
    if len(addr) != 16:
        raise ValueError(f"an address is 4 or 16 bytes, not {len(addr)}")
    return bytes(addr)


def _unmap(addr):
    """An IPv4-mapped IPv6 address as its 4 bytes; anything else unchanged."""
    if len(addr) == 16 and addr[:12] == _MAPPED_PREFIX:
        return bytes(addr[12:])
    return addr


def scope(addr):
    """The scope of an address (RFC 6724 sections 3.1 and 3.2).

    IPv6 multicast: the scope field.  IPv6 unicast: link-local for fe80::/10 and the loopback
    (section 3.4), site-local for the deprecated fec0::/10, global otherwise (ULAs included).
    IPv4: link-local for 169.254/16 and 127/8, global otherwise (private ranges included).
    """
    addr = _unmap(addr)
    if len(addr) == 4:
        if addr[0] == 127 or (addr[0] == 169 and addr[1] == 254):
            return SCOPE_LINK_LOCAL
        return SCOPE_GLOBAL
    if addr[0] == 0xFF:
        return addr[1] & 0x0F
    if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80:
        return SCOPE_LINK_LOCAL
    if addr[0] == 0xFE and addr[1] & 0xC0 == 0xC0:
        return SCOPE_SITE_LOCAL
    if addr == bytes(15) + b"\x01":
        return SCOPE_LINK_LOCAL
    return SCOPE_GLOBAL


def _matching_bits(a, b, limit):
    """How many leading bits ``a`` and ``b`` (same length) share, at most ``limit``."""
    width = len(a) * 8
    diff = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return min(width - diff.bit_length(), limit)


def policy_for(addr, policy=DEFAULT_POLICY):
    """``(precedence, label)`` of the longest-matching policy row for ``addr``."""
    full = to_ipv6(addr)
    best = None
    for row in policy:
        if (best is None or row.length > best.length) and \
                _matching_bits(full, row.prefix, row.length) == row.length:
            best = row
    if best is None:
        return 0, 0
    return best.precedence, best.label


def common_prefix_len(source, dst):
    """CommonPrefixLen(S, D) of RFC 6724 section 2.2 for a :class:`LocalAddress` ``source``:
    the leading bits shared, at most the source's prefix length.  For IPv4, 0 unless ``dst``
    is inside the source's subnet (see the module note)."""
    src = _unmap(source.addr)
    dst = _unmap(dst)
    if len(src) != len(dst):
        return 0
    bits = _matching_bits(src, dst, source.prefix_len)
    if len(src) == 4 and bits < source.prefix_len:
        return 0
    return bits


def _family(addr):
    return 4 if len(_unmap(addr)) == 4 else 6


def _is_link_scoped(addr):
    return scope(addr) <= SCOPE_LINK_LOCAL


def _candidates(dst, addresses, outgoing):
    """RFC 6724 section 4: the addresses that may be the source for ``dst``."""
    family = _family(dst)
    out = []
    for local in addresses:
        addr = _unmap(local.addr)
        if local.tentative or _family(addr) != family:
            continue
        if len(addr) == 16 and (addr[0] == 0xFF or addr == bytes(16)):
            continue
        if len(addr) == 4 and (addr == bytes(4) or 224 <= addr[0] < 240):
            continue
        if outgoing is not None and _is_link_scoped(dst) and local.interface != outgoing:
            continue
        out.append(local)
    return out


def _compare_home(a, b):
    """Rule 4 (both sections): <0 prefers ``a``, >0 prefers ``b``, 0 undecided.  The rule
    names two pairs only (home-and-care-of against anything else, home against care-of); an
    address that is neither is not ordered against a home or a care-of address."""
    both_a = a.home and a.care_of
    both_b = b.home and b.care_of
    if both_a != both_b:
        return -1 if both_a else 1
    just_home_a = a.home and not a.care_of
    just_home_b = b.home and not b.care_of
    just_care_a = a.care_of and not a.home
    just_care_b = b.care_of and not b.home
    if just_home_a and just_care_b:
        return -1
    if just_home_b and just_care_a:
        return 1
    return 0


def _compare_sources(a, b, dst, outgoing, prefer_temporary, policy):
    """RFC 6724 section 5: <0 if ``a`` is the better source for ``dst``, >0 if ``b``, else 0."""
    # Rule 1: prefer the same address.
    same_a, same_b = _unmap(a.addr) == dst, _unmap(b.addr) == dst
    if same_a != same_b:
        return -1 if same_a else 1
    # Rule 2: prefer appropriate scope.
    scope_a, scope_b, scope_d = scope(a.addr), scope(b.addr), scope(dst)
    if scope_a < scope_b:
        return 1 if scope_a < scope_d else -1
    if scope_b < scope_a:
        return -1 if scope_b < scope_d else 1
    # Rule 3: avoid deprecated addresses.
    if a.deprecated != b.deprecated:
        return 1 if a.deprecated else -1
    # Rule 4: prefer home addresses.
    home = _compare_home(a, b)
    if home:
        return home
    # Rule 5: prefer the outgoing interface.
    if outgoing is not None:
        on_a, on_b = a.interface == outgoing, b.interface == outgoing
        if on_a != on_b:
            return -1 if on_a else 1
    # Rule 6: prefer matching label.
    label_d = policy_for(dst, policy)[1]
    match_a = policy_for(a.addr, policy)[1] == label_d
    match_b = policy_for(b.addr, policy)[1] == label_d
    if match_a != match_b:
        return -1 if match_a else 1
    # Rule 7: prefer temporary addresses (or public ones, IPV6_PREFER_SRC_PUBLIC, RFC 5014).
    if a.temporary != b.temporary:
        return -1 if a.temporary == prefer_temporary else 1
    # Rule 8: use the longest matching prefix.
    return common_prefix_len(b, dst) - common_prefix_len(a, dst)


def select_source(dst, addresses, *, outgoing=None, prefer_temporary=True,
                  policy=DEFAULT_POLICY):
    """The :class:`LocalAddress` to send to ``dst`` from (RFC 6724 section 5), or None if no
    candidate exists.

    ``addresses`` are the host's addresses (all interfaces; the candidate set is filtered as
    section 4 says), ``outgoing`` the interface the route to ``dst`` leaves by (rule 5, and the
    candidate set for link-scoped destinations), ``prefer_temporary`` rule 7's default.
    """
    dst = _unmap(bytes(dst))
    best = None
    for candidate in _candidates(dst, addresses, outgoing):
        if best is None or _compare_sources(candidate, best, dst, outgoing,
                                            prefer_temporary, policy) < 0:
            best = candidate
    return best


def sort_destinations(destinations, addresses=(), *, key=None, source_for=None,
                      policy=DEFAULT_POLICY):
    """Return ``destinations`` in the order to try them (RFC 6724 section 6), stably.

    ``key`` extracts the address (bytes) from each item (default: the item itself), so
    ``getaddrinfo``-like tuples can be sorted whole.  ``Source(D)`` is
    ``source_for(D)`` if given (a :class:`LocalAddress`, or None when ``D`` has no source or
    is known unreachable), otherwise :func:`select_source` over ``addresses``.
    """
    items = list(destinations)
    if key is None:
        key = _identity
    if source_for is None:
        def source_for(dst):
            return select_source(dst, addresses, policy=policy)
    info = []
    for item in items:
        dst = _unmap(bytes(key(item)))
        info.append((dst, source_for(dst)))

    def compare(i, j):
        return _compare_destinations(info[i], info[j], policy)

    order = sorted(range(len(items)), key=cmp_to_key(compare))
    return [items[i] for i in order]


def _identity(item):
    return item


def _compare_destinations(a, b, policy):
    """RFC 6724 section 6 rules 1-9: <0 prefers ``a``, >0 ``b``, 0 leaves them (rule 10)."""
    dst_a, src_a = a
    dst_b, src_b = b
    # Rule 1: avoid unusable destinations.
    if (src_a is None) != (src_b is None):
        return 1 if src_a is None else -1
    sourced = src_a is not None
    prec_a, label_a = policy_for(dst_a, policy)
    prec_b, label_b = policy_for(dst_b, policy)
    if sourced:
        # Rule 2: prefer matching scope.
        match_a = scope(dst_a) == scope(src_a.addr)
        match_b = scope(dst_b) == scope(src_b.addr)
        if match_a != match_b:
            return -1 if match_a else 1
        # Rule 3: avoid deprecated addresses.
        if src_a.deprecated != src_b.deprecated:
            return 1 if src_a.deprecated else -1
        # Rule 4: prefer home addresses.
        home = _compare_home(src_a, src_b)
        if home:
            return home
        # Rule 5: prefer matching label.
        match_a = policy_for(src_a.addr, policy)[1] == label_a
        match_b = policy_for(src_b.addr, policy)[1] == label_b
        if match_a != match_b:
            return -1 if match_a else 1
    # Rule 6: prefer higher precedence.
    if prec_a != prec_b:
        return prec_b - prec_a
    # Rule 7: prefer native transport.
    if sourced and src_a.tunnel != src_b.tunnel:
        return 1 if src_a.tunnel else -1
    # Rule 8: prefer smaller scope.
    scope_a, scope_b = scope(dst_a), scope(dst_b)
    if scope_a != scope_b:
        return scope_a - scope_b
    # Rule 9: use the longest matching prefix, within one address family.
    if sourced and len(dst_a) == len(dst_b):
        return common_prefix_len(src_b, dst_b) - common_prefix_len(src_a, dst_a)
    # Rule 10: otherwise leave the order unchanged.
    return 0
