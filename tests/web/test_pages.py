"""The status pages, live events, /metrics and the clear-cache action, against
a node fed by the simulated network (a third node is named <script>...)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import json
import re
from ipaddress import IPv4Address
from typing import Any
from urllib.parse import quote, unquote

import pytest
from aiohttp.test_utils import TestClient

from decent.net.status import NodeStatus
from decent.peer.config import AllowedPrefix, Site
from decent.peer.dataplane import DataPlane
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.web import views
from decent.web.app import (
    CLOSING,
    LIVE_INTERVAL,
    SECURITY_HEADERS,
    admin_refusal,
    make_app,
)
from decent.wire import (
    AlgorithmId,
    DataHeader,
    Eid,
    Locator,
    MapRecord,
    MapRegister,
    UdpPacket,
    encapsulate,
)
from tests.peer.simnet import SimNet
from tests.web.pagetext import Page
from tests.web.test_app import IPS, SimStatus, _status

Client = TestClient[Any, Any]
HOSTILE = "<script>alert(1)</script>"
GROUP_EID = "[0](0.0.0.0/0, 233.252.1.1/32)"


async def _page(client: Client, path: str, code: int = 200) -> Page:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == code, text
    assert resp.content_type == "text/html"
    for key, value in SECURITY_HEADERS.items():
        assert resp.headers[key] == value
    return Page(text)


async def _client(aiohttp_client: Any, **kw: Any) -> tuple[SimNet, NodeStatus, Client]:
    net, status = _status()
    return net, status, await aiohttp_client(make_app(status, **kw))


def _resolve(net: SimNet, status: NodeStatus, *eids: Eid) -> None:
    """Have n1's ITR ask its Map-Resolver for eids; the answers are cached."""
    for eid in eids:
        status.node.request(eid, net.now)
    net.advance(1)


RESOLVED = (Eid.prefix("2.2.2.2/32"), Eid.name("n2"), Eid.prefix("9.9.9.9/32"))


def _no_external_assets(page: Page) -> None:
    """Every src, href and form action points at this server (or is inline
    data), so the page works offline."""
    for tag, attr, value in page.attrs_seen:
        if attr in ("src", "href", "action"):
            assert value.startswith(("/", "data:")), (tag, attr, value)
            assert not value.startswith("//"), (tag, attr, value)


