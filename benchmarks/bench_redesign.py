"""bench_core and bench_lab, this checkout against the commit before the redesign.

The redesign (issue 13: the node cut along its roles, the MappingSystem
seam, the data plane riding on the node's events) was to change no
behaviour and cost no speed. This runs the two benchmarks of each tree in
turn, old, new, old, new, ... in one session (so a busy machine slows both
alike), and prints each figure's median per tree and the ratio new / old
(for a time, old / new): 1.00 is the same, below 0.95 is a regression.

- bench_core: the sans-I/O node in-process, every rate it prints.
- bench_lab (root, network namespaces): section 3's Map-Replies per node
  CPU-second (flat out, many ITR-RLOCs) and section 1's median SIGHUP ->
  peers latency.

`python benchmarks/bench_redesign.py [--old 9d8b863] [--rounds 3]
[--only core|lab]`. Each tree runs its own copy of the benchmark, with its
own `decent` first on PYTHONPATH (the lab's `decent run` processes inherit
it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The last commit before the redesign (issue 12's landing).
OLD = "9d8b863"
_RATE = re.compile(r"^\s*(\S.*?)\s{2,}([\d,]+)/s")
_BULK = re.compile(r"^\s*(register [\d,]+ distinct /32s)\s+([\d.]+) s")
_CPU = re.compile(r"([\d,]+) replies per node CPU-second")
_LATENCY = re.compile(r"median on both peers\s+([\d.]+) ms")

Figures = dict[str, float]


@contextlib.contextmanager
def old_tree(rev: str) -> Iterator[Path]:
    """The commit `rev` checked out in a temporary worktree."""
    with tempfile.TemporaryDirectory(prefix="decent-bench-redesign-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                check=False,
                capture_output=True,
            )


def run(tree: Path, *argv: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [sys.executable, *argv],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"{tree}: {' '.join(argv)} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def core(tree: Path) -> Figures:
    """Every `name   1,234/s` line bench_core prints."""
    figures: Figures = {}
    for line in run(tree, "benchmarks/bench_core.py").splitlines():
        match = _RATE.match(line)
        if match:
            figures[match.group(1).strip()] = float(match.group(2).replace(",", ""))
        match = _BULK.match(line)
        if match:
            figures[match.group(1) + " (s, lower is better)"] = float(match.group(2))
    return figures


def lab(tree: Path) -> Figures:
    figures: Figures = {}
    out = run(
        tree,
        "benchmarks/bench_lab.py",
        "--only",
        "requests",
        "--seconds",
        "4",
        "--rates",
        "",
    )
    cpu = [float(m.replace(",", "")) for m in _CPU.findall(out)]
    if cpu:
        figures["Map-Replies per node CPU-second (40 ITR-RLOCs)"] = cpu[-1]
    out = run(tree, "benchmarks/bench_lab.py", "--only", "latency", "--rounds", "5")
    medians = _LATENCY.findall(out)
    for mode, median in zip(("replicate", "multicast"), medians, strict=True):
        figures[f"SIGHUP -> both peers, {mode} (ms, lower is better)"] = float(median)
    return figures


def compare(
    name: str, bench: Callable[[Path], Figures], old: Path, rounds: int
) -> None:
    runs: dict[str, list[Figures]] = {"old": [], "new": []}
    for i in range(rounds):
        for label, tree in (("old", old), ("new", REPO)):
            print(f"   {name} round {i + 1}/{rounds}: {label}", file=sys.stderr)
            runs[label].append(bench(tree))
    print(f"\n== {name}: median of {rounds} alternating runs per tree")
    print(f"  {'figure':<58} {'old':>11} {'new':>11} {'ratio':>6}")
    worst = None
    for key in runs["new"][0]:
        olds = [r[key] for r in runs["old"] if key in r]
        news = [r[key] for r in runs["new"] if key in r]
        if not olds or not news:
            continue
        before, after = statistics.median(olds), statistics.median(news)
        lower_better = "lower is better" in key
        ratio = before / after if lower_better else after / before
        worst = ratio if worst is None else min(worst, ratio)
        print(f"  {key:<58} {before:>11,.1f} {after:>11,.1f} {ratio:>6.2f}")
    if worst is not None:
        verdict = "ok" if worst >= 0.95 else "BELOW 0.95"
        print(f"  lowest ratio: {worst:.2f} ({verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=OLD, help=f"the commit before (default {OLD})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("core", "lab"))
    args = parser.parse_args(argv)
    with old_tree(args.old) as old:
        print(f"old: {args.old}; new: {REPO} (this checkout)")
        if args.only in (None, "core"):
            compare("bench_core", core, old, args.rounds)
        if args.only in (None, "lab"):
            if os.geteuid() != 0:
                print("bench_lab needs root (network namespaces): skipped")
            else:
                compare("bench_lab", lab, old, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
