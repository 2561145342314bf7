"""Failed joins are loud on the page and API: health, the stale note, recent
rejections, and POST /api/revoke."""

from __future__ import annotations

import base64
import itertools
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from decent.net.status import NOT_JOINED, NodeStatus, revocation_bytes
from decent.peer.config import TrustConfig
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.web.app import MAX_REVOKE_BODY, admin_refusal, make_app
from decent.web.views import STALE_NOTE
from decent.wire import Eid
from decent.wire.trust import (
    generate_private_key,
    issue_certificate,
    issue_revocation,
    node_xtr_id,
    public_key_of,
)
from tests.net.test_status import (
    DEADLINE,
    IPS,
    _add,
    _drain,
    _mesh,
    _node,
    _restarted_n1,
    _status,
)
from tests.peer.simnet import SimNet
from tests.web.pagetext import Page

Client = TestClient[Any, Any]
EPOCH = 1_800_000_000.0
MESH = "web-test-mesh"


async def _page(client: Client, path: str) -> Page:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return Page(await resp.text())


# ---------------------------------------------------------------- health
async def test_a_node_not_joined_says_so_in_its_header(aiohttp_client: Any) -> None:
    net = SimNet()
    node = _node(1, seeds=(IPS[0],))  # its only seed is dead
    _add(net, node)
    status = _status(net, node)
    client = await aiohttp_client(make_app(status))
    net.advance(1)
    page = await _page(client, "/")
    assert page.header["health"] == "joining (no member has accepted us yet)"
    net.advance(DEADLINE)
    page = await _page(client, "/")
    assert page.header["health"] == f"not joined ({NOT_JOINED})"
    assert ("dd", "class", "bad") in page.attrs_seen
    resp = await client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["reason"] == NOT_JOINED
    # /metrics says it too.
    metrics = await (await client.get("/metrics")).text()
    assert "decent_up 0" in metrics.splitlines()


