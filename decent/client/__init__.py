"""The command-line clients: node API tables, lookup, init, mesh, join, revoke."""

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
from decent.client.mesh import (
    JoinToken,
    add_mesh_commands,
    decode_join_token,
    decode_revoke_token,
    encode_revoke_token,
)

__all__ = [
    "CONTROL_PORT",
    "DEFAULT_GROUP",
    "DEFAULT_NODE",
    "ClientError",
    "JoinToken",
    "add_client_commands",
    "add_mesh_commands",
    "cell_text",
    "cmd_init",
    "cmd_lookup",
    "cmd_status",
    "config_text",
    "decode_join_token",
    "decode_revoke_token",
    "encode_revoke_token",
    "fetch",
    "lookup",
    "lookup_text",
    "map_request",
    "node_url",
    "record_dict",
    "text_table",
]
