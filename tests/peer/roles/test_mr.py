"""Map-Resolver / Map-Server answers (RFC 9301 5.4, 5.5, 8.3, 8.4): negative
replies, proxy replies, forwarding to the ETR, ECM and plain requests, and
Map-Reply rate limiting."""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Any

import pytest

from decent.peer.events import MapCacheUpdated, MessageDropped
from decent.wire import (
    NO_ADDRESS,
    Action,
    DistinguishedName,
    Eid,
    EncapsulatedControlMessage,
    MapReply,
    decode,
)
from tests.peer.conftest import (
    ETR_EID,
    ETR_IP,
    ITR_IP,
    MS_IP,
    Raw,
    Traced,
    attach,
    ctl,
    lab,
    ms_config,
    record,
    register_msg,
    replies_to,
    request_msg,
    sent,
    site_a,
    site_b,
)
from tests.peer.simnet import SimNet


class Asker:
    """A Map-Server with registrations, and a scripted ITR asking it."""

    def __init__(self, *records: str, **ms_kw: Any) -> None:
        self.net = SimNet(record=True)
        self.ms = Traced(ms_config(sites=(site_a(), site_b()), **ms_kw))
        self.itr = Raw()
        attach(self.net, self.ms)
        self.net.add(self.itr, ctl(ITR_IP))
        registrant = Raw()
        self.net.add(registrant, ctl(ETR_IP))
        for i, prefix in enumerate(records, start=1):
            rec = record(prefix, str(ETR_IP))
            msg = register_msg(rec, nonce=i, proxy_reply=True)
            registrant.out.append((msg, ctl(MS_IP)))
        self.net.advance(0.01)

    def ask(self, data: bytes, *, ecm: bool = False) -> MapReply | None:
        """Send one Map-Request (optionally ECM'd); the reply, if any."""
        if ecm:
            req = decode(data)
            data = EncapsulatedControlMessage(req, ITR_IP, MS_IP).encode()  # type: ignore[arg-type]
        before = len(self.itr.got)
        self.itr.out.append((data, ctl(MS_IP)))
        self.net.advance(0.01)
        new = [decode(d) for _, d, _ in self.itr.got[before:]]
        assert len(new) <= 1
        return new[0] if new else None  # type: ignore[return-value]


def negative(reply: MapReply | None) -> tuple[str, int, int]:
    assert reply is not None
    [rec] = reply.records
    assert rec.locators == ()
    return str(Eid.from_wire(rec.eid, rec.mask_len)), rec.ttl, rec.action


def test_unregistered_eid_in_a_configured_prefix_gets_a_1_minute_send_map_request():
    asker = Asker("10.1.1.0/24")
    reply = asker.ask(request_msg("10.1.2.3/32", ITR_IP).encode())
    # The least-specific prefix around 10.1.2.3 inside 10.1.0.0/16 that
    # holds no registration: not the host route, not the whole site.
    assert negative(reply) == ("[0]10.1.2.0/23", 1, Action.SEND_MAP_REQUEST)


def test_configured_prefix_with_nothing_registered_is_negative_as_a_whole():
    asker = Asker()
    reply = asker.ask(request_msg("10.1.200.9/32", ITR_IP).encode())
    assert negative(reply) == ("[0]10.1.0.0/16", 1, Action.SEND_MAP_REQUEST)


def test_eid_outside_every_configured_prefix_gets_15_minutes_natively_forward():
    asker = Asker("10.1.1.0/24")
    reply = asker.ask(request_msg("10.9.1.1/32", ITR_IP).encode())
    assert negative(reply) == ("[0]10.8.0.0/13", 15, Action.NATIVELY_FORWARD)


def test_negative_prefix_never_covers_a_configured_but_empty_prefix():
    # Site B (10.2.0.0/16) has no registration; natively forwarding all of
    # 10.2.0.0/15 for 15 minutes would bypass it.
    asker = Asker("10.1.1.0/24")
    reply = asker.ask(request_msg("10.3.0.1/32", ITR_IP).encode())
    assert negative(reply) == ("[0]10.3.0.0/16", 15, Action.NATIVELY_FORWARD)


def test_address_family_without_any_configuration_is_negative_as_a_whole():
    asker = Asker("10.1.1.0/24")
    reply = asker.ask(request_msg("2001:db8::1/128", ITR_IP).encode())
    assert negative(reply) == ("[0]::/0", 15, Action.NATIVELY_FORWARD)


def test_registered_eid_is_proxy_replied_with_every_more_specific():
    asker = Asker("10.1.1.0/24", "10.1.1.128/25", "10.1.7.0/24")
    reply = asker.ask(request_msg("10.1.1.5/32", ITR_IP).encode())
    assert reply is not None
    got = [
        (str(Eid.from_wire(r.eid, r.mask_len)), r.authoritative) for r in reply.records
    ]
    # RFC 9301 5.5: the best match and all more-specifics under it; a proxy
    # reply never sets the A bit (5.4).
    assert got == [("[0]10.1.1.0/24", False), ("[0]10.1.1.128/25", False)]
    assert [loc.address for loc in reply.records[0].locators] == [ETR_IP]
    assert reply.nonce == 7


