"""The client subcommands' argparse wiring (`add_client_commands`).

Every failure is one line on stderr and a non-zero exit: 1 when the node or
resolver fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from decent.client.api import DEFAULT_NODE, ClientError, _table_command, cmd_status
from decent.client.init import DEFAULT_GROUP, cmd_init
from decent.client.lookup import cmd_lookup
from decent.client.mesh import add_mesh_commands
from decent.web import views


def _guarded(
    func: Callable[[argparse.Namespace], int], prog: str
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ClientError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return exc.code

    return run


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--node",
        default=os.environ.get("DECENT_NODE", DEFAULT_NODE),
        metavar="URL",
        help="the node's status page / JSON API "
        f"(default $DECENT_NODE or {DEFAULT_NODE})",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_client_commands(sub: Any, run: Callable[[str], int]) -> None:
    """Register status, sites, peers, map-cache, lookup, init, and the mesh
    commands (mesh create/invite/revoke, join, revoke). `run` runs a node
    from a config file, as `decent run` does (for `decent join`)."""
    p = sub.add_parser("status", help="the node, its peers, counts and health")
    _client_options(p)
    p.set_defaults(func=_guarded(cmd_status, "decent status"))
    for name, path, table, what in (
        ("sites", "/api/sites", views.sites_table, "every registration held"),
        ("peers", "/api/peers", views.peers_table, "the peer group's members"),
        ("map-cache", "/api/map-cache", views.cache_table, "the ITR map-cache"),
    ):
        p = sub.add_parser(name, help=what)
        _client_options(p)
        p.set_defaults(func=_guarded(_table_command(path, table), f"decent {name}"))

    p = sub.add_parser(
        "lookup",
        help="ask a Map-Resolver for an EID over UDP, like lig",
        description="Send an ECM'd Map-Request for EID to a Map-Resolver "
        "(default: the node at --node) and print the Map-Reply and its RTT.",
    )
    p.add_argument("eid", metavar="EID", help="1.1.1.1, 10.0.0.0/8, [iid]addr, 'name'")
    p.add_argument("--via", metavar="RLOC", help="the Map-Resolver's address")
    p.add_argument("--port", type=int, default=0, help="its control port (4342)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per try")
    p.add_argument("--attempts", type=int, default=3, help="tries (default 3)")
    _client_options(p)
    p.set_defaults(func=_guarded(cmd_lookup, "decent lookup"))

    p = sub.add_parser(
        "init",
        help="write a commented starter config",
        description="Write a starter config for `decent run` and say how to run it.",
    )
    p.add_argument("--name", help="node name (default: the host name)")
    p.add_argument("--eid", action="append", default=[], help="EID-prefix; repeat")
    p.add_argument("--group", default=DEFAULT_GROUP, help="the group address")
    p.add_argument("--seed", action="append", default=[], help="a member's RLOC")
    p.add_argument("--rloc", help="this node's RLOC (default: guessed from routes)")
    p.add_argument("--interface", help="take the RLOC from this interface instead")
    p.add_argument("--mode", choices=("replicate", "multicast"), default="replicate")
    p.add_argument("--key", help="the group's shared key (default: a new one)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="[web] listen")
    p.add_argument("--state-dir", help="[node] state_dir")
    p.add_argument(
        "--output", "-o", default="node.toml", help="where to write ('-': stdout)"
    )
    p.add_argument("--force", action="store_true", help="overwrite --output")
    p.set_defaults(func=_guarded(cmd_init, "decent init"))
    add_mesh_commands(sub, run, _guarded)
