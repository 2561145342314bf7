"""The argparse tree describes itself, and what is made from it works in the
real tools: completion in bash, zsh and fish, the man page in groff/man."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from decent.cli import build_parser
from decent.client.completion import completion_script
from decent.client.manual import command_tree, man_page, walk

#: Every command a user can type, as in the issue's list (and the new ones).
COMMANDS = {
    "run",
    "lab",
    "decode",
    "status",
    "sites",
    "peers",
    "map-cache",
    "lookup",
    "hosts",
    "init",
    "mesh",
    "mesh create",
    "mesh invite",
    "mesh revoke",
    "join",
    "revoke",
    "service",
    "service install",
    "service print",
    "completion",
    "man",
}


def test_every_command_has_a_description_and_every_argument_help() -> None:
    tree = command_tree(build_parser())
    seen = set()
    for command in walk(tree):
        seen.add(" ".join(command.path))
        assert command.description.strip(), f"{command.name}: no description="
        if command.path:
            assert command.summary.strip(), f"{command.name}: no help= in the list"
        for opt in [*command.options, *command.positionals]:
            name = ", ".join(opt.flags) or opt.metavar
            assert opt.help.strip(), f"{command.name} {name}: no help="
    assert seen - {""} == COMMANDS


def test_run_help_says_what_run_does() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "decent", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "SIGHUP reloads" in done.stdout
    assert "--config" in done.stdout
    assert "the config file (default /etc/decent/node.toml)" in done.stdout


def _bash_complete(script: str, line: str) -> list[str]:
    """Complete `line` (the cursor at its end) with bash's own machinery:
    the registered function, called with COMP_WORDS as bash sets them."""
    program = (
        f"{script}\n"
        'spec="$(complete -p decent)"\n'
        'func="${spec##*-F }"; func="${func%% *}"\n'
        f'read -ra COMP_WORDS <<< "$LINE"\n'
        '[[ $LINE == *" " ]] && COMP_WORDS+=("")\n'
        "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
        'COMP_LINE="$LINE"; COMP_POINT=${#LINE}\n'
        '"$func" decent "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        check=True,
        env={"LINE": line, "PATH": "/usr/bin:/bin"},
    )
    assert done.stderr == ""
    return [w for w in done.stdout.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_options_and_choices() -> None:
    script = completion_script(build_parser(), "bash")
    assert _bash_complete(script, "decent lo") == ["lookup"]
    assert _bash_complete(script, "decent mesh in") == ["invite"]
    assert _bash_complete(script, "decent run --log-format ") == ["text", "json"]
    assert _bash_complete(script, "decent lookup --v") == ["--via"]
    assert _bash_complete(script, "decent completion ") == ["bash", "zsh", "fish"]
    # `revoke` under `mesh` is not the top-level `revoke`: each its options.
    assert "--dir" in _bash_complete(script, "decent mesh revoke --")
    assert "--token" in _bash_complete(script, "decent revoke --")
    assert "--dir" not in _bash_complete(script, "decent revoke --")
    # A subcommand word after an option's value still counts.
    assert _bash_complete(script, "decent service install --r") == ["--root"]
    # The lab parses its own options; they are completed all the same.
    assert _bash_complete(script, "decent lab --ke") == ["--keep"]


def test_the_cli_prints_each_script() -> None:
    for shell in ("bash", "zsh", "fish"):
        done = subprocess.run(
            [sys.executable, "-m", "decent", "completion", shell],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout == completion_script(build_parser(), shell)


@pytest.mark.skipif(
    shutil.which("zsh") is None, reason="zsh is not installed (apt install zsh)"
)
def test_zsh_script_parses_and_lists_commands(tmp_path) -> None:
    path = tmp_path / "_decent"
    path.write_text(completion_script(build_parser(), "zsh"))
    subprocess.run(["zsh", "-n", str(path)], check=True)
    # Sourced after compinit: registered for decent, its tables answer.
    done = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            f"autoload -U compinit && compinit -u -D && source {path} && "
            "print -r -- $_comps[decent] && _decent_commands mesh && "
            "_decent_value run --log-format",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "_decent"
    assert lines[1].startswith("create:make a new mesh")
    assert [x.split(":")[0] for x in lines[1:4]] == ["create", "invite", "revoke"]
    assert lines[4] == "text json"


@pytest.mark.skipif(
    shutil.which("fish") is None, reason="fish is not installed (apt install fish)"
)
def test_fish_completes_with_descriptions(tmp_path) -> None:
    path = tmp_path / "decent.fish"
    path.write_text(completion_script(build_parser(), "fish"))
    subprocess.run(["fish", "-n", str(path)], check=True)

    def complete(line: str) -> list[str]:
        done = subprocess.run(
            ["fish", "--no-config", "-c", f"source {path}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()

    assert complete("decent lo") == [
        "lookup\task a Map-Resolver for an EID over UDP, like lig"
    ]
    assert [x.split("\t")[0] for x in complete("decent mesh in")] == ["invite"]
    assert [x.split("\t")[0] for x in complete("decent run --log-format ")] == [
        "json",
        "text",
    ]


def _render(page: str) -> str:
    """The page as man shows it, with groff's warnings on (any fails)."""
    groff = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-rLL=100n"],
        input=page,
        capture_output=True,
        text=True,
        check=True,
    )
    assert groff.stderr == ""
    return re.sub(r".\x08", "", groff.stdout)  # overstrike bold/underline


@pytest.mark.skipif(
    shutil.which("groff") is None, reason="groff is not installed (apt groff-base)"
)
def test_man_page_renders_without_warnings_and_names_every_command() -> None:
    page = subprocess.run(
        [sys.executable, "-m", "decent", "man"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert page == man_page(build_parser())
    text = " ".join(_render(page).split())
    for command in COMMANDS:
        assert f"decent {command} " in text, command
    assert "--log-format {text,json}" in text
    assert "--mode {replicate,multicast}" in text
    assert "--keep" in text
    assert "SIGHUP" in text
    if shutil.which("man"):
        shown = subprocess.run(
            ["man", "--warnings", "-l", "-"],
            input=page,
            capture_output=True,
            text=True,
            check=True,
            env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "MAN_KEEP_STDERR": "1"},
        )
        assert shown.stderr == ""
        assert "decent mesh invite" in shown.stdout


def test_roff_escapes_what_would_be_a_request() -> None:
    from decent.client.manual import _roff

    assert _roff(".TH x\n'br\n-a \\b") == "\\&.TH x\n\\&'br\n\\-a \\eb"
