"""The scripted-peer harness itself: it must fail loudly when lwstack is wrong, or the state
machine tests that rely on it prove nothing."""
import pytest

from lwstack.sim import VirtualNetwork
from lwstack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment, build_options, build_tcp
from tcp_harness import ANY, TcpPeer, assert_segment, cross_check, flags_of


def test_flag_letters():
    assert flags_of("SA") == flags_of("AS") == SYN | ACK
    assert flags_of("FPA") == FIN | PSH | ACK
    assert flags_of("r") == RST
    assert flags_of("") == 0
    assert flags_of(SYN) == SYN
    with pytest.raises(ValueError):
        flags_of("X")


def _seg(**fields):
    base = dict(src_port=80, dst_port=40000, seq=10, ack=20, flags=ACK, window=100)
    base.update(fields)
    return TcpSegment(**base)


def test_assert_segment_checks_every_field_given():
    seg = _seg(payload=b"abc", mss=1460)
    assert_segment(seg, "A", seq=10, ack=20, window=100, payload_len=3, payload=b"abc",
                   options={"mss": 1460})
    for wrong in ({"flags": "PA"}, {"seq": 11}, {"ack": 21}, {"window": 99},
                  {"payload_len": 2}, {"payload": b"abd"}, {"options": {}},
                  {"options": {"mss": 1460, "wscale": 7}}, {"src_port": 81}):
        with pytest.raises(AssertionError):
            assert_segment(seg, **wrong)


def test_assert_segment_compares_sequence_numbers_modulo_2_32():
    assert_segment(_seg(seq=5, ack=0), seq=(1 << 32) + 5, ack=1 << 32)


def test_options_are_exact_with_any_as_present():
    seg = _seg(has_timestamps=True, ts_val=7, ts_ecr=9, sack_permitted=True)
    assert_segment(seg, options={"ts": (ANY, 9), "sack_permitted": True})
    assert_segment(seg, options={"ts": ANY, "sack_permitted": ANY})
    with pytest.raises(AssertionError):
        assert_segment(seg, options={"ts": (ANY, 9)})            # SACK-permitted not listed
    with pytest.raises(AssertionError):
        assert_segment(seg, options={"ts": (8, ANY), "sack_permitted": True})
    with pytest.raises(AssertionError):
        assert_segment(_seg(), options={"ts": ANY})               # absent
    with pytest.raises(ValueError):
        assert_segment(seg, options={"timestamps": ANY})          # a typo is not silence


def test_cross_check_catches_a_bad_checksum():
    peer = TcpPeer(VirtualNetwork(seed=1))
    tcp = bytearray(build_tcp(peer.ip, peer.stack_ip, 1, 2, 3, 4, ACK, 5,
                              build_options(mss=1460), b"data"))
    from lwstack.wire.ethernet import ETHERTYPE_IPV4, build_ethernet
    from lwstack.wire.ipv4 import build_ipv4
    from lwstack.wire.tcp import parse_tcp
    seg = parse_tcp(bytes(tcp), peer.ip, peer.stack_ip)
    frame = build_ethernet(peer.stack_mac, peer.mac, ETHERTYPE_IPV4,
                           build_ipv4(peer.ip, peer.stack_ip, 6, bytes(tcp)))
    cross_check(frame, seg)
    tcp[-1] ^= 1
    bad = build_ethernet(peer.stack_mac, peer.mac, ETHERTYPE_IPV4,
                         build_ipv4(peer.ip, peer.stack_ip, 6, bytes(tcp)))
    with pytest.raises(AssertionError):
        cross_check(bad, seg)


def test_arrivals_carry_their_virtual_time():
    peer = TcpPeer(VirtualNetwork(seed=2), peer_options={"delay": 0.25})
    peer.send("S", 1, 0, dport=9, at=3.0)
    rst = peer.expect("RA", ack=2, within=1.0)
    assert rst.time == pytest.approx(3.25)
    assert peer.now == pytest.approx(3.25)
    peer.expect_nothing(within=1.0)
    assert peer.now == pytest.approx(4.25)


def test_expect_reports_silence():
    peer = TcpPeer(VirtualNetwork(seed=3))
    with pytest.raises(AssertionError, match="got nothing"):
        peer.expect("A", within=0.5)
    peer.send("S", 1, 0, dport=9)
    with pytest.raises(AssertionError, match="expected silence"):
        peer.expect_nothing()


def test_batched_sends_arrive_together():
    """run=False queues segments; they reach the stack in one batch at the next run."""
    peer = TcpPeer(VirtualNetwork(seed=4))
    flow = peer.handshake_passive(port=80, isn=1000, wscale=-1)
    for i in range(3):
        peer.send("A", flow.peer_nxt + 1000 * i, flow.stack_nxt, payload=b"x" * 1000,
                  run=False)
    acks = peer.received()
    assert [(a.ack - flow.peer_nxt) & 0xFFFFFFFF for a in acks] == [3000]   # one ACK a batch
