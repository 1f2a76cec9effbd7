"""lwecho: a stack of its own that answers ping and echoes UDP datagrams.

    lwecho --net vde:///tmp/sw --conf ip=10.0.0.1/24 [--port 7]
"""
import sys

import lwcli


def main(argv=None):
    """Run until interrupted (Ctrl-C or SIGTERM)."""
    parser = lwcli.ArgumentParser(
        prog="lwecho", description="Answer ping and echo UDP on a port, from a stack of its own.")
    parser.add_argument("--net", default="", metavar="LOCATOR",
                        help="switch locator, e.g. vde:///tmp/sw (default: the default switch)")
    parser.add_argument("--conf", required=True, metavar="CONFIG",
                        help="stack configuration, e.g. ip=10.0.0.1/24,gw=10.0.0.254")
    parser.add_argument("--port", type=int, default=7, help="UDP port to echo on (default 7)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing per datagram")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: must be 1..65535")
    return lwcli.run(_serve, args)


def _serve(args):
    import lwstack

    lwcli.stop_on_sigterm()
    with lwstack.Stack(args.net, args.conf, description=f"lwecho {args.conf}") as stack:
        with stack.socket() as sock:
            sock.bind(("", args.port))
            print(f"lwecho: {', '.join(stack.addresses)} ({stack.mac}) answering ping and "
                  f"echoing UDP port {args.port}", flush=True)
            try:
                while True:
                    data, peer = sock.recvfrom(65535)
                    sock.sendto(data, peer)
                    if not args.quiet:
                        print(f"lwecho: {len(data)} bytes from {peer[0]}:{peer[1]} echoed",
                              flush=True)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
