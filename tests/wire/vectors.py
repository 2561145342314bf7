"""Loader for the golden wire vectors in tests/wire/vectors/*.hex."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Final

VECTOR_DIR: Final = Path(__file__).resolve().parent / "vectors"

_HEXDIGITS: Final = frozenset(string.hexdigits)
# Metadata lives in the header comment block, before the first hex byte.
_META: Final = re.compile(r"#\s*(port|emit|source|tshark)\s*:\s*(.*?)\s*$")
_PORTS: Final = (4341, 4342)


class VectorFormatError(ValueError):
    """A golden vector file is malformed."""


@dataclass(frozen=True, slots=True)
class Vector:
    """One golden vector: a UDP payload and what it is for."""

    name: str
    data: bytes
    port: int
    emit: bool
    source: str
    tshark_note: str | None


def parse_vector(name: str, text: str) -> Vector:
    """Parse the text of one .hex vector file.

    Everything after `#` on a line is a comment; the rest is hex digits, with
    whitespace anywhere. `# port:`, `# emit:`, `# source:` and the optional
    `# tshark:` lines must come before the first hex digit.
    """
    meta: dict[str, str] = {}
    digits: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        code, _, comment = line.partition("#")
        if not any(digits) and not code.strip():
            match = _META.match("#" + comment)
            if match:
                key, value = match.groups()
                if key in meta:
                    raise VectorFormatError(f"{name}:{lineno}: duplicate {key!r}")
                meta[key] = value
        chunk = "".join(code.split())
        bad = set(chunk) - _HEXDIGITS
        if bad:
            raise VectorFormatError(
                f"{name}:{lineno}: not hex: {''.join(sorted(bad))!r}"
            )
        digits.append(chunk)
    hexstr = "".join(digits)
    if not hexstr:
        raise VectorFormatError(f"{name}: no hex bytes")
    if len(hexstr) % 2:
        raise VectorFormatError(
            f"{name}: odd number of hex digits ({len(hexstr)}): a nibble is missing"
        )
    for key in ("port", "emit", "source"):
        if key not in meta:
            raise VectorFormatError(f"{name}: missing '# {key}:' header")
    if not meta["port"].isdigit() or int(meta["port"]) not in _PORTS:
        raise VectorFormatError(f"{name}: port must be one of {_PORTS}")
    if meta["emit"] not in ("yes", "no"):
        raise VectorFormatError(f"{name}: emit must be 'yes' or 'no'")
    return Vector(
        name=name,
        data=bytes.fromhex(hexstr),
        port=int(meta["port"]),
        emit=meta["emit"] == "yes",
        source=meta["source"],
        tshark_note=meta.get("tshark") or None,
    )


def load_vectors(directory: Path = VECTOR_DIR) -> dict[str, Vector]:
    """All vectors in `directory`, keyed by file stem, in file-name order."""
    vectors = {
        path.stem: parse_vector(path.stem, path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.hex"))
    }
    if not vectors:
        raise VectorFormatError(f"no .hex vectors in {directory}")
    return vectors
