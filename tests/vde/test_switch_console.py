"""The management console as pure functions: vde_switch's framing, commands and errors."""
import errno

import pytest

from vde import console
from vde.core import SwitchCore

BROADCAST = b"\xff" * 6
MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")


@pytest.fixture
def switch():
    core = SwitchCore(8)
    state = console.ServerState(started=100.0, pid=4242, ctl_dir="/tmp/sw",
                                mgmt_path="/tmp/mgmt")
    for description in ("alpha", "beta"):
        port = core.open_port()
        state.endpoints.setdefault(port, []).append(
            console.EndpointInfo(port + 2, description, "root"))
    core.forward(1, BROADCAST + MAC1 + b"\x08\x00" + bytes(50), 101.0)
    core.forward(2, MAC1 + MAC2 + b"\x08\x00" + bytes(86), 102.0)
    return core, state


def run(switch, line, now=105.0):
    core, state = switch
    return console.execute(core, state, line, now)


def test_render_data_reply_like_vde_switch():
    text = console.render(console.Reply(0, ["a", "b"]))
    assert text == "0000 DATA END WITH '.'\na\nb\n.\n1000 Success\n\nvde$ "


def test_render_errors_blank_lines_and_end_of_session():
    assert console.render(console.Reply(errno.ENOSYS)) == \
        "1038 Function not implemented\n\nvde$ "
    assert console.render(console.Reply(errno.EINVAL, [])) == \
        "0000 DATA END WITH '.'\n.\n1022 Invalid argument\n\nvde$ "
    assert console.render(None) == "\nvde$ "
    assert console.render(console.Reply(0, None, console.LOGOUT)) == "9999 END OF SESSION"


def test_banner_ends_with_blank_line():
    assert console.banner().endswith("\n\n")


def test_unknown_command_menu_and_blank_line(switch):
    assert run(switch, "frobnicate").status == errno.ENOSYS
    assert run(switch, "port").status == errno.ENOSYS
    assert run(switch, "port/pr").status == errno.ENOSYS
    assert run(switch, "   ") is None


def test_prefix_matching_as_vde_switch(switch):
    reply = run(switch, "showinfoxx")
    assert reply.status == 0 and "pid 4242 uptime 5" in reply.lines


def test_help_lists_commands_and_filters(switch):
    reply = run(switch, "help")
    assert reply.lines[0] == "COMMAND PATH       SYNTAX          HELP"
    assert "port/print         [N]             print the port/endpoint table" in reply.lines
    filtered = run(switch, "help hash").lines[2:]
    assert filtered and all(line.startswith("hash") for line in filtered)


def test_port_print_format(switch):
    reply = run(switch, "port/print")
    assert reply.status == 0
    assert reply.lines[:5] == [
        "Port 0001 untagged_vlan=0000 ACTIVE - Unnamed Allocatable",
        " Current User: root Access Control: (User: NONE - Group: NONE)",
        " IN:  pkts          1          bytes                   64",
        " OUT: pkts          1          bytes                  100",
        "  -- endpoint ID 0003 module unix prog   : alpha",
    ]
    assert "Port 0002 untagged_vlan=0000 ACTIVE - Unnamed Allocatable" in reply.lines
    assert run(switch, "port/allprint 2").lines == run(switch, "port/print 2").lines


def test_port_print_errors(switch):
    assert run(switch, "port/print 5").status == errno.ENXIO
    assert run(switch, "port/print 99").status == errno.EINVAL
    assert run(switch, "port/print abc").status == errno.EINVAL


def test_drop_counters_are_shown(switch):
    core, _ = switch
    core.count_drop(2, "queue_full")
    core.forward(2, b"short", 103.0)
    lines = run(switch, "port/print 2").lines
    assert " DROPS: queue_full=1 runt=1" in lines


def test_sethub_and_showinfo(switch):
    core, _ = switch
    assert run(switch, "port/sethub 1").status == 0 and core.hub
    assert "HUB=true" in run(switch, "port/showinfo").lines
    assert run(switch, "port/sethub 0").status == 0 and not core.hub
    assert run(switch, "port/sethub 2").status == errno.EINVAL
    assert run(switch, "port/sethub").status == errno.EINVAL


def test_setnumports(switch):
    core, _ = switch
    assert run(switch, "port/setnumports 64").status == 0 and core.numports == 64
    assert run(switch, "port/setnumports 1").status == errno.EADDRINUSE
    assert run(switch, "port/setnumports").status == errno.EINVAL


def test_setvlan(switch):
    core, _ = switch
    assert run(switch, "port/setvlan 2 7").status == 0
    assert core.ports[2].untagged_vlan == 7
    assert run(switch, "port/print 2").lines[0].startswith("Port 0002 untagged_vlan=0007")
    assert run(switch, "port/setvlan 5 7").status == errno.ENXIO
    assert run(switch, "port/setvlan 2 5000").status == errno.EINVAL


def test_resetcounter(switch):
    core, _ = switch
    assert run(switch, "port/resetcounter 1").status == 0
    assert core.ports[1].frames_in == 0 and core.ports[2].frames_in == 1
    assert run(switch, "port/resetcounter").status == 0
    assert core.ports[2].frames_in == 0
    assert run(switch, "port/resetcounter 6").status == errno.ENXIO


def test_hash_print_find_and_showinfo(switch):
    core, _ = switch
    lines = run(switch, "hash/print").lines
    assert len(lines) == 2
    assert lines[0].startswith("Hash: ")
    assert lines[0].endswith("Addr: 02:00:00:00:00:01 VLAN 0000 to port: 001  age 4 secs")
    found = run(switch, "hash/find 02:00:00:00:00:02")
    assert found.status == 0
    assert found.lines[0].endswith("Addr: 02:00:00:00:00:02 VLAN 0000 to port: 002  age 3 secs")
    assert run(switch, "hash/find 02:00:00:00:00:09").status == errno.ENODEV
    assert run(switch, "hash/find 02:00:00:00:00:02 3").status == errno.ENODEV
    assert run(switch, "hash/find zz").status == errno.EINVAL
    info = run(switch, "hash/showinfo").lines
    assert info[:4] == ["Hash size 128", "GC interval 2 secs", "GC expire 100 secs",
                        "Min persistence 3 secs"]
    assert "Entries 2" in info


def test_hash_setexpire_and_setminper(switch):
    core, _ = switch
    assert run(switch, "hash/setexpire 30").status == 0 and core.expire == 30.0
    assert run(switch, "hash/setexpire abc").status == errno.EINVAL
    assert run(switch, "hash/setminper 0").status == 0 and core.min_persist == 0.0


def test_logout_and_shutdown_actions(switch):
    assert run(switch, "logout").action == console.LOGOUT
    assert run(switch, "shutdown").action == console.SHUTDOWN


def test_showinfo_reports_server_counters(switch):
    _, state = switch
    state.count("handshake_bad_requests")
    state.count("handshake_bad_requests")
    lines = run(switch, "showinfo").lines
    assert "handshake_bad_requests 2" in lines
    assert "mgmt /tmp/mgmt perm 0600" in lines
