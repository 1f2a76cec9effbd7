"""ICMPv6 (RFC 4443), Neighbor Discovery (RFC 4861, RFC 8106) and MLDv2 (RFC 3810) messages.

Every message is checksummed over the IPv6 pseudo-header (RFC 4443 section 2.3), so builders
take the source and destination addresses and return a finished message (the IPv6 payload).

Receiving: :func:`parse_icmpv6` checks length and checksum and returns
``(type, code, rest, body)`` like :func:`lwstack.wire.icmpv4.parse_icmpv4`.  Neighbor Discovery
messages then decode into small records (:class:`RouterAdvertisement`, ...) with
:func:`parse_nd_message`, and :func:`check_nd` applies RFC 4861's validity checks, which need
the hop limit and addresses from the IPv6 header; :func:`parse_nd` does all three.  Records
build themselves back with ``emit(src, dst)``.

What is surprising:

- An option of length zero makes the whole ND message invalid (RFC 4861 section 4.6); unknown
  options are skipped (section 4.6 again).  A malformed Prefix Information, MTU, RDNSS or
  DNSSL option is ignored on its own, as Linux does for prefixes, so one bad option does not
  cost the rest of a Router Advertisement.  Link-layer address options are read as Ethernet's
  (RFC 2464 section 6: the first 6 bytes); of options that make sense once, the first counts.
- An error quotes as much of the offending packet as fits in the minimum MTU (RFC 4443 section
  2.4(c)): 1280 - 40 - 8 = 1232 bytes.
"""
import struct
from typing import NamedTuple, Optional, Tuple

from lwstack.wire import WireError
from lwstack.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum6
from lwstack.wire.ipv6 import (ALL_MLDV2_ROUTERS, HEADER_LEN as IPV6_HEADER_LEN, MIN_MTU,
                               NH_DSTOPTS, NH_FRAGMENT, NH_HOPOPTS, NH_ICMPV6, NH_ROUTING,
                               is_link_local, is_multicast, is_solicited_node, is_unspecified)

HEADER_LEN = 8

# Types (RFC 4443 section 2.1, RFC 4861 section 4, RFC 2710, RFC 3810).
TYPE_DEST_UNREACHABLE = 1
TYPE_PACKET_TOO_BIG = 2
TYPE_TIME_EXCEEDED = 3
TYPE_PARAM_PROBLEM = 4
TYPE_ECHO_REQUEST = 128
TYPE_ECHO_REPLY = 129
TYPE_MLD_QUERY = 130
TYPE_MLDV1_REPORT = 131
TYPE_MLDV1_DONE = 132
TYPE_ROUTER_SOLICITATION = 133
TYPE_ROUTER_ADVERTISEMENT = 134
TYPE_NEIGHBOR_SOLICITATION = 135
TYPE_NEIGHBOR_ADVERTISEMENT = 136
TYPE_REDIRECT = 137
TYPE_MLDV2_REPORT = 143
ND_TYPES = frozenset(range(TYPE_ROUTER_SOLICITATION, TYPE_REDIRECT + 1))

# Destination Unreachable codes (RFC 4443 section 3.1).
CODE_NO_ROUTE = 0
CODE_ADMIN_PROHIBITED = 1
CODE_BEYOND_SCOPE = 2
CODE_ADDRESS_UNREACHABLE = 3
CODE_PORT_UNREACHABLE = 4
CODE_SOURCE_POLICY = 5
CODE_REJECT_ROUTE = 6
# Time Exceeded codes (section 3.3).
CODE_HOP_LIMIT_EXCEEDED = 0
CODE_REASSEMBLY_TIME_EXCEEDED = 1
# Parameter Problem codes (section 3.4) are lwstack.wire.ipv6.PARAM_*.

