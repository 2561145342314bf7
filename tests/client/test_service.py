"""`decent service`: the packaged unit, installed into a throw-away root and
checked by systemd's own verifier. That the node reloads on SIGHUP (the
unit's ExecReload) is tested in tests/net/test_runtime.py
(test_sighup_applies_the_database_at_once_and_keeps_a_broken_file_out)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from decent.client.service import _quote, entry_point, packaged_unit, unit_text

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or ""


def decent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "decent", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_packaged_unit_is_hardened_and_reloads_with_sighup() -> None:
    unit = _directives(packaged_unit())
    assert unit["ExecStart"] == [
        "/usr/local/bin/decent run --config /etc/decent/node.toml"
    ]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_ADMIN CAP_NET_RAW"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_ADMIN CAP_NET_RAW"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert unit[key] == ["yes"], key
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["StateDirectory"] == ["decent"]
    assert unit["DeviceAllow"] == ["/dev/net/tun rw"]
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_NETLINK AF_UNIX"]
    # What the data plane needs stays: /proc/sys/net writable (rp_filter),
    # the TUN device visible, the host's network.
    for key in ("ProtectKernelTunables", "PrivateDevices", "PrivateNetwork"):
        assert key not in unit, key


def test_the_unit_starts_this_installs_decent(tmp_path: Path) -> None:
    exe = entry_point()
    assert Path(exe[0]).is_file()
    if len(exe) == 1:  # the console script of this interpreter
        assert Path(exe[0]).parent == Path(sysconfig.get_path("scripts"))
    unit = _directives(unit_text("/etc/decent/node.toml"))
    assert unit["ExecStart"] == [
        " ".join(_quote(a) for a in exe) + " run --config /etc/decent/node.toml"
    ]
    # A home directory in a path keeps it readable; a state_dir elsewhere
    # is made writable.
    odd = unit_text("/root/my node.toml", ["/opt/venv/bin/decent"], "/srv/decent")
    lines = _directives(odd)
    assert lines["ExecStart"] == [
        '/opt/venv/bin/decent run --config "/root/my node.toml"'
    ]
    assert lines["ProtectHome"] == ["read-only"]
    assert lines["ReadWritePaths"] == ["/srv/decent"]
    assert _quote("50%$x") == "50%%$$x"


def test_install_writes_unit_and_man_page_into_a_root(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "decent" / "node.toml"
    made = decent("init", "--name", "svc", "--rloc", "192.0.2.5", "-o", str(conf))
    assert made.returncode == 0, made.stderr
    done = decent("service", "install", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    unit_path = tmp_path / "etc" / "systemd" / "system" / "decent.service"
    man_path = tmp_path / "usr" / "local" / "share" / "man" / "man1" / "decent.1"
    assert done.stdout.splitlines()[:2] == [
        f"wrote {unit_path}",
        f"wrote {man_path}",
    ]
    assert f"systemctl --root={tmp_path} enable decent" in done.stdout
    assert "systemctl reload decent" in done.stdout
    assert unit_path.stat().st_mode & 0o777 == 0o644
    assert unit_path.read_text() == decent("service", "print").stdout
    assert man_path.read_text().startswith(".TH DECENT 1")
    assert sorted(p.name for p in unit_path.parent.iterdir()) == ["decent.service"]
    # Without a config there, it says how to make one.
    bare = tmp_path / "bare"
    again = decent("service", "install", "--root", str(bare))
    assert "there is no /etc/decent/node.toml yet: write one with" in again.stdout
    relative = decent("service", "print", "--config", "node.toml")
    assert relative.returncode == 2
    assert "give an absolute path" in relative.stderr


@pytest.mark.skipif(
    not SYSTEMD_ANALYZE,
    reason="systemd-analyze is not installed (apt install systemd)",
)
def test_systemd_analyze_verifies_the_installed_unit(tmp_path: Path) -> None:
    done = decent("service", "install", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "etc" / "systemd" / "system" / "decent.service"
    man = tmp_path / "usr" / "local" / "share" / "man"
    # `verify` also runs `man` for Documentation=man:decent(1): the page
    # installed into the root answers it.
    check = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MANPATH": str(man)},
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    assert "decent.service" not in check.stderr, check.stderr
    security = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    # Its own verdict on the hardening (systemd rates 0 best, 10 worst).
    assert "Overall exposure level for decent.service" in security.stdout
    assert security.stdout.rstrip().split()[-2] in ("OK", "SAFE"), security.stdout
