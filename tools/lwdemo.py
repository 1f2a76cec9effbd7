"""lwdemo: the Internet of Threads in one command.

Starts a virtual switch in a temporary directory and a router on it (``lwrouter``: DHCPv4,
IPv6 router advertisements, DHCPv6 and DNS for the LAN), then a first process (A) that
configures itself with ``auto`` (a DHCPv4 lease, SLAAC and DHCPv6 addresses) and echoes UDP
on both families, and plugs this process (B) in beside it, configured the same way; B finds A
by name through the router's DNS (A and AAAA records), pings it and exchanges UDP datagrams
with it over IPv4 and IPv6.  A third process (C) is a stock ``python -m http.server`` that
``lwrun`` runs on a stack of its own (``www``); B fetches a page from it by name with
``urllib.request``, routed through B's stack by :mod:`lwstack.launcher`, over IPv4 and IPv6.
Then the demo shows the switch's view of its ports and the router's log, and cleans
everything up.  No root, no change to the host's network.
"""
import argparse
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import lwcli

ROUTER_CONF = "ip=10.0.0.1/24,ip=fd00:10::1/64,fqdn=router.lan"
DHCP_RANGE = "10.0.0.100-10.0.0.199"
PREFIX = "fd00:10::/64"
DHCP6_RANGE = "fd00:10::100-fd00:10::1ff"
DOMAIN = "lan"
PEER_NAME = "echo"
WEB_NAME = "www"
#: The page C serves (its directory holds only this file).
PAGE = "<!doctype html><title>lwdemo</title><p>Hello from an unmodified http.server on lwstack.\n"
OWN_CONF = "auto,fqdn=demo"
#: Seconds to wait for the configuration (it takes about four: RFC 4862's random delay and
#: duplicate address detection, router solicitation, the DHCPv4 and DHCPv6 exchanges).
CONFIG_TIMEOUT = 15
#: How process A ends the description of itself.
READY = "echoing UDP port 7 over IPv4 and IPv6"


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

    def start(self, *argv, env=None, stop_signal=signal.SIGTERM):
        """Start ``python -m argv``; ``stop_signal`` is what :meth:`stop` sends it."""
        proc = subprocess.Popen([sys.executable, "-m", *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
        proc.stop_signal = stop_signal
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(proc.stop_signal)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class _Lines:
    """Every line a child prints, collected by a thread (its pipe never fills up), for
    :meth:`next` to hand out in order and for the demo to show at the end."""

    def __init__(self, proc, what):
        self.lines = []
        self._proc = proc
        self._what = what
        self._taken = 0
        self._ended = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self._proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip())
                self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def next(self, timeout):
        """The next line not yet taken; OSError naming the child if none comes in time."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._taken < len(self.lines) or self._ended,
                                       timeout):
                raise OSError(f"{self._what} did not start within {timeout:g} s")
            if self._taken == len(self.lines):
                self._proc.wait()
                raise OSError(f"{self._what} exited with status {self._proc.returncode}")
            self._taken += 1
            return self.lines[self._taken - 1]


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
        say("lwdemo: processes with their own MAC, IPv4 and IPv6 addresses on a virtual switch,")
        say("        given by DHCP and SLAAC and found by name, with no root and no change to")
        say("        this machine's network.\n")
        say(f"[1] Starting a virtual Ethernet switch: lwswitch -s {switch_dir} -M {mgmt}")
        switch = children.start("lwswitch", "-s", switch_dir, "-M", mgmt)
        _wait_for_path(os.path.join(switch_dir, "ctl"), switch, 10, "lwswitch")
        _wait_for_path(mgmt, switch, 10, "lwswitch's console")
        say(f"    switch running (pid {switch.pid}); vde2 tools can plug in too: "
            f"vde_plug {locator}\n")

        router_argv = ["--net", locator, "--conf", ROUTER_CONF, "--dhcp", DHCP_RANGE,
                       "--ra", PREFIX, "--dhcp6", DHCP6_RANGE, "--dns", "--domain", DOMAIN]
        say("[2] Starting a router for the LAN:")
        say(f"    lwrouter {' '.join(router_argv[:6])}")
        say(f"             {' '.join(router_argv[6:])}")
        router = children.start("lwrouter", *router_argv)
        router_log = _Lines(router, "lwrouter")
        say(f"    router (pid {router.pid}) says: {router_log.next(10)}\n")

        say(f"[3] Starting process A, named {PEER_NAME!r}, configured automatically "
            f"(--conf auto,fqdn={PEER_NAME}),")
        say("    process C, an unmodified web server run by lwrun with a stack of its own:")
        site = os.path.join(workdir, "site")
        os.mkdir(site)
        with open(os.path.join(site, "index.html"), "w", encoding="utf-8") as page:
            page.write(PAGE)
        web_argv = ["--net", locator, "--conf", f"auto,fqdn={WEB_NAME}", "--",
                    "-m", "http.server", "80", "--bind", "::", "--directory", site]
        say(f"    lwrun {' '.join(web_argv[:5])}")
        say(f"          {' '.join(web_argv[5:])}")
        say(f"    and plugging this process (B) in beside them with --conf {OWN_CONF}.")
        peer = children.start("lwdemo", "--peer", locator, PEER_NAME)
        peer_lines = _Lines(peer, "process A")
        # SIGINT: http.server ends its serve_forever, lwrun closes C's stack (leases released).
        web = children.start("lwrun", *web_argv, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                             stop_signal=signal.SIGINT)
        web_lines = _Lines(web, "process C (http.server under lwrun)")
        with lwstack.Stack(locator, OWN_CONF, description="lwdemo B") as stack:
            started = time.monotonic()           # B configures itself while A does
            line = peer_lines.next(CONFIG_TIMEOUT + 5)
            say(f"    A (pid {peer.pid}) says: {line}")
            while line != READY:
                line = peer_lines.next(5)
                say(f"        {line}")
            say(f"    C (pid {web.pid}) says: {web_lines.next(CONFIG_TIMEOUT + 5)}")
            say("")
            stack.wait_configured(CONFIG_TIMEOUT)
            say(f"[4] B (pid {os.getpid()}, MAC {stack.mac}) was configured in "
                f"{time.monotonic() - started:.1f} s:")
            for line in describe(stack):
                say(f"    {line}")
            say("")
            say(f"[5] B looks up {PEER_NAME!r} through the router's DNS (search domain "
                f"{DOMAIN!r} from DHCP):")
            infos = lws.getaddrinfo(PEER_NAME, 7, type=lws.SOCK_DGRAM,
                                    flags=lws.AI_CANONNAME, stack=stack)
            v4 = next((i[4][0] for i in infos if i[0] == lws.AF_INET), None)
            v6 = next((i[4][0] for i in infos if i[0] == lws.AF_INET6), None)
            found = [f"{a} ({kind})" for a, kind in ((v4, "A"), (v6, "AAAA")) if a]
            say(f"    getaddrinfo({PEER_NAME!r}, 7) -> {infos[0][3]} is {' and '.join(found)}")
            if v6 is not None:
                say("    (the AAAA record is A's DHCPv6 address: the router names the leases "
                    "it gives;")
                say("    it never learns SLAAC addresses, which hosts form on their own)")
            say("")
            total = ok = 0
            for family, address, how in ((lws.AF_INET, v4, "ARP"),
                                         (lws.AF_INET6, v6, "neighbour discovery")):
                version = "IPv4" if family == lws.AF_INET else "IPv6"
                if address is None:
                    say(f"    no {version} address for {PEER_NAME!r}: skipping {version}\n")
                    total += 2
                    continue
                step = 6 if family == lws.AF_INET else 7
                say(f"[{step}] B pings A over {version} ({address}); {how} finds A's MAC "
                    "first:")
                replies = _ping(stack, lws, family, address, args.count)
                say(f"    {replies}/{args.count} replies")
                say("    and sends UDP datagrams to A's echo port 7, reading the echoes:")
                echoed = _udp_exchange(stack, lws, family, address, args.count)
                say(f"    {echoed}/{args.count} echoed intact\n")
                total += 2
                ok += (replies == args.count) + (echoed == args.count)
            say(f"[8] B fetches http://{WEB_NAME}/ from C with urllib.request, its sockets routed "
                "through B's stack")
            say("    (lwstack.launcher, what lwrun does for a whole program):")
            fetched = _fetch_pages(stack, lws, WEB_NAME)
            for line in fetched:
                say(f"    {line}")
            total += 2
            ok += sum(line.endswith("(the page C serves)") for line in fetched)
            say("    C's log (http.server writes one line per request):")
            time.sleep(0.1)
            for line in web_lines.lines[1:]:
                say(f"        {line}")
            say("")
            say("[9] The switch's view, from its management console (port/print):")
            for line in _console(mgmt, "port/print"):
                say(f"    {line}")
            say("")
        time.sleep(0.2)                  # B's RELEASEs reach the router's log
        say("[10] What the router handed out (its log):")
        for line in router_log.lines[1:]:
            say(f"    {line}")
        say("")
        say("[11] Cleaning up: stopping A, C, the router and the switch, removing " + workdir)
        say("done: " + ("every ping answered, every datagram echoed and both pages fetched, "
                        "over IPv4 and IPv6." if ok == total
                        else "some replies were missing (see above)."))
        return 0 if ok == total else 1
    finally:
        children.stop()
        _remove_tree(workdir)


def describe(stack):
    """What a configured stack got, as a few lines: the DHCPv4 lease, the IPv6 addresses by
    origin (SLAAC, DHCPv6, link-local), the IPv6 default router and name servers."""
    from lwstack.iface.autoconf import lease_summary

    lines = []
    if stack.dhcp4 is not None and stack.dhcp4.lease is not None:
        lines.append(f"IPv4 by DHCP: {lease_summary(stack.dhcp4.lease)}")
    how = {"slaac": "by SLAAC", "dhcpv6": "by DHCPv6", "manual": "static",
           "link-local": "link-local"}
    order = list(how)
    addresses = [f"{address} {how.get(origin, origin)}"
                 for address, state, origin in sorted(
                     stack.ipv6_addresses,
                     key=lambda a: order.index(a[2]) if a[2] in order else len(order))
                 if state != "tentative"]
    if addresses:
        lines.append("IPv6: " + ", ".join(addresses))
    with stack.driver.lock:
        routers = list(stack.host.nd.routers)
    extra = [f"default router {ipaddress.ip_address(r)} (from its advertisement)"
             for r in routers[:1]]
    extra += [f"dns {s}" for s in stack.name_servers()[0] if ":" in s]
    if extra:
        lines.append("      " + ", ".join(extra))
    return lines


def _peer(args):
    """Process A: a stack configured with ``auto`` that echoes UDP port 7 for both families
    (one dual-stack socket) and answers ping."""
    import lwstack
    from lwstack import socket as lws

    locator, name = args.peer
    lwcli.stop_on_sigterm()
    with lwstack.Stack(locator, f"auto,fqdn={name}",
                       description=f"lwdemo peer {name}") as stack:
        stack.wait_configured(CONFIG_TIMEOUT)
        with stack.socket(lws.AF_INET6) as sock:
            sock.bind(("::", 7))         # IPV6_V6ONLY is off: IPv4 peers come as ::ffff:a.b.c.d
            lines = describe(stack)
            print(lines[0], flush=True)
            for line in lines[1:] + [READY]:
                print(line, flush=True)
            try:
                while True:
                    data, source = sock.recvfrom(65535)
                    sock.sendto(data, source)
            except KeyboardInterrupt:
                pass
    return 0


def _fetch_pages(stack, lws, name):
    """Fetch ``http://NAME/`` and the same over IPv6 with the stdlib's urllib, routed through
    ``stack``; one line per fetch."""
    import urllib.request

    from lwstack import launcher

    six = next((i[4][0] for i in lws.getaddrinfo(name, 80, lws.AF_INET6, stack=stack)), None)
    urls = [f"http://{name}/"] + ([f"http://[{six}]/"] if six else [])
    lines = []
    with launcher.routed(stack):
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    body = response.read().decode("utf-8", "replace")
                    lines.append(f"GET {url} -> {response.status} {response.reason}, "
                                 f"server {response.headers['Server']!r}, {len(body)} bytes"
                                 + (" (the page C serves)" if body == PAGE else ""))
            except OSError as exc:
                lines.append(f"GET {url} failed: {exc}")
    return lines


def _ping(stack, lws, family, peer, count):
    if family == lws.AF_INET:
        sock = stack.socket(lws.AF_INET, lws.SOCK_DGRAM, lws.IPPROTO_ICMP)
        sock.setsockopt(lws.IPPROTO_IP, lws.IP_RECVTTL, 1)
        echo_request = 8
    else:
        sock = stack.socket(lws.AF_INET6, lws.SOCK_DGRAM, lws.IPPROTO_ICMPV6)
        sock.setsockopt(lws.IPPROTO_IPV6, lws.IPV6_RECVHOPLIMIT, 1)
        echo_request = 128
    with sock:
        sock.connect((peer, 0))
        sock.settimeout(2.0)
        replies = 0
        for sequence in range(1, count + 1):
            started = time.perf_counter()
            sock.send(struct.pack("!BBHHH", echo_request, 0, 0, 0, sequence) + bytes(range(56)))
            try:
                message, ancdata, _flags, address = sock.recvmsg(2048, 64)
            except TimeoutError:
                say(f"    no reply to icmp_seq={sequence}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            ttl = struct.unpack("i", ancdata[0][2])[0] if ancdata else 0
            say(f"    {len(message)} bytes from {address[0]}: icmp_seq={sequence} ttl={ttl} "
                f"time={elapsed:.3f} ms")
            replies += 1
        return replies


def _udp_exchange(stack, lws, family, peer, count):
    with stack.socket(family) as sock:
        sock.connect((peer, 7))
        sock.settimeout(2.0)
        own = sock.getsockname()[0]
        echoed = 0
        for number in range(1, count + 1):
            message = f"datagram {number} from {own}".encode()
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
