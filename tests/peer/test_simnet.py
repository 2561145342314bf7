"""Tests for the simulated network: virtual time, link effects and guards."""

from __future__ import annotations

import time

import pytest

from decent.wire import MapRegister, decode
from tests.peer.simnet import Addr, SimNet, addr

A, B, C = addr("10.0.0.1"), addr("10.0.0.2"), addr("10.0.0.3")
A6 = addr("2001:db8::1")
NOWHERE = addr("10.9.9.9")


class Sink:
    """Records every datagram; sends what a test queues in ``out``."""

    def __init__(self) -> None:
        self.got: list[tuple[float, bytes, Addr, Addr | None]] = []
        self.out: list[tuple[bytes, Addr]] = []

    def receive_datagram(
        self, data: bytes, addr: Addr, now: float, local: Addr | None = None
    ) -> None:
        self.got.append((now, data, addr, local))

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        raise AssertionError("no timer was set")

    def payloads(self) -> list[bytes]:
        return [data for _, data, _, _ in self.got]


class Echo(Sink):
    """Replies to each datagram with the same payload."""

    def receive_datagram(
        self, data: bytes, addr: Addr, now: float, local: Addr | None = None
    ) -> None:
        super().receive_datagram(data, addr, now, local)
        self.out.append((data, addr))


class Ticker(Sink):
    """Sends a datagram to ``peer`` every ``period`` seconds."""

    def __init__(self, peer: Addr, period: float = 10.0, start: float = 0.0) -> None:
        super().__init__()
        self.peer, self.period = peer, period
        self.deadline = start + period
        self.ticks: list[float] = []

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.ticks.append(now)
        self.out.append((b"tick %d" % len(self.ticks), self.peer))
        self.deadline += self.period


class Registrar(Ticker):
    """Sends an (empty) Map-Register every period, nonce = tick number."""

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        msg = MapRegister(nonce=len(self.ticks), records=())
        self.out[-1] = (msg.encode(), self.peer)


class Stuck(Sink):
    """A broken node: handle_timer never moves its deadline."""

    def get_timer(self) -> float | None:
        return 5.0

    def handle_timer(self, now: float) -> None:
        pass


def burst(net: SimNet, n: int, dst: Addr = B) -> tuple[Sink, Sink]:
    """Attach a sender at A and a sink at ``dst``; queue ``n`` numbered datagrams."""
    src, sink = Sink(), Sink()
    net.add(src, A)
    net.add(sink, dst)
    src.out = [(b"%d" % i, dst) for i in range(n)]
    return src, sink


def test_delivery_takes_the_one_way_delay():
    net = SimNet(delay=0.25)
    client, echo = Sink(), Echo()
    net.add(client, A)
    net.add(echo, B)
    client.out.append((b"ping", B))
    net.run(1.0)
    assert echo.got == [(0.25, b"ping", A, B)]
    assert client.got == [(0.5, b"ping", B, A)]
    assert (net.now, net.sent, net.delivered, net.in_flight) == (1.0, 2, 2, 0)


def test_source_is_first_address_of_the_destination_family():
    net = SimNet()
    multi, v4, v6 = Sink(), Sink(), Sink()
    data_port = (A[0], 4341)
    net.add(multi, A, data_port, A6)
    net.add(v4, B)
    net.add(v6, addr("2001:db8::2"))
    multi.out = [(b"4", B), (b"6", addr("2001:db8::2"))]
    net.settle()
    assert v4.got[0][2:] == (A, B)
    assert v6.got[0][2] == A6


def test_source_override_and_local_address():
    net = SimNet()
    multi, sink = Sink(), Echo()
    data_port = (A[0], 4341)
    net.add(multi, A, data_port, source=data_port)
    net.add(sink, B)
    multi.out.append((b"x", B))
    net.settle()
    assert sink.got[0][2] == data_port
    assert multi.got[0][3] == data_port  # the reply arrives on the port it came from


def test_ticker_runs_a_day_of_virtual_time_in_well_under_a_second():
    net = SimNet()
    sink = Sink()
    ticker = Ticker(B)
    net.add(ticker, A)
    net.add(sink, B)
    started = time.perf_counter()
    net.run(24 * 3600.0)
    assert time.perf_counter() - started < 1.0
    assert len(ticker.ticks) == 8640
    assert ticker.ticks[:3] == [10.0, 20.0, 30.0]
    assert ticker.ticks[-1] == 86400.0
    assert [t for t, _, _, _ in sink.got[:2]] == [10.001, 20.001]
    assert len(sink.got) == 8639  # the last tick is still in flight
    assert net.in_flight == 1
    assert ticker.get_timer() == 86410.0


def test_advance_and_settle_leave_pending_timers_alone():
    net = SimNet()
    ticker = Ticker(B)
    net.add(ticker, A)
    net.add(Sink(), B)
    net.advance(15.0)
    assert ticker.ticks == [10.0]
    net.settle()  # nothing in flight: time does not move to the next tick
    assert net.now == 15.0
    net.advance(5.0)
    net.settle()
    assert (ticker.ticks, net.now) == ([10.0, 20.0], 20.001)


def test_loss_rate_matches_configuration_and_is_deterministic():
    def lost(seed: int) -> tuple[int, list[bytes]]:
        net = SimNet(seed=seed, loss=0.2)
        _, sink = burst(net, 10_000)
        net.settle()
        assert net.delivered + net.lost == net.sent == 10_000
        return net.lost, sink.payloads()

    count, got = lost(1)
    assert 1800 < count < 2200
    assert lost(1) == (count, got)
    assert lost(2)[1] != got


