"""A LISP-Decent lab: n nodes on one bridge in network namespaces, or on loopback."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from decent.wire import (
    EncapsulatedControlMessage,
    MapReply,
    MapRequest,
    RequestRecord,
    decode,
    parse_eid,
)

GROUP: Final = "233.252.1.1"
#: The membership EID's text form, as /api/sites shows it.
GROUP_EID: Final = f"[0](0.0.0.0/0, {GROUP}/32)"
KEY: Final = "decent-lab-shared-secret"
WEB_PORT: Final = 8080
CONTROL_PORT: Final = 4342
DATA_PORT: Final = 4341
#: What a capture's start and end markers carry (NetnsLab.capture).
MARKER: Final = b"decent-lab capture "
#: How long a capture may take to go live, catch up, or stop: generous, as
#: a loaded 2-core machine can leave dumpcap seconds behind.
CAPTURE_WAIT: Final = 30.0
#: Namespace and interface names are built from the prefix; the host-side veth
#: `<prefix>-h` must fit IFNAMSIZ (15 characters).
_PREFIX: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,12}$")
_CLIENT: Final = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_HTTP: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_TC_SHOT: Final = 2
_TC_UNSPEC: Final = 0xFFFFFFFF  # let the next filter decide
_SKF_AD_RANDOM: Final = (-0x1000 + 56) & 0xFFFFFFFF
_MULTICAST_PREF: Final = 10
_LOSS_PREF: Final = 20


class LabError(RuntimeError):
    """The lab could not be built or driven; the message says what to do."""


def netns_unavailable() -> str | None:
    """Why this process cannot build a namespace lab, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (run as root, or use LoopbackLab)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    result = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return f"`ip netns` does not work here: {result.stderr.strip()}"
    return None


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result


