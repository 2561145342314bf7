"""The import graph of decent/: no cycle anywhere, and the contracts hold."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: import-linter's command, run by this interpreter.
LINT_IMPORTS = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
]


def cycles(graph: grimp.ImportGraph, modules: Iterable[str]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    names = sorted(modules)
    scope = set(names)

    def visit(start: str) -> None:
        # Iterative, so a deep chain cannot hit the recursion limit.
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, edges = work[-1]
            for nxt in edges:
                if nxt not in scope:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    imported = graph.find_modules_directly_imported_by(nxt)
                    work.append((nxt, iter(sorted(imported))))
                    break
                if nxt in on_stack:
                    low[module] = min(low[module], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == module:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))

    for name in names:
        if name not in index:
            visit(name)
    return found


def test_there_is_no_import_cycle_in_decent() -> None:
    graph = grimp.build_graph("decent")
    assert cycles(graph, graph.modules) == []


def test_the_cycle_check_finds_a_planted_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "planted"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from planted import b\n")
    (pkg / "b.py").write_text("from planted import c\n")
    (pkg / "c.py").write_text(
        "import typing\nif typing.TYPE_CHECKING:\n    import planted.a\n"
    )
    (pkg / "d.py").write_text("import planted.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("planted")
    assert cycles(graph, graph.modules) == [["planted.a", "planted.b", "planted.c"]]


def test_the_import_contracts_hold() -> None:
    run = subprocess.run(
        [*LINT_IMPORTS, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_the_contracts_catch_a_node_that_imports_the_data_plane(
    tmp_path: Path,
) -> None:
    """A copy of decent/ whose node imports the data plane (under
    TYPE_CHECKING, which an AST walk of runtime imports would miss), and
    whose wire/ imports asyncio: lint-imports reports both."""
    copy = tmp_path / "tree"
    copy.mkdir()
    subprocess.run(["cp", "-r", str(ROOT / "decent"), str(copy)], check=True)
    (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    node = copy / "decent" / "peer" / "node.py"
    node.write_text(
        node.read_text()
        + textwrap.dedent(
            """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from decent.peer.dataplane import DataPlane
            """
        )
    )
    afi = copy / "decent" / "wire" / "afi.py"
    afi.write_text(afi.read_text() + "\nimport asyncio\n")
    run = subprocess.run(
        [*LINT_IMPORTS, "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode != 0
    assert "The node never imports the data plane that rides on it BROKEN" in run.stdout
    assert "The core and the codecs do no I/O and know no shell BROKEN" in run.stdout
    assert "decent.wire.afi -> asyncio" in run.stdout
