"""The Map-Server role's authorization: keys, algorithms, nonces, prefixes.

Map-Register authorization (RFC 9301 5.6, 8.2, 9). A rejected Map-Register
changes nothing and is not answered."""

from __future__ import annotations

import pytest

from decent.peer.events import (
    RegistrationAccepted,
    RegistrationRejected,
    UnauthenticatedAccepted,
)
from decent.wire import MapNotify, check_auth, sign_bytes
from tests.peer.conftest import (
    ETR_EID,
    ETR_IP,
    KEY,
    MS_IP,
    OTHER_KEY,
    Raw,
    Traced,
    attach,
    ctl,
    ms_config,
    record,
    register_msg,
    site_a,
    site_b,
    state,
)
from tests.peer.simnet import SimNet

GOOD = record("10.1.1.0/24", "192.0.2.10")


class Rig:
    """A Map-Server serving sites A and B, and a scripted registrant."""

    def __init__(self, **site_kw: object) -> None:
        self.net = SimNet()
        self.ms = Traced(ms_config(sites=(site_a(**site_kw), site_b())))
        self.peer = Raw()
        attach(self.net, self.ms)
        self.net.add(self.peer, ctl(ETR_IP))

    def send(self, data: bytes) -> None:
        self.peer.out.append((data, ctl(MS_IP)))
        self.net.advance(0.01)

    def notifies(self) -> list[MapNotify]:
        return [m for m in self.peer.messages() if isinstance(m, MapNotify)]


def registered_rig() -> tuple[Rig, bytes]:
    rig = Rig()
    first = register_msg(GOOD, nonce=10)
    rig.send(first)
    assert ETR_EID in rig.ms.ms.db
    assert len(rig.notifies()) == 1
    return rig, first


def resigned(data: bytes, key: bytes, length: int) -> bytes:
    """A signed Map-Register re-signed with a MAC of `length` bytes (the
    RFC 2404/4868 truncations are 12 and 16 bytes)."""
    full = int.from_bytes(data[14:16], "big")
    blank = data[:14] + length.to_bytes(2, "big") + bytes(length) + data[16 + full :]
    return sign_bytes(blank, key)


def with_key_id(data: bytes, key_id: int) -> bytes:
    return data[:12] + bytes([key_id]) + data[13:]


