"""Interface identifiers and addresses (lwstack.iface.addrgen): EUI-64 (RFC 4291 appendix A),
stable privacy identifiers (RFC 7217) and iothaddr's hash addresses (shared/reference/
iothaddr.md, every check value it lists)."""
import hashlib

import pytest

import ipv6_vectors as v
from lwstack.iface import addrgen
from lwstack.wire.ethernet import parse_mac
from lwstack.wire.ipv6 import addr6_to_str, parse_addr6


def a6(text):
    return parse_addr6(text)


# -- EUI-64 -----------------------------------------------------------------------------------

def test_eui64_as_the_kernel_derives_it():
    # The captured kernels' addresses: fe80::ff:fe00:1 for 02:00:00:00:00:01 (link-local), and
    # fd00:6::ff:fe00:1 by SLAAC from radvd's fd00:6::/64.
    assert addrgen.link_local(addrgen.eui64_iid(v.MAC_A)) == v.LL_A
    assert addrgen.link_local(addrgen.eui64_iid(v.MAC_B)) == v.LL_B
    assert addrgen.eui64_address(a6("fd00:6::"), v.MAC_A) == v.SLAAC_A
    assert addrgen.link_local(addrgen.eui64_iid(parse_mac("02:00:00:00:00:06"))) == \
        v.MLD_QUERY[22:38]


def test_eui64_of_a_universal_mac():
    # RFC 4291 appendix A: ff:fe in the middle, the universal/local bit inverted (0 -> 1).
    iid = addrgen.eui64_iid(parse_mac("00:1b:21:3a:4f:5c"))
    assert iid == bytes.fromhex("021b21fffe3a4f5c")
    assert addr6_to_str(addrgen.link_local(iid)) == "fe80::21b:21ff:fe3a:4f5c"


def test_combine_and_link_local():
    iid = bytes.fromhex("0123456789abcdef")
    assert addrgen.combine(a6("2001:db8:1:2::"), iid) == a6("2001:db8:1:2:123:4567:89ab:cdef")
    assert addrgen.combine(a6("2001:db8:1:2::")[:8], iid) == \
        a6("2001:db8:1:2:123:4567:89ab:cdef")
    assert addrgen.link_local(iid) == a6("fe80::123:4567:89ab:cdef")
    for prefix, bad_iid in [(bytes(7), iid), (bytes(16), bytes(7)), (bytes(16), bytes(16))]:
        with pytest.raises(ValueError):
            addrgen.combine(prefix, bad_iid)
    with pytest.raises(ValueError):
        addrgen.eui64_iid(bytes(8))


# -- RFC 7217 ---------------------------------------------------------------------------------

SECRET = bytes(range(16))


def reference_rid(prefix, iface, network, counter, secret):
    """The documented input layout, rebuilt here independently."""
    data = prefix[:8] + len(iface).to_bytes(2, "big") + iface + \
        len(network).to_bytes(2, "big") + network + counter.to_bytes(4, "big") + secret
    return hashlib.sha256(data).digest()[:8]


def test_stable_privacy_iid_is_the_documented_hash():
    prefix = a6("2001:db8:1:2::")
    iid = addrgen.stable_privacy_iid(prefix, "eth0", b"", 0, SECRET)
    assert iid == reference_rid(prefix, b"eth0", b"", 0, SECRET)
    assert addrgen.stable_privacy_iid(prefix[:8], b"eth0", "", 0, SECRET) == iid


def test_stable_privacy_iid_properties():
    # RFC 7217 section 5: stable for the same inputs; another prefix (network), another DAD
    # attempt, another interface, network id or secret give an unrelated identifier.
    prefix = a6("2001:db8:1:2::")
    base = addrgen.stable_privacy_iid(prefix, "eth0", "ssid", 0, SECRET)
    assert base == addrgen.stable_privacy_iid(prefix, "eth0", "ssid", 0, SECRET)
    others = [
        addrgen.stable_privacy_iid(a6("2001:db8:1:3::"), "eth0", "ssid", 0, SECRET),
        addrgen.stable_privacy_iid(prefix, "eth0", "ssid", 1, SECRET),
        addrgen.stable_privacy_iid(prefix, "eth1", "ssid", 0, SECRET),
        addrgen.stable_privacy_iid(prefix, "eth0", "other", 0, SECRET),
        addrgen.stable_privacy_iid(prefix, "eth0", "ssid", 0, bytes(16)),
        # Without the length prefixes these two inputs would be the same bytes.
        addrgen.stable_privacy_iid(prefix, "eth0s", "sid", 0, SECRET),
    ]
    assert len(set(others + [base])) == len(others) + 1
    # Bits past the 64th of the prefix do not matter: it is the /64 that SLAAC configures.
    assert addrgen.stable_privacy_iid(a6("2001:db8:1:2::99"), "eth0", "ssid", 0, SECRET) == base


def test_a_reserved_identifier_moves_to_the_next_counter(monkeypatch):
    calls = []
    real = hashlib.sha256

    def fake_sha256(data):
        calls.append(data)
        if len(calls) == 1:
            class Zero:
                def digest(self):
                    return bytes(32)      # the Subnet-Router anycast identifier: reserved
            return Zero()
        return real(data)

    prefix = a6("2001:db8::")
    expected = reference_rid(prefix, b"eth0", b"", 4, SECRET)
    monkeypatch.setattr(addrgen.hashlib, "sha256", fake_sha256)
    iid = addrgen.stable_privacy_iid(prefix, "eth0", b"", 3, SECRET)
    assert iid == expected
    assert calls[0][-20:-16] == (3).to_bytes(4, "big") and len(calls) == 2