def _in(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _cbpf(program: list[tuple[int, int, int, int]]) -> str:
    """tc's classic-BPF `bytecode` text: count, then `code jt jf k` each."""
    ops = ",".join(f"{c} {jt} {jf} {k}" for c, jt, jf, k in program)
    return f"{len(program)},{ops}"


# Classic BPF opcodes (linux/filter.h). tc's `bpf da` runs them on the frame
# from its Ethernet header; the return value is the tc action.
_LDH_ABS, _LDB_ABS, _LD_ABS = 0x28, 0x30, 0x20
_JEQ_K, _JGE_K, _AND_K, _RET_K = 0x15, 0x35, 0x54, 0x06

#: Drop IPv4 frames to 224.0.0.0/4; leave the rest to the next filter.
MULTICAST_DROP: Final = _cbpf(
    [
        (_LDH_ABS, 0, 0, 12),  # ethertype
        (_JEQ_K, 0, 4, 0x0800),
        (_LDB_ABS, 0, 0, 14 + 16),  # first byte of the IPv4 destination
        (_AND_K, 0, 0, 0xF0),
        (_JEQ_K, 0, 1, 0xE0),
        (_RET_K, 0, 0, _TC_SHOT),
        (_RET_K, 0, 0, _TC_UNSPEC),
    ]
)


def loss_program(percent: float) -> str:
    """Drop this share of IPv4 UDP frames at random (cBPF `ld rand`).

    Only UDP: the lab's control traffic is UDP, and the web API the tests
    poll (TCP) stays unharmed.
    """
    threshold = min(int(percent / 100.0 * 2**32), 0xFFFFFFFF)
    return _cbpf(
        [
            (_LDH_ABS, 0, 0, 12),
            (_JEQ_K, 0, 5, 0x0800),
            (_LDB_ABS, 0, 0, 14 + 9),  # IPv4 protocol
            (_JEQ_K, 0, 3, socket.IPPROTO_UDP),
            (_LD_ABS, 0, 0, _SKF_AD_RANDOM),
            (_JGE_K, 1, 0, threshold),
            (_RET_K, 0, 0, _TC_SHOT),
            (_RET_K, 0, 0, _TC_UNSPEC),
        ]
    )


def ecm_map_request(
    eid: str, itr_rloc: IPv4Address, sport: int, nonce: int, resolver: IPv4Address
) -> bytes:
    """An ECM'd Map-Request for eid, as an ITR at itr_rloc:sport sends it to
    its Map-Resolver (RFC 9301 5.8); the Map-Reply comes back to that port."""
    query = parse_eid(eid)
    addr, mask = query.to_wire()
    inner_dst = query.address if isinstance(query.address, IPv4Address) else resolver
    request = MapRequest(nonce, (RequestRecord(addr, mask),), (itr_rloc,))
    return EncapsulatedControlMessage(
        request, itr_rloc, inner_dst, sport, CONTROL_PORT
    ).encode()


# ---------------------------------------------------------------- captures
@dataclass(frozen=True, slots=True)
class Datagram:
    """One captured IPv4/UDP datagram."""

    time: float
    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    payload: bytes


def read_pcap(path: Path) -> list[Datagram]:
    """The IPv4/UDP datagrams of a classic pcap file with Ethernet framing
    (what `dumpcap -P` writes); everything else is skipped."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise LabError(f"{path}: not a classic pcap file (use dumpcap -P)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (linktype,) = struct.unpack(endian + "I", data[20:24])
    if linktype != 1:
        raise LabError(f"{path}: link type {linktype}, expected Ethernet (1)")
    record = struct.Struct(endian + "IIII")
    out: list[Datagram] = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, caplen, _ = record.unpack_from(data, pos)
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = int.from_bytes(ip[2:4], "big")
        if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP or len(ip) < total:
            continue
        if int.from_bytes(ip[6:8], "big") & 0x3FFF:
            continue  # a fragment: not one whole datagram
        udp = ip[ihl:total]
        sport, dport, length = struct.unpack("!HHH", udp[:6])
        if dport == 9 and udp[8:length].startswith(MARKER):
            continue  # the capture's own start and end markers
        out.append(
            Datagram(
                sec + frac / (1e9 if nano else 1e6),
                IPv4Address(ip[12:16]),
                IPv4Address(ip[16:20]),
                sport,
                dport,
                bytes(udp[8:length]),
            )
        )
    return out


# ---------------------------------------------------------------- the lab
@dataclass
class LabNode:
    """One node of the lab and what its next start writes into its config."""

    index: int
    rloc: IPv4Address
    web_host: str
    web_port: int
    namespace: str | None
    seeds: list[IPv4Address]
    eids: list[str]
    register_interval: float
    admin_token: str | None = None
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)
    #: More RLOCs after `rloc` (NetnsLab.add_rloc), each on its own veth.
    more_rlocs: list[IPv4Address] = field(default_factory=list)
    #: [dataplane] keys; None: no data plane.
    dataplane: dict[str, object] | None = None
    #: Configure the RLOC as `[node] interface` (followed as it changes,
    #: LISP-MN) rather than `rloc`; the web page then listens on any address.
    interface: str | None = None

    @property
    def name(self) -> str:
        return f"n{self.index}"

    @property
    def url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass(frozen=True, slots=True)
class NodeView:
    """What one node holds, read from /api/sites and /api/peers."""

    eids: frozenset[str]
    names: frozenset[str]
    members: frozenset[str]
    peer_rlocs: frozenset[str]
    peer_names: frozenset[str | None]


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for ASCII text
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Lab:
    """What both labs share: configs, processes, the JSON API, waiting."""

    def __init__(
        self,
        *,
        nodes: int,
        mode: str,
        ttl_minutes: int,
        register_interval: float,
        workdir: Path | None,
    ) -> None:
        if mode not in ("replicate", "multicast"):
            raise ValueError(f"mode must be replicate or multicast, not {mode!r}")
        if not 1 <= nodes <= 99:
            raise ValueError("a lab has 1 to 99 nodes")
        self.mode = mode
        self.ttl_minutes = ttl_minutes
        self.register_interval = register_interval
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="decent-lab-")) if workdir is None else workdir
        )
        self.initial_nodes = nodes
        self.nodes: dict[int, LabNode] = {}
        self.log_level = "info"

    # ------------------------------------------------------------ to override
    def create(self) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        self._stop_processes()

    def _node(self, i: int, seeds: list[IPv4Address]) -> LabNode:
        raise NotImplementedError

    def _command(self, node: LabNode, argv: list[str]) -> list[str]:
        raise NotImplementedError

    # ------------------------------------------------------------ context
    def __enter__(self) -> _Lab:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    # ------------------------------------------------------------ nodes
    def _declare_nodes(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for i in range(1, self.initial_nodes + 1):
            self.nodes[i] = self._node(i, [] if i == 1 else [self._rloc(1)])

    def _rloc(self, i: int) -> IPv4Address:
        raise NotImplementedError

    def node(self, i: int) -> LabNode:
        try:
            return self.nodes[i]
        except KeyError:
            raise LabError(f"the lab has no node n{i}") from None

    def running(self) -> list[int]:
        return [i for i, n in sorted(self.nodes.items()) if n.running]

    def node_dir(self, i: int) -> Path:
        return self.workdir / f"n{i}"

    def config_path(self, i: int) -> Path:
        return self.node_dir(i) / "node.toml"

    def log_path(self, i: int) -> Path:
        return self.node_dir(i) / "node.log"

    def state_dir(self, i: int) -> Path:
        return self.node_dir(i) / "state"

    def config_text(self, i: int) -> str:
        n = self.node(i)
        rlocs = [str(r) for r in [n.rloc, *n.more_rlocs]]
        if n.interface:
            where = f"interface = {_toml(n.interface)}"
        elif n.more_rlocs:
            where = f"rlocs = {_toml(rlocs)}"
        else:
            where = f"rloc = {_toml(rlocs[0])}"
        listen = f"{'0.0.0.0' if n.interface else n.web_host}:{n.web_port}"
        lines = [
            "[node]",
            f"name = {_toml(n.name)}",
            where,
            f"state_dir = {_toml(str(self.state_dir(i)))}",
            f"log_level = {_toml(self.log_level)}",
            "",
            "[decent]",
            f"group = {_toml(GROUP)}",
            f"mode = {_toml(self.mode)}",
        ]
        if n.seeds:
            lines.append(f"seeds = {_toml([str(s) for s in n.seeds])}")
        lines += [
            f"key = {_toml(KEY)}",
            f"ttl = {self.ttl_minutes}",
            f"register_interval = {float(n.register_interval)!r}",
            "",
        ]
        for eid in n.eids:
            lines += ["[[database]]", f"eid = {_toml(eid)}", ""]
        lines += ["[web]", f"listen = {_toml(listen)}"]
        if n.admin_token:
            lines.append(f"admin_token = {_toml(n.admin_token)}")
        lines.append("")
        if n.dataplane is not None:
            lines.append("[dataplane]")
            lines += [f"{k} = {_toml(v)}" for k, v in n.dataplane.items()]
            lines.append("")
        return "\n".join(lines)

    def configure(
        self,
        i: int,
        *,
        eids: list[str] | None = None,
        register_interval: float | None = None,
        seeds: list[IPv4Address] | None = None,
        admin_token: str | None = None,
        dataplane: dict[str, object] | None = None,
        interface: str | None = None,
    ) -> None:
        """Change what node i's next start writes into its config
        (`dataplane` keys are added to its [dataplane] section; `interface`
        names the RLOC by interface instead, "" goes back to `rloc`)."""
        n = self.node(i)
        if interface is not None:
            n.interface = interface or None
        if admin_token is not None:
            n.admin_token = admin_token or None
        if dataplane is not None:
            n.dataplane = {**(n.dataplane or {"enabled": True}), **dataplane}
        if eids is not None:
            n.eids = list(eids)
        if register_interval is not None:
            n.register_interval = register_interval
        if seeds is not None:
            n.seeds = list(seeds)

    def start(self, i: int) -> None:
        """Write node i's config and start it (`decent run`) in its place."""
        n = self.node(i)
        if n.running:
            raise LabError(f"{n.name} is already running")
        self._close_log(n)
        self.node_dir(i).mkdir(parents=True, exist_ok=True)
        self.config_path(i).write_text(self.config_text(i))
        argv = [sys.executable, "-m", "decent", "run", "--config"]
        argv.append(str(self.config_path(i)))
        n.log_file = open(self.log_path(i), "ab")  # noqa: SIM115 - kept open
        n.process = subprocess.Popen(
            self._command(n, argv),
            stdin=subprocess.DEVNULL,
            stdout=n.log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # Its own session: a Ctrl-C meant for `decent lab` reaches the
            # lab, which then stops every node itself.
            start_new_session=True,
        )

    def start_all(self) -> None:
        for i in sorted(self.nodes):
            if not self.node(i).running:
                self.start(i)

    def reload(self, i: int) -> None:
        """Rewrite running node i's config (after `configure`) and SIGHUP it,
        as an operator applies a changed [[database]]."""
        n = self.node(i)
        if n.process is None or not n.running:
            raise LabError(f"{n.name} is not running")
        self.config_path(i).write_text(self.config_text(i))
        # `ip netns exec` execs the command: the pid is decent's own.
        n.process.send_signal(signal.SIGHUP)

    def stop(self, i: int, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal node i and wait for it to exit; returns its exit status."""
        n = self.node(i)
        proc = n.process
        if proc is None:
            raise LabError(f"{n.name} was never started")
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise LabError(
                    f"{n.name} ignored signal {sig} for {timeout} s; killed it"
                ) from None
        self._close_log(n)
        return proc.returncode

    def kill(self, i: int) -> int:
        """SIGKILL node i: no graceful leave, its peers must age it out."""
        return self.stop(i, signal.SIGKILL)

    def add_node(self, seed: int = 1, *, start: bool = True) -> int:
        """Add (and start) node n+1, seeded with one peer's RLOC."""
        i = max(self.nodes) + 1
        if i > 99:
            raise LabError("a lab has at most 99 nodes")
        self.nodes[i] = self._node(i, [self._rloc(seed)])
        self._attach(i)
        if start:
            self.start(i)
        return i

    def _attach(self, i: int) -> None:
        """Give a node added after create() its place on the network."""

    def _close_log(self, n: LabNode) -> None:
        if n.log_file is not None:
            n.log_file.close()
            n.log_file = None

    def _stop_processes(self) -> None:
        for n in self.nodes.values():
            if n.process is not None and n.process.poll() is None:
                n.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    n.process.wait(5.0)
            self._close_log(n)

    # ------------------------------------------------------------ the API
    def api(self, i: int, path: str, timeout: float = 2.0) -> Any:
        """GET node i's JSON API. A JSON error answer (a 503 from /healthz
        while joining) is returned like any other; no answer raises OSError."""
        url = self.node(i).url + path
        try:
            with _HTTP.open(url, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            exc.close()
            try:
                return json.loads(body)
            except ValueError:
                raise exc from None

    def healthy(self, i: int) -> bool:
        try:
            return bool(self.api(i, "/healthz", timeout=1.0).get("ok"))
        except (OSError, ValueError):
            return False

    def view(self, i: int) -> NodeView:
        """Node i's registrations and peer group, reduced to comparable sets."""
        sites = self.api(i, "/api/sites")
        peers = self.api(i, "/api/peers")
        eids: set[str] = set()
        names: set[str] = set()
        members: set[str] = set()
        for site in sites:
            eid = site["eid"]
            if site.get("group") is not None:
                if eid == GROUP_EID:
                    for loc in site["rlocs"]:
                        members.update(e["address"] for e in loc.get("rle", []))
            elif eid.startswith("[0]'") and eid.endswith("'"):
                names.add(eid[4:-1])
            else:
                eids.add(eid.removeprefix("[0]"))
        return NodeView(
            frozenset(eids),
            frozenset(names),
            frozenset(members),
            frozenset(p["rloc"] for p in peers),
            frozenset(p["name"] for p in peers),
        )

    def expected_view(self, among: list[int] | None = None) -> NodeView:
        """What every node should hold once `among` (default: the running
        nodes) have converged: their EIDs, names and RLOCs."""
        chosen = self.running() if among is None else among
        nodes = [self.node(i) for i in chosen]
        rlocs = frozenset(str(n.rloc) for n in nodes)
        return NodeView(
            frozenset(e for n in nodes for e in n.eids),
            frozenset(n.name for n in nodes),
            rlocs,
            rlocs,
            frozenset(n.name for n in nodes),
        )

    def converged(self, among: list[int] | None = None) -> bool:
        """Every node of `among` holds exactly what `expected_view` says."""
        chosen = self.running() if among is None else among
        want = self.expected_view(chosen)
        return all(self.view(i) == want for i in chosen)

    def wait_converged(self, timeout: float = 15.0) -> float:
        """Wait until the running nodes agree; returns the seconds it took."""
        return self.wait_until(self.converged, timeout, "the nodes to converge")

    @staticmethod
    def wait_until(
        predicate: Callable[[], object],
        timeout: float,
        what: str = "the condition",
        interval: float = 0.05,
    ) -> float:
        """Poll predicate until it is true; return the seconds it took.

        A predicate that raises OSError or ValueError (a node not answering
        yet) counts as false. Raises TimeoutError after timeout seconds.
        """
        # The lab is an imperative shell, like cli.py: it may read clocks.
        start = time.monotonic()  # noqa: TID251
        error: Exception | None = None
        while True:
            try:
                if predicate():
                    return time.monotonic() - start  # noqa: TID251
                error = None
            except (OSError, ValueError) as exc:
                error = exc
            if time.monotonic() - start > timeout:  # noqa: TID251
                extra = f" (last error: {error})" if error else ""
                raise TimeoutError(f"waited {timeout} s for {what}{extra}")
            time.sleep(interval)

    def log_tail(self, i: int, lines: int = 20) -> str:
        try:
            text = self.log_path(i).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class NetnsLab(_Lab):
    """Nodes in network namespaces `<prefix>-n<i>` on a bridge in `<prefix>-br`.

    The bridge lives in its own namespace, so the host's bridge netfilter
    (dockerd's FORWARD DROP) never sees lab frames. A veth `<prefix>-h` with
    address .254 joins the root namespace to the bridge, so this process (and
    a browser) reaches every node's web page at http://<rloc>:8080/. Node
    namespaces have no default route: control traffic cannot leave the lab.
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
    ) -> None:
        """With `dataplane`, every node runs the xTR data plane with EIDs
        i.i.i.i/32 and fd00::i/128 on its TUN."""
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
        )
        self.prefix = prefix
        self.subnet = net
        self.bridge_ns = f"{prefix}-br"
        self.host_veth = f"{prefix}-h"
        self.host_address = net.network_address + 254
        self._block_multicast = block_multicast
        self._loss = 0.0
        self._clients: dict[str, list[IPv4Address]] = {}
        self._captures: list[subprocess.Popen[bytes]] = []
        self._created = False
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
            eids=[f"{i}.{i}.{i}.{i}/32"]
            + ([f"fd00::{i}/128"] if self.dataplane else []),
            register_interval=self.register_interval,
            dataplane={"enabled": True} if self.dataplane else None,
        )

    def _command(self, node: LabNode, argv: list[str]) -> list[str]:
        assert node.namespace is not None
        return _in(node.namespace, *argv)

    def namespaces(self) -> list[str]:
        """The namespaces of this prefix that exist now (stale ones too)."""
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
        self._check_subnet_free()
        self._created = True
        self._declare_nodes()
        br = self.bridge_ns
        _run(["ip", "netns", "add", br])
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
        _run(_in(br, "ip", "link", "set", "ph", "master", "br0", "up"))
        host = f"{self.host_address}/{self.subnet.prefixlen}"
        _run(["ip", "addr", "add", host, "dev", self.host_veth])
        _run(["ip", "link", "set", self.host_veth, "up"])
        for i in sorted(self.nodes):
            self._attach(i)
        self._verify_bridge()

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
        _run(["ip", "netns", "add", ns])
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
        result = subprocess.run(
            _in(ns, *argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode:
            raise LabError(
                f"n{i}: {' '.join(argv)} exited {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

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

    def set_loss(self, percent: float) -> None:
        """Drop `percent` % of the UDP frames the bridge hands to each node
        (random, independent per frame); 0 removes the impairment."""
        if not 0 <= percent <= 100:
            raise ValueError("loss is a percentage, 0 to 100")
        self._loss = percent
        for port in self._node_ports():
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

    def _cleanup_stale(self) -> None:
        """Remove namespaces (and their processes) and the host veth left by
        an earlier lab of this prefix that was not destroyed."""
        for ns in self.namespaces():
            self._kill_namespace_processes(ns)
            _run(["ip", "netns", "del", ns], check=False)
        _run(["ip", "link", "del", self.host_veth], check=False)

    def destroy(self) -> None:
        """Kill every process, delete every namespace and the host veth.

        Safe to call more than once and after a failed create()."""
        for proc in self._captures:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5.0)
        self._captures.clear()
        self._stop_processes()
        if not self._created or netns_unavailable():
            return
        # Anything else still inside (a generator started by a benchmark).
        for ns in self.namespaces():
            self._kill_namespace_processes(ns)
        time.sleep(0.05)
        for ns in self.namespaces():
            _run(["ip", "netns", "del", ns], check=False)
        _run(["ip", "link", "del", self.host_veth], check=False)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> NetnsLab:
        super().__enter__()
        return self


class LoopbackLab(_Lab):
    """The same lab without root: node i on 127.0.0.1<i>, its web page on
    127.0.0.1:808<i>. No namespaces, so no loss, multicast or capture."""

    def __init__(
        self,
        nodes: int = 3,
        mode: str = "replicate",
        ttl_minutes: int = 1,
        register_interval: float = 60.0,
        workdir: Path | None = None,
    ) -> None:
        if mode != "replicate":
            raise LabError(
                "a loopback lab has no multicast underlay; use mode replicate, "
                "or run as root for a namespace lab"
            )
        super().__init__(
            nodes=nodes,
            mode=mode,
            ttl_minutes=ttl_minutes,
            register_interval=register_interval,
            workdir=workdir,
        )

    def _rloc(self, i: int) -> IPv4Address:
        return IPv4Address(f"127.0.0.1{i}")

    def _node(self, i: int, seeds: list[IPv4Address]) -> LabNode:
        return LabNode(
            index=i,
            rloc=self._rloc(i),
            web_host="127.0.0.1",
            web_port=WEB_PORT + i,
            namespace=None,
            seeds=seeds,
            eids=[f"{i}.{i}.{i}.{i}/32"],
            register_interval=self.register_interval,
        )

    def _command(self, node: LabNode, argv: list[str]) -> list[str]:
        return argv

    def create(self) -> None:
        self._declare_nodes()

    def destroy(self) -> None:
        self._stop_processes()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LoopbackLab:
        super().__enter__()
        return self


# ---------------------------------------------------------------- decent lab
def lab_main(argv: list[str] | None = None) -> int:
    """`decent lab`: build a lab, show its pages, run until Ctrl-C, clean up."""
    parser = argparse.ArgumentParser(
        prog="decent lab",
        description="Run a LISP-Decent lab: n nodes in network namespaces "
        "(as root) or on 127.0.0.x, until Ctrl-C.",
    )
    parser.add_argument("--nodes", type=int, default=3, help="how many (default 3)")
    parser.add_argument(
        "--mode",
        choices=("replicate", "multicast"),
        default="replicate",
        help="how members reach the group: head-end replication over unicast, "
        "or underlay multicast (namespaces only; default replicate)",
    )
    parser.add_argument(
        "--prefix",
        default="decent",
        help="name prefix, 1-13 of a-z 0-9 -: namespaces <prefix>-br and "
        "<prefix>-n<i>, host veth <prefix>-h (default decent); a lab of the "
        "same prefix left behind is removed first",
    )
    parser.add_argument(
        "--subnet",
        default="198.18.43.0/24",
        help="IPv4 /24 or larger for the lab (default 198.18.43.0/24): node i "
        "is .1<i>, this host .254; no interface here may be on it already",
    )
    parser.add_argument(
        "--ttl", type=int, default=3, help="registration TTL, minutes (default 3)"
    )
    parser.add_argument(
        "--register-interval",
        type=float,
        default=60.0,
        help="seconds between a node's Map-Registers (default 60)",
    )
    parser.add_argument(
        "--loopback",
        action="store_true",
        help="use 127.0.0.1<i> (web 127.0.0.1:808<i>) even as root",
    )
    parser.add_argument(
        "--dataplane",
        action="store_true",
        help="run the xTR data plane (namespaces only): EIDs i.i.i.i and fd00::i "
        "on a TUN; try `ip netns exec <prefix>-n1 ping 2.2.2.2`",
    )
    args = parser.parse_args(argv)
    lab: _Lab
    reason = "--loopback" if args.loopback else netns_unavailable()
    try:
        if reason is None:
            lab = NetnsLab(
                args.prefix,
                args.subnet,
                nodes=args.nodes,
                mode=args.mode,
                ttl_minutes=args.ttl,
                register_interval=args.register_interval,
                dataplane=args.dataplane,
            )
        else:
            if args.dataplane:
                raise LabError("--dataplane needs a namespace lab (run as root)")
            lab = LoopbackLab(
                nodes=args.nodes,
                mode=args.mode,
                ttl_minutes=args.ttl,
                register_interval=args.register_interval,
            )
    except (LabError, ValueError) as exc:
        print(f"decent lab: {exc}", file=sys.stderr)
        return 2

    def _interrupt(signum: int, frame: object) -> None:
        for sig in previous:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    # SIGTERM, and SIGINT even when started in the background (where it is
    # inherited as ignored), unwind through `with lab`, which removes it all.
    previous = {
        sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with lab:
            if reason is not None:
                print(f"loopback lab ({reason})")
            lab.start_all()
            try:
                took = lab.wait_converged(30.0)
                state = f"converged in {took:.1f} s"
            except TimeoutError:
                state = "not converged after 30 s; see the logs"
            print(f"{len(lab.nodes)} nodes, mode {lab.mode}, {state}:")
            for i in sorted(lab.nodes):
                n = lab.node(i)
                print(f"  {n.name}  rloc {n.rloc}  {n.url}/  log {lab.log_path(i)}")
            if isinstance(lab, NetnsLab) and lab.dataplane:
                print(f"  try: ip netns exec {lab.prefix}-n1 ping 2.2.2.2")
            print("Ctrl-C stops every node and removes the lab.", flush=True)
            alive = set(lab.running())
            while True:
                time.sleep(0.5)
                for i in sorted(alive - set(lab.running())):
                    print(f"{lab.node(i).name} exited; its log:\n{lab.log_tail(i)}")
                    alive.discard(i)
    except KeyboardInterrupt:
        pass
    except LabError as exc:
        print(f"decent lab: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("lab removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(lab_main())
