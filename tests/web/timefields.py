"""A check that a JSON document follows the API's time and unit convention.

A point in time is `<what>_at`, an RFC 3339 UTC string with milliseconds; a
duration carries its unit in its name (`_s`, `_min`, `_ms`). Any other key
that names a time or a duration (ttl, age, uptime, first*, last*, *_seen,
confirmed, since, expires...) is a violation. `time_field_errors` lists
them with their paths; `assert_time_fields` fails a test on the first few.
"""

from __future__ import annotations

import re
from typing import Any, Final

#: "2026-12-05T16:25:50.123Z"
RFC3339_MS: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
UNIT_SUFFIXES: Final = ("_s", "_min", "_ms")
#: Names that are a time or a duration on their own.
TIME_WORDS: Final = frozenset(
    {
        "age",
        "confirmed",
        "created",
        "duration",
        "elapsed",
        "expires",
        "expiry",
        "interval",
        "rtt",
        "since",
        "time",
        "timeout",
        "timestamp",
        "ttl",
        "updated",
        "uptime",
        "when",
    }
)
#: Parts of a name that make it a time (first_seen, last_heard, max_age...).
TIME_PARTS: Final = ("seen", "heard", "registered", "age", "ttl", "uptime", "rtt")
#: Keys that start like a time but are not one: who registered last.
NOT_TIMES: Final = frozenset({"last_registerer"})
#: Objects whose keys are names (counters, sizes by kind), not fields.
NAME_TABLES: Final = frozenset({"counters", "socket_errors", "state", "counts"})


def _looks_like_time(key: str) -> bool:
    name = key.lower().replace("-", "_")
    if name in NOT_TIMES:
        return False
    words = name.split("_")
    return (
        name in TIME_WORDS
        or words[0] in ("first", "last")
        or any(w in TIME_PARTS or w in TIME_WORDS for w in words)
    )


def time_field_errors(doc: Any, path: str = "$") -> list[str]:
    """Every key of doc (walked recursively) that breaks the convention, and
    every `_at` or unit-suffixed value of the wrong kind, with its path."""
    errors: list[str] = []
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            errors += time_field_errors(item, f"{path}[{i}]")
        return errors
    if not isinstance(doc, dict):
        return errors
    for key, value in doc.items():
        where = f"{path}.{key}"
        if not isinstance(key, str):
            continue
        if key.endswith("_at"):
            if value is not None and not (
                isinstance(value, str) and RFC3339_MS.fullmatch(value)
            ):
                errors.append(f"{where}: {value!r} is not RFC 3339 UTC with ms")
            continue
        if key.endswith(UNIT_SUFFIXES):
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and not number:
                errors.append(f"{where}: {value!r} is not a number")
            continue
        # A flag (`registered`: true) says whether, not when.
        if _looks_like_time(key) and not isinstance(value, bool):
            errors.append(f"{where}: a time or duration without _at/_s/_min/_ms")
        if key not in NAME_TABLES:
            errors += time_field_errors(value, where)
    return errors


def assert_time_fields(doc: Any, what: str = "document") -> None:
    """Fail with the first violations of the convention in doc."""
    errors = time_field_errors(doc)
    assert not errors, f"{what}: " + "; ".join(errors[:10])
