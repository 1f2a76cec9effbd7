"""TCP congestion control: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438).

Design note
-----------
A congestion controller owns two numbers, ``cwnd`` and ``ssthresh`` (bytes), and changes them
on four events the connection reports: new data acknowledged (:meth:`~CongestionControl.on_ack`),
entering loss recovery (:meth:`~CongestionControl.on_congestion_event`), leaving it
(:meth:`~CongestionControl.on_recovery_exit`) and a retransmission timeout
(:meth:`~CongestionControl.on_rto`).  It knows nothing of segments, sequence numbers or
timers: the connection decides what a duplicate ACK, a SACK loss or a recovery point is,
inflates or deflates ``cwnd`` during fast recovery (RFC 6582, or RFC 6675 pipe accounting)
by assigning the attribute, and only asks the controller for the numbers that policy sets.
Time is a float ``now`` in seconds passed in; nothing here reads a clock.

States, as seen from here::

    slow start  (cwnd < ssthresh)  --cwnd reaches ssthresh-->  congestion avoidance
         ^                                                              |
         |  on_rto: cwnd = 1 MSS                  on_congestion_event   |
         +-------------------- any state --------------------+          v
                                                       recovery (on_ack ignored while
                                                       in_recovery) --on_recovery_exit--> CA

Growth counts bytes, not ACKs (RFC 3465 "appropriate byte counting"): a stretch ACK or a
delayed ACK that covers two segments grows the window as the segments would have.

- Slow start: ``cwnd += min(acked, L)`` per ACK with ``L = 2*MSS`` (RFC 3465 section 2.2; with
  L = 1*MSS a receiver that ACKs every other segment would grow the window only 1.5x per
  RTT), and ``L = 1*MSS`` in the slow start that follows a timeout (RFC 3465 section 2.3),
  where one cumulative ACK can cover data the receiver had queued out of order.  Slow start
  stops at ``ssthresh`` and the rest of that ACK counts towards congestion avoidance (as
  Linux's ``tcp_slow_start`` does).
- Reno congestion avoidance: one MSS each time a whole ``cwnd`` of bytes has been acknowledged
  (RFC 3465 section 2.1, the byte-counting form of RFC 5681 equation 3).
- CUBIC congestion avoidance: RFC 9438 section 4.  Windows are kept in bytes here; the cubic
  term ``C*(t-K)^3`` is in segments and multiplied by the MSS.  K is computed (one cube root)
  when an epoch starts and cached; the per-ACK work is two cubes and a few multiplications.
- After ``on_rto`` a second timeout before any new data is acknowledged keeps ``ssthresh``
  (RFC 5681 section 3.1: the same segment timing out again says nothing new about the path,
  and halving the already-small flight again would collapse ``ssthresh``).

Not here (left to the connection or to later work): RFC 7661 congestion window validation
(do not grow cwnd while application-limited; the connection can skip ``on_ack`` then),
HyStart++ (RFC 9406), ECN (RFC 3168), pacing.
"""

__all__ = ["CongestionControl", "Reno", "Cubic", "make", "initial_window",
           "AVAILABLE", "DEFAULT", "INFINITE_SSTHRESH"]

# Linux's TCP_INFINITE_SSTHRESH: "arbitrarily high" (RFC 5681 section 3.1).
INFINITE_SSTHRESH = 0x7FFFFFFF

AVAILABLE = ("cubic", "reno")
DEFAULT = "cubic"


def initial_window(mss):
    """The initial window in bytes for a sender MSS: ``min(10*MSS, max(2*MSS, 14600))``.

    RFC 6928 section 2 (ten segments, capped at 14600 bytes for large MSS, never below two).
    """
    return min(10 * mss, max(2 * mss, 14600))


def _check_mss(mss):
    if not isinstance(mss, int) or isinstance(mss, bool) or mss <= 0:
        raise ValueError(f"mss must be a positive int, got {mss!r}")


