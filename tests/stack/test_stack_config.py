"""iothconf configuration strings: what parses, every error message, items refused for now."""
import hashlib

import pytest

from lwstack.iface.config import (DEFAULT_MTU, FLAGS, MAX_MTU, MIN_MTU, Interface, Interface6,
                                  parse_config, random_mac, secret_key, stable_mac)
from lwstack.iface.config import NOT_YET
from lwstack.wire.ipv6 import parse_addr6

#: A configuration using each item of config.NOT_YET.
NOT_YET_EXAMPLES = {"dhcp": "dhcp", "dhcp6": "dhcp6", "rd": "rd", "slaac": "slaac",
                    "ip=fd00::2/64": "ipv6", "ip=10.0.0.2/24,gw=fe80::1": "ipv6",
                    "ip=10.0.0.2/24,dns=10.0.0.1": "dns", "domain=lan": "domain"}


def test_full_configuration():
    config = parse_config("eth,ip=10.0.0.2/24,gw=10.0.0.1,mac=02:00:00:00:00:02,mtu=1400,"
                          "fqdn=web.lan.")
    assert config.addresses == [Interface(bytes([10, 0, 0, 2]), 24)]
    assert config.gateway == bytes([10, 0, 0, 1])
    assert config.mac == bytes.fromhex("020000000002")
    assert config.mtu == 1400
    assert config.fqdn == "web.lan"          # the trailing dot of an absolute name is dropped


def test_defaults_and_empty():
    for text in (None, "", "eth", " , ,", "eth,iface,stack"):
        config = parse_config(text)
        assert (config.addresses, config.gateway, config.mac, config.mtu) == \
            ([], None, None, DEFAULT_MTU)


def test_repeated_ip_spacing_and_case():
    config = parse_config(" IP = 10.0.0.2/24 , ip=192.168.1.1/16,MTU=68")
    assert [str(i) for i in config.addresses] == ["Interface(10.0.0.2/24)",
                                                  "Interface(192.168.1.1/16)"]
    assert config.mtu == MIN_MTU


def test_interface_network_and_broadcast():
    interface = parse_config("ip=192.168.1.77/26").addresses[0]
    assert interface.network == 0xC0A80140
    assert interface.broadcast == bytes([192, 168, 1, 127])
    assert parse_config("ip=10.1.2.3/32").addresses[0].broadcast == bytes([10, 1, 2, 3])


@pytest.mark.parametrize("text,message", [
    ("ip=10.0.0.2", r"ip=10.0.0.2: give the prefix length, e.g. ip=10.0.0.2/24"),
    ("ip=10.0.0.2/33", r"give the prefix length"),
    ("ip=10.0.0.2/x", r"give the prefix length"),
    ("ip=10.0.0.2/\u00b2", r"give the prefix length"),
    ("ip=10.0.0/24", r"invalid IPv4 address '10.0.0'"),
    ("ip=fd00::1", r"ip=fd00::1: give the prefix length, e.g. ip=fd00::1/64"),
    ("ip=fd00::1/129", r"give the prefix length"),
    ("ip=fd00::g/64", r"ip=fd00::g: invalid IPv6 address"),
    ("gw=fd00:::1", r"gw=fd00:::1: invalid IPv6 address"),
    ("dns=10.0.0", r"invalid IPv4 address"),
    ("dns=fe80:::1", r"dns=fe80:::1: invalid IPv6 address"),
    ("dhcp=yes", r"configuration item 'dhcp' takes no value"),
    ("ip=", r"configuration item 'ip' needs a value \(ip=...\)"),
    ("ip", r"configuration item 'ip' needs a value"),
    ("gw", r"configuration item 'gw' needs a value"),
    ("ip=10.0.0.2/24,gw=10.0.1.1", r"gateway 10.0.1.1 is not on a configured subnet"),
    ("gw=10.0.0.1", r"gateway 10.0.0.1 is not on a configured subnet"),
    ("ip=10.0.0.2/24,gw=10.0.0", r"invalid IPv4 address"),
    ("mac=02:00:00:00:00", r"invalid MAC address '02:00:00:00:00'"),
    ("mac=01:00:5e:00:00:01", r"mac=01:00:5e:00:00:01: a multicast address cannot be a host's MAC"),
    ("mtu=67", rf"mtu=67: must be an integer from {MIN_MTU} to {MAX_MTU}"),
    ("mtu=9217", r"must be an integer from 68 to 9216"),
    ("mtu=1500.0", r"must be an integer"),
    ("mtu=-1", r"must be an integer"),
    ("mtu=\u00b9\u00b2\u00b3", r"must be an integer"),
    ("colour=blue", r"unknown configuration item 'colour'"),
    ("iid=random", r"iid=random: must be one of eui64, stable, hash"),
    ("iid=", r"configuration item 'iid' needs a value \(iid=...\)"),
    ("iid", r"configuration item 'iid' needs a value"),
    ("secret=", r"configuration item 'secret' needs a value"),
    ("secret=s3cret", r"secret=: the key of stable privacy identifiers, used only with "
                      r"iid=stable"),
    ("iid=eui64,secret=s3cret", r"secret=: .* used only with iid=stable"),
    ("fqdn=web.lan,secret=s3cret", r"secret=: .* used only with iid=stable"),
    ("iid=hash", r"iid=hash: hash identifiers are made from the name: give fqdn= too"),
])
def test_errors_name_the_mistake(text, message):
    with pytest.raises(ValueError, match=message):
        parse_config(text)


