"""The command line: exit codes and messages of `decent run` and `decent decode`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.net.test_runtime import write_config

MULTICAST = 'mode = "multicast"'


def _decent(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "decent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bad_config_exits_nonzero_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1, base="127.0.0.4", web=_free_tcp_port(), seeds=[])
    path.write_text(path.read_text().replace('"233.252.1.1"', '"10.0.0.1"'))
    result = _decent("run", "--config", str(path))
    assert result.returncode == 2
    assert "[decent] group: 10.0.0.1 is not a multicast address" in result.stderr


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


FIX = "another process (another node?) has it: stop it or pick a free port"


def test_port_in_use_exits_nonzero_naming_the_key(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.41", 4342))
        path = write_config(
            tmp_path, 1, base="127.0.0.4", web=_free_tcp_port(), seeds=[]
        )
        result = _decent("run", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: [decent] control_port: 127.0.0.41:4342 is in use" in result.stderr
    assert FIX in result.stderr


def test_data_port_in_use_names_data_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.42", 4341))
        path = write_config(
            tmp_path, 2, base="127.0.0.4", web=_free_tcp_port(), seeds=[]
        )
        result = _decent("run", "--config", str(path))
    assert result.returncode == 2
    assert "[decent] data_port: 127.0.0.42:4341 is in use" in result.stderr
    assert FIX in result.stderr


def test_an_address_not_on_this_host_names_the_rloc(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1, base="192.0.2.20", web=_free_tcp_port(), seeds=[])
    result = _decent("run", "--config", str(path))
    assert result.returncode == 2
    assert "[node] rloc: cannot bind 192.0.2.201:4342" in result.stderr
    assert "use an address of this host" in result.stderr


def _wait_up(proc: subprocess.Popen[bytes], log: Path, web: int) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with opener.open(f"http://127.0.0.1:{web}/api/node", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the first node did not come up:\n{log.read_text()}")


@contextmanager
def _running(path: Path, web: int) -> Iterator[subprocess.Popen[bytes]]:
    log = path.with_suffix(".log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "decent", "run", "--config", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_up(proc, log, web)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x loopback")
def test_a_second_multicast_node_on_the_same_control_port_is_refused(
    tmp_path: Path,
) -> None:
    # Only the group socket shares the port; a node's own control socket on
    # its RLOC must not, or two nodes would each get half the datagrams.
    first_web, second_web = _free_tcp_port(), _free_tcp_port()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_config(
        tmp_path / "a", 1, base="127.0.0.8", web=first_web, seeds=[], extra=MULTICAST
    )
    second = write_config(
        tmp_path / "b",
        1,
        base="127.0.0.8",
        web=second_web,
        seeds=[],
        extra=MULTICAST + "\ndata_port = 4343",
    )
    with _running(first, first_web):
        result = _decent("run", "--config", str(second))
    assert result.returncode == 2, result.stderr
    assert f"{second}: [decent] control_port: 127.0.0.81:4342 is in use" in (
        result.stderr
    )
    assert FIX in result.stderr


def test_web_port_in_use_exits_nonzero_naming_web_listen(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        web = busy.getsockname()[1]
        path = write_config(tmp_path, 3, base="127.0.0.4", web=web, seeds=[])
        result = _decent("run", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert (
        f"{path}: [web] listen: cannot listen on 127.0.0.1:{web} "
        "(Address already in use)"
    ) in result.stderr
    assert FIX in result.stderr


def test_decode_prints_a_message_or_explains() -> None:
    ok = _decent(
        "decode", "20000001 b1b2b3b4 b5b6b7b8 0000000f 00102000 00000001 0a030000"
    )
    assert ok.returncode == 0
    assert "MapReply" in ok.stdout
    bad = _decent("decode", "2000")
    assert bad.returncode == 1
    assert "not a valid LISP control message" in bad.stderr
    assert _decent("decode", "xyz").returncode == 2


def test_lab_help_names_the_options_that_place_a_lab() -> None:
    result = _decent("lab", "--help")
    assert result.returncode == 0
    for option in ("--prefix", "--subnet", "--loopback", "--mode"):
        assert option in result.stdout
    assert "<prefix>-n<i>" in result.stdout


def test_reload_after_roaming_keeps_the_new_rloc_everywhere(tmp_path: Path) -> None:
    """SIGHUP's reload builds mappings from the file, whose RLOC is the one
    the node started with; after a move (LISP-MN) the added EID must take
    the node's live RLOC, and the membership must keep naming it."""
    from ipaddress import IPv4Address

    from decent.config import load_config
    from decent.daemon import build_node, reload_config
    from decent.wire import Eid, Rle

    path = write_config(tmp_path, 1, base="127.0.0.9", web=8080, seeds=[])
    cfg = load_config(path)
    node = build_node(cfg, xtr_id=7, register_nonce=1, now=0.0)
    moved = IPv4Address("127.0.0.99")
    node.change_rlocs([moved], 1.0)
    path.write_text(
        path.read_text().replace(
            'eid = "1.1.1.1/32"',
            'eid = "1.1.1.1/32"\n[[database]]\neid = "10.1.0.0/16"',
        )
    )
    new = reload_config(cfg, node, 2.0)
    held = dict(node.database.items())
    assert new.database == (Eid.prefix("1.1.1.1/32"), Eid.prefix("10.1.0.0/16"))
    for eid in (Eid.prefix("10.1.0.0/16"), Eid.prefix("1.1.1.1/32")):
        assert [loc.address for loc in held[eid].locators] == [moved]
    (membership,) = [m for m in held.values() if m.merge]
    (rle,) = [loc.address for loc in membership.locators]
    assert isinstance(rle, Rle)
    assert [e.address for e in rle.entries] == [moved]


