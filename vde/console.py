"""vde_switch's management console, as pure functions of the switch state and a command line.

Design
------
The console is text in, text out: :func:`execute` takes the :class:`~vde.core.SwitchCore`, the
server's :class:`ServerState` (endpoints, counters, paths), one command line and the current
time, and returns a :class:`Reply`.  :func:`render` turns a reply into vde_switch's bytes on
the wire, :func:`banner` gives the greeting.  No socket is involved, so every command is a unit
test; :mod:`vde.server` only moves lines between sockets and these functions.

Framing, checked against Debian's vde_switch 2.3.2 through its ``-M`` socket:

- on connect: a banner, an empty line, then the prompt ``vde$ ``;
- a command that prints data (whatever its outcome) sends ``0000 DATA END WITH '.'``, the data
  lines, a line with a single ``.``; every command then ends with ``1000 Success`` or
  ``1NNN <strerror>`` (1000 + errno: ``1022 Invalid argument``,
  ``1038 Function not implemented`` for an unknown command), an empty line and the prompt;
- an empty line just gets a new prompt; ``logout`` and ``shutdown`` answer
  ``9999 END OF SESSION`` and the connection closes.

A command is recognised when the line *starts with* its path (vde_switch's ``strncmp``), so
``showinfo please`` runs ``showinfo`` while ``port/pr`` is unknown; the rest of the line holds
the arguments.  Unlike vde_switch, which reads numbers with ``atoi`` and so takes
``hash/setexpire abc`` as 0, a malformed number is refused with EINVAL.

Output lines follow vde_switch's formats (``Port 0001 untagged_vlan=0000 ACTIVE - Unnamed
Allocatable``, `` IN:  pkts ...``, ``Hash: 0043 Addr: ... age 1 secs``) with two additions:
a port that dropped frames gets a `` DROPS: reason=count ...`` line, and ``showinfo`` and
``hash/showinfo`` report our limits and the server's handshake counters.  The ``Hash:`` bucket
number is ours (CRC-32 of MAC and VLAN modulo the hash size), not vde_switch's.  Ports have
no inactive state here (see :mod:`vde.core`), so ``port/allprint`` prints what ``port/print``
prints.
"""
import errno
import os
import zlib

from vde import core as switch_core

VERSION = "0.1.0"
PROMPT = "vde$ "
DATA_HEADER = "0000 DATA END WITH '.'"
END_OF_SESSION = "9999 END OF SESSION"
#: Reply.action values.
LOGOUT = "logout"
SHUTDOWN = "shutdown"


class EndpointInfo:
    """What the console shows about one endpoint: its id, the client's description, its user."""

    def __init__(self, endpoint_id, description, user="NONE", module="unix prog"):
        self.endpoint_id = endpoint_id
        self.description = description
        self.user = user
        self.module = module


class ServerState:
    """The server-side facts the console reports, beside what the core holds.

    ``endpoints`` maps a port number to its :class:`EndpointInfo` list; ``counters`` holds the
    server's event counts (e.g. refused handshakes); times are in the server's clock.
    """

    def __init__(self, *, started=0.0, pid=None, ctl_dir=None, mgmt_path=None, mgmt_mode=0o600,
                 hashsize=128):
        self.started = started
        self.pid = os.getpid() if pid is None else pid
        self.ctl_dir = ctl_dir
        self.mgmt_path = mgmt_path
        self.mgmt_mode = mgmt_mode
        self.hashsize = hashsize
        self.endpoints = {}
        self.counters = {}

    def count(self, event):
        """Add one to the server counter ``event``."""
        self.counters[event] = self.counters.get(event, 0) + 1


class Reply:
    """A command's outcome: ``status`` (0 or an errno), data ``lines`` (None: the command prints
    no data block), and ``action`` (None, :data:`LOGOUT` or :data:`SHUTDOWN`)."""

    def __init__(self, status=0, lines=None, action=None):
        self.status = status
        self.lines = lines
        self.action = action

    def __repr__(self):
        return f"Reply(status={self.status}, lines={self.lines!r}, action={self.action!r})"


