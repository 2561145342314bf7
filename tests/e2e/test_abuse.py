"""The lab under attack: a hostile host on the bridge runs each abuse in turn.

The hardening issue's proof: the lab stays healthy while a member gone
rogue (it holds the group key) runs each attack, and afterwards every node
still holds every legitimate registration and answers within its usual
latency. One lab, the attacks in the issue's order (3, the full disk, is
tests/net/test_persist_faults.py's). Each attack is followed by a check that
it was contained (the node's counters and table sizes, what reached the
wire) and that the lab is healthy; a failed check is recorded and the next
attack still runs, so one run reports every attack. The hostile host's own
registrations stay (it is a key holder); the legitimate ones must all be
there besides them.

Times are printed, never asserted tightly: the machine is shared. Waits
are for conditions, with generous bounds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Final

import pytest

from decent.lab import CONTROL_PORT, GROUP_EID, LabError, NetnsLab, read_pcap
from decent.peer.display import time_value
from decent.wire import DecodeError, MapNotify, decode
from tests.e2e.hostile import (
    MAX_RECORDS,
    MAX_REPLY,
    Hostile,
    Listener,
    answer_challenges,
    ask,
    ecm_request,
    http_status,
    map_replies,
    merge_wipe,
    plain_request,
    poison_nonce,
    quota_burst,
    reflect,
    register_covering_prefixes,
    replicated_register,
    sha1_register,
    victim_sockets,
    web_load,
)

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]

CONVERGE: Final = 30.0
#: Bound on any condition after an attack (a few register periods).
SETTLE: Final = 30.0
#: Seconds between a node's registrations: short, so recovery that needs
#: the victim's next registration is seen soon.
REGISTER_INTERVAL: Final = 5.0
#: "Within its usual latency": on this shared machine only a generous bound.
LATENCY_BOUND: Final = 2.0
NODES: Final = (1, 2, 3)
#: xTR-IDs the hostile host makes up, one per kind of registration.
EVIL_XTR: Final = 0xE5E5_0000_0000_0000_0000_0000_0000_0001
BULK_XTR: Final = 0xE5E5_0000_0000_0000_0000_0000_0000_0002
STRAY_XTR: Final = 0xE5E5_0000_0000_0000_0000_0000_0000_0003
# Limits the node applies by default (decent.peer.config.Limits, [web]).
REPLY_AMPLIFICATION: Final = 3.0
REGISTRANT_EIDS: Final = 4096
REPLY_BUCKETS: Final = 4096
MAP_REPLY_RATE, MAP_REPLY_BURST = 1000.0, 2000.0
WEB_MAX_CONNECTIONS: Final = 256
#: RSS a node may gain holding one registrant's full quota (4096 EIDs) and
#: refusing the rest of a 100k burst.
RSS_GROWTH_BOUND_MB: Final = 96.0
#: The victims' port: plain Map-Requests are answered to their source port.
VICTIM_PORT: Final = 40_342


# ---------------------------------------------------------------- reading
def counters(lab: NetnsLab, i: int) -> Counter[str]:
    return Counter(lab.api(i, "/api/node")["counters"])


def all_counters(lab: NetnsLab) -> dict[int, Counter[str]]:
    return {i: counters(lab, i) for i in NODES}


def grew(lab: NetnsLab, i: int, before: Counter[str], *keys: str) -> int:
    """How much the sum of `keys` grew on node i since `before`."""
    now = counters(lab, i)
    return sum(now[k] - before[k] for k in keys)


def rose(lab: NetnsLab, i: int, before: Counter[str], *keys: str) -> Callable[[], bool]:
    """A predicate: the sum of `keys` on node i grew since `before`."""
    return lambda: grew(lab, i, before, *keys) >= 1


def delta(before: Counter[str], after: Counter[str], prefix: str) -> dict[str, int]:
    """Counters starting with `prefix` that changed, and by how much."""
    return {
        k: after[k] - before[k]
        for k in sorted(after)
        if k.startswith(prefix) and after[k] != before[k]
    }


def steady(read: Callable[[], int], hold: float = 0.5) -> Callable[[], bool]:
    """A predicate true once read() has not moved for `hold` seconds: the
    node has taken in (or the victims received) what was sent."""
    seen: list[tuple[float, int]] = []

    def check() -> bool:
        value, now = read(), time.monotonic()
        if not seen or seen[-1][1] != value:
            seen.append((now, value))
            return False
        return now - seen[-1][0] >= hold

    return check


def quiet(lab: NetnsLab, i: int, key: str) -> Callable[[], bool]:
    """True once counter `key` of node i has stopped moving."""
    return steady(lambda: counters(lab, i)[key])


def pid(lab: NetnsLab, i: int) -> int:
    # `ip netns exec` execs decent: the pid is the node's own.
    proc = lab.node(i).process
    assert proc is not None
    return proc.pid


def rss_mb(lab: NetnsLab, i: int) -> float:
    for line in Path(f"/proc/{pid(lab, i)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def fd_count(lab: NetnsLab, i: int) -> int:
    return len(os.listdir(f"/proc/{pid(lab, i)}/fd"))


def children(lab: NetnsLab, i: int) -> list[tuple[str, dict[str, Any]]]:
    """(site EID, registration) of every registration node i holds."""
    sites = lab.api(i, "/api/sites", timeout=10.0)
    return [(s["eid"], c) for s in sites for c in s["registrations"]]


def group_rle(lab: NetnsLab, i: int) -> set[str]:
    for site in lab.api(i, "/api/sites", timeout=10.0):
        if site["eid"] == GROUP_EID:
            return {e["address"] for loc in site["rlocs"] for e in loc.get("rle", [])}
    return set()


# ---------------------------------------------------------------- health
def legit_held(lab: NetnsLab) -> bool:
    """Every node is healthy and holds every legitimate registration: all
    members' EIDs and names, and exactly the three members in its group
    entry and peers (the hostile host may hold registrations of its own)."""
    want = lab.expected_view(list(NODES))
    for i in NODES:
        if not lab.healthy(i):
            return False
        view = lab.view(i)
        if not (
            want.eids <= view.eids
            and want.names <= view.names
            and view.members == want.members
            and view.peer_rlocs == want.peer_rlocs
        ):
            return False
    return True


def lookup_seconds(lab: NetnsLab, i: int) -> float:
    """One real Map-Request to node i for the next node's EID, timed."""
    j = i % len(NODES) + 1
    start = time.perf_counter()
    reply = lab.lookup_over_udp(i, f"192.0.2.{j}", timeout=LATENCY_BOUND)
    took = time.perf_counter() - start
    (record,) = reply.records
    assert [loc.address for loc in record.locators] == [lab.node(j).rloc], (i, reply)
    return took


