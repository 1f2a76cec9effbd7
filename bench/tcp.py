#!/usr/bin/env python3
"""The TCP section of bench/run.py: bulk throughput and connection costs, side by side.

Imported by ``bench/run.py`` (``measure`` and ``report``), and also run as a script for the
small helpers it starts in other processes and namespaces::

    python bench/tcp.py probe                       does this interpreter's lwstack do TCP?
    python bench/tcp.py accept-server --net L --conf C --port P [--hold] [--warmup N]
    python bench/tcp.py conn-rate ADDR PORT (--seconds S | --count N) [--parallel K]
                                                                  (kernel sockets)
    python bench/tcp.py conn-hold ADDR PORT --count N                        (kernel sockets)

Method
------
Bulk throughput, one stream, MB/s (10**6 bytes a second), the receiver's figure (lwperf: first
byte to EOF; lwip_peer's sink: accept to EOF, half a round trip more), median of several runs
interleaved round by round so that every path sees the same machine noise.  Paths, each through Debian's
``vde_switch`` and through ``lwswitch``, MTU 1500:

- lwstack -> lwstack: two ``lwperf`` processes (client sends, ``-s --once`` server receives);
- kernel -> lwstack and lwstack -> kernel: the Linux kernel in a network namespace created for
  the run, its tap plugged into the switch by ``vde_plug2tap``, ``lwperf --net kernel`` run
  there with ``ip netns exec`` (from this checkout, with the interpreter running the bench,
  whichever build is measured);
- LWIPv6 -> LWIPv6: ``bench/lwip_peer`` (Debian's liblwipv6) as TCP sink and source; LWIPv6
  has been seen to wedge or crash when it has to retransmit, so each side has a watchdog (no
  progress for LWIP_STALL_SECONDS) and a failure is reported as such (crash signal, stall,
  short transfer) instead of stopping the run;
- kernel -> kernel: two namespaces, two taps on the same switch, ``lwperf --net kernel`` on
  both sides: the ceiling of this path for C stacks (the taps and vde_plug2tap included;
  lwperf is Python and hashes every byte, so this ceiling is "the kernel under lwperf");
- lwstack -> lwstack over IPv6 (fd00:91::/64, MSS 1440 instead of 1460) through lwswitch:
  the same two ``lwperf`` processes with IPv6 addresses (the server ``-6``, dual-stack);
- lwstack -> lwstack with MTU 9000 through lwswitch (it forwards frames up to 9234 bytes).
  There is no jumbo row for the others: measured with ping, vde_switch 2.3.2 forwards no
  frame over 1518 bytes, and two kernels whose taps vde2's vde_plug2tap plugs into lwswitch
  exchange no frame over 2048 bytes.

Connections, lwstack server on lwswitch, kernel client in a namespace through the tap:

- connections per second: ``conn-rate`` (kernel sockets) connects and closes as fast as it
  can for a few seconds against ``accept-server`` (lwstack), which accepts and closes each:
  one connection at a time (the handshake's round trip bounds it) and CONN_PARALLEL at a time
  (threads: the server's capacity); the rate is the client's completed connects a second,
  and the server's accepts a second (first to last accept) are kept as a cross-check;
- memory per idle connection: ``accept-server --hold`` (after a warm-up of connections it
  closes) keeps every accepted socket; its RSS (``/proc/PID/status`` VmRSS) is read before and
  after ``conn-hold`` opens 10,000 connections (the namespace's ephemeral port range widened),
  and the difference is divided by the connections it holds.

lwstack rows print "n/a (lwstack TCP not available)" when ``probe`` finds that the measured
interpreter's lwstack cannot carry a TCP connection (or has no lwperf); kernel rows need root,
/dev/net/tun, ``ip`` and ``vde_plug2tap``; LWIPv6 rows need ``bench/out/lwip_peer``.  Every
namespace is deleted and every process stopped by its pid, also on failure.

Addresses: 10.91.0.0/24 on each switch (the switches are separate segments); lwstack hosts get
fixed MACs, so the kernel's ARP cache stays right from one run to the next.
"""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
#: The kernel ends run lwperf from this checkout with this interpreter, whatever build is
#: measured: ``--net kernel`` uses the stdlib's sockets only, and older builds have no lwperf.
KERNEL_ENV = dict(os.environ, PYTHONPATH=f"{REPO}:{REPO / 'tools'}", PYTHONDONTWRITEBYTECODE="1")

