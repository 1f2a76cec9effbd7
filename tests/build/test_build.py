"""The installed build is the one CI asked for, and says so."""
import os
import subprocess
import sys

import lwstack


def test_build_matches_request():
    if os.environ.get("LWSTACK_PURE", "") not in ("", "0"):
        assert lwstack.accelerated is False
    elif os.environ.get("LWSTACK_EXPECT_ACCELERATED", "") not in ("", "0"):
        assert lwstack.accelerated is True, "the Cython build was requested but is not active"
    else:
        assert lwstack.accelerated in (True, False)


def test_tests_use_the_installed_package():
    # Running the tests against the source tree would silently skip the compiled modules.
    source_tree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.environ.get("LWSTACK_EXPECT_ACCELERATED"):
        assert not lwstack.__file__.startswith(os.path.join(source_tree, "lwstack"))


def test_version_command_reports_build():
    out = subprocess.run([sys.executable, "-m", "lwstack", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith(f"lwstack {lwstack.__version__}, ")
    assert ("accelerated (Cython)" in out) == lwstack.accelerated
    assert ("pure Python" in out) == (not lwstack.accelerated)
