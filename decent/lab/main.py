"""`decent lab`: build a lab, show its pages, run until Ctrl-C, clean up."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from decent.lab.base import _Lab
from decent.lab.common import (
    STATE_DIR,
    WEB_PORT,
    LabError,
    lab_eid,
    netns_unavailable,
)
from decent.lab.loopback import LoopbackLab
from decent.lab.netns import NetnsLab


def join_hint(lab: _Lab) -> str:
    """A ready `decent join` command for one more node, on this host: an
    invite of the lab's mesh authority for n<k>, EID 192.0.2.k/32, seeded
    with every node of the lab. Its data plane routes only the lab's EIDs,
    all in TEST-NET-1 (lab_eid), into the overlay: none a real host uses."""
    k = max(lab.nodes) + 1
    name = f"n{k}"
    eid = f"{lab_eid(k)}/32"
    seeds = [str(lab.node(i).rloc) for i in sorted(lab.nodes)]
    token = lab.invite(name, [eid], seeds)
    # This host's address on the lab's network: the bridge's host veth for
    # namespaces, the next loopback address otherwise.
    rloc = lab.host_address if isinstance(lab, NetnsLab) else lab._rloc(k)
    where = lab.workdir / f"{name}-joined"
    return (
        f"join {name} (EID {eid}) from this host, as root for its data plane "
        f"(it routes only the lab's EIDs, 192.0.2.0/24, into the lab):\n"
        f"  decent join {token} --rloc {rloc} --listen 127.0.0.1:{WEB_PORT + k} "
        f"--config {where / 'node.toml'} --state-dir {where / 'state'}"
    )


#: What `decent lab --help`, the man page and `decent help` say it does.
DESCRIPTION = (
    "Run a LISP-Decent lab: n nodes in network namespaces (as root) or on "
    "127.0.0.x, until Ctrl-C."
)


def add_lab_arguments(parser: argparse.ArgumentParser) -> None:
    """The lab's options, on its own parser and on `decent`'s `lab`
    subcommand (which the man page and shell completion are made from)."""
    parser.add_argument("--nodes", type=int, default=3, help="how many (default 3)")
    parser.add_argument(
        "--mode",
        choices=("replicate", "multicast"),
        default="replicate",
        help="how members reach the group: head-end replication over unicast, "
        "or underlay multicast (namespaces only; default replicate)",
    )
    parser.add_argument(
        "--prefix",
        default="decent",
        help="name prefix, 1-13 of a-z 0-9 -: namespaces <prefix>-br and "
        "<prefix>-n<i>, host veth <prefix>-h (default decent). The lab removes "
        f"only what it made, as it records in {STATE_DIR}/<prefix>.json: what a "
        "killed lab of the prefix left behind is removed first, a namespace "
        "of the prefix made by anyone else never",
    )
    parser.add_argument(
        "--subnet",
        default="198.18.43.0/24",
        help="IPv4 /24 or larger for the lab (default 198.18.43.0/24): node i "
        "is .1<i>, this host .254; no interface here may be on it already",
    )
    parser.add_argument(
        "--ttl", type=int, default=3, help="registration TTL, minutes (default 3)"
    )
    parser.add_argument(
        "--register-interval",
        type=float,
        default=60.0,
        help="seconds between a node's Map-Registers (default 60)",
    )
    parser.add_argument(
        "--loopback",
        action="store_true",
        help="use 127.0.0.1<i> (web 127.0.0.1:808<i>) even as root",
    )
    parser.add_argument(
        "--dataplane",
        action="store_true",
        help="run the xTR data plane (namespaces only): EIDs 192.0.2.i and "
        "2001:db8::i (documentation ranges) on a TUN; try `ip netns exec "
        "<prefix>-n1 ping 192.0.2.2`",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the lab's files when it stops (each node's config and "
        "node.log, the mesh authority) and print where they are",
    )
    parser.add_argument(
        "--no-trust",
        action="store_true",
        help="no node identities: the group key alone admits members (by "
        "default the lab is a mesh whose authority invites every node, and it "
        "prints a `decent join` command for one more)",
    )


def lab_main(argv: list[str] | None = None) -> int:
    """`decent lab`: build a lab, show its pages, run until Ctrl-C, clean up."""
    parser = argparse.ArgumentParser(prog="decent lab", description=DESCRIPTION)
    add_lab_arguments(parser)
    args = parser.parse_args(argv)
    lab: _Lab
    reason = "--loopback" if args.loopback else netns_unavailable()
    try:
        if reason is None:
            lab = NetnsLab(
                args.prefix,
                args.subnet,
                nodes=args.nodes,
                mode=args.mode,
                ttl_minutes=args.ttl,
                register_interval=args.register_interval,
                dataplane=args.dataplane,
                trust=not args.no_trust,
            )
        else:
            if args.dataplane:
                raise LabError(
                    f"--dataplane needs network namespaces, so root ({reason})"
                )
            lab = LoopbackLab(
                nodes=args.nodes,
                mode=args.mode,
                ttl_minutes=args.ttl,
                register_interval=args.register_interval,
                trust=not args.no_trust,
            )
    except (LabError, ValueError) as exc:
        print(f"decent lab: {exc}", file=sys.stderr)
        return 2
    lab.keep = args.keep
    lab.progress = _progress

    def _interrupt(signum: int, frame: object) -> None:
        for sig in previous:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    # SIGTERM, and SIGINT even when started in the background (where it is
    # inherited as ignored), unwind through `with lab`, which removes it all.
    previous = {
        sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        if isinstance(lab, LoopbackLab):
            last = lab._rloc(args.nodes)
            why = "" if reason == "--loopback" else f"{reason}: "
            _progress(
                f"{why}running the nodes as plain processes on 127.0.0.11-{last} "
                "instead of in network namespaces (no multicast mode, loss or "
                "capture; run as root for those)"
            )
        with lab:
            lab.start_all()
            try:
                took = lab.wait_converged(30.0, _progress)
                state = f"converged in {took:.1f} s"
            except TimeoutError:
                state = "not converged after 30 s; see the logs"
            print(f"{len(lab.nodes)} nodes, mode {lab.mode}, {state}:")
            for i in sorted(lab.nodes):
                n = lab.node(i)
                print(f"  {n.name}  rloc {n.rloc}  {n.url}/  log {lab.log_path(i)}")
            if isinstance(lab, NetnsLab) and lab.dataplane:
                print(f"  try: ip netns exec {lab.prefix}-n1 ping {lab_eid(2)}")
            if lab.trust:
                try:
                    print(join_hint(lab))
                except LabError as exc:  # the lab itself runs on
                    print(f"no join command for a new node: {exc}")
            print("Ctrl-C stops every node and removes the lab.", flush=True)
            alive = set(lab.running())
            while True:
                time.sleep(0.5)
                for i in sorted(alive - set(lab.running())):
                    print(f"{lab.node(i).name} exited; its log:\n{lab.log_tail(i)}")
                    alive.discard(i)
    except KeyboardInterrupt:
        pass
    except LabError as exc:
        print(f"decent lab: {exc}", file=sys.stderr)
        _kept(lab)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _kept(lab)
    print("lab removed", flush=True)
    return 0


def _progress(text: str) -> None:
    print(text, flush=True)


def _kept(lab: _Lab) -> None:
    """Say where --keep kept the lab's files (if it made any)."""
    if lab.keep and lab._workdir is not None:
        logs = ", ".join(str(lab.log_path(i)) for i in sorted(lab.nodes)[:2])
        more = ", ..." if len(lab.nodes) > 2 else ""
        print(
            f"kept the lab's files in {lab.workdir}: each node's config and "
            f"log in n<i>/ ({logs}{more})",
            flush=True,
        )
