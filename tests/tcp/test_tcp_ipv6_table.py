"""TCP over IPv6 at the table, against a fake host: the same TcpTable and TcpConnection as IPv4
with 16-byte addresses (demultiplexing, bindings with Linux's dual-stack rules, RFC 6528 ISNs,
RFC 6056 ports, SYN cookies, RFC 6691 MSS = MTU - 60, RFC 8201 Packet Too Big), and the frames
it builds (the IPv6 fast path of lwstack.wire.tcp.build_tcp_frame6), every one checked by dpkt
and an independent checksum over the RFC 8200 section 8.1 pseudo-header.

The fake host answers ``route``/``is_local``/``link_header`` as lwstack's host does for a link
whose neighbours are all reachable (``reachable=False``: every segment takes ``send_ip``)."""
import errno
import ipaddress
import random

import dpkt
import pytest

from lwstack.proto.tcp import hashes
from lwstack.proto.tcp.table import ANY, ANY6, TcpTable, overlap
from lwstack.wire.ipv4 import ipv4_template
from lwstack.wire.ipv6 import ipv6_template
from lwstack.wire.tcp import ACK, FIN, RST, SYN, build_options, build_tcp, parse_tcp

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("0200000000ee")


def a6(text):
    return ipaddress.IPv6Address(text).packed


def a4(text):
    return ipaddress.IPv4Address(text).packed


LOCAL6 = a6("fd00::1")
PEER6 = a6("fd00::99")
LOCAL4 = a4("10.0.0.1")
PEER4 = a4("10.0.0.99")


def _sum16(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum_ok(src, dst, segment):
    """RFC 8200 section 8.1 / RFC 9293 3.1 pseudo-header sum, written independently."""
    pseudo = bytes(src) + bytes(dst) + (len(segment).to_bytes(4, "big") + b"\0\0\0\x06"
                                        if len(src) == 16 else
                                        b"\0\x06" + len(segment).to_bytes(2, "big"))
    return _sum16(pseudo + bytes(segment)) == 0xFFFF


class FakeHost:
    """The host callbacks a TcpTable gets, for one IPv6 and one IPv4 address."""

    def __init__(self, mtu=1500, reachable=True, **options):
        self.locals = {LOCAL6, LOCAL4, a6("fd00::2")}
        self.out = []                 # (src, dst, segment bytes, how) in order
        self.table = TcpTable(self.send_ip, self.route, self.is_local, random.Random(7),
                              mtu=mtu, link_header=self.link_header if reachable else None,
                              emit_frame=self.emit_frame, **options)
        self.now = 0.0

    def route(self, dst):
        if dst in self.locals:
            return dst, dst
        return (LOCAL6 if len(dst) == 16 else LOCAL4), dst

    def is_local(self, addr):
        return addr in self.locals

    def send_ip(self, src, dst, segment, now):
        assert checksum_ok(src, dst, segment)
        self.out.append((src, dst, bytes(segment), "ip"))

    def link_header(self, src, dst, protocol, now):
        if len(dst) == 16:
            return MAC_B + MAC_A + b"\x86\xdd" + ipv6_template(src, dst, protocol), 1e9
        return MAC_B + MAC_A + b"\x08\x00" + ipv4_template(src, dst, protocol), 1e9

    def emit_frame(self, frame):
        eth = dpkt.ethernet.Ethernet(bytes(frame))
        if eth.type == dpkt.ethernet.ETH_TYPE_IP6:
            ip = eth.data
            assert ip.nxt == 6 and ip.plen == len(bytes(ip.data)) and ip.hlim == 64
            segment = bytes(frame[54:54 + ip.plen])
        else:
            ip = eth.data
            segment = bytes(frame[34:ip.len + 14])
        assert checksum_ok(bytes(ip.src), bytes(ip.dst), segment)
        # dpkt agrees on the header fields
        tcp = dpkt.tcp.TCP(segment)
        seg = parse_tcp(segment, bytes(ip.src), bytes(ip.dst))
        assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags) == \
            (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags)
        self.out.append((bytes(ip.src), bytes(ip.dst), segment, "frame"))

    # -- test helpers -------------------------------------------------------------------------

    def deliver(self, src, dst, sport, dport, flags, seq=0, ack=0, window=65535, payload=b"",
                **options):
        """A segment from the peer, then the end of the batch."""
        segment = build_tcp(src, dst, sport, dport, seq, ack, flags, window,
                            build_options(**options), payload)
        self.table.receive(src, dst, segment, self.now)
        self.table.poll(self.now)

    def take(self):
        """Everything sent since the last call: [(src, dst, TcpSegment, how)]."""
        out, self.out = self.out, []
        return [(src, dst, parse_tcp(seg, src, dst), how) for src, dst, seg, how in out]

    def advance(self, seconds):
        self.now += seconds
        self.table.poll(self.now)

    def listen(self, addr, port, v6only=False, backlog=16):
        conn = self.table.new_connection()
        conn.local_addr = addr
        conn.v6only = v6only
        self.table.bind(conn, addr, port)
        return self.table.listen(conn, backlog)

    def bound(self, addr, port, v6only=False, reuse=False):
        conn = self.table.new_connection()
        conn.v6only = v6only
        conn.reuse_addr = reuse
        self.table.bind(conn, addr, port)
        return conn


