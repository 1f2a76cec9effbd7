"""lwrun: unmodified servers and asyncio programs, which wait on their sockets' ``fileno()``
(socketserver's selector, asyncio's selector loop, pyftpdlib's poller), each under ``lwrun``
talking to another ``lwrun`` process through an ``lwswitch``: ``python -m http.server``,
https and socketserver servers with ``serve_forever()``, xmlrpc, ftplib against pyftpdlib,
smtplib against aiosmtpd, asyncio streams, aiohttp and httpx's asyncio client."""
import hashlib
import json
import subprocess

import pytest

from test_lwrun import (CLIENT, FETCH_HTTPS, PROGRAMS, SERVER, SOCKETSERVER_CLIENTS, UDP_CLIENT,
                        XMLRPC_CLIENT, Program, make_site, make_test_pki, run_ok, server, start)


@pytest.fixture
def site(tmp_path):
    """A directory to serve: (directory, the binary file's data)."""
    return make_site(tmp_path)


@pytest.fixture
def pki(tmp_path):
    """A test CA and a server certificate for 10.0.0.1 and 10.0.0.3."""
    return make_test_pki(tmp_path)

FETCH_GET = """
import hashlib, http.client, sys, urllib.error, urllib.request
base = sys.argv[1]
print("text", urllib.request.urlopen(base + "/hello.txt", timeout=20).read().decode().strip())
with urllib.request.urlopen(base + "/blob.bin", timeout=20) as reply:
    print("blob", reply.status, hashlib.sha256(reply.read()).hexdigest())
connection = http.client.HTTPConnection(sys.argv[2], int(sys.argv[3]), timeout=20)
connection.request("HEAD", "/blob.bin")
reply = connection.getresponse()
print("head", reply.status, reply.headers["Content-Length"])
try:
    urllib.request.urlopen(base + "/missing", timeout=20)
except urllib.error.HTTPError as exc:
    print("missing", exc.code)
"""


def test_http_server_module_serves_urllib_and_http_client(lwswitch, processes, site):
    directory, data = site
    http = start(processes, lwswitch, SERVER, "-m", "http.server", "8000", "--bind", SERVER,
                 "--directory", directory, stderr=subprocess.STDOUT)     # its log is stderr
    http.expect(rf"^Serving HTTP on {SERVER} port 8000")
    out = run_ok(lwswitch, "-c", FETCH_GET, f"http://{SERVER}:8000", SERVER, "8000")
    lines = out.splitlines()
    assert "text hello from a stack of its own" in lines
    assert f"blob 200 {hashlib.sha256(data).hexdigest()}" in lines
    assert f"head 200 {len(data)}" in lines
    assert "missing 404" in lines
    http.expect(rf'^{CLIENT} - - \[.*\] "GET /blob.bin HTTP/1.1" 200 -$')


def test_https_server_serve_forever(lwswitch, processes, site, pki):
    directory, data = site
    server(processes, lwswitch, PROGRAMS, "http", directory, "--port", "4443", "--tls",
           pki.server_cert, pki.server_key)
    out = run_ok(lwswitch, "-c", FETCH_HTTPS, pki.ca, f"https://{SERVER}:4443", SERVER)
    assert f"blob 200 {hashlib.sha256(data).hexdigest()}" in out
    assert "https SECRET" in out


def test_socketserver_serve_forever_tcp_and_udp(lwswitch, processes):
    server(processes, lwswitch, PROGRAMS, "tcp-echo", "--port", "7000")
    out = run_ok(lwswitch, "-c", SOCKETSERVER_CLIENTS, SERVER)
    assert f"tcp ONE from {CLIENT}" in out and f"tcp TWO from {CLIENT}" in out
    udp = start(processes, lwswitch, "10.0.0.3", PROGRAMS, "udp-echo", "--port", "7001")
    udp.expect(r"^ready")
    out = run_ok(lwswitch, "-c", UDP_CLIENT, "10.0.0.3")
    assert f"udp ALPHA from {CLIENT} ('10.0.0.3', 7001)" in out


