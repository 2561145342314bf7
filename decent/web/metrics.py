"""The node's counters and sizes in the Prometheus text exposition format (0.0.4)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

from decent.peer import counters as C

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: LISP control message types (RFC 9301 section 5), as the node counts them.
MESSAGE_TYPES: Final = (
    "map-request",
    "map-reply",
    "map-register",
    "map-notify",
    "map-notify-ack",
    "map-referral",
    "ecm",
)
#: Sent kinds that are not named after their message type.
_SENT_TYPE: Final = {"smr": "map-request", "probe": "map-request"}
#: The counters of registration and map-cache changes, by their label.
_REGISTRATION_CHANGE: Final = {
    C.REGISTRATION_ACCEPTED: "accepted",
    C.REGISTRATION_REMOVED: "removed",
    C.REGISTRATION_EXPIRED: "expired",
}
_CACHE_CHANGE: Final = {
    C.CACHE_INSTALLED: "installed",
    C.CACHE_EXPIRED: "expired",
    C.CACHE_CLEARED: "cleared",
}
REGISTRATION_CHANGES: Final = tuple(_REGISTRATION_CHANGE.values())
CACHE_CHANGES: Final = tuple(_CACHE_CHANGE.values())


def _label(value: object) -> str:
    # Exposition format: backslash, double quote and line feed are escaped.
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Families:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.meta: dict[str, tuple[str, str]] = {}
        self.samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(
            dict
        )

    def family(self, name: str, kind: str, help_text: str) -> None:
        if name not in self.meta:
            self.order.append(name)
            self.meta[name] = (kind, help_text)

    def add(self, family: str, value: float, **labels: object) -> None:
        key = tuple(sorted((k, str(v)) for k, v in labels.items()))
        self.samples[family][key] = self.samples[family].get(key, 0) + value

    def text(self) -> str:
        out = []
        for name in self.order:
            kind, help_text = self.meta[name]
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for key, value in sorted(self.samples[name].items()):
                labels = ",".join(f'{k}="{_label(v)}"' for k, v in key)
                shown = int(value) if float(value).is_integer() else value
                series = f"{name}{{{labels}}}" if labels else name
                out.append(f"{series} {shown}")
        return "\n".join(out) + "\n"


def render(node: dict[str, Any], cache: list[dict[str, Any]]) -> str:
    """Metrics from /api/node's dict and /api/map-cache's list."""
    f = _Families()
    counters: dict[str, int] = node.get("counters", {})
    f.family(
        "decent_messages_received_total",
        "counter",
        "LISP control messages received, by type",
    )
    f.family(
        "decent_messages_sent_total",
        "counter",
        "LISP control messages sent, by type and kind (replicated, smr, probe...)",
    )
    f.family(
        "decent_replicated_received_total",
        "counter",
        "Head-end replicated control messages received on the data port",
    )
    f.family("decent_drops_total", "counter", "Datagrams dropped, by reason")
    f.family(
        "decent_registrations_rejected_total",
        "counter",
        "Map-Register records refused, by reason",
    )
    f.family(
        "decent_registration_changes_total",
        "counter",
        "Registration changes (accepted includes periodic refreshes)",
    )
    f.family("decent_map_cache_changes_total", "counter", "Map-cache changes")
    f.family("decent_events_total", "counter", "Other node counters, by name")
    for t in MESSAGE_TYPES:
        f.add("decent_messages_received_total", 0, type=t)
        f.add("decent_messages_sent_total", 0, type=t, kind=t)
    for change in REGISTRATION_CHANGES:
        f.add("decent_registration_changes_total", 0, change=change)
    for change in CACHE_CHANGES:
        f.add("decent_map_cache_changes_total", 0, change=change)
    f.add("decent_replicated_received_total", counters.get(C.RX_REPLICATED, 0))
    for key, value in counters.items():
        if key == C.RX_REPLICATED:
            continue
        if key.startswith(C.RX):
            f.add("decent_messages_received_total", value, type=key.removeprefix(C.RX))
        elif key.startswith(C.TX):
            kind = key.removeprefix(C.TX)
            base = kind.removeprefix("replicated-")
            f.add(
                "decent_messages_sent_total",
                value,
                type=_SENT_TYPE.get(base, base),
                kind=kind,
            )
        elif key.startswith(C.DROP):
            f.add("decent_drops_total", value, reason=key.removeprefix(C.DROP))
        elif key.startswith(C.REJECT):
            f.add(
                "decent_registrations_rejected_total",
                value,
                reason=key.removeprefix(C.REJECT),
            )
        elif key in _REGISTRATION_CHANGE:
            change = _REGISTRATION_CHANGE[key]
            f.add("decent_registration_changes_total", value, change=change)
        elif key in _CACHE_CHANGE:
            f.add("decent_map_cache_changes_total", value, change=_CACHE_CHANGE[key])
        else:
            f.add("decent_events_total", value, name=key)
    f.family("decent_socket_errors_total", "counter", "Socket send/receive errors")
    for key, value in node.get("socket_errors", {}).items():
        f.add("decent_socket_errors_total", value, error=key)

    counts = node.get("counts", {})
    f.family("decent_registrations", "gauge", "Registrations held (all peers')")
    f.add("decent_registrations", counts.get("registrations", 0))
    f.family("decent_peers", "gauge", "Members of the peer group")
    f.add("decent_peers", counts.get("peers", 0))
    f.family("decent_map_cache_entries", "gauge", "Map-cache entries")
    f.add("decent_map_cache_entries", counts.get("map_cache", 0))
    f.family(
        "decent_data_packets_total",
        "counter",
        "Data-plane packets encapsulated to map-cache entries (sum of packet-count)",
    )
    f.add("decent_data_packets_total", sum(e.get("packet-count", 0) for e in cache))
    f.family(
        "decent_data_bytes_total",
        "counter",
        "Data-plane bytes encapsulated to map-cache entries (sum of byte-count)",
    )
    f.add("decent_data_bytes_total", sum(e.get("byte-count", 0) for e in cache))
    # The ETR side has no map-cache entry to count against: the data plane's
    # own totals (absent, so zero, when it is off).
    dataplane = node.get("dataplane", {})
    f.family(
        "decent_data_decapsulated_packets_total",
        "counter",
        "Data-plane packets decapsulated for this node's EIDs",
    )
    f.add(
        "decent_data_decapsulated_packets_total",
        dataplane.get("decapsulated-packets", 0),
    )
    f.family(
        "decent_data_decapsulated_bytes_total",
        "counter",
        "Data-plane bytes decapsulated for this node's EIDs (inner packets)",
    )
    f.add(
        "decent_data_decapsulated_bytes_total", dataplane.get("decapsulated-bytes", 0)
    )
    f.family(
        "decent_dataplane_peer_encrypted",
        "gauge",
        "1 when our data-plane traffic to that peer RLOC is sealed (RFC 8061), "
        "0 when it goes in clear or not at all (see state)",
    )
    for peer in dataplane.get("peers", ()):
        f.add(
            "decent_dataplane_peer_encrypted",
            1 if peer.get("state") == "encrypted" else 0,
            rloc=peer.get("rloc", ""),
            state=peer.get("state", ""),
        )
    # One series per peer RLOC and direction: the data plane's traffic table
    # is bounded ([limits] max_traffic_peers), so are these.
    f.family(
        "decent_dataplane_peer_packets_total",
        "counter",
        "Data-plane packets to (tx) and from (rx) each peer RLOC",
    )
    f.family(
        "decent_dataplane_peer_bytes_total",
        "counter",
        "Data-plane inner bytes to (tx) and from (rx) each peer RLOC",
    )
    for peer in dataplane.get("peers", ()):
        for way in ("rx", "tx"):
            rloc = peer.get("rloc", "")
            f.add(
                "decent_dataplane_peer_packets_total",
                peer.get(f"{way}_packets", 0),
                rloc=rloc,
                direction=way,
            )
            f.add(
                "decent_dataplane_peer_bytes_total",
                peer.get(f"{way}_bytes", 0),
                rloc=rloc,
                direction=way,
            )
    f.family("decent_up", "gauge", "1 when the node is a member of its group")
    f.add("decent_up", 1 if node.get("health", {}).get("ok") else 0)
    f.family("decent_uptime_seconds", "gauge", "Seconds since the node started")
    f.add("decent_uptime_seconds", float(node.get("uptime_s", 0.0)))
    f.family("decent_node_info", "gauge", "The node's identity (always 1)")
    f.add(
        "decent_node_info",
        1,
        name=node.get("name", ""),
        rloc=node.get("rloc", ""),
        mode=node.get("mode") or "",
        group=node.get("group") or "",
    )
    return f.text()
