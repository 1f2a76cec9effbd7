"""Out-of-order segment storage for a TCP receiver, with a memory bound and SACK blocks.

Design note
-----------
The receiver keeps data that arrived above ``RCV.NXT`` until the hole below it is filled.
:class:`Reassembler` holds it as a short list of disjoint, non-adjacent blocks
``[start, end, bytearray, stamp]`` sorted by ``start`` (a parallel list of starts is searched
with :mod:`bisect`).  Arrivals that overlap or touch held blocks merge with them, so each
byte is stored once however often it is retransmitted, and the list stays as short as the
number of holes, usually a handful.  When the new data extends a block that starts at or
before it (the common case: in-order arrivals above a single hole), that block's bytearray
grows in place, so a burst costs linear time, not quadratic.

Sequence numbers here are absolute, unwrapped ints: the connection unwraps the 32-bit wire
values before calling in, and rebases when it pops data.

``stamp`` is a counter bumped by every :meth:`Reassembler.add`; it orders SACK blocks by how
recently they were touched, as RFC 2018 section 4 asks: the block holding the segment that
triggered the ACK first, then the most recently reported others, so a sender that misses
some ACKs still learns about every block.

The bound is on payload bytes held (``limit``) and, optionally, on the number of blocks
(``max_blocks``), because a peer sending one-byte segments with gaps would otherwise make
each block cost far more than its byte.  An arrival that would exceed either is refused
whole and changes nothing; the connection counts the drop (the data will be retransmitted).
"""
from bisect import bisect_left, bisect_right

__all__ = ["Reassembler"]

_START, _END, _DATA, _STAMP = 0, 1, 2, 3


class Reassembler:
    """Out-of-order byte ranges of one TCP receive stream, at most ``limit`` bytes held.

    ``bytes_held`` counts payload bytes; ``len()`` is the number of disjoint blocks; the
    object is true when it holds anything.  ``max_blocks`` (``None``: no bound) caps the
    number of blocks as well.  ``limit`` and ``max_blocks`` may be changed at any time;
    lowering them does not drop what is already held.
    """

    __slots__ = ("limit", "max_blocks", "bytes_held", "_starts", "_blocks", "_clock")

    def __init__(self, limit, max_blocks=None):
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit!r}")
        if max_blocks is not None and max_blocks < 1:
            raise ValueError(f"max_blocks must be at least 1, got {max_blocks!r}")
        self.limit = limit
        self.max_blocks = max_blocks
        self.bytes_held = 0
        self._starts = []
        self._blocks = []
        self._clock = 0

    def __len__(self):
        return len(self._blocks)

    def __bool__(self):
        return bool(self._blocks)

    def add(self, start, data):
        """Hold ``data`` (bytes-like, copied) covering ``[start, start + len(data))``.

        Parts already held are not stored again; blocks that overlap or touch the new range
        merge into one, which becomes the most recently touched (first in :meth:`sack_blocks`).
        Returns ``False``, storing nothing, if the new bytes would take ``bytes_held`` over
        ``limit`` (or the blocks over ``max_blocks``); ``True`` otherwise, including for data
        that was entirely held already and for empty data.
        """
        size = len(data)
        if size == 0:
            return True
        end = start + size
        starts = self._starts
        blocks = self._blocks
        # Blocks i..j-1 overlap or touch [start, end]: those starting at or before `end`
        # and ending at or after `start`.  Blocks are disjoint, so only the block just
        # before `start` can reach past it.
        i = bisect_left(starts, start)
        if i and blocks[i - 1][_END] >= start:
            i -= 1
        j = bisect_right(starts, end, i)
        stamp = self._clock + 1
        if i == j:
            # Nothing to merge with: a new block.
            if self.bytes_held + size > self.limit:
                return False
            if self.max_blocks is not None and len(blocks) >= self.max_blocks:
                return False
            starts.insert(i, start)
            blocks.insert(i, [start, end, bytearray(data), stamp])
            self.bytes_held += size
            self._clock = stamp
            return True
        first = blocks[i]
        if j == i + 1 and first[_START] <= start and end <= first[_END]:
            first[_STAMP] = self._clock = stamp  # a duplicate of held data
            return True
        new = size
        for block in blocks[i:j]:
            lo = block[_START] if block[_START] > start else start
            hi = block[_END] if block[_END] < end else end
            if hi > lo:
                new -= hi - lo
        if self.bytes_held + new > self.limit:
            return False
        view = memoryview(data)
        if first[_START] <= start:
            buf = first[_DATA]                   # grow the first block in place
            pos = first[_END]
            rest = blocks[i + 1:j]
        else:
            buf = bytearray()
            pos = start
            rest = blocks[i:j]
        for block in rest:
            if block[_START] > pos:
                buf += view[pos - start:block[_START] - start]
            buf += block[_DATA]
            pos = block[_END]
        if end > pos:
            buf += view[pos - start:]
            pos = end
        merged_start = first[_START] if first[_START] < start else start
        starts[i:j] = [merged_start]
        blocks[i:j] = [[merged_start, pos, buf, stamp]]
        self.bytes_held += new
        self._clock = stamp
        return True

    def pop_ready(self, next_seq):
        """Remove and return the held bytes from ``next_seq`` on, if the lowest block reaches it.

        Blocks that end at or below ``next_seq`` are discarded (already delivered some other
        way).  If the lowest remaining block starts at or before ``next_seq``, it is removed
        and its bytes from ``next_seq`` to its end are returned; otherwise ``None`` (a hole is
        still open).  Blocks never touch, so one call delivers everything that is ready.
        """
        blocks = self._blocks
        while blocks and blocks[0][_END] <= next_seq:
            self.bytes_held -= blocks[0][_END] - blocks[0][_START]
            del blocks[0]
            del self._starts[0]
        if not blocks or blocks[0][_START] > next_seq:
            return None
        block = blocks.pop(0)
        del self._starts[0]
        self.bytes_held -= block[_END] - block[_START]
        offset = next_seq - block[_START]
        if offset:
            return bytes(memoryview(block[_DATA])[offset:])
        return bytes(block[_DATA])

    def sack_blocks(self, limit=4):
        """Up to ``limit`` ``(start, end)`` ranges for SACK options, most recently touched first.

        RFC 2018 section 4: the first block MUST be the one containing the segment that
        triggered the ACK (the latest :meth:`add`), and the others SHOULD repeat the most
        recently reported blocks.  ``end`` is exclusive, as the SACK option's right edge is.
        A TCP option space fits four blocks, three alongside timestamps (RFC 2018 section 3).
        """
        if limit <= 0:
            return []
        blocks = self._blocks
        if len(blocks) > 1:
            blocks = sorted(blocks, key=_stamp, reverse=True)
        return [(block[_START], block[_END]) for block in blocks[:limit]]

    def ranges(self):
        """All held ``(start, end)`` ranges in sequence order (diagnostics, tests)."""
        return [(block[_START], block[_END]) for block in self._blocks]

    def clear(self):
        """Drop everything held (connection reset or closed)."""
        self._starts.clear()
        self._blocks.clear()
        self.bytes_held = 0

    def __repr__(self):
        return (f"<Reassembler {self.bytes_held}/{self.limit} bytes in "
                f"{len(self._blocks)} blocks {self.ranges()[:4]}>")


def _stamp(block):
    return block[_STAMP]
