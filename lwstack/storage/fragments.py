"""IP fragmentation and reassembly: IPv4 (RFC 791, RFC 815) and IPv6 (RFC 8200 section 4.5).

Design note
-----------
Reassembly.  One :class:`FragmentReassembler` serves both families with one core.  The host
parses the IP (and, for IPv6, Fragment) header and passes the fields it found: addresses,
identification, byte offset, the More Fragments flag and the fragment's data.  Datagrams in
progress are keyed ``(src, dst, protocol, ident)`` for IPv4 (RFC 791) and ``(src, dst, ident)``
for IPv6 (RFC 8200 4.5), one table per family.

A datagram keeps its fragments as a sorted list of disjoint ``(start, end, data)`` pieces (RFC
815's hole list turned around: we keep what arrived, and a byte count tells when nothing is
missing).  It is complete once its last fragment (MF clear) has fixed the total length and
the pieces add up to it; then they are joined and handed back as a :class:`Reassembled`.

Decisions, where the RFCs leave room:

- Overlaps discard the whole datagram, for both families.  IPv6 must (RFC 5722, RFC 8200
  4.5); Linux does the same for IPv4 since 2018 (4.19, after FragmentSmack), and no honest
  sender overlaps: retransmitted fragments are exact duplicates.  An exact duplicate (same
  offset and length) is dropped alone and the datagram goes on (RFC 8200 4.5 allows that).
  The discarded datagram stays as a tombstone until its timeout, so that its later fragments
  are discarded too ("including those not yet received", RFC 5722 section 4) instead of
  starting a new datagram that could only be half of one.
- A fragment that contradicts the total length (data beyond a known last fragment, or a last
  fragment that ends before data already held, or a second last fragment with another end)
  discards the datagram the same way, as Linux does.
- The timeout runs from the first fragment that arrived and is not restarted by later ones
  (RFC 8200 4.5; Linux's ipfrag_time is 30 s for IPv4, RFC 8200's is 60 s for IPv6).  An
  expired datagram is reported by :meth:`~FragmentReassembler.poll` with the first
  fragment's ``context`` when fragment zero had arrived: the host then sends an ICMP Time
  Exceeded, code 1 (RFC 792, RFC 1122 3.3.2; RFC 8200 4.5: only if the first fragment
  arrived).  Tombstones and evicted datagrams are not reported.
- Bounds: memory across all datagrams (``max_memory``; each fragment costs its data plus
  ``fragment_cost`` bytes of bookkeeping, so a flood of tiny fragments fills it too), the
  number of datagrams in progress (``max_datagrams``) and fragments per datagram
  (``max_fragments``; more discards the datagram).  When memory or the datagram count is
  full, the oldest datagrams are evicted to make room for the newcomer, as Linux did before
  4.17 (evicting down to ipfrag_low_thresh): a sender whose fragments arrive together still
  gets through a table filled by stale junk, which would otherwise block everyone for a
  whole timeout.  A datagram that cannot fit even alone is discarded.
- IPv4 fragments are checked as RFC 791 says: every fragment but the last carries a multiple
  of 8 bytes, and the datagram may not exceed 65535 bytes with its header (the "ping of
  death").  IPv6 adds RFC 8200 4.5's checks, which answer with an ICMPv6 Parameter Problem:
  code 0 at the Payload Length for a non-final fragment that is not a multiple of 8 bytes,
  code 0 at the Fragment Offset when the reassembled payload would exceed 65535 bytes, and
  code 3 (RFC 7112) when the first fragment does not hold the whole header chain through
  the upper-layer header.  Those go to :attr:`~FragmentReassembler.errors`, a queue the host
  drains.  An IPv6 atomic fragment (offset 0, M clear) is returned at once, untouched by the
  datagrams in progress (RFC 6946).

Every malformed or refused fragment is counted in ``stats`` as ``drop.<reason>``; nothing
here raises on input.  Time is the ``now`` argument (seconds); nothing reads a clock.

Fragmentation.  :func:`fragment_v4` and :func:`fragment_v6` are pure functions that split a
datagram for a given MTU with as few fragments as possible, every fragment but the last
carrying a multiple of 8 bytes.
"""
import collections
import struct
from bisect import bisect_left
from typing import Any, NamedTuple

