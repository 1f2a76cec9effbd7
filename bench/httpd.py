#!/usr/bin/env python3
"""An unmodified ``http.server`` under ``lwrun`` against the same server on the kernel.

    python bench/httpd.py [--quick] [--python VENV/bin/python] [--no-append] [--reps N]
                          [--seconds S]

Method
------
The same two programs on both sides, started with the measured interpreter (this checkout by
default, or ``--python VENV/bin/python`` for an installed build, as ``bench/run.py``):

- the server: ``python -m http.server PORT --bind ADDR --directory DIR`` (the stdlib's
  ``ThreadingHTTPServer``: a thread per connection, HTTP/1.0, so a connection per request),
  serving a 1 KiB and a 100 KiB file;
- the client: this script's ``client`` mode, stdlib ``http.client`` in THREADS threads, each
  fetching the file over and over for SECONDS (a new connection per request, as the server
  closes it), counting the responses whose body is complete.

``kernel``: both on the host kernel over loopback (127.0.0.1).  ``lwstack``: both under
``lwrun`` (each its own stack, 10.94.0.1 and 10.94.0.2) on one ``lwswitch``.  Rounds
interleave the two sides; medians (min-max) of REPS rounds are reported, with the server's CPU
per request (from /proc).  What the ratio says: the cost of a connection's life (handshake,
request, response, close) through lwstack's Python stack and switch against the kernel's, with
the same Python server and client code on both.  Timings are never asserted; compare ratios.
"""
import argparse
import datetime
import http.client
import statistics
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PORT = 8080
SERVER_IP = "10.94.0.1"
CLIENT_IP = "10.94.0.2"
FILES = {"small": 1024, "large": 100 * 1024}
CONCURRENCY = (1, 4)


# ============================================================================ client mode

