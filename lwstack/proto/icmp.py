"""ICMP error rate limiting and the echo ("ping socket") endpoints.

Errors are rate limited with a token bucket, as Linux does (net.ipv4.icmp_msgs_per_sec 1000,
icmp_msgs_burst 50; RFC 1812 section 4.3.2.8): a flood of packets to a closed port cannot turn
the stack into an amplifier.
"""


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; :meth:`take` spends one."""

    def __init__(self, rate=1000.0, burst=50):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = None

    def take(self, now):
        """Spend a token if one is available at ``now``; return whether one was."""
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
