"""Ordinary stdlib programs that the lwrun tests run under ``lwrun`` (nothing here knows of
lwstack): servers for the clients under test, each printing ``ready HOST PORT`` when it
listens.

    python lwrun_programs.py SERVER [--loop forever|accept] [options]

``--loop forever`` serves with ``serve_forever()`` (socketserver's selector: it needs
``fileno()`` readiness from the sockets); ``--loop accept`` calls socketserver's
``_handle_request_noblock()`` in a loop instead: a blocking ``accept``/``recvfrom`` and no
selector, so the clients can be tested whatever the sockets' ``fileno()`` does.

Servers:

- ``http DIRECTORY [--tls CERT KEY] [--http11]``: ``http.server`` serving DIRECTORY
  (threads), and answering POST to ``/echo`` with the request body, upper-cased; it logs each
  request with the client's port (``--http11``: persistent connections).
- ``xmlrpc``: ``SimpleXMLRPCServer`` with ``add(a, b)`` and ``whoami()`` (the client's
  address as the server saw it).
- ``tcp-echo`` / ``udp-echo``: ``socketserver`` servers that answer each line (datagram)
  upper-cased, with the client's address.
- ``tcp-sink``: reads each connection to its end and prints ``received BYTES SHA256``.
"""
import hashlib
import argparse
import http.server
import socketserver
import ssl
import sys
import threading
import xmlrpc.server


class _EchoHandler(http.server.SimpleHTTPRequestHandler):
    """Files from the directory, and POST /echo."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length).upper()
        self.send_response(200 if self.path == "/echo" else 404)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Client", self.client_address[0])
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (http.server's name)
        print(f"http: port {self.client_address[1]}:", format % args, flush=True)


class _TcpEcho(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.strip().upper() + f" from {self.client_address[0]}\n"
                             .encode())


class _UdpEcho(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data.upper() + f" from {self.client_address[0]}".encode(),
                    self.client_address)


class _TcpSink(socketserver.BaseRequestHandler):
    def handle(self):
        digest = hashlib.sha256()
        total = 0
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            digest.update(data)
            total += len(data)
        print(f"received {total} {digest.hexdigest()}", flush=True)


class _ThreadingTcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(server, loop):
    host, port = server.server_address[:2]
    print(f"ready {host} {port}", flush=True)
    if loop == "forever":
        server.serve_forever()
    else:
        while True:
            server._handle_request_noblock()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("server", choices=["http", "xmlrpc", "tcp-echo", "udp-echo",
                                           "tcp-sink"])
    parser.add_argument("directory", nargs="?")
    parser.add_argument("--loop", choices=["forever", "accept"], default="forever")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--http11", action="store_true")
    args = parser.parse_args()
    address = ("", args.port)
    if args.server == "http":
        if args.http11:
            _EchoHandler.protocol_version = "HTTP/1.1"

        def handler(*a, **kw):
            return _EchoHandler(*a, directory=args.directory, **kw)
        server = http.server.ThreadingHTTPServer(address, handler)
        if args.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*args.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
    elif args.server == "xmlrpc":
        server = xmlrpc.server.SimpleXMLRPCServer(address, logRequests=False)
        server.register_function(lambda a, b: a + b, "add")
        whoami = threading.local()

        class Handler(xmlrpc.server.SimpleXMLRPCRequestHandler):
            def handle(self):
                whoami.address = self.client_address[0]
                super().handle()
        server.RequestHandlerClass = Handler
        server.register_function(lambda: whoami.address, "whoami")
    elif args.server == "tcp-echo":
        server = _ThreadingTcpServer(address, _TcpEcho)
    elif args.server == "tcp-sink":
        server = _ThreadingTcpServer(address, _TcpSink)
    else:
        server = socketserver.UDPServer(address, _UdpEcho)
    try:
        _serve(server, args.loop)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
