"""The status page in a real browser (Debian chromium driven by Playwright),
against the three-node namespace lab and against a node with hostile names."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from decent.lab import GROUP_EID, NetnsLab
from decent.lab.common import KEY
from decent.net.status import JOIN_PERIODS, NOT_JOINED, NodeStatus
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.web.app import SECURITY_HEADERS, make_app
from decent.wire import Eid
from tests.peer.simnet import SimNet

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
MakeLab = Callable[..., NetnsLab]
CHROMIUM = "/usr/bin/chromium"
#: Ecosystem notes 5.3: flags that keep chromium off the network and quiet.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
CONVERGE = 20.0
#: How long a browser wait may take before the test fails (a hang guard on a
#: shared machine, not a performance claim; the figures are printed).
WAIT_MS = 15_000
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@contextlib.contextmanager
def _chromium(profile: Path, *, bypass_csp: bool) -> Iterator[Any]:
    """A fresh chromium profile and one page; closed whatever happens."""
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1500, "height": 1000},
            bypass_csp=bypass_csp,
        )
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert errors == [], f"JavaScript errors: {errors}"
        finally:
            context.close()


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A page that ignores the site's CSP: it forbids eval, which Playwright's
    function waits use, and without it an escaping failure could not hide
    behind the CSP. `csp_page` shows the page works under its CSP."""
    with _chromium(tmp_path / "profile", bypass_csp=True) as page:
        yield page


@pytest.fixture
def csp_page(tmp_path: Path) -> Iterator[Any]:
    """A page that obeys the site's Content-Security-Policy."""
    with _chromium(tmp_path / "csp-profile", bypass_csp=False) as page:
        yield page


def _post(url: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, method="POST", data=b"")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with _HTTP.open(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
        exc.close()
        return exc.code, body


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())


def _fact(page: Any, label: str) -> str:
    """The value of one fact of the lookup answer."""
    item = page.locator("#b-lookup dl.facts > div").filter(
        has=page.locator("dt", has_text=label)
    )
    return str(item.locator("dd").inner_text())


