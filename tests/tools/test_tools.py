"""The command-line tools: arguments, output format, exit status, end to end on lwswitch."""
import re
import subprocess
import sys

import pytest

TOOLS = ["lwswitch", "lwecho", "lwping", "lwdemo", "lwrouter"]


def run(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool):
    result = run(tool, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: {tool}")


@pytest.mark.parametrize("argv", [
    ["lwping", "--conf", "ip=10.0.0.2/24", "-c", "x", "10.0.0.1"],
    ["lwping", "--conf", "ip=10.0.0.2/24", "-i", "0", "10.0.0.1"],
    ["lwping", "10.0.0.1"],
    ["lwecho", "--conf", "ip=10.0.0.1/24", "--port", "70000"],
    ["lwswitch", "--numports", "many"],
    ["lwdemo", "--count", "0"],
    ["lwrouter", "--conf", "ip=10.0.0.1/24"],
    ["lwrouter", "--conf", "ip=10.0.0.1/24", "--dhcp", "10.0.0.2-10.0.0.9", "--lease-time", "0"],
    ["lwrouter", "--conf", "ip=10.0.0.1/24", "--dns", "--host-record", "nameonly"],
])
def test_bad_arguments_give_one_line(argv):
    result = run(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{argv[0]}: "), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv, message", [
    (["lwping", "--net", "vde:///nonexistent/sw", "--conf", "ip=10.0.0.2/24", "10.0.0.1"],
     "no VDE switch at /nonexistent/sw"),
    (["lwping", "--net", "vde:///tmp", "--conf", "ip=10.0.0.2", "10.0.0.1"],
     "give the prefix length"),
    (["lwecho", "--net", "vde:///tmp", "--conf", "ip=10.0.0.1/24,colour=blue"],
     "unknown configuration item 'colour'"),
    (["lwrouter", "--conf", "ip=10.0.0.1/24", "--dhcp", "10.0.0.100-10.0.0.200",
      "--ra", "fd00::/129"], "fd00::/129: an IPv6 prefix is ADDR/LEN"),
    (["lwrouter", "--conf", "ip=10.0.0.1/24", "--dhcp6", "fd00::100"],
     "fd00::100: a DHCPv6 range is FIRST-LAST"),
    (["lwrouter", "--conf", "ip=10.0.0.1/24", "--dhcp", "10.0.0.200-10.0.0.100"],
     "the range's first address is after its last"),
    (["lwrouter", "--net", "vde:///nonexistent/sw", "--conf", "ip=10.0.0.1/24", "--dhcp",
      "10.0.1.100-10.0.1.200"], "no VDE switch at /nonexistent/sw"),
])
def test_runtime_errors_give_one_line(argv, message):
    result = run(*argv)
    assert result.returncode in (1, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_lwping_prints_what_iputils_prints(lwswitch, lwecho):
    lwecho(lwswitch, "ip=10.0.0.1/24")
    result = run("lwping", "--net", lwswitch, "--conf", "ip=10.0.0.2/24", "-c", "3", "-i", "0.2",
                 "-s", "100", "10.0.0.1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "PING 10.0.0.1 (10.0.0.1) 100(128) bytes of data."
    for sequence, line in enumerate(lines[1:4], 1):
        assert re.fullmatch(rf"108 bytes from 10\.0\.0\.1: icmp_seq={sequence} ttl=64 "
                            r"time=\d+(\.\d+)? ms", line), line
    assert lines[4] == ""
    assert lines[5] == "--- 10.0.0.1 ping statistics ---"
    assert re.fullmatch(r"3 packets transmitted, 3 received, 0% packet loss, time \d+ms", lines[6])
    assert re.fullmatch(r"rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms", lines[7])


def test_lwping_unreachable_host(lwswitch):
    result = run("lwping", "--net", lwswitch, "--conf", "ip=10.0.0.2/24", "-c", "2", "-i", "0.2",
                 "10.0.0.77")
    assert result.returncode == 1
    assert "From 10.0.0.2 icmp_seq=1 Destination Host Unreachable" in result.stdout
    assert "From 10.0.0.2 icmp_seq=2 Destination Host Unreachable" in result.stdout
    assert "2 packets transmitted, 0 received, +2 errors, 100% packet loss" in result.stdout


def test_lwecho_echoes_udp_from_another_process(lwswitch, lwecho):
    import lwstack
    lwecho(lwswitch, "ip=10.0.0.1/24")
    with lwstack.Stack(lwswitch, "ip=10.0.0.3/24") as stack, stack.socket() as sock:
        sock.settimeout(5)
        for size in (0, 1, 1472):
            payload = bytes(i % 251 for i in range(size))
            sock.sendto(payload, ("10.0.0.1", 7))
            assert sock.recvfrom(2048) == (payload, ("10.0.0.1", 7))


def test_lwdemo_runs_end_to_end():
    result = run("lwdemo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "RA fd00:10::/64 M O; DHCPv6 fd00:10::100-fd00:10::1ff" in out
    # Each process says what it got: a DHCPv4 lease, SLAAC and DHCPv6 addresses in the
    # router's prefix, a link-local address, the router from its advertisements.
    v4_lease = r"IPv4 by DHCP: (10\.0\.0\.10[0-2])/24, gateway 10\.0\.0\.1, dns 10\.0\.0\.1, " \
        r"domain lan, lease 3600 s"
    v6_addresses = r"IPv6: (fd00:10::[0-9a-f:]+)/64 by SLAAC, (fd00:10::10[0-2])/128 by DHCPv6, " \
        r"fe80::[0-9a-f:]+/64 link-local"
    router_line = r"default router fe80::[0-9a-f:]+ \(from its advertisement\), dns fd00:10::1"
    peer = re.search(rf"A \(pid \d+\) says: {v4_lease}\n +{v6_addresses}\n +{router_line}\n"
                     r" +echoing UDP port 7 over IPv4 and IPv6", out)
    assert peer, out
    own = re.search(rf"B \(pid \d+, MAC [0-9a-f:]{{17}}\) was configured in \d+\.\d s:\n"
                    rf" +{v4_lease}\n +{v6_addresses}\n +{router_line}", out)
    assert own, out
    peer_v4, _, peer_v6 = peer.groups()
    own_v4, _, own_v6 = own.groups()
    # Three clients (A, B and the web server C) share the first three leases.
    assert len({peer_v4, own_v4}) == 2 and len({peer_v6, own_v6}) == 2
    # B finds A by name in both families: A from its DHCPv4 lease, AAAA from its DHCPv6 one.
    assert f"getaddrinfo('echo', 7) -> echo.lan is {peer_v4} (A) and {peer_v6} (AAAA)" in out
    for address in (peer_v4, peer_v6):
        for sequence in (1, 2, 3):
            assert re.search(rf"64 bytes from {re.escape(address)}: icmp_seq={sequence} "
                             r"ttl=64 time=\d+\.\d+ ms", out), out
    for address in (own_v4, own_v6):
        for number in (1, 2, 3):
            assert f"sent 'datagram {number} from {address}', echo came back intact" in out
    assert out.count("3/3 replies") == 2
    assert out.count("3/3 echoed intact") == 2
    assert "lwdemo peer echo" in out          # the switch console saw process A
    assert f"lwrouter: DNS echo.lan -> {peer_v4}" in out
    assert f"lwrouter: DNS echo.lan -> {peer_v6}" in out
    assert re.search(rf"lwrouter: DHCPACK {own_v4} [0-9a-f:]{{17}}", out)
    assert re.search(rf"lwrouter: DHCPREPLY {own_v6} [0-9a-f:]{{17}}", out)
    assert f"lwrouter: DHCPRELEASE {own_v4}" in out       # B closed its stack
    assert f"lwrouter: DHCPRELEASE {own_v6}" in out
    # C: python -m http.server under lwrun, fetched by name (IPv4 first by RFC 6724 for these
    # ULA addresses) and over IPv6 with urllib routed through B's stack; its log shows B.
    assert "Serving HTTP on :: port 80" in out
    web_v6 = re.search(r"GET http://\[(fd00:10::10[0-2])\]/ -> 200 OK, server 'SimpleHTTP/[^']+', "
                       r"\d+ bytes \(the page C serves\)", out)
    assert web_v6 and web_v6.group(1) not in (peer_v6, own_v6), out
    assert re.search(r"GET http://www/ -> 200 OK, server 'SimpleHTTP/[^']+', \d+ bytes "
                     r"\(the page C serves\)", out), out
    assert f'::ffff:{own_v4} - - ' in out and f'{own_v6} - - ' in out, out
    assert out.count('"GET / HTTP/1.1" 200') == 2, out
    assert "lwrun " in out                    # the switch console saw process C
    assert "done: every ping answered, every datagram echoed and both pages fetched, over " \
        "IPv4 and IPv6." in out


def test_lwrouter_leases_to_two_stacks_and_names_them(lwswitch, processes):
    from linereader import LineReader

    import lwstack
    from lwstack import socket as lws
    router = processes.python("lwrouter", "--net", lwswitch, "--conf",
                              "ip=10.5.0.1/24,fqdn=gw.test", "--dhcp", "10.5.0.10-10.5.0.20",
                              "--dns", "--domain", "test", "--host-record", "files,10.5.0.5",
                              "--lease-time", "120")
    log = LineReader(router)
    line = log.take(1)[0]
    assert line == ("lwrouter: serving 10.5.0.1/24 (" + line.split("(")[1].split(")")[0]
                            + "); DHCP 10.5.0.10-10.5.0.20 lease 120 s, gateway 10.5.0.1; "
                            "DNS as gw.test, domain test")
    with lwstack.Stack(lwswitch, "dhcp,fqdn=one") as one, \
            lwstack.Stack(lwswitch, "dhcp,fqdn=two") as two:
        one.wait_configured(10)
        two.wait_configured(10)
        assert sorted(a for a in one.addresses + two.addresses if ":" not in a) == [
            "10.5.0.10/24", "10.5.0.11/24"]
        assert one.name_servers() == (["10.5.0.1"], ["test"])
        assert lws.gethostbyname("two", stack=one) == two.addresses[0][:-3]
        assert lws.gethostbyname("files", stack=two) == "10.5.0.5"
        assert lws.getfqdn(one.addresses[0][:-3], stack=two) == "one.test"
        one_mac, one_address = one.mac, one.addresses[0][:-3]
    lines = log.take(12)
    assert f"lwrouter: DHCPDISCOVER {one_mac} one" in lines
    assert any(re.fullmatch(rf"lwrouter: DHCPACK 10\.5\.0\.1[01] {one_mac}", x) for x in lines)
    assert f"lwrouter: DNS one.test -> {one_address}" in lines
    assert f"lwrouter: DHCPRELEASE {one_address} {one_mac}" in lines      # at Stack.close
