"""lwperf: TCP throughput between two stacks of their own (or the host kernel), like iperf,
with every byte checked end to end.

    lwperf --net vde:///tmp/sw --conf ip=10.0.0.1/24 -s [--once]
    lwperf --net vde:///tmp/sw --conf ip=10.0.0.2/24 -c 10.0.0.1 -n 100M [-R] [-P 4]
    lwperf --net kernel -s -B 127.0.0.1          # the host kernel's sockets
    lwperf --net vde:///tmp/sw --conf ip=fd00::2/64 -c fd00::1 -n 100M     # over IPv6

IPv6: a client whose SERVER is an IPv6 address uses an AF_INET6 socket.  A server without
``-B`` listens on ``::``, dual-stack (IPv4 and IPv6 clients, as iperf3 does), and prints its
first IPv4 address, or with ``-6`` its first IPv6 one; ``-B`` an IPv4 address listens on IPv4
only.

Design note: the control protocol
---------------------------------
Each stream is one TCP connection, and the test's control messages travel on the data
connections themselves (no separate control connection as iperf3 has).  Integers are
big-endian; the states of one stream, from the client's side, are::

    connect -> HEADER -> (await ACK) -> data phase -> (await REPORT | send REPORT) -> close

1. The client sends a ``HEADER`` (38 bytes): magic ``LWPF``, version, flags (reverse, timed),
   the stream's index and the number of streams, the block size, a random 64-bit test id
   (the server groups the streams of one test by it), the stream's byte count (``-n``, split
   between the streams so that the total is exactly ``-n``) and the duration (``-t``).
2. The server answers ``ACK`` (``LWOK``) once the header is valid, or closes.
3. The data sender (the client, or the server with ``-R``) sends pseudo-random bytes (a 4 MiB
   pattern, cycled, each stream starting at its own offset) and keeps a running SHA-256 of
   them; after the last byte it sends a ``TRAILER`` (magic ``LWPT``, its byte count and
   digest) and half-closes (``shutdown(SHUT_WR)``).
4. The receiver reads to EOF into one preallocated buffer, hashing everything except the last
   ``TRAILER.size`` bytes, which it holds back until more data proves they are not the end:
   at EOF they are the sender's trailer.  Knowing both sides' count and digest, it decides,
   then sends a ``REPORT`` (magic ``LWPR``, its count and digest, and the times of the first
   byte and of EOF on its own monotonic clock) and closes.
5. The sender compares the report with what it sent.  So both ends learn of a mismatch, and
   both print it and exit 1.

Throughput is the receiver's: per stream, bytes from first byte to EOF; for the test, all
bytes over the span from the earliest first byte to the latest EOF (every time in one test
comes from the same receiver clock, so both ends compute the same figure).

Hashing is part of the measurement on purpose: integrity is the point of the tool.  It costs
each end about 0.56 ms of CPU per MB (SHA-256 with the SHA-NI instructions, 1.8 GB/s; about
2 ms without them).  Measured on a 2-core VM with both ends on the host kernel's loopback,
``-n 2G``: 2.2-3.0 GB/s without hashing, 0.42-0.61 GB/s with it (client 1.47 s user CPU,
server 1.31 s, the hashes being 1.2 s of each; the VM was shared, so the ideal is nearer
1 GB/s).  So on kernel loopback the hash, not TCP, is the ceiling; an lwstack in Python is far
below it.  ``-P`` spreads the hashing over threads (hashlib releases the GIL), which helps when
there are spare cores.
"""
import hashlib
import json
import math
import random
import socket
import struct
import sys
import threading
import time

import lwcli

DEFAULT_PORT = 5201
DEFAULT_BLOCK = 128 * 1024
DEFAULT_SECONDS = 10.0
PATTERN_SIZE = 4 * 1024 * 1024
PATTERN_SEED = 5201
MAX_STREAMS = 128
MAX_BLOCK = PATTERN_SIZE
VERSION = 1

# magic, version, flags, stream index, streams, block, test id, bytes, seconds
HEADER = struct.Struct("!4sBBHHIQQd")
HEADER_MAGIC = b"LWPF"
FLAG_REVERSE = 0x01                      # the server sends
FLAG_TIMED = 0x02                        # the sender stops after `seconds`, not after `bytes`
ACK = b"LWOK"
TRAILER = struct.Struct("!4sQ32s")      # magic, bytes sent, SHA-256 of them
TRAILER_MAGIC = b"LWPT"
REPORT = struct.Struct("!4sQ32sdd")     # magic, bytes received, SHA-256, first byte, EOF
REPORT_MAGIC = b"LWPR"

