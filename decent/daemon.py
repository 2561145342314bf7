"""The running node: config, core and shells wired, state saved, SIGHUP reloads."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import os
import random
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from decent.config import Config, ConfigError, load_config
from decent.net.dns import PullDns
from decent.net.persist import NodeKeyError, RevocationSaver, SnapshotSaver, StateDir
from decent.net.reliable import ReliableShell
from decent.net.roaming import AddressWatch, Roamer
from decent.net.status import NodeStatus
from decent.net.traffic import (
    TrafficHistory,
    TrafficSampler,
    control_counts,
    peer_counts,
)
from decent.net.tun import DataPlaneUnavailable, TunSettings, TunShell
from decent.net.udp import BindError, NodeShell, open_sockets
from decent.peer.config import NodeConfig, TrustConfig
from decent.peer.dataplane import DataPlane, DataPlaneConfig
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.web.app import make_app
from decent.web.limits import start_site
from decent.wire import DecodeError, Eid, IPAddress
from decent.wire.crypto import SUITES
from decent.wire.trust import Certificate, Revocation, node_xtr_id, public_key_of

log = logging.getLogger("decent")
#: How often the registration snapshot and nonce reservation are saved.
SAVE_INTERVAL = 5.0


#: gen-0 threshold raised from CPython's 700; measured ~5% more Map-Replies/s.
GC_THRESHOLDS = (20_000, 10, 10)


def node_config(
    cfg: Config, xtr_id: int, trust: TrustConfig | None = None
) -> NodeConfig:
    return decent_node_config(
        name=cfg.name,
        rlocs=cfg.rlocs,
        group=cfg.group,
        key=cfg.key,
        xtr_id=xtr_id,
        eids=cfg.database,
        seeds=cfg.seeds,
        mode=cfg.mode,
        iid=cfg.instance_id,
        ttl=cfg.ttl,
        control_port=cfg.control_port,
        data_port=cfg.data_port,
        register_interval=cfg.register_interval,
        group_lookup_interval=cfg.group_lookup_interval or None,
        map_reply_rate=cfg.map_reply_rate,
        map_reply_burst=cfg.map_reply_burst,
        probe_interval=(
            cfg.probe_interval if cfg.dataplane and cfg.probe_interval > 0 else None
        ),
        resolve_in_process=True,
        rloc_policy=cfg.rloc_policy,
        eid_ttls=cfg.database_ttls,
        mobile=cfg.mobile,
        limits=cfg.limits,
        auth_algorithms=cfg.auth_algorithms,
        sites=cfg.sites,
        outside_map_servers=cfg.outside_map_servers,
        outside_map_resolvers=cfg.outside_map_resolvers,
        wire_form=cfg.wire_form,
        trust=trust,
        reliable=cfg.reliable,
        reliable_peers=cfg.reliable_peers,
        nat="off" if cfg.pull else cfg.nat,
        relay=cfg.relay,
        nat_keepalive=cfg.nat_keepalive,
        nat_recheck=cfg.nat_recheck,
        advertise=cfg.advertise,
        pull=cfg.pull,
        core=cfg.core,
        layer_prefixes=cfg.layer_prefixes,
        # Without a data plane there is nothing to key: keyed probes are
        # answered without a key (RFC 8061 6), so peers know not to encrypt.
        encrypt=cfg.encrypt if cfg.dataplane else "off",
        cipher_suite=SUITES[cfg.cipher],
        rekey_seconds=cfg.rekey_seconds,
        rekey_packets=cfg.rekey_packets,
    )


def trust_config(
    cfg: Config, node_key: bytes, key_file: Path, epoch: float
) -> TrustConfig | None:
    """The core's [trust]: mesh key and certificate from the config, the
    private key from state_dir/node.key, which the certificate must name.
    `epoch` is the Unix time at which the node's clock (loop.time) reads 0."""
    if cfg.trust_mesh_key is None or cfg.trust_certificate is None:
        return None
    cert = Certificate.decode(cfg.trust_certificate)
    if cert.public_key != public_key_of(node_key):
        raise ConfigError(
            f"{cfg.path}: [trust] certificate: this certificate is for another "
            f"node key than {key_file}'s; put back the node.key it was issued "
            "with (`decent join` writes it), or ask the mesh authority for a "
            "new invite and join with it"
        )
    return TrustConfig(
        mesh_public_key=cfg.trust_mesh_key,
        certificate=cfg.trust_certificate,
        node_private_key=node_key,
        epoch=epoch,
    )


def node_xtr_id_for(trust: TrustConfig | None, random_id: int) -> int:
    """With [trust] the xTR-ID derives from the node's public key, so the
    registrations a certificate signs are bound to that key; without, the
    identity file's random one."""
    if trust is None:
        return random_id
    return node_xtr_id(public_key_of(trust.node_private_key))


