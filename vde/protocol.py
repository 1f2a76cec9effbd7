"""vde_switch's wire formats: the control request, its reply, and the stream framing.

Facts from vde-2 2.3.2 and vdeplug4 4.0.1 (see shared/reference/vde-protocol.md):

- A client connects a SOCK_STREAM socket to ``DIR/ctl`` and sends ONE request in a single
  ``send()``: magic 0xfeedface, version 3, type (low byte: 0 = new port, 1 = management;
  ``port << 8`` asks for a port, 0 = any), a ``struct sockaddr_un`` (2-byte family + 108-byte
  path) naming the client's datagram socket, then up to 128 bytes of description.  All integers
  are in host byte order; we use little-endian, as x86-64 and aarch64 do.
- The switch answers with exactly 110 bytes: a ``struct sockaddr_un`` naming the switch's
  datagram socket for this endpoint.
- Stream cables (``vde_plug`` on stdin/stdout, ``dpipe``, ``cmd://``) carry each frame as a
  2-byte big-endian length followed by the frame.

Everything here is pure byte manipulation: no sockets.
"""
import struct

VDE_MAGIC = 0xFEEDFACE
VDE_VERSION = 3
REQ_NEW_PORT = 0
REQ_MANAGEMENT = 1
AF_UNIX = 1
SUN_PATH_LEN = 108
SOCKADDR_UN_LEN = 2 + SUN_PATH_LEN          # 110
REQUEST_HEADER_LEN = 12 + SOCKADDR_UN_LEN    # 122
MAX_DESCRIPTION = 128
MAX_REQUEST_LEN = 256                        # vde_switch reads the request with one read(256)
#: vdeplug4 rejects stream frames longer than this.
MAX_STREAM_FRAME = 9236

_HEADER = struct.Struct("<III")
_SOCKADDR = struct.Struct("<H108s")
_LENGTH = struct.Struct(">H")


class ProtocolError(ValueError):
    """A control message that does not follow vde_switch's protocol."""


def pack_sockaddr_un(path):
    """Return the 110-byte ``struct sockaddr_un`` for a filesystem ``path`` (str or bytes)."""
    raw = path.encode() if isinstance(path, str) else bytes(path)
    if len(raw) >= SUN_PATH_LEN:
        raise ProtocolError(f"unix socket path too long ({len(raw)} bytes, max {SUN_PATH_LEN - 1})")
    return _SOCKADDR.pack(AF_UNIX, raw)


def unpack_sockaddr_un(data):
    """Return the path (str) in a 110-byte ``struct sockaddr_un``."""
    if len(data) < SOCKADDR_UN_LEN:
        raise ProtocolError(f"sockaddr_un too short ({len(data)} bytes, need {SOCKADDR_UN_LEN})")
    family, raw = _SOCKADDR.unpack_from(data)
    if family != AF_UNIX:
        raise ProtocolError(f"sockaddr family {family}, expected AF_UNIX ({AF_UNIX})")
    path = raw.split(b"\0", 1)[0]
    if not path:
        raise ProtocolError("empty unix socket path")
    return path.decode(errors="surrogateescape")


def pack_request(client_path, port=0, description="", management=False):
    """Build a version-3 control request asking for ``port`` (0 = any free port).

    ``client_path`` is the client's bound datagram socket; ``description`` is shown by the
    switch's ``port/print`` (truncated to 128 bytes, as vde_switch would).
    """
    if not 0 <= port <= 0xFFFFFF:
        raise ProtocolError(f"port {port} out of range")
    kind = (REQ_MANAGEMENT if management else REQ_NEW_PORT) | (port << 8)
    descr = description.encode(errors="replace")[:MAX_DESCRIPTION]
    return _HEADER.pack(VDE_MAGIC, VDE_VERSION, kind) + pack_sockaddr_un(client_path) + descr


class Request:
    """A parsed control request."""

    __slots__ = ("version", "port", "management", "client_path", "description")

    def __init__(self, version, port, management, client_path, description):
        self.version = version
        self.port = port
        self.management = management
        self.client_path = client_path
        self.description = description

    def __repr__(self):
        return (f"Request(port={self.port}, management={self.management}, "
                f"client_path={self.client_path!r}, description={self.description!r})")


def parse_request(data):
    """Parse a control request; raise :class:`ProtocolError` if vde_switch would refuse it.

    Only version 3 is accepted (vde_switch closes the connection on a wrong magic or on
    version 2; the old v1 layout is not produced by any current client).
    """
    if len(data) < REQUEST_HEADER_LEN:
        raise ProtocolError(f"request too short ({len(data)} bytes, need {REQUEST_HEADER_LEN})")
    magic, version, kind = _HEADER.unpack_from(data)
    if magic != VDE_MAGIC:
        raise ProtocolError(f"bad magic {magic:#010x}")
    if version != VDE_VERSION:
        raise ProtocolError(f"unsupported version {version}")
    request_type = kind & 0xFF
    if request_type not in (REQ_NEW_PORT, REQ_MANAGEMENT):
        raise ProtocolError(f"unknown request type {request_type}")
    path = unpack_sockaddr_un(data[12:REQUEST_HEADER_LEN])
    description = bytes(data[REQUEST_HEADER_LEN:REQUEST_HEADER_LEN + MAX_DESCRIPTION])
    return Request(version, kind >> 8, request_type == REQ_MANAGEMENT, path,
                   description.decode(errors="replace"))


def pack_reply(switch_path):
    """The switch's reply: the 110-byte sockaddr of its datagram socket for the endpoint."""
    return pack_sockaddr_un(switch_path)


def parse_reply(data):
    """Return the switch-side datagram path from a reply; :class:`ProtocolError` if malformed."""
    if len(data) != SOCKADDR_UN_LEN:
        raise ProtocolError(f"reply of {len(data)} bytes, expected {SOCKADDR_UN_LEN}")
    return unpack_sockaddr_un(data)


def encode_stream_frame(frame):
    """Frame ``frame`` for a stream cable: 2-byte big-endian length, then the bytes."""
    if len(frame) > MAX_STREAM_FRAME:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds the stream limit {MAX_STREAM_FRAME}")
    return _LENGTH.pack(len(frame)) + bytes(frame)


class StreamDecoder:
    """Reassemble frames from a byte stream split at arbitrary points.

    Unlike Debian's vde_plug, a length header split across two reads is handled.  A length
    above ``max_frame`` cannot be resynchronised from, so it raises :class:`ProtocolError`;
    zero-length records are skipped, as vdeplug4 does.
    """

    def __init__(self, max_frame=MAX_STREAM_FRAME):
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data):
        """Add received bytes; return the list of complete frames (bytes) now available."""
        buf = self._buffer
        buf += data
        frames = []
        offset = 0
        end = len(buf)
        while end - offset >= 2:
            length = (buf[offset] << 8) | buf[offset + 1]
            if length > self.max_frame:
                raise ProtocolError(f"stream frame length {length} exceeds {self.max_frame}")
            if end - offset - 2 < length:
                break
            if length:
                frames.append(bytes(buf[offset + 2:offset + 2 + length]))
            offset += 2 + length
        del buf[:offset]
        return frames

    @property
    def pending(self):
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)
