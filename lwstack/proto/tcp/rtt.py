"""Round-trip time estimation and the retransmission timeout (RFC 6298).

Design note
-----------
:class:`RttEstimator` is a small sans-IO state machine with two states: *no sample yet*
(``srtt is None``; the RTO is the initial one, RFC 6298 section 2.1) and *estimating*
(``srtt``/``rttvar`` smoothed per section 2.3).  Independently of those, the RTO may be
*backed off*: each retransmission timeout doubles it (section 5.5) until a valid sample or
:meth:`RttEstimator.reset_backoff` recomputes it from ``srtt``/``rttvar``.

The estimator never reads a clock: the connection measures the round trip (from its own
timestamps or the RFC 7323 TSecr echo) and passes seconds in.  Choosing *which* round trips
to measure is the connection's job too.  Karn's algorithm (RFC 6298 section 3; Karn and
Partridge 1987): a segment that was retransmitted must not be sampled, because its ACK is
ambiguous (it may acknowledge the first or a later transmission), unless RFC 7323
timestamps disambiguate it; and the backed-off RTO is kept until an ACK for data that was
*not* retransmitted yields a sample.

Defaults follow Linux rather than the RFC's conservative minimum: RFC 6298 section 2.4 says
the RTO SHOULD be rounded up to 1 s, Linux uses 200 ms (``TCP_RTO_MIN``), which is what
peers on a LAN expect.  The initial RTO is the RFC's 1 s (section 2.1; RFC 2988 had 3 s),
and the maximum 120 s is the same as Linux's ``TCP_RTO_MAX`` (the RFC requires at least 60 s,
section 2.5).  Also the connection's: RFC 6298 section 5.7 (a SYN that timed out means an RTO
of at least 3 s once data transfer begins).
"""

__all__ = ["RttEstimator"]

# RFC 6298 section 2.3: alpha = 1/8, beta = 1/4, K = 4.
ALPHA = 0.125
BETA = 0.25
K = 4


class RttEstimator:
    """RFC 6298 smoothed RTT, RTT variance and retransmission timeout, in float seconds.

    Attributes (read them, do not assign them): ``srtt`` and ``rttvar`` (``None`` before the
    first sample), ``rto`` (always a float, within ``[min_rto, max_rto]``), ``min_rtt`` (the
    smallest sample seen, ``None`` before the first), ``latest_rtt`` (the last sample),
    ``samples`` (how many were taken) and ``backoffs`` (consecutive :meth:`backoff` calls
    since the RTO was last recomputed; a connection can give up after too many).

    Only feed it valid samples; see the module note on Karn's algorithm.
    """

    __slots__ = ("min_rto", "max_rto", "initial_rto", "granularity", "srtt", "rttvar",
                 "rto", "min_rtt", "latest_rtt", "samples", "backoffs")

    def __init__(self, min_rto=0.2, max_rto=120.0, initial_rto=1.0, granularity=0.001):
        if not 0 < min_rto <= max_rto:
            raise ValueError(f"need 0 < min_rto <= max_rto, got {min_rto!r}, {max_rto!r}")
        if not min_rto <= initial_rto <= max_rto:
            raise ValueError(f"initial_rto {initial_rto!r} is outside "
                             f"[{min_rto!r}, {max_rto!r}]")
        if granularity < 0:
            raise ValueError(f"granularity must not be negative, got {granularity!r}")
        self.min_rto = float(min_rto)
        self.max_rto = float(max_rto)
        self.initial_rto = float(initial_rto)
        self.granularity = float(granularity)
        self.srtt = None
        self.rttvar = None
        self.rto = self.initial_rto
        self.min_rtt = None
        self.latest_rtt = None
        self.samples = 0
        self.backoffs = 0

    def sample(self, rtt):
        """Take a round-trip measurement of ``rtt`` seconds and recompute the RTO.

        The first sample sets ``srtt = rtt`` and ``rttvar = rtt / 2`` (RFC 6298 section 2.2);
        later ones smooth with alpha 1/8 and beta 1/4, ``rttvar`` first, from the old
        ``srtt`` (section 2.3).  Then ``rto = srtt + max(G, 4 * rttvar)``, clamped to
        ``[min_rto, max_rto]`` (sections 2.4, 2.5).  A new sample also ends any backoff.
        """
        if rtt < 0:
            raise ValueError(f"a round-trip time cannot be negative, got {rtt!r}")
        rtt = float(rtt)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        self.latest_rtt = rtt
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt
        self.samples += 1
        self.reset_backoff()

    def backoff(self):
        """The retransmission timer expired: double the RTO, up to ``max_rto`` (RFC 6298 5.5)."""
        self.rto = min(self.rto * 2, self.max_rto)
        self.backoffs += 1

    def reset_backoff(self):
        """Recompute the RTO from ``srtt``/``rttvar``, dropping any backoff.

        Before the first sample this is the initial RTO.  :meth:`sample` calls it; call it
        directly when the connection decides the backoff is over without a new sample (for
        instance once new data is acknowledged and RFC 7323 timestamps vouch for the path).
        """
        if self.srtt is None:
            rto = self.initial_rto
        else:
            rto = self.srtt + max(self.granularity, K * self.rttvar)
        if rto < self.min_rto:
            rto = self.min_rto
        elif rto > self.max_rto:
            rto = self.max_rto
        self.rto = rto
        self.backoffs = 0

    def __repr__(self):
        return (f"RttEstimator(srtt={self.srtt!r}, rttvar={self.rttvar!r}, rto={self.rto!r}, "
                f"min_rtt={self.min_rtt!r}, backoffs={self.backoffs})")
