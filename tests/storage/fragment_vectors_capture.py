"""Capture the Linux kernel's IPv4 and IPv6 fragments used as vectors by
test_storage_fragments.py, and check that the kernel reassembles ours.

Not a test: run it by hand, as root, on a Linux host with iproute2 and iputils ping (it
creates and removes two network namespaces, lwfraga and lwfragb, joined by a veth pair; no
other traffic):

    sudo PYTHONPATH=.:tests python3 tests/storage/fragment_vectors_capture.py

1. Kernel fragments.  The veth MTU is 1280 and the IPv4 routes between the namespaces say
   ``mtu lock 576``.  ``ping -M dont -s 1200`` (a 1208-byte ICMP message: three IPv4
   fragments) and ``ping -6 -M dont -s 2500`` (2508 bytes: three IPv6 fragments) go from
   lwfraga to lwfragb; a capture socket in lwfragb prints every fragment, requests and
   replies, as hex.  Identifications and ping's timestamps change per run; the vectors in the
   test file come from one run on Linux 6.18.
2. Our fragments.  From a MAC and addresses no kernel owns (198.18.79.3, fd00:79::3), echo
   requests of 2000 bytes are fragmented by lwstack.storage.fragments (IPv4 at MTU 576,
   IPv6 at 1280), sent last fragment first through AF_PACKET, and the kernel's (fragmented)
   replies are reassembled by FragmentReassembler: the kernel must have reassembled ours to
   answer, and its answer must carry our data back.
"""
import select
import socket
import struct
import time

from netns_support import Namespaces, Sniffer, add_veth, packet_socket, run

NS_A, NS_B = "lwfraga", "lwfragb"
IF_A, IF_B = "lwfa", "lwfb"
V4_A, V4_B, V4_PEER = "198.18.79.1", "198.18.79.2", "198.18.79.3"
V6_A, V6_B, V6_PEER = "fd00:79::1", "fd00:79::2", "fd00:79::3"
MAC_A, MAC_B, MAC_PEER = "02:00:00:00:79:01", "02:00:00:00:79:02", "02:00:00:00:79:03"


def is_fragment(frame):
    """IPv4 with MF or an offset, or IPv6 whose first next header is a Fragment header."""
    if frame[12:14] == b"\x08\x00":
        return struct.unpack_from("!H", frame, 20)[0] & 0x3FFF != 0
    return frame[12:14] == b"\x86\xdd" and frame[20] == 44


def icmpv6_checksum(src, dst, message):
    from lwstack.wire.checksum import internet_checksum
    pseudo = src + dst + struct.pack("!I3xB", len(message), 58)
    return internet_checksum(pseudo + message)


