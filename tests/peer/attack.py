"""The attack run's tools (the hardening issue): a rogue member and its registers."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest

from decent.peer.mapping.push_config import decent_node_config
from decent.wire import MapRecord
from tests.peer.conftest import DECENT_IPS, GROUP, KEY, Traced, nonces, register_msg
from tests.wire.tshark import missing_tools

#: The rogue member's address: it holds the group key.
EVIL = IPv4Address("198.18.42.66")
#: For the tests that show what the hardening puts on the wire dissects
#: cleanly in tshark's LISP dissector.
needs_tshark = pytest.mark.skipif(
    bool(missing_tools()),
    reason="tshark and text2pcap not installed (Debian: apt-get install tshark)",
)


def member(i: int = 1, **kw: object) -> Traced:
    """A lone push-mode member n<i> (i in 1..3), its own Map-Server."""
    config = decent_node_config(
        name=f"n{i}",
        rlocs=(DECENT_IPS[i - 1],),
        group=GROUP,
        key=KEY,
        xtr_id=i,
        **kw,  # type: ignore[arg-type]
    )
    return Traced(config, nonce=nonces(i << 48))


def evil_register(
    records: tuple[MapRecord, ...], nonce: int, xtr_id: int = 0xE71, **kw: Any
) -> bytes:
    """A Map-Register from a member gone rogue: it holds the group key."""
    kw.setdefault("proxy_reply", True)
    kw.setdefault("want_map_notify", False)
    return register_msg(records, nonce=nonce, xtr_id=xtr_id, **kw)
