"""Operator log lines: a text form for every core event, the text and JSON
formats, the levels, and the line budget (on a fake clock)."""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import logging
import re
import typing
from collections import deque
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from decent import config as config_module
from decent.net import logtext
from decent.net.logtext import (
    LineBudget,
    LinesSuppressed,
    describe,
    event_fields,
    event_level,
    event_name,
    setup_logging,
)
from decent.peer import events
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
    RegistrationRejected,
    RegistrationRemoved,
    RelayClientChanged,
    RevocationLearned,
    RlocsChanged,
    SmrReceived,
    UnauthenticatedAccepted,
)
from decent.wire import Eid
from tests.net.test_reliable_status import RELIABLE_GOLDEN

#: The documented text line (README "Logs").
TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.-]+: \S.*"
)
#: What a dataclass repr looks like: `Name(field=`.
REPR = re.compile(r"\b[A-Z]\w+\(\w+=")

PEER = (IPv4Address("198.18.45.11"), 4342)
OTHER = (IPv4Address("198.18.45.12"), 4342)
EID = Eid.prefix("1.1.1.1/32")
XTR = 0xEC68A0B1C2D3E4F5061728394A5B6C7D
XTR_TEXT = "0xec68a0b1c2d3e4f5061728394a5b6c7d"
NONCE = 0x0102030405060708

#: One instance of each event class and its line, written out by hand.
GOLDEN: dict[type, tuple[object, str]] = {
    MessageDropped: (
        MessageDropped(PEER, "auth-failed"),
        "message from 198.18.45.11 dropped: auth-failed",
    ),
    RegistrationRejected: (
        RegistrationRejected(PEER, "auth-failed", Eid.prefix("10.0.0.0/8")),
        "map-register from 198.18.45.11 for [0]10.0.0.0/8 rejected: auth-failed",
    ),
    RevocationLearned: (
        RevocationLearned("n3", 7),
        "certificate of node n3 revoked (serial 0x0000000000000007): "
        "its registrations removed, refused from now on",
    ),
    UnauthenticatedAccepted: (
        UnauthenticatedAccepted(OTHER, "plain"),
        "unauthenticated map-register from 198.18.45.12 accepted (site plain)",
    ),
    RegistrationAccepted: (
        RegistrationAccepted(EID, "decent-group", PEER, XTR, True),
        f"map-register from 198.18.45.11 for [0]1.1.1.1/32 xtr-id {XTR_TEXT} "
        "accepted (site decent-group, new)",
    ),
    RegistrationRemoved: (
        RegistrationRemoved(EID, XTR),
        f"registration of [0]1.1.1.1/32 xtr-id {XTR_TEXT} removed",
    ),
    RegistrationExpired: (
        RegistrationExpired(Eid.name("n2"), XTR),
        f"registration of [0]'n2' xtr-id {XTR_TEXT} expired",
    ),
    MergedSetChanged: (
        MergedSetChanged(Eid.sg("0.0.0.0/0", "233.252.1.1/32"), 3),
        "merged locator set of [0](0.0.0.0/0, 233.252.1.1/32) changed: "
        "3 members, notifying them",
    ),
    NotifyAcknowledged: (
        NotifyAcknowledged(OTHER, NONCE),
        "map-notify to 198.18.45.12 acknowledged (nonce 0x0102030405060708)",
    ),
    NotifyGaveUp: (
        NotifyGaveUp(OTHER, NONCE),
        "map-notify to 198.18.45.12 never acknowledged, gave up "
        "(nonce 0x0102030405060708)",
    ),
    RegisterAcknowledged: (
        RegisterAcknowledged(OTHER, NONCE),
        "map-register to 198.18.45.12 acknowledged by map-notify "
        "(nonce 0x0102030405060708)",
    ),
    MapCacheUpdated: (
        MapCacheUpdated(Eid.prefix("2.2.2.2/32"), "map-reply", False),
        "map-cache entry [0]2.2.2.2/32 installed from map-reply",
    ),
    MapCacheExpired: (
        MapCacheExpired(Eid.prefix("2.2.2.2/32")),
        "map-cache entry [0]2.2.2.2/32 expired",
    ),
    MapCacheCleared: (
        MapCacheCleared(12),
        "map-cache cleared by the operator: 12 entries removed",
    ),
    MapRequestFailed: (
        MapRequestFailed(Eid.prefix("10.9.9.9/32")),
        "map-request for [0]10.9.9.9/32 unanswered after every retry; held down",
    ),
    SmrReceived: (
        SmrReceived(EID, OTHER),
        "smr from 198.18.45.12 for [0]1.1.1.1/32: refreshing the map-cache entry",
    ),
    LocatorStateChanged: (
        LocatorStateChanged(Eid.prefix("2.2.2.2/32"), "198.18.45.12", False),
        "locator 198.18.45.12 of [0]2.2.2.2/32 down",
    ),
    KeyStateChanged: (
        KeyStateChanged("198.18.45.12", "encrypted", ""),
        "data plane to 198.18.45.12: encrypted",
    ),
    RlocsChanged: (
        RlocsChanged(("198.18.45.11",), ("198.18.46.11", "198.18.47.11")),
        "own RLOCs changed from 198.18.45.11 to 198.18.46.11, 198.18.47.11; "
        "registering again",
    ),
    NatChanged: (
        NatChanged("relayed", IPv4Address("198.18.45.1"), "198.18.45.101:4341"),
        "behind NAT (peers see 198.18.45.101:4341): registering and reachable "
        "through relay 198.18.45.1",
    ),
    RelayClientChanged: (
        RelayClientChanged("198.18.45.101:4341", True),
        "relaying for the member behind NAT at 198.18.45.101:4341",
    ),
    MapServerSetChanged: (
        MapServerSetChanged(
            "0.ms.decent.test",
            (IPv4Address("198.18.50.11"),),
            (IPv4Address("198.18.50.11"), IPv4Address("198.18.50.13")),
        ),
        "map-server set 0.ms.decent.test: 198.18.50.11 -> 198.18.50.11, 198.18.50.13",
    ),
    MapServerSetFailed: (
        MapServerSetFailed("1.ms.decent.test", "NXDOMAIN"),
        "map-server set 1.ms.decent.test not resolved: NXDOMAIN",
    ),
    # Reliable transport's three, kept with its tests.
    **RELIABLE_GOLDEN,
}


