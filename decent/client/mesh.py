"""The mesh authority (`decent mesh`), and members' `decent join` and `decent revoke`.

A mesh authority is a directory, made once and kept offline: its Ed25519
private key (`mesh.key`) signs each member's certificate, and `mesh.toml`
holds what every member shares (group, group key, mode, instance ID,
seeds). An invite is one line, `decent1:<base64url of JSON>`, carrying all
a new member needs, its private key included; a revocation is one line,
`decent-revoke1:<base64url of the signed revocation>`, which any member
takes and passes on to the others.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import secrets
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Final

from decent.client.api import API, DEFAULT_NODE, ClientError, node_url
from decent.client.init import (
    _guess_rloc,
    config_text,
    default_state_dir,
    write_private,
)
from decent.config import ConfigError, load_config
from decent.net.persist import NodeKeyError, StateDir
from decent.peer.display import time_text
from decent.wire import DecodeError, Eid, parse_eid
from decent.wire.trust import (
    Certificate,
    Revocation,
    generate_private_key,
    issue_certificate,
    issue_revocation,
    public_key_of,
)

JOIN_PREFIX: Final = "decent1:"
REVOKE_PREFIX: Final = "decent-revoke1:"
DEFAULT_CONFIG: Final = "/etc/decent/node.toml"
DEFAULT_DAYS: Final = 365
MESH_KEY: Final = "mesh.key"
MESH_TOML: Final = "mesh.toml"
#: Mesh and node names an authority issues for: they name files in its
#: directory (`issued/NODE.cert`), so no path separators and no dot first.
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_NAME_RULE: Final = "use 1 to 63 of A-Z a-z 0-9 . _ - (a letter or digit first)"
#: The default group: 233.252.X.Y, X and Y random, so two meshes on one LAN
#: (multicast mode) do not share a group by accident.
_GROUP_DEFAULT: Final = "233.252.<random>.<random>"
_HTTP: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------- tokens
@dataclass(frozen=True, slots=True)
class JoinToken:
    """What `decent mesh invite` hands a new member, checked on decoding."""

    mesh: str
    mesh_key: bytes
    group: str
    key: str
    mode: str
    instance_id: int
    seeds: tuple[str, ...]
    name: str
    node_key: bytes
    certificate: bytes

    def encode(self) -> str:
        body = {
            "mesh": self.mesh,
            "mesh_key": _b64(self.mesh_key),
            "group": self.group,
            "key": self.key,
            "mode": self.mode,
            "instance_id": self.instance_id,
            "seeds": list(self.seeds),
            "name": self.name,
            "node_key": _b64(self.node_key),
            "certificate": _b64(self.certificate),
        }
        data = json.dumps(body, separators=(",", ":")).encode()
        return JOIN_PREFIX + _b64url(data)

    @property
    def cert(self) -> Certificate:
        return Certificate.decode(self.certificate)


_JOIN_FIX: Final = (
    "copy the whole decent1:... line that `decent mesh invite` printed, "
    "or ask the mesh authority for a new invite"
)


def decode_join_token(text: str) -> JoinToken:
    """A join token's contents, verified: its certificate is signed by its
    mesh key and names its node key. ClientError (exit 2) saying what is
    wrong with anything else."""
    text = text.strip()
    if text.startswith(REVOKE_PREFIX):
        raise ClientError(
            "this is a revocation token, not a join token; hand it to "
            "`decent revoke` on a member",
            2,
        )
    if not text.startswith(JOIN_PREFIX):
        raise ClientError(f"not a join token (no {JOIN_PREFIX} prefix); {_JOIN_FIX}", 2)
    try:
        body = json.loads(_unb64url(text[len(JOIN_PREFIX) :]))
    except (ValueError, UnicodeDecodeError):
        raise ClientError(f"the join token is damaged; {_JOIN_FIX}", 2) from None
    if not isinstance(body, dict):
        raise ClientError(f"the join token is damaged; {_JOIN_FIX}", 2)

    def field(name: str, kind: type) -> Any:
        value = body.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ClientError(
                f"the join token has no valid {name!r}; {_JOIN_FIX}", 2
            ) from None
        return value

    def binary(name: str, size: int | None = None) -> bytes:
        try:
            value = base64.b64decode(field(name, str), validate=True)
        except (binascii.Error, ValueError):
            value = b""
        if not value or (size is not None and len(value) != size):
            raise ClientError(f"the join token has no valid {name!r}; {_JOIN_FIX}", 2)
        return value

    seeds = field("seeds", list)
    token = JoinToken(
        mesh=field("mesh", str),
        mesh_key=binary("mesh_key", 32),
        group=field("group", str),
        key=field("key", str),
        mode=field("mode", str),
        instance_id=field("instance_id", int),
        seeds=tuple(str(s) for s in seeds),
        name=field("name", str),
        node_key=binary("node_key", 32),
        certificate=binary("certificate"),
    )
    try:
        group = ip_address(token.group)
        for seed in seeds:
            ip_address(seed)
    except ValueError as exc:
        raise ClientError(f"the join token holds {exc}; {_JOIN_FIX}", 2) from None
    if not group.is_multicast or token.mode not in ("replicate", "multicast"):
        raise ClientError(f"the join token's group or mode is wrong; {_JOIN_FIX}", 2)
    if not token.key or not 0 <= token.instance_id < 1 << 24:
        raise ClientError(
            f"the join token's key or instance ID is wrong; {_JOIN_FIX}", 2
        )
    try:
        cert = token.cert
    except (DecodeError, ValueError) as exc:
        raise ClientError(
            f"the join token's certificate does not decode ({exc}); {_JOIN_FIX}", 2
        ) from None
    if not cert.verify(token.mesh_key):
        raise ClientError(
            "the join token's certificate is not signed by its mesh key; "
            "it was altered: ask the mesh authority for a new invite",
            2,
        )
    if cert.public_key != public_key_of(token.node_key) or cert.name != token.name:
        raise ClientError(
            "the join token's certificate is for another node or key; "
            "ask the mesh authority for a new invite",
            2,
        )
    return token


def encode_revoke_token(revocation: Revocation) -> str:
    return REVOKE_PREFIX + _b64url(revocation.encode())


def decode_revoke_token(text: str) -> Revocation:
    """The revocation a token carries (its signature is the node's to
    check). ClientError (exit 2) if it is none."""
    text = text.strip()
    fix = "copy the whole decent-revoke1:... line `decent mesh revoke` printed"
    if text.startswith(JOIN_PREFIX):
        raise ClientError(f"this is a join token, not a revocation token; {fix}", 2)
    if not text.startswith(REVOKE_PREFIX):
        raise ClientError(
            f"not a revocation token (no {REVOKE_PREFIX} prefix); {fix}", 2
        )
    try:
        return Revocation.decode(_unb64url(text[len(REVOKE_PREFIX) :]))
    except (DecodeError, ValueError) as exc:
        raise ClientError(
            f"the revocation token is damaged ({exc}); {fix}", 2
        ) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    # Unpadded: a token is pasted into shells and chat, where "=" only hurts.
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------- the authority
@dataclass(frozen=True, slots=True)
class Mesh:
    """A mesh authority's directory, as `decent mesh create` made it."""

    path: Path
    name: str
    private_key: bytes
    public_key: bytes
    group: str
    key: str
    mode: str
    instance_id: int
    seeds: tuple[str, ...]

    @property
    def issued(self) -> Path:
        return self.path / "issued"

    @property
    def revoked(self) -> Path:
        return self.path / "revoked"


