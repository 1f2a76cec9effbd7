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