def restore_revocations(
    node: Node, saved: list[bytes], mono_now: float, wall_now: float
) -> int:
    """Feed the revocations saved before a restart to the node, dropping
    those past their certificate's end (nothing left to refuse). Returns
    how many it took; the rest are logged."""
    taken = 0
    for data in saved:
        try:
            rev = Revocation.decode(data)
        except (DecodeError, ValueError) as exc:
            log.warning("skipped a saved revocation that does not decode: %s", exc)
            continue
        if rev.not_after <= wall_now:
            continue
        reason = node.add_revocation(data, mono_now)
        if reason:
            log.warning(
                "saved revocation of %s (serial %016x) not taken: %s",
                rev.name,
                rev.serial,
                reason,
            )
        else:
            taken += 1
    return taken


def log_sites(cfg: Config) -> None:
    """Say at start which [[site]] tables relax RFC 9301's rules."""
    for site in cfg.sites:
        if site.allow_unauthenticated:
            log.warning(
                "site %s accepts unauthenticated Map-Registers (Key ID/Alg 0): "
                "insecure, anyone on the path can register its EIDs",
                site.name,
            )
        if site.relaxed_nonces:
            log.info(
                'site %s accepts any Map-Register nonce (nonces = "any"): '
                "no RFC 9301 5.6 replay check for it",
                site.name,
            )


def _systems(cfg: Config) -> str:
    """The mapping systems a node takes part in, for its start-up line."""
    parts = [] if cfg.group is None else [f"group {cfg.group} ({cfg.mode})"]
    if cfg.core:
        parts.append(f"a layer of the core at {', '.join(map(str, cfg.core))}")
    if cfg.pull is not None:
        parts.append(
            f"pull mode: {cfg.pull.modulus} map-server sets "
            f"0..{cfg.pull.modulus - 1}.{cfg.pull.dns_suffix}"
        )
    if cfg.outside_map_servers:
        servers = ", ".join(_where(ms.address) for ms in cfg.outside_map_servers)
        parts.append(f"map-servers {servers}")
    if cfg.outside_map_resolvers:
        resolvers = ", ".join(_where(mr) for mr in cfg.outside_map_resolvers)
        parts.append(f"map-resolvers {resolvers}")
    return ", ".join(parts)


