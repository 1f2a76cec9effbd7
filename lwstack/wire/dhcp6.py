"""DHCPv6 messages (RFC 8415 sections 8 and 21), with RFC 3646 DNS and RFC 4704 FQDN options.

A message is ``msg-type (1) | transaction-id (3) | options``; an option is ``code (2) |
length (2) | data``.  :func:`parse_message` turns the client/server messages (SOLICIT ..
INFORMATION-REQUEST; relay messages are refused) into a :class:`Message` whose known options
are decoded into fields; options this module does not know are kept, in order, in
``Message.options`` (and ``IaNa.options``, ``IaAddress.options``) as ``(code, data)`` so a
message round-trips.  :meth:`Message.emit` builds the bytes back.

Bounds: at most :data:`MAX_OPTIONS` options in any options area (the message, an IA_NA, an
IAADDR), a DUID of at most 130 bytes (RFC 8415 section 11.1), names of at most 255 bytes in
labels of at most 63.  Options that RFC 8415 section 21 allows once per area are refused when
repeated (a second Server Identifier makes a message ambiguous).  Every malformed input raises
:class:`~lwstack.wire.WireError`.

Domain names in DHCPv6 options are uncompressed DNS wire names (RFC 8415 section 10); they are
handled here as text without the trailing dot (``"example.com"``).
"""
import dataclasses
import struct
import typing

from lwstack.wire import WireError

CLIENT_PORT = 546
SERVER_PORT = 547
#: All_DHCP_Relay_Agents_and_Servers (RFC 8415 section 7.1), ff02::1:2.
ALL_DHCP_RELAY_AGENTS_AND_SERVERS = bytes.fromhex("ff020000000000000000000000010002")

# Message types (RFC 8415 section 7.3).
SOLICIT = 1
ADVERTISE = 2
REQUEST = 3
CONFIRM = 4
RENEW = 5
REBIND = 6
REPLY = 7
RELEASE = 8
DECLINE = 9
RECONFIGURE = 10
INFORMATION_REQUEST = 11
RELAY_FORW = 12
RELAY_REPL = 13
MESSAGE_NAMES = {SOLICIT: "SOLICIT", ADVERTISE: "ADVERTISE", REQUEST: "REQUEST",
                 CONFIRM: "CONFIRM", RENEW: "RENEW", REBIND: "REBIND", REPLY: "REPLY",
                 RELEASE: "RELEASE", DECLINE: "DECLINE", RECONFIGURE: "RECONFIGURE",
                 INFORMATION_REQUEST: "INFORMATION-REQUEST"}

# Option codes (RFC 8415 section 21, RFC 3646, RFC 4704).
OPTION_CLIENTID = 1
OPTION_SERVERID = 2
OPTION_IA_NA = 3
OPTION_IA_TA = 4
OPTION_IAADDR = 5
OPTION_ORO = 6
OPTION_PREFERENCE = 7
OPTION_ELAPSED_TIME = 8
OPTION_UNICAST = 12
OPTION_STATUS_CODE = 13
OPTION_RAPID_COMMIT = 14
OPTION_DNS_SERVERS = 23
OPTION_DOMAIN_LIST = 24
OPTION_IA_PD = 25
OPTION_INFORMATION_REFRESH_TIME = 32
OPTION_CLIENT_FQDN = 39
OPTION_SOL_MAX_RT = 82
OPTION_INF_MAX_RT = 83

# Status codes (RFC 8415 section 21.13).
STATUS_SUCCESS = 0
STATUS_UNSPEC_FAIL = 1
STATUS_NO_ADDRS_AVAIL = 2
STATUS_NO_BINDING = 3
STATUS_NOT_ON_LINK = 4
STATUS_USE_MULTICAST = 5
STATUS_NO_PREFIX_AVAIL = 6

# DUID types (RFC 8415 section 11).
DUID_LLT = 1
DUID_EN = 2
DUID_LL = 3
DUID_UUID = 4
HW_TYPE_ETHERNET = 1

# RFC 4704 section 4.1 flags of the Client FQDN option.
FQDN_S = 0x01     # the server should perform (or, in a reply, performed) the AAAA update
FQDN_O = 0x02     # the server overrode the client's S bit (server only)
FQDN_N = 0x04     # the server should not perform any DNS update

