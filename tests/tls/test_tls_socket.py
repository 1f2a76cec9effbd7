"""TLS over lwstack sockets (:mod:`lwstack.tls`) against the contract of :class:`ssl.SSLSocket`.

Most scenarios run twice through the same :class:`World` interface: once with the stdlib's
``ssl.SSLSocket`` on kernel TCP sockets over 127.0.0.1, once with :func:`lwstack.tls.wrap_socket`
on two lwstack stacks plugged into a real-time in-memory switch.  Both runs make the same
assertions, so every expectation written here is what the stdlib does.  Tests of lwstack alone
follow: non-blocking mode and timeouts on virtual time, the record-by-record reading, our TLS
layer over kernel sockets, and :func:`lwstack.tls.install` with ``http.client`` and
``http.server``.

The certificates (a CA, a server and a client certificate, and an unknown CA) are made for the
session by ``tls_certs.make_pki`` with the ``cryptography`` package.
"""
import hashlib
import http.client
import http.server
import io
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time

import pytest

import lwstack
from lwstack import socket as lwsocket
from lwstack import tls
from lwstack.sim import VirtualNetwork
from vde.memory import MemorySwitch

pytest.importorskip("cryptography")
from tls_certs import SERVER_NAME, make_pki  # noqa: E402

#: ssl.SSLContext.wrap_socket as the stdlib has it (tests of install() patch it).
STDLIB_WRAP = ssl.SSLContext.wrap_socket
CLIENT_IP, SERVER_IP = "10.9.0.1", "10.9.0.2"
#: Upper bound for a thread of a test; never reached when things work.
JOIN = 20


# -- certificates and contexts --------------------------------------------------------------------

@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")), [SERVER_IP, "127.0.0.1"])


def server_context(pki, *, version=None, alpn=None, require_client_cert=False, cert="server"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(getattr(pki, cert + "_cert"), getattr(pki, cert + "_key"))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki.ca)
    return ctx


def client_context(pki, *, ca=None, version=None, alpn=None, client_cert=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca or pki.ca)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if client_cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    return ctx


# -- the two worlds -------------------------------------------------------------------------------

class World:
    """Plain TCP sockets and ``wrap`` for one implementation; ``server_ip`` is where server
    sockets listen."""

    name = ""
    server_ip = ""
    ssl_class = None

    def __init__(self):
        self.opened = []

    def plain_client(self):
        raise NotImplementedError

    def plain_server(self):
        raise NotImplementedError

    def wrap(self, ctx, sock, **kwargs):
        raise NotImplementedError

    def keep(self, sock):
        self.opened.append(sock)
        return sock

    def listener(self):
        sock = self.keep(self.plain_server())
        sock.bind((self.server_ip, 0))
        sock.listen(8)
        return sock

    def pair(self):
        """Connected plain ``(client, server)`` stream sockets, blocking."""
        listener = self.listener()
        client = self.keep(self.plain_client())
        client.settimeout(5)
        client.connect(listener.getsockname())
        listener.settimeout(5)
        server, _ = listener.accept()
        self.keep(server)
        client.settimeout(None)
        server.settimeout(None)
        listener.close()
        return client, server

    def close(self):
        for sock in reversed(self.opened):
            try:
                sock.close()
            except OSError:
                pass


class KernelWorld(World):
    name = "kernel"
    server_ip = "127.0.0.1"
    ssl_class = ssl.SSLSocket

    def plain_client(self):
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    plain_server = plain_client

    def wrap(self, ctx, sock, **kwargs):
        return self.keep(STDLIB_WRAP(ctx, sock, **kwargs))


class LwstackWorld(World):
    name = "lwstack"
    server_ip = SERVER_IP
    ssl_class = tls.SSLSocket

    def __init__(self, client_stack, server_stack):
        super().__init__()
        self.client_stack = client_stack
        self.server_stack = server_stack

    def plain_client(self):
        return self.client_stack.socket(socket.AF_INET, socket.SOCK_STREAM)

    def plain_server(self):
        return self.server_stack.socket(socket.AF_INET, socket.SOCK_STREAM)

    def wrap(self, ctx, sock, **kwargs):
        return self.keep(tls.wrap_socket(ctx, sock, **kwargs))


@pytest.fixture
def lan():
    """Two stacks on a real-time in-memory switch: ``(client_stack, server_stack)``."""
    switch = MemorySwitch()
    a = lwstack.Stack(switch, f"ip={CLIENT_IP}/24")
    b = lwstack.Stack(switch, f"ip={SERVER_IP}/24")
    yield a, b
    a.close(timeout=1)
    b.close(timeout=1)


@pytest.fixture(params=["kernel", "lwstack"])
def world(request):
    if request.param == "kernel":
        w = KernelWorld()
    else:
        w = LwstackWorld(*request.getfixturevalue("lan"))
    yield w
    w.close()


@pytest.fixture
def lw(lan):
    w = LwstackWorld(*lan)
    yield w
    w.close()


class Thread(threading.Thread):
    """Runs ``fn(*args, **kwargs)`` in a daemon thread; :meth:`result` joins and returns (or raises)
    what it returned (or raised)."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.value = self.error = None
        self.start()

    def run(self):
        try:
            self.value = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:      # noqa: BLE001 - handed to the test
            self.error = exc

    def result(self, timeout=JOIN):
        self.join(timeout)
        assert not self.is_alive(), f"{self.fn.__name__} did not finish"
        if self.error is not None:
            raise self.error
        return self.value

    def outcome(self, timeout=JOIN):
        """The return value, or the exception raised."""
        self.join(timeout)
        assert not self.is_alive(), f"{self.fn.__name__} did not finish"
        return self.error if self.error is not None else self.value


def attempt(fn, *args, **kwargs):
    """``fn(...)``'s return value, or the exception it raised."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:              # noqa: BLE001 - the exception is the result
        return exc


