"""Round-trip client on an lwstack stack, for bench/run.py (the counterpart of lwip_peer -c).

    python bench/lwclient.py --net vde:///tmp/sw --conf ip=10.0.0.9/24 --peer 10.0.0.1 \
        [--modes icmp,udp] [-n 100] [-w 5] [-z 56] [--port 7]

For each mode, ``-w`` warm-up round trips (ARP, first-time paths) and then ``-n`` measured
ones, back to back, each waiting up to 1 s for its answer (after 3 unanswered in a row, the
rest are counted as lost).  Output, one line each::

    icmp rtt_us 183.2         (one per measured round trip)
    icmp median_us 180.0
    icmp lost 0

``icmp`` uses a Linux-style ping socket (the stack fills in identifier and checksum), ``udp``
an echo on ``--port``.  Timing is ``time.perf_counter`` around sendto .. matching recvfrom,
the same span lwip_peer measures.
"""
import argparse
import statistics
import struct
import sys
import time

import lwstack
from lwstack import socket as lwsocket


def round_trips(sock, make, matches, peer, count, warmup, label):
    rtts = []
    lost = 0
    missed_in_a_row = 0
    clock = time.perf_counter
    for i in range(warmup + count):
        if missed_in_a_row >= 3:          # the peer is not answering: do not wait 1 s each
            lost += warmup + count - max(i, warmup)
            break
        seq = i & 0xFFFF
        message = make(seq)
        start = clock()
        sock.sendto(message, peer)
        deadline = start + 1.0
        answered = False
        while not answered:
            left = deadline - clock()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65535)
            except (TimeoutError, lwsocket.timeout):
                break
            answered = matches(data, seq)
        rtt = (clock() - start) * 1e6
        missed_in_a_row = 0 if answered else missed_in_a_row + 1
        if i < warmup:
            continue
        if answered:
            rtts.append(rtt)
            print(f"{label} rtt_us {rtt:.1f}")
        else:
            lost += 1
    if rtts:
        print(f"{label} median_us {statistics.median(rtts):.1f}")
    print(f"{label} lost {lost}", flush=True)
    return rtts


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lwclient")
    parser.add_argument("--net", required=True)
    parser.add_argument("--conf", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--modes", default="icmp,udp")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("-w", type=int, default=5)
    parser.add_argument("-z", type=int, default=56, help="payload bytes")
    parser.add_argument("--port", type=int, default=7)
    args = parser.parse_args(argv)
    payload = bytes(i & 0xFF for i in range(args.z))
    ok = True
    with lwstack.Stack(args.net, args.conf, description="bench lwclient") as stack:
        print("ready", flush=True)
        for mode in args.modes.split(","):
            if mode == "icmp":
                sock = stack.socket(lwsocket.AF_INET, lwsocket.SOCK_DGRAM, lwsocket.IPPROTO_ICMP)

                def make(seq):
                    return struct.pack("!BBHHH", 8, 0, 0, 0, seq) + payload

                def matches(data, seq):
                    return len(data) >= 8 and data[0] == 0 and \
                        struct.unpack_from("!H", data, 6)[0] == seq
                peer = (args.peer, 0)
            elif mode == "udp":
                sock = stack.socket()

                def make(seq):
                    return struct.pack("!H", seq) + payload[2:]

                def matches(data, seq):
                    return len(data) == max(args.z, 2) and \
                        struct.unpack_from("!H", data)[0] == seq
                peer = (args.peer, args.port)
            else:
                parser.error(f"unknown mode {mode!r}")
            with sock:
                ok &= bool(round_trips(sock, make, matches, peer, args.n, args.w, mode))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