class CongestionControl:
    """Base class for congestion controllers; it states the contract the connection uses.

    Public attributes: ``name`` (Linux's ``TCP_CONGESTION`` name), ``mss`` (the sender MSS,
    change it with :meth:`set_mss`), ``cwnd`` and ``ssthresh`` (ints, bytes).  The connection
    may assign ``cwnd`` during fast recovery (inflation by duplicate ACKs, RFC 6675 pipe);
    the controller sets both numbers on the events below.  ``ssthresh`` starts at
    :data:`INFINITE_SSTHRESH`.

    Subclasses implement :meth:`_avoid` (congestion-avoidance growth) and may change
    ``beta`` (the multiplicative decrease) or extend the ``_on_*`` hooks.
    """

    name = "base"
    #: Multiplicative decrease factor: ssthresh = max(flight * beta, 2 * MSS).
    beta = 0.5

    def __init__(self, mss, now):
        _check_mss(mss)
        self.mss = mss
        self.cwnd = initial_window(mss)
        self.ssthresh = INFINITE_SSTHRESH
        self._frac = 0.0            # fractional bytes of growth not yet in cwnd (CUBIC)
        self._acked = 0             # byte counter of Reno's congestion avoidance
        self._after_rto = False     # slow start after a timeout: L = 1 MSS
        self._rto_pending = False   # timed out, nothing new acknowledged since: keep ssthresh
        self._in_loss = False       # the last reduction was a timeout, not fast recovery
        self._prior = None          # state before the last reduction, for on_spurious

    @property
    def in_slow_start(self):
        """Whether the next ACK grows the window by slow start (``cwnd < ssthresh``)."""
        return self.cwnd < self.ssthresh

    def on_ack(self, acked_bytes, now, rtt=None, in_recovery=False):
        """``acked_bytes`` of new data were cumulatively acknowledged at ``now``.

        Grows ``cwnd`` by slow start or congestion avoidance (see the module note).  ``rtt``
        is the connection's current smoothed RTT in seconds, when it has one (CUBIC looks one
        RTT ahead, RFC 9438 section 4.2).  Does nothing while ``in_recovery``: RFC 6582 and
        RFC 6675 govern the window during fast recovery.  Only call it for ACKs that advance
        SND.UNA; duplicate ACKs are the connection's business.
        """
        if acked_bytes <= 0:
            return
        self._rto_pending = False
        if in_recovery:
            return
        cwnd = self.cwnd
        ssthresh = self.ssthresh
        if cwnd < ssthresh:
            limit = self.mss if self._after_rto else 2 * self.mss
            grow = acked_bytes if acked_bytes < limit else limit
            if cwnd + grow < ssthresh:
                self.cwnd = cwnd + grow
                return
            self.cwnd = ssthresh
            self._after_rto = False
            acked_bytes -= ssthresh - cwnd
            if acked_bytes <= 0:
                return
        self._avoid(acked_bytes, now, rtt)

    def _avoid(self, acked_bytes, now, rtt):
        """Congestion-avoidance growth for ``acked_bytes`` newly acknowledged bytes."""
        raise NotImplementedError

    def _reduced_ssthresh(self, flight_size):
        return max(int(flight_size * self.beta), 2 * self.mss)

    def on_congestion_event(self, now, flight_size):
        """Loss detected by duplicate ACKs or SACK: set ``ssthresh`` and ``cwnd`` for recovery.

        ``ssthresh = max(flight_size * beta, 2*MSS)`` (RFC 5681 equation 4 with beta 1/2; RFC
        9438 section 4.6 with beta 0.7) and ``cwnd = ssthresh``.  ``flight_size`` is the data
        outstanding in bytes.  The connection adds the RFC 5681 ``3*MSS`` inflation itself
        if it uses it.  Call it once per recovery episode, not once per lost segment.
        """
        self._prior = self._save()
        self._on_reduction(now, timeout=False)
        self.ssthresh = self._reduced_ssthresh(flight_size)
        self.cwnd = self.ssthresh
        self._acked = 0
        self._frac = 0.0
        self._after_rto = False
        self._in_loss = False

    def on_recovery_exit(self, now, flight_size=None):
        """Fast recovery ended (a full ACK, RFC 6582 section 3.2 step 3): deflate the window.

        ``cwnd = ssthresh``; or, when ``flight_size`` (bytes still outstanding) is given,
        RFC 6582's first option ``cwnd = min(ssthresh, max(flight_size, MSS) + MSS)``, which
        avoids a burst when little data is in flight.

        When the last reduction was a timeout (:meth:`on_rto` after any fast recovery), the
        window is left alone: after a timeout slow start governs (RFC 5681 section 3.1), and
        jumping from the slow-start window to ``ssthresh`` when the data outstanding at the
        timeout is finally acknowledged would be a burst.  So the connection may call this
        at the end of any recovery episode.
        """
        if self._in_loss:
            self._in_loss = False
            return
        if self.ssthresh >= INFINITE_SSTHRESH:
            return                   # no congestion event: nothing to deflate to
        if flight_size is None:
            self.cwnd = self.ssthresh
        else:
            self.cwnd = min(self.ssthresh, max(flight_size, self.mss) + self.mss)
        self._acked = 0
        self._frac = 0.0
        self._on_recovery_exit(now)

    def on_rto(self, now, flight_size):
        """The retransmission timer expired: loss window and a reduced ``ssthresh``.

        ``ssthresh = max(flight_size * beta, 2*MSS)`` (RFC 5681 equation 4; CUBIC's beta per
        RFC 9438 section 4.8) unless this is another timeout with nothing acknowledged since
        the previous one (RFC 5681 section 3.1 holds ``ssthresh`` then), and ``cwnd = 1*MSS``,
        the loss window.  The following slow start grows by at most one MSS per ACK.
        """
        if not self._rto_pending:
            self._prior = self._save()
            self._on_reduction(now, timeout=True)
            self.ssthresh = self._reduced_ssthresh(flight_size)
        self.cwnd = self.mss
        self._acked = 0
        self._frac = 0.0
        self._after_rto = True
        self._rto_pending = True
        self._in_loss = True

    def on_spurious(self, now):
        """The last reduction was spurious (RFC 3522 Eifel, RFC 5682 F-RTO, DSACK): undo it.

        Restores ``cwnd = max(cwnd, cwnd before)`` and ``ssthresh = max(ssthresh, ssthresh
        before)``, as Linux's undo does, plus the controller's own state (RFC 9438 section
        4.9 for CUBIC).  Does nothing when there is no reduction to undo.
        """
        prior = self._prior
        if prior is None:
            return
        self._prior = None
        cwnd, ssthresh = prior[0], prior[1]
        if cwnd > self.cwnd:
            self.cwnd = cwnd
        if ssthresh > self.ssthresh:
            self.ssthresh = ssthresh
        self._after_rto = False
        self._rto_pending = False
        self._in_loss = False
        self._frac = 0.0
        self._restore(prior, now)

    def set_mss(self, mss):
        """Change the sender MSS (path MTU change, options learnt late); windows stay in bytes."""
        _check_mss(mss)
        self.mss = mss

    # Hooks for subclasses.
    def _save(self):
        return (self.cwnd, self.ssthresh)

    def _restore(self, prior, now):
        pass

    def _on_reduction(self, now, timeout):
        pass

    def _on_recovery_exit(self, now):
        pass

    def __repr__(self):
        return (f"<{type(self).__name__} cwnd={self.cwnd} ssthresh={self.ssthresh} "
                f"mss={self.mss}>")


