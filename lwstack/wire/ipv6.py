"""IPv6 headers (RFC 8200): the fixed header, the extension-header chain, addresses.

Addresses are 16-byte ``bytes``, as IPv4 addresses are 4-byte ``bytes`` (:mod:`.ipv4`);
text appears only at the API edge (:func:`addr6_to_str`, :func:`parse_addr6`).

Receiving a packet takes two calls, so that the fast path for a plain TCP/UDP/ICMPv6 packet
stays one ``struct`` unpack and one comparison:

    header = parse_ipv6(frame, 14)
    end = 14 + HEADER_LEN + header.payload_len          # Ethernet padding excluded
    if header.next_header in (6, 17, 58): upper payload is frame[14 + HEADER_LEN:end]
    else: chain = walk_extension_headers(frame, 14 + HEADER_LEN, header.next_header, end)

The walk processes Hop-by-Hop, Routing, Fragment and Destination Options headers as a final
destination does (RFC 8200 section 4) and raises :class:`ParameterProblem` (a
:class:`~lwstack.wire.WireError`) when the packet must be dropped *and* answered with an ICMPv6
Parameter Problem; the exception carries the code and the pointer for the answer.
"""
import ipaddress
import struct

from lwstack.wire import WireError

HEADER_LEN = 40
#: Offset of the Payload Length field in the header (patched per packet in a template).
PAYLOAD_LEN_OFFSET = 4
DEFAULT_HOP_LIMIT = 64
#: The minimum link MTU (RFC 8200 section 5): every link carries 1280-byte packets.
MIN_MTU = 1280
ETHERTYPE_IPV6 = 0x86DD

# Next Header values (IANA "Assigned Internet Protocol Numbers").
NH_HOPOPTS = 0
NH_TCP = 6
NH_UDP = 17
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_ESP = 50
NH_AH = 51
NH_ICMPV6 = 58
NH_NONE = 59
NH_DSTOPTS = 60
#: Extension headers with the common (next header, length in 8-octet units - 1) layout that
#: the walk steps over (RFC 8200 section 4.8 asks the same of future ones; AH counts its
#: length differently and ESP hides the rest, so both end the walk as upper layers).
_OPTION_HEADERS = frozenset((NH_HOPOPTS, NH_DSTOPTS))

# Options of Hop-by-Hop and Destination Options headers (RFC 8200 section 4.2).
OPT_PAD1 = 0
OPT_PADN = 1
OPT_ROUTER_ALERT = 5        # RFC 2711; MLD messages carry it (RFC 3810 section 5)
ROUTER_ALERT_MLD = 0        # its value for MLD

# ICMPv6 Parameter Problem codes (RFC 4443 section 3.4, RFC 7112).
PARAM_ERRONEOUS_FIELD = 0
PARAM_UNKNOWN_NEXT_HEADER = 1
PARAM_UNKNOWN_OPTION = 2
PARAM_INCOMPLETE_CHAIN = 3

# Multicast scopes (RFC 4291 section 2.7, RFC 7346).
SCOPE_INTERFACE_LOCAL = 0x1
SCOPE_LINK_LOCAL = 0x2
SCOPE_ADMIN_LOCAL = 0x4
SCOPE_SITE_LOCAL = 0x5
SCOPE_ORGANIZATION_LOCAL = 0x8
SCOPE_GLOBAL = 0xE

UNSPECIFIED = bytes(16)
LOOPBACK = bytes(15) + b"\x01"
ALL_NODES = b"\xff\x02" + bytes(13) + b"\x01"            # ff02::1
ALL_ROUTERS = b"\xff\x02" + bytes(13) + b"\x02"          # ff02::2
ALL_MLDV2_ROUTERS = b"\xff\x02" + bytes(13) + b"\x16"    # ff02::16 (RFC 3810 section 5.2.14)
LINK_LOCAL_PREFIX = b"\xfe\x80" + bytes(6)               # fe80::/64, 8 bytes
_SOLICITED_NODE_PREFIX = b"\xff\x02" + bytes(9) + b"\x01\xff"   # ff02::1:ff00:0/104

