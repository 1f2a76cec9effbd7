"""Capture the Linux kernel's IPv6 frames used as vectors by test_wire_ipv6.py and
test_wire_icmpv6.py.

Not a test: run it by hand, as root, on a Linux host with iproute2 and radvd (it creates and
removes network namespaces lw6a, lw6b, lw6c, lw6q1 and lw6q2; no other traffic):

    sudo PYTHONPATH=.:tests python3 tests/wire/ipv6_vectors_capture.py

lw6a (02:00:00:00:00:01, fd00:6::1) -- lw6b (02:00:00:00:00:02, fd00:6::2, a router)
-- lw6c (fd00:7::3, on a 1280-byte link).  Checksum offloads are off on every veth, so the
kernel computes every checksum before a frame reaches the capture socket, and it checks the
checksums of what we inject.  A sniffer in lw6a prints every IPv6 frame on its veth, in order:

1. lw6a's interface comes up: duplicate address detection (NS from ::, with a nonce, RFC
   7527), MLDv2 reports for its solicited-node groups, a router solicitation.
2. radvd in lw6b advertises fd00:6::/64 (and a second prefix with finite lifetimes), an MTU,
   RDNSS and DNSSL, default router preference high, O flag.  lw6a does SLAAC.
3. ``ping -6`` lw6a -> lw6b: address resolution (NS/NA, lw6b's NA has the R flag), echo.
4. UDP to a closed port of lw6b (port unreachable); 3000 bytes of UDP (fragmented by lw6a).
5. Frames built by lwstack.wire and injected through AF_PACKET towards lw6b: an echo request
   (lw6b answers, so it accepted our checksum), the same with one bit of its checksum flipped
   (no answer), an unknown destination option with action bits 10 (Parameter Problem code 2)
   and an unknown upper-layer protocol (Parameter Problem code 1).
6. Through lw6b: a 1400-byte ping with DF towards the 1280-byte link (Packet Too Big) and a
   ping with hop limit 1 (Time Exceeded).
7. Apart, lw6q1 (02:00:00:00:00:05) and a bridge in lw6q2 (02:00:00:00:00:06) that is an MLD
   querier: a sniffer in lw6q1 prints the bridge's MLDv2 general queries.

Addresses and MACs are fixed, but the ping identifiers, nonces, fragment identifications and
timestamps change from run to run; the vectors in the tests come from one run on Linux 6.18
with radvd 2.19.
"""
import os
import shutil
import subprocess
import tempfile
import time

from netns_support import Namespaces, Sniffer, add_veth, offloads_off, packet_socket, run

NS_A, NS_B, NS_C, NS_Q1, NS_Q2 = "lw6a", "lw6b", "lw6c", "lw6q1", "lw6q2"
IF_A, IF_BA, IF_BC, IF_C = "lw6a", "lw6ba", "lw6bc", "lw6c"
MAC_A, MAC_B, MAC_BC, MAC_C = ("02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03",
                               "02:00:00:00:00:04")
RADVD_CONF = """
interface lw6ba {
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 10;
    AdvOtherConfigFlag on;
    AdvDefaultPreference high;
    AdvLinkMTU 1500;
    AdvCurHopLimit 64;
    AdvReachableTime 30000;
    AdvRetransTimer 1000;
    AdvDefaultLifetime 1800;
    prefix fd00:6::/64 { AdvOnLink on; AdvAutonomous on; };
    prefix fd00:8::/64 {
        AdvOnLink on; AdvAutonomous off; AdvValidLifetime 7200; AdvPreferredLifetime 3600;
    };
    RDNSS fd00:6::53 fd00:6::54 { AdvRDNSSLifetime 600; };
    DNSSL lan.example example.org { AdvDNSSLLifetime 600; };
};
"""


def is_ipv6(frame):
    """An IPv6 frame."""
    return frame[12:14] == b"\x86\xdd"


def inject(sock):
    """Step 5, on ``sock`` (IPv6 frames on lw6a): frames built by lwstack.wire, sent to lw6b."""
    from lwstack.wire import icmpv6, ipv6
    from lwstack.wire.ethernet import ETHERTYPE_IPV6, build_ethernet, parse_mac
    me, kernel = ipv6.parse_addr6("fd00:6::1"), ipv6.parse_addr6("fd00:6::2")
    my_mac, kernel_mac = parse_mac(MAC_A), parse_mac(MAC_B)

    def send(next_header, payload, hop_limit=64):
        packet = ipv6.build_ipv6(me, kernel, next_header, payload, hop_limit)
        sock.send(build_ethernet(kernel_mac, my_mac, ETHERTYPE_IPV6, packet))
        time.sleep(0.3)

    echo = icmpv6.build_echo(icmpv6.TYPE_ECHO_REQUEST, 0x1234, 1, b"lwstack icmpv6 vector",
                             me, kernel)
    send(ipv6.NH_ICMPV6, echo)
    bad = bytearray(icmpv6.build_echo(icmpv6.TYPE_ECHO_REQUEST, 0x1234, 2, b"bad checksum",
                                      me, kernel))
    bad[3] ^= 1
    send(ipv6.NH_ICMPV6, bytes(bad))
    # Destination Options: an unknown option 0x80 (action 10) with 4 bytes of data.
    options = bytes((ipv6.NH_ICMPV6, 0, 0x80, 4, 1, 2, 3, 4))
    send(ipv6.NH_DSTOPTS, options + icmpv6.build_echo(icmpv6.TYPE_ECHO_REQUEST, 0x1234, 3,
                                                      b"option", me, kernel))
    send(253, b"experimental protocol 253")


