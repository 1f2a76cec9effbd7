#!/usr/bin/env python3
"""lwstack benchmark: lwswitch against Debian's vde_switch, lwstack against LWIPv6, in one run.

    python bench/run.py [--quick] [--python VENV/bin/python] [--no-append] [--profile]
                        [--tcp-only | --no-tcp] [--tcp-mb MB]

What it measures, side by side and interleaved so that both sides see the same machine noise:

1. Frame forwarding rate of each switch: ``bench/vde_blast`` (C, libvdeplug) plugs a sender
   and a receiver into the switch; the sender blasts unicast frames of 64 and 1514 bytes at
   the receiver's MAC for a fixed time, the receiver counts what arrives.  Closed loop (at most
   WINDOW frames in flight: the switch always has work, and its output never overflows because
   the receiver was not scheduled) gives the forwarding capacity; open loop (the sender as fast
   as the switch reads) gives the behaviour under overload, with drops (frames the switch
   accepted and did not deliver).  Reported: median frames/s of several runs, drops, and the
   switch's CPU use.  On a machine with 2+ CPUs the switch is pinned to CPU 0 and the blaster
   to the others.  ``vde_blast -loop`` (the same two threads over a bare socketpair, no switch)
   is the ceiling of the harness itself: if a switch comes near it, the harness is the
   bottleneck, not the switch.
2. Round trips through each switch, back to back, ICMP echo and UDP echo (port 7):
   lwstack client -> lwstack (``lwecho``), lwstack -> LWIPv6, LWIPv6 -> LWIPv6 and
   LWIPv6 -> lwstack; and raw 64-byte frames bounced between two C endpoints
   (``vde_blast -rtt``), the latency of the switch alone.  The LWIPv6 peer is ``bench/lwip_peer.c`` built against Debian's
   liblwipv6-dev; the lwstack client is ``bench/lwclient.py``.  Samples of several rounds are
   pooled; reported: median and p10-p90 in microseconds.
3. TCP (``bench/tcp.py``, whose docstring has the method): bulk throughput of one stream
   through each switch, lwstack -> lwstack (two ``lwperf`` processes), kernel <-> lwstack (the
   Linux kernel in a network namespace created for the run, its tap plugged into the switch
   by ``vde_plug2tap``), LWIPv6 -> LWIPv6 (``lwip_peer`` TCP sink and source) and kernel ->
   kernel (two namespaces: the ceiling of the path), plus lwstack with MTU 9000 through
   lwswitch; connections per second accepted by an lwstack server and its memory per idle
   connection with 10,000 open.  Rows whose peer is missing say "n/a (why)" (lwstack rows
   until lwstack carries TCP; kernel rows without root); ``--tcp-only`` runs this section
   alone, ``--no-tcp`` skips it.  Needs root for the namespaces; all are deleted afterwards.
4. A table on stdout, appended to ``bench/RESULTS.md`` with the date and the machine
   (CPU, cores, kernel, Python, whether lwstack/vde.core are the Cython build, commit).

Everything runs over unix sockets in a private temporary directory; every process started is
stopped by its pid (and gets SIGTERM if this script dies: PR_SET_PDEATHSIG).  A full run takes
about a minute plus the TCP section's few minutes, ``--quick`` about 20 s plus one or two.
Timings are never asserted: compare the ratios of one run, and quote medians.

By default the lwstack processes run from this checkout (``PYTHONPATH=repo:repo/tools``, pure
Python unless someone compiled in place).  To measure the Cython build, install it into a venv
of your own and pass its interpreter::

    python -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install /path/to/repo
    python bench/run.py --python /tmp/benchvenv/bin/python
"""
import argparse
import ctypes
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tcp

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"