_HEADER = struct.Struct("!IHBB16s16s")
_FRAGMENT = struct.Struct("!BBHI")
FRAGMENT_HEADER_LEN = 8
#: How many extension headers one packet may carry before the walk gives up (the walk is
#: bounded: a chain of 1-byte-option headers must not cost more than a few microseconds).
MAX_EXTENSION_HEADERS = 8
#: Non-padding options per Hop-by-Hop or Destination Options header (RFC 8504 section 5.3
#: asks for a configurable limit; Linux's default is 8).
MAX_OPTIONS = 8
#: Consecutive padding bytes allowed: padding is only ever needed to align to 8 bytes, so a
#: longer run is an attack on the walk (Linux drops such packets too).
MAX_PADDING = 7


class Ipv6Header:
    """A validated fixed IPv6 header; the payload is
    ``packet[offset + 40:offset + 40 + payload_len]`` (bytes after it are link padding)."""

    __slots__ = ("traffic_class", "flow_label", "payload_len", "next_header", "hop_limit",
                 "src", "dst")

    def __init__(self, traffic_class, flow_label, payload_len, next_header, hop_limit, src,
                 dst):
        self.traffic_class = traffic_class
        self.flow_label = flow_label
        self.payload_len = payload_len
        self.next_header = next_header
        self.hop_limit = hop_limit
        self.src = src
        self.dst = dst

    @property
    def total_len(self):
        """Header plus payload: the packet's length without link padding."""
        return HEADER_LEN + self.payload_len

    def __repr__(self):
        return (f"Ipv6Header({addr6_to_str(self.src)} -> {addr6_to_str(self.dst)}, "
                f"nh={self.next_header}, hlim={self.hop_limit}, plen={self.payload_len})")


def parse_ipv6(packet, offset=0):
    """Validate the fixed IPv6 header at ``packet[offset:]`` and return an :class:`Ipv6Header`.

    Checks: 40 bytes present, version 6, the payload length within the bytes received
    (Ethernet padding after it is allowed).  A payload length of 0 is an empty payload: jumbo
    payloads (RFC 2675) do not exist on links with an MTU under 65575.  Address policy
    (multicast source, RFC 4291 section 2.7) is the caller's.  Raises :class:`WireError`.
    """
    available = len(packet) - offset
    if available < HEADER_LEN:
        raise WireError("ipv6_truncated", f"{available} bytes")
    word, payload_len, next_header, hop_limit, src, dst = _HEADER.unpack_from(packet, offset)
    if word >> 28 != 6:
        raise WireError("ipv6_bad_version", str(word >> 28))
    if payload_len > available - HEADER_LEN:
        raise WireError("ipv6_bad_payload_len",
                        f"{payload_len} (have {available - HEADER_LEN})")
    return Ipv6Header((word >> 20) & 0xFF, word & 0xFFFFF, payload_len, next_header, hop_limit,
                      src, dst)