def test_page_shows_the_whole_lab_and_updates_live(
    make_lab: MakeLab, browser_page: Any, tmp_path: Path
) -> None:
    lab = make_lab()
    lab.start_all()
    lab.wait_converged(CONVERGE)
    n1 = lab.node(1)
    page = browser_page
    page.goto(n1.url + "/")
    assert page.title() == "Overview · n1 · decent"
    assert _text(page, "#h-name") == "n1"
    assert _text(page, "#h-rloc") == str(n1.rloc)
    assert _text(page, "#h-mode") == "replicate"
    assert _text(page, "#h-health") == "ok (3 members)"
    # The page's script took over: live updates arrive.
    page.wait_for_function(
        "Number(document.body.dataset.updates) >= 1", timeout=WAIT_MS
    )
    assert _text(page, "#live") == "live"

    sites = _text(page, "#b-sites")
    for i in (2, 3):
        assert f"[0]192.0.2.{i}/32" in sites
        assert f"[0]'n{i}'" in sites
    group_row = page.locator("#b-sites tr", has_text=GROUP_EID)
    rle = group_row.locator("td.rlocs").inner_text().splitlines()
    assert rle == [f"rle: {lab.node(i).rloc}(L128) n{i}" for i in (1, 2, 3)]
    peers = _text(page, "#b-peers")
    for i in (2, 3):
        assert f"{lab.node(i).rloc}\tn{i}" in peers

    # The site-cache lookup form: a match, then a bad input.
    form = page.locator("#s-sites form.lookup")
    form.locator("input[name=eid]").fill("192.0.2.3")
    form.locator("button").click()
    page.wait_for_url("**/lookup?**")
    assert _fact(page, "Longest match") == "[0]192.0.2.3/32"
    assert _fact(page, "RLOC-set") == str(lab.node(3).rloc)
    form = page.locator("form.lookup").first
    form.locator("input[name=eid]").fill("no-such-eid")
    form.locator("button").click()
    page.wait_for_url("**/lookup?**")
    assert (
        "Cannot look up 'no-such-eid': 'no-such-eid' is not an address or prefix"
        in (_text(page, "#b-lookup"))
    )
    # The map-cache lookup form: n1 learned the group from Map-Notifies.
    form = page.locator("form.lookup").nth(1)
    form.locator("input[name=eid]").fill("10.1.2.3->233.252.1.1")
    form.locator("button").click()
    page.wait_for_url("**/lookup?**")
    assert _fact(page, "Longest match") == GROUP_EID
    assert _fact(page, "Map-Reply Source") == "map-notify"

    # clear cache is a POST, refused here: this browser is not on n1's host
    # and n1 has no admin token.
    page.goto(n1.url + "/map-cache")
    page.locator("form.clear button").click()
    page.wait_for_url("**/map-cache/clear")
    assert "needs a request from this host" in _text(page, "#b-refusal")
    assert lab.api(1, "/api/node")["counts"]["map_cache"] == 1

    # A new EID on n3 reaches n1's open page without a reload.
    page.goto(n1.url + "/")
    page.wait_for_function(
        "Number(document.body.dataset.updates) >= 1", timeout=WAIT_MS
    )
    new = "[0]198.51.100.0/24"
    page.evaluate(
        """new_eid => {
            window.__marker = "same page";
            const seen = () => document.getElementById("b-sites").textContent
                .includes(new_eid);
            new MutationObserver(() => {
                if (!window.__seenAt && seen()) window.__seenAt = Date.now();
            }).observe(document.body, {childList: true, subtree: true});
        }""",
        new,
    )
    assert new not in _text(page, "#b-sites")
    # Registered on the running n3: its config gains the EID, then SIGHUP.
    lab.configure(3, eids=["192.0.2.3/32", "198.51.100.0/24"])
    started = time.time()
    lab.reload(3)
    api_seen = None
    deadline = time.monotonic() + CONVERGE
    while api_seen is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if any(s["eid"] == new for s in lab.api(1, "/api/sites")):
                api_seen = time.time()
        time.sleep(0.01)
    assert api_seen is not None, "n1 never learned the new EID"
    page.wait_for_function("() => !!window.__seenAt", timeout=WAIT_MS)
    assert page.evaluate("window.__marker") == "same page"  # never reloaded
    lag = page.evaluate("window.__seenAt") / 1000.0 - api_seen
    took = page.evaluate("window.__seenAt") / 1000.0 - started
    print(
        f"\nn1's page showed {new} {took:.2f} s after n3 was told to register it, "
        f"{lag * 1000:.0f} ms after n1's JSON API did (polled every 10 ms)"
    )
    # "Within a second" of n1 knowing it (6-104 ms measured; the push is
    # checked every 0.2 s, so 1 s leaves room for a loaded machine).
    assert lag <= 1.0, f"the page lagged n1's API by {lag:.2f} s"
    row = page.locator("#b-sites tr", has_text=new)
    assert row.locator("td").nth(3).inner_text() == str(lab.node(3).rloc)

    # Back to the full picture, then the screenshot.
    page.wait_for_function(
        "document.getElementById('b-sites').textContent.includes(\"[0]'n3'\")",
        timeout=WAIT_MS,
    )
    shot = tmp_path / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("DECENT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_clear_cache_from_another_host_needs_the_admin_token(
    make_lab: MakeLab, browser_page: Any
) -> None:
    lab = make_lab(nodes=2)
    lab.configure(1, admin_token="lab-admin-token")
    lab.start_all()
    lab.wait_converged(CONVERGE)
    url = lab.node(1).url
    # This process and its browser reach n1 from the bridge (.254): not
    # loopback.
    assert lab.api(1, "/api/node")["counts"]["map_cache"] == 1
    status, body = _post(url + "/api/map-cache/clear")
    assert status == 403
    assert "admin token" in body["error"]
    status, body = _post(url + "/api/map-cache/clear", "wrong")
    assert (status, body) == (403, {"error": "refused: wrong admin token"})
    assert lab.api(1, "/api/node")["counts"]["map_cache"] == 1
    # A node without a token refuses remote clients whatever they send.
    status, _ = _post(lab.node(2).url + "/api/map-cache/clear", "lab-admin-token")
    assert status == 403

    page = browser_page
    page.goto(url + "/map-cache")
    page.locator("form.clear input[name=token]").fill("wrong")
    page.locator("form.clear button").click()
    page.wait_for_url("**/map-cache/clear")
    assert _text(page, "#b-refusal") == "refused: wrong admin token"
    page.goto(url + "/map-cache")
    page.locator("form.clear input[name=token]").fill("lab-admin-token")
    page.locator("form.clear button").click()
    page.wait_for_url("**/map-cache?cleared=1")
    assert "Cleared 1 map-cache entries." in _text(page, "main")
    assert lab.api(1, "/api/node")["counters"]["cache.cleared"] == 1
    # (A periodic group lookup may have refilled the cache meanwhile.)
    status, body = _post(url + "/api/map-cache/clear", "lab-admin-token")
    assert status == 200
    assert body["cleared"] in (0, 1)