from lwstack.wire.ipv4 import DEFAULT_TTL, FLAG_DF, FLAG_MF, HEADER_LEN, build_ipv4

__all__ = ["FragmentReassembler", "Reassembled", "Expired", "ParamProblem",
           "FragmentationNeeded", "fragment_v4", "fragment_v6"]

#: Linux's net.ipv4.ipfrag_time.
IPV4_TIMEOUT = 30.0
#: RFC 8200 section 4.5.
IPV6_TIMEOUT = 60.0
#: Linux's net.ipv4.ipfrag_high_thresh (and ip6frag_high_thresh).
DEFAULT_MAX_MEMORY = 4 * 1024 * 1024
#: Bookkeeping charged per held fragment on top of its data.
DEFAULT_FRAGMENT_COST = 64
#: Enough for the largest IPv4 datagram cut at RFC 791's minimum MTU of 68 (48 data bytes a
#: fragment): honest senders never need more, even at 8-byte fragments it is 11 KiB of data.
DEFAULT_MAX_FRAGMENTS = -(-(0xFFFF - HEADER_LEN) // 48)
IPV6_HEADER_LEN = 40
FRAGMENT_HEADER_LEN = 8
#: IPv6's minimum link MTU (RFC 8200 section 5) and IPv4's (RFC 791).
IPV6_MIN_MTU = 1280
IPV4_MIN_MTU = 68

_MAX_PAYLOAD = 0xFFFF
_FRAGMENT_HEADER = struct.Struct("!BBHI")

# IPv6 next-header values for the header-chain walk of a first fragment (RFC 8200 section 4,
# IANA "IPv6 Extension Header Types").
_HOP_BY_HOP, _ROUTING, _FRAGMENT, _ESP, _AH, _NO_NEXT, _DEST_OPTS = 0, 43, 44, 50, 51, 59, 60
#: Extension headers whose length byte counts 8-octet units beyond the first 8.
_EXT_8 = frozenset((_HOP_BY_HOP, _ROUTING, _DEST_OPTS, 135, 139, 140, 253, 254))
#: The least of an upper-layer header the first fragment must hold: TCP 20, UDP 8, ICMPv6 8
#: and ESP 8 (Linux's ipv6frag_thdr_truncated reads the same sizes), 1 byte of anything else.
_UPPER_MIN = {6: 20, 17: 8, 58: 8, _ESP: 8}


class Reassembled(NamedTuple):
    """A complete datagram.

    ``payload`` is the IPv4 payload, or the IPv6 fragmentable part (what followed the
    Fragment header, fragment header removed).  ``protocol`` is the IPv4 protocol, or the
    Next Header of the first fragment's Fragment header (RFC 8200 4.5: only fragment zero's
    counts).  ``first`` is the ``context`` the host passed with fragment zero (for example
    its header, for the TTL, or the IPv6 unfragmentable part).
    """
    src: bytes
    dst: bytes
    protocol: int
    payload: bytes
    first: Any


class Expired(NamedTuple):
    """A datagram whose reassembly timed out.  ``first`` is the ``context`` of fragment zero,
    None if it never arrived; the host sends ICMP Time Exceeded (code 1, "fragment reassembly
    time exceeded") to ``src`` only when it did."""
    src: bytes
    dst: bytes
    first: Any

    @property
    def first_arrived(self):
        """True if fragment zero had arrived, so an ICMP Time Exceeded is due."""
        return self.first is not None


class ParamProblem(NamedTuple):
    """An IPv6 fragment dropped with an ICMPv6 Parameter Problem due (RFC 8200 4.5).

    ``code`` 0 (erroneous header field) or 3 (incomplete header chain, RFC 7112); ``pointer``
    is the offset in the offending packet that the message points at (from the start of the
    IPv6 header); ``context`` is what the host passed with that fragment.
    """
    src: bytes
    dst: bytes
    code: int
    pointer: int
    context: Any


class FragmentationNeeded(ValueError):
    """The datagram does not fit the MTU and may not be fragmented (IPv4 DF set).  The caller
    reports EMSGSIZE (or, forwarding, an ICMP Fragmentation Needed with ``mtu``)."""

    def __init__(self, size, mtu):
        super().__init__(f"{size} bytes > MTU {mtu} with DF set")
        self.size = size
        self.mtu = mtu


class _Datagram:
    """One datagram in progress."""

    __slots__ = ("created", "deadline", "starts", "pieces", "received", "end", "max_end",
                 "protocol", "first", "cost", "dead")

    def __init__(self, now, timeout):
        self.created = now
        self.deadline = now + timeout
        self.starts = []            # piece start offsets, for bisect
        self.pieces = []            # (start, end, bytes), sorted, disjoint
        self.received = 0           # data bytes held
        self.end = None             # total length, once the last fragment arrived
        self.max_end = 0            # the highest end seen
        self.protocol = None        # from fragment zero
        self.first = None           # context of fragment zero
        self.cost = 0               # memory charged
        self.dead = False           # a tombstone: discard whatever else arrives


class FragmentReassembler:
    """Reassembles IPv4 and IPv6 datagrams from their fragments, within explicit bounds.

    Feed fragments with :meth:`add_v4` / :meth:`add_v6`; call :meth:`poll` when
    :meth:`poll_at` says.  ``memory`` is what is charged now, ``len()`` the datagrams held
    (tombstones included), ``stats`` the counters, ``errors`` the ICMPv6 Parameter Problems
    to send (:class:`ParamProblem`; at most ``max_errors`` queued, the oldest dropped first).
    The bounds may be changed at any time.  The timeouts apply to datagrams started after a
    change; lowering one while datagrams are in progress may delay the expiry of the newer
    ones until the older ones go (each table expires from its front).
    """

    def __init__(self, *, max_memory=DEFAULT_MAX_MEMORY, max_datagrams=256,
                 max_fragments=DEFAULT_MAX_FRAGMENTS, fragment_cost=DEFAULT_FRAGMENT_COST,
                 timeout_v4=IPV4_TIMEOUT, timeout_v6=IPV6_TIMEOUT, max_errors=64):
        if max_memory < 1 or max_datagrams < 1 or max_fragments < 1 or max_errors < 0:
            raise ValueError("max_memory, max_datagrams and max_fragments must be at least 1")
        if fragment_cost < 0 or timeout_v4 <= 0 or timeout_v6 <= 0:
            raise ValueError("fragment_cost must not be negative, timeouts must be positive")
        self.max_memory = max_memory
        self.max_datagrams = max_datagrams
        self.max_fragments = max_fragments
        self.fragment_cost = fragment_cost
        self.timeout_v4 = timeout_v4
        self.timeout_v6 = timeout_v6
        self.max_errors = max_errors
        self.memory = 0
        self.errors = []
        self.stats = collections.Counter()
        # Insertion order is creation order, and with one timeout per table that is also
        # deadline order: poll() and eviction look at the front only.
        self._v4 = {}
        self._v6 = {}

    def __len__(self):
        return len(self._v4) + len(self._v6)

    # -- input -----------------------------------------------------------------------------

    def add_v4(self, src, dst, protocol, ident, offset, more, data, now, *,
               header_len=HEADER_LEN, context=None):
        """Add an IPv4 fragment; return the :class:`Reassembled` datagram it completes, or None.

        ``offset`` is in bytes (``(flags_fragment & OFFSET_MASK) * 8``), ``more`` the MF flag,
        ``data`` the fragment's payload (copied), ``header_len`` its header length (the
        reassembled datagram, header included, must fit 65535 bytes), ``context`` anything
        the host wants back with the result or an :class:`Expired` report if this is
        fragment zero.  A "fragment" with offset 0 and MF clear is a whole datagram and is
        returned as it is.
        """
        size = len(data)
        if offset == 0 and not more:
            return Reassembled(src, dst, protocol, bytes(data), context)
        if more and (size == 0 or size & 7):
            return self._drop("frag_empty" if size == 0 else "frag_bad_length")
        if header_len + offset + size > _MAX_PAYLOAD:
            return self._drop("frag_too_big")           # RFC 791: at most 65535 with header
        return self._add(self._v4, (src, dst, protocol, ident), self.timeout_v4, offset, more,
                         data, now, protocol, context)

    def add_v6(self, src, dst, ident, offset, more, next_header, data, now, *,
               unfragmentable_len=0, context=None):
        """Add an IPv6 fragment; return the :class:`Reassembled` datagram it completes, or None.

        ``offset`` is in bytes, ``more`` the M flag, ``next_header`` the Fragment header's
        Next Header, ``data`` what followed the Fragment header (copied);
        ``unfragmentable_len`` the bytes of extension headers between the IPv6 header and the
        Fragment header (they count against the 65535-byte payload length and locate the
        Fragment Offset for a Parameter Problem).  ``context`` as for :meth:`add_v4`, and it
        is also what a :class:`ParamProblem` about this fragment carries.
        """
        size = len(data)
        if offset == 0 and not more:                     # RFC 6946: an atomic fragment
            self.stats["frag.atomic"] += 1
            return Reassembled(src, dst, next_header, bytes(data), context)
        if more and (size == 0 or size & 7):
            if size == 0:
                return self._drop("frag_empty")
            # RFC 8200 4.5: Parameter Problem code 0 pointing at the Payload Length field.
            self._param_problem(src, dst, 0, 4, context)
            return self._drop("frag_bad_length")
        if unfragmentable_len + offset + size > _MAX_PAYLOAD:
            # RFC 8200 4.5: code 0 pointing at the Fragment Offset field.
            pointer = IPV6_HEADER_LEN + unfragmentable_len + 2
            self._param_problem(src, dst, 0, pointer, context)
            return self._drop("frag_too_big")
        if offset == 0 and not _header_chain_complete(next_header, data):
            # RFC 8200 4.5 / RFC 7112: code 3, pointer 0; only this fragment is discarded.
            self._param_problem(src, dst, 3, 0, context)
            return self._drop("frag_incomplete_chain")
        return self._add(self._v6, (src, dst, ident), self.timeout_v6, offset, more, data,
                         now, next_header, context)

    def _add(self, table, key, timeout, offset, more, data, now, protocol, context):
        size = len(data)
        end = offset + size
        datagram = table.get(key)
        if datagram is None:
            if len(self) >= self.max_datagrams:
                self._evict_oldest(None)
            datagram = table[key] = _Datagram(now, timeout)
        elif datagram.dead:
            return self._drop("frag_discarded_datagram")
        # The total length: data past a known end, or a last fragment that disagrees.
        if more:
            if datagram.end is not None and end > datagram.end:
                return self._discard(datagram, "frag_bad_end")
        elif (datagram.end is not None and end != datagram.end) or end < datagram.max_end:
            return self._discard(datagram, "frag_bad_end")
        starts = datagram.starts
        pieces = datagram.pieces
        i = bisect_left(starts, offset)
        if size:
            if i < len(pieces) and pieces[i][0] == offset and pieces[i][1] == end:
                return self._drop("frag_duplicate")     # RFC 8200 4.5: not an overlap
            if (i and pieces[i - 1][1] > offset) or (i < len(pieces) and pieces[i][0] < end):
                return self._discard(datagram, "frag_overlap")   # RFC 5722
            if len(pieces) >= self.max_fragments:
                return self._discard(datagram, "frag_too_many")
            cost = size + self.fragment_cost
            while self.memory + cost > self.max_memory:
                if not self._evict_oldest(key):
                    return self._discard(datagram, "frag_memory")
            starts.insert(i, offset)
            pieces.insert(i, (offset, end, bytes(data)))
            datagram.received += size
            datagram.cost += cost
            self.memory += cost
            if end > datagram.max_end:
                datagram.max_end = end
        if offset == 0:
            datagram.first = context
            datagram.protocol = protocol
        if not more:
            datagram.end = end
        return self._complete(table, key, datagram)

    def _complete(self, table, key, datagram):
        if datagram.end is None or datagram.received != datagram.end:
            return None
        # Pieces are disjoint and inside [0, end), so their sizes adding up to end means no
        # hole is left.
        del table[key]
        self.memory -= datagram.cost
        self.stats["frag.reassembled"] += 1
        payload = b"".join(piece[2] for piece in datagram.pieces)
        return Reassembled(key[0], key[1], datagram.protocol, payload, datagram.first)

    # -- timers ----------------------------------------------------------------------------

    def poll(self, now):
        """Remove the datagrams whose time is up; return an :class:`Expired` for each one that
        was still being reassembled (not for tombstones), oldest first."""
        expired = []
        for table in (self._v4, self._v6):
            while table:
                key = next(iter(table))
                datagram = table[key]
                if datagram.deadline > now:
                    break
                del table[key]
                self.memory -= datagram.cost
                if not datagram.dead:
                    self.stats["frag.timeout"] += 1
                    expired.append(Expired(key[0], key[1], datagram.first))
        return expired

    def poll_at(self):
        """When :meth:`poll` next has work: the earliest deadline, or None when empty."""
        deadlines = [table[next(iter(table))].deadline for table in (self._v4, self._v6)
                     if table]
        return min(deadlines) if deadlines else None

    # -- bounds and discards ---------------------------------------------------------------

    def _evict_oldest(self, keep):
        """Remove the datagram started longest ago, other than ``keep``; False if none."""
        oldest = None
        for table in (self._v4, self._v6):
            for key in table:
                if key != keep:
                    if oldest is None or table[key].created < oldest[2].created:
                        oldest = (table, key, table[key])
                    break
        if oldest is None:
            return False
        table, key, datagram = oldest
        del table[key]
        self.memory -= datagram.cost
        self.stats["frag.evicted"] += 1
        return True

    def _discard(self, datagram, reason):
        """Turn ``datagram`` into a tombstone: its data is freed, later fragments dropped."""
        self.memory -= datagram.cost
        datagram.cost = 0
        datagram.received = 0
        datagram.starts = []
        datagram.pieces = []
        datagram.first = None
        datagram.dead = True
        return self._drop(reason)

    def _drop(self, reason):
        self.stats["drop." + reason] += 1
        return None

    def _param_problem(self, src, dst, code, pointer, context):
        if self.max_errors == 0:
            return
        if len(self.errors) >= self.max_errors:
            del self.errors[0]
            self.stats["frag.errors_overflow"] += 1
        self.errors.append(ParamProblem(src, dst, code, pointer, context))

    def __repr__(self):
        return (f"<FragmentReassembler {len(self._v4)}+{len(self._v6)} datagrams, "
                f"{self.memory}/{self.max_memory} bytes>")


def _header_chain_complete(next_header, data):
    """True if ``data`` (a first fragment's fragmentable part, starting with the header that
    ``next_header`` names) holds every extension header and the start of the upper-layer
    header (RFC 8200 4.5, RFC 7112)."""
    size = len(data)
    pos = 0
    while True:
        if next_header in _EXT_8:
            if pos + 2 > size:
                return False
            length = (data[pos + 1] + 1) * 8
        elif next_header == _AH:
            if pos + 2 > size:
                return False
            length = (data[pos + 1] + 2) * 4        # RFC 4302 section 2.2
        elif next_header == _FRAGMENT:
            length = FRAGMENT_HEADER_LEN
        elif next_header == _NO_NEXT:
            return True
        else:
            return pos + _UPPER_MIN.get(next_header, 1) <= size
        if pos + length > size:
            return False
        next_header = data[pos]
        pos += length


# -- fragmentation ---------------------------------------------------------------------------

def fragment_v4(src, dst, protocol, payload, mtu, *, ident, ttl=DEFAULT_TTL, tos=0,
                dont_fragment=False):
    """Return the IPv4 packets (header included) that carry ``payload`` over ``mtu``.

    A datagram that fits is one packet (DF set if ``dont_fragment``); one that does not
    raises :class:`FragmentationNeeded` with ``dont_fragment``, and otherwise is split into
    fragments of ``(mtu - 20) // 8 * 8`` data bytes (the last one shorter), all with the
    same ``ident``, in offset order.  ``ValueError`` for an MTU below RFC 791's 68 or a
    payload that no IPv4 datagram can carry.
    """
    if mtu < IPV4_MIN_MTU:
        raise ValueError(f"IPv4 MTU {mtu} below the minimum of {IPV4_MIN_MTU}")
    if not 0 <= ident <= 0xFFFF:
        raise ValueError(f"IPv4 identification {ident} out of range")
    size = HEADER_LEN + len(payload)
    if size <= mtu:
        return [build_ipv4(src, dst, protocol, payload, ttl=ttl, ident=ident,
                           flags_fragment=FLAG_DF if dont_fragment else 0, tos=tos)]
    if dont_fragment:
        raise FragmentationNeeded(size, mtu)
    if size > _MAX_PAYLOAD:
        raise ValueError(f"IPv4 datagram of {size} bytes exceeds 65535")
    chunk = (mtu - HEADER_LEN) & ~7
    view = memoryview(payload)
    total = len(payload)
    packets = []
    for offset in range(0, total, chunk):
        flags = (offset >> 3) | (FLAG_MF if offset + chunk < total else 0)
        packets.append(build_ipv4(src, dst, protocol, view[offset:offset + chunk], ttl=ttl,
                                  ident=ident, flags_fragment=flags, tos=tos))
    return packets


def fragment_v6(payload, mtu, *, ident, next_header, unfragmentable_len=0):
    """Split an IPv6 fragmentable part for ``mtu``; return ``[fragment_header + data, ...]``.

    ``payload`` is what follows the unfragmentable part (RFC 8200 4.5: extension headers
    that must precede the Fragment header and ``unfragmentable_len`` bytes long), and
    ``next_header`` the type of its first header.  Each returned item is an 8-byte Fragment
    header (``ident`` chosen by the caller, RFC 7739) followed by up to
    ``(mtu - 40 - unfragmentable_len - 8) // 8 * 8`` bytes; the caller puts the IPv6 header
    and the unfragmentable part in front of each, with Next Header 44 before it.  A payload
    that fits gives one atomic fragment: the caller should not ask for one (RFC 8021).
    ``ValueError`` for an MTU below 1280 or a payload over 65535 bytes with its unfragmentable
    part (jumbograms are not fragmented).
    """
    if mtu < IPV6_MIN_MTU:
        raise ValueError(f"IPv6 MTU {mtu} below the minimum of {IPV6_MIN_MTU}")
    if not 0 <= ident <= 0xFFFFFFFF:
        raise ValueError(f"IPv6 fragment identification {ident} out of range")
    if unfragmentable_len + len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"IPv6 payload of {unfragmentable_len + len(payload)} bytes "
                         "exceeds 65535")
    chunk = (mtu - IPV6_HEADER_LEN - unfragmentable_len - FRAGMENT_HEADER_LEN) & ~7
    if chunk < 8:
        raise ValueError(f"MTU {mtu} leaves no room after {unfragmentable_len} bytes of "
                         "unfragmentable headers")
    view = memoryview(payload)
    total = len(payload)
    fragments = []
    for offset in range(0, total or 1, chunk):
        more = 1 if offset + chunk < total else 0
        # The 13-bit offset counts 8-byte units and sits above 3 flag bits: offset | M.
        header = _FRAGMENT_HEADER.pack(next_header, 0, offset | more, ident)
        fragments.append(header + view[offset:offset + chunk])
    return fragments
