"""lwping: ping from a fresh stack of its own, printing what iputils ping prints.

    lwping --net vde:///tmp/sw --conf ip=10.0.0.2/24 -c 3 10.0.0.1
    lwping --net vde:///tmp/sw --conf ip=fd00::2/64 -c 3 fd00::1      (IPv6: auto or -6)
    lwping --net vde:///tmp/sw --conf "" -c 3 fe80::1%lw0             (link-local: any zone)

IPv6 waits for the stack's link-local address (and its ``ip=`` addresses) to pass duplicate
address detection before the first request, as the kernel's ping waits for a usable source.
"""
import math
import struct
import sys
import time

import lwcli

#: iputils ping fills the data after its 16-byte timestamp with bytes 0x10, 0x11, ...
_PATTERN = bytes(range(0x10, 0x100)) * 40


def main(argv=None):
    """Exit status 0 if a reply came back, 1 if none did, 2 on other errors (as iputils)."""
    parser = lwcli.ArgumentParser(prog="lwping",
                                  description="Send ICMP echo requests from a stack of its own.")
    parser.add_argument("--net", default="", metavar="LOCATOR",
                        help="switch locator, e.g. vde:///tmp/sw (default: the default switch)")
    parser.add_argument("--conf", required=True, metavar="CONFIG",
                        help="stack configuration, e.g. ip=10.0.0.2/24")
    parser.add_argument("-c", dest="count", type=int, default=0,
                        help="stop after COUNT replies sent (default: until interrupted)")
    parser.add_argument("-i", dest="interval", type=float, default=1.0,
                        help="seconds between requests (default 1)")
    parser.add_argument("-s", dest="size", type=int, default=56,
                        help="data bytes per request (default 56)")
    parser.add_argument("-W", dest="timeout", type=float, default=10.0,
                        help="seconds to wait for the last reply (default 10)")
    parser.add_argument("-q", dest="quiet", action="store_true", help="summary only")
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 only")
    family.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 only")
    parser.add_argument("destination", help="IPv4 or IPv6 address to ping")
    args = parser.parse_args(argv)
    if args.family is None:
        args.family = 6 if ":" in args.destination else 4
    elif (args.family == 6) != (":" in args.destination):
        parser.error(f"{args.destination}: not an IPv{args.family} address")
    if args.count < 0:
        parser.error(f"-c {args.count}: must be positive")
    if not args.interval > 0:
        parser.error(f"-i {args.interval}: must be positive")
    if not 0 <= args.size <= 65507:
        parser.error(f"-s {args.size}: must be 0..65507")
    if not args.timeout > 0:
        parser.error(f"-W {args.timeout}: must be positive")
    return lwcli.run(_ping, args, error_status=2)


def _ping(args):
    import lwstack
    from lwstack import socket as lws

    lwcli.stop_on_sigterm()
    with lwstack.Stack(args.net, args.conf, description=f"lwping {args.conf}") as stack:
        if args.family == 6:
            sock = stack.socket(lws.AF_INET6, lws.SOCK_DGRAM, lws.IPPROTO_ICMPV6)
            sock.setsockopt(lws.IPPROTO_IPV6, lws.IPV6_RECVHOPLIMIT, 1)
            host, _, zone = args.destination.partition("%")
            stack.wait_ipv6_configured(args.timeout)
            sock.connect((host, 0, 0, stack.host.ifindex if zone else 0))
        else:
            sock = stack.socket(lws.AF_INET, lws.SOCK_DGRAM, lws.IPPROTO_ICMP)
            sock.setsockopt(lws.IPPROTO_IP, lws.IP_RECVTTL, 1)
            sock.connect((args.destination, 0))
        session = _Session(sock, args)
        try:
            session.run()
        except KeyboardInterrupt:
            pass
        session.summary()
        return 0 if session.received else 1