def _event_classes() -> set[type]:
    """Every event class decent.peer.events defines."""
    return {
        cls
        for _, cls in inspect.getmembers(events, inspect.isclass)
        if cls.__module__ == events.__name__ and dataclasses.is_dataclass(cls)
    }


# ------------------------------------------------------------ text forms
def test_every_event_class_has_a_text_form_and_a_golden_line() -> None:
    classes = _event_classes()
    assert classes == set(typing.get_args(Event)), "Event must list every class"
    assert classes - set(logtext.TEXT_FORMS) == set(), "no text form"
    assert classes - set(GOLDEN) == set(), "no golden line in this test"


@pytest.mark.parametrize("cls", list(GOLDEN), ids=lambda c: str(c.__name__))
def test_golden_line(cls: type) -> None:
    event, line = GOLDEN[cls]
    assert type(event) is cls
    assert describe(event) == line  # type: ignore[arg-type]
    assert not REPR.search(line)


@pytest.mark.parametrize(
    ("event", "line"),
    [
        # A port other than the LISP control port says who sent it.
        (
            MessageDropped((IPv4Address("198.18.45.11"), 40000), "decode-error"),
            "message from 198.18.45.11:40000 dropped: decode-error",
        ),
        (
            MessageDropped((IPv6Address("2001:db8::1"), 40000), "decode-error"),
            "message from [2001:db8::1]:40000 dropped: decode-error",
        ),
        (
            MessageDropped((IPv4Address("198.18.45.11"), 0), "no-map-resolver"),
            "map-request not sent: no-map-resolver",
        ),
        (
            RegistrationRejected(PEER, "no-records"),
            "map-register from 198.18.45.11 rejected: no-records",
        ),
        (
            RegistrationRejected(PEER, "name-mismatch", Eid.name("n2"), "mallory"),
            "map-register from 198.18.45.11 for [0]'n2' (node mallory) "
            "rejected: name-mismatch",
        ),
        (
            RegistrationRejected(PEER, "key-unsigned"),
            "key exchange from 198.18.45.11 rejected: key-unsigned",
        ),
        (
            RegistrationAccepted(
                Eid.prefix("10.1.0.0/16", 7),
                "plain",
                (IPv4Address("192.0.2.5"), 4342),
                None,
                False,
                IPv4Address("198.18.45.11"),
            ),
            "map-register from 192.0.2.5 via 198.18.45.11 for [7]10.1.0.0/16 "
            "accepted (site plain, refresh)",
        ),
        (
            MapCacheUpdated(Eid.prefix("10.9.0.0/16"), "map-reply", True),
            "map-cache negative entry [0]10.9.0.0/16 installed from map-reply",
        ),
        (
            MapCacheUpdated(Eid.prefix("2.2.2.2/32"), "local", False),
            "map-cache entry [0]2.2.2.2/32 installed from this node's map-server",
        ),
        (
            MergedSetChanged(Eid.prefix("10.0.0.0/8"), 1),
            "merged locator set of [0]10.0.0.0/8 changed: 1 member, notifying them",
        ),
        (
            KeyStateChanged("198.18.45.12", "refused", "no key offered"),
            "data plane to 198.18.45.12: refused (no key offered)",
        ),
        (
            LinesSuppressed("registration-rejected", 1234, 1.04),
            "registration-rejected: 1,234 more like this suppressed in the last 1.0 s",
        ),
    ],
)
def test_more_lines(event: Event, line: str) -> None:
    assert describe(event) == line


