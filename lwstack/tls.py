"""TLS over lwstack stream sockets, with the API of :class:`ssl.SSLSocket`.

``ssl.SSLContext.wrap_socket`` only accepts kernel sockets (OpenSSL reads and writes the
descriptor itself).  :func:`wrap_socket` gives the same object shape over an lwstack TCP socket
(or any object with the stdlib stream socket API): ``wrap_socket(context, sock, server_side=...,
server_hostname=...)`` returns an :class:`SSLSocket` with ``do_handshake``, ``getpeercert``,
``version``, ``cipher``, ``send``/``recv``/``makefile``, ``unwrap`` ... and the stdlib's errors.
:func:`install` makes ``ssl.SSLContext.wrap_socket`` itself accept lwstack sockets (kernel
sockets keep going to the stdlib), which is how the launcher gives ``http.client``,
``urllib`` and friends HTTPS over a stack.

Design note.  The TLS engine is the stdlib's own: ``context._wrap_bio`` (what
:meth:`ssl.SSLContext.wrap_bio` uses) makes an OpenSSL connection over two memory BIOs, so
certificate checks, ALPN, sessions, versions and every exception (``SSLCertVerificationError``
with ``verify_code``, ``SSLEOFError`` ...) come from the same code as with a kernel socket.
This module is only the pump between the BIOs and the plain socket, standing in for the loop
that ``_ssl.c`` runs around ``SSL_read``/``SSL_write`` with ``select()``:

- an operation (handshake, read, write, shutdown) is retried until OpenSSL stops asking for
  input; after every attempt, what OpenSSL wrote (records, alerts, a close_notify) is sent;
  when it asks for input, ciphertext is read from the plain socket into the incoming BIO.
  One deadline, taken when the operation starts, bounds the whole operation as in ``_ssl.c``
  ("The handshake operation timed out"); time is the stack's clock, so a socket on a
  :class:`~lwstack.sim.VirtualNetwork` times out in virtual seconds.
- Ciphertext is read one TLS record at a time (the 5-byte header gives the length, RFC 8446
  5.1 / RFC 5246 6.2): OpenSSL over a kernel socket reads exactly that way (no read-ahead),
  and it keeps two stdlib properties.  A record not yet needed stays in the plain socket, so
  its descriptor stays readable and a ``select()`` loop that checks ``pending()`` works as with
  ``ssl.SSLSocket``; and after ``unwrap()`` the bytes behind the peer's close_notify are still
  the plain stream's.  A header that cannot start a TLS record (a plaintext HTTP request, an
  SSLv2 hello) is handed to OpenSSL at once, so it fails as fast as with a kernel socket.
- In non-blocking mode an operation raises ``SSLWantReadError`` when it needs ciphertext that
  has not arrived, and ``SSLWantWriteError`` when what it produced could not all be sent (the
  rest waits in this object).  ``send`` then follows OpenSSL's rule: repeat the same call; it
  returns the count once the records have left.
- Threads: one thread may read while another writes, as with ``ssl.SSLSocket``.  A lock
  serialises the OpenSSL object and its BIOs (``_ssl`` releases the GIL inside OpenSSL); the
  plain socket is read under a second lock and written under a third, never holding the first
  while blocked, so records leave in the order OpenSSL made them.

Differences from ``ssl.SSLSocket``: the plain socket is not detached (an lwstack socket has no
descriptor to hand over): the wrapper owns it, and it must not be used directly any more; the
object is not an instance of ``ssl.SSLSocket``; and ``close()`` closes the plain socket (as the
stdlib closes the descriptor), without a close_notify (``unwrap()`` sends one).
"""
import errno as _errno
import functools as _functools
import socket as _stdlib
import ssl as _ssl
import sys as _sys
import threading as _threading
import time as _time

from ssl import (SSL_ERROR_EOF, SSL_ERROR_WANT_WRITE, SSLEOFError, SSLError, SSLWantReadError,
                 SSLWantWriteError)

__all__ = ["SSLSocket", "wrap_socket", "install", "uninstall", "installed"]

