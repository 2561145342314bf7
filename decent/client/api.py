"""The JSON API client: `status`, `sites`, `peers` and `map-cache` (`--node URL`).

Their tables are the status page's own models (`decent.web.views`) printed as
text.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from decent.web import views

DEFAULT_NODE: Final = "http://127.0.0.1:8080"
#: The version of the node's JSON API the clients speak (README, "JSON for
#: scripts"); the unversioned /api/... paths are aliases of it.
API: Final = "/api/v1"
#: Ignore proxy settings: the node is local or on the overlay's underlay.
_HTTP: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ClientError(Exception):
    """A failure to report as one line; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- JSON API
def node_url(text: str) -> str:
    text = text.strip().rstrip("/")
    return text if "://" in text else f"http://{text}"


def fetch(node: str, path: str, timeout: float = 5.0) -> Any:
    """GET a JSON API path of the node; ClientError when that fails."""
    base = node_url(node)
    url = base + path
    try:
        with _HTTP.open(url, timeout=timeout) as resp:
            data = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        try:
            reason = json.loads(body).get("error") or exc.reason
        except (ValueError, AttributeError):
            reason = exc.reason
        raise ClientError(f"{url}: HTTP {exc.code}: {reason}") from None
    except urllib.error.URLError as exc:
        why = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise ClientError(
            f"cannot reach the node at {base} ({why}); is `decent run` running? "
            "point --node at its [web] listen address"
        ) from None
    except (TimeoutError, OSError) as exc:
        raise ClientError(f"no answer from the node at {base} ({exc})") from None
    try:
        return json.loads(data)
    except ValueError:
        raise ClientError(f"{url} did not answer JSON; is it a decent node?") from None


# ---------------------------------------------------------------- text tables
def cell_text(c: views.Cell) -> str:
    """A cell on one line: its lines joined, the blank ones left out (a
    multi-line cell pads with "" to stay level with a longer neighbour)."""
    return ", ".join(cell_lines(c) if "lines" in c else [str(c.get("text", ""))])


def cell_lines(c: views.Cell) -> list[str]:
    """A cell's text lines, as the page shows them one under the other."""
    lines = c.get("lines")
    if lines is not None:
        return [str(x) for x in lines if str(x)] or [""]
    return [str(c.get("text", ""))]


def _physical_rows(row: list[views.Cell]) -> list[list[str]]:
    """One table row as text lines: a multi-line cell (an RLE's members,
    each RLOC of a set) goes on lines of its own, and its neighbours' lines
    stay beside the line they belong to, as on the page."""
    cells = [
        [str(x) for x in c["lines"]] if "lines" in c else cell_lines(c) for c in row
    ]
    height = max((len(c) for c in cells), default=1)
    return [[c[i] if i < len(c) else "" for c in cells] for i in range(height)]


def text_table(block: views.Block) -> str:
    """A page table (views model) as aligned text columns."""
    head = [cell_text(c) for c in block["columns"]]
    rows = [line for r in block["rows"] for line in _physical_rows(r["cells"])]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *rows]
    ]
    if not rows:
        lines.append(block.get("empty", ""))
    if block.get("more"):
        lines.append(f"{block['more']} more not shown: {block['more_hint']}")
    return "\n".join(lines)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _status_text(
    node: dict[str, Any], peers: list[dict[str, Any]], now: float | None = None
) -> str:
    h = views.header(node)
    counters: dict[str, int] = node.get("counters", {})
    out = [
        f"node {h['name']}  rloc {h['rloc']}  mode {h['mode']}  group {h['group']}"
        f"  instance-id {node.get('instance_id', 0)}",
        f"uptime {h['uptime']}  health {h['health']}  xtr-id {node.get('xtr_id')}",
        f"holds {h['counts']}",
        *([f"reachability {h['reach']}"] if node.get("nat") is not None else []),
        *([f"stale: {h['stale']}"] if h["stale"] else []),
        *_dataplane_line(node.get("dataplane", {})),
        "",
        *_pull_sets(node, now),
        "Peers",
        text_table(views.peers_table(peers, now)),
        "",
        *_reachability(node),
        *_sessions(node.get("reliable")),
        *_dataplane_peers(node.get("dataplane", {}), now),
    ]
    kinds = sorted(
        {k.partition(".")[2] for k in counters if k.startswith(("rx.", "tx."))}
    )
    if kinds:
        rows = [
            {
                "cells": [
                    {"text": k},
                    {"text": counters.get(f"rx.{k}", 0)},
                    {"text": counters.get(f"tx.{k}", 0)},
                ]
            }
            for k in kinds
        ]
        table = {
            "columns": [{"text": "Messages"}, {"text": "in"}, {"text": "out"}],
            "rows": rows,
        }
        out += [text_table(table), ""]
    drops = {k: v for k, v in counters.items() if k.startswith(("drop.", "reject."))}
    out.append(
        "drops: " + (", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none")
    )
    return "\n".join(out)


