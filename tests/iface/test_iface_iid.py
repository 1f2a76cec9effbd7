"""Interface identifiers as configured (``iid=eui64|stable|hash``, ``secret=``) on virtual
time: RFC 7217 stable privacy addresses for the link-local and SLAAC addresses, retried with
the next DAD counter after a duplicate (section 6), and EUI-64 / hash duplicates that stay
final (RFC 4862 5.4.5), each said in the stats and in what "configured" waits for.

The duplicate is a scripted node (:class:`ipv6_helpers.Peer6`) that answers the stack's first
DAD probe for an address with an NA for it (5.4.4) or with its own probe from :: (5.4.3).
"""
import hashlib
import os
import random
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "stack"))

from ipv6_helpers import A, A6_MAC, B6_MAC, Peer6, icmp6_of_type  # noqa: E402
from lwstack import socket as lwsocket  # noqa: E402
from lwstack.iface import addrgen  # noqa: E402
from lwstack.iface.slaac import IDGEN_RETRIES, Slaac  # noqa: E402
from lwstack.proto.ra_server import RaPrefix, RaServer, RouterConfig  # noqa: E402
from lwstack.sim import VirtualNetwork  # noqa: E402
from lwstack.wire import icmpv6  # noqa: E402
from lwstack.wire.ipv6 import LINK_LOCAL_PREFIX, UNSPECIFIED, addr6_to_str  # noqa: E402

PREFIX = A("fd00::")
LL_PREFIX = LINK_LOCAL_PREFIX + bytes(8)
ROUTER_MAC = "02:00:00:00:00:01"
SECRET = "correct horse battery staple"


def mac_bytes(text):
    return bytes.fromhex(text.replace(":", ""))


def stable(prefix, mac_text, counter, secret=SECRET):
    """RFC 7217 as lwstack's stacks apply it: Net_Iface the MAC, Network_ID empty, the key
    SHA-256 of ``secret=``."""
    key = hashlib.sha256(secret.encode()).digest()
    return addrgen.combine(prefix, addrgen.stable_privacy_iid(prefix, mac_bytes(mac_text), b"",
                                                              counter, key))


@pytest.fixture
def net():
    return VirtualNetwork(seed=11)


def router(net):
    """A stack at fd00::1 advertising fd00::/64 for SLAAC."""
    stack = net.stack(f"ip=fd00::1/64,mac={ROUTER_MAC}")
    ra = RaServer(RouterConfig(prefixes=[RaPrefix(PREFIX)], max_interval=30),
                  random.Random(7))
    with stack.driver.lock:
        stack.host.start_router(ra, net.now)
        stack.driver.after_call()
    return stack


def dad_probes(frames):
    """``[(target, nonce)]`` of the DAD probes (NS from ::) among ``frames``."""
    return [(p.nd.target, p.nd.nonce)
            for p in icmp6_of_type(frames, icmpv6.TYPE_NEIGHBOR_SOLICITATION)
            if p.header.src == UNSPECIFIED]


def claim(net, peer, wanted, how="na", timeout=20.0):
    """Run until the stack probes an address ``wanted(target)`` accepts, then claim it at
    once: ``"na"`` advertises it as ours (5.4.4), ``"ns"`` probes it from :: too (5.4.3).
    Returns the address claimed."""
    seen = []

    def probed():
        seen.extend(t for t, _ in dad_probes(peer.collect()) if wanted(t))
        return bool(seen)

    assert net.run_until(probed, timeout), "no DAD probe came"
    target = seen[0]
    if how == "na":
        peer.send_na(target)
    else:
        peer.send_ns(target, src=UNSPECIFIED, nonce=b"\x01peer1")
    return target


def in_prefix(prefix):
    return lambda target: target[:8] == prefix[:8]


def ping(stack, address, scope_id=0):
    """One ICMPv6 echo from ``stack`` to ``address`` (text); True when it is answered."""
    sock = stack.socket(lwsocket.AF_INET6, lwsocket.SOCK_DGRAM, lwsocket.IPPROTO_ICMPV6)
    sock.settimeout(2)
    sock.connect((address, 0, 0, scope_id))
    sock.send(struct.pack("!BBHHH", 128, 0, 0, 0, 1) + b"iid")
    reply = sock.recv(200)
    sock.close()
    return reply[0] == icmpv6.TYPE_ECHO_REPLY and reply.endswith(b"iid")


def slaac_addresses(stack):
    return [a for a, state, origin in stack.ipv6_addresses if origin == "slaac"]


