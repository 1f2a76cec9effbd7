"""The IPv4 routing table: longest-prefix match over connected and static routes."""
from lwstack.wire.ipv4 import addr_to_int, addr_to_str, prefix_mask


class Route:
    """``network/prefix_len`` reached directly (``gateway`` None) or through ``gateway``.

    ``source`` is the local address used for traffic on this route when a socket is not bound.
    """

    __slots__ = ("network", "prefix_len", "mask", "gateway", "source")

    def __init__(self, network, prefix_len, gateway=None, source=None):
        self.prefix_len = prefix_len
        self.mask = prefix_mask(prefix_len)
        self.network = addr_to_int(network) & self.mask
        self.gateway = gateway
        self.source = source

    def __repr__(self):
        via = f" via {addr_to_str(self.gateway)}" if self.gateway else ""
        return f"Route({addr_to_str(self.network.to_bytes(4, 'big'))}/{self.prefix_len}{via})"


#: Destinations whose lookup result is remembered (Linux's per-destination route cache idea).
CACHE_LIMIT = 1024


class RouteTable:
    """Routes kept sorted by decreasing prefix length, so the first match is the longest.

    Lookups are remembered per destination until the table changes (at most ``cache_limit``
    destinations; the memory is dropped whole when full): answering a ping or sending a
    datagram looks the route up every time, and a cached answer costs a dictionary lookup.
    """

    def __init__(self, cache_limit=CACHE_LIMIT):
        self.routes = []
        self.cache_limit = cache_limit
        self._cache = {}

    def add(self, route):
        """Insert ``route`` (replacing one for the same prefix)."""
        self.routes = [r for r in self.routes
                       if (r.network, r.prefix_len) != (route.network, route.prefix_len)]
        self.routes.append(route)
        self.routes.sort(key=lambda r: -r.prefix_len)
        self._cache.clear()

    def remove(self, network, prefix_len):
        """Delete the route for ``network/prefix_len`` if there is one."""
        key = (addr_to_int(network) & prefix_mask(prefix_len), prefix_len)
        self.routes = [r for r in self.routes if (r.network, r.prefix_len) != key]
        self._cache.clear()

    def lookup(self, destination):
        """Return ``(route, next_hop)`` for a destination (4 ``bytes``), or ``(None, None)``."""
        cache = self._cache
        found = cache.get(destination)
        if found is not None:
            return found
        found = None, None
        value = addr_to_int(destination)
        for route in self.routes:
            if value & route.mask == route.network:
                found = route, route.gateway or destination
                break
        if len(cache) >= self.cache_limit:
            cache.clear()
        cache[destination] = found
        return found