def ns_run(ns, *args):
    subprocess.run(["ip", "netns", "exec", ns, *args], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def querier():
    """Step 7: MLDv2 queries from a Linux bridge."""
    with Namespaces(NS_Q1, NS_Q2):
        add_veth(NS_Q1, NS_Q1, NS_Q2, NS_Q2, "02:00:00:00:00:05")
        run("ip", "-n", NS_Q2, "link", "add", "lw6qbr", "address", "02:00:00:00:00:06", "type",
            "bridge", "mcast_querier", "1", "mcast_snooping", "1", "mcast_mld_version", "2",
            "mcast_startup_query_interval", "100", "mcast_startup_query_count", "10",
            "mcast_query_response_interval", "500")
        run("ip", "-n", NS_Q2, "link", "set", NS_Q2, "master", "lw6qbr")
        capture = Sniffer(NS_Q1, NS_Q1, 6, keep=is_ipv6)
        run("ip", "-n", NS_Q2, "link", "set", NS_Q2, "up")
        run("ip", "-n", NS_Q2, "link", "set", "lw6qbr", "up")
        run("ip", "-n", NS_Q1, "link", "set", NS_Q1, "up")
        for frame in capture.join():
            if frame[20] == 0 and frame[62] == 130:        # Hop-by-Hop, then a query
                print(frame.hex())


def main():
    workdir = tempfile.mkdtemp(prefix="lw6")
    radvd = None
    try:
        with Namespaces(NS_A, NS_B, NS_C):
            add_veth(NS_A, IF_A, NS_B, IF_BA, MAC_A, MAC_B)
            add_veth(NS_B, IF_BC, NS_C, IF_C, MAC_BC, MAC_C)
            for ns, ifname in ((NS_A, IF_A), (NS_B, IF_BA), (NS_B, IF_BC), (NS_C, IF_C)):
                offloads_off(ns, ifname)
            ns_run(NS_B, "sysctl", "-w", "net.ipv6.conf.all.forwarding=1")
            for ifname in (IF_BC, IF_C):
                run("ip", "-n", NS_B if ifname == IF_BC else NS_C, "link", "set", ifname,
                    "mtu", "1280")
            capture = Sniffer(NS_A, IF_A, 25, keep=is_ipv6)
            run("ip", "-n", NS_B, "addr", "add", "fd00:6::2/64", "dev", IF_BA, "nodad")
            run("ip", "-n", NS_B, "addr", "add", "fd00:7::2/64", "dev", IF_BC, "nodad")
            run("ip", "-n", NS_C, "addr", "add", "fd00:7::3/64", "dev", IF_C, "nodad")
            for ns, ifname in ((NS_B, IF_BA), (NS_B, IF_BC), (NS_C, IF_C)):
                run("ip", "-n", ns, "link", "set", ifname, "up")
            run("ip", "-n", NS_C, "-6", "route", "add", "default", "via", "fd00:7::2")
            time.sleep(2.5)
            run("ip", "-n", NS_A, "link", "set", IF_A, "up")
            run("ip", "-n", NS_A, "addr", "add", "fd00:6::1/64", "dev", IF_A)
            time.sleep(4)
            conf = os.path.join(workdir, "radvd.conf")
            with open(conf, "w") as f:
                f.write(RADVD_CONF)
            radvd = subprocess.Popen(["ip", "netns", "exec", NS_B, "radvd", "-n", "-C", conf,
                                      "-p", os.path.join(workdir, "pid"), "-m", "stderr"],
                                     stdout=subprocess.PIPE, text=True)
            time.sleep(4)
            radvd.terminate()
            radvd.wait()
            radvd = None
            time.sleep(1)
            ns_run(NS_A, "ping", "-6", "-c", "1", "-s", "16", "-p", "6c77737461636b",
                   "fd00:6::2")
            ns_run(NS_A, "sh", "-c", "printf 'lwstack udp6 vector' | "
                   "python3 -c \"import socket,sys; s=socket.socket(socket.AF_INET6, "
                   "socket.SOCK_DGRAM); s.sendto(sys.stdin.buffer.read(), ('fd00:6::2', 9)); "
                   "s.sendto(bytes(i & 0xFF for i in range(3000)), ('fd00:6::2', 9))\"")
            time.sleep(1.2)
            with packet_socket(NS_A, IF_A, 0x86DD) as sock:
                inject(sock)
            ns_run(NS_A, "ip", "-6", "route", "add", "fd00:7::/64", "via", "fd00:6::2")
            ns_run(NS_A, "ping", "-6", "-c", "1", "-W", "1", "-s", "1400", "-M", "do",
                   "fd00:7::3")
            ns_run(NS_A, "ping", "-6", "-c", "1", "-W", "1", "-t", "1", "-s", "16",
                   "fd00:7::3")
            print(capture.hex_lines(), end="")
        querier()
    finally:
        if radvd is not None:
            radvd.terminate()
            radvd.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