#: The most of an offending packet an error quotes (RFC 4443 section 2.4(c)).
MAX_QUOTE = MIN_MTU - IPV6_HEADER_LEN - HEADER_LEN
#: Hop limit of every ND message, checked on receipt (RFC 4861 section 6.1, 7.1, 8.1).
ND_HOP_LIMIT = 255
#: Lifetime meaning "forever" in Prefix Information, RDNSS and DNSSL options.
INFINITE_LIFETIME = 0xFFFFFFFF

# ND option types (RFC 4861 section 4.6, RFC 3971, RFC 8106).
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
OPT_PREFIX_INFO = 3
OPT_REDIRECTED_HEADER = 4
OPT_MTU = 5
OPT_NONCE = 14
OPT_RDNSS = 25
OPT_DNSSL = 31

# MLDv2 multicast address record types (RFC 3810 section 5.2.12).
MODE_IS_INCLUDE = 1
MODE_IS_EXCLUDE = 2
CHANGE_TO_INCLUDE = 3    # with no sources: leave the group
CHANGE_TO_EXCLUDE = 4    # with no sources: join the group
ALLOW_NEW_SOURCES = 5
BLOCK_OLD_SOURCES = 6

_HEADER = struct.Struct("!BBHI")
_PREFIX = struct.Struct("!BBII4x16s")
_MLD_RECORD = struct.Struct("!BBH16s")


# -- The common header ------------------------------------------------------------------------

def parse_icmpv6(message, src, dst):
    """Return ``(type, code, rest, body)`` after checking the length and checksum.

    ``rest`` is the 32-bit word after the checksum (identifier and sequence for echo, MTU for
    Packet Too Big, pointer for Parameter Problem, flags for ND messages); ``body`` is what
    follows the 8-byte header.  ``src`` and ``dst`` are the IPv6 header's addresses.
    """
    if len(message) < HEADER_LEN:
        raise WireError("icmpv6_truncated", f"{len(message)} bytes")
    if internet_checksum(message, pseudo_header_sum6(src, dst, NH_ICMPV6, len(message))):
        raise WireError("icmpv6_bad_checksum")
    icmp_type, code, _csum, rest = _HEADER.unpack_from(message)
    return icmp_type, code, rest, message[HEADER_LEN:]


def build_icmpv6(icmp_type, code, rest, body, src, dst):
    """Any ICMPv6 message: the 8-byte header (``rest`` is its last 32-bit word), ``body``,
    and the checksum over the pseudo-header of ``src`` -> ``dst``."""
    header = _HEADER.pack(icmp_type, code, 0, rest)
    length = HEADER_LEN + len(body)
    total = ones_sum(body, ones_sum(header, pseudo_header_sum6(src, dst, NH_ICMPV6, length)))
    total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    return _HEADER.pack(icmp_type, code, checksum, rest) + bytes(body)


def is_error(icmp_type):
    """Error messages have types 0-127, informational ones 128-255 (RFC 4443 section 2.1)."""
    return icmp_type < 128


# -- Echo and errors --------------------------------------------------------------------------

def build_echo(icmp_type, ident, sequence, payload, src, dst):
    """An Echo Request (128) or Echo Reply (129) (RFC 4443 section 4)."""
    return build_icmpv6(icmp_type, 0, (ident << 16) | sequence, payload, src, dst)


def build_error(icmp_type, code, offending, src, dst, rest=0):
    """An error quoting as much of the ``offending`` packet (from its IPv6 header on) as fits
    in 1280 bytes (RFC 4443 section 2.4(c)).

    ``rest`` is the MTU for Packet Too Big (section 3.2) and the pointer for Parameter
    Problem (section 3.4), zero otherwise.  Whether an error may be sent at all is
    :func:`may_send_error`'s question.
    """
    return build_icmpv6(icmp_type, code, rest, offending[:MAX_QUOTE], src, dst)


