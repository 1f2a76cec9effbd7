"""Shared plumbing for lwstack's command-line tools: one-line errors, clean interrupts."""
import argparse
import os
import signal
import sys


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: message``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}\n")


def run(main, argv=None, error_status=1):
    """Call ``main(argv)`` (``argv`` may be any argument, e.g. parsed options); turn errors
    and Ctrl-C into one line and an exit status.

    ``OSError`` and ``ValueError`` raised by the library carry a clear message already, so a
    user sees ``prog: message`` instead of a traceback.
    """
    prog = os.path.basename(sys.argv[0]).removesuffix(".py")
    try:
        return main(argv)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return error_status


def stop_on_sigterm():
    """Make SIGTERM behave like Ctrl-C, so ``with`` blocks release switch ports on the way out."""
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
