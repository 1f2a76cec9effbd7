"""The lwswitch command: vde_switch's options, one-line errors, daemon mode, clean exits."""
import os
import signal
import subprocess
import sys

import pytest

import lwswitch
from support import wait_for







@pytest.mark.parametrize("argv, fragment", [
    (["--numports", "zero"], "invalid number"),
    (["--max-frame", "1518"], "at least 9234"),
    (["--mode", "9z"], "invalid octal mode"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_arguments_give_one_line(capsys, argv, fragment):
    with pytest.raises(SystemExit) as exit_info:
        lwswitch.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lwswitch: ") and fragment in err


def test_options_match_vde_switch():
    args = lwswitch.build_parser().parse_args(
        ["-s", "/tmp/x", "-M", "/tmp/m", "-n", "64", "-x", "-d", "-p", "/tmp/p",
         "--hashsize", "256", "-m", "660", "--max-frame", "16000", "--max-mac-entries", "99"])
    assert (args.sock, args.mgmt, args.numports, args.hub, args.daemon, args.pidfile) == \
        ("/tmp/x", "/tmp/m", 64, True, True, "/tmp/p")
    assert (args.hashsize, args.mode, args.max_frame, args.max_mac_entries) == \
        (256, 0o660, 16000, 99)


def test_default_directory_follows_vde_switch():
    expected = "/var/run/vde.ctl" if os.geteuid() == 0 else "/tmp/vde.ctl"
    assert lwswitch.default_directory() == expected


def test_socket_in_use_is_one_line_error(workdir, capsys):
    from vde.server import SwitchServer
    running = SwitchServer(os.path.join(workdir, "sw")).start()
    try:
        assert lwswitch.main(["-s", running.directory]) == 1
    finally:
        running.stop()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another switch is running" in err


def test_daemon_writes_pidfile_and_sigterm_cleans_up(workdir):
    directory = os.path.join(workdir, "sw")
    pidfile = os.path.join(workdir, "pid")
    mgmt = os.path.join(workdir, "mgmt")
    result = subprocess.run([sys.executable, "-m", "lwswitch", "-s", directory, "-M", mgmt,
                             "-d", "-p", pidfile], timeout=30,
                            stdin=subprocess.DEVNULL, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0)
    with open(pidfile, encoding="ascii") as handle:
        pid = int(handle.read())
    assert os.path.exists(os.path.join(directory, "ctl"))
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not os.path.exists(pidfile))
    assert wait_for(lambda: not os.path.exists(directory) and not os.path.exists(mgmt))