class _Session:
    """One ping run: send on schedule, match replies by sequence, keep statistics."""

    def __init__(self, sock, args):
        self.sock = sock
        self.args = args
        self.sent = {}          # sequence -> send time
        self.rtts = []
        self.errors = 0
        self.transmitted = 0
        self.received = 0
        self.duplicates = 0
        self.started = time.monotonic()
        self.source = sock.getsockname()[0]
        self.v6 = args.family == 6
        if self.v6:     # iputils: no space before the parenthesis, no header sizes
            print(f"PING {args.destination}({args.destination}) {args.size} data bytes",
                  flush=True)
        else:
            print(f"PING {args.destination} ({args.destination}) {args.size}({args.size + 28}) "
                  "bytes of data.", flush=True)

    def run(self):
        args = self.args
        next_send = time.monotonic()
        while True:
            now = time.monotonic()
            if (not args.count or self.transmitted < args.count) and now >= next_send:
                self._send()
                next_send = now + args.interval
            if args.count and self.transmitted >= args.count:
                if self.received + self.errors >= args.count:
                    return
                deadline = self.last_sent + args.timeout
                if now >= deadline:
                    return
                wait = deadline - now
            else:
                wait = next_send - now
            self._receive(max(wait, 0.0))

    def _send(self):
        sequence = self.transmitted + 1
        stamp = time.time()
        data = struct.pack("=qq", int(stamp), int((stamp % 1) * 1e6))[:self.args.size]
        data += _PATTERN[:self.args.size - len(data)]
        self.last_sent = time.monotonic()
        self.sent[sequence & 0xFFFF] = self.last_sent
        self.transmitted += 1
        echo_request = 128 if self.v6 else 8
        try:
            self.sock.send(struct.pack("!BBHHH", echo_request, 0, 0, 0, sequence & 0xFFFF) + data)
        except OSError as exc:
            self._error(sequence, exc)

    def _receive(self, timeout):
        self.sock.settimeout(timeout)
        try:
            message, ancdata, _flags, address = self.sock.recvmsg(65535, 64)
        except TimeoutError:
            return
        except OSError as exc:
            # An ICMP error (or a failed ARP resolution) for the oldest request in flight.
            outstanding = [seq for seq in self.sent if self.sent[seq] is not None]
            self._error(min(outstanding) if outstanding else self.transmitted, exc)
            return
        source = address[0]
        if self.v6 and "%" in self.args.destination and address[3]:
            source += "%" + self.args.destination.partition("%")[2]
        sequence = struct.unpack_from("!H", message, 6)[0]
        sent_at = self.sent.get(sequence, False)
        if sent_at is False:
            return  # not ours
        ttl = struct.unpack("i", ancdata[0][2])[0] if ancdata else 0
        if sent_at is None:
            self.duplicates += 1
            suffix = " (DUP!)"
            rtt = None
        else:
            rtt = (time.monotonic() - sent_at) * 1000.0
            self.sent[sequence] = None
            self.received += 1
            self.rtts.append(rtt)
            suffix = ""
        if not self.args.quiet:
            timing = f" time={_format_ms(rtt)} ms" if rtt is not None else ""
            print(f"{len(message)} bytes from {source}: icmp_seq={sequence} ttl={ttl}"
                  f"{timing}{suffix}", flush=True)

    def _error(self, sequence, exc):
        self.errors += 1
        self.sent[sequence & 0xFFFF] = None
        if not self.args.quiet:
            if self.v6:
                text = {113: "Destination unreachable: Address unreachable",
                        101: "Destination unreachable: No route",
                        13: "Destination unreachable: Administratively prohibited"}
            else:
                text = {113: "Destination Host Unreachable", 101: "Destination Net Unreachable"}
            print(f"From {self.source} icmp_seq={sequence} "
                  f"{text.get(exc.errno, exc.strerror)}", flush=True)

    def summary(self):
        elapsed = int((time.monotonic() - self.started) * 1000)
        lost = self.transmitted - self.received
        loss = 100.0 * lost / self.transmitted if self.transmitted else 0.0
        print(f"\n--- {self.args.destination} ping statistics ---")
        parts = [f"{self.transmitted} packets transmitted", f"{self.received} received"]
        if self.duplicates:
            parts.append(f"+{self.duplicates} duplicates")
        if self.errors:
            parts.append(f"+{self.errors} errors")
        print(", ".join(parts) + f", {loss:g}% packet loss, time {elapsed}ms")
        if self.rtts:
            mean = sum(self.rtts) / len(self.rtts)
            mdev = math.sqrt(max(0.0, sum(r * r for r in self.rtts) / len(self.rtts) - mean * mean))
            print(f"rtt min/avg/max/mdev = {min(self.rtts):.3f}/{mean:.3f}/"
                  f"{max(self.rtts):.3f}/{mdev:.3f} ms")
        sys.stdout.flush()


def _format_ms(value):
    """Three significant digits, as iputils prints them (0.512, 1.23, 12.3, 123)."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
