"""The unix-socket switch daemon: vde_switch's control protocol and data path around SwitchCore.

Design
------
One thread, one ``selectors`` loop, no per-frame thread hop.  The loop watches:

- ``DIR/ctl``, the SOCK_STREAM listener clients connect to;
- each pending handshake (the client's one request message, with a deadline);
- per endpoint, its control stream (EOF ends the endpoint) and its datagram socket, bound at
  ``DIR/NNN.ID`` (3-digit port, then the endpoint id) and connected to the client's socket;
- the management console socket (``-M``) and its sessions, and stdin when asked to;
- a wake-up socket pair, so :meth:`SwitchServer.stop` and signal handlers end the loop.

The select timeout comes from ``core.poll_at()`` (the MAC table GC) and the handshake
deadlines.  Forwarding: when an endpoint's datagram socket is readable, the loop drains it
(``recv_into`` one preallocated buffer, up to :data:`BATCH` frames, then lets other sockets
have a turn), asks the core where each frame goes, and ``send``\\ s the buffer's memoryview to
every endpoint of each output port.  The core never returns the ingress port, so endpoints
sharing a port do not hear each other, as in vde_switch.  Nothing blocks: a full peer queue
(EAGAIN), ENOBUFS or a vanished peer (ECONNREFUSED) drops that copy and counts it on the output
port (``queue_full``, ``no_buffers``, ``unreachable``).  Socket buffers are enlarged
(:data:`SOCKET_BUFFER`) because Linux queues only ``net.unix.max_dgram_qlen`` (10) datagrams.

Frames up to ``max_frame`` bytes (at least 9234, vdeplug4's limit) go through whole; the
receive buffer holds one byte more, so a longer datagram shows up as ``max_frame + 1`` bytes
and the core drops it as ``oversize`` (vde_switch would truncate to 1518 bytes).

Two implementations of that data path, same behaviour and counters: :mod:`vde._fastpath`
(compiled, accelerated build only: ``recvmmsg`` a batch, ``sendmmsg`` per destination, libc
called directly) and :meth:`SwitchServer._receive_frames` below (pure Python, the reference and
the fallback).  The fast path is used when it was built, unless ``fastpath=False`` is passed
or ``LWSWITCH_PYTHON_LOOP=1`` is set; :attr:`SwitchServer.fastpath` says which one runs.

Handshakes never crash or stall the loop: a wrong magic, version 2, garbage, a client that
closes mid-handshake or sends nothing for :data:`HANDSHAKE_TIMEOUT` seconds, a client socket
path the switch cannot connect to, or one owned by another user than the connecting process
(checked with SO_PEERCRED; root may use any) each close that connection and are counted in
``state.counters`` (shown by the console's ``showinfo``).  A port out of range or no free port
closes the connection at once; Debian's vde_switch 2.3.2 instead never replies and the client
hangs.  Management requests (request type 1, vde_switch's port-0 endpoints) are refused.

The core is not thread-safe and is only touched from the loop's thread (console commands
included).  :meth:`SwitchServer.start` runs the loop in a background thread for tests and
embedding; it returns once ``DIR/ctl`` is listening.
"""
import errno
import functools
import os
import pwd
import selectors
import socket
import stat
import struct
import sys
import threading
import time

from vde import console
from vde import protocol
from vde.core import DEFAULT_MAX_FRAME, SwitchCore, SwitchError

try:
    from vde import _fastpath
except (ImportError, ValueError):   # pure build; ValueError: compiled against another vde.core
    _fastpath = None

#: Set (non-empty, not "0") to make servers use the Python loop even when the fast path exists.
PYTHON_LOOP_ENV = "LWSWITCH_PYTHON_LOOP"

#: Frames taken from one endpoint before other sockets get a turn.
BATCH = 256
#: Seconds a client has to send its request after connecting to DIR/ctl.
HANDSHAKE_TIMEOUT = 5.0
#: SO_SNDBUF / SO_RCVBUF asked for each datagram socket (the kernel may cap it).
SOCKET_BUFFER = 4 * 1024 * 1024
#: Longest console line accepted; a longer one ends the session.
MAX_CONSOLE_LINE = 4096
#: Bounds on what clients can make the switch hold: handshakes in progress (each also expires
#: after handshake_timeout), console sessions, and console output a client does not read.
MAX_PENDING_HANDSHAKES = 64
MAX_CONSOLE_SESSIONS = 16
MAX_CONSOLE_OUTPUT = 1 << 20

