#!/usr/bin/env python3
"""lwstack's runtimes side by side, through lwswitch, in one run: the raw stack API, the socket
facade on the threaded runtime, and the native asyncio driver.

    python bench/aio.py [--quick] [--python VENV/bin/python] [--no-append] [--mb MB]
                        [--reps N] [--seconds S]

Method
------
One ``lwswitch`` for the run; for each runtime a server process and a client process, each
with its own stack (10.92.0.1 and 10.92.0.2), started with the measured interpreter (this
checkout by default, or ``--python VENV/bin/python`` for an installed build, as
``bench/run.py``).  The runtimes, same code on both ends:

- ``raw``: the threaded runtime without the socket facade: connections are made with
  sockets, then the data moves through the TCP connection's own API (``conn.send``,
  ``conn.recv_into`` and the driver's condition, under the stack lock): the ceiling the
  facade is measured against (issue 5: the facade keeps at least 80 % of it);
- ``threaded``: :class:`lwstack.Stack` (one reactor thread per stack) with blocking sockets
  (``lwstack.socket``, the stdlib facade); the server runs a thread per connection
  (``sendall``/``recv``);
- ``streams``: :class:`lwstack.asyncio.AsyncioStack` (the stack inside the event loop, no
  thread) with asyncio's ``StreamReader``/``StreamWriter`` (``start_server``,
  ``open_connection``, ``write`` + ``drain``, ``read``/``readexactly``);
- ``protocols``: the same driver with plain asyncio protocols (``data_received``,
  ``transport.write``, ``pause_writing``/``resume_writing``): the transport's own cost.

Workloads, each run REPS times, the runtimes interleaved round by round (every runtime sees
the same machine noise), medians reported with min-max:

- TCP bulk: the client sends MB megabytes (10**6 B) in 256 KiB writes and closes its side;
  the server counts from the first byte to EOF (the receiver's figure, as lwperf) and sends
  the figure back.  Also the CPU seconds both ends spent (the server's from /proc, the
  client's own ``time.process_time``), per 100 MB: what the transfer cost, whatever the
  elapsed time.
- Request/response: 64-byte requests, each answered by a 64-byte echo before the next is
  sent, back to back for SECONDS; on 1 connection (the round-trip latency of the runtime,
  median in microseconds) and on 16 connections at once (16 tasks or 16 threads in the
  client; what the runtime serves in total).

A table goes to stdout and is appended to ``bench/RESULTS.md`` with the date and the machine.
Every process is stopped by its pid.  Timings are never asserted; compare within one run.

The script is also its own worker: ``bench/aio.py serve --mode M --net L --conf C`` and
``bench/aio.py client --mode M --net L --conf C --test {bulk,rr} ...`` (JSON on stdout).
"""
import argparse
import asyncio
import datetime
import json
import statistics
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

SUBNET = "10.92.0"
SERVER_IP = f"{SUBNET}.1"
CLIENT_IP = f"{SUBNET}.2"
BULK_PORT = 5001
ECHO_PORT = 5002
MODES = ("raw", "threaded", "streams", "protocols")
LABELS = {"raw": "threaded runtime (raw stack API)",
          "threaded": "threaded runtime (sockets)",
          "streams": "asyncio driver (streams)",
          "protocols": "asyncio driver (protocols)"}
CHUNK = 256 * 1024
REQUEST = 64
MANY = 16


# ============================================================================ workers

def _result_line(nbytes, seconds):
    return f"{nbytes} {seconds:.9f}\n".encode()


# -- threaded ---------------------------------------------------------------------------

class RawConnection:
    """The data path of a connected lwstack socket without the facade: the TCP connection's
    own calls under the stack lock, waiting on the driver's condition, as the facade's
    ``sendall``/``recv_into`` do minus their checks, flags, timeouts and error mapping."""

    def __init__(self, sock):
        self.sock = sock
        self.conn = sock._conn
        self.driver = sock._driver

    def sendall(self, data):
        """Queue every byte of ``data``, waiting for send-buffer room."""
        view = memoryview(data)
        conn, driver = self.conn, self.driver
        with driver.lock:
            while view:
                if not conn.writable:
                    driver.wait_for(lambda: conn.writable, None)
                n = conn.send(view, driver.now())
                driver.after_call()
                view = view[n:]

    def recv_into(self, buffer):
        """Copy what is queued into ``buffer``, waiting for data; 0 at the end."""
        conn, driver = self.conn, self.driver
        with driver.lock:
            if not conn.readable:
                driver.wait_for(lambda: conn.readable, None)
            n = conn.recv_into(memoryview(buffer), driver.now())
            driver.after_call()
        return n or 0

    def recv(self, size):
        """Like :meth:`recv_into`, into new bytes."""
        buffer = bytearray(size)
        return bytes(buffer[:self.recv_into(buffer)])

    def readline(self):
        """Bytes up to and including a newline (the bulk result line)."""
        line = b""
        while not line.endswith(b"\n"):
            piece = self.recv(256)
            if not piece:
                break
            line += piece
        return line

    def shutdown(self, how):
        """The socket's shutdown (once per connection: not on the data path)."""
        self.sock.shutdown(how)

    def close(self):
        """The socket's close."""
        self.sock.close()


