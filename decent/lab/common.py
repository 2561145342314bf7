"""The lab's shared constants, LabError and the `ip`/`tc` command helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Final

GROUP: Final = "233.252.1.1"
#: The membership EID's text form, as /api/sites shows it.
GROUP_EID: Final = f"[0](0.0.0.0/0, {GROUP}/32)"
KEY: Final = "decent-lab-shared-secret"
WEB_PORT: Final = 8080
CONTROL_PORT: Final = 4342
DATA_PORT: Final = 4341
#: What a capture's start and end markers carry (NetnsLab.capture).
MARKER: Final = b"decent-lab capture "
#: How long a capture may take to go live, catch up, or stop: generous, as
#: a loaded 2-core machine can leave dumpcap seconds behind.
CAPTURE_WAIT: Final = 30.0


class LabError(RuntimeError):
    """The lab could not be built or driven; the message says what to do."""


def netns_unavailable() -> str | None:
    """Why this process cannot build a namespace lab, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (run as root, or use LoopbackLab)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    result = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return f"`ip netns` does not work here: {result.stderr.strip()}"
    return None


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result


def _in(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]