def test_xmlrpc_server_serve_forever(lwswitch, processes):
    server(processes, lwswitch, PROGRAMS, "xmlrpc", "--port", "8000")
    out = run_ok(lwswitch, "-c", XMLRPC_CLIENT, SERVER)
    assert "add 42 lwstack" in out and f"whoami {CLIENT}" in out


FTP_SERVER = """
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
authorizer = DummyAuthorizer()
authorizer.add_user("lw", "secret", sys.argv[1], perm="elradfmw")
FTPHandler.authorizer = authorizer
server = FTPServer(("", 21), FTPHandler)
print("ready", server.address[0], server.address[1], flush=True)
server.serve_forever()
"""

FTP_CLIENT = """
import ftplib, hashlib, io, sys
with ftplib.FTP(sys.argv[1], "lw", "secret", timeout=20) as ftp:
    print("welcome", ftp.getwelcome()[:3])
    ftp.storbinary("STOR upload.bin", io.BytesIO(bytes(range(256)) * 1000))
    print("list", sorted(ftp.nlst()))
    chunks = []
    ftp.retrbinary("RETR blob.bin", chunks.append)
    print("retr", hashlib.sha256(b"".join(chunks)).hexdigest())
    lines = []
    ftp.retrlines("RETR hello.txt", lines.append)
    print("text", lines)
"""


def test_ftplib_against_pyftpdlib(lwswitch, processes, site):
    pytest.importorskip("pyftpdlib")
    directory, data = site
    server(processes, lwswitch, "-c", FTP_SERVER, directory)
    out = run_ok(lwswitch, "-c", FTP_CLIENT, SERVER)
    assert "welcome 220" in out
    assert "list ['blob.bin', 'hello.txt', 'upload.bin']" in out
    assert f"retr {hashlib.sha256(data).hexdigest()}" in out
    assert "text ['hello from a stack of its own']" in out
    with open(f"{directory}/upload.bin", "rb") as f:
        assert f.read() == bytes(range(256)) * 1000


SMTP_SERVER = """
import asyncio, json
from aiosmtpd.smtp import SMTP

class Handler:
    async def handle_DATA(self, server, session, envelope):
        print(json.dumps({"peer": session.peer[0], "from": envelope.mail_from,
                          "to": envelope.rcpt_tos, "data": envelope.content.decode()}),
              flush=True)
        return "250 Message accepted for delivery"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler()), "", 25)
    print("ready", *server.sockets[0].getsockname()[:2], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""

SMTP_CLIENT = """
import smtplib, sys
from email.message import EmailMessage
message = EmailMessage()
message["From"], message["To"], message["Subject"] = "a@one.lan", "b@two.lan", "lwrun"
message.set_content("sent from a stack of its own")
with smtplib.SMTP(sys.argv[1], 25, timeout=20) as smtp:
    print("ehlo", smtp.ehlo()[0])
    print("refused", smtp.send_message(message))
"""


def test_smtplib_against_aiosmtpd(lwswitch, processes):
    pytest.importorskip("aiosmtpd")
    smtp = server(processes, lwswitch, "-c", SMTP_SERVER)
    out = run_ok(lwswitch, "-c", SMTP_CLIENT, SERVER)
    assert "ehlo 250" in out and "refused {}" in out
    mail = json.loads(smtp.expect(r"^\{.*\}$")[0])
    assert mail["peer"] == CLIENT
    assert (mail["from"], mail["to"]) == ("a@one.lan", ["b@two.lan"])
    assert "Subject: lwrun" in mail["data"]
    assert "sent from a stack of its own" in mail["data"]


STREAMS_SERVER = """
import asyncio

async def handle(reader, writer):
    peer = writer.get_extra_info("peername")[0]
    while line := await reader.readline():
        writer.write(line.upper().rstrip() + f" from {peer}\\n".encode())
        await writer.drain()
    writer.close()
    await writer.wait_closed()

