"""A LISP-Decent push-mode member's config (RFC 9962 4): group, site, registrations."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from decent.peer.config import (
    Addr,
    AllowedPrefix,
    DatabaseMapping,
    Limits,
    NodeConfig,
    OutsideMapServer,
    PullConfig,
    Site,
    TrustConfig,
    rloc_order,
)
from decent.wire import (
    AfiList,
    AlgorithmId,
    Eid,
    IPAddress,
    Locator,
    NoAddress,
    Rle,
    RleEntry,
)

GROUP_SITE = "decent-group"
#: Record TTL (minutes) of a mobile node's own mappings: LISP-MN wants small
#: TTLs so correspondents' caches let go of an old RLOC soon (protocol notes
#: section 8, "order of 1-2 min"; timer table: about 1 min).
MOBILE_TTL: Final = 1
#: An RLOC's priority and weight when its config gives none (RFC 9301 5.4:
#: lower priority is preferred; weight shares flows within a priority).
DEFAULT_PRIORITY: Final = 1
DEFAULT_WEIGHT: Final = 100


def membership_mapping(
    group_eid: Eid, rloc: IPAddress, ttl: int, wire_form: str = "rfc8060"
) -> DatabaseMapping:
    """The member's join: [iid](0/0, G) with an RLE of its own RLOC at level
    128, merge and proxy-reply set, no Map-Notify (RFC 8378 5.1.2 MUSTs), and
    lispers.net's RLOC-record values (protocol notes 1.3). lispers.net
    writes the RLE inside an AFI list led by an empty address (gotcha 10)."""
    rle = Rle((RleEntry(rloc, 128),))
    address: Rle | AfiList = rle
    if wire_form == "lispers.net":
        address = AfiList((NoAddress(), rle))
    locator = Locator(address, 255, 0, 1, 100, local=True, reachable=True)
    return DatabaseMapping(
        group_eid,
        (locator,),
        ttl=ttl,
        proxy_reply=True,
        want_map_notify=False,
        merge=True,
    )


def decent_node_config(
    *,
    name: str,
    rlocs: tuple[IPAddress, ...],
    group: IPAddress | None,
    key: bytes,
    xtr_id: int,
    eids: tuple[Eid, ...] = (),
    seeds: tuple[IPAddress, ...] = (),
    mode: str = "replicate",
    iid: int = 0,
    ttl: int = 3,
    site_id: int = 0,
    control_port: int = 4342,
    data_port: int = 4341,
    register_interval: float = 60.0,
    probe_interval: float | None = None,
    group_lookup_interval: float | None = 30.0,
    map_reply_rate: float = 1000.0,
    map_reply_burst: float = 2000.0,
    resolve_in_process: bool = False,
    rloc_policy: tuple[tuple[int, int], ...] = (),
    eid_ttls: Iterable[tuple[Eid, int]] = (),
    mobile: bool = False,
    limits: Limits | None = None,
    auth_algorithms: frozenset[int] = frozenset({AlgorithmId.HMAC_SHA_256_128}),
    sites: tuple[Site, ...] = (),
    outside_map_servers: tuple[OutsideMapServer, ...] = (),
    outside_map_resolvers: tuple[Addr, ...] = (),
    wire_form: str = "rfc8060",
    reliable: bool = False,
    reliable_peers: tuple[tuple[IPAddress, bool], ...] = (),
    trust: TrustConfig | None = None,
    encrypt: str = "off",
    cipher_suite: int = 5,
    rekey_seconds: float = 86_400.0,
    rekey_packets: int = 1 << 32,
    nat: str = "off",
    relay: bool = False,
    nat_keepalive: float = 20.0,
    nat_recheck: float = 600.0,
    advertise: tuple[IPAddress, ...] = (),
    pull: PullConfig | None = None,
    core: tuple[IPAddress, ...] = (),
    layer_prefixes: tuple[Eid, ...] = (),
) -> NodeConfig:
    """A push-mode member: its own Map-Server and Map-Resolver, registering
    its membership, its name and its EIDs once to the whole group.

    Every member holds every registration (RFC 9962 4.1), so the group site
    allows any prefix, name and group in the instance, and always proxy-
    replies. `ttl` (minutes) is both the record TTL and, with the T bit, the
    registration lifetime: a member that vanishes ages out after it.

    `rloc_policy` is (priority, weight) per RLOC, in `rlocs` order (default
    1/100 each). `eid_ttls` gives some EIDs their own record TTL. `mobile`
    (LISP-MN) gives the name and every EID without one `MOBILE_TTL`; the
    membership keeps `ttl`, since a re-registration from a new RLOC replaces
    our child of the merged set at once (it is keyed by xTR-ID).

    `auth_algorithms` are those accepted from peers, the group key's
    (SHA-256 alone by default: RFC 9301 1.1 forbids SHA-1 on the Internet).

    `sites` are plain xTRs' sites, which every member should list alike.
    `outside_map_servers` and `outside_map_resolvers` make the node a classic
    xTR of other mapping systems too; with `group` None it is only that.

    With `pull` (and no group) it is a pull-mode node (RFC 9962 5): the
    same site and registrations, less the membership, sent to the
    Map-Server set of each EID (decent.peer.mapping.pull).

    With `core` (the core seed-group's members' RLOCs), `group` is a layer
    group (RFC 9962 4.4): its membership and `layer_prefixes` are also
    registered into the core (decent.peer.mapping.layers).
    """
    if pull is not None and group is not None:
        raise ValueError("pull mode has no push group")
    if (core or layer_prefixes) and (group is None or not (core and layer_prefixes)):
        raise ValueError("a layer needs its group, the core and its prefixes")
    if rloc_policy and len(rloc_policy) != len(rlocs):
        raise ValueError("rloc_policy needs one (priority, weight) per RLOC")
    rloc = rlocs[0]
    policy = rloc_policy or ((DEFAULT_PRIORITY, DEFAULT_WEIGHT),) * len(rlocs)
    # Sorted on the wire (RFC 9301 5.5), whatever the config's order: the
    # first RLOC listed stays our source and RLE member, and our
    # locator-status bits follow this order (DataPlane._own_sources).
    locators = tuple(
        sorted(
            (
                Locator(r, priority, weight, 255, 0, local=True)
                for r, (priority, weight) in zip(rlocs, policy, strict=True)
            ),
            key=lambda loc: rloc_order(loc.address),
        )
    )
    own_ttl = MOBILE_TTL if mobile else ttl
    ttls = dict(eid_ttls)
    # A push group's registration reaches every member at once and is
    # repeated each period: a Map-Notify from each would be N of them. A
    # pull-mode one goes to a set's few Map-Servers, each of which must
    # acknowledge it or be sent it again (RFC 9301 5.7), or a member that
    # was not up yet goes without it for a whole registration period.
    notify = pull is not None
    database: list[DatabaseMapping] = []
    targets: list[Addr] = []
    all_sites = list(sites)
    if group is not None or pull is not None:
        v4 = group is None or group.version == 4
        any_group = Eid.sg(
            "0.0.0.0/0" if v4 else "::/0", "224.0.0.0/4" if v4 else "ff00::/8", iid
        )
        all_sites.append(
            Site(
                GROUP_SITE,
                ((0, key),),
                (
                    AllowedPrefix(Eid.prefix("0.0.0.0/0", iid)),
                    AllowedPrefix(Eid.prefix("::/0", iid)),
                    AllowedPrefix(Eid.name("*", iid)),
                    AllowedPrefix(any_group),
                ),
                force_proxy_reply=True,
                algorithms=auth_algorithms,
                # With node identities, the certificate decides what a
                # member may register, not the group key (decent.peer.trust).
                signed=trust is not None,
            )
        )
        database.append(
            DatabaseMapping(Eid.name(name, iid), locators, own_ttl, True, notify)
        )
    if group is not None:
        group_eid = Eid.sg(
            "0.0.0.0/0" if group.version == 4 else "::/0",
            f"{group}/{group.max_prefixlen}",
            iid,
        )
        database.insert(0, membership_mapping(group_eid, rloc, ttl, wire_form))
        targets = [(rloc, control_port), (group, control_port)]
        targets.extend((s, control_port) for s in seeds if s not in rlocs)
    database.extend(
        DatabaseMapping(e, locators, ttls.get(e, own_ttl), True, notify) for e in eids
    )
    resolvers: tuple[Addr, ...] = ((rloc, control_port),)
    if group is None and pull is None:
        resolvers, resolve_in_process = outside_map_resolvers, False
    return NodeConfig(
        rlocs=rlocs,
        xtr_id=xtr_id,
        site_id=site_id,
        control_port=control_port,
        data_port=data_port,
        group=group,
        group_mode="pull" if pull is not None else mode,
        group_iid=iid,
        sites=tuple(all_sites),
        registration_timeout=ttl * 60.0,
        database=tuple(database),
        map_servers=tuple(targets),
        register_key=key if group is not None or pull is not None else b"",
        register_interval=register_interval,
        map_resolvers=resolvers,
        probe_interval=probe_interval,
        encrypt=encrypt,
        cipher_suite=cipher_suite,
        rekey_seconds=rekey_seconds,
        rekey_packets=rekey_packets,
        group_lookup_interval=group_lookup_interval if group is not None else None,
        map_reply_rate=map_reply_rate,
        map_reply_burst=map_reply_burst,
        resolve_in_process=resolve_in_process,
        auth_algorithms=auth_algorithms,
        limits=limits or Limits(),
        outside_map_servers=outside_map_servers,
        outside_map_resolvers=outside_map_resolvers if group is not None else (),
        wire_form=wire_form,
        trust=trust,
        reliable=reliable,
        reliable_peers=reliable_peers,
        nat=nat,
        relay=relay,
        nat_keepalive=nat_keepalive,
        nat_recheck=nat_recheck,
        advertise=advertise,
        pull=pull,
        core=tuple((c, control_port) for c in core),
        layer_prefixes=layer_prefixes,
    )
