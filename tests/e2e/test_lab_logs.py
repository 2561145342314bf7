"""Every line a real lab run logs is in the documented format, with no repr,
and a refused registration shows at WARNING."""

from __future__ import annotations

import socket
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from decent.lab import CONTROL_PORT, NetnsLab
from decent.wire import AlgorithmId, Locator, MapRecord, MapRegister
from tests.net.test_logtext import REPR, TEXT_LINE

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]

#: Time for three fresh nodes to agree (a run converges in about 2-3 s).
CONVERGE = 20.0
#: However slow the machine, a datagram's line is in the log within this.
LOGGED = 10.0


def _wrong_key_register(eid: IPv4Address, rloc: IPv4Address) -> bytes:
    record = MapRecord(eid, 32, (Locator(rloc),), 1, authoritative=True)
    msg = MapRegister(7, (record,), proxy_reply=True, ttl_timeout=True, xtr_id=99)
    return msg.signed(b"not the group key", AlgorithmId.HMAC_SHA_256_128).encode()


def test_every_line_of_a_lab_run_is_in_the_documented_format(
    make_lab: MakeLab,
) -> None:
    lab = make_lab()
    # Every line the nodes can write, refreshes and ordinary drops too.
    lab.log_level = "debug"
    lab.start_all()
    lab.wait_converged(CONVERGE)

    n1 = lab.node(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((str(lab.host_address), 0))
        port = s.getsockname()[1]
        s.sendto(
            _wrong_key_register(IPv4Address("1.1.1.1"), lab.host_address),
            (str(n1.rloc), CONTROL_PORT),
        )
        s.sendto(b"not lisp at all", (str(n1.rloc), CONTROL_PORT))
    source = f"{lab.host_address}:{port}"
    rejected = f" WARNING decent: map-register from {source} for [0]1.1.1.1/32"
    dropped = f" WARNING decent: message from {source} dropped: decode-error"

    def logged(*parts: str) -> Callable[[], bool]:
        return lambda: all(p in lab.log_path(1).read_text() for p in parts)

    lab.wait_until(logged(rejected, dropped), LOGGED, "n1 to log both")
    # A reload sets the root logger's level; the lines keep their format.
    lab.reload(1)
    lab.wait_until(logged("INFO decent: reload: "), LOGGED, "n1's reload line")
    for i in sorted(lab.nodes):
        assert lab.stop(i) == 0

    seen = 0
    for i in sorted(lab.nodes):
        lines = lab.log_path(i).read_text().splitlines()
        assert lines, f"n{i} logged nothing"
        for number, line in enumerate(lines, 1):
            where = f"n{i} node.log line {number}: {line!r}"
            assert TEXT_LINE.fullmatch(line), where
            assert not REPR.search(line), where
        assert lines[-1].endswith(f" INFO decent: node n{i} stopped")
        seen += len(lines)
    n1_lines = lab.log_path(1).read_text().splitlines()
    (rejection,) = [x for x in n1_lines if rejected in x]
    assert rejection.endswith(" rejected: auth-failed")
    # At debug the lab logs routine lines too: more than start and stop.
    assert seen > 10 * len(lab.nodes)
    assert any(" DEBUG decent: " in x for x in n1_lines)
    assert any(" INFO decent: map-register from " in x for x in n1_lines)