@pytest.fixture
def host():
    return FakeHost()


def handshake_passive(host, listener_addr=ANY6, peer=PEER6, local=LOCAL6, port=80,
                      sport=40000, isn=1000, **syn_options):
    listener = host.listen(listener_addr, port)
    options = {"mss": 1440, "wscale": 7, "sack_permitted": True}
    options.update(syn_options)
    host.deliver(peer, local, sport, port, SYN, isn, **options)
    (src, dst, synack, how), = host.take()
    assert (src, dst) == (local, peer) and synack.flags == SYN | ACK
    host.deliver(peer, local, sport, port, ACK, isn + 1, synack.seq + 1)
    conn = listener.accept()
    assert conn is not None and conn.state == "ESTABLISHED"
    conn.nodelay = True                   # whole buffers out at once (no Nagle in the counts)
    return listener, conn, synack


# -- handshakes and data ---------------------------------------------------------------------------

def test_passive_open_over_ipv6_announces_mtu_minus_60(host):
    _listener, conn, synack = handshake_passive(host)
    # RFC 6691 / RFC 8200: 1500 - 40 (IPv6) - 20 (TCP).
    assert synack.mss == 1440
    assert (conn.local_addr, conn.remote_addr) == (LOCAL6, PEER6)
    assert host.table.connections[(LOCAL6, 80, PEER6, 40000)] is conn
    assert conn.mss == 1440 and conn.sack_ok and conn.snd_wscale == 7


def test_ipv6_data_goes_out_as_whole_frames_and_comes_back_in(host):
    _listener, conn, synack = handshake_passive(host)
    conn.send(b"x" * 4000, host.now)
    sent = host.take()
    assert [len(s.payload) for _, _, s, _ in sent] == [1440, 1440, 1120]
    assert {how for *_, how in sent} == {"frame"}     # the fast path: build_tcp_frame6
    host.deliver(PEER6, LOCAL6, 40000, 80, ACK, 1001, synack.seq + 1 + 4000,
                 payload=b"reply")
    assert conn.recv(100, host.now) == b"reply"
    assert conn.snd_una == conn.snd_nxt


def test_ipv6_without_a_reachable_neighbour_goes_through_send_ip():
    host = FakeHost(reachable=False)
    _listener, conn, _synack = handshake_passive(host)
    conn.send(b"hello", host.now)
    (src, dst, seg, how), = host.take()
    assert (src, dst, bytes(seg.payload), how) == (LOCAL6, PEER6, b"hello", "ip")


