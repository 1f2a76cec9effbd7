"""dnsmasq in a network namespace of its own, and a tiny socket host for lwstack's resolver
there (for test_proto_dns_resolver).  Needs root, iproute2 and dnsmasq; callers skip otherwise.

The namespace has only its loopback up; dnsmasq answers on 127.0.0.1:53 with a few static
names and no upstream servers.  :func:`resolve_in` runs one lookup in a thread that entered
the namespace with setns(2) (only that thread is moved): it turns the resolver's "udp" records
into kernel UDP sockets bound to the chosen source ports, its "tcp" records into TCP
connections, and feeds back what arrives, on the monotonic clock.
"""
import ctypes
import os
import random
import select
import shutil
import socket
import subprocess
import threading
import time

from lwstack.proto.dns import Resolver
from lwstack.wire.dns import TYPE_A, Message, Question

NS = "lwdnsr"
CLONE_NEWNET = 0x40000000
LOCAL = bytes([127, 0, 0, 1])
DNSMASQ_ARGS = [
    "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
    "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53", "--pid-file=",
    "--user=root", "--local=/lan/", "--domain=lan", "--local-ttl=30",
    "--host-record=web.lan,10.77.0.5,fd77::5", "--cname=www.lan,web.lan",
    "--txt-record=txt.lan,hello",
]


def missing():
    """Why dnsmasq cannot be run here (a string), or None."""
    if os.geteuid() != 0:
        return "needs root"
    absent = [b for b in ("ip", "dnsmasq") if shutil.which(b) is None]
    return "missing programs: " + ", ".join(absent) if absent else None


def in_netns(function, *args):
    """Call ``function(*args)`` in a thread inside the namespace; return its result."""
    result = {}

    def run():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/var/run/netns/{NS}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            result["value"] = function(*args)
        except BaseException as exc:          # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


class Dnsmasq:
    """The namespace with dnsmasq in it (a context manager); ``extra`` adds dnsmasq options."""

    def __init__(self, workdir, extra=()):
        self.workdir = workdir
        self.extra = list(extra)
        self.proc = None

    def __enter__(self):
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        subprocess.run(["ip", "netns", "add", NS], check=True)
        try:
            subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
            hosts = os.path.join(self.workdir, "hosts")
            with open(hosts, "w") as f:
                f.writelines(f"10.77.1.{i} big.lan\n" for i in range(1, 101))
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", NS, "dnsmasq", *DNSMASQ_ARGS, f"--addn-hosts={hosts}",
                 *self.extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            in_netns(self._wait_ready)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self):
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

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def _drive(resolver, start, timeout):
    lookup = start(time.monotonic())
    udp = {}                   # local port -> socket
    tcp = {}                   # token -> socket
    deadline = time.monotonic() + timeout
    try:
        while not lookup.done:
            assert time.monotonic() < deadline, "the lookup did not finish"
            for record in resolver.outbox:
                if record.kind == "udp":
                    sock = udp.get(record.src_port)
                    if sock is None:
                        sock = udp[record.src_port] = socket.socket(socket.AF_INET,
                                                                    socket.SOCK_DGRAM)
                        sock.bind(("127.0.0.1", record.src_port))
                    sock.sendto(record.payload, (socket.inet_ntoa(record.dst_addr),
                                                 record.dst_port))
                elif record.kind == "tcp":
                    sock = socket.create_connection((socket.inet_ntoa(record.dst_addr),
                                                     record.dst_port), timeout=5)
                    sock.sendall(record.payload)
                    tcp[record.token] = sock
                elif record.kind == "tcp_close" and record.token in tcp:
                    tcp.pop(record.token).close()
            resolver.outbox.clear()
            for port in [p for p in udp if p not in resolver.ports]:
                udp.pop(port).close()
            now = time.monotonic()
            wait = max(0.0, (resolver.poll_at() or now + 0.1) - now)
            readable, _, _ = select.select([*udp.values(), *tcp.values()], [], [], wait)
            now = time.monotonic()
            for sock in readable:
                if sock in udp.values():
                    data, (addr, port) = sock.recvfrom(65535)
                    resolver.receive(socket.inet_aton(addr), port, LOCAL,
                                     sock.getsockname()[1], data, now)
                else:
                    token = next(t for t, s in tcp.items() if s is sock)
                    data = sock.recv(65535)
                    if data:
                        resolver.receive_tcp(token, data, now)
                    else:
                        tcp.pop(token).close()
                        resolver.tcp_failed(token, now)
                if lookup.done:
                    break
            resolver.poll(time.monotonic())
    finally:
        for sock in [*udp.values(), *tcp.values()]:
            sock.close()
    return lookup


def resolve_in(resolver, start, timeout=20.0):
    """Run ``start(now)`` (which calls ``resolver.resolve...`` and returns the lookup) inside
    the namespace with real sockets until the lookup is done; returns it."""
    return in_netns(_drive, resolver, start, timeout)


def resolver(**kwargs):
    """A resolver for dnsmasq in the namespace, search domain "lan"."""
    kwargs.setdefault("search", ["lan"])
    return Resolver([LOCAL], rng=random.Random(11), **kwargs)
