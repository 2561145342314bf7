"""The classic-BPF programs the lab's tc filters run (multicast drop, loss)."""

from __future__ import annotations

import socket
from typing import Final

_TC_SHOT: Final = 2
_TC_UNSPEC: Final = 0xFFFFFFFF  # let the next filter decide
_SKF_AD_RANDOM: Final = (-0x1000 + 56) & 0xFFFFFFFF


def _cbpf(program: list[tuple[int, int, int, int]]) -> str:
    """tc's classic-BPF `bytecode` text: count, then `code jt jf k` each."""
    ops = ",".join(f"{c} {jt} {jf} {k}" for c, jt, jf, k in program)
    return f"{len(program)},{ops}"


# Classic BPF opcodes (linux/filter.h). tc's `bpf da` runs them on the frame
# from its Ethernet header; the return value is the tc action.
_LDH_ABS, _LDB_ABS, _LD_ABS = 0x28, 0x30, 0x20
_JEQ_K, _JGE_K, _AND_K, _RET_K = 0x15, 0x35, 0x54, 0x06

#: Drop IPv4 frames to 224.0.0.0/4; leave the rest to the next filter.
MULTICAST_DROP: Final = _cbpf(
    [
        (_LDH_ABS, 0, 0, 12),  # ethertype
        (_JEQ_K, 0, 4, 0x0800),
        (_LDB_ABS, 0, 0, 14 + 16),  # first byte of the IPv4 destination
        (_AND_K, 0, 0, 0xF0),
        (_JEQ_K, 0, 1, 0xE0),
        (_RET_K, 0, 0, _TC_SHOT),
        (_RET_K, 0, 0, _TC_UNSPEC),
    ]
)


def loss_program(percent: float) -> str:
    """Drop this share of IPv4 UDP frames at random (cBPF `ld rand`).

    Only UDP: the lab's control traffic is UDP, and the web API the tests
    poll (TCP) stays unharmed.
    """
    threshold = min(int(percent / 100.0 * 2**32), 0xFFFFFFFF)
    return _cbpf(
        [
            (_LDH_ABS, 0, 0, 12),
            (_JEQ_K, 0, 5, 0x0800),
            (_LDB_ABS, 0, 0, 14 + 9),  # IPv4 protocol
            (_JEQ_K, 0, 3, socket.IPPROTO_UDP),
            (_LD_ABS, 0, 0, _SKF_AD_RANDOM),
            (_JGE_K, 1, 0, threshold),
            (_RET_K, 0, 0, _TC_SHOT),
            (_RET_K, 0, 0, _TC_UNSPEC),
        ]
    )
