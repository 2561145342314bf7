"""A mesh with node identities on the namespace lab: joined by tokens, a node
revoked everywhere, and a rogue holding the group key that cannot take an EID."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import ip_address

import pytest

from decent.lab import CONTROL_PORT, NetnsLab
from decent.wire import AlgorithmId, Eid, Locator, MapRecord, MapRegister
from decent.wire.trust import (
    generate_private_key,
    issue_certificate,
    node_xtr_id,
    public_key_of,
    register_digest,
    sign,
    signature_locator,
)
from tests.e2e.hostile import Hostile

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]
CONVERGE = 45.0
#: How long every member may take to drop a revoked node: the revocation
#: is handed to one member and travels through the group.
REVOKED_WITHIN = 30.0
ADMIN = "trust-e2e-admin-token"


def decent(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """The command line as a person runs it."""
    return subprocess.run(
        [sys.executable, "-m", "decent", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def routed(lab: NetnsLab) -> None:
    """Wait until every node holds routes to the others' EIDs (data plane)."""
    for i in lab.running():
        others = {e for j in lab.running() if j != i for e in lab.node(j).eids}
        lab.wait_until(_has_routes(lab, i, others), CONVERGE, f"n{i}'s EID routes")


def _has_routes(lab: NetnsLab, i: int, routes: set[str]) -> Callable[[], bool]:
    return lambda: routes <= set(lab.api(i, "/api/node")["dataplane"]["routes"])


def counters(lab: NetnsLab, i: int, prefix: str) -> dict[str, int]:
    found: dict[str, int] = lab.api(i, "/api/node")["counters"]
    return {k: v for k, v in found.items() if k.startswith(prefix)}


def rlocs_of(lab: NetnsLab, i: int, eid: str) -> list[str] | None:
    """The RLOCs node i holds for an EID (None: no registration)."""
    for site in lab.api(i, "/api/sites"):
        if site["eid"] == eid:
            return sorted(r["address"] for r in site["rlocs"])
    return None


def dropped(lab: NetnsLab, i: int, gone: int) -> bool:
    """Node i holds nothing more of node `gone`: no peer, no membership, no
    EID, no name."""
    n = lab.node(gone)
    view = lab.view(i)
    peers = lab.api(i, "/api/peers")
    return (
        str(n.rloc) not in view.members
        and str(n.rloc) not in view.peer_rlocs
        and n.name not in view.peer_names
        and n.name not in view.names
        and not set(n.eids) & view.eids
        and all(p.get("name") != n.name for p in peers)
    )


# ---------------------------------------------------------------- revocation
def test_nodes_joined_by_certificate_tokens_converge_and_a_revoked_node_is_dropped(
    make_lab: MakeLab,
) -> None:
    lab = make_lab(nodes=3, trust=True, ttl_minutes=3, register_interval=5.0)
    # Loopback may revoke on its own; this test's process is on the bridge.
    lab.configure(1, admin_token=ADMIN)
    lab.start_all()  # each node invited and joined with its own token
    lab.wait_converged(CONVERGE)

    # A fourth node, invited by the mesh authority from the command line.
    four = lab.add_node(seed=1, start=False)
    n4 = lab.node(four)
    grants = [a for eid in n4.eids for a in ("--eid", eid)]
    invited = decent(
        *("mesh", "invite", n4.name, *grants, "--seed", str(lab.node(1).rloc)),
        *("--dir", str(lab.mesh_dir), "--json"),
    )
    assert invited.returncode == 0, invited.stderr
    token = json.loads(invited.stdout)["token"]
    assert token.startswith("decent1:")
    lab.join(four, token)  # `decent join --config-only`
    lab.start(four)
    lab.wait_converged(CONVERGE)
    for i in (1, 2, 3, 4):
        assert lab.view(i).names == {"n1", "n2", "n3", "n4"}, i
        health = lab.api(i, "/healthz")
        assert health["ok"], (i, health)

    # The authority revokes n4; one member is handed the token.
    revoked = decent("mesh", "revoke", n4.name, "--dir", str(lab.mesh_dir))
    assert revoked.returncode == 0, revoked.stderr
    command = revoked.stdout.splitlines()[-1].split()
    assert command[:2] == ["decent", "revoke"]
    handed = decent("revoke", command[2], "--node", lab.node(1).url, "--token", ADMIN)
    assert handed.returncode == 0, handed.stderr
    assert "took the revocation of node n4" in handed.stdout
    took = lab.wait_until(
        lambda: all(dropped(lab, i, four) for i in (1, 2, 3)),
        REVOKED_WITHIN,
        "every member to drop the revoked n4",
    )
    print(f"n4 dropped by every member {took:.2f} s after the revocation")
    assert lab.node(four).running  # it keeps trying...
    time.sleep(2 * 5.0)  # ...for two registration periods...
    for i in (1, 2, 3):
        assert dropped(lab, i, four), i  # ...and is refused
    # Its seed, at least, still hears from it, and refuses it for that.
    rejected = counters(lab, 1, "reject.")
    print(f"n1 rejected: {rejected}")
    assert any("revoked" in k for k in rejected), rejected
    # The others are untouched.
    for i in (1, 2, 3):
        view = lab.view(i)
        assert {"n1", "n2", "n3"} <= view.names
        assert {"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"} <= view.eids
    # A restarted member still refuses n4: the revocation was saved.
    assert lab.stop(2) == 0
    lab.start(2)
    lab.wait_until(lambda: lab.healthy(2), CONVERGE, "n2 back")
    time.sleep(2 * 5.0)
    assert dropped(lab, 2, four)
    assert (lab.state_dir(2) / "revocations.msgpack").exists()
    # Handing the same token again changes nothing.
    again = decent("revoke", command[2], "--node", lab.node(1).url, "--token", ADMIN)
    assert again.returncode == 1
    assert "revocation-known-or-expired" in again.stderr