LWECHO_IP = "10.0.0.1"
LWIP_IP = "10.0.0.2"
SWITCHES = ("vde_switch", "lwswitch")
RAW_LABEL = "C -> C, raw 64 B frames (the switch alone)"
PATHS = (  # (client kind, server kind, label)
    ("lwstack", "lwstack", "lwstack -> lwstack"),
    ("lwstack", "lwip", "lwstack -> LWIPv6"),
    ("lwip", "lwip", "LWIPv6 -> LWIPv6"),
    ("lwip", "lwstack", "LWIPv6 -> lwstack"),
)
FRAME_SIZES = (64, 1514)
#: Frames in flight in the closed-loop forwarding test (see vde_blast.c).
WINDOW = 64

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup(cpus=None):
    """preexec_fn: die with us; optionally pin to ``cpus``."""
    def setup():
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus:
            os.sched_setaffinity(0, cpus)
    return setup


# ---------------------------------------------------------------------------------- building

def build(cc):
    """Compile the C helpers into bench/out; return ({name: path or None}, {name: error})."""
    OUT.mkdir(exist_ok=True)
    jobs = {
        "vde_blast": [cc, "-O2", "-Wall", "-o", str(OUT / "vde_blast"), str(BENCH / "vde_blast.c"),
                      "-lvdeplug", "-lpthread"],
        # liblwipv6.so runs lwip_init from its constructor and dlopen()s libvdeplug.so when the
        # first vde interface is added: link -llwipv6 -ldl -lpthread, no -lvdeplug.  (The static
        # /usr/lib/liblwipv6.a works too with -DLWIP_STATIC ... /usr/lib/liblwipv6.a -ldl
        # -lpthread; see bench/Makefile.)
        "lwip_peer": [cc, "-O2", "-Wall", "-o", str(OUT / "lwip_peer"), str(BENCH / "lwip_peer.c"),
                      "-llwipv6", "-ldl", "-lpthread"],
    }
    binaries, errors = {}, {}
    for name, argv in jobs.items():
        source = BENCH / f"{name}.c"
        target = OUT / name
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            binaries[name] = target
            continue
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode == 0:
            binaries[name] = target
        else:
            binaries[name] = None
            errors[name] = (result.stderr.strip().splitlines() or ["failed"])[-1]
            print(f"bench: cannot build {name}: {errors[name]}", file=sys.stderr)
    return binaries, errors


# ---------------------------------------------------------------------------------- processes