#: A TLS record header: type, version (2 bytes), length (2 bytes).
_HEADER = 5
#: Record content types (change_cipher_spec, alert, handshake, application_data, heartbeat).
_CONTENT_TYPES = frozenset((20, 21, 22, 23, 24))
#: The longest record body a peer may send: 2^14 plus TLS 1.2's 2048 bytes of expansion
#: (RFC 5246 6.2.3); TLS 1.3 allows 2^14 + 256 (RFC 8446 5.2).
_MAX_BODY = 16384 + 2048
#: Plaintext handed to OpenSSL per write: four full records, then they are sent.
_WRITE_CHUNK = 65536


#: Operations whose socket errors _ssl.c reports as SSLEOFError.  Python 3.10 to 3.12 read
#: and write with SSL_read_ex/SSL_write_ex, which return 0 for any failure, and map "0 and
#: no OpenSSL error" to EOF: a reset peer makes ``recv`` return ``b""`` (suppress_ragged_eofs)
#: and ``send`` raise SSLEOFError.  Python 3.9 (SSL_read/SSL_write) and 3.13 (CPython
#: gh-115627) raise the socket's OSError, as the handshake and ``unwrap`` always do.
_EOF_ON_ERROR = frozenset(("read", "write")) if (3, 10) <= _sys.version_info[:2] < (3, 13) \
    else frozenset()
#: The stdlib's socket class as it was at import: the launcher (:mod:`lwstack.launcher`)
#: replaces ``socket.socket`` later, and :meth:`SSLSocket.makefile` borrows the real one's.
_KERNEL_SOCKET = _stdlib.socket


def _is_socket_timeout(exc):
    return isinstance(exc, _stdlib.timeout) and exc.errno is None


def _timed_out(what):
    return _stdlib.timeout(f"The {what} operation timed out")


def _want_write():
    return SSLWantWriteError(SSL_ERROR_WANT_WRITE, "The operation did not complete (write)")


def _ragged_eof():
    return SSLEOFError(SSL_ERROR_EOF, "EOF occurred in violation of protocol")