# ---------------------------------------------------------------- hijack
def _rogue_register(lab: NetnsLab, eid: str, rloc: str, *, certificate: bool) -> bytes:
    """A Map-Register for eid at rloc, HMAC-signed with the group key, as a
    member sends one; with `certificate`, also signed by a node key under a
    certificate of a mesh the rogue made itself (naming it n2)."""
    addr, mask = Eid.prefix(eid).to_wire()
    record = MapRecord(addr, mask, (Locator(ip_address(rloc)),), 1, authoritative=True)
    nonce = secrets.randbits(63)
    xtr_id = secrets.randbits(128)
    records: tuple[MapRecord, ...] = (record,)
    if certificate:
        own_mesh, node_key = generate_private_key(), generate_private_key()
        cert = issue_certificate(
            own_mesh,
            mesh="lab",
            name="n2",
            public_key=public_key_of(node_key),
            eids=(Eid.prefix(eid),),
            not_after=int(time.time()) + 3600,
            serial=secrets.randbits(64),
        )
        xtr_id = node_xtr_id(public_key_of(node_key))
        digest = register_digest(nonce, xtr_id, 0, records)
        locator = signature_locator(cert.encode(), sign(node_key, digest))
        records = (
            MapRecord(addr, mask, (*record.locators, locator), 1, authoritative=True),
        )
    msg = MapRegister(
        nonce,
        records,
        proxy_reply=True,
        ttl_timeout=True,
        xtr_id=xtr_id,
    )
    return msg.signed(lab.key.encode(), AlgorithmId.HMAC_SHA_256_128).encode()


def test_a_rogue_with_the_group_key_but_no_certificate_cannot_hijack_an_eid(
    make_lab: MakeLab,
) -> None:
    lab = make_lab(nodes=3, trust=True, dataplane=True, ttl_minutes=3)
    lab.start_all()
    lab.wait_converged(CONVERGE)
    routed(lab)
    n2 = str(lab.node(2).rloc)
    assert rlocs_of(lab, 1, "[0]192.0.2.2/32") == [n2]
    rogue = Hostile(lab, "rogue")
    try:
        s = rogue.udp(0, CONTROL_PORT)
        before = {i: sum(counters(lab, i, "reject.").values()) for i in (1, 3)}
        for certificate in (False, True):
            for _ in range(3):
                data = _rogue_register(
                    lab, "192.0.2.2/32", str(rogue.address), certificate=certificate
                )
                for i in (1, 3):
                    s.sendto(data, (str(lab.node(i).rloc), CONTROL_PORT))
                time.sleep(0.2)
        lab.wait_until(
            lambda: all(
                sum(counters(lab, i, "reject.").values()) >= before[i] + 6
                for i in (1, 3)
            ),
            10.0,
            "n1 and n3 to count the rogue's registrations as rejected",
        )
    finally:
        rogue.close()
    for i in (1, 3):
        assert rlocs_of(lab, i, "[0]192.0.2.2/32") == [n2], i
        rejected = counters(lab, i, "reject.")
        print(f"n{i} rejected: {rejected}")
        assert any("signature" in k for k in rejected), rejected
        assert any("certificate" in k for k in rejected), rejected
        peers = lab.api(i, "/api/peers")
        assert str(rogue.address) not in {p["rloc"] for p in peers}
    # Traffic for n2's EID still goes to n2, not to the rogue.
    result = lab.exec(1, "ping", "-c", "3", "-i", "0.2", "-W", "2", "192.0.2.2")
    assert result.returncode == 0, result.stdout
    assert " 0% packet loss" in result.stdout
    entry = next(
        e for e in lab.api(1, "/api/map-cache") if e["eid"] == "[0]192.0.2.2/32"
    )
    assert [r["address"] for r in entry["rlocs"]] == [n2]
