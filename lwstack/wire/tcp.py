"""TCP segments (RFC 9293 section 3.1) and their options (RFC 9293 3.2, RFC 7323, RFC 2018).

Design
------
This module only converts between bytes and a :class:`TcpSegment` record; every decision
about what a segment *means* (is it acceptable, does a window scale on a non-SYN count, is a
timestamp old) belongs to the state machine in :mod:`lwstack.proto.tcp`.  So the parser keeps
what it reads and judges as little as it can:

- **Header checks.**  At least 20 bytes (``tcp_truncated``), a data offset of at least 5 words
  that stays inside the segment (``tcp_bad_header_len``), then the checksum over the
  pseudo-header and the whole segment (``tcp_bad_checksum``).  The header length is checked
  before the checksum, as Linux does, so the checksum is never summed over a segment whose
  header cannot be read.
- **Options** (RFC 9293 3.1 "Options", 3.2).  EOL ends the list, NOP is skipped, every
  other option must carry a length of at least 2 that stays inside the header.  An option
  that breaks that rule makes the segment ``tcp_bad_option``: RFC 9293 (MUST-7) requires
  handling an illegal option length and suggests treating it as an error; Linux merely stops
  reading options there, but the rest of such a header cannot be delimited, so the segment
  is dropped and counted.  Unknown kinds are skipped by their length (MUST-6: "ignore
  without error any TCP Option it does not implement").  A known option with the wrong
  length (MSS of length 3, a SACK whose length is not 2 + 8n ...) is ignored without
  invalidating the segment, as Linux's ``tcp_parse_options`` does.  When an option appears
  twice the last one wins.
- **Values are kept as received.**  A window scale above 14 is kept (RFC 7323 2.3 says the
  receiver logs it and uses 14: that is the caller's clamp), MSS, window scale and SACK
  permitted are reported on any segment although only a SYN may carry them (RFC 9293 3.7.1,
  RFC 7323 2.2, RFC 2018 2): the state machine ignores them elsewhere.  ``window`` is the raw
  16-bit field, unscaled.  ``flags`` is the 8-bit flags byte (CWR ... FIN); the 4 reserved
  bits before it are ignored on receipt (RFC 9293 3.1, "Rsrvd").
- **No copies.**  ``payload`` is a ``memoryview`` slice of the segment that was parsed, so it
  is valid only while that buffer is not reused (and, over a ``bytearray``, it keeps the
  bytearray from being resized until released); a caller that keeps the bytes beyond the
  current frame copies them (the receive buffer does, once).

Emitting lays options out as Linux does (``tcp_options_write``), so captures of lwstack look
like captures of a Linux host: MSS first; timestamps as ``NOP NOP TS``, or ``SACK_PERM TS``
when SACK is also permitted; ``NOP NOP SACK_PERM`` without timestamps; ``NOP WS``; and SACK
blocks as ``NOP NOP SACK``.  Every piece is a multiple of 4 bytes, so no padding is needed.

Sequence numbers are 32-bit serial numbers (RFC 9293 3.4, RFC 1982): compare them only with
:func:`seq_lt` and friends, which treat "a before b" as "(a - b) mod 2**32 is in the upper
half", the rule of Linux's ``before()``.

Speed
-----
Parsing runs once per received segment: one precompiled :class:`struct.Struct` for the fixed
header, one record allocation, a byte loop over the options (typed by ``tcp.pxd`` when
compiled by Cython), and a ``memoryview`` for the payload.  Building sums the header from its
field values (no second pack), sums options and payload where they lie, and joins header,
options and payload in one copy.  The checksum over the payload dominates both (see
:mod:`lwstack.wire.checksum`).
"""
import struct

from lwstack.wire import WireError
from lwstack.wire.checksum import ones_sum, pseudo_header_sum, pseudo_header_sum6

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80
#: The fixed header: ports, sequence and acknowledgment numbers, data offset, flags, window,
#: checksum and urgent pointer (RFC 9293 3.1).
HEADER_LEN = 20
#: The data offset is 4 bits of 32-bit words: at most 60 header bytes, 40 of them options.
MAX_OPTIONS_LEN = 40
MAX_HEADER_LEN = HEADER_LEN + MAX_OPTIONS_LEN
PROTO_TCP = 6

