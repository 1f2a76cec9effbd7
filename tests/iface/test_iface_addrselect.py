"""RFC 6724 default address selection (lwstack.iface.addrselect): the examples of section 10,
then each rule, the policy table, scopes and the candidate set."""
import ipaddress
import itertools

import pytest

from lwstack.iface.addrselect import (DEFAULT_POLICY, SCOPE_GLOBAL, SCOPE_LINK_LOCAL,
                                      SCOPE_SITE_LOCAL, LocalAddress, PolicyEntry,
                                      common_prefix_len, policy_for, scope, select_source,
                                      sort_destinations, to_ipv6)


def ip(text):
    return ipaddress.ip_address(text).packed


def local(text, prefix_len=None, **flags):
    addr = ip(text)
    if prefix_len is None:
        prefix_len = 64 if len(addr) == 16 else 24
    return LocalAddress(addr, prefix_len, **flags)


def source(dst, candidates, **kw):
    chosen = select_source(ip(dst), candidates, **kw)
    return None if chosen is None else str(ipaddress.ip_address(chosen.addr))


def order(destinations, candidates, **kw):
    """Sort textual destinations; also check that the input order does not matter."""
    results = set()
    for permutation in itertools.permutations(destinations):
        ranked = sort_destinations([ip(d) for d in permutation], candidates, **kw)
        results.add(tuple(str(ipaddress.ip_address(d)) for d in ranked))
    assert len(results) == 1, results
    return list(results.pop())


# -- RFC 6724 section 10.1: source address selection -----------------------------------------

def test_10_1_prefer_appropriate_scope_global_destination():
    # The RFC prints the result as 2001:db8::1, a typo for the candidate 2001:db8:3::1.
    assert source("2001:db8:1::1", [local("2001:db8:3::1"), local("fe80::1")]) == \
        "2001:db8:3::1"
    assert source("2001:db8:1::1", [local("fe80::1"), local("2001:db8:3::1")]) == \
        "2001:db8:3::1"


def test_10_1_prefer_appropriate_scope_multicast_destination():
    assert source("ff05::1", [local("2001:db8:3::1"), local("fe80::1")]) == "2001:db8:3::1"
    assert source("ff05::1", [local("fe80::1"), local("2001:db8:3::1")]) == "2001:db8:3::1"


def test_10_1_prefer_same_address():
    candidates = [local("2001:db8:1::1", deprecated=True), local("2001:db8:2::1")]
    assert source("2001:db8:1::1", candidates) == "2001:db8:1::1"
    assert source("2001:db8:1::1", candidates[::-1]) == "2001:db8:1::1"


def test_10_1_prefer_appropriate_scope_over_deprecation():
    candidates = [local("fe80::2", deprecated=True), local("2001:db8:1::1")]
    assert source("fe80::1", candidates) == "fe80::2"
    assert source("fe80::1", candidates[::-1]) == "fe80::2"


def test_10_1_longest_matching_prefix():
    candidates = [local("2001:db8:1::2"), local("2001:db8:3::2")]
    assert source("2001:db8:1::1", candidates) == "2001:db8:1::2"
    assert source("2001:db8:1::1", candidates[::-1]) == "2001:db8:1::2"


def test_10_1_prefer_home_address():
    candidates = [local("2001:db8:1::2", care_of=True), local("2001:db8:3::2", home=True)]
    assert source("2001:db8:1::1", candidates) == "2001:db8:3::2"
    assert source("2001:db8:1::1", candidates[::-1]) == "2001:db8:3::2"


def test_10_1_prefer_matching_label():
    candidates = [local("2002:c633:6401::d5e3:7953:13eb:22e8", temporary=True),
                  local("2001:db8:1::2")]
    assert source("2002:c633:6401::1", candidates) == "2002:c633:6401:0:d5e3:7953:13eb:22e8"
    assert source("2002:c633:6401::1", candidates[::-1]) == \
        "2002:c633:6401:0:d5e3:7953:13eb:22e8"


def test_10_1_prefer_temporary_address():
    candidates = [local("2001:db8:1::2"),
                  local("2001:db8:1::d5e3:7953:13eb:22e8", temporary=True)]
    assert source("2001:db8:1::d5e3:0:0:1", candidates) == "2001:db8:1:0:d5e3:7953:13eb:22e8"
    assert source("2001:db8:1::d5e3:0:0:1", candidates[::-1]) == \
        "2001:db8:1:0:d5e3:7953:13eb:22e8"
    # IPV6_PREFER_SRC_PUBLIC (RFC 5014) turns rule 7 round.
    assert source("2001:db8:1::d5e3:0:0:1", candidates, prefer_temporary=False) == \
        "2001:db8:1::2"


