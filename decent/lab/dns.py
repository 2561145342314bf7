"""DnsServer: a real authoritative DNS server (NSD) for the pull mode's A records."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType
from typing import Final

from decent.lab.common import LabError, _in

#: Long enough for NSD to start or reload on a loaded 2-core machine.
SERVE_WAIT: Final = 30.0
#: How long one check waits for the expected answer before the reload is
#: asked for again (a SIGHUP that lands during a reload can be folded in it).
_RECHECK: Final = 3.0
_STOP_WAIT: Final = 10.0
#: The name server's own name inside the zone (its NS record and glue).
NS_NAME: Final = "ns"
_LABEL: Final = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")

#: Runs in the server's namespace (no route out, so the server's own address
#: is the only thing it can ask): polls until the zone serves exactly the
#: expected serial, TTL and A records, or its time is up. argv[1] is JSON.
_CHECK: Final = """
import json, sys, time
import dns.message, dns.query, dns.rcode, dns.rdatatype
want = json.loads(sys.argv[1])
deadline = time.monotonic() + want["wait"]
seen = None
def ask(name, rdtype):
    q = dns.message.make_query(name, rdtype)
    r = dns.query.udp(q, want["address"], timeout=0.5, port=want["port"])
    return r
def serves():
    global seen
    soa = ask(want["zone"], dns.rdatatype.SOA)
    serial = soa.answer[0][0].serial if soa.answer else None
    if serial != want["serial"]:
        seen = f"serial {serial}"
        return False
    for name, addresses in want["records"].items():
        r = ask(f"{name}.{want['zone']}", dns.rdatatype.A)
        got = sorted(rd.address for rs in r.answer for rd in rs)
        ttl = r.answer[0].ttl if r.answer else None
        if got != sorted(addresses) or (got and ttl != want["ttl"]):
            seen = f"{name}: {dns.rcode.to_text(r.rcode())} ttl {ttl} {got}"
            return False
    return True
while True:
    try:
        if serves():
            sys.exit(0)
    except Exception as exc:
        seen = repr(exc)
    if time.monotonic() > deadline:
        print(seen, file=sys.stderr)
        sys.exit(1)
    time.sleep(0.05)