def test_targeted_drop_predicate():
    net = SimNet(drop=lambda data, src, dst: data.startswith(b"1"))
    _, sink = burst(net, 20)
    net.settle()
    assert sink.payloads() == [b"%d" % i for i in [0, *range(2, 10)]]
    assert net.lost == 11


def test_duplication():
    net = SimNet(duplicate=0.5)
    _, sink = burst(net, 1000)
    net.settle()
    assert 400 < net.duplicated < 600
    assert len(sink.got) == net.delivered == 1000 + net.duplicated
    assert set(sink.payloads()) == {b"%d" % i for i in range(1000)}


def test_fifo_without_jitter_or_reorder():
    net = SimNet()
    _, sink = burst(net, 100)
    net.settle()
    assert sink.payloads() == [b"%d" % i for i in range(100)]


def test_reordering_reorders():
    net = SimNet(reorder=0.3)
    _, sink = burst(net, 100)
    net.settle()
    got = [int(p) for p in sink.payloads()]
    assert sorted(got) == list(range(100))
    assert got != sorted(got)
    assert max(t for t, _, _, _ in sink.got) > 0.01


def test_partition_and_heal():
    net = SimNet()
    a, b, c = Sink(), Sink(), Sink()
    net.add(a, A)
    net.add(b, B)
    net.add(c, C)

    def exchange() -> None:
        a.out = [(b"ab", B), (b"ac", C)]
        b.out = [(b"ba", A)]
        net.settle()

    net.partition(A[0], B[0])
    net.partition(A[0], C[0])
    exchange()
    assert (a.got, b.got, c.got, net.lost) == ([], [], [], 3)
    net.heal(A[0], C[0])
    exchange()
    assert (a.payloads(), b.payloads(), c.payloads()) == ([], [], [b"ac"])
    net.heal()
    exchange()
    assert (a.payloads(), b.payloads()) == ([b"ba"], [b"ab"])


def test_undeliverable_datagrams_are_counted():
    net = SimNet()
    sender, gone = Sink(), Sink()
    net.add(sender, A)
    net.add(gone, B)
    sender.out = [(b"void", NOWHERE), (b"v6", A6), (b"late", B)]
    net.flush()
    net.remove(gone)
    net.settle()
    assert (net.sent, net.delivered, net.undeliverable) == (3, 0, 3)
    assert gone.got == []


def test_trace_records_what_went_on_the_wire():
    net = SimNet(record=True, trace_limit=5, loss=0.5, seed=3)
    net.add(Registrar(B, period=60.0), A)
    net.add(Sink(), B)
    net.run(7 * 60.0)
    assert net.sent == 7
    assert 0 < net.lost < 7  # lost datagrams were still sent, so they are traced
    assert [(t, src, dst) for t, src, dst, _ in net.trace] == [
        (60.0 * n, A, B) for n in range(1, 6)
    ]
    regs = [decode(data) for _, _, _, data in net.trace]
    assert [m.nonce for m in regs if isinstance(m, MapRegister)] == [1, 2, 3, 4, 5]
    net.trace.clear()
    net.advance(60.0)
    assert len(net.trace) == 1


def test_deadline_in_the_past_fires_at_now():
    net = SimNet()
    net.run(50.0)
    ticker = Ticker(B)  # deadlines 10, 20, ... are already due
    net.add(ticker, A)
    net.add(Sink(), B)
    net.run(55.0)
    assert ticker.ticks == [50.0] * 5
    assert ticker.get_timer() == 60.0


def test_timer_that_is_never_consumed_is_reported():
    net = SimNet()
    net.add(Stuck(), A)
    with pytest.raises(AssertionError, match="deadline not consumed"):
        net.run(10.0)


def test_step_cap_catches_a_zero_delay_ping_pong():
    net = SimNet(delay=0.0, max_steps=1000)
    a = Echo()
    net.add(a, A)
    net.add(Echo(), B)
    a.out.append((b"ball", B))
    with pytest.raises(AssertionError, match="livelock"):
        net.run(1.0)
    assert net.now == 0.0


def test_settle_gives_up_on_endless_traffic():
    net = SimNet(delay=0.25)
    a = Echo()
    net.add(a, A)
    net.add(Echo(), B)
    a.out.append((b"ball", B))
    with pytest.raises(AssertionError, match="did not settle"):
        net.settle(max_seconds=1.0)
    assert (net.delivered, net.in_flight, net.now) == (4, 1, 1.0)


def test_misuse_is_rejected():
    net = SimNet()
    net.add(Sink(), A)
    with pytest.raises(ValueError, match="free addresses"):
        net.add(Sink(), A)
    with pytest.raises(ValueError, match="free addresses"):
        net.add(Sink())
    net.advance(1.0)
    with pytest.raises(ValueError, match="back in time"):
        net.run(0.5)


def test_jitter_spreads_arrivals_within_bounds():
    net = SimNet(delay=0.1, jitter=0.05)
    _, sink = burst(net, 200)
    net.settle()
    times = [t for t, _, _, _ in sink.got]
    assert all(0.1 <= t <= 0.15 for t in times)
    assert len(set(times)) == 200
