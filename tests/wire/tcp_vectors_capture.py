"""Capture the Linux kernel TCP segments used as vectors by test_wire_tcp.py.

Not a test: run it by hand, as root, on a Linux host with iproute2 (it creates and removes
two network namespaces, lwtcpa and lwtcpb, joined by a veth pair; no other traffic):

    sudo PYTHONPATH=.:tests python3 tests/wire/tcp_vectors_capture.py

It prints every captured frame as hex.  Sequence numbers and timestamps are random per run,
so a new run gives other bytes of the same shapes; the vectors in the test file come from one
run on Linux 6.18.

1. Kernel to kernel: TX checksum offload is turned off on both veth ends (ETHTOOL_STXCSUM 0),
   so the kernel computes every checksum before the frame reaches the capture socket.  A
   client in lwtcpa (198.18.78.1) connects to a server in lwtcpb (198.18.78.2), sends a line,
   then 2896 bytes, then shuts down; the server answers a line and closes.
2. A scripted peer: frames from 198.18.78.3 (a MAC no kernel owns, so the kernel in lwtcpa
   ignores the answers) are built by lwstack.wire.tcp and injected through AF_PACKET towards
   a listener in lwtcpb, whose veth has RX checksum offload off (ETHTOOL_SRXCSUM 0, else veth
   marks injected frames as verified): the kernel checks our checksums.  The peer leaves
   holes in its data so the kernel's duplicate ACKs carry SACK blocks, with and without
   timestamps; a SYN with one checksum bit flipped must get no answer.
"""
import select
import socket
import threading
import time

from netns_support import (Namespaces, Sniffer, add_veth, in_namespace, offloads_off, packet_socket,
                           run)

NS_A, NS_B = "lwtcpa", "lwtcpb"
IF_A, IF_B = "lwta", "lwtb"
ADDR_A, ADDR_B, ADDR_PEER = "198.18.78.1", "198.18.78.2", "198.18.78.3"
MAC_A, MAC_B, MAC_PEER = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def is_tcp4(frame):
    """IPv4 carrying TCP."""
    return frame[12:14] == b"\x08\x00" and frame[23] == 6


def server(listener):
    """Read until EOF, answer one line, close."""
    with listener:
        conn, _ = listener.accept()
        while conn.recv(65536):
            pass
        conn.sendall(b"lwstack tcp reply\n")
        conn.close()


def sink(listener):
    """Accept one connection and hold it open for a while."""
    with listener:
        listener.settimeout(5)
        conn, _ = listener.accept()
        time.sleep(3)
        conn.close()


def client(port):
    conn = socket.create_connection((ADDR_B, port))
    conn.sendall(b"lwstack tcp vector\n")
    time.sleep(0.2)
    conn.sendall(bytes(i & 0xFF for i in range(2896)))
    time.sleep(0.2)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(100)
    conn.close()


def in_background(function, *args):
    """``function(*args)`` in a thread already started."""
    thread = threading.Thread(target=function, args=args)
    thread.start()
    return thread


def peer(sock, port, timestamps):
    """The scripted peer of step 2 on ``sock`` (IPv4 frames on lwta); prints the kernel's
    answers."""
    from lwstack.wire import tcp
    from lwstack.wire.ethernet import build_ethernet, parse_mac
    from lwstack.wire.ipv4 import build_ipv4, parse_addr, parse_ipv4
    me, kernel = parse_addr(ADDR_PEER), parse_addr(ADDR_B)
    my_mac, kernel_mac = parse_mac(MAC_PEER), parse_mac(MAC_B)
    sport = 40000 + port

    def send(segment):
        packet = build_ipv4(me, kernel, 6, segment, ident=1)
        sock.send(build_ethernet(kernel_mac, my_mac, 0x0800, packet))

    def segment(seq, ack, flags, payload=b"", **options):
        if not timestamps:
            options.pop("timestamps", None)
        return tcp.build_tcp(me, kernel, sport, port, seq, ack, flags, 502,
                             tcp.build_options(**options), payload)

    def answer(timeout=1.0):
        end = time.monotonic() + timeout
        while select.select([sock], [], [], max(0.0, end - time.monotonic()))[0]:
            frame = sock.recv(2000)
            if frame[:6] != my_mac:
                continue
            ip = parse_ipv4(frame, 14)
            print(frame.hex(), flush=True)
            return tcp.parse_tcp(frame[14 + ip.header_len:14 + ip.total_len], ip.src, me)
        return None

    iss = 1000
    bad = bytearray(segment(iss, 0, tcp.SYN, mss=1460))
    bad[16] ^= 1
    send(bytes(bad))
    assert answer() is None, "the kernel answered a SYN with a bad checksum"
    send(segment(iss, 0, tcp.SYN, mss=1460, wscale=7, sack_permitted=True,
                 timestamps=(7000, 0)))
    synack = answer()
    irs = synack.seq + 1
    send(segment(iss + 1, irs, tcp.ACK, timestamps=(7001, synack.ts_val)))
    for k in (1, 3, 5, 7, 9):           # segments 0, 2, 4, 6, 8 are "lost"
        time.sleep(0.05)
        send(segment(iss + 1 + 100 * k, irs, tcp.ACK | tcp.PSH, bytes([0x41 + k]) * 100,
                     timestamps=(7002 + k, synack.ts_val)))
        answer()
    send(segment(iss + 1001, irs, tcp.RST))


def main():
    with Namespaces(NS_A, NS_B):
        add_veth(NS_A, IF_A, NS_B, IF_B, MAC_A, MAC_B)
        for ns, ifname, addr in ((NS_A, IF_A, ADDR_A), (NS_B, IF_B, ADDR_B)):
            run("ip", "-n", ns, "addr", "add", addr + "/24", "dev", ifname)
            run("ip", "-n", ns, "link", "set", ifname, "up")
            offloads_off(ns, ifname)
        run("ip", "-n", NS_B, "neigh", "replace", ADDR_PEER, "lladdr", MAC_PEER, "dev", IF_B)

        print("# 1. kernel to kernel")
        capture = Sniffer(NS_A, IF_A, 3, keep=is_tcp4)
        srv = in_background(server, in_namespace(NS_B, socket.create_server, (ADDR_B, 5001)))
        in_namespace(NS_A, client, 5001)
        srv.join()
        print(capture.hex_lines(), end="")
        for port, mode in ((5002, "ts"), (5003, "nots")):
            print(f"# 2. scripted peer, {mode}")
            holder = in_background(sink, in_namespace(NS_B, socket.create_server,
                                                      (ADDR_B, port)))
            with packet_socket(NS_A, IF_A, 0x0800) as sock:
                peer(sock, port, mode == "ts")
            holder.join()


if __name__ == "__main__":
    main()
