"""DNS messages (RFC 1035 section 4, RFC 3596 AAAA, RFC 6891 EDNS0): parse and build.

A message is a :class:`Message` holding header fields, :class:`Question` and
:class:`Record` tuples, and an optional :class:`Edns` (the OPT pseudo-record, kept apart
from the additional section).  Record data is decoded for the types a stub resolver and a
small server need, and kept as raw bytes otherwise:

    A -> 4 bytes          AAAA -> 16 bytes        CNAME, NS, PTR -> a name
    SOA -> :class:`Soa`   MX -> (preference, name)  TXT -> tuple of bytes strings

Names are text: labels joined by dots, no trailing dot, the root is ``""``.  A label byte
that is not printable ASCII, a dot or a backslash is written with RFC 1035 section 5.1
escapes (``\\.``, ``\\\\``, ``\\DDD``), so any wire name round-trips.  Comparisons are
case-insensitive for ASCII only (RFC 4343): use :func:`name_key`.

Parsing is defensive: a compression pointer must point before the labels read since the
previous jump (so pointers cannot loop) and a name may follow at most :data:`MAX_POINTERS`
of them; names are at most 255 octets, labels 63; every length is checked against the
buffer.  Anything malformed raises
:class:`lwstack.wire.WireError` with a ``dns_*`` reason.  Building compresses owner names and
the names inside CNAME, NS, PTR, SOA and MX data (RFC 3597 section 4 allows no others).
"""
import struct
from collections import namedtuple

from lwstack.wire import WireError

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1

OPCODE_QUERY = 0

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
#: RFC 6891 section 9: the responder does not implement the EDNS version asked for.
RCODE_BADVERS = 16

#: The largest UDP message without EDNS (RFC 1035 section 2.3.4).
CLASSIC_UDP_SIZE = 512
#: The EDNS UDP payload size we advertise: DNS Flag Day 2020's recommendation, which avoids
#: IP fragmentation on any path with an MTU of 1280 or more.
DEFAULT_EDNS_SIZE = 1232
#: How many compression pointers one name may follow.
MAX_POINTERS = 64
MAX_NAME_OCTETS = 255
MAX_LABEL_OCTETS = 63

_HEADER = struct.Struct("!HHHHHH")
_QFIXED = struct.Struct("!HH")
_RRFIXED = struct.Struct("!HHIH")
_SOAFIXED = struct.Struct("!IIIII")
_LEN16 = struct.Struct("!H")

Question = namedtuple("Question", "name qtype qclass")
Question.__doc__ = "A question: ``name`` (text), ``qtype`` and ``qclass`` (numbers)."
Question.__new__.__defaults__ = (CLASS_IN,)

Record = namedtuple("Record", "name rtype rclass ttl data")
Record.__doc__ = ("A resource record; ``data`` is decoded per type (module docstring), "
                  "``ttl`` in seconds as sent (see :func:`clamp_ttl`).")

Soa = namedtuple("Soa", "mname rname serial refresh retry expire minimum")
Soa.__doc__ = ("SOA record data (RFC 1035 section 3.3.13); ``minimum`` is the negative "
               "TTL (RFC 2308).")

Edns = namedtuple("Edns", "udp_size version do options")
Edns.__doc__ = ("The OPT pseudo-record (RFC 6891 section 6): the sender's UDP payload size, "
                "EDNS version, DO bit and a tuple of ``(code, bytes)`` options.")
Edns.__new__.__defaults__ = (DEFAULT_EDNS_SIZE, 0, False, ())

_NAME_TYPES = (TYPE_CNAME, TYPE_NS, TYPE_PTR)


# ---------------------------------------------------------------------------------------- names

def _label_text(label):
    out = []
    for byte in label:
        if byte in (0x2E, 0x5C):                 # "." and "\"
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append("\\%03d" % byte)
    return "".join(out)