# -- RFC 7217: a duplicate is retried with the next DAD counter ---------------------------------

@pytest.mark.parametrize("how", ["na", "ns"])
def test_stable_slaac_duplicate_gets_a_new_working_address(net, how):
    gateway = router(net)
    net.run(3)
    peer = Peer6(net)
    client = net.stack(f"mac={A6_MAC},slaac,iid=stable,secret={SECRET}")
    first = claim(net, peer, in_prefix(PREFIX), how)
    assert first == stable(PREFIX, A6_MAC, 0)         # Net_Iface MAC, Network_ID empty
    assert client.wait_ipv6_configured(10)
    second = stable(PREFIX, A6_MAC, 1)
    assert slaac_addresses(client) == [addr6_to_str(second) + "/64"]
    assert [t for t, _ in dad_probes(peer.collect())] == [second]
    stats = client.stats()
    assert (stats["ipv6_dad_failed"], stats["ipv6_dad_retry"], stats["slaac.dad_retry"]) == \
        (1, 1, 1)
    assert "ipv6_dad_final" not in stats
    assert ping(gateway, addr6_to_str(second))
    assert client.link_local == addr6_to_str(stable(LL_PREFIX, A6_MAC, 0))


@pytest.mark.parametrize("how", ["na", "ns"])
def test_stable_link_local_duplicate_gets_a_new_working_address(net, how):
    other = net.stack(f"mac={B6_MAC}")
    net.run(3)
    peer = Peer6(net)
    client = net.stack(f"mac={A6_MAC},iid=stable,secret={SECRET}")
    first = claim(net, peer, in_prefix(LL_PREFIX), how)
    assert first == stable(LL_PREFIX, A6_MAC, 0)
    assert client.wait_ipv6_configured(10)
    second = stable(LL_PREFIX, A6_MAC, 1)
    assert client.link_local == addr6_to_str(second) and not client.host.ipv6_disabled
    assert client.stats()["ipv6_dad_retry"] == 1
    assert ping(other, client.link_local, scope_id=1)


def test_stable_gives_up_after_idgen_retries_and_says_so(net):
    router(net)
    net.run(3)
    peer = Peer6(net)
    client = net.stack(f"mac={A6_MAC},slaac,iid=stable,secret={SECRET}")
    claimed = [claim(net, peer, in_prefix(PREFIX)) for _ in range(IDGEN_RETRIES + 1)]
    assert claimed == [stable(PREFIX, A6_MAC, c) for c in range(IDGEN_RETRIES + 1)]
    net.run(10)
    assert slaac_addresses(client) == []
    stats = client.stats()
    assert (stats["ipv6_dad_retry"], stats["ipv6_dad_final.retries_exhausted"]) == \
        (IDGEN_RETRIES, 1)
    with pytest.raises(TimeoutError, match=r"SLAAC address fd00:.*final: 3 new addresses"):
        client.wait_configured(1)


# -- EUI-64 and hash identifiers: a duplicate is final --------------------------------------------

@pytest.mark.parametrize("config,expected", [
    ("iid=eui64", lambda: addrgen.eui64_address(PREFIX, mac_bytes(A6_MAC))),
    ("", lambda: addrgen.eui64_address(PREFIX, mac_bytes(A6_MAC))),           # the default
    ("iid=hash,fqdn=web.lan", lambda: addrgen.hash_address(PREFIX, "web.lan")),
    ("fqdn=web.lan", lambda: addrgen.hash_address(PREFIX, "web.lan")),        # the default
])
def test_eui64_and_hash_slaac_duplicates_are_final(net, config, expected):
    router(net)
    net.run(3)
    peer = Peer6(net)
    client = net.stack(",".join(filter(None, [f"mac={A6_MAC},slaac", config])))
    assert claim(net, peer, in_prefix(PREFIX)) == expected()
    net.run(10)
    assert slaac_addresses(client) == []
    assert dad_probes(peer.collect()) == []                      # no second try
    stats = client.stats()
    assert (stats["ipv6_dad_failed"], stats["ipv6_dad_final.same_identifier"]) == (1, 1)
    assert "ipv6_dad_retry" not in stats
    method = client.host.iid_method
    with pytest.raises(TimeoutError, match=rf"final: iid={method} gives the same address"):
        client.wait_configured(1)