class Reno(CongestionControl):
    """NewReno's window policy (RFC 5681, RFC 6582): AIMD with beta 1/2, byte counting.

    Congestion avoidance adds one MSS per ``cwnd`` bytes acknowledged (RFC 3465 section 2.1),
    so about one MSS per round trip.  NewReno's partial-ACK handling is the connection's.
    """

    name = "reno"
    beta = 0.5

    def _avoid(self, acked_bytes, now, rtt):
        acked = self._acked + acked_bytes
        cwnd = self.cwnd
        if acked >= cwnd:
            # One MSS per whole cwnd acknowledged; a huge stretch ACK may cover several.
            steps = acked // cwnd
            acked -= steps * cwnd
            self.cwnd = cwnd + steps * self.mss
        self._acked = acked


class Cubic(CongestionControl):
    """CUBIC (RFC 9438): the window follows ``W_cubic(t) = C*(t-K)^3 + W_max`` after a loss.

    Read-only attributes, for tests and diagnostics: ``w_max`` (bytes, the window before the
    last reduction, lowered by fast convergence), ``cwnd_prior`` (bytes, cwnd when ssthresh
    was last set), ``k`` (seconds), ``epoch_start`` (``None`` outside congestion avoidance),
    ``cwnd_epoch`` (bytes), ``w_est`` (bytes, the Reno-friendly estimate).

    - t is the time since the current congestion-avoidance stage began (``on_recovery_exit``,
      or the first ACK past ``ssthresh``); K = cbrt((W_max - cwnd_epoch) / C) in segments
      (section 4.2, figure 2).
    - Per ACK: the target is ``W_cubic(t + RTT)`` bounded to ``[cwnd, 1.5*cwnd]`` and cwnd
      grows by ``(target - cwnd) / cwnd`` per acknowledged segment (sections 4.4, 4.5).
    - Reno-friendly region (4.3): ``W_est`` starts at ``cwnd_epoch`` and grows by
      ``alpha_cubic * segments_acked / cwnd``, with ``alpha_cubic = 3(1-beta)/(1+beta)`` until
      it reaches ``cwnd_prior`` and 1 after; when ``W_cubic(t) < W_est``, cwnd = W_est.
    - On a congestion event, fast convergence (4.7): a window that did not reach the previous
      ``W_max`` lowers ``W_max`` to ``cwnd * (1+beta)/2`` to make room for new flows.
    - After a timeout (4.8) the next epoch uses K = 0 and W_max = cwnd_epoch.  An epoch whose
      cwnd_epoch is already at or above W_max (no loss yet, or the connection inflated the
      window) does the same, as Linux does, rather than take a negative K.
    """

    name = "cubic"
    beta = 0.7
    #: RFC 9438 section 5: C = 0.4 (segments / second^3).
    C = 0.4
    #: Reno-friendly additive increase before W_est reaches cwnd_prior (section 4.3).
    alpha = 3 * (1 - 0.7) / (1 + 0.7)
    fast_convergence = True

    def __init__(self, mss, now):
        super().__init__(mss, now)
        self.w_max = 0.0
        self.cwnd_prior = 0.0
        self.k = 0.0
        self.epoch_start = None
        self.cwnd_epoch = 0
        self.w_est = 0.0
        self._rtt = 0.0
        self._after_timeout = False

    def _start_epoch(self, now):
        cwnd = self.cwnd
        self.epoch_start = now
        self.cwnd_epoch = cwnd
        self.w_est = float(cwnd)
        if self._after_timeout or self.w_max <= cwnd:
            self.k = 0.0
            self.w_max = float(cwnd)
            self._after_timeout = False
        else:
            self.k = ((self.w_max - cwnd) / (self.mss * self.C)) ** (1.0 / 3.0)

    def _avoid(self, acked_bytes, now, rtt):
        if rtt is not None:
            self._rtt = rtt
        if self.epoch_start is None:
            self._start_epoch(now)
        mss = self.mss
        cwnd = self.cwnd
        t = now - self.epoch_start
        # Reno-friendly estimate (section 4.3, figure 4), in bytes.
        alpha = 1.0 if self.w_est >= self.cwnd_prior else self.alpha
        w_est = self.w_est + alpha * acked_bytes * mss / cwnd
        self.w_est = w_est
        d = t - self.k
        scale = self.C * mss
        if self.w_max + scale * d * d * d < w_est:
            new = cwnd + self._frac
            if w_est > new:
                new = w_est
        else:
            d += self._rtt
            target = self.w_max + scale * d * d * d
            if target < cwnd:
                target = cwnd
            elif target > 1.5 * cwnd:
                target = 1.5 * cwnd
            new = cwnd + self._frac + (target - cwnd) * acked_bytes / cwnd
        whole = int(new)
        self._frac = new - whole
        self.cwnd = whole

    def _on_reduction(self, now, timeout):
        cwnd = self.cwnd
        self.cwnd_prior = float(cwnd)
        if timeout:
            # Section 4.8: the next epoch starts from K = 0, W_max = cwnd_epoch.
            self._after_timeout = True
        elif self.fast_convergence and cwnd < self.w_max:
            self.w_max = cwnd * (1 + self.beta) / 2
        else:
            self.w_max = float(cwnd)
        self.epoch_start = None

    def _on_recovery_exit(self, now):
        if self.cwnd >= self.ssthresh:
            self._start_epoch(now)
        else:
            self.epoch_start = None  # slow start first; the epoch begins when it ends

    def _save(self):
        return (self.cwnd, self.ssthresh, self.w_max, self.cwnd_prior, self.k,
                self.epoch_start, self.cwnd_epoch, self.w_est, self._after_timeout)

    def _restore(self, prior, now):
        # Section 4.9: back to the state before the spurious reduction.  The epoch is not
        # resumed: a new one starts at the next ACK in congestion avoidance, from the
        # restored window towards the restored W_max, so the time spent in the spurious
        # recovery does not make the curve jump ahead.
        (_, _, self.w_max, self.cwnd_prior, self.k, _, self.cwnd_epoch, self.w_est,
         self._after_timeout) = prior
        self.epoch_start = None

    def set_mss(self, mss):
        """Change the sender MSS; the current epoch restarts (K is in segments)."""
        super().set_mss(mss)
        self.epoch_start = None


_BY_NAME = {"cubic": Cubic, "reno": Reno, "newreno": Reno}


def make(name, mss, now):
    """A congestion controller by Linux ``TCP_CONGESTION`` name: ``"cubic"`` or ``"reno"``.

    ``"newreno"`` is accepted as an alias of ``"reno"`` (what Linux calls reno is NewReno's
    window policy).  Any other name raises :class:`ValueError`.
    """
    try:
        cls = _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown congestion control {name!r}; available: "
                         f"{', '.join(AVAILABLE)}") from None
    return cls(mss, now)