def test_ipv6_and_names():
    config = parse_config("ip=10.0.0.2/24,ip=fd00::2/64,ip=fe80::2/64,gw=fd00::1,gw=10.0.0.1,"
                          "dns=10.0.0.53,dns=fd00::53,domain=Lan.,domain=example.org")
    assert config.addresses == [Interface(bytes([10, 0, 0, 2]), 24)]
    assert config.addresses6 == [Interface6(parse_addr6("fd00::2"), 64),
                                 Interface6(parse_addr6("fe80::2"), 64)]
    assert (config.gateway, config.gateway6) == (bytes([10, 0, 0, 1]), parse_addr6("fd00::1"))
    assert config.dns == [bytes([10, 0, 0, 53]), parse_addr6("fd00::53")]
    assert config.domains == ["lan", "example.org"]
    assert not config.automatic


@pytest.mark.parametrize("item,expected", [
    ("dhcp", {"dhcp"}), ("dhcp6", {"dhcp6"}), ("rd", {"rd"}), ("slaac", {"rd", "slaac"}),
    ("auto4", {"dhcp"}), ("auto6", {"dhcp6", "rd", "slaac"}),
    ("auto", {"dhcp", "dhcp6", "rd", "slaac"}), ("eth,DHCP,rd", {"dhcp", "rd"}),
])
def test_automatic_configuration_flags(item, expected):
    config = parse_config(item)
    assert {name for name in ("dhcp", "dhcp6", "rd", "slaac") if getattr(config, name)} == \
        expected
    assert config.automatic
    assert set(FLAGS) == {"dhcp", "dhcp6", "rd", "slaac", "auto", "auto4", "auto6"}


@pytest.mark.parametrize("text,method", [
    ("", "eui64"), ("mac=02:00:00:00:00:02", "eui64"), ("fqdn=web.lan", "hash"),
    ("iid=eui64,fqdn=web.lan", "eui64"), ("iid=stable", "stable"), ("IID=Stable", "stable"),
    ("fqdn=web.lan,iid=stable", "stable"), ("iid=hash,fqdn=web.lan", "hash"),
    ("fqdn=web.lan,iid=hash", "hash"), ("iid=eui64,iid=stable", "stable"),
])
def test_interface_identifier_generator(text, method):
    config = parse_config(text)
    assert config.iid_method == method
    assert config.iid == (method if "iid" in text.lower() else None)
    assert config.secret_key is None
    assert f"iid={method})" in repr(config)


def test_secret_is_hashed_to_a_256_bit_key():
    config = parse_config("iid=stable,secret= Open Sesame ")
    assert config.secret_key == secret_key("Open Sesame") == \
        hashlib.sha256(b"Open Sesame").digest()
    assert len(config.secret_key) * 8 >= 128                    # RFC 7217 section 5
    assert parse_config("secret=x,iid=stable").secret_key == secret_key("x")   # any order
    assert secret_key("x") != secret_key("X")                   # the text as written
    assert "Open Sesame" not in repr(config)


def test_not_a_string():
    with pytest.raises(TypeError, match="configuration must be a string, not bytes"):
        parse_config(b"ip=10.0.0.2/24")


def test_max_mtu_accepted():
    assert parse_config(f"mtu={MAX_MTU}").mtu == MAX_MTU


def test_generated_macs_are_local_unicast():
    import random
    rng = random.Random(5)
    for _ in range(50):
        mac = random_mac(rng)
        assert len(mac) == 6 and mac[0] & 0x02 and not mac[0] & 0x01
    assert stable_mac("web.lan") == stable_mac("web.lan") != stable_mac("db.lan")
    assert stable_mac("web.lan")[0] & 0x03 == 0x02


@pytest.mark.parametrize("text", sorted(NOT_YET_EXAMPLES))
def test_stack_refuses_what_it_cannot_do_yet(net, text):
    if NOT_YET_EXAMPLES[text] not in NOT_YET:
        pytest.skip(f"{text} is supported now")
    with pytest.raises(ValueError, match="not supported yet"):
        net.stack(text)
    assert net.drivers == []    # nothing was plugged for a refused configuration
