#!/usr/bin/env python3
"""What ``fileno()`` readiness costs lwstack sockets (lwstack/readiness.py), through lwswitch.

    python bench/fileno.py [--quick] [--python VENV/bin/python] [--mb MB] [--reps N]
                           [--seconds S]

Method
------
One ``lwswitch`` for the run; per workload a server process and a client process, each with
its own stack on the threaded runtime (10.93.0.1 and 10.93.0.2), started with the measured
interpreter (this checkout by default, or ``--python VENV/bin/python`` for an installed
build).  The variants, run REPS times, interleaved round by round so each sees the same
machine noise; medians with min-max:

- Echo round trips (64-byte request, 64-byte answer, back to back for SECONDS on one
  connection): a blocking client (``sendall``/``recv``, no descriptor), a selectors-driven
  client (non-blocking socket, ``DefaultSelector`` on its ``fileno()``: every answer is a
  readiness flip set by the reactor and cleared by ``recv``), both against a blocking
  thread-per-connection server; and selectors on both ends.  Round trips per second and the
  median round trip.
- Bulk TCP (MB megabytes in 256 KiB writes, the receiver's MB/s, and the CPU seconds of both
  processes per 100 MB): blocking ``sendall``/``recv_into`` on both ends without a
  descriptor; the same with ``fileno()`` called and registered in a selector on both ends (the
  per-batch marking and the flips, never waited on); and both ends driven by selectors
  (non-blocking ``send`` on EVENT_WRITE, ``recv_into`` on EVENT_READ).

The table goes to stdout (not appended to RESULTS.md).  Every process is stopped by its pid.
Timings are never asserted; compare within one run.

The script is also its own worker: ``bench/fileno.py serve --style S ...`` and
``bench/fileno.py client --style S --test {bulk,rr} ...`` (JSON on stdout).
"""
import argparse
import json
import selectors
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

from aio import _result_line, echo, sink   # bench/aio.py: the same blocking handlers

BENCH = Path(__file__).resolve().parent

SERVER_IP = "10.93.0.1"
CLIENT_IP = "10.93.0.2"
BULK_PORT = 5001
ECHO_PORT = 5002
CHUNK = 256 * 1024
REQUEST = 64
#: (row label, test, client style, server style)
VARIANTS = (
    ("echo, blocking client", "rr", "blocking", "blocking"),
    ("echo, selectors client", "rr", "selectors", "blocking"),
    ("echo, selectors both ends", "rr", "selectors", "selectors"),
    ("bulk, blocking, no fileno", "bulk", "blocking", "blocking"),
    ("bulk, blocking, fileno registered", "bulk", "fileno", "fileno"),
    ("bulk, selectors both ends", "bulk", "selectors", "selectors"),
)


# ============================================================================ workers

def _registered(sock, keep):
    """Call ``fileno()`` and register it in a selector that nobody polls (kept in ``keep``)."""
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    keep.append(selector)




def serve_threads(stack, style):
    """Bulk sink and echo, a thread per connection, blocking calls (``fileno``: each socket's
    descriptor registered, never waited on)."""
    from lwstack import socket as lws
    keep = []

    def accept_loop(listener, handler):
        while True:
            conn, _ = listener.accept()
            if style == "fileno":
                _registered(conn, keep)
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    for port, handler in ((BULK_PORT, sink), (ECHO_PORT, echo)):
        listener = lws.create_server(("", port), backlog=64, stack=stack)
        threading.Thread(target=accept_loop, args=(listener, handler), daemon=True).start()