_PEERCRED = struct.Struct("3i")


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class _Endpoint:
    """One connected client: its control stream, datagram socket and port."""

    def __init__(self, endpoint_id, port, control, data, path, info):
        self.endpoint_id = endpoint_id
        self.port = port
        self.control = control
        self.data = data
        self.path = path
        self.info = info


class _Handshake:
    """A control connection waiting for its request."""

    def __init__(self, control, deadline):
        self.control = control
        self.deadline = deadline


class _ConsoleSession:
    """A management console client: input to split into lines, output still to send.

    ``fileobj`` is what the selector watches (the socket, or stdin's descriptor); ``read``,
    ``write`` and ``close`` do the I/O, so a socket and the stdin/stdout pair look alike.
    """

    def __init__(self, fileobj, read, write, close, is_stdin=False):
        self.fileobj = fileobj
        self.read = read
        self.write = write
        self.close = close
        self.is_stdin = is_stdin
        self.pending_input = b""
        self.pending_output = b""


class SwitchServer:
    """A vde_switch-compatible switch serving the directory ``directory``.

    ``mode`` is the permission of the sockets (the directory gets the matching x bits);
    ``mgmt`` the console socket path (None: none); ``stdin_console`` also reads commands on
    stdin; ``socket_buffer`` the SO_SNDBUF/SO_RCVBUF of each endpoint's datagram socket, which
    bounds how much the switch queues towards a reader that falls behind; a client gets
    ``handshake_timeout`` seconds to send its request.  ``fastpath``: True requires the
    compiled data path (ValueError if it was not built), False uses the Python loop, None
    (default) the compiled one when built and :data:`PYTHON_LOOP_ENV` is not set.  Other
    arguments configure the :class:`~vde.core.SwitchCore` (``self.core``).
    """

    def __init__(self, directory, *, numports=32, hub=False, mgmt=None, mode=0o600,
                 max_frame=DEFAULT_MAX_FRAME, max_mac_entries=4096, hashsize=128, expire=100.0,
                 stdin_console=False, socket_buffer=SOCKET_BUFFER,
                 handshake_timeout=HANDSHAKE_TIMEOUT, fastpath=None):
        if max_frame < DEFAULT_MAX_FRAME:
            raise ValueError(f"max_frame must be at least {DEFAULT_MAX_FRAME}, not {max_frame}")
        if hashsize < 1:
            raise ValueError(f"hashsize must be positive, not {hashsize}")
        self.directory = os.path.abspath(directory)
        self.ctl_path = os.path.join(self.directory, "ctl")
        self.mgmt_path = os.path.abspath(mgmt) if mgmt else None
        self.mode = mode
        self.core = SwitchCore(numports, hub=hub, max_mac_entries=max_mac_entries,
                               expire=expire, max_frame=max_frame)
        self.state = console.ServerState(started=time.monotonic(), ctl_dir=self.directory,
                                         mgmt_path=self.mgmt_path, mgmt_mode=mode,
                                         hashsize=hashsize)
        self._stdin_console = stdin_console
        self._socket_buffer = socket_buffer
        self._handshake_timeout = handshake_timeout
        self._selector = None
        self._listener = None
        self._mgmt_listener = None
        self._created_directory = False
        self._handshakes = {}
        self._endpoints = {}          # endpoint id -> _Endpoint
        self._port_endpoints = {}     # port -> list of _Endpoint
        self._sessions = []
        self._next_endpoint_id = 1
        self._buffer = bytearray(max_frame + 1)
        self._view = memoryview(self._buffer)
        self._port_fds = {}           # port -> tuple of its endpoints' datagram fds (fast path)
        self._fast = None
        if fastpath is None:
            fastpath = (_fastpath is not None
                        and os.environ.get(PYTHON_LOOP_ENV, "") in ("", "0"))
        if fastpath:
            if _fastpath is None:
                raise ValueError("fastpath=True but vde._fastpath is not built (pure build)")
            self._fast = _fastpath.FastPath(self.core, self._port_fds, max_frame)
        #: True when the compiled data path (vde._fastpath) forwards the frames.
        self.fastpath = self._fast is not None
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_writer.setblocking(False)
        self._stopping = False
        self._thread = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    def bind(self):
        """Create the directory and the listening sockets (done by ``serve_forever`` if not)."""
        if self._selector is not None:
            return
        self._selector = selectors.DefaultSelector()
        try:
            self._make_directory()
            self._listener = self._listen(self.ctl_path)
            self._selector.register(self._listener, selectors.EVENT_READ, self._accept_clients)
            if self.mgmt_path:
                self._mgmt_listener = self._listen(self.mgmt_path)
                self._selector.register(self._mgmt_listener, selectors.EVENT_READ,
                                        self._accept_console)
            self._wake_reader.setblocking(False)
            self._selector.register(self._wake_reader, selectors.EVENT_READ, self._drain_wake)
            if self._stdin_console:
                self._open_stdin_console()
        except BaseException:
            self.close()
            raise

    def serve_forever(self):
        """Run the switch until :meth:`stop`, a signal handler's :meth:`request_stop`, or a
        console ``shutdown``; then close it (sockets and socket files removed)."""
        self.bind()
        try:
            while not self._stopping:
                now = time.monotonic()
                for key, _ in self._selector.select(self._timeout(now)):
                    if self._stopping:
                        break
                    try:
                        key.data()
                    except Exception as exc:  # a bug in one handler must not stop the switch
                        self.state.count("internal_errors")
                        print(f"lwswitch: internal error ({type(exc).__name__}: {exc}); "
                              "continuing", file=sys.stderr)
                now = time.monotonic()
                self._expire_handshakes(now)
                due = self.core.poll_at()
                if due is not None and now >= due:
                    self.core.expire_entries(now)
        finally:
            self.close()

    def start(self):
        """Bind, then serve in a daemon thread; return once ``DIR/ctl`` accepts clients."""
        self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="lwswitch",
                                        daemon=True)
        self._thread.start()
        return self

    def request_stop(self):
        """Ask the loop to finish (safe from signal handlers and other threads)."""
        self._stopping = True
        try:
            self._wake_writer.send(b"x")
        except OSError:
            pass                      # already awake or closed: the flag is enough

    def stop(self, timeout=5.0):
        """Stop the switch started with :meth:`start` and wait for it to clean up."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("switch thread did not stop")
        else:
            self.close()

    def close(self):
        """Close every socket and remove the socket files (and the directory if created)."""
        if self._closed:
            return
        self._closed = True
        for endpoint in list(self._endpoints.values()):
            self._drop_endpoint(endpoint)
        for handshake in list(self._handshakes.values()):
            self._end_handshake(handshake)
        for session in list(self._sessions):
            self._end_session(session)
        for sock, path in ((self._listener, self.ctl_path),
                           (self._mgmt_listener, self.mgmt_path)):
            if sock is not None:
                sock.close()
                _unlink_quietly(path)
        if self._created_directory:
            try:
                os.rmdir(self.directory)
            except OSError:
                pass                  # someone else's files are in it: leave it
        if self._selector is not None:
            self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def __enter__(self):
        """``with SwitchServer(...) as server:`` starts it in a thread ..."""
        return self.start()

    def __exit__(self, *exc_info):
        """... and stops it on the way out."""
        self.stop()

    def _make_directory(self):
        directory_mode = self.mode | ((self.mode & 0o444) >> 2)
        try:
            os.mkdir(self.directory, directory_mode)
            os.chmod(self.directory, directory_mode)
            self._created_directory = True
        except FileExistsError:
            if not os.path.isdir(self.directory):
                raise NotADirectoryError(errno.ENOTDIR, f"{self.directory} is not a directory")

    def _listen(self, path):
        """A listening stream socket at ``path``; EADDRINUSE if a live switch holds it."""
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)       # stale, left by a switch that died
            else:
                raise OSError(errno.EADDRINUSE, f"{path}: another switch is running")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, self.mode)
            sock.listen(64)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _timeout(self, now):
        deadlines = [handshake.deadline for handshake in self._handshakes.values()]
        due = self.core.poll_at()
        if due is not None:
            deadlines.append(due)
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _drain_wake(self):
        try:
            while self._wake_reader.recv(64):
                pass
        except BlockingIOError:
            pass

    # ------------------------------------------------------------ handshake

    def _accept_clients(self):
        while True:
            try:
                control, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.state.count("accept_errors")   # e.g. EMFILE: try again next wake-up
                return
            if len(self._handshakes) >= MAX_PENDING_HANDSHAKES:
                self.state.count("handshakes_over_limit")
                control.close()
                continue
            control.setblocking(False)
            handshake = _Handshake(control, time.monotonic() + self._handshake_timeout)
            self._handshakes[control.fileno()] = handshake
            self._selector.register(control, selectors.EVENT_READ,
                                    functools.partial(self._read_request, handshake))

    def _end_handshake(self, handshake):
        self._handshakes.pop(handshake.control.fileno(), None)
        self._selector.unregister(handshake.control)
        handshake.control.close()

    def _refuse(self, handshake, reason):
        self.state.count(reason)
        self._end_handshake(handshake)

    def _expire_handshakes(self, now):
        for handshake in [h for h in self._handshakes.values() if h.deadline <= now]:
            self._refuse(handshake, "handshake_timeouts")

    def _read_request(self, handshake):
        control = handshake.control
        if self._handshakes.get(control.fileno()) is not handshake:
            return
        try:
            data = control.recv(protocol.MAX_REQUEST_LEN)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._refuse(handshake, "handshake_vanished")
            return
        try:
            request = protocol.parse_request(data)
        except protocol.ProtocolError:
            self._refuse(handshake, "handshake_bad_requests")
            return
        if request.management:
            self._refuse(handshake, "handshake_management_refused")
            return
        uid = self._peer_uid(control)
        if not self._client_path_allowed(request.client_path, uid):
            self._refuse(handshake, "handshake_bad_client_path")
            return
        try:
            port = self.core.open_port(request.port)
        except SwitchError:
            # vde_switch 2.3.2 leaves the client hanging here; closing tells it at once.
            self._refuse(handshake, "handshake_port_refused")
            return
        endpoint_id = self._next_endpoint_id
        path = os.path.join(self.directory, f"{port:03d}.{endpoint_id}")
        try:
            data_socket = self._data_socket(path, request.client_path)
        except OSError:
            self.core.close_port(port)
            self._refuse(handshake, "handshake_client_unreachable")
            return
        try:
            control.send(protocol.pack_reply(path))
        except OSError:
            data_socket.close()
            _unlink_quietly(path)
            self.core.close_port(port)
            self._refuse(handshake, "handshake_vanished")
            return
        self._next_endpoint_id += 1
        self._handshakes.pop(control.fileno())
        self._selector.unregister(control)
        info = console.EndpointInfo(endpoint_id, request.description.rstrip("\0"),
                                    _user_name(uid) if uid is not None else "NONE")
        endpoint = _Endpoint(endpoint_id, port, control, data_socket, path, info)
        self._endpoints[endpoint_id] = endpoint
        self._port_endpoints.setdefault(port, []).append(endpoint)
        self._update_port_fds(port)
        self.state.endpoints.setdefault(port, []).append(info)
        self.state.count("endpoints_opened")
        self._selector.register(control, selectors.EVENT_READ,
                                functools.partial(self._control_event, endpoint))
        receive = self._receive_frames_fast if self._fast is not None else self._receive_frames
        self._selector.register(data_socket, selectors.EVENT_READ,
                                functools.partial(receive, endpoint))

    @staticmethod
    def _peer_uid(control):
        try:
            _, uid, _ = _PEERCRED.unpack(
                control.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        except OSError:
            return None
        return uid

    @staticmethod
    def _client_path_allowed(path, uid):
        """The client's path must be a socket, owned by the client unless the client is root:
        otherwise anyone could make the switch send frames into someone else's socket."""
        try:
            info = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISSOCK(info.st_mode):
            return False
        return uid is not None and (uid == 0 or info.st_uid == uid)

    def _data_socket(self, path, client_path):
        _unlink_quietly(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, self._socket_buffer)
            sock.bind(path)
            os.chmod(path, self.mode)
            sock.connect(client_path)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            _unlink_quietly(path)
            raise
        return sock

    # ------------------------------------------------------------ endpoints

    def _control_event(self, endpoint):
        if endpoint.endpoint_id not in self._endpoints:
            return                    # dropped earlier in this round of events
        try:
            data = endpoint.control.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:                  # the client closed its control stream: it has left
            self._drop_endpoint(endpoint)

    def _drop_endpoint(self, endpoint):
        del self._endpoints[endpoint.endpoint_id]
        self._port_endpoints[endpoint.port].remove(endpoint)
        if not self._port_endpoints[endpoint.port]:
            del self._port_endpoints[endpoint.port]
        self._update_port_fds(endpoint.port)
        infos = self.state.endpoints[endpoint.port]
        infos.remove(endpoint.info)
        if not infos:
            del self.state.endpoints[endpoint.port]
        for sock in (endpoint.control, endpoint.data):
            self._selector.unregister(sock)
            sock.close()
        _unlink_quietly(endpoint.path)
        self.core.close_port(endpoint.port)
        self.state.count("endpoints_closed")

    def _update_port_fds(self, port):
        endpoints = self._port_endpoints.get(port)
        if endpoints:
            self._port_fds[port] = tuple(endpoint.data.fileno() for endpoint in endpoints)
        else:
            self._port_fds.pop(port, None)

    def _receive_frames_fast(self, endpoint):
        """The hot path, compiled (vde._fastpath): same job as :meth:`_receive_frames`."""
        # fileno() is -1 once the endpoint was dropped earlier in this round of events.
        self._fast.drain(endpoint.data.fileno(), endpoint.port, time.monotonic(), BATCH)

    def _receive_frames(self, endpoint):
        """Drain one endpoint's datagram socket and forward every frame (the hot path)."""
        sock = endpoint.data
        in_port = endpoint.port
        buffer = self._buffer
        view = self._view
        forward = self.core.forward
        count_drop = self.core.count_drop
        port_endpoints = self._port_endpoints
        now = time.monotonic()
        for _ in range(BATCH):
            try:
                size = sock.recv_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return                # the peer's socket went away; its control EOF follows
            frame = view[:size]
            for out_port in forward(in_port, frame, now):
                for target in port_endpoints[out_port]:
                    try:
                        target.data.send(frame)
                    except (BlockingIOError, InterruptedError):
                        count_drop(out_port, "queue_full")
                    except ConnectionRefusedError:
                        count_drop(out_port, "unreachable")
                    except OSError as error:
                        count_drop(out_port, "no_buffers" if error.errno == errno.ENOBUFS
                                   else "send_error")

    # ------------------------------------------------------------ console

    def _accept_console(self):
        try:
            sock, _ = self._mgmt_listener.accept()
        except OSError:
            return
        if len(self._sessions) >= MAX_CONSOLE_SESSIONS:
            self.state.count("console_sessions_over_limit")
            sock.close()
            return
        sock.setblocking(False)
        self._open_session(_ConsoleSession(sock, functools.partial(sock.recv, 4096),
                                           sock.send, sock.close))

    def _open_stdin_console(self):
        stdin_fd = sys.stdin.fileno()
        stdout_fd = sys.stdout.fileno()
        self._open_session(_ConsoleSession(stdin_fd, functools.partial(os.read, stdin_fd, 4096),
                                           functools.partial(os.write, stdout_fd),
                                           lambda: None, is_stdin=True))

    def _open_session(self, session):
        self._sessions.append(session)
        self._selector.register(session.fileobj, selectors.EVENT_READ,
                                functools.partial(self._console_event, session))
        self._queue_output(session, console.banner() + console.PROMPT)

    def _console_event(self, session):
        if session not in self._sessions:
            return
        if session.pending_output:
            self._flush(session)
        if session in self._sessions:
            self._console_read(session)

    def _console_read(self, session):
        try:
            data = session.read()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._end_session(session)
            if session.is_stdin:
                self.request_stop()   # as vde_switch: EOF on its console stdin ends it
            return
        session.pending_input += data
        while b"\n" in session.pending_input and session in self._sessions:
            line, session.pending_input = session.pending_input.split(b"\n", 1)
            self._run_command(session, line.decode(errors="replace"))
        if len(session.pending_input) > MAX_CONSOLE_LINE:
            self._end_session(session)

    def _run_command(self, session, line):
        reply = console.execute(self.core, self.state, line, time.monotonic())
        self._queue_output(session, console.render(reply))
        if reply is not None and reply.action is not None:
            self._end_session(session)
            if reply.action == console.SHUTDOWN:
                self.request_stop()

    def _queue_output(self, session, text):
        session.pending_output += text.encode()
        if len(session.pending_output) > MAX_CONSOLE_OUTPUT:
            self.state.count("console_output_overflow")   # a client that never reads
            self._end_session(session)
            return
        self._flush(session)

    def _flush(self, session):
        """Send what the session can take now; watch for writability while output remains."""
        while session.pending_output:
            try:
                sent = session.write(session.pending_output)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._end_session(session)
                return
            session.pending_output = session.pending_output[sent:]
        if session in self._sessions:
            events = selectors.EVENT_READ
            if session.pending_output:
                events |= selectors.EVENT_WRITE
            self._selector.modify(session.fileobj, events,
                                  functools.partial(self._console_event, session))

    def _end_session(self, session):
        if session not in self._sessions:
            return
        self._sessions.remove(session)
        self._selector.unregister(session.fileobj)
        session.close()


def _unlink_quietly(path):
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
