"""lwecho: a stack of its own that answers ping, echoes UDP datagrams and echoes TCP.

    lwecho --net vde:///tmp/sw --conf ip=10.0.0.1/24 [--port 7]

UDP and TCP share the port number (RFC 862 echo).  The UDP loop runs in the main thread; TCP
is an accept thread started beside it and one thread per connection, which echoes every byte
until the client's FIN and then closes (so the client reads everything it sent, then EOF).
Both sockets are AF_INET6 on ``::``, dual-stack: they answer IPv4 and IPv6 alike (ping and
ping6 are answered by the stack itself); IPv4 peers are printed as plain IPv4 addresses.
"""
import socket
import sys
import threading

import lwcli


def main(argv=None):
    """Run until interrupted (Ctrl-C or SIGTERM)."""
    parser = lwcli.ArgumentParser(
        prog="lwecho",
        description="Answer ping and echo UDP and TCP on a port, from a stack of its own.")
    parser.add_argument("--net", default="", metavar="LOCATOR",
                        help="switch locator, e.g. vde:///tmp/sw (default: the default switch)")
    parser.add_argument("--conf", required=True, metavar="CONFIG",
                        help="stack configuration, e.g. ip=10.0.0.1/24,gw=10.0.0.254")
    parser.add_argument("--port", type=int, default=7,
                        help="UDP and TCP port to echo on (default 7)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing per datagram or connection")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: must be 1..65535")
    return lwcli.run(_serve, args)


def _serve(args):
    import lwstack

    lwcli.stop_on_sigterm()
    with lwstack.Stack(args.net, args.conf, description=f"lwecho {args.conf}") as stack:
        with stack.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock, \
                stack.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
            sock.bind(("", args.port))
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("", args.port))
            listener.listen(128)
            threading.Thread(target=_accept_tcp, args=(listener, args.quiet), daemon=True,
                             name="lwecho tcp accept").start()
            print(f"lwecho: {', '.join(stack.addresses)} ({stack.mac}) answering ping and "
                  f"echoing UDP and TCP port {args.port}", flush=True)
            try:
                while True:
                    data, peer = sock.recvfrom(65535)
                    sock.sendto(data, peer)
                    if not args.quiet:
                        print(f"lwecho: {len(data)} bytes from {_endpoint(peer)} echoed",
                              flush=True)
            except KeyboardInterrupt:
                pass
    return 0


def _accept_tcp(listener, quiet):
    """Accept TCP connections until the listener closes; echo each in a thread of its own."""
    while True:
        try:
            conn, peer = listener.accept()
        except OSError:
            return                      # the listener (or the stack) closed: we are exiting
        threading.Thread(target=_echo_tcp, args=(conn, peer, quiet), daemon=True,
                         name=f"lwecho tcp {_endpoint(peer)}").start()


def _echo_tcp(conn, peer, quiet):
    """Echo one connection until the peer's FIN (then close: our FIN follows the data)."""
    total = 0
    try:
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
                total += len(data)
    except OSError as exc:
        if not quiet:
            print(f"lwecho: TCP {_endpoint(peer)}: {exc.strerror or exc} after {total} bytes",
                  flush=True)
        return
    if not quiet:
        print(f"lwecho: TCP {_endpoint(peer)}: {total} bytes echoed, closed", flush=True)


def _endpoint(peer):
    """``10.0.0.3:40000`` for an IPv4 peer (mapped on our dual-stack sockets), ``[fd00::3]:40000``
    for an IPv6 one."""
    host = peer[0]
    if host.startswith("::ffff:") and "." in host:
        return f"{host[7:]}:{peer[1]}"
    return f"[{host}]:{peer[1]}"


if __name__ == "__main__":
    sys.exit(main())
