"""The state directory on a real full disk and with no descriptor left: the
node keeps serving LISP, logs the trouble without flooding, and retries."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import aiohttp
import pytest

from decent.client import ClientError, lookup
from decent.config import load_config
from decent.daemon import run_node
from decent.net.persist import NONCE_BLOCK, StateDir
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import Eid
from tests.net.test_runtime import _free_port, write_config

linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="needs tmpfs and 127.0.0.x loopback"
)
#: Generous: a condition not met by then is a failure, not a slow machine.
WITHIN = 60.0


def _mount(where: Path, options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) here")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")


def _unmount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, the place a test fills up."""
    where = tmp_path / "state1"
    _mount(where, "size=256k")
    try:
        yield where
    finally:
        _unmount(where)


def _fill(disk: Path, name: str = "filler") -> Path:
    """Write to disk/name until the disk is full."""
    path = disk / name
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(bytes(4096))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return path


def _node() -> Node:
    ip = IPv4Address("198.18.45.1")
    cfg = decent_node_config(
        name="n1",
        rlocs=(ip,),
        group=IPv4Address("233.252.1.1"),
        key=b"k",
        xtr_id=1,
        eids=(Eid.prefix("10.9.0.0/16"),),
        seeds=(),
    )
    return Node(cfg, nonce=lambda: 7)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "decent.state" and r.levelno >= logging.WARNING
    ]


@linux_only
def test_a_full_disk_fails_the_save_quietly_and_it_works_once_space_is_freed(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = StateDir(small_disk)
    state.prepare()
    ident = state.load_identity()
    node = _node()
    assert state.save_snapshot(node, 0.0, 5000.0)
    filler = _fill(small_disk)
    caplog.set_level(logging.INFO, logger="decent.state")
    for _ in range(200):
        assert state.save_snapshot(node, 0.0, 5000.0) is False
    # One line for two hundred failed attempts (within a minute).
    (warning,) = _warnings(caplog)
    assert str(state.snapshot_file) in warning
    assert "No space left on device (ENOSPC)" in warning
    assert sorted(small_disk.glob("*.tmp")) == []
    # The nonce reservation stays at what the disk holds until it is written.
    assert state.keep_nonces_reserved(ident, 3 * NONCE_BLOCK) is False
    assert ident.nonce_reserved == NONCE_BLOCK
    filler.unlink()
    caplog.clear()
    assert state.save_snapshot(node, 0.0, 5000.0)
    assert state.keep_nonces_reserved(ident, 3 * NONCE_BLOCK)
    assert _warnings(caplog) == []
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    assert StateDir(small_disk).load_identity().start_nonce > 3 * NONCE_BLOCK
    assert sorted(small_disk.glob("*.tmp")) == []


_NO_FD_LEFT = textwrap.dedent(
    """
    import errno, logging, os, resource, sys
    from pathlib import Path
    from tests.net.test_persist_faults import _node
    from decent.net.persist import StateDir

    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s"
    )
    state = StateDir(Path(sys.argv[1]))
    state.prepare()
    ident = state.load_identity()
    node = _node()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Low, but above what is open now, so the loop below is what exhausts it.
    low = len(os.listdir("/proc/self/fd")) + 16
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE, exc
    assert held
    failed = [state.save_snapshot(node, 0.0, 5000.0) for _ in range(20)]
    failed.append(state.keep_nonces_reserved(ident, 10 * ident.nonce_reserved))
    for fd in held[:8]:
        os.close(fd)
    worked = [
        state.save_snapshot(node, 0.0, 5000.0),
        state.keep_nonces_reserved(ident, 10 * ident.nonce_reserved),
    ]
    print("RESULT", failed, worked)
    """
)


@linux_only
def test_no_descriptor_left_fails_the_save_without_raising(tmp_path: Path) -> None:
    # In a child process, so this test runner keeps its own descriptors.
    done = subprocess.run(
        [sys.executable, "-c", _NO_FD_LEFT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == f"RESULT {[False] * 21} [True, True]"
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 2  # one per file, not one per attempt
    assert all("Too many open files (EMFILE)" in line for line in warnings)
    recovered = [line for line in lines if line.startswith("INFO")]
    assert len(recovered) == 2
    assert sorted(tmp_path.glob("*.tmp")) == []


@linux_only
def test_a_read_only_state_dir_is_refused_at_start(tmp_path: Path) -> None:
    where = tmp_path / "ro"
    _mount(where, "size=64k,ro")
    try:
        with pytest.raises(OSError, match="Read-only") as caught:
            StateDir(where).prepare()
        assert caught.value.errno == errno.EROFS
    finally:
        _unmount(where)


async def _until_up(web: int, task: asyncio.Task[int]) -> None:
    deadline = asyncio.get_running_loop().time() + WITHIN
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            assert not task.done(), task.result()
            try:
                async with session.get(f"http://127.0.0.1:{web}/api/node") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the node did not come up")


@linux_only
async def test_a_leftover_tmp_that_fills_the_disk_is_removed_and_the_node_starts(
    tmp_path: Path, small_disk: Path
) -> None:
    """The reported chain: a failed write's .tmp kept the disk full, and the
    next start, unable to write its identity, refused to run."""
    leftover = _fill(small_disk, "registrations.msgpack.tmp")
    web = _free_port()
    cfg = load_config(write_config(tmp_path, 1, base="127.0.73.", web=web, seeds=[]))
    assert cfg.state_dir == small_disk
    stop = asyncio.Event()
    task = asyncio.create_task(run_node(cfg, stop))
    try:
        await _until_up(web, task)
        assert not leftover.exists()
        assert (small_disk / "identity.msgpack").exists()
    finally:
        stop.set()
        assert await task == 0
    assert (small_disk / "registrations.msgpack").exists()


def _lookup_until_answered(rloc: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            reply = lookup(Eid.prefix("1.1.1.1/32"), IPv4Address(rloc), timeout=1.0)
        except ClientError:
            continue
        assert [r["eid"] for r in reply["records"]] == ["[0]1.1.1.1/32"]
        return
    raise AssertionError(f"no Map-Reply from the node:\n{log.read_text()}")


def _wait_for(what: str, log: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WITHIN
    while what not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {what!r} in:\n{log.read_text()}"
        time.sleep(0.05)


@linux_only
def test_a_node_on_a_full_disk_keeps_serving_and_stops_cleanly(
    tmp_path: Path, small_disk: Path
) -> None:
    _fill(small_disk)
    web = _free_port()
    path = write_config(tmp_path, 1, base="127.0.74.", web=web, seeds=[])
    log = tmp_path / "n1.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "decent", "run", "--config", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        snapshot = "WARNING decent.state: cannot write the registration snapshot"
        reservation = "WARNING decent.state: cannot write the nonce reservation"
        _wait_for(snapshot, log, proc)
        _wait_for(reservation, log, proc)
        # LISP keeps serving: a Map-Request for its EID is answered.
        _lookup_until_answered("127.0.74.1", proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WITHIN) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
    # Once per file, however many saves failed (the one at shutdown too).
    assert text.count(snapshot) == 1, text
    assert text.count(reservation) == 1, text
    assert "No space left on device (ENOSPC)" in text
    assert sorted(small_disk.glob("*.tmp")) == []
