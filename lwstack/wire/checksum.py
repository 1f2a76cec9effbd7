"""The Internet checksum (RFC 1071) and the IPv4 and IPv6 pseudo-header sums.

Two implementations behind one function: compiled by Cython, a loop over 32-bit words
(~0.3 us for 1480 bytes); in pure Python, the "big integer" trick: the one's complement sum
of 16-bit words equals the data read as one big-endian integer modulo 0xFFFF, because
2**16 == 1 (mod 0xFFFF) (~2 us, against ~47 us for a Python loop).
"""
import sys

_LITTLE_ENDIAN = sys.byteorder == "little"
try:
    import cython
    _COMPILED = cython.compiled
except ImportError:  # Cython is a build dependency, not a runtime one
    _COMPILED = False


def ones_sum(data, initial=0):
    """Return the 16-bit one's complement sum of ``data`` (bytes-like) plus ``initial``.

    An odd trailing byte is padded with a zero byte, as RFC 1071 says.  The result is folded
    to 16 bits but not complemented, so sums of several pieces can be chained.
    """
    if _COMPILED:
        return _ones_sum_c(data, initial)
    n = len(data)
    if n & 1:
        total = int.from_bytes(data, "big") << 8
    else:
        total = int.from_bytes(data, "big")
    # One's complement arithmetic has two zeros; a non-zero multiple of 0xFFFF sums to 0xFFFF
    # ("negative zero"), which is what makes a verified checksum come out as 0.
    folded = total % 0xFFFF
    if folded == 0 and total:
        folded = 0xFFFF
    total = folded + initial
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return total


def _ones_sum_c(view, initial):
    """Used only when compiled (see checksum.pxd for the types): 32-bit native words summed
    into 64 bits, folded, then byte-swapped on a little-endian machine (RFC 1071 section 2(B):
    the sum does not depend on byte order).  ~0.3 us for 1480 bytes against ~1.3 us for a
    byte-pair loop.
    """
    n = len(view)
    total = 0
    tail = initial
    i = 0
    if n >= 4 and _COMPILED:        # uncompiled (tests call it directly), pairs only
        p = cython.address(view[0])
        while i + 4 <= n:
            memcpy(cython.address(word), p + i, 4)  # noqa: F821 (a C function when compiled)
            total += word
            i += 4
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        if _LITTLE_ENDIAN:
            total = ((total & 0xFF) << 8) | (total >> 8)
    while i + 1 < n:
        tail += (view[i] << 8) | view[i + 1]
        i += 2
    if i < n:
        tail += view[i] << 8
    total += tail
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data, initial=0):
    """Return the Internet checksum of ``data``: the complement of :func:`ones_sum`.

    Verifying a received header: the checksum over the header including its checksum field
    is 0 when the header is intact.
    """
    total = ones_sum(data, initial)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header_sum(src, dst, protocol, length):
    """The one's complement sum of the IPv4 pseudo-header (RFC 768, RFC 9293 section 3.1).

    ``src`` and ``dst`` are 4-byte addresses; ``length`` is the transport length.
    """
    total = ((src[0] << 8) | src[1]) + ((src[2] << 8) | src[3])
    total += ((dst[0] << 8) | dst[1]) + ((dst[2] << 8) | dst[3])
    total += protocol + length
    return (total & 0xFFFF) + (total >> 16)


def pseudo_header_sum6(src, dst, next_header, length):
    """The one's complement sum of the IPv6 pseudo-header (RFC 8200 section 8.1).

    ``src`` and ``dst`` are 16-byte addresses (the final destination if a Routing header is
    present); ``length`` is the upper-layer packet length (a 32-bit field, so jumbograms fit);
    ``next_header`` is the upper-layer protocol (6, 17, 58), not that of an extension header.
    Like :func:`pseudo_header_sum`, the result is a partial sum to pass as ``initial``.
    """
    if len(src) != 16 or len(dst) != 16:
        raise ValueError("IPv6 pseudo-header addresses must be 16 bytes")
    total = next_header + (length >> 16) + (length & 0xFFFF)
    if not _COMPILED:       # two big-integer sums beat a Python loop over 16 words
        return ones_sum(dst, ones_sum(src, total))
    for i in range(0, 16, 2):
        total += ((src[i] << 8) | src[i + 1]) + ((dst[i] << 8) | dst[i + 1])
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + (total >> 16)
