"""The compose lab on a real Docker engine: build, up, converge, ping, partition."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.compose_lab import (
    NODES,
    ComposeLab,
    compose_variants,
    engine_unavailable,
    rloc,
)

pytestmark = pytest.mark.e2e

#: Generous bounds on waits, not performance thresholds (the benchmark
#: bench_compose.py measures convergence; about 2 s here).
HEALTHY = 120.0
CONVERGE = 60.0
#: The lab configs use ttl = 1 minute and register_interval = 20 s, so a
#: silent node is gone from its peers about a minute after it last registered,
#: and a returning one is seen within a period.
AGE_OUT = 60.0 + 20.0 + 60.0
RETURN = 20.0 + 40.0
#: Well under the TTL: a deregistration, not an age-out.
AT_ONCE = 15.0
#: CAP_NET_ADMIN (bit 12) and nothing else.
NET_ADMIN_ONLY = f"{1 << 12:016x}"


def _start(
    request: pytest.FixtureRequest,
    tag: str,
    *,
    multicast: bool = False,
    command: list[str] | None = None,
) -> Iterator[ComposeLab]:
    reason = engine_unavailable()
    if reason:
        pytest.skip(f"compose lab needs a Docker engine: {reason}")
    lab = ComposeLab(tag, multicast=multicast, command=command)
    lab.remove_stale_projects()
    conflict = lab.conflicts()
    if conflict:
        pytest.fail(f"cannot start the compose lab: {conflict}")
    failed_before = request.session.testsfailed
    try:
        lab.build()
        try:
            lab.up()
            lab.wait_until(lab.all_healthy, HEALTHY, "n1..n3 to report healthy", 0.5)
        except BaseException:
            print(lab.logs())
            raise
        yield lab
    finally:
        if request.session.testsfailed > failed_before:
            print(lab.logs())
        lab.down()
        left = lab.resources()
        lab.client.close()
        assert left == [], f"compose lab left behind: {left}"


class TestReplicate:
    """compose/docker-compose.yml as a newcomer runs it (head-end replication)."""

    @pytest.fixture(scope="class")
    @classmethod
    def lab(cls, request: pytest.FixtureRequest) -> Iterator[ComposeLab]:
        yield from _start(request, "replicate")

    def test_nodes_run_as_root_with_net_admin_only(self, lab: ComposeLab) -> None:
        for i in NODES:
            # The decent process itself (PID 1 is init: true's tini).
            code, out = lab.exec(
                i,
                "python3",
                "-c",
                "import glob\n"
                "for p in glob.glob('/proc/[0-9]*/cmdline'):\n"
                "    if b'decent\\x00run' in open(p, 'rb').read():\n"
                "        print(open(p[:-7] + 'status').read())",
            )
            assert code == 0, out
            status = dict(
                line.split(":", 1) for line in out.splitlines() if ":" in line
            )
            assert status["Uid"].split()[:2] == ["0", "0"], out
            assert status["CapEff"].strip() == NET_ADMIN_ONLY, out
            assert status["CapBnd"].strip() == NET_ADMIN_ONLY, out
            code, out = lab.exec(i, "cat", "/proc/1/cmdline")
            assert "docker-init" in out, out
            code, out = lab.exec(i, "test", "-c", "/dev/net/tun")
            assert code == 0, f"n{i} has no /dev/net/tun"

    def test_every_node_holds_every_registration(self, lab: ComposeLab) -> None:
        want = lab.expected()
        lab.wait_until(lab.agree(), CONVERGE, "n1..n3 to agree")
        for i in NODES:
            # Through the host-published port 127.0.0.1:808i.
            view = lab.view(i)
            assert view.eids == {"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"}, i
            assert view.names == {"n1", "n2", "n3"}, i
            assert view.members == {rloc(j) for j in NODES}, i
            assert view == want, i
            node = lab.api(i, "/api/node")
            assert node["name"] == f"n{i}"
            assert node["mode"] == "replicate"
            assert lab.api(i, "/healthz")["ok"] is True

    def test_ping_crosses_the_overlay(self, lab: ComposeLab) -> None:
        lab.wait_until(lab.agree(), CONVERGE, "n1..n3 to agree")
        for eid in ("192.0.2.2", "192.0.2.3"):
            code, out = lab.exec(
                1, "ping", "-c", "3", "-W", "2", "-I", "192.0.2.1", eid
            )
            assert code == 0, f"ping 192.0.2.1 -> {eid} failed:\n{out}"
            assert f"from {eid}" in out, out
        # The README's command, as a person types it (compose exec, no -I).
        out = lab.compose("exec", "-T", "n1", "ping", "-c", "3", "-W", "2", "192.0.2.2")
        assert "from 192.0.2.2" in out, out

    def test_stopped_node_deregisters_and_is_dropped_at_once(
        self, lab: ComposeLab
    ) -> None:
        lab.wait_until(lab.agree(), CONVERGE, "n1..n3 to agree")
        # `stop` sends SIGTERM; tini (init: true) passes it to decent, which
        # deregisters with TTL 0. Without that, the peers would keep n3 for
        # its whole TTL (60 s), far beyond this wait.
        lab.compose("stop", "n3")
        lab.wait_until(lab.agree((1, 2)), AT_ONCE, "n1, n2 to drop n3", 0.2)
        lab.compose("start", "n3")
        lab.wait_until(lab.agree(), CONVERGE, "n3 to be back everywhere", 0.2)

    def test_partitioned_node_ages_out_and_returns(self, lab: ComposeLab) -> None:
        lab.wait_until(lab.agree(), CONVERGE, "n1..n3 to agree")
        network, n3 = lab.network(), lab.container(3)
        network.disconnect(n3)
        try:
            # n3 cannot deregister: its peers drop it only when its
            # registrations and its membership run out (ttl).
            lab.wait_until(lab.agree((1, 2)), AGE_OUT, "n1, n2 to age out n3", 0.5)
            for i in (1, 2):
                assert lab.view(i) == lab.expected((1, 2)), i
        finally:
            # Back on its static RLOC (a plain connect would pick a new one).
            network.connect(n3, ipv4_address=rloc(3))
        lab.wait_until(lab.agree(), RETURN, "n3 to return everywhere", 0.5)
        for i in NODES:
            assert lab.view(i) == lab.expected(), i

    def test_fourth_node_joins_with_one_seed(self, lab: ComposeLab) -> None:
        lab.wait_until(lab.agree(), CONVERGE, "n1..n3 to agree")
        # The README's recipe: compose/docker-compose.n4.yml and
        # compose/config/n4.toml, which names n1 as its only seed.
        lab.compose("up", "-d", "--no-build", "n4", also=("docker-compose.n4.yml",))
        four = (1, 2, 3, 4)
        lab.wait_until(lab.agree(four), CONVERGE, "n4 to be known everywhere", 0.2)
        for i in four:
            assert lab.view(i) == lab.expected(four), i
        assert lab.view(4).members == {rloc(i) for i in four}


class TestMulticast:
    """compose/docker-compose.multicast.yml: native multicast, no seeds."""

    @pytest.fixture(scope="class")
    @classmethod
    def lab(cls, request: pytest.FixtureRequest) -> Iterator[ComposeLab]:
        yield from _start(request, "multicast", multicast=True)

    def test_nodes_find_each_other_through_the_group(self, lab: ComposeLab) -> None:
        lab.wait_until(lab.agree(), CONVERGE, "n1..n3 to agree")
        for i in NODES:
            assert lab.view(i) == lab.expected(), i
            assert lab.api(i, "/api/node")["mode"] == "multicast"


class TestEveryComposeImplementation:
    """The same files as a user with either Compose runs them: v2's
    `docker compose` and Debian's docker-compose 1.29 (.ci/run installs
    both). The classes above use v2 when present; this one runs the
    newcomer's path (build, up, converge, ping, down) with each."""

    @pytest.fixture(scope="class", params=["v2", "v1"])
    @classmethod
    def lab(cls, request: pytest.FixtureRequest) -> Iterator[ComposeLab]:
        command = compose_variants().get(request.param)
        if command is None:
            pytest.skip(f"Compose {request.param} is not installed here")
        yield from _start(request, f"impl-{request.param}", command=command)

    def test_converges_and_carries_traffic(self, lab: ComposeLab) -> None:
        lab.wait_until(lab.agree(), CONVERGE, "n1..n3 to agree")
        for i in NODES:
            assert lab.view(i) == lab.expected(), i
        out = lab.compose("exec", "-T", "n1", "ping", "-c", "2", "-W", "2", "192.0.2.3")
        assert "from 192.0.2.3" in out, out