# Option kinds (IANA "TCP Option Kind Numbers").
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2           # RFC 9293 3.2
OPT_WSCALE = 3        # RFC 7323 2
OPT_SACK_PERM = 4     # RFC 2018 2
OPT_SACK = 5          # RFC 2018 3
OPT_TIMESTAMPS = 8    # RFC 7323 3
#: Largest shift a window scale may use (RFC 7323 2.3); larger received values are kept as
#: they are in :attr:`TcpSegment.wscale` and clamped by the caller.
MAX_WSCALE = 14

_MASK32 = 0xFFFFFFFF
_HALF32 = 0x80000000
_HEADER = struct.Struct("!HHIIBBHHH")
_WORD = struct.Struct("!I")
_TS = struct.Struct("!III")           # NOP NOP TS(kind, len) + ts_val + ts_ecr
_MSS = struct.Struct("!BBH")
_NOP_NOP_TS = 0x0101080A
_SACK_PERM_TS = 0x0402080A
_NOP_NOP_SACK_PERM = b"\x01\x01\x04\x02"
_FLAG_LETTERS = "FSRPAUEC"            # bit 0 (FIN) to bit 7 (CWR), as scapy prints them


class TcpSegment:
    """A parsed TCP segment: header fields, decoded options and the payload.

    Plain attributes (a Cython ``cdef class`` when compiled, see ``tcp.pxd``):

    ``src_port``, ``dst_port``, ``seq``, ``ack``, ``flags``, ``window`` (the raw 16-bit field),
    ``urgent`` and ``header_len`` (bytes, options included) are ints.  Options: ``mss`` (0 when
    absent), ``wscale`` (-1 when absent, kept as received even above 14), ``sack_permitted``,
    ``has_timestamps`` with ``ts_val`` and ``ts_ecr`` (0 when absent), ``sack_blocks`` (a
    tuple of ``(left, right)`` pairs, ``()`` when absent).  ``payload`` is a ``memoryview``
    slice of the parsed buffer (or any bytes-like object when built by hand).

    In the compiled build the fields are typed (``tcp.pxd``): integers must fit their wire
    fields (32 bits unsigned for ``seq``, ``ack``, ``ts_val`` and ``ts_ecr``, a C ``int``
    for the others) and ``sack_blocks`` must be a tuple.
    """

    __slots__ = ("src_port", "dst_port", "seq", "ack", "flags", "window", "urgent",
                 "header_len", "mss", "wscale", "sack_permitted", "has_timestamps",
                 "ts_val", "ts_ecr", "sack_blocks", "payload")

    def __init__(self, src_port=0, dst_port=0, seq=0, ack=0, flags=0, window=0, urgent=0,
                 header_len=HEADER_LEN, mss=0, wscale=-1, sack_permitted=False,
                 has_timestamps=False, ts_val=0, ts_ecr=0, sack_blocks=(), payload=b""):
        self.src_port = src_port
        self.dst_port = dst_port
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.urgent = urgent
        self.header_len = header_len
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = sack_permitted
        self.has_timestamps = has_timestamps
        self.ts_val = ts_val
        self.ts_ecr = ts_ecr
        self.sack_blocks = sack_blocks
        self.payload = payload

    def options(self):
        """The options as keyword arguments for :func:`build_options` (to echo or re-emit)."""
        return {"mss": self.mss, "wscale": self.wscale, "sack_permitted": self.sack_permitted,
                "timestamps": (self.ts_val, self.ts_ecr) if self.has_timestamps else None,
                "sack_blocks": self.sack_blocks}

    def __repr__(self):
        parts = [f"TcpSegment({self.src_port}->{self.dst_port} {flags_to_str(self.flags)}",
                 f"seq={self.seq}", f"ack={self.ack}", f"win={self.window}"]
        if self.urgent:
            parts.append(f"urg={self.urgent}")
        if self.mss:
            parts.append(f"mss={self.mss}")
        if self.wscale >= 0:
            parts.append(f"ws={self.wscale}")
        if self.sack_permitted:
            parts.append("sackOK")
        if self.has_timestamps:
            parts.append(f"ts={self.ts_val}/{self.ts_ecr}")
        if self.sack_blocks:
            parts.append("sack=" + ",".join(f"{left}-{right}"
                                             for left, right in self.sack_blocks))
        parts.append(f"len={len(self.payload)})")
        return " ".join(parts)


