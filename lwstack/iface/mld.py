"""Multicast listener state and report timing for a host: MLDv2 (RFC 3810), with MLDv1
compatibility (RFC 3810 section 8, RFC 2710).

Design note.  The interface listens to ff02::1 (all-nodes, implicit and never reported, RFC
3810 section 6) plus the groups in ``groups``: reference counts, because a solicited-node group
is shared by every address with the same low 24 bits (a link-local and a SLAAC address from
one identifier), and sockets may join the same group twice.  Membership here is always
"any source" (EXCLUDE mode with no sources); source filters are not offered.

- Joining or leaving a group sends a State Change Report at once (CHANGE_TO_EXCLUDE_MODE /
  CHANGE_TO_INCLUDE_MODE with no sources), then [Robustness Variable] - 1 retransmissions at
  random times in (0, [Unsolicited Report Interval]) (6.1).  Pending retransmissions of every
  changed group travel together, and a newer change of a group replaces its older record.
- Queries are answered after a random delay up to the Maximum Response Delay (6.2): a General
  Query with one Current State Report of every group (split so that a report fits the minimum
  MTU), a Multicast Address Specific Query with that group's record, a Multicast Address and
  Source Specific Query with MODE_IS_INCLUDE of the queried sources (what an any-source
  listener wants of them, 6.3).  The rules of 6.2 decide when an answer is already pending.
- An MLDv1 query puts the host in MLDv1 compatibility mode for the Older Version Querier
  Present Timeout (8.2.1, 9.12): pending MLDv2 answers and retransmissions are cancelled, and
  joins, leaves and answers become MLDv1 Reports and Dones (one group per message).
- ``groups`` is bounded (``max_groups``); :meth:`macs` gives the Ethernet addresses the host
  must accept (33:33 + the group's low 32 bits, RFC 2464 section 7).

Sans-IO: time is the float ``now``; randomness is the injected ``rng``.  The host builds the
messages from the records appended to ``outbox``:

- ``("mld_report", records)``: an MLDv2 Report (ICMPv6 type 143) to ff02::16, hop limit 1,
  Router Alert, from the link-local address (or :: when there is none yet, 5.2.13); records
  are ``(record_type, group, sources)`` with the RFC 3810 5.2.12 type numbers below.
- ``("mld1_report", group)``: an MLDv1 Report (type 131) to ``group``.
- ``("mld1_done", group)``: an MLDv1 Done (type 132) to ff02::2.
"""
import collections
import random

from lwstack.iface.ndp import (ALL_NODES, UNSPECIFIED, is_multicast, multicast_mac,
                               solicited_node)

ALL_MLDV2_ROUTERS = bytes.fromhex("ff020000000000000000000000000016")

# RFC 3810 5.2.12: multicast address record types.
MODE_IS_INCLUDE = 1
MODE_IS_EXCLUDE = 2
CHANGE_TO_INCLUDE_MODE = 3
CHANGE_TO_EXCLUDE_MODE = 4
ALLOW_NEW_SOURCES = 5
BLOCK_OLD_SOURCES = 6

# RFC 3810 section 9 defaults.
ROBUSTNESS = 2
QUERY_INTERVAL = 125.0
QUERY_RESPONSE_INTERVAL = 10.0
UNSOLICITED_REPORT_INTERVAL = 1.0
V1_UNSOLICITED_REPORT_INTERVAL = 10.0  # RFC 2710 section 7.10

# An MLDv2 report with N source-less records is 40 (IPv6) + 8 (hop-by-hop, Router Alert)
# + 8 + 20 N bytes: 61 records fit the IPv6 minimum MTU of 1280.
MAX_RECORDS = 61

_JOIN_V1 = "v1"  # a pending MLDv1 unsolicited report


def max_response_delay(code):
    """Seconds from an MLDv2 Maximum Response Code (RFC 3810 5.1.3; milliseconds, with a
    floating-point form from 32768 on)."""
    if code < 32768:
        return code / 1000.0
    mantissa, exponent = code & 0x0FFF, (code >> 12) & 0x7
    return ((mantissa | 0x1000) << (exponent + 3)) / 1000.0


