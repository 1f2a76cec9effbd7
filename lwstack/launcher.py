"""Route the stdlib's ``socket`` module through lwstack stacks, for unmodified programs.

``lwrun`` (``tools/lwrun.py``) runs a Python program with its sockets on a stack of their
own; the same is available in a program::

    import urllib.request
    import lwstack
    from lwstack import launcher

    with lwstack.Stack("vde:///tmp/sw", "dhcp") as stack, launcher.routed(stack):
        stack.wait_configured(10)
        print(urllib.request.urlopen("http://web.lan/").read())

:func:`install` and :func:`uninstall` are the same without ``with``; ``stack_factory=``
instead of a stack gives each thread a stack of its own, made on its first use.

Design note.

What is patched.  Python code reaches the network through attribute look-ups on the
``socket`` module made when it runs (``socket.socket(...)``, ``socket.create_connection(...)``,
``socket.getaddrinfo(...)``): ``http.client``, ``urllib``, ``smtplib``, ``ftplib``,
``socketserver``, ``xmlrpc``, ``asyncio``'s event loop and resolver, ``urllib3``/``requests``,
``aiohttp`` and ``httpx`` all work that way.  So the module's attributes are replaced while
routing is installed: ``socket`` and ``SocketType`` (the class, see below),
``create_connection``, ``create_server``, ``has_dualstack_ipv6``, ``getaddrinfo``,
``gethostbyname``, ``gethostbyname_ex``, ``gethostbyaddr``, ``getnameinfo``, ``getfqdn``,
``gethostname`` (the stack's names, from :mod:`lwstack.resolver`), ``has_ipv6``,
``setdefaulttimeout``/``getdefaulttimeout`` (one default for lwstack and host sockets), and
``if_nameindex``, ``if_nametoindex``, ``if_indextoname`` (the stack's one interface, ``lw0``,
index 1, the ``scope_id`` of its link-local addresses).  ``socket.socketpair`` and
``socket.fromfd`` are left alone: they build their objects through the module's ``socket``,
so they get the patched class.  ``ssl.SSLContext.wrap_socket`` is routed by
:func:`lwstack.tls.install` (TLS over lwstack sockets with the stdlib's OpenSSL, kernel
sockets still to the stdlib).

Names bound before the patch.  ``from socket import create_connection`` copies the function
into the importing module.  :func:`install` therefore looks through every module already
imported (``sys.modules``) and rebinds module-level names that are the stdlib's own
functions or class (``ssl`` has ``create_connection`` and ``socket`` this way, used by
``ssl.get_server_certificate``); :func:`uninstall` puts them back.  Modules imported later
(everything the program under ``lwrun`` imports) copy the patched objects.  ``ssl`` itself is
imported first: ``ssl.SSLSocket`` subclasses the *kernel* socket class, which is what it
wraps, and it stays so.

The class.  ``socket.socket(family, type, proto, fileno)`` while routed is a factory:

- ``AF_INET``/``AF_INET6`` stream and datagram sockets (also ICMP echo datagram sockets) are
  lwstack sockets of the calling thread's stack (:class:`RoutedStreamSocket`,
  :class:`RoutedDatagramSocket`: lwstack's with a check of the options that cannot work);
- ``AF_UNIX`` sockets (and ``socketpair()``, asyncio's self-pipe) are kernel sockets, as are
  sockets made from a descriptor of an ``AF_UNIX`` socket;
- anything else fails with :class:`NotRoutable`, an ``OSError`` whose errno is what Linux
  gives for the same refusal (raw sockets: ``EPERM``, so ping programs fall back to ICMP
  datagram sockets, which lwstack has; other families: ``EAFNOSUPPORT``; other types:
  ``ESOCKTNOSUPPORT``; options such as ``SO_BINDTODEVICE``, ``SO_REUSEPORT`` or multicast
  membership: ``ENOPROTOOPT``), never a kernel socket on the host's network.  A *report*
  function given to :func:`install` (``lwrun`` prints ``lwrun: <reason>`` on stderr) hears of
  each refusal once, even when the program catches the error.

``isinstance(x, socket.socket)`` is true for kernel sockets (the stdlib's class and its
subclasses, ``ssl.SSLSocket`` included), lwstack sockets and :class:`lwstack.tls.SSLSocket`
(the class's metaclass decides).  A class that subclasses ``socket.socket`` after the patch
gets the kernel class as its base instead (so its methods work), with the same rule: its
``AF_UNIX`` sockets work, anything else raises :class:`NotRoutable`.

What is not covered.  The C module ``_socket`` is left alone: code calling
``_socket.socket()`` itself (the ``socket`` and ``ssl`` modules do, nothing else in the
stdlib) makes kernel sockets; a kernel AF_INET descriptor handed to ``socket.socket(fileno=)``
or ``socket.fromfd`` is refused, though.  ``localhost`` (127.0.0.0/8 and ::1) is the
*stack's* loopback, as on a host of its own: a program talks to itself through it, and never
reaches the host's loopback.

Stacks.  One stack for the whole process (``install(stack)``: every thread uses it, also
asyncio's resolver threads), or one per thread (``install(stack_factory=f)``: ``f()`` is
called on a thread's first socket or name look-up and its stack kept for that thread; stacks
of threads that have ended are closed in the background).  The thread's lwstack default
stack (:meth:`lwstack.Stack.make_default`) is not changed; the routed functions name their
stack explicitly.
"""
import contextlib
import errno as _errno
import os as _os
import socket as _stdlib
import ssl  # noqa: F401  (imported before any patch: ssl.SSLSocket subclasses the kernel class)
import sys as _sys
import threading as _threading