_SUFFIXES = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
_pattern = None
_print_lock = threading.Lock()


class ProtocolError(Exception):
    """The peer broke the control protocol (bad magic, early EOF, unexpected message)."""


class Params:
    """The parameters of one stream, as the client's HEADER carries them."""

    __slots__ = ("reverse", "timed", "index", "streams", "block", "test_id", "nbytes", "seconds")

    def __init__(self, reverse, timed, index, streams, block, test_id, nbytes, seconds):
        self.reverse = reverse
        self.timed = timed
        self.index = index
        self.streams = streams
        self.block = block
        self.test_id = test_id
        self.nbytes = nbytes
        self.seconds = seconds

    def pack(self):
        """The HEADER bytes for these parameters."""
        flags = (FLAG_REVERSE if self.reverse else 0) | (FLAG_TIMED if self.timed else 0)
        return HEADER.pack(HEADER_MAGIC, VERSION, flags, self.index, self.streams, self.block,
                           self.test_id, self.nbytes, self.seconds)

    @classmethod
    def unpack(cls, data):
        """Parse and validate a HEADER; raise :class:`ProtocolError` if it is not one."""
        magic, version, flags, index, streams, block, test_id, nbytes, seconds = \
            HEADER.unpack(data)
        if magic != HEADER_MAGIC:
            raise ProtocolError("not an lwperf client (bad header magic)")
        if version != VERSION:
            raise ProtocolError(f"protocol version {version} (this lwperf speaks {VERSION})")
        if not 1 <= streams <= MAX_STREAMS or index >= streams:
            raise ProtocolError(f"stream {index} of {streams}")
        if not 1 <= block <= MAX_BLOCK:
            raise ProtocolError(f"block size {block}")
        timed = bool(flags & FLAG_TIMED)
        if timed and not (math.isfinite(seconds) and seconds > 0):
            raise ProtocolError(f"duration {seconds}")
        return cls(bool(flags & FLAG_REVERSE), timed, index, streams, block, test_id, nbytes,
                   seconds)


class StreamResult:
    """How one stream ended: both sides' byte counts and digests, and the receiver's times.

    ``error`` is a message when the stream failed before the two sides could compare.
    """

    __slots__ = ("index", "sent", "received", "first", "last", "error")

    def __init__(self, index, sent=None, received=None, first=0.0, last=0.0, error=None):
        self.index = index
        self.sent = sent            # (count, digest) of the data sender
        self.received = received    # (count, digest) of the receiver
        self.first = first          # receiver's clock: first byte
        self.last = last            # receiver's clock: EOF
        self.error = error

    @property
    def ok(self):
        """True when the receiver got exactly the bytes the sender sent."""
        return self.error is None and self.sent == self.received

    @property
    def nbytes(self):
        """The bytes the receiver got."""
        return self.received[0] if self.received else 0

    @property
    def seconds(self):
        """First byte to EOF at the receiver."""
        return max(self.last - self.first, 0.0)


# -- the data path --------------------------------------------------------------------------

def pattern():
    """The pseudo-random bytes every sender cycles through (made once per process)."""
    global _pattern
    if _pattern is None:
        _pattern = memoryview(random.Random(PATTERN_SEED).randbytes(PATTERN_SIZE))
    return _pattern


def recv_exact(sock, size, what):
    """Read exactly ``size`` bytes; EOF first raises :class:`ProtocolError` naming ``what``."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ProtocolError(f"connection closed by the peer before {what}")
        data += chunk
    return bytes(data)


def send_data(sock, params):
    """Send the stream's bytes and the TRAILER, then half-close; return (count, digest)."""
    data = pattern()
    block = params.block
    offset = (params.index * 2654435761) % PATTERN_SIZE
    digest = hashlib.sha256()
    count = 0
    if params.timed:
        deadline = time.monotonic() + params.seconds
        remaining = -1
    else:
        remaining = params.nbytes
    while remaining:
        if remaining < 0:
            if time.monotonic() >= deadline:
                break
            size = min(block, PATTERN_SIZE - offset)
        else:
            size = min(block, PATTERN_SIZE - offset, remaining)
            remaining -= size
        chunk = data[offset:offset + size]
        sock.sendall(chunk)
        digest.update(chunk)
        count += size
        offset += size
        if offset == PATTERN_SIZE:
            offset = 0
    digest = digest.digest()
    sock.sendall(TRAILER.pack(TRAILER_MAGIC, count, digest))
    sock.shutdown(socket.SHUT_WR)
    return count, digest