def build_ipv6(src, dst, next_header, payload, hop_limit=DEFAULT_HOP_LIMIT, traffic_class=0,
               flow_label=0):
    """Return the 40-byte header followed by ``payload`` (which may begin with extension
    headers: ``next_header`` names the first of them)."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"IPv6 payload of {len(payload)} bytes exceeds 65535")
    return _pack(src, dst, next_header, len(payload), hop_limit, traffic_class,
                 flow_label) + payload


def ipv6_template(src, dst, next_header, hop_limit=DEFAULT_HOP_LIMIT, traffic_class=0,
                  flow_label=0):
    """A 40-byte header with the payload length left zero, for builders that fill it per
    packet at :data:`PAYLOAD_LEN_OFFSET` (IPv6 has no header checksum, so that is all)."""
    return _pack(src, dst, next_header, 0, hop_limit, traffic_class, flow_label)


def _pack(src, dst, next_header, payload_len, hop_limit, traffic_class, flow_label):
    if len(src) != 16 or len(dst) != 16:
        raise ValueError("IPv6 addresses must be 16 bytes")
    if not 0 <= traffic_class <= 0xFF or not 0 <= flow_label <= 0xFFFFF:
        raise ValueError(f"traffic class {traffic_class} or flow label {flow_label} "
                         "out of range")
    try:
        return _HEADER.pack((6 << 28) | (traffic_class << 20) | flow_label, payload_len,
                            next_header, hop_limit, src, dst)
    except struct.error as exc:
        raise ValueError(f"IPv6 header field out of range: {exc}") from None


# -- Extension headers ----------------------------------------------------------------------

class ParameterProblem(WireError):
    """A packet to drop and answer with ICMPv6 Parameter Problem (RFC 4443 section 3.4).

    ``code`` is one of the ``PARAM_*`` codes and ``pointer`` the offset of the offending byte
    from the start of the IPv6 header.  ``to_multicast`` says whether the answer is also due
    when the packet's destination was a multicast address: RFC 4443 section 2.4(e.3) allows
    that only for an unrecognized option whose type's high bits are ``10``; with ``11`` the
    answer goes only to unicast-addressed packets (RFC 8200 section 4.2).  Whatever the
    exception says, an error is never sent in reply to an ICMPv6 error or to a source that is
    not a unicast address (RFC 4443 section 2.4(e)); the host checks that.
    """

    def __init__(self, reason, code, pointer, to_multicast=False):
        super().__init__(reason, f"code {code}, pointer {pointer}")
        self.code = code
        self.pointer = pointer
        self.to_multicast = to_multicast


class FragmentHeader:
    """A Fragment header (RFC 8200 section 4.5).

    ``offset`` is the fragment's offset in bytes (the field times 8), ``more`` the M flag,
    ``ident`` the 32-bit identification, ``next_header`` the first header of the fragmentable
    part.  In a walk's result, ``header_offset`` is where the Fragment header starts in the
    packet (so the unfragmentable part is ``packet[ip_offset:header_offset]``) and
    ``data_offset`` where the fragment's data starts.
    """

    __slots__ = ("next_header", "offset", "more", "ident", "header_offset")

    def __init__(self, next_header, offset, more, ident, header_offset=0):
        self.next_header = next_header
        self.offset = offset
        self.more = more
        self.ident = ident
        self.header_offset = header_offset

    @property
    def data_offset(self):
        """Where the fragment data begins in the packet."""
        return self.header_offset + FRAGMENT_HEADER_LEN

    @property
    def is_atomic(self):
        """Offset 0 and no more fragments: a whole packet that happens to carry a Fragment
        header, processed as it is (RFC 8200 section 4.5, RFC 6946)."""
        return not self.offset and not self.more

    def __eq__(self, other):
        return isinstance(other, FragmentHeader) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self):
        return (f"FragmentHeader(nh={self.next_header}, offset={self.offset}, "
                f"more={self.more}, ident={self.ident:#x}, at={self.header_offset})")


def parse_fragment_header(packet, offset):
    """The Fragment header at ``packet[offset:]`` as a :class:`FragmentHeader`."""
    if len(packet) - offset < FRAGMENT_HEADER_LEN:
        raise WireError("ipv6_truncated_header", "fragment header")
    next_header, _reserved, offset_flags, ident = _FRAGMENT.unpack_from(packet, offset)
    return FragmentHeader(next_header, offset_flags & 0xFFF8, bool(offset_flags & 1), ident,
                          offset)


def build_fragment_header(next_header, offset, more, ident):
    """8 bytes of Fragment header; ``offset`` in bytes, a multiple of 8 below 65536."""
    if offset & 7 or not 0 <= offset <= 0xFFF8:
        raise ValueError(f"fragment offset {offset} is not a multiple of 8 below 65536")
    return _FRAGMENT.pack(next_header, 0, offset | bool(more), ident & 0xFFFFFFFF)


def build_router_alert_header(next_header, value=ROUTER_ALERT_MLD):
    """A Hop-by-Hop Options header holding only a Router Alert option (RFC 2711), as MLD
    messages need (RFC 3810 section 5): 8 bytes, padded with a 2-byte PadN."""
    return bytes((next_header, 0, OPT_ROUTER_ALERT, 2, value >> 8, value & 0xFF,
                  OPT_PADN, 0))


class HeaderChain:
    """What :func:`walk_extension_headers` found.

    - ``protocol``: the upper-layer protocol (6, 17, 58, :data:`NH_NONE` or any value the walk
      does not know as an extension header, e.g. 50 or 132); for a fragment that is not
      atomic, the Next Header of the Fragment header.
    - ``offset``: where the upper-layer data starts (for a fragment, the fragment data).
    - ``nh_field``: offset in the packet of the Next Header byte that held ``protocol``; an
      unknown protocol is answered with Parameter Problem code 1 pointing there (RFC 8200
      section 4: ``nh_field - ip_offset``), and reassembly rewrites that byte.
    - ``fragment``: a :class:`FragmentHeader` for a fragment that is not atomic, else None.
    - ``router_alert``: the Router Alert value from a Hop-by-Hop header, or None.
    """

    __slots__ = ("protocol", "offset", "nh_field", "fragment", "router_alert")

    def __init__(self, protocol, offset, nh_field, fragment=None, router_alert=None):
        self.protocol = protocol
        self.offset = offset
        self.nh_field = nh_field
        self.fragment = fragment
        self.router_alert = router_alert

    def __repr__(self):
        return (f"HeaderChain(protocol={self.protocol}, offset={self.offset}, "
                f"nh_field={self.nh_field}, fragment={self.fragment}, "
                f"router_alert={self.router_alert})")


def walk_extension_headers(packet, offset, next_header, end=None, ip_offset=None,
                           max_headers=MAX_EXTENSION_HEADERS):
    """Walk the extension headers from ``packet[offset:end]`` as a final destination does.

    ``offset`` is where the header named by ``next_header`` starts, normally just after the
    fixed header (``ip_offset``, by default ``offset - 40``, is where that header is: pointers
    in :class:`ParameterProblem` count from it).  ``end`` is the end of the IPv6 payload
    (default: the end of ``packet``).

    Returns a :class:`HeaderChain`.  Raises:

    - :class:`ParameterProblem` for what RFC 8200 answers with an ICMPv6 error: a Hop-by-Hop
      header anywhere but first (section 4, code 1), an unknown option whose action bits are
      ``10`` or ``11`` (section 4.2, code 2), a Routing header of an unknown type with segments
      left (section 4.4, code 0), a fragment whose length is not a multiple of 8 although more
      follow or which would end beyond 65535 bytes (section 4.5, code 0), a first fragment
      without the whole extension-header chain (section 4.5 and RFC 7112, code 3);
    - :class:`WireError` for packets dropped silently: truncated headers, an unknown option
      with action ``01``, more than ``max_headers`` headers, more than :data:`MAX_OPTIONS`
      options or :data:`MAX_PADDING` padding bytes in a row in one header (RFC 8504).

    Unknown options with action ``00`` are skipped.  A Routing header with Segments Left 0 is
    skipped whatever its type (section 4.4; type 0 is deprecated by RFC 5095, and a host
    processes no type with segments left).  An atomic fragment (offset 0, M clear) is walked
    through like any header (RFC 6946).
    """
    if end is None:
        end = len(packet)
    if ip_offset is None:
        ip_offset = offset - HEADER_LEN
    nh_field = ip_offset + 6
    router_alert = None
    count = 0
    while True:
        if next_header == NH_HOPOPTS and count:
            # RFC 8200 section 4: Next Header 0 anywhere but in the IPv6 header.
            raise ParameterProblem("ipv6_misplaced_hop_by_hop", PARAM_UNKNOWN_NEXT_HEADER,
                                   nh_field - ip_offset)
        if next_header in _OPTION_HEADERS:
            length = _header_length(packet, offset, end)
            alert = _walk_options(packet, offset + 2, offset + length, ip_offset)
            if next_header == NH_HOPOPTS:
                router_alert = alert
        elif next_header == NH_ROUTING:
            length = _header_length(packet, offset, end, 4)
            if packet[offset + 3]:         # segments left: we would have to forward it
                raise ParameterProblem("ipv6_routing_header", PARAM_ERRONEOUS_FIELD,
                                       offset + 2 - ip_offset)
        elif next_header == NH_FRAGMENT:
            if end - offset < FRAGMENT_HEADER_LEN:
                raise WireError("ipv6_truncated_header", "fragment header")
            header = parse_fragment_header(packet, offset)
            if not header.is_atomic:
                _check_fragment(packet, header, end, ip_offset)
                if not header.offset:
                    _check_first_fragment(packet, header, end, ip_offset, count, max_headers)
                return HeaderChain(header.next_header, header.data_offset, nh_field, header,
                                   router_alert)
            length = FRAGMENT_HEADER_LEN
        else:
            return HeaderChain(next_header, offset, nh_field, None, router_alert)
        count += 1
        if count > max_headers:
            raise WireError("ipv6_too_many_headers", str(count))
        nh_field = offset
        next_header = packet[offset]
        offset += length


def _header_length(packet, offset, end, minimum=2):
    """Bytes in the extension header at ``offset`` (RFC 8200 section 4.3 length encoding)."""
    if end - offset < minimum:
        raise WireError("ipv6_truncated_header", f"{end - offset} bytes")
    length = (packet[offset + 1] + 1) * 8
    if length > end - offset:
        raise WireError("ipv6_truncated_header", f"{length} > {end - offset} bytes")
    return length


def _walk_options(packet, i, end, ip_offset):
    """Process the TLV options of ``packet[i:end]``; return the Router Alert value or None."""
    alert = None
    options = 0
    padding = 0
    while i < end:
        kind = packet[i]
        if kind == OPT_PAD1:
            size = 1
        else:
            if i + 2 > end or i + 2 + packet[i + 1] > end:
                raise WireError("ipv6_bad_option_len", f"option {kind}")
            size = 2 + packet[i + 1]
        if kind in (OPT_PAD1, OPT_PADN):
            padding += size
            if padding > MAX_PADDING:
                raise WireError("ipv6_excess_padding", f"{padding} bytes")
        else:
            padding = 0
            options += 1
            if options > MAX_OPTIONS:
                raise WireError("ipv6_too_many_options", str(options))
            if kind == OPT_ROUTER_ALERT and size == 4:
                alert = (packet[i + 2] << 8) | packet[i + 3]
            elif kind != OPT_ROUTER_ALERT:
                action = kind >> 6          # RFC 8200 section 4.2
                if action == 1:
                    raise WireError("ipv6_unknown_option", f"type {kind:#x}")
                if action >= 2:
                    raise ParameterProblem("ipv6_unknown_option", PARAM_UNKNOWN_OPTION,
                                           i - ip_offset, action == 2)
                # action 0: skip
        i += size
    return alert


def _check_fragment(packet, header, end, ip_offset):
    """RFC 8200 section 4.5's per-fragment checks, answered with code 0."""
    data_len = end - header.data_offset
    if header.more and data_len & 7:
        raise ParameterProblem("ipv6_fragment_len", PARAM_ERRONEOUS_FIELD, 4)
    if header.offset + data_len > 0xFFFF:
        raise ParameterProblem("ipv6_fragment_too_long", PARAM_ERRONEOUS_FIELD,
                               header.header_offset + 2 - ip_offset)


