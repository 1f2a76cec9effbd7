"""DHCPv4 messages (RFC 2131 section 2, options from RFC 2132, 3396, 3442, 4702).

A :class:`DhcpMessage` holds the fixed BOOTP fields and the options as a dict from option code
to raw bytes; :meth:`DhcpMessage.get` and :meth:`DhcpMessage.set` convert the options this stack
uses to and from Python values (addresses as 4-byte ``bytes``, times as ints, names as ``str``).
Decoding is lazy: a malformed option raises :class:`~lwstack.wire.WireError` when it is read,
so a message with a broken option the reader does not care about still parses.

Surprises handled here:

- An option may appear several times; the instances are concatenated into one value
  (RFC 3396 section 7), and values longer than 255 bytes are split the same way on emit.
- With option 52 (overload) the ``file`` and then the ``sname`` field carry more options
  (RFC 2131 section 4.1 gives that order); they are then not names and are returned empty.
- Messages are padded to 300 bytes, the BOOTP minimum some relays and servers still expect
  (RFC 1542 section 2.1).
"""
import struct
from typing import NamedTuple

from lwstack.wire import WireError

BOOTREQUEST = 1
BOOTREPLY = 2
SERVER_PORT = 67
CLIENT_PORT = 68
HTYPE_ETHERNET = 1
FLAG_BROADCAST = 0x8000
MAGIC_COOKIE = b"\x63\x82\x53\x63"
ANY = b"\0\0\0\0"
BROADCAST = b"\xff\xff\xff\xff"
#: RFC 1542 section 2.1: the smallest BOOTP message relays must accept.
MIN_LEN = 300
#: The fixed fields and the magic cookie (RFC 2131 figure 1).
HEADER_LEN = 240

# Message types (option 53, RFC 2132 section 9.6).
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_NAMES = {DISCOVER: "DHCPDISCOVER", OFFER: "DHCPOFFER", REQUEST: "DHCPREQUEST",
                 DECLINE: "DHCPDECLINE", ACK: "DHCPACK", NAK: "DHCPNAK",
                 RELEASE: "DHCPRELEASE", INFORM: "DHCPINFORM"}

# Option codes.
OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOST_NAME = 12
OPT_DOMAIN_NAME = 15
OPT_MTU = 26
OPT_BROADCAST_ADDR = 28
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_REQUEST = 55
OPT_MESSAGE = 56
OPT_MAX_MESSAGE_SIZE = 57
OPT_RENEWAL_TIME = 58
OPT_REBINDING_TIME = 59
OPT_CLIENT_ID = 61
OPT_CLIENT_FQDN = 81
OPT_CLASSLESS_ROUTES = 121
OPT_END = 255

#: Lease time meaning "forever" (RFC 2132 section 9.2).
INFINITE = 0xFFFFFFFF

# Client FQDN flags (RFC 4702 section 2.1).
FQDN_S = 0x01   # the server should update the A record
FQDN_O = 0x02   # the server overrode the client's S choice
FQDN_E = 0x04   # the name is in DNS wire format (canonical, uncompressed)
FQDN_N = 0x08   # the server should do no DNS update at all

_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


class ClientFqdn(NamedTuple):
    """Option 81's value (RFC 4702).  ``name`` is text; with the E flag a name ending in "."
    is fully qualified and one without is partial (section 2.3.1).  Clients send the two
    RCODE fields as 0, servers as 255 (section 2.2)."""

    flags: int
    name: str
    rcode1: int = 0
    rcode2: int = 0