def facts_text(block: views.Block) -> str:
    """A page's facts (views model) as aligned "label  value" lines."""
    items = [(str(i["label"]), cell_text(i["value"]) or "-") for i in block["items"]]
    width = max((len(label) for label, _ in items), default=0)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in items)


def _reachability(node: dict[str, Any]) -> list[str]:
    """NAT traversal as the Peers page shows it: this node's side, each
    member's reachability, and the members we relay for (when we offer
    to); one line when the node does not report it."""
    nat = node.get("nat")
    facts = views.nat_facts(nat)
    if facts.get("hidden"):
        return ["Reachability: not reported by this node", ""]
    out = [
        "Reachability",
        facts_text(facts),
        "",
        text_table(views.reach_table(nat, str(node.get("name") or ""))),
        "",
    ]
    clients = views.clients_table(nat)
    if not clients.get("hidden"):
        out += ["Relay clients", text_table(clients), ""]
    return out


def _pull_sets(node: dict[str, Any], now: float | None) -> list[str]:
    """Pull mode's hash and Map-Server sets, as the overview shows them;
    nothing in push mode."""
    pull = node.get("pull")
    if pull is None:
        return []
    return [
        "Map-Server sets (pull mode)",
        facts_text(views.pull_facts(pull)),
        "",
        text_table(views.pull_sets_table(pull, now)),
        "",
    ]


def _sessions(reliable: dict[str, Any] | None) -> list[str]:
    """The reliable-transport sessions as the Peers page shows them, or one
    line saying reliable transport is off."""
    block = views.sessions_table(reliable)
    if block.get("hidden"):
        return ["Reliable transport: off ([decent] reliable)", ""]
    return ["Reliable-transport sessions", text_table(block), ""]


def _dataplane_line(dataplane: dict[str, Any]) -> list[str]:
    """One line on the data plane: its encryption policy and how many peer
    RLOCs our traffic reaches sealed, in clear, or not at all."""
    if not dataplane.get("enabled"):
        return []
    states = Counter(str(p.get("state")) for p in dataplane.get("peers", ()))
    seen = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return [
        f"data plane {'running' if dataplane.get('running') else 'not running'}"
        f"  encrypt {dataplane.get('encrypt', 'off')}"
        + (f" ({dataplane['cipher']})" if dataplane.get("cipher") else "")
        + f"  peer RLOCs: {seen or 'none yet'}"
    ]


def _dataplane_peers(dataplane: dict[str, Any], now: float | None) -> list[str]:
    """The data plane per peer RLOC, as `wg show` gives it per peer:
    encryption, the last packet each way, packets and bytes each way, RTT."""
    if not dataplane.get("enabled") or not dataplane.get("peers"):
        return []
    out = ["Data plane"]
    for p in dataplane["peers"]:
        name = f"{p['name']}  " if p.get("name") else ""
        state = str(p.get("state") or "-")
        how = [x for x in (p.get("cipher"), _key_id(p.get("key_id"))) if x]
        if state != "encrypted" and p.get("reason"):
            how.append(str(p["reason"]))
        rx = views.ago(p.get("last_rx_at"), now)
        tx = views.ago(p.get("last_tx_at"), now)
        out += [
            f"peer {name}{p['rloc']}",
            f"  encryption: {state}" + (f" ({', '.join(how)})" if how else ""),
            f"  last packet: in {_ago(rx)}, out {_ago(tx)}",
            f"  transfer: {_transfer(p)}",
            f"  rtt: {views.rtt_text(p.get('rtt_ms'))}",
            "",
        ]
    return out


def _ago(text: str) -> str:
    return text if text == "never" else f"{text} ago"


def _key_id(key_id: object) -> str:
    return f"key-id {key_id}" if key_id else ""


def _transfer(p: dict[str, Any]) -> str:
    rx, tx = p.get("rx_packets", 0), p.get("tx_packets", 0)
    return (
        f"{views.size_text(p.get('rx_bytes', 0))} received ({rx:,} packets), "
        f"{views.size_text(p.get('tx_bytes', 0))} sent ({tx:,} packets)"
    )


def cmd_status(args: argparse.Namespace) -> int:
    node = fetch(args.node, f"{API}/node")
    peers = fetch(args.node, f"{API}/peers")
    if args.json:
        _print_json({"node": node, "peers": peers})
    else:
        print(_status_text(node, peers))
    return 0


def _table_command(
    path: str, table: Callable[[list[dict[str, Any]]], views.Block]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        data = fetch(args.node, path)
        if args.json:
            _print_json(data)
        else:
            print(text_table(table(data)))
        return 0

    return run
