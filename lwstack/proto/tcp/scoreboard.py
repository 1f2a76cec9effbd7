"""The sender's SACK scoreboard (RFC 6675 section 3): which bytes beyond SND.UNA the peer holds.

Sequence numbers here are absolute, unwrapped ints (the connection unwraps the 32-bit wire
values), so plain comparisons work.  The scoreboard is a sorted list of disjoint
``[start, end)`` ranges; it stays short in practice (one range per hole the peer reports) and is
bounded by :data:`MAX_RANGES`: once full, further SACK information is ignored, which only makes
recovery more conservative, never wrong (SACK is advisory, RFC 2018 section 8).
"""
import bisect

#: Bound on the ranges kept (a peer cannot make us hold more).
MAX_RANGES = 256


class Scoreboard:
    """SACKed ranges above SND.UNA, with the RFC 6675 queries recovery needs."""

    __slots__ = ("starts", "ends", "sacked_bytes")

    def __init__(self):
        self.starts = []
        self.ends = []
        self.sacked_bytes = 0

    def __bool__(self):
        return bool(self.starts)

    @property
    def highest(self):
        """The end of the highest SACKed range (0 when empty): RFC 6675's HighACK side."""
        return self.ends[-1] if self.ends else 0

    def clear(self):
        """Forget everything (e.g. after the peer reneged, RFC 2018 section 8)."""
        self.starts.clear()
        self.ends.clear()
        self.sacked_bytes = 0

    def update(self, snd_una, snd_nxt, blocks):
        """Merge the SACK ``blocks`` of one ACK; return the number of newly SACKed bytes.

        Blocks are clipped to ``[snd_una, snd_nxt)``; blocks below SND.UNA (D-SACK, RFC 2883)
        and empty or inverted ones are ignored.
        """
        before = self.sacked_bytes
        for start, end in blocks:
            start = max(start, snd_una)
            end = min(end, snd_nxt)
            if start < end:
                self._add(start, end)
        return self.sacked_bytes - before

    def _add(self, start, end):
        starts, ends = self.starts, self.ends
        # First range that could touch [start, end): the first whose end >= start.
        i = bisect.bisect_left(ends, start)
        j = i
        new_start, new_end = start, end
        removed = 0
        while j < len(starts) and starts[j] <= end:
            new_start = min(new_start, starts[j])
            new_end = max(new_end, ends[j])
            removed += ends[j] - starts[j]
            j += 1
        if i == j and len(starts) >= MAX_RANGES:
            return
        starts[i:j] = [new_start]
        ends[i:j] = [new_end]
        self.sacked_bytes += (new_end - new_start) - removed

    def prune(self, snd_una):
        """Drop what SND.UNA has passed (cumulatively acknowledged)."""
        starts, ends = self.starts, self.ends
        while starts and ends[0] <= snd_una:
            self.sacked_bytes -= ends[0] - starts[0]
            del starts[0]
            del ends[0]
        if starts and starts[0] < snd_una:
            self.sacked_bytes -= snd_una - starts[0]
            starts[0] = snd_una

    def is_sacked(self, seq):
        """True if byte ``seq`` is in a SACKed range."""
        i = bisect.bisect_right(self.starts, seq) - 1
        return i >= 0 and seq < self.ends[i]

    def lost_boundary(self, snd_una, mss, dup_thresh=3):
        """Every unSACKed byte below the returned sequence counts as lost (RFC 6675 IsLost).

        A byte is lost when more than ``(dup_thresh - 1) * mss`` bytes are SACKed above it, or
        ``dup_thresh`` discontiguous ranges lie above it.  Holes only exist below a range's
        start, so the boundary is the start of the range where the count is reached.
        """
        threshold = (dup_thresh - 1) * mss
        above = 0
        count = 0
        starts, ends = self.starts, self.ends
        for i in range(len(starts) - 1, -1, -1):
            above += ends[i] - starts[i]
            count += 1
            if above > threshold or count >= dup_thresh:
                return starts[i]
        return snd_una

    def unsacked_bytes(self, start, end):
        """How many bytes of ``[start, end)`` are not SACKed."""
        if start >= end:
            return 0
        total = end - start
        starts, ends = self.starts, self.ends
        i = max(0, bisect.bisect_right(ends, start))
        while i < len(starts) and starts[i] < end:
            total -= min(ends[i], end) - max(starts[i], start)
            i += 1
        return total

    def next_hole(self, start, end):
        """The first unSACKed range ``(hole_start, hole_end)`` within ``[start, end)``, or None."""
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(ends, start)
        seq = start
        while seq < end:
            if i < len(starts) and starts[i] <= seq:
                seq = ends[i]
                i += 1
                continue
            hole_end = starts[i] if i < len(starts) else end
            return seq, min(hole_end, end)
        return None

    def ranges(self):
        """The SACKed ranges as ``(start, end)`` pairs, lowest first."""
        return list(zip(self.starts, self.ends))
