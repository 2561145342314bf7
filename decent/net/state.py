"""The node's state directory: identity, nonce reservation and registration snapshot."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

log = logging.getLogger("decent.state")
#: Map-Register nonces are reserved in blocks, so the file is written once
#: per block rather than once per registration, and a restart resumes past
#: every nonce ever sent (RFC 9301 5.6: nonces MUST keep increasing).
NONCE_BLOCK = 1000
_LIMITS: dict[str, Any] = {
    "max_buffer_size": 64 * 1024 * 1024,
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