class DhcpMessage:
    """One DHCP message: the BOOTP header fields and ``options`` (code -> raw bytes).

    Addresses are 4-byte ``bytes``; ``chaddr`` is the client hardware address itself (its
    length is ``hlen``), ``sname`` and ``file`` are bytes without their NUL padding.
    """

    __slots__ = ("op", "htype", "hops", "xid", "secs", "flags", "ciaddr", "yiaddr",
                 "siaddr", "giaddr", "chaddr", "sname", "file", "options")

    def __init__(self, op=BOOTREQUEST, xid=0, *, secs=0, flags=0, ciaddr=ANY, yiaddr=ANY,
                 siaddr=ANY, giaddr=ANY, chaddr=b"", htype=HTYPE_ETHERNET, hops=0,
                 sname=b"", file=b"", options=None):
        self.op = op
        self.htype = htype
        self.hops = hops
        self.xid = xid
        self.secs = secs
        self.flags = flags
        self.ciaddr = ciaddr
        self.yiaddr = yiaddr
        self.siaddr = siaddr
        self.giaddr = giaddr
        self.chaddr = chaddr
        self.sname = sname
        self.file = file
        self.options = {} if options is None else dict(options)

    # -- parsing and emitting ------------------------------------------------------------

    @classmethod
    def parse(cls, data):
        """Parse a DHCP message (a UDP payload); :class:`WireError` if it is not one.

        Checks: the fixed header and magic cookie are present, ``op`` is 1 or 2, ``hlen``
        is at most 16, every option fits.  A missing END option is tolerated when the data
        ends on an option boundary.
        """
        if len(data) < HEADER_LEN:
            raise WireError("dhcp4_truncated", f"{len(data)} bytes")
        (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
         sname, file) = _FIXED.unpack_from(data)
        if op not in (BOOTREQUEST, BOOTREPLY):
            raise WireError("dhcp4_bad_op", str(op))
        if hlen > 16:
            raise WireError("dhcp4_bad_hlen", str(hlen))
        if bytes(data[236:240]) != MAGIC_COOKIE:
            raise WireError("dhcp4_bad_cookie", bytes(data[236:240]).hex())
        chunks = {}
        _parse_options(data, HEADER_LEN, len(data), chunks)
        overload = chunks.get(OPT_OVERLOAD)
        if overload is not None:
            if len(overload) != 1 or not 1 <= overload[0][0] <= 3:
                raise WireError("dhcp4_bad_overload")
            # RFC 2131 section 4.1: options, then 'file', then 'sname'.
            if overload[0][0] & 1:
                _parse_options(data, 108, 236, chunks)
                file = b""
            if overload[0][0] & 2:
                _parse_options(data, 44, 108, chunks)
                sname = b""
        options = {code: b"".join(parts) for code, parts in chunks.items()}
        options.pop(OPT_OVERLOAD, None)
        return cls(op, xid, secs=secs, flags=flags, ciaddr=ciaddr, yiaddr=yiaddr,
                   siaddr=siaddr, giaddr=giaddr, chaddr=chaddr[:hlen], htype=htype, hops=hops,
                   sname=sname.rstrip(b"\0"), file=file.rstrip(b"\0"), options=options)

    def emit(self, min_len=MIN_LEN):
        """The message as bytes: option 53 first, the others in insertion order, END, and
        zero padding up to ``min_len``.  Values over 255 bytes are split (RFC 3396)."""
        if len(self.chaddr) > 16 or len(self.sname) > 64 or len(self.file) > 128:
            raise ValueError("chaddr, sname or file too long")
        out = bytearray(_FIXED.pack(self.op, self.htype, len(self.chaddr), self.hops, self.xid,
                                    self.secs, self.flags, self.ciaddr, self.yiaddr,
                                    self.siaddr, self.giaddr, self.chaddr, self.sname,
                                    self.file))
        out += MAGIC_COOKIE
        codes = sorted(self.options, key=lambda code: code != OPT_MESSAGE_TYPE)
        for code in codes:
            if not 0 < code < OPT_END:
                raise ValueError(f"option code {code} cannot be sent")
            value = self.options[code]
            if not value:
                out += bytes((code, 0))
            for start in range(0, len(value), 255):
                piece = value[start:start + 255]
                out += bytes((code, len(piece)))
                out += piece
        out.append(OPT_END)
        if len(out) < min_len:
            out += bytes(min_len - len(out))
        return bytes(out)

    # -- typed options ------------------------------------------------------------------

    def get(self, code, default=None):
        """Option ``code`` decoded by its kind (see :data:`OPTION_KINDS`; raw bytes for codes
        not listed), or ``default`` when absent.  :class:`WireError` if it is malformed."""
        raw = self.options.get(code)
        if raw is None:
            return default
        kind = OPTION_KINDS.get(code)
        return raw if kind is None else _DECODERS[kind](raw, code)

    def set(self, code, value):
        """Store option ``code`` encoded from ``value`` by its kind (raw bytes for codes not
        listed); ``None`` removes it."""
        if value is None:
            self.options.pop(code, None)
            return
        kind = OPTION_KINDS.get(code)
        self.options[code] = bytes(value) if kind is None else _ENCODERS[kind](value)

    @property
    def message_type(self):
        """Option 53 as an int, or None (a plain BOOTP message).  WireError if malformed."""
        return self.get(OPT_MESSAGE_TYPE)

    @property
    def broadcast(self):
        """The BROADCAST flag (RFC 2131 section 2, figure 2)."""
        return bool(self.flags & FLAG_BROADCAST)

    def __repr__(self):
        try:
            name = MESSAGE_NAMES.get(self.message_type, "BOOTP")
        except WireError:
            name = "malformed"
        return (f"DhcpMessage({name}, xid={self.xid:#010x}, chaddr={self.chaddr.hex(':')}, "
                f"ciaddr={_dotted(self.ciaddr)}, yiaddr={_dotted(self.yiaddr)}, "
                f"options={sorted(self.options)})")