#: A lifetime or T1/T2 of all ones means "infinity" (RFC 8415 section 7.7).
INFINITY = 0xFFFFFFFF
#: Options in one options area; far more than any real message carries.
MAX_OPTIONS = 64
#: A DUID is at most 128 octets plus its 2-octet type (RFC 8415 section 11.1).
MAX_DUID_LEN = 130

_OPTION = struct.Struct("!HH")
_IA_NA = struct.Struct("!III")
_IAADDR = struct.Struct("!16sII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class StatusCode(typing.NamedTuple):
    """A Status Code option (RFC 8415 section 21.13): a code and a UTF-8 message."""

    code: int
    message: str = ""


class ClientFqdn(typing.NamedTuple):
    """A Client FQDN option (RFC 4704 section 4): flags (S, O, N) and a name.

    ``partial`` is True when the name came without its terminating root label (a host name
    the server is to complete, RFC 4704 section 4.2).
    """

    flags: int
    name: str
    partial: bool = False


class Duid(typing.NamedTuple):
    """A parsed DUID (RFC 8415 section 11).

    ``kind`` is :data:`DUID_LLT`, :data:`DUID_EN`, :data:`DUID_LL`, :data:`DUID_UUID` or
    another number; ``hw_type`` and ``link_addr`` are set for LLT and LL, ``time`` (seconds
    since 2000-01-01 UTC) for LLT, ``enterprise`` for EN; ``identifier`` is the remaining
    bytes (the link-layer address, the EN identifier, the UUID, or the whole body for
    unknown kinds).
    """

    kind: int
    hw_type: typing.Optional[int] = None
    time: typing.Optional[int] = None
    enterprise: typing.Optional[int] = None
    identifier: bytes = b""

    @property
    def link_addr(self):
        """The link-layer address of a DUID-LL or DUID-LLT, else None."""
        return self.identifier if self.kind in (DUID_LL, DUID_LLT) else None


@dataclasses.dataclass
class IaAddress:
    """An IA Address option (RFC 8415 section 21.6): an address and its lifetimes (s)."""

    address: bytes
    preferred: int = 0
    valid: int = 0
    status: typing.Optional[StatusCode] = None
    options: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class IaNa:
    """An Identity Association for Non-temporary Addresses (RFC 8415 section 21.4)."""

    iaid: int
    t1: int = 0
    t2: int = 0
    addresses: list = dataclasses.field(default_factory=list)
    status: typing.Optional[StatusCode] = None
    options: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Message:
    """One DHCPv6 client/server message.

    Absent options are None (or empty lists for ``ia_na`` and ``options``); ``dns_servers``
    and ``domains`` are None when absent and a (possibly empty) list when present.
    ``elapsed_time`` is in hundredths of a second (RFC 8415 section 21.9).
    """

    msg_type: int
    xid: int
    client_id: typing.Optional[bytes] = None
    server_id: typing.Optional[bytes] = None
    ia_na: list = dataclasses.field(default_factory=list)
    oro: typing.Optional[list] = None
    preference: typing.Optional[int] = None
    elapsed_time: typing.Optional[int] = None
    status: typing.Optional[StatusCode] = None
    rapid_commit: bool = False
    dns_servers: typing.Optional[list] = None
    domains: typing.Optional[list] = None
    fqdn: typing.Optional[ClientFqdn] = None
    refresh_time: typing.Optional[int] = None
    sol_max_rt: typing.Optional[int] = None
    inf_max_rt: typing.Optional[int] = None
    options: list = dataclasses.field(default_factory=list)

    def find_ia(self, iaid):
        """The IA_NA with this IAID, or None."""
        for ia in self.ia_na:
            if ia.iaid == iaid:
                return ia
        return None

    def emit(self):
        """The message as bytes."""
        if not 0 <= self.xid <= 0xFFFFFF:
            raise ValueError(f"transaction id {self.xid} does not fit 24 bits")
        out = [struct.pack("!I", (self.msg_type << 24) | self.xid)]
        if self.client_id is not None:
            out.append(_option(OPTION_CLIENTID, self.client_id))
        if self.server_id is not None:
            out.append(_option(OPTION_SERVERID, self.server_id))
        if self.oro is not None:
            out.append(_option(OPTION_ORO, struct.pack(f"!{len(self.oro)}H", *self.oro)))
        if self.preference is not None:
            out.append(_option(OPTION_PREFERENCE, bytes([self.preference])))
        if self.elapsed_time is not None:
            out.append(_option(OPTION_ELAPSED_TIME, _U16.pack(min(self.elapsed_time, 0xFFFF))))
        if self.status is not None:
            out.append(_status_option(self.status))
        if self.rapid_commit:
            out.append(_option(OPTION_RAPID_COMMIT, b""))
        for ia in self.ia_na:
            out.append(_ia_na_option(ia))
        if self.dns_servers is not None:
            out.append(_option(OPTION_DNS_SERVERS, b"".join(self.dns_servers)))
        if self.domains is not None:
            out.append(_option(OPTION_DOMAIN_LIST, b"".join(encode_name(d) for d in self.domains)))
        if self.fqdn is not None:
            name = encode_name(self.fqdn.name, self.fqdn.partial)
            out.append(_option(OPTION_CLIENT_FQDN, bytes([self.fqdn.flags]) + name))
        for code, value in ((OPTION_INFORMATION_REFRESH_TIME, self.refresh_time),
                            (OPTION_SOL_MAX_RT, self.sol_max_rt),
                            (OPTION_INF_MAX_RT, self.inf_max_rt)):
            if value is not None:
                out.append(_option(code, _U32.pack(value)))
        out.extend(_option(code, data) for code, data in self.options)
        return b"".join(out)


# --- emitting -------------------------------------------------------------------------------

def _option(code, data):
    if len(data) > 0xFFFF:
        raise ValueError(f"option {code} of {len(data)} bytes exceeds 65535")
    return _OPTION.pack(code, len(data)) + data


def _status_option(status):
    return _option(OPTION_STATUS_CODE, _U16.pack(status.code) + status.message.encode())


def _ia_na_option(ia):
    body = [_IA_NA.pack(ia.iaid, ia.t1, ia.t2)]
    for addr in ia.addresses:
        inner = [_IAADDR.pack(addr.address, addr.preferred, addr.valid)]
        if addr.status is not None:
            inner.append(_status_option(addr.status))
        inner.extend(_option(code, data) for code, data in addr.options)
        body.append(_option(OPTION_IAADDR, b"".join(inner)))
    if ia.status is not None:
        body.append(_status_option(ia.status))
    body.extend(_option(code, data) for code, data in ia.options)
    return _option(OPTION_IA_NA, b"".join(body))


def encode_name(name, partial=False):
    """A domain name as uncompressed DNS wire labels (RFC 1035 section 3.1).

    ``partial`` leaves out the terminating root label (RFC 4704 section 4.2).  Raises
    ValueError for labels that are empty or over 63 bytes and names over 255 bytes.
    """
    name = name.rstrip(".")
    out = bytearray()
    for label in name.split(".") if name else ():
        raw = label.encode("ascii")
        if not 0 < len(raw) <= 63:
            raise ValueError(f"bad label {label!r} in {name!r}")
        out.append(len(raw))
        out += raw
    if not partial:
        out.append(0)
    if len(out) > 255:
        raise ValueError(f"name {name!r} longer than 255 bytes")
    return bytes(out)


# --- parsing --------------------------------------------------------------------------------

def _iter_options(data, start=0):
    """Yield ``(code, body)`` for each option in ``data[start:]``, bounded and length-checked."""
    end = len(data)
    pos = start
    count = 0
    while pos < end:
        if end - pos < 4:
            raise WireError("dhcp6_truncated_option", f"{end - pos} bytes left at {pos}")
        code, length = _OPTION.unpack_from(data, pos)
        pos += 4
        if length > end - pos:
            raise WireError("dhcp6_option_overrun", f"option {code} length {length}")
        count += 1
        if count > MAX_OPTIONS:
            raise WireError("dhcp6_too_many_options")
        yield code, bytes(data[pos:pos + length])
        pos += length


def _fixed(code, body, size):
    if len(body) != size:
        raise WireError("dhcp6_bad_option_length", f"option {code}: {len(body)} bytes")
    return body


def _parse_status(body):
    if len(body) < 2:
        raise WireError("dhcp6_bad_option_length", f"status code: {len(body)} bytes")
    return StatusCode(_U16.unpack_from(body)[0], body[2:].decode("utf-8", "replace"))


def _parse_iaaddr(body):
    if len(body) < _IAADDR.size:
        raise WireError("dhcp6_bad_option_length", f"IAADDR: {len(body)} bytes")
    address, preferred, valid = _IAADDR.unpack_from(body)
    addr = IaAddress(address, preferred, valid)
    for code, inner in _iter_options(body, _IAADDR.size):
        if code == OPTION_STATUS_CODE:
            if addr.status is not None:
                raise WireError("dhcp6_duplicate_option", "status code in IAADDR")
            addr.status = _parse_status(inner)
        else:
            addr.options.append((code, inner))
    return addr


def _parse_ia_na(body):
    if len(body) < _IA_NA.size:
        raise WireError("dhcp6_bad_option_length", f"IA_NA: {len(body)} bytes")
    ia = IaNa(*_IA_NA.unpack_from(body))
    for code, inner in _iter_options(body, _IA_NA.size):
        if code == OPTION_IAADDR:
            ia.addresses.append(_parse_iaaddr(inner))
        elif code == OPTION_STATUS_CODE:
            if ia.status is not None:
                raise WireError("dhcp6_duplicate_option", "status code in IA_NA")
            ia.status = _parse_status(inner)
        else:
            ia.options.append((code, inner))
    return ia


def decode_names(data, allow_partial=False):
    """The domain names in ``data`` (uncompressed wire format), as text without trailing dots.

    With ``allow_partial`` a last name without its root label is accepted (RFC 4704); the
    result is then ``(names, partial)``.
    """
    names = []
    labels = []
    size = 0
    pos = 0
    while pos < len(data):
        length = data[pos]
        pos += 1
        if length == 0:
            names.append(".".join(labels))
            labels, size = [], 0
            continue
        if length > 63:
            raise WireError("dhcp6_bad_name", f"label length {length} (compression?)")
        if pos + length > len(data):
            raise WireError("dhcp6_bad_name", "label overruns the option")
        raw = bytes(data[pos:pos + length])
        pos += length
        size += length + 1
        if size > 254 or b"." in raw:
            raise WireError("dhcp6_bad_name", "name too long or label with a dot")
        try:
            labels.append(raw.decode("ascii"))
        except UnicodeDecodeError:
            raise WireError("dhcp6_bad_name", "non-ASCII label") from None
    partial = bool(labels)
    if partial:
        if not allow_partial:
            raise WireError("dhcp6_bad_name", "name without its root label")
        names.append(".".join(labels))
    return (names, partial) if allow_partial else names


def _parse_fqdn(body):
    if not body:
        raise WireError("dhcp6_bad_option_length", "client FQDN: empty")
    names, partial = decode_names(body[1:], allow_partial=True)
    if len(names) > 1:
        raise WireError("dhcp6_bad_name", "client FQDN with several names")
    return ClientFqdn(body[0], names[0] if names else "", partial)


def _parse_u32(code, body):
    return _U32.unpack(_fixed(code, body, 4))[0]


#: Singular top-level options: code -> (Message field, parser(code, body)).
_SINGULAR = {
    OPTION_CLIENTID: ("client_id", lambda c, b: _duid_bytes(b)),
    OPTION_SERVERID: ("server_id", lambda c, b: _duid_bytes(b)),
    OPTION_ORO: ("oro", lambda c, b: list(struct.unpack(f"!{len(b) // 2}H", _even(c, b)))),
    OPTION_PREFERENCE: ("preference", lambda c, b: _fixed(c, b, 1)[0]),
    OPTION_ELAPSED_TIME: ("elapsed_time", lambda c, b: _U16.unpack(_fixed(c, b, 2))[0]),
    OPTION_STATUS_CODE: ("status", lambda c, b: _parse_status(b)),
    OPTION_RAPID_COMMIT: ("rapid_commit", lambda c, b: not _fixed(c, b, 0)),
    OPTION_DNS_SERVERS: ("dns_servers", lambda c, b: _addresses(c, b)),
    OPTION_DOMAIN_LIST: ("domains", lambda c, b: decode_names(b)),
    OPTION_CLIENT_FQDN: ("fqdn", lambda c, b: _parse_fqdn(b)),
    OPTION_INFORMATION_REFRESH_TIME: ("refresh_time", _parse_u32),
    OPTION_SOL_MAX_RT: ("sol_max_rt", _parse_u32),
    OPTION_INF_MAX_RT: ("inf_max_rt", _parse_u32),
}


def _duid_bytes(body):
    if not 2 < len(body) <= MAX_DUID_LEN:
        raise WireError("dhcp6_bad_duid", f"{len(body)} bytes")
    return body


def _even(code, body):
    if len(body) % 2:
        raise WireError("dhcp6_bad_option_length", f"option {code}: {len(body)} bytes")
    return body


def _addresses(code, body):
    if len(body) % 16:
        raise WireError("dhcp6_bad_option_length", f"option {code}: {len(body)} bytes")
    return [body[i:i + 16] for i in range(0, len(body), 16)]


def parse_message(data):
    """Parse a DHCPv6 client/server message into a :class:`Message` (raises WireError)."""
    if len(data) < 4:
        raise WireError("dhcp6_truncated", f"{len(data)} bytes")
    msg_type = data[0]
    if msg_type in (RELAY_FORW, RELAY_REPL):
        raise WireError("dhcp6_relay_message")
    if msg_type not in MESSAGE_NAMES:
        raise WireError("dhcp6_unknown_type", str(msg_type))
    message = Message(msg_type, int.from_bytes(data[1:4], "big"))
    seen = set()
    for code, body in _iter_options(data, 4):
        if code == OPTION_IA_NA:
            message.ia_na.append(_parse_ia_na(body))
            continue
        known = _SINGULAR.get(code)
        if known is None:
            message.options.append((code, body))
            continue
        if code in seen:
            raise WireError("dhcp6_duplicate_option", str(code))
        seen.add(code)
        field, parse = known
        setattr(message, field, parse(code, body))
    return message


# --- DUIDs ----------------------------------------------------------------------------------

def parse_duid(raw):
    """Decode a DUID's type and fields (RFC 8415 section 11); raises WireError."""
    if len(raw) < 3 or len(raw) > MAX_DUID_LEN:
        raise WireError("dhcp6_bad_duid", f"{len(raw)} bytes")
    kind = _U16.unpack_from(raw)[0]
    if kind == DUID_LLT:
        if len(raw) < 9:
            raise WireError("dhcp6_bad_duid", "DUID-LLT too short")
        hw_type, time = struct.unpack_from("!HI", raw, 2)
        return Duid(kind, hw_type=hw_type, time=time, identifier=bytes(raw[8:]))
    if kind == DUID_EN:
        if len(raw) < 7:
            raise WireError("dhcp6_bad_duid", "DUID-EN too short")
        return Duid(kind, enterprise=_U32.unpack_from(raw, 2)[0], identifier=bytes(raw[6:]))
    if kind == DUID_LL:
        if len(raw) < 5:
            raise WireError("dhcp6_bad_duid", "DUID-LL too short")
        return Duid(kind, hw_type=_U16.unpack_from(raw, 2)[0], identifier=bytes(raw[4:]))
    if kind == DUID_UUID and len(raw) != 18:
        raise WireError("dhcp6_bad_duid", "DUID-UUID is not 16 bytes")
    return Duid(kind, identifier=bytes(raw[2:]))


def duid_ll(mac):
    """A DUID-LL for an Ethernet MAC (RFC 8415 section 11.4): ``00 03 00 01`` + MAC."""
    if len(mac) != 6:
        raise ValueError("a MAC is 6 bytes")
    return struct.pack("!HH", DUID_LL, HW_TYPE_ETHERNET) + bytes(mac)


def duid_llt(mac, time):
    """A DUID-LLT (RFC 8415 section 11.2); ``time`` in seconds since 2000-01-01 UTC."""
    if len(mac) != 6:
        raise ValueError("a MAC is 6 bytes")
    return struct.pack("!HHI", DUID_LLT, HW_TYPE_ETHERNET, time & 0xFFFFFFFF) + bytes(mac)
