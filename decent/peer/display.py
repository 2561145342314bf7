"""How the core's records read on a page or in JSON: flag letters, locators as dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from decent.wire import IPAddress, Locator, MapRegister, address_text, rle_entries

_FLAG_LETTERS = "psitrmn"
_FLAG_TEXT: dict[tuple[bool, ...], str] = {}


def flags_text(msg: MapRegister) -> str:
    """The p-s-I-t-r-m-n flag string of the status pages (upper case = set)."""
    bits = (
        msg.proxy_reply,
        msg.security_capable,
        msg.xtr_id is not None,
        msg.ttl_timeout,
        False,  # r: reserved in RFC 9301 (was the LISP-MN bit)
        msg.merge,
        msg.want_map_notify,
    )
    text = _FLAG_TEXT.get(bits)
    if text is None:  # at most 64 combinations: memoised, it runs per register
        text = _FLAG_TEXT[bits] = "-".join(
            c.upper() if on else c for c, on in zip(_FLAG_LETTERS, bits, strict=True)
        )
    return text


def locator_dict(
    loc: Locator, names: dict[IPAddress, str] | None = None
) -> dict[str, Any]:
    """A locator as JSON, RLE members named from `names` where they carry none."""
    out: dict[str, Any] = {
        "address": address_text(loc.address),
        "priority": loc.priority,
        "weight": loc.weight,
        "m_priority": loc.m_priority,
        "m_weight": loc.m_weight,
        "local": loc.local,
        "reachable": loc.reachable,
    }
    if loc.rloc is not None and loc.rloc != loc.address:
        # An AFI-list locator, {address, name} as lispers.net sends it: the
        # address is what traffic goes to; the name is for people.
        out["address"] = str(loc.rloc)
        if loc.name is not None:
            out["name"] = loc.name
    rle = rle_entries(loc)
    if rle:
        out["address"] = "rle"
        out["rle"] = [
            {
                "address": address_text(e.address),
                "level": e.level,
                "name": e.name.name if e.name else _name_of(e.address, names or {}),
            }
            for e in rle
        ]
    return out


def _name_of(addr: object, names: dict[IPAddress, str]) -> str | None:
    if isinstance(addr, IPv4Address | IPv6Address):
        return names.get(addr)
    return None


def time_text(epoch: float) -> str:
    """A wall-clock time (Unix seconds) as JSON shows every point in time:
    RFC 3339, UTC, milliseconds ("2026-12-05T16:25:50.123Z")."""
    when = datetime.fromtimestamp(epoch, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def time_value(text: object) -> float | None:
    """`time_text`'s string back to Unix seconds; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
