// The /mesh page (decent/web/meshview.py): the mesh map and the traffic
// charts, drawn with Chart.js (chart.min.js, loaded before this file) from
// /api/v1/mesh and /api/v1/traffic, polled. Values from the network reach the
// canvas or textContent only, never the DOM as HTML.
"use strict";
(function () {
  const body = document.body;
  const live = document.getElementById("live");
  const mapCanvas = document.getElementById("mesh-map");
  if (!mapCanvas || !window.Chart || !window.fetch) {
    return;
  }
  const Chart = window.Chart;
  // page.css's palette: the key under the map uses the same colours.
  const COLOR = {
    self: "#1f5fa8",
    up: "#1e7a3c",
    aging: "#9a6400",
    down: "#b3261e",
    xtr: "#6a3d9a",
  };
  const SERIES_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
    "#8c6d31", "#843c39", "#7b4173", "#3182bd",
  ];
  const MESH_MS = 2000;      // between two polls of /api/v1/mesh
  const FETCH_MS = 4000;     // an answer slower than this: the node hangs
  const STALL_MS = 5000;     // no answer for this long: "stalled"
  let lastOk = Date.now();
  let trafficEvery = 10000;  // follows the server's sample_s
  let trafficAt = 0;

  Chart.defaults.animation = false;
  Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", sans-serif';

  function show(state, text) {
    live.textContent = text;
    live.className = state === "live" ? "live" : "live down " + state;
    body.dataset.live = state;
  }

  function bump(name) {
    body.dataset[name] = String(Number(body.dataset[name] || "0") + 1);
  }

  async function getJSON(path) {
    const abort = new AbortController();
    const timer = setTimeout(function () { abort.abort(); }, FETCH_MS);
    try {
      const resp = await fetch(path, { signal: abort.signal, cache: "no-store" });
      if (!resp.ok) {
        throw new Error(path + " answered " + resp.status);
      }
      return await resp.json();
    } finally {
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------ the map
  // This node in the middle, the other members on a circle round it, a
  // relayed xTR beyond the member that carries its registrations.
  const ASPECT = 2.2;
  const Y = 1.8;

  function layout(mesh) {
    const at = new Map();
    const others = mesh.members.filter(function (m) { return !m.self; });
    mesh.members.forEach(function (m) {
      if (m.self) at.set(m.rloc, { x: 0, y: 0, angle: -Math.PI / 2 });
    });
    others.forEach(function (m, i) {
      // The first one straight below (y grows upwards), turned by half a
      // step for an even count: no member sits straight above this node,
      // where its link would run through this node's name.
      const step = (2 * Math.PI) / Math.max(others.length, 1);
      const turn = others.length % 2 === 0 ? step / 2 : 0;
      const angle = -Math.PI / 2 + turn + step * i;
      at.set(m.rloc, { x: 2.1 * Math.cos(angle), y: 1.15 * Math.sin(angle), angle: angle });
    });
    const byVia = new Map();
    mesh.xtrs.forEach(function (x) {
      const list = byVia.get(x.via) || [];
      list.push(x);
      byVia.set(x.via, list);
    });
    byVia.forEach(function (list, via) {
      const base = at.get(via) || { x: 0, y: 0, angle: Math.PI / 2 };
      list.forEach(function (x, k) {
        const angle = base.angle + (k - (list.length - 1) / 2) * 0.45;
        at.set(x.rloc, {
          x: base.x + 0.9 * Math.cos(angle),
          y: base.y + 0.5 * Math.sin(angle),
          angle: angle,
        });
      });
    });
    return at;
  }

  function radius(registrations) {
    return Math.min(28, 7 + 4 * Math.sqrt(registrations || 0));
  }

  function nodeColor(n) {
    if (n.kind === "xtr") return n.state === "up" ? COLOR.xtr : COLOR.down;
    if (n.self) return COLOR.self;
    return n.state === "current" ? COLOR.up : COLOR.aging;
  }

  // Names under the bubbles: Chart.js draws no data labels by itself.
  const labels = {
    id: "decentLabels",
    afterDatasetsDraw: function (chart) {
      const ctx = chart.ctx;
      ctx.save();
      ctx.font = "12px " + Chart.defaults.font.family;
      ctx.fillStyle = "#1d2430";
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      chart.data.datasets.forEach(function (ds, i) {
        if (ds.type !== "bubble") return;
        chart.getDatasetMeta(i).data.forEach(function (el, j) {
          const n = ds.data[j].node;
          const y = el.y + ds.data[j].r + 3;
          const w = ctx.measureText(n.label).width;
          // A backing so a link passing under the name leaves it readable.
          ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
          ctx.fillRect(el.x - w / 2 - 2, y - 1, w + 4, 15);
          ctx.fillStyle = "#1d2430";
          ctx.fillText(n.label, el.x, y);
        });
      });
      ctx.restore();
    },
  };

  function nodeTooltip(item) {
    const n = item.raw.node;
    const lines = [n.label, n.rloc];
    if (n.kind === "xtr") {
      lines.push("plain xTR of site " + (n.site || "-") + ", relayed by " + n.via);
      lines.push("registration " + (n.state === "up" ? "live" : "expired"));
    } else {
      lines.push(n.self ? "this node" : "member, " + n.state);
      if (n.relayed) lines.push("relays " + n.relayed + " registrations");
    }
    lines.push(n.registrations + " registrations made");
    if (n.link) {
      lines.push(
        "link " + n.link.state + " (" + n.link.source + ")" +
        (n.link.rtt_ms !== null && n.link.rtt_ms !== undefined
          ? ", RTT " + n.link.rtt_ms.toFixed(2) + " ms" : "")
      );
    }
    return lines;
  }

  const map = new Chart(mapCanvas, {
    type: "bubble",
    data: { datasets: [] },
    options: {
      aspectRatio: ASPECT,
      layout: { padding: 24 },
      scales: {
        x: { display: false, min: -Y * ASPECT, max: Y * ASPECT },
        y: { display: false, min: -Y, max: Y },
      },
      plugins: {
        legend: { display: false },
        tooltip: {
          filter: function (item) { return item.dataset.type === "bubble"; },
          callbacks: { label: nodeTooltip },
        },
      },
    },
    plugins: [labels],
  });

  function drawMesh(mesh) {
    const at = layout(mesh);
    const linkTo = new Map();
    const datasets = [];
    mesh.links.forEach(function (l) {
      const a = at.get(l.from);
      const b = at.get(l.to);
      if (!a || !b) return;
      linkTo.set(l.to, l);
      datasets.push({
        type: "line",
        label: l.from + " - " + l.to,
        data: [{ x: a.x, y: a.y }, { x: b.x, y: b.y }],
        borderColor: l.state === "up" ? (l.kind === "relayed" ? COLOR.xtr : COLOR.up)
          : COLOR.down,
        borderWidth: 2,
        borderDash: l.kind === "relayed" ? [3, 3] : l.state === "up" ? [] : [8, 5],
        pointRadius: 0,
        pointHitRadius: 0,
        fill: false,
        order: 2,
      });
    });
    const nodes = [];
    mesh.members.forEach(function (m) {
      nodes.push(Object.assign({ kind: "member", label: m.name || m.rloc }, m));
    });
    mesh.xtrs.forEach(function (x) {
      nodes.push(Object.assign({ kind: "xtr", label: x.site || x.rloc }, x));
    });
    const points = nodes.filter(function (n) { return at.has(n.rloc); }).map(function (n) {
      n.link = linkTo.get(n.rloc) || null;
      const p = at.get(n.rloc);
      return { x: p.x, y: p.y, r: radius(n.registrations), node: n };
    });
    datasets.push({
      type: "bubble",
      label: "nodes",
      data: points,
      backgroundColor: points.map(function (p) { return nodeColor(p.node); }),
      borderColor: "#ffffff",
      borderWidth: 2,
      order: 1,
    });
    map.data.datasets = datasets;
    map.update("none");
    mapCanvas.dataset.members = String(mesh.members.length);
    mapCanvas.dataset.xtrs = String(mesh.xtrs.length);
    mapCanvas.dataset.links = String(mesh.links.length);
    mapCanvas.dataset.up = String(mesh.links.filter(function (l) {
      return l.state === "up";
    }).length);
    const hidden = mesh.not_shown || {};
    const note = [];
    if (hidden.members) note.push(hidden.members + " more members not drawn");
    if (hidden.xtrs) note.push(hidden.xtrs + " more xTRs not drawn");
    document.getElementById("mesh-note").textContent = note.join(", ");
    const health = document.getElementById("h-health");
    const h = (mesh.node || {}).health;
    if (health && h) {
      health.textContent = h.reason ? h.status + " (" + h.reason + ")"
        : h.status + " (" + (h.members || 0) + " members)";
      health.className = h.ok ? "ok" : "bad";
    }
    bump("meshUpdates");
  }

  // ------------------------------------------------------------ traffic
  function scaled(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return (a / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (a / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return (a / 1e3).toFixed(1) + "k";
    return String(Math.round(a * 100) / 100);
  }

  function lineChart(id) {
    const canvas = document.getElementById(id);
    return new Chart(canvas, {
      type: "line",
      data: { labels: [], datasets: [] },
      options: {
        aspectRatio: 2.4,
        spanGaps: false,
        elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 1.5 } },
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { ticks: { maxTicksLimit: 5, maxRotation: 0 } },
          y: { ticks: { callback: scaled } },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.dataset.label + ": " + scaled(item.raw === null ? 0 : item.raw);
              },
            },
          },
        },
      },
    });
  }

  const charts = {
    bytes: lineChart("traffic-bytes"),
    packets: lineChart("traffic-packets"),
    control: lineChart("traffic-control"),
  };
  const peerColor = new Map();

  function colorOf(rloc) {
    if (!peerColor.has(rloc)) {
      peerColor.set(rloc, SERIES_COLORS[peerColor.size % SERIES_COLORS.length]);
    }
    return peerColor.get(rloc);
  }

  function way(label, color, data, dashed) {
    return {
      label: label,
      data: data,
      borderColor: color,
      backgroundColor: color,
      borderDash: dashed ? [5, 3] : [],
    };
  }

  // One column of the samples: `pick(sample)` for each, in time order.
  function column(samples, pick) {
    return samples.map(pick);
  }

  // A peer's "in" (above the axis) and "out" (below) for bytes or packets:
  // `at(sample)` is that peer's four rates in a sample, or null.
  function peerSets(t, label, rloc, at, what) {
    const iIn = t.series.indexOf(what + "_in_per_s");
    const iOut = t.series.indexOf(what + "_out_per_s");
    const color = rloc === null ? "#7f7f7f" : colorOf(rloc);
    return [
      way(label + " in", color, column(t.samples, function (s) {
        const r = at(s);
        return r ? r[iIn] : null;
      }), false),
      way(label + " out", color, column(t.samples, function (s) {
        const r = at(s);
        return r ? -r[iOut] : null;
      }), true),
    ];
  }

  function allPeerSets(t, what) {
    let out = [];
    t.peers.forEach(function (p, i) {
      out = out.concat(peerSets(t, p.name || p.rloc, p.rloc, function (s) {
        return s.peers[i];
      }, what));
    });
    if (t.others) {
      out = out.concat(peerSets(t, t.others.peers + " other peers", null, function (s) {
        return s.others;
      }, what));
    }
    return out;
  }

  function setChart(chart, labelsList, datasets) {
    chart.data.labels = labelsList;
    chart.data.datasets = datasets;
    chart.update("none");
    const canvas = chart.canvas;
    canvas.dataset.points = String(labelsList.length);
    canvas.dataset.datasets = String(datasets.length);
    canvas.dataset.nonzero = String(datasets.filter(function (ds) {
      return ds.data.some(function (v) { return v !== null && v !== 0; });
    }).length);
  }

  function timeLabel(at) {
    const d = new Date(at);
    return d.toLocaleTimeString([], {
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    });
  }

  function drawTraffic(t) {
    if (t.sample_s) {
      trafficEvery = Math.min(10, Math.max(2, t.sample_s)) * 1000;
      document.getElementById("traffic-sample").textContent = String(t.sample_s);
    }
    const times = t.samples.map(function (s) { return timeLabel(s.sampled_at); });
    setChart(charts.bytes, times, allPeerSets(t, "bytes"));
    setChart(charts.packets, times, allPeerSets(t, "packets"));
    setChart(charts.control, times, [
      way("received", COLOR.self, column(t.samples, function (s) {
        return s.control_received_per_s;
      }), false),
      way("sent", "#17becf", column(t.samples, function (s) {
        return s.control_sent_per_s;
      }), true),
    ]);
    bump("trafficUpdates");
  }

  // ------------------------------------------------------------ polling
  async function poll() {
    try {
      drawMesh(await getJSON("/api/v1/mesh"));
      if (Date.now() - trafficAt >= trafficEvery) {
        drawTraffic(await getJSON("/api/v1/traffic"));
        trafficAt = Date.now();
      }
      lastOk = Date.now();
      show("live", "live");
    } catch (err) {
      show(err && err.name === "AbortError" ? "stalled" : "reconnecting",
        err && err.name === "AbortError" ? "stalled" : "reconnecting");
    }
    setTimeout(poll, MESH_MS);
  }

  setInterval(function () {
    if (body.dataset.live === "live" && Date.now() - lastOk > STALL_MS) {
      show("stalled", "stalled");
    }
  }, 500);
  poll();
})();
