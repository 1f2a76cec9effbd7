"""Capture the Linux kernel TCP segments used as vectors by test_wire_tcp.py.

Not a test: run it by hand, as root, on a Linux host with iproute2 (it creates and removes
two network namespaces, lwtcpa and lwtcpb, joined by a veth pair; no other traffic):

    sudo PYTHONPATH=. python3 tests/wire/tcp_vectors_capture.py

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
import ctypes
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import time

NS_A, NS_B = "lwtcpa", "lwtcpb"
IF_A, IF_B = "lwta", "lwtb"
ADDR_A, ADDR_B, ADDR_PEER = "198.18.78.1", "198.18.78.2", "198.18.78.3"
MAC_A, MAC_B, MAC_PEER = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
SIOCETHTOOL = 0x8946
ETHTOOL_SRXCSUM, ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO = 0x15, 0x17, 0x1F, 0x24
ETH_P_ALL = 0x0003


def ethtool_set(ifname, command, value):
    """One ETHTOOL_S* ioctl (struct ethtool_value) on ``ifname``."""
    buf = ctypes.create_string_buffer(struct.pack("II", command, value), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(buf)) + bytes(16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCETHTOOL, ifreq)


def offloads_off(ifname):
    """No TSO/GSO (one frame per segment) and no TX or RX checksum offload."""
    for command in (ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_STXCSUM, ETHTOOL_SRXCSUM):
        ethtool_set(ifname, command, 0)


def sniff(ifname, seconds):
    """Print every frame seen on ``ifname`` (both directions) for ``seconds``."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if select.select([sock], [], [], end - time.monotonic())[0]:
            frame = sock.recv(65536)
            if frame[12:14] == b"\x08\x00" and frame[23] == 6:
                print(frame.hex(), flush=True)


def server(port):
    """Read until EOF, answer one line, close."""
    listener = socket.create_server((ADDR_B, port))
    print("ready", flush=True)
    conn, _ = listener.accept()
    while conn.recv(65536):
        pass
    conn.sendall(b"lwstack tcp reply\n")
    conn.close()


def sink(port):
    """Accept one connection and hold it open for a while."""
    listener = socket.create_server((ADDR_B, port))
    print("ready", flush=True)
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


def peer(port, timestamps):
    """The scripted peer of step 2 (runs in lwtcpa); prints the kernel's answers."""
    from lwstack.wire import tcp
    from lwstack.wire.ethernet import build_ethernet, parse_mac
    from lwstack.wire.ipv4 import build_ipv4, parse_addr, parse_ipv4
    me, kernel = parse_addr(ADDR_PEER), parse_addr(ADDR_B)
    my_mac, kernel_mac = parse_mac(MAC_PEER), parse_mac(MAC_B)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.bind((IF_A, 0))
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


def run(*args):
    subprocess.run(args, check=True)


def in_ns(ns, *args):
    """Start this script with ``args`` in namespace ``ns``; wait for its "ready" line."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, *args],
                            stdout=subprocess.PIPE, text=True, env=os.environ)
    if args[0] in ("sniff", "server", "sink"):
        assert proc.stdout.readline().strip() == "ready"
    return proc


def main():
    run("ip", "netns", "add", NS_A)
    run("ip", "netns", "add", NS_B)
    try:
        run("ip", "link", "add", IF_A, "netns", NS_A, "type", "veth", "peer", "name", IF_B,
            "netns", NS_B)
        for ns, ifname, mac, addr in ((NS_A, IF_A, MAC_A, ADDR_A), (NS_B, IF_B, MAC_B, ADDR_B)):
            run("ip", "-n", ns, "link", "set", ifname, "address", mac)
            run("ip", "-n", ns, "addr", "add", addr + "/24", "dev", ifname)
            run("ip", "-n", ns, "link", "set", ifname, "up")
            in_ns(ns, "offloads", ifname).wait()
        run("ip", "-n", NS_B, "neigh", "replace", ADDR_PEER, "lladdr", MAC_PEER, "dev", IF_B)

        print("# 1. kernel to kernel")
        capture = in_ns(NS_A, "sniff", IF_A, "3")
        srv = in_ns(NS_B, "server", "5001")
        in_ns(NS_A, "client", "5001").wait()
        srv.wait()
        print(capture.communicate()[0], end="")
        for port, mode in ((5002, "ts"), (5003, "nots")):
            print(f"# 2. scripted peer, {mode}")
            holder = in_ns(NS_B, "sink", str(port))
            print(in_ns(NS_A, "peer", str(port), mode).communicate()[0], end="")
            holder.wait()
    finally:
        subprocess.run(["ip", "netns", "del", NS_A])
        subprocess.run(["ip", "netns", "del", NS_B])


if __name__ == "__main__":
    if len(sys.argv) == 1:
        main()
    elif sys.argv[1] == "offloads":
        offloads_off(sys.argv[2])
    elif sys.argv[1] == "sniff":
        sniff(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1] == "server":
        server(int(sys.argv[2]))
    elif sys.argv[1] == "sink":
        sink(int(sys.argv[2]))
    elif sys.argv[1] == "client":
        client(int(sys.argv[2]))
    elif sys.argv[1] == "peer":
        peer(int(sys.argv[2]), sys.argv[3] == "ts")
