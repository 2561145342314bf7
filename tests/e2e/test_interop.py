"""Interop with plain LISP (issue 14): the group beside xTRs and systems outside it.

A: a plain xTR (tests/e2e/plain_xtr.py, not a group member) registers its
site to one member, and every member answers for it and sends it traffic.
B: a member registers its EIDs to an outside Map-Server and resolves through
an outside Map-Resolver, a stub written here that parses every message by
hand (struct only, no decent.wire), so the node's wire format is checked by
code that does not share its codecs.

Both run on the namespace lab; the xTR and the stub each have a client
namespace of their own on the bridge, their sockets made there by a thread
(hostile.in_namespace), driven from this process. Waits are for conditions,
with generous bounds; the machine is shared.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import select
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_network
from typing import Any, Final, TypeVar

import pytest

from decent.lab import CONTROL_PORT, NetnsLab
from decent.wire import (
    AfiList,
    AlgorithmId,
    Eid,
    MapNotify,
    MapReply,
    check_auth,
    decapsulate,
    decode,
)
from tests.e2e.hostile import in_namespace
from tests.e2e.plain_xtr import PlainXtr
from tests.e2e.test_dataplane import V4, _icmp_echo, cache_entry, go, node_counters

pytestmark = pytest.mark.e2e
T = TypeVar("T")
MakeLab = Callable[..., NetnsLab]

CONVERGE: Final = 30.0
#: Bound on any one condition (a registration relayed, a route installed).
SETTLE: Final = 30.0

SITE_PREFIX: Final = "10.21.0.0/24"
SITE_HOST: Final = "10.21.0.5"
SITE_KEY: Final = b"branch-secret"
SITE: Final = f"""
[[site]]
name = "branch"
key = "{SITE_KEY.decode()}"
algorithm = "sha1"
eids = ["{SITE_PREFIX}"]
accept_more_specifics = true
nonces = "any"
allow_unauthenticated = false
"""

STUB_KEY: Final = b"stub-secret"
#: What the stub Map-Resolver knows: this prefix, at the stub's own address.
STUB_PREFIX: Final = "10.99.0.0/16"
STUB_QUERY: Final = "10.99.0.1"


# ================================================================ A
def _site_entry(lab: NetnsLab, i: int, prefix: str) -> dict[str, Any] | None:
    for site in lab.api(i, "/api/sites"):
        if site["eid"] == f"[0]{prefix}":
            return dict(site)
    return None


def _eventually(lab: NetnsLab, get: Callable[[], T | None], what: str) -> T:
    """Wait (SETTLE s) until get() gives something; return it."""
    got: list[T] = []

    def ready() -> bool:
        value = get()
        if value is not None:
            got.append(value)
        return value is not None

    lab.wait_until(ready, SETTLE, what)
    return got[-1]


def _answer_for(lab: NetnsLab, i: int, eid: str) -> MapReply | None:
    """Node i's Map-Reply to an ECM'd Map-Request for eid, if positive."""
    reply = lab.lookup_over_udp(i, eid, timeout=2.0)
    return reply if reply.records and reply.records[0].locators else None


def _lisp_packet_to(xtr: PlainXtr, src: str, dst: str) -> tuple[bytes, str] | None:
    """A data packet that reached the xTR carrying IPv4 src -> dst (payload,
    sender), waiting half a second for one."""
    for payload, (sender, _) in xtr.receive_data(0.5):
        _, inner = decapsulate(payload)
        if (
            inner[0] >> 4 == 4
            and IPv4Address(inner[12:16]) == IPv4Address(src)
            and IPv4Address(inner[16:20]) == IPv4Address(dst)
        ):
            return payload, sender
    return None


def test_a_plain_xtr_registers_to_one_member_and_every_member_answers_for_it(
    make_lab: MakeLab,
) -> None:
    lab = make_lab(dataplane=True)
    for i in lab.nodes:
        lab.configure(i, extra=SITE)
    # A plain xTR sends no Security Key (RFC 8061): only a "preferred" member
    # talks to it in clear; "required", the default, would refuse it.
    lab.configure(2, dataplane={"routes": [SITE_PREFIX], "encrypt": "preferred"})
    xtr = PlainXtr(lab, SITE_PREFIX, SITE_KEY)
    pinger: subprocess.Popen[bytes] | None = None
    try:
        go(lab)
        n1, n2 = lab.node(1).rloc, lab.node(2).rloc

        # -- it registers to n1 (SHA-1, Key ID 0) and n1 acknowledges.
        data, nonces = xtr.register(n1, SETTLE)
        notify = decode(data)
        assert isinstance(notify, MapNotify)
        assert notify.nonce in nonces
        assert (notify.key_id, notify.alg_id) == (0, AlgorithmId.HMAC_SHA_1_96)
        assert len(notify.auth_data) == 20
        assert check_auth(data, SITE_KEY), "the Map-Notify's HMAC-SHA-1 is wrong"
        assert [Eid.from_wire(r.eid, r.mask_len) for r in notify.records] == [
            Eid.prefix(SITE_PREFIX)
        ]

        # -- n1 carries it to n2 and n3; each holds it under the site.
        for i in lab.nodes:
            entry = _eventually(
                lab,
                partial(_site_entry, lab, i, SITE_PREFIX),
                f"n{i} to hold the xTR's registration",
            )
            assert entry["site"] == "branch", (i, entry)
            # The page shows the address inside the AFI list, and its name.
            rlocs = [(r["address"], r.get("name")) for r in entry["rlocs"]]
            assert rlocs == [(str(xtr.address), "vm")], (i, entry)
            if i == 1:
                assert entry["auth"] == "hmac-sha-1", entry
                assert entry["proxy_reply"] is True, entry

        # -- every member proxy-replies for it (RFC 9301 5.4): A clear, L
        # clear on every locator, the AFI list as registered.
        for i in lab.nodes:
            reply = _eventually(
                lab,
                partial(_answer_for, lab, i, SITE_HOST),
                f"n{i} to answer for {SITE_HOST}",
            )
            (record,) = reply.records
            got = Eid.from_wire(record.eid, record.mask_len)
            assert got == Eid.prefix(SITE_PREFIX), (i, record)
            assert not record.authoritative, (i, record)
            for loc in record.locators:
                assert not loc.local, (i, loc)
                assert isinstance(loc.address, AfiList), (i, loc)
                assert loc.rloc == xtr.address, (i, loc)
                assert loc.name == "vm", (i, loc)

        # -- n2's EID reaches the xTR: n2 encapsulates to the address inside
        # the AFI list (the socket is bound to it alone, on port 4341).
        lab.wait_until(
            lambda: SITE_PREFIX in lab.api(2, "/api/node")["dataplane"]["routes"],
            SETTLE,
            f"n2's route to {SITE_PREFIX}",
        )
        pinger = lab.popen(
            2,
            *("ping", "-i", "0.2", "-W", "1", "-I", V4[2], SITE_HOST),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        payload, sender = _eventually(
            lab,
            partial(_lisp_packet_to, xtr, V4[2], SITE_HOST),
            f"a LISP data packet {V4[2]} -> {SITE_HOST} at the xTR",
        )
        assert IPv4Address(sender) == n2
        _, inner = decapsulate(payload)
        assert inner[9] == socket.IPPROTO_ICMP

        # -- and back: the xTR encapsulates from its site to n2, whose ETR
        # takes the packet (its source is the RLOC inside the AFI list).
        before = lab.api(2, "/api/node")
        decapsulated = before["dataplane"]["decapsulated-packets"]
        unknown = before["counters"].get("drop.unknown-rloc", 0)
        echo = _icmp_echo(SITE_HOST, V4[2])

        def delivered() -> bool:
            xtr.send_data(echo, n2)
            stats = lab.api(2, "/api/node")["dataplane"]
            return bool(stats["decapsulated-packets"] > decapsulated)

        lab.wait_until(delivered, SETTLE, "n2 to decapsulate the xTR's packet")
        assert node_counters(lab, 2).get("drop.unknown-rloc", 0) == unknown
        print(f"the xTR answered {xtr.probes_answered} RLOC probes")
    finally:
        if pinger is not None:
            pinger.kill()
            pinger.wait()
        xtr.close()


# ================================================================ B
# The stub parses and builds every message with struct, by RFC 9301's
# layouts, so that a mistake shared by the node's codecs and its tests shows.
_AFI_IPV4: Final = 1
_AFI_IPV6: Final = 2
_AFI_NAME: Final = 17
_AFI_LCAF: Final = 16387
_LCAF_IID: Final = 2
_MAP_REQUEST, _MAP_REPLY, _MAP_REGISTER, _MAP_NOTIFY, _ECM = 1, 2, 3, 4, 8
_REG_XTR_ID: Final = 0x02000000
_REG_WANT_NOTIFY: Final = 0x00000100
_REQ_PROBE: Final = 0x02000000
_REP_PROBE: Final = 0x08000000
_REC_AUTHORITATIVE: Final = 0x1000
_LOC_REACHABLE: Final = 0x0001
_SHA1: Final = 1
_SHA1_LEN: Final = 20


class Malformed(ValueError):
    """The stub could not parse a message."""


@dataclass(frozen=True, slots=True)
class WireAddress:
    """An address as read off the wire: its kind ("ipv4", "ipv6", "name",
    "none", "lcaf<type>"), text, and the instance ID around it if any."""

    kind: str
    text: str
    iid: int | None = None


def _read_address(data: bytes, pos: int, depth: int = 0) -> tuple[WireAddress, int]:
    (afi,) = struct.unpack_from("!H", data, pos)
    pos += 2
    if afi == 0:
        return WireAddress("none", "-"), pos
    if afi == _AFI_IPV4:
        return WireAddress("ipv4", str(IPv4Address(data[pos : pos + 4]))), pos + 4
    if afi == _AFI_IPV6:
        return WireAddress("ipv6", str(IPv6Address(data[pos : pos + 16]))), pos + 16
    if afi == _AFI_NAME:
        end = data.index(b"\x00", pos)
        return WireAddress("name", data[pos:end].decode("ascii")), end + 1
    if afi == _AFI_LCAF and depth < 4:
        _, _, lcaf_type, _, length = struct.unpack_from("!BBBBH", data, pos)
        body = pos + 6
        if body + length > len(data):
            raise Malformed(f"LCAF of {length} bytes past the end at {pos}")
        if lcaf_type == _LCAF_IID:
            (iid,) = struct.unpack_from("!I", data, body)
            inner, end = _read_address(data, body + 4, depth + 1)
            if end != body + length:
                raise Malformed(f"instance-ID LCAF length {length} at {pos}")
            return WireAddress(inner.kind, inner.text, iid), end
        return WireAddress(f"lcaf{lcaf_type}", data[body : body + length].hex()), (
            body + length
        )
    raise Malformed(f"AFI {afi} at {pos - 2}")


@dataclass(frozen=True, slots=True)
class StubRecord:
    """One EID-record as the stub read it."""

    eid: WireAddress
    mask_len: int
    ttl: int
    locators: tuple[WireAddress, ...]

    @property
    def prefix(self) -> str:
        return f"{self.eid.text}/{self.mask_len}"


def _read_records(data: bytes, pos: int, count: int) -> tuple[list[StubRecord], int]:
    records = []
    for _ in range(count):
        ttl, loc_count, mask_len, _, _ = struct.unpack_from("!IBBHH", data, pos)
        eid, pos = _read_address(data, pos + 10)
        locators = []
        for _ in range(loc_count):
            loc, pos = _read_address(data, pos + 6)  # priorities, weights, flags
            locators.append(loc)
        records.append(StubRecord(eid, mask_len, ttl, tuple(locators)))
    return records, pos


@dataclass
class Registration:
    """A Map-Register the stub received, and what it made of it."""

    source: tuple[str, int]
    nonce: int
    key_id: int
    alg_id: int
    auth_len: int
    verified: bool
    want_notify: bool
    records: list[StubRecord]


@dataclass
class Request:
    """A Map-Request the stub received (inside an ECM or bare)."""

    source: tuple[str, int]
    in_ecm: bool
    probe: bool
    nonce: int
    itr_rlocs: list[WireAddress]
    eids: list[tuple[WireAddress, int]]
    answered: bool = False


@dataclass
class StubMapServer:
    """An outside Map-Server and Map-Resolver on UDP 4342 of its own address.

    It accepts a Map-Register whose HMAC-SHA-1 (Key ID 0, full 20 bytes,
    over the whole message with the auth field zeroed) checks with `key`,
    and answers with a Map-Notify when M is set; it answers Map-Requests
    (in an ECM, or RLOC probes) for the prefixes in `knows`, each mapped to
    one locator, with a Map-Reply to the first ITR-RLOC at the request's
    source port. Everything it receives is recorded, malformed or not.
    """

    sock: socket.socket
    address: IPv4Address
    key: bytes
    knows: dict[IPv4Network, IPv4Address]
    registrations: list[Registration] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def summary(self) -> str:
        """What the stub received, for a failing test's output."""
        lines = [f"stub {self.address}:"]
        lines += [f"  register {r}" for r in self.registrations]
        lines += [f"  request {r}" for r in self.requests]
        lines += [f"  malformed {m}" for m in self.malformed]
        return "\n".join(lines)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="stub-ms")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.sock.close()

    def _serve(self) -> None:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            data, src = self.sock.recvfrom(65535)
            try:
                self._handle(data, src)
            except (Malformed, ValueError, IndexError, struct.error) as exc:
                self.malformed.append(f"{src}: {exc!r}: {data.hex()}")

    def _handle(self, data: bytes, src: tuple[str, int]) -> None:
        kind = data[0] >> 4
        if kind == _MAP_REGISTER:
            self._register(data, src)
        elif kind == _ECM:
            self._ecm(data, src)
        elif kind == _MAP_REQUEST:
            self._request(data, src, src, in_ecm=False)
        else:
            raise Malformed(f"unexpected message type {kind}")

    # ------------------------------------------------------------ Map-Server
    def _register(self, data: bytes, src: tuple[str, int]) -> None:
        first, nonce, key_id, alg_id, auth_len = struct.unpack_from("!IQBBH", data)
        end = 16 + auth_len
        zeroed = data[:16] + bytes(auth_len) + data[end:]
        mac = hmac.new(self.key, zeroed, hashlib.sha1).digest()
        verified = (
            key_id == 0
            and alg_id == _SHA1
            and auth_len == _SHA1_LEN
            and hmac.compare_digest(mac, data[16:end])
        )
        records, pos = _read_records(data, end, first & 0xFF)
        trailer = 24 if first & _REG_XTR_ID else 0
        if pos + trailer != len(data):
            raise Malformed(f"Map-Register: {len(data) - pos} bytes after records")
        want = bool(first & _REG_WANT_NOTIFY)
        self.registrations.append(
            Registration(src, nonce, key_id, alg_id, auth_len, verified, want, records)
        )
        if verified and want:
            # RFC 9301 5.7: the nonce and records of the Map-Register, and
            # the MAC computed anew over the Map-Notify.
            head = struct.pack(
                "!IQBBH", (_MAP_NOTIFY << 28) | (first & 0xFF), nonce, 0, _SHA1, 20
            )
            body = data[end:pos]
            mac = hmac.new(self.key, head + bytes(20) + body, hashlib.sha1).digest()
            self.sock.sendto(head + mac + body, src)

    # ------------------------------------------------------------ Map-Resolver
    def _ecm(self, data: bytes, src: tuple[str, int]) -> None:
        ip = 4
        version = data[ip] >> 4
        if version == 4:
            udp = ip + (data[ip] & 0x0F) * 4
        elif version == 6:
            udp = ip + 40
        else:
            raise Malformed(f"ECM: inner IP version {version}")
        sport, _, length, _ = struct.unpack_from("!HHHH", data, udp)
        inner = data[udp + 8 : udp + length]
        if not inner or inner[0] >> 4 != _MAP_REQUEST:
            raise Malformed("ECM without a Map-Request")
        self._request(inner, src, (src[0], sport), in_ecm=True)

    def _request(
        self,
        data: bytes,
        src: tuple[str, int],
        reply_to: tuple[str, int],
        *,
        in_ecm: bool,
    ) -> None:
        first, nonce = struct.unpack_from("!IQ", data)
        _, pos = _read_address(data, 12)  # source EID
        itr_rlocs = []
        for _ in range(((first >> 8) & 0x1F) + 1):
            rloc, pos = _read_address(data, pos)
            itr_rlocs.append(rloc)
        eids = []
        for _ in range(first & 0xFF):
            (mask_len,) = struct.unpack_from("!B", data, pos + 1)
            eid, pos = _read_address(data, pos + 2)
            eids.append((eid, mask_len))
        probe = bool(first & _REQ_PROBE)
        request = Request(src, in_ecm, probe, nonce, itr_rlocs, eids)
        self.requests.append(request)
        v4 = [r for r in itr_rlocs if r.kind == "ipv4"]
        if not v4 or len(eids) != 1 or eids[0][0].kind != "ipv4":
            return
        asked = IPv4Address(eids[0][0].text)
        for prefix, locator in self.knows.items():
            if asked in prefix:
                reply = self._map_reply(nonce, prefix, locator, probe)
                self.sock.sendto(reply, (v4[0].text, reply_to[1]))
                request.answered = True
                return

    @staticmethod
    def _map_reply(
        nonce: int, prefix: IPv4Network, rloc: IPv4Address, probe: bool
    ) -> bytes:
        first = (_MAP_REPLY << 28) | (_REP_PROBE if probe else 0) | 1
        record = struct.pack(
            "!IBBHHH4s",
            10,  # minutes
            1,
            prefix.prefixlen,
            _REC_AUTHORITATIVE,
            0,
            _AFI_IPV4,
            prefix.network_address.packed,
        )
        locator = struct.pack(
            "!BBBBHH4s", 1, 100, 255, 0, _LOC_REACHABLE, _AFI_IPV4, rloc.packed
        )
        return struct.pack("!IQ", first, nonce) + record + locator