def flags_to_str(flags):
    """The flags as letters, FIN first: ``SYN|ACK`` -> ``"SA"``, none -> ``""``."""
    return "".join(letter for bit, letter in enumerate(_FLAG_LETTERS) if flags >> bit & 1)


def parse_tcp(segment, src, dst):
    """Validate and decode a TCP segment (the whole IP payload) sent from ``src`` to ``dst``.

    ``src`` and ``dst`` are the addresses of the pseudo-header: 4 bytes for IPv4 (RFC 9293
    3.1), 16 for IPv6 (RFC 8200 section 8.1); the checksum over pseudo-header, header and
    payload must verify.  Returns a
    :class:`TcpSegment` whose payload is a ``memoryview`` into ``segment``.  Raises
    :class:`WireError` with ``tcp_truncated``, ``tcp_bad_header_len``, ``tcp_bad_checksum``
    or ``tcp_bad_option`` (see the module notes).
    """
    return _decode(segment, src, dst, True)


def parse_tcp_unchecked(segment):
    """:func:`parse_tcp` without the checksum: for the TCP header quoted in an ICMP error
    (RFC 792 quotes only 8 bytes, so expect ``tcp_truncated`` there) and for tests."""
    return _decode(segment, None, None, False)


def _decode(segment, src, dst, verify):
    """The parser behind :func:`parse_tcp` and :func:`parse_tcp_unchecked`."""
    # Literal numbers below (20 = HEADER_LEN, 6 = PROTO_TCP ...): compiled, a module-level
    # name is a Python object, and comparing a C integer with it costs a conversion.
    n = len(segment)
    if n < 20:
        raise WireError("tcp_truncated", f"{n} bytes")
    src_port, dst_port, seq, ack, offset, flags, window, _checksum, urgent = \
        _HEADER.unpack_from(segment)
    header_len = (offset >> 4) << 2
    if header_len < 20 or header_len > n:
        raise WireError("tcp_bad_header_len", f"{header_len} (have {n})")
    # RFC 9293 3.1: the sum covers the pseudo-header (with the TCP length), header and data;
    # over IPv6 the pseudo-header of RFC 8200 section 8.1.
    if verify:
        if len(src) == 4:
            initial = pseudo_header_sum(src, dst, 6, n)
        else:
            initial = pseudo_header_sum6(src, dst, 6, n)
        if ones_sum(segment, initial) != 0xFFFF:
            raise WireError("tcp_bad_checksum")
    seg = TcpSegment.__new__(TcpSegment)
    seg.src_port = src_port
    seg.dst_port = dst_port
    seg.seq = seq
    seg.ack = ack
    seg.flags = flags
    seg.window = window
    seg.urgent = urgent
    seg.header_len = header_len
    seg.mss = 0
    seg.wscale = -1
    seg.sack_permitted = False
    seg.has_timestamps = False
    seg.ts_val = 0
    seg.ts_ecr = 0
    seg.sack_blocks = ()
    if header_len > 20:
        _parse_options(seg, segment, header_len)
    if type(segment) is memoryview:
        seg.payload = segment[header_len:]
    else:
        seg.payload = memoryview(segment)[header_len:]
    return seg


