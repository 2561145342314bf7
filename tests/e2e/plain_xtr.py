"""A plain xTR on the namespace lab: not a group member, one site's ETR and ITR.

It lives in a client namespace of the lab (`NetnsLab.add_client`) with two
UDP sockets made there by `in_namespace` (tests/e2e/hostile.py): 4342 for
control, 4341 for data, both on its one address. The test process drives
it; a thread answers RLOC probes on 4342 as a real ETR does (RFC 9301 7.1),
so a member that caches the site does not mark its locator down while the
test runs, and queues every other control message for the test to read.
Like an xTR without RFC 8061, it answers a probe that carries a Security
Key (a member asking for a data-plane key) without one, and sends and takes
its data packets in clear (KK = 0).

It registers the way deployed xTRs do (lispers.net): HMAC-SHA-1 with Key
ID 0 and the full 20-byte MAC over the whole message, a random nonce per
Map-Register, an xTR-ID trailer, and its locator as an AFI list
{IPv4 address, distinguished name}. Its messages are built with decent.wire.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import select
import socket
import threading
import time
from ipaddress import IPv4Address
from typing import Final

from decent.lab import CONTROL_PORT, DATA_PORT, NetnsLab
from decent.wire import (
    AfiList,
    AlgorithmId,
    DataHeader,
    DecodeError,
    DistinguishedName,
    Eid,
    Locator,
    MapNotify,
    MapRecord,
    MapRegister,
    MapReply,
    MapRequest,
    decode,
    encapsulate,
    find_security_key,
)
from tests.e2e.hostile import in_namespace

Addr = tuple[str, int]
#: How often an unanswered Map-Register is sent again (with a new nonce).
RESEND: Final = 1.0


def _udp(address: IPv4Address, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((str(address), port))
    return s


def _readable(s: socket.socket, wait: float) -> bool:
    poller = select.poll()
    poller.register(s, select.POLLIN)
    return bool(poller.poll(max(0.0, wait) * 1000))


class PlainXtr:
    """The plain xTR: its namespace, address, sockets and site mapping."""

    def __init__(
        self,
        lab: NetnsLab,
        eid: str,
        key: bytes,
        *,
        name: str = "xtr",
        rloc_name: str = "vm",
        ttl: int = 3,
    ) -> None:
        """A client namespace `name` of lab with one address, the xTR's RLOC;
        it registers the prefix `eid` with `key` (the site's), record TTL
        `ttl` minutes (T bit set: that is the registration's lifetime)."""
        self.ns, (self.address,) = lab.add_client(name)
        self.eid = Eid.prefix(eid)
        self.key = key
        self.rloc_name = rloc_name
        self.ttl = ttl
        self.xtr_id = secrets.randbits(128)
        self.control, self.data = in_namespace(
            self.ns,
            lambda: (_udp(self.address, CONTROL_PORT), _udp(self.address, DATA_PORT)),
        )
        #: Control datagrams other than RLOC probes, as they arrived.
        self.inbox: queue.Queue[tuple[bytes, Addr]] = queue.Queue()
        self.probes_answered = 0
        #: Of those, the probes that carried a Security Key (RFC 8061).
        self.keyed_probes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="plain-xtr")
        self._thread.start()

    # ------------------------------------------------------------ messages
    @property
    def locator(self) -> Locator:
        """Its one RLOC, as an AFI list {address, name} (lispers.net's form)."""
        items = (self.address, DistinguishedName(self.rloc_name))
        return Locator(AfiList(items), priority=1, weight=100, local=True)

    @property
    def record(self) -> MapRecord:
        addr, mask = self.eid.to_wire()
        return MapRecord(addr, mask, (self.locator,), self.ttl, authoritative=True)

    def map_register(self, nonce: int) -> bytes:
        """A Map-Register of its record: P, M and T set, HMAC-SHA-1, Key ID 0."""
        msg = MapRegister(
            nonce,
            (self.record,),
            proxy_reply=True,
            want_map_notify=True,
            ttl_timeout=True,
            xtr_id=self.xtr_id,
        )
        return msg.signed(self.key, AlgorithmId.HMAC_SHA_1_96).encode()

    # ------------------------------------------------------------ control
    def register(self, ms: IPv4Address, timeout: float) -> tuple[bytes, set[int]]:
        """Register to the Map-Server at ms until it answers with a
        Map-Notify carrying the nonce of one of the Map-Registers sent (each
        attempt has a new random nonce). Returns the Map-Notify as it came
        and the nonces sent; TimeoutError if none came in `timeout` s."""
        nonces: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nonce = secrets.randbits(64)
            nonces.add(nonce)
            self.control.sendto(self.map_register(nonce), (str(ms), CONTROL_PORT))
            until = min(deadline, time.monotonic() + RESEND)
            while (left := until - time.monotonic()) > 0:
                try:
                    data, _ = self.inbox.get(timeout=left)
                except queue.Empty:
                    break
                with contextlib.suppress(DecodeError):
                    msg = decode(data)
                    if isinstance(msg, MapNotify) and msg.nonce in nonces:
                        return data, nonces
        raise TimeoutError(f"no Map-Notify from {ms} in {timeout} s")

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not _readable(self.control, 0.1):
                continue
            try:
                data, addr = self.control.recvfrom(65535)
            except OSError:
                return  # closed
            try:
                msg = decode(data)
            except DecodeError:
                msg = None
            if isinstance(msg, MapRequest) and msg.probe:
                self._answer_probe(msg, addr)
            else:
                self.inbox.put((data, addr))

    def _answer_probe(self, request: MapRequest, addr: Addr) -> None:
        # RFC 9301 7.1: the ETR answers with its own mapping, A bit set
        # (a prober discards a reply without it), to the probe's source.
        # A Security Key among the ITR-RLOCs is ignored: the reply carries
        # none, which tells the prober we do not decrypt (RFC 8061 6).
        # Counted before the answer goes: what the prober does next may be
        # seen by the test before this thread runs again.
        if any(find_security_key(a) is not None for a in request.itr_rlocs):
            self.keyed_probes += 1
        reply = MapReply(request.nonce, (self.record,), probe=True)
        with contextlib.suppress(OSError):
            self.control.sendto(reply.encode(), addr)
            self.probes_answered += 1

    # ------------------------------------------------------------ data
    def receive_data(self, wait: float) -> list[tuple[bytes, Addr]]:
        """The LISP data packets (UDP 4341 payloads) that arrived, waiting up
        to `wait` s for the first."""
        got: list[tuple[bytes, Addr]] = []
        if not _readable(self.data, wait):
            return got
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(self.data.recvfrom(65535, socket.MSG_DONTWAIT))
        return got

    def send_data(self, inner: bytes, rloc: IPv4Address) -> None:
        """Encapsulate an IP packet from its site to the ETR at rloc."""
        header = DataHeader(nonce=secrets.randbits(24))
        self.data.sendto(encapsulate(header, inner), (str(rloc), DATA_PORT))

    def close(self) -> None:
        """Stop answering probes and close both sockets."""
        self._stop.set()
        self._thread.join(5.0)
        self.control.close()
        self.data.close()
