"""The TUN shell at its edges: without the data plane the control plane runs on."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from decent.net.tun import (
    DataPlaneUnavailable,
    TunSettings,
    TunShell,
    host_eids,
    open_tun,
    unavailable_reason,
)
from decent.net.udp import NodeShell, open_sockets
from decent.peer.dataplane import DataPlane
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import Eid
from tests.net.test_runtime import lab


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_host_eids_are_the_single_addresses() -> None:
    eids = [
        Eid.prefix("1.1.1.1/32"),
        Eid.prefix("10.0.0.0/8"),
        Eid.prefix("fd00::1/128"),
        Eid.name("n1"),
        Eid.sg("0.0.0.0/0", "233.252.1.1/32"),
    ]
    assert [str(a) for a in host_eids(eids)] == ["1.1.1.1", "fd00::1"]


@pytest.mark.skipif(unavailable_reason() is not None, reason="no TUN support here")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's capabilities")
def test_without_cap_net_admin_the_tun_is_refused_with_the_reason() -> None:
    code = (
        "from decent.net.tun import open_tun, DataPlaneUnavailable\n"
        "try:\n    open_tun('decent-t0')\n"
        "except DataPlaneUnavailable as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cannot create TUN 'decent-t0'" in out.stdout
    assert "CAP_NET_ADMIN" in out.stdout


def test_an_unopenable_device_name_is_a_clear_error() -> None:
    if unavailable_reason() is not None:
        pytest.skip("no TUN support here")
    with pytest.raises(DataPlaneUnavailable, match="cannot"):
        open_tun("bad/name")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's capabilities")
def test_an_unprivileged_node_says_why_the_data_plane_is_off_and_keeps_running(
    tmp_path: Path,
) -> None:
    web = _free_port(socket.SOCK_STREAM)
    control = _free_port(socket.SOCK_DGRAM)
    data = _free_port(socket.SOCK_DGRAM)
    config = tmp_path / "node.toml"
    config.write_text(
        f"""
[node]
name = "solo"
rloc = "127.0.0.1"
state_dir = "{tmp_path / "state"}"

[decent]
group = "233.252.1.1"
key = "k"
control_port = {control}
data_port = {data}

[[database]]
eid = "1.1.1.1/32"

[web]
listen = "127.0.0.1:{web}"

[dataplane]
enabled = true
tun = "decent-t1"
"""
    )
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                "setpriv",
                "--bounding-set=-all",
                "--inh-caps=-all",
                sys.executable,
                "-m",
                "decent",
                "run",
                "--config",
                str(config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with opener.open(f"http://127.0.0.1:{web}/api/node", timeout=1) as r:
                    health = json.loads(r.read())
                if health["health"]["ok"]:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        text = log.read_text()
        assert proc.poll() is None, text
        assert health is not None, text
        assert health["health"]["ok"], health
        assert health["dataplane"] == {
            "enabled": True,
            "running": False,
            "encrypt": "required",
        }
        assert "data plane off: cannot create TUN 'decent-t1'" in text
        assert "CAP_NET_ADMIN" in text
        assert "the control plane keeps running" in text
    finally:
        proc.terminate()
        proc.wait(10)


# ------------------------------------------- a failed start leaves the node be
def _no_tun_device(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: p != "/dev/net/tun" and real(p))


def _not_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")


def _no_privilege(monkeypatch: pytest.MonkeyPatch) -> None:
    """TUNSETIFF refused, as it is without CAP_NET_ADMIN."""
    if unavailable_reason() is not None:
        pytest.skip("no TUN support here")

    def refuse(*args: object) -> bytes:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(fcntl, "ioctl", refuse)


WHY: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    "not-linux": (_not_linux, "the TUN data plane needs Linux (this is darwin)"),
    "no-device": (_no_tun_device, "/dev/net/tun does not exist"),
    "no-privilege": (
        _no_privilege,
        "cannot create TUN 'hatun2': Operation not permitted (needs root or "
        "CAP_NET_ADMIN",
    ),
}


async def _until(check: Callable[[], bool]) -> None:
    """Run the loop an iteration at a time until check() (no clock)."""
    for _ in range(10_000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


@pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x loopback")
async def test_a_failed_start_leaves_the_nodes_data_port_reader_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    rloc = IPv4Address("127.0.0.55")
    control, data = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_DGRAM)
    cfg = decent_node_config(
        name="n1",
        rlocs=(rloc,),
        group=IPv4Address("233.252.1.1"),
        key=b"k",
        xtr_id=1,
        eids=(Eid.prefix("1.1.1.1/32"),),
        seeds=(),
        control_port=control,
        data_port=data,
    )
    node = Node(cfg, nonce=lambda: 1, now=loop.time())
    shell = NodeShell(node, open_sockets(rloc, control, data), loop)
    tun = TunShell(
        DataPlane(node, nonce=lambda: 1),
        TunSettings(name="hatun1"),
        loop,
        owner=shell,
        flush_control=shell.flush,
    )
    shell.start()
    counters = node.counters

    async def junk_is_counted(sender: socket.socket) -> None:
        before = counters["drop.decode-error"]
        sender.sendto(b"junk", (str(rloc), data))
        await _until(lambda: counters["drop.decode-error"] == before + 1)

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind((str(rloc), 0))
            await junk_is_counted(sender)
            with monkeypatch.context() as m:
                _not_linux(m)
                with pytest.raises(DataPlaneUnavailable, match="needs Linux"):
                    tun.start()
            # The node still reads its data port (replicated control traffic
            # arrives there): a failed start takes nothing of the node's.
            await junk_is_counted(sender)
            # Once the data plane did read it, close() gives it back.
            shell.data_drain = tun._drain_data  # what a started one sets
            tun.close()
            await junk_is_counted(sender)
    finally:
        shell.close()


@pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x loopback")
@pytest.mark.parametrize("why", sorted(WHY))
async def test_without_a_data_plane_the_node_says_why_and_still_hears_its_peers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    why: str,
) -> None:
    setup, text = WHY[why]
    setup(monkeypatch)
    async with lab(tmp_path, "127.0.0.5") as the_lab:
        the_lab.start(1)
        the_lab.start(2, extra='[dataplane]\nenabled = true\ntun = "hatun2"')
        want = {"[0]1.1.1.1/32", "[0]2.2.2.2/32", "[0]'n1'", "[0]'n2'"}

        async def converged() -> bool:
            node = await the_lab.api(2, "/api/node")
            return bool(
                want <= await the_lab.eids(2)
                and want <= await the_lab.eids(1)
                # Replicated control traffic reaches n2 on its data port.
                and node["counters"].get("rx.replicated", 0) > 0
            )

        await the_lab.until(converged)
        node = await the_lab.api(2, "/api/node")
        assert node["dataplane"] == {
            "enabled": True,
            "running": False,
            "encrypt": "required",
        }
        assert node["health"]["ok"]
    off = [r.getMessage() for r in caplog.records if "data plane off" in r.message]
    assert len(off) == 1, off
    assert off[0].startswith(f"data plane off: {text}")
    assert off[0].endswith("; the control plane keeps running")