def _parse_options(seg, buf, end):
    """Decode the options in ``buf[20:end]`` into ``seg`` (RFC 9293 3.1, 3.2).

    Option kinds are literals here, for the reason given in :func:`_decode`.
    """
    i = 20
    while i < end:
        kind = buf[i]
        if kind == 0:  # OPT_EOL
            break
        if kind == 1:  # OPT_NOP
            i += 1
            continue
        if i + 1 >= end:
            raise WireError("tcp_bad_option", f"kind {kind} at {i} has no length")
        length = buf[i + 1]
        if length < 2 or i + length > end:
            raise WireError("tcp_bad_option", f"kind {kind} at {i} has length {length}")
        if kind == 8:  # OPT_TIMESTAMPS
            if length == 10:
                b0 = buf[i + 2]
                b1 = buf[i + 6]
                seg.ts_val = (b0 << 24) | (buf[i + 3] << 16) | (buf[i + 4] << 8) | buf[i + 5]
                seg.ts_ecr = (b1 << 24) | (buf[i + 7] << 16) | (buf[i + 8] << 8) | buf[i + 9]
                seg.has_timestamps = True
        elif kind == 5:  # OPT_SACK
            if length >= 10 and (length - 2) & 7 == 0:
                seg.sack_blocks = _sack_blocks(buf, i + 2, i + length)
        elif kind == 2:  # OPT_MSS
            if length == 4:
                seg.mss = (buf[i + 2] << 8) | buf[i + 3]
        elif kind == 3:  # OPT_WSCALE
            if length == 3:
                seg.wscale = buf[i + 2]
        elif kind == 4:  # OPT_SACK_PERM
            if length == 2:
                seg.sack_permitted = True
        i += length
    return 0


def _sack_blocks(buf, start, end):
    """The ``(left, right)`` edges of the SACK blocks in ``buf[start:end]`` (RFC 2018 3)."""
    blocks = []
    while start < end:
        b0 = buf[start]
        b1 = buf[start + 4]
        left = (b0 << 24) | (buf[start + 1] << 16) | (buf[start + 2] << 8) | buf[start + 3]
        right = (b1 << 24) | (buf[start + 5] << 16) | (buf[start + 6] << 8) | buf[start + 7]
        blocks.append((left, right))
        start += 8
    return tuple(blocks)


def build_options(mss=0, wscale=-1, sack_permitted=False, timestamps=None, sack_blocks=()):
    """The options field, laid out as Linux lays it out (see the module notes).

    ``mss`` 0 and ``wscale`` -1 mean absent; ``timestamps`` is ``None`` or a
    ``(ts_val, ts_ecr)`` pair; ``sack_blocks`` a sequence of ``(left, right)`` edges.  Numbers
    that live in sequence or timestamp space are taken modulo 2**32.  A window scale up to 255
    can be sent (to test a peer's clamp; RFC 7323 2.3 forbids more than 14 for real use).
    Raises ``ValueError`` when the options do not fit in 40 bytes (e.g. 4 SACK blocks with
    timestamps) or a value does not fit its field.
    """
    if timestamps is not None and not mss and wscale < 0 and not sack_permitted \
            and not sack_blocks:
        # The common case on an established connection: NOP NOP TS, one pack.
        return _TS.pack(_NOP_NOP_TS, timestamps[0] & _MASK32, timestamps[1] & _MASK32)
    parts = []
    if mss:
        if not 0 < mss <= 0xFFFF:
            raise ValueError(f"MSS {mss} does not fit 16 bits")
        parts.append(_MSS.pack(OPT_MSS, 4, mss))
    if timestamps is not None:
        parts.append(_TS.pack(_SACK_PERM_TS if sack_permitted else _NOP_NOP_TS,
                              timestamps[0] & _MASK32, timestamps[1] & _MASK32))
    elif sack_permitted:
        parts.append(_NOP_NOP_SACK_PERM)
    if wscale >= 0:
        if wscale > 0xFF:
            raise ValueError(f"window scale {wscale} does not fit 8 bits")
        parts.append(bytes((OPT_NOP, OPT_WSCALE, 3, wscale)))
    if sack_blocks:
        parts.append(bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(sack_blocks))))
        for left, right in sack_blocks:
            parts.append(_WORD.pack(left & _MASK32))
            parts.append(_WORD.pack(right & _MASK32))
    options = b"".join(parts)
    if len(options) > MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options of {len(options)} bytes exceed {MAX_OPTIONS_LEN}")
    return options


