"""Node identities, simulated: hijacks refused, certificates judged, revocations."""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Any

import pytest

from decent.peer import counters as C
from decent.peer.config import TrustConfig
from decent.peer.events import RevocationLearned
from decent.peer.mapping.push_config import decent_node_config
from decent.wire import Eid, Locator, MapRecord, MapRegister, Rle, RleEntry
from decent.wire.trust import (
    Certificate,
    generate_private_key,
    issue_certificate,
    issue_revocation,
    node_xtr_id,
    public_key_of,
)
from tests.peer.conftest import DECENT_IPS, GROUP, KEY, Traced, attach, nonces
from tests.peer.simnet import SimNet

#: Unix time at the simulated clock's zero.
EPOCH = 1_800_000_000.0
YEAR = 365 * 86_400
MESH = "test-mesh"
ROGUE_IP = IPv4Address("198.18.42.66")


@dataclass
class Authority:
    """The mesh authority: its key, and the certificates it issued."""

    private: bytes
    serial: int = 0

    @property
    def public(self) -> bytes:
        return public_key_of(self.private)

    def trust(
        self,
        name: str,
        eids: tuple[str, ...],
        *,
        node_key: bytes | None = None,
        not_after: float = EPOCH + YEAR,
        mesh: str = MESH,
    ) -> TrustConfig:
        node_key = node_key or generate_private_key()
        self.serial += 1
        cert = issue_certificate(
            self.private,
            mesh=mesh,
            name=name,
            public_key=public_key_of(node_key),
            eids=tuple(Eid.prefix(e) for e in eids),
            not_after=int(not_after),
            serial=self.serial,
        )
        return TrustConfig(self.public, cert.encode(), node_key, epoch=EPOCH)


def member(
    net: SimNet, name: str, ip: IPv4Address, trust: TrustConfig, **kw: Any
) -> Traced:
    cert = Certificate.decode(trust.certificate)
    kw.setdefault("eids", cert.eids)
    config = decent_node_config(
        name=name,
        rlocs=(ip,),
        group=GROUP,
        key=KEY,
        xtr_id=node_xtr_id(public_key_of(trust.node_private_key)),
        seeds=DECENT_IPS[:1],
        trust=trust,
        **kw,
    )
    node = Traced(config, nonce=nonces(int(ip) << 16))
    attach(net, node)
    return node


def mesh(**net_kw: Any) -> tuple[SimNet, Authority, list[Traced]]:
    """Three members, n<i> granted 10.<i>.0.0/16, converged."""
    net = SimNet(seed=7, **net_kw)
    authority = Authority(generate_private_key())
    members = [
        member(net, f"n{i}", ip, authority.trust(f"n{i}", (f"10.{i}.0.0/16",)))
        for i, ip in enumerate(DECENT_IPS, start=1)
    ]
    net.advance(30.0)
    assert all(len(m.membership()) == 3 for m in members)
    return net, authority, members


def holder(node: Traced, eid: str) -> int | None:
    entry = node.registration(Eid.prefix(eid), exact=True)
    if entry is None:
        return None
    (who,) = entry.children
    assert isinstance(who, int)
    return who


def rejected(node: Traced, reason: str) -> int:
    return node.counters[C.REJECT + reason]


def test_a_mesh_with_certificates_converges_with_no_rejection() -> None:
    _net, _authority, members = mesh()
    for m in members:
        assert not [k for k in m.counters if k.startswith(C.REJECT)], m.counters
        for i, n in enumerate(members, start=1):
            assert holder(m, f"10.{i}.0.0/16") == n.config.xtr_id


def test_hijack_of_another_members_eid_by_a_certified_member_is_refused() -> None:
    net, authority, members = mesh()
    rogue = member(
        net,
        "rogue",
        ROGUE_IP,
        authority.trust("rogue", ("10.9.0.0/16",)),
        eids=(Eid.prefix("10.2.0.0/16"),),
    )
    net.advance(30.0)
    for m in members:
        assert holder(m, "10.2.0.0/16") == members[1].config.xtr_id
        assert rejected(m, "hijack-not-granted") >= 1
    assert rogue.config.xtr_id not in {holder(m, "10.2.0.0/16") for m in members}