def client(host, path, seconds, threads, size):
    """Fetch ``path`` from ``host``:PORT in ``threads`` threads for ``seconds``; print
    ``requests elapsed errors``."""
    counts = [0] * threads
    errors = [0] * threads
    stop = threading.Event()

    def fetch(i):
        while not stop.is_set():
            conn = http.client.HTTPConnection(host, PORT, timeout=10)
            try:
                conn.request("GET", path)
                body = conn.getresponse().read()
                if len(body) == size:
                    counts[i] += 1
                else:
                    errors[i] += 1
            except OSError:
                errors[i] += 1
            finally:
                conn.close()

    workers = [threading.Thread(target=fetch, args=(i,)) for i in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    print(sum(counts), time.perf_counter() - began, sum(errors), flush=True)


# ============================================================================ harness

def measure(args, python, env, procs, switch_dir):
    """Every (side, file, concurrency) cell, sides interleaved; {(side, file, n): [result]}."""
    import run as bench_run
    site = switch_dir.parent / "site"
    site.mkdir()
    for name, size in FILES.items():
        (site / name).write_bytes(bytes(range(256)) * (size // 256))
    net = f"vde://{switch_dir}"
    me = str(Path(__file__).resolve())
    sides = {
        "kernel": ([python, "-m", "http.server", str(PORT), "--bind", "127.0.0.1"],
                   [python, me], "127.0.0.1"),
        "lwstack": ([python, "-m", "lwrun", "--net", net, "--conf", f"ip={SERVER_IP}/24", "--",
                     "-m", "http.server", str(PORT), "--bind", SERVER_IP],
                    [python, "-m", "lwrun", "--net", net, "--conf", f"ip={CLIENT_IP}/24", "--",
                     me], SERVER_IP),
    }
    results = {}
    for rep in range(args.reps):
        for side, (server_argv, client_argv, host) in sides.items():
            server = procs.start(f"httpd-{side}-{rep}",
                                 [*server_argv, "--directory", str(site)],
                                 env=dict(env, PYTHONUNBUFFERED="1"),
                                 ready_text="Serving HTTP")
            try:
                for name, size in FILES.items():
                    for threads in CONCURRENCY:
                        cpu = bench_run.cpu_seconds(server.pid)
                        out = bench_run.run_client(
                            [*client_argv, "client", host, f"/{name}", str(args.seconds),
                             str(threads), str(size)], env=env, timeout=60 + args.seconds)
                        requests, elapsed, errors = out.split()
                        result = {"requests": int(requests), "seconds": float(elapsed),
                                  "errors": int(errors),
                                  "server_cpu": bench_run.cpu_seconds(server.pid) - cpu}
                        results.setdefault((side, name, threads), []).append(result)
                        print(f"bench/httpd: {side:7} {name:5} x{threads} round {rep + 1}: "
                              f"{result['requests'] / result['seconds']:.0f} req/s, "
                              f"{result['errors']} errors", flush=True)
            finally:
                procs.stop(server)
    return results


def _cell(values, fmt):
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} " \
           f"({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(info, args, results, elapsed):
    """The run's section of RESULTS.md, as text."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {now} — http.server under lwrun vs on the kernel "
        f"({'quick' if args.quick else 'full'} run of bench/httpd.py)",
        "",
        f"- machine: {info['cpu']}, {info['cpus']} CPUs, Linux {info['kernel']}, "
        f"host `{info['host']}`, load average at start {info['load']}",
        f"- Python {info['python']}; lwstack accelerated (Cython): {info['accelerated']}; "
        f"vde.core compiled: {info['core_compiled']}; lwstack from `{info['lwstack_from']}`",
        f"- commit {info['commit']}; run time {elapsed:.0f} s",
        "",
        f"Stock `python -m http.server` (a connection per request) and an `http.client` loop in "
        f"1 or 4 threads for {args.seconds:g} s; kernel: loopback; lwstack: both under `lwrun` "
        f"on one lwswitch. Median (min–max) of {args.reps} rounds; requests with a short body "
        "or an error are not counted (errors column: their total).",
        "",
        "| file | client threads | kernel req/s | lwstack req/s | lwstack / kernel "
        "| server CPU µs/req kernel | lwstack | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in FILES:
        for threads in CONCURRENCY:
            def values(side, fn):
                return [fn(r) for r in results.get((side, name, threads), [])]
            rate = lambda r: r["requests"] / r["seconds"]                       # noqa: E731
            cpu = lambda r: r["server_cpu"] / max(r["requests"], 1) * 1e6      # noqa: E731
            kernel, ours = values("kernel", rate), values("lwstack", rate)
            ratio = f"{statistics.median(ours) / statistics.median(kernel):.2f}" \
                if kernel and ours and statistics.median(kernel) else ""
            errors = sum(values("kernel", lambda r: r["errors"])) + \
                sum(values("lwstack", lambda r: r["errors"]))
            lines.append(f"| {name} ({FILES[name] // 1024} KiB) | {threads} | "
                         f"{_cell(kernel, '{:.0f}')} | {_cell(ours, '{:.0f}')} | {ratio} | "
                         f"{_cell(values('kernel', cpu), '{:.0f}')} | "
                         f"{_cell(values('lwstack', cpu), '{:.0f}')} | {errors} |")
    lines.append("")
    return "\n".join(lines) + "\n"


def harness_main(args):
    """Measure both sides, report, append (bench/run.py's side_bench)."""
    sys.path.insert(0, str(BENCH))
    import run as bench_run
    return bench_run.side_bench("httpd", args, measure, report)

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        host, path, seconds, threads, size = argv[1:6]
        client(host, path, float(seconds), int(threads), int(size))
        return 0
    parser = argparse.ArgumentParser(prog="bench/httpd.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for both sides (e.g. a venv with the Cython build)")
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--reps", type=int, default=None, help="rounds per side")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 3.0
    return harness_main(args)


if __name__ == "__main__":
    sys.exit(main())
