"""TCP: RFC 9293 and friends."""