def query_interval(qqic):
    """Seconds from a Querier's Query Interval Code (RFC 3810 5.1.9)."""
    if qqic < 128:
        return float(qqic)
    mantissa, exponent = qqic & 0x0F, (qqic >> 4) & 0x7
    return float((mantissa | 0x10) << (exponent + 3))


def reportable(group):
    """False for groups MLD never reports: all-nodes, and reserved or interface-local scope
    (RFC 3810 section 6)."""
    return group != ALL_NODES and group[1] & 0x0F > 1


class Mld:
    """The interface's multicast listener state and its MLD report schedule."""

    def __init__(self, rng=None, *, robustness=ROBUSTNESS,
                 unsolicited_report_interval=UNSOLICITED_REPORT_INTERVAL, max_groups=64,
                 max_records=MAX_RECORDS):
        if max_groups < 1 or max_records < 1 or robustness < 1:
            raise ValueError("max_groups, max_records and robustness must be at least 1")
        self.rng = rng if rng is not None else random.Random()
        self.robustness = robustness
        self.unsolicited_report_interval = unsolicited_report_interval
        self.query_interval = QUERY_INTERVAL
        self.max_groups = max_groups
        self.max_records = max_records
        self.groups = {}
        self.outbox = []
        self.stats = collections.Counter()
        self.v1_until = float("-inf")
        self._changes = {}  # group -> [record type or _JOIN_V1, retransmissions left]
        self._change_at = None
        self._general_at = None
        self._pending = {}  # group -> [when, queried sources (set) or None]

    # -- membership ------------------------------------------------------------------------

    def join(self, group, now):
        """Listen to ``group``.  Returns False when ``max_groups`` are already joined."""
        if not is_multicast(group):
            raise ValueError("not a multicast address")
        if group == ALL_NODES:
            return True
        if group in self.groups:
            self.groups[group] += 1
            return True
        if len(self.groups) >= self.max_groups:
            self.stats["group_table_full"] += 1
            return False
        self.groups[group] = 1
        if reportable(group):
            self._state_change(group, CHANGE_TO_EXCLUDE_MODE, now)
        return True

    def leave(self, group, now):
        """Drop one reference to ``group``; the last one stops listening."""
        count = self.groups.get(group)
        if count is None:
            return
        if count > 1:
            self.groups[group] = count - 1
            return
        del self.groups[group]
        self._pending.pop(group, None)
        if reportable(group):
            self._state_change(group, CHANGE_TO_INCLUDE_MODE, now)

    def add_address(self, addr, now):
        """Join the solicited-node group of a new (also tentative) unicast address."""
        return self.join(solicited_node(addr), now)

    def remove_address(self, addr, now):
        """Leave the solicited-node group of a removed address."""
        self.leave(solicited_node(addr), now)

    def memberships(self):
        """Every group the interface listens to, all-nodes included."""
        return {ALL_NODES, *self.groups}

    def macs(self):
        """The multicast MACs the host must accept."""
        return {multicast_mac(group) for group in self.memberships()}

    def in_v1_mode(self, now):
        """True at ``now`` when the host speaks MLDv1."""
        return now < self.v1_until

    # -- queries ---------------------------------------------------------------------------

    def receive_query(self, group, sources, max_delay, now, *, version=2, qrv=0, qqi=None):
        """A query: ``group`` is :: for a General Query; ``sources`` the queried sources (empty
        but for source-specific queries); ``max_delay`` the Maximum Response Delay in seconds
        (:func:`max_response_delay`); ``version`` 1 for an MLDv1 query (24 bytes); ``qrv`` and
        ``qqi`` (seconds) the querier's robustness and query interval, adopted when non-zero.
        """
        if qrv:
            self.robustness = qrv
        if qqi:
            self.query_interval = qqi
        if version == 1:
            if not self.in_v1_mode(now):
                self._changes.clear()  # 8.2.1: a change of mode cancels pending v2 work
                self._change_at = None
                self._general_at = None
                self._pending.clear()
            # 9.12: Older Version Querier Present Timeout.
            self.v1_until = now + self.robustness * self.query_interval + QUERY_RESPONSE_INTERVAL
        if group != UNSPECIFIED and group not in self.groups:
            return
        if group != UNSPECIFIED and not reportable(group):
            return
        if self.in_v1_mode(now):
            targets = [group] if group != UNSPECIFIED else [g for g in self.groups
                                                            if reportable(g)]
            for target in targets:  # MLDv1: a timer per group (RFC 2710 section 4)
                self._schedule(target, now + self.rng.uniform(0.0, max_delay), None)
            return
        when = now + self.rng.uniform(0.0, max_delay)
        if self._general_at is not None and self._general_at <= when:
            return  # rule 1: a sooner answer to a General Query is pending
        if group == UNSPECIFIED:
            self._general_at = when  # rule 2
            return
        self._schedule(group, when, set(sources) if sources else None)

    def _schedule(self, group, when, sources):
        pending = self._pending.get(group)
        if pending is None:
            self._pending[group] = [when, sources]  # rule 3
            return
        pending[0] = min(pending[0], when)
        if sources is None or pending[1] is None:
            pending[1] = None  # rule 4: one answer about the whole group
        else:
            pending[1] |= sources  # rule 5

    # -- timers ----------------------------------------------------------------------------

    def poll(self, now):
        """Send the reports that are due."""
        if self._change_at is not None and now >= self._change_at:
            self._retransmit(now)
        v1 = self.in_v1_mode(now)
        if self._general_at is not None and now >= self._general_at:
            self._general_at = None
            records = [(MODE_IS_EXCLUDE, g, ()) for g in self.groups if reportable(g)]
            self._send(records)
        due = [g for g, (when, _) in self._pending.items() if now >= when]
        records = []
        for group in due:
            _, sources = self._pending.pop(group)
            if v1:
                self.outbox.append(("mld1_report", group))
            elif sources is None:
                records.append((MODE_IS_EXCLUDE, group, ()))
            else:
                records.append((MODE_IS_INCLUDE, group, tuple(sorted(sources))))
        self._send(records)

    def poll_at(self):
        """The earliest time :meth:`poll` has work, or None."""
        times = [when for when, _ in self._pending.values()]
        times += [t for t in (self._change_at, self._general_at) if t is not None]
        return min(times, default=None)

    # -- internals -------------------------------------------------------------------------

    def _state_change(self, group, record_type, now):
        retransmissions = self.robustness - 1
        if self.in_v1_mode(now):
            if record_type == CHANGE_TO_EXCLUDE_MODE:
                self.outbox.append(("mld1_report", group))
                self._queue_change(group, _JOIN_V1, retransmissions, now,
                                   V1_UNSOLICITED_REPORT_INTERVAL)
            else:
                self._changes.pop(group, None)
                self.outbox.append(("mld1_done", group))
            return
        self._send([(record_type, group, ())])
        self._queue_change(group, record_type, retransmissions, now,
                           self.unsolicited_report_interval)

    def _queue_change(self, group, record_type, retransmissions, now, interval):
        if retransmissions <= 0:
            self._changes.pop(group, None)
            return
        self._changes[group] = [record_type, retransmissions]
        if self._change_at is None:
            self._change_at = now + self.rng.uniform(0.0, interval)

    def _retransmit(self, now):
        v1 = self.in_v1_mode(now)
        records = []
        for group, change in list(self._changes.items()):
            record_type = change[0]
            if record_type == _JOIN_V1:
                if v1:
                    self.outbox.append(("mld1_report", group))
            elif not v1:
                records.append((record_type, group, ()))
            change[1] -= 1
            if change[1] <= 0:
                del self._changes[group]
        self._send(records)
        self._change_at = None
        if self._changes:
            interval = V1_UNSOLICITED_REPORT_INTERVAL if v1 else self.unsolicited_report_interval
            self._change_at = now + self.rng.uniform(0.0, interval)

    def _send(self, records):
        for start in range(0, len(records), self.max_records):
            self.outbox.append(("mld_report", tuple(records[start:start + self.max_records])))