def may_send_error(icmp_type, offending_src, offending_dst, link_multicast=False,
                   offending_is_error=False, to_multicast=False):
    """RFC 4443 section 2.4(e): may an error of ``icmp_type`` answer this packet?

    Never for an ICMPv6 error or Redirect (``offending_is_error``) or a packet whose source
    is not one node's unicast address (unspecified or multicast).  For a packet sent to a
    multicast address (``offending_dst``) or as link-layer multicast or broadcast
    (``link_multicast``), only Packet Too Big, or a Parameter Problem whose
    :class:`lwstack.wire.ipv6.ParameterProblem` says ``to_multicast``.  Rate limiting
    (section 2.4(f)) is the caller's.
    """
    if offending_is_error or is_unspecified(offending_src) or is_multicast(offending_src):
        return False
    if is_multicast(offending_dst) or link_multicast:
        return icmp_type == TYPE_PACKET_TOO_BIG or (icmp_type == TYPE_PARAM_PROBLEM
                                                    and to_multicast)
    return True


class QuotedPacket(NamedTuple):
    """The packet quoted by an ICMPv6 error, as far as the quote goes.

    ``protocol`` is the upper layer (None if the quote is a fragment other than the first,
    which holds no transport header); ``payload`` the quoted upper-layer bytes, possibly cut.
    """

    src: bytes
    dst: bytes
    protocol: Optional[int]
    payload: bytes


def parse_quote(body):
    """Read the packet an error quotes (its ``body``; RFC 4443 section 2.4(c)).

    The quote is usually cut short, so the payload length is not checked against it; the
    extension headers (one of our own packets: no option is judged) are stepped over while
    they are whole.  Raises :class:`WireError` if the quote ends inside them.
    """
    if len(body) < IPV6_HEADER_LEN or body[0] >> 4 != 6:
        raise WireError("icmpv6_bad_quote", f"{len(body)} bytes")
    next_header = body[6]
    offset = IPV6_HEADER_LEN
    for _ in range(8):
        if next_header not in (NH_HOPOPTS, NH_ROUTING, NH_DSTOPTS, NH_FRAGMENT):
            break
        if len(body) - offset < 8:
            raise WireError("icmpv6_bad_quote", "cut inside an extension header")
        if next_header == NH_FRAGMENT:
            if (body[offset + 2] << 8 | body[offset + 3]) & 0xFFF8:
                return QuotedPacket(bytes(body[8:24]), bytes(body[24:40]), None, b"")
            length = 8
        else:
            length = (body[offset + 1] + 1) * 8
        next_header = body[offset]
        offset += length
    else:
        raise WireError("icmpv6_bad_quote", "too many extension headers")
    if offset > len(body):
        raise WireError("icmpv6_bad_quote", "cut inside an extension header")
    return QuotedPacket(bytes(body[8:24]), bytes(body[24:40]), next_header,
                        bytes(body[offset:]))


# -- Neighbor Discovery options ---------------------------------------------------------------

def iter_nd_options(data):
    """Yield ``(type, value)`` for each option in ``data`` (RFC 4861 section 4.6): ``value``
    is the option without its type and length bytes.  A zero length or an option running
    past the end raises :class:`WireError`, which invalidates the whole message."""
    i = 0
    n = len(data)
    while i < n:
        if n - i < 2:
            raise WireError("nd_truncated_option", f"{n - i} bytes")
        length = data[i + 1] * 8
        if not length:
            raise WireError("nd_zero_length_option", f"type {data[i]}")
        if length > n - i:
            raise WireError("nd_truncated_option", f"type {data[i]}: {length} > {n - i}")
        yield data[i], bytes(data[i + 2:i + length])
        i += length