def test_peer_without_mss_option_gets_the_ipv6_default_of_1220(host):
    """RFC 9293 section 3.7.1 / RFC 8200 section 8.3: 1220 bytes for IPv6 (536 for IPv4)."""
    listener = host.listen(ANY6, 80)
    host.deliver(PEER6, LOCAL6, 40000, 80, SYN, 1000)
    (_, _, synack, _), = host.take()
    host.deliver(PEER6, LOCAL6, 40000, 80, ACK, 1001, synack.seq + 1)
    assert listener.accept().mss == 1220
    v4 = host.listen(ANY, 81)
    host.deliver(PEER4, LOCAL4, 40000, 81, SYN, 1000)
    (_, _, synack, _), = host.take()
    host.deliver(PEER4, LOCAL4, 40000, 81, ACK, 1001, synack.seq + 1)
    assert v4.accept().mss == 536


def test_active_open_over_ipv6(host):
    conn = host.table.new_connection()
    conn.local_addr = ANY6
    host.table.connect(conn, PEER6, 80, host.now)
    (src, dst, syn, how), = host.take()
    assert (src, dst, syn.flags, syn.dst_port, syn.mss) == (LOCAL6, PEER6, SYN, 80, 1440)
    assert syn.has_timestamps and syn.sack_permitted and syn.wscale == 9
    assert 32768 <= syn.src_port <= 60999 and conn.local_addr == LOCAL6
    host.deliver(PEER6, LOCAL6, 80, syn.src_port, SYN | ACK, 5000, syn.seq + 1, mss=1400)
    (_, _, ack, _), = host.take()
    assert ack.flags == ACK and ack.ack == 5001 and conn.state == "ESTABLISHED"
    assert conn.mss == 1400


def test_isn_and_ephemeral_port_depend_on_the_ipv6_tuple(host):
    """RFC 6528 / RFC 6056: the keyed hashes take 16-byte addresses as they are."""
    secret = host.table.secret
    one = hashes.initial_sequence(secret, LOCAL6, 1000, PEER6, 80, 0.0)
    other = hashes.initial_sequence(secret, LOCAL6, 1000, a6("fd00::98"), 80, 0.0)
    assert one != other
    assert hashes.port_offset(secret, LOCAL6, PEER6, 80) != \
        hashes.port_offset(secret, LOCAL6, a6("fd00::98"), 80)
    # Successive connections to one destination take successive ports (Algorithm 3).
    ports = []
    for _ in range(3):
        conn = host.table.new_connection()
        conn.local_addr = ANY6
        host.table.connect(conn, PEER6, 80, host.now)
        ports.append(conn.local_port)
    assert ports[1] == ports[0] + 1 and ports[2] == ports[1] + 1


def test_rst_for_an_ipv6_segment_without_connection(host):
    host.deliver(PEER6, LOCAL6, 40000, 81, SYN, 1000)
    (src, dst, rst, _), = host.take()
    assert (src, dst, rst.flags, rst.ack) == (LOCAL6, PEER6, RST | ACK, 1001)
    assert host.table.stats["no_connection"] == 1


def test_ipv6_segment_with_an_ipv4_pseudo_header_checksum_is_dropped(host):
    host.listen(ANY6, 80)
    bad = build_tcp(PEER6[:4], LOCAL6[:4], 40000, 80, 1, 0, SYN, 1000)
    host.table.receive(PEER6, LOCAL6, bad, host.now)
    assert host.table.stats["drop.tcp_bad_checksum"] == 1 and not host.take()


# -- dual stack --------------------------------------------------------------------------------------

def test_dual_stack_listener_on_any6_takes_ipv4_connections(host):
    listener = host.listen(ANY6, 80)
    host.deliver(PEER4, LOCAL4, 40000, 80, SYN, 1000, mss=1460)
    (src, dst, synack, how), = host.take()
    # An IPv4 connection underneath: IPv4 frames and the IPv4 MSS.
    assert (src, dst, synack.mss) == (LOCAL4, PEER4, 1460)
    host.deliver(PEER4, LOCAL4, 40000, 80, ACK, 1001, synack.seq + 1)
    conn = listener.accept()
    assert (conn.local_addr, conn.remote_addr, conn.mss) == (LOCAL4, PEER4, 1460)
    conn.send(b"v4", host.now)
    (src, dst, seg, how), = host.take()
    assert (src, dst, how) == (LOCAL4, PEER4, "frame")


