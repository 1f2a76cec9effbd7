"""Unmodified programs under ``lwrun`` against the Linux kernel through a tap.

The kernel lives in a network namespace made for each test, on a tap that Debian's
``vde_plug2tap`` plugs into the test's ``lwswitch``; the lwstack side is ``lwrun`` running a
stock stdlib program with its own address on the same switch.  Both directions, both
protocols:

- ``curl`` in the namespace fetches a file from ``lwrun python -m http.server``, and over
  https from a stdlib ``http.server`` whose socket the program wraps with
  ``ssl.SSLContext.wrap_socket`` (routed by the launcher to :mod:`lwstack.tls`);
- ``urllib.request`` under ``lwrun`` fetches from a kernel-side ``http.server``, over http and
  over https (verifying the kernel server's certificate against a test CA made in the test).

Addresses: the kernel is 10.83.0.1, lwstack 10.83.0.2.  Everything stays on the switch, the
namespace and loopback.
"""
import hashlib
import itertools
import os
import subprocess
import sys

import pytest

from conftest import require
from netns_support import KernelNamespace
from support import read_line

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tls"))
from tls_certs import make_pki  # noqa: E402

KERNEL = "10.83.0.1"
OURS = "10.83.0.2"
TAP = "lwtap0"
PORT = 8000
#: The body served: big enough to take many segments and windows, with every byte value.
BODY = bytes(range(256)) * 4096 + b"the end\n"

_names = itertools.count()

#: A stdlib http.server over TLS: argv = address, port, directory, certificate, key.
HTTPS_SERVER = r'''
import functools, http.server, ssl, sys
address, port, directory, cert, key = sys.argv[1:6]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
server = http.server.ThreadingHTTPServer((address, int(port)), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("serving", flush=True)
server.serve_forever()
'''

#: urllib fetching a URL (argv[1]), trusting the CA at argv[2] when given; prints the
#: status, then the body's length and SHA-256.
FETCH = r'''
import hashlib, ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2]) if len(sys.argv) > 2 else None
with urllib.request.urlopen(sys.argv[1], context=context, timeout=30) as response:
    body = response.read()
    print(response.status, len(body), hashlib.sha256(body).hexdigest(), flush=True)
'''


@pytest.fixture
def kernel(processes, lwswitch):
    """A fresh namespace whose tap (KERNEL/24) is plugged into the test's lwswitch."""
    require("vde_plug2tap", "ip", "curl", root=True, tun=True)
    name = f"lwrun{os.getpid()}x{next(_names)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ns = KernelNamespace(processes, name)
        ns.plug_tap(lwswitch, TAP)
        ns.sysctl(f"net.ipv6.conf.{TAP}.disable_ipv6", 1)
        ns.run("ip", "addr", "add", f"{KERNEL}/24", "dev", TAP, check=True)
        ns.run("ip", "link", "set", TAP, "up", check=True)
        ns.run("ip", "link", "set", "lo", "up", check=True)
        yield ns
    finally:
        processes.stop_all()
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def site(tmp_path):
    """A directory holding ``file.bin`` (BODY) and a test PKI whose server certificate names
    both addresses; returns ``(directory, pki)``."""
    directory = tmp_path / "site"
    directory.mkdir()
    (directory / "file.bin").write_bytes(BODY)
    pki = make_pki(str(tmp_path), server_addresses=[KERNEL, OURS])
    return directory, pki


def lwrun(processes, locator, *program):
    """Start ``lwrun`` with its own address on ``locator`` running ``program`` (unbuffered,
    so its first line can be waited for)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return processes.python("lwrun", "--net", locator, "--conf", f"ip={OURS}/24", "--",
                            *program, env=env)


def expected():
    """What FETCH prints for BODY."""
    return f"200 {len(BODY)} {hashlib.sha256(BODY).hexdigest()}"


def request_log(server):
    """Stop an http.server process and return its log (stderr)."""
    server.terminate()
    _out, err = server.communicate(timeout=10)
    return err


def curl(ns, url, *options):
    """curl's download of ``url`` in the namespace: (exit status, body bytes, stderr)."""
    result = subprocess.run(ns.argv("curl", "-sS", "--max-time", "30", *options, url),
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    return result.returncode, result.stdout, result.stderr.decode(errors="replace")


def test_curl_fetches_from_http_server_under_lwrun(kernel, lwswitch, processes, site):
    directory, _pki = site
    server = lwrun(processes, lwswitch, "-m", "http.server", str(PORT), "--bind", OURS,
                   "--directory", str(directory))
    line = read_line(server, timeout=30)
    assert f"Serving HTTP on {OURS} port {PORT}" in line, \
        line + (server.stderr.read() if server.poll() is not None else "")
    status, body, err = curl(kernel, f"http://{OURS}:{PORT}/file.bin")
    assert status == 0, err
    assert body == BODY
    status, listing, err = curl(kernel, f"http://{OURS}:{PORT}/")
    assert status == 0 and b"file.bin" in listing, err
    # http.server logged both requests with the kernel's address as the client's.
    log = request_log(server)
    assert f'{KERNEL} - - ' in log and '"GET /file.bin HTTP/1.1" 200' in log, log
    assert '"GET / HTTP/1.1" 200' in log, log


def test_curl_fetches_over_https_from_stdlib_server_under_lwrun(kernel, lwswitch, processes,
                                                                 site):
    directory, pki = site
    server = lwrun(processes, lwswitch, "-c", HTTPS_SERVER, OURS, str(PORT), str(directory),
                   pki.server_cert, pki.server_key)
    line = read_line(server, timeout=30)
    assert line == "serving\n", line + (server.stderr.read() if server.poll() is not None
                                        else "")
    status, body, err = curl(kernel, f"https://{OURS}:{PORT}/file.bin", "--cacert", pki.ca)
    assert status == 0, err
    assert body == BODY
    # The certificate is checked: a CA that did not sign it is refused by curl.
    status, body, err = curl(kernel, f"https://{OURS}:{PORT}/file.bin", "--cacert",
                             pki.other_ca)
    assert status == 60 and body == b"", (status, err)      # CURLE_PEER_FAILED_VERIFICATION


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_urllib_under_lwrun_fetches_from_kernel_http_server(kernel, lwswitch, processes, site,
                                                            scheme):
    directory, pki = site
    if scheme == "http":
        server = kernel.start(sys.executable, "-u", "-m", "http.server", str(PORT), "--bind",
                              KERNEL, "--directory", str(directory))
        ready = f"Serving HTTP on {KERNEL} port {PORT}"
        extra = []
    else:
        server = kernel.python(HTTPS_SERVER, KERNEL, str(PORT), str(directory),
                               pki.server_cert, pki.server_key)
        ready = "serving"
        extra = [pki.ca]
    line = read_line(server, timeout=30)
    assert ready in line, line
    client = lwrun(processes, lwswitch, "-c", FETCH, f"{scheme}://{KERNEL}:{PORT}/file.bin",
                   *extra)
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, out + err
    assert out.strip() == expected()
    # The kernel's server logged the request with lwstack's address as the client's.
    log = request_log(server)
    assert f'{OURS} - - ' in log and '"GET /file.bin HTTP/1.1" 200' in log, log
