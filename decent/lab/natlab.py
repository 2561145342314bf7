"""UnderlayLab and NatLab: the namespace lab over IPv6, and home nodes behind NAT."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from pathlib import Path
from typing import Final, cast

from decent.lab.base import LabNode
from decent.lab.common import (
    WEB_PORT,
    LabError,
    _in,
    _run,
    exec_in,
    lab_eid,
    lab_eid6,
)
from decent.lab.netns import NetnsLab
from decent.wire import MapReply

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

UNDERLAYS: Final = ("ipv4", "ipv6")
#: The group of an IPv6 underlay (the config's own example of one): the
#: config wants an RLOC in the group's family.
GROUP6: Final = "ff05::1:1"
#: A router's interfaces: its public one on the lab bridge, and its LAN
#: to the home (where the home's own interface is eth0).
ROUTER_WAN: Final = "eth0"
ROUTER_LAN: Final = "lan"
#: NatLab numbers bridge addresses by the digits of an index (.1i a node,
#: .2i a home's router), so it has 9 nodes at most, publics and homes.
NAT_MAX_NODES: Final = 9
_CONNTRACK_SYSCTL: Final = Path("/proc/sys/net/netfilter/nf_conntrack_udp_timeout")
_CONNTRACK_FIELD: Final = re.compile(r"\b(src|dst|sport|dport)=(\S+)")
_POLICY: Final = re.compile(r"\(policy (\w+) (\d+) packets")


def underlay_subnet6(subnet: IPv4Network) -> IPv6Network:
    """The IPv6 underlay of a lab on IPv4 subnet a.b.c.0/24: the ULA
    fd00:a:b:c::/64, its octets written as they read (198.19.41.0/24 gives
    fd00:198:19:41::/64). Outside 2001:db8::/32 on purpose: the lab's IPv6
    EIDs live there (lab_eid6), and no RLOC should look like one."""
    a, b, c, _ = subnet.network_address.packed
    return IPv6Network(f"fd00:{a}:{b}:{c}::/64")


def _host(network: Network, digits: str) -> Address:
    """Address `digits` of a network, as written: .12 in IPv4, ::12 in IPv6
    (hexadecimal there, so that both read the same)."""
    return network.network_address + int(digits, 16 if network.version == 6 else 10)


def _field(address: Address) -> IPv4Address:
    """LabNode's address fields are typed for the IPv4 labs. Every use the
    shared lab code makes of them is str() (configs, views, messages), so an
    IPv6 underlay keeps its IPv6 addresses there as they are: this cast is
    that one seam. natlab itself reads them back typed (UnderlayLab.address)."""
    return cast(IPv4Address, address)


def _typed(address: object) -> Address:
    return ip_address(str(address))


def _url_host(address: Address) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


def _addr_add(ns: str, address: Address, prefixlen: int, dev: str) -> None:
    """An address usable at once: an IPv6 one without duplicate address
    detection (nodad), which would hold it tentative for a second or more."""
    argv = ["ip", "addr", "add", f"{address}/{prefixlen}", "dev", dev]
    _run(_in(ns, *argv, *(["nodad"] if address.version == 6 else [])))


def _answers(address: Address, tries: int = 30) -> bool:
    """A UDP datagram to port 9 (discard, closed) of `address` comes back as
    ICMP port-unreachable: the path there and back works."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    for _ in range(tries):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            s.connect((str(address), 9))
            s.send(b"lab")
            try:
                s.recv(16)
            except ConnectionRefusedError:
                return True
            except OSError:
                pass
    return False


def _check_free6(network: IPv6Network) -> None:
    """No route of this host's may overlap the IPv6 underlay."""
    out = _run(["ip", "-6", "-j", "route", "show", "table", "all"]).stdout
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("type", "unicast") != "unicast":
            continue
        with contextlib.suppress(ValueError):
            if ip_network(dst, strict=False).overlaps(network):
                raise LabError(
                    f"subnet {network} overlaps the host route {dst} "
                    f"(dev {route.get('dev')}); pick another subnet"
                )