def _check_first_fragment(packet, header, end, ip_offset, count, max_headers):
    """A first fragment carries every extension header up to the upper layer (RFC 7112)."""
    next_header = header.next_header
    offset = header.data_offset
    while next_header in _OPTION_HEADERS or next_header == NH_ROUTING:
        if end - offset < 2 or (packet[offset + 1] + 1) * 8 > end - offset:
            raise ParameterProblem("ipv6_incomplete_chain", PARAM_INCOMPLETE_CHAIN, 0)
        count += 1
        if count > max_headers:
            raise WireError("ipv6_too_many_headers", str(count))
        next_header = packet[offset]
        offset += (packet[offset + 1] + 1) * 8


# -- Addresses --------------------------------------------------------------------------------

def addr6_to_str(addr):
    """16 bytes -> RFC 5952 text (``fe80::1``)."""
    return str(ipaddress.IPv6Address(bytes(addr)))


def parse_addr6(text):
    """IPv6 text (RFC 4291 section 2.2, an embedded IPv4 tail allowed) -> 16 bytes.

    ``ValueError`` naming the text for anything else, including a ``%zone`` suffix: zones
    belong to socket addresses (``scope_id``), not to addresses.
    """
    if not isinstance(text, str) or "%" in text:
        raise ValueError(f"invalid IPv6 address {text!r}")
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        raise ValueError(f"invalid IPv6 address {text!r}") from None