from lwstack import resolver as _resolver
from lwstack import socket as _lwsocket
from lwstack import tls as _tls
from lwstack._stream import StreamSocket as _StreamSocket
from lwstack.iface.host6 import IFINDEX as _IFINDEX
from lwstack.socket import DatagramSocket as _DatagramSocket

__all__ = ["install", "uninstall", "routed", "installed", "NotRoutable", "Router",
           "RoutedStreamSocket", "RoutedDatagramSocket", "INTERFACE_NAME"]

#: The name the routed ``if_nameindex()`` gives the stack's one interface.
INTERFACE_NAME = "lw0"

#: The stdlib's kernel socket class and functions, as they were before any patch.
_KERNEL_SOCKET = _stdlib.socket
_NONBLOCK_CLOEXEC = getattr(_stdlib, "SOCK_NONBLOCK", 0) | getattr(_stdlib, "SOCK_CLOEXEC", 0)

_router = None            # the installed Router, or None
_install_lock = _threading.Lock()


class NotRoutable(OSError):
    """What the routed ``socket`` module raises for what cannot go through lwstack (a raw
    socket, ``AF_PACKET``, ``SO_BINDTODEVICE`` ...).  Raised as a subclass that is also the
    ``OSError`` subclass CPython would pick for its errno (``PermissionError`` for EPERM), so
    code that catches those still does."""


_not_routable_classes = {}


def _not_routable(code, reason):
    """A :class:`NotRoutable` error with errno ``code``, an instance of the matching
    ``OSError`` subclass as well."""
    base = type(OSError(code, ""))
    cls = _not_routable_classes.get(base)
    if cls is None:
        if base is OSError:
            cls = NotRoutable
        else:
            cls = type(f"NotRoutable{base.__name__}", (NotRoutable, base),
                       {"__module__": __name__, "__doc__": NotRoutable.__doc__})
        _not_routable_classes[base] = cls
    return cls(code, reason)


def _family_name(family):
    try:
        return _stdlib.AddressFamily(family).name
    except ValueError:
        return f"address family {family}"


def _refuse(code, reason):
    """Tell the router's report function (once per reason) and return the error to raise."""
    router = _router
    if router is not None:
        router._report(reason)
    return _not_routable(code, reason)


