"""Capture DNS messages of real tools (BIND's ``dig``, ``dnsmasq``) for test_wire_dns.py.

Run by hand, as root, with iproute2, dnsmasq and dig (Debian: bind9-dnsutils) installed:

    sudo PYTHONPATH=.:tests python3 tests/wire/dns_vectors_capture.py

It creates a network namespace (``lwdnse``) with only its loopback up, runs dnsmasq there on
127.0.0.1:53 with a few static names (no upstream servers, no /etc/hosts; see
netns_support.Dnsmasq), asks it questions with dig inside the namespace, records every DNS
message on the loopback with an AF_PACKET socket, and removes the namespace.  No traffic
leaves the namespace.  It prints each message as ``label direction transport hex``.  Ids and
dig's EDNS cookies are random per run, so a new run gives other bytes of the same shapes;
test_wire_dns.py also calls :func:`capture` when it runs as root with the tools present, and
checks the fresh messages the same way.
"""
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import netns_support

NS = "lwdnse"
#: (label, dig arguments).  "big" has 100 addresses: over 1232 bytes, so UDP answers are
#: truncated (TC) and dig retries over TCP by itself.
QUERIES = [
    ("a_cname", ["www.lan", "A"]),
    ("aaaa", ["web.lan", "AAAA"]),
    ("nxdomain", ["nope.lan", "A"]),
    ("nodata", ["txt.lan", "AAAA"]),
    ("txt", ["txt.lan", "TXT"]),
    ("ptr", ["-x", "10.77.0.5"]),
    ("ptr6", ["-x", "fd77::5"]),
    ("refused", ["www.example.com", "A"]),
    ("noedns", ["+noedns", "web.lan", "A"]),
    ("big", ["big.lan", "A"]),
]


def _messages(frames):
    """DNS messages in captured loopback frames: (direction, transport, bytes)."""
    out = []
    streams = {}
    for frame in frames:
        if struct.unpack_from("!H", frame, 12)[0] != 0x0800:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0xF) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        proto = ip[9]
        segment = ip[ihl:total]
        sport, dport = struct.unpack_from("!HH", segment)
        if 53 not in (sport, dport):
            continue
        direction = "query" if dport == 53 else "answer"
        if proto == 17:
            out.append((direction, "udp", bytes(segment[8:])))
        elif proto == 6:
            data = segment[(segment[12] >> 4) * 4:]
            if not data:
                continue
            key = (sport, dport)
            buffer = streams.get(key, b"") + bytes(data)
            while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack_from("!H", buffer)[0]:
                size = struct.unpack_from("!H", buffer)[0]
                out.append((direction, "tcp", buffer[2:2 + size]))
                buffer = buffer[2 + size:]
            streams[key] = buffer
    return out


def capture():
    """Run the capture; return ``{label: [(direction, transport, message bytes), ...]}``."""
    workdir = tempfile.mkdtemp(prefix="lwdns")
    results = {}
    try:
        with netns_support.Dnsmasq(NS, workdir,
                                   ["--txt-record=txt.lan,hello world,second string"]):
            sniffer = netns_support.Sniffer(NS, "lo", outgoing=False)
            try:
                for label, args in QUERIES:
                    before = len(sniffer.frames)
                    subprocess.run(["ip", "netns", "exec", NS, "dig", "+tries=1", "+time=2",
                                    "@127.0.0.1", *args], capture_output=True, text=True,
                                   check=True)
                    time.sleep(0.2)
                    results[label] = _messages(sniffer.frames[before:])
            finally:
                sniffer.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def available():
    """Why a capture cannot run here (a string), or None when it can."""
    return netns_support.missing("dnsmasq", "dig")


if __name__ == "__main__":
    reason = available()
    if reason:
        sys.exit(reason)
    for label, messages in capture().items():
        for direction, transport, data in messages:
            print(label, direction, transport, data.hex())
