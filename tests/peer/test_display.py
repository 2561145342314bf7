"""The core's records as the pages and the JSON show them: flag letters, locators."""

from __future__ import annotations

from ipaddress import IPv4Address

from decent.peer.display import flags_text, locator_dict
from decent.wire import DistinguishedName, Locator, MapRegister, Rle, RleEntry

A, B = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")


def test_flag_letters_are_upper_case_when_set():
    plain = MapRegister(1, ())
    assert flags_text(plain) == "p-s-i-t-r-m-n"
    full = MapRegister(
        1,
        (),
        proxy_reply=True,
        ttl_timeout=True,
        merge=True,
        want_map_notify=True,
        xtr_id=7,
        site_id=0,
    )
    assert flags_text(full) == "P-s-I-T-r-M-N"


def test_a_locator_reads_as_its_fields_and_an_rle_names_its_members():
    assert locator_dict(Locator(A, priority=1, weight=50)) == {
        "address": "192.0.2.1",
        "priority": 1,
        "weight": 50,
        "m_priority": 255,
        "m_weight": 0,
        "local": False,
        "reachable": True,
    }
    rle = Locator(Rle((RleEntry(A), RleEntry(B, 1, DistinguishedName("n2")))))
    out = locator_dict(rle, {A: "n1"})
    assert out["address"] == "rle"
    assert out["rle"] == [
        {"address": "192.0.2.1", "level": 128, "name": "n1"},
        {"address": "192.0.2.2", "level": 1, "name": "n2"},
    ]
