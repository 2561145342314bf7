"""The lab's shared constants, LabError and the `ip`/`tc` command helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
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
#: Where a namespace lab records what it made (namespaces, host veth, its
#: pid), one file per prefix: only what such a record lists is ever removed,
#: so a namespace `<prefix>-n99` a person made to join the lab survives it.
#: /run, like /run/netns, is emptied by a reboot.
STATE_DIR: Final = Path("/run/decent-lab")


def lab_eid(i: int) -> str:
    """Node i's IPv4 EID: 192.0.2.i, of TEST-NET-1 (RFC 5737), which no real
    network uses. A host joining a lab with its data plane on routes only
    these into the overlay, never a public address such as 1.1.1.1 (DNS)."""
    return f"192.0.2.{i}"


def lab_eid6(i: int) -> str:
    """Node i's IPv6 EID with the data plane: 2001:db8::i, of the IPv6
    documentation prefix (RFC 3849), for the same reason."""
    return f"2001:db8::{i}"


class LabError(RuntimeError):
    """The lab could not be built or driven; the message says what to do."""


def netns_unavailable() -> str | None:
    """Why this process cannot build a namespace lab, or None if it can."""
    if os.geteuid() != 0:
        return "not running as root, and network namespaces need root"
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


def exec_in(
    ns: str, who: str, argv: tuple[str, ...], timeout: float, check: bool
) -> subprocess.CompletedProcess[str]:
    """Run argv in namespace ns; with `check`, a failure raises LabError
    naming `who` (a node, a router), the command and what it said."""
    result = subprocess.run(
        _in(ns, *argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode:
        raise LabError(
            f"{who}: {' '.join(argv)} exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result