def peer(sock):
    """Step 2, on ``sock`` (every frame on lwfa): our fragments in, the kernel's reassembled
    answers out."""
    from lwstack.storage.fragments import FragmentReassembler, fragment_v4, fragment_v6
    from lwstack.wire import icmpv4
    from lwstack.wire.ethernet import build_ethernet, parse_mac
    from lwstack.wire.ipv4 import parse_addr, parse_ipv4

    my_mac, kernel_mac = parse_mac(MAC_PEER), parse_mac(MAC_B)
    data = bytes((i * 7) & 0xFF for i in range(2000))
    reassembler = FragmentReassembler()

    def answer(timeout=2.0):
        end = time.monotonic() + timeout
        while select.select([sock], [], [], max(0.0, end - time.monotonic()))[0]:
            frame = sock.recv(65536)
            if frame[:6] != my_mac or not is_fragment(frame):
                continue
            if frame[12:14] == b"\x08\x00":
                ip = parse_ipv4(frame, 14)
                flags = ip.flags_fragment
                done = reassembler.add_v4(ip.src, ip.dst, ip.protocol, ip.ident,
                                          (flags & 0x1FFF) * 8, bool(flags & 0x2000),
                                          frame[14 + ip.header_len:14 + ip.total_len], 0.0)
            else:
                length = struct.unpack_from("!H", frame, 18)[0]
                nh, _, off, ident = struct.unpack_from("!BBHI", frame, 54)
                done = reassembler.add_v6(frame[22:38], frame[38:54], ident, off & 0xFFF8,
                                          bool(off & 1), nh, frame[62:54 + length], 0.0)
            if done is not None:
                return done
        return None

    # IPv4: echo request id 0x4c57 seq 1, fragmented at MTU 576, last fragment first.
    me, kernel = parse_addr(V4_PEER), parse_addr(V4_B)
    request = icmpv4.build_echo(icmpv4.TYPE_ECHO_REQUEST, 0x4C57, 1, data)
    packets = fragment_v4(me, kernel, 1, request, 576, ident=0x1234)
    for packet in reversed(packets):
        sock.send(build_ethernet(kernel_mac, my_mac, 0x0800, packet))
    reply = answer()
    ok = reply is not None and reply.payload[0] == 0 and reply.payload[8:] == data
    print(f"# ipv4: {len(packets)} fragments sent, kernel reply reassembled: "
          f"{'ok' if ok else 'FAILED'}", flush=True)

    # IPv6: the same through a Fragment header, MTU 1280.
    me6, kernel6 = socket.inet_pton(socket.AF_INET6, V6_PEER), \
        socket.inet_pton(socket.AF_INET6, V6_B)
    message = bytearray(struct.pack("!BBHHH", 128, 0, 0, 0x4C57, 1) + data)
    struct.pack_into("!H", message, 2, icmpv6_checksum(me6, kernel6, bytes(message)))
    fragments = fragment_v6(bytes(message), 1280, ident=0x89ABCDEF, next_header=58)
    for fragment in reversed(fragments):
        header = struct.pack("!IHBB", 6 << 28, len(fragment), 44, 64) + me6 + kernel6
        sock.send(build_ethernet(kernel_mac, my_mac, 0x86DD, header + fragment))
    reply = answer()
    ok = reply is not None and reply.payload[0] == 129 and reply.payload[8:] == data
    print(f"# ipv6: {len(fragments)} fragments sent, kernel reply reassembled: "
          f"{'ok' if ok else 'FAILED'}", flush=True)


def main():
    with Namespaces(NS_A, NS_B):
        add_veth(NS_A, IF_A, NS_B, IF_B, MAC_A, MAC_B)
        for ns, ifname, v4, v6, other in ((NS_A, IF_A, V4_A, V6_A, V4_B),
                                          (NS_B, IF_B, V4_B, V6_B, V4_A)):
            run("ip", "-n", ns, "link", "set", ifname, "mtu", "1280")
            run("ip", "-n", ns, "addr", "add", v4 + "/24", "dev", ifname)
            run("ip", "-n", ns, "addr", "add", v6 + "/64", "dev", ifname, "nodad")
            run("ip", "-n", ns, "link", "set", ifname, "up")
            run("ip", "-n", ns, "route", "replace", other, "dev", ifname, "mtu", "lock", "576")
        for addr in (V4_PEER, V6_PEER):
            run("ip", "-n", NS_B, "neigh", "replace", addr, "lladdr", MAC_PEER, "dev", IF_B)
        time.sleep(0.5)

        print("# 1. kernel fragments (IPv4 ping -s 1200 at MTU 576, IPv6 ping -s 2500)")
        capture = Sniffer(NS_B, IF_B, 3, keep=is_fragment)
        run("ip", "netns", "exec", NS_A, "ping", "-q", "-c1", "-M", "dont", "-s", "1200", V4_B)
        run("ip", "netns", "exec", NS_A, "ping", "-q", "-6", "-c1", "-M", "dont", "-s", "2500",
            V6_B)
        print(capture.hex_lines(), end="")
        print("# 2. our fragments, reassembled by the kernel")
        with packet_socket(NS_A, IF_A) as sock:
            peer(sock)


if __name__ == "__main__":
    main()