def sink(conn):
    """The bulk receiver on blocking calls: count to EOF from the first byte, send back the
    result line, close."""
    buf = bytearray(CHUNK)
    total, first = 0, None
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        if first is None:
            first = time.perf_counter()
        total += n
    conn.sendall(_result_line(total, time.perf_counter() - (first or 0)))
    conn.close()


def echo(conn):
    """The echo server's connection on blocking calls: echo to EOF, close."""
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)
    conn.close()


def serve_threaded(net, conf, raw=False):
    """Bulk sink and echo server on the threaded runtime (through :class:`RawConnection`
    when ``raw``); runs until killed."""
    import lwstack
    from lwstack import socket as lws
    stack = lwstack.Stack(net, conf)

    def accept_loop(listener, handler):
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handler, args=(RawConnection(conn) if raw else conn,),
                             daemon=True).start()

    threads = []
    for port, handler in ((BULK_PORT, sink), (ECHO_PORT, echo)):
        listener = lws.create_server(("", port), backlog=64, stack=stack)
        thread = threading.Thread(target=accept_loop, args=(listener, handler), daemon=True)
        thread.start()
        threads.append(thread)
    print("ready", flush=True)
    threading.Event().wait()


def client_threaded(net, conf, test, nbytes, seconds, connections, raw=False):
    """The client side on the threaded runtime (through :class:`RawConnection` when
    ``raw``); returns the result dict."""
    import lwstack
    from lwstack import socket as lws
    stack = lwstack.Stack(net, conf)
    try:
        if test == "bulk":
            sock = lws.create_connection((SERVER_IP, BULK_PORT), timeout=30, stack=stack)
            sock.settimeout(None)
            if raw:
                sock = RawConnection(sock)
            chunk = memoryview(bytes(range(256)) * (CHUNK // 256))
            cpu = time.process_time()
            sent = 0
            while sent < nbytes:
                piece = chunk[:min(CHUNK, nbytes - sent)]
                sock.sendall(piece)
                sent += len(piece)
            sock.shutdown(lws.SHUT_WR)
            line = sock.readline() if raw else sock.makefile("rb").readline()
            cpu = time.process_time() - cpu
            sock.close()
            total, elapsed = line.split()
            return {"bytes": int(total), "seconds": float(elapsed), "client_cpu": cpu}
        socks = [lws.create_connection((SERVER_IP, ECHO_PORT), timeout=30, stack=stack)
                 for _ in range(connections)]
        for sock in socks:
            sock.settimeout(None)
        if raw:
            socks = [RawConnection(sock) for sock in socks]
        request = b"q" * REQUEST
        counts = [0] * connections
        latencies = []
        stop = threading.Event()
        start_gate = threading.Barrier(connections + 1)

        def worker(i):
            sock = socks[i]
            for _ in range(50):                      # warm-up (ARP, first segments)
                sock.sendall(request)
                got = 0
                while got < REQUEST:
                    got += len(sock.recv(REQUEST - got))
            start_gate.wait()
            clock = time.perf_counter
            sample = latencies if i == 0 else None
            while not stop.is_set():
                t0 = clock()
                sock.sendall(request)
                got = 0
                while got < REQUEST:
                    got += len(sock.recv(REQUEST - got))
                if sample is not None:
                    sample.append(clock() - t0)
                counts[i] += 1
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
        for thread in workers:
            thread.start()
        start_gate.wait()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for thread in workers:
            thread.join()
        elapsed = time.perf_counter() - began
        for sock in socks:
            sock.close()
        return {"requests": sum(counts), "seconds": elapsed,
                "median_us": statistics.median(latencies) * 1e6 if latencies else None}
    finally:
        stack.close()


# -- asyncio driver ---------------------------------------------------------------------

async def serve_native(net, conf, protocols):
    """Bulk sink and echo server on the asyncio driver; runs until killed."""
    import lwstack.asyncio as lwa
    stack = lwa.AsyncioStack(net, conf)
    if protocols:
        class Sink(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                self.total = 0
                self.first = None

            def data_received(self, data):
                if self.first is None:
                    self.first = time.perf_counter()
                self.total += len(data)

            def eof_received(self):
                self.transport.write(_result_line(self.total,
                                                  time.perf_counter() - (self.first or 0)))
                self.transport.close()
                return True

        class Echo(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.transport.write(data)

        await stack.create_server(Sink, "", BULK_PORT, backlog=64)
        await stack.create_server(Echo, "", ECHO_PORT, backlog=64)
    else:
        async def sink(reader, writer):
            total = 0
            first = None
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if first is None:
                    first = time.perf_counter()
                total += len(data)
            writer.write(_result_line(total, time.perf_counter() - (first or 0)))
            await writer.drain()
            writer.close()

        async def echo(reader, writer):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()
        await stack.start_server(sink, "", BULK_PORT, backlog=64)
        await stack.start_server(echo, "", ECHO_PORT, backlog=64)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def client_native(net, conf, test, nbytes, seconds, connections, protocols):
    """The client side on the asyncio driver; returns the result dict."""
    import lwstack.asyncio as lwa
    stack = lwa.AsyncioStack(net, conf)
    loop = asyncio.get_running_loop()
    chunk = memoryview(bytes(range(256)) * (CHUNK // 256))
    try:
        if test == "bulk":
            if protocols:
                done = loop.create_future()

                class Sender(asyncio.Protocol):
                    def connection_made(self, transport):
                        self.transport = transport
                        self.sent = 0
                        self.reply = bytearray()
                        self.paused = False

                    def pump(self):
                        while not self.paused and self.sent < nbytes:
                            piece = chunk[:min(CHUNK, nbytes - self.sent)]
                            self.transport.write(piece)
                            self.sent += len(piece)
                        if self.sent >= nbytes and not self.transport.is_closing():
                            self.transport.write_eof()

                    def pause_writing(self):
                        self.paused = True

                    def resume_writing(self):
                        self.paused = False
                        self.pump()

                    def data_received(self, data):
                        self.reply += data
                        if self.reply.endswith(b"\n") and not done.done():
                            done.set_result(bytes(self.reply))
                cpu = time.process_time()
                transport, proto = await stack.create_connection(Sender, SERVER_IP, BULK_PORT)
                proto.pump()
                line = await done
                cpu = time.process_time() - cpu
                transport.close()
            else:
                reader, writer = await stack.open_connection(SERVER_IP, BULK_PORT)
                cpu = time.process_time()
                sent = 0
                while sent < nbytes:
                    piece = chunk[:min(CHUNK, nbytes - sent)]
                    writer.write(piece)
                    sent += len(piece)
                    await writer.drain()
                writer.write_eof()
                line = await reader.readline()
                cpu = time.process_time() - cpu
                writer.close()
            total, elapsed = line.split()
            return {"bytes": int(total), "seconds": float(elapsed), "client_cpu": cpu}

        request = b"q" * REQUEST
        counts = [0] * connections
        latencies = []
        stop = loop.create_future()
        clock = time.perf_counter
        if protocols:
            class Pinger(asyncio.Protocol):
                def __init__(self, index):
                    self.index = index
                    self.pending = 0
                    self.t0 = 0.0
                    self.warmup = 50
                    self.warm = loop.create_future()
                    self.running = False

                def connection_made(self, transport):
                    self.transport = transport

                def send(self):
                    self.t0 = clock()
                    self.pending = REQUEST
                    self.transport.write(request)

                def data_received(self, data):
                    self.pending -= len(data)
                    if self.pending > 0:
                        return
                    if self.warmup:
                        self.warmup -= 1
                        if self.warmup:
                            self.send()
                        else:
                            self.warm.set_result(None)
                        return
                    if self.index == 0:
                        latencies.append(clock() - self.t0)
                    counts[self.index] += 1
                    if not stop.done():
                        self.send()
            pingers = []
            for i in range(connections):
                _, proto = await stack.create_connection(lambda i=i: Pinger(i), SERVER_IP,
                                                         ECHO_PORT)
                pingers.append(proto)
            for proto in pingers:
                proto.send()
            await asyncio.gather(*(p.warm for p in pingers))
            began = clock()
            for proto in pingers:
                proto.send()
            await asyncio.sleep(seconds)
            stop.set_result(None)
            elapsed = clock() - began
            for proto in pingers:
                proto.transport.close()
        else:
            pairs = [await stack.open_connection(SERVER_IP, ECHO_PORT)
                     for _ in range(connections)]

            async def worker(i, warm):
                reader, writer = pairs[i]
                for _ in range(50):
                    writer.write(request)
                    await reader.readexactly(REQUEST)
                warm.set_result(None)
                await go
                while not stop.done():
                    t0 = clock()
                    writer.write(request)
                    await reader.readexactly(REQUEST)
                    if i == 0:
                        latencies.append(clock() - t0)
                    counts[i] += 1
            go = loop.create_future()
            warms = [loop.create_future() for _ in range(connections)]
            tasks = [asyncio.create_task(worker(i, warms[i])) for i in range(connections)]
            await asyncio.gather(*warms)
            began = clock()
            go.set_result(None)
            await asyncio.sleep(seconds)
            stop.set_result(None)
            elapsed = clock() - began
            await asyncio.gather(*tasks)
            for _, writer in pairs:
                writer.close()
        return {"requests": sum(counts), "seconds": elapsed,
                "median_us": statistics.median(latencies) * 1e6 if latencies else None}
    finally:
        await stack.aclose(timeout=1.0)


def worker_main(args):
    """``serve`` and ``client`` subcommands (run in the measured interpreter)."""
    if args.command == "serve":
        if args.mode in ("raw", "threaded"):
            serve_threaded(args.net, args.conf, raw=args.mode == "raw")
        else:
            asyncio.run(serve_native(args.net, args.conf, args.mode == "protocols"))
        return 0
    if args.mode in ("raw", "threaded"):
        result = client_threaded(args.net, args.conf, args.test, args.bytes, args.seconds,
                                 args.connections, raw=args.mode == "raw")
    else:
        result = asyncio.run(client_native(args.net, args.conf, args.test, args.bytes,
                                           args.seconds, args.connections,
                                           args.mode == "protocols"))
    print(json.dumps(result), flush=True)
    return 0


# ============================================================================ harness

def measure(args, python, env, procs, switch_dir):
    """Every workload for every runtime, interleaved; returns {(mode, key): [results]}."""
    import run as bench_run
    results = {}
    net = f"vde://{switch_dir}"
    me = str(Path(__file__).resolve())
    nbytes = int(args.mb * 1e6)
    for rep in range(args.reps):
        for mode in MODES:
            server = procs.start(f"serve-{mode}-{rep}",
                                 [python, me, "serve", "--mode", mode, "--net", net,
                                  "--conf", f"ip={SERVER_IP}/24"],
                                 env=env, ready_text="ready")
            try:
                for key, extra, timeout in (
                        ("bulk", ["--test", "bulk", "--bytes", str(nbytes)],
                         60 + nbytes / 2e6),
                        ("rr1", ["--test", "rr", "--seconds", str(args.seconds),
                                 "--connections", "1"], 60 + args.seconds),
                        (f"rr{MANY}", ["--test", "rr", "--seconds", str(args.seconds),
                                       "--connections", str(MANY)], 60 + args.seconds)):
                    cpu_before = bench_run.cpu_seconds(server.pid)
                    out = bench_run.run_client(
                        [python, me, "client", "--mode", mode, "--net", net,
                         "--conf", f"ip={CLIENT_IP}/24", *extra], env=env, timeout=timeout)
                    result = json.loads(out.strip().splitlines()[-1])
                    result["server_cpu"] = bench_run.cpu_seconds(server.pid) - cpu_before
                    results.setdefault((mode, key), []).append(result)
                    print(f"bench/aio: {mode:9} {key:5} round {rep + 1}: {summary(key, result)}",
                          flush=True)
            finally:
                procs.stop(server)
    return results


def summary(key, result):
    """One result as text (progress lines)."""
    if key == "bulk":
        return f"{result['bytes'] / result['seconds'] / 1e6:.1f} MB/s"
    line = f"{result['requests'] / result['seconds']:.0f} req/s"
    if result.get("median_us") is not None:
        line += f", median {result['median_us']:.0f} µs"
    return line


def _cell(values, fmt="{:.1f}"):
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(info, args, results, elapsed):
    """The run's section of RESULTS.md, as text."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    kind = "quick" if args.quick else "full"
    lines = [
        f"## {now} — asyncio driver vs threaded runtime ({kind} run of bench/aio.py)",
        "",
        f"- machine: {info['cpu']}, {info['cpus']} CPUs, Linux {info['kernel']}, "
        f"host `{info['host']}`, load average at start {info['load']}",
        f"- Python {info['python']}; lwstack accelerated (Cython): {info['accelerated']}; "
        f"vde.core compiled: {info['core_compiled']}; lwstack from `{info['lwstack_from']}`",
        f"- commit {info['commit']}; run time {elapsed:.0f} s",
        "",
        f"### Through lwswitch, client and server processes of the same runtime: median "
        f"(min–max) of {args.reps} rounds",
        "",
        f"Bulk: {args.mb:g} MB in 256 KiB writes, the receiver's MB/s (10^6 B/s); CPU: "
        "server + client CPU seconds per 100 MB. Request/response: 64 B echoed, back to back "
        f"for {args.seconds:g} s; latency: median round trip on the single connection. No "
        "CPU pinning: switch, client and server share the CPUs.",
        "",
        "| workload | " + " | ".join(LABELS[m] for m in MODES)
        + " | sockets / raw | streams / sockets |",
        "|---|" + "---|" * (len(MODES) + 2),
    ]

    def values(mode, key, fn):
        return [fn(r) for r in results.get((mode, key), [])]

    rows = (
        ("TCP bulk, MB/s", "bulk", lambda r: r["bytes"] / r["seconds"] / 1e6, "{:.1f}"),
        ("TCP bulk, CPU s per 100 MB", "bulk",
         lambda r: (r["server_cpu"] + r["client_cpu"]) / (r["bytes"] / 1e8), "{:.2f}"),
        ("request/response, 1 connection, req/s", "rr1",
         lambda r: r["requests"] / r["seconds"], "{:.0f}"),
        ("request/response, 1 connection, latency µs", "rr1",
         lambda r: r["median_us"], "{:.0f}"),
        (f"request/response, {MANY} connections, req/s", f"rr{MANY}",
         lambda r: r["requests"] / r["seconds"], "{:.0f}"),
        (f"request/response, {MANY} connections, server CPU µs per request", f"rr{MANY}",
         lambda r: r["server_cpu"] / r["requests"] * 1e6, "{:.0f}"),
    )
    def ratio(label, key, fn, mode, base):
        over, under = values(mode, key, fn), values(base, key, fn)
        if not over or not under or not statistics.median(under):
            return ""
        text = f"{statistics.median(over) / statistics.median(under):.2f}"
        ratios[(label, mode, base)] = text
        return text

    ratios = {}
    for label, key, fn, fmt in rows:
        cells = [_cell(values(mode, key, fn), fmt) for mode in MODES]
        cells += [ratio(label, key, fn, "threaded", "raw"),
                  ratio(label, key, fn, "streams", "threaded")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines) + "\n"


def harness_main(args):
    """Start lwswitch, measure, report, append (bench/run.py's side_bench)."""
    sys.path.insert(0, str(BENCH))
    import run as bench_run
    return bench_run.side_bench("aio", args, measure, report)

def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench/aio.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    for name in ("serve", "client"):
        worker = sub.add_parser(name)
        worker.add_argument("--mode", choices=MODES, required=True)
        worker.add_argument("--net", required=True)
        worker.add_argument("--conf", required=True)
        if name == "client":
            worker.add_argument("--test", choices=("bulk", "rr"), required=True)
            worker.add_argument("--bytes", type=int, default=100_000_000)
            worker.add_argument("--seconds", type=float, default=3.0)
            worker.add_argument("--connections", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the stacks (e.g. a venv with the Cython build)")
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--mb", type=float, default=None, help="megabytes per bulk run")
    parser.add_argument("--reps", type=int, default=None, help="rounds per runtime")
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds per request/response run")
    args = parser.parse_args(argv)
    if args.command:
        return worker_main(args)
    if args.mb is None:
        args.mb = 20 if args.quick else 100
    if args.reps is None:
        args.reps = 2 if args.quick else 5
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 3.0
    return harness_main(args)


if __name__ == "__main__":
    sys.exit(main())