class UnderlayLab(NetnsLab):
    """NetnsLab with a choice of underlay: "ipv4" is NetnsLab as it is;
    with "ipv6" every node's RLOC, its seeds and the group are IPv6.

    Over IPv6, node i is ::1i of `subnet6` (default underlay_subnet6 of
    `subnet`), its address added `nodad` so that it is usable at once, and
    this host is ::254 on the host veth (`host_address6`), which keeps its
    IPv4 .254 too: a capture's markers are IPv4 broadcasts. The group is
    GROUP6; a node's web page listens on its IPv6 RLOC. Node namespaces
    hold no IPv4 address then, so nothing of the lab's can use IPv4.

    What NetnsLab does with IPv4 addresses alone (lookup_over_udp,
    add_rloc, move_rloc, add_client) refuses an IPv6 underlay, and its tc
    impairments (set_loss, block_multicast) match IPv4 frames only.
    """

    def __init__(
        self,
        prefix: str,
        subnet: str = "198.18.43.0/24",
        nodes: int = 3,
        *,
        underlay: str = "ipv4",
        subnet6: str | None = None,
        mode: str = "replicate",
        ttl_minutes: int = 1,
        register_interval: float = 60.0,
        block_multicast: bool = False,
        workdir: Path | None = None,
        dataplane: bool = False,
        trust: bool = False,
    ) -> None:
        if underlay not in UNDERLAYS:
            raise ValueError(f"underlay must be ipv4 or ipv6, not {underlay!r}")
        super().__init__(
            prefix,
            subnet,
            nodes=nodes,
            mode=mode,
            ttl_minutes=ttl_minutes,
            register_interval=register_interval,
            block_multicast=block_multicast,
            workdir=workdir,
            dataplane=dataplane,
            trust=trust,
        )
        self.underlay = underlay
        net6 = underlay_subnet6(self.subnet) if subnet6 is None else ip_network(subnet6)
        if not isinstance(net6, IPv6Network) or net6.prefixlen > 112:
            raise ValueError(f"subnet6 {subnet6}: use an IPv6 /112 or larger")
        self.subnet6 = net6
        #: This host's IPv6 address on the bridge (on the host veth).
        self.host_address6 = _host(net6, "254")
        if self.ipv6:
            self.group = GROUP6

    @property
    def ipv6(self) -> bool:
        """The underlay is IPv6."""
        return self.underlay == "ipv6"

    @property
    def network(self) -> Network:
        """The bridge's subnet in the underlay's family."""
        return self.subnet6 if self.ipv6 else self.subnet

    @property
    def host(self) -> Address:
        """This host's address on the bridge, in the underlay's family."""
        return self.host_address6 if self.ipv6 else self.host_address

    def address(self, i: int) -> Address:
        """Node i's RLOC, typed as it is (LabNode.rloc claims IPv4Address)."""
        return _typed(self.node(i).rloc)

    def _bridge_address(self, digits: str) -> Address:
        return _host(self.network, digits)

    def _rloc(self, i: int) -> IPv4Address:
        return _field(self._bridge_address(f"1{i}"))

    def _node(self, i: int, seeds: list[IPv4Address]) -> LabNode:
        n = super()._node(i, seeds)
        n.web_host = _url_host(_typed(n.rloc))
        return n

    # ------------------------------------------------------------ build
    def _check_subnet_free(self) -> None:
        super()._check_subnet_free()
        if self.ipv6:
            _check_free6(self.subnet6)

    def _port(self, ns: str, port: str, addresses: list[IPv4Address]) -> None:
        """NetnsLab's port on the bridge; an IPv6 address goes on `nodad`
        with the IPv6 subnet's prefix length."""
        typed = [_typed(a) for a in addresses]
        super()._port(ns, port, [a for a in typed if isinstance(a, IPv4Address)])
        for a in typed:
            if isinstance(a, IPv6Address):
                _addr_add(ns, a, self.subnet6.prefixlen, "eth0")

    def _bridge_targets(self) -> list[Address]:
        """What this host must reach across the bridge once it is built."""
        return [self.address(i) for i in sorted(self.nodes)]

    def _verify_bridge(self) -> None:
        """A UDP datagram to a closed port of each address on the bridge
        must come back as ICMP port-unreachable, in either family."""
        if self.ipv6:
            # create() calls this last, when the host veth exists.
            self._host_ipv6()
        for address in self._bridge_targets():
            if not _answers(address):
                raise LabError(
                    f"no answer from {address} across the bridge in "
                    f"{self.bridge_ns}; is bridge netfilter dropping? (check "
                    "its FORWARD chain)"
                )

    def _host_ipv6(self) -> None:
        """This host's IPv6 address on the host veth."""
        have = _run(["ip", "-6", "addr", "show", "dev", self.host_veth]).stdout
        if f" {self.host_address6}/" not in have:
            cidr = f"{self.host_address6}/{self.subnet6.prefixlen}"
            _run(["ip", "addr", "add", cidr, "dev", self.host_veth, "nodad"])
            self._say(
                f"IPv6 underlay {self.subnet6}: this host is {self.host_address6} "
                f"({self.host_veth}), the group {self.group}"
            )

    # ------------------------------------------------------------ IPv4 only
    def _ipv4_only(self, what: str) -> None:
        if self.ipv6:
            raise LabError(f"{what} works on an IPv4 underlay only")

    def lookup_over_udp(self, i: int, eid: str, timeout: float = 2.0) -> MapReply:
        self._ipv4_only("lookup_over_udp")
        return super().lookup_over_udp(i, eid, timeout)

    def add_rloc(self, i: int) -> IPv4Address:
        self._ipv4_only("add_rloc")
        return super().add_rloc(i)

    def move_rloc(self, i: int, new: IPv4Address | None = None) -> IPv4Address:
        self._ipv4_only("move_rloc")
        return super().move_rloc(i, new)

    def add_client(self, name: str, count: int = 1) -> tuple[str, list[IPv4Address]]:
        self._ipv4_only("add_client")
        return super().add_client(name, count)

    def __enter__(self) -> UnderlayLab:
        super().__enter__()
        return self