def latencies(lab: NetnsLab, rounds: int = 5) -> dict[int, float]:
    """Median lookup time per node."""
    return {
        i: statistics.median(lookup_seconds(lab, i) for _ in range(rounds))
        for i in NODES
    }


def assert_healthy(lab: NetnsLab) -> None:
    lab.wait_until(
        lambda: legit_held(lab), SETTLE, "every node to hold every legitimate one"
    )
    for i in NODES:
        assert lookup_seconds(lab, i) < LATENCY_BOUND


class Steps:
    """Runs attacks in turn; each failure is kept and the next one runs."""

    def __init__(self, lab: NetnsLab) -> None:
        self.lab = lab
        self.failures: list[str] = []

    def run(self, name: str, attack: Callable[[], None]) -> None:
        print(f"--- {name}")
        start = time.monotonic()
        failed = (AssertionError, TimeoutError, OSError, ValueError, LabError)
        try:
            attack()
        except failed as exc:
            self.failures.append(f"{name}: not contained: {type(exc).__name__}: {exc}")
            print(f"    NOT CONTAINED: {type(exc).__name__}: {exc}")
        try:
            assert_healthy(self.lab)
        except failed as exc:
            self.failures.append(f"{name}: lab unhealthy after it: {exc}")
            print(f"    LAB UNHEALTHY: {type(exc).__name__}: {exc}")
        print(f"    ({time.monotonic() - start:.1f} s)")