class Processes:
    """Every process this run starts; :meth:`stop_all` stops each one by its pid."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.running = []

    def start(self, name, argv, *, env=None, cpus=None, ready_file=None, ready_text=None,
              ready_socket=None, timeout=15.0):
        log_path = self.tmp / f"{name}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                env=env, preexec_fn=_child_setup(cpus), cwd=self.tmp)
        log.close()
        proc.bench_name = name
        proc.log_path = log_path
        self.running.append(proc)
        deadline = time.monotonic() + timeout
        while ready_text or ready_socket:          # neither: the caller waits its own way
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}: "
                                   f"{log_path.read_text(errors='replace').strip()[-500:]}")
            if ready_text and ready_text in log_path.read_text(errors="replace"):
                break
            if ready_socket and _accepts(ready_socket):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout:.0f} s: "
                                   f"{log_path.read_text(errors='replace').strip()[-500:]}")
            time.sleep(0.02)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.terminate()                       # SIGTERM to this pid only
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        if proc.stdin:
            proc.stdin.close()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self):
        for proc in reversed(list(self.running)):
            self.stop(proc)


def _accepts(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def run_client(argv, *, env=None, timeout=60.0):
    """Run a client to completion (killed by pid on timeout); return its stdout."""
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            env=env, preexec_fn=_child_setup(), timeout=timeout)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"{argv[0]} {' '.join(argv[1:3])}...: status {result.returncode}: "
                           f"{result.stderr.strip()[-500:]}")
    return result.stdout


def cpu_seconds(pid):
    """User+system CPU seconds of ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def side_bench(name, args, measure, report):
    """The harness of the side benchmarks (``bench/aio.py``, ``fileno.py``, ``httpd.py``): the
    measured interpreter's environment (``args.python``: this checkout by default), an
    ``lwswitch`` in a temporary directory, ``measure(args, python, env, procs, switch_dir)``,
    every process stopped by its pid (SIGTERM to this script stops them too), then
    ``report(info, args, results, elapsed)``'s text printed and, unless ``args.no_append``
    (absent: never), appended to RESULTS.md.  Returns 0."""
    repo = Path(__file__).resolve().parent.parent
    python = args.python
    if python == sys.executable:
        env = dict(os.environ, PYTHONPATH=f"{repo}:{repo / 'tools'}")
    else:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    info = machine_info(python, env)
    started = time.monotonic()

    def on_term(_signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    tmp = tempfile.mkdtemp(prefix=f"lwbench-{name}-")
    procs = Processes(tmp)
    try:
        switch_dir = Path(tmp) / "sw"
        procs.start("lwswitch", [python, "-m", "lwswitch", "-s", str(switch_dir)], env=env,
                    ready_socket=switch_dir / "ctl")
        results = measure(args, python, env, procs, switch_dir)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    text = report(info, args, results, time.monotonic() - started)
    print()
    print(text)
    if not getattr(args, "no_append", True):
        with open(RESULTS, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
        print(f"bench/{name}: appended to {RESULTS}")
    return 0


# ---------------------------------------------------------------------------------- machine

def machine_info(python, env):
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    probe = subprocess.run(
        [python, "-c", "import sys, lwstack, vde.core as c; print(lwstack.accelerated, "
                       "not c.__file__.endswith('.py'), sys.version.split()[0], lwstack.__file__)"],
        capture_output=True, text=True, env=env, cwd="/")
    if probe.returncode == 0:
        accel, core_compiled, pyver, where = probe.stdout.split()
    else:
        accel, core_compiled, pyver, where = "?", "?", "?", probe.stderr.strip()[-200:]

    def dpkg_version(package):
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                                capture_output=True, text=True)
        return result.stdout.strip() or "?"

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
        "python": pyver, "accelerated": accel, "core_compiled": core_compiled,
        "lwstack_from": where, "vde2": dpkg_version("vde2"),
        "lwipv6": dpkg_version("liblwipv6-dev"),
        "commit": commit + ("+dirty" if dirty else ""),
        "host": platform.node(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---------------------------------------------------------------------------------- measuring

def quantile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = q * (len(ordered) - 1)
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def parse_blast(text):
    match = re.search(r"sent (\d+) received (\d+) elapsed_s ([\d.]+) rate_fps ([\d.]+) "
                      r"send_cpu_s ([\d.]+) recv_cpu_s ([\d.]+) stalls (\d+)", text)
    if not match:
        raise RuntimeError(f"vde_blast said: {text.strip()[-300:]}")
    sent, received = int(match.group(1)), int(match.group(2))
    return {"sent": sent, "received": received, "elapsed": float(match.group(3)),
            "fps": float(match.group(4)), "drop": (sent - received) / sent if sent else 0.0,
            "stalls": int(match.group(7))}


def blast(binary, target, size, seconds, window, cpus):
    out = subprocess.run([str(binary), target, str(size), str(seconds), str(window)],
                         capture_output=True, text=True, timeout=seconds + 20,
                         preexec_fn=_child_setup(cpus)).stdout
    return parse_blast(out)


def forwarding(binary, switches, sizes, windows, reps, seconds, blaster_cpus):
    """{(switch, size, window): [run dicts]}, switch "loop" being the harness ceiling."""
    results = {}
    pinned = blaster_cpus is not None
    all_cpus = os.sched_getaffinity(0)
    for proc in switches.values():
        if pinned:
            os.sched_setaffinity(proc.pid, {0})
    try:
        for rep in range(reps):
            for size in sizes:
                for window in windows:
                    for name, proc in switches.items():
                        before = cpu_seconds(proc.pid)
                        run = blast(binary, proc.bench_dir, size, seconds, window, blaster_cpus)
                        run["switch_cpu"] = (cpu_seconds(proc.pid) - before) / run["elapsed"]
                        results.setdefault((name, size, window), []).append(run)
                    if rep in (0, reps - 1):
                        run = blast(binary, "-loop", size, seconds, window, blaster_cpus)
                        results.setdefault(("loop", size, window), []).append(run)
    finally:
        if pinned:
            for proc in switches.values():
                if proc.poll() is None:
                    os.sched_setaffinity(proc.pid, all_cpus)
    return results


def parse_rtts(text, label=None):
    prefix = f"{label} " if label else ""
    rtts = [float(m) for m in re.findall(rf"^{prefix}rtt_us ([\d.]+)$", text, re.M)]
    lost = sum(int(m) for m in re.findall(rf"^{prefix}lost (\d+)$", text, re.M))
    return rtts, lost


def round_trips(switches, lwip_peer, blast, python, env, rounds, count, warmup, payload):
    """{(switch, path label, proto): {"rtts": [...], "lost": n}}."""
    results = {}
    next_host = [20]

    def client_ip():
        next_host[0] += 1
        if next_host[0] > 250:
            next_host[0] = 21
        return f"10.0.0.{next_host[0]}"

    for _ in range(rounds):
        for name, proc in switches.items():
            directory = proc.bench_dir
            rtts, lost = parse_rtts(run_client([str(blast), "-rtt", directory, "64", str(count)]))
            cell = results.setdefault((name, RAW_LABEL, "raw"), {"rtts": [], "lost": 0})
            cell["rtts"].extend(rtts)
            cell["lost"] += lost
            for client, server, label in PATHS:
                peer = LWECHO_IP if server == "lwstack" else LWIP_IP
                if (server == "lwip" or client == "lwip") and lwip_peer is None:
                    continue
                if client == "lwstack":
                    out = run_client([python, str(BENCH / "lwclient.py"),
                                      "--net", f"vde://{directory}",
                                      "--conf", f"ip={client_ip()}/24", "--peer", peer,
                                      "--modes", "icmp,udp", "-n", str(count),
                                      "-w", str(warmup), "-z", str(payload)], env=env)
                    samples = {proto: parse_rtts(out, proto) for proto in ("icmp", "udp")}
                else:
                    samples = {}
                    for proto, flag in (("icmp", ["-i"]), ("udp", [])):
                        out = run_client([str(lwip_peer), "-s", directory,
                                          "-a", f"{client_ip()}/24", "-c", peer,
                                          "-n", str(count), "-w", str(warmup),
                                          "-z", str(payload)] + flag)
                        samples[proto] = parse_rtts(out)
                for proto, (rtts, lost) in samples.items():
                    cell = results.setdefault((name, label, proto), {"rtts": [], "lost": 0})
                    cell["rtts"].extend(rtts)
                    cell["lost"] += lost
    return results


# ---------------------------------------------------------------------------------- report

def fmt_rate(value):
    return f"{value / 1000:.0f}k" if value >= 1000 else f"{value:.0f}"


def verdict(cost_ratio):
    """'met' if ours costs no more than theirs (ratio <= 1); flag misses within run-to-run noise."""
    if cost_ratio <= 1.0:
        return "met"
    if cost_ratio <= 1.1:
        return "NOT met, but within 10% (run-to-run noise on a busy machine: re-run)"
    return "NOT met"


def report(info, args, fwd, rtt, build_errors, elapsed, reps, seconds, rounds, count,
           pinned, tcp_state=None):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    kind = "quick" if args.quick else "full"
    if args.tcp_only:
        kind += ", TCP only"
    lines = [
        f"## {now} — {kind} run",
        "",
        f"- machine: {info['cpu']}, {info['cpus']} CPUs, Linux {info['kernel']}, "
        f"host `{info['host']}`, load average at start {info['load']}",
        f"- Python {info['python']}; lwstack accelerated (Cython): {info['accelerated']}; "
        f"vde.core compiled: {info['core_compiled']}; lwstack from `{info['lwstack_from']}`",
        f"- commit {info['commit']}; Debian vde2 {info['vde2']}, liblwipv6-dev {info['lwipv6']}",
        f"- run time {elapsed:.0f} s",
        "",
    ]
    sizes = sorted({size for _, size, _ in fwd})

    def fwd_median(name, size, window, key="fps"):
        runs = fwd.get((name, size, window))
        return statistics.median(r[key] for r in runs) if runs else None

    if fwd:
        where = ("switch pinned to CPU 0, vde_blast on the others" if pinned
                 else "one CPU: switch and vde_blast share it")
        lines += [
            f"### Frame forwarding, frames/s: median (min–max) of {reps} runs of {seconds:g} s "
            f"({where})",
            "",
            f"Closed loop: at most {WINDOW} frames in flight, measures the switch. Open loop: "
            "the sender goes as fast as the switch reads; drops are frames the switch accepted "
            "and did not deliver (receiver late, output queue full).",
            "",
            f"| frame | switch | closed loop ({WINDOW}) | switch CPU | lwswitch/vde_switch | "
            "open loop | open-loop drops |",
            "|---|---|---|---|---|---|---|",
        ]
        for size in sizes:
            for name in SWITCHES + ("loop",):
                closed = fwd.get((name, size, WINDOW))
                opened = fwd.get((name, size, 0))
                if not closed:
                    continue
                fps = fwd_median(name, size, WINDOW)
                ratio = cpu = ""
                if name != "loop":
                    cpu = f"{fwd_median(name, size, WINDOW, 'switch_cpu'):.0%}"
                if name == "lwswitch" and fwd_median("vde_switch", size, WINDOW):
                    ratio = f"**{fps / fwd_median('vde_switch', size, WINDOW):.2f}**"
                label = "(none: harness ceiling)" if name == "loop" else name
                cells = [f"{size} B", label,
                         f"{fmt_rate(fps)} ({fmt_rate(min(r['fps'] for r in closed))}–"
                         f"{fmt_rate(max(r['fps'] for r in closed))})", cpu, ratio]
                if opened:
                    cells += [f"{fmt_rate(fwd_median(name, size, 0))}",
                              f"{fwd_median(name, size, 0, 'drop'):.1%}"]
                else:
                    cells += ["", ""]
                stalls = sum(r["stalls"] for r in closed)
                if stalls:
                    cells[2] += f", {stalls} stalls"
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if rtt:
        lines += [
            f"### Round trips, µs: median (p10–p90) of {rounds}×{count} back-to-back "
            f"round trips, {args.payload} B payload; the raw-frame row (vde_blast -rtt) sits in "
            "the ICMP columns",
            "",
            "| client -> responder | " + " | ".join(
                f"{proto} via {name}" for proto in ("ICMP", "UDP") for name in SWITCHES) + " |",
            "|---|" + "---|" * 4,
        ]
        for label in [RAW_LABEL] + [label for _, _, label in PATHS]:
            cells = []
            for proto in ("icmp", "udp"):
                if label == RAW_LABEL:
                    proto = "raw" if proto == "icmp" else "-"
                for name in SWITCHES:
                    cell = rtt.get((name, label, proto))
                    if proto == "-":
                        cells.append("")
                        continue
                    if not cell or not cell["rtts"]:
                        cells.append("n/a")
                        continue
                    values = cell["rtts"]
                    text = (f"{statistics.median(values):.0f} ({quantile(values, .1):.0f}–"
                            f"{quantile(values, .9):.0f})")
                    if cell["lost"]:
                        text += f", {cell['lost']} lost"
                    cells.append(text)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    # targets
    if fwd or rtt or build_errors:
        lines += ["### Targets (ratios within this run)", ""]
    for size in sizes:
        lw, vde = fwd_median("lwswitch", size, WINDOW), fwd_median("vde_switch", size, WINDOW)
        if lw and vde:
            ratio = lw / vde
            lines.append(f"- lwswitch forwards at least vde_switch's rate, {size} B frames: "
                         f"ratio {ratio:.2f} — {verdict(1 / ratio)}")

    def med(name, label, proto):
        cell = rtt.get((name, label, proto))
        return statistics.median(cell["rtts"]) if cell and cell["rtts"] else None

    raw_lw, raw_vde = med("lwswitch", RAW_LABEL, "raw"), med("vde_switch", RAW_LABEL, "raw")
    if raw_lw and raw_vde:
        lines.append(f"- (no target) switch latency, raw frame round trip: lwswitch {raw_lw:.0f} vs "
                     f"vde_switch {raw_vde:.0f} µs, {(raw_lw - raw_vde) / 2:+.0f} µs a traversal")
    for name in SWITCHES:
        ours = med(name, "lwstack -> lwstack", "icmp")
        theirs = med(name, "LWIPv6 -> LWIPv6", "icmp")
        if ours and theirs:
            lines.append(f"- lwstack ping RTT no worse than LWIPv6's, via {name}: "
                         f"{ours:.0f} vs {theirs:.0f} µs, ratio {ours / theirs:.2f} — "
                         f"{verdict(ours / theirs)}")
        responder_lw = med(name, "LWIPv6 -> lwstack", "icmp")
        responder_lwip = med(name, "LWIPv6 -> LWIPv6", "icmp")
        if responder_lw and responder_lwip:
            lines.append(f"  - same LWIPv6 pinger, responder lwstack vs LWIPv6: "
                         f"{responder_lw:.0f} vs {responder_lwip:.0f} µs")
        client_lw = med(name, "lwstack -> lwstack", "icmp")
        client_lwip = med(name, "lwstack -> LWIPv6", "icmp")
        if client_lw and client_lwip:
            lines.append(f"  - same lwstack pinger, responder lwstack vs LWIPv6: "
                         f"{client_lw:.0f} vs {client_lwip:.0f} µs")
    for name, error in build_errors.items():
        lines.append(f"- {name} could not be built: `{error}`")
    if fwd or rtt or build_errors:
        lines.append("")
    if tcp_state is not None:
        lines += tcp.report(tcp_state)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- profile

def profile_lwswitch(procs, python, env, blast, tmp, seconds, size):
    """Run an extra lwswitch under cProfile during a blast; return the top of the profile."""
    import pstats
    directory = Path(tmp) / "prof-sw"
    prof = Path(tmp) / "lwswitch.prof"
    proc = procs.start("lwswitch-profiled",
                       [python, "-m", "cProfile", "-o", str(prof), "-m", "lwswitch",
                        "-s", str(directory)], env=env, ready_socket=directory / "ctl")
    out = subprocess.run([str(blast), str(directory), str(size), str(seconds), str(WINDOW)],
                         capture_output=True, text=True, timeout=seconds + 30,
                         env=dict(os.environ, VDE_BLAST_NICE="19"),
                         preexec_fn=_child_setup()).stdout
    procs.stop(proc)
    import io
    stream = io.StringIO()
    stats = pstats.Stats(str(prof), stream=stream)
    stats.sort_stats("tottime").print_stats(14)
    return f"vde_blast through cProfile'd lwswitch, {size} B: {out.strip()}\n" + stream.getvalue()


# ---------------------------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer and shorter runs (< 45 s, plus 1-2 min for TCP)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the lwstack processes (e.g. a venv with the "
                             "Cython build installed); default: this one, on this checkout")
    parser.add_argument("--no-append", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--profile", action="store_true",
                        help="also profile lwswitch's per-frame path with cProfile")
    parser.add_argument("--payload", type=int, default=56, help="round-trip payload bytes")
    parser.add_argument("--cc", default=os.environ.get("CC", "cc"))
    sections = parser.add_mutually_exclusive_group()
    sections.add_argument("--tcp-only", action="store_true",
                          help="only the TCP section (bench/tcp.py)")
    sections.add_argument("--no-tcp", action="store_true", help="skip the TCP section")
    parser.add_argument("--tcp-mb", type=float, default=None,
                        help="megabytes (10**6) per bulk TCP run (default 100, --quick 20)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    if args.quick:
        reps, seconds, rounds, count, warmup = 3, 0.25, 2, 100, 5
        tcp_reps, tcp_mb, conn_rounds, conn_seconds, hold_count = 2, 20, 2, 2.0, 2000
    else:
        reps, seconds, rounds, count, warmup = 7, 0.5, 3, 300, 10
        tcp_reps, tcp_mb, conn_rounds, conn_seconds, hold_count = 5, 100, 3, 3.0, 10000
    if args.tcp_mb:
        tcp_mb = args.tcp_mb

    if args.python == sys.executable:
        env = dict(os.environ, PYTHONPATH=f"{REPO}:{REPO / 'tools'}")
    else:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    for tool in ("vde_switch",):
        if not shutil.which(tool):
            parser.exit(1, f"bench: {tool} not found (apt-get install vde2)\n")
    binaries, build_errors = build(args.cc)
    if binaries.get("vde_blast") is None:
        parser.exit(1, "bench: vde_blast did not build (apt-get install libvdeplug-dev)\n")

    info = machine_info(args.python, env)
    cpus = sorted(os.sched_getaffinity(0))
    blaster_cpus = set(cpus[1:]) if len(cpus) >= 2 and 0 in cpus else None

    def on_term(_signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    tmp = tempfile.mkdtemp(prefix="lwbench-")
    procs = Processes(tmp)
    profile_text = None
    fwd, rtt, tcp_state = {}, {}, None
    try:
        switches = {}
        for name in SWITCHES:
            directory = Path(tmp) / name
            argv = (["vde_switch", "-s", str(directory)] if name == "vde_switch"
                    else [args.python, "-m", "lwswitch", "-s", str(directory)])
            # vde_switch reads commands on stdin and exits on EOF: its stdin is our pipe.
            proc = procs.start(name, argv, env=env, ready_socket=directory / "ctl")
            proc.bench_dir = str(directory)
            switches[name] = proc
        print(f"bench: switches up ({tmp})", flush=True)
        if not args.tcp_only:
            print(f"bench: forwarding, {reps}×{seconds:g} s per cell ...", flush=True)
            fwd = forwarding(binaries["vde_blast"], switches, FRAME_SIZES, (WINDOW, 0), reps,
                             seconds, blaster_cpus)

            print("bench: round trips ...", flush=True)
            responders = []
            for name, proc in switches.items():
                responders.append(procs.start(
                    f"lwecho-{name}", [args.python, "-m", "lwecho", "--net",
                                       f"vde://{proc.bench_dir}", "--conf",
                                       f"ip={LWECHO_IP}/24", "-q"],
                    env=env, ready_text="lwecho: "))
                if binaries.get("lwip_peer"):
                    responders.append(procs.start(
                        f"lwip-{name}", [str(binaries["lwip_peer"]), "-s", proc.bench_dir,
                                         "-a", f"{LWIP_IP}/24", "-e", "7"],
                        ready_text="ready"))
            rtt = round_trips(switches, binaries.get("lwip_peer"), binaries["vde_blast"],
                              args.python, env, rounds, count // rounds, warmup, args.payload)
            for proc in responders:                # the TCP section wants quiet switches
                procs.stop(proc)
        if not args.no_tcp:
            print(f"bench: TCP, {tcp_reps} rounds of {tcp_mb:g} MB per path ...", flush=True)
            tcp_state = tcp.measure(procs, switches, args.python, env, binaries.get("lwip_peer"),
                                    reps=tcp_reps, nbytes=int(tcp_mb * 1e6),
                                    conn_rounds=conn_rounds, conn_seconds=conn_seconds,
                                    hold_count=hold_count)
        if args.profile:
            print("bench: profiling lwswitch ...", flush=True)
            profile_text = profile_lwswitch(procs, args.python, env, binaries["vde_blast"], tmp,
                                            2.0, 64)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    text = report(info, args, fwd, rtt, build_errors, time.monotonic() - started,
                  reps, seconds, rounds, count // rounds * rounds, blaster_cpus is not None,
                  tcp_state)
    if profile_text:
        text += ("\n<details><summary>cProfile of lwswitch under a 64 B closed-loop blast "
                 "(forward() is invisible when vde.core is compiled)</summary>\n\n```\n"
                 + profile_text.strip() + "\n```\n</details>\n")
    print()
    print(text)
    if not args.no_append:
        new = not RESULTS.exists()
        with open(RESULTS, "a", encoding="utf-8") as handle:
            if new:
                handle.write("# lwstack benchmark results\n\nAppended by `python bench/run.py`"
                             " (see its docstring for the method). Compare ratios within one "
                             "run; machines are noisy.\n\n")
            handle.write(text + "\n")
        print(f"bench: appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