def tls_pair(world, cctx, sctx, hostname=SERVER_NAME, client_kwargs=None, server_kwargs=None):
    """Handshake over a fresh connection: ``(client, server)``, each an SSL socket or the
    exception its side raised."""
    client, server = world.pair()
    side = Thread(attempt, world.wrap, sctx, server,
                  **dict(server_side=True, **(server_kwargs or {})))
    wrapped = attempt(world.wrap, cctx, client, server_hostname=hostname,
                      **(client_kwargs or {}))
    return wrapped, side.outcome()


def connected(world, pki, **kwargs):
    client, server = tls_pair(world, client_context(pki, **kwargs), server_context(pki))
    assert isinstance(client, world.ssl_class), client
    assert isinstance(server, world.ssl_class), server
    return client, server


def recv_exactly(sock, count):
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def error_shape(exc):
    """What an exception is compared on: its type, errno and (for SSL errors) reason, and its
    message with the class name of the SSL socket left out."""
    text = str(exc).replace(str(tls.SSLSocket), "CLASS").replace(str(ssl.SSLSocket), "CLASS")
    text = text.replace("SSLSocket", "CLASS")
    text = re.sub(r" \(_ssl\.c:\d+\)$", "", text)
    return type(exc).__name__, getattr(exc, "errno", None), getattr(exc, "reason", None), text


# -- handshake, certificates, versions, ALPN ------------------------------------------------------

def test_handshake_gives_the_connection_details(world, pki):
    client, server = connected(world, pki)
    assert client.version() == server.version() == "TLSv1.3"
    assert client.cipher() == server.cipher()
    assert client.cipher()[1] == "TLSv1.3"
    cert = client.getpeercert()
    assert dict(x[0] for x in cert["subject"])["commonName"] == SERVER_NAME
    assert ("DNS", SERVER_NAME) in cert["subjectAltName"]
    with open(pki.server_cert) as f:
        assert client.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(f.read())
    assert server.getpeercert() is None          # no client certificate asked for
    assert client.server_side is False and server.server_side is True
    assert client.server_hostname == SERVER_NAME and server.server_hostname is None
    assert client.compression() is None
    assert client.selected_alpn_protocol() is None
    assert client.cipher() in server.shared_ciphers()
    assert client.pending() == 0
    assert client.session_reused is False
    assert isinstance(client.context, ssl.SSLContext)
    assert client.getpeername() == server.getsockname()
    assert client.family == socket.AF_INET and client.type == socket.SOCK_STREAM
    assert client.gettimeout() is None and client.getblocking()
    client.sendall(b"ping")
    assert server.recv(10) == b"ping"
    server.sendall(b"pong")
    assert client.recv(10) == b"pong"


def test_unknown_ca_fails_on_both_ends_with_the_stdlib_errors(world, pki):
    client, server = world.pair()
    side = Thread(attempt, world.wrap, server_context(pki), server, server_side=True)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        world.wrap(client_context(pki, ca=pki.other_ca), client, server_hostname=SERVER_NAME)
    assert info.value.verify_code == 20
    assert info.value.verify_message == "unable to get local issuer certificate"
    assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"
    # The client's alert reached the server, which fails with it.
    failure = side.outcome()
    assert isinstance(failure, ssl.SSLError), failure
    assert failure.reason == "TLSV1_ALERT_UNKNOWN_CA"
    # A failed wrap closes the plain socket (the stdlib's took over its descriptor).
    with pytest.raises(OSError):
        client.getsockname()


def test_a_server_certificate_from_another_ca_is_refused(world, pki):
    client, server = tls_pair(world, client_context(pki), server_context(pki, cert="rogue"))
    assert isinstance(client, ssl.SSLCertVerificationError)
    assert client.verify_code == 20
    assert isinstance(server, ssl.SSLError)


def test_hostname_mismatch(world, pki):
    client, server = tls_pair(world, client_context(pki), server_context(pki),
                              hostname="other.test")
    assert isinstance(client, ssl.SSLCertVerificationError), client
    assert client.verify_code == 62
    assert client.verify_message.startswith("Hostname mismatch")
    assert isinstance(server, ssl.SSLError)


def test_an_address_in_the_certificate_matches(world, pki):
    client, server = tls_pair(world, client_context(pki), server_context(pki),
                              hostname=world.server_ip)
    assert isinstance(client, world.ssl_class), client
    assert client.server_hostname == world.server_ip


