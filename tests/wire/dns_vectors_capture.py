"""Capture DNS messages of real tools (BIND's ``dig``, ``dnsmasq``) for test_wire_dns.py.

Run by hand, as root, with iproute2, dnsmasq and dig (Debian: bind9-dnsutils) installed:

    sudo PYTHONPATH=. python3 tests/wire/dns_vectors_capture.py

It creates a network namespace (``lwdnse``) with only its loopback up, runs dnsmasq there on
127.0.0.1:53 with a few static names (no upstream servers, no /etc/hosts), asks it questions
with dig inside the namespace, records every DNS message on the loopback with an AF_PACKET
socket, and removes the namespace.  No traffic leaves the namespace.  It prints each message
as ``label direction transport hex``.  Ids and dig's EDNS cookies are random per run, so a new
run gives other bytes of the same shapes; test_wire_dns.py also calls :func:`capture` when it
runs as root with the tools present, and checks the fresh messages the same way.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

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
DNSMASQ_ARGS = [
    "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
    "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53", "--pid-file=",
    "--user=root", "--local=/lan/", "--domain=lan",
    "--host-record=web.lan,10.77.0.5,fd77::5", "--cname=www.lan,web.lan",
    "--txt-record=txt.lan,hello world,second string",
]
SNIFFER = r"""
import socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sock.bind(("lo", 0))
print("ready", flush=True)
out = open(sys.argv[1], "wb")
while True:
    frame, addr = sock.recvfrom(70000)
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    out.write(len(frame).to_bytes(4, "big") + frame)
    out.flush()
"""


def _run(*argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


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
    hosts = os.path.join(workdir, "hosts")
    with open(hosts, "w") as f:
        for i in range(100):
            f.write(f"10.77.1.{i + 1} big.lan\n")
    frames_path = os.path.join(workdir, "frames")
    procs = []
    results = {}
    _run("ip", "netns", "add", NS)
    try:
        _run("ip", "-n", NS, "link", "set", "lo", "up")
        sniffer = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-c", SNIFFER,
                                    frames_path], stdout=subprocess.PIPE, text=True)
        procs.append(sniffer)
        assert sniffer.stdout.readline().strip() == "ready"
        dnsmasq = subprocess.Popen(["ip", "netns", "exec", NS, "dnsmasq", *DNSMASQ_ARGS,
                                    f"--addn-hosts={hosts}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(dnsmasq)
        for _ in range(100):            # wait until dnsmasq answers
            probe = subprocess.run(["ip", "netns", "exec", NS, "dig", "+short", "+tries=1",
                                    "+time=1", "@127.0.0.1", "web.lan"],
                                   capture_output=True, text=True)
            if probe.stdout.strip() == "10.77.0.5":
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("dnsmasq did not start: " + dnsmasq.stderr.read1().decode())
        time.sleep(0.2)
        start = os.path.getsize(frames_path)
        for label, args in QUERIES:
            before = os.path.getsize(frames_path)
            subprocess.run(["ip", "netns", "exec", NS, "dig", "+tries=1", "+time=2",
                            "@127.0.0.1", *args], capture_output=True, text=True, check=True)
            time.sleep(0.2)
            with open(frames_path, "rb") as f:
                f.seek(max(before, start))
                raw = f.read()
            frames = []
            while len(raw) >= 4:
                size = int.from_bytes(raw[:4], "big")
                frames.append(raw[4:4 + size])
                raw = raw[4 + size:]
            results[label] = _messages(frames)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def available():
    """Why a capture cannot run here (a string), or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    missing = [b for b in ("ip", "dnsmasq", "dig") if shutil.which(b) is None]
    if missing:
        return "missing programs: " + ", ".join(missing)
    if not hasattr(socket, "AF_PACKET"):
        return "needs AF_PACKET (Linux)"
    return None


if __name__ == "__main__":
    reason = available()
    if reason:
        sys.exit(reason)
    for label, messages in capture().items():
        for direction, transport, data in messages:
            print(label, direction, transport, data.hex())
