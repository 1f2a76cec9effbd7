"""MLDv2 (RFC 3810) host timing on virtual time: state change reports and their
retransmissions, answers to general, address-specific and source-specific queries (the rules
of 6.2), report splitting, MLDv1 compatibility, the multicast MAC filter and bounds."""
import ipaddress
import random

import pytest

from lwstack.iface import mld, ndp
from lwstack.iface.mld import (CHANGE_TO_EXCLUDE_MODE as TO_EX,
                               CHANGE_TO_INCLUDE_MODE as TO_IN, MODE_IS_EXCLUDE as IS_EX,
                               MODE_IS_INCLUDE as IS_IN, Mld)


def a(text):
    return ipaddress.IPv6Address(text).packed


LL = a("fe80::2:3:4:5")
SN = ndp.solicited_node(LL)            # ff02::1:ff04:5
G1, G2 = a("ff05::101"), a("ff0e::db8:1")
GENERAL = ndp.UNSPECIFIED
S1, S2, S3 = a("2001:db8::1"), a("2001:db8::2"), a("2001:db8::3")


def host(seed=5, **options):
    return Mld(random.Random(seed), **options)


def run(m, until):
    """Poll at each time poll_at() names up to ``until``; returns [(time, outbox records)]."""
    log = []
    while True:
        when = m.poll_at()
        if when is None or when > until:
            return log
        m.poll(when)
        if m.outbox:
            log.append((when, list(m.outbox)))
            m.outbox.clear()


def test_code_conversions_rfc3810():
    assert mld.max_response_delay(10000) == 10.0           # the default 10 s
    assert mld.max_response_delay(0x8000) == 32.768        # mant 0, exp 0: 0x1000 << 3 ms
    assert mld.max_response_delay(0xFFFF) == (0x1FFF << 10) / 1000.0
    assert mld.query_interval(125) == 125.0
    assert mld.query_interval(0x80) == 128.0
    assert mld.query_interval(0xFF) == float(0x1F << 10)


def test_join_reports_at_once_and_once_more_within_a_second():
    twin = random.Random(5)
    m = host()
    assert m.add_address(LL, 0.0) is True
    assert m.outbox == [("mld_report", ((TO_EX, SN, ()),))]
    m.outbox.clear()
    again = twin.uniform(0.0, 1.0)
    assert run(m, 100.0) == [(again, [("mld_report", ((TO_EX, SN, ()),))])]
    assert m.poll_at() is None


def test_robustness_sets_the_number_of_retransmissions():
    m = host(robustness=3)
    m.join(G1, 0.0)
    m.outbox.clear()
    log = run(m, 100.0)
    assert [records for _, records in log] == [[("mld_report", ((TO_EX, G1, ()),))]] * 2
    assert all(0.0 < t <= 2.0 for t, _ in log)
    m = host(robustness=1)
    m.join(G1, 0.0)
    assert run(m, 100.0) == []


def test_shared_solicited_node_group_is_reference_counted():
    m = host()
    global_addr = a("2001:db8::2:3:4:5")                   # same low 24 bits as LL
    m.add_address(LL, 0.0)
    m.add_address(global_addr, 0.0)
    assert m.groups == {SN: 2} and len(m.outbox) == 1
    run(m, 10.0)
    m.outbox.clear()
    m.remove_address(LL, 10.0)
    assert m.outbox == [] and m.groups == {SN: 1}
    m.remove_address(global_addr, 10.0)
    assert m.outbox == [("mld_report", ((TO_IN, SN, ()),))] and m.groups == {}
    m.outbox.clear()
    assert [records for _, records in run(m, 20.0)] == [[("mld_report", ((TO_IN, SN, ()),))]]
    m.leave(SN, 20.0)                                       # not a member: nothing
    assert m.outbox == []


def test_all_nodes_and_interface_local_groups_are_never_reported():
    m = host()
    assert m.join(ndp.ALL_NODES, 0.0) and m.join(a("ff01::1234"), 0.0)
    assert m.outbox == [] and m.poll_at() is None
    m.receive_query(GENERAL, (), 10.0, 1.0)
    assert run(m, 20.0) == []                               # nothing to answer with
    assert bytes.fromhex("333300000001") in m.macs()
    assert bytes.fromhex("333300001234") in m.macs()


def test_leave_before_retransmission_replaces_the_pending_record():
    m = host()
    m.join(G1, 0.0)
    m.join(G2, 0.0)
    m.leave(G1, 0.0)
    assert m.outbox == [("mld_report", ((TO_EX, G1, ()),)), ("mld_report", ((TO_EX, G2, ()),)),
                        ("mld_report", ((TO_IN, G1, ()),))]
    m.outbox.clear()
    (when, records), = run(m, 10.0)
    assert records == [("mld_report", ((TO_IN, G1, ()), (TO_EX, G2, ())))]


