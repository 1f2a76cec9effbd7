"""lwrun: run an unmodified Python program with its network on a stack of its own.

    lwrun [--net LOCATOR] [--conf CONFIG] [--per-thread] [--wait SECONDS] [--]
          (SCRIPT | -m MODULE | -c CODE) [ARGS...]

The program runs in this interpreter as ``python SCRIPT``, ``python -m MODULE`` or
``python -c CODE`` would run it (``sys.argv``, ``sys.path[0]``, ``__main__``), with the stdlib's
``socket`` module routed through a fresh lwstack stack (:mod:`lwstack.launcher`): TCP, UDP,
names and TLS go through the stack, AF_UNIX sockets stay on the host, and what cannot go
through the stack (raw sockets, AF_PACKET, SO_BINDTODEVICE ...) fails with one line on
stderr (``lwrun: ...``) instead of reaching the host's network.

``--net`` is a vdeplug4 locator (default ``$LWSTACK_NET``, else the default switch) and
``--conf`` an iothconf configuration (default ``$LWSTACK_CONF``, else ``dhcp``: a DHCPv4
lease; ``auto`` adds IPv6).  The program starts once the stack is configured (``--wait``
seconds at most, 30 by default).  ``--per-thread`` gives every thread a stack of its own,
made on the thread's first socket or name look-up (so the configuration must be automatic:
a static address or MAC would be the same for every thread).

Every thread shares the one stack unless ``--per-thread``; then asyncio's resolver threads
(``loop.getaddrinfo`` runs in an executor) get stacks, and DHCP leases, of their own too.
``localhost`` is the stack's own loopback (127.0.0.0/8 and ::1), never the host's.

The exit status is the program's (1 for an uncaught exception, whose traceback is printed as
Python prints it; 2 for lwrun's own argument errors, 1 when the stack cannot start).  At exit,
after the program's own ``atexit`` functions and once its non-daemon threads have ended, the
stack closes, letting its TCP connections deliver what they still owe (as
:meth:`lwstack.Stack.close` does).
"""
import atexit
import os
import sys

import lwcli

#: Seconds the program waits by default for the stack's configuration (a DHCP lease ...).
DEFAULT_WAIT = 30.0
_VALUE_OPTIONS = ("--net", "--conf", "--wait")
_VALUE_PREFIXES = tuple(option + "=" for option in _VALUE_OPTIONS)
_FLAG_OPTIONS = ("--per-thread", "-h", "--help")


def _parser():
    parser = lwcli.ArgumentParser(
        prog="lwrun",
        usage="lwrun [--net LOCATOR] [--conf CONFIG] [--per-thread] [--wait SECONDS] [--] "
              "(SCRIPT | -m MODULE | -c CODE) [ARGS...]",
        description="Run a Python program (a script, -m MODULE or -c CODE) with the stdlib's "
                    "socket layer routed through a stack of its own.")
    parser.add_argument("--net", default=os.environ.get("LWSTACK_NET", ""), metavar="LOCATOR",
                        help="switch locator, e.g. vde:///tmp/sw (default: $LWSTACK_NET, "
                             "else the default switch)")
    parser.add_argument("--conf", default=os.environ.get("LWSTACK_CONF") or "dhcp",
                        metavar="CONFIG",
                        help="stack configuration, e.g. ip=10.0.0.2/24,gw=10.0.0.1 "
                             "(default: $LWSTACK_CONF, else dhcp)")
    parser.add_argument("--per-thread", action="store_true",
                        help="a stack for each thread (needs an automatic configuration)")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                        help=f"how long to wait for the configuration (default "
                             f"{DEFAULT_WAIT:g} s)")
    return parser


