"""Host services: sans-IO engines speaking UDP through the host without sockets (here the
DHCPv4 client and server on two hosts), and RFC 5227 probing through the host's ARP."""
import random

from lwstack.iface.host import Host
from lwstack.proto.dhcp4 import BOUND, Dhcp4Client
from lwstack.proto.dhcp4_server import Dhcp4Server
from lwstack.wire.ipv4 import parse_addr as A


class Adapter:
    """The service shape the host expects, around an engine with ``receive(payload, src, now)``."""

    def __init__(self, engine, port):
        self.engine = engine
        self.udp_ports = {port}
        self.outbox = engine.outbox
        self.events = []

    def receive_udp(self, src, src_port, dst, dst_port, payload, now):
        self.engine.receive(payload, src, now)

    def poll(self, now):
        self.engine.poll(now)

    def poll_at(self):
        return self.engine.poll_at()

    def conflict(self, addr, now):
        self.engine.conflict(addr, now)


def _run(hosts, until, step=0.05):
    now = 0.0
    while now < until:
        for _ in range(10):
            moved = False
            for host in hosts:
                due = host.poll_at()
                if due is not None and due <= now:
                    host.poll(now)
                frames, host.outbox[:] = list(host.outbox), []
                for frame in frames:
                    moved = True
                    for other in hosts:
                        if other is not host:
                            other.receive(frame, now)
            if not moved:
                break
        now += step
    return now


def _network(squatter=False):
    server_host = Host("ip=10.0.0.1/24,mac=02:00:00:00:00:01", 0.0, rng=random.Random(1))
    server = Dhcp4Server(A("10.0.0.1"), 24, A("10.0.0.100"), A("10.0.0.101"),
                         routers=(A("10.0.0.1"),), dns=(A("10.0.0.1"),))
    server_host.add_service(Adapter(server, 67), 0.0)
    client_host = Host("mac=02:00:00:00:00:02", 0.0, rng=random.Random(2))
    client = Dhcp4Client(client_host.mac, random.Random(3))
    service = Adapter(client, 68)
    client_host.on_service_event = lambda svc, record, now: svc.events.append(record)
    client_host.add_service(service, 0.0)
    client.start(0.0)
    client_host.drain_service(service, 0.0)
    hosts = [server_host, client_host]
    if squatter:    # a host already using the first pool address, without a lease
        hosts.append(Host("ip=10.0.0.100/24,mac=02:00:00:00:00:03", 0.0, rng=random.Random(4)))
    return hosts, client, service


def test_a_host_without_an_address_gets_a_lease_through_its_service():
    (server_host, client_host), client, service = _network()
    _run([server_host, client_host], until=15.0)
    assert client.state == BOUND
    bound = [r for r in service.events if r[0] == "bound"]
    assert len(bound) == 1 and bound[0][1].address == A("10.0.0.100")
    assert client_host.stats["arp_probe_conflict"] == 0


def test_an_address_in_use_is_declined_after_the_arp_probe():
    hosts, client, service = _network(squatter=True)
    _run(hosts, until=30.0)
    assert hosts[1].stats["arp_probe_conflict"] == 1
    bound = [r for r in service.events if r[0] == "bound"]
    assert [r[1].address for r in bound] == [A("10.0.0.101")]


def test_name_servers_merge_by_source_and_report_changes():
    host = Host("ip=10.0.0.2/24", 0.0, rng=random.Random(1))
    changes = []
    host.on_name_servers_change = lambda: changes.append(host.all_name_servers())
    host.set_name_servers("dhcp4", [A("10.0.0.1")], ["lan"])
    host.set_name_servers("static", [A("10.0.0.53"), A("10.0.0.1")])
    host.set_name_servers("static", [A("10.0.0.53"), A("10.0.0.1")])     # no change
    assert changes == [([A("10.0.0.1")], ["lan"]),
                       ([A("10.0.0.53"), A("10.0.0.1")], ["lan"])]
    host.set_name_servers("dhcp4", [])
    assert host.name_servers == {"static": ((A("10.0.0.53"), A("10.0.0.1")), ())}
    assert changes[-1] == ([A("10.0.0.53"), A("10.0.0.1")], [])
