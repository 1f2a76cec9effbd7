"""lwrun: unmodified Python programs, each under ``lwrun`` in a process of its own, talking to
another ``lwrun`` process through an ``lwswitch`` the test starts; and lwrun's own errors.

The servers are stdlib programs that know nothing of lwstack (``lwrun_programs.py`` beside
this file, or ``-c`` code here); here they serve with ``--loop accept`` (no selector), so
these tests of the clients do not depend on ``fileno()`` readiness; the servers' own
``serve_forever()`` and asyncio loops are in ``test_lwrun_servers.py``.
"""
import hashlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lwrun_programs.py")
SERVER = "10.0.0.1"
CLIENT = "10.0.0.2"


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("LWSTACK_NET", None)
    env.pop("LWSTACK_CONF", None)
    return env


class Program:
    """A long-running program under lwrun: its stdout lines, read by a thread."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = queue.SimpleQueue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))
        except (ValueError, OSError):
            pass
        self.lines.put(None)

    def expect(self, pattern, timeout=30.0):
        """The first line (from now on) matching the regular expression ``pattern``; fails
        the test, with the program's stderr, if it exits or stays silent first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{self.proc.args[3:]}: no line matching {pattern!r} within "
                            f"{timeout} s; saw {self.seen}")
            if line is None:
                self.lines.put(None)
                self.proc.wait(timeout=10)
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"{self.proc.args[3:]} exited ({self.proc.returncode}) before "
                            f"printing {pattern!r}; saw {self.seen}; stderr:\n{stderr}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match


def lwrun_argv(locator, conf, *program):
    return [sys.executable, "-m", "lwrun", "--net", locator, "--conf", conf, "--", *program]


def start(processes, locator, address, *program, **popen):
    """Start a program under lwrun with ``ip=ADDRESS/24``."""
    return Program(processes.start(lwrun_argv(locator, f"ip={address}/24", *program),
                                   env=_env(), **popen))


def run(locator, *program, conf=f"ip={CLIENT}/24", timeout=90):
    """Run a program under lwrun to its end: the CompletedProcess."""
    return subprocess.run(lwrun_argv(locator, conf, *program), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=_env())