# -- the sockets ------------------------------------------------------------------------------

def _option_names():
    """(level, option) pairs that cannot work over lwstack, with the reason."""
    table = {}

    def add(level, name, reason):
        option = getattr(_stdlib, name, None)
        if option is not None:
            table[(level, option)] = f"{name}: {reason}"
    sol, ip, ipv6 = _stdlib.SOL_SOCKET, _stdlib.IPPROTO_IP, _stdlib.IPPROTO_IPV6
    add(sol, "SO_BINDTODEVICE", "a routed socket lives on the stack's one interface, "
        "not on a device of the host")
    # Linux's SO_BINDTODEVICE is 25; the stdlib only exports it on some builds.
    table.setdefault((sol, 25), "SO_BINDTODEVICE: a routed socket lives on the stack's "
                     "one interface, not on a device of the host")
    add(sol, "SO_REUSEPORT", "lwstack has no port sharing between sockets")
    add(sol, "SO_MARK", "lwstack sockets have no kernel packet marks")
    add(sol, "SO_ATTACH_FILTER", "lwstack sockets take no BPF filters")
    add(ip, "IP_HDRINCL", "lwstack has no raw sockets")
    add(ip, "IP_TRANSPARENT", "lwstack has no transparent proxying")
    for name in ("IP_ADD_MEMBERSHIP", "IP_DROP_MEMBERSHIP", "IP_ADD_SOURCE_MEMBERSHIP",
                 "IP_DROP_SOURCE_MEMBERSHIP", "IP_MULTICAST_IF", "IP_MULTICAST_TTL",
                 "IP_MULTICAST_LOOP"):
        add(ip, name, "lwstack sockets do not do IPv4 multicast yet")
    for name in ("IPV6_JOIN_GROUP", "IPV6_LEAVE_GROUP", "IPV6_MULTICAST_IF",
                 "IPV6_MULTICAST_HOPS", "IPV6_MULTICAST_LOOP"):
        add(ipv6, name, "lwstack sockets do not join IPv6 multicast groups yet")
    return table


_UNSUPPORTED_OPTIONS = _option_names()


def _check_option(level, option):
    reason = _UNSUPPORTED_OPTIONS.get((level, option))
    if reason is not None:
        raise _refuse(_errno.ENOPROTOOPT, f"{reason} (not available over lwstack)")


class RoutedStreamSocket(_StreamSocket):
    """An lwstack TCP socket made through the routed ``socket.socket``: lwstack's own, with
    options that cannot work refused as :class:`NotRoutable` (see the module notes)."""

    def setsockopt(self, level, option, value, optlen=None):
        """As lwstack's, refusing options that would need the host's kernel."""
        _check_option(level, option)
        if optlen is None:
            return super().setsockopt(level, option, value)
        return super().setsockopt(level, option, value, optlen)

    def accept(self):
        """As lwstack's; the new socket is a routed one too."""
        sock, address = super().accept()
        if type(sock) is _StreamSocket:
            sock.__class__ = RoutedStreamSocket
        return sock, address


class RoutedDatagramSocket(_DatagramSocket):
    """An lwstack UDP or ICMP echo socket made through the routed ``socket.socket``."""

    def setsockopt(self, level, option, value, optlen=None):
        """As lwstack's, refusing options that would need the host's kernel."""
        _check_option(level, option)
        if optlen is None:
            return super().setsockopt(level, option, value)
        return super().setsockopt(level, option, value, optlen)


def _adopt(sock):
    """Make a socket that lwstack made itself (``create_connection``) a routed one."""
    if type(sock) is _StreamSocket:
        sock.__class__ = RoutedStreamSocket
    elif type(sock) is _DatagramSocket:
        sock.__class__ = RoutedDatagramSocket
    return sock