# ---------------------------------------------------------------- 1
def nonce_poisoning(lab: NetnsLab, host: Hostile, *, spoofed: bool) -> None:
    """n2's Map-Register with nonce 2**64-1 to n1 and n3. Each challenges
    the source: n2 (spoofed) refuses, as it never sent that nonce; the
    hostile host (its own address, the key in hand) confirms, which moves
    only its own address's mark. Either way n2's own registrations must keep
    being accepted: its every child on n1 and n3 refreshed after the attack."""
    before = {i: counters(lab, i) for i in (1, 2, 3)}
    via = None if spoofed else host.udp()
    poison_nonce(host, 2, (1, 3), via=via)
    if via is not None:
        answered = answer_challenges(via, expect=2)
        print(f"    the hostile host answered {answered} challenge(s) itself")
    for i in (1, 3):
        lab.wait_until(
            rose(lab, i, before[i], "reject.nonce-jump"), SETTLE, f"n{i} to refuse it"
        )
        if spoofed:
            # The challenge went to n2, which never sent that nonce: it
            # refuses to confirm, and its mark stays its own.
            lab.wait_until(
                rose(lab, 2, before[2], "drop.not-our-registration"),
                SETTLE,
                "n2 to refuse the challenge",
            )
        else:
            lab.wait_until(
                rose(lab, i, before[i], "resync.confirmed"),
                SETTLE,
                f"n{i} to have its challenge confirmed",
            )
    confirmed = time.time()
    n2 = str(lab.node(2).rloc)

    def n2_refreshed() -> bool:
        for i in (1, 3):
            own = [c for _, c in children(lab, i) if c["registrant"] == n2]
            # membership, name and 192.0.2.2/32
            last = [time_value(c["last_registered_at"]) or 0.0 for c in own]
            if len(own) < 3 or min(last) <= confirmed:
                return False
        return True

    lab.wait_until(n2_refreshed, SETTLE, "n2's own registrations to be accepted")
    for i in (1, 3):
        print(
            f"    n{i}: {delta(before[i], counters(lab, i), 'reject.')} "
            f"{delta(before[i], counters(lab, i), 'resync.')}"
        )


# ---------------------------------------------------------------- 2
def covering_prefixes(lab: NetnsLab, host: Hostile) -> None:
    """10.0.0.0/24 and /21 with 400 /32s below, then a bare Map-Request for
    each: one datagram within the MTU, a true record count, at most 3x the
    request (the host is not a member); narrowed or dropped."""
    before = all_counters(lab)
    register_covering_prefixes(host, NODES, EVIL_XTR, hosts=400)
    lab.wait_until(
        lambda: all(
            {"10.0.0.0/21", "10.0.0.0/24", "10.0.4.200/32"} <= lab.view(i).eids
            for i in NODES
        ),
        SETTLE,
        "the covering prefixes to be registered",
    )
    s = host.udp()
    for i in NODES:
        for prefix in ("10.0.0.0/24", "10.0.0.0/21"):
            size, got = ask(s, lab.node(i).rloc, prefix, host.address)
            replies = map_replies(got)
            assert len(replies) <= 1, (i, prefix, len(replies))
            for data, reply in replies:
                assert len(data) <= MAX_REPLY, (i, prefix, len(data))
                assert len(reply.records) <= MAX_RECORDS
                assert data[3] == len(reply.records), "record count wrapped"
                assert len(data) <= REPLY_AMPLIFICATION * size, (i, prefix, len(data))
            shown = [len(d) for d, _ in replies] or "dropped"
            print(f"    n{i} {prefix}: request {size} B, reply {shown} B")
        # Both answers were too big whole: each narrowed or dropped.
        handled = grew(lab, i, before[i], "reply.narrowed", "drop.reply-too-large")
        assert handled >= 2, (i, delta(before[i], counters(lab, i), ""))


