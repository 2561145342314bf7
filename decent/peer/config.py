"""The core's configuration: sites, database mappings, timers, the data plane."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.wire import AlgorithmId, DistinguishedName, Eid, IPAddress, Locator

Addr = tuple[IPv4Address | IPv6Address, int]
#: Who a registration belongs to: its xTR-ID, or its source without one.
ChildKey = int | IPv4Address | IPv6Address
CONTROL_PORT = 4342
DATA_PORT = 4341
GROUP_MODES = ("replicate", "multicast", "pull")
#: How group registrations are written: RFC 8060's LCAFs, or as lispers.net
#: writes them (a padded Multicast-Info, the RLE inside an AFI list).
WIRE_FORMS = ("rfc8060", "lispers.net")
NAT_MODES = ("auto", "off")


def rloc_order(addr: object) -> tuple[int, int]:
    """RFC 9301 5.5: a locator set MUST go in ascending order, IPv4 before
    IPv6 (anything else, an RLE or a name, after them)."""
    if isinstance(addr, IPv4Address | IPv6Address):
        return addr.version, int(addr)
    return 99, 0


@dataclass(frozen=True, slots=True)
class AllowedPrefix:
    """An EID-prefix a site may register. A name EID '*' allows any name."""

    eid: Eid
    accept_more_specifics: bool = True

    def allows(self, eid: Eid) -> bool:
        a = self.eid
        if a.iid != eid.iid:
            return False
        if isinstance(a.address, DistinguishedName):
            return eid.is_name and (a.address.name == "*" or a == eid)
        if not self.accept_more_specifics:
            return a == eid
        if a.group is not None or eid.group is not None:
            if a.group is None or eid.group is None or eid.is_name:
                return False
            sources = Eid(a.iid, a.address, a.mask_len).contains(
                Eid(eid.iid, eid.address, eid.mask_len)
            )
            groups = Eid(a.iid, a.group, a.group_mask_len).contains(
                Eid(eid.iid, eid.group, eid.group_mask_len)
            )
            return sources and groups
        return a.contains(eid)

    @property
    def specificity(self) -> int:
        return self.eid.mask_len + self.eid.group_mask_len


@dataclass(frozen=True, slots=True)
class Limits:
    """What one peer can make this node spend. Every bound a member gone
    rogue could otherwise push is here, with a default that a mesh of
    laptops never meets (README, "Limits"; config file section [limits])."""

    # ---- Map-Server: what registrants may hold
    #: Registrations (one per registrant per EID) held in all.
    max_registrations: int = 65_536
    #: Distinct registrants (xTR-IDs, or sources without one) holding any.
    max_registrants: int = 1_024
    #: Registrations one registrant may hold, counted per xTR-ID and,
    #: separately, per source address (so inventing xTR-IDs does not help).
    registrant_eids: int = 4_096
    #: Map-Register records a second per registrant (xTR-ID and source),
    #: and the burst: a whole database re-registered at once fits.
    registrant_rate: float = 200.0
    registrant_burst: float = 8_192.0
    # ---- Map-Register nonces (decent.peer.replay)
    #: How far above the last nonce a Map-Register may jump unchallenged: a
    #: restart resumes at most one reserved block (1,000) ahead.
    nonce_window: int = 1 << 16
    #: How long the mark of a registrant that holds nothing is kept.
    nonce_retention: float = 86_400.0
    #: Marks held in all (registrants that still hold something never go).
    max_nonce_marks: int = 4_096
    #: Refused Map-Registers held while their registrant is asked to confirm
    #: (at most two per registrant; a few MB at most).
    max_challenges: int = 256
    challenge_timeout: float = 5.0
    # ---- Map-Resolver: what a requester can make us send
    #: The underlay MTU: every Map-Reply fits one datagram of it (RFC 9301 5).
    underlay_mtu: int = 1_500
    #: A Map-Reply to an address that is not a member of the group is at
    #: most this many times the size of the Map-Request that asked for it
    #: (spoofed requests reflect no more than their own size, times this).
    reply_amplification: float = 3.0
    #: Per-destination reply buckets held at once (least recently used go).
    reply_buckets: int = 4_096
    #: ITRs remembered per EID of ours for SMRs (RFC 9301 6.1), newest kept.
    recent_itrs: int = 256
    # ---- ITR
    #: Map-cache entries; past it, new mappings are not cached (counted).
    max_cache_entries: int = 65_536
    #: Map-Reply bytes a second to all destinations together, and the burst.
    reply_global_rate: float = 8_000_000.0
    reply_global_burst: float = 8_000_000.0
    #: Registrants shown as refused (over quota or rate) on the status page.
    refused_shown: int = 64
    # ---- Node identities (decent.peer.trust)
    #: Revoked certificates kept (each until it would have expired).
    max_revocations: int = 1_024
    # ---- Data-plane encryption (decent.peer.roles.keys)
    #: Peer RLOCs we hold keys or key-exchange state for, each way.
    max_keyed_peers: int = 4_096
    # ---- Data-plane traffic view (decent.peer.peerstats)
    #: Peer RLOCs whose packets and bytes are counted; past it, the one idle
    #: longest goes (counted under dataplane.traffic-evicted).
    max_traffic_peers: int = 4_096
    # ---- Reliable-transport sessions (decent.peer.transport)
    #: TCP sessions held at once, both directions together.
    max_sessions: int = 256
    #: Sessions one peer may hold to us; a newer one replaces the oldest
    #: (a peer that restarted reconnects before its old session times out).
    sessions_per_peer: int = 1
    #: The largest PDU accepted, in bytes (at most 65,535, the Length field).
    max_frame: int = 16_384
    #: Bytes queued for one peer before its session is reset (it stopped
    #: reading): a 5,000-EID registration round is about 250 KB.
    session_write_queue: int = 4 << 20
    #: PDUs a second one session may send us, and the burst (a registration
    #: round's ACKs, one per EID, arrive at once).
    session_frame_rate: float = 20_000.0
    session_frame_burst: float = 131_072.0
    #: Unusable PDUs (unknown type, bad body) answered with an Error
    #: Notification before the session is reset.
    session_errors: int = 16
    # ---- Push groups (decent.peer.mapping.push)
    #: Replicated packets held (5 s) from senders not yet known as members:
    #: members that start together replicate to each other before the
    #: Map-Notify naming them arrives (about 20 a member at 30 members).
    unvouched_replicated: int = 1_024
    # ---- NAT traversal (decent.peer.mapping.nat)
    #: Members behind NAT a relay carries at once; each costs one binding
    #: and a copy of every replicated control message.
    relay_clients: int = 256
    #: Registrations a relay keeps to hand a new client at once (the last
    #: Map-Register per registrant and first EID; about 1 KB each).
    relay_held: int = 8_192
    #: Info-Requests a second we answer per source address, and the burst.
    info_rate: float = 10.0
    info_burst: float = 20.0


@dataclass(frozen=True, slots=True)
class Site:
    """A Map-Server site: who may register which EIDs, with which keys."""

    name: str
    keys: tuple[tuple[int, bytes], ...]
    allowed: tuple[AllowedPrefix, ...]
    #: Accept Algorithm ID 0 (no authentication). RFC 9301 1.1 forbids it on
    #: the Internet; lispers.net sends group joins that way (gotcha 5).
    allow_unauthenticated: bool = False
    #: Skip the RFC 9301 nonce-must-increase check, for peers that resend one
    #: constant nonce (lispers.net, protocol notes gotcha 4).
    relaxed_nonces: bool = False
    #: Answer Map-Requests for this site's EIDs even when the registrant did
    #: not set the P bit (lispers.net force-proxy-reply; every Decent node).
    force_proxy_reply: bool = False
    #: Authentication algorithms accepted (RFC 9301 1.1: alg 1, HMAC-SHA-1,
    #: MUST NOT be used on the Internet; deployed peers still send it).
    algorithms: frozenset[int] = frozenset(
        {AlgorithmId.HMAC_SHA_1_96, AlgorithmId.HMAC_SHA_256_128}
    )
    #: A site of plain xTRs (not group members): what one registers to us is
    #: carried on to the whole group, so every member can answer for it
    #: (RFC 9962 4: every node holds every mapping).
    relay: bool = False
    #: Registrations must be signed by a certificate of the mesh that grants
    #: their EIDs (decent.peer.trust): the group site of a mesh with trust.
    signed: bool = False

    def key(self, key_id: int) -> bytes | None:
        for kid, psk in self.keys:
            if kid == key_id:
                return psk
        return None


@dataclass(frozen=True, slots=True)
class PullConfig:
    """LISP-Decent pull mode (RFC 9962 5, decent.peer.mapping.pull)."""

    #: The Modulus Value: how many Map-Server sets, named 0..modulus-1.
    modulus: int
    #: Set i is the A and AAAA records of `<i>.<dns_suffix>`.
    dns_suffix: str
    #: Bytes of the EID string hashed (0: all of it).
    hash_mask: int = 0
    #: "rfc9962" or "lispers.net" (decent.peer.mapping.pullhash).
    hash: str = "rfc9962"
    #: RFC 9962 5.2: (EID range, lookup length), the longest range wins.
    lookup_lengths: tuple[tuple[Eid, int], ...] = ()
    #: RFC 9962 5.4: re-resolve a set at least this often (seconds), even
    #: when its records' TTL is longer.
    dns_refresh: float = 300.0
    #: Never re-resolve sooner than this, whatever a record's TTL says.
    dns_min_ttl: float = 5.0


@dataclass(frozen=True, slots=True)
class OutsideMapServer:
    """A Map-Server outside the group that our EIDs are registered to, with
    the key and algorithm it shares with us (RFC 9301 8.2)."""

    address: Addr
    key: bytes
    alg: int = AlgorithmId.HMAC_SHA_256_128


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """A mesh with node identities (README, "Security model"): the mesh
    authority's public key, which every member trusts; this node's
    certificate from it; and this node's private key (raw Ed25519 bytes)."""

    mesh_public_key: bytes
    certificate: bytes
    node_private_key: bytes
    #: The Unix time at which the node's clock reads 0: certificates and
    #: revocations expire in Unix time, the core counts its own `now`.
    epoch: float = 0.0