def _check_kernel_family(family, how):
    """Refuse a kernel socket of any family but AF_UNIX while routing is installed."""
    if _router is None or family == _stdlib.AF_UNIX:
        return
    name = _family_name(family)
    if family in (_stdlib.AF_INET, _stdlib.AF_INET6):
        raise _refuse(_errno.EAFNOSUPPORT, f"{how} would be a kernel {name} socket on the "
                      "host's network, which lwstack routing does not allow")
    raise _refuse(_errno.EAFNOSUPPORT, f"{name} sockets are not available over lwstack: "
                  "only AF_INET and AF_INET6 go through the stack (AF_UNIX stays on the host)")


class _KernelSocket(_KERNEL_SOCKET):
    """The stdlib's socket class, refusing any family but AF_UNIX while routing is on: the
    kernel sockets a routed program makes (and the base of classes that subclass the routed
    ``socket.socket``)."""

    __slots__ = ()

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is None:
            _check_kernel_family(_stdlib.AF_INET if family == -1 else family,
                                 f"{self.__class__.__name__}()")
            super().__init__(family, type, proto)
            return
        super().__init__(family, type, proto, fileno)
        try:
            _check_kernel_family(self.family, f"socket(fileno={fileno})")
        except NotRoutable:
            self.detach()              # the descriptor stays the caller's, as on failure
            raise


class _RoutedSocketType(type):
    """The metaclass of the routed ``socket.socket``: ``isinstance`` answers for kernel,
    lwstack and TLS sockets alike, and subclasses get the kernel class as their base."""

    def __new__(mcls, name, bases, namespace, **kwargs):
        routed_class = globals().get("socket")
        if routed_class is not None and any(base is routed_class for base in bases):
            bases = tuple(_KernelSocket if base is routed_class else base for base in bases)
            return type(name, bases, namespace, **kwargs)
        return super().__new__(mcls, name, bases, namespace, **kwargs)

    def __instancecheck__(cls, obj):
        return isinstance(obj, (_KERNEL_SOCKET, _lwsocket.socket, _tls.SSLSocket))

    def __getattr__(cls, name):
        # Class attributes of the stdlib's class, for code that reads them (trio wraps
        # ``socket.socket.accept`` and friends): a method becomes one that calls the same
        # method of whatever socket it is given, kernel or lwstack.
        value = getattr(_KERNEL_SOCKET, name)
        if name.startswith("__") or not callable(value) or isinstance(value, type):
            return value

        def method(self, *args, **kwargs):
            return getattr(self, name)(*args, **kwargs)
        method.__name__ = name
        method.__qualname__ = f"socket.{name}"
        method.__doc__ = getattr(value, "__doc__", None)
        return method

    def __subclasscheck__(cls, subclass):
        return type.__subclasscheck__(cls, subclass) or \
            issubclass(subclass, (_KERNEL_SOCKET, _lwsocket.socket, _tls.SSLSocket))


class socket(metaclass=_RoutedSocketType):  # noqa: N801 (the stdlib's name)
    """What ``socket.socket`` is while routing is installed: calling it makes an lwstack
    socket, a kernel AF_UNIX socket, or raises :class:`NotRoutable` (see the module notes).
    After :func:`uninstall`, a reference kept to it makes kernel sockets again."""

    def __new__(cls, family=-1, type=-1, proto=-1, fileno=None):
        router = _router
        if router is None:
            return _KERNEL_SOCKET(family, type, proto, fileno)
        return router.socket(family, type, proto, fileno)


# -- the router ------------------------------------------------------------------------------

