"""`decent init`: --dataplane, the commented [dataplane] section, mode 0600,
and example addresses a user may copy safely."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

from decent.config import load_config


def decent(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    def set_umask() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        [sys.executable, "-m", "decent", *args],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=set_umask,  # only os.umask, before exec
    )


def _init(path: Path, *more: str, umask: int | None = None) -> str:
    made = decent(
        "init",
        "--name",
        "n1",
        "--rloc",
        "192.0.2.5",
        "-o",
        str(path),
        *more,
        umask=umask,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout


def test_dataplane_flag_turns_the_data_plane_on(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    said = _init(path, "--dataplane", "--eid", "192.0.2.1/32")
    assert "the data plane is on: run it as root" in said
    text = path.read_text()
    assert "\n[dataplane]\nenabled = true\n" in text
    assert load_config(path).dataplane is True


def test_without_it_the_section_is_there_commented_out(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    _init(path)
    text = path.read_text()
    assert "\n# [dataplane]\n# enabled = true\n" in text
    assert "routed into the overlay" in text
    assert load_config(path).dataplane is False
    # What the comment says to do works: uncomment both lines.
    path.write_text(
        text.replace("# [dataplane]\n# enabled = true", "[dataplane]\nenabled = true")
    )
    assert load_config(path).dataplane is True


def test_the_file_is_0600_from_the_start_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    _init(path, umask=0)
    assert path.stat().st_mode & 0o777 == 0o600
    # Overwriting a file others could read, with a stale temporary file of
    # a killed run beside it: the new file is 0600 all the same.
    path.chmod(0o644)
    stale = tmp_path / ".node.toml.tmp"
    stale.write_text("old")
    stale.chmod(0o644)
    _init(path, "--force", "--dataplane", umask=0)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "enabled = true" in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.toml"]


def _ipv4s(text: str) -> list[str]:
    return re.findall(r"(?<![\d.])(\d+\.\d+\.\d+\.\d+)(?![\d.])", text)


def test_examples_use_documentation_or_private_addresses(tmp_path: Path) -> None:
    """A user copies examples onto a real host: an EID such as 1.1.1.1 would
    route that public address (a DNS resolver) into the overlay."""
    path = tmp_path / "node.toml"
    _init(path)
    texts = [path.read_text()]
    for command in (("init",), ("lookup",), ("hosts",)):
        done = decent(*command, "--help")
        assert done.returncode == 0, done.stderr
        texts.append(done.stdout)
    found = [a for t in texts for a in _ipv4s(t)]
    assert found  # the check looks at something
    for text in found:
        addr = ip_address(text)
        assert not addr.is_global or addr.is_multicast, text