# ---------------------------------------------------------------- 4
def web_load_attack(lab: NetnsLab, host: Hostile) -> None:
    """2000 idle and slowloris connections and 100 /events clients on n1's
    web server: n1 keeps answering Map-Requests, its descriptors bounded."""
    base = fd_count(lab, 1)
    peak, lookups = base, []
    with web_load(host, 1, idle=1200, slow=800, live=100) as load:
        for _ in range(4):
            load.trickle()
            peak = max(peak, fd_count(lab, 1))
            lookups.append(lookup_seconds(lab, 1))
            # The slowloris client's pace (a header line a second), not a
            # wait for anything of the node's.
            time.sleep(1.0)
        peak = max(peak, fd_count(lab, 1))
        answers = load.answers()
        connected = load.connected
    print(
        f"    {connected} connections made; n1 descriptors {base} before, "
        f"peak {peak}; lookups {[f'{t * 1000:.0f} ms' for t in lookups]}"
    )
    print(f"    what the connections got: {dict(answers.most_common(5))}")
    assert max(lookups) < LATENCY_BOUND
    bound = base + WEB_MAX_CONNECTIONS + 64
    assert peak <= bound, (
        f"n1 held {peak} descriptors under the load (from {base}); a bounded "
        f"web server stays within {bound} ([web] max_connections "
        f"{WEB_MAX_CONNECTIONS})"
    )


# ---------------------------------------------------------------- 5
def merge_bit_wipe(lab: NetnsLab, host: Hostile) -> None:
    """The group entry registered with an RLE of n1 alone, merge bit clear:
    every node still lists all three members."""
    before = all_counters(lab)
    merge_wipe(host, NODES, EVIL_XTR, only=lab.node(1).rloc)
    evil = f"{EVIL_XTR:032x}"

    def handled(i: int) -> bool:
        held = any(
            eid == GROUP_EID and c["xtr_id"] == evil for eid, c in children(lab, i)
        )
        refused = sum(delta(before[i], counters(lab, i), "reject.").values())
        return held or refused > 0

    for i in NODES:
        lab.wait_until(partial(handled, i), SETTLE, f"n{i} to take the register")
    members = {str(lab.node(i).rloc) for i in NODES}
    for i in NODES:
        assert group_rle(lab, i) == members, f"n{i}"
        assert {p["rloc"] for p in lab.api(i, "/api/peers")} == members, f"n{i}"


# ---------------------------------------------------------------- 6
def quota(lab: NetnsLab, host: Hostile) -> None:
    """100k EIDs in a burst from one registrant (one xTR-ID, one address):
    each node holds at most its quota, counts the refusals, stays
    responsive, and its RSS grows boundedly."""
    before = all_counters(lab)
    rss = {i: rss_mb(lab, i) for i in NODES}
    start = time.monotonic()
    sent = quota_burst(
        host, NODES, BULK_XTR, count=100_000, first=IPv4Address("10.64.0.0")
    )
    took = time.monotonic() - start
    for i in NODES:
        lab.wait_until(quiet(lab, i, "rx.map-register"), SETTLE, f"n{i} to catch up")
    bulk = f"{BULK_XTR:032x}"
    for i in NODES:
        held = sum(1 for _, c in children(lab, i) if c["xtr_id"] == bulk)
        after = counters(lab, i)
        grown = rss_mb(lab, i) - rss[i]
        print(
            f"    n{i}: {sent} Map-Registers sent in {took:.1f} s, "
            f"{after['rx.map-register'] - before[i]['rx.map-register']} received; "
            f"holds {held} of the registrant's EIDs; RSS {rss[i]:.1f} -> "
            f"{rss[i] + grown:.1f} MB; {delta(before[i], after, 'reject.registrant')}"
        )
        assert 0 < held <= REGISTRANT_EIDS, (i, held)
        assert after["reject.registrant-quota"] > before[i]["reject.registrant-quota"]
        assert after["reject.registrant-rate"] > before[i]["reject.registrant-rate"]
        assert grown < RSS_GROWTH_BOUND_MB, (i, grown)
        assert lookup_seconds(lab, i) < LATENCY_BOUND
        # The status page's list of refused registrants names it.
        refused = lab.api(i, "/api/node")["refused"]
        assert any(
            r["registrant"] == bulk and r["reason"].startswith("registrant-")
            for r in refused
        ), (i, refused)