class Router:
    """The stack (or stacks) routed sockets and names go to; made by :func:`install`.

    ``stack``: one :class:`lwstack.Stack` for every thread; ``stack_factory``: a callable
    making a stack for each thread that needs one (it may wait for the stack's
    configuration; its exceptions reach the caller of the socket function).  ``report``:
    called with one line of text for each kind of refusal (:class:`NotRoutable`).
    """

    def __init__(self, stack=None, *, stack_factory=None, report=None):
        if (stack is None) == (stack_factory is None):
            raise TypeError("give a stack or a stack_factory (one of them)")
        self._stack = stack
        self._factory = stack_factory
        self._report_function = report
        self._reported = set()
        self._local = _threading.local()
        self._lock = _threading.Lock()
        self._thread_stacks = []          # (thread, stack) made by the factory

    # -- stacks ------------------------------------------------------------------------------

    def stack(self):
        """The calling thread's stack (made now by the factory on its first use)."""
        if self._stack is not None:
            return self._stack
        stack = getattr(self._local, "stack", None)
        if stack is None or stack.closed:
            stack = self._factory()
            self._local.stack = stack
            with self._lock:
                ended = [(t, s) for t, s in self._thread_stacks if not t.is_alive()]
                self._thread_stacks = [(t, s) for t, s in self._thread_stacks
                                       if t.is_alive()]
                self._thread_stacks.append((_threading.current_thread(), stack))
            if ended:
                _threading.Thread(target=_close_all, args=([s for _t, s in ended],),
                                  name="lwstack-launcher-close", daemon=True).start()
        return stack

    @property
    def stacks(self):
        """Every stack this router handed out so far and not closed yet."""
        if self._stack is not None:
            return [self._stack]
        with self._lock:
            return [s for _t, s in self._thread_stacks if not s.closed]

    def close_stacks(self, timeout=None):
        """Close the stacks the factory made (a stack given to :func:`install` is the
        caller's to close); connections finish as :meth:`lwstack.Stack.close` lets them."""
        with self._lock:
            stacks = [s for _t, s in self._thread_stacks]
            self._thread_stacks = []
        _close_all(stacks, timeout)

    def _report(self, reason):
        if self._report_function is not None and reason not in self._reported:
            self._reported.add(reason)
            try:
                self._report_function(reason)
            except Exception:  # noqa: BLE001 (reporting must not hide the real error)
                pass

    def reported(self, exc):
        """True when ``exc`` is a refusal the report function was told about."""
        return isinstance(exc, NotRoutable) and self._report_function is not None and \
            exc.strerror in self._reported

    # -- the socket module's functions, routed ----------------------------------------------

    def socket(self, family=-1, type=-1, proto=-1, fileno=None):
        """``socket.socket(...)`` while routed (see the module notes)."""
        if fileno is not None or family == _stdlib.AF_UNIX:
            return _KernelSocket(family, type, proto, fileno)
        if family == -1:
            family = _stdlib.AF_INET
        if family not in (_stdlib.AF_INET, _stdlib.AF_INET6):
            _check_kernel_family(family, "socket()")
        if type == -1:
            type = _stdlib.SOCK_STREAM
        if proto == -1:
            proto = 0
        base = type & ~_NONBLOCK_CLOEXEC
        if base == _stdlib.SOCK_RAW:
            raise _refuse(_errno.EPERM, "raw sockets (SOCK_RAW) are not available over "
                          "lwstack (for ping: SOCK_DGRAM with IPPROTO_ICMP/IPPROTO_ICMPV6)")
        if base == _stdlib.SOCK_STREAM:
            cls = RoutedStreamSocket
        elif base == _stdlib.SOCK_DGRAM:
            cls = RoutedDatagramSocket
        else:
            try:
                kind = _stdlib.SocketKind(base).name
            except ValueError:
                kind = f"type {base}"
            raise _refuse(_errno.ESOCKTNOSUPPORT, f"{kind} sockets are not available over "
                          "lwstack (SOCK_STREAM and SOCK_DGRAM are)")
        return cls(family, type, proto, stack=self.stack())

    def create_connection(self, address, timeout=_stdlib._GLOBAL_DEFAULT_TIMEOUT,
                          source_address=None, *, all_errors=False):
        """:func:`socket.create_connection` over the thread's stack."""
        if timeout is _stdlib._GLOBAL_DEFAULT_TIMEOUT:
            timeout = _lwsocket.getdefaulttimeout()
        return _adopt(_lwsocket.create_connection(address, timeout, source_address,
                                                  all_errors=all_errors, stack=self.stack()))

    def create_server(self, address, *, family=_stdlib.AF_INET, backlog=None,
                      reuse_port=False, dualstack_ipv6=False):
        """:func:`socket.create_server` over the thread's stack."""
        if reuse_port:
            _check_option(_stdlib.SOL_SOCKET, getattr(_stdlib, "SO_REUSEPORT", 15))
        return _adopt(_lwsocket.create_server(address, family=family, backlog=backlog,
                                              dualstack_ipv6=dualstack_ipv6,
                                              stack=self.stack()))

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        """:func:`socket.getaddrinfo` through the thread's stack's resolver."""
        return _resolver.getaddrinfo(host, port, family, type, proto, flags, stack=self.stack())

    def gethostbyname(self, hostname):
        """:func:`socket.gethostbyname` through the stack's resolver."""
        return _resolver.gethostbyname(hostname, stack=self.stack())

    def gethostbyname_ex(self, hostname):
        """:func:`socket.gethostbyname_ex` through the stack's resolver."""
        return _resolver.gethostbyname_ex(hostname, stack=self.stack())

    def gethostbyaddr(self, ip_address):
        """:func:`socket.gethostbyaddr` through the stack's resolver."""
        return _resolver.gethostbyaddr(ip_address, stack=self.stack())

    def getnameinfo(self, sockaddr, flags):
        """:func:`socket.getnameinfo` through the stack's resolver."""
        return _resolver.getnameinfo(sockaddr, flags, stack=self.stack())

    def getfqdn(self, name=""):
        """:func:`socket.getfqdn`: the stack's own name by default."""
        return _resolver.getfqdn(name, stack=self.stack())

    def gethostname(self):
        """The stack's host name (``fqdn=``'s first label; ``localhost`` without one)."""
        return _resolver.gethostname(stack=self.stack())

    def _patches(self):
        """{name: replacement} for the ``socket`` module."""
        def setdefaulttimeout(timeout):
            """Set the default timeout of new sockets, lwstack and kernel ones alike."""
            _lwsocket.setdefaulttimeout(timeout)
            _ORIGINALS["setdefaulttimeout"](timeout)

        def getdefaulttimeout():
            """The default timeout of new sockets (None: blocking)."""
            return _lwsocket.getdefaulttimeout()

        def has_dualstack_ipv6():
            """True: lwstack's AF_INET6 sockets can take IPv4 too."""
            return True

        def if_nameindex():
            """The stack's one interface: ``[(1, 'lw0')]``."""
            return [(_IFINDEX, INTERFACE_NAME)]

        def if_nametoindex(name):
            """1 for ``lw0``; OSError otherwise (as for an unknown interface)."""
            if not isinstance(name, str):
                raise TypeError(f"if_nametoindex(): argument must be str, not "
                                f"{type(name).__name__}")
            if name != INTERFACE_NAME:
                raise OSError("no interface with this name")
            return _IFINDEX

        def if_indextoname(index):
            """``lw0`` for 1; OSError(ENXIO) otherwise."""
            if not isinstance(index, int):
                raise TypeError("an integer is required")
            if index != _IFINDEX:
                raise OSError(_errno.ENXIO, _os.strerror(_errno.ENXIO))
            return INTERFACE_NAME

        return {
            "socket": socket, "SocketType": socket,
            "create_connection": self.create_connection, "create_server": self.create_server,
            "has_dualstack_ipv6": has_dualstack_ipv6,
            "getaddrinfo": self.getaddrinfo, "gethostbyname": self.gethostbyname,
            "gethostbyname_ex": self.gethostbyname_ex, "gethostbyaddr": self.gethostbyaddr,
            "getnameinfo": self.getnameinfo, "getfqdn": self.getfqdn,
            "gethostname": self.gethostname, "has_ipv6": True,
            "setdefaulttimeout": setdefaulttimeout, "getdefaulttimeout": getdefaulttimeout,
            "if_nameindex": if_nameindex, "if_nametoindex": if_nametoindex,
            "if_indextoname": if_indextoname,
        }


