// Live updates for the decent status pages. The server pushes the page model
// (decent/web/views.py) over server-sent events; this rebuilds each block with
// DOM text nodes only, so no value from the network is ever parsed as HTML.
"use strict";
(function () {
  const body = document.body;
  const view = body.dataset.view;
  if (!view || !window.EventSource) {
    return;
  }

  function text(t) {
    return document.createTextNode(t === null || t === undefined ? "" : String(t));
  }

  function cell(c, tag) {
    const node = document.createElement(tag);
    if (c.cls) node.className = c.cls;
    if (c.title) node.title = c.title;
    const lines = Array.isArray(c.lines) ? c.lines : [c.text];
    lines.forEach(function (line, i) {
      if (i > 0) node.appendChild(document.createElement("br"));
      // Links only ever point at this server (the model gives paths).
      if (i === 0 && typeof c.href === "string" && c.href.startsWith("/")) {
        const a = document.createElement("a");
        a.href = c.href;
        a.appendChild(text(line));
        node.appendChild(a);
      } else {
        node.appendChild(text(line));
      }
    });
    return node;
  }

  function para(cls, t) {
    const p = document.createElement("p");
    p.className = cls;
    p.appendChild(text(t));
    return p;
  }

  function blockNodes(b) {
    if (b.kind === "table") {
      const table = document.createElement("table");
      table.className = "grid";
      const head = table.createTHead().insertRow();
      b.columns.forEach(function (c) { head.appendChild(cell(c, "th")); });
      const tbody = table.createTBody();
      b.rows.forEach(function (r) {
        const tr = tbody.insertRow();
        if (r.cls) tr.className = r.cls;
        r.cells.forEach(function (c) { tr.appendChild(cell(c, "td")); });
      });
      const out = [table];
      if (!b.rows.length) out.push(para("empty", b.empty));
      if (b.more) out.push(para("more", b.more + " more not shown: " + b.more_hint));
      return out;
    }
    if (b.kind === "facts") {
      const dl = document.createElement("dl");
      dl.className = "facts";
      b.items.forEach(function (item) {
        const div = document.createElement("div");
        const dt = document.createElement("dt");
        dt.appendChild(text(item.label));
        div.appendChild(dt);
        div.appendChild(cell(item.value, "dd"));
        dl.appendChild(div);
      });
      return [dl];
    }
    return b.text ? [para(b.cls || "notice", b.text)] : [];
  }

  function apply(model) {
    const h = model.header || {};
    Object.keys(h).forEach(function (key) {
      const node = document.getElementById("h-" + key);
      if (node) node.textContent = h[key];
    });
    const health = document.getElementById("h-health");
    if (health) health.className = h.health_ok ? "ok" : "bad";
    // This node's reachability (NAT traversal): ok, warn or bad, as served.
    const reach = document.getElementById("h-reach");
    if (reach) reach.className = h.reach_cls || "";
    const blocks = model.blocks || {};
    Object.keys(blocks).forEach(function (name) {
      const node = document.getElementById("b-" + name);
      if (!node) return;  // a section the server left out (a feature off)
      node.replaceChildren.apply(node, blockNodes(blocks[name]));
      const section = node.closest("section");
      if (section) section.hidden = Boolean(blocks[name].hidden);
    });
    body.dataset.updates = String(Number(body.dataset.updates || "0") + 1);
  }

  const live = document.getElementById("live");
  const params = new URLSearchParams({ view: view, eid: body.dataset.eid || "" });
  // The browser retries a dropped stream by itself, but gives up for good on
  // an error status: the server's 503 when it has too many live clients.
  const RETRY_CLOSED_MS = 30000;
  // The server sends the model at least once a second (decent/web/live.py,
  // `refresh`), so a connection silent for this long has a hung node behind
  // it (SIGSTOP, a stuck loop): the stream stays open, but nothing is live.
  const STALL_MS = 4000;
  let lastHeard = Date.now();

  function show(state, text) {
    live.textContent = text;
    live.className = state === "live" ? "live" : "live down " + state;
    body.dataset.live = state;
  }

  function connect() {
    const source = new EventSource("/events?" + params.toString());
    source.onopen = function () {
      lastHeard = Date.now();
      show("live", "live");
    };
    source.onmessage = function (event) {
      lastHeard = Date.now();
      apply(JSON.parse(event.data));
      show("live", "live");
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        show("paused", "paused (server busy)");
        setTimeout(connect, RETRY_CLOSED_MS);
        return;
      }
      show("reconnecting", "reconnecting");
    };
  }

  setInterval(function () {
    if (body.dataset.live === "live" && Date.now() - lastHeard > STALL_MS) {
      show("stalled", "stalled");
    }
  }, 500);
  connect();
})();
