"""The command-line clients: status, sites, peers, map-cache, lookup and init."""

from __future__ import annotations

from decent.client.api import (
    DEFAULT_NODE,
    ClientError,
    cell_text,
    cmd_status,
    fetch,
    node_url,
    text_table,
)
from decent.client.commands import add_client_commands
from decent.client.init import DEFAULT_GROUP, cmd_init, config_text
from decent.client.lookup import (
    CONTROL_PORT,
    cmd_lookup,
    lookup,
    lookup_text,
    map_request,
    record_dict,
)

__all__ = [
    "CONTROL_PORT",
    "DEFAULT_GROUP",
    "DEFAULT_NODE",
    "ClientError",
    "add_client_commands",
    "cell_text",
    "cmd_init",
    "cmd_lookup",
    "cmd_status",
    "config_text",
    "fetch",
    "lookup",
    "lookup_text",
    "map_request",
    "node_url",
    "record_dict",
    "text_table",
]