def receive_data(sock, block):
    """Read to EOF; return (count, digest, first, last, sender's count, sender's digest).

    The last TRAILER.size bytes seen are held back from the hash until more data arrives, so
    at EOF the held bytes are the sender's trailer.
    """
    tail = TRAILER.size
    buffer = memoryview(bytearray(block + tail))
    digest = hashlib.sha256()
    count = 0
    held = 0
    first = None
    recv_into = sock.recv_into
    while True:
        size = recv_into(buffer[held:])
        if not size:
            break
        if first is None:
            first = time.monotonic()
        total = held + size
        if total > tail:
            digest.update(buffer[:total - tail])
            count += total - tail
            buffer[:tail] = bytes(buffer[total - tail:total])
            held = tail
        else:
            held = total
    last = time.monotonic()
    magic, sent_count, sent_digest = TRAILER.unpack(buffer[:tail])
    if held < tail or magic != TRAILER_MAGIC:
        raise ProtocolError("the data ended without the sender's trailer "
                            f"({count + held} bytes received; did the sender stop early?)")
    return count, digest.digest(), first or last, last, sent_count, sent_digest


def run_sender(sock, params):
    """The sending side of one stream, up to the receiver's REPORT."""
    try:
        sent = send_data(sock, params)
        magic, count, digest, first, last = REPORT.unpack(
            recv_exact(sock, REPORT.size, "its report"))
        if magic != REPORT_MAGIC:
            raise ProtocolError("bad report magic")
        return StreamResult(params.index, sent, (count, digest), first, last)
    except (OSError, ProtocolError) as exc:
        return StreamResult(params.index, error=describe(exc))


def run_receiver(sock, params):
    """The receiving side of one stream: read to EOF, compare, send the REPORT."""
    try:
        count, digest, first, last, sent_count, sent_digest = receive_data(sock, params.block)
        sock.sendall(REPORT.pack(REPORT_MAGIC, count, digest, first, last))
        return StreamResult(params.index, (sent_count, sent_digest), (count, digest),
                            first, last)
    except (OSError, ProtocolError) as exc:
        return StreamResult(params.index, error=describe(exc))