def _check_name(what: str, name: str) -> None:
    if not _NAME.match(name):
        raise ClientError(f"{what} {name!r}: {_NAME_RULE}", 2)


def _write_new(path: Path, data: bytes) -> None:
    """Create path mode 0600; never overwrite (O_EXCL)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _mesh_dir(arg: str | None) -> Path:
    """--dir, or the one *.mesh directory here."""
    if arg:
        return Path(arg)
    found = sorted(p for p in Path.cwd().glob("*.mesh") if p.is_dir())
    if len(found) == 1:
        return found[0]
    where = "none" if not found else ", ".join(p.name for p in found)
    raise ClientError(
        f"which mesh? *.mesh directories here: {where}; pass --dir DIR "
        "(the directory `decent mesh create` made)",
        2,
    )


def load_mesh(path: Path) -> Mesh:
    """Read a mesh authority's directory; ClientError naming file and fix."""
    toml_path, key_path = path / MESH_TOML, path / MESH_KEY
    try:
        raw = tomllib.loads(toml_path.read_text())
    except FileNotFoundError:
        raise ClientError(
            f"{toml_path}: no such file; is {path} a mesh directory? "
            "(`decent mesh create` makes one)",
            2,
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ClientError(f"{toml_path}: cannot read it ({exc})", 2) from None
    try:
        fd = os.open(key_path, os.O_RDONLY)
    except OSError as exc:
        raise ClientError(
            f"{key_path}: cannot read the mesh key ({exc.strerror}); run this "
            "where the mesh authority's directory is",
            2,
        ) from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode & 0o777
        if mode & 0o077:
            raise ClientError(
                f"{key_path} is open to group or others (mode {mode:04o}); "
                f"run `chmod 600 {key_path}` (if others may have read it, the "
                "mesh is no longer yours: make a new one)",
                2,
            )
        text = f.read()
    try:
        private = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        private = b""
    if len(private) != 32:
        raise ClientError(f"{key_path} does not hold a mesh key; restore it", 2)
    try:
        public = base64.b64decode(str(raw["public_key"]), validate=True)
        mesh = Mesh(
            path=path,
            name=str(raw["name"]),
            private_key=private,
            public_key=public,
            group=str(raw["group"]),
            key=str(raw["key"]),
            mode=str(raw["mode"]),
            instance_id=int(raw["instance_id"]),
            seeds=tuple(str(s) for s in raw.get("seeds", [])),
        )
    except (KeyError, ValueError, TypeError, binascii.Error) as exc:
        raise ClientError(
            f"{toml_path}: missing or bad {exc}; restore it from a backup", 2
        ) from None
    if public_key_of(private) != public:
        raise ClientError(
            f"{toml_path}: public_key is not {key_path}'s; restore both from "
            "one backup",
            2,
        )
    return mesh


def _mesh_toml(
    name: str, public: bytes, group: str, key: str, mode: str, iid: int
) -> str:
    return "\n".join(
        [
            f"# Mesh {name}, made by `decent mesh create`. Every member shares",
            "# the group, key, mode and instance_id; seeds are put in invites.",
            f"name = {json.dumps(name)}",
            f"public_key = {json.dumps(_b64(public))}  # [trust] mesh_key",
            f"group = {json.dumps(group)}",
            f"key = {json.dumps(key)}  # the group key: secret",
            f"mode = {json.dumps(mode)}",
            f"instance_id = {iid}",
            "seeds = []  # members' RLOCs put in every invite",
            "",
        ]
    )


def cmd_mesh_create(args: argparse.Namespace) -> int:
    name: str = args.name
    _check_name("mesh name", name)
    group_text = args.group or (
        f"233.252.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"
    )
    try:
        group = ip_address(group_text)
    except ValueError:
        raise ClientError(f"--group {group_text!r} is not an IP address", 2) from None
    if not group.is_multicast:
        raise ClientError(
            f"--group {group} is not a multicast address; use one such as "
            "233.252.1.1 or ff05::1:1",
            2,
        )
    if not 0 <= args.instance_id < 1 << 24:
        raise ClientError(f"--instance-id {args.instance_id}: use 0 to 16777215", 2)
    path = Path(args.dir or f"{name}.mesh")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ClientError(
            f"{path} exists; pick another --dir (a mesh's key is never overwritten)",
            2,
        )
    private = generate_private_key()
    public = public_key_of(private)
    key = _b64(secrets.token_bytes(32))
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is cut by the umask
        (path / "issued").mkdir(mode=0o700)
        (path / "revoked").mkdir(mode=0o700)
        _write_new(path / MESH_KEY, base64.b64encode(private) + b"\n")
        _write_new(
            path / MESH_TOML,
            _mesh_toml(
                name, public, str(group), key, args.mode, args.instance_id
            ).encode(),
        )
    except OSError as exc:
        raise ClientError(f"cannot make the mesh in {path} ({exc})") from None
    if args.json:
        print(
            json.dumps(
                {
                    "mesh": name,
                    "dir": str(path),
                    "public_key": _b64(public),
                    "group": str(group),
                    "mode": args.mode,
                    "instance_id": args.instance_id,
                }
            )
        )
        return 0
    print(f"made mesh {name} in {path} (mode 0700):")
    print(f"  {path / MESH_KEY}   the mesh authority's private key (mode 0600)")
    print(
        f"  {path / MESH_TOML}  group {group} ({args.mode}), instance-id "
        f"{args.instance_id}, group key, public key {_b64(public)}"
    )
    print(
        "keep mesh.key offline and backed up: it signs every member's "
        "certificate, so whoever holds it can admit anyone to the mesh"
    )
    print(f"next: decent mesh invite NODE --eid PREFIX --dir {path}")
    return 0


def cmd_mesh_invite(args: argparse.Namespace) -> int:
    node: str = args.node
    _check_name("node name", node)
    mesh = load_mesh(_mesh_dir(args.dir))
    if not 1 <= args.days <= 36500:
        raise ClientError(f"--days {args.days}: use 1 to 36500", 2)
    eids: list[Eid] = []
    for text in args.eid:
        try:
            eid = parse_eid(text, mesh.instance_id)
        except ValueError as exc:
            raise ClientError(f"--eid {text!r}: {exc}", 2) from None
        if eid.is_name or eid.is_sg:
            raise ClientError(
                f"--eid {text!r}: grant IP prefixes only (the node's name is "
                "its certificate's)",
                2,
            )
        if eid.mask_len == 0 and not args.grant_default:
            raise ClientError(
                f"--eid {text!r} grants every address: the node could take "
                "any EID's traffic. Pass --grant-default if it is an exit node",
                2,
            )
        if eid not in eids:
            eids.append(eid)
    seeds = list(mesh.seeds)
    for text in args.seed:
        try:
            seed = str(ip_address(text))
        except ValueError:
            raise ClientError(f"--seed {text!r} is not an IP address", 2) from None
        if seed not in seeds:
            seeds.append(seed)
    record = mesh.issued / f"{node}.cert"
    if record.exists() and not args.force:
        raise ClientError(
            f"{node} already has a certificate ({record}); revoke it first "
            f"(`decent mesh revoke {node}`), or pass --force to issue another "
            "(the old one stays valid until it expires)",
            2,
        )
    node_key = generate_private_key()
    # The Ed25519 signature covers every field; a 64-bit random serial names
    # the certificate in revocations without a counter to keep.
    not_after = int(time.time()) + args.days * 86400
    cert = issue_certificate(
        mesh.private_key,
        mesh=mesh.name,
        name=node,
        public_key=public_key_of(node_key),
        eids=tuple(eids),
        not_after=not_after,
        serial=secrets.randbits(64),
    )
    try:
        record.unlink(missing_ok=True)
        _write_new(record, base64.b64encode(cert.encode()) + b"\n")
    except OSError as exc:
        raise ClientError(
            f"cannot record the certificate in {record} ({exc})"
        ) from None
    token = JoinToken(
        mesh=mesh.name,
        mesh_key=mesh.public_key,
        group=mesh.group,
        key=mesh.key,
        mode=mesh.mode,
        instance_id=mesh.instance_id,
        seeds=tuple(seeds),
        name=node,
        node_key=node_key,
        certificate=cert.encode(),
    ).encode()
    command = f"decent join {token}"
    if args.json:
        print(
            json.dumps(
                {
                    "node": node,
                    "serial": f"{cert.serial:016x}",
                    "not_after_at": time_text(not_after),
                    "eids": [str(e) for e in eids],
                    "certificate": str(record),
                    "token": token,
                    "command": command,
                }
            )
        )
        return 0
    granted = ", ".join(_eid_text(e, mesh.instance_id) for e in eids) or "no EIDs"
    print(
        f"issued node {node} a certificate of mesh {mesh.name}: {granted}, "
        f"serial {cert.serial:016x}, valid until {_utc(not_after)}; "
        f"recorded in {record}"
    )
    if not seeds:
        print(
            "note: no seeds: the node finds the mesh only by multicast; pass "
            "--seed RLOC (any member's)"
        )
    print(
        f"the token holds {node}'s private key: hand it over privately, "
        "and only to it. On the node (as root, for the data plane):"
    )
    print(command)
    return 0


def cmd_mesh_revoke(args: argparse.Namespace) -> int:
    node: str = args.node
    _check_name("node name", node)
    mesh = load_mesh(_mesh_dir(args.dir))
    record = mesh.issued / f"{node}.cert"
    try:
        data = base64.b64decode(record.read_bytes().strip(), validate=True)
        cert = Certificate.decode(data)
    except FileNotFoundError:
        raise ClientError(
            f"{node} holds no certificate of this mesh ({record} is missing; "
            f"revoked ones are in {mesh.revoked})",
            2,
        ) from None
    except (OSError, binascii.Error, ValueError) as exc:
        raise ClientError(f"{record}: not a certificate ({exc})", 2) from None
    revocation = issue_revocation(
        mesh.private_key,
        mesh=cert.mesh,
        name=cert.name,
        public_key=cert.public_key,
        not_after=cert.not_after,
        serial=cert.serial,
    )
    token = encode_revoke_token(revocation)
    stem = f"{node}.{cert.serial:016x}"
    try:
        mesh.revoked.mkdir(mode=0o700, exist_ok=True)
        (mesh.revoked / f"{stem}.revoke").write_text(token + "\n")
        os.replace(record, mesh.revoked / f"{stem}.cert")
    except OSError as exc:
        raise ClientError(
            f"cannot record the revocation in {mesh.revoked} ({exc})"
        ) from None
    command = f"decent revoke {token} --node {DEFAULT_NODE}"
    if args.json:
        print(
            json.dumps(
                {
                    "node": node,
                    "serial": f"{cert.serial:016x}",
                    "token": token,
                    "command": command,
                }
            )
        )
        return 0
    print(
        f"revoked node {node}'s certificate (serial {cert.serial:016x}, valid "
        f"until {_utc(cert.not_after)}); recorded in {mesh.revoked}"
    )
    if cert.not_after <= time.time():
        print("note: that certificate had expired already; members refuse it anyway")
    print(
        "hand the token to any member (on it, or with --node and its admin "
        "token); the member passes it on to the whole mesh:"
    )
    print(command)
    return 0


def _eid_text(eid: Eid, iid: int) -> str:
    text = str(eid)
    return text.removeprefix(f"[{iid}]") if eid.iid == iid else text


def _utc(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- members
def cmd_revoke(args: argparse.Namespace) -> int:
    revocation = decode_revoke_token(args.token)
    base = node_url(args.node)
    url = base + API + "/revoke"
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if args.token_admin:
        headers["Authorization"] = f"Bearer {args.token_admin}"
    request = urllib.request.Request(
        url, data=args.token.strip().encode(), headers=headers, method="POST"
    )
    try:
        with _HTTP.open(request, timeout=args.timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        if exc.code in (401, 403):
            raise ClientError(
                f"{url}: HTTP {exc.code}: {_reason(body) or exc.reason}; a member "
                "takes revocations from its own host, or with its [web] "
                "admin_token: pass --token ADMIN"
            ) from None
        if exc.code in (404, 405):
            raise ClientError(
                f"{url}: HTTP {exc.code}: this node takes no revocations; is it a "
                "decent node of this version?"
            ) from None
        if not body:
            raise ClientError(f"{url}: HTTP {exc.code}: {exc.reason}") from None
    except urllib.error.URLError as exc:
        why = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise ClientError(
            f"cannot reach the node at {base} ({why}); point --node at a "
            "member's [web] listen address"
        ) from None
    except (TimeoutError, OSError) as exc:
        raise ClientError(f"no answer from the node at {base} ({exc})") from None
    try:
        answer = json.loads(body)
        ok, reason = bool(answer["ok"]), str(answer.get("reason", ""))
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"{url} did not answer as a decent node does") from None
    what = f"the revocation of node {revocation.name} (serial {revocation.serial:016x})"
    if args.json:
        print(json.dumps({"ok": ok, "reason": reason, "node": revocation.name}))
    elif ok:
        print(f"{base} took {what}; it passes it on to every member")
    if not ok:
        if not args.json:
            print(f"decent revoke: {base} refused {what}: {reason}", file=sys.stderr)
        return 1
    return 0


def _reason(body: bytes) -> str:
    try:
        answer = json.loads(body)
        return str(answer.get("reason") or answer.get("error") or "")
    except (ValueError, AttributeError):
        return ""


def join_config(args: argparse.Namespace) -> Path:
    """`decent join`'s files: the node key in its state_dir (0600) and its
    config (0600, atomically), checked by loading it. Returns the config."""
    token = decode_join_token(args.token)
    path = Path(args.config)
    if path.exists() and not args.force:
        raise ClientError(f"{path} exists; pass --force to overwrite it", 2)
    if args.rloc:
        try:
            ip_address(args.rloc)
        except ValueError:
            raise ClientError(f"--rloc {args.rloc!r} is not an IP address", 2) from None
    rloc = None
    if not args.interface:
        rloc = args.rloc or _guess_rloc([*token.seeds, token.group])
    # Absolute: `decent run` may start from another directory (systemd).
    state_dir = str(Path(args.state_dir or default_state_dir(token.name)).absolute())
    cert = token.cert
    text = config_text(
        name=token.name,
        rloc=rloc,
        interface=args.interface,
        state_dir=state_dir,
        group=token.group,
        mode=token.mode,
        seeds=list(token.seeds),
        key=token.key,
        eids=[_eid_text(e, token.instance_id) for e in cert.eids],
        listen=args.listen,
        instance_id=token.instance_id,
        trust=(_b64(token.mesh_key), _b64(token.certificate)),
        dataplane=True,
        writer="decent join",
    )
    state = StateDir(Path(state_dir))
    try:
        state.write_node_key(token.node_key, replace=args.force)
    except NodeKeyError as exc:
        raise ClientError(
            f"{exc}; pass --force to replace it, or use another --state-dir", 2
        ) from None
    except OSError as exc:
        raise ClientError(f"cannot write {state.key_file} ({exc})") from None
    write_private(path, text, force=args.force)
    try:
        load_config(path)
    except ConfigError as exc:
        raise ClientError(f"wrote {path}, but it does not load: {exc}", 2) from None
    granted = ", ".join(_eid_text(e, token.instance_id) for e in cert.eids) or "none"
    print(
        f"wrote {path} (mode 0600) and {state.key_file} (mode 0600): node "
        f"{token.name} of mesh {token.mesh}, group {token.group} ({token.mode}), "
        f"EIDs {granted}, certificate valid until {_utc(cert.not_after)}"
    )
    return path


def add_mesh_commands(
    sub: Any,
    run: Callable[[str], int],
    guarded: Callable[[Callable[[argparse.Namespace], int], str], Callable[..., int]],
) -> None:
    """Register `mesh` (create, invite, revoke), `join` and `revoke`.

    `run` runs a node from a config file, as `decent run` does (the command
    line wires it: a client does not run nodes itself)."""
    p = sub.add_parser(
        "mesh",
        help="be a mesh authority: create a mesh, invite and revoke nodes",
        description="A mesh authority signs each member's certificate (its "
        "name, key and EIDs) with a private key kept offline; members then "
        "accept only registrations a certificate grants. No server is "
        "involved: the authority's directory is all there is.",
    )
    mesh = p.add_subparsers(dest="mesh_command", required=True, metavar="COMMAND")

    p = mesh.add_parser(
        "create",
        help="make a new mesh: its authority key and shared settings",
        description="Make DIR (mode 0700) holding mesh.key, the mesh "
        "authority's private key (mode 0600; keep it offline), and mesh.toml "
        "(name, public key, group, group key, mode, instance ID, seeds).",
    )
    p.add_argument("name", metavar="NAME", help="the mesh's name")
    p.add_argument("--dir", help="where (default ./NAME.mesh); must not exist")
    p.add_argument(
        "--group",
        help=f"the group address (default {_GROUP_DEFAULT}, from the "
        "233.252.0.0/14 ad-hoc block)",
    )
    p.add_argument(
        "--mode",
        choices=("replicate", "multicast"),
        default="replicate",
        help="how members reach the group: head-end replication over unicast "
        "(default), or underlay multicast",
    )
    p.add_argument("--instance-id", type=int, default=0, help="default 0")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=guarded(cmd_mesh_create, "decent mesh create"))

    p = mesh.add_parser(
        "invite",
        help="issue a node's key and certificate as a one-line join token",
        description="Make NODE a key pair and a certificate granting its EIDs, "
        "record it in DIR/issued/NODE.cert and print a token for `decent join`. "
        "The token holds the node's private key: hand it over privately.",
    )
    p.add_argument("node", metavar="NODE", help="the node's name ([node] name)")
    p.add_argument(
        "--eid",
        action="append",
        required=True,
        metavar="PREFIX",
        help="an EID-prefix the node may register; repeat",
    )
    p.add_argument(
        "--seed", action="append", default=[], metavar="RLOC", help="a member's RLOC"
    )
    p.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help="validity (default 365)"
    )
    p.add_argument(
        "--grant-default",
        action="store_true",
        help="allow 0.0.0.0/0 or ::/0 (an exit node is granted, not assumed)",
    )
    p.add_argument("--force", action="store_true", help="reissue for a NODE again")
    p.add_argument("--dir", help="the mesh directory (default: the one ./*.mesh)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=guarded(cmd_mesh_invite, "decent mesh invite"))

    p = mesh.add_parser(
        "revoke",
        help="revoke a node's certificate; prints a token for `decent revoke`",
        description="Sign a revocation of NODE's certificate (DIR/issued/NODE."
        "cert, moved to DIR/revoked/) and print a token: any member it is "
        "handed to (`decent revoke`) drops the node's registrations and "
        "passes the revocation on to every other member.",
    )
    p.add_argument("node", metavar="NODE", help="the node's name")
    p.add_argument("--dir", help="the mesh directory (default: the one ./*.mesh)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=guarded(cmd_mesh_revoke, "decent mesh revoke"))

    p = sub.add_parser(
        "join",
        help="join a mesh with a token from `decent mesh invite`, then run",
        description="Write the node's key (STATE_DIR/node.key) and its config "
        "(mode 0600): name, group and key, seeds, the mesh key and certificate, "
        "one [[database]] per EID the certificate grants, the data plane on. "
        "Then run the node as `decent run` does, unless --config-only.",
    )
    p.add_argument("token", metavar="TOKEN", help="the decent1:... line")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--rloc", help="this node's RLOC (default: guessed from routes)")
    where.add_argument("--interface", help="take the RLOC from this interface")
    p.add_argument(
        "--config", "-c", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}"
    )
    p.add_argument(
        "--state-dir",
        help="[node] state_dir (default /var/lib/decent as root, else "
        "~/.local/state/decent/NAME)",
    )
    p.add_argument("--listen", default="127.0.0.1:8080", help="[web] listen")
    p.add_argument("--config-only", action="store_true", help="write, do not run")
    p.add_argument(
        "--force", action="store_true", help="overwrite the config and node key"
    )

    def join(args: argparse.Namespace) -> int:
        path = join_config(args)
        if args.config_only:
            print(f"run it:    decent run --config {path}")
            return 0
        return run(str(path))

    p.set_defaults(func=guarded(join, "decent join"))

    p = sub.add_parser(
        "revoke",
        help="hand a member a revocation token from `decent mesh revoke`",
        description="POST the revocation to a member's /api/v1/revoke; the member "
        "checks the mesh authority's signature, drops the node's registrations "
        "and passes the revocation on to every other member.",
    )
    p.add_argument("token", metavar="TOKEN", help="the decent-revoke1:... line")
    p.add_argument(
        "--node",
        default=os.environ.get("DECENT_NODE", DEFAULT_NODE),
        metavar="URL",
        help=f"a member's JSON API (default $DECENT_NODE or {DEFAULT_NODE})",
    )
    p.add_argument(
        "--token",
        dest="token_admin",
        metavar="ADMIN",
        help="the member's [web] admin_token (not needed on its own host)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=guarded(cmd_revoke, "decent revoke"))