def split_argv(argv):
    """``(lwrun's options, program)``: the program is ``("script", path, args)``,
    ``("module", name, args)``, ``("code", text, args)``, ``("missing", "-m" or "-c", [])``,
    or None when there is none (or an unknown option: the parser then says so).  lwrun's
    options end at ``--``, ``-m``, ``-c`` or the first word that is not one of them."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            options, rest = argv[:index], argv[index + 1:]
            break
        if word in _VALUE_OPTIONS:
            index += 2
            continue
        if word in _FLAG_OPTIONS or word.startswith(_VALUE_PREFIXES):
            index += 1
            continue
        if word.startswith("-") and word[:2] not in ("-m", "-c"):
            return argv, None
        options, rest = argv[:index], argv[index:]
        break
    else:
        return argv, None
    if not rest:
        return options, None
    word = rest[0]
    if word[:2] in ("-m", "-c"):
        kind = "module" if word[:2] == "-m" else "code"
        if len(word) > 2:
            return options, (kind, word[2:], rest[1:])
        if len(rest) < 2:
            return options, ("missing", word, [])
        return options, (kind, rest[1], rest[2:])
    return options, ("script", word, rest[1:])


def main(argv=None):
    """Parse the arguments, start the stack, run the program; returns its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    options, program = split_argv(argv)
    args = parser.parse_args(options)
    if program is None:
        parser.error("give a program: SCRIPT, -m MODULE or -c CODE")
    kind, target, program_args = program
    if kind == "missing":
        parser.error(f"argument {target}: expected one argument")
    if not args.wait > 0:
        parser.error(f"--wait {args.wait:g}: must be more than 0")
    _check_config(parser, args)
    if kind == "script" and not os.path.exists(target):
        parser.error(f"can't open file {os.path.abspath(target)!r}: [Errno 2] "
                     "No such file or directory")
    if kind == "module":
        problem = _find_module(target)
        if problem:
            print(f"lwrun: {problem}", file=sys.stderr)
            return 1
    router = lwcli.run(_start, args)
    if isinstance(router, int):
        return router                       # the stack could not start: one line said why
    return _run_program(router, kind, target, program_args)


def _check_config(parser, args):
    """A configuration that does not parse is an argument error (exit 2), and so is a static
    identity with --per-thread."""
    from lwstack.iface.config import check_supported, parse_config
    try:
        config = parse_config(args.conf)
        check_supported(config)
    except ValueError as exc:
        parser.error(f"--conf {args.conf!r}: {exc}")
    if args.per_thread:
        static = [what for what, present in (
            ("ip=", config.addresses or config.addresses6), ("mac=", config.mac),
            ("fqdn= (its hash-derived IPv6 address)", config.fqdn
             and config.iid_method == "hash")) if present]
        if static:
            parser.error(f"--per-thread: every thread's stack would have the same "
                         f"{', '.join(static)}; give an automatic configuration (dhcp, auto)")
        if not config.automatic:
            parser.error("--per-thread needs an automatic configuration (dhcp, auto, ...)")


def _find_module(name):
    """Why ``-m name`` cannot run (as Python says it), or None."""
    import importlib.util
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        return f"Error while finding module specification for {name!r} " \
               f"({type(exc).__name__}: {exc})"
    if spec is None:
        return f"No module named {name}"
    return None


def _start(args):
    """Make the stack (or the per-thread factory), wait for its configuration, route the
    socket module through it; returns the Router."""
    import lwstack
    from lwstack import launcher

    def make_stack(description):
        stack = lwstack.Stack(args.net, args.conf, description=description)
        try:
            stack.wait_configured(args.wait)
        except BaseException:
            stack.close(0)
            raise
        stack.make_default()            # for programs that use lwstack.socket themselves
        return stack

    def report(reason):
        print(f"lwrun: {reason}", file=sys.stderr, flush=True)

    if args.per_thread:
        import threading
        main_stack = make_stack(f"lwrun {os.getpid()} MainThread")
        first = [main_stack]

        def factory():
            if first and threading.current_thread() is threading.main_thread():
                return first.pop()
            return make_stack(f"lwrun {os.getpid()} {threading.current_thread().name}")
        router = launcher.install(stack_factory=factory, report=report)
        router.stack()                   # the main thread's, made above
        atexit.register(router.close_stacks)
    else:
        stack = make_stack(f"lwrun {os.getpid()}")
        router = launcher.install(stack, report=report)
        atexit.register(stack.close)
    return router


def _run_program(router, kind, target, program_args):
    """Run the program as Python would; its exit status (SystemExit passes through)."""
    import runpy
    try:
        if kind == "script":
            sys.argv = [target, *program_args]
            sys.path[0] = os.path.dirname(os.path.abspath(target))
            runpy.run_path(target, run_name="__main__")
        elif kind == "module":
            sys.argv = [target, *program_args]     # runpy puts the module's path in argv[0]
            sys.path[0] = os.getcwd()
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *program_args]
            sys.path[0] = ""
            _run_code(target)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 (the program's: printed as Python prints it)
        if router.reported(exc):
            return 1                         # the one line was printed when it happened
        tb = _program_traceback(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


def _run_code(code):
    """Run ``-c`` code in a fresh ``__main__`` module, as ``python -c`` does."""
    import types
    module = types.ModuleType("__main__")
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    exec(compile(code, "<string>", "exec"), module.__dict__)


def _program_traceback(tb):
    """The traceback from the program's first frame on (lwrun's and runpy's left out)."""
    ours = {os.path.abspath(__file__)}
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if os.path.abspath(filename) not in ours and "runpy" not in filename:
            break
        tb = tb.tb_next
    return tb


if __name__ == "__main__":
    sys.exit(main())
