"""`decent init`: a commented starter config that `decent run` accepts."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import sys
from ipaddress import ip_address
from pathlib import Path
from typing import Final

from decent.client.api import ClientError
from decent.client.lookup import CONTROL_PORT
from decent.config import ConfigError, load_config
from decent.wire import parse_eid

DEFAULT_GROUP: Final = "233.252.1.1"


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string (json escapes are TOML's)


def _guess_rloc(targets: list[str]) -> str:
    for target in targets:
        try:
            addr = ip_address(target)
            family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((target, CONTROL_PORT))  # no packet: picks the route
                found = ip_address(s.getsockname()[0])
            if not found.is_unspecified:
                return str(found)
        except (OSError, ValueError):
            continue
    raise ClientError(
        "cannot tell this host's address toward the group or seeds; "
        "pass --rloc ADDRESS or --interface NAME",
        2,
    )


def _comment(line: str, note: str) -> str:
    return f"{line.ljust(30)} # {note}" if note else line


def config_text(
    *,
    name: str,
    rloc: str | None,
    interface: str | None,
    state_dir: str,
    group: str,
    mode: str,
    seeds: list[str],
    key: str,
    eids: list[str],
    listen: str,
    instance_id: int = 0,
    trust: tuple[str, str] | None = None,
    dataplane: bool = False,
    writer: str = "decent init",
) -> str:
    """The starter config `decent init` writes (every key is in the README).

    `decent join` writes the same with `trust` (the mesh key and this node's
    certificate, base64) and the data plane on."""
    where = (
        _comment(f"interface = {_toml(interface)}", "take the RLOC from this interface")
        if interface
        else _comment(
            f"rloc = {_toml(rloc)}", 'this node\'s locator (or interface = "eth0")'
        )
    )
    lines = [
        f"# decent node configuration, written by `{writer}`.",
        "# Run it with:  decent run --config <this file>",
        "# Every key is described in the README (Running a node).",
        "",
        "[node]",
        _comment(f"name = {_toml(name)}", "shown on pages; registered as a name EID"),
        where,
        _comment(
            f"state_dir = {_toml(state_dir)}", "node key, xTR-ID, nonces, snapshot"
        ),
        '# log_level = "info"           # debug, info, warning, error',
        "",
        "[decent]",
        _comment(f"group = {_toml(group)}", "the mapping system: same on every member"),
        _comment(f"mode = {_toml(mode)}", '"replicate" (any underlay) or "multicast"'),
        _comment(
            f"seeds = {_toml(seeds)}", "members known at start; [] for the first node"
        ),
        _comment(f"key = {_toml(key)}", "the group's shared key: same on every member"),
        f"instance_id = {instance_id}",
        "# ttl = 3                       # minutes a registration lives unrefreshed",
        "# register_interval = 60        # seconds between periodic registrations",
        "",
    ]
    if trust is not None:
        mesh_key, certificate = trust
        lines += [
            "# This node's identity in the mesh; its private key: state_dir/node.key",
            "[trust]",
            _comment(
                f"mesh_key = {_toml(mesh_key)}", "the mesh authority's public key"
            ),
            "# this node's certificate: its name, key and the EIDs it may register",
            f"certificate = {_toml(certificate)}",
            "",
        ]
    if eids:
        for eid in eids:
            lines += [
                _comment("[[database]]", "an EID-prefix this node registers"),
                f"eid = {_toml(eid)}",
                "",
            ]
    else:
        lines += [
            "# [[database]]                 # an EID-prefix this node registers",
            '# eid = "10.1.0.0/24"',
            "",
        ]
    lines += _dataplane_lines(dataplane)
    lines += [
        "[web]",
        _comment(f"listen = {_toml(listen)}", "status page and JSON API"),
        '# admin_token = "..."          # lets remote clients clear the map-cache',
        "",
    ]
    return "\n".join(lines)


def _dataplane_lines(enabled: bool) -> list[str]:
    """The [dataplane] section, commented out while the data plane is off:
    what turning it on does is said where the key is."""
    off = "" if enabled else "# "
    return [
        "# The xTR data plane: this node's host EIDs go on a TUN device, and",
        "# every EID registered in the group is routed into the overlay",
        "# (LISP-encapsulated to its RLOCs on UDP 4341). Traffic to those",
        "# addresses leaves this host through the overlay, so register only",
        "# EIDs from ranges you use for it (e.g. 10.x or 192.0.2.0/24 in tests).",
        "# Needs root or CAP_NET_ADMIN."
        + ("" if enabled else " Uncomment both lines to turn it on."),
        f"{off}[dataplane]",
        f"{off}enabled = true",
        '# encrypt = "required"         # RFC 8061; "preferred": clear text with',
        '#                              # peers that cannot encrypt; "off"',
        '# cipher = "aes-128-gcm"       # or "chacha20-poly1305"',
        '# routes = ["10.7.0.0/16"]     # more prefixes into the TUN (e.g. a PETR)',
        "",
    ]


def write_private(path: Path, text: str, *, force: bool = False) -> None:
    """Write a config file readable by its owner only (it holds the group
    key), atomically: a crash leaves the old file or the new one.

    ClientError if it exists and not `force`, or cannot be written."""
    if path.exists() and not force:
        raise ClientError(f"{path} exists; pass --force to overwrite it", 2)
    write_atomic(path, text, 0o600)


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Write `text` to `path` with `mode` through a temporary file renamed
    over it, so a crash leaves the old file or the new one. ClientError if
    it cannot be written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        # The mode from the start: a private file is never readable by
        # others, not even for the moment between creating and chmod.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), mode)  # os.open's mode is cut by the umask
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ClientError(f"cannot write {path} ({exc.strerror or exc})") from None


def default_state_dir(name: str) -> str:
    """/var/lib/decent for root; a user's own state directory otherwise."""
    if os.geteuid() == 0:
        return "/var/lib/decent"
    return str(Path("~/.local/state/decent").expanduser() / name)