BAD = {
    "auth-failed": lambda: register_msg(GOOD, nonce=11, key=b"not the key"),
    "auth-required": lambda: register_msg(GOOD, nonce=11, key=None),
    "no-site": lambda: register_msg(record("10.9.0.0/24", "192.0.2.10"), nonce=11),
    "foreign-prefix": lambda: register_msg(
        (GOOD, record("10.2.1.0/24", "192.0.2.10")), nonce=11
    ),
    "unknown-key-id": lambda: with_key_id(register_msg(GOOD, nonce=11), 9),
    "no-records": lambda: register_msg((), nonce=11),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_rejected_register_changes_nothing_and_is_not_answered(reason):
    rig, _ = registered_rig()
    before = state(rig.ms)
    rig.send(BAD[reason]())
    assert rig.ms.counters[f"reject.{reason}"] == 1
    assert rig.ms.events(RegistrationRejected)[-1][1].reason == reason
    assert state(rig.ms) == before
    assert len(rig.notifies()) == 1  # only the first registration's


def test_replayed_register_is_rejected_and_changes_nothing():
    rig, first = registered_rig()
    before = state(rig.ms)
    rig.send(first)  # the very same bytes again
    assert rig.ms.counters["reject.replayed-nonce"] == 1
    older = register_msg(GOOD, nonce=9)  # validly signed, but an older nonce
    rig.send(older)
    assert rig.ms.counters["reject.replayed-nonce"] == 2
    assert state(rig.ms) == before
    # Not acknowledged: the one Map-Notify since is a challenge (a fresh
    # nonce) that only the registrant could answer (decent.peer.replay).
    notifies = rig.notifies()
    assert [m.nonce for m in notifies[:1]] == [10]
    assert len(notifies) == 2
    assert notifies[1].nonce not in (9, 10)
    assert rig.ms.counters["tx.challenge"] == 1


def test_forged_register_does_not_advance_the_nonce():
    rig, _ = registered_rig()
    rig.send(register_msg(GOOD, nonce=1000, key=b"forger"))
    rig.send(register_msg(GOOD, nonce=11))  # the real ETR's next nonce still works
    assert rig.ms.counters["registration.accepted"] == 2


def test_key_of_another_site_cannot_register_this_sites_eid():
    rig, _ = registered_rig()
    before = state(rig.ms)
    hijack = record("10.1.1.0/24", "203.0.113.66")
    rig.send(register_msg(hijack, nonce=11, key=OTHER_KEY))
    assert rig.ms.counters["reject.auth-failed"] == 1
    # Nor by listing its own prefix first and ours after it.
    both = (record("10.2.1.0/24", "203.0.113.66"), hijack)
    rig.send(register_msg(both, nonce=12, key=OTHER_KEY))
    assert rig.ms.counters["reject.foreign-prefix"] == 1
    assert state(rig.ms) == before


@pytest.mark.parametrize(("alg", "length"), [(2, 16), (2, 32), (1, 12), (1, 20)])
def test_full_and_truncated_macs_are_accepted(alg, length):
    rig = Rig()
    rig.send(resigned(register_msg(GOOD, nonce=1, alg=alg), KEY, length))
    assert ETR_EID in rig.ms.ms.db


def test_truncated_mac_with_the_wrong_key_is_rejected():
    rig = Rig()
    rig.send(resigned(register_msg(GOOD, nonce=1), b"not the key", 16))
    assert rig.ms.counters["reject.auth-failed"] == 1
    assert len(rig.ms.ms.db) == 0


def test_algorithm_0_is_accepted_only_where_the_site_allows_it():
    rig = Rig(allow_unauthenticated=True)
    rig.send(register_msg(GOOD, nonce=1, key=None))
    assert ETR_EID in rig.ms.ms.db
    assert rig.ms.events(UnauthenticatedAccepted) == [
        (0.001, UnauthenticatedAccepted(ctl(ETR_IP), "site-a"))
    ]
    assert rig.ms.counters["accept.unauthenticated"] == 1
    [notify] = rig.notifies()
    assert notify.alg_id == 0  # nothing to sign it with that the ETR expects
    # Site B does not allow it.
    rig.send(register_msg(record("10.2.1.0/24", "192.0.2.10"), nonce=2, key=None))
    assert rig.ms.counters["reject.auth-required"] == 1


def test_map_notify_ack_is_signed_with_the_site_key_and_algorithm():
    rig = Rig()
    rig.send(register_msg(GOOD, nonce=1, alg=1))
    [(_, raw, _)] = rig.peer.got
    [notify] = rig.notifies()
    assert notify.alg_id == 1
    assert check_auth(raw, KEY)
    assert not check_auth(raw, OTHER_KEY)


def test_relaxed_nonces_accept_a_repeated_nonce():
    # lispers.net resends one constant nonce (protocol notes, gotcha 4).
    rig = Rig(relaxed_nonces=True)
    data = register_msg(GOOD, nonce=0xAABBCCDDDFDFDF00)
    rig.send(data)
    rig.send(data)
    assert rig.ms.counters["registration.accepted"] == 2
    assert rig.ms.counters["reject.replayed-nonce"] == 0


def test_nonces_are_tracked_per_registrant_without_an_xtr_id():
    rig = Rig()
    rig.send(register_msg(GOOD, nonce=5, xtr_id=None))
    rig.send(register_msg(GOOD, nonce=5, xtr_id=None))
    assert rig.ms.counters["reject.replayed-nonce"] == 1
    [(_, accepted)] = rig.ms.events(RegistrationAccepted)
    assert accepted.xtr_id is None


def test_unsigned_map_register_without_want_map_notify_gets_no_answer():
    rig = Rig(allow_unauthenticated=True)
    rig.send(register_msg(GOOD, nonce=1, key=None, want_map_notify=False))
    assert ETR_EID in rig.ms.ms.db
    assert rig.notifies() == []