def serve_selectors(stack):
    """Bulk sink and echo in one thread, non-blocking sockets, one DefaultSelector."""
    from lwstack import socket as lws
    selector = selectors.DefaultSelector()
    for port, kind in ((BULK_PORT, "sink"), (ECHO_PORT, "echo")):
        listener = lws.create_server(("", port), backlog=64, stack=stack)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, ("listen", kind))
    buf = bytearray(CHUNK)
    state = {}

    def loop():
        while True:
            for key, events in selector.select():
                role, kind = key.data
                sock = key.fileobj
                if role == "listen":
                    conn, _ = sock.accept()
                    conn.setblocking(False)
                    state[conn] = {"total": 0, "first": None, "out": b"", "eof": False}
                    selector.register(conn, selectors.EVENT_READ, ("conn", kind))
                    continue
                st = state[sock]
                if events & selectors.EVENT_READ and not st["eof"]:
                    try:
                        n = sock.recv_into(buf)
                    except BlockingIOError:
                        n = None
                    if n == 0:
                        st["eof"] = True
                        if kind == "sink":
                            st["out"] = _result_line(
                                st["total"], time.perf_counter() - (st["first"] or 0))
                    elif n:
                        if kind == "sink":
                            if st["first"] is None:
                                st["first"] = time.perf_counter()
                            st["total"] += n
                        else:
                            st["out"] += bytes(buf[:n])
                if st["out"]:
                    try:
                        st["out"] = st["out"][sock.send(st["out"]):]
                    except BlockingIOError:
                        pass
                if st["eof"] and not st["out"]:
                    selector.unregister(sock)
                    sock.close()
                    del state[sock]
                else:
                    selector.modify(sock, (0 if st["eof"] else selectors.EVENT_READ) |
                                    (selectors.EVENT_WRITE if st["out"] else 0), key.data)
    threading.Thread(target=loop, daemon=True).start()


def serve(net, conf, style):
    """Run a server of ``style`` until killed."""
    import lwstack
    stack = lwstack.Stack(net, conf)
    if style == "selectors":
        serve_selectors(stack)
    else:
        serve_threads(stack, style)
    print("ready", flush=True)
    threading.Event().wait()


def client_rr(sock, style, seconds):
    """Echo round trips for ``seconds``: count and median latency."""
    request = b"q" * REQUEST
    latencies = []
    if style == "selectors":
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
    start = time.perf_counter()
    end = start + seconds
    now = start
    while now < end:
        sent_at = now
        got = 0
        if style == "selectors":
            sock.send(request)                    # 64 bytes always fit
            while got < REQUEST:
                selector.select()
                got += len(sock.recv(65536))
        else:
            sock.sendall(request)
            while got < REQUEST:
                got += len(sock.recv(65536))
        now = time.perf_counter()
        latencies.append(now - sent_at)
    return {"requests": len(latencies), "seconds": now - start,
            "median_us": statistics.median(latencies) * 1e6}


def client_bulk(sock, style, nbytes):
    """Send ``nbytes``; the server's figure for them."""
    chunk = memoryview(b"b" * CHUNK)
    cpu = time.process_time()
    keep = []
    if style == "fileno":
        _registered(sock, keep)
    left = nbytes
    if style == "selectors":
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_WRITE)
        offset = 0
        while left:
            selector.select()
            try:
                n = sock.send(chunk[offset:offset + min(left, CHUNK - offset)])
            except BlockingIOError:
                continue
            left -= n
            offset = (offset + n) % CHUNK
        sock.shutdown(socket.SHUT_WR)
        selector.modify(sock, selectors.EVENT_READ)
        line = b""
        while not line.endswith(b"\n"):
            selector.select()
            try:
                piece = sock.recv(256)
            except BlockingIOError:
                continue
            if not piece:
                break
            line += piece
    else:
        while left:
            n = min(left, CHUNK)
            sock.sendall(chunk[:n])
            left -= n
        sock.shutdown(socket.SHUT_WR)
        line = b""
        while not line.endswith(b"\n"):
            piece = sock.recv(256)
            if not piece:
                break
            line += piece
    total, seconds = line.split()
    return {"bytes": int(total), "seconds": float(seconds),
            "client_cpu": time.process_time() - cpu}