@pytest.mark.parametrize(
    ("xtr_id", "text"),
    [
        (0, "0x" + "0" * 32),
        (1, "0x" + "0" * 31 + "1"),
        ((1 << 128) - 1, "0x" + "f" * 32),
        (XTR, XTR_TEXT),
    ],
)
def test_xtr_ids_are_always_0x_and_32_hex_digits(xtr_id: int, text: str) -> None:
    line = describe(RegistrationExpired(EID, xtr_id))
    assert f" xtr-id {text} " in line
    assert event_fields(RegistrationExpired(EID, xtr_id))["xtr_id"] == text


def test_a_line_without_xtr_id_leaves_it_out() -> None:
    assert (
        describe(RegistrationRemoved(EID, None))
        == "registration of [0]1.1.1.1/32 removed"
    )


def test_an_event_class_without_a_text_form_still_gets_no_repr() -> None:
    @dataclasses.dataclass(frozen=True)
    class SomethingNew:
        eid: Eid
        peer: tuple[IPv4Address, int]
        xtr_id: int

    line = describe(SomethingNew(EID, PEER, 1))  # type: ignore[arg-type]
    assert line == (
        "something-new eid=[0]1.1.1.1/32 peer=198.18.45.11 peer_port=4342 "
        f"xtr_id=0x{1:032x}"
    )
    assert not REPR.search(line)


def test_event_names_are_stable_kebab_case() -> None:
    assert event_name(GOLDEN[RegistrationAccepted][0]) == "registration-accepted"
    assert event_name(GOLDEN[MapCacheUpdated][0]) == "map-cache-updated"
    assert event_name(GOLDEN[RlocsChanged][0]) == "rlocs-changed"
    for cls in _event_classes():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)+", event_name(GOLDEN[cls][0])), cls


# ------------------------------------------------------------ levels
@pytest.mark.parametrize(
    ("event", "level"),
    [
        (GOLDEN[RegistrationRejected][0], logging.WARNING),
        (MessageDropped(PEER, "auth-failed"), logging.WARNING),
        (MessageDropped(PEER, "decode-error"), logging.WARNING),
        (MessageDropped(PEER, "rate-limited"), logging.DEBUG),
        (MessageDropped(PEER, "unsolicited-map-reply"), logging.DEBUG),
        (KeyStateChanged("198.18.45.12", "refused", "x"), logging.WARNING),
        (KeyStateChanged("198.18.45.12", "encrypted", ""), logging.INFO),
        (RegistrationAccepted(EID, "s", PEER, XTR, True), logging.INFO),
        (RegistrationAccepted(EID, "s", PEER, XTR, False), logging.DEBUG),
        (GOLDEN[RegisterAcknowledged][0], logging.DEBUG),
        (GOLDEN[NotifyAcknowledged][0], logging.DEBUG),
        (GOLDEN[RegistrationExpired][0], logging.INFO),
        (GOLDEN[LocatorStateChanged][0], logging.INFO),
        (MapCacheUpdated(EID, "map-reply", False), logging.INFO),
        (MapCacheUpdated(EID, "map-reply", False, changed=False), logging.DEBUG),
    ],
)
def test_levels(event: Event, level: int) -> None:
    assert event_level(event) == level