def test_no_verification_when_the_client_asks_for_none(world, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    client, server = tls_pair(world, ctx, server_context(pki, cert="rogue"), hostname=None)
    assert isinstance(client, world.ssl_class), client
    assert client.getpeercert() == {}         # not verified: no decoded certificate
    assert client.getpeercert(True)


def test_mutual_tls(world, pki):
    client, server = tls_pair(world, client_context(pki, client_cert=True),
                              server_context(pki, require_client_cert=True))
    assert isinstance(server, world.ssl_class), server
    subject = dict(x[0] for x in server.getpeercert()["subject"])
    assert subject["commonName"] == "client.test"


def test_a_missing_client_certificate_shows_on_the_clients_first_read(world, pki):
    # TLS 1.3: the client's handshake ends before the server checks its (absent) certificate
    # (RFC 8446 4.4.2.4); the server's alert arrives with the client's first read.
    client, server = tls_pair(world, client_context(pki),
                              server_context(pki, require_client_cert=True))
    assert isinstance(server, ssl.SSLError) and server.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    assert isinstance(client, world.ssl_class), client
    with pytest.raises(ssl.SSLError) as info:
        client.recv(10)
    assert info.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"


@pytest.mark.parametrize("client_alpn, server_alpn, chosen", [
    (["h2", "http/1.1"], ["http/1.1"], "http/1.1"),
    (["h2", "http/1.1"], ["h2", "http/1.1"], "h2"),
    (["h2"], ["spdy/3"], None),
    (None, ["h2"], None),
])
def test_alpn(world, pki, client_alpn, server_alpn, chosen):
    client, server = tls_pair(world, client_context(pki, alpn=client_alpn),
                              server_context(pki, alpn=server_alpn))
    assert isinstance(client, world.ssl_class), client
    assert client.selected_alpn_protocol() == chosen
    assert server.selected_alpn_protocol() == chosen


def test_sni_callback_sees_the_ssl_socket_and_the_name(world, pki):
    seen = []
    sctx = server_context(pki)
    sctx.sni_callback = lambda sslsock, name, ctx: seen.append((sslsock, name))
    client, server = tls_pair(world, client_context(pki), sctx)
    assert isinstance(server, world.ssl_class), server
    assert seen == [(server, SERVER_NAME)]


@pytest.mark.parametrize("version, name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                           (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_versions_and_session_resumption(world, pki, version, name):
    cctx = client_context(pki, version=version)
    sctx = server_context(pki, version=version)
    client, server = tls_pair(world, cctx, sctx)
    assert client.version() == server.version() == name
    assert client.cipher()[1] == name
    if version == ssl.TLSVersion.TLSv1_2:
        binding = client.get_channel_binding("tls-unique")
        assert binding and binding == server.get_channel_binding("tls-unique")
    # A round trip, so that a TLS 1.3 client has the server's ticket (RFC 8446 4.6.1).
    server.sendall(b"ticket?")
    assert client.recv(100) == b"ticket?"
    session = client.session
    assert session is not None and not client.session_reused
    unwrapping = Thread(client.unwrap)
    assert server.recv(10) == b""
    server.unwrap()
    unwrapping.result()
    again, server2 = tls_pair(world, cctx, sctx, client_kwargs={"session": session})
    assert isinstance(again, world.ssl_class), again
    assert again.session_reused and server2.session_reused
    assert again.version() == name


# -- data -----------------------------------------------------------------------------------------

def test_large_transfers_both_ways_at_once(world, pki):
    client, server = connected(world, pki)
    size = 6 * 1024 * 1024 + 12345
    upload = os.urandom(size)
    download = os.urandom(size // 2)

    def serve():
        # Read everything the client sends while answering with our own stream.
        writer = Thread(server.sendall, download)
        digest = hashlib.sha256()
        got = 0
        buf = bytearray(100_000)
        while got < size:
            n = server.recv_into(buf)
            assert n
            digest.update(buf[:n])
            got += n
        writer.result()
        return digest.hexdigest()

    side = Thread(serve)
    uploader = Thread(client.sendall, upload)
    received = recv_exactly(client, len(download))
    uploader.result()
    assert side.result() == hashlib.sha256(upload).hexdigest()
    assert received == download


def test_pending_counts_the_rest_of_a_record(world, pki):
    client, server = connected(world, pki)
    server.sendall(b"x" * 3000)
    assert client.recv(1000) == b"x" * 1000
    assert client.pending() == 2000
    assert client.recv(5000) == b"x" * 2000
    assert client.pending() == 0


def test_one_record_per_read(world, pki):
    client, server = connected(world, pki)
    server.sendall(b"a" * 100)
    server.sendall(b"b" * 100)
    assert client.recv(1000) == b"a" * 100   # OpenSSL returns one record at a time
    assert client.recv(1000) == b"b" * 100


def test_lwstack_leaves_a_record_not_yet_needed_in_the_plain_socket(lw, pki):
    client, server = connected(lw, pki)
    server.sendall(b"a" * 100)
    server.sendall(b"b" * 100)
    assert client.recv(1000) == b"a" * 100
    # The next record is still in the TCP socket (so its descriptor stays readable for a
    # select() loop, as with the kernel's SSLSocket): nothing is hidden in a buffer of ours.
    plain = client._sock
    plain.settimeout(5)
    header = plain.recv(5, socket.MSG_PEEK)
    assert header[:3] == b"\x17\x03\x03"     # application_data, TLS 1.2 on the wire
    assert client.pending() == 0
    assert client.recv(1000) == b"b" * 100


def test_recv_into_read_write_and_sendfile(world, pki):
    client, server = connected(world, pki)
    assert client.write(b"hello") == 5
    buf = bytearray(10)
    assert server.recv_into(buf) == 5 and buf[:5] == b"hello"
    server.sendall(b"abcdef")
    buf = bytearray(4)
    assert client.recv_into(buf, 2) == 2 and buf[:2] == b"ab"
    assert client.read(10, bytearray(10)) == 4
    assert client.sendfile(io.BytesIO(b"0123456789" * 1000), 5) == 9995
    assert recv_exactly(server, 9995) == (b"0123456789" * 1000)[5:]


def test_makefile_readline_text_and_binary(world, pki):
    client, server = connected(world, pki)
    server.sendall(b"line one\r\nline two\nline three\r\n" + "café\n".encode() + b"tail")
    rfile = client.makefile("rb")
    assert rfile.readline() == b"line one\r\n"
    assert rfile.readline() == b"line two\n"
    text = client.makefile("r", encoding="utf-8", newline="")
    # The binary file's buffer holds what it read ahead; read the rest through it.
    assert rfile.readline() == b"line three\r\n"
    assert rfile.readline().decode() == "café\n"
    text.close()
    wfile = client.makefile("wb")
    wfile.write(b"GET / HTTP/1.0\r\n\r\n")
    wfile.flush()
    assert recv_exactly(server, 18) == b"GET / HTTP/1.0\r\n\r\n"
    wtext = client.makefile("w", encoding="utf-8")
    wtext.write("été\n")
    wtext.flush()
    assert recv_exactly(server, 6) == "été\n".encode()
    wtext.close()
    wfile.close()
    # close() with a file still open keeps the connection (http.client relies on it).
    client.close()
    server.sendall(b" and more")
    server.close()
    assert rfile.read() == b"tail and more"
    rfile.close()
    assert client.fileno() == -1


def test_text_makefile_reads_lines(world, pki):
    client, server = connected(world, pki)
    server.sendall("première\nseconde\n".encode())
    with client.makefile("r", encoding="utf-8") as f:
        assert f.readline() == "première\n"
        assert f.readline() == "seconde\n"


# -- closing --------------------------------------------------------------------------------------

def side_by_side(lan, scenario, *args):
    """Run ``scenario(world, *args)`` on kernel sockets and on lwstack; both must give the same
    outcome (values, or exceptions as :func:`error_shape` sees them), which is returned.

    For what changed between Python versions (how the stdlib reports an EOF or a reset), this
    pins lwstack to the stdlib of the Python running the tests."""
    outcomes = []
    for world in (KernelWorld(), LwstackWorld(*lan)):
        try:
            outcomes.append(scenario(world, *args))
        finally:
            world.close()
    assert outcomes[1] == outcomes[0]
    return outcomes[0]


def outcome(call, *args, **kwargs):
    """A value, or the shape of the exception raised."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:              # noqa: BLE001 - the exception is the result
        return error_shape(exc)


def _ragged_close(world, pki, suppress):
    client, server = tls_pair(world, client_context(pki), server_context(pki),
                              server_kwargs={"suppress_ragged_eofs": suppress})
    server.sendall(b"x")
    assert client.recv(10) == b"x"            # and the TLS 1.3 tickets: nothing left unread
    client.sendall(b"last words")
    client.close()                            # a FIN without close_notify
    return [outcome(server.recv, 100), outcome(server.recv, 100),
            outcome(server.recv_into, bytearray(10))]


@pytest.mark.parametrize("suppress", [True, False])
def test_close_sends_no_close_notify_so_the_peer_sees_a_ragged_eof(lan, pki, suppress):
    outcomes = side_by_side(lan, _ragged_close, pki, suppress)
    assert outcomes[0] == b"last words"
    if suppress and (3, 10) <= sys.version_info[:2]:
        assert outcomes[1:] == [b"", 0]
    if not suppress and (3, 10) <= sys.version_info[:2]:
        assert outcomes[1][0] == "SSLEOFError"


def test_unwrap_sends_close_notify_so_the_peer_sees_a_clean_end(world, pki):
    client, server = tls_pair(world, client_context(pki), server_context(pki),
                              server_kwargs={"suppress_ragged_eofs": False})
    unwrapping = Thread(client.unwrap)
    assert server.recv(100) == b""           # close_notify: a clean end, no SSLEOFError
    assert server.unwrap() is server
    plain = unwrapping.result()
    assert plain is client                    # the stdlib returns the socket itself, now plain
    assert client.version() is None and client.cipher() is None and client.pending() == 0
    # The connection goes on in plaintext.
    client.sendall(b"clear text")
    assert server.recv(100) == b"clear text"
    server.sendall(b"answer")
    assert client.recv(100) == b"answer"
    with pytest.raises(ValueError, match="No SSL wrapper around"):
        client.unwrap()


def test_bytes_right_behind_the_close_notify_stay_plain(world, pki):
    client, server = connected(world, pki)
    unwrapping = Thread(client.unwrap)
    assert server.recv(100) == b""

    def unwrap_and_talk():
        server.unwrap()
        server.sendall(b"PLAIN")          # likely in the same segment as the close_notify

    Thread(unwrap_and_talk).result()
    unwrapping.result()
    assert recv_exactly(client, 5) == b"PLAIN"


def test_shutdown_drops_tls_and_sends_fin(world, pki):
    client, server = connected(world, pki)
    client.sendall(b"bye")
    client.shutdown(socket.SHUT_WR)
    assert client.version() is None
    assert server.recv(100) == b"bye"
    assert server.recv(100) == b""           # a FIN without close_notify, suppressed


def test_use_after_close_fails_as_the_stdlib(world, pki):
    client, server = connected(world, pki)
    client.close()
    client.close()                            # harmless
    assert client.fileno() == -1
    with pytest.raises(ValueError, match="Read on closed or unwrapped SSL socket"):
        client.read()
    with pytest.raises(ValueError, match="Write on closed or unwrapped SSL socket"):
        client.write(b"x")
    with pytest.raises(OSError) as info:
        client.send(b"x")
    assert info.value.errno == 9
    with pytest.raises(OSError) as info:
        client.recv(1)
    assert info.value.errno == 9
    with pytest.raises(ValueError, match="No SSL wrapper around"):
        client.unwrap()
    assert client.version() is None and client.pending() == 0
    assert client.selected_alpn_protocol() is None


def reset(sock):
    """Close with SO_LINGER 0: the peer gets an RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _peer_ends_during_the_handshake(world, pki, how):
    client, server = world.pair()

    def read_hello_and_end():
        server.recv(65536)
        how(server)

    Thread(read_hello_and_end)
    return outcome(world.wrap, client_context(pki), client, server_hostname=SERVER_NAME)


def test_peer_closing_during_the_handshake(lan, pki):
    shape = side_by_side(lan, _peer_ends_during_the_handshake, pki, lambda sock: sock.close())
    assert shape[0] in ("SSLEOFError", "SSLZeroReturnError")


def test_a_reset_during_the_handshake_is_connection_reset(lan, pki):
    shape = side_by_side(lan, _peer_ends_during_the_handshake, pki, reset)
    assert shape[0] == "ConnectionResetError"


def _reset_under_read(world, pki, suppress):
    client, server = tls_pair(world, client_context(pki), server_context(pki),
                              server_kwargs={"suppress_ragged_eofs": suppress})
    reset(client)
    return [outcome(server.recv, 10), outcome(server.recv, 10)]


@pytest.mark.parametrize("suppress", [True, False])
def test_a_reset_under_a_read(lan, pki, suppress):
    # Python 3.10 to 3.12 report it as an EOF (with suppress_ragged_eofs, recv() returns
    # b""); 3.9 and 3.13 raise ConnectionResetError.
    outcomes = side_by_side(lan, _reset_under_read, pki, suppress)
    if (3, 10) <= sys.version_info[:2] < (3, 13):
        assert outcomes[0] == b"" if suppress else outcomes[0][0] == "SSLEOFError"
    else:
        assert outcomes[0][0] == "ConnectionResetError"


def _reset_under_write(world, pki):
    client, server = connected(world, pki)
    reset(client)
    try:
        for _ in range(500):                  # until the RST has arrived
            server.send(b"x" * 100)
            time.sleep(0.01)
    except Exception as exc:                  # noqa: BLE001 - the exception is the result
        return error_shape(exc)
    return "no error"


def test_a_reset_under_a_write(lan, pki):
    shape = side_by_side(lan, _reset_under_write, pki)
    if (3, 10) <= sys.version_info[:2] < (3, 13):
        assert shape[:2] == ("SSLEOFError", ssl.SSL_ERROR_EOF)
    else:
        assert shape[0] in ("ConnectionResetError", "BrokenPipeError")


def _unwrap_against_a_reset(world, pki):
    client, server = connected(world, pki)
    Thread(reset, server)
    return outcome(client.unwrap)


def test_unwrap_against_a_reset_is_connection_reset(lan, pki):
    assert side_by_side(lan, _unwrap_against_a_reset, pki)[0] == "ConnectionResetError"


def _edge_calls(world, pki):
    client, server = connected(world, pki)
    return [outcome(client.send, b""), outcome(client.recv, 0), outcome(client.read, 0),
            outcome(client.recv_into, bytearray(0)), client.shared_ciphers() is None,
            outcome(client.get_channel_binding, "tls-unique") is None]


def test_empty_reads_and_writes_behave_as_the_stdlibs(lan, pki):
    side_by_side(lan, _edge_calls, pki)


# -- errors and argument checks -------------------------------------------------------------------

def _misuse(world, pki):
    """What each misuse of a connected SSL socket raises."""
    client, server = connected(world, pki)
    calls = {
        "send flags": lambda: client.send(b"x", socket.MSG_DONTWAIT),
        "sendall flags": lambda: client.sendall(b"x", socket.MSG_DONTWAIT),
        "recv flags": lambda: client.recv(10, socket.MSG_PEEK),
        "recv_into flags": lambda: client.recv_into(bytearray(4), 4, socket.MSG_PEEK),
        "sendto": lambda: client.sendto(b"x", ("10.0.0.1", 1)),
        "recvfrom": lambda: client.recvfrom(10),
        "recvfrom_into": lambda: client.recvfrom_into(bytearray(4)),
        "sendmsg": lambda: client.sendmsg([b"x"]),
        "recvmsg": lambda: client.recvmsg(10),
        "recvmsg_into": lambda: client.recvmsg_into([bytearray(4)]),
        "dup": lambda: client.dup(),
        "connect again": lambda: client.connect(server.getsockname()),
        "channel binding": lambda: client.get_channel_binding("tls-bogus"),
        "post handshake auth": lambda: client.verify_client_post_handshake(),
    }
    return {name: error_shape(attempt(call)) for name, call in calls.items()}


def test_misuse_raises_what_the_stdlib_raises(lan, pki):
    kernel, lw = KernelWorld(), LwstackWorld(*lan)
    try:
        assert _misuse(lw, pki) == _misuse(kernel, pki)
    finally:
        kernel.close()
        lw.close()
    shapes = _misuse(KernelWorld(), pki)
    assert shapes["send flags"][0] == "ValueError"
    assert shapes["sendmsg"][0] == "NotImplementedError"


def _wrap_errors(world, pki):
    def wrap_fresh(ctx, **kwargs):
        return world.wrap(ctx, world.keep(world.plain_client()), **kwargs)

    def wrap_udp():
        udp = world.keep(world.plain_client())
        udp.close()
        if world.name == "kernel":
            udp = world.keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        else:
            udp = world.keep(world.client_stack.socket(socket.AF_INET, socket.SOCK_DGRAM))
        return world.wrap(client_context(pki), udp, server_hostname=SERVER_NAME)

    def nonblocking_handshake_on_connect():
        client, server = world.pair()
        client.setblocking(False)
        result = attempt(world.wrap, client_context(pki), client, server_hostname=SERVER_NAME)
        return error_shape(result), error_shape(attempt(client.getsockname))[0]

    sctx, cctx = server_context(pki), client_context(pki)
    session_holder = connected(world, pki)[0]
    session_holder.sendall(b"x")
    return {
        "server hostname on the server side": error_shape(attempt(
            wrap_fresh, sctx, server_side=True, server_hostname="x")),
        "session on the server side": error_shape(attempt(
            wrap_fresh, sctx, server_side=True, session=session_holder.session)),
        "check_hostname without a name": error_shape(attempt(wrap_fresh, cctx)),
        "datagram socket": error_shape(attempt(wrap_udp)),
        "non-blocking with handshake on connect": nonblocking_handshake_on_connect(),
    }


def test_wrap_argument_errors_are_the_stdlibs(lan, pki):
    kernel, lw = KernelWorld(), LwstackWorld(*lan)
    try:
        expected = _wrap_errors(kernel, pki)
        assert _wrap_errors(lw, pki) == expected
    finally:
        kernel.close()
        lw.close()
    assert expected["datagram socket"][0] == "NotImplementedError"
    assert expected["non-blocking with handshake on connect"][0][0] == "ValueError"


def test_a_plaintext_client_meets_the_server_with_the_stdlib_error(world, pki):
    client, server = world.pair()
    side = Thread(attempt, world.wrap, server_context(pki), server, server_side=True)
    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
    failure = side.outcome()
    assert isinstance(failure, ssl.SSLError), failure
    assert failure.reason == "HTTP_REQUEST"


def test_a_plaintext_server_gives_the_client_wrong_version_number(world, pki):
    client, server = world.pair()

    def answer_in_plaintext():
        server.recv(65536)
        server.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    Thread(answer_in_plaintext)
    with pytest.raises(ssl.SSLError) as info:
        world.wrap(client_context(pki), client, server_hostname=SERVER_NAME)
    assert info.value.reason == "WRONG_VERSION_NUMBER"


# -- connect, accept ------------------------------------------------------------------------------

def test_wrapping_an_unconnected_client_then_connecting(world, pki):
    listener = world.listener()
    wrapped_listener = world.wrap(server_context(pki), listener, server_side=True)
    accepting = Thread(wrapped_listener.accept)
    client = world.wrap(client_context(pki), world.keep(world.plain_client()),
                        server_hostname=SERVER_NAME)
    assert client.version() is None and client.cipher() is None
    with pytest.raises(OSError) as info:
        client.send(b"x")                     # plain, unconnected
    assert info.value.errno in (32, 107)      # EPIPE (Linux TCP), ENOTCONN
    with pytest.raises(OSError) as info:
        client.getpeercert()
    assert info.value.errno == 107
    # (The stdlib's wrap detached the plain listener: only the wrapper is usable.)
    address = wrapped_listener.getsockname()
    client.connect(address)
    assert client.version() == "TLSv1.3"
    server, address = accepting.result()
    assert type(server) is world.ssl_class and server.server_side
    assert address == client.getsockname()
    assert server.version() == "TLSv1.3"
    client.sendall(b"through accept")
    assert server.recv(100) == b"through accept"
    with pytest.raises(ValueError, match="attempt to connect already-connected"):
        client.connect(address)
    server_side = world.wrap(server_context(pki), world.keep(world.plain_client()),
                             server_side=True)
    with pytest.raises(ValueError, match="can't connect in server-side mode"):
        server_side.connect(address)


def test_connect_ex_then_handshake_later(world, pki):
    listener = world.wrap(server_context(pki), world.listener(), server_side=True)
    accepting = Thread(listener.accept)
    client = world.wrap(client_context(pki), world.keep(world.plain_client()),
                        server_hostname=SERVER_NAME, do_handshake_on_connect=False)
    assert client.connect_ex(listener.getsockname()) == 0
    assert client.version() is None            # no handshake yet
    client.do_handshake()
    assert client.version() == "TLSv1.3"
    server, _ = accepting.result()
    client.sendall(b"ok")
    assert server.recv(10) == b"ok"


def test_read_and_write_run_the_handshake_when_asked_not_to_on_connect(world, pki):
    client, server = tls_pair(world, client_context(pki), server_context(pki),
                              client_kwargs={"do_handshake_on_connect": False},
                              server_kwargs={"do_handshake_on_connect": False})
    assert client.version() is None
    reader = Thread(server.recv, 100)
    client.sendall(b"implicit handshake")
    assert reader.result() == b"implicit handshake"
    assert client.version() == server.version() == "TLSv1.3"


# -- timeouts -------------------------------------------------------------------------------------

def test_handshake_timeout_covers_the_whole_handshake(world, pki):
    # The server trickles a record header and then one byte at a time: every single read
    # comes well within the timeout, the handshake as a whole does not (one deadline per
    # operation, as _ssl.c).
    client, server = world.pair()
    stop = threading.Event()

    def trickle():
        server.recv(65536)
        server.sendall(b"\x16\x03\x03\x10\x00")
        for _ in range(100):
            if stop.wait(0.05):
                return
            try:
                server.sendall(b"\x00")
            except OSError:
                return

    side = Thread(trickle)
    client.settimeout(0.5)
    try:
        with pytest.raises(socket.timeout) as info:
            world.wrap(client_context(pki), client, server_hostname=SERVER_NAME)
    finally:
        stop.set()
    assert str(info.value).endswith("The handshake operation timed out")
    assert info.value.errno is None
    side.result()


def test_read_timeout_then_the_connection_goes_on(world, pki):
    client, server = connected(world, pki)
    client.settimeout(0.2)
    assert client.gettimeout() == 0.2 and client.timeout == 0.2
    with pytest.raises(socket.timeout) as info:
        client.recv(10)
    assert str(info.value).endswith("The read operation timed out")
    server.sendall(b"late")
    assert client.recv(10) == b"late"


def test_handshake_timeout_on_virtual_time(pki):
    net = VirtualNetwork(seed=3)
    a = net.stack(f"ip={CLIENT_IP}/24")
    b = net.stack(f"ip={SERVER_IP}/24")
    listener = b.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("", 443))
    listener.listen()                         # TCP accepts; nobody speaks TLS
    client = a.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect((SERVER_IP, 443))
    client.settimeout(30)
    start = net.now
    with pytest.raises(socket.timeout, match="handshake operation timed out"):
        tls.wrap_socket(client_context(pki), client, server_hostname=SERVER_NAME)
    assert 30 <= net.now - start < 31         # virtual seconds: the stack's clock
    with pytest.raises(OSError):
        client.getsockname()                  # closed by the failed wrap


# -- non-blocking mode, on virtual time -----------------------------------------------------------

@pytest.fixture
def vpair(pki):
    """A TCP connection between two stacks on virtual time: ``(net, client, server)``."""
    net = VirtualNetwork(seed=5)
    a = net.stack(f"ip={CLIENT_IP}/24")
    b = net.stack(f"ip={SERVER_IP}/24")
    listener = b.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("", 443))
    listener.listen()
    client = a.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect((SERVER_IP, 443))
    server, _ = listener.accept()
    return net, client, server


def nonblocking_handshake(net, client, server):
    """Drive both ends' handshakes by hand; returns what each call raised, in order."""
    events = []
    done = set()
    for _ in range(50):
        for name, sock in (("client", client), ("server", server)):
            if name in done:
                continue
            try:
                sock.do_handshake()
            except ssl.SSLWantReadError:
                events.append((name, "want read"))
            else:
                events.append((name, "done"))
                done.add(name)
        if len(done) == 2:
            return events
        net.run(0.001)
    raise AssertionError(f"handshake did not finish: {events}")


def test_nonblocking_handshake_and_io_raise_want_read(vpair, pki):
    net, plain_client, plain_server = vpair
    plain_client.setblocking(False)
    plain_server.setblocking(False)
    client = tls.wrap_socket(client_context(pki), plain_client, server_hostname=SERVER_NAME,
                             do_handshake_on_connect=False)
    server = tls.wrap_socket(server_context(pki), plain_server, server_side=True,
                             do_handshake_on_connect=False)
    assert not client.getblocking() and client.gettimeout() == 0.0
    events = nonblocking_handshake(net, client, server)
    # TLS 1.3's one round trip (RFC 8446 2), one network step between rounds: the ClientHello
    # leaves; the server answers with its whole flight; the client completes and sends its
    # Finished, which completes the server.
    assert events == [("client", "want read"), ("server", "want read"),
                      ("client", "want read"), ("server", "want read"),
                      ("client", "done"), ("server", "want read"),
                      ("server", "done")]
    assert client.version() == "TLSv1.3"
    with pytest.raises(ssl.SSLWantReadError) as info:
        client.recv(100)
    assert info.value.errno == ssl.SSL_ERROR_WANT_READ
    assert server.send(b"hello") == 5
    net.run(0.1)                              # Nagle waits for the ACK of the tickets
    assert client.recv(100) == b"hello"
    with pytest.raises(ssl.SSLWantReadError):
        client.recv(100)
    # do_handshake(block=True) on a finished connection returns at once.
    client.do_handshake(block=True)
    assert client.gettimeout() == 0.0


def test_nonblocking_send_raises_want_write_and_is_repeated(vpair, pki):
    net, plain_client, plain_server = vpair
    plain_client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    plain_client.setblocking(False)
    plain_server.setblocking(False)
    client = tls.wrap_socket(client_context(pki), plain_client, server_hostname=SERVER_NAME,
                             do_handshake_on_connect=False)
    server = tls.wrap_socket(server_context(pki), plain_server, server_side=True,
                             do_handshake_on_connect=False)
    nonblocking_handshake(net, client, server)
    data = os.urandom(300_000)
    received = bytearray()
    want_writes = 0
    sent = 0

    def drain():
        while True:
            try:
                chunk = server.recv(65536)
            except ssl.SSLWantReadError:
                return
            received.extend(chunk)

    while sent < len(data):
        try:
            n = client.send(data[sent:sent + 65536])   # repeated with the same data
        except ssl.SSLWantWriteError as exc:
            assert exc.errno == ssl.SSL_ERROR_WANT_WRITE
            want_writes += 1
            net.run(0.01)
            drain()
            continue
        assert 0 < n <= 65536
        sent += n
    for _ in range(100):
        if len(received) == len(data):
            break
        net.run(0.01)
        drain()
    assert want_writes > 0
    assert bytes(received) == data


def test_nonblocking_unwrap(vpair, pki):
    net, plain_client, plain_server = vpair
    plain_client.setblocking(False)
    plain_server.setblocking(False)
    client = tls.wrap_socket(client_context(pki), plain_client, server_hostname=SERVER_NAME,
                             do_handshake_on_connect=False)
    server = tls.wrap_socket(server_context(pki), plain_server, server_side=True,
                             do_handshake_on_connect=False)
    nonblocking_handshake(net, client, server)
    with pytest.raises(ssl.SSLWantReadError):
        client.unwrap()                       # close_notify sent, waiting for the peer's
    net.run(0.01)
    assert server.recv(10) == b""
    assert server.unwrap() is server
    net.run(0.01)
    assert client.unwrap() is client
    server.send(b"plain")
    net.run(0.1)
    assert client.recv(10) == b"plain"


# -- the TLS layer over kernel sockets, against the stdlib's SSLSocket -----------------------------

def test_lwstack_tls_over_kernel_sockets_talks_to_the_stdlib(pki):
    kernel = KernelWorld()
    try:
        plain_client, plain_server = kernel.pair()
        side = Thread(kernel.wrap, server_context(pki), plain_server, server_side=True)
        client = tls.wrap_socket(client_context(pki, alpn=["h2"]), plain_client,
                                 server_hostname=SERVER_NAME)
        server = side.result()
        assert isinstance(client, tls.SSLSocket) and isinstance(server, ssl.SSLSocket)
        assert client.version() == server.version()
        payload = os.urandom(1_000_000)
        sender = Thread(client.sendall, payload)
        assert recv_exactly(server, len(payload)) == payload
        sender.result()
        server.sendall(b"back")
        assert client.recv(10) == b"back"
        unwrapping = Thread(server.unwrap)
        assert client.recv(10) == b""
        assert client.unwrap() is client
        unwrapping.result()
        client.close()
    finally:
        kernel.close()


# -- install(): ssl.SSLContext.wrap_socket routed by socket type ----------------------------------

@pytest.fixture
def installed():
    tls.install()
    try:
        yield
    finally:
        tls.uninstall()
    assert ssl.SSLContext.wrap_socket is STDLIB_WRAP


def test_install_routes_lwstack_sockets_and_leaves_kernel_sockets(lan, pki, installed):
    assert tls.installed()
    tls.install()                             # idempotent
    a, _b = lan
    ctx = client_context(pki)
    lw_sock = a.socket(socket.AF_INET, socket.SOCK_STREAM)
    wrapped = ctx.wrap_socket(lw_sock, server_hostname=SERVER_NAME)
    assert isinstance(wrapped, tls.SSLSocket)
    wrapped.close()
    kernel_sock = socket.socket()
    wrapped = ctx.wrap_socket(kernel_sock, server_hostname=SERVER_NAME)
    assert type(wrapped) is ssl.SSLSocket
    wrapped.close()
    tls.uninstall()
    assert not tls.installed()
    with pytest.raises(Exception):            # the stdlib cannot use an lwstack socket
        ctx.wrap_socket(a.socket(socket.AF_INET, socket.SOCK_STREAM),
                        server_hostname=SERVER_NAME)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"hello {self.path} over {self.connection.version()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        digest = hashlib.sha256(data).hexdigest().encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(digest)))
        self.end_headers()
        self.wfile.write(digest)

    def log_message(self, *args):
        pass


def test_https_with_http_client_and_http_server(lan, pki, installed):
    a, b = lan
    listener = b.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("", 443))
    listener.listen()
    # The stdlib call, routed to lwstack.tls by install().
    tls_listener = server_context(pki, alpn=["http/1.1"]).wrap_socket(listener, server_side=True)
    assert isinstance(tls_listener, tls.SSLSocket)

    def serve_one_connection():
        conn, address = tls_listener.accept()
        with conn:
            _Handler(conn, address, None)
        return conn.version()

    server = Thread(serve_one_connection)
    conn = http.client.HTTPSConnection(SERVER_NAME, 443, timeout=10,
                                       context=client_context(pki, alpn=["http/1.1"]))
    # Name resolution and connect through the client stack (the launcher's job, later).
    conn._create_connection = lambda address, timeout, source: lwsocket.create_connection(
        (SERVER_IP, address[1]), timeout, source, stack=a)
    conn.request("GET", "/one")
    response = conn.getresponse()
    assert response.status == 200
    assert response.read() == b"hello /one over TLSv1.3"
    assert isinstance(conn.sock, tls.SSLSocket)
    assert conn.sock.selected_alpn_protocol() == "http/1.1"
    body = os.urandom(300_000)
    conn.request("POST", "/upload", body=body)      # the same connection (keep-alive)
    response = conn.getresponse()
    assert response.status == 201
    assert response.read() == hashlib.sha256(body).hexdigest().encode()
    conn.close()
    assert server.result() is None            # closed by the handler's end: no TLS left
    tls_listener.close()


