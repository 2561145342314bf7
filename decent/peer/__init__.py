"""Sans-I/O LISP-Decent protocol core (RFC 9962, RFC 9301): the public face.

`Node` is the control plane (Map-Server, Map-Resolver, ITR, ETR, prober and
the mapping system it belongs to); `DataPlane` rides on it; both take `now`
and an injected nonce source and do no I/O. Shells and tools import from
here; the modules behind it are the core's own business.
"""

from decent.peer.config import (
    Addr,
    AllowedPrefix,
    ChildKey,
    DatabaseMapping,
    Limits,
    NodeConfig,
    Site,
)
from decent.peer.dataplane import HEADROOM, DataPlane, DataPlaneConfig, Route
from decent.peer.events import Event
from decent.peer.mapcache import CacheEntry, LocatorState
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.mapping.system import MappingSystem
from decent.peer.mapserver import Registration, SiteEntry
from decent.peer.node import Node
from decent.peer.roles.ms import Refusal

__all__ = [
    "HEADROOM",
    "Addr",
    "AllowedPrefix",
    "CacheEntry",
    "ChildKey",
    "DataPlane",
    "DataPlaneConfig",
    "DatabaseMapping",
    "Event",
    "Limits",
    "LocatorState",
    "MappingSystem",
    "Node",
    "NodeConfig",
    "Refusal",
    "Registration",
    "Route",
    "Site",
    "SiteEntry",
    "decent_node_config",
]