def parse_prefix6(text):
    """``"fd00::/64"`` -> ``(16-byte address, prefix length)``; bits past the prefix length
    are kept (``"fd00::1/64"`` is an address with its prefix, as in ``ip=``)."""
    addr, slash, length = text.partition("/") if isinstance(text, str) else ("", "", "")
    if not slash or not length.isascii() or not length.isdigit() or int(length) > 128:
        raise ValueError(f"invalid IPv6 prefix {text!r}")
    return parse_addr6(addr), int(length)


def is_unspecified(addr):
    """``::``."""
    return addr == UNSPECIFIED


def is_loopback(addr):
    """``::1``."""
    return addr == LOOPBACK


def is_multicast(addr):
    """``ff00::/8``."""
    return addr[0] == 0xFF


def is_link_local(addr):
    """Link-local unicast, ``fe80::/10`` (RFC 4291 section 2.5.6)."""
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


def is_unique_local(addr):
    """Unique local unicast, ``fc00::/7`` (RFC 4193)."""
    return addr[0] & 0xFE == 0xFC


def is_ipv4_mapped(addr):
    """``::ffff:0:0/96`` (RFC 4291 section 2.5.5.2); the IPv4 address is ``addr[12:]``."""
    return addr[:12] == b"\0" * 10 + b"\xff\xff"