def test_hijack_by_a_wider_grant_that_overlaps_another_members_is_refused() -> None:
    net, authority, members = mesh()
    member(
        net,
        "wide",
        ROGUE_IP,
        authority.trust("wide", ("10.0.0.0/8",)),
        eids=(Eid.prefix("10.2.7.0/24"), Eid.prefix("10.77.0.0/16")),
    )
    net.advance(30.0)
    for m in members:
        assert holder(m, "10.2.7.0/24") is None
        assert rejected(m, "hijack-overlap") >= 1


def test_hijack_of_the_default_route_needs_an_explicit_grant() -> None:
    net, authority, members = mesh()
    member(
        net,
        "grabber",
        ROGUE_IP,
        authority.trust("grabber", ("10.9.0.0/16",)),
        eids=(Eid.prefix("0.0.0.0/0"),),
    )
    net.advance(30.0)
    for m in members:
        assert holder(m, "0.0.0.0/0") is None
        assert rejected(m, "hijack-not-granted") >= 1


def test_an_exit_node_granted_the_default_route_registers_it() -> None:
    net, authority, members = mesh()
    exit_node = member(
        net,
        "exit",
        ROGUE_IP,
        authority.trust("exit", ("0.0.0.0/0",)),
        eids=(Eid.prefix("0.0.0.0/0"),),
    )
    net.advance(30.0)
    for m in members:
        assert holder(m, "0.0.0.0/0") == exit_node.config.xtr_id


def test_hijack_with_the_group_key_but_no_certificate_is_refused() -> None:
    net, _authority, members = mesh()
    config = decent_node_config(
        name="n2",
        rlocs=(ROGUE_IP,),
        group=GROUP,
        key=KEY,
        xtr_id=99,
        eids=(Eid.prefix("10.2.0.0/16"),),
        seeds=DECENT_IPS[:1],
    )
    attach(net, Traced(config))
    net.advance(30.0)
    # Only the seed hears it: a node no member accepts learns no others.
    assert rejected(members[0], "signature-missing") >= 1
    for m in members:
        assert holder(m, "10.2.0.0/16") == members[1].config.xtr_id
        assert ROGUE_IP not in m.membership()


def test_a_certificate_from_another_mesh_authority_is_refused() -> None:
    net, _authority, members = mesh()
    other = Authority(generate_private_key())
    member(net, "n2", ROGUE_IP, other.trust("n2", ("10.2.0.0/16",)))
    net.advance(30.0)
    assert rejected(members[0], "certificate-forged") >= 1
    for m in members:
        assert holder(m, "10.2.0.0/16") == members[1].config.xtr_id
        assert ROGUE_IP not in m.membership()


def test_an_expired_certificate_is_refused() -> None:
    net, authority, members = mesh()
    member(
        net,
        "late",
        ROGUE_IP,
        authority.trust("late", ("10.9.0.0/16",), not_after=EPOCH + 10.0),
    )
    net.advance(30.0)
    assert rejected(members[0], "certificate-expired") >= 1
    for m in members:
        assert holder(m, "10.9.0.0/16") is None


def test_a_certificate_used_under_another_xtr_id_is_refused() -> None:
    net, authority, members = mesh()
    trust = authority.trust("thief", ("10.9.0.0/16",))
    config = decent_node_config(
        name="thief",
        rlocs=(ROGUE_IP,),
        group=GROUP,
        key=KEY,
        xtr_id=members[1].config.xtr_id,  # n2's, to take over its children
        eids=(Eid.prefix("10.9.0.0/16"),),
        seeds=DECENT_IPS[:1],
        trust=trust,
    )
    attach(net, Traced(config))
    net.advance(30.0)
    assert rejected(members[0], "certificate-other-key") >= 1
    for m in members:
        assert holder(m, "10.2.0.0/16") == members[1].config.xtr_id


