"""Interop tests talk to real peers (Debian's vde2 tools, the Linux kernel through a tap).

They need root, /dev/net/tun and the Debian packages that ``.ci/run`` installs.  Where one is
missing they skip with the reason, unless ``LWSTACK_REQUIRE_INTEROP=1`` (set by ``.ci/run``),
which turns every such skip into a failure so CI cannot pass without running them.
"""
import os
import shutil

import pytest

REQUIRED = os.environ.get("LWSTACK_REQUIRE_INTEROP", "") not in ("", "0")


def require(*binaries, root=False, tun=False, files=()):
    """Skip (or fail, under ``LWSTACK_REQUIRE_INTEROP``) unless the environment has these
    programs on PATH, these ``files`` (e.g. a library's header), root and /dev/net/tun."""
    missing = [b for b in binaries if shutil.which(b) is None]
    reasons = []
    if missing:
        reasons.append("missing programs: " + ", ".join(missing))
    absent = [f for f in files if not os.path.exists(f)]
    if absent:
        reasons.append("missing files: " + ", ".join(absent))
    if root and os.geteuid() != 0:
        reasons.append("needs root")
    if tun and not os.path.exists("/dev/net/tun"):
        reasons.append("needs /dev/net/tun")
    if reasons:
        message = "; ".join(reasons)
        if REQUIRED:
            pytest.fail(f"interop required but {message}")
        pytest.skip(message)
