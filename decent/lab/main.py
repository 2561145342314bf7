"""`decent lab`: build a lab, show its pages, run until Ctrl-C, clean up."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from decent.lab.base import _Lab
from decent.lab.common import WEB_PORT, LabError, netns_unavailable
from decent.lab.loopback import LoopbackLab
from decent.lab.netns import NetnsLab


def join_hint(lab: _Lab) -> str:
    """A ready `decent join` command for one more node, on this host: an
    invite of the lab's mesh authority for n<k>, EID k.k.k.k/32, seeded
    with every node of the lab."""
    k = max(lab.nodes) + 1
    name = f"n{k}"
    seeds = [str(lab.node(i).rloc) for i in sorted(lab.nodes)]
    token = lab.invite(name, [f"{k}.{k}.{k}.{k}/32"], seeds)
    # This host's address on the lab's network: the bridge's host veth for
    # namespaces, the next loopback address otherwise.
    rloc = lab.host_address if isinstance(lab, NetnsLab) else lab._rloc(k)
    where = lab.workdir / f"{name}-joined"
    return (
        f"join {name} (EID {k}.{k}.{k}.{k}/32) from this host, as root for "
        "its data plane:\n"
        f"  decent join {token} --rloc {rloc} --listen 127.0.0.1:{WEB_PORT + k} "
        f"--config {where / 'node.toml'} --state-dir {where / 'state'}"
    )


def lab_main(argv: list[str] | None = None) -> int:
    """`decent lab`: build a lab, show its pages, run until Ctrl-C, clean up."""
    parser = argparse.ArgumentParser(
        prog="decent lab",
        description="Run a LISP-Decent lab: n nodes in network namespaces "
        "(as root) or on 127.0.0.x, until Ctrl-C.",
    )
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
        "<prefix>-n<i>, host veth <prefix>-h (default decent); a lab of the "
        "same prefix left behind is removed first",
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
        help="run the xTR data plane (namespaces only): EIDs i.i.i.i and fd00::i "
        "on a TUN; try `ip netns exec <prefix>-n1 ping 2.2.2.2`",
    )
    parser.add_argument(
        "--no-trust",
        action="store_true",
        help="no node identities: the group key alone admits members (by "
        "default the lab is a mesh whose authority invites every node, and it "
        "prints a `decent join` command for one more)",
    )
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
                raise LabError("--dataplane needs a namespace lab (run as root)")
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
        with lab:
            if reason is not None:
                print(f"loopback lab ({reason})")
            lab.start_all()
            try:
                took = lab.wait_converged(30.0)
                state = f"converged in {took:.1f} s"
            except TimeoutError:
                state = "not converged after 30 s; see the logs"
            print(f"{len(lab.nodes)} nodes, mode {lab.mode}, {state}:")
            for i in sorted(lab.nodes):
                n = lab.node(i)
                print(f"  {n.name}  rloc {n.rloc}  {n.url}/  log {lab.log_path(i)}")
            if isinstance(lab, NetnsLab) and lab.dataplane:
                print(f"  try: ip netns exec {lab.prefix}-n1 ping 2.2.2.2")
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
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("lab removed")
    return 0
