"""The compose lab: seconds from `compose up -d` to every node holding everything.

Builds the image once (not timed), then runs the lab `--runs` times: each run
times `up -d` (containers created and started, image already built) until all
three nodes list all three EIDs and names and the 3-member peer-group RLE
through their published ports, then tears the lab down. Prints every run and
the median. Needs a Docker engine and compose; offline, first run
scripts/docker-base and export DECENT_BASE=decent-base:bookworm.

    python benchmarks/bench_compose.py [--runs 3] [--multicast]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from tests.e2e.compose_lab import ComposeLab, engine_unavailable

TARGET = 15.0


def main() -> int:
    parser = argparse.ArgumentParser(description="time the compose lab's start")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--multicast", action="store_true")
    args = parser.parse_args()
    reason = engine_unavailable()
    if reason:
        print(f"bench_compose: cannot run: {reason}", file=sys.stderr)
        return 1
    lab = ComposeLab("bench", multicast=args.multicast)
    lab.remove_stale_projects()
    conflict = lab.conflicts()
    if conflict:
        print(f"bench_compose: cannot run: {conflict}", file=sys.stderr)
        return 1
    mode = "multicast" if args.multicast else "replicate"
    lab.build()
    runs: list[tuple[float, float]] = []
    try:
        for n in range(args.runs):
            start = time.monotonic()
            lab.up()
            started = time.monotonic() - start
            lab.wait_until(lab.agree(), 120.0, "n1..n3 to hold all registrations")
            total = time.monotonic() - start
            runs.append((started, total))
            print(
                f"run {n + 1}: up -d returned after {started:.2f} s, "
                f"all registrations everywhere after {total:.2f} s",
                flush=True,
            )
            lab.down()
    finally:
        lab.down()
        lab.client.close()
    median = statistics.median(t for _, t in runs)
    print(
        f"compose lab ({mode}, {' '.join(lab.command)}): "
        f"`up -d` to all 3 nodes holding all registrations: median {median:.2f} s "
        f"of {len(runs)} runs (target < {TARGET:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