@contextlib.contextmanager
def stub_map_server(lab: NetnsLab, name: str = "stub") -> Iterator[StubMapServer]:
    """The stub in a client namespace of its own, serving until the end."""
    ns, (address,) = lab.add_client(name)

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((str(address), CONTROL_PORT))
        return s

    net = ip_network(STUB_PREFIX)
    assert isinstance(net, IPv4Network)
    stub = StubMapServer(in_namespace(ns, make), address, STUB_KEY, {net: address})
    stub.start()
    try:
        yield stub
    finally:
        stub.close()
        print(stub.summary())


def _xtr_section(stub: IPv4Address) -> str:
    server = (
        f'{{ address = "{stub}", key = "{STUB_KEY.decode()}", algorithm = "sha1" }}'
    )
    return f"""
[xtr]
map_servers = [{server}]
map_resolvers = ["{stub}"]
"""


def test_a_node_registers_with_sha1_to_an_outside_map_server_and_resolves_through_it(
    make_lab: MakeLab,
) -> None:
    lab = make_lab(dataplane=True)
    with stub_map_server(lab) as stub:
        lab.configure(
            1, extra=_xtr_section(stub.address), dataplane={"routes": [STUB_PREFIX]}
        )
        go(lab)
        n1 = lab.node(1).rloc

        # -- n1 registers its IP EIDs to the stub, signed with the stub's key.
        def registered() -> bool:
            return any(
                r.verified and "192.0.2.1/32" in {x.prefix for x in r.records}
                for r in stub.registrations
            )

        lab.wait_until(registered, SETTLE, "n1's Map-Register at the stub")
        assert stub.malformed == []
        assert stub.registrations
        own_eids = {"192.0.2.1/32", "2001:db8::1/128"}
        for reg in stub.registrations:
            assert IPv4Address(reg.source[0]) == n1, reg
            assert (reg.key_id, reg.alg_id, reg.auth_len) == (0, _SHA1, 20), reg
            assert reg.verified, reg
            # Its own IP EIDs only: not its name, not the group membership.
            for rec in reg.records:
                assert rec.eid.kind in ("ipv4", "ipv6"), rec
                assert rec.prefix in own_eids, rec
                assert rec.eid.iid in (None, 0), rec
                assert rec.locators, rec

        # -- n1's ITR asks the stub, in an ECM, for an EID the group lacks.
        def asks_for(r: Request) -> bool:
            return any(e.kind == "ipv4" and e.text == STUB_QUERY for e, _ in r.eids)

        def asked() -> bool:
            lab.exec(1, "ping", "-c", "1", "-W", "1", "-I", V4[1], STUB_QUERY)
            return any(r.in_ecm and asks_for(r) for r in stub.requests)

        lab.wait_until(asked, SETTLE, f"n1 to ask the stub for {STUB_QUERY}")
        assert stub.malformed == []
        request = next(r for r in stub.requests if r.in_ecm and asks_for(r))
        assert IPv4Address(request.source[0]) == n1
        assert [a.text for a in request.itr_rlocs if a.kind == "ipv4"] == [str(n1)]
        assert request.answered

        # -- the stub's answer is in n1's map-cache.
        entry = _eventually(
            lab,
            partial(cache_entry, lab, 1, f"[0]{STUB_PREFIX}"),
            f"{STUB_PREFIX} in n1's map-cache",
        )
        assert not entry["negative"]
        assert [r["address"] for r in entry["rlocs"]] == [str(stub.address)]

        # -- and n1 is still a member like any other.
        lab.wait_converged(CONVERGE)
        assert lab.healthy(1)