def name_to_labels(name):
    """The wire labels (bytes) of a text name; a trailing dot is allowed; ``""`` or ``"."``
    is the root.

    Raises ``ValueError`` for empty labels, labels over 63 octets, names over 255 octets or
    non-ASCII text (IDNA is not supported: pass A-labels).
    """
    if name in ("", "."):
        return []
    labels = []
    current = bytearray()
    i = 0
    length = len(name)
    while i < length:
        char = name[i]
        if char == "\\":
            if name[i + 1:i + 4].isdigit() and len(name[i + 1:i + 4]) == 3:
                value = int(name[i + 1:i + 4])
                if value > 255:
                    raise ValueError(f"bad escape in {name!r}")
                current.append(value)
                i += 4
                continue
            if i + 1 >= length:
                raise ValueError(f"dangling backslash in {name!r}")
            char = name[i + 1]
            i += 1
        elif char == ".":
            if not current:
                raise ValueError(f"empty label in {name!r}")
            labels.append(bytes(current))
            current = bytearray()
            i += 1
            if i == length:             # trailing dot: fully qualified
                break
            continue
        if ord(char) > 0x7F:
            raise ValueError(f"non-ASCII name {name!r} (IDNA is not supported)")
        current.append(ord(char))
        i += 1
    else:
        if not current:
            raise ValueError(f"empty label in {name!r}")
        labels.append(bytes(current))
    for label in labels:
        if len(label) > MAX_LABEL_OCTETS:
            raise ValueError(f"label of {len(label)} octets in {name!r}")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME_OCTETS:
        raise ValueError(f"name {name!r} longer than 255 octets")
    return labels


def labels_to_name(labels):
    """The text form of a sequence of wire labels."""
    return ".".join(_label_text(label) for label in labels)


def name_key(name):
    """The canonical form of a name for comparisons: escapes normalised, ASCII lowercased,
    no trailing dot (RFC 4343)."""
    return labels_to_name(label.lower() for label in name_to_labels(name))


def is_subdomain(name, domain):
    """True if ``name`` equals ``domain`` or lies under it (both canonical: :func:`name_key`)."""
    return domain == "" or name == domain or name.endswith("." + domain)


def _read_name(data, offset):
    """Decode the name at ``offset``; return ``(labels, offset after the name)``."""
    labels = []
    octets = 1
    end = None
    pointers = 0
    run_start = offset
    limit = len(data)
    while True:
        if offset >= limit:
            raise WireError("dns_truncated", "name")
        length = data[offset]
        if length == 0:
            offset += 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if offset + 1 >= limit:
                raise WireError("dns_truncated", "pointer")
            target = ((length & 0x3F) << 8) | data[offset + 1]
            # RFC 1035 4.1.4: a pointer refers to a prior occurrence.  Requiring it to point
            # before the start of the labels read since the last jump rules out loops.
            if target >= run_start:
                raise WireError("dns_bad_pointer", f"{target} from {offset}")
            pointers += 1
            if pointers > MAX_POINTERS:
                raise WireError("dns_bad_pointer", "too many")
            if end is None:
                end = offset + 2
            offset = run_start = target
            continue
        if kind:
            raise WireError("dns_bad_label", f"type {kind >> 6}")
        octets += length + 1
        if octets > MAX_NAME_OCTETS:
            raise WireError("dns_name_too_long")
        if offset + 1 + length > limit:
            raise WireError("dns_truncated", "label")
        labels.append(bytes(data[offset + 1:offset + 1 + length]))
        offset += 1 + length
    return labels, (end if end is not None else offset)


def read_name(data, offset):
    """Decode a (possibly compressed) name at ``offset``: ``(text, offset after it)``."""
    labels, offset = _read_name(data, offset)
    return labels_to_name(labels), offset


# -------------------------------------------------------------------------------- reverse names

def reverse_name(addr):
    """The PTR query name of a 4- or 16-byte address (RFC 1035 3.5 in-addr.arpa, RFC 3596
    2.5 ip6.arpa)."""
    if len(addr) == 4:
        return ".".join(str(b) for b in reversed(addr)) + ".in-addr.arpa"
    if len(addr) == 16:
        return ".".join(reversed(addr.hex())) + ".ip6.arpa"
    raise ValueError(f"address of {len(addr)} bytes")