def test_reload_after_roaming_keeps_the_name_on_the_new_rloc(tmp_path: Path) -> None:
    """The name is a mapping like the others: a reload that keeps it must
    not put it back on the RLOC in the file, which the node has left."""
    from ipaddress import IPv4Address

    from decent.config import load_config
    from decent.daemon import build_node, reload_config
    from decent.wire import Eid

    path = write_config(tmp_path, 1, base="127.0.0.9", web=8080, seeds=[])
    cfg = load_config(path)
    node = build_node(cfg, xtr_id=7, register_nonce=1, now=0.0)
    moved = IPv4Address("127.0.0.99")
    node.change_rlocs([moved], 1.0)
    reload_config(cfg, node, 2.0)
    held = {m.eid: m for m in node.database_mappings()}
    name = held[Eid.name(cfg.name, cfg.instance_id)]
    assert [loc.address for loc in name.locators] == [moved]


# ---------------------------------------------------------------- trust
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("mesh",), ("create", "invite", "revoke", "authority")),
        (("mesh", "create"), ("--group", "--mode", "--instance-id", "mesh.key")),
        (("mesh", "invite"), ("--eid", "--seed", "--days", "--grant-default")),
        (("mesh", "revoke"), ("--dir", "decent revoke")),
        (("join",), ("--rloc", "--interface", "--config", "--config-only")),
        (("revoke",), ("--node", "--token", "/api/v1/revoke")),
    ],
)
def test_every_trust_command_describes_itself(
    argv: tuple[str, ...], words: tuple[str, ...]
) -> None:
    from decent.cli import main

    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    help_text = _help(argv)
    for word in words:
        assert word in help_text, (argv, word)


def _help(argv: tuple[str, ...]) -> str:
    import contextlib
    import io

    from decent.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(out.getvalue().split())


