"""Command line entry point: the composition root that wires config, core and shells."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from decent import __version__
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decent",
        description="LISP-Decent node: xTR, Map-Server and Map-Resolver in one.",
    )
    parser.add_argument("--version", action="version", version=f"decent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("decode", help="decode a LISP control message given in hex")
    p.add_argument("hex", nargs="+", help="the UDP payload, in hex")
    p.set_defaults(func=_cmd_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