def address_from_reverse(name):
    """The address a full in-addr.arpa / ip6.arpa name stands for, or None if it is not one."""
    try:
        key = name_key(name)
    except ValueError:
        return None
    if key.endswith(".in-addr.arpa"):
        parts = key[:-len(".in-addr.arpa")].split(".")
        if len(parts) == 4 and all(p.isdigit() and p == str(int(p)) and int(p) < 256
                                   for p in parts):
            return bytes(int(p) for p in reversed(parts))
    elif key.endswith(".ip6.arpa"):
        parts = key[:-len(".ip6.arpa")].split(".")
        if len(parts) == 32 and all(len(p) == 1 and p in "0123456789abcdef" for p in parts):
            return bytes.fromhex("".join(reversed(parts)))
    return None


# ------------------------------------------------------------------------------------- messages

def clamp_ttl(ttl):
    """RFC 2181 section 8: a TTL with the top bit set is treated as zero."""
    return 0 if ttl & 0x80000000 else ttl


class Message:
    """One DNS message: header fields, the four sections and the EDNS OPT record.

    ``rcode`` is the full response code: with EDNS, the OPT record's upper 8 bits are merged
    in (RFC 6891 section 6.1.3).  ``additionals`` never holds the OPT record; ``edns`` does.
    """

    __slots__ = ("id", "qr", "opcode", "aa", "tc", "rd", "ra", "ad", "cd", "rcode",
                 "questions", "answers", "authorities", "additionals", "edns")

    def __init__(self, id=0, *, qr=False, opcode=OPCODE_QUERY, aa=False, tc=False, rd=False,
                 ra=False, ad=False, cd=False, rcode=RCODE_NOERROR, questions=(), answers=(),
                 authorities=(), additionals=(), edns=None):
        self.id = id
        self.qr = qr
        self.opcode = opcode
        self.aa = aa
        self.tc = tc
        self.rd = rd
        self.ra = ra
        self.ad = ad
        self.cd = cd
        self.rcode = rcode
        self.questions = list(questions)
        self.answers = list(answers)
        self.authorities = list(authorities)
        self.additionals = list(additionals)
        self.edns = edns

    def __repr__(self):
        flags = " ".join(f for f in ("qr", "aa", "tc", "rd", "ra", "ad", "cd") if getattr(self, f))
        return (f"Message(id={self.id}, [{flags}], rcode={self.rcode}, q={self.questions}, "
                f"an={self.answers}, ns={self.authorities}, ar={self.additionals}, "
                f"edns={self.edns})")

    def __eq__(self, other):
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    __hash__ = None

    @property
    def flags(self):
        """The 16-bit flags word of the header (with the low 4 bits of ``rcode``)."""
        return ((self.qr << 15) | ((self.opcode & 0xF) << 11) | (self.aa << 10) | (self.tc << 9)
                | (self.rd << 8) | (self.ra << 7) | (self.ad << 5) | (self.cd << 4)
                | (self.rcode & 0xF))

    @classmethod
    def parse(cls, data):
        """Parse a whole message (without the TCP length prefix); raises ``WireError``."""
        if len(data) < _HEADER.size:
            raise WireError("dns_truncated", f"{len(data)} bytes")
        ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
        msg = cls(ident, qr=bool(flags & 0x8000), opcode=(flags >> 11) & 0xF,
                  aa=bool(flags & 0x400), tc=bool(flags & 0x200), rd=bool(flags & 0x100),
                  ra=bool(flags & 0x80), ad=bool(flags & 0x20), cd=bool(flags & 0x10),
                  rcode=flags & 0xF)
        offset = _HEADER.size
        for _ in range(qdcount):
            labels, offset = _read_name(data, offset)
            if offset + 4 > len(data):
                raise WireError("dns_truncated", "question")
            qtype, qclass = _QFIXED.unpack_from(data, offset)
            offset += 4
            msg.questions.append(Question(labels_to_name(labels), qtype, qclass))
        for section, count in ((msg.answers, ancount), (msg.authorities, nscount),
                               (msg.additionals, arcount)):
            for _ in range(count):
                record, offset = _read_record(data, offset)
                if record.rtype == TYPE_OPT:
                    # RFC 6891 6.1.1: one OPT, in the additional section, owned by the root.
                    if section is not msg.additionals or msg.edns is not None or record.name:
                        raise WireError("dns_bad_opt")
                    ext_rcode, version, do, options = record.data
                    msg.edns = Edns(record.rclass, version, do, options)
                    msg.rcode |= ext_rcode << 4
                else:
                    section.append(record)
        if offset != len(data):
            raise WireError("dns_trailing_bytes", f"{len(data) - offset}")
        return msg

    def emit(self, max_size=None):
        """The wire bytes.  With ``max_size`` (a UDP limit), a message that does not fit loses
        its additional records first (without TC, RFC 2181 section 9), then every record
        section, with TC set (the OPT record stays, RFC 6891 section 7)."""
        data = self._build(self.answers, self.authorities, self.additionals, self.tc)
        if max_size is None or len(data) <= max_size:
            return data
        if self.additionals:
            data = self._build(self.answers, self.authorities, (), self.tc)
            if len(data) <= max_size:
                return data
        return self._build((), (), (), True)

    def _build(self, answers, authorities, additionals, tc):
        if self.rcode > 0xF and self.edns is None:
            raise ValueError(f"rcode {self.rcode} needs EDNS")
        out = bytearray(_HEADER.pack(
            self.id, (self.flags & ~0x200) | (tc << 9), len(self.questions), len(answers),
            len(authorities), len(additionals) + (self.edns is not None)))
        table = {}
        for q in self.questions:
            _write_name(out, q.name, table)
            out += _QFIXED.pack(q.qtype, q.qclass)
        for record in (*answers, *authorities, *additionals):
            _write_record(out, record, table)
        if self.edns is not None:
            edns = self.edns
            rdata = b"".join(_LEN16.pack(code) + _LEN16.pack(len(value)) + value
                             for code, value in edns.options)
            ttl = ((self.rcode >> 4) << 24) | ((edns.version & 0xFF) << 16) | (edns.do << 15)
            out += b"\0" + _RRFIXED.pack(TYPE_OPT, edns.udp_size, ttl, len(rdata)) + rdata
        if len(out) > 0xFFFF:
            raise ValueError(f"DNS message of {len(out)} bytes")
        return bytes(out)

    def reply(self, rcode=RCODE_NOERROR, *, aa=False, ra=False):
        """An empty response to this query: same id, opcode, RD, CD and questions; EDNS
        echoed (with our payload size) if the query had it."""
        return Message(self.id, qr=True, opcode=self.opcode, aa=aa, rd=self.rd, ra=ra,
                       cd=self.cd, rcode=rcode, questions=self.questions,
                       edns=Edns(DEFAULT_EDNS_SIZE) if self.edns is not None else None)


