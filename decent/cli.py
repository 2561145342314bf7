"""Command line entry point: parsing and subcommands; decent.daemon runs the node."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from decent import __version__
from decent.client import add_client_commands
from decent.config import ConfigError, load_config
from decent.daemon import run_node
from decent.lab.main import DESCRIPTION as LAB_DESCRIPTION
from decent.lab.main import add_lab_arguments, lab_main
from decent.net.logtext import LOG_FORMATS, setup_logging
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
    return run_config(args.config, args.log_format)


def run_config(path: str, log_format: str | None = None) -> int:
    """Run a node from its config file until SIGTERM/SIGINT (`decent run`,
    and `decent join` once it wrote the file). `log_format` ("text" or
    "json", decent.net.logtext) overrides the file's [node] log_format."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"decent: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level, log_format or cfg.log_format)
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
    p = sub.add_parser(
        "run",
        help="run a node from a config file",
        description="Run a LISP-Decent node (xTR, Map-Server, Map-Resolver) "
        "from its config file until SIGTERM or SIGINT; SIGHUP reloads "
        "[[database]] and log_level. `decent init` writes a config, `decent "
        "service install` runs it under systemd.",
    )
    p.add_argument(
        "--config",
        "-c",
        default="/etc/decent/node.toml",
        help="the config file (default /etc/decent/node.toml)",
    )
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="text: one line per event (the default); json: one object per "
        "line, for log shippers (overrides [node] log_format)",
    )
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser(
        "lab",
        help="run a three-node lab on this machine (namespaces as root)",
        description=LAB_DESCRIPTION,
    )
    # main() hands `decent lab ...` to lab_main; the options are here too
    # for --help, the man page and shell completion.
    add_lab_arguments(p)
    p = sub.add_parser(
        "decode",
        help="decode a LISP control message given in hex",
        description="Print a LISP control message (the UDP payload, in hex; "
        "spaces and colons are ignored) field by field, or say why it is "
        "not a valid one.",
    )
    p.add_argument("hex", nargs="+", help="the UDP payload, in hex")
    p.set_defaults(func=_cmd_decode)
    add_client_commands(sub, run_config, build_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lab"]:
        return lab_main(argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