@dataclass(frozen=True, slots=True)
class DatabaseMapping:
    """An EID-prefix this node's ETR registers, with its locator set."""

    eid: Eid
    locators: tuple[Locator, ...]
    #: Record TTL in minutes; also the registration lifetime (T bit set).
    ttl: int = 3
    proxy_reply: bool = True
    want_map_notify: bool = True
    merge: bool = False


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a Node needs that is not time or entropy."""

    rlocs: tuple[IPv4Address | IPv6Address, ...]
    xtr_id: int
    site_id: int = 0
    control_port: int = CONTROL_PORT
    data_port: int = DATA_PORT
    # ---- LISP-Decent push mode (RFC 9962 section 4)
    #: The mapping system's group address; a Map-Register sent to it reaches
    #: every member (multicast), or is replicated to each one (replicate).
    group: IPv4Address | IPv6Address | None = None
    group_mode: str = "replicate"
    group_iid: int = 0
    #: RFC 9962 4.2: look the group up at a peer this often (seconds), as a
    #: backstop for lost Map-Notifies; None disables it.
    group_lookup_interval: float | None = None
    #: RFC 9962 4.4: the core seed-group's members, when `group` is a layer
    #: group (decent.peer.mapping.layers); our layer's membership and its
    #: EID-prefixes (`layer_prefixes`) are registered there.
    core: tuple[Addr, ...] = ()
    layer_prefixes: tuple[Eid, ...] = ()
    # ---- Map-Server
    sites: tuple[Site, ...] = ()
    registration_timeout: float = 180.0
    notify_retry_intervals: tuple[float, ...] = (3.0, 3.0, 3.0, 6.0, 12.0, 24.0)
    # ---- Map-Resolver
    negative_ttl_unregistered: int = 1  # minutes (RFC 9301 8.3)
    negative_ttl_unknown: int = 15  # minutes
    map_reply_rate: float = 1000.0  # per destination RLOC, per second
    map_reply_burst: float = 2000.0
    # ---- ETR
    database: tuple[DatabaseMapping, ...] = ()
    map_servers: tuple[Addr, ...] = ()
    register_key: bytes = b""
    register_alg: int = AlgorithmId.HMAC_SHA_256_128
    register_interval: float = 60.0
    register_jitter: float = 0.1
    quick_register_interval: float = 20.0
    quick_register_period: float = 300.0
    max_register_size: int = 1100
    #: Map-Servers outside the group: our IP EIDs (not the membership, not
    #: the name) are registered to each, signed with its own key.
    outside_map_servers: tuple[OutsideMapServer, ...] = ()
    #: How our group registrations are written (WIRE_FORMS).
    wire_form: str = "rfc8060"
    # ---- ITR
    map_resolvers: tuple[Addr, ...] = ()
    request_interval: float = 1.0
    request_attempts: int = 10
    request_holddown: float = 30.0
    smr_interval: float = 3.0
    # ---- RFC 8061 data-plane encryption (decent.peer.roles.keys)
    #: "required", "preferred" or "off" (ENCRYPT_MODES); the config file's
    #: default is "required", the core's "off" (no data plane, no keys).
    encrypt: str = "off"
    #: LISP Crypto Cipher Suite we offer: 5 (AES-128-GCM) or 6 (ChaCha20).
    cipher_suite: int = 5
    #: A sending key is replaced after this long or this many packets.
    rekey_seconds: float = 86_400.0
    rekey_packets: int = 1 << 32
    probe_interval: float | None = None
    probe_timeout: float = 3.0
    probe_down_after: int = 2
    recent_itr_window: float = 60.0
    #: Resolve through our own Map-Resolver in-process (no datagram) when it
    #: is among map_resolvers: every Decent member answers its own lookups.
    resolve_in_process: bool = False
    #: Map-Resolvers outside the group, asked (in ECMs) about EIDs the group
    #: holds no registration for; with no group, about every EID.
    outside_map_resolvers: tuple[Addr, ...] = ()
    #: Algorithms accepted on Map-Notify and Map-Notify-Ack signed with
    #: register_key (a site's own setting covers its Map-Registers).
    auth_algorithms: frozenset[int] = frozenset(
        {AlgorithmId.HMAC_SHA_1_96, AlgorithmId.HMAC_SHA_256_128}
    )
    limits: Limits = Limits()
    # ---- Reliable transport (draft-ietf-lisp-map-server-reliable-transport)
    #: Register over a TCP session to each peer that accepts one, and
    #: accept sessions from peers; off by default.
    reliable: bool = False
    #: Per-peer exceptions to `reliable`, (peer RLOC, on or off).
    reliable_peers: tuple[tuple[IPv4Address | IPv6Address, bool], ...] = ()
    #: Seconds after our UDP Map-Register with the r bit before we connect
    #: (it must have reached the peer: it authorises the connection), and
    #: the longest back-off between failed attempts.
    reliable_connect_delay: float = 1.0
    reliable_retry_max: float = 60.0
    #: Node identities: with it, every group registration is signed and
    #: checked against its signer's certificate; without it, the group key
    #: alone decides who may register what.
    trust: TrustConfig | None = None
    # ---- NAT traversal (draft-ermagan-lisp-nat-traversal; decent's design)
    #: "auto": ask peers with Info-Requests whether we are behind a NAT and,
    #: if so, register and receive through a relay member; "off": never.
    nat: str = "off"
    #: Offer ourselves as a relay (an RTR) to members behind NAT.
    relay: bool = False
    #: Seconds between keepalives to our relay (below common 30 s UDP NAT
    #: timeouts); three unanswered ones and we change relay.
    nat_keepalive: float = 20.0
    #: Seconds between NAT checks while we find ourselves directly reachable.
    nat_recheck: float = 600.0
    #: Addresses a static NAT or port forward gives us (one per family at
    #: most): registered, and named as ours, in place of our RLOC of that
    #: family, which our sockets still bind.
    advertise: tuple[IPv4Address | IPv6Address, ...] = ()
    #: Pull mode (RFC 9962 5) instead of a push group.
    pull: PullConfig | None = None

    def __post_init__(self) -> None:
        if not self.rlocs:
            raise ValueError("a node needs at least one RLOC")
        if self.group_mode not in GROUP_MODES:
            raise ValueError(f"group_mode must be one of {GROUP_MODES}")
        if self.wire_form not in WIRE_FORMS:
            raise ValueError(f"wire_form must be one of {WIRE_FORMS}")
        if self.group is not None and not self.group.is_multicast:
            raise ValueError(f"group {self.group} is not a multicast address")
        if self.nat not in NAT_MODES:
            raise ValueError(f"nat must be one of {NAT_MODES}")
        if self.encrypt not in ENCRYPT_MODES:
            raise ValueError(f"encrypt must be one of {ENCRYPT_MODES}")
        if self.cipher_suite not in (5, 6):
            raise ValueError("cipher_suite must be 5 (AES-128-GCM) or 6 (ChaCha20)")
        if self.rekey_seconds <= 0 or not 1 <= self.rekey_packets < 1 << 64:
            raise ValueError("rekey_seconds and rekey_packets must be positive")

    @property
    def group_eid(self) -> Eid | None:
        """The peer group's membership EID, [iid](0/0, G) (RFC 9962 2)."""
        if self.group is None:
            return None
        any_source = "0.0.0.0/0" if self.group.version == 4 else "::/0"
        return Eid.sg(
            any_source, f"{self.group}/{self.group.max_prefixlen}", self.group_iid
        )

    def credentials(self, ms: Addr) -> tuple[bytes, int]:
        """The key and algorithm we sign registrations to ms with, and
        check its Map-Notifies with."""
        for outside in self.outside_map_servers:
            if outside.address[0] == ms[0]:
                return outside.key, outside.alg
        return self.register_key, self.register_alg

    @property
    def reliable_anywhere(self) -> bool:
        """Whether reliable transport is on with any peer at all."""
        return self.reliable or any(on for _, on in self.reliable_peers)

    def reliable_with(self, peer: IPv4Address | IPv6Address) -> bool:
        """Whether registrations with peer go over a reliable session."""
        for addr, on in self.reliable_peers:
            if addr == peer:
                return on
        return self.reliable

    def rloc_for(self, version: int) -> IPv4Address | IPv6Address | None:
        """Our address of this family as peers see it: the advertised one
        (a static NAT or port forward in front of us), else our RLOC."""
        for rloc in (*self.advertise, *self.rlocs):
            if rloc.version == version:
                return rloc
        return None

    def local_for(self, version: int) -> IPv4Address | IPv6Address | None:
        """Our own RLOC of this family, the address our sockets bind."""
        return next((r for r in self.rlocs if r.version == version), None)


