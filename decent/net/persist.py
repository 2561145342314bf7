"""The node's state directory: key, identity, nonces, snapshot and revocations."""

from __future__ import annotations

import base64
import binascii
import errno
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import msgpack

from decent.peer.events import (
    Event,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRemoved,
    RevocationLearned,
)
from decent.peer.mapserver import Registration
from decent.peer.node import Node
from decent.wire import Eid, MapRecord, encode_record
from decent.wire.buffer import Reader
from decent.wire.trust import generate_private_key

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
#: After the first failed write of a file is logged, further failures are
#: summed up in at most one line this often: a disk that stays full for
#: hours, retried at every save, must not flood the log (often on the same
#: disk) nor cost much more than the failed write itself.
REPORT_EVERY = 60.0
#: Failures at start that are disk trouble, not a state_dir that can never
#: work: the node starts anyway and retries its writes.
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the directory: a crash leaves old or new.

    On failure the temporary file is removed (that needs no free descriptor
    nor space, so it works under EMFILE and ENOSPC) and the OSError raised:
    a leftover would keep holding the space a full disk needs back."""
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("cannot remove %s: %s", tmp, exc)
        raise
    _fsync_dir(path.parent)


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of data to a new file's descriptor, fsync and close it."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    """errno's text and name: "No space left on device (ENOSPC)"."""
    if not exc.errno:
        return str(exc) or type(exc).__name__
    return f"{os.strerror(exc.errno)} ({errno.errorcode.get(exc.errno, exc.errno)})"


