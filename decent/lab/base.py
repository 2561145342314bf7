"""What both labs share: node records, configs, processes, the JSON API, waiting."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from decent.config import ConfigError, load_config
from decent.lab.common import GROUP, KEY, LabError

_HTTP: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
    #: Raw TOML appended verbatim at the end of the config (more tables).
    extra: str = ""
    #: More keys of its [decent] table (`reliable = true`, ...), written
    #: after the ones the lab sets itself; `extra` cannot repeat that table.
    decent: dict[str, object] = field(default_factory=dict)
    #: More keys of its [node] table, written after the ones the lab sets
    #: itself (name, where its RLOC is, state_dir, log_level).
    node: dict[str, object] = field(default_factory=dict)
    #: In a trust lab: [trust] mesh_key and certificate (base64), from the
    #: invite it joined with, and the EIDs that certificate grants.
    trust: tuple[str, str] | None = None
    granted: frozenset[str] = frozenset()

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


#: Keys the lab writes itself, which configure() may not set.
_DECENT_KEYS = frozenset({"group", "mode", "seeds", "key", "ttl", "register_interval"})
_NODE_KEYS = frozenset({"name", "rloc", "rlocs", "interface", "state_dir", "log_level"})


def _merged(
    section: str, taken: frozenset[str], old: dict[str, object], new: dict[str, object]
) -> dict[str, object]:
    """old with new's keys in it, refusing those the lab writes itself."""
    clash = sorted(taken & set(new))
    if clash:
        raise LabError(
            f"[{section}] {', '.join(clash)}: the lab writes "
            f"{'that key' if len(clash) == 1 else 'those keys'} itself"
        )
    return {**old, **new}


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
        trust: bool = False,
    ) -> None:
        """With `trust`, the lab is a mesh with node identities: a mesh
        authority made in its workdir (`decent mesh create`) invites every
        node (`decent mesh invite`), which joins with the token (`decent
        join --config-only`): its key goes to its state_dir, its certificate
        into its config."""
        if mode not in ("replicate", "multicast", "pull"):
            raise ValueError(f"mode must be replicate, multicast or pull, not {mode!r}")
        if not 1 <= nodes <= 99:
            raise ValueError("a lab has 1 to 99 nodes")
        self.mode = mode
        self.ttl_minutes = ttl_minutes
        self.register_interval = register_interval
        self._own_workdir = workdir is None
        self._workdir = workdir
        #: Keep the work dir (configs, each node's log) when the lab is
        #: removed (`decent lab --keep`); a workdir passed in is always kept.
        self.keep = False
        #: Told a line of text at each step of building, starting and
        #: waiting (`decent lab` prints them); None: silent.
        self.progress: Callable[[str], None] | None = None
        #: A pull-mode lab's [decent] settings (modulus, dns_suffix,
        #: dns_servers, ...), written into every node's config.
        self.pull: dict[str, object] = {}
        self.initial_nodes = nodes
        self.nodes: dict[int, LabNode] = {}
        self.log_level = "info"
        self.trust = trust
        #: The group key every node's config carries (the mesh's own in a
        #: trust lab, made by `decent mesh create`).
        self.key = KEY
        #: The group every node's config names; a lab whose underlay is
        #: IPv6 sets an IPv6 group (the config wants an RLOC of its family).
        self.group = GROUP

    @property
    def group_eid(self) -> str:
        """The membership EID of `group`, as /api/sites shows it."""
        group = ipaddress.ip_address(self.group)
        source = "0.0.0.0/0" if group.version == 4 else "::/0"
        return f"[0]({source}, {group}/{group.max_prefixlen})"

    @property
    def workdir(self) -> Path:
        """The lab's files: configs, logs, state, the mesh authority. A temp
        folder of its own is made the first time it is needed, so a lab
        refused before it builds anything leaves no empty folder behind."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="decent-lab-"))
        return self._workdir

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)

    def _remove_workdir(self) -> None:
        """Remove the temp folder the lab made (unless `keep`)."""
        if self._own_workdir and not self.keep and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    # ------------------------------------------------------------ to override
    def create(self) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        self._stop_processes()
        self._remove_workdir()

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
        if self.trust:
            self._create_mesh()
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

    # ------------------------------------------------------------ trust
    @property
    def mesh_dir(self) -> Path:
        """The trust lab's mesh authority directory (`decent mesh create`)."""
        return self.workdir / "lab.mesh"

    def decent_cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run `decent ARGS` (this Python, this checkout) and return its
        output; LabError with its message if it fails."""
        result = subprocess.run(
            [sys.executable, "-m", "decent", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise LabError(
                f"decent {args[0]} exited {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def _create_mesh(self) -> None:
        if (self.mesh_dir / "mesh.toml").exists():
            return
        self.decent_cli(
            *("mesh", "create", "lab", "--dir", str(self.mesh_dir)),
            *("--group", self.group, "--mode", self.mode, "--json"),
        )
        self._say(f"mesh authority made in {self.mesh_dir}; it invites every node")
        with (self.mesh_dir / "mesh.toml").open("rb") as f:
            self.key = str(tomllib.load(f)["key"])

    def invite(self, name: str, eids: list[str], seeds: list[str] | None = None) -> str:
        """A join token for node `name` granting `eids` (`decent mesh
        invite`; a certificate issued before for the name is replaced)."""
        if not self.trust:
            raise LabError("only a trust lab has a mesh authority")
        grants = [a for eid in eids for a in ("--eid", eid)]
        more = [a for seed in seeds or [] for a in ("--seed", seed)]
        out = self.decent_cli(
            *("mesh", "invite", name, *grants, *more),
            *("--dir", str(self.mesh_dir), "--force", "--json"),
        )
        token: str = json.loads(out)["token"]
        return token

    def revoke(self, name: str) -> str:
        """A revocation token for node `name`'s certificate (`decent mesh
        revoke`), for `decent revoke` on any member."""
        out = self.decent_cli(
            "mesh", "revoke", name, "--dir", str(self.mesh_dir), "--json"
        )
        token: str = json.loads(out)["token"]
        return token

    def join(self, i: int, token: str) -> None:
        """Node i joins with a token as a person would (`decent join
        --config-only`): the token's key goes to its state_dir, and its next
        start writes the token's mesh key and certificate into its config."""
        n = self.node(i)
        self.node_dir(i).mkdir(parents=True, exist_ok=True)
        joined = self.node_dir(i) / "join.toml"
        self.decent_cli(
            *("join", token, "--rloc", str(n.rloc), "--config", str(joined)),
            *("--state-dir", str(self.state_dir(i)), "--config-only", "--force"),
        )
        try:
            cfg = load_config(joined)
        except ConfigError as exc:
            raise LabError(
                f"{n.name}: `decent join` wrote a bad config: {exc}"
            ) from None
        if cfg.trust_mesh_key is None or cfg.trust_certificate is None:
            raise LabError(f"{n.name}: `decent join` wrote no [trust] section")
        n.trust = (
            base64.b64encode(cfg.trust_mesh_key).decode(),
            base64.b64encode(cfg.trust_certificate).decode(),
        )
        n.granted = frozenset(str(e).removeprefix("[0]") for e in cfg.database)

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
        ]
        lines += [f"{k} = {_toml(v)}" for k, v in n.node.items()]
        lines += ["", "[decent]"]
        if self.mode == "pull":
            # Pull mode (RFC 9962 5): no group, no seeds; the Map-Server
            # sets are DNS's to say (`pull` holds modulus, dns_suffix, ...).
            lines.append('mode = "pull"')
            lines += [f"{k} = {_toml(v)}" for k, v in self.pull.items()]
        else:
            lines.append(f"group = {_toml(self.group)}")
            lines.append(f"mode = {_toml(self.mode)}")
        if n.seeds and self.mode != "pull":
            lines.append(f"seeds = {_toml([str(s) for s in n.seeds])}")
        lines += [
            f"key = {_toml(self.key)}",
            f"ttl = {self.ttl_minutes}",
            f"register_interval = {float(n.register_interval)!r}",
        ]
        lines += [f"{k} = {_toml(v)}" for k, v in n.decent.items()]
        lines.append("")
        if n.trust is not None:
            mesh_key, certificate = n.trust
            lines += [
                "[trust]",
                f"mesh_key = {_toml(mesh_key)}",
                f"certificate = {_toml(certificate)}",
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
        if n.extra:
            lines += [n.extra.strip("\n"), ""]
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
        extra: str | None = None,
        decent: dict[str, object] | None = None,
        node: dict[str, object] | None = None,
    ) -> None:
        """Change what node i's next start writes into its config
        (`dataplane` keys are added to its [dataplane] section, `decent`
        keys to its [decent] table, `node` keys to its [node] table,
        replacing those given before with the same name; `interface` names
        the RLOC by interface instead, "" goes back to `rloc`).

        `extra` is raw TOML appended verbatim at the end of the file, for
        sections the lab does not write itself (`[[site]]`, `[xtr]`); it
        must start with a table header, must not repeat one the lab writes,
        and replaces the previous `extra` ("" removes it)."""
        n = self.node(i)
        if extra is not None:
            n.extra = extra
        if decent is not None:
            n.decent = _merged("decent", _DECENT_KEYS, n.decent, decent)
        if node is not None:
            n.node = _merged("node", _NODE_KEYS, n.node, node)
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
        invited = self.trust and (n.trust is None or not set(n.eids) <= n.granted)
        if invited:
            # Invited the first time it starts, and again when its EIDs
            # outgrow its certificate.
            self.join(i, self.invite(n.name, n.eids))
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
        how = ", invited and joined" if invited else ""
        self._say(
            f"{n.name} started{how}: rloc {n.rloc}, EID {', '.join(n.eids)}, "
            f"pid {n.process.pid}"
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
                if eid == self.group_eid:
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

    def wait_converged(
        self, timeout: float = 15.0, report: Callable[[str], None] | None = None
    ) -> float:
        """Wait until the running nodes agree; returns the seconds it took.

        With `report`, it is told how far they are each time that changes:
        "3/12 members joined, 1/12 nodes hold every registration" (a member
        has joined once every node has it in its peer group)."""
        if report is None:
            return self.wait_until(self.converged, timeout, "the nodes to converge")
        shown: tuple[int, int, int] | None = None

        def agreed() -> bool:
            nonlocal shown
            chosen = self.running()
            want = self.expected_view(chosen)
            joined = set(want.members)
            holding = 0
            for i in chosen:
                try:
                    view = self.view(i)
                except (OSError, ValueError):  # not answering yet
                    joined.clear()
                    continue
                joined &= view.members
                holding += view == want
            now = (len(chosen), len(joined), holding)
            if now != shown:
                shown = now
                n = len(chosen)
                report(
                    f"waiting for the nodes to agree: {len(joined)}/{n} members "
                    f"joined, {holding}/{n} nodes hold every registration"
                )
            return holding == len(chosen)

        return self.wait_until(agreed, timeout, "the nodes to converge", 0.2)

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
