"""Per-protocol state: UDP endpoints, ICMP echo endpoints and error rate limiting."""
