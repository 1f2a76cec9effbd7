"""Network namespaces for the root-only tests and the vector capture scripts (Linux, iproute2).

Importable as ``netns_support`` (tests/ is on sys.path under pytest; the capture scripts are
run as ``sudo PYTHONPATH=.:tests python3 tests/<layer>/<name>_capture.py``).  It holds what
those files would otherwise each write again: namespaces that are removed afterwards, veth
pairs, running a function inside a namespace, AF_PACKET sockets there, NIC offloads turned
off, a background sniffer, dnsmasq on a loopback-only namespace, and
:class:`KernelNamespace` for the interop tests' kernel end.

setns(2) moves only the calling thread, so :func:`in_namespace` runs its function in a
short-lived thread that entered the namespace.  A socket keeps the namespace it was opened
in: one opened that way (:func:`packet_socket`, or ``in_namespace(ns, socket.create_server,
...)``) can then be used from any thread of the process.
"""
import ctypes
import fcntl
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

from support import stop_process, wait_for

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
SIOCETHTOOL = 0x8946
ETHTOOL_SRXCSUM, ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO = 0x15, 0x17, 0x1F, 0x24


def missing(*programs):
    """Why namespaces with ``programs`` cannot be used here (a string), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    absent = [p for p in ("ip", *programs) if shutil.which(p) is None]
    if absent:
        return "missing programs: " + ", ".join(absent)
    if not hasattr(socket, "AF_PACKET"):
        return "needs AF_PACKET (Linux)"
    return None


def run(*argv):
    """Run a command; raise ``subprocess.CalledProcessError`` if it fails."""
    subprocess.run(argv, check=True)


class Namespaces:
    """Network namespaces ``names``: created (leftovers of an earlier run removed first), and
    deleted with everything in them by :meth:`close` or at the end of a ``with`` block."""

    def __init__(self, *names):
        self.names = names
        self.close()
        try:
            for name in names:
                run("ip", "netns", "add", name)
        except BaseException:
            self.close()
            raise

    def close(self):
        """Delete the namespaces (those that exist)."""
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def add_veth(ns_a, if_a, ns_b, if_b, mac_a=None, mac_b=None):
    """A veth pair, ``if_a`` in namespace ``ns_a`` and ``if_b`` in ``ns_b`` (both down), with
    the given MACs (else random ones)."""
    address_a = ["address", mac_a] if mac_a else []
    address_b = ["address", mac_b] if mac_b else []
    run("ip", "link", "add", if_a, "netns", ns_a, *address_a, "type", "veth", "peer", "name",
        if_b, "netns", ns_b, *address_b)


def in_namespace(ns, function, *args):
    """Call ``function(*args)`` in a thread that has entered namespace ``ns``; return its
    result, or raise what it raised."""
    result = {}

    def enter_and_call():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/var/run/netns/{ns}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            result["value"] = function(*args)
        except BaseException as exc:          # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=enter_and_call)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def packet_socket(ns, ifname, protocol=ETH_P_ALL):
    """An AF_PACKET raw socket for EtherType ``protocol`` (every frame by default), bound to
    ``ifname`` inside namespace ``ns`` (None: the caller's)."""
    def open_socket():
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
        sock.bind((ifname, 0))
        return sock
    return open_socket() if ns is None else in_namespace(ns, open_socket)


def ethtool_set(ifname, command, value):
    """One ETHTOOL_S* ioctl (struct ethtool_value) on ``ifname``, in the caller's namespace."""
    buf = ctypes.create_string_buffer(struct.pack("II", command, value), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(buf)) + bytes(16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCETHTOOL, ifreq)


def offloads_off(ns, ifname, commands=(ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_STXCSUM,
                                       ETHTOOL_SRXCSUM)):
    """Turn off offloads of ``ifname`` in namespace ``ns``; by default TSO and GSO (one frame
    per segment) and TX and RX checksum offload.  With TX checksum offload on, a veth peer's
    capture sees only the pseudo-header sum; with RX checksum offload on, veth marks injected
    frames as verified, so the kernel would not check our checksums."""
    def ioctls():
        for command in commands:
            ethtool_set(ifname, command, 0)
    in_namespace(ns, ioctls)


class Sniffer:
    """The frames seen on ``ifname`` in namespace ``ns``, read by a background thread for
    ``seconds`` (None: until :meth:`stop`) into :attr:`frames`, those for which
    ``keep(frame)`` is true.  Both directions are seen; ``outgoing=False`` leaves out what the
    host sent (on a loopback, which sees every frame twice).  The socket is bound before the
    constructor returns, so nothing sent afterwards is missed."""

    def __init__(self, ns, ifname, seconds=None, keep=None, outgoing=True):
        self.frames = []
        self._sock = packet_socket(ns, ifname)
        self._end = None if seconds is None else time.monotonic() + seconds
        self._keep = keep
        self._outgoing = outgoing
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        with self._sock:
            while not self._stopped.is_set():
                left = 0.1 if self._end is None else min(0.1, self._end - time.monotonic())
                if left <= 0:
                    return
                if not select.select([self._sock], [], [], left)[0]:
                    continue
                try:
                    frame, address = self._sock.recvfrom(65536)
                except OSError:             # ENETDOWN until the interface comes up
                    time.sleep(0.01)
                    continue
                if not self._outgoing and address[2] == socket.PACKET_OUTGOING:
                    continue
                if self._keep is None or self._keep(frame):
                    self.frames.append(frame)

    def join(self):
        """Wait for the end of the capture; returns :attr:`frames`."""
        self._thread.join()
        return self.frames

    def stop(self):
        """End the capture now; returns :attr:`frames`."""
        self._stopped.set()
        return self.join()

    def hex_lines(self):
        """Wait for the end of the capture; the frames as hex, one a line."""
        return "".join(frame.hex() + "\n" for frame in self.join())


#: dnsmasq's options for :class:`Dnsmasq`: no configuration file, upstream servers or
#: /etc/hosts; authoritative for "lan" with web.lan (A and AAAA) and www.lan (a CNAME).
DNSMASQ_ARGS = [
    "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
    "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53", "--pid-file=",
    "--user=root", "--local=/lan/", "--domain=lan",
    "--host-record=web.lan,10.77.0.5,fd77::5", "--cname=www.lan,web.lan",
]


class Dnsmasq(Namespaces):
    """dnsmasq answering on 127.0.0.1:53 in namespace ``ns``, where only the loopback is up
    (a context manager; leaving it stops dnsmasq and deletes the namespace).  Besides
    :data:`DNSMASQ_ARGS` it has big.lan with 100 addresses (10.77.1.1 to 10.77.1.100: over
    1232 bytes, so UDP answers are truncated), in a hosts file written to ``workdir``, and
    the options ``extra``.  The constructor returns once dnsmasq answers."""

    def __init__(self, ns, workdir, extra=()):
        self.proc = None
        super().__init__(ns)
        self.ns = ns
        try:
            run("ip", "-n", ns, "link", "set", "lo", "up")
            hosts = os.path.join(workdir, "hosts")
            with open(hosts, "w") as f:
                f.writelines(f"10.77.1.{i} big.lan\n" for i in range(1, 101))
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, "dnsmasq", *DNSMASQ_ARGS, f"--addn-hosts={hosts}",
                 *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            in_namespace(ns, self._wait_ready)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self):
        from lwstack.wire.dns import TYPE_A, Message, Question
        query = Message(1, rd=True, questions=[Question("web.lan", TYPE_A)]).emit()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.1)
            for _ in range(100):
                if self.proc.poll() is not None:
                    raise RuntimeError("dnsmasq exited: " + self.proc.stderr.read().decode())
                sock.sendto(query, ("127.0.0.1", 53))
                try:
                    sock.recv(512)
                    return
                except OSError:
                    continue
        raise RuntimeError("dnsmasq does not answer")

    def close(self):
        """Stop dnsmasq and delete the namespace."""
        if self.proc is not None:
            stop_process(self.proc)
        super().close()