# ------------------------------------------------------------ the line budget
def test_the_budget_allows_the_burst_then_the_rate_on_a_fake_clock() -> None:
    budget = LineBudget(rate=5.0, burst=10)
    kind = ("registration-rejected", logging.WARNING)
    assert [budget.take(kind, 0.0) for _ in range(100)].count(True) == 10
    assert [budget.take(kind, 1.0) for _ in range(100)].count(True) == 5
    # Another kind has its own bucket.
    assert budget.take(("message-dropped", logging.WARNING), 1.0)
    assert budget.summaries(2.5) == [
        (logging.WARNING, LinesSuppressed("registration-rejected", 185, 2.5))
    ]
    # Forgotten once summed up; the bucket refilled meanwhile (1.5 s * 5).
    assert budget.summaries(3.0) == []
    assert [budget.take(kind, 2.5) for _ in range(100)].count(True) == 7


@pytest.mark.parametrize(("rate", "burst"), [(20.0, 100), (0.5, 1), (3.0, 7)])
def test_no_window_ever_holds_more_than_burst_plus_rate_times_its_length(
    rate: float, burst: int
) -> None:
    budget = LineBudget(rate=rate, burst=burst)
    kind = ("message-dropped", logging.WARNING)
    # A flood: 50 lines every 10 ms for 30 (fake) seconds.
    written: list[float] = []
    for step in range(3000):
        now = step * 0.01
        written += [now for _ in range(50) if budget.take(kind, now)]
    times = deque(written)
    for start in (0.0, 0.5, 3.0, 10.0, 29.0):
        for length in (0.01, 1.0, 5.0, 30.0):
            inside = sum(1 for t in times if start <= t <= start + length)
            assert inside <= burst + rate * length + 1e-9, (start, length)
    held = budget.summaries(30.0)
    assert [s.count for _, s in held] == [3000 * 50 - len(written)]


def test_the_budget_refuses_settings_that_log_nothing() -> None:
    with pytest.raises(ValueError, match="log_rate"):
        LineBudget(0.0, 10)
    with pytest.raises(ValueError, match="log_burst"):
        LineBudget(1.0, 0)