# ---------------------------------------------------------------- 7
def reflection(lab: NetnsLab, host: Hostile) -> None:
    """Map-Requests naming victims as ITR-RLOC: one victim flooded, three
    more sent a mix of requests, then 5000 distinct ones. Per-destination
    rate, at most 3x the bytes sent for a victim, bucket table bounded."""
    victims, sockets = victim_sockets(lab, "victim", 4, VICTIM_PORT)
    listener = Listener(sockets)
    s = host.udp(port=VICTIM_PORT)
    n1 = lab.node(1).rloc
    before = counters(lab, 1)

    def mix(v: IPv4Address) -> list[bytes]:
        out = [plain_request("192.0.2.1/32", v, n) for n in range(1, 9)]
        out.append(plain_request("10.0.0.0/21", v, 9))  # narrowed, or dropped
        out.append(ecm_request("192.0.2.2/32", v, VICTIM_PORT, 10, n1))
        return out

    requests = {v: mix(v) for v in victims}
    try:
        start = time.monotonic()
        sent = reflect(
            s, n1, victims[:1], lambda v, r: requests[v][r % 8], rounds=8000, rate=8000
        )
        flood = time.monotonic() - start
        sent += reflect(
            s, n1, victims[1:], lambda v, r: requests[v][r % 10], rounds=300, rate=3000
        )
        lab.wait_until(quiet(lab, 1, "rx.map-request"), SETTLE, "n1 to catch up")
        lab.wait_until(
            steady(lambda: sum(listener.datagrams.values())),
            SETTLE,
            "the replies to reach the victims",
        )
    finally:
        listener.stop()
    after = counters(lab, 1)
    v0 = str(victims[0])
    print(
        f"    flood: {sent[victims[0]]} B sent for {v0} in {flood:.1f} s; it got "
        f"{listener.datagrams[v0]} replies, {listener.bytes[v0]} B"
    )
    replies = delta(before, after, "tx.map-reply")
    print(f"    n1: {delta(before, after, 'drop.')} {replies}")
    assert after["drop.rate-limited"] > before["drop.rate-limited"]
    assert listener.datagrams[v0] <= MAP_REPLY_BURST + MAP_REPLY_RATE * (flood + 2.0)
    for v in victims:
        got, gave = listener.bytes[str(v)], sent[v]
        print(f"    {v}: {gave} B of requests, {got} B of replies")
        assert got <= REPLY_AMPLIFICATION * gave, (str(v), got, gave)

    # Many distinct victims: the bucket table stays bounded. Loopback
    # addresses, so the replies go nowhere beyond n1's own namespace.
    many = [IPv4Address("127.88.0.0") + k for k in range(5000)]
    reflect(
        s,
        n1,
        many,
        lambda v, r: plain_request("192.0.2.1/32", v, 1),
        rounds=1,
        rate=5000,
    )
    lab.wait_until(quiet(lab, 1, "rx.map-request"), SETTLE, "n1 to catch up")
    state = lab.api(1, "/api/node")["state"]
    print(f"    5000 distinct victims: reply_buckets {state['reply_buckets']}")
    assert state["reply_buckets"] <= REPLY_BUCKETS
    spent = counters(lab, 1)
    print(f"    global byte budget refusals: {spent['drop.global-rate-limited']}")