@pytest.mark.parametrize("iid, reserved", [
    ("0000000000000000", True),
    ("02005efffe000000", True), ("02005efffe005213", True), ("02005efffeffffff", True),
    ("02005efffd000000", False), ("02005e0000000000", False),
    ("fdffffffffffff80", True), ("fdffffffffffffff", True), ("fdffffffffffff7f", False),
    ("0000000000000001", False), ("021b21fffe3a4f5c", False),
])
def test_reserved_identifiers(iid, reserved):
    # RFC 5453 (the list RFC 7217 section 5 points to), RFC 2526.
    assert addrgen.is_reserved_iid(bytes.fromhex(iid)) == reserved


def test_stable_privacy_iid_refuses_bad_arguments():
    with pytest.raises(ValueError):
        addrgen.stable_privacy_iid(bytes(7), "eth0", b"", 0, SECRET)
    with pytest.raises(ValueError):
        addrgen.stable_privacy_iid(bytes(8), "eth0", b"", -1, SECRET)


# -- iothaddr ---------------------------------------------------------------------------------

def test_iothaddr_check_values():
    # Every value of shared/reference/iothaddr.md.
    assert addrgen.hash_digest("test.v2.cs.unibo.it").hex() == \
        "69d62fac095a5a2ee4c2c79f211e57e3"
    assert addr6_to_str(addrgen.hash_address(a6("2000:760::"), "test.v2.cs.unibo.it")) == \
        "2000:760::68d6:2fac:95a:5a2e"
    assert addr6_to_str(addrgen.hash_address(a6("fc00::"), "renzo.hash.local")) == \
        "fc00::4cc:8049:6765:d03a"
    mac = addrgen.hash_mac("test.v2.cs.unibo.it")
    assert mac == parse_mac("6a:d6:2f:5a:5a:2e")
    assert addr6_to_str(addrgen.iothaddr_eui64(a6("2000:760::"), mac)) == \
        "2000:760::68d6:2fff:fe5a:5a2e"
    assert addrgen.eui64_address(a6("2000:760::"), mac) == a6("2000:760::68d6:2fff:fe5a:5a2e")


def test_a_trailing_dot_is_ignored_once():
    name = "test.v2.cs.unibo.it"
    assert addrgen.hash_digest(name + ".") == addrgen.hash_digest(name)
    assert addrgen.hash_digest(name + "..") == hashlib.md5((name + ".").encode()).digest()
    assert addrgen.hash_mac(name.encode() + b".") == addrgen.hash_mac(name)
    with pytest.raises(ValueError):
        addrgen.hash_digest("")


def test_password_and_time_enter_the_hash():
    name, password = "renzo.hash.local", "secret"
    assert addrgen.hash_digest(name, password) == hashlib.md5(b"renzo.hash.localsecret").digest()
    assert addrgen.hash_digest(name, password, 0x01020304) == \
        hashlib.md5(b"renzo.hash.localsecret\x01\x02\x03\x04").digest()
    # otiptime 0 means "no time": nothing is appended.
    assert addrgen.hash_digest(name, None, 0) == hashlib.md5(name.encode()).digest()
    digest = hashlib.md5(b"renzo.hash.localsecret").digest()
    assert addrgen.hash_mac(name, password) == bytes(
        ((digest[0] | 2) & 0xFE, digest[1], digest[2], digest[5], digest[6], digest[7]))


def test_hash_address_xors_the_base_and_clears_two_bits():
    name = "test.v2.cs.unibo.it"
    digest = addrgen.hash_digest(name)
    base = a6("2001:db8::ffff:0:0:1")
    addr = addrgen.hash_address(base, name)
    low = bytearray(b ^ d for b, d in zip(base[8:], digest[:8]))
    low[0] &= 0xFC
    assert addr == base[:8] + bytes(low)
    assert addr[8] & 3 == 0
    with pytest.raises(ValueError):
        addrgen.hash_address(bytes(8), name)


def test_iothaddr_eui64_xors_the_last_three_bytes():
    # iothaddr_eui64 sets bytes 8-12 and XORs 13-15: a base with low bits shows the difference.
    mac = parse_mac("6a:d6:2f:5a:5a:2e")
    assert addrgen.iothaddr_eui64(a6("2000:760::1:0:0:101"), mac) == \
        a6("2000:760::68d6:2fff:fe5a:5b2f")
    with pytest.raises(ValueError):
        addrgen.iothaddr_eui64(bytes(16), bytes(5))


@pytest.mark.parametrize("now, period, offset, slot", [
    (0, 32, 0, 0), (31.9, 32, 0, 0), (32, 32, 0, 1), (1700000000, 32, 0, 53125000),
    (1700000000, 32, 8, 53125000), (1700000024, 32, 8, 53125001), (1700000000, 0, 0, 0),
    (1700000000.5, 60, -30, 28333332),
])
def test_otiptime(now, period, offset, slot):
    assert addrgen.otiptime(now, period, offset) == slot


def test_otip_address_changes_each_period():
    base, name, password = a6("fc00::"), "renzo.hash.local", "pw"
    first = addrgen.otip_address(base, name, password, 1700000000)
    assert first == addrgen.hash_address(base, name, password, 53125000)
    assert addrgen.otip_address(base, name, password, 1700000031) == first
    assert addrgen.otip_address(base, name, password, 1700000032) != first
    assert addrgen.otip_address(base, name, password, 0) == \
        addrgen.hash_address(base, name, password)      # slot 0: no time in the hash
