"""dnsmasq in a network namespace of its own, and a tiny socket host for lwstack's resolver
there (for test_proto_dns_resolver).  Needs root, iproute2 and dnsmasq; callers skip otherwise.

The namespace has only its loopback up; dnsmasq answers on 127.0.0.1:53 with a few static
names and no upstream servers.  :func:`resolve_in` runs one lookup in a thread that entered
the namespace with setns(2) (only that thread is moved): it turns the resolver's "udp" records
into kernel UDP sockets bound to the chosen source ports, its "tcp" records into TCP
connections, and feeds back what arrives, on the monotonic clock.
"""
import random
import select
import socket
import time

from lwstack.proto.dns import Resolver

import netns_support

NS = "lwdnsr"
LOCAL = bytes([127, 0, 0, 1])


def missing():
    """Why dnsmasq cannot be run here (a string), or None."""
    return netns_support.missing("dnsmasq")


class Dnsmasq(netns_support.Dnsmasq):
    """The namespace with dnsmasq in it (a context manager; see :class:`netns_support.Dnsmasq`
    for the names it serves); its answers carry a TTL of 30 s (so the resolver caches them),
    and txt.lan has a TXT record and no AAAA.  ``extra`` adds dnsmasq options."""

    def __init__(self, workdir, extra=()):
        super().__init__(NS, workdir, ["--local-ttl=30", "--txt-record=txt.lan,hello", *extra])


def _drive(resolver, start, timeout):
    lookup = start(time.monotonic())
    udp = {}                   # local port -> socket
    tcp = {}                   # token -> socket
    deadline = time.monotonic() + timeout
    try:
        while not lookup.done:
            assert time.monotonic() < deadline, "the lookup did not finish"
            for record in resolver.outbox:
                if record.kind == "udp":
                    sock = udp.get(record.src_port)
                    if sock is None:
                        sock = udp[record.src_port] = socket.socket(socket.AF_INET,
                                                                    socket.SOCK_DGRAM)
                        sock.bind(("127.0.0.1", record.src_port))
                    sock.sendto(record.payload, (socket.inet_ntoa(record.dst_addr),
                                                 record.dst_port))
                elif record.kind == "tcp":
                    sock = socket.create_connection((socket.inet_ntoa(record.dst_addr),
                                                     record.dst_port), timeout=5)
                    sock.sendall(record.payload)
                    tcp[record.token] = sock
                elif record.kind == "tcp_close" and record.token in tcp:
                    tcp.pop(record.token).close()
            resolver.outbox.clear()
            for port in [p for p in udp if p not in resolver.ports]:
                udp.pop(port).close()
            now = time.monotonic()
            wait = max(0.0, (resolver.poll_at() or now + 0.1) - now)
            readable, _, _ = select.select([*udp.values(), *tcp.values()], [], [], wait)
            now = time.monotonic()
            for sock in readable:
                if sock in udp.values():
                    data, (addr, port) = sock.recvfrom(65535)
                    resolver.receive(socket.inet_aton(addr), port, LOCAL,
                                     sock.getsockname()[1], data, now)
                else:
                    token = next(t for t, s in tcp.items() if s is sock)
                    data = sock.recv(65535)
                    if data:
                        resolver.receive_tcp(token, data, now)
                    else:
                        tcp.pop(token).close()
                        resolver.tcp_failed(token, now)
                if lookup.done:
                    break
            resolver.poll(time.monotonic())
    finally:
        for sock in [*udp.values(), *tcp.values()]:
            sock.close()
    return lookup


def resolve_in(resolver, start, timeout=20.0):
    """Run ``start(now)`` (which calls ``resolver.resolve...`` and returns the lookup) inside
    the namespace with real sockets until the lookup is done; returns it."""
    return netns_support.in_namespace(NS, _drive, resolver, start, timeout)


def resolver(**kwargs):
    """A resolver for dnsmasq in the namespace, search domain "lan"."""
    kwargs.setdefault("search", ["lan"])
    return Resolver([LOCAL], rng=random.Random(11), **kwargs)
