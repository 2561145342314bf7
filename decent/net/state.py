"""The node's state directory: identity, nonce reservation and registration snapshot."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import msgpack

from decent.peer.mapserver import Registration, encode_record
from decent.peer.node import Node
from decent.wire import DecodeError, Eid, MapRecord
from decent.wire.buffer import Reader

log = logging.getLogger("decent.state")
#: Map-Register nonces are reserved in blocks, so the file is written once
#: per block rather than once per registration, and a restart resumes past
#: every nonce ever sent (RFC 9301 5.6: nonces MUST keep increasing).
NONCE_BLOCK = 1000
#: A state file larger than this is treated as corrupt, unread.
MAX_STATE_FILE = 64 * 1024 * 1024
_LIMITS: dict[str, Any] = {
    "max_str_len": 1 << 16,
    "max_bin_len": 1 << 20,
    "max_array_len": 1 << 22,
    "max_map_len": 1 << 16,
}


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the directory: a crash leaves old or new."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_msgpack(path: Path) -> Any:
    """The object in path, or None if it is missing or unreadable (logged)."""
    try:
        if path.stat().st_size > MAX_STATE_FILE:
            log.warning("%s is larger than %d bytes; ignoring it", path, MAX_STATE_FILE)
            return None
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s: %s; ignoring it", path, exc)
        return None
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, **_LIMITS)
    except Exception as exc:  # noqa: BLE001 - any corruption means "ignore it"
        log.warning("%s is corrupt (%s); ignoring it", path, exc)
        return None


@dataclass
class Identity:
    xtr_id: int
    #: The last nonce that may already have been sent: start after it.
    start_nonce: int
    #: Nonces up to here are covered by what is on disk.
    nonce_reserved: int


class StateDir:
    """Files under the configured state_dir, each written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity_file = path / "identity.msgpack"
        self.snapshot_file = path / "registrations.msgpack"

    def save_snapshot(self, node: Node, mono_now: float, wall_now: float) -> None:
        write_atomic(
            self.snapshot_file, snapshot_registrations(node, mono_now, wall_now)
        )

    def load_snapshot(self, node: Node, mono_now: float, wall_now: float) -> int:
        return restore_registrations(
            node, read_msgpack(self.snapshot_file), mono_now, wall_now
        )

    def prepare(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def load_identity(self) -> Identity:
        """The node's xTR-ID and the first Map-Register nonce it may use.

        A missing or corrupt identity gets a fresh random xTR-ID; a Map-Server
        then sees a new registrant, so old nonces do not matter (RFC 9301 5.6
        allows a new key or identity instead of a persisted nonce).
        """
        raw = read_msgpack(self.identity_file)
        if (
            isinstance(raw, dict)
            and isinstance(raw.get("xtr_id"), bytes)
            and len(raw["xtr_id"]) == 16
            and isinstance(raw.get("nonce_reserved"), int)
            and 0 <= raw["nonce_reserved"] < 1 << 64
        ):
            xtr_id, start = int.from_bytes(raw["xtr_id"], "big"), raw["nonce_reserved"]
        else:
            xtr_id, start = secrets.randbits(128), 0
        ident = Identity(xtr_id, start, start)
        self.save_identity(ident, start + NONCE_BLOCK)
        return ident

    def keep_nonces_reserved(self, ident: Identity, nonce: int) -> None:
        """Extend the on-disk reservation before nonce can pass it."""
        if nonce + NONCE_BLOCK // 2 > ident.nonce_reserved:
            self.save_identity(ident, nonce + NONCE_BLOCK)

    def save_identity(self, ident: Identity, reserve_until: int) -> None:
        ident.nonce_reserved = reserve_until
        write_atomic(
            self.identity_file,
            msgpack.packb(
                {
                    "xtr_id": ident.xtr_id.to_bytes(16, "big"),
                    "nonce_reserved": reserve_until,
                },
                use_bin_type=True,
            ),
        )


# ---------------------------------------------------------------- snapshot
# Times are stored as wall-clock seconds: the monotonic clock restarts with
# the process, so remaining lifetimes are carried across as wall time.


def _addr_out(addr: tuple[Any, int]) -> list[Any]:
    return [str(addr[0]), addr[1]]


def snapshot_registrations(node: Node, mono_now: float, wall_now: float) -> bytes:
    """Every registration the node holds, with wall-clock lifetimes."""
    entries = []
    for eid, entry in node.ms.db.items():
        children = []
        for child in entry.children.values():
            children.append(
                [
                    encode_record(child.record),
                    _addr_out(child.registrant),
                    None if child.xtr_id is None else child.xtr_id.to_bytes(16, "big"),
                    child.site_id,
                    wall_now - (mono_now - child.first),
                    wall_now - (mono_now - child.last),
                    wall_now + (child.expires - mono_now),
                    child.flags,
                    child.alg_id,
                ]
            )
        entries.append([str(eid), entry.site, entry.merge, entry.proxy_reply, children])
    nonces = [
        [
            site,
            str(who) if not isinstance(who, int) else who.to_bytes(16, "big"),
            kid,
            n,
        ]
        for (site, who, kid), n in node.ms.nonces.items()
    ]
    return bytes(
        msgpack.packb({"v": 1, "entries": entries, "nonces": nonces}, use_bin_type=True)
    )


def restore_registrations(
    node: Node, raw: Any, mono_now: float, wall_now: float
) -> int:
    """Reinstate a snapshot; skip (and log) anything malformed. Returns the
    number of registrations restored."""
    if not isinstance(raw, dict) or raw.get("v") != 1:
        if raw is not None:
            log.warning("registration snapshot has an unknown layout; ignoring it")
        return 0
    restored = 0
    for item in raw.get("entries", []):
        try:
            text, site, merge, proxy, children = item
            regs = []
            for rec_bytes, (
                host,
                port,
            ), xtr, site_id, first, last, expires, flags, alg in children:
                r = Reader(rec_bytes)
                record = MapRecord.read(r)
                r.finish()
                regs.append(
                    Registration(
                        record,
                        (ip_address(host), int(port)),
                        None if xtr is None else int.from_bytes(xtr, "big"),
                        int(site_id),
                        mono_now - (wall_now - float(first)),
                        mono_now - (wall_now - float(last)),
                        mono_now + (float(expires) - wall_now),
                        str(flags),
                        int(alg),
                    )
                )
            eid = Eid.from_wire(regs[0].record.eid, regs[0].record.mask_len)
            if str(eid) != text:
                raise ValueError(f"{text} does not match its record")
            if node.restore_registration(
                eid, str(site), bool(merge), bool(proxy), regs, mono_now
            ):
                restored += 1
        except (ValueError, TypeError, IndexError, DecodeError) as exc:
            log.warning("skipping a malformed snapshot entry: %s", exc)
    for item in raw.get("nonces", []):
        try:
            site, who, kid, nonce = item
            key: Any = (
                int.from_bytes(who, "big")
                if isinstance(who, bytes)
                else ip_address(who)
            )
            node.ms.nonces.setdefault((str(site), key, int(kid)), int(nonce))
        except (ValueError, TypeError) as exc:
            log.warning("skipping a malformed snapshot nonce: %s", exc)
    return restored
