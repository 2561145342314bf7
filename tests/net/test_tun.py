"""The TUN shell at its edges: without the data plane the control plane runs on."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from decent.net.tun import DataPlaneUnavailable, host_eids, open_tun, unavailable_reason
from decent.wire import Eid


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
        assert health["dataplane"] == {"enabled": True, "running": False}
        assert "data plane off: cannot create TUN 'decent-t1'" in text
        assert "CAP_NET_ADMIN" in text
        assert "the control plane keeps running" in text
    finally:
        proc.terminate()
        proc.wait(10)
