"""Keyed hashes that make a TCP hard to attack from off the path.

- Initial sequence numbers per RFC 6528: ``ISN = M + F(4-tuple, secret)``, M a 4 µs clock, so
  successive connections of one 4-tuple get increasing ISNs and others cannot guess them.
- Ephemeral ports per RFC 6056 section 3.3.3 (Algorithm 3, "simple hash-based"): each remote
  endpoint sees its own sequence of ports, starting at an offset only we know.
- SYN cookies (RFC 4987 section 3.6): when the SYN queue is full, the SYN-ACK's ISN encodes a
  coarse time, an MSS index and a MAC of the 4-tuple, so the final ACK can rebuild the
  connection without any state kept in between.

The same functions serve IPv4 and IPv6: addresses are hashed as the bytes they are (4 or 16),
so a 4-tuple of either family has its own ISN sequence, port offset and cookie MAC.  Cookies
index a table of MSS values per family, like Linux's ``msstab`` and ``msstab6``.

All take the secret from the caller (drawn from the stack's random generator), so simulations
stay reproducible.  BLAKE2s is keyed natively and costs ~1 µs per call.
"""
import hashlib

#: The MSS values a SYN cookie can carry (3 bits), as Linux's msstab plus jumbo sizes.
COOKIE_MSS = (536, 1300, 1440, 1460, 4036, 8960, 8976, 9176)
#: The same for IPv6 (Linux's msstab6: MTUs 1280, 1480, 1500, 9000 less 60 bytes of headers,
#: plus our other jumbo sizes): IPv6 never goes below 1280 bytes (RFC 8200 section 5).
COOKIE_MSS6 = (1220, 1420, 1440, 3976, 4016, 8940, 8956, 9156)
#: A cookie's time counter ticks every 64 s (5 bits), and is honoured for two ticks.
COOKIE_TICK = 64.0


def _hash32(secret, *parts):
    digest = hashlib.blake2s(b"".join(parts), key=secret, digest_size=4).digest()
    return int.from_bytes(digest, "big")


def _tuple_bytes(laddr, lport, raddr, rport):
    return bytes(laddr) + lport.to_bytes(2, "big") + bytes(raddr) + rport.to_bytes(2, "big")


def initial_sequence(secret, laddr, lport, raddr, rport, now):
    """RFC 6528 section 3: a 4 µs clock plus a keyed hash of the connection's 4-tuple."""
    clock = int(now * 250_000)
    return (clock + _hash32(secret, b"isn", _tuple_bytes(laddr, lport, raddr, rport))) \
        & 0xFFFFFFFF


def port_offset(secret, laddr, raddr, rport):
    """RFC 6056 Algorithm 3's F(local address, remote address, remote port, secret)."""
    return _hash32(secret, b"port", bytes(laddr), bytes(raddr), rport.to_bytes(2, "big"))


def syn_cookie(secret, laddr, lport, raddr, rport, client_isn, mss, now):
    """The ISN for a stateless SYN-ACK: 5 bits of time, 3 of MSS index, 24 of keyed MAC.

    Returns ``(cookie, mss_used)``: the largest table MSS not above ``mss`` (the table of the
    addresses' family, :data:`COOKIE_MSS` or :data:`COOKIE_MSS6`).
    """
    index = 0
    for i, value in enumerate(COOKIE_MSS if len(laddr) == 4 else COOKIE_MSS6):
        if value <= mss:
            index = i
    tick = int(now // COOKIE_TICK) & 0x1F
    mac = _cookie_mac(secret, laddr, lport, raddr, rport, client_isn, tick, index)
    return (tick << 27) | (index << 24) | mac, \
        (COOKIE_MSS if len(laddr) == 4 else COOKIE_MSS6)[index]


def check_syn_cookie(secret, laddr, lport, raddr, rport, client_isn, cookie, now):
    """The MSS a valid cookie carries, or 0 if it is forged or expired."""
    tick = cookie >> 27
    index = (cookie >> 24) & 0x7
    current = int(now // COOKIE_TICK) & 0x1F
    if (current - tick) & 0x1F > 1:
        return 0
    if _cookie_mac(secret, laddr, lport, raddr, rport, client_isn, tick, index) \
            != cookie & 0xFFFFFF:
        return 0
    return (COOKIE_MSS if len(laddr) == 4 else COOKIE_MSS6)[index]


def _cookie_mac(secret, laddr, lport, raddr, rport, client_isn, tick, index):
    data = _tuple_bytes(laddr, lport, raddr, rport) + client_isn.to_bytes(4, "big") \
        + bytes((tick, index))
    return _hash32(secret, b"cookie", data) & 0xFFFFFF
