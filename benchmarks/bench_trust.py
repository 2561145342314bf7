"""Signed registrations over UDP: Map-Register -> Map-Notify per second, signed or not.

One node runs as `decent run` on loopback; a generator process, a member
with its own certificate, sends it Map-Registers closed-loop (64
outstanding, each wanting a Map-Notify), every one with a fresh nonce, so
every one is HMAC-checked, nonce-checked and, with [trust], its signature
verified (no cache can answer for a new nonce). The generator signs its
whole pool before the clock starts. Runs alternate, signed and unsigned,
and the medians and their ratio are printed.

    python benchmarks/bench_trust.py [--rounds 2] [--seconds 5]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from ipaddress import IPv4Address
from pathlib import Path

from decent.wire import Eid, Locator, MapRecord, MapRegister
from decent.wire.trust import (
    generate_private_key,
    issue_certificate,
    node_xtr_id,
    public_key_of,
    register_digest,
    sign,
    signature_locator,
)

ROOT = Path(__file__).resolve().parent.parent
NODE = "127.0.0.41"
GENERATOR = "127.0.0.42"
WEB_PORT = 18441
GROUP_KEY = b"bench-group-key"
MESH = "bench"
WINDOW = 64
EIDS = 1000
YEAR = 365 * 86400


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_node(workdir: Path, trust: dict[str, bytes] | None) -> Path:
    state = workdir / "state"
    state.mkdir(mode=0o700)
    lines = [
        "[node]",
        'name = "b1"',
        f'rloc = "{NODE}"',
        f'state_dir = "{state}"',
        'log_level = "warning"',
        "",
        "[decent]",
        'group = "233.252.9.9"',
        f'key = "{GROUP_KEY.decode()}"',
        "",
        "[limits]",
        # The generator is one registrant sending flat out: lift the
        # per-registrant rate so that the node, not the limit, is measured.
        "registrant_rate = 10000000.0",
        "registrant_burst = 10000000.0",
        "",
        "[web]",
        f'listen = "{NODE}:{WEB_PORT}"',
        "",
    ]
    if trust is not None:
        key_file = state / "node.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_b64(trust["node_key"]) + "\n")
        lines += [
            "[trust]",
            f'mesh_key = "{_b64(trust["mesh_key"])}"',
            f'certificate = "{_b64(trust["certificate"])}"',
            "",
        ]
    path = workdir / "node.toml"
    path.write_text("\n".join(lines))
    return path


def pool(
    count: int, signed: dict[str, bytes] | None, xtr_id: int, per: int
) -> list[bytes]:
    """Map-Registers with nonces 1..count, each for `per` of EIDS /32s (a
    member's refresh carries all its EIDs, as many as fit)."""
    out = []
    for n in range(1, count + 1):
        records = []
        for k in range(per):
            i = (n * per + k) % EIDS
            addr, mask = Eid.prefix(f"10.9.{i >> 8}.{i & 255}/32").to_wire()
            records.append(MapRecord(addr, mask, (Locator(IPv4Address(GENERATOR)),), 3))
        if signed is not None:
            digest = register_digest(n, xtr_id, 0, records)
            sig = sign(signed["key"], digest)
            first = records[0]
            locator = signature_locator(signed["certificate"], sig)
            records[0] = MapRecord(
                first.eid, first.mask_len, (*first.locators, locator), 3
            )
        msg = MapRegister(
            n,
            tuple(records),
            proxy_reply=True,
            ttl_timeout=True,
            want_map_notify=True,
            xtr_id=xtr_id,
        ).signed(GROUP_KEY, 2)
        out.append(msg.encode())
    return out


def closed_loop(messages: list[bytes], seconds: float) -> tuple[int, float]:
    """Send with WINDOW outstanding; (Map-Notifies received, elapsed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((GENERATOR, 0))
    sock.settimeout(1.0)
    dest = (NODE, 4342)
    sent = received = 0
    for _ in range(WINDOW):
        sock.sendto(messages[sent], dest)
        sent += 1
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline and sent < len(messages):
        try:
            data = sock.recv(4096)
        except TimeoutError:
            # A lost datagram shrinks the window: top it up.
            for _ in range(WINDOW):
                if sent < len(messages):
                    sock.sendto(messages[sent], dest)
                    sent += 1
            continue
        if data[0] >> 4 == 4:  # Map-Notify
            received += 1
            sock.sendto(messages[sent], dest)
            sent += 1
    elapsed = time.perf_counter() - start
    sock.close()
    return received, elapsed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_healthy(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the node exited {proc.returncode}")
        try:
            with urllib.request.urlopen(
                f"http://{NODE}:{WEB_PORT}/api/node", timeout=1.0
            ) as r:
                json.load(r)
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("the node's API never answered")


def one_run(signed: bool, seconds: float, count: int, per: int) -> tuple[float, float]:
    """(Map-Notifies per second, node CPU-microseconds per registration)."""
    mesh_key = generate_private_key()
    node_key, gen_key = generate_private_key(), generate_private_key()
    not_after = int(time.time()) + YEAR
    node_cert = issue_certificate(
        mesh_key,
        mesh=MESH,
        name="b1",
        public_key=public_key_of(node_key),
        eids=(Eid.prefix("10.1.0.0/16"),),
        not_after=not_after,
        serial=1,
    )
    gen_cert = issue_certificate(
        mesh_key,
        mesh=MESH,
        name="gen",
        public_key=public_key_of(gen_key),
        eids=(Eid.prefix("10.9.0.0/16"),),
        not_after=not_after,
        serial=2,
    )
    xtr_id = node_xtr_id(public_key_of(gen_key))
    messages = pool(
        count,
        {"key": gen_key, "certificate": gen_cert.encode()} if signed else None,
        xtr_id,
        per,
    )
    with tempfile.TemporaryDirectory(prefix="bench-trust-") as tmp:
        trust = {
            "mesh_key": public_key_of(mesh_key),
            "certificate": node_cert.encode(),
            "node_key": node_key,
        }
        config = write_node(Path(tmp), trust if signed else None)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "decent", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "node.log", "wb"),  # noqa: SIM115
        )
        try:
            wait_healthy(proc)
            before = cpu_seconds(proc.pid)
            received, elapsed = closed_loop(messages, seconds)
            cpu = cpu_seconds(proc.pid) - before
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    if received + WINDOW >= count:
        print(f"   (pool of {count} ran out: raise --pool)")
    return received / elapsed, cpu / max(received, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pool", type=int, default=100_000)
    args = parser.parse_args(argv)
    print(
        "== Map-Register -> Map-Notify over UDP on loopback, one node, closed loop"
        f" ({WINDOW} outstanding), {args.seconds:g} s per run, every Map-Register"
        " a fresh nonce; signed = [trust] on, every signature verified (it covers"
        " the nonce, so none repeats and no cache can answer for one); the"
        " certificate's mesh signature is checked once and cached by fingerprint"
    )
    for per in (1, 20):
        count = args.pool if per == 1 else args.pool // 8
        rates: dict[bool, list[float]] = {True: [], False: []}
        cpus: dict[bool, list[float]] = {True: [], False: []}
        print(f"-- {per} EID record(s) per Map-Register")
        for r in range(args.rounds):
            for signed in (True, False):
                rate, cpu = one_run(signed, args.seconds, count, per)
                rates[signed].append(rate)
                cpus[signed].append(cpu)
                label = "signed  " if signed else "unsigned"
                print(
                    f"   round {r + 1} {label}: {rate:,.0f} Map-Registers/s = "
                    f"{rate * per:,.0f} EID registrations/s; node CPU "
                    f"{cpu:.0f} us per Map-Register"
                )
        signed_rate = statistics.median(rates[True])
        plain_rate = statistics.median(rates[False])
        print(
            f"   median signed {signed_rate * per:,.0f} EID registrations/s "
            f"({1e6 / statistics.median(cpus[True]) * per:,.0f} per node "
            f"CPU-second), unsigned {plain_rate * per:,.0f}/s "
            f"({1e6 / statistics.median(cpus[False]) * per:,.0f}); "
            f"signed / unsigned {signed_rate / plain_rate:.2f}"
        )
    print("target: at least 10,000 signed EID registrations/s per node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