class _WriteHealth:
    """Whether writing one file works, and the rate-limited log of it."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self.failing_since: float | None = None
        self.failures = 0
        self.unreported = 0
        self.reported_at = 0.0

    def failed(self, exc: OSError, now: float) -> None:
        if self.failing_since is None:
            self.failing_since = self.reported_at = now
            self.failures, self.unreported = 1, 0
            log.warning(
                "cannot write the %s to %s: %s; the file stays as it was, "
                "the node keeps running and retries at every save",
                self.what,
                self.path,
                _why(exc),
            )
            return
        self.failures += 1
        self.unreported += 1
        if now - self.reported_at >= REPORT_EVERY:
            log.warning(
                "still cannot write the %s to %s: %d more failed attempt(s) in "
                "the last %.0f s, the last: %s",
                self.what,
                self.path,
                self.unreported,
                now - self.reported_at,
                _why(exc),
            )
            self.reported_at, self.unreported = now, 0

    def worked(self, now: float) -> None:
        if self.failing_since is not None:
            log.info(
                "the %s is written to %s again (%d failed attempt(s), %.0f s)",
                self.what,
                self.path,
                self.failures,
                now - self.failing_since,
            )
            self.failing_since = None


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
        log.warning("cannot read %s: %s; ignoring it", path, _why(exc))
        return None
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False, **_LIMITS)
    except Exception as exc:  # noqa: BLE001 - any corruption means "ignore it"
        log.warning(
            "%s is corrupt (%s); ignoring it", path, str(exc) or type(exc).__name__
        )
        return None
    if raw is None:
        # None means "no file" to the callers, which then say nothing.
        log.warning("%s holds only nil; ignoring it", path)
    return raw


#: The node key file's bytes: base64 of the raw 32-byte Ed25519 private key.
NODE_KEY_SIZE = 32


class NodeKeyError(ValueError):
    """The node key file cannot be used; the message names it and the fix."""


def key_file_text(private_key: bytes) -> bytes:
    """What node.key holds: the raw private key in base64, one line."""
    return base64.b64encode(private_key) + b"\n"


@dataclass
class Identity:
    xtr_id: int
    #: The last nonce that may already have been sent: start after it.
    start_nonce: int
    #: Nonces up to here are covered by what is on disk.
    nonce_reserved: int


class StateDir:
    """Files under the configured state_dir, each written atomically.

    Saving never raises OSError: a full disk, a quota, no descriptor left
    (EMFILE) or an I/O error must not stop a node that serves LISP from
    memory. A failed save is logged (rate-limited, see REPORT_EVERY), leaves
    the old file in place and says so by returning False; the next save
    retries."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.identity_file = path / "identity.msgpack"
        self.snapshot_file = path / "registrations.msgpack"
        self.key_file = path / "node.key"
        self.revocations_file = path / "revocations.msgpack"
        self._clock = clock
        self._health = {
            self.identity_file: _WriteHealth(self.identity_file, "nonce reservation"),
            self.snapshot_file: _WriteHealth(
                self.snapshot_file, "registration snapshot"
            ),
            self.revocations_file: _WriteHealth(self.revocations_file, "revocations"),
        }

    def _write(self, path: Path, data: bytes) -> bool:
        try:
            write_atomic(path, data)
        except OSError as exc:
            self._health[path].failed(exc, self._clock())
            return False
        self._health[path].worked(self._clock())
        return True

    def save_snapshot(self, node: Node, mono_now: float, wall_now: float) -> bool:
        """Write the registration snapshot; False (logged) if it failed."""
        return self._write(
            self.snapshot_file, snapshot_registrations(node, mono_now, wall_now)
        )

    def load_snapshot(self, node: Node, mono_now: float, wall_now: float) -> int:
        return restore_registrations(
            node,
            read_msgpack(self.snapshot_file),
            mono_now,
            wall_now,
            source=self.snapshot_file,
        )

    def prepare(self) -> None:
        """Make the directory, remove what an interrupted write left, and
        check that files can be made in it. Raises OSError if not, so a
        state_dir that can never work is refused at start; a full disk is
        only logged, as the node can run without saving."""
        self.path.mkdir(parents=True, exist_ok=True)
        for tmp in map(_tmp, [*self._health, self.key_file]):
            # Only our own names: state_dir may be shared with other files.
            try:
                tmp.unlink()
            except FileNotFoundError:
                continue
            log.info("removed %s, left by a write that did not finish", tmp)
        probe = _tmp(self.identity_file)
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            log.warning("%s: %s; starting without saving state", self.path, _why(exc))
        else:
            probe.unlink()

    # ------------------------------------------------------------ node key
    def load_node_key(self) -> bytes:
        """This node's Ed25519 private key (raw 32 bytes), made on first
        start. Every node has one: with [trust] its certificate names the
        public half, and its xTR-ID derives from it.

        Raises NodeKeyError (naming the file and the fix) for a key file
        that group or others may read, or that holds no key; OSError if
        the file can be neither read nor made."""
        try:
            return self._read_node_key()
        except FileNotFoundError:
            pass
        key = generate_private_key()
        try:
            # O_EXCL: a key made meanwhile by another process is never
            # overwritten; 0600 from the first byte, never readable by others.
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self._read_node_key()
        except OSError as exc:
            return self._unsaved(key, exc)
        try:
            _write_fd(fd, key_file_text(key))
        except OSError as exc:
            self.key_file.unlink(missing_ok=True)
            return self._unsaved(key, exc)
        except BaseException:
            self.key_file.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path)
        log.info("made a new node key in %s", self.key_file)
        return key

    def _unsaved(self, key: bytes, exc: OSError) -> bytes:
        """A full or read-only disk must not stop a node that has no
        certificate to match (with [trust], `decent join` wrote the key)."""
        log.warning(
            "cannot save a new node key to %s: %s; this run uses a key of its "
            "own, and the next start makes another until the disk takes it",
            self.key_file,
            _why(exc),
        )
        return key

    def write_node_key(self, key: bytes, *, replace: bool = False) -> bool:
        """Store a node key given to this node (`decent join`). True if it
        was written, False if node.key already held this very key.

        Raises NodeKeyError if node.key holds another key and not `replace`
        (a key is an identity: overwriting it silently would orphan the
        certificate issued for it)."""
        if len(key) != NODE_KEY_SIZE:
            raise ValueError(f"a node key is {NODE_KEY_SIZE} bytes, not {len(key)}")
        self.path.mkdir(parents=True, exist_ok=True)
        if self.key_file.exists() or self.key_file.is_symlink():
            try:
                held = self._read_node_key()
            except NodeKeyError:
                if not replace:
                    raise
                held = b""
            if held == key:
                return False
            if not replace:
                raise NodeKeyError(
                    f"{self.key_file} already holds another node key; "
                    "replacing it gives this node another identity"
                )
        tmp = _tmp(self.key_file)
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_fd(fd, key_file_text(key))
            os.replace(tmp, self.key_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path)
        return True

    def _read_node_key(self) -> bytes:
        fd = os.open(self.key_file, os.O_RDONLY)
        try:
            mode = os.fstat(fd).st_mode
            if mode & 0o077:
                # ssh refuses such keys too: another user may have a copy.
                raise NodeKeyError(
                    f"{self.key_file} is open to group or others (mode "
                    f"{mode & 0o777:04o}), so its key may be known to others; "
                    f"run `chmod 600 {self.key_file}` (and if others may have "
                    "read it, replace the key and its certificate)"
                )
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        try:
            key = base64.b64decode(data.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != NODE_KEY_SIZE:
            raise NodeKeyError(
                f"{self.key_file} does not hold a node key (base64 of "
                f"{NODE_KEY_SIZE} bytes); restore it from a backup, or remove "
                "it to make a new key (a node with [trust] then needs a new "
                "certificate: `decent join` with a new invite)"
            )
        return key

    # ------------------------------------------------------------ revocations
    def save_revocations(self, revocations: Iterable[bytes]) -> bool:
        """Write the encoded revocations the node holds (a msgpack list of
        bytes); False (logged) if it failed."""
        data = msgpack.packb(list(revocations), use_bin_type=True)
        return self._write(self.revocations_file, data)

    def load_revocations(self) -> list[bytes]:
        """The encoded revocations saved before; anything of another shape
        is skipped (logged once). Never raises."""
        raw = read_msgpack(self.revocations_file)
        if raw is None:
            return []
        if not isinstance(raw, list):
            log.warning(
                "%s holds a %s, not a list of revocations; ignoring it",
                self.revocations_file,
                type(raw).__name__,
            )
            return []
        found = [item for item in raw if isinstance(item, bytes)]
        if len(found) != len(raw):
            log.warning(
                "%s: skipped %d item(s) that are not revocations",
                self.revocations_file,
                len(raw) - len(found),
            )
        return found

    # ------------------------------------------------------------ identity
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
            if raw is not None:
                log.warning(
                    "%s holds no xTR-ID and nonce reservation; "
                    "starting with a new xTR-ID",
                    self.identity_file,
                )
            xtr_id, start = secrets.randbits(128), 0
        ident = Identity(xtr_id, start, start)
        self.save_identity(ident, start + NONCE_BLOCK)
        return ident

    def keep_nonces_reserved(self, ident: Identity, nonce: int) -> bool:
        """Extend the on-disk reservation before nonce can pass it. False
        (logged) if it needed extending and could not be written.

        RFC 9301 5.6: Map-Register nonces MUST keep increasing, across
        restarts too. If the reservation cannot be written the node still
        sends Map-Registers (stopping would let every registration lapse),
        so its nonces can run past the block on disk. `nonce_reserved` then
        stays at what the disk holds, so every call retries, and the first
        write that works reserves a block past the nonce of that moment:
        from then on a restart is past every nonce sent again. A restart
        before any write works resumes from the older block on disk; the
        Map-Servers that saw the higher nonces refuse those Map-Registers as
        replays until the sequence passes them, so replay protection holds
        but the node's registrations may lapse meanwhile."""
        if nonce + NONCE_BLOCK // 2 > ident.nonce_reserved:
            return self.save_identity(ident, nonce + NONCE_BLOCK)
        return True

    def save_identity(self, ident: Identity, reserve_until: int) -> bool:
        """Write the identity with nonces reserved up to reserve_until; only
        a write that worked moves `ident.nonce_reserved` (False if not)."""
        data = msgpack.packb(
            {
                "xtr_id": ident.xtr_id.to_bytes(16, "big"),
                "nonce_reserved": reserve_until,
            },
            use_bin_type=True,
        )
        if not self._write(self.identity_file, data):
            return False
        ident.nonce_reserved = reserve_until
        return True


#: The events after which the snapshot is out of date: every change of a
#: registration held, refreshes too, since a refresh moves the child's
#: expiry and its registrant's nonce ceiling, both of which the snapshot
#: keeps (an old expiry would let a restart drop a live registration).
SNAPSHOT_EVENTS = (RegistrationAccepted, RegistrationRemoved, RegistrationExpired)


class RevocationSaver:
    """Saves the revocations the node holds as soon as it learns one (the
    shell hands it every event), so a restart still refuses the revoked
    node; a failed write is retried at every `save`."""

    def __init__(self, state: StateDir, node: Node) -> None:
        self.state = state
        self.node = node
        self.dirty = False

    def note(self, event: Event) -> None:
        if isinstance(event, RevocationLearned):
            self.dirty = True
            self.save()

    def save(self) -> bool:
        """Write the revocations if one was learned since the last save that
        worked; False (logged by StateDir) if that write failed."""
        if not self.dirty:
            return True
        if not self.state.save_revocations(self.node.revocations()):
            return False
        self.dirty = False
        return True


class SnapshotSaver:
    """Saves the registration snapshot when the node's events say the
    registrations changed: the shell hands it every event (`note`), the
    daemon calls `save` every few seconds and once more at shutdown."""

    def __init__(self, state: StateDir, node: Node) -> None:
        self.state = state
        self.node = node
        # Nothing written by this process yet: the first save writes what
        # the node holds, restored registrations included.
        self.dirty = True

    def note(self, event: Event) -> None:
        if isinstance(event, SNAPSHOT_EVENTS):
            self.dirty = True

    def save(self, mono_now: float, wall_now: float, *, force: bool = False) -> bool:
        """Write the snapshot if the registrations changed since the last
        save that worked (always with `force`). A failed save (logged by
        StateDir) leaves it dirty, so the next call retries; False then."""
        if not (self.dirty or force):
            return True
        if not self.state.save_snapshot(self.node, mono_now, wall_now):
            return False
        self.dirty = False
        return True


# ---------------------------------------------------------------- snapshot
# Times are stored as wall-clock seconds: the monotonic clock restarts with
# the process, so remaining lifetimes are carried across as wall time.


def _addr_out(addr: tuple[Any, int]) -> list[Any]:
    return [str(addr[0]), addr[1]]


def snapshot_registrations(node: Node, mono_now: float, wall_now: float) -> bytes:
    """Every registration the node holds, with wall-clock lifetimes."""
    entries = []
    for entry in node.registrations(ordered=False):
        children = []
        for child in entry.children.values():
            expires = child.expires
            if math.isinf(expires):
                # Held by a reliable-transport session (no timeout while it
                # is up): saved with what it gets should the session drop
                # now. msgpack would write an infinity no restore can use.
                expires = mono_now + node.ms.lifetime(child.record, child.ttl_timeout)
            children.append(
                [
                    encode_record(child.record),
                    _addr_out(child.registrant),
                    None if child.xtr_id is None else child.xtr_id.to_bytes(16, "big"),
                    child.site_id,
                    wall_now - (mono_now - child.first),
                    wall_now - (mono_now - child.last),
                    wall_now + (expires - mono_now),
                    child.flags,
                    child.alg_id,
                    child.ttl_timeout,
                    None if child.via is None else str(child.via),
                ]
            )
        entries.append(
            [str(entry.eid), entry.site, entry.merge, entry.proxy_reply, children]
        )
    nonces = [
        [
            site,
            str(who) if not isinstance(who, int) else who.to_bytes(16, "big"),
            kid,
            n,
        ]
        for (site, who, kid), n in node.nonce_ceilings().items()
    ]
    return bytes(
        msgpack.packb({"v": 1, "entries": entries, "nonces": nonces}, use_bin_type=True)
    )


def restore_registrations(
    node: Node,
    raw: Any,
    mono_now: float,
    wall_now: float,
    *,
    source: object = "the registration snapshot",
) -> int:
    """Reinstate a snapshot; skip (and log, naming `source`) anything
    malformed. Returns the number of registrations restored. Never raises:
    a snapshot of any shape must not keep the node from starting."""
    if raw is None:
        return 0
    problem = _layout_problem(raw)
    if problem:
        log.warning("%s has an unknown layout (%s); ignoring it", source, problem)
        return 0
    entries, nonces = raw.get("entries", []), raw.get("nonces", [])
    restored = 0
    skipped: list[str] = []
    for item in entries:
        try:
            eid, site, merge, proxy, regs = _entry(item, mono_now, wall_now)
        except Exception as exc:  # noqa: BLE001 - any malformation means skip it
            skipped.append(f"{type(exc).__name__}: {exc}")
            continue
        try:
            if node.restore_registration(eid, site, merge, proxy, regs, mono_now):
                restored += 1
        except Exception as exc:  # noqa: BLE001 - well-formed but unusable
            skipped.append(f"{eid}: {type(exc).__name__}: {exc}")
    for item in nonces:
        try:
            key, nonce = _nonce(item)
        except Exception as exc:  # noqa: BLE001 - any malformation means skip it
            skipped.append(f"nonce: {type(exc).__name__}: {exc}")
            continue
        node.restore_nonce_ceiling(key, nonce)
    if skipped:
        # One line, however many: a corrupt snapshot must not flood the log.
        log.warning(
            "%s: skipped %d malformed item(s), e.g. %s",
            source,
            len(skipped),
            skipped[0][:200],
        )
    return restored


def _layout_problem(raw: Any) -> str:
    """Why raw is not a version-1 snapshot, or "" if it is one."""
    if not isinstance(raw, dict):
        return f"a {type(raw).__name__}, not a map"
    version = raw.get("v")
    if type(version) is not int or version != 1:
        return f"version {version!r:.40}"
    for key in ("entries", "nonces"):
        if not isinstance(raw.get(key, []), list):
            return f"{key} is a {type(raw[key]).__name__}, not a list"
    return ""


def _int(value: Any, bits: int) -> int:
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise ValueError(f"{value!r:.40} is not a {bits}-bit unsigned integer")
    return value


def _time(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{value!r:.40} is not a time")
    return float(value)


def _typed(value: Any, kind: type) -> Any:
    if type(value) is not kind:
        raise ValueError(f"{value!r:.40} is not a {kind.__name__}")
    return value


def _t_bit_of(flags: str) -> bool:
    """The T bit of a snapshot written before it was kept as data, from
    the flags text of the pages ("p-s-I-T-r-m-n")."""
    letters = flags.split("-")
    return len(letters) == 7 and letters[3] == "T"


def _entry(
    item: Any, mono_now: float, wall_now: float
) -> tuple[Eid, str, bool, bool, list[Registration]]:
    text, site, merge, proxy, children = _typed(item, list)
    for value, kind in ((text, str), (site, str), (merge, bool), (proxy, bool)):
        _typed(value, kind)
    regs = [_child(c, mono_now, wall_now) for c in _typed(children, list)]
    if not regs:
        raise ValueError(f"{text:.80} has no registrations")
    eid = Eid.from_wire(regs[0].record.eid, regs[0].record.mask_len)
    if str(eid) != text:
        raise ValueError(f"{text:.80} does not match its record")
    for reg in regs[1:]:
        if Eid.from_wire(reg.record.eid, reg.record.mask_len) != eid:
            raise ValueError(f"{text:.80} has a child for another EID")
    return eid, site, merge, proxy, regs


def _child(item: Any, mono_now: float, wall_now: float) -> Registration:
    fields = _typed(item, list)
    # Snapshots before the T bit was kept as data have nine fields, before
    # a relaying member was kept (issue 14), ten.
    if len(fields) == 9:
        fields = [*fields, _t_bit_of(_typed(fields[7], str))]
    if len(fields) == 10:
        fields = [*fields, None]
    (
        rec_bytes,
        registrant,
        xtr,
        site_id,
        first,
        last,
        expires,
        flags,
        alg,
        t_bit,
        via,
    ) = fields
    host, port = _typed(registrant, list)
    r = Reader(_typed(rec_bytes, bytes))
    record = MapRecord.read(r)
    r.finish()
    if xtr is not None and len(_typed(xtr, bytes)) != 16:
        raise ValueError("an xTR-ID is 16 bytes")
    t_bit = _typed(t_bit, bool)
    # Wall-clock times may be bad or shifted (a clock step while down): none
    # may have been seen in the future (the node caps each lifetime).
    left = _time(expires) - wall_now
    seen = mono_now - max(0.0, wall_now - _time(last))
    return Registration(
        record,
        (ip_address(_typed(host, str)), _int(port, 16)),
        None if xtr is None else int.from_bytes(xtr, "big"),
        _int(site_id, 64),
        min(mono_now - max(0.0, wall_now - _time(first)), seen),
        seen,
        mono_now + left,
        _typed(flags, str),
        _int(alg, 8),
        t_bit,
        None if via is None else ip_address(_typed(via, str)),
    )


def _nonce(item: Any) -> tuple[tuple[str, Any, int], int]:
    site, who, kid, nonce = _typed(item, list)
    key: Any
    if type(who) is bytes:
        if len(who) != 16:
            raise ValueError("an xTR-ID is 16 bytes")
        key = int.from_bytes(who, "big")
    else:
        key = ip_address(_typed(who, str))
    return (_typed(site, str), key, _int(kid, 8)), _int(nonce, 64)