def client(net, conf, test, style, nbytes, seconds):
    """One client run; returns the result dict."""
    import lwstack
    from lwstack import socket as lws
    stack = lwstack.Stack(net, conf)
    try:
        port = BULK_PORT if test == "bulk" else ECHO_PORT
        sock = lws.create_connection((SERVER_IP, port), timeout=30, stack=stack)
        sock.settimeout(None)
        if test == "bulk":
            result = client_bulk(sock, style, nbytes)
        else:
            sock.setsockopt(lws.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            result = client_rr(sock, style, seconds)
        sock.close()
        return result
    finally:
        stack.close()


# ============================================================================ harness

def measure(args, python, env, procs, switch_dir):
    """Every variant, interleaved; returns {label: [results]}."""
    import run as bench_run
    results = {}
    net = f"vde://{switch_dir}"
    me = str(Path(__file__).resolve())
    nbytes = int(args.mb * 1e6)
    for rep in range(args.reps):
        for label, test, client_style, server_style in VARIANTS:
            server = procs.start(f"serve-{server_style}-{rep}",
                                 [python, me, "serve", "--style", server_style, "--net", net,
                                  "--conf", f"ip={SERVER_IP}/24"], env=env, ready_text="ready")
            try:
                cpu_before = bench_run.cpu_seconds(server.pid)
                out = bench_run.run_client(
                    [python, me, "client", "--style", client_style, "--test", test,
                     "--net", net, "--conf", f"ip={CLIENT_IP}/24", "--bytes", str(nbytes),
                     "--seconds", str(args.seconds)],
                    env=env, timeout=60 + nbytes / 2e6 + args.seconds)
                result = json.loads(out.strip().splitlines()[-1])
                result["server_cpu"] = bench_run.cpu_seconds(server.pid) - cpu_before
            finally:
                procs.stop(server)
            results.setdefault(label, []).append(result)
            print(f"bench/fileno: {label:36} round {rep + 1}: {summary(test, result)}",
                  flush=True)
    return results


def summary(test, result):
    """One result as text."""
    if test == "bulk":
        return (f"{result['bytes'] / result['seconds'] / 1e6:.1f} MB/s, "
                f"{cpu_per_100mb(result):.2f} CPU s/100 MB")
    return (f"{result['requests'] / result['seconds']:.0f} round trips/s, "
            f"median {result['median_us']:.0f} µs")


def cpu_per_100mb(result):
    return (result["server_cpu"] + result["client_cpu"]) / (result["bytes"] / 1e8)


def _cell(values, fmt):
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(info, args, results, elapsed):
    """The run as a markdown table."""
    lines = [
        f"bench/fileno.py: machine {info['cpu']}, {info['cpus']} CPUs, Linux "
        f"{info['kernel']}, load {info['load']}; Python {info['python']}; accelerated: "
        f"{info['accelerated']}; commit {info['commit']}; {elapsed:.0f} s; median "
        f"(min–max) of {args.reps} rounds",
        "",
        "| variant | round trips/s | median round trip µs | MB/s | CPU s per 100 MB |",
        "|---|---|---|---|---|",
    ]
    for label, test, _c, _s in VARIANTS:
        runs = results.get(label, [])
        if not runs:
            continue
        if test == "rr":
            cells = [_cell([r["requests"] / r["seconds"] for r in runs], "{:.0f}"),
                     _cell([r["median_us"] for r in runs], "{:.0f}"), "", ""]
        else:
            cells = ["", "", _cell([r["bytes"] / r["seconds"] / 1e6 for r in runs], "{:.1f}"),
                     _cell([cpu_per_100mb(r) for r in runs], "{:.2f}")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def harness_main(args):
    """Start lwswitch, measure, print the table (bench/run.py's side_bench)."""
    sys.path.insert(0, str(BENCH))
    import run as bench_run
    return bench_run.side_bench("fileno", args, measure, report)

def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench/fileno.py",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    styles = ("blocking", "fileno", "selectors")
    for name in ("serve", "client"):
        worker = sub.add_parser(name)
        worker.add_argument("--style", choices=styles, required=True)
        worker.add_argument("--net", required=True)
        worker.add_argument("--conf", required=True)
        if name == "client":
            worker.add_argument("--test", choices=("bulk", "rr"), required=True)
            worker.add_argument("--bytes", type=int, default=50_000_000)
            worker.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the stacks (e.g. a venv with the Cython build)")
    parser.add_argument("--mb", type=float, default=None, help="megabytes per bulk run")
    parser.add_argument("--reps", type=int, default=None, help="rounds per variant")
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds per echo run")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.net, args.conf, args.style)
        return 0
    if args.command == "client":
        print(json.dumps(client(args.net, args.conf, args.test, args.style, args.bytes,
                                args.seconds)), flush=True)
        return 0
    if args.mb is None:
        args.mb = 20 if args.quick else 50
    if args.reps is None:
        args.reps = 2 if args.quick else 5
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 3.0
    return harness_main(args)


if __name__ == "__main__":
    sys.exit(main())