#: RFC 8061 data-plane encryption policies (NodeConfig.encrypt).
ENCRYPT_MODES: Final = ("required", "preferred", "off")

#: Outer IP + UDP + LISP header per RLOC family (RFC 9300 section 7.1 "H").
OVERHEAD: Final = {4: 20 + 8 + 8, 6: 40 + 8 + 8}
NEGATIVE_ACTIONS: Final = ("drop", "native")


@dataclass(frozen=True, slots=True)
class DataPlaneConfig:
    """What the forwarding decision needs besides the Node's own config."""

    #: What a negative map-cache entry does with a packet: "drop" it, or
    #: "native": send it into the underlay unencapsulated. A configured
    #: `petr` takes precedence over both.
    negative_action: str = "drop"
    #: Proxy-ETR that negative entries are encapsulated to (RFC 6832).
    petr: IPAddress | None = None
    #: Packets that may wait for a mapping, in all.
    queue_size: int = 64
    #: Seconds a waiting packet stays useful.
    queue_timeout: float = 3.0
    #: The largest outer packet the underlay carries; bigger ones get an ICMP.
    underlay_mtu: int = 1500
    #: ICMP errors per second we may generate (RFC 1812 4.3.2.8 rate limit).
    icmp_rate: float = 100.0

    def __post_init__(self) -> None:
        if self.negative_action not in NEGATIVE_ACTIONS:
            raise ValueError(f"negative_action must be one of {NEGATIVE_ACTIONS}")
        if self.queue_size < 0:
            raise ValueError("queue_size must not be negative")
        if self.underlay_mtu < 576 + OVERHEAD[6]:
            raise ValueError(f"underlay_mtu must be at least {576 + OVERHEAD[6]}")