class CommandError(Exception):
    """Raised inside a command to end it with an errno."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def banner():
    """The text a console client sees on connecting, before the first prompt."""
    return (f"lwstack switch V.{VERSION} (vde_switch 2.3.2 compatible)\n"
            "(C) lwstack authors - the VDE protocol is by the Virtual Square Team\n\n")


def render(reply):
    """vde_switch's text for ``reply``, ending with the next prompt (or the end of session).

    ``None`` (what :func:`execute` returns for a blank line) renders as just a new prompt.
    """
    if reply is None:
        return "\n" + PROMPT
    if reply.action is not None:
        return END_OF_SESSION
    parts = []
    if reply.lines is not None:
        parts.append(DATA_HEADER + "\n")
        parts.extend(line + "\n" for line in reply.lines)
        parts.append(".\n")
    if reply.status == 0:
        parts.append("1000 Success\n")
    else:
        parts.append(f"{1000 + reply.status:04d} {os.strerror(reply.status)}\n")
    parts.append("\n" + PROMPT)
    return "".join(parts)


def execute(core, state, line, now):
    """Run one console command ``line``; return its :class:`Reply` (``None`` for a blank line).

    Never raises for bad input: unknown commands give ENOSYS, bad arguments EINVAL.
    """
    line = line.strip()
    if not line:
        return None
    for command in _COMMANDS_LONGEST_FIRST:
        if line.startswith(command.path):
            break
    else:
        return Reply(errno.ENOSYS)
    if command.handler is None:             # a menu title such as "port"
        return Reply(errno.ENOSYS)
    args = line[len(command.path):].split()
    lines = [] if command.prints_data else None
    try:
        action = command.handler(core, state, args, now, lines)
    except CommandError as error:
        return Reply(error.code, lines)
    except switch_core.SwitchError as error:
        return Reply(error.errno, lines)
    return Reply(0, lines, action)


# ------------------------------------------------------------------ helpers

def _number(text, low=0, high=None):
    try:
        value = int(text, 10)
    except ValueError:
        raise CommandError(errno.EINVAL) from None
    if value < low or (high is not None and value > high):
        raise CommandError(errno.EINVAL)
    return value


def _optional_number(args, low=0):
    return _number(args[0], low) if args else None


def _require(args, count):
    if len(args) < count:
        raise CommandError(errno.EINVAL)


def _format_mac(mac):
    return ":".join(f"{b:02x}" for b in mac)


def _parse_mac(text):
    parts = text.split(":")
    if len(parts) != 6:
        raise CommandError(errno.EINVAL)
    try:
        raw = bytes(int(part, 16) for part in parts)
    except ValueError:
        raise CommandError(errno.EINVAL) from None
    if any(len(part) > 2 for part in parts):
        raise CommandError(errno.EINVAL)
    return raw


def _hash_line(state, mac, vlan, port, last_seen, now):
    bucket = zlib.crc32(mac + vlan.to_bytes(2, "big")) % state.hashsize
    age = max(0, int(now - last_seen))
    return (f"Hash: {bucket:04d} Addr: {_format_mac(mac)} VLAN {vlan:04d} "
            f"to port: {port:03d}  age {age} secs")


def _port_lines(core, state, number):
    port = core.ports[number]
    endpoints = state.endpoints.get(number, [])
    user = endpoints[0].user if endpoints else "NONE"
    lines = [
        f"Port {number:04d} untagged_vlan={port.untagged_vlan:04d} ACTIVE - Unnamed Allocatable",
        f" Current User: {user} Access Control: (User: NONE - Group: NONE)",
        f" IN:  pkts {port.frames_in:10d}          bytes {port.bytes_in:20d}",
        f" OUT: pkts {port.frames_out:10d}          bytes {port.bytes_out:20d}",
    ]
    if port.drops:
        lines.append(" DROPS: " + " ".join(f"{reason}={count}"
                                           for reason, count in sorted(port.drops.items())))
    for info in endpoints:
        lines.append(f"  -- endpoint ID {info.endpoint_id:04d} module {info.module:<12}: "
                     f"{info.description}")
    return lines


# ------------------------------------------------------------------ commands

def _help(core, state, args, now, lines):
    prefix = args[0] if args else ""
    lines.append(f"{'COMMAND PATH':<18} {'SYNTAX':<15} HELP")
    lines.append(f"{'------------':<18} {'--------------':<15} ------------")
    for command in _COMMANDS:
        if command.path.startswith(prefix):
            lines.append(f"{command.path:<18} {command.syntax:<15} {command.help}")


def _logout(core, state, args, now, lines):
    return LOGOUT


def _shutdown(core, state, args, now, lines):
    return SHUTDOWN


def _showinfo(core, state, args, now, lines):
    lines.extend(banner().rstrip("\n").split("\n"))
    lines.append("")
    lines.append(f"pid {state.pid} uptime {max(0, int(now - state.started))}")
    if state.ctl_dir is not None:
        lines.append(f"ctl dir {state.ctl_dir}")
    if state.mgmt_path is not None:
        lines.append(f"mgmt {state.mgmt_path} perm {state.mgmt_mode:04o}")
    for event, count in sorted(state.counters.items()):
        lines.append(f"{event} {count}")


def _port_showinfo(core, state, args, now, lines):
    lines.append(f"Numports={core.numports}")
    lines.append(f"HUB={'true' if core.hub else 'false'}")
    lines.append("counters=true")
    lines.append(f"max_frame={core.max_frame}")


def _port_setnumports(core, state, args, now, lines):
    _require(args, 1)
    core.set_numports(_number(args[0], 1))


def _port_sethub(core, state, args, now, lines):
    _require(args, 1)
    core.hub = bool(_number(args[0], 0, 1))


def _port_setvlan(core, state, args, now, lines):
    _require(args, 2)
    number = _number(args[0], 1)
    vlan = _number(args[1], 0, switch_core.MAX_VLAN)
    if number not in core.ports:
        raise CommandError(errno.ENXIO)
    core.set_port_vlan(number, vlan)


def _port_resetcounter(core, state, args, now, lines):
    number = _optional_number(args, 1)
    if number is not None and number not in core.ports:
        raise CommandError(errno.ENXIO)
    core.reset_counters(number)


def _port_print(core, state, args, now, lines):
    number = _optional_number(args, 1)
    if number is None:
        for number in sorted(core.ports):
            lines.extend(_port_lines(core, state, number))
        return
    if number > core.numports:
        raise CommandError(errno.EINVAL)
    if number not in core.ports:
        raise CommandError(errno.ENXIO)
    lines.extend(_port_lines(core, state, number))


def _hash_showinfo(core, state, args, now, lines):
    lines.append(f"Hash size {state.hashsize}")
    lines.append(f"GC interval {switch_core.GC_INTERVAL:g} secs")
    lines.append(f"GC expire {core.expire:g} secs")
    lines.append(f"Min persistence {core.min_persist:g} secs")
    lines.append(f"Max entries {core.max_mac_entries}")
    lines.append(f"Entries {core.mac_count()}")


def _hash_setexpire(core, state, args, now, lines):
    _require(args, 1)
    core.expire = float(_number(args[0], 1))


def _hash_setminper(core, state, args, now, lines):
    _require(args, 1)
    core.min_persist = float(_number(args[0], 0))


def _hash_print(core, state, args, now, lines):
    for mac, vlan, port, last_seen in sorted(core.mac_entries()):
        lines.append(_hash_line(state, mac, vlan, port, last_seen, now))


def _hash_find(core, state, args, now, lines):
    _require(args, 1)
    mac = _parse_mac(args[0])
    vlan = _number(args[1], 0, switch_core.MAX_VLAN) if len(args) > 1 else 0
    for entry_mac, entry_vlan, port, last_seen in core.mac_entries():
        if entry_mac == mac and entry_vlan == vlan:
            lines.append(_hash_line(state, mac, vlan, port, last_seen, now))
            return
    raise CommandError(errno.ENODEV)


class _Command:
    def __init__(self, path, syntax, help_text, handler=None, prints_data=False):
        self.path = path
        self.syntax = syntax
        self.help = help_text
        self.handler = handler
        self.prints_data = prints_data


def _menu(path, title):
    return _Command(path, "============", title)


_COMMANDS = [
    _Command("help", "[arg]", "Help (limited to arg when specified)", _help, True),
    _Command("logout", "", "logout from this mgmt terminal", _logout),
    _Command("shutdown", "", "shutdown of the switch", _shutdown),
    _Command("showinfo", "", "show switch version and info", _showinfo, True),
    _menu("hash", "HASH TABLE MENU"),
    _Command("hash/showinfo", "", "show hash info", _hash_showinfo, True),
    _Command("hash/setexpire", "N", "change hash entries expire time", _hash_setexpire),
    _Command("hash/setminper", "N", "minimum persistence time", _hash_setminper),
    _Command("hash/print", "", "print the hash table", _hash_print, True),
    _Command("hash/find", "MAC [VLAN]", "MAC lookup", _hash_find, True),
    _menu("port", "PORT STATUS MENU"),
    _Command("port/showinfo", "", "show port info", _port_showinfo, True),
    _Command("port/setnumports", "N", "set the number of ports", _port_setnumports),
    _Command("port/sethub", "0/1", "1=HUB 0=switch", _port_sethub),
    _Command("port/setvlan", "N VLAN", "set port VLAN (untagged)", _port_setvlan),
    _Command("port/resetcounter", "[N]", "reset the port (N) counters", _port_resetcounter),
    _Command("port/print", "[N]", "print the port/endpoint table", _port_print, True),
    _Command("port/allprint", "[N]",
             "print the port/endpoint table (including inactive port)", _port_print, True),
]
_COMMANDS_LONGEST_FIRST = sorted(_COMMANDS, key=lambda command: -len(command.path))
