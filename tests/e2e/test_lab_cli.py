"""`decent lab` as a person runs it: progress, --keep, removing only what it
made, refused starts that leave nothing, and the message without root."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from decent.lab import LabError, NetnsLab, netns_unavailable
from tests.e2e.conftest import PREFIX

pytestmark = pytest.mark.e2e

NET = os.environ.get("DECENT_E2E_NET", "198.18")
NEEDS_NETNS = pytest.mark.skipif(
    netns_unavailable() is not None, reason="needs a namespace lab"
)


_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
#: `decent lab` with the euid check answering "not root".
_AS_USER = """
import os, sys
os.geteuid = lambda: 1000
from decent.lab.main import lab_main
sys.exit(lab_main(sys.argv[1:]))
"""


class Lab:
    """`python -m decent lab ARGS` with its stdout read line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, user: str = ""):
        """`user`: "" as this user; "setpriv" as nobody; "euid" with
        os.geteuid() answering 1000 (where nobody cannot run this Python)."""
        argv = [sys.executable, "-m", "decent", "lab", *args]
        if user == "setpriv":
            argv = [*_NOBODY, *argv]
        elif user == "euid":
            argv = [sys.executable, "-c", _AS_USER, *args]
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, marker: str, timeout: float = 120.0) -> list[str]:
        """Lines up to the one containing marker (all of them kept in seen)."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"decent lab ended ({self.proc.poll()}): {got}")
            got.append(line)
            self.seen.append(line)
            if marker in line:
                return got
        raise AssertionError(f"no {marker!r} from decent lab: {got}")

    def rest(self, timeout: float = 60.0) -> list[str]:
        """Every line until it exits; its exit status is in proc."""
        self.proc.wait(timeout)
        self._reader.join(10)
        out = []
        while (line := self.lines.get(timeout=5)) is not None:
            out.append(line)
        self.seen += out
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _ip(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _namespaces(prefix: str) -> list[str]:
    out = _ip("netns", "list").stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(f"{prefix}-"))


@pytest.fixture
def foreign() -> Iterator[list[str]]:
    """Namespaces a person made (the test deletes them, never the lab)."""
    made: list[str] = []
    yield made
    for ns in made:
        _ip("netns", "del", ns)


def _purge(prefix: str) -> None:
    """After a failed test: leave nothing of the prefix for the next run."""
    for ns in _namespaces(prefix):
        for pid in _ip("netns", "pids", ns).stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", ns)
    _ip("link", "del", f"{prefix}-h")
    Path(f"/run/decent-lab/{prefix}.json").unlink(missing_ok=True)


@NEEDS_NETNS
def test_progress_keep_and_ctrl_c_spare_a_namespace_it_did_not_make(
    foreign: list[str],
) -> None:
    prefix, subnet = f"{PREFIX}kp", f"{NET}.97.0/24"
    mine = f"{prefix}-n99"  # a person's namespace, made to join the lab
    _ip("netns", "add", mine, check=True)
    foreign.append(mine)
    lab = Lab("--nodes", "4", "--prefix", prefix, "--subnet", subnet, "--keep")
    kept: Path | None = None
    try:
        shown = lab.until("Ctrl-C stops every node")
        # Progress comes first, step by step, before the summary.
        summary = next(k for k, line in enumerate(shown) if "converged in" in line)
        steps = shown[:summary]
        assert any(
            f"building 4 namespaces {prefix}-n1..{prefix}-n4" in s for s in steps
        )
        for i in (1, 2, 3, 4):
            assert any(s.startswith(f"n{i} started") for s in steps), steps
        waits = [s for s in steps if s.startswith("waiting for the nodes to agree")]
        assert waits, steps
        assert waits[-1].endswith(
            "4/4 members joined, 4/4 nodes hold every registration"
        ), waits
        assert _namespaces(prefix) == sorted(
            [f"{prefix}-br", mine, *(f"{prefix}-n{i}" for i in (1, 2, 3, 4))]
        )
        state = json.loads(Path(f"/run/decent-lab/{prefix}.json").read_text())
        assert mine not in state["namespaces"]
        lab.proc.send_signal(signal.SIGINT)
        rest = lab.rest()
        assert lab.proc.returncode == 0, rest
        assert rest[-1] == "lab removed", rest
        kept_line = next(line for line in rest if line.startswith("kept the lab's"))
        kept = Path(kept_line.split(" in ", 1)[1].split(":", 1)[0])
        for i in (1, 2, 3, 4):
            log = kept / f"n{i}" / "node.log"
            assert log.stat().st_size > 0, log
            assert str(kept / "n1" / "node.log") in kept_line
        # Everything the lab made is gone; the person's namespace is not.
        assert _namespaces(prefix) == [mine]
        assert _ip("link", "show", f"{prefix}-h").returncode != 0
        assert not Path(f"/run/decent-lab/{prefix}.json").exists()
    finally:
        lab.close()
        if lab.proc.returncode:
            _purge(prefix)
        if kept is not None:
            shutil.rmtree(kept, ignore_errors=True)


_HOLD = """
import sys, time
from decent.lab import NetnsLab
lab = NetnsLab(sys.argv[1], sys.argv[2], nodes=2, workdir=None)
lab.create()
print("built", lab.workdir, flush=True)
time.sleep(600)
"""


@NEEDS_NETNS
def test_a_killed_labs_leftovers_go_and_only_they(
    tmp_path: Path, foreign: list[str]
) -> None:
    """A lab killed before its teardown leaves namespaces and its record;
    while it runs, another lab of its prefix is refused; once it is dead,
    the next lab removes exactly what the record lists."""
    prefix, subnet = f"{PREFIX}lo", f"{NET}.96.0/24"
    mine = f"{prefix}-n99"
    _ip("netns", "add", mine, check=True)
    foreign.append(mine)
    held = subprocess.Popen(
        [sys.executable, "-c", _HOLD, prefix, subnet],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert held.stdout is not None
        line = held.stdout.readline()
        assert line.startswith("built"), line
        left_workdir = Path(line.split()[1])
        made = [f"{prefix}-br", f"{prefix}-n1", f"{prefix}-n2"]
        assert _namespaces(prefix) == sorted([*made, mine])
        second = NetnsLab(prefix, subnet, nodes=2, workdir=tmp_path / "second")
        with pytest.raises(
            LabError, match=f"in use by a running lab \\(pid {held.pid}\\)"
        ):
            second.__enter__()
        assert _namespaces(prefix) == sorted([*made, mine])
        held.kill()
        held.wait()
        third = NetnsLab(prefix, subnet, nodes=1, workdir=tmp_path / "third")
        said: list[str] = []
        third.progress = said.append
        with third:
            assert any("left behind" in s and f"{prefix}-n2" in s for s in said), said
            # n2 was the killed lab's; this one has one node.
            assert _namespaces(prefix) == sorted([f"{prefix}-br", f"{prefix}-n1", mine])
        assert _namespaces(prefix) == [mine]
        shutil.rmtree(left_workdir, ignore_errors=True)
    finally:
        if held.poll() is None:
            held.kill()
            held.wait()
        assert held.stdout is not None
        held.stdout.close()
        if _namespaces(prefix) != [mine]:
            for ns in _namespaces(prefix):
                if ns != mine:
                    for pid in _ip("netns", "pids", ns).stdout.split():
                        os.kill(int(pid), signal.SIGKILL)
                    _ip("netns", "del", ns)
        _ip("link", "del", f"{prefix}-h")
        Path(f"/run/decent-lab/{prefix}.json").unlink(missing_ok=True)


def _empty_tmp(tmp_path: Path) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)  # the non-root runs write here too
    return tmp


@NEEDS_NETNS
def test_refused_starts_leave_no_temp_folder(
    tmp_path: Path, foreign: list[str]
) -> None:
    prefix = f"{PREFIX}rf"
    taken = f"{prefix}-n1"
    _ip("netns", "add", taken, check=True)
    foreign.append(taken)
    tmp = _empty_tmp(tmp_path)
    env = {"TMPDIR": str(tmp)}
    cases = [
        (["--nodes", "0"], "a lab has 1 to 99 nodes"),
        (["--subnet", f"{NET}.95.0/25"], "use an IPv4 /24 or larger"),
        (["--prefix", "Bad_Prefix"], "use 1 to 13 of a-z"),
        # Someone's namespace where the lab would put n1: left alone.
        (
            ["--prefix", prefix, "--subnet", f"{NET}.95.0/24"],
            f"namespace {taken} exists and no lab of prefix {prefix} made it",
        ),
    ]
    for args, why in cases:
        lab = Lab(*args, env=env)
        try:
            out = "\n".join(lab.rest())
        finally:
            lab.close()
        assert lab.proc.returncode != 0, (args, out)
        assert why in out, (args, out)
        assert list(tmp.iterdir()) == [], (args, out)
    assert _namespaces(prefix) == [taken]


def _as_nobody_works() -> bool:
    probe = subprocess.run(
        [*_NOBODY, sys.executable, "-c", "import decent.lab"],
        capture_output=True,
        check=False,
    )
    return (
        os.geteuid() == 0
        and shutil.which("setpriv") is not None
        and not probe.returncode
    )


#: As a real user (nobody, by setpriv) where this Python runs for nobody;
#: with the euid check patched to say "not root" everywhere else.
AS_USER = pytest.mark.parametrize(
    "user",
    [
        pytest.param(
            "setpriv",
            marks=pytest.mark.skipif(
                os.geteuid() != 0
                or shutil.which("setpriv") is None
                or not _as_nobody_works(),
                reason="this Python and its packages do not run as nobody",
            ),
        ),
        "euid",
    ],
)


@AS_USER
def test_without_root_it_says_what_happens_in_user_terms(
    tmp_path: Path, user: str
) -> None:
    tmp = _empty_tmp(tmp_path)
    lab = Lab("--nodes", "1", "--no-trust", env={"TMPDIR": str(tmp)}, user=user)
    try:
        first = lab.until("instead of in network namespaces")[-1]
        assert first.startswith("not running as root"), first
        assert "127.0.0.11" in first
        assert "Loopback" not in first
        lab.until("Ctrl-C stops every node")
        lab.proc.send_signal(signal.SIGINT)
        rest = lab.rest()
    finally:
        lab.close()
    assert lab.proc.returncode == 0, lab.seen
    assert rest[-1] == "lab removed", lab.seen
    assert not any("Loopback" in line for line in lab.seen), lab.seen
    assert list(tmp.glob("decent-lab-*")) == []


@AS_USER
def test_without_root_refused_options_leave_no_temp_folder(
    tmp_path: Path, user: str
) -> None:
    tmp = _empty_tmp(tmp_path)
    for args, why in (
        (["--dataplane"], "--dataplane needs network namespaces, so root"),
        (["--mode", "multicast"], "run as root for a namespace lab"),
    ):
        lab = Lab(*args, env={"TMPDIR": str(tmp)}, user=user)
        try:
            out = "\n".join(lab.rest())
        finally:
            lab.close()
        assert lab.proc.returncode == 2, (args, out)
        assert why in out, (args, out)
        assert "Loopback" not in out
        assert list(tmp.iterdir()) == [], (args, out)