@dataclass
class HomeNode(LabNode):
    """A node behind a NAT router: its config listens on its private
    address, and this host reaches its web page through the router's port
    forward (public_host, the router's public address)."""

    public_host: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.public_host}:{self.web_port}"


@dataclass(frozen=True, slots=True)
class NatEntry:
    """One conntrack entry of a router: the flow as its sender sent it
    (src, sport -> dst, dport) and the tuple its answers must carry
    (reply_src, reply_sport -> reply_dst, reply_dport). For a home's flow
    out through MASQUERADE, reply_dst:reply_dport is its public mapping."""

    proto: str
    src: Address
    sport: int
    dst: Address
    dport: int
    reply_src: Address
    reply_sport: int
    reply_dst: Address
    reply_dport: int
    #: Traffic has been seen both ways (no [UNREPLIED]).
    replied: bool

    @property
    def mapped(self) -> tuple[Address, int]:
        """Where answers to this flow go on the public side."""
        return self.reply_dst, self.reply_dport

    @property
    def translated(self) -> bool:
        """MASQUERADE rewrote the source: the mapping is not the sender."""
        return (self.reply_dst, self.reply_dport) != (self.src, self.sport)


def parse_conntrack(text: str) -> list[NatEntry]:
    """The UDP and TCP entries of `conntrack -L` output."""
    out: list[NatEntry] = []
    for line in text.splitlines():
        words = line.split()
        proto = next((w for w in words[:3] if w in ("udp", "tcp")), None)
        fields = _CONNTRACK_FIELD.findall(line)
        if proto is None or len(fields) < 8:
            continue
        o = {k: v for k, v in fields[:4]}
        r = {k: v for k, v in fields[4:8]}
        out.append(
            NatEntry(
                proto,
                ip_address(o["src"]),
                int(o["sport"]),
                ip_address(o["dst"]),
                int(o["dport"]),
                ip_address(r["src"]),
                int(r["sport"]),
                ip_address(r["dst"]),
                int(r["dport"]),
                "[UNREPLIED]" not in words,
            )
        )
    return out


