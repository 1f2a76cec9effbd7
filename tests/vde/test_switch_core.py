"""SwitchCore: learning, ageing, persistence, the MAC-table cap, flooding, VLANs, counters."""
import errno

import pytest

from vde.core import GC_INTERVAL, SwitchCore, SwitchError


def mac(n):
    """A locally administered unicast MAC ending in ``n``."""
    return bytes([0x02, 0, 0, 0, n >> 8, n & 0xFF])


BROADCAST = b"\xff" * 6


def frame(dst, src, size=60, ethertype=b"\x08\x00"):
    """An Ethernet frame of ``size`` bytes."""
    return dst + src + ethertype + bytes(size - 14)


def tagged(dst, src, vid, size=64):
    """An 802.1Q-tagged frame for VLAN ``vid`` (priority 0)."""
    return dst + src + b"\x81\x00" + vid.to_bytes(2, "big") + b"\x08\x00" + bytes(size - 18)


@pytest.fixture
def core():
    switch = SwitchCore(8)
    for _ in range(4):
        switch.open_port()
    return switch


def test_ports_allocate_first_free_and_share():
    switch = SwitchCore(3)
    assert [switch.open_port() for _ in range(3)] == [1, 2, 3]
    with pytest.raises(SwitchError) as full:
        switch.open_port()
    assert full.value.errno == errno.ENOSPC
    assert switch.open_port(2) == 2
    assert switch.ports[2].endpoints == 2
    switch.close_port(2)
    assert 2 in switch.ports and switch.ports[2].endpoints == 1
    switch.close_port(2)
    assert 2 not in switch.ports
    assert switch.open_port() == 2


@pytest.mark.parametrize("requested", [-1, 4, 1000])
def test_port_out_of_range_is_einval(requested):
    switch = SwitchCore(3)
    with pytest.raises(SwitchError) as error:
        switch.open_port(requested)
    assert error.value.errno == errno.EINVAL


def test_unknown_unicast_floods_then_learned_unicast_goes_to_one_port(core):
    assert core.forward(1, frame(mac(2), mac(1)), 0.0) == (2, 3, 4)
    assert core.lookup(mac(1)) == 1
    assert core.forward(2, frame(mac(1), mac(2)), 0.1) == (1,)
    assert core.forward(1, frame(mac(2), mac(1)), 0.2) == (2,)


def test_broadcast_and_multicast_flood_to_all_but_ingress(core):
    core.forward(2, frame(mac(3), mac(2)), 0.0)
    assert core.forward(1, frame(BROADCAST, mac(1)), 0.0) == (2, 3, 4)
    multicast = bytes.fromhex("01005e000001")
    assert core.forward(3, frame(multicast, mac(3)), 0.0) == (1, 2, 4)


def test_frame_to_station_on_ingress_port_is_filtered(core):
    core.forward(1, frame(BROADCAST, mac(1)), 0.0)
    core.forward(1, frame(BROADCAST, mac(11)), 0.0)
    assert core.forward(1, frame(mac(11), mac(1)), 0.1) == ()
    assert core.ports[1].drops == {}


def test_hub_mode_floods_known_unicast_and_learns_nothing(core):
    core.hub = True
    core.forward(2, frame(BROADCAST, mac(2)), 0.0)
    assert core.forward(1, frame(mac(2), mac(1)), 0.1) == (2, 3, 4)
    assert list(core.mac_entries()) == []


def test_entries_expire_and_gc_runs_every_two_seconds(core):
    core.expire = 10.0
    assert core.poll_at() is None
    core.forward(2, frame(BROADCAST, mac(2)), 5.0)
    assert core.poll_at() == 5.0 + GC_INTERVAL
    assert core.expire_entries(7.0) == 0
    assert core.poll_at() == 9.0
    # Past its age the entry is ignored at once, before the GC removes it.
    assert core.forward(1, frame(mac(2), mac(1)), 15.5) == (2, 3, 4)
    assert core.expire_entries(15.5) == 1
    assert core.lookup(mac(2)) is None
    assert core.lookup(mac(1)) == 1


def test_refreshing_keeps_an_entry_alive(core):
    core.expire = 10.0
    for t in range(0, 40, 5):
        core.forward(2, frame(BROADCAST, mac(2)), float(t))
        assert core.expire_entries(float(t)) == 0
    assert core.forward(1, frame(mac(2), mac(1)), 40.0) == (2,)


def test_moved_mac_relearns_only_after_min_persistence(core):
    core.forward(1, frame(BROADCAST, mac(9)), 0.0)
    core.forward(2, frame(BROADCAST, mac(9)), 1.0)      # within 3 s: keeps port 1
    assert core.lookup(mac(9)) == 1
    core.forward(2, frame(BROADCAST, mac(9)), 4.5)      # entry 4.5 s old: moves
    assert core.lookup(mac(9)) == 2
    assert core.forward(3, frame(mac(9), mac(3)), 4.6) == (2,)