class KernelNamespace:
    """A namespace seen from outside: commands run in it with ``ip netns exec`` (which execs,
    so a started process keeps its PID and the test's ``processes`` registry can stop it)."""

    def __init__(self, processes, name):
        self.processes = processes
        self.name = name

    def argv(self, *argv):
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv, timeout=60, check=False):
        """Run a command in the namespace; the completed process (text).  ``check``: assert
        it succeeded, with its output in the message."""
        result = subprocess.run(self.argv(*argv), capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=timeout)
        if check:
            assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
        return result

    def start(self, *argv, **kwargs):
        """Start a command in the namespace (a process of the test's registry)."""
        return self.processes.start(self.argv(*argv), **kwargs)

    def python(self, code, *args, **kwargs):
        """Start ``python -c code args`` in the namespace."""
        return self.start(sys.executable, "-c", code, *args, **kwargs)

    def plug_tap(self, locator, tap):
        """Make the tap ``tap`` in the namespace with Debian's ``vde_plug2tap``, plugged into
        the switch at ``locator`` (left down: addresses and sysctls first); the plug's
        process, stopped with the test's others."""
        plug = self.start("vde_plug2tap", "-s", locator.removeprefix("vde://"), tap)
        assert wait_for(lambda: plug.poll() is not None
                        or self.run("ip", "link", "show", tap).returncode == 0), \
            "vde_plug2tap did not create its tap"
        assert plug.poll() is None, plug.stderr.read()
        return plug

    def sysctl(self, key, value):
        """Set a sysctl of the namespace."""
        self.run("sysctl", "-qw", f"{key}={value}", check=True)

    def counters(self, *names):
        """The namespace's kernel counters (``nstat``: absolute, history left alone)."""
        result = self.run("nstat", "-asz", *names, check=True)
        values = {}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] in names:
                values[fields[0]] = int(fields[1])
        return values

    def sockets(self):
        """``ss -Htan`` lines (every TCP socket in the namespace, listeners included)."""
        return self.run("ss", "-Htan").stdout.splitlines()