# ------------------------------------------------------------ formats
@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """setup_logging's stream; the root logger is put back afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    out = io.StringIO()
    try:
        yield out
    finally:
        for h in root.handlers:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
        logging.captureWarnings(False)


def _log_event(event: Event, level: int | None = None) -> None:
    logging.getLogger("decent").log(
        event_level(event) if level is None else level,
        "%s",
        describe(event),
        extra={"decent_event": event},
    )


def test_text_lines_match_the_documented_format(stream: io.StringIO) -> None:
    setup_logging("debug", "text", stream)
    for event, _ in GOLDEN.values():
        _log_event(event)  # type: ignore[arg-type]
    logging.getLogger("decent").info("node %s up", "n1")
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(GOLDEN) + 1
    for line in lines:
        assert TEXT_LINE.fullmatch(line), line
        assert not REPR.search(line), line
    rejected = GOLDEN[RegistrationRejected][1]
    assert any(line.endswith(f" WARNING decent: {rejected}") for line in lines)
    assert lines[-1].endswith(" INFO decent: node n1 up")


def test_a_hostile_name_cannot_start_a_line_of_its_own(stream: io.StringIO) -> None:
    setup_logging("info", "text", stream)
    forged = "x\n2026-01-01T00:00:00.000Z INFO decent: all is well\x1b[2J"
    _log_event(RegistrationRejected(PEER, "auth-failed", Eid.name(forged)))
    (line,) = stream.getvalue().splitlines()
    assert TEXT_LINE.fullmatch(line)
    assert "[0]'x\\n2026-01-01T00:00:00.000Z INFO decent: all is well\\x1b[2J'" in line


def test_a_traceback_follows_indented(stream: io.StringIO) -> None:
    setup_logging("info", "text", stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("decent").exception("web handler failed")
    first, *rest = stream.getvalue().splitlines()
    assert TEXT_LINE.fullmatch(first)
    assert first.endswith(" ERROR decent: web handler failed")
    assert rest
    assert all(line.startswith("  ") for line in rest)


def test_json_lines_carry_the_event_and_its_fields(stream: io.StringIO) -> None:
    setup_logging("debug", "json", stream)
    for event, _ in GOLDEN.values():
        _log_event(event)  # type: ignore[arg-type]
    logging.getLogger("decent").warning("reload: %s changed", "mode")
    objects = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(objects) == len(GOLDEN) + 1
    for obj, (event, text) in zip(objects, GOLDEN.values(), strict=False):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["time"])
        assert obj["logger"] == "decent"
        assert obj["level"] == logging.getLevelName(event_level(event)).lower()  # type: ignore[arg-type]
        assert obj["event"] == event_name(event)
        assert obj["message"] == text
        for f in dataclasses.fields(event):  # type: ignore[arg-type]
            assert f.name in obj, (event, f.name)
    accepted = objects[list(GOLDEN).index(RegistrationAccepted)]
    assert accepted == {
        "time": accepted["time"],
        "level": "info",
        "logger": "decent",
        "event": "registration-accepted",
        "message": GOLDEN[RegistrationAccepted][1],
        "eid": "[0]1.1.1.1/32",
        "site": "decent-group",
        "registrant": "198.18.45.11",
        "registrant_port": 4342,
        "xtr_id": XTR_TEXT,
        "new": True,
        "via": None,
    }
    rlocs = objects[list(GOLDEN).index(RlocsChanged)]
    assert rlocs["new"] == ["198.18.46.11", "198.18.47.11"]
    assert objects[-1]["event"] is None
    assert objects[-1]["level"] == "warning"
    assert objects[-1]["message"] == "reload: mode changed"


def test_no_event_field_hides_a_line_key() -> None:
    for cls in _event_classes():
        fields = event_fields(GOLDEN[cls][0])
        assert not {"time", "level", "logger", "event", "message"} & set(fields), cls
        json.dumps(fields)


def test_json_exceptions_stay_on_one_line(stream: io.StringIO) -> None:
    setup_logging("info", "json", stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    (line,) = stream.getvalue().splitlines()
    obj = json.loads(line)
    assert obj["logger"] == "aiohttp.server"
    assert "RuntimeError: boom" in obj["exception"]


def test_setup_logging_replaces_its_handler_and_follows_the_root_level(
    stream: io.StringIO,
) -> None:
    setup_logging("info", "json", io.StringIO())
    setup_logging("warning", "text", stream)
    root = logging.getLogger()
    assert sum(isinstance(h, logtext._Handler) for h in root.handlers) == 1
    log = logging.getLogger("decent")
    log.info("hidden")
    # What the daemon's reload does with a new [node] log_level.
    root.setLevel("DEBUG")
    log.debug("shown")
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["shown"]


def test_setup_logging_refuses_unknown_levels_and_formats() -> None:
    with pytest.raises(ValueError, match="log format"):
        setup_logging("info", "xml")
    with pytest.raises(ValueError, match="log level"):
        setup_logging("loud")


def test_config_and_logtext_agree_on_levels_and_formats() -> None:
    assert config_module.LOG_LEVELS == logtext.LOG_LEVELS
    assert config_module.LOG_FORMATS == logtext.LOG_FORMATS


async def test_the_node_shell_logs_events_as_json_with_their_fields(
    stream: io.StringIO,
) -> None:
    from tests.net.test_event_log import shell_on_loopback

    setup_logging("info", "json", stream)
    queue: deque[Event] = deque(
        [
            RegistrationRejected(PEER, "auth-failed", EID),
            RegistrationAccepted(EID, "decent-group", PEER, XTR, False),  # DEBUG
            LocatorStateChanged(EID, "198.18.45.12", True),
        ]
    )
    async with shell_on_loopback(start=False) as (shell, _):
        shell.node.next_event = lambda: queue.popleft() if queue else None  # type: ignore[method-assign]
        shell.flush()
    objects = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(o["level"], o["event"]) for o in objects] == [
        ("warning", "registration-rejected"),
        ("info", "locator-state-changed"),
    ]
    assert objects[0]["peer"] == "198.18.45.11"
    assert objects[0]["peer_port"] == 4342
    assert objects[0]["eid"] == "[0]1.1.1.1/32"
    assert objects[0]["message"] == (
        "map-register from 198.18.45.11 for [0]1.1.1.1/32 rejected: auth-failed"
    )