# -- RFC 6724 section 10.2: destination address selection ------------------------------------

def test_10_2_prefer_matching_scope():
    candidates = [local("2001:db8:1::2"), local("fe80::1"), local("169.254.13.78", 16)]
    assert order(["2001:db8:1::1", "198.51.100.121"], candidates) == \
        ["2001:db8:1::1", "198.51.100.121"]


def test_10_2_prefer_matching_scope_ipv4_first():
    candidates = [local("fe80::1"), local("198.51.100.117")]
    assert order(["2001:db8:1::1", "198.51.100.121"], candidates) == \
        ["198.51.100.121", "2001:db8:1::1"]


def test_10_2_prefer_higher_precedence():
    candidates = [local("2001:db8:1::2"), local("fe80::1"), local("10.1.2.4", 8)]
    assert order(["2001:db8:1::1", "10.1.2.3"], candidates) == ["2001:db8:1::1", "10.1.2.3"]


def test_10_2_prefer_smaller_scope():
    candidates = [local("2001:db8:1::2"), local("fe80::2")]
    assert order(["2001:db8:1::1", "fe80::1"], candidates) == ["fe80::1", "2001:db8:1::1"]


def test_10_2_prefer_home_address():
    candidates = [local("2001:db8:1::2", care_of=True), local("2001:db8:3::1", home=True),
                  local("fe80::2", care_of=True)]
    assert select_source(ip("2001:db8:1::1"), candidates).addr == ip("2001:db8:3::1")
    assert order(["2001:db8:1::1", "fe80::1"], candidates) == ["2001:db8:1::1", "fe80::1"]


def test_10_2_avoid_deprecated_addresses():
    candidates = [local("2001:db8:1::2"), local("fe80::2", deprecated=True)]
    assert order(["2001:db8:1::1", "fe80::1"], candidates) == ["2001:db8:1::1", "fe80::1"]


def test_10_2_longest_matching_prefix():
    candidates = [local("2001:db8:1::2"), local("2001:db8:3f44::2"), local("fe80::2")]
    assert select_source(ip("2001:db8:3ffe::1"), candidates).addr == ip("2001:db8:3f44::2")
    assert order(["2001:db8:1::1", "2001:db8:3ffe::1"], candidates) == \
        ["2001:db8:1::1", "2001:db8:3ffe::1"]


def test_10_2_prefer_matching_label():
    candidates = [local("2002:c633:6401::2"), local("fe80::2")]
    assert order(["2002:c633:6401::1", "2001:db8:1::1"], candidates) == \
        ["2002:c633:6401::1", "2001:db8:1::1"]


def test_10_2_prefer_higher_precedence_over_6to4():
    candidates = [local("2002:c633:6401::2"), local("2001:db8:1::2"), local("fe80::2")]
    assert order(["2002:c633:6401::1", "2001:db8:1::1"], candidates) == \
        ["2001:db8:1::1", "2002:c633:6401::1"]


# -- the policy table, scopes, CommonPrefixLen -----------------------------------------------

@pytest.mark.parametrize("addr,expected", [
    ("::1", (50, 0)),
    ("2001:db8::1", (40, 1)),
    ("10.0.0.1", (35, 4)),
    ("::ffff:10.0.0.1", (35, 4)),
    ("2002:c633:6401::1", (30, 2)),
    ("2001:0:4136:e378::1", (5, 5)),        # Teredo
    ("fd00::1", (3, 13)),
    ("fc00::1", (3, 13)),
    ("::10.0.0.1", (1, 3)),                 # IPv4-compatible
    ("fec0::1", (1, 11)),
    ("3ffe::1", (1, 12)),
    ("fe80::1", (40, 1)),
])
def test_default_policy_table(addr, expected):
    assert policy_for(ip(addr)) == expected


def test_custom_policy_table():
    policy = DEFAULT_POLICY + (PolicyEntry(ip("fd00::"), 8, 45, 14),)
    assert policy_for(ip("fd00::1"), policy) == (45, 14)
    assert policy_for(ip("fc00::1"), policy) == (3, 13)
    candidates = [local("fd00::2"), local("10.0.0.2")]
    # With the default table IPv4 (35) beats a ULA (3); this table prefers the ULA.
    assert order(["10.0.0.1", "fd00::1"], candidates) == ["10.0.0.1", "fd00::1"]
    assert order(["10.0.0.1", "fd00::1"], candidates, policy=policy) == ["fd00::1", "10.0.0.1"]


