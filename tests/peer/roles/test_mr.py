"""The Map-Resolver role: negative, proxy and forwarded answers, limits, probes.

RFC 9301 5.4, 5.5, 8.3, 8.4: negative replies, proxy replies, forwarding to
the ETR, ECM and plain requests, Map-Reply rate limiting, probe answers."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from decent.peer.config import AllowedPrefix, Site
from decent.peer.events import MapCacheUpdated, MessageDropped
from decent.peer.mapping.push_config import MOBILE_TTL
from decent.wire import (
    NO_ADDRESS,
    Action,
    DistinguishedName,
    Eid,
    EncapsulatedControlMessage,
    InstanceId,
    Locator,
    MapRecord,
    MapReply,
    MapRequest,
    RequestRecord,
    decode,
)
from tests.peer.conftest import (
    ETR_EID,
    ETR_IP,
    ITR_IP,
    KEY,
    MS_IP,
    N1,
    PEER,
    SITE_PREFIX,
    V6,
    Raw,
    Traced,
    attach,
    ctl,
    decent_trio,
    etr_config,
    itr_config,
    lab,
    locators,
    ms_config,
    out,
    probing_lab,
    record,
    register_msg,
    replies_to,
    request_msg,
    sent,
    site_a,
    site_b,
)
from tests.peer.mesh import MOBILE_N2, TWO, mesh
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


# ---------------------------------------------------------------- negative answers
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


def test_the_most_specific_configured_prefix_bounds_a_negative_answer():
    narrow = AllowedPrefix(Eid.prefix("10.1.1.0/24"))
    site = Site("two", ((0, KEY),), (narrow, AllowedPrefix(SITE_PREFIX)))
    ms = Traced(ms_config(sites=(site,)))
    assert ms.negative_answer(Eid.prefix("10.1.1.9/32"))[0] == Eid.prefix("10.1.1.0/24")


def test_unregistered_name_allowed_by_a_site_gets_a_short_negative():
    net, nodes = decent_trio()
    net.advance(2.0)
    prefix, ttl, action = nodes[0].negative_answer(Eid.name("n9"))
    assert (prefix, ttl, action) == (Eid.name("n9"), 1, 2)


# ---------------------------------------------------------------- proxy replies
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


def test_host_route_registration_answers_a_host_query():
    ms = Traced(ms_config())
    ms.receive_datagram(
        register_msg(record("10.1.1.5/32", "192.0.2.10"), proxy_reply=True), PEER, 0.0
    )
    ms.datagrams_to_send()
    ms.receive_datagram(request_msg("10.1.1.5/32", ITR_IP).encode(), ctl(ITR_IP), 0.0)
    [(reply, _)] = out(ms)
    assert isinstance(reply, MapReply)
    assert [r.mask_len for r in reply.records] == [32]


def test_query_in_another_instance_id_is_matched_in_that_instance():
    site = Site("iid", ((0, KEY),), (AllowedPrefix(Eid.prefix("10.1.0.0/16", iid=5)),))
    ms = Traced(ms_config(sites=(site,)))
    rec = record(Eid.prefix("10.1.1.0/24", iid=5), "192.0.2.10")
    ms.receive_datagram(register_msg(rec, proxy_reply=True), PEER, 0.0)
    ms.datagrams_to_send()
    query = InstanceId(5, IPv4Address("10.1.1.5"))
    req = MapRequest(7, (RequestRecord(query, 32),), (ITR_IP,))
    ms.receive_datagram(req.encode(), ctl(ITR_IP), 0.0)
    [(reply, _)] = out(ms)
    assert isinstance(reply, MapReply)
    assert reply.records[0].locators


def test_a_map_reply_for_a_mobile_eid_carries_its_small_ttl():
    m = mesh(extra=MOBILE_N2)
    outsider = Traced(itr_config(IPv4Address("198.18.42.50"), resolver=N1))
    attach(m.net, outsider)
    outsider.request(TWO, m.net.now)
    m.net.advance(1.0)
    [(_, _, reply)] = [
        r for r in sent(m.net, MapReply) if r[1][0] == outsider.config.rlocs[0]
    ]
    assert [rec.ttl for rec in reply.records] == [MOBILE_TTL]
    entry = outsider.cache.lookup(TWO)
    assert entry is not None
    assert entry.expires == pytest.approx(entry.created + MOBILE_TTL * 60.0)
    # A fixed member's mapping keeps the default.
    outsider.request(Eid.prefix("3.3.3.3/32"), m.net.now)
    m.net.advance(1.0)
    three = outsider.cache.lookup(Eid.prefix("3.3.3.3/32"))
    assert three is not None
    assert three.record.ttl == 3


# ---------------------------------------------------------------- forwarding to the ETR
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


def test_requests_are_forwarded_to_a_usable_etr_rloc():
    ms = Traced(ms_config())
    down = Locator(IPv4Address("192.0.2.40"), reachable=False)
    unusable = Locator(IPv4Address("192.0.2.41"), priority=255)
    good = Locator(IPv4Address("192.0.2.42"))
    rec = MapRecord(*ETR_EID.to_wire(), (down, unusable, good), 3)
    ms.receive_datagram(register_msg(rec), PEER, 0.0)
    ms.datagrams_to_send()
    ms.receive_datagram(request_msg("10.1.1.5/32", ITR_IP).encode(), ctl(ITR_IP), 0.0)
    [(_, dest)] = out(ms)
    assert dest == ctl(IPv4Address("192.0.2.42"))


def test_non_proxy_registration_without_an_address_rloc_cannot_be_forwarded():
    ms = Traced(ms_config())
    named = MapRecord(*ETR_EID.to_wire(), (Locator(DistinguishedName("etr")),), 3)
    ms.receive_datagram(register_msg(named), PEER, 0.0)
    ms.datagrams_to_send()
    ms.receive_datagram(request_msg("10.1.1.5/32", ITR_IP).encode(), ctl(ITR_IP), 0.0)
    assert ms.counters["drop.no-etr-rloc"] == 1
    assert ms.datagrams_to_send() == []


def test_forwarding_to_an_etr_of_the_other_family_keeps_the_inner_family():
    ms = Traced(ms_config())
    v6etr = MapRecord(*ETR_EID.to_wire(), locators("2001:db8::10"), 3)
    ms.receive_datagram(register_msg(v6etr), PEER, 0.0)
    ms.datagrams_to_send()
    ms.receive_datagram(request_msg("10.1.1.5/32", ITR_IP).encode(), ctl(ITR_IP), 0.0)
    [(ecm, dest)] = out(ms)
    assert dest == (IPv6Address("2001:db8::10"), 4342)
    assert isinstance(ecm, EncapsulatedControlMessage)
    assert (ecm.inner_src, ecm.inner_dst) == (ITR_IP, ITR_IP)


# ---------------------------------------------------------------- requests
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


def test_reply_goes_to_the_first_itr_rloc_when_none_matches_the_family():
    ms = Traced(ms_config())
    other = IPv6Address("2001:db8::21")
    ms.receive_datagram(
        request_msg("10.9.9.9/32", V6, other).encode(), ctl(ITR_IP), 0.0
    )
    [(_, dest)] = [(d, dest) for d, dest in ms.datagrams_to_send()]
    assert dest == (V6, 4342)


def test_map_replies_are_rate_limited_per_destination():
    asker = Asker("10.1.1.0/24", map_reply_rate=1 / 3, map_reply_burst=1.0)
    req = request_msg("10.1.1.5/32", ITR_IP).encode()
    assert asker.ask(req) is not None
    assert asker.ask(req) is None
    assert asker.ms.counters["drop.rate-limited"] == 1
    asker.net.advance(3.0)  # RFC 9301 5.4: one per 3 s per RLOC
    assert asker.ask(req) is not None
    assert asker.ms.counters["tx.map-reply"] == 2


# ---------------------------------------------------------------- probe answers
def test_probe_for_an_eid_we_are_not_etr_for_is_dropped():
    t, _ = probing_lab()
    peer = Raw()
    t.net.add(peer, ctl(IPv4Address("192.0.2.50")))
    probe = request_msg("10.1.1.0/24", IPv4Address("192.0.2.50"), probe=True)
    peer.out.append((probe.encode(), ctl(MS_IP)))
    t.net.advance(0.1)
    assert t.ms.counters["drop.probe-not-for-us"] == 1
    assert peer.got == []
    # Probes are never ECM'd (RFC 9301 5.8).
    ecm = EncapsulatedControlMessage(probe, IPv4Address("192.0.2.50"), ETR_IP)
    peer.out.append((ecm.encode(), ctl(ETR_IP)))
    t.net.advance(0.1)
    assert t.etr.counters["drop.probe-in-ecm"] == 1


def test_probes_are_rate_limited_like_other_replies():
    etr = Traced(etr_config(map_reply_rate=0.001, map_reply_burst=1.0))
    probe = request_msg("10.1.1.0/24", ITR_IP, probe=True).encode()
    etr.datagrams_to_send()
    for _ in range(2):
        etr.receive_datagram(probe, ctl(ITR_IP), 1.0, ctl(ETR_IP))
    assert etr.counters["drop.rate-limited"] == 1
    assert etr.counters["tx.map-reply"] == 1