SUBNET = "10.91.0"
#: (address, MAC) of each role; the kernel namespaces are A (.11) and B (.12).
LW_SERVER = (f"{SUBNET}.1", "02:6c:77:5b:00:01")
LW_CLIENT = (f"{SUBNET}.2", "02:6c:77:5b:00:02")
LW_ACCEPT = (f"{SUBNET}.3", "02:6c:77:5b:00:03")
LW_JUMBO_SERVER = (f"{SUBNET}.31", "02:6c:77:5b:00:31")
LW_JUMBO_CLIENT = (f"{SUBNET}.32", "02:6c:77:5b:00:32")
LW6_SERVER = ("fd00:91::1", "02:6c:77:5b:00:61")
LW6_CLIENT = ("fd00:91::2", "02:6c:77:5b:00:62")
KERNEL_A = f"{SUBNET}.11"
KERNEL_B = f"{SUBNET}.12"
KERNEL_CONN = f"{SUBNET}.13"
LWIP_SINK = f"{SUBNET}.21"
LWIP_SOURCE = f"{SUBNET}.22"
TAP = "lwbtap0"
JUMBO_MTU = 9000
TARGET_MBPS = 75.0
#: Connections in flight in the second connection-rate measurement.
CONN_PARALLEL = 8
#: lwip_peer gives up a transfer that makes no progress for this long (its -x watchdog).
LWIP_STALL_SECONDS = 10
NA_LWSTACK = "n/a (lwstack TCP not available)"

SWITCHES = ("vde_switch", "lwswitch")
#: (key, label, sender kind, receiver kind, mtu, switches it runs through)
PATHS = (
    ("lw-lw", "lwstack -> lwstack", "lwstack", "lwstack", 1500, SWITCHES),
    ("k-lw", "kernel -> lwstack (tap)", "kernel", "lwstack", 1500, SWITCHES),
    ("lw-k", "lwstack -> kernel (tap)", "lwstack", "kernel", 1500, SWITCHES),
    ("lwip", "LWIPv6 -> LWIPv6", "lwip", "lwip", 1500, SWITCHES),
    ("k-k", "kernel -> kernel (two taps: the C ceiling)", "kernel", "kernel", 1500, SWITCHES),
    ("lw-lw-6", "lwstack -> lwstack over IPv6", "lwstack", "lwstack", 1500, ("lwswitch",)),
    ("lw-lw-jumbo", f"lwstack -> lwstack, MTU {JUMBO_MTU}", "lwstack", "lwstack", JUMBO_MTU,
     ("lwswitch",)),
)


def _die_with_parent():
    """preexec_fn: SIGTERM when the bench dies (PR_SET_PDEATHSIG), as run.py's children."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


# ----------------------------------------------------------------------------- environment

class Namespaces:
    """Network namespaces created for this run, each with a tap on a switch; all deleted by
    :meth:`delete_all` (and the vde_plug2tap processes stopped by pid through ``procs``)."""

    def __init__(self, procs):
        self.procs = procs
        self.names = []
        self.plugs = {}
        self._count = 0

    def create(self, switch_dir, address, mtu=1500, port_range=None):
        """A namespace whose tap ``TAP`` is plugged into ``switch_dir`` with ``address``/24;
        return its name."""
        name = f"lwbench{os.getpid()}n{self._count}"
        self._count += 1
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self.names.append(name)
        ns = ["ip", "netns", "exec", name]
        # ip netns exec exec()s the command: the pid procs holds is vde_plug2tap's own.
        plug = self.procs.start(f"plug2tap-{name}", [*ns, "vde_plug2tap", "-s", switch_dir, TAP])
        self.plugs[name] = plug
        deadline = time.monotonic() + 10
        while subprocess.run([*ns, "ip", "link", "show", TAP],
                             capture_output=True).returncode != 0:
            if plug.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vde_plug2tap did not create {TAP} in {name}: "
                                   f"{plug.log_path.read_text(errors='replace')[-300:]}")
            time.sleep(0.05)
        for argv in (["ip", "addr", "add", f"{address}/24", "dev", TAP],
                     ["ip", "link", "set", TAP, "mtu", str(mtu), "up"],
                     ["ip", "link", "set", "lo", "up"]):
            subprocess.run([*ns, *argv], check=True, capture_output=True)
        if port_range:
            subprocess.run([*ns, "sysctl", "-q", "-w",
                            f"net.ipv4.ip_local_port_range={port_range[0]} {port_range[1]}"],
                           check=True, capture_output=True)
        return name

    def delete(self, name):
        """Stop the namespace's vde_plug2tap and delete it (its sockets go with it)."""
        plug = self.plugs.pop(name, None)
        if plug is not None:
            self.procs.stop(plug)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if name in self.names:
            self.names.remove(name)

    def delete_all(self):
        """Delete every namespace this object created (after its processes are gone)."""
        for name in list(self.names):
            self.delete(name)


