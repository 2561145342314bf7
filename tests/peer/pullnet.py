"""Pull-mode nodes on the simulated network, with a simulated DNS they ask."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from decent.peer.config import PullConfig
from decent.peer.mapping.push_config import decent_node_config
from decent.wire import Eid, IPAddress
from tests.peer.conftest import KEY, Traced
from tests.peer.simnet import SimNet

SUFFIX = "ms.decent.test"


@dataclass
class SimDns:
    """The zone: name -> addresses, one TTL; answers take `delay` seconds.
    A name in `failing` fails (SERVFAIL, timeout) with that reason."""

    records: dict[str, list[IPAddress]]
    ttl: float = 60.0
    delay: float = 0.005
    failing: dict[str, str] = field(default_factory=dict)
    asked: list[tuple[float, str]] = field(default_factory=list)


class PullNode(Traced):
    """A Traced node whose shell resolves pull mode's names in `dns`."""

    def __init__(self, *args: Any, dns: SimDns, **kw: Any) -> None:
        self.dns = dns
        self._answers: list[tuple[float, str]] = []
        super().__init__(*args, **kw)

    def _collect(self, now: float) -> None:
        super()._collect(now)
        assert self.pull is not None
        for name in self.pull.lookups_to_send():
            self.dns.asked.append((now, name))
            self._answers.append((now + self.dns.delay, name))

    def get_timer(self) -> float | None:
        own = super().get_timer()
        due = min((t for t, _ in self._answers), default=None)
        if own is None or (due is not None and due < own):
            return due
        return own

    def handle_timer(self, now: float) -> None:
        due = [a for a in self._answers if a[0] <= now]
        self._answers = [a for a in self._answers if a[0] > now]
        assert self.pull is not None
        for _, name in due:
            dns = self.dns
            if name in dns.failing:
                self.pull.failed(name, dns.failing[name], now)
            else:
                self.pull.answer(name, dns.records.get(name, []), dns.ttl, now)
        super().handle_timer(now)


def rloc(i: int) -> IPv4Address:
    return IPv4Address(f"198.18.50.{10 + i}")


def host_eid(i: int, j: int = 0) -> Eid:
    return Eid.prefix(f"10.{i}.0.{j}/32")


def pull_mesh(
    n: int = 6,
    modulus: int = 3,
    eids: int = 2,
    *,
    dns: SimDns | None = None,
    start: int | None = None,
    **pull: Any,
) -> tuple[SimNet, list[PullNode], SimDns]:
    """n pull-mode nodes (rloc(1)..rloc(n)), `eids` host EIDs each; by
    default set i is nodes 2i+1 and 2i+2 (three sets of two for n = 6)."""
    if dns is None:
        dns = SimDns(
            {
                f"{k}.{SUFFIX}": [rloc(2 * k + 1), rloc(2 * k + 2)]
                for k in range(modulus)
            }
        )
    net = SimNet(seed=9, record=True)
    nodes = [
        add_node(net, dns, i, modulus, eids, **pull) for i in range(1, (start or n) + 1)
    ]
    return net, nodes, dns


def add_node(
    net: SimNet, dns: SimDns, i: int, modulus: int = 3, eids: int = 2, **pull: Any
) -> PullNode:
    ip = rloc(i)
    cfg = decent_node_config(
        name=f"n{i}",
        rlocs=(ip,),
        group=None,
        key=KEY,
        xtr_id=i,
        eids=tuple(host_eid(i, j) for j in range(eids)),
        resolve_in_process=True,
        pull=PullConfig(modulus, SUFFIX, **pull),
    )
    node = PullNode(cfg, dns=dns, now=net.now)
    net.add(node, (ip, 4342), (ip, 4341), source=(ip, 4342))
    return node