def test_general_query_answer_and_rule_1_and_2():
    twin = random.Random(5)
    m = host()
    m.join(G1, 0.0)
    m.join(G2, 0.0)
    twin.uniform(0.0, 1.0)                                  # the retransmission timer
    run(m, 5.0)
    m.outbox.clear()
    m.receive_query(GENERAL, (), 10.0, 10.0)
    first = 10.0 + twin.uniform(0.0, 10.0)
    assert m.poll_at() == first
    m.receive_query(GENERAL, (), 10.0, 10.5)                # rule 1 or 2, by the draw
    second = 10.5 + twin.uniform(0.0, 10.0)
    expected = min(first, second)
    assert m.poll_at() == expected
    assert run(m, 30.0) == [(expected, [("mld_report", ((IS_EX, G1, ()), (IS_EX, G2, ())))])]


def test_address_specific_query():
    m = host()
    m.join(G1, 0.0)
    m.join(G2, 0.0)
    run(m, 5.0)
    m.outbox.clear()
    m.receive_query(a("ff05::999"), (), 10.0, 10.0)         # not a member: ignored
    assert m.poll_at() is None
    m.receive_query(G1, (), 1.0, 10.0)
    log = run(m, 20.0)
    assert len(log) == 1 and 10.0 <= log[0][0] <= 11.0
    assert log[0][1] == [("mld_report", ((IS_EX, G1, ()),))]


def test_address_specific_query_waits_for_a_sooner_general_answer():
    m = host()
    m.join(G1, 0.0)
    run(m, 5.0)
    m.outbox.clear()
    m.receive_query(GENERAL, (), 0.001, 10.0)               # answer within a millisecond
    m.receive_query(G1, (), 10.0, 10.0)
    # Rule 1: the general answer covers G1; no second report about it.
    assert [r for _, r in run(m, 30.0)] == [[("mld_report", ((IS_EX, G1, ()),))]]


def test_source_specific_queries_merge_then_a_group_query_clears_sources():
    m = host()
    m.join(G1, 0.0)
    run(m, 5.0)
    m.outbox.clear()
    m.receive_query(G1, (S2,), 10.0, 10.0)
    m.receive_query(G1, (S1,), 10.0, 10.0)                 # rule 5: sources augmented
    assert [r for _, r in run(m, 30.0)] == [[("mld_report", ((IS_IN, G1, (S1, S2)),))]]
    m.receive_query(G1, (S3,), 10.0, 40.0)
    m.receive_query(G1, (), 10.0, 40.0)                     # rule 4: the whole group
    assert [r for _, r in run(m, 60.0)] == [[("mld_report", ((IS_EX, G1, ()),))]]


def test_general_answer_is_split_to_fit_the_minimum_mtu():
    m = host(max_groups=100)
    groups = [a(f"ff05::{n:x}") for n in range(1, 71)]
    for group in groups:
        m.join(group, 0.0)
    run(m, 5.0)
    m.outbox.clear()
    m.receive_query(GENERAL, (), 1.0, 10.0)
    (_, reports), = run(m, 20.0)
    assert [len(records) for _, records in reports] == [61, 9]
    assert [r[1] for _, records in reports for r in records] == groups
    assert 56 + 20 * 61 <= 1280 < 56 + 20 * 62


def test_mldv1_compatibility_mode():
    m = host()
    m.join(G1, 0.0)
    m.outbox.clear()
    m.receive_query(GENERAL, (), 10.0, 0.0, version=1)     # cancels the v2 retransmission
    assert m.in_v1_mode(0.0) and m.v1_until == 260.0
    m.join(G2, 1.0)
    assert m.outbox == [("mld1_report", G2)]
    m.outbox.clear()
    log = run(m, 100.0)
    sent = [r for _, records in log for r in records]
    # The answer about G1 and the repetition of G2's report (G2 was joined after the query).
    assert sorted(sent) == sorted([("mld1_report", G1), ("mld1_report", G2)])
    assert all(0.0 <= t <= 11.0 for t, _ in log)
    m.leave(G2, 100.0)
    assert m.outbox == [("mld1_done", G2)]
    m.outbox.clear()
    assert run(m, 300.0) == []
    assert not m.in_v1_mode(260.0)
    m.join(G2, 300.0)                                       # back to MLDv2
    assert m.outbox == [("mld_report", ((TO_EX, G2, ()),))]


def test_querier_robustness_and_interval_are_adopted():
    m = host()
    m.receive_query(GENERAL, (), 10.0, 0.0, qrv=3, qqi=60.0)
    assert m.robustness == 3 and m.query_interval == 60.0
    m.receive_query(GENERAL, (), 10.0, 1.0, version=1)
    assert m.v1_until == 1.0 + 3 * 60.0 + 10.0


def test_bounds_and_errors():
    m = host(max_groups=2)
    assert m.join(G1, 0.0) and m.join(G2, 0.0)
    assert m.join(a("ff05::3"), 0.0) is False and m.stats["group_table_full"] == 1
    assert m.join(G1, 0.0) is True                          # a second reference is fine
    assert m.memberships() == {ndp.ALL_NODES, G1, G2}
    assert m.macs() == {bytes.fromhex("333300000001"), bytes.fromhex("333300000101"),
                        bytes.fromhex("33330db80001")}
    with pytest.raises(ValueError):
        m.join(LL, 0.0)
    with pytest.raises(ValueError):
        Mld(max_groups=0)