def _where(addr: tuple[IPAddress, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if host.version == 6 else f"{host}:{port}"


def build_node(
    cfg: Config,
    xtr_id: int,
    register_nonce: int,
    now: float,
    trust: TrustConfig | None = None,
) -> Node:
    return Node(
        node_config(cfg, xtr_id, trust),
        nonce=lambda: secrets.randbits(64),
        now=now,
        register_nonce=register_nonce,
    )


#: What SIGHUP applies to a running node; anything else needs a restart.
RELOADABLE = frozenset({"database", "database_ttls", "log_level"})


def reload_config(cfg: Config, node: Node, now: float) -> Config:
    """SIGHUP: apply the config file's `[[database]]` (and `log_level`) to
    the running node and return the config now in force.

    New or changed EIDs are registered to the group at once (with SMRs to
    the ITRs that recently used them), removed ones deregistered with TTL 0,
    so peers follow within a round trip instead of a registration period. A
    file that no longer loads changes nothing."""
    try:
        new = load_config(cfg.path)
    except ConfigError as exc:
        log.error("reload refused, the running config stays: %s", exc)
        return cfg
    # With [node] interface the RLOCs follow the interface (roaming): a
    # different address set now is no config change.
    skip = RELOADABLE | ({"rlocs", "rloc_policy"} if cfg.interface else set())
    fixed = [
        f.name
        for f in dataclasses.fields(Config)
        if f.name not in skip and getattr(new, f.name) != getattr(cfg, f.name)
    ]
    if fixed:
        log.warning("reload: %s changed; restart the node for that", ", ".join(fixed))
    new = dataclasses.replace(
        cfg,
        database=new.database,
        database_ttls=new.database_ttls,
        log_level=new.log_level,
    )
    logging.getLogger().setLevel(new.log_level.upper())
    held = {m.eid: m for m in node.database_mappings()}
    # Our mappings' locators (the membership's RLE too) follow the link watch
    # and a roaming RLOC, not the file: kept ones keep theirs (the name's
    # too), new EIDs take the name's.
    live = held.get(Eid.name(cfg.name, cfg.instance_id))
    wanted = []
    for mapping in node_config(new, node.config.xtr_id, node.config.trust).database:
        if live is not None:
            kept = held.get(mapping.eid)
            locators = live.locators if kept is None else kept.locators
            mapping = dataclasses.replace(mapping, locators=locators)
        wanted.append(mapping)
    changed, gone = node.apply_database(wanted, now)
    log.info("reload: %d EIDs added or changed, %d removed", len(changed), len(gone))
    return new


async def run_node(cfg: Config, stop: asyncio.Event | None = None) -> int:
    """Run one node until SIGTERM/SIGINT (or `stop`), then deregister."""
    loop = asyncio.get_running_loop()
    state = StateDir(cfg.state_dir)
    try:
        state.prepare()
        ident = state.load_identity()
        node_key = state.load_node_key()
    except NodeKeyError as exc:
        raise ConfigError(f"{cfg.path}: [node] state_dir: {exc}") from None
    except OSError as exc:
        raise ConfigError(
            f"{cfg.path}: [node] state_dir: cannot use {cfg.state_dir} ({exc}); "
            "point it at a writable directory"
        ) from None
    log_sites(cfg)
    trust = trust_config(cfg, node_key, state.key_file, epoch=time.time() - loop.time())
    xtr_id = node_xtr_id_for(trust, ident.xtr_id)
    node = build_node(cfg, xtr_id, ident.start_nonce, loop.time(), trust)
    restored = state.load_snapshot(node, loop.time(), time.time())
    if restored:
        log.info("restored %d registrations from %s", restored, state.snapshot_file)
    revoked = restore_revocations(
        node, state.load_revocations(), loop.time(), time.time()
    )
    if revoked:
        log.info("restored %d revocations from %s", revoked, state.revocations_file)
    try:
        sockets = open_sockets(
            cfg.rlocs[0],
            cfg.control_port,
            cfg.data_port,
            group=cfg.group,
            multicast=cfg.mode == "multicast",
            multicast_ttl=cfg.multicast_ttl,
        )
    except BindError as exc:
        raise ConfigError(_bind_problem(cfg, exc)) from None
    shell = NodeShell(
        node, sockets, loop, log_rate=cfg.log_rate, log_burst=cfg.log_burst
    )
    pull_dns = PullDns(shell, cfg.dns_servers) if cfg.pull else None
    saver = SnapshotSaver(state, node)
    shell.subscribe(saver.note)
    revocations = RevocationSaver(state, node)
    shell.subscribe(revocations.note)
    tun = _dataplane(cfg, node, shell, loop) if cfg.dataplane else None
    status = NodeStatus(
        node,
        loop.time,
        name=cfg.name,
        started=loop.time(),
        register_interval=cfg.register_interval,
        errors=lambda: dict(shell.errors) | (dict(tun.errors) if tun else {}),
        dataplane=lambda: _dataplane_status(cfg, node, tun),
        flush=shell.flush,
        restored=restored,
    )
    shell.subscribe(status.note)
    # The /mesh page's traffic over time ([web] traffic_sample_seconds).
    traffic = TrafficSampler(
        TrafficHistory(cfg.traffic_sample_seconds),
        lambda: (peer_counts(status.dataplane()), control_counts(node.counters)),
        loop,
        time.time,
    )
    app = make_app(
        status,
        admin_token=cfg.admin_token,
        limits=cfg.web_limits,
        traffic=traffic.history,
    )
    runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    try:
        await start_site(runner, cfg.web_host, cfg.web_port)
    except OSError as exc:
        shell.close()
        await runner.cleanup()
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        fix = (
            "another process (another node?) has it: stop it or pick a free port"
            if exc.errno == errno.EADDRINUSE
            else "use an address of this host and a free port"
        )
        raise ConfigError(
            f"{cfg.path}: [web] listen: cannot listen on "
            f"{cfg.web_host}:{cfg.web_port} ({why}); {fix}"
        ) from None
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        nonlocal cfg
        cfg = reload_config(cfg, node, loop.time())
        shell.flush()
        if tun is not None:
            tun.sync_eids()

    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, reload)
    # Start-up objects (modules, config, restored registrations) live as long
    # as the process: keep the cyclic collector from re-walking them, and let
    # it run less often on the per-datagram garbage, which holds no cycles.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    shell.start()
    streams = None
    if node.config.reliable_anywhere:
        streams = ReliableShell(shell, cfg.reliable_keepalive)
        await streams.start()
    if tun is not None:
        try:
            tun.start()
        except DataPlaneUnavailable as exc:
            log.warning("data plane off: %s; the control plane keeps running", exc)
            shell.riders.clear()
            shell.after_flush = None
            tun = None
    stop_roaming = _roaming(cfg, node, shell, loop, lambda: tun)
    traffic.start()
    log.info(
        "node %s up: rloc %s, %s, web on %s:%d%s",
        cfg.name,
        cfg.rlocs[0],
        _systems(cfg),
        cfg.web_host,
        cfg.web_port,
        "" if trust is None else f", certificate of mesh {_mesh(trust)!r}",
    )
    try:
        while not stop.is_set():
            # A failed save (full disk, no fd left) is logged by state and
            # retried next time round: the saver stays dirty until one works.
            state.keep_nonces_reserved(ident, node.register_nonce)
            saver.save(loop.time(), time.time())
            revocations.save()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAVE_INTERVAL)
    finally:
        # Graceful leave: TTL-0 registrations make every peer drop our EIDs
        # and our membership at once instead of after the TTL.
        stop_roaming()
        traffic.close()
        node.deregister(loop.time())
        shell.flush()
        try:
            # Saving logs and returns False on disk trouble; whatever else it
            # might raise must not leave the sockets, routes or web port open.
            state.keep_nonces_reserved(ident, node.register_nonce)
            saver.save(loop.time(), time.time(), force=True)
            revocations.save()
        finally:
            if tun is not None:
                tun.close()
            if streams is not None:
                streams.close()
            if pull_dns is not None:
                pull_dns.close()
            shell.close()
            await runner.cleanup()
            log.info("node %s stopped", cfg.name)
    return 0