@pytest.mark.parametrize("addr,expected", [
    ("ff01::1", 0x1), ("ff02::1", SCOPE_LINK_LOCAL), ("ff05::1", SCOPE_SITE_LOCAL),
    ("ff08::1", 0x8), ("ff0e::1", SCOPE_GLOBAL),
    ("fe80::1", SCOPE_LINK_LOCAL), ("febf::1", SCOPE_LINK_LOCAL), ("::1", SCOPE_LINK_LOCAL),
    ("fec0::1", SCOPE_SITE_LOCAL), ("fd00::1", SCOPE_GLOBAL), ("2001:db8::1", SCOPE_GLOBAL),
    ("169.254.13.78", SCOPE_LINK_LOCAL), ("127.0.0.1", SCOPE_LINK_LOCAL),
    ("10.1.2.3", SCOPE_GLOBAL), ("192.168.1.1", SCOPE_GLOBAL), ("169.253.1.1", SCOPE_GLOBAL),
    ("::ffff:169.254.1.1", SCOPE_LINK_LOCAL), ("::ffff:8.8.8.8", SCOPE_GLOBAL),
])
def test_scopes(addr, expected):
    assert scope(ip(addr)) == expected


def test_common_prefix_len():
    # RFC 6724 section 2.2's example: CommonPrefixLen(fe80::1, fe80::2) is 64.
    assert common_prefix_len(local("fe80::1"), ip("fe80::2")) == 64
    assert common_prefix_len(local("2001:db8:3f44::2"), ip("2001:db8:3ffe::1")) == 40
    assert common_prefix_len(local("2001:db8:1::2", 48), ip("2001:db8:1::1")) == 48
    # IPv4: the prefix length inside the subnet, 0 outside it.
    assert common_prefix_len(local("10.1.2.4", 24), ip("10.1.2.200")) == 24
    assert common_prefix_len(local("10.1.2.4", 24), ip("10.1.3.1")) == 0
    assert common_prefix_len(local("10.1.2.4", 24), ip("2001:db8::1")) == 0


def test_to_ipv6():
    assert to_ipv6(ip("10.0.0.1")) == ip("::ffff:10.0.0.1")
    assert to_ipv6(ip("2001:db8::1")) == ip("2001:db8::1")
    with pytest.raises(ValueError):
        to_ipv6(b"\0" * 5)


# -- the candidate set (section 4) and the source rules --------------------------------------

def test_no_candidate_means_no_source():
    assert select_source(ip("10.0.0.1"), [local("2001:db8::2")]) is None
    assert select_source(ip("2001:db8::1"), [local("10.0.0.2")]) is None
    assert select_source(ip("2001:db8::1"), []) is None


def test_candidates_exclude_tentative_multicast_and_unspecified():
    tentative = local("2001:db8:1::2", tentative=True)
    assert select_source(ip("2001:db8:1::1"), [tentative]) is None
    assert source("2001:db8:1::1", [tentative, local("fe80::1")]) == "fe80::1"
    for bad in ("ff02::1", "::", "0.0.0.0", "224.0.0.1"):
        assert select_source(ip("2001:db8:1::1" if ":" in bad else "10.0.0.1"),
                             [local(bad)]) is None


def test_ipv4_destinations_take_ipv4_sources():
    candidates = [local("2001:db8:1::2"), local("10.0.0.2"), local("192.168.5.9")]
    assert source("10.0.0.1", candidates) == "10.0.0.2"              # longest prefix
    assert source("192.168.5.1", candidates) == "192.168.5.9"
    assert source("::ffff:10.0.0.1", candidates) == "10.0.0.2"       # mapped: same thing


def test_link_local_destination_uses_the_outgoing_interface_only():
    candidates = [local("fe80::2", interface="eth1"), local("fe80::3", interface="eth0")]
    assert source("fe80::1", candidates, outgoing="eth0") == "fe80::3"
    assert source("fe80::1", candidates[:1], outgoing="eth0") is None
    # Rule 5 for a global destination: prefer, not require, the outgoing interface.
    candidates = [local("2001:db8:1::2", interface="eth1"),
                  local("2001:db8:1::3", interface="eth0")]
    assert source("2001:db8:1::1", candidates, outgoing="eth0") == "2001:db8:1::3"
    assert source("2001:db8:1::1", candidates[:1], outgoing="eth0") == "2001:db8:1::2"


