"""The daemon's use of [[site]], [xtr] and wire: start-up warnings, reload, no group."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from decent.config import load_config
from decent.daemon import build_node, log_sites, reload_config

NODE = """
[node]
name = "n1"
rloc = "127.0.0.9"

[decent]
group = "233.252.1.1"
key = "lab-secret"

[[database]]
eid = "1.1.1.1/32"

[[site]]
name = "oor-1"
key = "oor-secret"
algorithm = "sha1"
eids = ["10.1.0.0/16"]
nonces = "any"

[[site]]
name = "lispers-1"
key = "ln-secret"
eids = ["10.2.0.0/16"]
allow_unauthenticated = true

[xtr]
map_servers = [{ address = "127.0.0.20", key = "ms-secret" }]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_start_up_warns_of_unauthenticated_sites_and_notes_any_nonce(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config(_write(tmp_path, NODE))
    with caplog.at_level(logging.INFO, logger="decent"):
        log_sites(cfg)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (
            logging.INFO,
            'site oor-1 accepts any Map-Register nonce (nonces = "any"): '
            "no RFC 9301 5.6 replay check for it",
        ),
        (
            logging.WARNING,
            "site lispers-1 accepts unauthenticated Map-Registers (Key ID/Alg 0): "
            "insecure, anyone on the path can register its EIDs",
        ),
    ]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('eids = ["10.1.0.0/16"]', 'eids = ["10.3.0.0/16"]', "sites"),
        ('key = "ms-secret"', 'key = "other"', "outside_map_servers"),
        ("[xtr]", '[xtr]\nmap_resolvers = ["127.0.0.21"]', "outside_map_resolvers"),
        ('key = "lab-secret"', 'key = "lab-secret"\nwire = "lispers.net"', "wire_form"),
    ],
)
def test_sites_xtr_and_wire_need_a_restart(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    old: str,
    new: str,
    field: str,
) -> None:
    path = _write(tmp_path, NODE)
    cfg = load_config(path)
    node = build_node(cfg, xtr_id=7, register_nonce=1, now=0.0)
    path.write_text(NODE.replace(old, new, 1))
    with caplog.at_level(logging.WARNING, logger="decent"):
        kept = reload_config(cfg, node, 1.0)
    assert f"reload: {field} changed; restart the node for that" in caplog.text
    assert getattr(kept, field) == getattr(cfg, field)
    assert node.config.sites[: len(cfg.sites)] == cfg.sites
    assert node.config.outside_map_servers == cfg.outside_map_servers
    assert node.config.wire_form == cfg.wire_form


def test_a_group_less_node_builds_and_reloads(tmp_path: Path) -> None:
    text = NODE.replace('[decent]\ngroup = "233.252.1.1"\nkey = "lab-secret"\n', "")
    path = _write(tmp_path, text)
    cfg = load_config(path)
    assert cfg.group is None
    node = build_node(cfg, xtr_id=7, register_nonce=1, now=0.0)
    assert node.config.group is None
    assert node.config.outside_map_servers == cfg.outside_map_servers
    path.write_text(text + '[[database]]\neid = "10.9.0.0/16"\n')
    new = reload_config(cfg, node, 1.0)
    assert len(new.database) == 2
    assert {m.eid for m in node.database_mappings()} == set(new.database)