def _write_name(out, name, table):
    labels = name_to_labels(name) if isinstance(name, str) else name
    keys = [label.lower() for label in labels]
    for i in range(len(labels)):
        suffix = tuple(keys[i:])
        pointer = table.get(suffix)
        if pointer is not None:
            out += _LEN16.pack(0xC000 | pointer)
            return
        if len(out) < 0x4000:
            table[suffix] = len(out)
        out.append(len(labels[i]))
        out += labels[i]
    out.append(0)


def _write_record(out, record, table):
    _write_name(out, record.name, table)
    start = len(out)
    out += _RRFIXED.pack(record.rtype, record.rclass, record.ttl & 0xFFFFFFFF, 0)
    rtype, data = record.rtype, record.data
    if rtype in _NAME_TYPES:
        _write_name(out, data, table)
    elif rtype == TYPE_SOA:
        _write_name(out, data.mname, table)
        _write_name(out, data.rname, table)
        out += _SOAFIXED.pack(data.serial, data.refresh, data.retry, data.expire, data.minimum)
    elif rtype == TYPE_MX:
        out += _LEN16.pack(data[0])
        _write_name(out, data[1], table)
    elif rtype == TYPE_TXT:
        for string in data:
            if len(string) > 255:
                raise ValueError("TXT string longer than 255 bytes")
            out.append(len(string))
            out += string
    else:
        if rtype == TYPE_A and len(data) != 4 or rtype == TYPE_AAAA and len(data) != 16:
            raise ValueError(f"type {rtype} data of {len(data)} bytes")
        out += data
    rdlength = len(out) - start - _RRFIXED.size
    if rdlength > 0xFFFF:
        raise ValueError("rdata longer than 65535 bytes")
    out[start + 8:start + 10] = _LEN16.pack(rdlength)