def test_rule_3_avoid_deprecated_source():
    candidates = [local("2001:db8:1::2", deprecated=True), local("2001:db8:1::3")]
    assert source("2001:db8:1::1", candidates) == "2001:db8:1::3"


def test_rule_4_pairs_the_rfc_does_not_name_are_left_to_later_rules():
    # Home-and-care-of beats home only.
    candidates = [local("2001:db8:1::2", home=True),
                  local("2001:db8:9::3", home=True, care_of=True)]
    assert source("2001:db8:1::1", candidates) == "2001:db8:9::3"
    # Home only against neither: rule 8 decides.
    candidates = [local("2001:db8:9::2", home=True), local("2001:db8:1::3")]
    assert source("2001:db8:1::1", candidates) == "2001:db8:1::3"


def test_rule_6_matching_label_before_temporary():
    # The 10.1 example above would pass on rule 7 alone; here rule 7 points the other way.
    candidates = [local("2001:db8:1::d5e3:7953:13eb:22e8", temporary=True),
                  local("2002:c633:6401::2")]
    assert source("2002:c633:6401::1", candidates) == "2002:c633:6401::2"
    assert source("2002:c633:6401::1", candidates[::-1]) == "2002:c633:6401::2"


def test_ties_keep_the_first_candidate():
    candidates = [local("2001:db8:1::2"), local("2001:db8:1::3")]
    assert source("2001:db8:1::1", candidates) == "2001:db8:1::2"
    assert source("2001:db8:1::1", candidates[::-1]) == "2001:db8:1::3"


# -- destination rules beyond the examples ---------------------------------------------------

def test_rule_1_destinations_without_a_source_go_last():
    # A dual-stack name seen from an IPv6-only host: the IPv4 address has no source.
    candidates = [local("2001:db8:1::2"), local("fe80::2")]
    assert order(["198.51.100.121", "2001:db8:2::1"], candidates) == \
        ["2001:db8:2::1", "198.51.100.121"]


def test_rule_1_known_unreachable_through_source_for():
    src = local("2001:db8:1::2")

    def source_for(dst):
        return None if dst == ip("2001:db8:1::1") else src
    assert order(["2001:db8:1::1", "2001:db8:1::5"], [], source_for=source_for) == \
        ["2001:db8:1::5", "2001:db8:1::1"]


def test_destinations_without_any_source_sort_by_precedence_then_scope():
    assert order(["10.0.0.1", "2001:db8::1"], []) == ["2001:db8::1", "10.0.0.1"]
    assert order(["2001:db8::1", "fe80::1"], []) == ["fe80::1", "2001:db8::1"]
    assert sort_destinations([ip("2001:db8::1"), ip("2001:db8::2")], []) == \
        [ip("2001:db8::1"), ip("2001:db8::2")]


def test_rule_7_prefer_native_transport():
    native, tunnel = local("2001:db8:1::2"), local("2001:db8:1::3", tunnel=True)

    def source_for(dst):
        return tunnel if dst == ip("2001:db8:1::1") else native
    assert order(["2001:db8:1::1", "2001:db8:1::5"], [], source_for=source_for) == \
        ["2001:db8:1::5", "2001:db8:1::1"]


def test_rule_9_ipv4_prefers_on_link_but_keeps_round_robin_order_beyond():
    candidates = [local("10.0.0.2", 24)]
    assert order(["10.9.0.1", "10.0.0.7"], candidates) == ["10.0.0.7", "10.9.0.1"]
    # Off-link servers keep the resolver's order, whatever bits they share with us.
    for servers in (["10.0.128.1", "11.0.0.1"], ["11.0.0.1", "10.0.128.1"]):
        got = sort_destinations([ip(s) for s in servers], candidates)
        assert got == [ip(s) for s in servers]


def test_rule_10_keeps_the_order_of_equals_and_key_sorts_whole_items():
    candidates = [local("2001:db8:1::2"), local("10.0.0.2")]
    infos = [("v4", ip("10.0.0.1")), ("a", ip("2001:db8:1::1")), ("b", ip("2001:db8:1::1")),
             ("mapped", ip("::ffff:10.0.0.3"))]
    ranked = sort_destinations(infos, candidates, key=lambda info: info[1])
    assert [name for name, _ in ranked] == ["a", "b", "v4", "mapped"]
