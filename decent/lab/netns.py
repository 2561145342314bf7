"""NetnsLab: the lab in network namespaces on one bridge (impairments, capture)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Final

from decent.lab.base import LabNode, _Lab
from decent.lab.bpf import MULTICAST_DROP, loss_program
from decent.lab.common import (
    CAPTURE_WAIT,
    CONTROL_PORT,
    MARKER,
    STATE_DIR,
    WEB_PORT,
    LabError,
    _in,
    _run,
    exec_in,
    lab_eid,
    lab_eid6,
    netns_unavailable,
)
from decent.lab.dns import DnsServer
from decent.lab.pcap import ecm_map_request
from decent.wire import MapReply, decode

#: Namespace and interface names are built from the prefix; the host-side veth
#: `<prefix>-h` must fit IFNAMSIZ (15 characters).
_PREFIX: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,12}$")
_CLIENT: Final = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_MULTICAST_PREF: Final = 10
_LOSS_PREF: Final = 20


class NetnsLab(_Lab):
    """Nodes in network namespaces `<prefix>-n<i>` on a bridge in `<prefix>-br`.

    The bridge lives in its own namespace, so the host's bridge netfilter
    (dockerd's FORWARD DROP) never sees lab frames. A veth `<prefix>-h` with
    address .254 joins the root namespace to the bridge, so this process (and
    a browser) reaches every node's web page at http://<rloc>:8080/. Node
    namespaces have no default route: control traffic cannot leave the lab.

    The lab removes only what it made: it records each namespace (and the
    host veth) in STATE_DIR/<prefix>.json as it makes it, and its teardown,
    or the next lab of the prefix after a crash, removes what that record
    lists and nothing else. A namespace of the prefix that no record lists
    (a person's `<prefix>-n99` joined to the lab) is never touched; one the
    lab would need stops it with an error naming it.
    """

    def __init__(
        self,
        prefix: str,
        subnet: str = "198.18.43.0/24",
        nodes: int = 3,
        mode: str = "replicate",
        ttl_minutes: int = 1,
        register_interval: float = 60.0,
        block_multicast: bool = False,
        workdir: Path | None = None,
        dataplane: bool = False,
        trust: bool = False,
    ) -> None:
        """With `dataplane`, every node runs the xTR data plane with EIDs
        192.0.2.i/32 and 2001:db8::i/128 on its TUN (lab_eid, lab_eid6).
        With `trust`, the lab is a mesh with node identities (see _Lab)."""
        if not _PREFIX.match(prefix):
            raise ValueError(
                f"prefix {prefix!r}: use 1 to 13 of a-z, 0-9 and '-' "
                "(the host veth <prefix>-h must fit 15 characters)"
            )
        net = ipaddress.ip_network(subnet)
        if not isinstance(net, IPv4Network) or net.prefixlen > 24:
            raise ValueError(f"subnet {subnet}: use an IPv4 /24 or larger")
        super().__init__(
            nodes=nodes,
            mode=mode,
            ttl_minutes=ttl_minutes,
            register_interval=register_interval,
            workdir=workdir,
            trust=trust,
        )
        self.prefix = prefix
        self.subnet = net
        self.bridge_ns = f"{prefix}-br"
        self.host_veth = f"{prefix}-h"
        self.host_address = net.network_address + 254
        self._block_multicast = block_multicast
        self._loss = 0.0
        self._clients: dict[str, list[IPv4Address]] = {}
        self._dns: list[DnsServer] = []
        self._captures: list[subprocess.Popen[bytes]] = []
        self._created = False
        #: What this lab made (and so alone removes): namespaces, host veth.
        self._made: list[str] = []
        self._made_veth = False
        self.dataplane = dataplane

    def _rloc(self, i: int) -> IPv4Address:
        return self.subnet.network_address + int(f"1{i}")

    def _node(self, i: int, seeds: list[IPv4Address]) -> LabNode:
        rloc = self._rloc(i)
        return LabNode(
            index=i,
            rloc=rloc,
            web_host=str(rloc),
            web_port=WEB_PORT,
            namespace=f"{self.prefix}-n{i}",
            seeds=seeds,
            eids=[f"{lab_eid(i)}/32"]
            + ([f"{lab_eid6(i)}/128"] if self.dataplane else []),
            register_interval=self.register_interval,
            dataplane={"enabled": True} if self.dataplane else None,
        )

    def _command(self, node: LabNode, argv: list[str]) -> list[str]:
        assert node.namespace is not None
        return _in(node.namespace, *argv)

    @property
    def state_file(self) -> Path:
        """The record of what this lab made (see the class docstring)."""
        return STATE_DIR / f"{self.prefix}.json"

    def made(self) -> list[str]:
        """The namespaces this lab made that exist now."""
        existing = set(self.namespaces())
        return [ns for ns in self._made if ns in existing]

    def namespaces(self) -> list[str]:
        """The namespaces of this prefix that exist now (stale ones too, and
        any a person made: the lab removes only those it made)."""
        out = _run(["ip", "netns", "list"]).stdout
        pattern = re.compile(rf"^{re.escape(self.prefix)}-(br|n\d+|c-[a-z0-9]+)$")
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
        return [n for n in names if pattern.match(n)]

    # ------------------------------------------------------------ build
    def create(self) -> None:
        """Build the bridge, the host veth and every node's namespace."""
        reason = netns_unavailable()
        if reason:
            raise LabError(reason)
        self._cleanup_stale()
        self._check_names_free()
        self._check_subnet_free()
        self._created = True
        self._declare_nodes()
        self._say(
            f"building {len(self.nodes)} namespaces {self.prefix}-n1.."
            f"{self.prefix}-n{max(self.nodes)} on a bridge in {self.bridge_ns}, "
            f"subnet {self.subnet}"
        )
        br = self.bridge_ns
        self._netns_add(br)
        _run(_in(br, "ip", "link", "set", "lo", "up"))
        _run(_in(br, "ip", "link", "add", "br0", "type", "bridge"))
        # Flood multicast to every port whatever IGMP says (there is no
        # querier here; this only makes it explicit).
        _run(
            _in(br, "ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        )
        _run(_in(br, "ip", "link", "set", "br0", "up"))
        _run(
            [
                "ip",
                "link",
                "add",
                self.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                "ph",
                "netns",
                br,
            ]
        )
        self._made_veth = True
        self._record()
        _run(_in(br, "ip", "link", "set", "ph", "master", "br0", "up"))
        host = f"{self.host_address}/{self.subnet.prefixlen}"
        _run(["ip", "addr", "add", host, "dev", self.host_veth])
        _run(["ip", "link", "set", self.host_veth, "up"])
        for i in sorted(self.nodes):
            self._attach(i)
        self._verify_bridge()
        self._say(
            f"namespaces ready; this host is {self.host_address} on the bridge "
            f"({self.host_veth})"
        )

    def _attach(self, i: int) -> None:
        n = self.node(i)
        assert n.namespace is not None
        self._port(n.namespace, f"p{i}", [n.rloc])
        if self._block_multicast:
            self._filter(f"p{i}", _MULTICAST_PREF, MULTICAST_DROP)
        if self._loss:
            self._filter(f"p{i}", _LOSS_PREF, loss_program(self._loss))

    def _port(self, ns: str, port: str, addresses: list[IPv4Address]) -> None:
        """A namespace with eth0 on the bridge (port `port`) and addresses."""
        br = self.bridge_ns
        self._netns_add(ns)
        _run(_in(ns, "ip", "link", "set", "lo", "up"))
        _run(
            [
                *_in(br, "ip", "link", "add", port, "type", "veth"),
                *("peer", "name", "eth0", "netns", ns),
            ]
        )
        _run(_in(br, "ip", "link", "set", port, "master", "br0", "up"))
        _run(_in(br, "tc", "qdisc", "add", "dev", port, "clsact"))
        for addr in addresses:
            cidr = f"{addr}/{self.subnet.prefixlen}"
            _run(_in(ns, "ip", "addr", "add", cidr, "dev", "eth0"))
        _run(_in(ns, "ip", "link", "set", "eth0", "up"))
        # No default route; multicast needs a route (ecosystem notes 3.2).
        _run(_in(ns, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0"))

    # ------------------------------------------------------------ inside nodes
    def exec(
        self, i: int, *argv: str, timeout: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in node i's namespace (ping, iperf3, ...)."""
        ns = self.node(i).namespace
        assert ns is not None
        return exec_in(ns, f"n{i}", argv, timeout, check)

    def popen(self, i: int, *argv: str, **kw: Any) -> subprocess.Popen[bytes]:
        """Start a command in node i's namespace; the lab kills it at the end."""
        ns = self.node(i).namespace
        assert ns is not None
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(_in(ns, *argv), start_new_session=True, **kw)

    def add_rloc(self, i: int) -> IPv4Address:
        """Give node i a second RLOC, .3<i> on its own veth (eth1) to the
        bridge; its next start registers both. ARP then answers only on the
        interface that holds an address, so a link taken down really takes
        its RLOC with it."""
        if not 1 <= i <= 9:
            raise LabError("a second RLOC is for nodes n1 to n9")
        n = self.node(i)
        assert n.namespace is not None
        addr = self.subnet.network_address + int(f"3{i}")
        if addr in n.more_rlocs:
            return addr
        br = self.bridge_ns
        port = f"p{i}b"
        _run(
            [
                *_in(br, "ip", "link", "add", port, "type", "veth"),
                *("peer", "name", "eth1", "netns", n.namespace),
            ]
        )
        _run(_in(br, "ip", "link", "set", port, "master", "br0", "up"))
        for key, value in (("arp_ignore", "1"), ("arp_announce", "2")):
            _run(_in(n.namespace, "sysctl", "-qw", f"net.ipv4.conf.all.{key}={value}"))
        cidr = f"{addr}/{self.subnet.prefixlen}"
        _run(_in(n.namespace, "ip", "addr", "add", cidr, "dev", "eth1"))
        _run(_in(n.namespace, "ip", "link", "set", "eth1", "up"))
        n.more_rlocs.append(addr)
        return addr

    def move_rloc(self, i: int, new: IPv4Address | None = None) -> IPv4Address:
        """Change node i's address on eth0, as a roaming mobile node sees it:
        add the new one (default .4<i>, or back to .1<i>), then delete the
        old. Returns the new RLOC; the lab's view of the node follows."""
        n = self.node(i)
        assert n.namespace is not None
        if new is None:
            away = self.subnet.network_address + int(f"4{i}")
            new = self._rloc(i) if n.rloc == away else away
        if new not in self.subnet or new == n.rloc:
            raise LabError(f"{new} is not a new address in {self.subnet}")
        ns, plen = n.namespace, self.subnet.prefixlen
        # Without it, deleting the primary address deletes the new one too
        # (a secondary of the same subnet).
        _run(_in(ns, "sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"))
        _run(_in(ns, "ip", "addr", "add", f"{new}/{plen}", "dev", "eth0"))
        _run(_in(ns, "ip", "addr", "del", f"{n.rloc}/{plen}", "dev", "eth0"))
        n.rloc = new
        n.web_host = str(new)
        return new

    def set_link(self, i: int, ifname: str, up: bool) -> None:
        """Take an interface of node i down (or up again) inside its namespace."""
        ns = self.node(i).namespace
        assert ns is not None
        _run(_in(ns, "ip", "link", "set", ifname, "up" if up else "down"))

    def add_client(self, name: str, count: int = 1) -> tuple[str, list[IPv4Address]]:
        """A namespace `<prefix>-c-<name>` on the bridge with `count`
        addresses from .200 up, for load generators; returns (ns, addresses)."""
        if not _CLIENT.match(name):
            raise ValueError(f"client name {name!r}: use 1 to 8 of a-z, 0-9")
        if not 1 <= count <= 50:
            raise ValueError("a client has 1 to 50 addresses (.200 to .249)")
        base = 200 + sum(len(a) for a in self._clients.values())
        if base + count > 250:
            raise LabError("no addresses left in .200-.249 for another client")
        addresses = [self.subnet.network_address + base + k for k in range(count)]
        ns = f"{self.prefix}-c-{name}"
        self._clients[name] = addresses
        self._port(ns, f"c{name}"[:15], addresses)
        return ns, addresses

    def add_dns_server(
        self, zone: str, records: Mapping[str, Sequence[IPv4Address]], ttl: int
    ) -> DnsServer:
        """A real DNS server (NSD) authoritative for `zone` with A records
        `records` (names relative to the zone) and TTL `ttl`, on port 53 of
        a client namespace `<prefix>-c-dns<k>` (k = 1, 2, ...) whose one
        address (see add_client) is `.address` of the returned server; the
        lab stops it at the end."""
        ns, (address,) = self.add_client(f"dns{len(self._dns) + 1}")
        server = DnsServer(ns, address, zone, records, ttl, parent=self.workdir)
        self._dns.append(server)
        server.start()
        return server

    def _check_subnet_free(self) -> None:
        out = _run(["ip", "-j", "route", "show", "table", "all"]).stdout
        for route in json.loads(out or "[]"):
            dst = route.get("dst", "")
            kind = route.get("type", "unicast")
            if dst in ("", "default") or ":" in dst or kind != "unicast":
                continue
            with contextlib.suppress(ValueError):
                if ipaddress.ip_network(dst, strict=False).overlaps(self.subnet):
                    raise LabError(
                        f"subnet {self.subnet} overlaps the host route {dst} "
                        f"(dev {route.get('dev')}); pick another subnet"
                    )

    def _verify_bridge(self) -> None:
        """A UDP datagram to a closed port of each node must come back as
        ICMP port-unreachable: the bridge forwards both ways."""
        for i in sorted(self.nodes):
            rloc = str(self.node(i).rloc)
            reached = False
            for _ in range(30):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(0.2)
                    s.connect((rloc, 9))
                    s.send(b"lab")
                    try:
                        s.recv(16)
                    except ConnectionRefusedError:
                        reached = True
                    except OSError:
                        pass
                if reached:
                    break
            if not reached:
                raise LabError(
                    f"no answer from {rloc} across the bridge in {self.bridge_ns}; "
                    "is bridge netfilter dropping? (check its FORWARD chain)"
                )

    def lookup_over_udp(self, i: int, eid: str, timeout: float = 2.0) -> MapReply:
        """Ask node i's Map-Resolver for eid with a real ECM'd Map-Request
        from the root namespace (.254), as an outside ITR would."""
        rloc = self.node(i).rloc
        nonce = int.from_bytes(os.urandom(8), "big")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((str(self.host_address), 0))
            s.settimeout(timeout)
            sport = s.getsockname()[1]
            data = ecm_map_request(eid, self.host_address, sport, nonce, rloc)
            s.sendto(data, (str(rloc), CONTROL_PORT))
            deadline = time.monotonic() + timeout  # noqa: TID251
            while time.monotonic() < deadline:  # noqa: TID251
                reply = decode(s.recv(65535))
                if isinstance(reply, MapReply) and reply.nonce == nonce:
                    return reply
        raise TimeoutError(f"no Map-Reply from n{i} for {eid}")

    def dropped(self) -> dict[int, int]:
        """Frames the impairment filters dropped so far, per node port."""
        out: dict[int, int] = {}
        for i in sorted(self.nodes):
            text = _run(
                _in(self.bridge_ns, "tc", "-s", "qdisc", "show", "dev", f"p{i}")
            ).stdout
            m = re.search(r"qdisc clsact .*?\(dropped (\d+)", text, re.S)
            out[i] = int(m.group(1)) if m else 0
        return out

    # ------------------------------------------------------------ impairments
    def _node_ports(self) -> list[str]:
        return [f"p{i}" for i in sorted(self.nodes)]

    def _filter(self, port: str, pref: int, program: str) -> None:
        base = ["tc", "filter"]
        where = ["dev", port, "egress", "pref", str(pref)]
        _run(_in(self.bridge_ns, *base, "del", *where), check=False)
        _run(
            _in(self.bridge_ns, *base, "add", *where, "bpf", "da", "bytecode", program)
        )

    def _unfilter(self, port: str, pref: int) -> None:
        where = ["dev", port, "egress", "pref", str(pref)]
        _run(_in(self.bridge_ns, "tc", "filter", "del", *where), check=False)

    def block_multicast(self) -> None:
        """Drop every IPv4 multicast frame the bridge would hand to a node,
        so only unicast (head-end replication) can carry registrations.

        A cBPF tc filter on the egress of each node's bridge port (this
        kernel has no netem or gact; `bpf da` returns the drop verdict).
        """
        self._block_multicast = True
        for port in self._node_ports():
            self._filter(port, _MULTICAST_PREF, MULTICAST_DROP)

    def set_loss(self, percent: float, nodes: list[int] | None = None) -> None:
        """Drop `percent` % of the UDP frames the bridge hands to each node
        (random, independent per frame); 0 removes the impairment.

        With `nodes`, only the frames to those nodes: the lab-wide setting
        (what a node added later gets) stays as it was. The bridge capture
        still sees a dropped frame: br0 takes its copy before the port."""
        if not 0 <= percent <= 100:
            raise ValueError("loss is a percentage, 0 to 100")
        if nodes is None:
            self._loss = percent
        ports = self._node_ports() if nodes is None else [f"p{i}" for i in nodes]
        for port in ports:
            if percent:
                self._filter(port, _LOSS_PREF, loss_program(percent))
            else:
                self._unfilter(port, _LOSS_PREF)

    def filter_stats(self) -> str:
        """tc's view of the filters on every node port (for debugging)."""
        return "\n".join(
            _run(
                _in(self.bridge_ns, "tc", "-s", "filter", "show", "dev", p, "egress")
            ).stdout.strip()
            for p in self._node_ports()
        )

    @contextlib.contextmanager
    def capture(self, path: Path, capture_filter: str = "udp") -> Iterator[Path]:
        """Capture what crosses the bridge (br0, promiscuous) into a pcap.

        In promiscuous mode the bridge device also receives every frame it
        forwards between ports, so one capture sees all lab traffic.
        """
        dumpcap = shutil.which("dumpcap") or shutil.which("tshark")
        if dumpcap is None:
            raise LabError("dumpcap/tshark not found (Debian: apt-get install tshark)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        argv = [dumpcap, "-q", "-i", "br0", "-P", "-w", str(path)]
        if capture_filter:
            # The markers that tell when the capture is live, and when it has
            # everything, pass any filter (read_pcap leaves them out).
            marker = f"udp dst port 9 and src host {self.host_address}"
            argv += ["-f", f"({capture_filter}) or ({marker})"]
        with open(path.with_suffix(".dumpcap.log"), "wb") as err:
            proc = subprocess.Popen(
                _in(self.bridge_ns, *argv),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._captures.append(proc)
        try:
            # dumpcap writes the file header once it is capturing.
            self.wait_until(
                lambda: (
                    proc.poll() is not None
                    or (path.exists() and path.stat().st_size >= 24)
                ),
                10.0,
                "dumpcap to start",
            )
            if proc.poll() is not None:
                raise LabError(
                    f"dumpcap exited {proc.returncode}: "
                    f"{path.with_suffix('.dumpcap.log').read_text(errors='replace')}"
                )
            self._mark(path, b"start")
            yield path
            self._mark(path, b"end")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(CAPTURE_WAIT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def _mark(self, path: Path, what: bytes) -> None:
        """Broadcast UDP markers (port 9, discard) across the bridge until
        one is in the file. At the start: dumpcap writes its file header
        before its filter is live, and on a loaded machine that gap lost a
        test's first frames. At the end: every frame sent before the marker
        is then in the file, however far behind dumpcap was."""
        tag = MARKER + what + b" " + os.urandom(8).hex().encode()
        deadline = time.monotonic() + CAPTURE_WAIT  # noqa: TID251
        marker = (str(self.subnet.broadcast_address), 9)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.bind((str(self.host_address), 0))
            while time.monotonic() < deadline:  # noqa: TID251
                s.sendto(tag, marker)
                time.sleep(0.05)
                if tag in path.read_bytes():
                    return
        raise LabError(f"dumpcap did not capture the {what.decode()} marker in time")

    # ------------------------------------------------------------ teardown
    def _kill_namespace_processes(self, ns: str) -> None:
        result = _run(["ip", "netns", "pids", ns], check=False)
        for pid in result.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def _netns_add(self, ns: str) -> None:
        """Make a namespace, and record it as this lab's once it exists
        (`ip netns add` fails for a name taken: never recorded, never ours)."""
        _run(["ip", "netns", "add", ns])
        self._made.append(ns)
        self._record()

    def _record(self) -> None:
        """Write what this lab made so far (replaced atomically)."""
        STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        state = {
            "pid": os.getpid(),
            "namespaces": self._made,
            "host_veth": self.host_veth if self._made_veth else None,
            "workdir": str(self.workdir),
        }
        tmp = self.state_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(self.state_file)

    def _cleanup_stale(self) -> None:
        """Remove what an earlier lab of this prefix made and left behind
        (killed before its teardown), as its record lists it; refuse while
        the lab that wrote the record still runs."""
        try:
            state = json.loads(self.state_file.read_text())
            pid = int(state["pid"])
            names = [str(ns) for ns in state["namespaces"]]
            veth = state.get("host_veth")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LabError(
                f"{self.state_file} is unreadable ({exc}); remove it and whatever "
                f"{self.prefix}-* namespaces you know to be a lab's"
            ) from None
        if pid != os.getpid() and _alive(pid):
            raise LabError(
                f"prefix {self.prefix} is in use by a running lab (pid {pid}); "
                "pick another --prefix, or stop that lab (if that process is "
                f"no lab, remove {self.state_file})"
            )
        existing = set(self.namespaces())
        left = [ns for ns in names if ns in existing]
        for ns in left:
            self._kill_namespace_processes(ns)
            _run(["ip", "netns", "del", ns], check=False)
        if veth == self.host_veth:
            _run(["ip", "link", "del", self.host_veth], check=False)
        self.state_file.unlink(missing_ok=True)
        if left:
            self._say(
                f"removed what a lab of prefix {self.prefix} (pid {pid}) left "
                f"behind: {', '.join(left)}"
            )

    def _check_names_free(self) -> None:
        """Names this lab is about to make must be free: what exists and no
        lab record lists is someone else's, and is left alone."""
        wanted = [self.bridge_ns, *(f"{self.prefix}-n{i}" for i in self._indices())]
        taken = sorted(set(wanted) & set(self.namespaces()))
        if taken:
            raise LabError(
                f"namespace {', '.join(taken)} exists and no lab of prefix "
                f"{self.prefix} made it; remove it (ip netns del NAME) or pick "
                "another --prefix"
            )
        if _run(["ip", "link", "show", self.host_veth], check=False).returncode == 0:
            raise LabError(
                f"interface {self.host_veth} exists and no lab of prefix "
                f"{self.prefix} made it; remove it (ip link del "
                f"{self.host_veth}) or pick another --prefix"
            )

    def _indices(self) -> list[int]:
        return sorted(self.nodes) or list(range(1, self.initial_nodes + 1))

    def destroy(self) -> None:
        """Kill every process in the namespaces this lab made, delete them
        and its host veth; nothing else (see the class docstring).

        Safe to call more than once and after a failed create()."""
        for server in self._dns:
            server.stop()
        self._dns.clear()
        for proc in self._captures:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5.0)
        self._captures.clear()
        self._stop_processes()
        if self._created and not netns_unavailable():
            # Anything else still inside (a generator started by a benchmark).
            mine = self.made()
            for ns in mine:
                self._kill_namespace_processes(ns)
            time.sleep(0.05)
            for ns in mine:
                _run(["ip", "netns", "del", ns], check=False)
            if self._made_veth:
                _run(["ip", "link", "del", self.host_veth], check=False)
            if not self.made():
                self._made.clear()
                self._made_veth = False
                self.state_file.unlink(missing_ok=True)
        self._remove_workdir()

    def __enter__(self) -> NetnsLab:
        super().__enter__()
        return self


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
