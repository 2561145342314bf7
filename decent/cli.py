"""Command line entry point: parsing and subcommands; decent.daemon runs the node."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from decent import __version__
from decent.client import add_client_commands
from decent.config import ConfigError, load_config
from decent.daemon import run_node
from decent.wire import DecodeError, decode


def _cmd_decode(args: argparse.Namespace) -> int:
    text = "".join(args.hex).replace(":", "").replace(" ", "")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        print("decent decode: the argument is not hexadecimal", file=sys.stderr)
        return 2
    try:
        print(decode(data))
    except DecodeError as exc:
        print(
            f"decent decode: not a valid LISP control message: {exc}", file=sys.stderr
        )
        return 1
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    return run_config(args.config)


def run_config(path: str) -> int:
    """Run a node from its config file until SIGTERM/SIGINT (`decent run`,
    and `decent join` once it wrote the file)."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"decent: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    run = asyncio.run
    try:  # the `fast` extra: a faster event loop for the data plane
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    try:
        return run(run_node(cfg))
    except ConfigError as exc:
        print(f"decent: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decent",
        description="LISP-Decent node: xTR, Map-Server and Map-Resolver in one.",
    )
    parser.add_argument("--version", action="version", version=f"decent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a node from a config file")
    p.add_argument("--config", "-c", default="/etc/decent/node.toml")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser(
        "lab",
        help="run a three-node lab on this machine (namespaces as root)",
        add_help=False,
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = sub.add_parser("decode", help="decode a LISP control message given in hex")
    p.add_argument("hex", nargs="+", help="the UDP payload, in hex")
    p.set_defaults(func=_cmd_decode)
    add_client_commands(sub, run_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lab"]:
        # lab has its own parser (decent.lab); argparse's REMAINDER would not
        # pass it options such as --help.
        from decent.lab import lab_main

        return lab_main(argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
