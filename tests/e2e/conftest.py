"""Fixtures for the namespace lab tests: one lab per test, always destroyed."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from decent.lab import NetnsLab, netns_unavailable

#: Every lab of this suite has a prefix starting with this; the last test of
#: test_netns_lab checks that none is left behind.
#: Both can be moved (DECENT_E2E_PREFIX, DECENT_E2E_NET) so two checkouts can
#: run this suite side by side without their namespaces or subnets meeting.
PREFIX: Final = os.environ.get("DECENT_E2E_PREFIX", "de2e")
_NET: Final = os.environ.get("DECENT_E2E_NET", "198.18")
_SERIAL = itertools.count(1)
_FAILED = pytest.StashKey[bool]()


def suite_namespaces() -> list[str]:
    """Namespaces of this suite that exist now."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(PREFIX))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    if outcome.get_result().failed:
        item.stash[_FAILED] = True


@pytest.fixture
def make_lab(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., NetnsLab]]:
    """Build (create, not start) a NetnsLab whose prefix and subnet no other
    test uses. Every lab is destroyed when the test ends, pass or fail, and
    none of its namespaces may remain; on failure the node logs are printed."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    labs: list[NetnsLab] = []

    def build(**kwargs: Any) -> NetnsLab:
        serial = next(_SERIAL) % 150
        lab = NetnsLab(
            f"{PREFIX}{serial}",
            f"{_NET}.{100 + serial}.0/24",
            workdir=tmp_path / f"lab{len(labs) + 1}",
            **kwargs,
        )
        labs.append(lab)
        lab.create()
        return lab

    try:
        yield build
    finally:
        for lab in labs:
            if request.node.stash.get(_FAILED, False):
                for i in sorted(lab.nodes):
                    print(f"--- {lab.prefix} n{i} log ---\n{lab.log_tail(i, 40)}")
            lab.destroy()
        left = [ns for lab in labs for ns in lab.namespaces()]
        assert left == [], f"namespaces left behind: {left}"
