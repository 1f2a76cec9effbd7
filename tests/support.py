"""Helpers shared by the test suites (importable as ``support``; conftest files hold fixtures)."""
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest


class Processes:
    """Processes a test starts; each is stopped by its PID at teardown (never by name)."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kwargs):
        """Start ``argv`` (a list); stdin defaults to /dev/null, stdout and stderr to pipes
        (text).  Use ``stdout=subprocess.DEVNULL`` for chatty long-lived processes."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        proc = subprocess.Popen(argv, **kwargs)
        self.procs.append(proc)
        return proc

    def python(self, module, *args, **kwargs):
        """Start one of lwstack's tools (``python -m module args``)."""
        return self.start([sys.executable, "-m", module, *args], **kwargs)

    def stop_all(self):
        """Stop every process started, the last first."""
        for proc in reversed(self.procs):
            stop_process(proc)


def stop_process(proc, timeout=5.0):
    """Stop ``proc`` (a Popen) if it still runs: SIGTERM, then SIGKILL after ``timeout``
    seconds; then close its pipes."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def wait_for_path(path, proc=None, timeout=10.0):
    """Wait until ``path`` exists; fail with the process's stderr if it died first."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before creating {path}: "
                        f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def read_line(proc, timeout=10.0):
    """The next stdout line of ``proc`` within ``timeout`` seconds."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        pytest.fail(f"no output from {proc.args} within {timeout} s")
    return proc.stdout.readline()


def wait_for(predicate, timeout=10.0, interval=0.005):
    """Poll ``predicate()`` every ``interval`` seconds until it holds or ``timeout`` passes;
    return its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        time.sleep(interval)
    return True