def test_eui64_link_local_duplicate_disables_ipv6_and_says_why(net):
    peer = Peer6(net)
    client = net.stack(f"mac={A6_MAC},iid=eui64,ip=fd00::5/64")
    claim(net, peer, in_prefix(LL_PREFIX))
    net.run(5)
    assert client.host.ipv6_disabled and client.link_local is None
    assert client.stats()["ipv6_dad_final.same_identifier"] == 1
    with pytest.raises(TimeoutError, match=r"disabled: duplicate link-local address fe80::"
                                           r".*final: iid=eui64 gives the same address"):
        client.wait_configured(1)


# -- which inputs make the address ----------------------------------------------------------------

def test_same_secret_and_mac_give_the_same_addresses_on_another_network():
    """The migration case: a stack started again elsewhere with its secret= and mac=."""
    seen = []
    for seed in (1, 2):
        net = VirtualNetwork(seed=seed)
        router(net)
        client = net.stack(f"mac={A6_MAC},slaac,iid=stable,secret={SECRET}")
        assert client.wait_ipv6_configured(10)
        seen.append((client.link_local, slaac_addresses(client)))
    assert seen[0] == seen[1] == (addr6_to_str(stable(LL_PREFIX, A6_MAC, 0)),
                                  [addr6_to_str(stable(PREFIX, A6_MAC, 0)) + "/64"])


def test_one_secret_different_macs_give_different_addresses(net):
    """Net_Iface is the MAC: stacks that share a secret do not collide."""
    router(net)
    stacks = [net.stack(f"mac={mac},slaac,iid=stable,secret={SECRET}")
              for mac in (A6_MAC, B6_MAC)]
    for stack in stacks:
        assert stack.wait_ipv6_configured(10)
    addresses = [slaac_addresses(s) for s in stacks]
    assert addresses == [[addr6_to_str(stable(PREFIX, mac, 0)) + "/64"]
                         for mac in (A6_MAC, B6_MAC)]
    assert addresses[0] != addresses[1]
    assert all(s.stats().get("ipv6_dad_failed", 0) == 0 for s in stacks)


def test_another_secret_or_prefix_gives_another_address():
    assert stable(PREFIX, A6_MAC, 0) != stable(PREFIX, A6_MAC, 0, secret="other")
    assert stable(PREFIX, A6_MAC, 0)[8:] != stable(A("fd01::"), A6_MAC, 0)[8:]


def test_without_a_secret_the_key_is_random_for_each_stack():
    seen = []
    for seed in (1, 2):
        net = VirtualNetwork(seed=seed)
        client = net.stack(f"mac={A6_MAC},iid=stable")
        net.run(3)
        assert client.link_local is not None
        seen.append(client.link_local)
    eui64 = addr6_to_str(addrgen.eui64_address(LL_PREFIX, mac_bytes(A6_MAC)))
    assert seen[0] != seen[1] and eui64 not in seen
    # ... and reproducible on a virtual network with the same seed.
    again = VirtualNetwork(seed=1).stack(f"mac={A6_MAC},iid=stable")
    assert again.host._make_address(LL_PREFIX, 0) == A(seen[0])


def test_the_default_generator_is_unchanged(net):
    assert net.stack("").host.iid_method == "eui64"
    assert net.stack("fqdn=web.lan").host.iid_method == "hash"
    assert net.stack("fqdn=web.lan,iid=eui64").host.iid_method == "eui64"
    hashed = net.stack(f"mac={A6_MAC},fqdn=web.lan")
    net.run(3)
    assert hashed.link_local == addr6_to_str(addrgen.hash_address(LL_PREFIX, "web.lan"))


# -- Slaac's retry rule (RFC 7217 section 5) -------------------------------------------------

def test_a_counter_whose_address_the_interface_has_is_skipped():
    table = {0: "1111", 1: "2222", 2: "3333", 3: "4444"}

    def make(prefix, counter):
        return prefix[:8] + bytes.fromhex(table[counter] * 4)

    s = Slaac(make, random.Random(1), autoconf=False, router_solicit=False)
    s.start(0.0)
    s.add_address(make(LINK_LOCAL_PREFIX, 1), 64, 0.0)     # counter 1's address, held already
    s.outbox.clear()
    s.receive_na(make(LINK_LOCAL_PREFIX, 0), 0.0)
    assert s.outbox == [("address_removed", make(LINK_LOCAL_PREFIX, 0), "duplicate"),
                        ("dad_retry", make(LINK_LOCAL_PREFIX, 0), make(LINK_LOCAL_PREFIX, 2),
                         2)]
    assert s.is_tentative(make(LINK_LOCAL_PREFIX, 2))