def test_v6only_listener_leaves_ipv4_alone(host):
    host.listen(ANY6, 80, v6only=True)
    host.deliver(PEER4, LOCAL4, 40000, 80, SYN, 1000)
    (_, _, seg, _), = host.take()
    assert seg.flags == RST | ACK
    host.deliver(PEER6, LOCAL6, 40000, 80, SYN, 1000)
    (_, _, seg, _), = host.take()
    assert seg.flags == SYN | ACK


def test_an_ipv4_listener_and_a_v6only_listener_share_a_port(host):
    v4 = host.listen(ANY, 80)
    v6 = host.listen(ANY6, 80, v6only=True)
    host.deliver(PEER4, LOCAL4, 40000, 80, SYN, 1000)
    host.deliver(PEER6, LOCAL6, 40001, 80, SYN, 2000)
    (s4, d4, a, _), (s6, d6, b, _) = host.take()
    assert (s4, a.flags, s6, b.flags) == (LOCAL4, SYN | ACK, LOCAL6, SYN | ACK)
    assert v4.syn_queue and v6.syn_queue


def test_specific_address_listener_wins_over_the_wildcard(host):
    specific = host.listen(a6("fd00::2"), 80)
    host.deliver(PEER6, a6("fd00::2"), 40000, 80, SYN, 1000)
    (src, _, seg, _), = host.take()
    assert src == a6("fd00::2") and seg.flags == SYN | ACK and specific.syn_queue
    host.deliver(PEER6, LOCAL6, 40000, 80, SYN, 1000)      # not the bound address
    (_, _, seg, _), = host.take()
    assert seg.flags == RST | ACK


# Linux's answers, checked on kernel sockets (see the bind matrix in
# tests/stack/test_stack_tcp6_socket.py): (first, second, conflict?).
BIND_CASES = [
    ((ANY, False), (ANY6, True), False),        # v4 0.0.0.0 and v6-only :: share a port
    ((ANY, False), (ANY6, False), True),        # dual-stack :: covers 0.0.0.0
    ((ANY6, False), (ANY6, True), True),        # two :: (whatever v6only)
    ((LOCAL4, False), (ANY6, False), True),     # dual-stack :: covers 10.0.0.1
    ((LOCAL4, False), (LOCAL6, False), False),  # different families, specific addresses
    ((LOCAL6, False), (ANY6, True), True),
    ((LOCAL6, False), (a6("fd00::2"), False), False),
    ((LOCAL6, False), (ANY, False), False),
]


@pytest.mark.parametrize("first, second, conflict", BIND_CASES)
def test_bind_conflicts_follow_linux(host, first, second, conflict):
    assert overlap(first[0], first[1], second[0], second[1]) == conflict
    assert overlap(second[0], second[1], first[0], first[1]) == conflict
    host.bound(first[0], 5000, v6only=first[1])
    if conflict:
        with pytest.raises(OSError) as info:
            host.bound(second[0], 5000, v6only=second[1])
        assert info.value.errno == errno.EADDRINUSE
    else:
        host.bound(second[0], 5000, v6only=second[1])