class SSLSocket:
    """A TLS connection over a plain stream socket, with :class:`ssl.SSLSocket`'s methods.

    Made by :func:`wrap_socket` (or ``SSLContext.wrap_socket`` after :func:`install`), never
    directly.  Until the plain socket is connected, and after :meth:`unwrap` or
    :meth:`shutdown`, I/O goes to the plain socket unencrypted, as with the stdlib.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{self.__class__.__name__} does not have a public constructor. "
                        "Instances are returned by lwstack.tls.wrap_socket().")

    @classmethod
    def _create(cls, sock, server_side=False, do_handshake_on_connect=True,
                suppress_ragged_eofs=True, server_hostname=None, context=None, session=None):
        if sock.getsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_TYPE) != _stdlib.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side:
            if server_hostname:
                raise ValueError("server_hostname can only be specified in client mode")
            if session is not None:
                raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        self = object.__new__(cls)
        self._sock = sock
        self._timeout = sock.gettimeout()
        self._context = context
        self._session = session
        self._closed = False
        self._io_refs = 0
        self._sslobj = None
        self.server_side = server_side
        encode = getattr(context, "_encode_hostname", None)
        self.server_hostname = encode(server_hostname) if encode else server_hostname
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self._incoming = _ssl.MemoryBIO()
        self._outgoing = _ssl.MemoryBIO()
        self._lock = _threading.Lock()     # the OpenSSL object and both BIOs
        self._rlock = _threading.Lock()    # reading the plain socket
        self._wlock = _threading.Lock()    # writing the plain socket (and self._out)
        self._fed = 0                      # counts feeds of the incoming BIO
        self._header = bytearray()         # the part of a record header read so far
        self._record_left = 0              # body bytes of the current record still unread
        self._eof = False
        self._out = b""                    # ciphertext that could not be sent yet
        self._owed = 0                     # plaintext taken by a write that raised WantWrite
        self._plain = b""                  # plain bytes read with the peer's close_notify
        self._rbuf = memoryview(bytearray(_MAX_BODY))
        stack = getattr(sock, "stack", None)
        driver = getattr(stack, "driver", None)
        self._clock = driver.now if driver is not None else _time.monotonic

        try:
            sock.getpeername()
        except OSError as exc:
            if exc.errno != _errno.ENOTCONN:
                raise
            connected = False
            # Like the stdlib (CVE-2023-40217): data that came before the connection closed
            # must not look as if it came through TLS.
            timeout = sock.gettimeout()
            sock.settimeout(0.0)
            try:
                early = sock.recv(1)
            except OSError as recv_exc:
                if recv_exc.errno not in (_errno.ENOTCONN, _errno.EINVAL):
                    raise
                early = b""
            finally:
                sock.settimeout(timeout)
            if early:
                reason = "Closed before TLS handshake with data in recv buffer."
                error = SSLError(exc.errno, reason)
                error.reason = reason
                error.library = None
                try:
                    self.close()
                except OSError:
                    pass
                raise error
        else:
            connected = True
        self._connected = connected
        if connected:
            try:
                self._sslobj = self._new_sslobj()
                if do_handshake_on_connect:
                    if self._timeout == 0.0:
                        raise ValueError("do_handshake_on_connect should not be specified "
                                         "for non-blocking sockets")
                    self.do_handshake()
            except (OSError, ValueError):
                self.close()
                raise
        return self

    def _new_sslobj(self):
        wrap_bio = getattr(self._context, "_wrap_bio", None)
        if wrap_bio is not None:
            # The raw engine, with this object as the owner that callbacks (SNI) are given.
            return wrap_bio(self._incoming, self._outgoing, self.server_side,
                            self.server_hostname, owner=self, session=self._session)
        return _ObjectAdapter(self._context.wrap_bio(  # pragma: no cover (other Pythons)
            self._incoming, self._outgoing, self.server_side, self.server_hostname,
            session=self._session))

    # -- the pump between OpenSSL and the plain socket ------------------------------------------

    def _deadline(self):
        timeout = self._timeout
        return self._clock() + timeout if timeout else None

    def _plain_call(self, method, arg, deadline, what):
        """One call on the plain socket within the operation's deadline (None: the socket's
        own mode, blocking or non-blocking)."""
        if deadline is None:
            return method(arg)
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise _timed_out(what)
        sock = self._sock
        sock.settimeout(remaining)
        try:
            return method(arg)
        except _stdlib.timeout as exc:
            if exc.errno is not None:     # ETIMEDOUT: the connection itself timed out
                raise
            raise _timed_out(what) from None
        finally:
            sock.settimeout(self._timeout)

    def _flush(self, deadline, what):
        """Send what OpenSSL produced; False when a non-blocking socket could not take it all
        (the rest is kept and goes first next time)."""
        with self._wlock:
            with self._lock:
                data = self._outgoing.read()
            if self._out:
                data = self._out + data
                self._out = b""
            if not data:
                return True
            view = memoryview(data)
            sent = 0
            label = "write" if what == "shutdown" else what
            try:
                while sent < len(view):
                    sent += self._plain_call(self._sock.send, view[sent:], deadline, label)
            except BlockingIOError:
                self._out = bytes(view[sent:])
                return False
            except OSError as exc:
                self._out = bytes(view[sent:])
                if what not in _EOF_ON_ERROR or _is_socket_timeout(exc):
                    raise
                # What _ssl.c reports when the socket fails under SSL_write_ex/SSL_read_ex.
                raise _ragged_eof() from None
            except BaseException:
                self._out = bytes(view[sent:])
                raise
            return True

    def _flush_alert(self):
        """Best effort, never blocking: send the alert OpenSSL wrote before failing."""
        if not self._wlock.acquire(False):
            return
        try:
            with self._lock:
                data = self._outgoing.read()
            data = self._out + data
            self._out = b""
            if data:
                self._sock.send(data, _stdlib.MSG_DONTWAIT)
        except OSError:
            pass
        finally:
            self._wlock.release()

    def _fill(self, generation, deadline, what, want):
        """Read ciphertext, up to the end of the current record, into the incoming BIO.

        Returns once something was fed (or the peer's EOF); raises ``want`` (the engine's
        SSLWantReadError) when a non-blocking socket has nothing.
        """
        label = "read" if what == "shutdown" else what
        with self._rlock:
            if self._fed != generation:
                return                   # another thread fed the engine meanwhile
            if self._eof:
                raise _ragged_eof()
            got = False
            while True:
                if self._record_left:
                    size = min(self._record_left, _MAX_BODY)
                else:
                    size = _HEADER - len(self._header)
                view = self._rbuf[:size]
                try:
                    n = self._plain_call(self._sock.recv_into, view, deadline, label)
                except BlockingIOError:
                    if got:
                        return
                    raise want from None
                except OSError as exc:
                    if what not in _EOF_ON_ERROR or _is_socket_timeout(exc):
                        raise
                    # _ssl.c: a failed socket under SSL_read_ex (the next read sees the EOF).
                    raise _ragged_eof() from None
                with self._lock:
                    if n:
                        self._incoming.write(view[:n])
                    else:
                        self._incoming.write_eof()
                    self._fed += 1
                if not n:
                    self._eof = True
                    return
                got = True
                if self._record_left:
                    self._record_left -= n
                    if not self._record_left:
                        return
                    continue
                self._header += view[:n]
                if len(self._header) < _HEADER:
                    continue
                header = self._header
                length = int.from_bytes(header[3:5], "big")
                self._header = bytearray()
                if header[0] not in _CONTENT_TYPES or header[1] != 3 or length > _MAX_BODY:
                    return               # not TLS: OpenSSL says what is wrong right away
                self._record_left = length
                if not length:
                    return

    def _call(self, what, op, *args, stuck=None, deadline=None):
        """Run ``op`` (a method of the engine) to completion, as _ssl.c does over a socket.

        ``stuck(result)`` decides what a completed operation does when its output could not
        all be sent (non-blocking); the default raises SSLWantWriteError.  ``deadline``: the
        operation's, when it started earlier (a write in several chunks).
        """
        if deadline is None:
            deadline = self._deadline()
        outgoing = self._outgoing
        reading = what == "read"
        while True:
            generation = self._fed
            want = error = None
            with self._lock:
                before = outgoing.pending
                try:
                    result = op(*args)
                except SSLWantReadError as exc:
                    want = exc
                except SSLError as exc:
                    error = exc
                produced = outgoing.pending > before
            if error is not None:
                # A failure (a bad certificate, a protocol error): OpenSSL wrote an alert for
                # the peer, which a kernel socket would have carried already.
                self._flush_alert()
                try:
                    raise error
                finally:
                    error = None
            # A read sends only what it produced itself (rare: a TLS 1.3 KeyUpdate answer):
            # it must not queue behind a writer blocked on a full socket while the peer, doing
            # the same, waits for us to read.
            if (produced or not reading) and not self._flush(deadline, what):
                if want is not None or stuck is None:
                    raise _want_write()
                return stuck(result)
            if want is None:
                return result
            self._fill(generation, deadline, what, want)

    # -- TLS -----------------------------------------------------------------------------------

    def _check_connected(self):
        if not self._connected:
            # ENOTCONN when really not connected; a non-blocking connect may have completed.
            self._sock.getpeername()

    def do_handshake(self, block=False):
        """Run the TLS handshake (``block=True``: even on a non-blocking socket)."""
        self._check_connected()
        if self._sslobj is None:
            raise ValueError("No SSL wrapper around " + str(self))
        timeout = self._timeout
        try:
            if timeout == 0.0 and block:
                self.settimeout(None)
            self._call("handshake", self._sslobj.do_handshake)
        finally:
            self.settimeout(timeout)

    def read(self, len=1024, buffer=None):  # noqa: A002 (the stdlib's parameter name)
        """Read up to ``len`` bytes (into ``buffer`` if given); ``b""``/0 at the end."""
        if self._sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        try:
            if buffer is not None:
                return self._call("read", self._sslobj.read, len, buffer, stuck=_same)
            return self._call("read", self._sslobj.read, len, stuck=_same)
        except SSLError as exc:
            if exc.args[0] == SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return 0 if buffer is not None else b""
            raise

    def write(self, data):
        """Encrypt and send ``data``; returns the number of bytes taken."""
        if self._sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        return self._write(data)

    def _write(self, data):
        sslobj = self._sslobj
        with memoryview(data) as view, view.cast("B") as view:
            if self._timeout == 0.0:
                if self._owed:
                    # The repeated call of a write that raised SSLWantWriteError.
                    if not self._flush(None, "write"):
                        raise _want_write()
                    taken, self._owed = self._owed, 0
                    return taken
                return self._call("write", sslobj.write, view[:_WRITE_CHUNK], stuck=self._owe)
            total = len(view)
            taken = 0
            deadline = self._deadline()       # one for the whole call, as SSL_write's
            while True:
                taken += self._call("write", sslobj.write, view[taken:taken + _WRITE_CHUNK],
                                    deadline=deadline)
                if taken >= total:
                    return total

    def _owe(self, taken):
        self._owed = taken
        raise _want_write()

    def pending(self):
        """Decrypted bytes ready to be read without touching the socket."""
        return self._sslobj.pending() if self._sslobj is not None else 0

    def unwrap(self):
        """Send a close_notify, wait for the peer's, and return the socket, now plain."""
        if not self._sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        self._call("shutdown", self._sslobj.shutdown)
        with self._lock:
            self._plain = self._incoming.read()
        self._sslobj = None
        return self

    def getpeercert(self, binary_form=False):
        """The peer's certificate, as :meth:`ssl.SSLSocket.getpeercert`."""
        self._check_connected()
        if self._sslobj is None:
            raise ValueError("No SSL wrapper around " + str(self))
        return self._sslobj.getpeercert(binary_form)

    def version(self):
        """The protocol version (``'TLSv1.3'`` ...), None before the connection exists."""
        return self._sslobj.version() if self._sslobj is not None else None

    def cipher(self):
        """``(name, protocol, secret bits)`` of the cipher in use, or None."""
        return self._sslobj.cipher() if self._sslobj is not None else None

    def shared_ciphers(self):
        """The ciphers both ends offered (server side), or None."""
        return self._sslobj.shared_ciphers() if self._sslobj is not None else None

    def compression(self):
        """The compression in use (None: none, as in every modern OpenSSL)."""
        return self._sslobj.compression() if self._sslobj is not None else None

    def selected_alpn_protocol(self):
        """The protocol ALPN chose, or None."""
        if self._sslobj is None or not _ssl.HAS_ALPN:
            return None
        return self._sslobj.selected_alpn_protocol()

    def selected_npn_protocol(self):
        """NPN is gone from the stdlib: always None (with its DeprecationWarning)."""
        import warnings
        warnings.warn("ssl NPN is deprecated, use ALPN instead", DeprecationWarning,
                      stacklevel=2)

    def get_channel_binding(self, cb_type="tls-unique"):
        """Channel binding data (RFC 5929), or None before the handshake."""
        if self._sslobj is not None:
            return self._sslobj.get_channel_binding(cb_type)
        if cb_type not in _ssl.CHANNEL_BINDING_TYPES:
            raise ValueError(f"{cb_type} channel binding type not implemented")
        return None

    def verify_client_post_handshake(self):
        """Ask a TLS 1.3 client for its certificate after the handshake (server side)."""
        if self._sslobj is None:
            raise ValueError("No SSL wrapper around " + str(self))
        return self._sslobj.verify_client_post_handshake()

    def get_verified_chain(self):
        """The peer's verified chain, leaf first, as DER (what Python 3.13 added)."""
        return self._chain("get_verified_chain")

    def get_unverified_chain(self):
        """The chain the peer sent, as DER (what Python 3.13 added)."""
        return self._chain("get_unverified_chain")

    def _chain(self, name):
        if self._sslobj is None:
            return []
        method = getattr(self._sslobj, name, None)
        if method is None:
            raise NotImplementedError(f"{name}() needs Python 3.10 or later")
        chain = method()
        return [cert.public_bytes(_ssl._ssl.ENCODING_DER) for cert in chain or ()]

    @property
    def context(self):
        """The :class:`ssl.SSLContext`; settable (e.g. from an SNI callback)."""
        return self._context

    @context.setter
    def context(self, ctx):
        self._context = ctx
        self._sslobj.context = ctx

    @property
    def session(self):
        """The TLS session, to resume it on another connection; None without TLS."""
        return self._sslobj.session if self._sslobj is not None else None

    @session.setter
    def session(self, session):
        self._session = session
        if self._sslobj is not None:
            self._sslobj.session = session

    @property
    def session_reused(self):
        """True when the handshake resumed a session."""
        return self._sslobj.session_reused if self._sslobj is not None else None

    # -- socket methods ------------------------------------------------------------------------

    def send(self, data, flags=0):
        """Send some of ``data`` over TLS (all of it unless non-blocking); returns the count."""
        if self._sslobj is not None:
            if flags != 0:
                raise ValueError(
                    f"non-zero flags not allowed in calls to send() on {self.__class__}")
            return self._write(data)
        return self._sock.send(data, flags)

    def sendall(self, data, flags=0):
        """Send every byte of ``data``; returns None."""
        if self._sslobj is None:
            return self._sock.sendall(data, flags)
        if flags != 0:
            raise ValueError(
                f"non-zero flags not allowed in calls to sendall() on {self.__class__}")
        with memoryview(data) as view, view.cast("B") as view:
            count = 0
            while count < len(view):
                count += self.send(view[count:])
        return None

    def sendto(self, data, flags_or_addr, addr=None):
        """Not over TLS (ValueError); plain ``sendto`` on an unwrapped socket."""
        if self._sslobj is not None:
            raise ValueError(f"sendto not allowed on instances of {self.__class__}")
        if addr is None:
            return self._sock.sendto(data, flags_or_addr)
        return self._sock.sendto(data, flags_or_addr, addr)

    def sendmsg(self, *args, **kwargs):
        """Not allowed: it would send unencrypted data."""
        raise NotImplementedError(f"sendmsg not allowed on instances of {self.__class__}")

    def sendfile(self, file, offset=0, count=None):
        """Send a (binary) file's contents; returns the number of bytes sent."""
        if self._sslobj is None:
            return self._sock.sendfile(file, offset, count)
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if count is not None and (not isinstance(count, int) or count <= 0):
            raise ValueError(f"count must be a positive integer (got {count!r})")
        if self._timeout == 0.0:
            raise ValueError("non-blocking sockets are not supported")
        if offset:
            file.seek(offset)
        total = 0
        try:
            while count is None or total < count:
                block = 65536 if count is None else min(65536, count - total)
                data = file.read(block)
                if not data:
                    break
                self.sendall(data)
                total += len(data)
            return total
        finally:
            if total and hasattr(file, "seek"):
                file.seek(offset + total)

    def recv(self, buflen=1024, flags=0):
        """Receive up to ``buflen`` decrypted bytes; ``b""`` at the end of the stream."""
        if self._sslobj is not None:
            if flags != 0:
                raise ValueError(
                    f"non-zero flags not allowed in calls to recv() on {self.__class__}")
            return self.read(buflen)
        if self._plain:
            data = self._plain[:buflen]
            if not flags & _stdlib.MSG_PEEK:
                self._plain = self._plain[len(data):]
            return data
        return self._sock.recv(buflen, flags)

    def recv_into(self, buffer, nbytes=None, flags=0):
        """Receive into ``buffer``; returns the number of bytes written."""
        if nbytes is None:
            if buffer is not None:
                with memoryview(buffer) as view:
                    nbytes = view.nbytes
                if not nbytes:
                    nbytes = 1024
            else:
                nbytes = 1024
        if self._sslobj is not None:
            if flags != 0:
                raise ValueError(
                    f"non-zero flags not allowed in calls to recv_into() on {self.__class__}")
            return self.read(nbytes, buffer)
        if self._plain:
            data = self.recv(nbytes, flags)
            with memoryview(buffer) as view, view.cast("B") as view:
                view[:len(data)] = data
            return len(data)
        return self._sock.recv_into(buffer, nbytes, flags)

    def recvfrom(self, buflen=1024, flags=0):
        """Not over TLS (ValueError); plain ``recvfrom`` on an unwrapped socket."""
        if self._sslobj is not None:
            raise ValueError(f"recvfrom not allowed on instances of {self.__class__}")
        return self._sock.recvfrom(buflen, flags)

    def recvfrom_into(self, buffer, nbytes=None, flags=0):
        """Not over TLS (ValueError); plain ``recvfrom_into`` on an unwrapped socket."""
        if self._sslobj is not None:
            raise ValueError(f"recvfrom_into not allowed on instances of {self.__class__}")
        return self._sock.recvfrom_into(buffer, nbytes or 0, flags)

    def recvmsg(self, *args, **kwargs):
        """Not allowed on TLS sockets."""
        raise NotImplementedError(f"recvmsg not allowed on instances of {self.__class__}")

    def recvmsg_into(self, *args, **kwargs):
        """Not allowed on TLS sockets."""
        raise NotImplementedError(f"recvmsg_into not allowed on instances of {self.__class__}")

    def connect(self, addr):
        """Connect the plain socket to ``addr``, then run the handshake (client side)."""
        self._real_connect(addr, False)

    def connect_ex(self, addr):
        """Like :meth:`connect`, returning the connect errno (0, or EINPROGRESS ...)."""
        return self._real_connect(addr, True)

    def _real_connect(self, addr, connect_ex):
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._sslobj = self._new_sslobj()
        try:
            if connect_ex:
                rc = self._sock.connect_ex(addr)
            else:
                rc = None
                self._sock.connect(addr)
            if not rc:
                self._connected = True
                if self.do_handshake_on_connect:
                    self.do_handshake()
            return rc
        except (OSError, ValueError):
            self._sslobj = None
            raise

    def accept(self):
        """Accept a connection and wrap it server side: ``(SSLSocket, address)``."""
        newsock, addr = self._sock.accept()
        newsock = wrap_socket(self._context, newsock,
                              do_handshake_on_connect=self.do_handshake_on_connect,
                              suppress_ragged_eofs=self.suppress_ragged_eofs,
                              server_side=True)
        return newsock, addr

    def bind(self, address):
        """Bind the plain socket."""
        self._sock.bind(address)

    def listen(self, *backlog):
        """Listen on the plain socket; :meth:`accept` wraps each connection."""
        self._sock.listen(*backlog)

    def getpeername(self):
        """The peer's address."""
        return self._sock.getpeername()

    def getsockname(self):
        """The local address."""
        return self._sock.getsockname()

    def setsockopt(self, *args):
        """Set an option of the plain socket."""
        return self._sock.setsockopt(*args)

    def getsockopt(self, *args):
        """Read an option of the plain socket."""
        return self._sock.getsockopt(*args)

    def settimeout(self, value):
        """None: blocking; 0: non-blocking; seconds: the bound of each TLS operation."""
        self._sock.settimeout(value)
        self._timeout = self._sock.gettimeout()

    def gettimeout(self):
        """The timeout (None when blocking)."""
        return self._timeout

    def setblocking(self, flag):
        """``setblocking(False)`` is ``settimeout(0)``, ``True`` is ``settimeout(None)``."""
        self.settimeout(None if flag else 0.0)

    def getblocking(self):
        """False in non-blocking mode."""
        return self._timeout != 0.0

    @property
    def timeout(self):
        """The timeout, as the stdlib socket's attribute."""
        return self._timeout

    @property
    def family(self):
        """The plain socket's address family."""
        return self._sock.family

    @property
    def type(self):
        """SOCK_STREAM."""
        return self._sock.type

    @property
    def proto(self):
        """The plain socket's protocol number."""
        return self._sock.proto

    @property
    def stack(self):
        """The :class:`lwstack.Stack` of the plain socket (None for a kernel socket)."""
        return getattr(self._sock, "stack", None)

    def fileno(self):
        """The plain socket's descriptor; -1 once closed."""
        if self._closed and self._io_refs <= 0:
            return -1
        fileno = getattr(self._sock, "fileno", None)
        return fileno() if fileno is not None else -1

    def makefile(self, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
        """A file object over the TLS stream, exactly as :meth:`socket.socket.makefile`."""
        return _KERNEL_SOCKET.makefile(self, mode, buffering, encoding=encoding, errors=errors,
                                       newline=newline)

    def _decref_socketios(self):
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    def shutdown(self, how):
        """Drop TLS and shut the plain socket down (no close_notify: see :meth:`unwrap`)."""
        self._sslobj = None
        self._sock.shutdown(how)

    def close(self):
        """Close (for real once no file from :meth:`makefile` is open); no close_notify."""
        self._closed = True
        if self._io_refs <= 0:
            self._sslobj = None
            self._sock.close()

    def detach(self):
        """Only as far as the plain socket supports it (lwstack sockets do not)."""
        result = self._sock.detach()
        self._sslobj = None
        self._closed = True
        return result

    def dup(self):
        """Not possible, as with the stdlib."""
        raise NotImplementedError(f"Can't dup() {self.__class__.__name__} instances")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if not self._closed:
            self.close()

    def __getstate__(self):
        raise TypeError(f"cannot pickle {self.__class__.__name__!r} object")

    def __repr__(self):
        state = " [closed]" if self._closed else ""
        tls = f" {self.version()}" if self._sslobj is not None else ""
        return f"<lwstack.tls.SSLSocket{state}{tls} over {self._sock!r}>"


def _same(result):
    return result


class _ObjectAdapter:  # pragma: no cover (only where SSLContext has no _wrap_bio)
    """An :class:`ssl.SSLObject` seen with the raw engine's method names."""

    def __init__(self, obj):
        self._obj = obj
        self.shutdown = obj.unwrap

    def __getattr__(self, name):
        return getattr(self._obj, name)


def wrap_socket(context, sock, server_side=False, do_handshake_on_connect=True,
                suppress_ragged_eofs=True, server_hostname=None, session=None):
    """``context.wrap_socket(sock, ...)`` for a plain stream socket that is not a kernel
    socket (an lwstack socket): returns an :class:`SSLSocket`.

    The arguments mean what they mean to :meth:`ssl.SSLContext.wrap_socket`; the plain socket
    belongs to the result from now on.
    """
    return SSLSocket._create(sock, server_side=server_side,
                             do_handshake_on_connect=do_handshake_on_connect,
                             suppress_ragged_eofs=suppress_ragged_eofs,
                             server_hostname=server_hostname, context=context, session=session)


_original_wrap_socket = None


def _is_lwstack_socket(sock):
    from lwstack import socket as lwsocket
    return isinstance(sock, lwsocket.socket)


def install():
    """Make ``ssl.SSLContext.wrap_socket`` accept lwstack sockets (kernel sockets still go
    to the stdlib).  Idempotent; :func:`uninstall` undoes it."""
    global _original_wrap_socket
    if _original_wrap_socket is not None:
        return
    original = _ssl.SSLContext.wrap_socket

    @_functools.wraps(original)
    def dispatching_wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                                suppress_ragged_eofs=True, server_hostname=None, session=None):
        if _is_lwstack_socket(sock):
            return wrap_socket(self, sock, server_side, do_handshake_on_connect,
                               suppress_ragged_eofs, server_hostname, session)
        return original(self, sock, server_side, do_handshake_on_connect,
                        suppress_ragged_eofs, server_hostname, session)

    dispatching_wrap_socket._lwstack_original = original
    _ssl.SSLContext.wrap_socket = dispatching_wrap_socket
    _original_wrap_socket = original


def uninstall():
    """Give ``ssl.SSLContext.wrap_socket`` back its stdlib behaviour."""
    global _original_wrap_socket
    if _original_wrap_socket is None:
        return
    _ssl.SSLContext.wrap_socket = _original_wrap_socket
    _original_wrap_socket = None


def installed():
    """True between :func:`install` and :func:`uninstall`."""
    return _original_wrap_socket is not None
