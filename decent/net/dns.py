"""Pull mode's DNS: resolves Map-Server set names (RFC 9962 5.1) with dnspython.

The core asks for names (`node.pull.lookups_to_send()`, drained in every
flush of the shell) and takes the answers (`answer`, with the addresses of
the A and AAAA records and the smaller of their TTLs) or the failure
(`failed`, with the reason: NXDOMAIN, a timeout, no answer). Each name has
at most one question outstanding (the core asks again only after an answer
or a failure), so the tasks here are bounded by the Modulus Value. The
resolver's own cache is off: the core keeps every TTL itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from ipaddress import ip_address

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from decent.net.udp import NodeShell
from decent.wire import IPAddress

log = logging.getLogger("decent")
#: Seconds one name may take, all servers and both record types together.
LIFETIME = 5.0


class PullDns:
    """Pull mode's DNS: asks what the node asks, hands it the answers."""

    def __init__(self, shell: NodeShell, servers: Sequence[IPAddress] = ()) -> None:
        """`servers` are the name servers to ask ([decent] dns_servers);
        none: the system's (/etc/resolv.conf)."""
        self.shell = shell
        resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            resolver.nameservers = [str(s) for s in servers]
        resolver.lifetime = LIFETIME
        resolver.cache = None
        self.resolver = resolver
        self._tasks: set[asyncio.Task[None]] = set()
        shell.dns = self.pump

    def pump(self) -> None:
        """Start a resolution for every name the node asked for."""
        pull = self.shell.node.pull
        if pull is None:
            return
        for name in pull.lookups_to_send():
            task = self.shell.loop.create_task(self._resolve(name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        addresses: list[IPAddress] = []
        ttls: list[int] = []
        problems: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                # Absolute: no search domain is ever appended.
                answer = await self.resolver.resolve(
                    name + ".", rdtype, raise_on_no_answer=False, search=False
                )
            except dns.resolver.NXDOMAIN:
                problems.append("NXDOMAIN")
                break
            except dns.exception.Timeout:
                problems.append(f"no answer in {LIFETIME:g} s")
                continue
            except dns.exception.DNSException as exc:
                problems.append(str(exc) or type(exc).__name__)
                continue
            if answer.rrset is None:
                continue
            ttls.append(answer.rrset.ttl)
            addresses.extend(ip_address(r.address) for r in answer.rrset)
        pull = self.shell.node.pull
        assert pull is not None
        now = self.shell.loop.time()
        if addresses:
            pull.answer(name, addresses, float(min(ttls)), now)
        else:
            pull.failed(name, problems[0] if problems else "no A or AAAA record", now)
        self.shell.flush()

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
