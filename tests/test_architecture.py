"""The layering rules: wire/ is stdlib-only, peer/ adds only wire/ and no I/O.

One exception to "stdlib only": `cryptography`'s Ed25519, X25519 and AEADs
(signatures of node certificates and registrations, RFC 8061 key exchange and
sealing are computation, like HMAC, with no I/O; the stdlib has no public-key
cryptography and no AEAD)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "decent"
# Modules the sans-I/O core may never touch even though they are stdlib.
NO_IO = {
    "asyncio",
    "socket",
    "time",
    "random",
    "selectors",
    "fcntl",
    "threading",
    "subprocess",
    "logging",
    "os",
    "secrets",
}


#: Third-party modules wire/ and peer/ may use: pure computation, no I/O.
ALLOWED_THIRD_PARTY = (
    "cryptography.exceptions",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.asymmetric.x25519",
    "cryptography.hazmat.primitives.ciphers.aead",
)


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _violations(
    package: str, allowed_internal: tuple[str, ...], root: Path = ROOT
) -> list[str]:
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "decent":
                if not name.startswith(allowed_internal):
                    bad.append(f"{path.name}: {name}")
            elif top == "__future__" or name in ALLOWED_THIRD_PARTY:
                continue
            elif top not in sys.stdlib_module_names or top in NO_IO:
                bad.append(f"{path.name}: {name}")
    return bad


def test_wire_imports_only_the_stdlib() -> None:
    assert _violations("wire", ("decent.wire",)) == []


def test_peer_imports_only_wire_and_the_stdlib_without_io() -> None:
    assert _violations("peer", ("decent.wire", "decent.peer")) == []


@pytest.mark.parametrize("package", ["wire", "peer"])
def test_pure_layers_read_no_clock(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        text = path.read_text()
        for call in ("time.time(", "time.monotonic(", "os.urandom(", "datetime.now("):
            assert call not in text, f"{path.name} calls {call}"


def test_the_checker_catches_forbidden_imports(tmp_path: Path) -> None:
    (tmp_path / "peer").mkdir()
    (tmp_path / "peer" / "bad.py").write_text(
        "import asyncio\nfrom decent.net import udp\nimport msgpack\nimport struct\n"
    )
    assert _violations("peer", ("decent.wire",), tmp_path) == [
        "bad.py: asyncio",
        "bad.py: decent.net",
        "bad.py: msgpack",
    ]


def test_no_core_module_is_over_550_lines_and_each_says_what_it_owns() -> None:
    # The redesign's bound (issue 13): a module past it is doing two jobs.
    for path in sorted((ROOT / "peer").rglob("*.py")):
        lines = path.read_text().splitlines()
        assert len(lines) <= 550, f"{path.name}: {len(lines)} lines"
        assert lines[0].startswith('"""'), f"{path.name} opens with no docstring"
