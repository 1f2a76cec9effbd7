"""The routing table: longest prefix match, and a per-destination memory that never outlives
a change to the table."""
from lwstack.iface.routes import Route, RouteTable
from lwstack.wire.ipv4 import parse_addr as A


def test_longest_prefix_wins_and_changes_are_seen_at_once():
    table = RouteTable()
    table.add(Route(A("10.0.0.0"), 8, source=A("10.0.0.2")))
    route, hop = table.lookup(A("10.1.2.3"))
    assert route.prefix_len == 8 and hop == A("10.1.2.3")
    table.add(Route(A("10.1.0.0"), 16, gateway=A("10.0.0.1"), source=A("10.0.0.2")))
    route, hop = table.lookup(A("10.1.2.3"))          # the remembered /8 answer is gone
    assert route.prefix_len == 16 and hop == A("10.0.0.1")
    table.remove(A("10.1.0.0"), 16)
    assert table.lookup(A("10.1.2.3"))[0].prefix_len == 8
    table.remove(A("10.0.0.0"), 8)
    assert table.lookup(A("10.1.2.3")) == (None, None)


def test_the_memory_is_bounded():
    table = RouteTable(cache_limit=4)
    table.add(Route(A("0.0.0.0"), 0, gateway=A("10.0.0.1")))
    for i in range(50):
        assert table.lookup(bytes((192, 168, 0, i)))[1] == A("10.0.0.1")
        assert len(table._cache) <= 4
