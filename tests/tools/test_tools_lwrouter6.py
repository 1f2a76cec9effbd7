"""lwrouter's IPv6 side end to end on lwswitch: router advertisements and DHCPv6 from the
tool's process configure a stack in this process (real time)."""
from support import read_line

import lwstack


def test_lwrouter_ra_and_dhcp6_configure_an_auto6_stack(lwswitch, processes):
    proc = processes.python("lwrouter", "--net", lwswitch, "--conf",
                            "ip=10.0.0.1/24,ip=fd00::1/64", "--dns", "--domain", "lan",
                            "--ra", "fd00::/64", "--dhcp6", "fd00::100-fd00::1ff")
    line = read_line(proc)
    assert "RA fd00::/64 M O" in line and "DHCPv6 fd00::100-fd00::1ff" in line, line
    with lwstack.Stack(lwswitch, "auto6,mac=02:00:00:00:00:0a") as stack:
        stack.wait_configured(15)
        origins = {origin: address for address, _, origin in stack.ipv6_addresses}
        assert origins["slaac"] == "fd00::ff:fe00:a/64"
        assert origins["dhcpv6"] == "fd00::100/128"
        servers, domains = stack.host.all_name_servers()
        assert bytes.fromhex("fd000000000000000000000000000001") in servers
        assert "lan" in domains


def test_lwrouter_names_dhcpv6_clients_in_its_dns(lwswitch, processes):
    from linereader import LineReader

    from lwstack import socket as lws
    proc = processes.python("lwrouter", "--net", lwswitch, "--conf",
                            "ip=10.0.0.1/24,ip=fd00::1/64", "--dns", "--domain", "lan",
                            "--ra", "fd00::/64", "--dhcp6", "fd00::100-fd00::1ff")
    log = LineReader(proc)
    assert log.take(1)[0].startswith("lwrouter: serving 10.0.0.1/24, fd00::1/64 (")
    with lwstack.Stack(lwswitch, "auto6,mac=02:00:00:00:00:0b,fqdn=six") as six, \
            lwstack.Stack(lwswitch, "auto6,mac=02:00:00:00:00:0c") as asker:
        six.wait_configured(15)
        asker.wait_configured(15)
        leased = next(a for a, _, origin in six.ipv6_addresses if origin == "dhcpv6")
        address = leased.split("/")[0]
        infos = lws.getaddrinfo("six", 7, lws.AF_INET6, lws.SOCK_DGRAM, stack=asker)
        assert [info[4][0] for info in infos] == [address]
        assert lws.getfqdn(address, stack=asker) == "six.lan"
    # Both clients' exchanges interleave (and may be retransmitted): wait for these three.
    log.until({"lwrouter: DHCPSOLICIT 02:00:00:00:00:0b six",
               f"lwrouter: DHCPREPLY {address} 02:00:00:00:00:0b",
               f"lwrouter: DNS six.lan -> {address}"})
