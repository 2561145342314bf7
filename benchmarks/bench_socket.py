"""Datagram receive rate: asyncio-dgram against the shell's add_reader drain loop.

The running-node issue asks for asyncio-dgram on the control plane where it
meets the node's figures (at least 30k Map-Requests/s) and a bounded drain
loop otherwise; decent/net/udp.py chose the drain loop. This measures why, in
one run: a sender process floods 127.0.0.1 with 100-byte datagrams (the size
of an ECM'd Map-Request) for `--seconds`, and the receiver counts what it
gets, first with `await stream.recv()` (asyncio-dgram), then with
`loop.add_reader` draining up to DRAIN datagrams per wake-up, each on the
default asyncio loop and, if installed, uvloop.

    python benchmarks/bench_socket.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncio_dgram

from decent.net.udp import DRAIN

PAYLOAD = bytes(100)
TARGET = 30_000


def flood(port: int, seconds: float, ready: Any) -> None:
    """The sender: as fast as one process can, for `seconds`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ready.wait()
    end = time.perf_counter() + seconds
    dest = ("127.0.0.1", port)
    while time.perf_counter() < end:
        for _ in range(256):
            # Refused once the receiver has closed: the run is over anyway.
            with contextlib.suppress(OSError):
                sock.sendto(PAYLOAD, dest)
    sock.close()


async def with_dgram(sock: socket.socket, seconds: float) -> int:
    stream = await asyncio_dgram.from_socket(sock)
    got = 0

    async def count() -> None:
        nonlocal got
        while True:
            await stream.recv()
            got += 1

    task = asyncio.create_task(count())
    await asyncio.sleep(seconds)
    task.cancel()
    stream.close()
    return got


async def with_drain(sock: socket.socket, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    got = 0
    recv = sock.recv

    def drain() -> None:
        nonlocal got
        for _ in range(DRAIN):
            try:
                recv(2048)
            except BlockingIOError:
                return
            got += 1

    loop.add_reader(sock.fileno(), drain)
    await asyncio.sleep(seconds)
    loop.remove_reader(sock.fileno())
    sock.close()
    return got


Receiver = Callable[[socket.socket, float], Coroutine[Any, Any, int]]


def measure(
    receiver: Receiver, run: Callable[..., int], seconds: float
) -> tuple[float, float]:
    """(datagrams received per second, receiver CPU microseconds each)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    ready = multiprocessing.Event()
    sender = multiprocessing.Process(
        target=flood, args=(sock.getsockname()[1], seconds, ready)
    )
    sender.start()

    async def go() -> int:
        ready.set()
        return await receiver(sock, seconds)

    cpu = time.process_time()  # this process only: the sender is another
    got = run(go())
    cpu = time.process_time() - cpu
    sender.join()
    return got / seconds, cpu / max(got, 1) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    loops: dict[str, Callable[..., int]] = {"asyncio": asyncio.run}
    try:
        import uvloop

        loops["uvloop"] = uvloop.run
    except ImportError:
        pass
    print(
        f"# 100-byte datagrams on 127.0.0.1, {args.seconds:g} s each, one sender "
        f"process; drain loop = add_reader, up to {DRAIN} per wake-up.\n"
        f"# At {TARGET:,} Map-Requests/s a node has {1e6 / TARGET:.0f} us of one "
        "core per request for receiving, answering and sending; the receive "
        "cost below comes out of that budget."
    )
    for name, run in loops.items():
        dgram, dgram_us = measure(with_dgram, run, args.seconds)
        drain, drain_us = measure(with_drain, run, args.seconds)
        print(f"{name}:")
        for label, rate, us in (
            ("asyncio-dgram recv()", dgram, dgram_us),
            ("drain loop", drain, drain_us),
        ):
            print(
                f"  {label:22s} {rate:10,.0f} datagrams/s received, "
                f"{us:5.1f} us receiver CPU each "
                f"({us / (1e6 / TARGET):.0%} of the per-request budget)"
            )
        print(
            f"  receive cost asyncio-dgram / drain loop: "
            f"{dgram_us / max(drain_us, 1e-9):.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