def _joined(tmp_path: Path) -> tuple[Path, Path]:
    """A config and state_dir as `decent join --config-only` writes them."""
    import contextlib
    import io

    from decent.cli import main

    mesh = str(tmp_path / "m.mesh")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["mesh", "create", "m", "--dir", mesh]) == 0
        invite = ["mesh", "invite", "n1", "--eid", "1.1.1.1/32", "--dir", mesh]
        assert main([*invite, "--json"]) == 0
    token = json.loads(out.getvalue().splitlines()[-1])["token"]
    config, state = tmp_path / "n1.toml", tmp_path / "state"
    web = _free_tcp_port()
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            main(
                [
                    *("join", token, "--rloc", "127.0.0.9", "--config", str(config)),
                    *("--state-dir", str(state), "--listen", f"127.0.0.1:{web}"),
                    "--config-only",
                ]
            )
            == 0
        )
    return config, state


def test_a_node_key_open_to_others_stops_the_node_naming_the_fix(
    tmp_path: Path,
) -> None:
    config, state = _joined(tmp_path)
    (state / "node.key").chmod(0o644)
    result = _decent("run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    key = state / "node.key"
    assert result.stderr.startswith(
        f"decent: {config}: [node] state_dir: {key} is open to group or others "
        "(mode 0644)"
    )
    assert f"run `chmod 600 {key}`" in result.stderr


def test_a_certificate_for_another_node_key_stops_the_node(
    tmp_path: Path,
) -> None:
    from decent.net.persist import StateDir

    config, state = _joined(tmp_path)
    StateDir(state).write_node_key(bytes(32), replace=True)
    result = _decent("run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"decent: {config}: [trust] certificate: this certificate is for another "
        f"node key than {state / 'node.key'}'s; put back the node.key it was "
        "issued with (`decent join` writes it), or ask the mesh authority for a "
        "new invite and join with it\n"
    )


def test_saved_revocations_are_given_back_to_the_node_but_expired_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import itertools
    import logging
    from ipaddress import IPv4Address

    from decent.daemon import restore_revocations
    from decent.peer.config import TrustConfig
    from decent.peer.mapping.push_config import decent_node_config
    from decent.peer.node import Node
    from decent.wire import Eid
    from decent.wire.trust import (
        issue_certificate,
        issue_revocation,
        node_xtr_id,
        public_key_of,
    )

    now = 1_800_000_000
    mesh, node_key = bytes(range(32)), bytes(range(32, 64))
    cert = issue_certificate(
        mesh,
        mesh="m",
        name="n1",
        public_key=public_key_of(node_key),
        eids=(Eid.prefix("1.1.1.1/32"),),
        not_after=now + 86_400,
        serial=1,
    )
    trust = TrustConfig(public_key_of(mesh), cert.encode(), node_key, epoch=now)
    counter = itertools.count(1)
    node = Node(
        decent_node_config(
            name="n1",
            rlocs=(IPv4Address("198.18.44.1"),),
            group=IPv4Address("233.252.1.1"),
            key=b"k",
            xtr_id=node_xtr_id(public_key_of(node_key)),
            eids=(Eid.prefix("1.1.1.1/32"),),
            trust=trust,
        ),
        nonce=lambda: next(counter),
        now=0.0,
    )

    def revocation(serial: int, not_after: int, signer: bytes = mesh) -> bytes:
        return issue_revocation(
            signer,
            mesh="m",
            name=f"n{serial}",
            public_key=public_key_of(bytes([serial]) * 32),
            not_after=not_after,
            serial=serial,
        ).encode()

    live = revocation(2, now + 3600)
    saved = [
        live,
        revocation(3, now - 1),  # over: its certificate has expired anyway
        revocation(4, now + 3600, signer=bytes(32)),  # not this mesh's
        b"not a revocation",
    ]
    with caplog.at_level(logging.WARNING, logger="decent"):
        assert restore_revocations(node, saved, 0.0, float(now)) == 1
    assert node.revocations() == [live]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "does not decode" in messages[1]
    assert messages[0].startswith("saved revocation of n4 (serial 0000000000000004)")
