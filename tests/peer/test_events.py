"""The typed events: frozen, comparable values, and every one is in the Event union."""

from __future__ import annotations

import dataclasses
import inspect
from typing import get_args

import pytest

from decent.peer import events
from decent.wire import Eid
from tests.peer.conftest import PEER

CLASSES = [
    cls
    for _, cls in inspect.getmembers(events, inspect.isclass)
    if cls.__module__ == events.__name__
]


def test_the_event_union_names_every_event_class():
    assert CLASSES
    assert set(get_args(events.Event)) == set(CLASSES)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_events_are_frozen_slotted_dataclasses(cls):
    assert dataclasses.is_dataclass(cls)
    assert vars(cls)["__dataclass_params__"].frozen
    assert "__slots__" in vars(cls)


def test_events_compare_and_hash_by_value():
    a = events.MessageDropped(PEER, "decode-error")
    assert a == events.MessageDropped(PEER, "decode-error")
    assert a != events.MessageDropped(PEER, "auth-failed")
    assert len({a, events.MessageDropped(PEER, "decode-error")}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.reason = "other"  # type: ignore[misc]
    rejected = events.RegistrationRejected(PEER, "no-site")
    assert rejected.eid is None
    expired = events.MapCacheExpired(Eid.prefix("10.1.0.0/16"))
    assert expired == events.MapCacheExpired(Eid.prefix("10.1.2.3/16"))