def _close_all(stacks, timeout=None):
    for stack in stacks:
        try:
            if timeout is None:
                stack.close()
            else:
                stack.close(timeout)
        except Exception:  # noqa: BLE001 (one stack must not keep the others open)
            pass


#: The ``socket`` module's attributes before routing (filled by the first install).
_ORIGINALS = {}
#: Names whose stdlib objects are looked for in modules imported before the patch.
_REBOUND_NAMES = ("socket", "create_connection", "create_server", "getaddrinfo",
                  "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo",
                  "getfqdn", "gethostname", "setdefaulttimeout", "getdefaulttimeout",
                  "has_dualstack_ipv6")
#: Modules whose copies of the stdlib's names are never rebound: the patched module itself,
#: the C module under it, and lwstack's own code (it wants the kernel objects it imported).
_SKIPPED_MODULES = ("socket", "_socket", "lwstack", "vde", __name__)
_undo = []                # (object, attribute, original, replacement), in patch order


def _skipped(name):
    return any(name == prefix or name.startswith(prefix + ".") for prefix in _SKIPPED_MODULES)


def install(stack=None, *, stack_factory=None, report=None):
    """Route the ``socket`` module (and ``ssl`` for lwstack sockets) through ``stack``, or a
    stack per thread from ``stack_factory()``; returns the :class:`Router`.

    ``report(reason)`` hears once of each kind of refusal (see :class:`NotRoutable`).  Only
    one routing at a time: ``RuntimeError`` if one is installed already.
    """
    global _router
    router = Router(stack, stack_factory=stack_factory, report=report)
    with _install_lock:
        if _router is not None:
            raise RuntimeError("lwstack.launcher: routing is installed already")
        patches = router._patches()
        if not _ORIGINALS:
            _ORIGINALS.update({name: getattr(_stdlib, name) for name in patches
                               if hasattr(_stdlib, name)})
        for name, replacement in patches.items():
            _undo.append((_stdlib, name, getattr(_stdlib, name, _MISSING), replacement))
            setattr(_stdlib, name, replacement)
        originals = {id(_ORIGINALS[name]): patches[name] for name in _REBOUND_NAMES
                     if name in _ORIGINALS}
        for module_name, module in list(_sys.modules.items()):
            if module is None or _skipped(module_name):
                continue
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for attribute, value in list(namespace.items()):
                replacement = originals.get(id(value))
                if replacement is not None and not attribute.startswith("__"):
                    _undo.append((module, attribute, value, replacement))
                    setattr(module, attribute, replacement)
        _tls.install()
        _router = router
    return router


_MISSING = object()


def uninstall():
    """Undo :func:`install`: the ``socket`` module and the names rebound elsewhere get the
    stdlib's objects back (where nobody changed them since), ``ssl`` its own
    ``wrap_socket``.  Stacks are not closed (see :meth:`Router.close_stacks`)."""
    global _router
    with _install_lock:
        if _router is None:
            return
        while _undo:
            target, attribute, original, replacement = _undo.pop()
            if getattr(target, attribute, _MISSING) is not replacement:
                continue
            if original is _MISSING:
                delattr(target, attribute)
            else:
                setattr(target, attribute, original)
        _tls.uninstall()
        _router = None


def installed():
    """The installed :class:`Router`, or None."""
    return _router


@contextlib.contextmanager
def routed(stack=None, *, stack_factory=None, report=None):
    """Context manager: :func:`install` on entry (yields the :class:`Router`),
    :func:`uninstall` on exit."""
    router = install(stack, stack_factory=stack_factory, report=report)
    try:
        yield router
    finally:
        uninstall()
