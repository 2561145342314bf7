"""Drive the compose lab (compose/docker-compose.yml) on a real Docker engine."""

from __future__ import annotations

import gc
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from decent.lab import GROUP_EID, NodeView

COMPOSE_DIR: Final = Path(__file__).resolve().parents[2] / "compose"


def compose_net() -> str:
    """The lab's network, first three octets, as compose reads it: from the
    environment, else from compose/.env (the one place it is set)."""
    chosen = os.environ.get("DECENT_NET")
    if chosen:
        return chosen
    for line in (COMPOSE_DIR / ".env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "DECENT_NET":
            return value.strip()
    raise RuntimeError(f"no DECENT_NET in {COMPOSE_DIR / '.env'}")


NET: Final = compose_net()
SUBNET: Final = f"{NET}.0/24"
NODES: Final = (1, 2, 3)
#: Projects this suite starts are named with this prefix and the pid of the
#: pytest (or benchmark) process, so leftovers of a killed run can be found.
PROJECT_PREFIX: Final = "decent-e2e-"
_HTTP: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ComposeError(RuntimeError):
    """A compose command failed; the message carries its output."""


def rloc(i: int) -> str:
    """Node i's static RLOC on the lab's bridge."""
    return f"{NET}.1{i}"


def web_port(i: int) -> int:
    """The host port (on 127.0.0.1) publishing node i's status page."""
    return 8080 + i


#: The two Compose implementations a user may have, by the name the tests
#: use: Compose v2 (`docker compose`, a CLI plugin) and Debian's
#: docker-compose 1.29 (Python, `docker-compose`).
COMPOSE_VARIANTS: Final = {"v2": ["docker", "compose"], "v1": ["docker-compose"]}


def compose_variants() -> dict[str, list[str]]:
    """The Compose implementations installed here, v2 first."""
    found = {}
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            found["v2"] = COMPOSE_VARIANTS["v2"]
    if shutil.which("docker-compose"):
        found["v1"] = COMPOSE_VARIANTS["v1"]
    return found


def compose_command() -> list[str] | None:
    """Compose v2 (`docker compose`) when present, else docker-compose 1.x.
    DECENT_COMPOSE (e.g. "docker-compose") picks one explicitly."""
    chosen = os.environ.get("DECENT_COMPOSE")
    if chosen:
        return shlex.split(chosen)
    return next(iter(compose_variants().values()), None)


def engine_unavailable() -> str | None:
    """Why the compose lab cannot run here, or None when it can."""
    try:
        import docker
    except ImportError:
        return "the docker Python SDK is not installed (pip install docker)"
    # A failed API-version probe leaves the SDK's socket to the collector;
    # let it go quietly here rather than as a warning in some later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=10)
            try:
                client.ping()
            finally:
                client.close()
        except docker.errors.DockerException as exc:
            return f"no Docker engine reachable ({exc})"
        finally:
            gc.collect()
    if compose_command() is None:
        return "neither `docker compose` (v2) nor `docker-compose` is installed"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ComposeLab:
    """One compose project of the lab: build, up, inspect, partition, down.

    Every project is named `decent-e2e-<pid>-<tag>`; `down()` removes its
    containers, networks and volumes. The image is shared (decent:lab)."""

    def __init__(
        self,
        tag: str,
        *,
        multicast: bool = False,
        command: list[str] | None = None,
    ) -> None:
        import docker

        self.project = f"{PROJECT_PREFIX}{os.getpid()}-{tag}"
        self.files = [COMPOSE_DIR / "docker-compose.yml"]
        if multicast:
            self.files.append(COMPOSE_DIR / "docker-compose.multicast.yml")
        command = command or compose_command()
        if command is None:
            raise ComposeError("no compose command")
        self.command = command
        self.client = docker.from_env(timeout=60)

    # ------------------------------------------------------------ compose
    def compose(
        self, *args: str, timeout: float = 900.0, also: tuple[str, ...] = ()
    ) -> str:
        """Run a compose command on the project; `also` adds files of
        compose/ (e.g. docker-compose.n4.yml) after the lab's own."""
        argv = [*self.command, "-p", self.project]
        for f in [*self.files, *(COMPOSE_DIR / name for name in also)]:
            argv += ["-f", str(f)]
        argv += args
        done = subprocess.run(
            argv,
            cwd=COMPOSE_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip().splitlines()
            raise ComposeError(
                f"`{shlex.join(argv)}` exited {done.returncode}:\n"
                + "\n".join(output[-40:])
            )
        return done.stdout

    def build(self) -> None:
        """Build decent:lab (BASE from DECENT_BASE, default python:3.12-slim)."""
        try:
            self.compose("build")
        except ComposeError as exc:
            hint = ""
            if not os.environ.get("DECENT_BASE"):
                hint = (
                    "\n(no DECENT_BASE set: the build needs python:3.12-slim from"
                    " Docker Hub; offline, run scripts/docker-base and export"
                    " DECENT_BASE=decent-base:bookworm)"
                )
            raise ComposeError(f"{exc}{hint}") from None

    def up(self) -> None:
        self.compose("up", "-d", "--no-build")

    def down(self) -> None:
        """Remove everything the project made; never raises."""
        try:
            self.compose("down", "-v", "--remove-orphans", "--timeout", "10")
        except (ComposeError, subprocess.TimeoutExpired, OSError) as exc:
            print(f"compose down failed, removing by label: {exc}")
        self.remove_by_label(self.project)

    def remove_by_label(self, project: str) -> None:
        """Force-remove a project's containers and networks (a killed run's
        leftovers, or what `down` could not remove)."""
        label = f"com.docker.compose.project={project}"
        for c in self.client.containers.list(all=True, filters={"label": label}):
            c.remove(force=True, v=True)
        for n in self.client.networks.list(filters={"label": label}):
            n.remove()

    def remove_stale_projects(self) -> list[str]:
        """Remove projects of this suite whose process is gone."""
        key = "com.docker.compose.project"
        seen = {c.labels.get(key, "") for c in self.client.containers.list(all=True)}
        seen |= {
            (n.attrs.get("Labels") or {}).get(key, "")
            for n in self.client.networks.list()
        }
        stale = []
        for project in sorted(seen):
            rest = project.removeprefix(PROJECT_PREFIX)
            if rest == project:
                continue
            pid = rest.split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                self.remove_by_label(project)
                stale.append(project)
        return stale

    def conflicts(self) -> str | None:
        """What on this host would stop the lab from starting, if anything:
        another network on the lab's subnet (a user's lab left up) or the
        published ports taken."""
        for n in self.client.networks.list():
            for pool in (n.attrs.get("IPAM") or {}).get("Config") or []:
                if pool.get("Subnet") == SUBNET:
                    return (
                        f"Docker network {n.name} already uses {SUBNET} (a compose"
                        " lab still up? `docker compose down` it first)"
                    )
        for i in (*NODES, 4):  # 4: the README's fourth node
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", web_port(i)))
                except OSError as exc:
                    return f"host port 127.0.0.1:{web_port(i)} is taken ({exc})"
        return None

    # ------------------------------------------------------------ docker
    def container(self, i: int) -> Any:
        labels = [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service=n{i}",
        ]
        found = self.client.containers.list(all=True, filters={"label": labels})
        if len(found) != 1:
            raise ComposeError(f"n{i}: {len(found)} containers in {self.project}")
        return found[0]

    def network(self) -> Any:
        labels = [
            f"com.docker.compose.project={self.project}",
            "com.docker.compose.network=underlay",
        ]
        found = self.client.networks.list(filters={"label": labels})
        if len(found) != 1:
            raise ComposeError(f"{len(found)} underlay networks in {self.project}")
        return found[0]

    def health(self, i: int) -> str:
        """`healthy`, `starting`, `unhealthy`, or the state of a container
        that is not running (`exited`, ...)."""
        state = self.container(i).attrs["State"]
        if state["Status"] != "running":
            return str(state["Status"])
        return str((state.get("Health") or {}).get("Status", "running"))

    def all_healthy(self) -> bool:
        states = [self.health(i) for i in NODES]
        if any(s in ("exited", "dead", "restarting") for s in states):
            raise ComposeError(f"a node exited: {states}\n{self.logs()}")
        return states == ["healthy"] * len(NODES)

    def exec(self, i: int, *argv: str) -> tuple[int, str]:
        code, out = self.container(i).exec_run(list(argv))
        return int(code), out.decode(errors="replace")

    def resources(self) -> list[str]:
        """The project's containers and networks that exist now."""
        label = f"com.docker.compose.project={self.project}"
        names = [
            c.name
            for c in self.client.containers.list(all=True, filters={"label": label})
        ]
        names += [n.name for n in self.client.networks.list(filters={"label": label})]
        return names

    def logs(self, lines: int = 40) -> str:
        out = []
        for i in NODES:
            try:
                text = self.container(i).logs(tail=lines).decode(errors="replace")
            except Exception as exc:  # noqa: BLE001 - diagnostics only
                text = f"(no logs: {exc})"
            out.append(f"--- n{i} ---\n{text}")
        return "\n".join(out)

    # ------------------------------------------------------------ the API
    @staticmethod
    def api(i: int, path: str, timeout: float = 2.0) -> Any:
        """GET node i's JSON API through its host-published port."""
        url = f"http://127.0.0.1:{web_port(i)}{path}"
        try:
            with _HTTP.open(url, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            exc.close()
            return json.loads(body)

    @classmethod
    def view(cls, i: int) -> NodeView:
        """Node i's registrations and peer group, as comparable sets."""
        eids: set[str] = set()
        names: set[str] = set()
        members: set[str] = set()
        for site in cls.api(i, "/api/sites"):
            eid = site["eid"]
            if site.get("group") is not None:
                if eid == GROUP_EID:
                    for loc in site["rlocs"]:
                        members.update(e["address"] for e in loc.get("rle", []))
            elif eid.startswith("[0]'") and eid.endswith("'"):
                names.add(eid[4:-1])
            else:
                eids.add(eid.removeprefix("[0]"))
        peers = cls.api(i, "/api/peers")
        return NodeView(
            frozenset(eids),
            frozenset(names),
            frozenset(members),
            frozenset(p["rloc"] for p in peers),
            frozenset(p["name"] for p in peers),
        )

    @staticmethod
    def expected(among: tuple[int, ...] = NODES) -> NodeView:
        """What every node of `among` holds once they agree (spelled out)."""
        rlocs = frozenset(rloc(i) for i in among)
        names = frozenset(f"n{i}" for i in among)
        return NodeView(
            eids=frozenset(f"192.0.2.{i}/32" for i in among),
            names=names,
            members=rlocs,
            peer_rlocs=rlocs,
            peer_names=names,
        )

    def agree(self, among: tuple[int, ...] = NODES) -> Callable[[], bool]:
        want = self.expected(among)
        return lambda: all(self.view(i) == want for i in among)

    @staticmethod
    def wait_until(
        predicate: Callable[[], object],
        timeout: float,
        what: str,
        interval: float = 0.05,
    ) -> float:
        """Poll predicate until true; return the seconds it took. OSError and
        ValueError (a node not answering yet) count as false."""
        start = time.monotonic()
        error: Exception | None = None
        while True:
            try:
                if predicate():
                    return time.monotonic() - start
                error = None
            except (OSError, ValueError) as exc:
                error = exc
            if time.monotonic() - start > timeout:
                extra = f" (last error: {error!r})" if error else ""
                raise TimeoutError(f"waited {timeout} s for {what}{extra}")
            time.sleep(interval)