def build_tcp(src, dst, src_port, dst_port, seq, ack, flags, window, options=b"",
              payload=b"", urgent=0):
    """A TCP segment from ``src`` to ``dst`` (4-byte IPv4 or 16-byte IPv6 addresses, for the
    pseudo-header): header, options, payload.

    ``options`` comes from :func:`build_options` (a multiple of 4 bytes, at most 40);
    ``seq`` and ``ack`` are taken modulo 2**32; the checksum is filled in (RFC 9293 3.1).
    Raises ``ValueError`` for options of a bad length or fields that do not fit.
    """
    options_len = len(options)
    if options_len & 3 or options_len > MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options must be a multiple of 4 bytes up to "
                         f"{MAX_OPTIONS_LEN}, not {options_len}")
    header_len = HEADER_LEN + options_len
    length = header_len + len(payload)
    seq &= _MASK32
    ack &= _MASK32
    offset = header_len << 2           # (header_len // 4) << 4
    # The header's one's complement sum from its fields, without packing it twice: the
    # 16-bit words are the ports, the halves of seq and ack, offset|flags, window and urgent.
    # A field out of range fails the pack (struct.error) or, compiled, the conversion of a
    # negative sum to C (OverflowError).
    try:
        if len(src) == 4:
            total = pseudo_header_sum(src, dst, 6, length)
        else:
            total = pseudo_header_sum6(src, dst, 6, length)
        total += src_port + dst_port + (seq >> 16) + \
            (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF) + ((offset << 8) | flags) + window + \
            urgent
        if options_len:
            total = ones_sum(options, total)
        if len(payload):
            total = ones_sum(payload, total)
        total = (total & 0xFFFF) + (total >> 16)      # fold the carries of the additions
        total = (total & 0xFFFF) + (total >> 16)
        checksum = ~total & 0xFFFF
        header = _HEADER.pack(src_port, dst_port, seq, ack, offset, flags, window, checksum,
                              urgent)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"TCP header field out of range: {exc}") from None
    if options_len:
        return b"".join((header, options, payload))
    return header + payload


#: Ethernet (14) + IPv4 (20) bytes in front of a segment built by :func:`build_tcp_frame`.
LINK_HEADER_LEN = 34
_MIN_FRAME = 60


def build_tcp_frame(link_header, ident, src_port, dst_port, seq, ack, flags, window, options,
                    payload):
    """A whole Ethernet frame carrying one TCP segment, built in one buffer.

    The per-segment fast path (Linux keeps a cached link header per route for the same
    reason): ``link_header`` is 34 bytes, the Ethernet header then an IPv4 header with no
    options whose total length, identification and checksum are left zero
    (:func:`lwstack.wire.ipv4.ipv4_template`).  This fills them, writes the TCP header, options
    and payload after it, and computes both checksums.  Returns a ``bytearray`` padded to the
    60-byte Ethernet minimum.
    """
    options_len = len(options)
    header_len = HEADER_LEN + options_len
    tcp_len = header_len + len(payload)
    total_len = 20 + tcp_len
    frame = bytearray(LINK_HEADER_LEN + tcp_len)
    frame[0:LINK_HEADER_LEN] = link_header
    frame[16] = total_len >> 8
    frame[17] = total_len & 0xFF
    frame[18] = (ident >> 8) & 0xFF
    frame[19] = ident & 0xFF
    view = memoryview(frame)
    checksum = ~ones_sum(view[14:LINK_HEADER_LEN]) & 0xFFFF
    frame[24] = checksum >> 8
    frame[25] = checksum & 0xFF
    _HEADER.pack_into(frame, LINK_HEADER_LEN, src_port, dst_port, seq & _MASK32, ack & _MASK32,
                      header_len << 2, flags, window, 0, 0)
    start = LINK_HEADER_LEN + HEADER_LEN
    if options_len:
        frame[start:start + options_len] = options
    frame[start + options_len:] = payload
    total = pseudo_header_sum(view[26:30], view[30:34], 6, tcp_len)
    checksum = ~ones_sum(view[LINK_HEADER_LEN:], total) & 0xFFFF
    frame[50] = checksum >> 8
    frame[51] = checksum & 0xFF
    view.release()
    if len(frame) < _MIN_FRAME:
        frame.extend(bytes(_MIN_FRAME - len(frame)))
    return frame