def run_ok(locator, *program, **kwargs):
    result = run(locator, *program, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def server(processes, locator, *program, ready=r"^ready \S+ (\d+)$"):
    """Start a server under lwrun at SERVER and wait for its ready line."""
    prog = start(processes, locator, SERVER, *program)
    prog.expect(ready)
    return prog


def make_site(tmp_path):
    """A directory with a text file and 300 kB of binary data: (directory, data)."""
    directory = tmp_path / "www"
    directory.mkdir()
    data = hashlib.sha256(b"lwrun").digest() * (300_000 // 32)
    (directory / "blob.bin").write_bytes(data)
    (directory / "hello.txt").write_text("hello from a stack of its own\n")
    return str(directory), data


def make_test_pki(tmp_path):
    """A test CA and a server certificate for SERVER and 10.0.0.3 (tests/tls/tls_certs.py)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tls"))
    try:
        import tls_certs
    finally:
        sys.path.pop(0)
    directory = tmp_path / "pki"
    directory.mkdir()
    return tls_certs.make_pki(str(directory), server_addresses=[SERVER, "10.0.0.3"])


@pytest.fixture
def site(tmp_path):
    """:func:`make_site`."""
    return make_site(tmp_path)


@pytest.fixture
def pki(tmp_path):
    """:func:`make_test_pki`."""
    return make_test_pki(tmp_path)


# -- clients of the stdlib, against servers that do not need fileno() ---------------------------

FETCH_HTTP = """
import hashlib, http.client, sys, urllib.request
base = sys.argv[1]
print("text", urllib.request.urlopen(base + "/hello.txt", timeout=20).read().decode().strip())
with urllib.request.urlopen(base + "/blob.bin", timeout=20) as reply:
    body = reply.read()
    print("blob", reply.status, reply.headers["Content-Length"], hashlib.sha256(body).hexdigest())
request = urllib.request.Request(base + "/echo", data=b"posted through lwstack")
with urllib.request.urlopen(request, timeout=20) as reply:
    print("post", reply.read().decode(), reply.headers["X-Client"])
connection = http.client.HTTPConnection(sys.argv[2], int(sys.argv[3]), timeout=20)
connection.request("GET", "/hello.txt")
reply = connection.getresponse()
print("http.client", reply.status, reply.read().decode().strip(), reply.headers["Server"][:14])
try:
    urllib.request.urlopen(base + "/missing", timeout=20)
except urllib.error.HTTPError as exc:
    print("missing", exc.code)
"""


def _check_fetch(out, data):
    lines = out.splitlines()
    assert "text hello from a stack of its own" in lines
    assert f"blob 200 {len(data)} {hashlib.sha256(data).hexdigest()}" in lines
    assert f"post POSTED THROUGH LWSTACK {CLIENT}" in lines
    assert "missing 404" in lines


def test_urllib_and_http_client_fetch_from_http_server(lwswitch, processes, site):
    directory, data = site
    server(processes, lwswitch, PROGRAMS, "http", directory, "--loop", "accept", "--port", "80")
    out = run_ok(lwswitch, "-c", FETCH_HTTP, f"http://{SERVER}", SERVER, "80")
    _check_fetch(out, data)
    assert "http.client 200 hello from a stack of its own SimpleHTTP/0.6" in out


FETCH_HTTPS = """
import hashlib, http.client, ssl, sys, urllib.request
cafile, url = sys.argv[1], sys.argv[2]
context = ssl.create_default_context(cafile=cafile)
with urllib.request.urlopen(url + "/blob.bin", context=context, timeout=20) as reply:
    print("blob", reply.status, hashlib.sha256(reply.read()).hexdigest())
connection = http.client.HTTPSConnection(sys.argv[3], 4443, context=context, timeout=20)
connection.connect()
tls = connection.sock
print("tls", tls.version(), dict(x[0] for x in tls.getpeercert()["subject"])["commonName"])
connection.request("POST", "/echo", body=b"secret")
print("https", connection.getresponse().read().decode())
try:
    urllib.request.urlopen(url + "/hello.txt", context=ssl.create_default_context(), timeout=20)
except urllib.error.URLError as exc:
    print("unknown CA", type(exc.reason).__name__, exc.reason.verify_code)
"""


def test_https_with_urllib_and_http_client(lwswitch, processes, site, pki):
    directory, data = site
    server(processes, lwswitch, PROGRAMS, "http", directory, "--loop", "accept", "--port",
           "4443", "--tls", pki.server_cert, pki.server_key)
    out = run_ok(lwswitch, "-c", FETCH_HTTPS, pki.ca, f"https://{SERVER}:4443", SERVER)
    lines = out.splitlines()
    assert f"blob 200 {hashlib.sha256(data).hexdigest()}" in lines
    assert re.search(r"^tls TLSv1\.[23] server\.test$", out, re.M), out
    assert "https SECRET" in lines
    # A real TLS handshake: without the test CA the certificate is refused.
    assert "unknown CA SSLCertVerificationError 20" in lines


SOCKETSERVER_CLIENTS = """
import socket, sys
with socket.create_connection((sys.argv[1], 7000), timeout=20) as conn:
    stream = conn.makefile("rwb")
    for word in (b"one", b"two"):
        stream.write(word + b"\\n"); stream.flush()
        print("tcp", stream.readline().decode().strip())
    print("tcp peer", conn.getpeername(), "local", conn.getsockname()[0])
"""


def test_socketserver_tcp_client(lwswitch, processes):
    server(processes, lwswitch, PROGRAMS, "tcp-echo", "--loop", "accept", "--port", "7000")
    out = run_ok(lwswitch, "-c", SOCKETSERVER_CLIENTS, SERVER)
    assert f"tcp ONE from {CLIENT}" in out and f"tcp TWO from {CLIENT}" in out
    assert f"tcp peer ('{SERVER}', 7000) local {CLIENT}" in out


UDP_CLIENT = """
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.settimeout(5)
    for word in (b"alpha", b"beta"):
        for attempt in range(5):           # the first datagram may wait for ARP
            sock.sendto(word, (sys.argv[1], 7001))
            try:
                data, peer = sock.recvfrom(2048)
                break
            except socket.timeout:
                continue
        print("udp", data.decode(), peer)
"""


def test_socketserver_udp_client(lwswitch, processes):
    server(processes, lwswitch, PROGRAMS, "udp-echo", "--loop", "accept", "--port", "7001")
    out = run_ok(lwswitch, "-c", UDP_CLIENT, SERVER)
    assert f"udp ALPHA from {CLIENT} ('{SERVER}', 7001)" in out
    assert f"udp BETA from {CLIENT} ('{SERVER}', 7001)" in out


XMLRPC_CLIENT = """
import sys, xmlrpc.client
proxy = xmlrpc.client.ServerProxy(f"http://{sys.argv[1]}:8000/")
print("add", proxy.add(2, 40), proxy.add("lw", "stack"))
print("whoami", proxy.whoami())
try:
    proxy.nonexistent()
except xmlrpc.client.Fault as fault:
    print("fault", fault.faultCode)
"""


def test_xmlrpc_client(lwswitch, processes):
    server(processes, lwswitch, PROGRAMS, "xmlrpc", "--loop", "accept", "--port", "8000")
    out = run_ok(lwswitch, "-c", XMLRPC_CLIENT, SERVER)
    assert "add 42 lwstack" in out
    assert f"whoami {CLIENT}" in out
    assert "fault 1" in out


REQUESTS_CLIENT = """
import hashlib, sys, requests
base, cafile = sys.argv[1], sys.argv[2]
reply = requests.get(base + "/blob.bin", timeout=20)
print("get", reply.status_code, hashlib.sha256(reply.content).hexdigest())
with requests.Session() as session:
    for number in range(3):
        reply = session.post(base + "/echo", data=f"post {number}", timeout=20)
        print("post", reply.text, reply.headers["X-Client"])
reply = requests.get(sys.argv[3] + "/hello.txt", verify=cafile, timeout=20)
print("https", reply.status_code, reply.text.strip())
"""


def test_requests_http_and_https(lwswitch, processes, site, pki):
    pytest.importorskip("requests")
    directory, data = site
    server(processes, lwswitch, PROGRAMS, "http", directory, "--loop", "accept", "--port", "80")
    tls = start(processes, lwswitch, "10.0.0.3", PROGRAMS, "http", directory, "--loop",
                "accept", "--port", "443", "--tls", pki.server_cert, pki.server_key)
    tls.expect(r"^ready")
    out = run_ok(lwswitch, "-c", REQUESTS_CLIENT, f"http://{SERVER}", pki.ca,
                 "https://10.0.0.3")
    assert f"get 200 {hashlib.sha256(data).hexdigest()}" in out
    for number in range(3):
        assert f"post POST {number} {CLIENT}" in out
    assert "https 200 hello from a stack of its own" in out


HTTPX_CLIENT = """
import sys, httpx
with httpx.Client(timeout=20) as client:
    print("get", client.get(sys.argv[1] + "/hello.txt").text.strip())
    print("post", client.post(sys.argv[1] + "/echo", content=b"httpx").text)
"""


def test_httpx_sync_client(lwswitch, processes, site):
    pytest.importorskip("httpx")
    directory, _data = site
    server(processes, lwswitch, PROGRAMS, "http", directory, "--loop", "accept", "--port", "80")
    out = run_ok(lwswitch, "-c", HTTPX_CLIENT, f"http://{SERVER}")
    assert "get hello from a stack of its own" in out
    assert "post HTTPX" in out


# -- what lwrun adds: exit, per-thread stacks, isolation from the host --------------------------

def test_stack_closes_at_exit_letting_connections_finish(lwswitch, processes):
    sink = server(processes, lwswitch, PROGRAMS, "tcp-sink", "--loop", "accept", "--port",
                  "7002")
    # 2 MB handed to the stack, then the program ends without closing its socket.
    program = ("import socket, sys\n"
               "conn = socket.create_connection((sys.argv[1], 7002), timeout=20)\n"
               "conn.sendall(bytes(range(256)) * 8192)\n")
    result = run(lwswitch, "-c", program, SERVER)
    assert result.returncode == 0, result.stderr
    data = bytes(range(256)) * 8192
    sink.expect(rf"^received {len(data)} {hashlib.sha256(data).hexdigest()}$")


def test_exit_status_argv_and_main_of_a_script(lwswitch, tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("import socket, sys\n"
                      "import lwstack.socket\n"
                      "print(__name__, sys.argv, sys.path[0], socket.gethostname())\n"
                      "print(lwstack.socket.gethostname())       # the thread's default stack\n"
                      "sys.exit(3)\n")
    result = run(lwswitch, str(script), "a", "--net", "b", conf=f"ip={CLIENT}/24,fqdn=box.lan")
    assert result.returncode == 3, result.stderr
    assert result.stdout == f"__main__ {[str(script), 'a', '--net', 'b']} {tmp_path} box\nbox\n"


def test_module_and_code_get_their_arguments(lwswitch, tmp_path):
    (tmp_path / "lwrun_probe.py").write_text("import sys\nprint(__name__, sys.argv[1:])\n")
    result = subprocess.run(lwrun_argv(lwswitch, f"ip={CLIENT}/24", "-m", "lwrun_probe", "x",
                                       "-c", "y"), capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env=_env())
    assert (result.returncode, result.stdout) == (0, "__main__ ['x', '-c', 'y']\n"), \
        result.stderr
    out = run_ok(lwswitch, "-c", "import sys; print(sys.argv)", "-m", "z")
    assert out == "['-c', '-m', 'z']\n"


def test_uncaught_exception_prints_the_programs_traceback(lwswitch):
    result = run(lwswitch, "-c", "def fail():\n    1 / 0\nfail()\n")
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):\n"), result.stderr
    assert 'File "<string>", line 2, in fail' in result.stderr
    assert result.stderr.endswith("ZeroDivisionError: division by zero\n")
    assert "lwrun" not in result.stderr and "runpy" not in result.stderr


ISOLATION = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    print("kernel loopback reached")
except OSError as exc:
    print("loopback refused:", type(exc).__name__)
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
    unix.connect(sys.argv[2])
    unix.sendall(b"over AF_UNIX")
    print("unix", unix.recv(100).decode())
print("isinstance", isinstance(unix, socket.socket), isinstance(socket.socket(), socket.socket))
"""


def test_inet_never_reaches_the_host_but_unix_sockets_do(lwswitch, tmp_path):
    kernel = socket.create_server(("127.0.0.1", 0))
    kernel.setblocking(False)
    path = str(tmp_path / "unix.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen()

    def answer():
        conn, _ = unix.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        out = run_ok(lwswitch, "-c", ISOLATION, str(kernel.getsockname()[1]), path)
        with pytest.raises(BlockingIOError):
            kernel.accept()                  # nothing came to the kernel's loopback
    finally:
        kernel.close()
        unix.close()
    assert "kernel loopback reached" not in out
    assert "loopback refused:" in out
    assert "unix OVER AF_UNIX" in out
    assert "isinstance True True" in out


PER_THREAD = """
import socket, sys, threading
def talk(name):
    with socket.create_connection((sys.argv[1], 7000), timeout=20) as conn:
        conn.sendall(name.encode() + b"\\n")
        reply = conn.makefile().readline().strip()
        sys.stdout.write(f"{reply} local {conn.getsockname()[0]}\\n")
talk("main")
threads = [threading.Thread(target=talk, args=(f"thread{n}",)) for n in (1, 2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_per_thread_stacks_have_their_own_addresses(lwswitch, processes):
    router = processes.python("lwrouter", "--net", lwswitch, "--conf", "ip=10.0.0.254/24",
                              "--dhcp", "10.0.0.100-10.0.0.150", stdout=subprocess.PIPE)
    Program(router).expect(r"^lwrouter: serving")
    server(processes, lwswitch, PROGRAMS, "tcp-echo", "--loop", "accept", "--port", "7000")

    def addresses(*options):
        cmd = [sys.executable, "-m", "lwrun", "--net", lwswitch, "--conf", "dhcp", *options,
               "-c", PER_THREAD, SERVER]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env(),
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        seen = {}
        for line in result.stdout.splitlines():
            match = re.fullmatch(r"(MAIN|THREAD\d) from (\S+) local (\S+)", line)
            assert match and match[2] == match[3], result.stdout
            seen[match[1]] = match[2]
        assert sorted(seen) == ["MAIN", "THREAD1", "THREAD2"]
        assert all(re.fullmatch(r"10\.0\.0\.1[0-4]\d|10\.0\.0\.150", a)
                   for a in seen.values())
        return set(seen.values())
    assert len(addresses()) == 1                    # one stack for the process
    assert len(addresses("--per-thread")) == 3      # a stack (and a lease) for each thread


# -- errors: one line -----------------------------------------------------------------------

@pytest.mark.parametrize("code, message", [
    ("import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
     "lwrun: raw sockets (SOCK_RAW) are not available over lwstack"),
    ("import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
     "lwrun: AF_PACKET sockets are not available over lwstack"),
    ("import socket; s = socket.socket(); "
     "s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'eth0')",
     "lwrun: SO_BINDTODEVICE: a routed socket lives on the stack's one interface"),
    ("import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)",
     "lwrun: AF_NETLINK sockets are not available over lwstack"),
    ("import socket, _socket; kernel = _socket.socket(); "
     "socket.fromfd(kernel.fileno(), socket.AF_INET, socket.SOCK_STREAM)",
     "lwrun: socket(fileno="),
])
def test_what_cannot_work_is_one_line(lwswitch, code, message):
    result = run(lwswitch, "-c", code)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_a_program_may_catch_the_refusal(lwswitch):
    # Ping programs try a raw socket, then fall back to an ICMP datagram socket on EPERM.
    code = ("import socket\n"
            "try:\n"
            "    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
            "except PermissionError:\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n"
            "    print('fell back to', s.type.name, s.proto)\n")
    result = run(lwswitch, "-c", code)
    assert (result.returncode, result.stdout) == (0, "fell back to SOCK_DGRAM 1\n")
    assert result.stderr.startswith("lwrun: raw sockets (SOCK_RAW)")     # still said, once
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("argv", [
    [],
    ["--net", "vde:///tmp/x"],
    ["--wait", "0", "-c", "pass"],
    ["--wait", "soon", "-c", "pass"],
    ["--conf", "ip=10.0.0.2/24,colour=blue", "-c", "pass"],
    ["--per-thread", "--conf", "ip=10.0.0.2/24", "-c", "pass"],
    ["--per-thread", "--conf", "dhcp,mac=02:00:00:00:00:01", "-c", "pass"],
    ["--conf", "dhcp", "-m"],
    ["--conf", "dhcp", "/nonexistent/program.py"],
    ["--bogus", "-c", "pass"],
])
def test_bad_arguments_give_one_line(argv):
    result = subprocess.run([sys.executable, "-m", "lwrun", *argv], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL, env=_env())
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lwrun: "), result.stderr
    assert "Traceback" not in result.stderr


def test_help():
    result = subprocess.run([sys.executable, "-m", "lwrun", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: lwrun [--net LOCATOR] [--conf CONFIG]")


@pytest.mark.parametrize("argv, message", [
    (["--net", "vde:///nonexistent/sw", "--conf", "ip=10.0.0.2/24", "-c", "pass"],
     "no VDE switch at /nonexistent/sw"),
    (["--net", "vde:///nonexistent/sw", "--conf", "ip=10.0.0.2/24", "-m", "no_such_module_x"],
     "No module named no_such_module_x"),
])
def test_runtime_errors_give_one_line(argv, message):
    result = subprocess.run([sys.executable, "-m", "lwrun", *argv], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL, env=_env())
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lwrun: ") and message in lines[0], \
        result.stderr


def test_configuration_that_never_comes_is_one_line(lwswitch):
    result = subprocess.run([sys.executable, "-m", "lwrun", "--net", lwswitch, "--conf", "dhcp",
                             "--wait", "1", "-c", "print('ran')"], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL, env=_env())
    assert result.returncode == 1
    assert result.stdout == ""                  # the program never started
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lwrun: not configured within 1 s: "
                                                   "waiting for DHCPv4 lease"), result.stderr
