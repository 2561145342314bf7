"""The command line: exit codes and messages of `decent run` and `decent decode`."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.net.test_runtime import write_config


def _decent(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "decent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bad_config_exits_nonzero_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1, base="127.0.0.4", web=18081, seeds=[])
    path.write_text(path.read_text().replace('"233.252.1.1"', '"10.0.0.1"'))
    result = _decent("run", "--config", str(path))
    assert result.returncode == 2
    assert "[decent] group: 10.0.0.1 is not a multicast address" in result.stderr


def test_port_in_use_exits_nonzero_naming_the_key(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.41", 4342))
        path = write_config(tmp_path, 1, base="127.0.0.4", web=18082, seeds=[])
        result = _decent("run", "--config", str(path))
    assert result.returncode == 2
    assert "control_port" in result.stderr
    assert "use an address of this host and free ports" in result.stderr


def test_decode_prints_a_message_or_explains() -> None:
    ok = _decent(
        "decode", "20000001 b1b2b3b4 b5b6b7b8 0000000f 00102000 00000001 0a030000"
    )
    assert ok.returncode == 0
    assert "MapReply" in ok.stdout
    bad = _decent("decode", "2000")
    assert bad.returncode == 1
    assert "not a valid LISP control message" in bad.stderr
    assert _decent("decode", "xyz").returncode == 2