def _mesh(trust: TrustConfig) -> str:
    return Certificate.decode(trust.certificate).mesh


def _bind_problem(cfg: Config, exc: BindError) -> str:
    """The ConfigError text for a node socket that could not be bound."""
    why = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.key == "group":
        return (
            f"{cfg.path}: [decent] mode: cannot join the multicast group "
            f"{exc.where} ({why}); put [node] rloc on a multicast-capable "
            'interface, or use mode = "replicate"'
        )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{cfg.path}: [decent] {exc.key}: {exc.where} is in use ({why}); "
            "another process (another node?) has it: stop it or pick a free port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{cfg.path}: [node] rloc: cannot bind {exc.where} ({why}); "
            "use an address of this host"
        )
    return (
        f"{cfg.path}: [node] rloc / [decent] {exc.key}: cannot bind {exc.where} "
        f"({why}); use an address of this host and a free port"
    )


def _dataplane(
    cfg: Config, node: Node, shell: NodeShell, loop: asyncio.AbstractEventLoop
) -> TunShell:
    """The data plane's core and TUN shell, wired to the node's shell."""
    dp = DataPlane(
        node,
        DataPlaneConfig(
            negative_action=cfg.negative_action,
            petr=cfg.petr,
            queue_size=cfg.queue_size,
            underlay_mtu=cfg.underlay_mtu,
        ),
        nonce=_nonce24(),
    )
    tun = TunShell(
        dp,
        TunSettings(
            name=cfg.tun,
            mtu=cfg.tun_mtu,
            table=cfg.route_table,
            routes=cfg.routes,
            max_routes=cfg.max_routes,
        ),
        loop,
        owner=shell,
        flush_control=shell.flush,
    )
    shell.ride(dp)
    shell.after_flush = tun.flush_packets
    return tun


def _roaming(
    cfg: Config,
    node: Node,
    shell: NodeShell,
    loop: asyncio.AbstractEventLoop,
    tun: Callable[[], TunShell | None],
) -> Callable[[], None]:
    """With [node] interface, follow its addresses (LISP-MN): a new one
    moves the node there. Returns what stops it."""
    if cfg.interface is None:
        return lambda: None
    roamer = Roamer(
        shell,
        lambda rloc: open_sockets(
            rloc,
            cfg.control_port,
            cfg.data_port,
            group=cfg.group,
            multicast=cfg.mode == "multicast",
            multicast_ttl=cfg.multicast_ttl,
        ),
        interface=cfg.interface,
        tun=tun,
    )
    watch = AddressWatch(
        cfg.interface,
        loop,
        roamer.move,
        current=node.config.rlocs,
        # Without a group, the socket's family stays first ([xtr] speaks it).
        version=cfg.rlocs[0].version if cfg.group is None else cfg.group.version,
    )
    watch.start()

    def stop() -> None:
        watch.close()
        roamer.close()

    return stop


def _nonce24() -> Callable[[], int]:
    """Per-packet nonces (RFC 9300 5.3) need only be unpredictable to the
    path; a PRNG seeded from secrets costs a tenth of secrets per packet."""
    rng = random.Random(secrets.randbits(64))
    return lambda: rng.getrandbits(24)


def _dataplane_status(
    cfg: Config, node: Node, tun: TunShell | None
) -> dict[str, object]:
    if not cfg.dataplane:
        return {"enabled": False}
    if tun is None:
        return {"enabled": True, "running": False, "encrypt": cfg.encrypt}
    return {
        "enabled": True,
        "running": True,
        "tun": tun.name,
        "mtu": cfg.tun_mtu,
        "encrypt": cfg.encrypt,
        "cipher": cfg.cipher,
        "routes": sorted(tun.installed_routes()),
        "route_table": tun.route_summary(),
        **tun.dp.stats(),
        "peers": tun.dp.sealing.peers(tun.loop.time()),
        # Per peer RLOC, each way; NodeStatus folds it into `peers`.
        "traffic": tun.dp.traffic.rows(),
    }
