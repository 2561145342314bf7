"""`[node] log_level`/`log_format` and `decent run --log-format`: validated
keys, and a real node writing JSON (or text, when the flag says so)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from decent.cli import build_parser
from decent.config import ConfigError, load_config
from tests.net.test_logtext import REPR, TEXT_LINE
from tests.net.test_runtime import write_config

#: node 1 of these tests is 127.0.0.171 (no other test uses it).
BASE = "127.0.0.17"
RLOC = f"{BASE}1"
#: However slow the machine, a node is up and has logged within this.
PATIENCE = 30.0
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(tmp_path: Path, node_keys: str) -> Path:
    path = write_config(tmp_path, 1, base=BASE, web=_free_tcp_port(), seeds=[])
    text = path.read_text().replace('log_level = "warning"\n', node_keys + "\n")
    path.write_text(text)
    return path


def test_log_format_and_level_load(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, 'log_level = "debug"\nlog_format = "json"'))
    assert (cfg.log_level, cfg.log_format) == ("debug", "json")
    cfg = load_config(_config(tmp_path, ""))
    assert (cfg.log_level, cfg.log_format) == ("info", "text")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            'log_format = "xml"',
            r"\[node\] log_format: 'xml' is no format; "
            r'use "text" \(one line per event\) or "json" \(for log shippers\)',
        ),
        (
            'log_level = "loud"',
            r"\[node\] log_level: 'loud' is no level; "
            r'use one of "debug", "info", "warning", "error", "critical"',
        ),
        ("log_format = 1", r"\[node\] log_format: expected str, got int"),
    ],
)
def test_a_bad_log_key_names_file_key_and_fix(
    tmp_path: Path, keys: str, message: str
) -> None:
    path = _config(tmp_path, keys)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_run_takes_log_format() -> None:
    parser = build_parser()
    assert parser.parse_args(["run"]).log_format is None
    assert parser.parse_args(["run", "--log-format", "json"]).log_format == "json"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--log-format", "xml"])


def _wait_for(
    proc: subprocess.Popen[bytes], log: Path, found: Callable[[list[str]], bool]
) -> list[str]:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines()
        if found(lines):
            return lines
        assert proc.poll() is None, "\n".join(lines)
        time.sleep(0.05)
    raise AssertionError("not logged in time:\n" + log.read_text())


def _run(path: Path, *flags: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = path.with_suffix(".log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "decent", "run", "--config", str(path), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)


@pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x loopback")
def test_a_node_logs_json_lines_with_the_event_fields(tmp_path: Path) -> None:
    proc, log = _run(_config(tmp_path, 'log_level = "info"\nlog_format = "json"'))
    try:

        def up(lines: list[str]) -> bool:
            return any('"message": "node n1 up' in line for line in lines)

        _wait_for(proc, log, up)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            junk.bind(("127.0.0.1", 0))
            junk.sendto(b"not lisp", (RLOC, 4342))

            def dropped(lines: list[str]) -> bool:
                return any('"event": "message-dropped"' in line for line in lines)

            _wait_for(proc, log, dropped)
            port = junk.getsockname()[1]
    finally:
        _stop(proc)
    objects = [json.loads(line) for line in log.read_text().splitlines()]
    for obj in objects:
        assert {"time", "level", "logger", "event", "message"} <= set(obj), obj
        assert TIME.fullmatch(obj["time"]), obj
        assert not REPR.search(obj["message"]), obj
    (drop,) = [o for o in objects if o["event"] == "message-dropped"]
    assert drop["level"] == "warning"
    assert (drop["peer"], drop["peer_port"], drop["reason"]) == (
        "127.0.0.1",
        port,
        "decode-error",
    )
    assert drop["message"] == f"message from 127.0.0.1:{port} dropped: decode-error"
    assert objects[-1]["message"] == "node n1 stopped"
    assert objects[-1]["event"] is None


@pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x loopback")
def test_the_flag_wins_over_the_config_file(tmp_path: Path) -> None:
    path = _config(tmp_path, 'log_level = "info"\nlog_format = "json"')
    proc, log = _run(path, "--log-format", "text")
    try:
        lines = _wait_for(
            proc, log, lambda lines: any(": node n1 up" in x for x in lines)
        )
    finally:
        _stop(proc)
    assert lines
    for line in log.read_text().splitlines():
        assert TEXT_LINE.fullmatch(line), line