def _parse_options(data, offset, end, chunks):
    """Collect the options in ``data[offset:end]`` into ``chunks`` (code -> list of parts)."""
    while offset < end:
        code = data[offset]
        if code == OPT_END:
            return
        if code == OPT_PAD:
            offset += 1
            continue
        if offset + 2 > end or offset + 2 + data[offset + 1] > end:
            raise WireError("dhcp4_option_truncated", f"option {code}")
        length = data[offset + 1]
        chunks.setdefault(code, []).append(bytes(data[offset + 2:offset + 2 + length]))
        offset += 2 + length


def _mask(width):
    return (0xFFFFFFFF << (32 - width)) & 0xFFFFFFFF


def _dotted(addr):
    return ".".join(map(str, addr))


# -- option kinds ---------------------------------------------------------------------------

def _check_len(raw, code, size):
    if len(raw) != size:
        raise WireError("dhcp4_bad_option", f"option {code}: {len(raw)} bytes, want {size}")


def _dec_addr(raw, code):
    _check_len(raw, code, 4)
    return bytes(raw)


def _dec_addrs(raw, code):
    if not raw or len(raw) % 4:
        raise WireError("dhcp4_bad_option", f"option {code}: {len(raw)} bytes")
    return tuple(bytes(raw[i:i + 4]) for i in range(0, len(raw), 4))


def _dec_int(size):
    def decode(raw, code):
        _check_len(raw, code, size)
        return int.from_bytes(raw, "big")
    return decode


def _dec_text(raw, code):
    # RFC 2132 says no trailing NUL, but some servers send one.
    try:
        return raw.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        raise WireError("dhcp4_bad_option", f"option {code}: not ASCII") from None


def _dec_codes(raw, code):
    return tuple(raw)


def _dec_routes(raw, code):
    """RFC 3442 section 3: (width, significant octets of the destination, router)..."""
    routes = []
    offset = 0
    while offset < len(raw):
        width = raw[offset]
        if width > 32:
            raise WireError("dhcp4_bad_option", f"option {code}: prefix length {width}")
        significant = (width + 7) // 8
        if offset + 1 + significant + 4 > len(raw):
            raise WireError("dhcp4_bad_option", f"option {code}: truncated route")
        dest = int.from_bytes(raw[offset + 1:offset + 1 + significant].ljust(4, b"\0"), "big")
        dest &= _mask(width)     # RFC 3442 section 3: bits beyond the mask are zeroed
        router = bytes(raw[offset + 1 + significant:offset + 5 + significant])
        routes.append((dest.to_bytes(4, "big"), width, router))
        offset += 5 + significant
    if not routes:
        raise WireError("dhcp4_bad_option", f"option {code}: empty")
    return tuple(routes)


def _dec_fqdn(raw, code):
    if len(raw) < 3:
        raise WireError("dhcp4_bad_option", f"option {code}: {len(raw)} bytes")
    flags, rcode1, rcode2 = raw[0], raw[1], raw[2]
    if not flags & FQDN_E:
        return ClientFqdn(flags, _dec_text(raw[3:], code), rcode1, rcode2)
    labels = []
    offset = 3
    while offset < len(raw):
        length = raw[offset]
        if length == 0:
            if offset + 1 != len(raw):
                raise WireError("dhcp4_bad_option", f"option {code}: data after the root")
            return ClientFqdn(flags, ".".join(labels) + ".", rcode1, rcode2)
        # RFC 4702 section 2.3.1: no compression, so every length byte is a label length.
        if length > 63 or offset + 1 + length > len(raw):
            raise WireError("dhcp4_bad_option", f"option {code}: bad label")
        labels.append(_dec_text(raw[offset + 1:offset + 1 + length], code))
        offset += 1 + length
    return ClientFqdn(flags, ".".join(labels), rcode1, rcode2)   # a partial name


