"""vdeplug4 virtual network locators (VNL): ``vde:///tmp/sw[3]``, ``vxvde://239.0.0.1/vni=5``.

Design notes
------------
A locator names a virtual network endpoint.  The syntax is vdeplug4's (libvdeplug 4.0.1), so a
string that works with ``vde_plug`` works here and the other way round:

- ``scheme://rest``.  Without ``://`` the whole string is a ``vde`` switch path.  An empty
  string (or ``None``) is the default switch: ``$HOME/.vdeplug/default`` if it exists, else
  ``/var/run/vde.ctl`` if it exists, else ``/tmp/vde.ctl``.  ``vde://`` with an empty path is
  the default switch too.
- Options in brackets after the path, separated by ``/``: ``vde:///tmp/sw[port=3/mode=0770]``.
  A bare number is the port (``vde:///tmp/sw[3]``); any other bare word is a flag whose value
  is the empty string.
- Schemes whose target is an address rather than a filesystem path (``vxvde``, ``vxlan``,
  ``udp``, ``tap``, ``vlan``, ... everything not in :data:`PATH_SCHEMES`) also take options as
  ``/``-separated words after the address: ``vxvde://239.0.0.1/port=14789/vni=5``.  Path
  schemes cannot, since their paths contain ``/``.
- Nested locators in braces after the rest: ``vlan://3{vde:///tmp/sw}``; several in a row for
  ``multi://{vde:///a}{vde:///b}``.  They are parsed recursively into :attr:`Locator.nested`,
  a tuple (empty when there are none) rather than a single value, so ``multi`` and ``bonding``
  fit the same shape.
- ``cmd://`` takes a shell command that may contain anything, so its rest is kept verbatim.

Parsing is pure (it only reads the environment and the file system for the default switch);
which schemes can be *opened* is :mod:`vde.plug`'s business.  Unlike vdeplug4, option names
are not matched by prefix and a repeated option is an error rather than "last one wins":
both are more likely typos than intent.
"""
import os
import re
from dataclasses import dataclass, field

#: Schemes whose target is a filesystem path: options only in brackets.
PATH_SCHEMES = frozenset({"vde", "ptp", "seqpacket", "switch", "hub", "null"})
#: Schemes whose rest is taken verbatim (a shell command line).
VERBATIM_SCHEMES = frozenset({"cmd"})

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_SYSTEM_SWITCH = "/var/run/vde.ctl"
_USER_SWITCH = "/tmp/vde.ctl"


class LocatorError(ValueError):
    """A locator string that does not follow vdeplug4's syntax."""


@dataclass(frozen=True)
class Locator:
    """A parsed locator.

    ``path`` is the switch directory, file or address after ``scheme://`` (``address`` is
    the same value under the name that fits network schemes); ``options`` maps option names
    to their string values; ``nested`` holds the locators given in braces; ``text`` is the
    string that was parsed.
    """

    scheme: str
    path: str
    options: dict = field(default_factory=dict)
    nested: tuple = ()
    text: str = ""

    @property
    def address(self):
        """The part after ``scheme://`` for schemes that name an address (same as ``path``)."""
        return self.path

    def int_option(self, name, default, *, base=10, minimum=0, maximum=None):
        """Return option ``name`` as an integer in ``[minimum, maximum]``, or ``default``.

        Raise :class:`LocatorError` naming the locator if the value is not such an integer.
        """
        raw = self.options.get(name)
        if raw is None:
            return default
        try:
            value = int(raw, base)
        except ValueError:
            raise LocatorError(f"{self.text!r}: option {name} must be a base-{base} integer, "
                               f"got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = "" if maximum is None else f"..{maximum}"
            raise LocatorError(f"{self.text!r}: option {name}={raw} out of range "
                               f"{minimum}{upper}")
        return value


def default_switch_path():
    """The switch used for an empty locator, following vdeplug4's search order."""
    home = os.environ.get("HOME")
    if home:
        user_default = os.path.join(home, ".vdeplug", "default")
        if os.path.exists(user_default):
            return user_default
    if os.path.exists(_SYSTEM_SWITCH):
        return _SYSTEM_SWITCH
    return _USER_SWITCH


def parse_locator(text=None):
    """Parse a vdeplug4 locator string into a :class:`Locator`.

    ``None`` or an empty (or blank) string is the default switch.  Raise
    :class:`LocatorError` (a ``ValueError``) with a one-line reason for malformed input.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return Locator("vde", default_switch_path(), {}, (), text or "")
    if not isinstance(text, str):
        raise TypeError(f"locator must be a str, not {type(text).__name__}")
    if any(ord(char) < 32 for char in text):
        raise LocatorError(f"{text!r}: control characters are not allowed in a locator")
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "vde", text
    elif not _SCHEME.match(scheme):
        raise LocatorError(f"{text!r}: bad scheme name {scheme!r}")
    scheme = scheme.lower()
    if scheme in VERBATIM_SCHEMES:
        if not rest.strip():
            raise LocatorError(f"{text!r}: {scheme}:// needs a command")
        return Locator(scheme, rest, {}, (), text)
    head, nested = _split_nested(text, rest)
    head, options = _split_bracket_options(text, head)
    if scheme not in PATH_SCHEMES and "/" in head:
        head, _, trailer = head.partition("/")
        _add_options(text, options, trailer)
    if scheme == "vde" and not head:
        head = default_switch_path()
    return Locator(scheme, head, options, nested, text)


def _split_nested(text, rest):
    """Split ``rest`` into the text before the braces and the parsed nested locators."""
    start = rest.find("{")
    if start < 0:
        if "}" in rest:
            raise LocatorError(f"{text!r}: '}}' without a matching '{{'")
        return rest, ()
    nested = []
    position = start
    while position < len(rest):
        if rest[position] != "{":
            raise LocatorError(f"{text!r}: unexpected text {rest[position:]!r} after '}}'")
        depth = 0
        for end in range(position, len(rest)):
            depth += {"{": 1, "}": -1}.get(rest[end], 0)
            if depth == 0:
                break
        else:
            raise LocatorError(f"{text!r}: '{{' without a matching '}}'")
        nested.append(parse_locator(rest[position + 1:end]))
        position = end + 1
    return rest[:start], tuple(nested)


def _split_bracket_options(text, head):
    """Split ``path[options]`` into the path and an options dict."""
    options = {}
    opening = head.find("[")
    if opening < 0:
        if "]" in head:
            raise LocatorError(f"{text!r}: ']' without a matching '['")
        return head, options
    closing = head.find("]", opening)
    if closing < 0:
        raise LocatorError(f"{text!r}: '[' without a matching ']'")
    if closing != len(head) - 1:
        raise LocatorError(f"{text!r}: unexpected text {head[closing + 1:]!r} after ']'")
    inside = head[opening + 1:closing]
    if "[" in inside:
        raise LocatorError(f"{text!r}: nested '[' in options")
    _add_options(text, options, inside)
    return head[:opening], options


def _add_options(text, options, words):
    """Add the ``/``-separated ``name=value`` words to ``options``.

    A bare number means ``port=NUMBER``; any other bare word is a flag (empty value).
    """
    for word in words.split("/"):
        if not word:
            continue
        name, equals, value = word.partition("=")
        if not equals and word.isdigit():
            name, value = "port", word
        if not _OPTION_NAME.match(name):
            raise LocatorError(f"{text!r}: bad option name {name!r} in {word!r}")
        if name in options:
            raise LocatorError(f"{text!r}: option {name!r} given twice")
        options[name] = value