def test_hijack_replaying_a_signature_with_other_rlocs_is_refused() -> None:
    net, _authority, members = mesh()
    n1, n3 = members[0], members[2]
    trust = n3._ctx.trust
    assert trust is not None
    addr, mask = Eid.prefix("10.3.0.0/16").to_wire()
    honest = MapRecord(addr, mask, (Locator(n3.config.rlocs[0]),), 3)
    (signed,) = trust.sign(1 << 40, n3.config.xtr_id, 0, (honest,))
    # A key holder swaps the RLOC for its own and keeps n3's signature.
    stolen = replace(signed, locators=(Locator(ROGUE_IP), *signed.locators[1:]))
    register = MapRegister(
        1 << 40, (stolen,), xtr_id=n3.config.xtr_id, ttl_timeout=True
    ).signed(KEY, 2)
    before = n1.registration(Eid.prefix("10.3.0.0/16"), exact=True)
    assert before is not None
    record_before = before.record
    n1.receive_datagram(register.encode(), (ROGUE_IP, 4342), net.now)
    assert rejected(n1, "signature-invalid") == 1
    after = n1.registration(Eid.prefix("10.3.0.0/16"), exact=True)
    assert after is not None
    assert after.record == record_before


def test_hijack_of_the_membership_naming_another_address_is_refused() -> None:
    net, _authority, members = mesh()
    before = {m.config.rlocs[0]: sorted(m.membership()) for m in members}
    # n3 re-registers its membership with n1's address as if it were its own.
    n3 = members[2]
    eid = n3.config.group_eid
    assert eid is not None
    mapping = n3.database.get(eid)
    assert mapping is not None
    forged = (Locator(Rle((RleEntry(IPv4Address("198.18.42.99"), 128),)), 255, 0),)
    n3.database.insert(eid, replace(mapping, locators=forged))
    n3.handle_timer(net.now)  # nothing due: no change
    n3.etr.register_soon(net.now)
    net.advance(5.0)
    for m in members[:2]:
        assert rejected(m, "hijack-membership") >= 1
        assert IPv4Address("198.18.42.99") not in m.membership()
    assert before[members[0].config.rlocs[0]] == sorted(members[0].membership())


@pytest.mark.parametrize("loss", [0.0, 0.3])
def test_a_revoked_member_is_dropped_everywhere(loss: float) -> None:
    net, authority, members = mesh(loss=loss)
    n3 = members[2]
    cert_key = members[2].config.trust
    assert cert_key is not None
    revoked = public_key_of(cert_key.node_private_key)
    rev = issue_revocation(
        authority.private,
        mesh=MESH,
        name="n3",
        public_key=revoked,
        not_after=int(EPOCH + YEAR),
        serial=3,
    )
    assert members[0].add_revocation(rev.encode(), net.now) == ""
    net.advance(30.0)
    for m in members[:2]:
        assert holder(m, "10.3.0.0/16") is None, m.config.rlocs
        assert n3.config.rlocs[0] not in m.membership()
        assert any(isinstance(e, RevocationLearned) for _, e in m.log)
    # ... and it stays out: its refreshes are refused (the seed hears them;
    # the others no longer take its replicated copies).
    net.advance(300.0)
    assert rejected(members[0], "certificate-revoked") >= 1
    for m in members[:2]:
        assert holder(m, "10.3.0.0/16") is None
        assert n3.config.rlocs[0] not in m.membership()
    # A restarted member takes the revocation back from its snapshot.
    saved = members[1].revocations()
    assert len(saved) == 1
    fresh = member(
        SimNet(),
        "n2",
        DECENT_IPS[1],
        members[1].config.trust,  # type: ignore[arg-type]
    )
    assert fresh.add_revocation(saved[0], 0.0) == ""
    assert fresh.add_revocation(saved[0], 0.0) != ""


def test_a_forged_revocation_is_refused() -> None:
    _net, _authority, members = mesh()
    other = Authority(generate_private_key())
    trust = members[2].config.trust
    assert trust is not None
    rev = issue_revocation(
        other.private,
        mesh=MESH,
        name="n3",
        public_key=public_key_of(trust.node_private_key),
        not_after=int(EPOCH + YEAR),
        serial=3,
    )
    assert members[0].add_revocation(rev.encode(), 30.0) == "revocation-forged"
    assert members[0].add_revocation(b"garbage", 30.0) == "revocation-malformed"
