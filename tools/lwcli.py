"""Shared plumbing for lwstack's command-line tools: one-line errors, clean interrupts."""
import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: message``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}\n")


def run(main, argv=None):
    """Call ``main(argv)``; turn errors and Ctrl-C into one line and an exit status.

    ``OSError`` and ``ValueError`` raised by the library carry a clear message already, so a
    user sees ``prog: message`` instead of a traceback.
    """
    prog = argparse.ArgumentParser().prog
    try:
        return main(argv)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