def _enc_addr(value):
    if len(value) != 4:
        raise ValueError("an IPv4 address is 4 bytes")
    return bytes(value)


def _enc_addrs(value):
    return b"".join(_enc_addr(addr) for addr in value)


def _enc_int(size):
    return lambda value: int(value).to_bytes(size, "big")


def _enc_text(value):
    return value.encode("ascii") if isinstance(value, str) else bytes(value)


def _enc_routes(value):
    out = bytearray()
    for dest, width, router in value:
        if not 0 <= width <= 32:
            raise ValueError(f"invalid prefix length {width}")
        masked = int.from_bytes(_enc_addr(dest), "big") & _mask(width)
        out.append(width)
        out += masked.to_bytes(4, "big")[:(width + 7) // 8]
        out += _enc_addr(router)
    return bytes(out)


def _enc_fqdn(value):
    flags, name, rcode1, rcode2 = value
    out = bytearray((flags, rcode1, rcode2))
    if not flags & FQDN_E:
        return bytes(out) + name.encode("ascii")
    full = name.endswith(".")
    body = name[:-1] if full else name
    for label in body.split(".") if body else ():
        raw = label.encode("ascii")
        if not 0 < len(raw) <= 63:
            raise ValueError(f"invalid DNS label in {name!r}")
        out.append(len(raw))
        out += raw
    if full:
        out.append(0)
    return bytes(out)


#: How :meth:`DhcpMessage.get` decodes each option this stack knows.
OPTION_KINDS = {
    OPT_SUBNET_MASK: "addr", OPT_ROUTER: "addrs", OPT_DNS: "addrs", OPT_HOST_NAME: "text",
    OPT_DOMAIN_NAME: "text", OPT_MTU: "u16", OPT_BROADCAST_ADDR: "addr",
    OPT_REQUESTED_IP: "addr", OPT_LEASE_TIME: "u32", OPT_MESSAGE_TYPE: "u8",
    OPT_SERVER_ID: "addr", OPT_PARAM_REQUEST: "codes", OPT_MESSAGE: "text",
    OPT_MAX_MESSAGE_SIZE: "u16", OPT_RENEWAL_TIME: "u32", OPT_REBINDING_TIME: "u32",
    OPT_CLIENT_ID: "bytes", OPT_CLIENT_FQDN: "fqdn", OPT_CLASSLESS_ROUTES: "routes",
}
_DECODERS = {"addr": _dec_addr, "addrs": _dec_addrs, "u8": _dec_int(1), "u16": _dec_int(2),
             "u32": _dec_int(4), "text": _dec_text, "codes": _dec_codes,
             "bytes": lambda raw, code: bytes(raw), "routes": _dec_routes, "fqdn": _dec_fqdn}
_ENCODERS = {"addr": _enc_addr, "addrs": _enc_addrs, "u8": _enc_int(1), "u16": _enc_int(2),
             "u32": _enc_int(4), "text": _enc_text, "codes": bytes, "bytes": bytes,
             "routes": _enc_routes, "fqdn": _enc_fqdn}


def mask_to_prefix(mask):
    """A 4-byte netmask -> prefix length; :class:`WireError` if its ones are not contiguous."""
    value = int.from_bytes(mask, "big")
    inverted = ~value & 0xFFFFFFFF
    if inverted & (inverted + 1):
        raise WireError("dhcp4_bad_mask", _dotted(mask))
    return 32 - inverted.bit_length()


def prefix_to_mask(prefix_len):
    """Prefix length 0..32 -> 4-byte netmask."""
    if not 0 <= prefix_len <= 32:
        raise ValueError(f"invalid IPv4 prefix length {prefix_len}")
    return _mask(prefix_len).to_bytes(4, "big")