"""


def dns_unavailable() -> str | None:
    """Why a DnsServer cannot run here, or None if it can."""
    if _nsd() is None:
        return "`nsd` is not installed (Debian: apt-get install nsd)"
    if importlib.util.find_spec("dns") is None:
        return "dnspython is not installed"
    return None


def _nsd() -> str | None:
    return shutil.which("nsd") or shutil.which("nsd", path="/usr/sbin:/sbin")


class DnsServer:
    """NSD serving one zone's A records on `address`:`port` inside network
    namespace `namespace` (None: this process's namespace).

    Everything it uses is in its own temporary directory (config, zone file,
    pid file, log, transfer state): no system-wide NSD config or state is
    read or written, NSD neither chroots nor drops privileges, and it runs
    in the foreground in a process group of its own, which stop() ends.

    `records` maps names relative to the zone ("0", "1", ...) to their
    addresses; a name with no addresses is left out (NXDOMAIN). The zone
    also holds an SOA and an NS record naming `ns.<zone>` with the server's
    address as glue, so NS_NAME is not a record name. Every record, and
    negative answers (the SOA minimum), have the TTL `ttl` in seconds.
    """

    def __init__(
        self,
        namespace: str | None,
        address: IPv4Address,
        zone: str,
        records: Mapping[str, Sequence[IPv4Address]],
        ttl: int,
        *,
        port: int = 53,
        parent: Path | None = None,
    ) -> None:
        """`parent`: where its temporary directory goes (default: the
        system's temporary directory)."""
        self.namespace = namespace
        self.address = address
        self.zone = zone.rstrip(".").lower()
        if not self.zone or not all(_LABEL.match(x) for x in self.zone.split(".")):
            raise ValueError(f"zone {zone!r} is not a domain name")
        self.port = port
        self.records = _checked(records)
        self.ttl = _checked_ttl(ttl)
        #: The zone's SOA serial now; every update() adds one.
        self.serial = 1
        self._parent = parent
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._mtime_ns = 0

    # ------------------------------------------------------------ files
    @property
    def workdir(self) -> Path:
        """Its temporary directory (exists from start() to stop())."""
        if self._dir is None:
            raise LabError("the DNS server is not started")
        return self._dir

    @property
    def zone_file(self) -> Path:
        return self.workdir / "zone"

    @property
    def log_file(self) -> Path:
        return self.workdir / "nsd.log"

    def _config(self) -> str:
        d = self.workdir

        def path(name: str) -> str:
            return json.dumps(str(d / name))

        return f"""\
server:
    ip-address: {self.address}
    port: {self.port}
    do-ip4: yes
    do-ip6: no
    chroot: ""
    username: ""
    zonesdir: {path("")}
    database: ""
    zonelistfile: {path("zone.list")}
    xfrdfile: {path("xfrd.state")}
    xfrdir: {path("")}
    pidfile: {path("nsd.pid")}
    logfile: {path("nsd.log")}
    cookie-secret-file: {path("cookie-secrets")}
    server-count: 1
    hide-version: yes
    round-robin: no
    verbosity: 1
remote-control:
    control-enable: no
zone:
    name: {self.zone}
    zonefile: {path("zone")}
"""

    def _zone_text(self) -> str:
        t = self.ttl
        lines = [
            f"$ORIGIN {self.zone}.",
            f"@ {t} IN SOA {NS_NAME} hostmaster {self.serial} 3600 600 86400 {t}",
            f"@ {t} IN NS {NS_NAME}",
            f"{NS_NAME} {t} IN A {self.address}",
        ]
        for name in sorted(self.records):
            lines += [f"{name} {t} IN A {a}" for a in self.records[name]]
        return "\n".join(lines) + "\n"

    def _write_zone(self) -> None:
        """Replace the zone file whole (NSD never reads half of it), with an
        mtime in another second than the last one: a SIGHUP reloads only a
        file whose mtime changed, and a coarse clock can repeat one."""
        tmp = self.zone_file.with_suffix(".tmp")
        tmp.write_text(self._zone_text())
        mtime = tmp.stat().st_mtime_ns
        if mtime // 10**9 <= self._mtime_ns // 10**9:
            mtime = (self._mtime_ns // 10**9 + 1) * 10**9
            os.utime(tmp, ns=(mtime, mtime))
        self._mtime_ns = mtime
        tmp.replace(self.zone_file)

    # ------------------------------------------------------------ life
    def start(self) -> None:
        """Start NSD and return once it serves the zone."""
        if self._proc is not None:
            raise LabError("the DNS server is already started")
        nsd = _nsd()
        if nsd is None:
            raise LabError("`nsd` is not installed (Debian: apt-get install nsd)")
        if self._parent is not None:
            self._parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="decent-dns-", dir=self._parent))
        try:
            conf = self.workdir / "nsd.conf"
            conf.write_text(self._config())
            self._write_zone()
            argv = [nsd, "-d", "-c", str(conf)]
            if self.namespace is not None:
                argv = _in(self.namespace, *argv)
            with open(self.workdir / "nsd.out", "wb") as out:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._wait_served(reload=False)
        except BaseException:
            self.stop()
            raise

    def update(
        self, records: Mapping[str, Sequence[IPv4Address]], ttl: int | None = None
    ) -> None:
        """Serve `records` (and `ttl`, if given) instead: rewrite the zone
        with the next serial, make NSD reload it (SIGHUP) and return once a
        query shows the new zone."""
        if self._proc is None:
            raise LabError("the DNS server is not started")
        new = _checked(records)
        new_ttl = self.ttl if ttl is None else _checked_ttl(ttl)
        self.records, self.ttl, self.serial = new, new_ttl, self.serial + 1
        self._write_zone()
        self._wait_served(reload=True)

    def _wait_served(self, reload: bool) -> None:
        """Until a query to the server shows the serial and every record
        this object holds; with `reload`, a SIGHUP goes before each check
        (never while NSD starts: a SIGHUP before its handler is set ends it)."""
        proc = self._proc
        assert proc is not None
        want = {
            "zone": self.zone,
            "address": str(self.address),
            "port": self.port,
            "serial": self.serial,
            "ttl": self.ttl,
            "records": {n: [str(a) for a in v] for n, v in self.records.items()},
            "wait": _RECHECK,
        }
        argv = [sys.executable, "-c", _CHECK, json.dumps(want)]
        if self.namespace is not None:
            argv = _in(self.namespace, *argv)
        deadline = time.monotonic() + SERVE_WAIT  # noqa: TID251
        seen = ""
        while True:
            if reload:
                self._signal(signal.SIGHUP)
            # The foreground NSD process lives as long as the server does.
            if proc.poll() is not None:
                raise LabError(f"nsd exited {proc.returncode}: {self._log_tail()}")
            check = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=_RECHECK + 30.0,
                check=False,
            )
            if check.returncode == 0:
                return
            seen = (check.stderr.strip().splitlines() or ["nothing"])[-1]
            if time.monotonic() > deadline:  # noqa: TID251
                raise LabError(
                    f"the DNS server at {self.address}:{self.port} did not serve "
                    f"serial {self.serial} of {self.zone} within {SERVE_WAIT:.0f} s "
                    f"(last seen: {seen}); nsd log: {self._log_tail()}"
                )

    def _signal(self, sig: signal.Signals) -> None:
        """Signal NSD's main process, as its pid file names it (the process
        this object started, unless NSD replaced it)."""
        try:
            pid = int((self.workdir / "nsd.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            assert self._proc is not None
            pid = self._proc.pid
        if pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _log_tail(self) -> str:
        parts = []
        for name in ("nsd.out", "nsd.log"):
            with contextlib.suppress(OSError):
                parts.append((self.workdir / name).read_text(errors="replace"))
        return " | ".join(
            line for text in parts for line in text.strip().splitlines()[-8:]
        )

    def pids(self) -> list[int]:
        """The live (not zombie) processes of the server's process group."""
        if self._proc is None:
            return []
        return _group(self._proc.pid)

    @property
    def running(self) -> bool:
        return bool(self.pids())

    def stop(self) -> None:
        """Stop every NSD process of this server and remove its directory.
        Safe to call more than once and after a failed start()."""
        proc = self._proc
        if proc is not None:
            pgid = proc.pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + _STOP_WAIT  # noqa: TID251
            while _group(pgid) and time.monotonic() < deadline:  # noqa: TID251
                time.sleep(0.02)
            if _group(pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(_STOP_WAIT)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _group(pgid: int) -> list[int]:
    """Live processes whose process group is pgid (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def _checked(
    records: Mapping[str, Sequence[IPv4Address]],
) -> dict[str, list[IPv4Address]]:
    out: dict[str, list[IPv4Address]] = {}
    for name, addresses in records.items():
        labels = name.split(".")
        if name.lower() == NS_NAME or not all(_LABEL.match(x) for x in labels):
            raise ValueError(
                f"record name {name!r}: use a name relative to the zone "
                f"(labels of A-Z, a-z, 0-9, '-', '_'), not {NS_NAME!r}"
            )
        addrs = [IPv4Address(a) for a in addresses]
        if addrs:
            out[name.lower()] = addrs
    return out


def _checked_ttl(ttl: int) -> int:
    if not 0 <= ttl <= 2**31 - 1:
        raise ValueError(f"TTL {ttl}: use 0 to 2^31-1 seconds")
    return int(ttl)