async def test_a_restored_snapshot_shows_a_stale_note_until_confirmed(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    net, _, fresh, restored = _restarted_n1(tmp_path)
    _add(net, fresh)
    status = _status(net, fresh, restored=restored)
    client = await aiohttp_client(make_app(status))
    page = await _page(client, "/")
    assert page.header["stale"] == STALE_NOTE
    assert page.header["health"].startswith("joining (restored from a snapshot")
    # The restored registrations are shown (they are what the node answers).
    assert "[0]2.2.2.2/32" in page.blocks["sites"].column("EID-Prefix or (S,G)")
    node = await (await client.get("/api/node")).json()
    assert (node["stale"], node["restored"], node["confirmed_at"]) == (
        True,
        restored,
        None,
    )
    lookup = fresh.config.group_lookup_interval
    assert lookup is not None
    net.advance(lookup + 1)  # a member's answer lists us
    page = await _page(client, "/")
    assert page.header["stale"] == ""
    assert page.header["health"] == "ok (3 members)"
    assert (await (await client.get("/api/node")).json())["stale"] is False


# ---------------------------------------------------------------- rejections
async def test_rejections_are_in_the_api_and_on_the_peers_page(
    aiohttp_client: Any,
) -> None:
    net, nodes = _mesh(n2=b"not the group key")
    status = _status(net, nodes[0])
    client = await aiohttp_client(make_app(status))
    empty = (await _page(client, "/peers")).blocks["rejections"]
    assert empty.rows == []
    assert empty.notes == ["No registration has been rejected."]
    net.advance(1)
    _drain(nodes[0], status)
    api = await (await client.get("/api/rejections")).json()
    assert api == status.rejections()
    assert {(r["source"], r["reason"]) for r in api} == {(str(IPS[1]), "auth-failed")}
    table = (await _page(client, "/peers")).blocks["rejections"]
    assert table.head == [
        "Source",
        "Reason",
        "EID",
        "Name (certificate)",
        "Times",
        "First",
        "Last",
    ]
    row = table.row("EID", "[0]'n2'")
    assert (row["Source"], row["Reason"], row["Name (certificate)"]) == (
        str(IPS[1]),
        "auth-failed",
        "-",
    )
    assert len(table.rows) == len(api)


# ---------------------------------------------------------------- revoke
def _token(data: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return "decent-revoke1:" + (text if padded else text.rstrip("="))


def test_tokens_decode_with_or_without_padding() -> None:
    for n in range(1, 8):
        data = bytes(range(250, 250 - n, -1))  # '-' and '_' in base64url
        assert revocation_bytes(_token(data)) == data
        assert revocation_bytes(_token(data, padded=True)) == data
        assert revocation_bytes(" " + _token(data) + "\n") == data
    for bad in (
        "",
        "decent-revoke1:",
        "decent-revoke2:AAAA",
        "AAAA",
        "decent-revoke1:AA+/",  # base64, not base64url
        "decent-revoke1:AA AA",
        "decent-revoke1:A",  # no whole byte
        "decent-revoke1:AA=A",
    ):
        with pytest.raises(ValueError, match="not a revocation token"):
            revocation_bytes(bad)


class _Authority:
    def __init__(self) -> None:
        self.private = generate_private_key()
        self.serial = 0

    def issue(self, name: str, node_key: bytes) -> bytes:
        self.serial += 1
        return issue_certificate(
            self.private,
            mesh=MESH,
            name=name,
            public_key=public_key_of(node_key),
            eids=(Eid.prefix("10.9.0.0/24"),),
            not_after=int(EPOCH + 86_400),
            serial=self.serial,
        ).encode()

    def revoke(self, name: str, node_key: bytes, serial: int) -> bytes:
        return issue_revocation(
            self.private,
            mesh=MESH,
            name=name,
            public_key=public_key_of(node_key),
            not_after=int(EPOCH + 86_400),
            serial=serial,
        ).encode()


def _trusted_status(authority: _Authority) -> tuple[NodeStatus, list[int]]:
    """A member of a mesh with identities; the list counts its flushes."""
    key = generate_private_key()
    trust = TrustConfig(
        public_key_of(authority.private), authority.issue("n1", key), key, EPOCH
    )
    cfg = decent_node_config(
        name="n1",
        rlocs=(IPS[0],),
        group=IPv4Address("233.252.1.1"),
        key=b"k",
        xtr_id=node_xtr_id(public_key_of(key)),
        eids=(Eid.prefix("10.9.0.0/24"),),
        trust=trust,
    )
    node = Node(cfg, nonce=itertools.count(1).__next__)
    flushes: list[int] = []
    status = NodeStatus(
        node,
        lambda: 5.0,
        name="n1",
        started=0.0,
        register_interval=60.0,
        flush=lambda: flushes.append(1),
    )
    return status, flushes


async def _revoke(client: Client, body: bytes | str, **kw: Any) -> tuple[int, Any]:
    resp = await client.post("/api/revoke", data=body, **kw)
    return resp.status, await resp.json()


async def test_a_revocation_token_is_taken_once(aiohttp_client: Any) -> None:
    authority = _Authority()
    status, flushes = _trusted_status(authority)
    client = await aiohttp_client(make_app(status))
    victim = generate_private_key()
    authority.issue("n7", victim)
    token = _token(authority.revoke("n7", victim, authority.serial))
    assert await _revoke(client, token) == (200, {"ok": True, "reason": ""})
    assert flushes == [1]  # what the node queued (its announcement) goes out
    assert status.node.revocations()
    code, body = await _revoke(client, token + "\n")
    assert (code, body["ok"]) == (400, False)
    assert body["reason"]  # the node's word: it knows this one
    # One the mesh authority did not sign.
    forger = _Authority()
    forged = _token(forger.revoke("n7", victim, 99), padded=True)
    code, body = await _revoke(client, forged)
    assert (code, body["ok"], body["reason"]) == (400, False, "revocation-forged")


async def test_bad_tokens_are_refused_with_the_reason(aiohttp_client: Any) -> None:
    authority = _Authority()
    status, _ = _trusted_status(authority)
    client = await aiohttp_client(make_app(status))
    code, body = await _revoke(client, "revoke everything")
    assert code == 400
    assert body["ok"] is False
    assert body["reason"].startswith("not a revocation token: it must start with")
    code, body = await _revoke(client, "decent-revoke1:***")
    assert (code, body["ok"]) == (400, False)
    assert "base64url" in body["reason"]
    code, body = await _revoke(client, "decent-revoke1:é".encode())
    assert (code, body["reason"]) == (400, "not a revocation token: not ASCII text")
    # Well-formed base64url of something that is no revocation: the node says.
    code, body = await _revoke(client, _token(b"\x00" * 40))
    assert (code, body["ok"]) == (400, False)
    assert body["reason"]
    assert status.node.revocations() == []


async def test_a_node_without_identities_refuses_revocations(
    aiohttp_client: Any,
) -> None:
    net = SimNet()
    status = _status(net, _node(0))
    client = await aiohttp_client(make_app(status))
    code, body = await _revoke(client, _token(b"DRV1" + bytes(100)))
    assert (code, body["ok"]) == (400, False)
    assert body["reason"]


async def test_a_core_without_revocations_is_a_503(
    aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = SimNet()
    status = _status(net, _node(0))

    def missing(data: bytes, now: float) -> str:
        raise NotImplementedError

    monkeypatch.setattr(status.node, "add_revocation", missing)
    client = await aiohttp_client(make_app(status))
    code, body = await _revoke(client, _token(b"x" * 30))
    assert code == 503
    assert body["ok"] is False
    assert body["error"] == body["reason"]
    assert "cannot take revocations" in body["reason"]


async def test_a_revoke_body_is_bounded(aiohttp_client: Any) -> None:
    authority = _Authority()
    status, flushes = _trusted_status(authority)
    client = await aiohttp_client(make_app(status))
    big = "decent-revoke1:" + "A" * MAX_REVOKE_BODY
    code, body = await _revoke(client, big)
    assert code == 413
    assert body["reason"] == f"a revocation token is at most {MAX_REVOKE_BODY} bytes"

    async def chunks() -> Any:  # no Content-Length: read up to the bound only
        for _ in range(64):
            yield b"A" * 1024

    code, body = await _revoke(client, chunks())
    assert code == 413
    assert flushes == []
    # At the bound exactly, the token itself is judged.
    edge = "decent-revoke1:" + "A" * (MAX_REVOKE_BODY - len("decent-revoke1:"))
    code, body = await _revoke(client, edge)
    assert (code, body["ok"]) == (400, False)


async def test_revoking_needs_loopback_or_the_admin_token(aiohttp_client: Any) -> None:
    authority = _Authority()
    status, flushes = _trusted_status(authority)
    client = await aiohttp_client(make_app(status, admin_token="t0k"))
    token = _token(b"\x00" * 40)
    for headers in (
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        code, body = await _revoke(client, token, headers=headers)
        assert code == 403
        assert body["ok"] is False
        assert "cross-site" in body["reason"]
        assert body["error"] == body["reason"]
    assert flushes == []
    # The same rule as clear-cache, naming what was refused.
    refusal = admin_refusal("192.0.2.7", {}, "h", None, None, "revoking a certificate")
    assert refusal == (
        "refused: revoking a certificate needs a request from this host "
        "(loopback) or the admin token ([web] admin_token)"
    )
    assert admin_refusal("192.0.2.7", {}, "h", "t0k", "t0k", "revoking") is None
    # From loopback it is allowed.
    code, _ = await _revoke(client, token)
    assert code == 400
    resp = await client.get("/api/revoke")
    assert resp.status == 405
