"""Real UDP on loopback: nodes run by run_node converge, leave and restore."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from decent.config import load_config
from decent.daemon import run_node


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(
    tmp: Path, i: int, *, base: str, web: int, seeds: list[str], extra: str = ""
) -> Path:
    path = tmp / f"n{i}.toml"
    path.write_text(
        f"""
[node]
name = "n{i}"
rloc = "{base}{i}"
state_dir = "{tmp}/state{i}"
log_level = "warning"
[decent]
group = "233.252.1.1"
seeds = {json.dumps(seeds)}
key = "test-secret"
ttl = 1
{extra}
[[database]]
eid = "{i}.{i}.{i}.{i}/32"
[web]
listen = "127.0.0.1:{web}"
"""
    )
    return path


class Lab:
    def __init__(self, tmp: Path, base: str) -> None:
        self.tmp, self.base = tmp, base
        self.tasks: dict[int, tuple[asyncio.Task[int], asyncio.Event]] = {}
        self.ports: dict[int, int] = {}

    def start(self, i: int, extra: str = "") -> None:
        self.ports.setdefault(i, _free_port())
        seeds = [] if i == 1 else [f"{self.base}1"]
        cfg = load_config(
            write_config(
                self.tmp, i, base=self.base, web=self.ports[i], seeds=seeds, extra=extra
            )
        )
        stop = asyncio.Event()
        self.tasks[i] = (asyncio.create_task(run_node(cfg, stop)), stop)

    async def stop(self, i: int) -> None:
        task, stop = self.tasks.pop(i)
        stop.set()
        assert await task == 0

    def crash(self, i: int) -> None:
        """Cancel without the graceful leave, as a SIGKILL would."""
        task, _ = self.tasks.pop(i)
        task.cancel()

    async def api(self, i: int, path: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.ports[i]}{path}") as resp,
        ):
            return await resp.json()

    async def until(self, check: Callable[[], Any], within: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                if await check():
                    return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.05)

    async def eids(self, i: int) -> set[str]:
        return {s["eid"] for s in await self.api(i, "/api/sites")}


@asynccontextmanager
async def lab(tmp_path: Path, base: str) -> AsyncIterator[Lab]:
    the_lab = Lab(tmp_path, base)
    try:
        yield the_lab
    finally:
        for i in list(the_lab.tasks):
            await the_lab.stop(i)


ALL = {
    "[0]'n1'",
    "[0]'n2'",
    "[0]'n3'",
    "[0]1.1.1.1/32",
    "[0]2.2.2.2/32",
    "[0]3.3.3.3/32",
    "[0](0.0.0.0/0, 233.252.1.1/32)",
}


@pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x loopback")
async def test_three_nodes_converge_leave_and_restore(tmp_path: Path) -> None:
    async with lab(tmp_path, "127.0.0.3") as the_lab:
        for i in (3, 2, 1):  # the seed starts last: the others must retry
            the_lab.start(i)

        async def converged() -> bool:
            return all([await the_lab.eids(i) == ALL for i in (1, 2, 3)])

        await the_lab.until(converged)
        peers = await the_lab.api(2, "/api/peers")
        assert [(p["rloc"], p["name"]) for p in peers] == [
            ("127.0.0.31", "n1"),
            ("127.0.0.32", "n2"),
            ("127.0.0.33", "n3"),
        ]
        health = await the_lab.api(1, "/healthz")
        assert health == {"ok": True, "status": "ok", "members": 3}

        await the_lab.stop(3)  # graceful: peers drop n3 at once

        async def n3_gone() -> bool:
            gone = ALL - {"[0]'n3'", "[0]3.3.3.3/32"}
            return all([await the_lab.eids(i) == gone for i in (1, 2)])

        await the_lab.until(n3_gone, within=3.0)

        the_lab.crash(2)
        await asyncio.sleep(0.1)
        # Restarted with a long period, it serves from its snapshot at once.
        the_lab.start(2, extra="register_interval = 600")
        await the_lab.until(lambda: _has(the_lab, 2, "[0]1.1.1.1/32"), within=5.0)
        node = await the_lab.api(2, "/api/node")
        sites = {s["eid"]: s for s in await the_lab.api(2, "/api/sites")}
        # Registered before this process started: it came from the snapshot.
        assert sites["[0]1.1.1.1/32"]["last_registered_at"] < node["started_at"]
        assert 0 < sites["[0]1.1.1.1/32"]["ttl_s"] < 60


async def _has(the_lab: Lab, i: int, eid: str) -> bool:
    return eid in await the_lab.eids(i)


@asynccontextmanager
async def n2_process(
    the_lab: Lab,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    """n1 in-process and n2 as a real `decent run` process seeded with it,
    once n1 holds n2's EID; n2 is killed at the end if still running."""
    the_lab.start(1)
    base = the_lab.base
    config = write_config(
        the_lab.tmp, 2, base=base, web=_free_port(), seeds=[f"{base}1"]
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "decent",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await the_lab.until(lambda: _has(the_lab, 1, "[0]2.2.2.2/32"), within=15)
        yield proc, config
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x loopback")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_a_signal_makes_a_node_deregister_with_ttl_0(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGTERM (docker stop, systemd) and SIGINT (Ctrl-C) both leave at once."""
    async with (
        lab(tmp_path, "127.0.0.7") as the_lab,
        n2_process(the_lab) as (proc, _),
    ):
        # Its signal handlers are in place before it registers.
        proc.send_signal(sig)
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, out.decode()

        async def n2_gone() -> bool:
            eids = await the_lab.eids(1)
            return not eids & {"[0]2.2.2.2/32", "[0]'n2'"}

        # The TTL is a minute: gone this soon means a TTL-0 deregistration.
        await the_lab.until(n2_gone, within=3.0)
        node = await the_lab.api(1, "/api/node")
        assert node["counters"]["registration.removed"] >= 2


@pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x loopback")
async def test_sighup_applies_the_database_at_once_and_keeps_a_broken_file_out(
    tmp_path: Path,
) -> None:
    """An operator edits [[database]] and sends SIGHUP: peers see the new
    EID and lose the removed one long before a registration period (60 s)
    or the TTL (1 min) could have done it; a file that no longer loads
    changes nothing and the node keeps running."""
    async with (
        lab(tmp_path, "127.0.0.8") as the_lab,
        n2_process(the_lab) as (proc, config),
    ):
        text = config.read_text()
        config.write_text(
            text.replace('eid = "2.2.2.2/32"', 'eid = "20.20.0.0/16"\nttl = 2')
            .replace("ttl = 1\n", "ttl = 1\nregister_interval = 30\n")
            .replace('log_level = "warning"', 'log_level = "info"')
        )
        proc.send_signal(signal.SIGHUP)

        async def moved() -> bool:
            eids = await the_lab.eids(1)
            return "[0]20.20.0.0/16" in eids and "[0]2.2.2.2/32" not in eids

        await the_lab.until(moved, within=3.0)
        sites = {s["eid"]: s for s in await the_lab.api(1, "/api/sites")}
        assert sites["[0]20.20.0.0/16"]["ttl_s"] <= 120
        assert "[0]'n2'" in sites  # the name and membership stay

        config.write_text("[node\nbroken")
        proc.send_signal(signal.SIGHUP)
        assert proc.stdout is not None
        seen: list[str] = []
        while not seen or "reload refused" not in seen[-1]:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert line, "".join(seen)
            seen.append(line.decode())
        assert await moved()
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, out.decode()
        log = "".join(seen) + out.decode()
        assert "register_interval changed; restart the node for that" in log, log
        assert "reload: 1 EIDs added or changed, 1 removed" in log, log
        assert "reload refused, the running config stays" in log, log