def kernel_unavailable():
    """Why the kernel rows cannot run here, or None."""
    import shutil
    reasons = []
    if os.geteuid() != 0:
        reasons.append("needs root")
    if not os.path.exists("/dev/net/tun"):
        reasons.append("needs /dev/net/tun")
    missing = [tool for tool in ("ip", "vde_plug2tap") if not shutil.which(tool)]
    if missing:
        reasons.append("missing " + ", ".join(missing))
    return "; ".join(reasons) or None


def probe_lwstack(python, env):
    """Run ``probe`` in the measured interpreter: None if its lwstack carries TCP, else why."""
    try:
        result = subprocess.run([python, str(BENCH / "tcp.py"), "probe"], capture_output=True,
                                text=True, env=env, timeout=60, cwd="/",
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        return "probe timed out"
    if result.returncode == 0:
        return None
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[-1] if lines else f"probe exited with {result.returncode}"


# ----------------------------------------------------------------------------- one run

def _exit_reason(returncode):
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        try:
            return f"crashed ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-200:] if lines else ""


class Runner:
    """Starts the two ends of one bulk transfer and returns ``{"mbps": x}`` or ``{"error": why}``."""

    def __init__(self, procs, python, env, lwip_peer, nbytes):
        self.procs = procs
        self.python = python
        self.env = env
        self.lwip_peer = lwip_peer
        self.nbytes = nbytes
        self.timeout = 30 + nbytes / 1.5e6     # an (unexpectedly) slow 1.5 MB/s still finishes
        self._port = 5300

    def _next_port(self):
        self._port = 5301 + (self._port - 5300) % 500
        return self._port

    def _env(self, kind):
        return KERNEL_ENV if kind == "kernel" else self.env

    def _lwperf(self, kind, switch_dir, where, mtu):
        """argv prefix of an lwperf: ``where`` is (address, MAC) for lwstack, a namespace for
        the kernel."""
        if kind == "kernel":
            return ["ip", "netns", "exec", where, sys.executable, "-m", "lwperf", "--net",
                    "kernel"]
        address, mac = where
        v6 = ":" in address
        conf = f"ip={address}/{64 if v6 else 24},mac={mac}" + \
            (f",mtu={mtu}" if mtu != 1500 else "")
        return [self.python, "-m", "lwperf", "--net", f"vde://{switch_dir}", "--conf", conf] \
            + (["-6"] if v6 else [])

    def lwperf(self, switch_dir, sender, receiver, mtu=1500):
        """sender/receiver: (kind, where, address); the receiver runs ``lwperf -s --once``."""
        port = str(self._next_port())
        server = None
        try:
            server = self.procs.start(
                "lwperf-server", self._lwperf(receiver[0], switch_dir, receiver[1], mtu)
                + ["-s", "--once", "--json", "-p", port],
                env=self._env(receiver[0]), ready_text="lwperf: server listening", timeout=30)
            try:
                client = subprocess.run(
                    self._lwperf(sender[0], switch_dir, sender[1], mtu)
                    + ["-c", receiver[2], "-p", port, "-n", str(self.nbytes), "--json"],
                    capture_output=True, text=True, env=self._env(sender[0]),
                    stdin=subprocess.DEVNULL,
                    timeout=self.timeout, preexec_fn=_die_with_parent)
            except subprocess.TimeoutExpired:
                return {"error": "timeout"}
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            server_out = server.log_path.read_text(errors="replace")
            report = _last_json(server_out) or _last_json(client.stdout)
            if client.returncode != 0 or not report:
                why = _last_line(client.stderr) or _last_line(client.stdout) \
                    or _last_line(server_out) or _exit_reason(client.returncode)
                return {"error": why}
            if report.get("sha256_ok") is False or report.get("bytes") != self.nbytes:
                return {"error": f"data check failed: {report}"}
            return {"mbps": float(report["mbps"])}
        except RuntimeError as exc:                 # the server did not come up
            return {"error": _last_line(str(exc))}
        finally:
            if server is not None:
                self.procs.stop(server)

    def lwip(self, switch_dir):
        """LWIPv6 source -> LWIPv6 sink; the sink's figure."""
        if self.lwip_peer is None:
            return {"error": "lwip_peer not built"}
        port = str(self._next_port())
        watchdog = str(LWIP_STALL_SECONDS)
        sink = source = None
        try:
            sink = self.procs.start("lwip-sink", [str(self.lwip_peer), "-s", switch_dir, "-a",
                                                  f"{LWIP_SINK}/24", "-L", port, "-x", watchdog],
                                    ready_text="ready")
            source = self.procs.start("lwip-source",
                                      [str(self.lwip_peer), "-s", switch_dir, "-a",
                                       f"{LWIP_SOURCE}/24", "-T", LWIP_SINK, "-p", port,
                                       "-b", str(self.nbytes), "-x", watchdog],
                                      ready_text="ready")
            try:
                sink.wait(timeout=self.timeout + 10)
            except subprocess.TimeoutExpired:
                return {"error": "timeout"}
            sink_out = sink.log_path.read_text(errors="replace")
            match = re.search(r"^tcp_bytes (\d+) seconds ([\d.]+)$", sink_out, re.M)
            if sink.returncode == 0 and match:
                nbytes, seconds = int(match.group(1)), float(match.group(2))
                if nbytes != self.nbytes:
                    return {"error": f"short transfer: EOF after {nbytes} of {self.nbytes} "
                                     "bytes"}
                return {"mbps": nbytes / seconds / 1e6}
            source_out = source.log_path.read_text(errors="replace")
            why = []
            for role, proc, text in (("sink", sink, sink_out), ("source", source, source_out)):
                error = re.search(r"^tcp_error (.*)$", text, re.M)
                if error:                              # its own words (stalled, errno text)
                    why.append(f"{role} {error.group(1)}")
                elif proc.poll() is not None and proc.returncode != 0:
                    why.append(f"{role} {_exit_reason(proc.returncode)}")
            return {"error": ", ".join(why) or "sink ended without a figure"}
        except RuntimeError as exc:
            return {"error": _last_line(str(exc))}
        finally:
            for proc in (source, sink):
                if proc is not None:
                    self.procs.stop(proc)          # closes the source's stdin: it may exit


# ----------------------------------------------------------------------------- connections

def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _wait_text(proc, pattern, timeout):
    """Wait until ``proc``'s log matches ``pattern``; return the last match (or None)."""
    deadline = time.monotonic() + timeout
    while True:
        text = proc.log_path.read_text(errors="replace")
        matches = re.findall(pattern, text, re.M)
        if matches:
            return matches[-1]
        if proc.poll() is not None or time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def connections(procs, namespaces, python, env, switch_dir, rounds, seconds, hold_count,
                log=print):
    """Connection rate and memory per idle connection of an lwstack server, kernel client in
    a namespace of its own for each run; return a dict of results (with "error" keys where
    something failed).

    A fresh namespace per run, because the client closes first and so keeps each connection
    in TIME-WAIT for 60 s: tens of thousands of them make the kernel's search for a free
    ephemeral port slow (10,000 connects took 46 s instead of 4 s after the rate runs), which
    would measure the client, not the server.  Deleting the namespace drops them."""
    results = {"rates": {}, "server_rates": {}, "errors": []}
    address, mac = LW_ACCEPT
    helper = str(BENCH / "tcp.py")
    server_argv = [python, helper, "accept-server", "--net", f"vde://{switch_dir}",
                   "--conf", f"ip={address}/24,mac={mac}", "--port", "5299"]

    def client_namespace():
        name = namespaces.create(switch_dir, KERNEL_CONN, port_range=(10000, 65000))
        return name, ["ip", "netns", "exec", name, sys.executable, helper]
    # 1. rate: accept and close
    for _, parallel in [(r, k) for r in range(rounds) for k in (1, CONN_PARALLEL)]:
        server = ns = None
        try:
            ns, ns_exec = client_namespace()
            server = procs.start("accept-server", server_argv, env=env, ready_text="listening")
            out = subprocess.run(ns_exec + ["conn-rate", address, "5299", "--seconds",
                                            str(seconds), "--parallel", str(parallel)],
                                 capture_output=True, text=True, timeout=seconds + 60,
                                 stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            match = re.search(r"connections (\d+) failures (\d+) seconds ([\d.]+)", out.stdout)
            if not match:
                results["errors"].append(f"conn-rate: {_last_line(out.stderr + out.stdout)}")
                continue
            done, failed, spent = int(match.group(1)), int(match.group(2)), \
                float(match.group(3))
            results["rates"].setdefault(parallel, []).append(done / spent)
            log(f"bench: tcp   connections, {parallel} in flight: {done / spent:.0f}/s",
                flush=True)
            if failed:
                results["errors"].append(f"{failed} connects failed")
            server.stdin.close()                   # the server prints its count and exits
            line = _wait_text(server, r"^accepted (\d+) span ([\d.]+)$", 10)
            if line and int(line[0]) > 1 and float(line[1]) > 0:
                results["server_rates"].setdefault(parallel, []).append(
                    (int(line[0]) - 1) / float(line[1]))
        except (RuntimeError, subprocess.SubprocessError) as exc:
            results["errors"].append(_last_line(str(exc)))
        finally:
            if server is not None:
                procs.stop(server)
            if ns is not None:
                namespaces.delete(ns)
    # 2. memory: hold hold_count connections open
    server = holder = ns = None
    warmup = 200
    try:
        ns, ns_exec = client_namespace()
        server = procs.start("accept-server-hold", server_argv + ["--hold", "--warmup",
                                                                  str(warmup)],
                             env=env, ready_text="listening")
        out = subprocess.run(ns_exec + ["conn-rate", address, "5299", "--count", str(warmup)],
                             capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        if _wait_text(server, r"^warm$", 30) is None:
            raise RuntimeError(f"warm-up did not complete: {_last_line(out.stdout + out.stderr)}")
        time.sleep(0.5)
        before = _rss_kib(server.pid)
        holder = procs.start("conn-hold", ns_exec + ["conn-hold", address, "5299", "--count",
                                                     str(hold_count)],
                             ready_text="holding", timeout=max(120, hold_count / 50))
        match = re.search(r"holding (\d+) failures \d+ seconds ([\d.]+)",
                          holder.log_path.read_text())
        held_client, open_seconds = int(match.group(1)), float(match.group(2))
        log(f"bench: tcp   {held_client} connections opened in {open_seconds:.1f} s", flush=True)
        # wait until the server has accepted what the client holds (or stops progressing)
        held, last_change, last = 0, time.monotonic(), -1
        while time.monotonic() - last_change < 10:
            value = _wait_text(server, r"^held (\d+)$", 0.5)
            held = int(value) if value else 0
            if held >= held_client:
                break
            if held != last:
                last, last_change = held, time.monotonic()
            time.sleep(0.2)
        time.sleep(1.0)
        after = _rss_kib(server.pid)
        results["memory"] = {"before_kib": before, "after_kib": after, "held": held,
                             "client_held": held_client, "requested": hold_count,
                             "open_seconds": open_seconds}
        log(f"bench: tcp   {held} idle connections: RSS {before} -> {after} KiB", flush=True)
    except (RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
        results["errors"].append(f"memory: {_last_line(str(exc))}")
    finally:
        for proc in (holder, server):
            if proc is not None:
                procs.stop(proc)
        if ns is not None:
            namespaces.delete(ns)
    return results


# ----------------------------------------------------------------------------- the section

def _ends(key, kernel_ns):
    """(sender, receiver) of bulk path ``key``, each (kind, lwstack (address, MAC) or
    namespace, address); ``kernel_ns`` is the switch's (namespace A, namespace B)."""
    lw_client = ("lwstack", LW_CLIENT, LW_CLIENT[0])
    lw_server = ("lwstack", LW_SERVER, LW_SERVER[0])
    if kernel_ns:
        kernel_a = ("kernel", kernel_ns[0], KERNEL_A)
        kernel_b = ("kernel", kernel_ns[1], KERNEL_B)
    return {
        "lw-lw": lambda: (lw_client, lw_server),
        "k-lw": lambda: (kernel_a, lw_server),
        "lw-k": lambda: (lw_client, kernel_a),
        "k-k": lambda: (kernel_a, kernel_b),
        "lw-lw-6": lambda: (("lwstack", LW6_CLIENT, LW6_CLIENT[0]),
                            ("lwstack", LW6_SERVER, LW6_SERVER[0])),
        "lw-lw-jumbo": lambda: (("lwstack", LW_JUMBO_CLIENT, LW_JUMBO_CLIENT[0]),
                                ("lwstack", LW_JUMBO_SERVER, LW_JUMBO_SERVER[0])),
    }[key]()


def measure(procs, switches, python, env, lwip_peer, *, reps, nbytes, conn_rounds,
            conn_seconds, hold_count, log=print):
    """Run the whole TCP section.

    ``switches`` maps "vde_switch"/"lwswitch" to a started switch process with ``bench_dir``.
    Returns the dict :func:`report` formats.
    """
    state = {"bulk": {}, "skipped": {}, "conn": None, "reps": reps, "nbytes": nbytes,
             "hold_count": hold_count, "conn_seconds": conn_seconds}
    lw_missing = probe_lwstack(python, env)
    if lw_missing:
        log(f"bench: tcp: lwstack rows skipped: {lw_missing}")
        state["lwstack_missing"] = lw_missing
    kernel_missing = kernel_unavailable()
    if kernel_missing:
        log(f"bench: tcp: kernel rows skipped: {kernel_missing}")
    namespaces = Namespaces(procs)
    runner = Runner(procs, python, env, lwip_peer, nbytes)
    try:
        kernel = {}
        if not kernel_missing:
            try:
                for name, proc in switches.items():
                    kernel[name] = (namespaces.create(proc.bench_dir, KERNEL_A),
                                    namespaces.create(proc.bench_dir, KERNEL_B))
            except (RuntimeError, subprocess.SubprocessError) as exc:
                kernel_missing = f"namespace setup failed: {_last_line(str(exc))}"
                log(f"bench: tcp: kernel rows skipped: {kernel_missing}")

        for rep in range(reps):
            log(f"bench: tcp round {rep + 1}/{reps} ...", flush=True)
            for key, label, sender, receiver, mtu, via in PATHS:
                for switch in via:
                    if switch not in switches:
                        continue
                    cell = (switch, key)
                    if "lwstack" in (sender, receiver) and lw_missing:
                        state["skipped"][cell] = NA_LWSTACK
                        continue
                    if "kernel" in (sender, receiver) and kernel_missing:
                        state["skipped"][cell] = f"n/a ({kernel_missing})"
                        continue
                    if sender == "lwip":
                        if lwip_peer is None:
                            state["skipped"][cell] = "n/a (lwip_peer not built)"
                            continue
                        result = runner.lwip(switches[switch].bench_dir)
                    else:
                        snd, rcv = _ends(key, kernel.get(switch))
                        result = runner.lwperf(switches[switch].bench_dir, snd, rcv, mtu)
                    state["bulk"].setdefault(cell, []).append(result)
                    shown = f"{result['mbps']:.1f} MB/s" if "mbps" in result \
                        else f"failed: {result['error']}"
                    log(f"bench: tcp   {label} via {switch}: {shown}", flush=True)
        if "lwswitch" in switches and hold_count:
            if lw_missing:
                state["conn"] = {"skipped": NA_LWSTACK}
            elif kernel_missing:
                state["conn"] = {"skipped": f"n/a ({kernel_missing})"}
            else:
                log("bench: tcp connections ...", flush=True)
                state["conn"] = connections(procs, namespaces, python, env,
                                            switches["lwswitch"].bench_dir, conn_rounds,
                                            conn_seconds, hold_count, log)
    finally:
        for proc in list(procs.running):
            if proc.bench_name.startswith(("plug2tap-", "lwperf-", "lwip-", "accept-", "conn-")):
                procs.stop(proc)
        namespaces.delete_all()
    return state


def _cell_text(results):
    ok = [r["mbps"] for r in results if "mbps" in r]
    errors = [r["error"] for r in results if "error" in r]
    reasons = "; ".join(sorted(set(errors)))
    if not ok:
        return f"failed {len(errors)}/{len(results)}: {reasons}"
    text = f"{statistics.median(ok):.1f} ({min(ok):.1f}–{max(ok):.1f})"
    if errors:
        text += f", {len(errors)}/{len(results)} failed: {reasons}"
    return text


def _median(state, switch, key):
    results = state["bulk"].get((switch, key)) or []
    ok = [r["mbps"] for r in results if "mbps" in r]
    return statistics.median(ok) if ok else None


def report(state):
    """The TCP section of the results, as Markdown lines."""
    megabytes = state["nbytes"] / 1e6
    lines = [
        f"### TCP bulk throughput, MB/s (10^6 B/s): median (min–max) of {state['reps']} runs "
        f"of {megabytes:g} MB, 1 stream, the receiver's figure",
        "",
        "Interleaved round by round; no CPU pinning (sender, receiver and switch share the "
        "CPUs). Kernel ends are network namespaces whose taps vde_plug2tap plugs into the "
        "switch, running `lwperf --net kernel` (Python, hashing every byte, like the lwstack "
        "lwperf).",
        "",
        "| sender -> receiver | via vde_switch | via lwswitch |",
        "|---|---|---|",
    ]
    for key, label, _, _, _, via in PATHS:
        cells = []
        for switch in SWITCHES:
            if switch not in via:
                cells.append("—")
            elif (switch, key) in state["skipped"]:
                cells.append(state["skipped"][(switch, key)])
            elif (switch, key) in state["bulk"]:
                cells.append(_cell_text(state["bulk"][(switch, key)]))
            else:
                cells.append("not run")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    if state.get("lwstack_missing"):
        lines += [f"lwstack's TCP probe (`bench/tcp.py probe`): {state['lwstack_missing']}", ""]
    conn = state.get("conn")
    if conn:
        lines += [
            "### TCP connections: lwstack server on lwswitch, Linux kernel client in a "
            "namespace through vde_plug2tap",
            "",
        ]
        if "skipped" in conn:
            lines += [f"- {conn['skipped']}", ""]
        else:
            for parallel in (1, CONN_PARALLEL):
                rates = conn["rates"].get(parallel)
                if rates:
                    text = (f"{statistics.median(rates):.0f}/s (min–max {min(rates):.0f}–"
                            f"{max(rates):.0f}, {len(rates)} runs of "
                            f"{state['conn_seconds']:g} s)")
                    server_rates = conn["server_rates"].get(parallel)
                    if server_rates:
                        text += (f"; accepted by the server, first to last: "
                                 f"{statistics.median(server_rates):.0f}/s")
                else:
                    text = "failed"
                how = "one at a time" if parallel == 1 else f"{parallel} at a time (threads)"
                lines.append(f"- connections per second, the client connecting and closing "
                             f"{how}, the server accepting and closing: {text}")
            memory = conn.get("memory")
            if memory and memory["held"]:
                per = (memory["after_kib"] - memory["before_kib"]) / memory["held"]
                lines.append(
                    f"- memory per idle connection: {per:.1f} KiB (server RSS "
                    f"{memory['before_kib'] / 1024:.1f} MiB before, "
                    f"{memory['after_kib'] / 1024:.1f} MiB with {memory['held']} accepted "
                    f"connections open; the client opened {memory['client_held']} of "
                    f"{memory['requested']} requested, one at a time, in "
                    f"{memory['open_seconds']:.1f} s)")
            else:
                lines.append("- memory per idle connection: failed")
            if conn["errors"]:
                lines.append("- problems: " + "; ".join(sorted(set(conn["errors"]))))
            lines.append("")
    lines += ["### TCP targets (ratios within this run)", ""]
    for switch in SWITCHES:
        ours = _median(state, switch, "lw-lw")
        if ours is None:
            if (switch, "lw-lw") in state["skipped"]:
                lines.append(f"- lwstack -> lwstack via {switch}: {NA_LWSTACK}")
            continue
        verdict = "met" if ours >= TARGET_MBPS else "NOT met"
        lines.append(f"- lwstack -> lwstack >= {TARGET_MBPS:.0f} MB/s, via {switch}: "
                     f"{ours:.1f} MB/s — {verdict}")
        for key, name in (("lwip", "the LWIPv6 pair"), ("k-k", "the kernel ceiling")):
            theirs = _median(state, switch, key)
            if theirs:
                lines.append(f"  - over {name} ({theirs:.1f} MB/s): **{ours / theirs:.2f}**")
            else:
                lines.append(f"  - over {name}: n/a (no successful run)")
    jumbo = _median(state, "lwswitch", "lw-lw-jumbo")
    plain = _median(state, "lwswitch", "lw-lw")
    ipv6 = _median(state, "lwswitch", "lw-lw-6")
    if ipv6 and plain:
        lines.append(f"- (no target) IPv6 over IPv4, lwstack -> lwstack via lwswitch: "
                     f"{ipv6 / plain:.2f}")
    if jumbo and plain:
        lines.append(f"- (no target) MTU {JUMBO_MTU} over MTU 1500, lwstack -> lwstack via "
                     f"lwswitch: {jumbo / plain:.2f}")
    lines.append("")
    return lines


# ----------------------------------------------------------------------------- helpers (CLI)

def _cmd_probe(_args):
    """Carry a few bytes over TCP between two lwstack stacks on an in-memory switch."""
    try:
        import lwstack
        from lwstack import socket as lwsocket
        from vde.memory import MemorySwitch
    except ImportError as exc:
        print(f"lwstack not importable: {exc}")
        return 1
    try:
        import lwperf  # noqa: F401  (the bulk rows need it)
    except ImportError as exc:
        print(f"no lwperf: {exc}")
        return 1
    switch = MemorySwitch()
    try:
        with lwstack.Stack(switch, "ip=10.91.9.1/24") as one, \
                lwstack.Stack(switch, "ip=10.91.9.2/24") as two:
            server = one.socket(lwsocket.AF_INET, lwsocket.SOCK_STREAM)
            server.settimeout(10)
            server.bind(("", 5201))
            server.listen(1)
            client = two.socket(lwsocket.AF_INET, lwsocket.SOCK_STREAM)
            client.settimeout(10)
            client.connect(("10.91.9.1", 5201))
            peer, _ = server.accept()
            peer.settimeout(10)
            client.sendall(b"probe")
            data = b""
            while len(data) < 5:
                chunk = peer.recv(5 - len(data))
                if not chunk:
                    break
                data += chunk
            for sock in (client, peer, server):
                sock.close()
            if data != b"probe":
                print(f"TCP probe received {data!r}")
                return 1
    except Exception as exc:  # anything at all: the rows say n/a with the reason
        print(f"TCP probe failed: {type(exc).__name__}: {exc}")
        return 1
    print("ok")
    return 0


def _raise_nofile(want):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in ((max(want, hard), max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return
        except (ValueError, OSError):
            continue


def _cmd_accept_server(args):
    """Accept on an lwstack stack: close each (rate) or keep them (--hold, after --warmup).

    Prints "listening"; with --hold, "warm" once the warm-up connections are in and closed,
    then "held N" every 500 held and whenever it is idle; at EOF on stdin, "accepted N span S" (first to last accept)
    and exits."""
    import threading

    import lwstack
    from lwstack import socket as lwsocket

    _raise_nofile(65536)
    done = threading.Event()
    counts = {"accepted": 0, "first": None, "last": None}

    def watch_stdin():
        try:
            sys.stdin.buffer.read()
        finally:
            done.set()
    threading.Thread(target=watch_stdin, daemon=True).start()
    with lwstack.Stack(args.net, args.conf, description="bench accept-server") as stack:
        listener = stack.socket(lwsocket.AF_INET, lwsocket.SOCK_STREAM)
        listener.bind(("", args.port))
        listener.listen(1024)
        listener.settimeout(0.2)
        print("listening", flush=True)
        held = []
        reported = 0
        while not done.is_set():
            try:
                sock, _ = listener.accept()
            except (TimeoutError, lwsocket.timeout):
                if args.hold and held and reported != len(held):
                    reported = len(held)          # idle: say where we stand
                    print(f"held {reported}", flush=True)
                continue
            now = time.monotonic()
            counts["accepted"] += 1
            counts["first"] = counts["first"] or now
            counts["last"] = now
            if args.hold and counts["accepted"] > args.warmup:
                held.append(sock)
                if len(held) % 500 == 0:
                    reported = len(held)
                    print(f"held {reported}", flush=True)
                continue
            sock.close()
            if args.hold and counts["accepted"] == args.warmup:
                print("warm", flush=True)
        if args.hold:
            print(f"held {len(held)}", flush=True)
        span = (counts["last"] - counts["first"]) if counts["first"] else 0.0
        print(f"accepted {counts['accepted']} span {span:.6f}", flush=True)
        for sock in held:
            sock.close()
        listener.close()
    return 0


def _cmd_conn_rate(args):
    """Kernel sockets: connect and close for --seconds (or --count times), with --parallel
    threads each doing one connection at a time."""
    import socket
    import threading
    target = (args.address, args.port)
    counts = {"done": 0, "failed": 0}
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + args.seconds if args.seconds else None

    def more():
        if args.count:
            return counts["done"] + counts["failed"] < args.count
        return time.monotonic() < deadline and not (counts["failed"] > 50 and not counts["done"])

    def worker():
        while True:
            with lock:
                if not more():
                    return
                if args.count:              # claim one of the --count connections
                    counts["done"] += 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                sock.connect(target)
                ok = True
            except OSError:
                ok = False
            finally:
                sock.close()
            with lock:
                if args.count and not ok:
                    counts["done"] -= 1
                    counts["failed"] += 1
                elif not args.count:
                    counts["done" if ok else "failed"] += 1

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.parallel))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"connections {counts['done']} failures {counts['failed']} seconds "
          f"{time.monotonic() - start:.6f}", flush=True)
    return 0 if counts["done"] else 1


def _cmd_conn_hold(args):
    """Kernel sockets: open --count connections and keep them until EOF on stdin."""
    import socket
    _raise_nofile(args.count + 1000)
    held, failed = [], 0
    start = time.monotonic()
    while len(held) < args.count and failed < 100:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect((args.address, args.port))
            held.append(sock)
            if len(held) % 1000 == 0:
                print(f"opened {len(held)} at {time.monotonic() - start:.3f} s", flush=True)
        except OSError as exc:
            failed += 1
            sock.close()
            print(f"connect failed: {exc}", flush=True)
    print(f"holding {len(held)} failures {failed} seconds {time.monotonic() - start:.3f}",
          flush=True)
    sys.stdin.buffer.read()
    for sock in held:
        sock.close()
    return 0


def main(argv=None):
    """Run one helper (see the module docstring)."""
    import argparse
    parser = argparse.ArgumentParser(prog="bench/tcp.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("probe", help="exit 0 if this interpreter's lwstack carries TCP")
    server = commands.add_parser("accept-server", help="lwstack server for the connection tests")
    server.add_argument("--net", required=True)
    server.add_argument("--conf", required=True)
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--hold", action="store_true")
    server.add_argument("--warmup", type=int, default=0)
    rate = commands.add_parser("conn-rate", help="kernel client: connect and close in a loop")
    hold = commands.add_parser("conn-hold", help="kernel client: open connections and hold them")
    for sub in (rate, hold):
        sub.add_argument("address")
        sub.add_argument("port", type=int)
    rate.add_argument("--seconds", type=float)
    rate.add_argument("--count", type=int)
    rate.add_argument("--parallel", type=int, default=1, help="connections in flight")
    hold.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "conn-rate" and not (args.seconds or args.count):
        parser.error("conn-rate needs --seconds or --count")
    handler = {"probe": _cmd_probe, "accept-server": _cmd_accept_server,
               "conn-rate": _cmd_conn_rate, "conn-hold": _cmd_conn_hold}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
