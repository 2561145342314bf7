"""The mesh authority and joining: `decent mesh create|invite|revoke` and
`decent join --config-only`, end to end in a temporary directory, and
tokens that are not what they claim."""

from __future__ import annotations

import base64
import json
import re
import tomllib
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest

from decent.cli import main
from decent.client import JoinToken, decode_join_token, decode_revoke_token
from decent.client.mesh import REVOKE_PREFIX
from decent.config import load_config
from decent.daemon import node_xtr_id_for, trust_config
from decent.net.persist import StateDir
from decent.wire import Eid
from decent.wire.trust import Certificate, Revocation, public_key_of


def decent(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command line in this process: (status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def mesh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A mesh "lab" made in tmp_path/lab.mesh, with tmp_path the cwd."""
    monkeypatch.chdir(tmp_path)
    code, _, err = decent(capsys, "mesh", "create", "lab")
    assert code == 0, err
    return tmp_path / "lab.mesh"


def _invite(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = decent(capsys, "mesh", "invite", *argv)
    assert code == 0, err
    last = out.splitlines()[-1]
    assert last.startswith("decent join decent1:")
    return last.removeprefix("decent join ")


# ---------------------------------------------------------------- create
def test_create_makes_a_private_directory_with_the_key_and_shared_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = decent(capsys, "mesh", "create", "home", "--mode", "multicast")
    assert (code, err) == (0, "")
    path = tmp_path / "home.mesh"
    assert _mode(path) == 0o700
    assert _mode(path / "mesh.key") == 0o600
    assert _mode(path / "mesh.toml") == 0o600
    assert _mode(path / "issued") == 0o700
    private = base64.b64decode((path / "mesh.key").read_text().strip(), validate=True)
    settings = tomllib.loads((path / "mesh.toml").read_text())
    assert settings["name"] == "home"
    assert base64.b64decode(settings["public_key"]) == public_key_of(private)
    group = ip_address(settings["group"])
    assert group.is_multicast
    assert str(group).startswith("233.252.")
    assert len(base64.b64decode(settings["key"], validate=True)) == 32
    assert (settings["mode"], settings["instance_id"], settings["seeds"]) == (
        "multicast",
        0,
        [],
    )
    assert "home.mesh/mesh.key" in out
    assert "keep mesh.key offline" in out
    assert (
        out.splitlines()[-1]
        == "next: decent mesh invite NODE --eid PREFIX --dir home.mesh"
    )
    # Two meshes get their own group keys (and, most likely, groups).
    decent(capsys, "mesh", "create", "work", "--group", "ff05::1:7")
    other = tomllib.loads((tmp_path / "work.mesh" / "mesh.toml").read_text())
    assert other["group"] == "ff05::1:7"
    assert other["key"] != settings["key"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("bad/name",), "decent mesh create: mesh name 'bad/name': use 1 to 63 of"),
        (("m", "--group", "10.0.0.1"), "decent mesh create: --group 10.0.0.1 is not a"),
        (("m", "--group", "x"), "decent mesh create: --group 'x' is not an IP address"),
        (
            ("m", "--instance-id", "16777216"),
            "decent mesh create: --instance-id 16777216",
        ),
    ],
)
def test_create_refuses_bad_input_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = decent(capsys, "mesh", "create", *argv)
    assert code == 2
    assert err.startswith(message), err
    assert err.count("\n") == 1


def test_create_never_overwrites_a_mesh(
    mesh: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = (mesh / "mesh.key").read_bytes()
    code, _, err = decent(capsys, "mesh", "create", "lab")
    assert code == 2
    assert err == (
        "decent mesh create: lab.mesh exists; pick another --dir "
        "(a mesh's key is never overwritten)\n"
    )
    assert (mesh / "mesh.key").read_bytes() == key


# ---------------------------------------------------------------- invite + join
def test_invite_then_join_writes_a_private_config_that_loads_with_the_certificate(
    mesh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _invite(
        capsys,
        *("n4", "--eid", "4.4.4.4/32", "--eid", "2001:db8:4::/48"),
        *("--seed", "198.18.43.11", "--days", "30"),
    )
    record = mesh / "issued" / "n4.cert"
    assert _mode(record) == 0o600
    cert = Certificate.decode(base64.b64decode(record.read_text()))
    settings = tomllib.loads((mesh / "mesh.toml").read_text())
    mesh_key = base64.b64decode(settings["public_key"])
    assert cert.verify(mesh_key)
    assert (cert.mesh, cert.name) == ("lab", "n4")
    assert cert.eids == (Eid.prefix("4.4.4.4/32"), Eid.prefix("2001:db8:4::/48"))

    config, state = tmp_path / "etc" / "n4.toml", tmp_path / "n4-state"
    code, out, err = decent(
        capsys,
        *("join", token, "--rloc", "198.18.43.14", "--config", str(config)),
        *("--state-dir", str(state), "--config-only"),
    )
    assert (code, err) == (0, "")
    assert out.startswith(f"wrote {config} (mode 0600) and {state / 'node.key'}")
    assert out.splitlines()[-1] == f"run it:    decent run --config {config}"
    assert _mode(config) == 0o600
    assert _mode(state / "node.key") == 0o600
    assert "written by `decent join`" in config.read_text()

    cfg = load_config(config)
    assert cfg.name == "n4"
    assert cfg.rlocs == (IPv4Address("198.18.43.14"),)
    assert cfg.state_dir == state
    assert str(cfg.group) == settings["group"]
    assert cfg.key == settings["key"].encode()
    assert cfg.mode == settings["mode"]
    assert cfg.seeds == (IPv4Address("198.18.43.11"),)
    assert cfg.dataplane is True
    assert cfg.database == cert.eids
    assert cfg.trust_mesh_key == mesh_key
    assert cfg.trust_certificate == cert.encode()
    # What `decent run` then builds: the node key the token carried, which
    # the certificate names, and an xTR-ID bound to it.
    node_key = StateDir(state).load_node_key()
    assert public_key_of(node_key) == cert.public_key
    trust = trust_config(cfg, node_key, state / "node.key", epoch=0.0)
    assert trust is not None
    assert trust.node_private_key == node_key
    assert node_xtr_id_for(trust, 7) != 7
    assert node_xtr_id_for(None, 7) == 7


def test_the_token_carries_everything_a_member_needs(
    mesh: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _invite(capsys, "n5", "--eid", "10.5.0.0/16", "--dir", str(mesh))
    assert re.fullmatch(r"decent1:[A-Za-z0-9_-]+", token)
    body = json.loads(base64.urlsafe_b64decode(token.removeprefix("decent1:") + "=="))
    assert set(body) == {
        "mesh",
        "mesh_key",
        "group",
        "key",
        "mode",
        "instance_id",
        "seeds",
        "name",
        "node_key",
        "certificate",
    }
    joined = decode_join_token(token)
    assert joined.name == "n5"
    assert joined.seeds == ()
    assert joined.encode() == token
    assert isinstance(joined, JoinToken)


@pytest.mark.parametrize("eid", ["0.0.0.0/0", "::/0", "[0]0.0.0.0/0"])
def test_a_default_route_is_granted_only_on_purpose(
    mesh: Path, capsys: pytest.CaptureFixture[str], eid: str
) -> None:
    code, _, err = decent(capsys, "mesh", "invite", "exit", "--eid", eid)
    assert code == 2
    assert err.startswith(f"decent mesh invite: --eid {eid!r} grants every address")
    assert "Pass --grant-default if it is an exit node" in err
    assert not (mesh / "issued" / "exit.cert").exists()
    token = _invite(capsys, "exit", "--eid", eid, "--grant-default")
    assert decode_join_token(token).cert.eids[0].mask_len == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("n/6", "--eid", "6.6.6.6"), "node name 'n/6': use 1 to 63 of"),
        ((".n6", "--eid", "6.6.6.6"), "node name '.n6': use 1 to 63 of"),
        (("n6", "--eid", "banana"), "--eid 'banana': 'banana' is not an address"),
        (("n6", "--eid", "'printer'"), "--eid \"'printer'\": grant IP prefixes only"),
        (("n6", "--eid", "6.6.6.6", "--seed", "x"), "--seed 'x' is not an IP address"),
        (("n6", "--eid", "6.6.6.6", "--days", "0"), "--days 0: use 1 to 36500"),
        (("n6", "--eid", "6.6.6.6", "--dir", "nowhere"), "nowhere/mesh.toml: no such"),
    ],
)
def test_invite_refuses_bad_input_in_one_line(
    mesh: Path,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    message: str,
) -> None:
    code, out, err = decent(capsys, "mesh", "invite", *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"decent mesh invite: {message}"), err
    assert err.count("\n") == 1
    assert list((mesh / "issued").iterdir()) == []


def test_a_node_is_invited_again_only_with_force(
    mesh: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = decode_join_token(_invite(capsys, "n6", "--eid", "6.6.6.6"))
    code, _, err = decent(capsys, "mesh", "invite", "n6", "--eid", "6.6.6.6")
    assert code == 2
    assert "n6 already has a certificate" in err
    assert "`decent mesh revoke n6`" in err
    second = decode_join_token(_invite(capsys, "n6", "--eid", "6.6.6.6", "--force"))
    assert second.node_key != first.node_key
    assert second.cert.serial != first.cert.serial


def test_the_mesh_directory_is_found_or_asked_for(
    mesh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decent(capsys, "mesh", "create", "other")
    code, _, err = decent(capsys, "mesh", "invite", "n7", "--eid", "7.7.7.7")
    assert code == 2
    assert err == (
        "decent mesh invite: which mesh? *.mesh directories here: lab.mesh, "
        "other.mesh; pass --dir DIR (the directory `decent mesh create` made)\n"
    )
    (mesh / "mesh.key").chmod(0o644)
    code, _, err = decent(
        capsys, "mesh", "invite", "n7", "--eid", "7.7.7.7", "--dir", str(mesh)
    )
    assert code == 2
    assert f"{mesh / 'mesh.key'} is open to group or others (mode 0644)" in err
    assert f"run `chmod 600 {mesh / 'mesh.key'}`" in err


def test_join_refuses_to_overwrite_a_config_or_another_node_key_without_force(
    mesh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _invite(capsys, "n8", "--eid", "8.8.8.8/32")
    config, state = tmp_path / "n8.toml", tmp_path / "n8-state"
    where = ("--rloc", "192.0.2.8", "--config", str(config), "--state-dir", str(state))
    assert decent(capsys, "join", token, *where, "--config-only")[0] == 0
    code, _, err = decent(capsys, "join", token, *where, "--config-only")
    assert (code, err) == (
        2,
        f"decent join: {config} exists; pass --force to overwrite it\n",
    )
    # Joined again with another invite: another key, refused unless forced.
    again = _invite(capsys, "n8", "--eid", "8.8.8.8/32", "--force")
    config.unlink()
    code, _, err = decent(capsys, "join", again, *where, "--config-only")
    assert code == 2
    assert err == (
        f"decent join: {state / 'node.key'} already holds another node key; "
        "replacing it gives this node another identity; pass --force to replace "
        "it, or use another --state-dir\n"
    )
    assert not config.exists()
    assert decent(capsys, "join", again, *where, "--config-only", "--force")[0] == 0
    assert public_key_of(StateDir(state).load_node_key()) == (
        decode_join_token(again).cert.public_key
    )


# ---------------------------------------------------------------- tokens
def _tampered(token: str, **changes: object) -> str:
    body = json.loads(base64.urlsafe_b64decode(token.removeprefix("decent1:") + "=="))
    body.update(changes)
    data = json.dumps(body).encode()
    return "decent1:" + base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_join_tokens_that_are_not_valid_are_refused_saying_why(
    mesh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _invite(capsys, "n9", "--eid", "9.9.9.9/32")
    other = decode_join_token(_invite(capsys, "n10", "--eid", "10.10.10.10/32"))
    cert = decode_join_token(good).cert
    forged = Certificate(
        cert.mesh,
        cert.name,
        cert.public_key,
        (Eid.prefix("0.0.0.0/0"),),
        cert.not_after,
        cert.serial,
        cert.signature,
    )
    b64 = base64.b64encode
    cases = {
        "": "not a join token (no decent1: prefix)",
        "hello": "not a join token (no decent1: prefix)",
        "decent1:": "the join token is damaged",
        "decent1:!!!": "the join token is damaged",
        good[:-20]: "the join token is damaged",
        "decent1:" + base64.urlsafe_b64encode(b"[1, 2]").decode(): "is damaged",
        _tampered(good, name=7): "the join token has no valid 'name'",
        _tampered(good, node_key="AAAA"): "the join token has no valid 'node_key'",
        _tampered(good, mesh_key=b64(bytes(32)).decode()): "is not signed by its mesh",
        _tampered(good, certificate=b64(forged.encode()).decode()): "not signed by",
        _tampered(good, certificate="RENSMQ=="): "certificate does not decode",
        _tampered(good, node_key=b64(other.node_key).decode()): "for another node",
        _tampered(good, name="n10"): "for another node or key",
        _tampered(good, group="10.0.0.1"): "group or mode is wrong",
        _tampered(good, group="x"): "the join token holds",
        _tampered(good, seeds=["x"]): "the join token holds",
        _tampered(good, mode="flood"): "group or mode is wrong",
        _tampered(good, instance_id=-1): "key or instance ID is wrong",
        REVOKE_PREFIX + "AAAA": "this is a revocation token, not a join token",
    }
    for text, message in cases.items():
        code, out, err = decent(
            capsys, "join", text, "--config", str(tmp_path / "x.toml"), "--config-only"
        )
        assert (code, out) == (2, ""), text
        assert err.startswith("decent join: "), (text, err)
        assert message in err, (text, err)
        assert err.count("\n") == 1, err
    assert not (tmp_path / "x.toml").exists()


def test_revoke_tokens_that_are_not_valid_are_refused_saying_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = {
        "garbage": "not a revocation token (no decent-revoke1: prefix)",
        "decent-revoke1:AAAA": "the revocation token is damaged",
        "decent-revoke1:@@": "the revocation token is damaged",
        "decent1:AAAA": "this is a join token, not a revocation token",
    }
    for text, message in cases.items():
        code, out, err = decent(capsys, "revoke", text, "--node", "http://127.0.0.1:9")
        assert (code, out) == (2, ""), text
        assert err.startswith(f"decent revoke: {message}"), (text, err)
        assert err.count("\n") == 1


# ---------------------------------------------------------------- revoke
def test_revoke_signs_a_revocation_of_the_certificate_and_records_it(
    mesh: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = decode_join_token(_invite(capsys, "n11", "--eid", "11.0.0.0/8")).cert
    code, out, err = decent(capsys, "mesh", "revoke", "n11")
    assert (code, err) == (0, "")
    command = out.splitlines()[-1]
    assert command.startswith(f"decent revoke {REVOKE_PREFIX}")
    assert command.endswith(" --node http://127.0.0.1:8080")
    token = command.split()[2]
    revocation = decode_revoke_token(token)
    assert isinstance(revocation, Revocation)
    settings = tomllib.loads((mesh / "mesh.toml").read_text())
    assert revocation.verify(base64.b64decode(settings["public_key"]))
    assert (revocation.mesh, revocation.name, revocation.public_key) == (
        "lab",
        "n11",
        cert.public_key,
    )
    assert (revocation.serial, revocation.not_after) == (cert.serial, cert.not_after)
    stem = f"n11.{cert.serial:016x}"
    assert not (mesh / "issued" / "n11.cert").exists()
    assert (mesh / "revoked" / f"{stem}.cert").exists()
    assert (mesh / "revoked" / f"{stem}.revoke").read_text() == token + "\n"
    # Revoked once; a new invite needs no --force.
    code, _, err = decent(capsys, "mesh", "revoke", "n11")
    assert code == 2
    assert "n11 holds no certificate of this mesh" in err
    _invite(capsys, "n11", "--eid", "11.0.0.0/8")


def test_json_output_for_scripts(
    mesh: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = decent(
        capsys, "mesh", "invite", "n12", "--eid", "12.0.0.0/8", "--json"
    )
    invite = json.loads(out)
    assert code == 0
    assert invite["node"] == "n12"
    assert invite["eids"] == ["[0]12.0.0.0/8"]
    assert invite["command"] == f"decent join {invite['token']}"
    code, out, _ = decent(capsys, "mesh", "revoke", "n12", "--json")
    revoked = json.loads(out)
    assert revoked["serial"] == invite["serial"]
    assert decode_revoke_token(revoked["token"]).name == "n12"