def test_mac_flood_is_capped_and_does_not_evict_live_entries():
    switch = SwitchCore(4, max_mac_entries=16)
    for _ in range(3):
        switch.open_port()
    switch.forward(2, frame(BROADCAST, mac(2)), 0.0)
    for n in range(1000, 2000):
        switch.forward(1, frame(BROADCAST, mac(n)), 1.0)
    assert switch.mac_count() == 16
    assert switch.ports[1].drops["mac_table_full"] == 1000 - 15
    # The live station stays reachable; unknown flooders just get flooded.
    assert switch.forward(3, frame(mac(2), mac(3)), 1.5) == (2,)
    assert switch.ports[3].drops == {"mac_table_full": 1}


def test_full_table_learns_again_once_entries_expire():
    switch = SwitchCore(4, max_mac_entries=4, expire=10.0)
    switch.open_port()
    switch.open_port()
    for n in range(4):
        switch.forward(1, frame(BROADCAST, mac(n + 1)), 0.0)
    switch.forward(2, frame(BROADCAST, mac(100)), 5.0)
    assert switch.lookup(mac(100)) is None
    switch.forward(2, frame(BROADCAST, mac(100)), 10.5)
    assert switch.lookup(mac(100)) == 2
    assert switch.mac_count() == 1


def test_runt_and_oversize_are_dropped_and_counted():
    switch = SwitchCore(4, max_frame=1518)
    switch.open_port()
    switch.open_port()
    assert switch.forward(1, b"\xff" * 13, 0.0) == ()
    assert switch.forward(1, frame(BROADCAST, mac(1), size=1519), 0.0) == ()
    assert switch.forward(1, frame(BROADCAST, mac(1), size=1518), 0.0) == (2,)
    assert switch.forward(1, frame(BROADCAST, mac(1), size=14), 0.0) == (2,)
    assert switch.ports[1].drops == {"runt": 1, "oversize": 1}
    assert switch.ports[1].frames_in == 4


def test_group_or_zero_source_is_dropped(core):
    assert core.forward(1, frame(BROADCAST, bytes.fromhex("030000000001")), 0.0) == ()
    assert core.forward(1, frame(BROADCAST, bytes(6)), 0.0) == ()
    assert core.ports[1].drops == {"bad_source": 2}
    assert list(core.mac_entries()) == []


def test_counters_in_and_out(core):
    core.forward(1, frame(BROADCAST, mac(1), size=100), 0.0)
    core.forward(2, frame(mac(1), mac(2), size=200), 0.0)
    assert (core.ports[1].frames_in, core.ports[1].bytes_in) == (1, 100)
    assert (core.ports[1].frames_out, core.ports[1].bytes_out) == (1, 200)
    assert (core.ports[3].frames_out, core.ports[3].bytes_out) == (1, 100)
    core.count_drop(3, "queue_full")
    core.count_drop(7, "queue_full")        # closed port: ignored
    assert core.ports[3].drops == {"queue_full": 1}
    core.reset_counters(3)
    assert (core.ports[3].frames_out, core.ports[3].drops) == (0, {})
    assert core.ports[1].frames_in == 1
    core.reset_counters()
    assert all(p.frames_in == p.frames_out == 0 for p in core.ports.values())


def test_vlans_isolate_flooding_and_learning(core):
    core.set_port_vlan(3, 10)
    core.set_port_vlan(4, 10)
    assert core.forward(1, frame(BROADCAST, mac(1)), 0.0) == (2,)
    assert core.forward(3, frame(BROADCAST, mac(1)), 0.0) == (4,)
    assert core.lookup(mac(1), 0) == 1
    assert core.lookup(mac(1), 10) == 3
    assert core.forward(4, frame(mac(1), mac(4)), 0.1) == (3,)
    assert {(m, v, p) for m, v, p, _ in core.mac_entries()} == {
        (mac(1), 0, 1), (mac(1), 10, 3), (mac(4), 10, 4)}


def test_tagged_frames_for_vlans_not_on_port_are_dropped(core):
    assert core.forward(1, tagged(BROADCAST, mac(1), 5), 0.0) == ()
    assert core.forward(1, tagged(BROADCAST, mac(1), 0)[:17], 0.0) == ()
    assert core.ports[1].drops == {"vlan": 1, "runt": 1}
    # A priority tag (VID 0) means the port's untagged VLAN.
    assert core.forward(1, tagged(BROADCAST, mac(1), 0), 0.0) == (2, 3, 4)


def test_closing_a_port_forgets_its_macs_and_refloods(core):
    core.forward(2, frame(BROADCAST, mac(2)), 0.0)
    core.close_port(2)
    assert core.lookup(mac(2)) is None
    assert core.forward(1, frame(mac(2), mac(1)), 0.1) == (3, 4)
    with pytest.raises(SwitchError):
        core.forward(2, frame(BROADCAST, mac(2)), 0.1)


def test_setnumports_refuses_to_cut_open_ports(core):
    with pytest.raises(SwitchError) as error:
        core.set_numports(3)
    assert error.value.errno == errno.EADDRINUSE
    core.set_numports(40)
    assert core.open_port(40) == 40


def test_forward_accepts_bytearray_and_memoryview(core):
    data = bytearray(frame(BROADCAST, mac(1)))
    assert core.forward(1, memoryview(data), 0.0) == (2, 3, 4)
    assert core.forward(2, bytearray(frame(mac(1), mac(2))), 0.0) == (1,)
    assert core.lookup(mac(1)) == 1
