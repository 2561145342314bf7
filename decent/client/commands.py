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

from decent.client.api import (
    API,
    DEFAULT_NODE,
    ClientError,
    _table_command,
    cmd_status,
)
from decent.client.completion import SHELLS, completion_script
from decent.client.hosts import DEFAULT_FILE, cmd_hosts
from decent.client.init import DEFAULT_GROUP, cmd_init
from decent.client.lookup import cmd_lookup
from decent.client.manual import man_page
from decent.client.mesh import add_mesh_commands
from decent.client.service import (
    DEFAULT_CONFIG,
    cmd_service_install,
    cmd_service_print,
)
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


def add_client_commands(
    sub: Any,
    run: Callable[[str], int],
    root: Callable[[], argparse.ArgumentParser] | None = None,
) -> None:
    """Register status, sites, peers, map-cache, lookup, hosts, init, the
    mesh commands (mesh create/invite/revoke, join, revoke), and, given
    `root` (which builds the whole `decent` parser), service, completion
    and man. `run` runs a node from a config file, as `decent run` does
    (for `decent join`)."""
    p = sub.add_parser(
        "status",
        help="the node, its peers, counts and health",
        description="Show what the node at --node says of itself: its RLOC, "
        "group, uptime and health, its peers, how it and each member are "
        "reached (NAT traversal: directly or through a relay, and the members "
        "it relays for), its reliable-transport sessions, the data plane per "
        "peer RLOC, "
        "message counts and drops (GET /api/v1/node and /api/v1/peers).",
    )
    _client_options(p)
    p.set_defaults(func=_guarded(cmd_status, "decent status"))
    for name, path, table, what, more in (
        (
            "sites",
            f"{API}/sites",
            views.sites_table,
            "every registration held",
            "Show every EID registration the node's Map-Server holds: the "
            "site, EID-prefix, who registered it, when, its RLOCs and flags",
        ),
        (
            "peers",
            f"{API}/peers",
            views.peers_table,
            "the peer group's members",
            "Show the peer group's members as the node sees them: each RLOC, "
            "name, state, when it was last heard from and its EIDs",
        ),
        (
            "map-cache",
            f"{API}/map-cache",
            views.cache_table,
            "the ITR map-cache",
            "Show the node's ITR map-cache: the mappings it resolved, their "
            "RLOCs, state, age and TTL, and the packets sent with each",
        ),
    ):
        p = sub.add_parser(
            name, help=what, description=f"{more} (GET {path}) as a table."
        )
        _client_options(p)
        p.set_defaults(func=_guarded(_table_command(path, table), f"decent {name}"))

    p = sub.add_parser(
        "lookup",
        help="ask a Map-Resolver for an EID over UDP, like lig",
        description="Send an ECM'd Map-Request for EID to a Map-Resolver "
        "(default: the node at --node) and print each try as lig does, then "
        "the Map-Reply's records. With --json the tries go to stderr and "
        "stdout is one JSON object (rtt_ms, ttl_min, sent_at, received_at).",
    )
    p.add_argument(
        "eid",
        metavar="EID",
        help="192.0.2.1, 10.0.0.0/8, [iid]address, 'name' or S->G",
    )
    p.add_argument("--via", metavar="RLOC", help="the Map-Resolver's address")
    p.add_argument("--port", type=int, default=0, help="its control port (4342)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per try")
    p.add_argument("--attempts", type=int, default=3, help="tries (default 3)")
    _client_options(p)
    p.set_defaults(func=_guarded(cmd_lookup, "decent lookup"))

    p = sub.add_parser(
        "hosts",
        help="keep an /etc/hosts section of the mesh's names",
        description="Map each name EID in the group (a member's [node] name) "
        "to the host EIDs (/32, /128) the same member registered, and write "
        "them between `# BEGIN decent GROUP` and `# END decent` in --file, "
        "replacing only that section, atomically, keeping the file's mode. "
        "Names that are not RFC 1123 host names are left out and counted. "
        "Run it again (or from a timer) to update.",
    )
    p.add_argument(
        "--file",
        default=DEFAULT_FILE,
        metavar="PATH",
        help=f"the hosts file (default {DEFAULT_FILE})",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--print", action="store_true", help="print the section; change no file"
    )
    what.add_argument(
        "--remove", action="store_true", help="remove the section from --file"
    )
    p.add_argument(
        "--group",
        metavar="TAG",
        help="the section's tag (default: the node's group address)",
    )
    p.add_argument(
        "--node",
        default=os.environ.get("DECENT_NODE", DEFAULT_NODE),
        metavar="URL",
        help="the node's status page / JSON API "
        f"(default $DECENT_NODE or {DEFAULT_NODE})",
    )
    p.set_defaults(func=_guarded(cmd_hosts, "decent hosts"))

    p = sub.add_parser(
        "init",
        help="write a commented starter config",
        description="Write a starter config for `decent run` (mode 0600: it "
        "holds the group key) and say how to run it. Every key is commented; "
        "the [dataplane] section is written commented out unless --dataplane.",
    )
    p.add_argument("--name", help="node name (default: the host name)")
    p.add_argument(
        "--eid",
        action="append",
        default=[],
        help="an EID-prefix to register, e.g. 10.1.0.0/24 or 192.0.2.1/32; repeat",
    )
    p.add_argument("--group", default=DEFAULT_GROUP, help="the group address")
    p.add_argument("--seed", action="append", default=[], help="a member's RLOC")
    p.add_argument("--rloc", help="this node's RLOC (default: guessed from routes)")
    p.add_argument("--interface", help="take the RLOC from this interface instead")
    p.add_argument(
        "--mode",
        choices=("replicate", "multicast"),
        default="replicate",
        help="how the group is reached: head-end replication over unicast "
        "(default), or underlay multicast",
    )
    p.add_argument("--key", help="the group's shared key (default: a new one)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="[web] listen")
    p.add_argument("--state-dir", help="[node] state_dir")
    p.add_argument(
        "--dataplane",
        action="store_true",
        help="turn the data plane on: the EIDs on a TUN, every EID of the "
        "group routed into the overlay (root or CAP_NET_ADMIN)",
    )
    p.add_argument(
        "--output", "-o", default="node.toml", help="where to write ('-': stdout)"
    )
    p.add_argument("--force", action="store_true", help="overwrite --output")
    p.set_defaults(func=_guarded(cmd_init, "decent init"))
    add_mesh_commands(sub, run, _guarded)
    if root is not None:
        _add_packaging_commands(sub, root)


def _add_packaging_commands(
    sub: Any, root: Callable[[], argparse.ArgumentParser]
) -> None:
    """service, completion and man: made from the whole parser (`root`)."""

    def man(args: argparse.Namespace) -> int:
        sys.stdout.write(man_page(root()))
        return 0

    def completion(args: argparse.Namespace) -> int:
        sys.stdout.write(completion_script(root(), args.shell))
        return 0

    def install(args: argparse.Namespace) -> int:
        return cmd_service_install(args, lambda: man_page(root()))

    p = sub.add_parser(
        "service",
        help="install decent as a systemd service",
        description="The systemd unit shipped in the package (hardened: "
        "CAP_NET_ADMIN and CAP_NET_RAW only, a read-only system, "
        "/dev/net/tun as the only device), its ExecStart set to this "
        "install's `decent`.",
    )
    service = p.add_subparsers(dest="service", required=True, metavar="COMMAND")
    for name, what, more in (
        (
            "install",
            "write the unit and the man page; print the systemctl commands",
            "Write ROOT/etc/systemd/system/decent.service and "
            "ROOT/usr/local/share/man/man1/decent.1, then print the systemctl "
            "commands that enable and start the service.",
        ),
        (
            "print",
            "print the unit this install would write",
            "Print the unit `decent service install` would write.",
        ),
    ):
        p = service.add_parser(name, help=what, description=more)
        p.add_argument(
            "--config",
            "-c",
            default=DEFAULT_CONFIG,
            metavar="PATH",
            help=f"the node's config, an absolute path (default {DEFAULT_CONFIG})",
        )
        if name == "install":
            p.add_argument(
                "--root",
                default="/",
                metavar="DIR",
                help="the file system root to install into (default /)",
            )
            p.set_defaults(func=_guarded(install, "decent service install"))
        else:
            p.set_defaults(func=_guarded(cmd_service_print, "decent service print"))

    p = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for SHELL, generated from "
        "decent's own commands and options. bash: `source <(decent "
        "completion bash)` in ~/.bashrc; zsh: `decent completion zsh > "
        "${fpath[1]}/_decent`; fish: `decent completion fish > "
        "~/.config/fish/completions/decent.fish`.",
    )
    p.add_argument("shell", choices=SHELLS, help="the shell: bash, zsh or fish")
    p.set_defaults(func=completion)

    p = sub.add_parser(
        "man",
        help="print the man page (roff)",
        description="Print decent's man page, generated from its commands and "
        "options, as roff: `decent man | man -l -` reads it.",
    )
    p.set_defaults(func=man)
