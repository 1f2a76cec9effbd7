"""lwping over IPv6 (auto-detected or -6): iputils' IPv6 output, end to end on lwswitch."""
import re
import subprocess
import sys


def run(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_lwping6_prints_what_iputils_prints(lwswitch, lwecho):
    lwecho(lwswitch, "ip=fd00::1/64,mac=02:00:00:00:00:01")
    result = run("lwping", "--net", lwswitch, "--conf", "ip=fd00::2/64", "-c", "3", "-i", "0.2",
                 "-s", "100", "fd00::1")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "PING fd00::1(fd00::1) 100 data bytes"      # iputils 20221126
    for sequence, line in enumerate(lines[1:4], 1):
        assert re.fullmatch(rf"108 bytes from fd00::1: icmp_seq={sequence} ttl=64 "
                            r"time=\d+(\.\d+)? ms", line), line
    assert lines[5] == "--- fd00::1 ping statistics ---"
    assert re.fullmatch(r"3 packets transmitted, 3 received, 0% packet loss, time \d+ms", lines[6])


def test_lwping6_link_local_with_a_zone_and_the_minus_6_flag(lwswitch, lwecho):
    lwecho(lwswitch, "mac=02:00:00:00:00:01")              # link-local fe80::ff:fe00:1 only
    result = run("lwping", "--net", lwswitch, "--conf", "", "-6", "-c", "2", "-i", "0.2",
                 "fe80::ff:fe00:1%lw0")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "PING fe80::ff:fe00:1%lw0(fe80::ff:fe00:1%lw0) 56 data bytes"
    assert re.fullmatch(r"64 bytes from fe80::ff:fe00:1%lw0: icmp_seq=1 ttl=64 time=[\d.]+ ms",
                        lines[1]), lines[1]


def test_lwping6_unreachable_neighbour(lwswitch):
    result = run("lwping", "--net", lwswitch, "--conf", "ip=fd00::2/64", "-c", "2", "-i", "0.2",
                 "fd00::77")
    assert result.returncode == 1
    assert "From fd00::2 icmp_seq=1 Destination unreachable: Address unreachable" in \
        result.stdout
    assert "2 packets transmitted, 0 received, +2 errors, 100% packet loss" in result.stdout


def test_lwping_refuses_a_family_that_does_not_match():
    result = run("lwping", "--conf", "", "-4", "fd00::1")
    assert result.returncode == 2
    assert "not an IPv4 address" in result.stderr
