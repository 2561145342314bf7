"""Operator log lines: event text forms, levels, line budget, text and JSON formats.

Each core event is one line of LISP notation; the level each is logged at and
the budget that keeps a flood from flooding the log live here too. Text lines
read `<time> <LEVEL> <logger>: <message>`, the time RFC 3339 UTC with
milliseconds; in JSON each line is one object with `time`, `level`,
`logger`, `event` (a kebab-case name, null for a line that is no event),
`message` (the text form) and the event's fields. EIDs are written as
decent.wire prints them (`[iid]prefix/len`, `[iid]'name'`), xTR-IDs as 0x and
32 hex digits (as the status page shows them), nonces as 0x and 16.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import IO, Any, Final, TypeVar

from decent.peer.config import Addr
from decent.peer.events import (
    Event,
    KeyStateChanged,
    LocatorStateChanged,
    MapCacheCleared,
    MapCacheExpired,
    MapCacheUpdated,
    MapRequestFailed,
    MapServerSetChanged,
    MapServerSetFailed,
    MergedSetChanged,
    MessageDropped,
    NatChanged,
    NotifyAcknowledged,
    NotifyGaveUp,
    RegisterAcknowledged,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationNacked,
    RegistrationRejected,
    RegistrationRemoved,
    RelayClientChanged,
    RevocationLearned,
    RlocsChanged,
    SessionDown,
    SessionUp,
    SmrReceived,
    UnauthenticatedAccepted,
)
from decent.wire import IPAddress

LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
#: The LISP control port: a peer's port is written only when it is another
#: (a tool such as lig sends from an ephemeral port; that tells who it was).
LISP_CONTROL_PORT: Final = 4342

#: Drops of input that only a broken or hostile sender makes: logged at
#: WARNING (rate-limited). Other drops (rate limits we applied, late or
#: unasked answers, what a member sees while the membership settles) recur
#: in normal operation and stay at DEBUG; every drop is counted either way.
HOSTILE_DROPS: Final = frozenset(
    {
        "auth-failed",
        "decode-error",
        "unusable-field",
        "replicated-spoofed",
        "relay-not-member",
        "key-rloc-mismatch",
    }
)


@dataclass(frozen=True, slots=True)
class LinesSuppressed:
    """The summary of the lines of one kind the budget held back."""

    suppressed_event: str
    count: int
    interval_s: float


# ------------------------------------------------------------------ values
def where(addr: Addr) -> str:
    """A peer as operators write it: the address, with the port only when it
    is not the LISP control port (`198.18.1.1`, `198.18.1.1:40000`,
    `[2001:db8::1]:40000`)."""
    ip, port = addr
    if port in (LISP_CONTROL_PORT, 0):
        return str(ip)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def xtr_id_hex(xtr_id: int) -> str:
    """An xTR-ID (128 bits) as the status page shows it: 0x and 32 digits."""
    return f"0x{xtr_id:032x}"


def _hex64(value: int) -> str:
    return f"0x{value:016x}"


def _xtr(xtr_id: int | None) -> str:
    return "" if xtr_id is None else f" xtr-id {xtr_id_hex(xtr_id)}"


# ------------------------------------------------------------------ text forms
E = TypeVar("E")
#: The text form of each event class (the tests check every class in
#: decent.peer.events has one).
TEXT_FORMS: dict[type[Any], Callable[[Any], str]] = {}


def _form(cls: type[E]) -> Callable[[Callable[[E], str]], Callable[[E], str]]:
    def register(fn: Callable[[E], str]) -> Callable[[E], str]:
        TEXT_FORMS[cls] = fn
        return fn

    return register


@_form(MessageDropped)
def _dropped(e: MessageDropped) -> str:
    if e.reason == "no-map-resolver":  # our own Map-Request: nowhere to send it
        return "map-request not sent: no-map-resolver"
    return f"message from {where(e.peer)} dropped: {e.reason}"


@_form(RegistrationRejected)
def _rejected(e: RegistrationRejected) -> str:
    # Key exchange (RFC 8061) refusals share the event; their reasons say so.
    what = "key exchange" if e.reason.startswith("key-") else "map-register"
    eid = "" if e.eid is None else f" for {e.eid}"
    name = "" if e.name is None else f" (node {e.name})"
    return f"{what} from {where(e.peer)}{eid}{name} rejected: {e.reason}"


@_form(RevocationLearned)
def _revoked(e: RevocationLearned) -> str:
    return (
        f"certificate of node {e.name} revoked (serial {_hex64(e.serial)}): "
        "its registrations removed, refused from now on"
    )


@_form(UnauthenticatedAccepted)
def _unauthenticated(e: UnauthenticatedAccepted) -> str:
    return f"unauthenticated map-register from {where(e.peer)} accepted (site {e.site})"


@_form(RegistrationAccepted)
def _accepted(e: RegistrationAccepted) -> str:
    via = "" if e.via is None else f" via {e.via}"
    return (
        f"map-register from {where(e.registrant)}{via} for {e.eid}{_xtr(e.xtr_id)} "
        f"accepted (site {e.site}, {'new' if e.new else 'refresh'})"
    )


@_form(RegistrationRemoved)
def _removed(e: RegistrationRemoved) -> str:
    return f"registration of {e.eid}{_xtr(e.xtr_id)} removed"


@_form(RegistrationExpired)
def _expired(e: RegistrationExpired) -> str:
    return f"registration of {e.eid}{_xtr(e.xtr_id)} expired"


@_form(MergedSetChanged)
def _merged(e: MergedSetChanged) -> str:
    members = f"{e.members} member{'' if e.members == 1 else 's'}"
    return f"merged locator set of {e.eid} changed: {members}, notifying them"


@_form(NotifyAcknowledged)
def _notify_acked(e: NotifyAcknowledged) -> str:
    return f"map-notify to {where(e.peer)} acknowledged (nonce {_hex64(e.nonce)})"


@_form(NotifyGaveUp)
def _notify_gave_up(e: NotifyGaveUp) -> str:
    return (
        f"map-notify to {where(e.peer)} never acknowledged, gave up "
        f"(nonce {_hex64(e.nonce)})"
    )


@_form(RegisterAcknowledged)
def _register_acked(e: RegisterAcknowledged) -> str:
    return (
        f"map-register to {where(e.peer)} acknowledged by map-notify "
        f"(nonce {_hex64(e.nonce)})"
    )


#: Where a map-cache entry came from, when the source's name says too little.
_SOURCES: Final = {"local": "this node's map-server"}


@_form(MapCacheUpdated)
def _cache_updated(e: MapCacheUpdated) -> str:
    kind = "negative entry" if e.negative else "entry"
    source = _SOURCES.get(e.source, e.source)
    return f"map-cache {kind} {e.eid} installed from {source}"


@_form(MapCacheExpired)
def _cache_expired(e: MapCacheExpired) -> str:
    return f"map-cache entry {e.eid} expired"


@_form(MapCacheCleared)
def _cache_cleared(e: MapCacheCleared) -> str:
    return f"map-cache cleared by the operator: {e.entries} entries removed"


@_form(MapRequestFailed)
def _request_failed(e: MapRequestFailed) -> str:
    return f"map-request for {e.eid} unanswered after every retry; held down"


@_form(SmrReceived)
def _smr(e: SmrReceived) -> str:
    return f"smr from {where(e.peer)} for {e.eid}: refreshing the map-cache entry"


@_form(LocatorStateChanged)
def _locator(e: LocatorStateChanged) -> str:
    return f"locator {e.rloc} of {e.eid} {'up' if e.up else 'down'}"


@_form(KeyStateChanged)
def _key_state(e: KeyStateChanged) -> str:
    reason = f" ({e.reason})" if e.reason else ""
    return f"data plane to {e.rloc}: {e.state}{reason}"


@_form(RlocsChanged)
def _rlocs(e: RlocsChanged) -> str:
    old = ", ".join(e.old) or "none"
    new = ", ".join(e.new) or "none"
    return f"own RLOCs changed from {old} to {new}; registering again"


def _session(peer: object, etr: bool) -> str:
    """A reliable-transport session, named by who connected."""
    return f"reliable-transport session {'to' if etr else 'from'} {peer}"


@_form(SessionUp)
def _session_up(e: SessionUp) -> str:
    if e.etr:
        return f"{_session(e.peer, True)} up: our registrations go over it"
    return (
        f"{_session(e.peer, False)} up: its registrations come over it, "
        "held without timeout"
    )


@_form(SessionDown)
def _session_down(e: SessionDown) -> str:
    after = (
        "registering to it over UDP again"
        if e.etr
        else "its registrations time out normally from now"
    )
    return f"{_session(e.peer, e.etr)} down ({e.reason or 'closed'}): {after}"


@_form(RegistrationNacked)
def _nacked(e: RegistrationNacked) -> str:
    return (
        f"registration of {e.eid} refused by {e.peer} over its "
        f"reliable-transport session: {e.reason}"
    )


@_form(NatChanged)
def _nat(e: NatChanged) -> str:
    if e.state == "relayed":
        return (
            f"behind NAT (peers see {e.global_address}): registering and "
            f"reachable through relay {e.relay}"
        )
    if e.state == "no-relay":
        return f"behind NAT (peers see {e.global_address}) and no relay answers"
    return "reachable directly: no NAT between us and our peers"


@_form(RelayClientChanged)
def _relay_client(e: RelayClientChanged) -> str:
    if e.up:
        return f"relaying for the member behind NAT at {e.binding}"
    return f"no longer relaying for {e.binding}: silent for three keepalives"


@_form(MapServerSetChanged)
def _set_changed(e: MapServerSetChanged) -> str:
    def listed(addrs: tuple[IPAddress, ...]) -> str:
        return ", ".join(str(a) for a in addrs) or "none"

    return f"map-server set {e.name}: {listed(e.old)} -> {listed(e.new)}"


@_form(MapServerSetFailed)
def _set_failed(e: MapServerSetFailed) -> str:
    return f"map-server set {e.name} not resolved: {e.reason}"


@_form(LinesSuppressed)
def _suppressed(e: LinesSuppressed) -> str:
    return (
        f"{e.suppressed_event}: {e.count:,} more like this suppressed "
        f"in the last {e.interval_s:.1f} s"
    )


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_NAMES: dict[type[Any], str] = {}


def event_name(event: object) -> str:
    """The event's stable kebab-case name: RegistrationAccepted ->
    "registration-accepted" (the `event` of a JSON line)."""
    cls = type(event)
    name = _NAMES.get(cls)
    if name is None:
        name = _NAMES[cls] = _CAMEL.sub("-", cls.__name__).lower()
    return name


def describe(event: Event | LinesSuppressed) -> str:
    """The one-line text form of an event (no repr, whatever the event)."""
    form = TEXT_FORMS.get(type(event))
    if form is not None:
        return form(event)
    # An event class added without a text form (the tests catch that):
    # still one readable line, never a repr.
    fields = event_fields(event)
    return " ".join([event_name(event), *(f"{k}={v}" for k, v in fields.items())])


# ------------------------------------------------------------------ JSON fields
JsonValue = str | int | float | bool | None | list[str]
#: Integers written in hex, with their digit counts.
_HEX_FIELDS: Final = {"xtr_id": 32, "nonce": 16, "serial": 16}


def event_fields(event: object) -> dict[str, JsonValue]:
    """The event's fields as JSON-safe values: addresses and EIDs as strings,
    a peer (address, port) as `<field>` and `<field>_port`, xTR-IDs and
    nonces as 0x hex strings."""
    out: dict[str, JsonValue] = {}
    for f in dataclasses.fields(event):  # type: ignore[arg-type]
        value = getattr(event, f.name)
        if isinstance(value, tuple) and len(value) == 2 and _is_ip(value[0]):
            out[f.name] = str(value[0])
            out[f"{f.name}_port"] = int(value[1])
        elif isinstance(value, tuple):
            out[f.name] = [str(v) for v in value]
        elif isinstance(value, int) and not isinstance(value, bool):
            digits = _HEX_FIELDS.get(f.name)
            out[f.name] = value if digits is None else f"0x{value:0{digits}x}"
        elif value is None or isinstance(value, str | float | bool):
            out[f.name] = value
        else:  # Eid, IP addresses: their text forms
            out[f.name] = str(value)
    return out


def _is_ip(value: object) -> bool:
    return isinstance(value, IPv4Address | IPv6Address)


# ------------------------------------------------------------------ levels
def event_level(event: Event) -> int:
    """The level an event is logged at: WARNING for refusals and hostile
    input (rate-limited like every event line), DEBUG for what recurs every
    period (refreshes, acknowledgements, ordinary drops), INFO for a change
    of state."""
    if isinstance(event, RegistrationRejected):
        # Someone failing to join (a wrong key, an expired certificate) or
        # an attack: an operator must see it.
        return logging.WARNING
    if isinstance(event, MessageDropped):
        return logging.WARNING if event.reason in HOSTILE_DROPS else logging.DEBUG
    if isinstance(event, RegistrationNacked | MapServerSetFailed):
        # A peer refused one of our EIDs, or DNS no longer says where a
        # Map-Server set is (its last addresses are used meanwhile).
        return logging.WARNING
    if isinstance(event, KeyStateChanged) and event.state == "refused":
        # A peer we must encrypt to and cannot: its traffic is dropped.
        return logging.WARNING
    if isinstance(event, RegistrationAccepted) and not event.new:
        return logging.DEBUG
    if isinstance(event, MapCacheUpdated) and not event.changed:
        return logging.DEBUG
    if isinstance(
        event, RegisterAcknowledged | NotifyAcknowledged | UnauthenticatedAccepted
    ):
        # Every registration period; the daemon warns once at start-up
        # about a site that accepts unauthenticated registrations.
        return logging.DEBUG
    return logging.INFO


# ------------------------------------------------------------------ line budget
Kind = tuple[str, int]


class LineBudget:
    """How many event lines may be written: a token bucket per kind (event
    name and level), `burst` lines at once and `rate` a second after that.
    What is refused is counted per kind for one summary line each.

    So in any `t` seconds a kind writes at most `burst + rate * t` lines,
    plus its summaries. Time is a parameter (the shell passes loop.time())."""

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError("log_rate must be positive and log_burst at least 1")
        self.rate, self.burst = rate, float(burst)
        #: Per kind: [tokens, when last refilled].
        self._buckets: dict[Kind, list[float]] = {}
        self.held: Counter[Kind] = Counter()
        #: When the first line now held back was refused.
        self.held_since = 0.0

    def take(self, kind: Kind, now: float) -> bool:
        """True: write the line. False: it is counted as held back."""
        bucket = self._buckets.get(kind)
        if bucket is None:
            bucket = self._buckets[kind] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        if not self.held:
            self.held_since = now
        self.held[kind] += 1
        return False

    def summaries(self, now: float) -> list[tuple[int, LinesSuppressed]]:
        """(level, summary) for each kind held back since the last call,
        most held first; forgets them."""
        held, self.held = self.held, Counter()
        interval = now - self.held_since
        return [
            (level, LinesSuppressed(name, count, interval))
            for (name, level), count in held.most_common()
        ]


# ------------------------------------------------------------------ formatters
def rfc3339(created: float) -> str:
    """A log record's time: RFC 3339 UTC with milliseconds."""
    seconds = int(created)
    ms = min(int((created - seconds) * 1000), 999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def one_line(text: str) -> str:
    """`text` with newlines and other control characters escaped: a peer's
    name (a distinguished-name EID) cannot start a forged line."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode() for c in text
    )


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger>: <message>`, one line per record; a traceback
    follows on lines indented by two spaces."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{rfc3339(record.created)} {record.levelname} {record.name}: "
            f"{one_line(record.getMessage())}"
        )
        trace = _trace(self, record)
        if trace:
            line += "\n" + "\n".join("  " + t for t in trace.splitlines())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "decent_event", None)
        out: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": None if event is None else event_name(event),
            "message": record.getMessage(),
        }
        if event is not None:
            out.update(event_fields(event))
        trace = _trace(self, record)
        if trace:
            out["exception"] = trace
        return json.dumps(out)


def _trace(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


class _Handler(logging.StreamHandler[IO[str]]):
    """The handler setup_logging installs (and replaces when called again)."""


def setup_logging(level: str, fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Log every logger's records to stderr (or `stream`) in `fmt` ("text"
    or "json") from `level` up. The level can change later on the root
    logger (the daemon's reload does); calling again replaces the handler."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    handler = _Handler(sys.stderr if stream is None else stream)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Python warnings print several lines of their own; as records they
    # keep to the format.
    logging.captureWarnings(True)
