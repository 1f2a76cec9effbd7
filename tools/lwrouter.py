"""lwrouter: a stack that hands out addresses and names to its virtual LAN.

    lwrouter --net vde:///tmp/sw --conf ip=10.0.0.1/24 --dhcp 10.0.0.100-10.0.0.200
             [--dns] [--domain lan] [--dns-forward ADDR]... [--host-record NAME,ADDR]...
             [--lease-time SECONDS] [--gateway ADDR] [--log-queries]
             [--ra fd00::/64] [--dhcp6 fd00::100-fd00::1ff|hash]

A DHCPv4 server for the range, and with ``--dns`` a DNS server on UDP and TCP port 53 that
knows the router (``fqdn=`` of --conf, else "router"), the ``--host-record`` names and every
DHCP client that sent a name, and forwards other names to the ``--dns-forward`` servers.
It prints what it hands out, a line per DHCP message like dnsmasq's log, and runs until
interrupted (Ctrl-C or SIGTERM).  ``--ra`` sends IPv6 router advertisements for a prefix
(SLAAC for a /64; the router's address in it as DNS with ``--dns``) and ``--dhcp6`` runs a
DHCPv6 server (a range, or ``hash``: each client's FQDN hashed into the prefix), which sets
the advertisements' M and O flags.

Names: a DHCPv4 client is named by its host name or FQDN option, a DHCPv6 client by its
FQDN option or else by the DHCPv4 name of the MAC in its DUID; each gets A or AAAA records
(and PTR) in the ``--domain`` for as long as its lease runs.  SLAAC addresses get no names:
hosts form them on their own and DHCP never reports them, so a host that must be found by
name over IPv6 takes a DHCPv6 address too (``dhcp6`` or ``auto`` in its configuration).
"""
import queue
import sys

import lwcli


def main(argv=None):
    """Run until interrupted; exit status 0, 1 on errors, 2 on bad arguments."""
    parser = lwcli.ArgumentParser(
        prog="lwrouter",
        description="Serve DHCP and DNS to a virtual LAN from a stack of its own.")
    parser.add_argument("--net", default="", metavar="LOCATOR",
                        help="switch locator, e.g. vde:///tmp/sw (default: the default switch)")
    parser.add_argument("--conf", required=True, metavar="CONFIG",
                        help="the router's stack configuration, e.g. ip=10.0.0.1/24,fqdn=gw.lan")
    parser.add_argument("--dhcp", metavar="FIRST-LAST",
                        help="hand out IPv4 addresses from this range by DHCP")
    parser.add_argument("--lease-time", type=int, default=3600, metavar="SECONDS",
                        help="DHCP lease time (default 3600)")
    parser.add_argument("--gateway", metavar="ADDR",
                        help="default gateway handed out (default: the router's address)")
    parser.add_argument("--dns", action="store_true",
                        help="run a DNS server and hand it out as the LAN's name server; it "
                        "names DHCPv4 and DHCPv6 clients (not SLAAC addresses, which the "
                        "router never learns)")
    parser.add_argument("--domain", metavar="DOMAIN",
                        help="the LAN's domain (DHCP option 15; DNS answers for it)")
    parser.add_argument("--dns-forward", action="append", default=[], metavar="ADDR",
                        help="forward other names to this server (repeatable)")
    parser.add_argument("--host-record", action="append", default=[], metavar="NAME,ADDR",
                        help="a static DNS name (repeatable)")
    parser.add_argument("--log-queries", action="store_true", help="print every DNS query")
    parser.add_argument("--ra", metavar="PREFIX",
                        help="send IPv6 router advertisements for PREFIX, e.g. fd00::/64")
    parser.add_argument("--dhcp6", metavar="FIRST-LAST|hash",
                        help="a DHCPv6 server for this range, or hash addresses of the "
                        "clients' names")
    args = parser.parse_args(argv)
    if args.dhcp is None and not args.dns and args.ra is None and args.dhcp6 is None:
        parser.error("nothing to serve: give --dhcp, --dns, --ra or --dhcp6")
    if not 1 <= args.lease_time <= 0xFFFFFFFE:
        parser.error(f"--lease-time {args.lease_time}: must be 1..4294967294")
    records = []
    for item in args.host_record:
        name, sep, address = item.partition(",")
        if not sep or not name or not address:
            parser.error(f"--host-record {item}: give NAME,ADDR")
        records.append((name.strip(), address.strip()))
    args.records = records
    return lwcli.run(_serve, args)


def _serve(args):
    from lwstack.router import Router

    lwcli.stop_on_sigterm()
    lines = queue.SimpleQueue()          # filled by the stack's reactor, printed here
    router = Router(args.net, args.conf, dhcp=args.dhcp, dns=args.dns, domain=args.domain,
                    dns_forward=args.dns_forward, host_records=args.records,
                    gateway=args.gateway, lease_time=args.lease_time, ra=args.ra,
                    dhcp6=args.dhcp6, log=lines.put, log_queries=args.log_queries)
    with router:
        print(f"lwrouter: serving {router.describe()}", flush=True)
        try:
            while True:
                try:
                    line = lines.get(timeout=0.5)
                except queue.Empty:
                    continue
                print(f"lwrouter: {line}", flush=True)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
