"""`decent hosts`: the mesh's name EIDs as an /etc/hosts section, kept on request."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any, Final

from decent.client.api import API, ClientError, fetch
from decent.wire import parse_eid

DEFAULT_FILE: Final = "/etc/hosts"
END: Final = "# END decent"
#: Section tags a person or a peer could not turn into a second line.
_TAG: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,62}")
#: One RFC 1123 label: letters, digits and inner hyphens, 1-63 characters.
_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
#: How much of a refused name to show (it came from a peer; it may be long).
_SHOWN: Final = 40


def begin_line(group: str) -> str:
    return f"# BEGIN decent {group}"


def is_hostname(name: str) -> bool:
    """A host name as RFC 1123 2.1 allows it, and nothing an /etc/hosts
    line could read differently: dot-separated labels of letters, digits
    and inner hyphens, at most 253 characters, not an IP address."""
    if not name or len(name) > 253 or not name.isascii():
        return False
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return False
    try:  # "A valid host name can never have the dotted-decimal form"
        ip_address(name)
    except ValueError:
        return True
    return False


@dataclass(slots=True)
class Hosts:
    """What the node's registrations give /etc/hosts."""

    #: (address, name) lines, sorted by name, IPv4 first.
    lines: list[tuple[str, str]] = field(default_factory=list)
    #: Name EIDs that are no host name (from a peer: maybe hostile), repr'd.
    refused: list[str] = field(default_factory=list)
    #: Host names whose registrant registered no host EID (/32 or /128).
    unaddressed: list[str] = field(default_factory=list)
    #: Registrations the client could not read (not a site entry).
    malformed: int = 0


def _registrants(entry: dict[str, Any]) -> set[tuple[str, str]]:
    """Who registered a site entry: ("xtr", xTR-ID), or ("from", address)
    for a registration that carried no xTR-ID."""
    out: set[tuple[str, str]] = set()
    for reg in entry.get("registrations") or ():
        if not isinstance(reg, dict):
            continue
        xtr_id, registrant = reg.get("xtr_id"), reg.get("registrant")
        if isinstance(xtr_id, str) and xtr_id:
            out.add(("xtr", xtr_id.lower()))
        elif isinstance(registrant, str) and registrant:
            out.add(("from", registrant))
    return out


def hosts_from_sites(sites: object, instance_id: int = 0) -> Hosts:
    """Each name EID of `instance_id` paired with the host EIDs (a /32 or
    a /128) that the same xTR registered: that member's own addresses.

    `sites` is /api/v1/sites as the node answers it; anything that is not
    a site entry is counted in `malformed`, never raised on."""
    out = Hosts()
    names: dict[str, set[tuple[str, str]]] = {}
    hosts: list[tuple[IPv4Address | IPv6Address, set[tuple[str, str]]]] = []
    for entry in sites if isinstance(sites, list) else ():
        try:
            text = entry["eid"]
            if not isinstance(text, str):
                raise TypeError("an EID is a string")
            eid = parse_eid(text)
            who = _registrants(entry)
        except (ValueError, TypeError, KeyError, AttributeError):
            out.malformed += 1
            continue
        if eid.iid != instance_id or eid.group is not None:
            continue
        if isinstance(eid.address, IPv4Address | IPv6Address):
            if eid.mask_len == eid.address.max_prefixlen:
                hosts.append((eid.address, who))
            continue
        name = eid.address.name
        if not is_hostname(name):
            shown = name if len(name) <= _SHOWN else name[:_SHOWN] + "..."
            out.refused.append(repr(shown))
            continue
        names.setdefault(name, set()).update(who)
    for name, who in sorted(names.items()):
        found = sorted(
            {addr for addr, by in hosts if who & by},
            key=lambda a: (a.version, int(a)),
        )
        if not found:
            out.unaddressed.append(name)
        out.lines += [(str(addr), name) for addr in found]
    return out


def section(group: str, hosts: Hosts) -> list[str]:
    """The section's lines, its markers included."""
    width = max((len(addr) for addr, _ in hosts.lines), default=0)
    return [
        begin_line(group),
        "# The LISP-Decent group's name EIDs, each at its member's host EID.",
        "# Written by `decent hosts`; rerun it to update, `--remove` to remove.",
        *(f"{addr.ljust(width)}  {name}" for addr, name in hosts.lines),
        END,
    ]


