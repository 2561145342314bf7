"""Per-core rates of the wire codec: Map-Request and Map-Register, decode and encode.

Also signed Map-Registers (decent.wire.trust): Ed25519 sign and verify with the
node's certificate in a signature locator, for 1 and for 20 records.

Run: python benchmarks/bench_wire.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from decent.wire import (
    Certificate,
    Eid,
    Locator,
    MapRecord,
    MapRegister,
    MapRequest,
    RequestRecord,
    check_auth,
    decode,
    find_signature,
    issue_certificate,
    node_xtr_id,
    public_key_of,
    register_digest,
    signature_locator,
)
from decent.wire.trust import sign, verify

KEY = b"lab-secret"
RLOC = IPv4Address("198.18.42.11")


def rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Calls per second of fn, best of three runs of about `seconds` each."""
    n = 1000
    while True:  # size the batch so one run takes about `seconds`
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed > seconds / 4:
            break
        n *= 4
    n = int(n * seconds / elapsed)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    request = MapRequest(
        nonce=0xA1A2A3A4A5A6A7A8,
        records=(RequestRecord(IPv4Address("10.2.0.9"), 32),),
        itr_rlocs=(RLOC,),
        source_eid=IPv4Address("10.1.0.5"),
    )
    register = MapRegister(
        nonce=1,
        records=(MapRecord(IPv4Address("10.1.0.0"), 16, (Locator(RLOC),), ttl=3),),
        proxy_reply=True,
        want_map_notify=True,
        xtr_id=0x0102030405060708090A0B0C0D0E0F10,
        site_id=1,
    ).signed(KEY)
    req_bytes = request.encode()
    reg_bytes = register.encode()
    assert decode(req_bytes) == request
    assert check_auth(reg_bytes, KEY)

    def decode_verify() -> None:
        decode(reg_bytes)
        check_auth(reg_bytes, KEY)

    figures = [
        ("Map-Request decode", rate(lambda: decode(req_bytes)), 100_000),
        ("Map-Request encode", rate(request.encode), None),
        ("Map-Register decode", rate(lambda: decode(reg_bytes)), None),
        ("Map-Register encode", rate(register.encode), None),
        ("Map-Register sign (HMAC-SHA-256)", rate(lambda: register.signed(KEY)), None),
        ("Map-Register decode + HMAC-SHA-256 verify", rate(decode_verify), 50_000),
    ]
    print(
        f"wire codec, one core, {len(req_bytes)}-byte Map-Request, "
        f"{len(reg_bytes)}-byte Map-Register (1 record, 1 locator)"
    )
    for name, value, target in figures:
        goal = ""
        if target is not None:
            verdict = "met" if value >= target else "MISSED"
            goal = f"  (target >= {target:,}/s: {verdict})"
        print(f"  {name:<44} {value:>10,.0f}/s{goal}")
    signed_registers()


def _signed_figures(
    cert: Certificate, node_key: bytes, mesh_pub: bytes, count: int
) -> list[tuple[str, float]]:
    records = tuple(
        MapRecord(IPv4Address(f"10.1.{i}.0"), 24, (Locator(RLOC),), ttl=3)
        for i in range(count)
    )
    xtr_id = node_xtr_id(public_key_of(node_key))
    cert_bytes = cert.encode()

    def sign_register() -> bytes:
        digest = register_digest(7, xtr_id, 1, records)
        loc = signature_locator(cert_bytes, sign(node_key, digest))
        first = dataclasses.replace(records[0], locators=(*records[0].locators, loc))
        msg = MapRegister(
            7, (first, *records[1:]), want_map_notify=True, xtr_id=xtr_id, site_id=1
        )
        return msg.encode()

    data = sign_register()
    # A member keeps the certificates it has verified, keyed by fingerprint
    # (decent.peer.trust): the mesh signature is checked once per certificate.
    verified: dict[bytes, Certificate] = {}

    def verify_register(cached: bool = True) -> bool:
        msg = decode(data)
        assert isinstance(msg, MapRegister)
        found = find_signature(msg.records[0])
        assert found is not None
        cert_data, signature = found
        cert = Certificate.decode(cert_data)
        if not cached or cert.fingerprint() not in verified:
            if not cert.verify(mesh_pub):
                return False
            verified[cert.fingerprint()] = cert
        digest = register_digest(msg.nonce, msg.xtr_id, msg.site_id, msg.records)
        return verify(cert.public_key, digest, signature)

    assert verify_register()
    label = f"{count} record{'s' if count > 1 else ''}, {len(data)} bytes"
    return [
        (f"sign ({label})", rate(sign_register)),
        (f"verify, certificate cached ({label})", rate(verify_register)),
        (
            f"verify, certificate checked too ({label})",
            rate(lambda: verify_register(cached=False)),
        ),
    ]


def signed_registers() -> None:
    # Fixed keys: the figures do not depend on which key was drawn.
    mesh_key = hashlib.sha256(b"bench mesh").digest()
    node_key = hashlib.sha256(b"bench node").digest()
    cert = issue_certificate(
        mesh_key,
        mesh="lab",
        name="node-1",
        public_key=public_key_of(node_key),
        eids=(Eid.prefix("10.1.0.0/16"), Eid.name("node-1")),
        not_after=1_900_000_000,
        serial=1,
    )
    figures = [
        *_signed_figures(cert, node_key, public_key_of(mesh_key), 1),
        *_signed_figures(cert, node_key, public_key_of(mesh_key), 20),
    ]
    print(
        f"signed Map-Register (Ed25519), one core, {len(cert.encode())}-byte "
        "certificate with 2 EIDs; sign = digest + sign + encode, verify = "
        "decode + find + certificate decode (+ its verify unless cached by "
        "fingerprint) + digest + verify"
    )
    for name, value in figures:
        print(f"  {name:<56} {value:>10,.0f}/s")


if __name__ == "__main__":
    main()