class NatLab(UnderlayLab):
    """Public nodes on the lab bridge, and home nodes each behind its own
    NAT router, for NAT traversal.

    Nodes 1..`publics` are UnderlayLab's nodes on the bridge (.1i, ::1i);
    nodes publics+1.. are homes. Home i lives in `<prefix>-n<i>`, behind
    the router `<prefix>-r<i>`, which has ROUTER_WAN (eth0) on the bridge
    at `public_address(i)` (.2i, ::2i) and ROUTER_LAN to the home on its
    own private subnet 10.i.0.0/24 or fd00:i::/64 (the router .1/::1, the
    home .2/::2, its default route via the router). Its config: RLOC = that
    private address; seeds = every public node's RLOC.

    Each router: forwarding on; MASQUERADE of what leaves by ROUTER_WAN
    (ip6tables over IPv6); a home router's firewall: FORWARD policy DROP,
    the LAN's traffic out and what conntrack knows (ESTABLISHED, RELATED,
    DNAT) back in; a port forward of TCP WEB_PORT to the home's web page,
    which is how this host reaches it (HomeNode.url); and conntrack UDP
    timeouts of `udp_timeout` seconds (nf_conntrack_udp_timeout and
    _timeout_stream, per namespace). Linux MASQUERADE keeps the source
    port when it is free, so a mapping often differs only by address; a
    port that a stale entry holds is changed.

    Public nodes have no route to a private subnet, and the homes none to
    each other's: only traffic that a home started can reach it. Every
    namespace is recorded in the state file, as NetnsLab records its own;
    the veths all live inside the namespaces but the host veth, so
    deleting the namespaces removes them.
    """

    def __init__(
        self,
        prefix: str,
        subnet: str = "198.18.43.0/24",
        publics: int = 2,
        homes: int = 2,
        *,
        underlay: str = "ipv4",
        udp_timeout: int = 10,
        subnet6: str | None = None,
        mode: str = "replicate",
        ttl_minutes: int = 1,
        register_interval: float = 60.0,
        workdir: Path | None = None,
        dataplane: bool = False,
        trust: bool = False,
    ) -> None:
        """`udp_timeout`: the routers' conntrack UDP timeouts, seconds."""
        if publics < 1 or homes < 0 or publics + homes > NAT_MAX_NODES:
            raise ValueError(
                f"a NAT lab has 1 or more publics, 0 or more homes, and "
                f"{NAT_MAX_NODES} nodes at most"
            )
        if udp_timeout < 1:
            raise ValueError("udp_timeout is 1 second or more")
        super().__init__(
            prefix,
            subnet,
            nodes=publics + homes,
            underlay=underlay,
            subnet6=subnet6,
            mode=mode,
            ttl_minutes=ttl_minutes,
            register_interval=register_interval,
            workdir=workdir,
            dataplane=dataplane,
            trust=trust,
        )
        #: The public nodes' indices, and the homes'.
        self.publics = list(range(1, publics + 1))
        self.homes = list(range(publics + 1, publics + homes + 1))
        self.udp_timeout = udp_timeout
        for i in self.homes:
            private = self.private_subnet(i)
            for net in (self.subnet, self.subnet6):
                if private.overlaps(net):
                    raise ValueError(f"subnet {net} overlaps home n{i}'s {private}")

    # ------------------------------------------------------------ topology
    def is_home(self, i: int) -> bool:
        return i in self.homes

    def _home(self, i: int) -> int:
        if not self.is_home(i):
            raise LabError(f"n{i} is not a home node (homes: {self.homes})")
        return i

    def router_ns(self, i: int) -> str:
        """The namespace of home i's NAT router."""
        return f"{self.prefix}-r{self._home(i)}"

    def home_ns(self, i: int) -> str:
        """Home i's own namespace (where exec/popen run for it)."""
        return f"{self.prefix}-n{self._home(i)}"

    def private_subnet(self, i: int) -> Network:
        """Home i's LAN: 10.i.0.0/24, or fd00:i::/64 over IPv6."""
        if self.ipv6:
            return IPv6Network(f"fd00:{self._home(i)}::/64")
        return IPv4Network(f"10.{self._home(i)}.0.0/24")

    def private_address(self, i: int) -> Address:
        """Home i's address (its RLOC), .2 / ::2 of its LAN."""
        return _host(self.private_subnet(i), "2")

    def gateway(self, i: int) -> Address:
        """Home i's router on its LAN, .1 / ::1."""
        return _host(self.private_subnet(i), "1")

    def public_address(self, i: int) -> Address:
        """Home i's router on the bridge: the address its NAT maps to."""
        return self._bridge_address(f"2{self._home(i)}")

    def _node(self, i: int, seeds: list[IPv4Address]) -> LabNode:
        if not self.is_home(i):
            return super()._node(i, seeds)
        private = self.private_address(i)
        return HomeNode(
            index=i,
            rloc=_field(private),
            web_host=_url_host(private),
            web_port=WEB_PORT,
            namespace=f"{self.prefix}-n{i}",
            seeds=[self._rloc(p) for p in self.publics],
            eids=[f"{lab_eid(i)}/32"]
            + ([f"{lab_eid6(i)}/128"] if self.dataplane else []),
            register_interval=self.register_interval,
            dataplane={"enabled": True} if self.dataplane else None,
            public_host=_url_host(self.public_address(i)),
        )

    def namespaces(self) -> list[str]:
        """NetnsLab's, and the routers `<prefix>-r<i>`."""
        out = _run(["ip", "netns", "list"]).stdout
        p = re.escape(self.prefix)
        pattern = re.compile(rf"^{p}-(br|n\d+|r\d+|c-[a-z0-9]+)$")
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
        return [n for n in names if pattern.match(n)]

    def _check_names_free(self) -> None:
        super()._check_names_free()
        wanted = {f"{self.prefix}-r{i}" for i in self.homes}
        taken = sorted(wanted & set(self.namespaces()))
        if taken:
            raise LabError(
                f"namespace {', '.join(taken)} exists and no lab of prefix "
                f"{self.prefix} made it; remove it (ip netns del NAME) or pick "
                "another prefix"
            )

    def add_node(self, seed: int = 1, *, start: bool = True) -> int:
        raise LabError("a NAT lab's nodes are set when it is made (publics, homes)")

    # ------------------------------------------------------------ build
    def _tables(self) -> str:
        return "ip6tables" if self.ipv6 else "iptables"

    def create(self) -> None:
        """NetnsLab's bridge and public nodes, then each home's router and
        namespace; checks first that the NAT tools are here."""
        tool = self._tables()
        if self.homes and shutil.which(tool) is None:
            raise LabError(
                f"`{tool}` is not installed (Debian: apt-get install iptables)"
            )
        if self.homes and shutil.which("ping") is None:
            raise LabError(
                "`ping` is not installed (Debian: apt-get install iputils-ping)"
            )
        if self.homes:
            _conntrack_loaded()
        super().create()

    def _attach(self, i: int) -> None:
        if not self.is_home(i):
            super()._attach(i)
            return
        self._say(f"n{i}: home behind router {self.router_ns(i)}")
        router, home = self.router_ns(i), self.home_ns(i)
        self._port(router, f"p{i}", [_field(self.public_address(i))])
        # The router's bridge port is p<i>: the tc impairments of node i
        # act on the frames to its router.
        if self._block_multicast:
            self.block_multicast()
        if self._loss:
            self.set_loss(self._loss, [i])
        self._netns_add(home)
        _run(_in(home, "ip", "link", "set", "lo", "up"))
        _run(
            [
                *_in(router, "ip", "link", "add", ROUTER_LAN, "type", "veth"),
                *("peer", "name", "eth0", "netns", home),
            ]
        )
        lan = self.private_subnet(i)
        _addr_add(router, self.gateway(i), lan.prefixlen, ROUTER_LAN)
        _run(_in(router, "ip", "link", "set", ROUTER_LAN, "up"))
        _addr_add(home, self.private_address(i), lan.prefixlen, "eth0")
        _run(_in(home, "ip", "link", "set", "eth0", "up"))
        family = "-6" if self.ipv6 else "-4"
        gateway = str(self.gateway(i))
        _run(_in(home, "ip", family, "route", "add", "default", "via", gateway))
        forwarding = (
            "net.ipv6.conf.all.forwarding=1" if self.ipv6 else "net.ipv4.ip_forward=1"
        )
        _run(_in(router, "sysctl", "-qw", forwarding))
        self._nat_rules(i)
        self._set_timeout(i, self.udp_timeout)

    def _nat_rules(self, i: int) -> None:
        r, t = self.router_ns(i), self._tables()
        web = f"{_url_host(self.private_address(i))}:{WEB_PORT}"
        wan, lan = ("-i", ROUTER_WAN), ("-o", ROUTER_LAN)
        rules = [
            ["-t", "nat", "-A", "POSTROUTING", "-o", ROUTER_WAN, "-j", "MASQUERADE"],
            [
                *("-t", "nat", "-A", "PREROUTING", *wan, "-p", "tcp"),
                *("--dport", str(WEB_PORT), "-j", "DNAT", "--to-destination", web),
            ],
            ["-A", "FORWARD", "-i", ROUTER_LAN, "-o", ROUTER_WAN, "-j", "ACCEPT"],
            [
                *("-A", "FORWARD", *wan, *lan, "-m", "conntrack"),
                *("--ctstate", "ESTABLISHED,RELATED,DNAT", "-j", "ACCEPT"),
            ],
            # What a home router does: nothing unsolicited gets in.
            ["-P", "FORWARD", "DROP"],
        ]
        for rule in rules:
            _run(_in(r, t, *rule))

    def _set_timeout(self, i: int, seconds: int) -> None:
        argv = [
            *("sysctl", "-qw"),
            f"net.netfilter.nf_conntrack_udp_timeout={seconds}",
            f"net.netfilter.nf_conntrack_udp_timeout_stream={seconds}",
        ]
        result = _run(_in(self.router_ns(i), *argv), check=False)
        if result.returncode:
            raise LabError(
                f"{self.router_ns(i)}: the conntrack UDP timeouts are not "
                f"writable in a namespace here: {result.stderr.strip()}"
            )

    def _bridge_targets(self) -> list[Address]:
        return [self.address(i) for i in self.publics] + [
            self.public_address(i) for i in self.homes
        ]

    def _verify_bridge(self) -> None:
        """The bridge as UnderlayLab checks it (public nodes and routers),
        then each home's way out: a ping through its NAT to this host."""
        super()._verify_bridge()
        for i in self.homes:
            ping = ["ping", "-c", "1", "-W", "1", str(self.host)]
            if not any(
                _run(_in(self.home_ns(i), *ping), check=False).returncode == 0
                for _ in range(10)
            ):
                raise LabError(
                    f"n{i} cannot reach this host ({self.host}) through its "
                    f"router {self.router_ns(i)}"
                )

    # ------------------------------------------------------------ the routers
    def router_exec(
        self, i: int, *argv: str, timeout: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in home i's router (iptables, conntrack, tcpdump)."""
        ns = self.router_ns(i)
        return exec_in(ns, ns, argv, timeout, check)

    def _conntrack(self, i: int, *argv: str) -> str:
        if shutil.which("conntrack") is None:
            raise LabError(
                "`conntrack` is not installed (Debian: apt-get install conntrack)"
            )
        family = "ipv6" if self.ipv6 else "ipv4"
        return self.router_exec(i, "conntrack", *argv, "-f", family, check=True).stdout

    def flush_conntrack(self, i: int) -> None:
        """Forget every flow home i's router tracks: its NAT mappings go,
        and what comes back for them is no longer let in (nor the TCP of
        a web API call caught in the middle: the lab opens one a call)."""
        self._conntrack(i, "-F")

    def conntrack(self, i: int) -> list[NatEntry]:
        """The UDP and TCP flows home i's router tracks now."""
        return parse_conntrack(self._conntrack(i, "-L"))

    def set_udp_timeout(self, seconds: int, homes: list[int] | None = None) -> None:
        """Change the routers' conntrack UDP timeouts (all homes', or
        those listed). An entry takes the new value when its next packet
        refreshes it."""
        for i in self.homes if homes is None else homes:
            self._set_timeout(i, seconds)

    def router_dropped(self, i: int) -> int:
        """Packets home i's router refused to forward in so far (its
        FORWARD policy: unsolicited traffic from the public side)."""
        out = self.router_exec(i, self._tables(), "-L", "FORWARD", "-v", "-x", "-n")
        m = _POLICY.search(out.stdout)
        if m is None:
            raise LabError(f"{self.router_ns(i)}: no FORWARD policy in {out.stdout!r}")
        return int(m.group(2))

    def __enter__(self) -> NatLab:
        super().__enter__()
        return self


def _conntrack_loaded() -> None:
    """nf_conntrack must be in the kernel (its sysctls exist then)."""
    if _CONNTRACK_SYSCTL.exists():
        return
    if shutil.which("modprobe") is not None:
        _run(["modprobe", "nf_conntrack"], check=False)
    if not _CONNTRACK_SYSCTL.exists():
        raise LabError(
            "nf_conntrack is not loaded and `modprobe nf_conntrack` did not load "
            "it: a NAT router needs connection tracking"
        )