def replace_section(text: str, group: str, lines: list[str] | None) -> str:
    """`text` with the section of `group` replaced by `lines` (appended if
    there is none; removed if `lines` is None), the rest kept byte for byte.

    ClientError if a section of `group` has no end marker, or it appears
    twice: the file was edited by hand, and guessing could lose lines."""
    rows = text.splitlines(keepends=True)
    begin = begin_line(group)
    starts = [i for i, row in enumerate(rows) if row.rstrip("\r\n") == begin]
    new = [] if lines is None else [f"{line}\n" for line in lines]
    if len(starts) > 1:
        raise ClientError(
            f"{begin!r} appears {len(starts)} times; remove all but one by hand"
        )
    if not starts:
        if lines is None:
            return text
        return text + ("\n" if text and not text.endswith("\n") else "") + "".join(new)
    first = starts[0]
    for last in range(first + 1, len(rows)):
        row = rows[last].rstrip("\r\n")
        if row == END:
            return "".join(rows[:first] + new + rows[last + 1 :])
        if row.startswith("# BEGIN decent "):
            break
    raise ClientError(
        f"{begin!r} on line {first + 1} has no {END!r} after it; fix it by hand"
    )


def write_keeping_mode(path: Path, text: str) -> None:
    """Replace the file at `path` (a symlink's target) with `text`
    atomically, keeping its mode and owner (a new file gets 0644).

    Where the file cannot be replaced, as a bind-mounted /etc/hosts in a
    container, it is rewritten in place."""
    real = Path(os.path.realpath(path))
    try:
        st: os.stat_result | None = real.stat()
    except FileNotFoundError:
        st = None
    tmp = real.with_name(f".{real.name}.decent-tmp")
    try:
        tmp.unlink(missing_ok=True)  # left by a run that was killed
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            # The mode exactly (os.open's is cut by the umask), then owner.
            os.fchmod(f.fileno(), 0o644 if st is None else st.st_mode & 0o7777)
            if st is not None:
                with contextlib.suppress(PermissionError):
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, real)
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM):
                raise
            tmp.unlink(missing_ok=True)
            with open(real, "r+") as f:
                f.write(text)
                f.truncate()
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ClientError(f"cannot write {path} ({exc.strerror or exc})") from None


def _group_tag(args: argparse.Namespace, node: dict[str, Any] | None) -> str:
    tag = args.group or (node or {}).get("group") or "default"
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise ClientError(
            f"{tag!r} cannot tag a section: give --group with letters, digits "
            "and . : _ - only",
            2,
        )
    return tag


def _note(hosts: Hosts) -> None:
    """Say on stderr what was left out, and why."""
    if hosts.refused:
        print(
            f"decent hosts: left out {len(hosts.refused)} name EID(s) that are "
            f"not host names (RFC 1123): {', '.join(hosts.refused)}",
            file=sys.stderr,
        )
    if hosts.unaddressed:
        print(
            "decent hosts: no host EID (/32 or /128) registered with "
            f"{', '.join(hosts.unaddressed)}; not listed",
            file=sys.stderr,
        )
    if hosts.malformed:
        print(
            f"decent hosts: skipped {hosts.malformed} malformed registration(s)",
            file=sys.stderr,
        )


def cmd_hosts(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if args.remove:
        node = None if args.group else fetch(args.node, f"{API}/node")
        group = _group_tag(args, node)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ClientError(f"cannot read {path} ({exc.strerror})") from None
        new = replace_section(text, group, None)
        if new != text:
            write_keeping_mode(path, new)
            print(f"removed the {begin_line(group)!r} section from {path}")
        else:
            print(f"{path} has no {begin_line(group)!r} section")
        return 0
    node = fetch(args.node, f"{API}/node")
    group = _group_tag(args, node)
    iid = node.get("instance_id", 0) if isinstance(node, dict) else 0
    hosts = hosts_from_sites(
        fetch(args.node, f"{API}/sites"), iid if isinstance(iid, int) else 0
    )
    lines = section(group, hosts)
    if args.print:
        _note(hosts)
        print("\n".join(lines))
        return 0
    try:
        text = path.read_text() if path.exists() else ""
    except OSError as exc:
        raise ClientError(f"cannot read {path} ({exc.strerror})") from None
    new = replace_section(text, group, lines)
    _note(hosts)
    count = len({name for _, name in hosts.lines})
    if new == text:
        print(f"{path} is up to date: {count} name(s) of group {group}")
        return 0
    write_keeping_mode(path, new)
    print(f"wrote {count} name(s) of group {group} to {path}")
    return 0