def test_connect_family_mismatches_fail_as_linux(host):
    """An IPv6 socket: v6-only to an IPv4-mapped peer, or bound to an IPv6 address and going to
    an IPv4 peer: ENETUNREACH; bound to an IPv4-mapped address and going to IPv6:
    EAFNOSUPPORT (Linux's tcp_v6_connect)."""
    conn = host.table.new_connection()
    conn.local_addr, conn.v6only = ANY6, True
    with pytest.raises(OSError) as info:
        host.table.connect(conn, PEER4, 80, host.now)
    assert info.value.errno == errno.ENETUNREACH
    conn = host.bound(LOCAL6, 0)
    with pytest.raises(OSError) as info:
        host.table.connect(conn, PEER4, 80, host.now)
    assert info.value.errno == errno.ENETUNREACH
    conn = host.bound(LOCAL4, 0)
    with pytest.raises(OSError) as info:
        host.table.connect(conn, PEER6, 80, host.now)
    assert info.value.errno == errno.EAFNOSUPPORT
    conn = host.table.new_connection()
    conn.local_addr = ANY6                   # dual stack: IPv4 through an IPv6 socket
    host.table.connect(conn, PEER4, 80, host.now)
    assert conn.local_addr == LOCAL4 and host.take()[0][2].flags == SYN


# -- SYN cookies -------------------------------------------------------------------------------------

def test_syn_cookies_over_ipv6_use_the_ipv6_mss_table():
    host = FakeHost()
    listener = host.listen(ANY6, 80)
    listener.syn_backlog = 0                      # every SYN gets a cookie
    host.deliver(PEER6, LOCAL6, 40000, 80, SYN, 1000, mss=1440)
    (src, dst, synack, _), = host.take()
    assert synack.flags == SYN | ACK and synack.mss == 1440 and not listener.syn_queue
    assert host.table.stats["syncookies_sent"] == 1
    host.deliver(PEER6, LOCAL6, 40000, 80, ACK, 1001, synack.seq + 1)
    conn = listener.accept()
    assert conn is not None and conn.mss == 1440 and conn.remote_addr == PEER6
    # RFC 8200's minimum: a peer announcing 1220 keeps 1220 (IPv4's table would say 536).
    cookie, mss = hashes.syn_cookie(b"k" * 16, LOCAL6, 80, PEER6, 1, 0, 1220, 0.0)
    assert mss == 1220
    assert hashes.check_syn_cookie(b"k" * 16, LOCAL6, 80, PEER6, 1, 0, cookie, 1.0) == 1220
    assert hashes.syn_cookie(b"k" * 16, LOCAL4, 80, PEER4, 1, 0, 1220, 0.0)[1] == 536


# -- path MTU (RFC 8201) ------------------------------------------------------------------------------

def test_packet_too_big_lowers_the_mss_and_resends_what_was_in_flight(host):
    _listener, conn, synack = handshake_passive(host)
    cwnd = conn.cc.cwnd
    conn.send(b"y" * 5000, host.now)
    sent = host.take()
    assert [len(s.payload) for _, _, s, _ in sent] == [1440, 1440, 1440, 680]
    first = build_tcp(LOCAL6, PEER6, 80, 40000, sent[0][2].seq, sent[0][2].ack, ACK, 0)
    assert host.table.icmp_error(LOCAL6, PEER6, first[:8], errno.EMSGSIZE, False,
                                 host.now, mtu=1400)
    resent = host.take()
    # 1400 - 60 = 1340 per segment, from SND.UNA on, at once; no congestion response.
    assert [len(s.payload) for _, _, s, _ in resent][:3] == [1340, 1340, 1340]
    assert resent[0][2].seq == synack.seq + 1
    assert conn.mss == 1340 and conn.cc.mss == 1340 and conn.cc.cwnd == cwnd
    assert conn.error == 0 and conn.soft_error == 0    # no error for the application
    assert host.table.stats["pmtu_mss_lowered"] == 1
    # The peer acknowledges everything: recovery ends, new data uses the new MSS.
    host.deliver(PEER6, LOCAL6, 40000, 80, ACK, 1001, synack.seq + 1 + 5000)
    assert conn.recovery is None and conn.snd_una == conn.snd_nxt
    host.take()
    conn.send(b"z" * 3000, host.now)
    assert [len(s.payload) for _, _, s, _ in host.take()] == [1340, 1340, 320]