#: Ethernet (14) + IPv6 (40) bytes in front of a segment built by :func:`build_tcp_frame6`.
LINK_HEADER_LEN6 = 54


def build_tcp_frame6(link_header, src_port, dst_port, seq, ack, flags, window, options,
                     payload):
    """A whole Ethernet frame carrying one TCP segment over IPv6, built in one buffer.

    The IPv6 twin of :func:`build_tcp_frame`: ``link_header`` is 54 bytes, the Ethernet header
    then an IPv6 header without extension headers whose Payload Length is left zero
    (:func:`lwstack.wire.ipv6.ipv6_template`).  IPv6 has no header checksum and no
    identification, so only the payload length and the TCP checksum (over the RFC 8200
    section 8.1 pseudo-header) are filled.  Returns a ``bytearray`` (always longer than the
    60-byte Ethernet minimum: 54 + 20 bytes at least).
    """
    options_len = len(options)
    header_len = HEADER_LEN + options_len
    tcp_len = header_len + len(payload)
    frame = bytearray(LINK_HEADER_LEN6 + tcp_len)
    frame[0:LINK_HEADER_LEN6] = link_header
    frame[18] = tcp_len >> 8
    frame[19] = tcp_len & 0xFF
    _HEADER.pack_into(frame, LINK_HEADER_LEN6, src_port, dst_port, seq & _MASK32,
                      ack & _MASK32, header_len << 2, flags, window, 0, 0)
    start = LINK_HEADER_LEN6 + HEADER_LEN
    if options_len:
        frame[start:start + options_len] = options
    frame[start + options_len:] = payload
    view = memoryview(frame)
    total = pseudo_header_sum6(view[22:38], view[38:54], 6, tcp_len)
    checksum = ~ones_sum(view[LINK_HEADER_LEN6:], total) & 0xFFFF
    view.release()
    frame[70] = checksum >> 8
    frame[71] = checksum & 0xFF
    return frame


def seq_lt(a, b):
    """``a`` is before ``b`` in sequence space: ``(a - b) mod 2**32 >= 2**31``.

    Numbers exactly 2**31 apart are each "before" the other, as with Linux's ``before()``;
    RFC 1982 3.2 leaves that case undefined.
    """
    return (a - b) & 0xFFFFFFFF >= 0x80000000


def seq_le(a, b):
    """``a`` is before or equal to ``b`` in sequence space (``not seq_gt(a, b)``)."""
    d = (a - b) & 0xFFFFFFFF
    return d == 0 or d >= 0x80000000


def seq_gt(a, b):
    """``a`` is after ``b`` in sequence space: ``0 < (a - b) mod 2**32 < 2**31``."""
    d = (a - b) & 0xFFFFFFFF
    return 0 < d < 0x80000000


def seq_ge(a, b):
    """``a`` is after or equal to ``b`` in sequence space (``not seq_lt(a, b)``)."""
    return (a - b) & 0xFFFFFFFF < 0x80000000


def seq_add(a, n):
    """``a + n`` in sequence space (``n`` may be negative)."""
    return (a + n) & 0xFFFFFFFF


def seq_diff(a, b):
    """``a - b`` as a signed 32-bit number: how far ``a`` is after ``b`` (negative: before)."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000