def cmd_init(args: argparse.Namespace) -> int:
    name = args.name or socket.gethostname().split(".")[0] or "node"
    try:
        group = ip_address(args.group)
    except ValueError:
        raise ClientError(f"--group {args.group!r} is not an IP address", 2) from None
    if not group.is_multicast:
        raise ClientError(
            f"--group {group} is not a multicast address; use one such as "
            f"{DEFAULT_GROUP}",
            2,
        )
    for text in [*args.seed, *([args.rloc] if args.rloc else [])]:
        try:
            ip_address(text)
        except ValueError:
            raise ClientError(f"{text!r} is not an IP address", 2) from None
    for eid in args.eid:
        try:
            parse_eid(eid)
        except ValueError as exc:
            raise ClientError(f"--eid {eid!r}: {exc}", 2) from None
    rloc = None
    if not args.interface:
        rloc = args.rloc or _guess_rloc([*args.seed, str(group)])
    key = args.key
    generated = key is None
    if key is None:
        key = secrets.token_urlsafe(18)
    state_dir = args.state_dir or default_state_dir(name)
    text = config_text(
        name=name,
        rloc=rloc,
        interface=args.interface,
        state_dir=state_dir,
        group=str(group),
        mode=args.mode,
        seeds=list(args.seed),
        key=key,
        eids=list(args.eid),
        listen=args.listen,
        dataplane=args.dataplane,
    )
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    write_private(path, text, force=args.force)
    try:
        load_config(path)
    except ConfigError as exc:
        raise ClientError(f"wrote {path}, but it does not load: {exc}", 2) from None
    host, _, port = args.listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    print(f"wrote {path}: node {name}, group {group} ({args.mode})")
    if generated:
        print(
            "a new group key was generated; every member needs the same key "
            "(pass --key to join an existing group)"
        )
    if args.dataplane:
        print(
            "the data plane is on: run it as root (or with CAP_NET_ADMIN); "
            "every EID of the group will be routed into the overlay"
        )
    print(f"run it:    decent run --config {path}")
    print(f"then:      decent status --node http://{host}:{port}")
    return 0