def _read_record(data, offset):
    labels, offset = _read_name(data, offset)
    if offset + _RRFIXED.size > len(data):
        raise WireError("dns_truncated", "record")
    rtype, rclass, ttl, rdlength = _RRFIXED.unpack_from(data, offset)
    offset += _RRFIXED.size
    end = offset + rdlength
    if end > len(data):
        raise WireError("dns_truncated", "rdata")
    if rtype in _NAME_TYPES:
        target, stop = _read_name(data, offset)
        value = labels_to_name(target)
    elif rtype == TYPE_A or rtype == TYPE_AAAA:
        if rdlength != (4 if rtype == TYPE_A else 16):
            raise WireError("dns_bad_rdata", f"type {rtype} length {rdlength}")
        value, stop = bytes(data[offset:end]), end
    elif rtype == TYPE_SOA:
        mname, stop = _read_name(data, offset)
        rname, stop = _read_name(data, stop)
        if stop + _SOAFIXED.size > end:
            raise WireError("dns_bad_rdata", "SOA")
        value = Soa(labels_to_name(mname), labels_to_name(rname),
                    *_SOAFIXED.unpack_from(data, stop))
        stop += _SOAFIXED.size
    elif rtype == TYPE_MX:
        if rdlength < 3:
            raise WireError("dns_bad_rdata", "MX")
        exchange, stop = _read_name(data, offset + 2)
        value = (_LEN16.unpack_from(data, offset)[0], labels_to_name(exchange))
    elif rtype == TYPE_TXT:
        strings = []
        stop = offset
        while stop < end:
            size = data[stop]
            if stop + 1 + size > end:
                raise WireError("dns_bad_rdata", "TXT")
            strings.append(bytes(data[stop + 1:stop + 1 + size]))
            stop += 1 + size
        value = tuple(strings)
    elif rtype == TYPE_OPT:
        options = []
        stop = offset
        while stop < end:
            if stop + 4 > end:
                raise WireError("dns_bad_opt", "option header")
            code, size = struct.unpack_from("!HH", data, stop)
            if stop + 4 + size > end:
                raise WireError("dns_bad_opt", "option length")
            options.append((code, bytes(data[stop + 4:stop + 4 + size])))
            stop += 4 + size
        value = (ttl >> 24, (ttl >> 16) & 0xFF, bool(ttl & 0x8000), tuple(options))
    else:
        value, stop = bytes(data[offset:end]), end
    if stop != end:
        raise WireError("dns_bad_rdata", f"type {rtype}: {end - stop} bytes left")
    return Record(labels_to_name(labels), rtype, rclass, ttl, value), end


# ------------------------------------------------------------------------------ helpers, framing

def build_query(ident, name, qtype, *, rd=True, edns_size=DEFAULT_EDNS_SIZE):
    """A standard query for ``name``/``qtype`` (class IN); ``edns_size`` None sends no OPT."""
    return Message(ident, rd=rd, questions=[Question(name, qtype)],
                   edns=Edns(edns_size) if edns_size else None).emit()


def frame_tcp(message):
    """A message as sent over TCP: a two-byte length prefix, then the message (RFC 1035 4.2.2)."""
    if len(message) > 0xFFFF:
        raise ValueError(f"DNS message of {len(message)} bytes")
    return _LEN16.pack(len(message)) + message


def unframe_tcp(buffer):
    """Split the first whole message off a TCP byte stream: ``(message, rest)``, or
    ``(None, buffer)`` while the message is still incomplete."""
    if len(buffer) < 2:
        return None, buffer
    size = _LEN16.unpack_from(buffer)[0]
    if len(buffer) < 2 + size:
        return None, buffer
    return bytes(buffer[2:2 + size]), buffer[2 + size:]
