"""lwdemo: the Internet of Threads in one command.

Starts a virtual switch in a temporary directory and a router on it (``lwrouter``: DHCP and
DNS for the LAN), then a first process (A) that gets its address by DHCP and echoes UDP, then
plugs this process (B) in, also configured by DHCP; B finds A by name through the router's
DNS, pings it and exchanges UDP datagrams with it, shows the switch's view of its ports and
the router's log, and cleans everything up.  No root, no change to the host's network.
"""
import argparse
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import lwcli

ROUTER_CONF = "ip=10.0.0.1/24,fqdn=router.lan"
DHCP_RANGE = "10.0.0.100-10.0.0.199"
DOMAIN = "lan"
PEER_NAME = "echo"
OWN_CONF = "dhcp,fqdn=demo"
#: Seconds to wait for a lease (the router hands one out in about a second).
LEASE_TIMEOUT = 15


def main(argv=None):
    """Run the demo; exit status 0 when every step worked."""
    parser = lwcli.ArgumentParser(prog="lwdemo", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--count", type=int, default=3,
                        help="pings and UDP datagrams to exchange (default 3)")
    # The demo's process A runs this module again in this mode.
    parser.add_argument("--peer", nargs=2, metavar=("LOCATOR", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:
        return lwcli.run(_peer, args)
    if not 1 <= args.count <= 1000:
        parser.error(f"--count {args.count}: must be 1..1000")
    return lwcli.run(_demo, args)


def say(text=""):
    """Narrate one step."""
    print(text, flush=True)


class _Children:
    """The processes the demo starts, stopped by PID on the way out."""

    def __init__(self):
        self.procs = []

    def start(self, *argv):
        proc = subprocess.Popen([sys.executable, "-m", *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class _Lines:
    """Every line a long-running child prints, collected by a thread (its pipe never
    fills up)."""

    def __init__(self, proc):
        self.lines = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc):
        for line in proc.stdout:
            self.lines.append(line.rstrip())


def _read_line(proc, timeout, what):
    """The child's next output line, or an error naming what did not start."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise OSError(f"{what} did not start within {timeout:g} s")
    line = proc.stdout.readline().rstrip()
    if not line and proc.poll() is not None:
        raise OSError(f"{what} exited with status {proc.returncode}")
    return line


def _wait_for_path(path, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise OSError(f"{what} exited with status {proc.returncode}: "
                          f"{proc.stdout.read().strip()}")
        if time.monotonic() > deadline:
            raise OSError(f"{what} did not start within {timeout:g} s")
        time.sleep(0.02)


def _console(path, command):
    """Run one command on the switch's management console; return its data lines."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as console:
        console.settimeout(5)
        console.connect(path)
        received = b""
        while not received.endswith(b"vde$ "):
            chunk = console.recv(4096)
            if not chunk:
                break
            received += chunk
        console.sendall(command.encode() + b"\n")
        received = b""
        while b"\n1000 " not in received and b"\n10" not in received[-80:]:
            chunk = console.recv(4096)
            if not chunk:
                break
            received += chunk
    lines = received.decode(errors="replace").splitlines()
    if "0000 DATA END WITH '.'" in lines:
        lines = lines[lines.index("0000 DATA END WITH '.'") + 1:]
        return lines[:lines.index(".")] if "." in lines else lines
    return lines


def _demo(args):
    import lwstack
    from lwstack import socket as lws

    children = _Children()
    workdir = tempfile.mkdtemp(prefix="lwdemo-")
    switch_dir = os.path.join(workdir, "switch")
    mgmt = os.path.join(workdir, "mgmt")
    locator = f"vde://{switch_dir}"
    try:
        say("lwdemo: processes with their own MAC and IPv4 addresses on a virtual switch, given")
        say("        by DHCP and found by name, with no root and no change to this machine's "
            "network.\n")
        say(f"[1] Starting a virtual Ethernet switch: lwswitch -s {switch_dir} -M {mgmt}")
        switch = children.start("lwswitch", "-s", switch_dir, "-M", mgmt)
        _wait_for_path(os.path.join(switch_dir, "ctl"), switch, 10, "lwswitch")
        _wait_for_path(mgmt, switch, 10, "lwswitch's console")
        say(f"    switch running (pid {switch.pid}); vde2 tools can plug in too: "
            f"vde_plug {locator}\n")

        router_argv = ["--net", locator, "--conf", ROUTER_CONF, "--dhcp", DHCP_RANGE, "--dns",
                       "--domain", DOMAIN]
        say(f"[2] Starting a router for the LAN: lwrouter {' '.join(router_argv)}")
        router = children.start("lwrouter", *router_argv)
        say(f"    router (pid {router.pid}) says: {_read_line(router, 10, 'lwrouter')}\n")
        router_log = _Lines(router)

        say(f"[3] Starting process A, named {PEER_NAME!r}, configured by DHCP "
            f"(--conf dhcp,fqdn={PEER_NAME}):")
        peer = children.start("lwdemo", "--peer", locator, PEER_NAME)
        say(f"    A (pid {peer.pid}) says: "
            f"{_read_line(peer, LEASE_TIMEOUT + 5, 'process A')}\n")

        with lwstack.Stack(locator, OWN_CONF, description="lwdemo B") as stack:
            started = time.monotonic()
            stack.wait_configured(LEASE_TIMEOUT)
            from lwstack.iface.autoconf import lease_summary
            say(f"[4] This process (B, pid {os.getpid()}, MAC {stack.mac}) plugs in with "
                f"--conf {OWN_CONF} and gets")
            say(f"    {lease_summary(stack.dhcp4.lease)} in "
                f"{time.monotonic() - started:.1f} s\n")
            say(f"[5] B looks up {PEER_NAME!r} through the router's DNS (search domain "
                f"{DOMAIN!r} from DHCP):")
            infos = lws.getaddrinfo(PEER_NAME, 7, type=lws.SOCK_DGRAM,
                                    flags=lws.AI_CANONNAME, stack=stack)
            address = infos[0][4][0]
            say(f"    getaddrinfo({PEER_NAME!r}, 7) -> {infos[0][3]} is {address}\n")
            say(f"[6] B pings A ({address}) through the switch; ARP finds A's MAC first:")
            replies = _ping(stack, lws, address, args.count)
            say(f"    {replies}/{args.count} replies\n")
            say("[7] B sends UDP datagrams to A's echo port 7 and reads the echoes:")
            echoed = _udp_exchange(stack, address, args.count)
            say(f"    {echoed}/{args.count} echoed intact\n")
            say("[8] The switch's view, from its management console (port/print):")
            for line in _console(mgmt, "port/print"):
                say(f"    {line}")
            say("")
        time.sleep(0.2)                  # B's DHCPRELEASE reaches the router's log
        say("[9] What the router handed out (its log):")
        for line in router_log.lines:
            say(f"    {line}")
        say("")
        ok = replies == args.count and echoed == args.count
        say("[10] Cleaning up: stopping A, the router and the switch, removing " + workdir)
        say("done: " + ("every ping answered and every datagram echoed." if ok
                        else "some replies were missing (see above)."))
        return 0 if ok else 1
    finally:
        children.stop()
        _remove_tree(workdir)


def _peer(args):
    """Process A: a stack configured by DHCP that echoes UDP port 7 (and answers ping)."""
    import lwstack
    from lwstack.iface.autoconf import lease_summary

    locator, name = args.peer
    lwcli.stop_on_sigterm()
    with lwstack.Stack(locator, f"dhcp,fqdn={name}", description=f"lwdemo peer {name}") as stack:
        stack.wait_configured(LEASE_TIMEOUT)
        with stack.socket() as sock:
            sock.bind(("", 7))
            print(f"got {lease_summary(stack.dhcp4.lease)}; echoing UDP port 7", flush=True)
            try:
                while True:
                    data, source = sock.recvfrom(65535)
                    sock.sendto(data, source)
            except KeyboardInterrupt:
                pass
    return 0


def _ping(stack, lws, peer, count):
    with stack.socket(lws.AF_INET, lws.SOCK_DGRAM, lws.IPPROTO_ICMP) as sock:
        sock.setsockopt(lws.IPPROTO_IP, lws.IP_RECVTTL, 1)
        sock.connect((peer, 0))
        sock.settimeout(2.0)
        replies = 0
        for sequence in range(1, count + 1):
            started = time.perf_counter()
            sock.send(struct.pack("!BBHHH", 8, 0, 0, 0, sequence) + bytes(range(56)))
            try:
                message, ancdata, _flags, (source, _port) = sock.recvmsg(2048, 64)
            except TimeoutError:
                say(f"    no reply to icmp_seq={sequence}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            ttl = struct.unpack("i", ancdata[0][2])[0] if ancdata else 0
            say(f"    {len(message)} bytes from {source}: icmp_seq={sequence} ttl={ttl} "
                f"time={elapsed:.3f} ms")
            replies += 1
        return replies


def _udp_exchange(stack, peer, count):
    with stack.socket() as sock:
        sock.connect((peer, 7))
        sock.settimeout(2.0)
        echoed = 0
        for number in range(1, count + 1):
            message = f"datagram {number} from {stack.addresses[0].split('/')[0]}".encode()
            started = time.perf_counter()
            sock.send(message)
            try:
                reply = sock.recv(2048)
            except TimeoutError:
                say(f"    no echo for datagram {number}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            intact = reply == message
            echoed += intact
            say(f"    sent {message.decode()!r}, echo came back "
                f"{'intact' if intact else 'CORRUPTED'} in {elapsed:.3f} ms")
        return echoed


def _remove_tree(path):
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)


if __name__ == "__main__":
    sys.exit(main())
