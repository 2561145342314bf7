"""`decent service`: the packaged systemd unit, written with this install's paths."""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from collections.abc import Callable
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Final

from decent.client.api import ClientError
from decent.client.init import write_atomic
from decent.config import ConfigError, load_config

UNIT_NAME: Final = "decent.service"
#: Where units of the local administrator go (systemd.unit(5)).
UNIT_DIR: Final = "etc/systemd/system"
#: Where `man decent` finds the page (the unit's Documentation=man:decent(1)).
MAN_DIR: Final = "usr/local/share/man/man1"
DEFAULT_CONFIG: Final = "/etc/decent/node.toml"
#: The unit's StateDirectory=decent: the config's default [node] state_dir.
STATE_DIR: Final = "/var/lib/decent"
#: What ProtectHome=yes hides from the service.
_HOMES: Final = ("/home", "/root", "/run/user")


def packaged_unit() -> str:
    """decent/data/decent.service as shipped in the package."""
    return (resources.files("decent") / "data" / UNIT_NAME).read_text()


def entry_point() -> list[str]:
    """How this install starts decent: the `decent` script next to the
    running interpreter (a virtualenv's own), else `python -m decent`."""
    script = Path(sysconfig.get_path("scripts")) / "decent"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "decent"]


def _quote(arg: str) -> str:
    """One ExecStart= word (systemd.service(5) "Command lines"): % and $
    doubled so they are no specifier or variable, quoted if it has spaces."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if any(c in arg for c in " \t\"'\\;") or not arg:
        arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def _under_home(path: str) -> bool:
    p = PurePosixPath(path)
    return any(p == PurePosixPath(h) or PurePosixPath(h) in p.parents for h in _HOMES)


def unit_text(
    config: str = DEFAULT_CONFIG,
    command: list[str] | None = None,
    state_dir: str = STATE_DIR,
) -> str:
    """The packaged unit with ExecStart= running `command` (default: this
    install's entry point) on `config`. A state_dir other than the unit's
    StateDirectory is made writable; a home directory in any of the paths
    (a virtualenv in /root, say) turns ProtectHome= to read-only."""
    command = command or entry_point()
    exec_start = " ".join(_quote(a) for a in [*command, "run", "--config", config])
    paths = [*command[:1], config, state_dir]
    out = []
    for line in packaged_unit().splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={exec_start}"
        elif line == "ProtectHome=yes" and any(_under_home(p) for p in paths):
            out.append(
                "# This install lives in a home directory: it must stay readable."
            )
            line = "ProtectHome=read-only"
        elif line == "UMask=0077" and PurePosixPath(state_dir) != PurePosixPath(
            STATE_DIR
        ):
            out.append(f"ReadWritePaths={_quote(state_dir)}")
        out.append(line)
    return "\n".join(out) + "\n"


def _state_dir(path: Path) -> str | None:
    """The [node] state_dir of the config at `path`, None if it does not load."""
    try:
        return str(load_config(path).state_dir)
    except ConfigError:
        return None


def _unit_for(args: argparse.Namespace, root: Path) -> tuple[str, str | None]:
    """The unit for --config, and a note if that config is not usable yet."""
    config = args.config
    if not config.startswith("/"):
        raise ClientError(
            f"--config {config!r}: give an absolute path (the service does "
            "not start in this directory)",
            2,
        )
    on_disk = root / config.lstrip("/")
    note = None
    state_dir = STATE_DIR
    if not on_disk.exists():
        note = (
            f"there is no {config} yet: write one with "
            f"`decent init -o {on_disk}` (add --dataplane for the data plane)"
        )
    else:
        found = _state_dir(on_disk)
        if found is None:
            note = f"{on_disk} does not load; `decent run --config {on_disk}` says why"
        else:
            state_dir = found
    return unit_text(config, state_dir=state_dir), note


def cmd_service_print(args: argparse.Namespace) -> int:
    unit, _ = _unit_for(args, Path("/"))
    sys.stdout.write(unit)
    return 0


def cmd_service_install(args: argparse.Namespace, man_page: Callable[[], str]) -> int:
    root = Path(args.root)
    unit, note = _unit_for(args, root)
    unit_path = root / UNIT_DIR / UNIT_NAME
    man_path = root / MAN_DIR / "decent.1"
    write_atomic(unit_path, unit, 0o644)
    write_atomic(man_path, man_page(), 0o644)
    print(f"wrote {unit_path}")
    print(f"wrote {man_path}")
    if note:
        print(note)
    systemctl = "systemctl" if root == Path("/") else f"systemctl --root={root}"
    print("then, as root:")
    if root == Path("/"):
        print("  systemctl daemon-reload")
        print("  systemctl enable --now decent   # start it now and at boot")
    else:
        print(f"  {systemctl} enable decent   # start it at boot of that system")
    print("  systemctl reload decent         # after editing [[database]]: SIGHUP")
    print("  journalctl -u decent -f         # its log")
    return 0
