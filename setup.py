"""Build lwstack: pure-Python packages plus Cython-compiled hot modules.

The hot modules are ordinary ``.py`` files with a ``.pxd`` beside them (Cython's
"pure Python mode"): compiled when Cython and a C compiler are available, imported
as plain Python otherwise.  Set ``LWSTACK_PURE=1`` to force the pure build.
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

# Modules on the per-frame path.  Each has a .pxd beside it with the C types.
HOT_MODULES = [
    "lwstack/wire/checksum.py",
    "lwstack/wire/ethernet.py",
    "lwstack/wire/icmpv4.py",
    "lwstack/wire/ipv4.py",
    "lwstack/wire/tcp.py",
    "vde/core.py",
]

# Real Cython modules (.pyx, they call libc directly): only in the accelerated build.  Nothing
# imports them unconditionally; vde.server uses its Python loop when vde._fastpath is absent,
# lwstack.phy.vdeplug the pure lwstack.phy.plugio when lwstack.phy._plugio is.
COMPILED_ONLY = [
    "vde/_fastpath.pyx",
    "lwstack/phy/_plugio.pyx",
]


class OptionalBuildExt(build_ext):
    """Compile the extensions, but fall back to pure Python if compiling fails."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            print(f"lwstack: C build failed ({exc}); installing the pure-Python build",
                  file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"lwstack: could not compile {ext.name} ({exc}); it stays pure Python",
                  file=sys.stderr)


def extensions():
    if os.environ.get("LWSTACK_PURE", "") not in ("", "0"):
        print("lwstack: LWSTACK_PURE set, pure-Python build", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("lwstack: Cython not found, pure-Python build", file=sys.stderr)
        return []
    directives = {"boundscheck": False, "wraparound": False}
    modules = cythonize(HOT_MODULES, language_level=3, quiet=True,
                        compiler_directives=directives)
    try:
        modules += cythonize(COMPILED_ONLY, language_level=3, quiet=True,
                             compiler_directives=directives)
    except Exception as exc:  # the server falls back to its Python loop
        print(f"lwstack: could not cythonize {COMPILED_ONLY} ({exc}); skipped", file=sys.stderr)
    return modules


TOOLS = ["lwswitch", "lwecho", "lwping", "lwdemo", "lwperf", "lwrouter", "lwrun"]

setup(
    name="lwstack",
    version="0.1.0",
    description="Internet of Threads: a userspace TCP/IP stack for Python on VDE virtual switches",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    python_requires=">=3.9",
    packages=["lwstack", "lwstack.wire", "lwstack.storage", "lwstack.proto", "lwstack.proto.tcp",
              "lwstack.iface", "lwstack.phy", "vde"],
    # tools/ holds one thin module per command, installed as top-level modules.
    package_dir={"": "tools", "lwstack": "lwstack", "vde": "vde"},
    py_modules=TOOLS + ["lwcli"],
    package_data={"lwstack": ["wire/*.pxd"], "vde": ["*.pxd"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    install_requires=["dpkt>=1.9", "python-pytun>=2.4", "netifaces-plus>=0.12"],
    # requests, httpx, aiohttp, pyftpdlib and aiosmtpd: unmodified programs under lwrun.
    extras_require={"test": ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6",
                             "cryptography>=3.1", "requests>=2.25", "httpx>=0.23",
                             "aiohttp>=3.8", "pyftpdlib>=1.5.7", "aiosmtpd>=1.4"]},
    entry_points={"console_scripts": [f"{name} = {name}:main" for name in TOOLS]},
    zip_safe=False,
)