def test_https_client_refuses_a_wrong_name(lan, pki, installed):
    a, b = lan
    listener = b.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("", 443))
    listener.listen()
    tls_listener = server_context(pki).wrap_socket(listener, server_side=True)
    server = Thread(attempt, tls_listener.accept)
    conn = http.client.HTTPSConnection("wrong.test", 443, timeout=10,
                                       context=client_context(pki))
    conn._create_connection = lambda address, timeout, source: lwsocket.create_connection(
        (SERVER_IP, address[1]), timeout, source, stack=a)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        conn.request("GET", "/")
    assert isinstance(server.outcome(), ssl.SSLError)
    tls_listener.close()


def test_wrap_socket_rejects_the_public_constructor():
    with pytest.raises(TypeError, match="does not have a public constructor"):
        tls.SSLSocket()
    with pytest.raises(TypeError, match="does not have a public constructor"):
        ssl.SSLSocket()


@pytest.mark.skipif(not hasattr(ssl._ssl._SSLSocket, "get_verified_chain"),
                    reason="the ssl engine of this Python has no certificate chains")
def test_lwstack_certificate_chains(lw, pki):
    client, server = connected(lw, pki)
    chain = client.get_verified_chain()
    with open(pki.server_cert) as f:
        assert chain[0] == ssl.PEM_cert_to_DER_cert(f.read())
    with open(pki.ca) as f:
        assert chain[-1] == ssl.PEM_cert_to_DER_cert(f.read())
    assert client.get_unverified_chain()[0] == chain[0]
    assert server.get_verified_chain() == []      # no client certificate
    client.close()
    assert client.get_verified_chain() == []