def _option(kind, value):
    """An option padded with zeros to a multiple of 8 bytes."""
    length = -(-(len(value) + 2) // 8)
    return bytes((kind, length)) + bytes(value) + bytes(length * 8 - 2 - len(value))


def _lladdr(value):
    return value[:6]          # Ethernet (RFC 2464 section 6): 6 bytes, then padding


class PrefixInfo(NamedTuple):
    """A Prefix Information option (RFC 4861 section 4.6.2); lifetimes in seconds,
    :data:`INFINITE_LIFETIME` for ever.  ``on_link`` is the L flag, ``autonomous`` the A
    flag (SLAAC may use the prefix, RFC 4862 section 5.5.3)."""

    prefix: bytes
    prefix_len: int
    on_link: bool = True
    autonomous: bool = True
    valid_lifetime: int = INFINITE_LIFETIME
    preferred_lifetime: int = INFINITE_LIFETIME

    def option(self):
        """The option's 32 bytes."""
        flags = (0x80 if self.on_link else 0) | (0x40 if self.autonomous else 0)
        return bytes((OPT_PREFIX_INFO, 4)) + _PREFIX.pack(
            self.prefix_len, flags, self.valid_lifetime, self.preferred_lifetime, self.prefix)


class Rdnss(NamedTuple):
    """A Recursive DNS Server option (RFC 8106 section 5.1): ``servers`` are 16-byte
    addresses, usable for ``lifetime`` seconds (0: stop using them)."""

    lifetime: int
    servers: Tuple[bytes, ...]

    def option(self):
        """The option's bytes."""
        if not self.servers:
            raise ValueError("an RDNSS option needs at least one server")
        return _option(OPT_RDNSS, struct.pack("!2xI", self.lifetime) + b"".join(self.servers))


class Dnssl(NamedTuple):
    """A DNS Search List option (RFC 8106 section 5.2): ``domains`` as text without the
    final dot, usable for ``lifetime`` seconds."""

    lifetime: int
    domains: Tuple[str, ...]

    def option(self):
        """The option's bytes: names in uncompressed DNS wire format, zero-padded."""
        names = b""
        for domain in self.domains:
            for label in domain.rstrip(".").split("."):
                raw = label.encode("ascii")
                if not 0 < len(raw) < 64:
                    raise ValueError(f"invalid domain name {domain!r}")
                names += bytes((len(raw),)) + raw
            names += b"\0"
        return _option(OPT_DNSSL, struct.pack("!2xI", self.lifetime) + names)


def _parse_prefix(value):
    if len(value) != 30:      # RFC 4861 section 4.6.2: Length 4
        return None
    prefix_len, flags, valid, preferred, prefix = _PREFIX.unpack(value)
    if prefix_len > 128:
        return None
    return PrefixInfo(prefix, prefix_len, bool(flags & 0x80), bool(flags & 0x40), valid,
                      preferred)


def _parse_rdnss(value):
    # RFC 8106 section 5.1: Length 3 + 2 per extra address, i.e. 6 + 16n bytes here.
    if len(value) < 22 or (len(value) - 6) % 16:
        return None
    servers = tuple(value[i:i + 16] for i in range(6, len(value), 16))
    return Rdnss(struct.unpack_from("!I", value, 2)[0], servers)


def _parse_dnssl(value):
    if len(value) < 14:       # RFC 8106 section 5.2: Length >= 2
        return None
    domains = []
    labels = []
    i = 6
    while i < len(value):
        size = value[i]
        if not size:
            if not labels:            # the zero padding after the last name
                if any(value[i:]):
                    return None
                break
            domains.append(".".join(labels))
            labels = []
            i += 1
            continue
        if size >= 64 or i + 1 + size > len(value):      # no compression (RFC 8106 5.2)
            return None
        try:
            labels.append(value[i + 1:i + 1 + size].decode("ascii"))
        except UnicodeDecodeError:
            return None
        i += 1 + size
    if labels:                        # a name without its terminating zero
        return None
    return Dnssl(struct.unpack_from("!I", value, 2)[0], tuple(domains))


# -- Neighbor Discovery messages --------------------------------------------------------------

class RouterSolicitation(NamedTuple):
    """Router Solicitation (RFC 4861 section 4.1)."""

    source_lladdr: Optional[bytes] = None

    def emit(self, src, dst):
        """The message from ``src`` to ``dst``, checksummed."""
        options = _option(OPT_SOURCE_LLADDR, self.source_lladdr) if self.source_lladdr else b""
        return build_icmpv6(TYPE_ROUTER_SOLICITATION, 0, 0, options, src, dst)


class RouterAdvertisement(NamedTuple):
    """Router Advertisement (RFC 4861 section 4.2, RFC 4191 section 2.2, RFC 8106).

    ``hop_limit`` 0, ``reachable_time`` 0 and ``retrans_timer`` 0 mean unspecified;
    ``router_lifetime`` (seconds) 0 means "not a default router"; ``reachable_time`` and
    ``retrans_timer`` are in milliseconds.  ``managed`` and ``other`` are the M and O flags
    (DHCPv6 for addresses / for other configuration).  ``preference`` is the default router
    preference: 1 high, 0 medium, -1 low (the reserved value reads as medium).
    """

    hop_limit: int = 0
    managed: bool = False
    other: bool = False
    router_lifetime: int = 0
    reachable_time: int = 0
    retrans_timer: int = 0
    preference: int = 0
    source_lladdr: Optional[bytes] = None
    mtu: Optional[int] = None
    prefixes: Tuple[PrefixInfo, ...] = ()
    rdnss: Tuple[Rdnss, ...] = ()
    dnssl: Tuple[Dnssl, ...] = ()

    def emit(self, src, dst):
        """The message from ``src`` to ``dst``, checksummed."""
        if not (0 <= self.hop_limit <= 0xFF and 0 <= self.router_lifetime <= 0xFFFF
                and self.preference in (-1, 0, 1)):
            raise ValueError("RA hop limit, router lifetime or preference out of range")
        flags = (0x80 if self.managed else 0) | (0x40 if self.other else 0) | \
            ({1: 0x08, -1: 0x18}.get(self.preference, 0))
        rest = (self.hop_limit << 24) | (flags << 16) | self.router_lifetime
        # Options in radvd's order (any order is valid, RFC 4861 section 4.2).
        body = struct.pack("!II", self.reachable_time, self.retrans_timer)
        body += b"".join(option.option() for option in (*self.prefixes, *self.rdnss,
                                                         *self.dnssl))
        if self.mtu is not None:
            body += _option(OPT_MTU, struct.pack("!2xI", self.mtu))
        if self.source_lladdr:
            body += _option(OPT_SOURCE_LLADDR, self.source_lladdr)
        return build_icmpv6(TYPE_ROUTER_ADVERTISEMENT, 0, rest, body, src, dst)


class NeighborSolicitation(NamedTuple):
    """Neighbor Solicitation (RFC 4861 section 4.3); ``nonce`` is the Nonce option that
    duplicate address detection sends to recognise its own looped-back probes (RFC 7527)."""

    target: bytes
    source_lladdr: Optional[bytes] = None
    nonce: Optional[bytes] = None

    def emit(self, src, dst):
        """The message from ``src`` to ``dst``, checksummed."""
        body = bytes(self.target)
        if self.source_lladdr:
            body += _option(OPT_SOURCE_LLADDR, self.source_lladdr)
        if self.nonce:
            body += _option(OPT_NONCE, self.nonce)
        return build_icmpv6(TYPE_NEIGHBOR_SOLICITATION, 0, 0, body, src, dst)


class NeighborAdvertisement(NamedTuple):
    """Neighbor Advertisement (RFC 4861 section 4.4): R (sender is a router), S (answer to a
    solicitation), O (override the cached link-layer address) flags."""

    target: bytes
    router: bool = False
    solicited: bool = False
    override: bool = False
    target_lladdr: Optional[bytes] = None

    def emit(self, src, dst):
        """The message from ``src`` to ``dst``, checksummed."""
        rest = (0x80000000 if self.router else 0) | (0x40000000 if self.solicited else 0) | \
            (0x20000000 if self.override else 0)
        body = bytes(self.target)
        if self.target_lladdr:
            body += _option(OPT_TARGET_LLADDR, self.target_lladdr)
        return build_icmpv6(TYPE_NEIGHBOR_ADVERTISEMENT, 0, rest, body, src, dst)


class Redirect(NamedTuple):
    """Redirect (RFC 4861 section 4.5): packets for ``destination`` should go to ``target``
    (a better router, or the destination itself when it is on-link); ``redirected`` is the
    quoted start of the packet that caused it."""

    target: bytes
    destination: bytes
    target_lladdr: Optional[bytes] = None
    redirected: bytes = b""

    def emit(self, src, dst):
        """The message from ``src`` to ``dst``, checksummed."""
        body = bytes(self.target) + bytes(self.destination)
        if self.target_lladdr:
            body += _option(OPT_TARGET_LLADDR, self.target_lladdr)
        if self.redirected:
            quote = bytes(self.redirected[:MIN_MTU - IPV6_HEADER_LEN - 40 - 8 - 8])
            quote = quote[:len(quote) & ~7]
            body += _option(OPT_REDIRECTED_HEADER, bytes(6) + quote)
        return build_icmpv6(TYPE_REDIRECT, 0, 0, body, src, dst)


_LIST_OPTIONS = {OPT_PREFIX_INFO: (_parse_prefix, "prefixes"), OPT_RDNSS: (_parse_rdnss, "rdnss"),
                 OPT_DNSSL: (_parse_dnssl, "dnssl")}
# Minimum message lengths, header included (RFC 4861 sections 6.1.1, 6.1.2, 7.1.1, 7.1.2, 8.1).
_ND_MIN_LEN = {TYPE_ROUTER_SOLICITATION: 8, TYPE_ROUTER_ADVERTISEMENT: 16,
               TYPE_NEIGHBOR_SOLICITATION: 24, TYPE_NEIGHBOR_ADVERTISEMENT: 24,
               TYPE_REDIRECT: 40}


def parse_nd_message(icmp_type, rest, body):
    """Decode an ND message (``rest`` and ``body`` from :func:`parse_icmpv6`) into its record.

    Checks the minimum length and the options (see the module note); does not check the hop
    limit, code or addresses: that is :func:`check_nd`.  Raises :class:`WireError`.
    """
    minimum = _ND_MIN_LEN.get(icmp_type)
    if minimum is None:
        raise WireError("nd_not_nd", f"type {icmp_type}")
    if HEADER_LEN + len(body) < minimum:
        raise WireError("nd_truncated", f"type {icmp_type}: {HEADER_LEN + len(body)} bytes")
    fixed = minimum - HEADER_LEN
    source = target_ll = nonce = mtu = None
    redirected = b""
    lists = {"prefixes": [], "rdnss": [], "dnssl": []}
    for kind, value in iter_nd_options(body[fixed:]):
        if kind == OPT_SOURCE_LLADDR and source is None:
            source = _lladdr(value)
        elif kind == OPT_TARGET_LLADDR and target_ll is None:
            target_ll = _lladdr(value)
        elif kind == OPT_NONCE and nonce is None:
            nonce = value
        elif kind == OPT_MTU and len(value) == 6 and mtu is None:
            mtu = struct.unpack_from("!I", value, 2)[0]
        elif kind == OPT_REDIRECTED_HEADER and not redirected:
            redirected = value[6:]
        elif kind in _LIST_OPTIONS:
            parse, name = _LIST_OPTIONS[kind]
            parsed = parse(value)
            if parsed is not None:          # malformed: this option alone is ignored
                lists[name].append(parsed)
    if icmp_type == TYPE_ROUTER_SOLICITATION:
        return RouterSolicitation(source)
    if icmp_type == TYPE_ROUTER_ADVERTISEMENT:
        flags = (rest >> 16) & 0xFF
        reachable, retrans = struct.unpack_from("!II", body)
        return RouterAdvertisement(rest >> 24, bool(flags & 0x80), bool(flags & 0x40),
                                   rest & 0xFFFF, reachable, retrans,
                                   (0, 1, 0, -1)[(flags >> 3) & 3], source, mtu,
                                   tuple(lists["prefixes"]), tuple(lists["rdnss"]),
                                   tuple(lists["dnssl"]))
    if icmp_type == TYPE_NEIGHBOR_SOLICITATION:
        return NeighborSolicitation(bytes(body[:16]), source, nonce)
    if icmp_type == TYPE_NEIGHBOR_ADVERTISEMENT:
        return NeighborAdvertisement(bytes(body[:16]), bool(rest & 0x80000000),
                                     bool(rest & 0x40000000), bool(rest & 0x20000000),
                                     target_ll)
    return Redirect(bytes(body[:16]), bytes(body[16:32]), target_ll, redirected)


def check_nd(record, code, hop_limit, src, dst):
    """RFC 4861's validity checks of a received ND message that :func:`parse_nd_message`
    cannot make (sections 6.1.1, 6.1.2, 7.1.1, 7.1.2, 8.1); raises :class:`WireError`.

    ``hop_limit``, ``src`` and ``dst`` come from the IPv6 header.  A hop limit of 255 proves
    the message was not forwarded by a router, i.e. comes from the link itself.  Checks that
    need state (a Redirect comes from the current first-hop router) are the host's.
    """
    if hop_limit != ND_HOP_LIMIT:
        raise WireError("nd_bad_hop_limit", str(hop_limit))
    if code:
        raise WireError("nd_bad_code", str(code))
    kind = type(record)
    if kind is RouterSolicitation or kind is NeighborSolicitation:
        if is_unspecified(src) and record.source_lladdr is not None:
            raise WireError("nd_lladdr_from_unspecified")
    if kind is RouterAdvertisement or kind is Redirect:
        if not is_link_local(src):
            raise WireError("nd_src_not_link_local")
    if kind is NeighborSolicitation or kind is NeighborAdvertisement:
        if is_multicast(record.target):
            raise WireError("nd_multicast_target")
    if kind is NeighborSolicitation and is_unspecified(src) and not is_solicited_node(dst):
        raise WireError("nd_dad_not_to_solicited_node")
    if kind is NeighborAdvertisement and is_multicast(dst) and record.solicited:
        raise WireError("nd_solicited_to_multicast")
    if kind is Redirect:
        if is_multicast(record.destination):
            raise WireError("nd_redirect_multicast_destination")
        if not is_link_local(record.target) and record.target != record.destination:
            raise WireError("nd_redirect_bad_target")


def parse_nd(message, src, dst, hop_limit):
    """Checksum, decode and validate an ND message in one call; returns its record."""
    icmp_type, code, rest, body = parse_icmpv6(message, src, dst)
    record = parse_nd_message(icmp_type, rest, body)
    check_nd(record, code, hop_limit, src, dst)
    return record


# -- MLDv2 ------------------------------------------------------------------------------------

class MulticastRecord(NamedTuple):
    """One Multicast Address Record of an MLDv2 report (RFC 3810 section 5.2.4)."""

    record_type: int
    address: bytes
    sources: Tuple[bytes, ...] = ()
    aux_data: bytes = b""


class Mldv2Report(NamedTuple):
    """An MLDv2 Report (RFC 3810 section 5.2).  A host joins a group with a
    ``CHANGE_TO_EXCLUDE`` record without sources and leaves it with ``CHANGE_TO_INCLUDE``
    (section 6.1); reports go to ff02::16 with hop limit 1 and a Router Alert option (section
    5.2.13-14), from the link-local address or, before there is one, from ``::``."""

    records: Tuple[MulticastRecord, ...]

    def emit(self, src, dst=ALL_MLDV2_ROUTERS):
        """The message from ``src`` to ``dst``, checksummed."""
        body = b""
        for record in self.records:
            if len(record.aux_data) & 3:
                raise ValueError("MLDv2 auxiliary data is a whole number of 32-bit words")
            body += _MLD_RECORD.pack(record.record_type, len(record.aux_data) // 4,
                                     len(record.sources), record.address)
            body += b"".join(record.sources) + record.aux_data
        return build_icmpv6(TYPE_MLDV2_REPORT, 0, len(self.records), body, src, dst)


def parse_mldv2_report(rest, body):
    """Decode an MLDv2 Report (``rest`` and ``body`` from :func:`parse_icmpv6`)."""
    records = []
    i = 0
    for _ in range(rest & 0xFFFF):
        if len(body) - i < _MLD_RECORD.size:
            raise WireError("mld_truncated", f"record {len(records)}")
        record_type, aux_words, nsources, address = _MLD_RECORD.unpack_from(body, i)
        i += _MLD_RECORD.size
        end = i + 16 * nsources + 4 * aux_words
        if end > len(body):
            raise WireError("mld_truncated", f"record {len(records)}")
        sources = tuple(bytes(body[j:j + 16]) for j in range(i, i + 16 * nsources, 16))
        records.append(MulticastRecord(record_type, bytes(address), sources,
                                       bytes(body[i + 16 * nsources:end])))
        i = end
    return Mldv2Report(tuple(records))


class MldQuery(NamedTuple):
    """A Multicast Listener Query (RFC 3810 section 5.1; RFC 2710 for ``version`` 1).

    ``address`` is :: for a general query; ``max_response_delay`` is in milliseconds, decoded
    from the Maximum Response Code (section 5.1.3); ``interval`` is the querier's query
    interval in seconds (QQIC, section 5.1.9), ``robustness`` its QRV, ``suppress`` the S flag.
    """

    max_response_delay: int
    address: bytes
    suppress: bool = False
    robustness: int = 0
    interval: int = 0
    sources: Tuple[bytes, ...] = ()
    version: int = 2


def _exp_code(code, mant_bits, exp_bits):
    """RFC 3810's floating-point codes (sections 5.1.3 and 5.1.9)."""
    if code < 1 << (mant_bits + exp_bits):
        return code
    mant = code & ((1 << mant_bits) - 1)
    exp = (code >> mant_bits) & ((1 << exp_bits) - 1)
    return (mant | (1 << mant_bits)) << (exp + 3)


def parse_mld_query(rest, body):
    """Decode a Multicast Listener Query: 24 bytes is MLDv1, 28 or more MLDv2 (RFC 3810
    section 8.1)."""
    if len(body) < 16 or 16 < len(body) < 20:
        raise WireError("mld_truncated", f"query of {HEADER_LEN + len(body)} bytes")
    address = bytes(body[:16])
    if len(body) == 16:
        return MldQuery(rest >> 16, address, version=1)
    flags, qqic, nsources = struct.unpack_from("!BBH", body, 16)
    if 20 + 16 * nsources > len(body):
        raise WireError("mld_truncated", f"{nsources} sources")
    sources = tuple(bytes(body[i:i + 16]) for i in range(20, 20 + 16 * nsources, 16))
    return MldQuery(_exp_code(rest >> 16, 12, 3), address, bool(flags & 0x08), flags & 0x07,
                    _exp_code(qqic, 4, 3), sources)


def check_mld(hop_limit, src, router_alert):
    """An MLD query counts only with hop limit 1, a link-local source and a Router Alert
    option in a Hop-by-Hop header (RFC 3810 sections 5 and 5.1.14, now RFC 9777; RFC 2710
    section 3); ``router_alert`` comes from :class:`lwstack.wire.ipv6.HeaderChain`.
    Raises :class:`WireError`."""
    if hop_limit != 1:
        raise WireError("mld_bad_hop_limit", str(hop_limit))
    if not is_link_local(src):
        raise WireError("mld_src_not_link_local")
    if router_alert is None:
        raise WireError("mld_no_router_alert")
