"""Capture the Linux kernel's TCP-over-IPv6 frames used as vectors by test_tcp_ipv6_wire.py.

Not a test: run it by hand, as root, on a Linux host with iproute2 (it creates and removes
two network namespaces, lwtcp6a and lwtcp6b, joined by a veth pair; no other traffic):

    sudo PYTHONPATH=. python3 tests/tcp/tcp6_vectors_capture.py

It prints every captured frame as hex.  Sequence numbers, timestamps and flow labels are
random per run, so a new run gives other bytes of the same shapes; the vectors in the test
file come from one run on Linux 6.18.

1. Kernel to kernel over IPv6 (fd00:78::1 -> fd00:78::2, no DAD), with TSO, GSO and checksum
   offloads off on both veth ends (the ioctls of tests/wire/tcp_vectors_capture.py) so the
   kernel computes every checksum before the capture socket sees the frame: a client sends a
   line, shuts down, reads the server's line.
2. A scripted peer (fd00:78::3 on a MAC no kernel owns) injects lwstack-built SYNs to a
   listener in lwtcp6b (RX checksum offload off, so the kernel verifies our RFC 8200 8.1
   pseudo-header checksum): a SYN with a flipped checksum bit must get no answer, a good one
   a SYN-ACK (printed).
"""
import os
import select
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "wire"))
from tcp_vectors_capture import offloads_off  # noqa: E402

NS_A, NS_B = "lwtcp6a", "lwtcp6b"
IF_A, IF_B = "lwt6a", "lwt6b"
ADDR_A, ADDR_B, ADDR_PEER = "fd00:78::1", "fd00:78::2", "fd00:78::3"
MAC_A, MAC_B, MAC_PEER = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
ETH_P_ALL = 0x0003


def sniff(ifname, seconds):
    """Print every IPv6/TCP frame seen on ``ifname`` (both directions) for ``seconds``."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if select.select([sock], [], [], end - time.monotonic())[0]:
            frame = sock.recv(65536)
            if frame[12:14] == b"\x86\xdd" and frame[20] == 6:
                print(frame.hex(), flush=True)


def server(port):
    """Read until EOF, answer one line, close."""
    listener = socket.create_server((ADDR_B, port), family=socket.AF_INET6)
    print("ready", flush=True)
    listener.settimeout(5)
    conn, _ = listener.accept()
    while conn.recv(65536):
        pass
    conn.sendall(b"lwstack tcp6 reply\n")
    conn.close()


def client(port):
    conn = socket.create_connection((ADDR_B, port))
    conn.sendall(b"lwstack tcp6 vector\n")
    time.sleep(0.2)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(100)
    conn.close()


def peer(port):
    """The scripted peer of step 2 (runs in lwtcp6a); prints the kernel's SYN-ACK."""
    from lwstack.wire import tcp
    from lwstack.wire.ethernet import build_ethernet, parse_mac
    from lwstack.wire.ipv6 import build_ipv6, parse_addr6
    me, kernel = parse_addr6(ADDR_PEER), parse_addr6(ADDR_B)
    my_mac, kernel_mac = parse_mac(MAC_PEER), parse_mac(MAC_B)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
    sock.bind((IF_A, 0))

    def send(segment):
        sock.send(build_ethernet(kernel_mac, my_mac, 0x86DD, build_ipv6(me, kernel, 6, segment)))

    def answer(timeout=1.0):
        end = time.monotonic() + timeout
        while select.select([sock], [], [], max(0.0, end - time.monotonic()))[0]:
            frame = sock.recv(2000)
            if frame[:6] == my_mac and frame[20] == 6:
                print(frame.hex(), flush=True)
                return frame
        return None

    syn = tcp.build_tcp(me, kernel, 40000, port, 1000, 0, tcp.SYN, 64800,
                        tcp.build_options(mss=1440, wscale=7, sack_permitted=True,
                                          timestamps=(7000, 0)))
    bad = bytearray(syn)
    bad[16] ^= 1
    send(bytes(bad))
    assert answer() is None, "the kernel answered a SYN with a bad checksum"
    send(syn)
    assert answer() is not None, "no SYN-ACK for lwstack's SYN"


def run(*args):
    subprocess.run(args, check=True)


def in_ns(ns, *args):
    """Start this script with ``args`` in namespace ``ns``; wait for its "ready" line."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, *args],
                            stdout=subprocess.PIPE, text=True, env=os.environ)
    if args[0] in ("sniff", "server"):
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
            run("ip", "-n", ns, "addr", "add", addr + "/64", "dev", ifname, "nodad")
            run("ip", "-n", ns, "link", "set", ifname, "up")
            in_ns(ns, "offloads", ifname).wait()
        run("ip", "-n", NS_B, "neigh", "replace", ADDR_PEER, "lladdr", MAC_PEER, "dev", IF_B)
        run("ip", "-n", NS_A, "neigh", "replace", ADDR_B, "lladdr", MAC_B, "dev", IF_A)
        run("ip", "-n", NS_B, "neigh", "replace", ADDR_A, "lladdr", MAC_A, "dev", IF_B)
        print("# 1. kernel to kernel")
        capture = in_ns(NS_A, "sniff", IF_A, "2")
        srv = in_ns(NS_B, "server", "5001")
        in_ns(NS_A, "client", "5001").wait()
        srv.wait()
        print(capture.communicate()[0], end="")
        print("# 2. scripted peer")
        srv = in_ns(NS_B, "server", "5002")
        print(in_ns(NS_A, "peer", "5002").communicate()[0], end="")
        srv.kill()
        srv.wait()
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
    elif sys.argv[1] == "client":
        client(int(sys.argv[2]))
    elif sys.argv[1] == "peer":
        peer(int(sys.argv[2]))
