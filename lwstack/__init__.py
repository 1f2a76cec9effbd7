"""lwstack: the Internet of Threads for Python.

Every process or thread can own its own MAC and IPv4 address on a VDE-style virtual Ethernet
switch, without root::

    import lwstack
    with lwstack.Stack("vde:///tmp/sw", "eth,ip=10.0.0.2/24,gw=10.0.0.1") as stack:
        s = stack.socket()                 # a UDP socket with the stdlib's API
        s.sendto(b"hello", ("10.0.0.1", 7))
"""
__version__ = "0.1.0"


def _accelerated():
    """True when the per-frame modules were compiled by Cython."""
    from lwstack.wire import checksum
    return not checksum.__file__.endswith(".py")


#: Whether this installation runs the Cython-compiled hot paths.
accelerated = _accelerated()

from lwstack.stack import Stack, default_stack  # noqa: E402

__all__ = ["Stack", "default_stack", "accelerated", "__version__"]