@pytest.mark.parametrize("ecm", [False, True])
def test_ecm_and_plain_map_requests_are_both_answered(ecm):
    asker = Asker("10.1.1.0/24")
    reply = asker.ask(request_msg("10.1.1.5/32", ITR_IP).encode(), ecm=ecm)
    assert reply is not None
    assert asker.ms.counters["rx.ecm" if ecm else "rx.map-request"] == 1


def test_map_request_with_several_records_is_answered_per_record():
    asker = Asker("10.1.1.0/24")
    req = request_msg("10.1.1.5/32", ITR_IP)
    two = type(req)(
        req.nonce,
        (*req.records, *request_msg("10.9.0.1/32", ITR_IP).records),
        req.itr_rlocs,
    )
    reply = asker.ask(two.encode())
    assert reply is not None
    assert [r.mask_len for r in reply.records] == [24, 13]


@pytest.mark.parametrize(
    "rlocs",
    [(NO_ADDRESS,), (DistinguishedName("itr"),), (NO_ADDRESS, DistinguishedName("x"))],
)
def test_map_request_without_a_usable_itr_rloc_is_dropped(rlocs):
    asker = Asker("10.1.1.0/24")
    assert asker.ask(request_msg("10.1.1.5/32", *rlocs).encode()) is None
    assert asker.ms.counters["drop.no-itr-rloc"] == 1
    assert asker.ms.events(MessageDropped)[-1][1] == MessageDropped(
        ctl(ITR_IP), "no-itr-rloc"
    )


def test_reply_goes_to_the_itr_rloc_of_the_requests_family():
    asker = Asker("10.1.1.0/24")
    v6 = IPv6Address("2001:db8::20")
    asker.ask(request_msg("10.1.1.5/32", v6, ITR_IP).encode())
    [(_, dest, _)] = replies_to(asker.net, ITR_IP)
    assert dest == ctl(ITR_IP)
    # With only an IPv6 ITR-RLOC, that is where the reply goes (and the
    # v4-only Map-Server cannot reach it).
    asker.ask(request_msg("10.1.1.5/32", v6).encode())
    assert asker.ms.counters["tx.map-reply"] == 2
    assert asker.net.undeliverable == 1


def test_map_replies_are_rate_limited_per_destination():
    asker = Asker("10.1.1.0/24", map_reply_rate=1 / 3, map_reply_burst=1.0)
    req = request_msg("10.1.1.5/32", ITR_IP).encode()
    assert asker.ask(req) is not None
    assert asker.ask(req) is None
    assert asker.ms.counters["drop.rate-limited"] == 1
    asker.net.advance(3.0)  # RFC 9301 5.4: one per 3 s per RLOC
    assert asker.ask(req) is not None
    assert asker.ms.counters["tx.map-reply"] == 2


def test_proxy_reply_for_p_bit_registration():
    t = lab()
    t.net.advance(1.0)
    t.itr.request(Eid.prefix("10.1.1.5/32"), t.net.now)
    t.net.advance(1.0)
    [(_, _dest, reply)] = replies_to(t.net, ITR_IP)
    [rec] = reply.records
    assert not rec.authoritative
    assert sent(t.net, MapReply, src=MS_IP)
    entry = t.itr.cache.lookup(Eid.prefix("10.1.1.5/32"))
    assert entry is not None
    assert entry.eid == ETR_EID
    assert [s.locator.address for s in entry.locators] == [ETR_IP]
    [(at, event)] = t.itr.events(MapCacheUpdated)
    assert at == pytest.approx(1.002)
    assert event == MapCacheUpdated(ETR_EID, "map-reply", False)


def test_without_p_bit_the_request_is_forwarded_to_the_etr_which_answers_the_itr():
    t = lab(etr={"mapping": {"proxy_reply": False}})
    t.net.advance(1.0)
    t.itr.request(Eid.prefix("10.1.1.5/32"), t.net.now)
    t.net.advance(1.0)
    # The Map-Server re-encapsulated the unchanged request to the ETR ...
    forwarded = [
        decode(d)
        for _, s, dst, d in t.net.trace
        if s == ctl(MS_IP) and dst == ctl(ETR_IP) and d[0] >> 4 == 8
    ]
    [ecm] = forwarded
    assert isinstance(ecm, EncapsulatedControlMessage)
    assert ecm.to_etr
    assert ecm.inner_src == ITR_IP
    # ... and the ETR answered the ITR directly and authoritatively.
    [(_, _dest, reply)] = replies_to(t.net, ITR_IP)
    assert sent(t.net, MapReply, src=ETR_IP)
    assert not sent(t.net, MapReply, src=MS_IP)
    assert reply.records[0].authoritative
    assert t.itr.cache.lookup(Eid.prefix("10.1.1.5/32")) is not None
    assert t.etr.counters["tx.map-reply"] == 1


def test_force_proxy_reply_answers_without_the_p_bit():
    t = lab(
        etr={"mapping": {"proxy_reply": False}},
        ms={"sites": (site_a(force_proxy_reply=True),)},
    )
    t.net.advance(1.0)
    t.itr.request(Eid.prefix("10.1.1.5/32"), t.net.now)
    t.net.advance(1.0)
    assert sent(t.net, MapReply, src=MS_IP)
    assert t.etr.counters["tx.map-reply"] == 0
