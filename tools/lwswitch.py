"""lwswitch: a vde_switch-compatible virtual Ethernet switch (``lwswitch -s /tmp/sw -M /tmp/m``).

Design
------
A thin command line over :class:`vde.server.SwitchServer`, taking vde_switch's main options
with the same meanings and defaults: the socket directory defaults to ``/var/run/vde.ctl``
for root and ``/tmp/vde.ctl`` otherwise (checked against Debian's vde_switch 2.3.2), sockets
get mode 0600, ``-d`` detaches (double fork, stdio to /dev/null) and ``-p`` writes the pid of
the running switch.  In the foreground with a terminal on stdin, stdin is a console, as with
vde_switch.  Our additions: ``--max-frame`` (default 9234, never below it: we do not truncate
the way vde_switch does) and ``--max-mac-entries`` (vde_switch's table is unbounded).

SIGTERM and SIGINT stop the loop; the sockets, the socket directory (when the switch made it)
and the pid file are removed on the way out.
"""
import argparse
import os
import signal
import sys

import lwcli
from vde.core import DEFAULT_MAX_FRAME
from vde.server import SwitchServer


def default_directory():
    """vde_switch's default socket directory: /var/run/vde.ctl for root, else /tmp/vde.ctl."""
    return "/var/run/vde.ctl" if os.geteuid() == 0 else "/tmp/vde.ctl"


def _octal(text):
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid octal mode: {text!r}") from None


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _max_frame(text):
    value = _positive(text)
    if value < DEFAULT_MAX_FRAME:
        raise argparse.ArgumentTypeError(
            f"must be at least {DEFAULT_MAX_FRAME} (vdeplug4's frame size): {text!r}")
    return value


def build_parser():
    """The argument parser (vde_switch's option names)."""
    parser = lwcli.ArgumentParser(
        prog="lwswitch",
        description="A vde_switch-compatible virtual Ethernet switch over unix sockets.")
    parser.add_argument("-s", "--sock", "--vdesock", "--unix", dest="sock", metavar="DIR",
                        help="control directory (default /var/run/vde.ctl for root, "
                             "else /tmp/vde.ctl)")
    parser.add_argument("-M", "--mgmt", metavar="PATH", help="management console socket")
    parser.add_argument("-n", "--numports", type=_positive, default=32, metavar="N",
                        help="number of ports (default 32)")
    parser.add_argument("-x", "--hub", action="store_true", help="act as a hub")
    parser.add_argument("-d", "--daemon", action="store_true", help="run in the background")
    parser.add_argument("-p", "--pidfile", metavar="FILE", help="write the switch's pid here")
    parser.add_argument("--hashsize", type=_positive, default=128, metavar="N",
                        help="hash table size shown by the console (default 128)")
    parser.add_argument("-m", "--mode", type=_octal, default=0o600, metavar="MODE",
                        help="octal permissions of the sockets (default 600)")
    parser.add_argument("--max-frame", type=_max_frame, default=DEFAULT_MAX_FRAME,
                        metavar="BYTES",
                        help=f"largest frame forwarded (default {DEFAULT_MAX_FRAME}); "
                             "longer ones are dropped, never truncated")
    parser.add_argument("--max-mac-entries", type=_positive, default=4096, metavar="N",
                        help="MAC table capacity (default 4096)")
    return parser


def _daemonize():
    """Detach from the terminal: fork twice, new session, stdio on /dev/null."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _serve(args):
    stdin_console = not args.daemon and sys.stdin is not None and sys.stdin.isatty()
    server = SwitchServer(args.sock or default_directory(), numports=args.numports,
                          hub=args.hub, mgmt=args.mgmt, mode=args.mode,
                          max_frame=args.max_frame, max_mac_entries=args.max_mac_entries,
                          hashsize=args.hashsize, stdin_console=stdin_console)
    server.bind()                     # fail here, in the foreground, if the sockets are taken
    if args.daemon:
        _daemonize()
        server.state.pid = os.getpid()
    pidfile = os.path.abspath(args.pidfile) if args.pidfile else None
    if pidfile:
        with open(pidfile, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.request_stop())
    try:
        server.serve_forever()
    finally:
        if pidfile:
            try:
                os.unlink(pidfile)
            except FileNotFoundError:
                pass
    return 0


def main(argv=None):
    """Entry point of the ``lwswitch`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return lwcli.run(lambda _: _serve(args))


if __name__ == "__main__":
    sys.exit(main())
