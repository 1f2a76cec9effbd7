"""Fixtures shared by the suites: processes started by a test and stopped by PID."""
import shutil
import tempfile

import pytest

from support import Processes, read_line, wait_for_path


@pytest.fixture
def processes():
    """A :class:`Processes` registry, emptied (by PID) after the test."""
    registry = Processes()
    yield registry
    registry.stop_all()


@pytest.fixture
def lwswitch(processes, tmp_path):
    """Our switch (``lwswitch``) running in a temporary directory; yields its locator."""
    directory = tmp_path / "sw"
    proc = processes.python("lwswitch", "-s", str(directory), "-M", str(tmp_path / "mgmt"))
    wait_for_path(directory / "ctl", proc)
    wait_for_path(tmp_path / "mgmt", proc)
    return f"vde://{directory}"


@pytest.fixture
def lwecho(processes):
    """Start ``lwecho`` on a switch; returns a function (locator, conf) -> process."""
    def start(locator, conf):
        proc = processes.python("lwecho", "--net", locator, "--conf", conf)
        line = read_line(proc)
        assert "answering ping" in line, line
        return proc
    return start


@pytest.fixture
def workdir():
    """A short temporary directory: a sockaddr_un path holds 107 bytes, and pytest's
    tmp_path can be longer than that."""
    path = tempfile.mkdtemp(prefix="lw", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)