def test_packet_too_big_never_raises_the_mss_nor_goes_below_1280(host):
    _listener, conn, synack = handshake_passive(host)
    conn.send(b"y" * 3000, host.now)
    host.take()
    quote = build_tcp(LOCAL6, PEER6, 80, 40000, synack.seq + 1, 0, ACK, 0)[:8]
    assert host.table.icmp_error(LOCAL6, PEER6, quote, errno.EMSGSIZE, False, host.now,
                                 mtu=1000)
    assert conn.mss == 1220                       # 1280 - 60 (RFC 8200 section 5)
    host.take()
    assert host.table.icmp_error(LOCAL6, PEER6, quote, errno.EMSGSIZE, False, host.now,
                                 mtu=1500)
    assert conn.mss == 1220 and not host.take()   # RFC 8201 section 4: no increase


def test_packet_too_big_quoting_acknowledged_data_is_ignored(host):
    """RFC 5927 section 4.1: only a quote of data in flight is believed."""
    _listener, conn, synack = handshake_passive(host)
    conn.send(b"y" * 1000, host.now)
    host.take()
    host.deliver(PEER6, LOCAL6, 40000, 80, ACK, 1001, synack.seq + 1 + 1000)
    quote = build_tcp(LOCAL6, PEER6, 80, 40000, synack.seq + 1, 0, ACK, 0)[:8]
    host.table.icmp_error(LOCAL6, PEER6, quote, errno.EMSGSIZE, False, host.now, mtu=1300)
    assert conn.mss == 1440 and host.table.stats["icmp_error_out_of_window"] == 1


def test_host_path_mtu_sets_the_mss_of_new_connections():
    host = FakeHost()
    host.table.path_mtu = lambda dst, now: 1400 if dst == PEER6 else None
    _listener, conn, synack = handshake_passive(host)
    assert synack.mss == 1340 and conn.mss == 1340


def test_fragmentation_needed_lowers_an_ipv4_mss_too(host):
    _listener, conn, synack = handshake_passive(host, ANY, PEER4, LOCAL4, mss=1460)
    conn.send(b"y" * 3000, host.now)
    sent = host.take()
    assert [len(s.payload) for _, _, s, _ in sent] == [1460, 1460, 80]
    quote = build_tcp(LOCAL4, PEER4, 80, 40000, synack.seq + 1, 0, ACK, 0)[:8]
    assert host.table.icmp_error(LOCAL4, PEER4, quote, errno.EMSGSIZE, False, host.now,
                                 mtu=1400)
    assert [len(s.payload) for _, _, s, _ in host.take()] == [1360, 1360, 280]


def test_hard_icmpv6_error_ends_an_ipv6_connect(host):
    conn = host.table.new_connection()
    conn.local_addr = ANY6
    host.table.connect(conn, PEER6, 80, host.now)
    (_, _, syn, _), = host.take()
    quote = build_tcp(LOCAL6, PEER6, syn.src_port, 80, syn.seq, 0, SYN, 0)[:8]
    assert host.table.icmp_error(LOCAL6, PEER6, quote, errno.ECONNREFUSED, True, host.now)
    assert conn.state == "CLOSED" and conn.pop_error() == errno.ECONNREFUSED


def test_ipv6_connection_repr_shows_bracketed_addresses(host):
    _listener, conn, _ = handshake_passive(host)
    assert repr(conn) == "<TcpConnection [fd00::1]:80 -> [fd00::99]:40000 ESTABLISHED>"


def test_close_over_ipv6_sends_fin_and_reaches_time_wait(host):
    _listener, conn, synack = handshake_passive(host)
    conn.close(host.now)
    (_, _, fin, _), = host.take()
    assert fin.flags & FIN
    host.deliver(PEER6, LOCAL6, 40000, 80, FIN | ACK, 1001, fin.seq + 1)
    (_, _, ack, _), = host.take()
    assert ack.flags == ACK and conn.state == "TIME-WAIT"
    host.advance(61)
    assert (LOCAL6, 80, PEER6, 40000) not in host.table.connections
