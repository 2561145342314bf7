"""Per-core rates of the wire codec: Map-Request and Map-Register, decode and encode.

Run: python benchmarks/bench_wire.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv4Address

from decent.wire import (
    Locator,
    MapRecord,
    MapRegister,
    MapRequest,
    RequestRecord,
    check_auth,
    decode,
)

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


if __name__ == "__main__":
    main()