# ---------------------------------------------------------------- pages
async def test_overview_shows_header_and_all_three_sections(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    page = await _page(client, "/")
    assert page.header == {
        "name": "n1",
        "rloc": "198.18.45.11",
        "mode": "replicate",
        "group": "233.252.1.1",
        "uptime": "0:00:03",
        "health": "ok (3 members)",
        "counts": "7 registrations, 3 peers, 1 map-cache entries",
        "reach": "NAT traversal off",
        "stale": "",  # nothing restored from a snapshot: no note
    }
    assert set(page.blocks) == {"sites", "peers", "map-cache"}
    assert {"/", "/sites", "/peers", "/map-cache", "/metrics"} <= set(page.links)
    _no_external_assets(page)
    assert "/assets/page.js" in [v for _, k, v in page.attrs_seen if k == "src"]


async def test_each_section_has_its_own_url(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    for path, blocks in (
        ("/sites", {"sites"}),
        # Who went over a quota, and whose registrations were refused;
        # how each member is reached (NAT traversal).
        ("/peers", {"peers", "nat", "reach", "refused", "rejections"}),
        ("/map-cache", {"map-cache"}),
    ):
        page = await _page(client, path)
        assert set(page.blocks) == blocks, path
        assert page.header["name"] == "n1"
        _no_external_assets(page)


async def test_a_registrant_over_its_quota_is_shown_on_the_peers_page(aiohttp_client):
    net, status, client = await _client(aiohttp_client)
    empty = (await _page(client, "/peers")).blocks["refused"]
    assert empty.rows == []
    node = status.node
    # A registrant (xTR-ID 0xe71) holding the group key registers past the
    # per-registrant quota of this node.
    limit = node.ms.limits.registrant_eids
    node.ms.limits = dataclasses.replace(node.ms.limits, registrant_eids=2)
    records = tuple(
        MapRecord(IPv4Address(f"10.77.0.{i}"), 32, (Locator(IPS[0]),), 3)
        for i in range(5)
    )
    msg = MapRegister(
        1, records, proxy_reply=True, ttl_timeout=True, xtr_id=0xE71
    ).signed(b"k", AlgorithmId.HMAC_SHA_256_128)
    node.receive_datagram(msg.encode(), (IPv4Address("198.18.45.66"), 4342), net.now)
    node.ms.limits = dataclasses.replace(node.ms.limits, registrant_eids=limit)
    refused = (await _page(client, "/peers")).blocks["refused"]
    assert refused.rows == [
        [
            f"{0xE71:032x}",
            "198.18.45.66",
            "registrant-quota",
            "3 records or messages",
            "0:00:00",
            "0:00:00",
        ]
    ]


async def test_site_information_matches_the_demo_table(aiohttp_client):
    _, status, client = await _client(aiohttp_client)
    sites = (await _page(client, "/sites")).blocks["sites"]
    assert sites.head == [
        "Site Name",
        "EID-Prefix or (S,G)",
        "Registered",
        "Last Registerer",
        "Last Registered",
        "First Registered",
        "TTL left",
        "Registration Flags",
        "RLOC-set",
    ]
    eids = sites.column("EID-Prefix or (S,G)")
    assert sorted(eids) == sorted(s["eid"] for s in status.sites())
    assert {"[0]1.1.1.1/32", "[0]2.2.2.2/32", "[0]'n2'", GROUP_EID} <= set(eids)
    # Grouped by site: the name opens the group, the other rows leave it blank.
    assert sites.column("Site Name") == ["decent-group"] + [""] * (len(eids) - 1)
    two = sites.row("EID-Prefix or (S,G)", "[0]2.2.2.2/32")
    assert two["Registered"] == "yes (dynamic)"
    assert two["Last Registerer"] == "198.18.45.12"
    assert re.fullmatch(r"0:00:0\d", two["Last Registered"])
    assert re.fullmatch(r"0:00:0\d", two["First Registered"])
    assert re.fullmatch(r"0:02:5\d", two["TTL left"])
    assert two["Registration Flags"] == "P-s-I-T-r-m-n"
    assert two["RLOC-set"] == "198.18.45.12"
    # The peer-group entry shows its merged RLE members, with names.
    group = sites.row("EID-Prefix or (S,G)", GROUP_EID)
    assert group["Registration Flags"] == "P-s-I-T-r-M-n"
    assert group["RLOC-set"].split("\n") == [
        "rle: 198.18.45.11(L128) n1",
        "rle: 198.18.45.12(L128) n2",
        f"rle: 198.18.45.13(L128) {HOSTILE}",
    ]


async def test_flags_have_a_legend_and_tooltips(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    page = await _page(client, "/sites")
    sites = page.blocks["sites"]
    i = sites.head.index("Registration Flags")
    j = sites.column("EID-Prefix or (S,G)").index(GROUP_EID)
    assert sites.titles[j][i] == (
        "P proxy Map-Reply set, s security clear, I xTR-ID set, "
        "T TTL timeout set, r reserved clear, M merge set, n want Map-Notify clear"
    )
    for letter, meaning in views.FLAGS:
        assert f"{letter} {meaning}" in page.text
    assert "upper case = set" in page.text


async def test_every_site_row_links_to_its_detail_page(aiohttp_client):
    _, status, client = await _client(aiohttp_client)
    page = await _page(client, "/sites")
    details = [link for link in page.links if link.startswith("/sites/")]
    assert sorted(unquote(d.removeprefix("/sites/")) for d in details) == sorted(
        s["eid"] for s in status.sites()
    )
    for link in details:
        detail = await _page(client, link)
        assert detail.blocks["facts"].facts["EID-prefix"] == unquote(
            link.removeprefix("/sites/")
        )


async def test_detail_page_of_the_merged_group_entry(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    page = await _page(client, "/sites/" + quote(GROUP_EID, safe=""))
    facts = page.blocks["facts"].facts
    assert facts["Site name"] == "decent-group"
    assert facts["Registered"] == "yes, dynamic"
    assert facts["Auth type"] == "hmac-sha-256"
    assert facts["Proxy Map-Reply"] == "yes"
    assert facts["RLOC-set semantics"] == "merge-semantics"
    assert facts["Registration flags"] == "P-s-I-T-r-M-n"
    assert re.fullmatch(r"0{31}[123]", facts["xTR-ID"])
    rlocs = page.blocks["rlocs"]
    assert rlocs.head == ["RLOC", "State", "up/uw/mp/mw", "RLE members (level, name)"]
    (rle,) = rlocs.rows
    assert rle[:3] == ["rle", "up-state", "255/0/1/100"]
    assert rle[3].split("\n") == [
        "198.18.45.11(L128) n1",
        "198.18.45.12(L128) n2",
        f"198.18.45.13(L128) {HOSTILE}",
    ]
    regs = page.blocks["registrations"]
    assert sorted(regs.column("xTR-ID")) == [f"{i:032x}" for i in (1, 2, 3)]
    assert sorted(regs.column("Registrant")) == [str(ip) for ip in IPS]
    assert sorted(regs.column("RLOC-set")) == [
        f"rle: {ip}(L128) {name}"
        for ip, name in zip(IPS, ["n1", "n2", HOSTILE], strict=True)
    ]


async def test_detail_page_of_a_plain_eid_and_of_an_unknown_one(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    page = await _page(client, "/sites/" + quote("[0]2.2.2.2/32", safe=""))
    facts = page.blocks["facts"].facts
    assert facts["RLOC-set semantics"] == "replacement-semantics"
    assert facts["Last registerer"] == "198.18.45.12"
    assert page.blocks["rlocs"].rows == [
        ["198.18.45.12", "up-state", "1/100/255/0", "-"]
    ]
    assert page.blocks["registrations"].column("xTR-ID") == [f"{2:032x}"]
    gone = await _page(client, "/sites/" + quote("[0]9.9.9.9/32", safe=""), 404)
    assert gone.blocks["facts"].notes == ["[0]9.9.9.9/32 is not registered (any more)."]


async def test_detail_page_without_proxy_reply_and_with_hmac_sha_1(aiohttp_client):
    """A registrant of another site: no P bit, HMAC-SHA-1-96, its own site-ID
    (the group's registrations are all proxy-replied HMAC-SHA-256)."""
    cfg = decent_node_config(
        name="ms", rlocs=(IPS[0],), group=IPv4Address("233.252.1.1"), key=b"k", xtr_id=1
    )
    lab_site = Site(
        "lab-site",
        ((0, b"sha1-key"),),
        (AllowedPrefix(Eid.prefix("192.0.2.0/24")),),
    )
    node = Node(
        dataclasses.replace(cfg, sites=(*cfg.sites, lab_site)),
        nonce=functools.partial(next, itertools.count(1)),
    )
    etr = IPv4Address("198.51.100.9")
    addr, mask = Eid.prefix("192.0.2.0/24").to_wire()
    register = MapRegister(
        5,
        (MapRecord(addr, mask, (Locator(etr, 2, 50, 255, 0),), ttl=3),),
        xtr_id=0xABC,
        site_id=7,
    ).signed(b"sha1-key", AlgorithmId.HMAC_SHA_1_96)
    node.receive_datagram(register.encode(), (etr, 4342), 10.0)
    status = NodeStatus(
        node, lambda: 12.0, name="ms", started=0.0, register_interval=60.0
    )
    client = await aiohttp_client(make_app(status))
    page = await _page(client, "/sites/" + quote("[0]192.0.2.0/24", safe=""))
    facts = page.blocks["facts"].facts
    assert facts["Site name"] == "lab-site"
    assert facts["Proxy Map-Reply"] == "no"
    assert facts["Auth type"] == "hmac-sha-1"
    assert facts["Registration flags"] == "p-s-I-t-r-m-n"
    assert facts["Site-ID"] == "7"
    assert facts["xTR-ID"] == f"{0xABC:032x}"
    assert facts["Last registerer"] == str(etr)
    assert facts["RLOC-set semantics"] == "replacement-semantics"
    assert page.blocks["rlocs"].rows == [[str(etr), "up-state", "2/50/255/0", "-"]]
    sites = (await _page(client, "/sites")).blocks["sites"]
    row = sites.row("EID-Prefix or (S,G)", "[0]192.0.2.0/24")
    assert row["Registration Flags"] == "p-s-I-t-r-m-n"


async def test_peers_table(aiohttp_client):
    net, _, client = await _client(aiohttp_client)
    peers = (await _page(client, "/peers")).blocks["peers"]
    assert peers.head == [
        "RLOC",
        "Name",
        "First Seen",
        "Last Heard",
        "TTL left",
        "State",
    ]
    assert peers.column("RLOC") == [
        "198.18.45.11 (this node)",
        "198.18.45.12",
        "198.18.45.13",
    ]
    assert peers.column("Name") == ["n1", "n2", HOSTILE]
    assert set(peers.column("State")) == {"current"}
    # A minute on, every member has registered again: heard anew, first
    # seen when it joined.
    net.advance(65)
    peers = (await _page(client, "/peers")).blocks["peers"]
    for rloc in ("198.18.45.12", "198.18.45.13"):
        row = peers.row("RLOC", rloc)
        assert re.fullmatch(r"0:01:0\d", row["First Seen"]), row
        assert re.fullmatch(r"0:00:\d\d", row["Last Heard"]), row
        assert row["First Seen"] != row["Last Heard"]
    assert set(peers.column("State")) == {"current"}
    # Two registration periods of silence: the others are aging out.
    for node in net._hosts[1:]:
        net.remove(node.node)
    net.advance(130)
    peers = (await _page(client, "/peers")).blocks["peers"]
    assert peers.column("State") == ["current", "aging out", "aging out"]
    silent = peers.row("RLOC", "198.18.45.12")
    assert silent["Last Heard"].startswith("0:02:")
    assert silent["First Seen"].startswith("0:03:")


async def test_map_cache_table_with_traffic_counts(aiohttp_client):
    _, status, client = await _client(aiohttp_client)
    table = (await _page(client, "/map-cache")).blocks["map-cache"]
    assert table.head == [
        "EID-Prefix or (S,G)",
        "Uptime",
        "TTL",
        "RLOC Record",
        "Map-Reply Source",
        "RLOC State",
        "Unicast Priority/Weight",
        "Multicast Priority/Weight",
        "packet-count",
        "byte-count",
    ]
    row = table.row("EID-Prefix or (S,G)", GROUP_EID)
    assert row["Map-Reply Source"] == "map-notify"
    assert row["RLOC Record"].split("\n") == [
        "rle: 198.18.45.11(L128) n1",
        "rle: 198.18.45.12(L128) n2",
        f"rle: 198.18.45.13(L128) {HOSTILE}",
    ]
    assert row["RLOC State"].split("\n")[0] == "up"
    assert row["Unicast Priority/Weight"].split("\n")[0] == "255/0"
    assert row["Multicast Priority/Weight"].split("\n")[0] == "1/100"
    assert (row["packet-count"], row["byte-count"]) == ("0", "0")
    # The data plane's counters are shown as they are reported.
    entry = status.node.cache.lookup(Eid.sg("0.0.0.0/0", "233.252.1.1/32"))
    assert entry is not None
    entry.packets, entry.bytes = 35, 5315
    row = (
        (await _page(client, "/map-cache"))
        .blocks["map-cache"]
        .row("EID-Prefix or (S,G)", GROUP_EID)
    )
    assert (row["packet-count"], row["byte-count"]) == ("35", "5315")


async def test_map_reply_source_says_how_each_entry_was_learned(aiohttp_client):
    net, status, client = await _client(aiohttp_client)
    _resolve(net, status, *RESOLVED)
    table = (await _page(client, "/map-cache")).blocks["map-cache"]
    sources = dict(
        zip(
            table.column("EID-Prefix or (S,G)"),
            table.column("Map-Reply Source"),
            strict=True,
        )
    )
    # n1 is not resolving in-process here: its ITR's Map-Requests and their
    # Map-Replies crossed the (simulated) network.
    assert sources == {
        "[0]'n2'": "map-reply",
        "[0]2.2.2.2/32": "map-reply",
        "[0]8.0.0.0/5": "map-reply",
        GROUP_EID: "map-notify",
    }
    row = table.row("EID-Prefix or (S,G)", "[0]2.2.2.2/32")
    assert row["RLOC Record"] == "198.18.45.12"
    assert (row["RLOC State"], row["Unicast Priority/Weight"]) == ("up", "1/100")
    negative = table.row("EID-Prefix or (S,G)", "[0]8.0.0.0/5")
    assert negative["RLOC Record"] == "negative, action send-map-request"
    api = {
        e["eid"]: e["source"] for e in await (await client.get("/api/map-cache")).json()
    }
    assert api == sources


async def test_map_reply_source_is_local_when_resolved_in_process(aiohttp_client):
    net, status = _status(resolve_in_process=True)
    client = await aiohttp_client(make_app(status))
    _resolve(net, status, Eid.prefix("2.2.2.2/32"))
    table = (await _page(client, "/map-cache")).blocks["map-cache"]
    row = table.row("EID-Prefix or (S,G)", "[0]2.2.2.2/32")
    assert row["Map-Reply Source"] == "local"


def test_cache_rows_without_traffic_fields_show_zero_and_negatives_their_action():
    row = views.cache_row(
        {
            "eid": "[0]8.0.0.0/5",
            "uptime_s": 1.0,
            "ttl_s": 59.0,
            "source": "map-reply",
            "negative": True,
            "action": "send-map-request",
            "rlocs": [],
        }
    )
    texts = [c.get("text", c.get("lines")) for c in row["cells"]]
    assert texts == [
        "[0]8.0.0.0/5",
        "0:00:01",
        "0:00:59",
        ["negative, action send-map-request"],
        "map-reply",
        ["-"],
        ["-"],
        ["-"],
        "0",
        "0",
    ]


def test_ages_are_lispers_style_and_tables_stop_at_max_rows():
    assert [views.age(s) for s in (0, 29.9, 61, 3600 * 26 + 5, -3, None)] == [
        "0:00:00",
        "0:00:29",
        "0:01:01",
        "26:00:05",
        "0:00:00",
        "never",
    ]
    many = [
        {"eid": f"[0]10.0.{i >> 8}.{i & 255}/32", "site": "s", "registered": True}
        for i in range(views.MAX_ROWS + 5)
    ]
    table = views.sites_table(many)
    assert len(table["rows"]) == views.MAX_ROWS
    assert table["more"] == 5


# ---------------------------------------------------------------- escaping
async def test_a_hostile_name_shows_as_text_everywhere(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    hostile_eid = quote(f"[0]'{HOSTILE}'", safe="")
    for path in ("/", "/sites", "/peers", "/map-cache", f"/sites/{hostile_eid}"):
        resp = await client.get(path)
        raw = await resp.text()
        assert "<script>alert" not in raw, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw, path
        page = Page(raw)
        assert HOSTILE in page.text, path
        # The only script element is our own, served from /assets.
        assert page.tags.count("script") == 1, path
    detail = await _page(client, f"/sites/{hostile_eid}")
    assert detail.blocks["facts"].facts["EID-prefix"] == f"[0]'{HOSTILE}'"


async def test_hostile_lookup_input_is_escaped_in_the_answer(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    evil = '"><img src=x onerror=alert(1)>'
    resp = await client.get("/lookup", params={"eid": evil})
    raw = await resp.text()
    assert resp.status == 400
    assert "<img" not in raw
    page = Page(raw)
    assert "img" not in page.tags
    assert f"Cannot look up {evil!r}" in page.blocks["lookup"].notes[0]
    assert ("input", "value", evil) in page.attrs_seen


# ---------------------------------------------------------------- lookups
async def test_site_cache_lookup_form_answers(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    page = await _page(client, "/")
    forms = [v for t, k, v in page.attrs_seen if t == "form" and k == "action"]
    assert forms.count("/lookup") == 2
    for query, match in (
        ("2.2.2.2", "[0]2.2.2.2/32"),
        ("[0]2.2.2.2", "[0]2.2.2.2/32"),
        ("2.2.2.2/32", "[0]2.2.2.2/32"),
        ("'n2'", "[0]'n2'"),
        ("1.2.3.4->233.252.1.1", GROUP_EID),
        ("(0.0.0.0/0, 233.252.1.1)", GROUP_EID),
    ):
        answer = await _page(client, f"/lookup?in=sites&eid={quote(query)}")
        facts = answer.blocks["lookup"].facts
        assert facts["Longest match"] == match, query
        assert "/sites/" + quote(match, safe="") in answer.links
    negative = await _page(client, "/lookup?in=sites&eid=9.9.9.9")
    assert negative.blocks["lookup"].facts == {
        "Query": "[0]9.9.9.9/32",
        "Answer": "negative: no registration covers it",
        "Negative prefix": "[0]8.0.0.0/5",
        "TTL": "0:01:00",
        "Action": "send-map-request",
    }


@pytest.mark.parametrize(
    ("query", "match", "source", "record"),
    [
        ("2.2.2.2", "[0]2.2.2.2/32", "map-reply", "198.18.45.12"),
        ("[0]2.2.2.2", "[0]2.2.2.2/32", "map-reply", "198.18.45.12"),
        ("2.2.2.2/32", "[0]2.2.2.2/32", "map-reply", "198.18.45.12"),
        ("'n2'", "[0]'n2'", "map-reply", "198.18.45.12"),
        (
            "10.0.0.1->233.252.1.1",
            GROUP_EID,
            "map-notify",
            "rle: 198.18.45.11(L128) n1",
        ),
        (
            "(0.0.0.0/0, 233.252.1.1)",
            GROUP_EID,
            "map-notify",
            "rle: 198.18.45.11(L128) n1",
        ),
    ],
)
async def test_map_cache_lookup_form_answers(
    aiohttp_client, query, match, source, record
):
    net, status, client = await _client(aiohttp_client)
    _resolve(net, status, *RESOLVED)
    page = await _page(client, "/map-cache")
    forms = [v for t, k, v in page.attrs_seen if t == "form" and k == "action"]
    assert "/lookup" in forms
    assert ("input", "value", "map-cache") in page.attrs_seen
    hit = await _page(client, f"/lookup?in=map-cache&eid={quote(query)}")
    facts = hit.blocks["lookup"].facts
    assert facts["Longest match"] == match
    assert facts["Map-Reply Source"] == source
    assert facts["RLOC Record"].split("\n")[0] == record
    assert facts["RLOC State"].split("\n")[0] == "up"
    assert re.fullmatch(r"0:0[23]:\d\d", facts["TTL left"]), facts
    resp = await client.get("/api/lookup", params={"in": "map-cache", "eid": query})
    answer = await resp.json()
    assert (answer["found"], answer["entry"]["eid"]) == (True, match)
    assert answer["entry"]["source"] == source


async def test_map_cache_lookup_of_a_negative_entry(aiohttp_client):
    net, status, client = await _client(aiohttp_client)
    _resolve(net, status, Eid.prefix("9.9.9.9/32"))
    page = await _page(client, "/lookup?in=map-cache&eid=9.9.9.9")
    assert page.blocks["lookup"].facts == {
        "Query": "[0]9.9.9.9/32",
        "Longest match": "[0]8.0.0.0/5",
        "Answer": "negative map-cache entry",
        "Prefix": "[0]8.0.0.0/5",
        "TTL left": "0:00:59",
        "Action": "send-map-request",
        "Map-Reply Source": "map-reply",
    }
    resp = await client.get("/api/lookup?in=map-cache&eid=9.9.9.9")
    answer = await resp.json()
    assert (answer["query"], answer["found"]) == ("[0]9.9.9.9/32", True)
    entry = answer["entry"]
    assert (entry["eid"], entry["negative"], entry["action"]) == (
        "[0]8.0.0.0/5",
        True,
        "send-map-request",
    )
    assert 58 < entry["ttl_s"] <= 60
    assert entry["rlocs"] == []


async def test_map_cache_lookup_miss_shows_what_would_be_answered(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    nothing = await _page(client, "/lookup?in=map-cache&eid=9.9.9.9")
    assert nothing.blocks["lookup"].facts == {
        "Query": "[0]9.9.9.9/32",
        "Answer": "not in map-cache: no entry covers it, so the ITR would send "
        "a Map-Request",
        "Map-Resolver answer": "negative: no registration covers it",
        "Negative prefix": "[0]8.0.0.0/5",
        "TTL": "0:01:00",
        "Action": "send-map-request",
    }
    registered = await _page(client, "/lookup?in=map-cache&eid=2.2.2.2")
    facts = registered.blocks["lookup"].facts
    assert facts["Answer"].startswith("not in map-cache")
    assert facts["Map-Resolver answer"] == "registered"
    assert facts["Registered match"] == "[0]2.2.2.2/32"
    assert facts["RLOC-set"] == "198.18.45.12"
    assert "/sites/" + quote("[0]2.2.2.2/32", safe="") in registered.links


async def test_bad_lookup_input_gets_a_clear_message(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    for query, message in (
        ("banana", "'banana' is not an address or prefix"),
        ("[99999999999]1.1.1.1", "does not fit in 32 bits"),
        ("10.0.0.0/33", "not an address or prefix"),
        ("1.1.1.1->ff05::1", "one address family"),
    ):
        for where in ("sites", "map-cache"):
            resp = await client.get("/lookup", params={"in": where, "eid": query})
            raw = await resp.text()
            assert resp.status == 400, (query, raw)
            assert "Traceback" not in raw
            (note,) = Page(raw).blocks["lookup"].notes
            assert note.startswith(f"Cannot look up {query!r}: "), note
            assert message in note, note
    empty = await _page(client, "/lookup?in=sites&eid=", 400)
    assert empty.blocks["lookup"].notes[0].startswith("Enter an EID")


# ---------------------------------------------------------------- clear cache
async def test_clear_cache_from_loopback_is_a_post(aiohttp_client):
    _, status, client = await _client(aiohttp_client)
    assert len(status.node.cache) == 1
    resp = await client.get("/map-cache/clear")
    assert resp.status == 405  # never by a GET (a link or a prefetch)
    resp = await client.post("/map-cache/clear", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/map-cache?cleared=1"
    assert len(status.node.cache) == 0
    page = await _page(client, "/map-cache?cleared=1")
    assert "Cleared 1 map-cache entries." in page.text
    assert page.blocks["map-cache"].rows == []
    resp = await client.post("/api/map-cache/clear")
    assert await resp.json() == {"cleared": 0}
    assert status.node.counters["cache.cleared"] == 1


async def test_clear_cache_refuses_cross_site_requests_even_on_loopback(
    aiohttp_client,
):
    _, status, client = await _client(aiohttp_client)
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        resp = await client.post("/map-cache/clear", headers=headers)
        assert resp.status == 403
        assert "cross-site" in Page(await resp.text()).blocks["refusal"].notes[0]
        resp = await client.post("/api/map-cache/clear", headers=headers)
        assert resp.status == 403
    assert len(status.node.cache) == 1
    same = {"Origin": f"http://{client.host}:{client.port}"}
    resp = await client.post("/api/map-cache/clear", headers=same)
    assert await resp.json() == {"cleared": 1}


def test_admin_rule_loopback_or_token():
    no: dict[str, str] = {}
    lan = "192.0.2.7"
    assert admin_refusal("127.0.0.1", no, "h", None, None) is None
    assert admin_refusal("::1", no, "h", "t0k", None) is None
    assert "needs a request from this host" in str(
        admin_refusal(lan, no, "h", None, None)
    )
    assert "needs a request from this host" in str(
        admin_refusal(lan, no, "h", None, "anything")
    )
    assert admin_refusal(lan, no, "h", "t0k", "t0k") is None
    assert admin_refusal(lan, no, "h", "t0k", "nope") == "refused: wrong admin token"
    assert admin_refusal(None, no, "h", "t0k", None) is not None
    assert admin_refusal("not-an-ip", no, "h", None, None) is not None
    same = {"Origin": "http://h", "Sec-Fetch-Site": "same-origin"}
    assert admin_refusal(lan, same, "h", "t0k", "t0k") is None
    cross = {"Origin": "http://other"}
    assert "cross-site" in str(admin_refusal(lan, cross, "h", "t0k", "t0k"))


# ---------------------------------------------------------------- live
async def _events(resp: Any) -> Any:
    """The data of the next server-sent event (a JSON page model)."""
    data = []
    while True:
        line = (await resp.content.readline()).decode()
        assert line, "the stream ended"
        if line.startswith("data: "):
            data.append(line[6:])
        elif line == "\n" and data:
            return json.loads("".join(data))


class _Polled(SimStatus):
    """n1's status, counting the live stream's change checks and noting, for
    each model it builds, how many checks had been made by then."""

    def __init__(self, plain: NodeStatus) -> None:
        super().__init__(
            plain.node,
            plain.clock,
            name=plain.name,
            started=plain.started,
            register_interval=plain.register_interval,
        )
        self.polls = 0
        self.built_at: list[int] = []

    def changes(self) -> int:
        self.polls += 1
        return super().changes()

    def sites(self) -> list[dict[str, Any]]:
        self.built_at.append(self.polls)
        return super().sites()


def _n4(net: SimNet) -> None:
    """A fourth member joins, seeded by n1, and registers."""
    ip4 = IPv4Address("198.18.45.14")
    n4 = Node(
        decent_node_config(
            name="n4",
            rlocs=(ip4,),
            group=IPv4Address("233.252.1.1"),
            key=b"k",
            xtr_id=4,
            eids=(Eid.prefix("4.4.4.4/32"),),
            seeds=(IPS[0],),
        ),
        nonce=functools.partial(next, itertools.count(1 << 40)),
    )
    net.add(n4, (ip4, 4342), (ip4, 4341))
    net.advance(1)


async def test_live_events_push_a_new_registration_at_once(aiohttp_client):
    net, status = _status()
    # With the periodic refresh an hour away, an event that arrives must
    # have been pushed because the node's state changed.
    app = make_app(status, live_interval=0.05, live_refresh=3600.0)
    client = await aiohttp_client(app)
    resp = await client.get("/events", params={"view": "sites"})
    assert resp.headers["Content-Type"] == "text/event-stream"
    first = await asyncio.wait_for(_events(resp), 10)
    assert first["header"]["name"] == "n1"
    shown = {r["cells"][1]["text"] for r in first["blocks"]["sites"]["rows"]}
    assert "[0]4.4.4.4/32" not in shown
    _n4(net)
    model = await asyncio.wait_for(_events(resp), 10)
    shown = {r["cells"][1]["text"] for r in model["blocks"]["sites"]["rows"]}
    assert "[0]4.4.4.4/32" in shown
    assert "[0]'n4'" in shown
    assert model["header"]["health"] == "ok (4 members)"
    # Shutdown ends the stream rather than holding the server's cleanup up.
    app[CLOSING].set()
    assert await asyncio.wait_for(resp.content.read(), 10) == b""


async def test_live_push_follows_a_change_by_one_check_with_default_timing(
    aiohttp_client,
):
    """With make_app's defaults, a change goes out on the first check after it
    (a check every LIVE_INTERVAL), not at the next once-a-second refresh."""
    net, plain = _status()
    status = _Polled(plain)
    app = make_app(status)
    assert app[LIVE_INTERVAL] == 0.2  # "checked every 0.2 s" (README)
    client = await aiohttp_client(app)
    resp = await client.get("/events", params={"view": "sites"})
    first = await asyncio.wait_for(_events(resp), 10)
    shown = {r["cells"][1]["text"] for r in first["blocks"]["sites"]["rows"]}
    assert "[0]4.4.4.4/32" not in shown
    # Just pushed: the periodic refresh is now about five checks away.
    _n4(net)
    changed_after = status.polls
    model = await asyncio.wait_for(_events(resp), 10)
    shown = {r["cells"][1]["text"] for r in model["blocks"]["sites"]["rows"]}
    assert "[0]4.4.4.4/32" in shown
    assert status.built_at[1] == changed_after + 1, status.built_at
    app[CLOSING].set()


async def test_each_live_view_and_a_bad_one(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    for view, blocks in views.VIEWS.items():
        params = {"view": view, "eid": GROUP_EID}
        async with client.get("/events", params=params) as resp:
            model = await asyncio.wait_for(_events(resp), 10)
        assert set(model["blocks"]) == set(blocks), view
    async with client.get(
        "/events", params={"view": "site", "eid": "[0]9.9.9.9/32"}
    ) as resp:
        model = await asyncio.wait_for(_events(resp), 10)
    assert model["blocks"]["facts"]["kind"] == "notice"
    resp = await client.get("/events", params={"view": "nope"})
    assert resp.status == 400


async def test_assets_are_served_by_the_node(aiohttp_client):
    _, _, client = await _client(aiohttp_client)
    js = await client.get("/assets/page.js")
    assert js.status == 200
    assert js.content_type == "text/javascript"
    body = await js.text()
    assert "EventSource" in body
    assert "innerHTML" not in body  # values reach the DOM as text nodes only
    css = await client.get("/assets/page.css")
    assert css.content_type == "text/css"
    assert "url(" not in await css.text()  # no fonts or images fetched
    assert (await client.get("/assets/other.js")).status == 404
    assert (await client.get("/assets/..%2Fapp.py")).status == 404


# ---------------------------------------------------------------- metrics
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(
    rf"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    rf"(?:\{{(?P<labels>{_LABEL}(?:,{_LABEL})*)\}})? (?P<value>-?[0-9.e+]+)$"
)


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """A strict reader of the text format: every family is announced by HELP
    and TYPE before its samples; every sample line is well-formed."""
    out: dict[str, dict[str, float]] = {}
    typed: dict[str, str] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            assert name not in typed, f"{name} typed twice"
            typed[name] = kind
            out[name] = {}
            continue
        m = _SAMPLE.match(line)
        assert m, f"malformed sample line: {line!r}"
        name, labels, value = m["name"], m["labels"] or "", m["value"]
        assert name in typed, f"{name} sampled before its TYPE"
        assert labels not in out[name], f"duplicate series {line!r}"
        out[name][labels] = float(value)
    return out


async def test_metrics_in_prometheus_text_format(aiohttp_client):
    net, status, client = await _client(aiohttp_client)
    node = status.node
    node.receive_datagram(b"\xff junk", (IPS[2], 4342), net.now)  # a drop
    entry = node.cache.lookup(Eid.sg("0.0.0.0/0", "233.252.1.1/32"))
    assert entry is not None
    entry.packets, entry.bytes = 7, 700
    # One packet from n2 for n1's EID, through a real data plane.
    dp = DataPlane(node, nonce=lambda: 1)
    status.dataplane = lambda: {"enabled": True, **dp.stats()}
    inner = UdpPacket(
        IPv4Address("2.2.2.2"), IPv4Address("1.1.1.1"), 5000, 6000, b"x" * 30
    ).encode()
    dp.receive_packet(encapsulate(DataHeader(nonce=1), inner), (IPS[1], 4341), net.now)
    assert dp.packets_to_tun() == [inner]
    resp = await client.get("/metrics")
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    m = parse_metrics(await resp.text())
    c = node.counters
    for t in ("map-request", "map-reply", "map-register", "map-notify", "ecm"):
        assert m["decent_messages_received_total"][f'type="{t}"'] == c[f"rx.{t}"]
        assert f'kind="{t}",type="{t}"' in m["decent_messages_sent_total"]
    assert m["decent_messages_received_total"]['type="map-register"'] > 0
    sent = m["decent_messages_sent_total"]
    assert (
        sent['kind="replicated-map-register",type="map-register"']
        == (c["tx.replicated-map-register"])
    )
    assert m["decent_drops_total"]['reason="decode-error"'] == 1
    assert (
        m["decent_registration_changes_total"]['change="accepted"']
        == (c["registration.accepted"])
    )
    assert m["decent_registrations"][""] == len(status.sites()) == 7
    assert m["decent_peers"][""] == 3
    assert m["decent_map_cache_entries"][""] == 1
    assert m["decent_data_packets_total"][""] == 7
    assert m["decent_data_bytes_total"][""] == 700
    assert m["decent_data_decapsulated_packets_total"][""] == 1
    assert m["decent_data_decapsulated_bytes_total"][""] == len(inner)
    assert m["decent_up"][""] == 1
    assert m["decent_node_info"] == {
        'group="233.252.1.1",mode="replicate",name="n1",rloc="198.18.45.11"': 1
    }


def test_metric_label_values_are_escaped():
    from decent.web import metrics

    text = metrics.render(
        {"name": 'a"b\\c\nd', "counters": {"drop.x": 1}, "health": {"ok": False}},
        [],
    )
    m = parse_metrics(text)
    assert m["decent_node_info"] == {
        'group="",mode="",name="a\\"b\\\\c\\nd",rloc=""': 1
    }
    assert m["decent_up"][""] == 0
    # No data plane: its totals are there, and zero.
    assert m["decent_data_decapsulated_packets_total"][""] == 0
    assert m["decent_data_decapsulated_bytes_total"][""] == 0


@pytest.mark.parametrize("path", ["/api/node", "/api/sites", "/api/peers"])
async def test_json_api_still_answers(aiohttp_client, path):
    _, _, client = await _client(aiohttp_client)
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == "application/json"
