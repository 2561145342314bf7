"""LoopbackLab: the lab without root, every node on 127.0.0.1<i>."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from decent.lab.base import LabNode, _Lab
from decent.lab.common import WEB_PORT, LabError, lab_eid


class LoopbackLab(_Lab):
    """The same lab without root: node i on 127.0.0.1<i>, its web page on
    127.0.0.1:808<i>. No namespaces, so no loss, multicast or capture."""

    def __init__(
        self,
        nodes: int = 3,
        mode: str = "replicate",
        ttl_minutes: int = 1,
        register_interval: float = 60.0,
        workdir: Path | None = None,
        trust: bool = False,
    ) -> None:
        if mode != "replicate":
            raise LabError(
                "a loopback lab has no multicast underlay; use mode replicate, "
                "or run as root for a namespace lab"
            )
        super().__init__(
            nodes=nodes,
            mode=mode,
            ttl_minutes=ttl_minutes,
            register_interval=register_interval,
            workdir=workdir,
            trust=trust,
        )

    def _rloc(self, i: int) -> IPv4Address:
        return IPv4Address(f"127.0.0.1{i}")

    def _node(self, i: int, seeds: list[IPv4Address]) -> LabNode:
        return LabNode(
            index=i,
            rloc=self._rloc(i),
            web_host="127.0.0.1",
            web_port=WEB_PORT + i,
            namespace=None,
            seeds=seeds,
            eids=[f"{lab_eid(i)}/32"],
            register_interval=self.register_interval,
        )

    def _command(self, node: LabNode, argv: list[str]) -> list[str]:
        return argv

    def create(self) -> None:
        self._declare_nodes()

    def __enter__(self) -> LoopbackLab:
        super().__enter__()
        return self