async def main():
    server = await asyncio.start_server(handle, "", 9000)
    print("ready", *server.sockets[0].getsockname()[:2], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""

STREAMS_CLIENT = """
import asyncio, sys

async def main():
    reader, writer = await asyncio.open_connection(sys.argv[1], 9000)
    for word in ("first", "second"):
        writer.write(word.encode() + b"\\n")
        await writer.drain()
        print("got", (await reader.readline()).decode().strip())
    lines = [b"%05d" % n + b"x" * 250 + b"\\n" for n in range(2000)]
    writer.write(b"".join(lines))               # 500 kB in one write, flow control both ways
    await writer.drain()
    replies = [await reader.readline() for _ in lines]
    print("bulk", len(replies), all(r.startswith(b"%05dX" % n) for n, r in enumerate(replies)))
    writer.write_eof()
    print("eof", await reader.read())
    writer.close()
    await writer.wait_closed()

asyncio.run(main())
"""


def test_asyncio_streams(lwswitch, processes):
    server(processes, lwswitch, "-c", STREAMS_SERVER)
    out = run_ok(lwswitch, "-c", STREAMS_CLIENT, SERVER)
    assert f"got FIRST from {CLIENT}" in out and f"got SECOND from {CLIENT}" in out
    assert "bulk 2000 True" in out
    assert "eof b''" in out


AIOHTTP_CLIENT = """
import asyncio, hashlib, ssl, sys
import aiohttp

async def main():
    async with aiohttp.ClientSession() as session:
        async with session.get(sys.argv[1] + "/blob.bin") as reply:
            print("get", reply.status, hashlib.sha256(await reply.read()).hexdigest())
        async with session.post(sys.argv[1] + "/echo", data=b"aiohttp") as reply:
            print("post", await reply.text(), reply.headers["X-Client"])
        context = ssl.create_default_context(cafile=sys.argv[3])
        async with session.get(sys.argv[2] + "/hello.txt", ssl=context) as reply:
            print("https", reply.status, (await reply.text()).strip())

asyncio.run(main())
"""


def test_aiohttp_client(lwswitch, processes, site, pki):
    pytest.importorskip("aiohttp")
    directory, data = site
    server(processes, lwswitch, PROGRAMS, "http", directory, "--loop", "accept", "--port", "80")
    tls = start(processes, lwswitch, "10.0.0.3", PROGRAMS, "http", directory, "--loop",
                "accept", "--port", "443", "--tls", pki.server_cert, pki.server_key)
    tls.expect(r"^ready")
    out = run_ok(lwswitch, "-c", AIOHTTP_CLIENT, f"http://{SERVER}", "https://10.0.0.3", pki.ca)
    assert f"get 200 {hashlib.sha256(data).hexdigest()}" in out
    assert f"post AIOHTTP {CLIENT}" in out
    assert "https 200 hello from a stack of its own" in out


HTTPX_ASYNC_CLIENT = """
import asyncio, sys
import httpx

async def main():
    async with httpx.AsyncClient(timeout=20, verify=sys.argv[3]) as client:
        reply = await client.get(sys.argv[1] + "/hello.txt")
        print("get", reply.status_code, reply.text.strip())
        replies = await asyncio.gather(*(client.post(sys.argv[1] + "/echo", content=f"n{n}")
                                         for n in range(3)))
        print("posts", sorted(r.text for r in replies))
        print("https", (await client.get(sys.argv[2] + "/hello.txt")).text.strip())

asyncio.run(main())
"""


def test_httpx_async_client(lwswitch, processes, site, pki):
    pytest.importorskip("httpx")
    directory, _data = site
    server(processes, lwswitch, PROGRAMS, "http", directory, "--loop", "accept", "--port", "80")
    tls = start(processes, lwswitch, "10.0.0.3", PROGRAMS, "http", directory, "--loop",
                "accept", "--port", "443", "--tls", pki.server_cert, pki.server_key)
    tls.expect(r"^ready")
    out = run_ok(lwswitch, "-c", HTTPX_ASYNC_CLIENT, f"http://{SERVER}", "https://10.0.0.3",
                 pki.ca)
    assert "get 200 hello from a stack of its own" in out
    assert "posts ['N0', 'N1', 'N2']" in out
    assert "https hello from a stack of its own" in out


SESSION_CLIENT = """
import sys, requests
with requests.Session() as session:
    for number in range(4):
        reply = session.post(sys.argv[1] + "/echo", data=f"request {number}", timeout=20)
        print("reply", reply.text)
"""


def test_requests_session_keeps_its_connection(lwswitch, processes, site):
    pytest.importorskip("requests")
    # urllib3 checks a pooled connection with poll() on its fileno() before reusing it.
    directory, _data = site
    http = server(processes, lwswitch, PROGRAMS, "http", directory, "--http11", "--port", "80")
    out = run_ok(lwswitch, "-c", SESSION_CLIENT, f"http://{SERVER}")
    assert [f"reply REQUEST {n}" for n in range(4)] == out.splitlines()
    ports = {http.expect(r'^http: port (\d+): "POST /echo HTTP/1.1" 200')[1] for _ in range(4)}
    assert len(ports) == 1                     # four requests, one connection


IPV6_FETCH = """
import sys, urllib.request
for url in sys.argv[1:]:
    with urllib.request.urlopen(url, timeout=20) as reply:
        print(url, reply.read().decode().strip())
"""


def test_http_server_on_a_dual_stack_socket(lwswitch, processes, site):
    directory, _data = site
    http = start(processes, lwswitch, f"{SERVER}/24,ip=fd00::1", "-m", "http.server", "8000",
                 "--bind", "::", "--directory", directory, stderr=subprocess.STDOUT)
    http.expect(r"^Serving HTTP on :: port 8000 \(http://\[::\]:8000/\)")
    out = run_ok(lwswitch, "-c", IPV6_FETCH, "http://[fd00::1]:8000/hello.txt",
                 f"http://{SERVER}:8000/hello.txt", conf=f"ip={CLIENT}/24,ip=fd00::2/64")
    assert out.splitlines() == [
        "http://[fd00::1]:8000/hello.txt hello from a stack of its own",
        f"http://{SERVER}:8000/hello.txt hello from a stack of its own"]
    http.expect(r'^fd00::2 - - .*"GET /hello.txt HTTP/1.1" 200')
    http.expect(rf'^::ffff:{CLIENT} - - .*"GET /hello.txt HTTP/1.1" 200')


NAMES_CLIENT = """
import asyncio, socket, sys
import aiohttp, requests
print("name", socket.gethostname(), socket.gethostbyname("web.test"))
print("requests", requests.get("http://web.test/hello.txt", timeout=20).text.strip())

async def main():
    async with aiohttp.ClientSession() as session:       # names in asyncio's executor
        async with session.get("http://web/hello.txt") as reply:
            print("aiohttp", (await reply.text()).strip())
    reader, writer = await asyncio.open_connection("web.test", 80)
    writer.write(b"GET /hello.txt HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n")
    print("streams", (await reader.read()).split(b"\\r\\n")[0].decode())
    writer.close()

asyncio.run(main())
"""


def test_names_resolve_through_the_stacks_dns(lwswitch, processes, site):
    pytest.importorskip("aiohttp")
    directory, _data = site
    router = processes.python("lwrouter", "--net", lwswitch, "--conf",
                              "ip=10.0.0.254/24,fqdn=gw.test", "--dhcp", "10.0.0.100-10.0.0.150",
                              "--dns", "--domain", "test", "--host-record", f"web,{SERVER}")
    Program(router).expect(r"^lwrouter: serving")
    server(processes, lwswitch, PROGRAMS, "http", directory, "--port", "80")
    out = run_ok(lwswitch, "-c", NAMES_CLIENT, conf="dhcp,fqdn=client")
    assert out.splitlines() == [
        f"name client {SERVER}",
        "requests hello from a stack of its own",
        "aiohttp hello from a stack of its own",
        "streams HTTP/1.0 200 OK"]