# ---------------------------------------------------------------- 8
def replicated_control(lab: NetnsLab, host: Hostile, tmp_path: Path) -> None:
    """Replicated Map-Registers (data port, IID 0xffffff) to n1 from the
    hostile host: saying n2 sent them (as the issue ran it), saying the host
    itself did (it is no member), and with n3's address spoofed outside and
    n2's inside. All dropped (not a member, or inner and outer source
    differ); nothing registered; no Map-Notify to the claimed sender."""
    before = counters(lab, 1)
    n2, me = lab.node(2).rloc, host.address
    sends = [  # (inner source, spoofed outer source, EID it registers)
        (n2, None, IPv4Address("10.99.0.1")),
        (me, None, IPv4Address("10.99.0.2")),
        (n2, lab.node(3).rloc, IPv4Address("10.99.0.3")),
    ]
    reasons = ("drop.replicated-not-member", "drop.replicated-spoofed")
    with lab.capture(tmp_path / "replicated.pcap", f"udp port {CONTROL_PORT}") as pcap:
        for inner, outer, eid in sends:
            replicated_register(
                host, 1, inner_src=inner, outer_src=outer, xtr_id=STRAY_XTR, eid=eid
            )
        lab.wait_until(
            lambda: grew(lab, 1, before, *reasons) >= len(sends),
            SETTLE,
            "n1 to drop all three",
        )
    after = counters(lab, 1)
    print(f"    n1: {delta(before, after, 'drop.replicated')}")
    # The non-member that says so itself, and the spoofed outer source.
    assert after[reasons[0]] > before[reasons[0]]
    assert after[reasons[1]] > before[reasons[1]]
    assert after["tx.challenge"] == before["tx.challenge"]
    strays = {eid for _, _, eid in sends}
    notified = []
    for d in read_pcap(pcap):
        if d.src != lab.node(1).rloc or d.dst not in (n2, me):
            continue
        try:
            msg = decode(d.payload)
        except DecodeError:
            continue
        if isinstance(msg, MapNotify) and any(r.eid in strays for r in msg.records):
            notified.append((d.dst, msg))
    assert notified == [], "a Map-Notify went to a claimed sender"
    for i in NODES:
        held = lab.view(i).eids
        assert not {f"{a}/32" for a in strays} & held, f"n{i}"


# ---------------------------------------------------------------- 9
def smaller(lab: NetnsLab, host: Hostile) -> None:
    """A Map-Register signed with HMAC-SHA-1 is refused; a request naming
    a foreign Host is refused (DNS rebinding)."""
    before = counters(lab, 1)
    eid = IPv4Address("10.98.0.1")
    sha1_register(host, 1, EVIL_XTR, eid)
    lab.wait_until(
        rose(lab, 1, before, "reject.algorithm-refused"), SETTLE, "n1 to refuse SHA-1"
    )
    assert f"{eid}/32" not in lab.view(1).eids
    status = http_status(host, 1, "evil.example")
    print(f"    Host: evil.example -> {status}")
    assert status in (421, 403), status


# ---------------------------------------------------------------- the test
def test_lab_stays_healthy_while_a_hostile_host_runs_each_attack(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    lab = make_lab(register_interval=REGISTER_INTERVAL)
    lab.start_all()
    lab.wait_converged(CONVERGE)
    host = Hostile(lab, "evil", 2)
    try:
        usual = latencies(lab)
        steps = Steps(lab)
        steps.run(
            "1 nonce poisoning, spoofed from n2 (n2 refuses to confirm)",
            lambda: nonce_poisoning(lab, host, spoofed=True),
        )
        steps.run(
            "1b nonce poisoning from the hostile host (it confirms, key in hand)",
            lambda: nonce_poisoning(lab, host, spoofed=False),
        )
        steps.run(
            "2 covering-prefix amplification", lambda: covering_prefixes(lab, host)
        )
        steps.run("4 web load", lambda: web_load_attack(lab, host))
        steps.run("5 merge-bit wipe", lambda: merge_bit_wipe(lab, host))
        steps.run("6 100k-EID quota burst", lambda: quota(lab, host))
        steps.run("7 reflection", lambda: reflection(lab, host))
        steps.run(
            "8 replicated control from a non-member",
            lambda: replicated_control(lab, host, tmp_path),
        )
        steps.run("9 HMAC-SHA-1, foreign Host", lambda: smaller(lab, host))
        assert_healthy(lab)
        after = latencies(lab)
    finally:
        host.close()
    for i in NODES:
        print(
            f"n{i}: lookup median {usual[i] * 1000:.1f} ms before the attacks, "
            f"{after[i] * 1000:.1f} ms after"
        )
    assert steps.failures == [], "\n".join(steps.failures)
    assert max(after.values()) < LATENCY_BOUND
