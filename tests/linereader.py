"""LineReader: every line a long-running child prints, read by a thread into a queue.

``support.read_line`` selects on the pipe before each ``readline``, which misses lines that
already sit in the file object's buffer when several arrive together (a log burst); a
thread reading the pipe to its end never does.
"""
import queue
import threading
import time

import pytest


class LineReader:
    """Lines of ``proc.stdout`` (text mode), stripped, in order."""

    def __init__(self, proc):
        self.proc = proc
        self._lines = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.proc.stdout:
                self._lines.put(line.strip())
        except (ValueError, OSError):
            pass                        # the pipe was closed at teardown

    def take(self, count, timeout=10.0):
        """The next ``count`` lines; fails the test if they do not come within ``timeout``
        seconds each."""
        lines = []
        for _ in range(count):
            try:
                lines.append(self._lines.get(timeout=timeout))
            except queue.Empty:
                pytest.fail(f"{self.proc.args[:3]}: {count} lines expected, got {lines}")
        return lines

    def until(self, wanted, timeout=10.0):
        """Lines up to the one that completes ``wanted`` (a set of exact lines, in any order,
        others between them allowed); fails the test if they have not all come within
        ``timeout`` seconds."""
        missing = set(wanted)
        lines = []
        deadline = time.monotonic() + timeout
        while missing:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{self.proc.args[:3]}: still missing {sorted(missing)}, got {lines}")
            lines.append(line)
            missing.discard(line)
        return lines