def run_streams(jobs):
    """Run ``(function, sock, params)`` jobs in one thread each; return their results."""
    results = [None] * len(jobs)

    def work(slot, function, sock, params):
        try:
            results[slot] = function(sock, params)
        except Exception as exc:  # a bug must still end the test with one line
            results[slot] = StreamResult(params.index, error=f"internal error: {exc!r}")

    threads = [threading.Thread(target=work, args=(slot, *job), daemon=True,
                                name=f"lwperf stream {job[2].index + 1}")
               for slot, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def describe(exc):
    """A short message for a socket or protocol error (no errno prefix)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- results --------------------------------------------------------------------------------

def summarize(results):
    """(bytes, seconds) of a test: all bytes over the receiver's span of first byte to EOF."""
    total = sum(result.nbytes for result in results)
    active = [result for result in results if result.nbytes]
    if not active:
        return total, 0.0
    return total, max(r.last for r in active) - min(r.first for r in active)


def rate(nbytes, seconds):
    """MB/s (10**6 bytes a second); 0 when no time passed."""
    return nbytes / seconds / 1e6 if seconds > 0 else 0.0


def report(results, params, role, as_json):
    """Print a finished test (per stream, then the summary, or one JSON line); return the exit
    status: 0 when every stream delivered every byte intact, else 1."""
    streams = len(results)
    failed = [result for result in results if result.error is not None]
    with _print_lock:
        if failed:
            for result in failed:
                print(f"lwperf: stream {result.index + 1}/{streams}: {result.error}",
                      file=sys.stderr, flush=True)
            return 1
        sender = (role == "client") != params.reverse
        side = "sender" if sender else "receiver"
        for result in results:
            if not result.ok:
                print(f"lwperf: stream {result.index + 1}/{streams}: sha256 mismatch: the sender "
                      f"sent {result.sent[0]} bytes (sha256 {result.sent[1].hex()[:16]}...), the "
                      f"receiver got {result.received[0]} bytes "
                      f"(sha256 {result.received[1].hex()[:16]}...)", file=sys.stderr, flush=True)
        intact = all(result.ok for result in results)
        nbytes, seconds = summarize(results)
        if as_json:
            print(json.dumps({"bytes": nbytes, "seconds": round(seconds, 6),
                              "mbps": round(rate(nbytes, seconds), 3), "streams": streams,
                              "reverse": params.reverse, "sha256_ok": intact, "role": role}),
                  flush=True)
        else:
            for result in results:
                print(f"lwperf: stream {result.index + 1}/{streams}: {result.nbytes} bytes in "
                      f"{result.seconds:.2f} s = {rate(result.nbytes, result.seconds):.2f} MB/s, "
                      f"sha256 {'ok' if result.ok else 'MISMATCH'}")
            print(f"lwperf: {nbytes} bytes in {seconds:.2f} s = {rate(nbytes, seconds):.2f} MB/s "
                  f"({side}), sha256 {'ok' if intact else 'MISMATCH'}", flush=True)
        return 0 if intact else 1


# -- client ---------------------------------------------------------------------------------

def client(args, new_socket):
    """Connect every stream, run the test, print it; return the exit status."""
    streams = args.streams
    test_id = random.SystemRandom().getrandbits(64)
    timed = args.nbytes is None
    socks = []
    jobs = []
    try:
        for index in range(streams):
            share = 0 if timed else args.nbytes // streams + (index < args.nbytes % streams)
            params = Params(args.reverse, timed, index, streams, args.block, test_id, share,
                            args.time if timed else 0.0)
            sock = new_socket()
            socks.append(sock)
            sock.settimeout(args.connect_timeout)
            try:
                sock.connect((args.client, args.port))
            except OSError as exc:
                print(f"lwperf: connect to {_endpoint(args.client, args.port)}: "
                      f"{describe(exc)}", file=sys.stderr, flush=True)
                return 1
            try:
                sock.sendall(params.pack())
                if recv_exact(sock, len(ACK), "accepting the test") != ACK:
                    raise ProtocolError("not an lwperf server (bad answer)")
            except (OSError, ProtocolError) as exc:
                print(f"lwperf: {_endpoint(args.client, args.port)}: {describe(exc)}",
                      file=sys.stderr, flush=True)
                return 1
            sock.settimeout(args.io_timeout)
            jobs.append((run_receiver if args.reverse else run_sender, sock, params))
        results = run_streams(jobs)
        return report(results, jobs[0][2], "client", args.json)
    finally:
        for sock in socks:
            sock.close()


# -- server ---------------------------------------------------------------------------------

class _Test:
    """The streams of one test, as they arrive and finish on the server."""

    def __init__(self, params, peer):
        self.params = params
        self.peer = peer
        self.joined = 0
        self.results = {}


class _Tests:
    """Tests in progress on the server, grouped by test id; the server's exit status."""

    def __init__(self, once, as_json):
        self.once = once
        self.as_json = as_json
        self.lock = threading.Lock()
        self.running = {}
        self.finished_ids = set()
        self.done = threading.Event()
        self.status = 0

    def join(self, params, peer):
        """The test this stream belongs to, or None when that test has already ended."""
        with self.lock:
            if params.test_id in self.finished_ids:
                return None
            test = self.running.get(params.test_id)
            if test is None:
                test = self.running[params.test_id] = _Test(params, peer)
                if not self.as_json:
                    amount = (f"{params.seconds:g} s" if params.timed
                              else f"{params.nbytes} bytes")
                    with _print_lock:
                        print(f"lwperf: test from {_endpoint(*peer[:2])}: {params.streams} "
                              f"stream(s), {amount} each, "
                              f"{'server' if params.reverse else 'client'} sends", flush=True)
            test.joined += 1
            return test

    def finish(self, test, result):
        """Record one stream's result; print the test when it is complete."""
        with self.lock:
            test.results[result.index] = result
            complete = len(test.results) == test.params.streams or (
                len(test.results) == test.joined
                and any(r.error for r in test.results.values()))
            if not complete:
                return
            del self.running[test.params.test_id]
            self.finished_ids.add(test.params.test_id)
        results = [test.results[index] for index in sorted(test.results)]
        status = report(results, test.params, "server", self.as_json)
        if self.once:
            self.status = status
            self.done.set()


def serve_connection(conn, peer, tests, args):
    """One accepted connection: header, ACK, the data phase, the result."""
    try:
        conn.settimeout(args.io_timeout)
        try:
            params = Params.unpack(recv_exact(conn, HEADER.size, "the test header"))
        except (OSError, ProtocolError, struct.error) as exc:
            with _print_lock:
                print(f"lwperf: {_endpoint(*peer[:2])}: {describe(exc)}", file=sys.stderr,
                      flush=True)
            return
        test = tests.join(params, peer)
        if test is None:
            return
        try:
            conn.sendall(ACK)
        except OSError as exc:
            result = StreamResult(params.index, error=describe(exc))
        else:
            result = (run_sender if params.reverse else run_receiver)(conn, params)
        tests.finish(test, result)
    finally:
        conn.close()


def server(args, new_socket, stack):
    """Listen and serve tests until interrupted (or, with --once, until one test ends)."""
    tests = _Tests(args.once, args.json)
    listener = new_socket()
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((args.bind, args.port))
        listener.listen(2 * MAX_STREAMS)
        port = listener.getsockname()[1] if args.port == 0 else args.port
        address = args.bind
        if address in ("", "0.0.0.0", "::"):
            address = _our_address(stack, args.ipv6 or address == "::")
        print(f"lwperf: server listening on {_endpoint(address, port)}", flush=True)
        listener.settimeout(0.2)
        while not tests.done.is_set():
            try:
                conn, peer = listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            threading.Thread(target=serve_connection, args=(conn, peer, tests, args),
                             daemon=True, name=f"lwperf {_endpoint(*peer[:2])}").start()
        return tests.status
    except KeyboardInterrupt:
        return 0
    finally:
        listener.close()


def _endpoint(host, port):
    """``10.0.0.1:5201`` or ``[fd00::1]:5201``; an IPv4-mapped peer of a dual-stack server
    shows as its IPv4 address."""
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _our_address(stack, ipv6):
    """What a server listening on every address prints: the stack's first address of the
    family (a global IPv6 one before the link-local), or the wildcard."""
    if stack is None:
        return "::" if ipv6 else "0.0.0.0"
    addresses = [a.split("/")[0] for a in stack.addresses]
    v4 = [a for a in addresses if ":" not in a]
    v6 = sorted((a for a in addresses if ":" in a), key=lambda a: a.lower().startswith("fe80:"))
    if ipv6 or not v4:
        return v6[0] if v6 else "::"
    return v4[0]


# -- command line ---------------------------------------------------------------------------

def parse_size(text):
    """A byte count: an integer, optionally with iperf's suffix K (1024), M (1024**2) or G."""
    text = text.strip()
    multiplier = _SUFFIXES.get(text[-1:].upper(), 1)
    digits = text[:-1] if multiplier != 1 else text
    if not digits.isdigit():
        raise ValueError(f"{text!r} is not a byte count (use e.g. 1000000, 64K, 100M, 2G)")
    return int(digits) * multiplier


def _size_option(text):
    import argparse
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser():
    parser = lwcli.ArgumentParser(
        prog="lwperf",
        description="Measure TCP throughput between two stacks of their own (or the host "
                    "kernel), like iperf, checking every byte with SHA-256 on both ends.",
        epilog="Throughput is the receiver's, first byte to EOF; MB/s is 10**6 bytes a second. "
               "Both ends hash every byte with SHA-256 (about 0.6 ms of CPU per MB with SHA-NI, "
               "2 ms without): on the host kernel's loopback the hash, not TCP, is the ceiling "
               "(measured on a 2-core VM: 0.4-0.6 GB/s, against 2-3 GB/s unhashed); -P spreads "
               "it over cores when there are spare ones. "
               "Exit status: 0 ok, 1 test failed (integrity, reset, timeout, refused), 2 usage.")
    parser.add_argument("--net", default="", metavar="LOCATOR",
                        help="switch locator, e.g. vde:///tmp/sw, or 'kernel' for the host "
                             "kernel's sockets (default: the default switch)")
    parser.add_argument("--conf", metavar="CONFIG",
                        help="stack configuration, e.g. ip=10.0.0.2/24 (ignored with "
                             "--net kernel)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("-s", "--server", action="store_true", help="run the server")
    mode.add_argument("-c", "--client", metavar="SERVER", help="run a test against SERVER")
    parser.add_argument("-p", "--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port (default {DEFAULT_PORT}; a server given 0 picks one "
                             "and prints it)")
    parser.add_argument("-B", "--bind", default="", metavar="ADDR",
                        help="server: listen on this address only (default: all)")
    parser.add_argument("-6", "--ipv6", action="store_true",
                        help="IPv6 (implied by an IPv6 SERVER or -B address): a server without "
                             "-B waits for its IPv6 addresses and prints one (it listens on "
                             "both families anyway)")
    parser.add_argument("--once", action="store_true",
                        help="server: exit after one test (all its streams)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("-n", "--bytes", dest="nbytes", type=_size_option, metavar="BYTES",
                        help="client: bytes to send in all, split between the streams "
                             "(suffixes K, M, G: powers of 1024)")
    amount.add_argument("-t", "--time", type=float, metavar="SECONDS",
                        help=f"client: seconds to send (default {DEFAULT_SECONDS:g} when -n "
                             "is not given)")
    parser.add_argument("-R", "--reverse", action="store_true",
                        help="client: the server sends, the client receives")
    parser.add_argument("-P", "--parallel", dest="streams", type=int, default=1,
                        metavar="STREAMS", help="client: parallel connections (default 1)")
    parser.add_argument("-l", "--len", dest="block", type=_size_option, default=DEFAULT_BLOCK,
                        metavar="BLOCK", help="client: bytes per send and per receive "
                                              "(default 128K)")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                        help="client: seconds to wait for each connection (default 10)")
    parser.add_argument("--io-timeout", type=float, default=30.0, metavar="S",
                        help="seconds without progress before a stream fails (default 30)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object on the last line (none when "
                             "a stream breaks before the digests are compared)")
    return parser


def parse_args(argv=None):
    """Parse and check the command line (errors exit 2 with one line)."""
    parser = _parser()
    args = parser.parse_args(argv)
    kernel = args.net == "kernel"
    if not kernel and not args.conf:
        parser.error("--conf is required unless --net kernel")
    client_only = [("-n", args.nbytes is not None), ("-t", args.time is not None),
                   ("-R", args.reverse), ("-P", args.streams != 1),
                   ("-l", args.block != DEFAULT_BLOCK)]
    if args.server:
        for flag, given in client_only:
            if given:
                parser.error(f"{flag} is a client option")
        if not 0 <= args.port <= 65535:
            parser.error(f"-p {args.port}: must be 0..65535")
    else:
        if args.once or args.bind:
            parser.error(f"{'--once' if args.once else '-B'} is a server option")
        if not 1 <= args.port <= 65535:
            parser.error(f"-p {args.port}: must be 1..65535")
        if args.nbytes is None and args.time is None:
            args.time = DEFAULT_SECONDS
        if args.nbytes is not None and args.nbytes < 1:
            parser.error("-n: must be at least 1 byte")
        if args.time is not None and not (math.isfinite(args.time) and args.time > 0):
            parser.error(f"-t {args.time:g}: must be positive")
        if not 1 <= args.streams <= MAX_STREAMS:
            parser.error(f"-P {args.streams}: must be 1..{MAX_STREAMS}")
        if not 1 <= args.block <= MAX_BLOCK:
            parser.error(f"-l {args.block}: must be 1..{MAX_BLOCK}")
    if ":" in (args.client or "") or ":" in args.bind:
        args.ipv6 = True
    for flag, value in (("--connect-timeout", args.connect_timeout),
                        ("--io-timeout", args.io_timeout)):
        if not (math.isfinite(value) and value > 0):
            parser.error(f"{flag} {value:g}: must be positive")
    return args


def main(argv=None):
    """Exit status 0 when the test passed, 1 when it failed, 2 on usage errors."""
    args = parse_args(argv)
    return lwcli.run(_run, args)


def _run(args):
    """Pick the socket factory once (host kernel or a stack of our own); the rest is the same."""
    lwcli.stop_on_sigterm()
    if args.server:
        family = socket.AF_INET if args.bind and ":" not in args.bind else socket.AF_INET6
    else:
        family = socket.AF_INET6 if args.ipv6 else socket.AF_INET
    if args.net == "kernel":
        return _serve_or_test(args, lambda: socket.socket(family, socket.SOCK_STREAM), None)
    import lwstack
    with lwstack.Stack(args.net, args.conf, description=f"lwperf {args.conf}") as stack:
        if args.ipv6:
            # A fresh stack's IPv6 addresses are tentative during duplicate address detection
            # (about a second, RFC 4862): wait for them rather than fail (EADDRNOTAVAIL) or
            # print a wildcard.
            stack.wait_ipv6_configured(10.0)
        return _serve_or_test(args, lambda: stack.socket(family, socket.SOCK_STREAM), stack)


def _serve_or_test(args, new_socket, stack):
    if args.server:
        return server(args, new_socket, stack)
    return client(args, new_socket)


if __name__ == "__main__":
    sys.exit(main())
