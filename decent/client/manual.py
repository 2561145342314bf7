"""`decent man`: the argparse tree as a walk of commands and as a roff man page."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from decent import __version__

#: Options whose value is a file or directory (completion offers paths).
_PATH_DESTS: Final = frozenset({"config", "file", "output", "root", "dir", "state_dir"})


@dataclass(frozen=True, slots=True)
class Option:
    """An option or positional argument of one command."""

    flags: tuple[str, ...]  # empty for a positional
    help: str
    metavar: str
    takes_value: bool
    choices: tuple[str, ...] = ()
    path: bool = False


@dataclass(slots=True)
class Command:
    """One node of the parser tree: `decent` itself, or a subcommand."""

    path: tuple[str, ...]
    parser: argparse.ArgumentParser
    summary: str
    options: list[Option] = field(default_factory=list)
    positionals: list[Option] = field(default_factory=list)
    children: list[Command] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(("decent", *self.path))

    @property
    def description(self) -> str:
        return self.parser.description or ""


def _option(action: argparse.Action) -> Option:
    metavar = action.metavar
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    if metavar is None:
        metavar = action.dest.upper() if action.option_strings else action.dest
    choices = tuple(str(c) for c in action.choices or ())
    return Option(
        flags=tuple(action.option_strings),
        help=str(action.help or ""),
        metavar=str(metavar),
        takes_value=action.nargs != 0,
        choices=choices,
        path=action.dest in _PATH_DESTS and not choices,
    )


def command_tree(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = (), summary: str = ""
) -> Command:
    """`parser` and its subparsers as Commands, in the order they were added."""
    node = Command(path, parser, summary or parser.description or "")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: str(a.help or "") for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias
                    continue
                seen.add(id(sub))
                node.children.append(
                    command_tree(sub, (*path, name), helps.get(name, ""))
                )
        elif action.help == argparse.SUPPRESS:
            continue
        elif action.option_strings:
            node.options.append(_option(action))
        else:
            node.positionals.append(_option(action))
    return node


def walk(node: Command) -> Iterator[Command]:
    """Every command of the tree, parents before their children."""
    yield node
    for child in node.children:
        yield from walk(child)


# ---------------------------------------------------------------- roff
def _roff(text: str) -> str:
    """Text for a roff line: backslashes and hyphens escaped, and a line
    that starts with a control character defused."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = re.sub(r"`([^`\n]+)`", r"\\fB\1\\fR", text)  # `decent init`: bold
    lines = [("\\&" + line if line[:1] in ".'" else line) for line in text.split("\n")]
    return "\n".join(lines)


def _usage(command: Command) -> str:
    usage = command.parser.format_usage().strip()
    return re.sub(r"\s+", " ", usage.removeprefix("usage:").strip())


def _option_roff(opt: Option) -> list[str]:
    value = ""
    if opt.takes_value and opt.flags:
        value = " {" + ",".join(opt.choices) + "}" if opt.choices else f" {opt.metavar}"
    head = ", ".join(opt.flags) if opt.flags else opt.metavar
    return [
        ".TP",
        f"\\fB{_roff(head)}\\fR" + (f"\\fI{_roff(value)}\\fR" if value else ""),
        _roff(opt.help) if opt.help else "",
    ]


_FOOTER: Final = r"""
.SH FILES
.TP
.I /etc/decent/node.toml
The node's configuration (\fBdecent init\fR writes one, mode 0600: it holds
the group key).
.TP
.I /var/lib/decent
The node's state directory: its key, xTR\-ID and snapshot.
.TP
.I /etc/systemd/system/decent.service
The systemd unit \fBdecent service install\fR writes.
.SH SIGNALS
.TP
.B SIGHUP
Reload the configuration file's [[database]] and log_level
(\fBsystemctl reload decent\fR).
.TP
.BR SIGTERM ", " SIGINT
Deregister this node's EIDs and stop.
.SH ENVIRONMENT
.TP
.B DECENT_NODE
The node the client commands ask (default http://127.0.0.1:8080).
.SH EXIT STATUS
0 on success, 1 when the node or a resolver fails, 2 for bad input
or a configuration error.
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.BR hosts (5),
RFC 9301, RFC 9962.
"""


def man_page(parser: argparse.ArgumentParser) -> str:
    """The man page of `decent` (section 1), from the parser tree."""
    tree = command_tree(parser)
    out = [
        f'.TH DECENT 1 "" "decent {__version__}" "User Commands"',
        # No hyphenation, ragged right: commands and addresses stay whole.
        ".nh",
        ".ad l",
        ".SH NAME",
        "decent \\- " + _roff(tree.description.rstrip(".")),
        ".SH SYNOPSIS",
        ".B decent",
        ".I command",
        ".RI [ options ]",
        ".SH DESCRIPTION",
        _roff(tree.description),
        "Each command below says what it does; \\fBdecent\\fR \\fIcommand\\fR "
        "\\fB\\-\\-help\\fR says the same.",
        ".SH OPTIONS",
    ]
    for opt in tree.options:
        out += _option_roff(opt)
    out.append(".SH COMMANDS")
    for command in walk(tree):
        if not command.path:
            continue
        out += [
            f'.SS "{_roff(command.name)}"',
            f"\\fB{_roff(_usage(command))}\\fR",
            ".PP",
            _roff(command.description or command.summary),
        ]
        if command.children:
            out += [
                ".PP",
                "Commands: "
                + _roff(", ".join(" ".join(c.path) for c in command.children))
                + ".",
            ]
        for opt in [*command.positionals, *command.options]:
            out += _option_roff(opt)
    return "\n".join(line for line in out if line) + _FOOTER