# ---------------------------------------------------------------- failed joins
#: Seconds between registrations in the failed-join labs: the join deadline
#: (JOIN_PERIODS of them from the start) passes in a few seconds.
SHORT_PERIOD = 2.0


def _wrong_key(lab: NetnsLab, i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node i's next start writes another group key than the lab's (the lab
    has no knob for it: `extra` cannot repeat its [decent] table)."""
    written = lab.config_text
    line = f"key = {json.dumps(KEY)}"

    def config_text(j: int) -> str:
        text = written(j)
        if j != i:
            return text
        assert text.count(line) == 1, text
        return text.replace(line, 'key = "not-the-group-key"')

    monkeypatch.setattr(lab, "config_text", config_text)


def _wait_not_joined(lab: NetnsLab, i: int) -> set[str]:
    """Wait until node i's /healthz says "not joined"; the statuses seen."""
    seen: set[str] = set()

    def not_joined() -> bool:
        health = lab.api(i, "/healthz", timeout=1.0)
        seen.add(health["status"])
        return bool(health["status"] == "not joined")

    lab.wait_until(
        not_joined, CONVERGE + JOIN_PERIODS * SHORT_PERIOD, f"n{i} to give up"
    )
    return seen


def _shows_not_joined(page: Any) -> None:
    """The open page says its node is not joined: at once, or by a live
    update of the header if it loaded while the node was still joining."""
    page.wait_for_function(
        "document.getElementById('h-health').textContent.startsWith('not joined')",
        timeout=WAIT_MS,
    )
    assert _text(page, "#h-health") == f"not joined ({NOT_JOINED})"
    assert page.locator("#h-health").get_attribute("class") == "bad"


def test_a_wrong_key_is_not_joined_and_its_seed_shows_the_rejection(
    make_lab: MakeLab, browser_page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = make_lab(nodes=2, register_interval=SHORT_PERIOD)
    _wrong_key(lab, 2, monkeypatch)
    lab.start_all()
    n1, n2 = lab.node(1), lab.node(2)
    lab.wait_until(lambda: lab.healthy(1), CONVERGE, "n1 to answer")
    seen = _wait_not_joined(lab, 2)
    assert seen <= {"joining", "not joined"}, seen  # never "ok" on its own word
    # n1 is the first member of its mesh, and nobody joined it.
    assert lab.api(1, "/healthz")["status"] == "alone"

    page = browser_page
    page.goto(n2.url + "/")
    _shows_not_joined(page)

    # The member it tried lists the refusals, loudly.
    rejections = lab.api(1, "/api/rejections")
    assert rejections, "n1 lists no rejection"
    assert {(r["source"], r["reason"]) for r in rejections} == {
        (str(n2.rloc), "auth-failed")
    }
    page.goto(n1.url + "/peers")
    rows = page.locator("#b-rejections tbody tr")
    assert rows.count() == len(rejections)
    first = rows.first.locator("td")
    assert first.nth(0).inner_text() == str(n2.rloc)
    assert first.nth(1).inner_text() == "auth-failed"
    assert "[0]'n2'" in _text(page, "#b-rejections")
    log = lab.log_path(1).read_text()
    assert any(
        f" WARNING decent: map-register from {n2.rloc} for " in line
        and line.endswith(" rejected: auth-failed")
        for line in log.splitlines()
    )
    # Revoking is as guarded as clearing the cache: not from this host's veth.
    status, body = _post(n1.url + "/api/revoke")
    assert status == 403
    assert "revoking a certificate needs a request from this host" in body["error"]


def test_a_node_whose_only_seed_is_dead_is_not_joined(
    make_lab: MakeLab, browser_page: Any
) -> None:
    lab = make_lab(nodes=2, register_interval=SHORT_PERIOD)
    lab.start(2)  # its only seed, n1, never starts
    n2 = lab.node(2)
    assert n2.seeds == [lab.node(1).rloc]
    lab.wait_until(lambda: lab.api(2, "/healthz", timeout=1.0), CONVERGE, "n2")
    page = browser_page
    page.goto(n2.url + "/")
    page.evaluate("window.__marker = 'same page'")
    seen = _wait_not_joined(lab, 2)
    assert seen <= {"joining", "not joined"}, seen
    _shows_not_joined(page)
    assert page.evaluate("window.__marker") == "same page"  # never reloaded
    # Its own Map-Server lists it all the same.
    assert [p["rloc"] for p in lab.api(2, "/api/peers")] == [str(n2.rloc)]


# ---------------------------------------------------------------- escaping
HOSTILE_NAMES = [
    "n1",
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=2</script>",
]


@contextlib.contextmanager
def _serve(app: web.Application) -> Iterator[str]:
    """Serve app on a loopback port from a thread and loop of its own (the
    sync Playwright API runs a loop in this thread)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    ready = threading.Event()
    failed: list[Exception] = []
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        try:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        except Exception as exc:  # noqa: BLE001 - reported in the test's thread
            failed.append(exc)
        finally:
            ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        tasks.append(loop.create_task(start()))
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "the test server did not start"
        if failed:
            raise failed[0]
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _simnet_status(
    names: list[str], net_prefix: str, shown: str | None = None
) -> NodeStatus:
    """Three converged members on the simulated network; the first one's
    status, under the name `shown` (default: its own)."""
    net = SimNet(seed=7)
    counter = itertools.count(1)
    ips = [IPv4Address(f"{net_prefix}.{i}") for i in (11, 12, 13)]
    nodes = []
    for i, (ip, name) in enumerate(zip(ips, names, strict=True)):
        cfg = decent_node_config(
            name=name,
            rlocs=(ip,),
            group=IPv4Address("233.252.1.1"),
            key=b"k",
            xtr_id=i + 1,
            eids=(Eid.prefix(f"{i + 1}.0.0.0/8"),),
            seeds=(ips[0],) if i else (),
        )
        node = Node(cfg, nonce=lambda: next(counter))
        nodes.append(node)
        net.add(node, (ip, 4342), (ip, 4341))
    net.advance(3)
    return NodeStatus(
        nodes[0],
        lambda: net.now,
        name=names[0] if shown is None else shown,
        started=0.0,
        register_interval=60.0,
    )


def test_hostile_names_show_as_text_in_the_live_page(browser_page: Any) -> None:
    status = _simnet_status(HOSTILE_NAMES, "198.18.46", HOSTILE_NAMES[2])
    page = browser_page
    with _serve(make_app(status)) as url:
        for path in (
            "/",
            "/sites/" + urllib.parse.quote(f"[0]'{HOSTILE_NAMES[1]}'", safe=""),
        ):
            page.goto(url + path)
            # Wait for two live updates: the blocks are then built by the
            # page's script from JSON, not by the server.
            page.wait_for_function(
                "Number(document.body.dataset.updates) >= 2", timeout=WAIT_MS
            )
            text = page.locator("main").inner_text()
            assert HOSTILE_NAMES[1] in text, path
            if path == "/":
                assert HOSTILE_NAMES[2] in text
            assert page.locator("#h-name").inner_text() == HOSTILE_NAMES[2]
            assert page.locator("main img").count() == 0
            assert page.locator("script").count() == 1  # ours, from /assets
            assert page.evaluate("window.__xss") is None


# ---------------------------------------------------------------- CSP
def test_the_page_runs_under_its_own_content_security_policy(csp_page: Any) -> None:
    """With the CSP enforced, page.js loads and its EventSource delivers live
    updates, while an injected inline script is refused."""
    status = _simnet_status(["n1", "n2", "n3"], "198.18.47")
    page = csp_page
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    with _serve(make_app(status)) as url:
        resp = page.goto(url + "/")
        assert resp is not None
        policy = SECURITY_HEADERS["Content-Security-Policy"]
        assert resp.headers["content-security-policy"] == policy
        # Selector waits, not function waits: the CSP forbids their eval.
        # Two updates: the first model and a later push, both applied by
        # page.js from what its EventSource received.
        page.locator('body[data-updates]:not([data-updates="1"])').wait_for(
            state="attached", timeout=WAIT_MS
        )
        assert page.locator("#live").inner_text() == "live"
        assert "[0]'n2'" in page.locator("#b-sites").inner_text()
        assert not [m for m in console if "Content Security Policy" in m], console
        # ... and the policy is really in force: inline script does not run.
        ran = page.evaluate(
            """() => {
                const s = document.createElement("script");
                s.textContent = "window.__inline = 1";
                document.head.appendChild(s);
                return window.__inline === 1;
            }"""
        )
        assert ran is False
