"""What the hardening puts on the wire decodes cleanly in tshark's LISP dissector:
the re-synchronisation challenge (a Map-Notify), its confirmation (a
Map-Notify-Ack) and narrowed Map-Replies."""

from __future__ import annotations

import pytest

from decent.wire import MapNotify, MapNotifyAck, MapReply, decode
from tests.peer.roles.test_ms_hardening import ask, covering_node, poisoned_trio
from tests.wire.tshark import (
    MAP_NOTIFY_ACK_BODY,
    MAP_NOTIFY_ACK_TYPE,
    assert_clean,
    missing_tools,
)

pytestmark = pytest.mark.skipif(
    bool(missing_tools()),
    reason="tshark and text2pcap not installed (Debian: apt-get install tshark)",
)


def test_the_resync_exchange_dissects_cleanly():
    net, _, _ = poisoned_trio((1 << 64) - 1)
    net.record = True
    net.run(net.now + 600.0)
    exchange = [
        data
        for _, _, dst, data in net.trace
        if dst[1] == 4342 and isinstance(decode(data), MapNotify | MapNotifyAck)
    ]
    kinds = {type(decode(d)) for d in exchange}
    assert kinds == {MapNotify, MapNotifyAck}
    notifies = [(d, 4342) for d in exchange if isinstance(decode(d), MapNotify)]
    assert_clean(notifies)
    acks = [(d, 4342) for d in exchange if isinstance(decode(d), MapNotifyAck)]
    assert_clean(
        acks,
        {
            MAP_NOTIFY_ACK_TYPE: "tshark 4.0 has no Map-Notify-Ack (RFC 9301 type 5)",
            MAP_NOTIFY_ACK_BODY: "so it leaves the body after the type undecoded",
        },
    )


def test_narrowed_and_bounded_map_replies_dissect_cleanly():
    node, _ = covering_node()
    replies = []
    for prefix in ("10.0.0.0/24", "10.0.0.0/21", "10.0.6.7/32", "10.0.0.9/32"):
        replies += ask(node, prefix)
    assert all(isinstance(decode(d), MapReply) for d in replies)
    assert node.counters["reply.narrowed"] >= 2
    assert_clean([(d, 4342) for d in replies])
