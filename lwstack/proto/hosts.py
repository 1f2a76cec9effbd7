"""A hosts-file-like static table: names to addresses and addresses back to names.

It plays the part of ``/etc/hosts`` for the stack's resolver (consulted before DNS, as
nsswitch's ``hosts: files dns`` does).  Semantics follow glibc's files backend:

- an entry is an address with a canonical name and aliases; names match case-insensitively
  (ASCII), with or without a trailing dot;
- a name lookup returns every address of the wanted family from every entry that carries
  the name, in insertion order, with the canonical name of the first such entry;
- an address lookup returns the canonical name of the first entry for that address.

The table is bounded (``max_entries``); adding beyond it raises ``ValueError``, since a
caller filling a static table should hear that it is full.
"""
import ipaddress

from lwstack.wire.dns import name_key


class HostsTable:
    """Static name <-> address mappings (4- or 16-byte addresses)."""

    def __init__(self, max_entries=1024):
        self.max_entries = max_entries
        self._entries = []              # (address, canonical name, all name keys)
        self._by_name = {}              # name key -> [entry index]
        self._by_address = {}           # address -> first entry index

    def __len__(self):
        return len(self._entries)

    def add(self, address, name, aliases=()):
        """Map ``name`` and its ``aliases`` to ``address`` (bytes, or text for ``ipaddress``)."""
        address = _to_bytes(address)
        if len(self._entries) >= self.max_entries:
            raise ValueError(f"hosts table full ({self.max_entries} entries)")
        keys = []
        for item in (name, *aliases):
            key = name_key(item)
            if not key:
                raise ValueError("empty host name")
            if key not in keys:
                keys.append(key)
        index = len(self._entries)
        self._entries.append((address, name.rstrip("."), keys))
        for key in keys:
            self._by_name.setdefault(key, []).append(index)
        self._by_address.setdefault(address, index)

    def lookup(self, name, family_len=None):
        """``(canonical name, [addresses])`` for ``name``, or None when no entry carries it.

        ``family_len`` 4 or 16 keeps only that family's addresses (the list may then be
        empty: the name exists here but without such an address).
        """
        try:
            key = name_key(name)
        except ValueError:
            return None
        indexes = self._by_name.get(key)
        if not indexes:
            return None
        addresses = [self._entries[i][0] for i in indexes
                     if family_len is None or len(self._entries[i][0]) == family_len]
        return self._entries[indexes[0]][1], addresses

    def reverse(self, address):
        """The canonical name recorded for ``address`` (bytes), or None."""
        index = self._by_address.get(bytes(address))
        return None if index is None else self._entries[index][1]

    @classmethod
    def parse(cls, text, max_entries=1024):
        """A table from ``/etc/hosts`` syntax: ``ADDRESS NAME [ALIAS...]`` per line, ``#``
        comments.  Lines with an unparsable address or name are skipped, as glibc does; more
        than ``max_entries`` lines raise ``ValueError``."""
        table = cls(max_entries)
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) < 2:
                continue
            if len(table) >= max_entries:
                raise ValueError(f"hosts table full ({max_entries} entries)")
            try:
                table.add(fields[0].split("%", 1)[0], fields[1], fields[2:])
            except ValueError:
                continue
        return table


def _to_bytes(address):
    if isinstance(address, str):
        return ipaddress.ip_address(address).packed
    address = bytes(address)
    if len(address) not in (4, 16):
        raise ValueError(f"address of {len(address)} bytes")
    return address
