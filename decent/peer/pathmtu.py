"""Stateless path MTU (RFC 9300 7.1): packets that will not fit, and ICMP for them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Final

from decent.peer import counters as C
from decent.peer.ratelimit import Bucket
from decent.wire.icmp import is_icmp_error, too_big

_DF: Final = 0x40


class PathMtu:
    """The largest inner packet per outer family, and the rate-limited
    ICMP errors (RFC 1812 4.3.2.8) for those that exceed it."""

    __slots__ = ("_counters", "_icmp", "_to_tun", "limit")

    def __init__(
        self,
        limit: dict[int, int],
        icmp_rate: float,
        counters: Counter[str],
        to_tun: Callable[[bytes], None],
    ) -> None:
        """`to_tun` takes each ICMP error, for the TUN."""
        self.limit = limit
        self._icmp = Bucket(icmp_rate, icmp_rate, 0.0)
        self._counters = counters
        self._to_tun = to_tun

    def refuse(
        self, buf: bytearray, at: int, n: int, version: int, family: int, now: float
    ) -> bool:
        """An IPv6 packet, or IPv4 with DF set, in buf[at:at + n] that will
        not fit is dropped (True) and its sender told the size that fits.
        IPv4 without DF goes on (False): the kernel fragments the outer one."""
        if version == 4 and not buf[at + 6] & _DF:
            self._counters[C.DATAPLANE_OUTER_FRAGMENTED] += 1
            return False
        self._counters[C.DROP_TOO_BIG] += 1
        packet = bytes(buf[at : at + n])
        if is_icmp_error(packet):
            return True
        if not self._icmp.take(now):
            self._counters[C.DATAPLANE_ICMP_RATE_LIMITED] += 1
            return True
        # From the destination the packet was for: an error "from" one of
        # our own addresses, arriving on the TUN, is a martian to the kernel.
        source = packet[16:20] if version == 4 else packet[24:40]
        self._to_tun(too_big(packet, source, self.limit[family]))
        self._counters[C.DATAPLANE_ICMP_TOO_BIG] += 1
        return True