def multicast_scope(addr):
    """The scope field of a multicast address (``SCOPE_*``)."""
    return addr[1] & 0x0F


def addr_scope(addr):
    """The scope of any address as RFC 6724 section 3.1 orders them: a multicast address's
    own scope; link-local for link-local unicast and loopback; global for the rest (unique
    local addresses are global in scope, RFC 4193 section 3)."""
    if addr[0] == 0xFF:
        return addr[1] & 0x0F
    if is_link_local(addr) or addr == LOOPBACK:
        return SCOPE_LINK_LOCAL
    return SCOPE_GLOBAL


def solicited_node(addr):
    """The solicited-node multicast address of ``addr`` (RFC 4291 section 2.7.1):
    ``ff02::1:ff`` followed by its low 24 bits."""
    return _SOLICITED_NODE_PREFIX + bytes(addr[13:16])


def is_solicited_node(addr):
    """True for an address in ``ff02::1:ff00:0/104``."""
    return addr[:13] == _SOLICITED_NODE_PREFIX


def multicast_mac(addr):
    """The Ethernet address of an IPv6 multicast address (RFC 2464 section 7):
    ``33:33`` followed by its low 32 bits."""
    return b"\x33\x33" + bytes(addr[12:16])


def prefix_bytes(addr, prefix_len):
    """``addr`` with every bit past ``prefix_len`` cleared (16 bytes)."""
    if not 0 <= prefix_len <= 128:
        raise ValueError(f"invalid IPv6 prefix length {prefix_len}")
    value = int.from_bytes(addr, "big") >> (128 - prefix_len) << (128 - prefix_len)
    return value.to_bytes(16, "big")


def in_prefix(addr, prefix, prefix_len):
    """True when the first ``prefix_len`` bits of ``addr`` and ``prefix`` are equal."""
    shift = 128 - prefix_len
    return int.from_bytes(addr, "big") >> shift == int.from_bytes(prefix, "big") >> shift


def common_prefix_len(a, b):
    """How many leading bits ``a`` and ``b`` share (RFC 6724 section 2.2 CommonPrefixLen)."""
    return 128 - (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_length()
