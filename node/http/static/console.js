// The admin console: polls the node's admin JSON every few seconds and draws the current view.
// Text from the node is only ever set as textContent (never parsed as HTML).
"use strict";

(function () {
  const S = window.SIKU;
  const t = S.t;
  const POLL_MS = 3000;
  const API = "/admin/api/v1/";
  const VIEWS = ["overview", "peers", "sync", "transfers", "storage", "replication", "events", "network", "catalogue", "resource"];
  const EVENT_LIMIT = 200;
  const data = { status: null, peers: null, sync: null, replication: null, overview: null, events: null, network: null };
  let failed = false;
  let updated = null;
  let resourcePid = null;
  let resource = null;
  let search = null;

  // --- helpers ------------------------------------------------------------------------------

  function h(tag, attrs) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") el.className = v;
        else if (k === "text") el.textContent = v;
        else el.setAttribute(k, v);
      }
    }
    for (let i = 2; i < arguments.length; i++) add(el, arguments[i]);
    return el;
  }

  function add(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach(function (c) { add(el, c); });
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }

  function bytes(n) {
    if (n === null || n === undefined) return t("common.unknown");
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
  }

  function num(n) {
    return n === null || n === undefined ? t("common.unknown") : Number(n).toLocaleString(S.lang() === "zh" ? "zh-CN" : "en");
  }

  function span(seconds) {
    if (seconds === null || seconds === undefined) return t("common.unknown");
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return t("unit.s", { n: s });
    if (s < 3600) return t("unit.min", { n: Math.floor(s / 60) });
    if (s < 86400) return t("unit.hours_minutes", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
    return t("unit.days_hours", { d: Math.floor(s / 86400), h: Math.floor((s % 86400) / 3600) });
  }

  function ago(seconds) {
    return seconds === null || seconds === undefined ? t("common.never") : t("common.ago", { t: span(seconds) });
  }

  function agoMs(ms) {
    return ms ? ago((Date.now() - ms) / 1000) : t("common.never");
  }

  function when(ms) {
    if (!ms) return t("common.unknown");
    return new Date(ms).toLocaleString(S.lang() === "zh" ? "zh-CN" : "en-GB");
  }

  function word(prefix, value) {
    if (value === null || value === undefined || value === "") return t("common.unknown");
    const key = prefix + "." + value;
    const text = t(key);
    return text === key ? String(value) : text;
  }

  function badge(kind, text) {
    return h("span", { class: "badge " + kind, text: text });
  }

  function bar(fraction, kind) {
    const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
    const fillEl = h("span");
    fillEl.style.width = pct.toFixed(1) + "%"; // CSSOM, not a style attribute: the CSP allows it
    return h("div", { class: "bar " + (kind || ""), title: pct.toFixed(1) + "%" }, fillEl);
  }

  function kv(pairs) {
    const dl = h("dl", { class: "kv" });
    pairs.forEach(function (p) {
      if (!p) return;
      dl.appendChild(h("dt", { text: t(p[0]) }));
      dl.appendChild(h("dd", p[2] ? { class: p[2] } : null, p[1]));
    });
    return dl;
  }

  function card(titleKey) {
    const c = h("div", { class: "card" }, titleKey ? h("h3", { text: t(titleKey) }) : null);
    for (let i = 1; i < arguments.length; i++) add(c, arguments[i]);
    return c;
  }

  function stat(labelKey, value) {
    return h("div", { class: "stat" }, h("div", { class: "value", text: value }), h("div", { class: "label", text: t(labelKey) }));
  }

  // columns: [key, cell(row) → node/text, "num"?]
  function table(columns, rows, emptyKey, rowAttrs) {
    if (!rows || rows.length === 0) return h("p", { class: "empty", text: t(emptyKey) });
    const head = h("tr", null, columns.map(function (c) { return h("th", { class: c[2] || null, text: t(c[0]) }); }));
    const body = rows.map(function (r) {
      return h("tr", rowAttrs ? rowAttrs(r) : null, columns.map(function (c) { return h("td", { class: c[2] || null }, c[1](r)); }));
    });
    return h("div", { class: "table-wrap" }, h("table", null, h("thead", null, head), h("tbody", null, body)));
  }

  function tierName(tier) { return word("tier", tier); }

  function nodeLabel(n) {
    if (!n) return t("common.unknown");
    return h("span", null, n.name || n.node_id, n.tier ? h("span", { class: "muted", text: " · " + tierName(n.tier) }) : null);
  }

  // --- data -------------------------------------------------------------------------------

  async function getJson(path) {
    const resp = await fetch(API + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (resp.status === 401) {
      window.location.assign("/console/login");
      throw new Error("signed out");
    }
    if (!resp.ok) {
      let detail = resp.statusText;
      try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
      const err = new Error(detail);
      err.status = resp.status;
      throw err;
    }
    return resp.json();
  }

  async function poll() {
    try {
      const got = await Promise.all([
        getJson("status"), getJson("peers"), getJson("sync"), getJson("replication"), getJson("console/overview"),
      ]);
      [data.status, data.peers, data.sync, data.replication, data.overview] = got;
      // The events and network views are fetched only while one of them is shown.
      if (current() === "events") data.events = await getJson(eventsQuery());
      if (current() === "network") data.network = await getJson("console/network");
      failed = false;
      updated = new Date();
    } catch (e) {
      failed = true;
    }
    render();
  }

  // --- views ------------------------------------------------------------------------------

  function current() {
    const hash = window.location.hash.replace(/^#/, "");
    if (hash.startsWith("resource/")) return "resource";
    return VIEWS.indexOf(hash) >= 0 ? hash : "overview";
  }

  function fill(view, nodes) {
    const el = document.getElementById("view-" + view);
    el.replaceChildren.apply(el, [].concat(nodes).filter(Boolean));
  }

  function alertLine(a) {
    const params = Object.assign({}, a.params);
    if (Array.isArray(params.names)) params.names = params.names.join(", ");
    return h("li", { class: "alert alert-" + a.level }, h("strong", { text: t("level." + a.level) }), t("alert." + a.code, params));
  }

  function renderOverview() {
    const s = data.status;
    if (!s) return fill("overview", h("p", { class: "empty", text: t("common.loading") }));
    const n = s.node;
    const m = s.membership || {};
    const o = data.overview || { parent: null, children: [], alerts: [] };
    const alerts = o.alerts.length
      ? h("ul", { class: "alerts", id: "alerts" }, o.alerts.map(alertLine))
      : h("p", { class: "alert alert-ok", id: "alerts", text: t("overview.no_alerts") });
    const quota = s.storage.quota_bytes;
    fill("overview", [
      h("h2", { id: "node-name", text: n.name }),
      h("div", { class: "stats" },
        stat("overview.records", num(s.counts.records)),
        stat("overview.files", num(s.counts.files)),
        stat("overview.content_bytes", bytes(s.counts.content_bytes)),
        stat("overview.peers", m.enrolled ? num(m.peers.connected) + " / " + num(m.peers.known) : t("common.unknown")),
        stat("overview.uptime", span(s.uptime_seconds))),
      card("overview.alerts", alerts),
      h("div", { class: "grid" },
        card("overview.identity", kv([
          ["overview.name", n.name],
          ["overview.node_id", n.id, "mono"],
          ["overview.code", n.code],
          ["overview.tier", tierName(n.tier)],
          m.enrolled ? ["overview.region", m.region] : null,
          ["overview.network", m.network ? m.network.name : t("common.unknown")],
          ["overview.version", n.version],
          ["overview.started", s.started_at],
          ["overview.listen", s.listen.public + " · " + s.listen.admin],
          m.enrolled ? ["overview.certificate", when(m.certificate_expires_ms)] : null,
        ])),
        card("overview.tree", kv([
          ["overview.parent", o.parent ? nodeLabel(o.parent) : (m.enrolled ? t("overview.root") : t("overview.none"))],
          ["overview.children", o.children.length
            ? h("ul", { class: "plain", id: "children" }, o.children.map(function (c) { return h("li", null, nodeLabel(c), " ", c.state ? badge(c.state, word("state", c.state)) : null); }))
            : t("overview.none")],
        ])),
        card("overview.holdings", kv([
          ["overview.sync_records", s.sync.enabled ? num(s.sync.records) : t("common.unknown")],
          ["overview.storage", h("div", null, bytes(s.storage.used_bytes) + " / " + bytes(quota), bar(quota ? s.storage.used_bytes / quota : 0))],
        ]))),
    ]);
  }

  function syncByPeer() {
    const out = {};
    ((data.sync && data.sync.peers) || []).forEach(function (p) { out[p.peer] = p; });
    return out;
  }

  function renderPeers() {
    const p = data.peers;
    if (!p) return fill("peers", h("p", { class: "empty", text: t("common.loading") }));
    const bySync = syncByPeer();
    const peers = (p.peers || []).filter(function (x) { return x.state !== "self"; });
    fill("peers", [
      h("h2", { text: t("peers.title") + (p.network ? " · " + p.network.name : "") }),
      table([
        ["peers.name", function (r) { return h("span", { class: "peer-name" }, r.name || t("common.unknown")); }],
        ["peers.tier", function (r) { return tierName(r.tier); }],
        ["peers.state", function (r) { return badge(r.state, word("state", r.state)); }],
        ["peers.address", function (r) { return h("span", { class: "mono", text: r.url }); }],
        ["peers.last_seen", function (r) { return ago(r.last_seen_ago_s); }],
        ["peers.rtt", function (r) { return r.rtt_ms === null ? t("common.unknown") : r.rtt_ms.toFixed(1) + " ms"; }, "num"],
        ["peers.failures", function (r) { return num(r.failures); }, "num"],
        ["peers.sync_lag", function (r) {
          const s = bySync[r.node_id];
          if (!s || !s.reconciliations) return t("common.never");
          return s.behind ? badge("warning", t("peers.behind", { count: s.behind })) : badge("ok", t("peers.in_sync"));
        }],
        ["peers.last_error", function (r) { return h("span", { class: "muted", text: r.last_error || "" }); }],
      ], peers, "peers.none", function (r) { return { "data-node-id": r.node_id || "" }; }),
    ]);
  }

  function renderSync() {
    const s = data.sync;
    if (!s) return fill("sync", h("p", { class: "empty", text: t("common.loading") }));
    if (!s.enabled) return fill("sync", [h("h2", { text: t("sync.title") }), h("p", { class: "empty", text: t("sync.disabled") })]);
    const kinds = Object.entries(s.records || {}).map(function (e) { return e[0] + ": " + num(e[1]); }).join(" · ");
    fill("sync", [
      h("h2", { text: t("sync.title") }),
      h("div", { class: "stats" },
        stat("sync.total", num(s.total)),
        stat("sync.behind", num(s.behind)),
        stat("sync.interval", span(s.interval_seconds))),
      h("p", { class: "muted", text: t("sync.kinds") + ": " + kinds }),
      table([
        ["sync.peer", function (r) { return h("span", null, r.name || r.peer, r.tier ? h("span", { class: "muted", text: " · " + tierName(r.tier) }) : null); }],
        ["sync.last", function (r) { return agoMs(r.last_reconcile_ms); }],
        ["sync.result", function (r) { return r.last_error ? badge("error", r.last_result + ": " + r.last_error) : badge(r.last_result === "in sync" ? "ok" : "info", r.last_result); }],
        ["sync.behind_col", function (r) { return num(r.behind); }, "num"],
        ["sync.ahead", function (r) { return num(r.ahead); }, "num"],
        ["sync.received", function (r) { return num(r.records_received); }, "num"],
        ["sync.sent", function (r) { return num(r.records_sent); }, "num"],
        ["sync.bytes_in", function (r) { return bytes(r.bytes_received); }, "num"],
        ["sync.bytes_out", function (r) { return bytes(r.bytes_sent); }, "num"],
        ["sync.errors", function (r) { return num(r.errors); }, "num"],
        ["sync.rejected", function (r) { return num(r.rejected); }, "num"],
      ], s.peers, "sync.none"),
    ]);
  }

  function resourceLink(pid) {
    return h("a", { href: "#resource/" + encodeURIComponent(pid), class: "mono", text: pid });
  }

  function renderTransfers() {
    const r = data.replication;
    if (!r) return fill("transfers", h("p", { class: "empty", text: t("common.loading") }));
    if (!r.enabled || !r.transfers) return fill("transfers", [h("h2", { text: t("nav.transfers") }), h("p", { class: "empty", text: t("transfers.disabled") })]);
    const tr = r.transfers;
    const queue = Object.entries(tr.queued).map(function (e) { return Object.assign({ name: e[0] }, e[1]); });
    const w = tr.window;
    fill("transfers", [
      h("h2", { text: t("nav.transfers") }),
      h("div", { class: "grid" },
        card("transfers.window", kv([
          ["transfers.windows", w.windows.length ? w.windows.join(", ") : t("transfers.always")],
          ["transfers.in_force", badge(w.in_force ? "ok" : "warning", w.in_force ? t("common.yes") : t("common.no"))],
          w.next_start ? ["transfers.next_start", w.next_start] : null,
          ["transfers.rate_limit", tr.rate_limit_bytes_per_s ? bytes(tr.rate_limit_bytes_per_s) + "/s" : t("transfers.unlimited")],
        ])),
        card("transfers.totals", kv([
          ["transfers.received", bytes(tr.totals.bytes)],
          ["transfers.served", bytes(r.counters.served_bytes)],
        ]))),
      h("h3", { text: t("transfers.queue") }),
      table([
        ["transfers.priority", function (q) { return word("priority", q.name); }],
        ["transfers.tasks", function (q) { return num(q.tasks); }, "num"],
        ["transfers.bytes", function (q) { return bytes(q.bytes); }, "num"],
        ["transfers.waiting", function (q) { return num(q.waiting_retry); }, "num"],
      ], queue, "transfers.queue_empty"),
      h("h3", { text: t("transfers.active") }),
      table([
        ["transfers.resource", function (a) { return resourceLink(a.pid); }],
        ["transfers.class", function (a) { return word("class", a.class); }],
        ["transfers.priority", function (a) { return word("priority", a.priority); }],
        ["transfers.progress", function (a) {
          return h("div", null, bar(a.bytes_total ? a.bytes_done / a.bytes_total : 0, "ok"), bytes(a.bytes_done) + " / " + bytes(a.bytes_total));
        }],
        ["transfers.rate", function (a) { return bytes(a.rate_bytes_per_s) + "/s"; }, "num"],
      ], tr.active, "transfers.none_active", function (a) { return { "data-pid": a.pid, "data-state": a.state }; }),
      h("h3", { text: t("transfers.failures") }),
      table([
        ["transfers.resource", function (f) { return resourceLink(f.pid); }],
        ["transfers.class", function (f) { return word("class", f.class); }],
        ["transfers.reason", function (f) { return f.reason; }],
        ["transfers.progress", function (f) { return bytes(f.bytes_done) + " / " + bytes(f.bytes_total); }, "num"],
        ["transfers.at", function (f) { return f.at; }],
      ], tr.failures.slice().reverse(), "transfers.none_failed", function (f) { return { "data-pid": f.pid }; }),
    ]);
  }

  function renderStorage() {
    const s = data.status;
    const r = data.replication;
    if (!s || !r) return fill("storage", h("p", { class: "empty", text: t("common.loading") }));
    const quota = s.storage.quota_bytes;
    const used = s.storage.used_bytes;
    const copies = r.copies || {};
    const plan = r.plan || {};
    const usage = plan.usage || {};
    // Network copies are rows of the copies table; the node's own content is not a copy, so
    // its bytes come from the planner's usage (own content is always kept).
    const classes = ["own", "preservation", "subscription", "cache"].map(function (k) {
      const c = copies[k] || { copies: k === "own" ? null : 0, bytes: k === "own" ? usage.own || 0 : 0 };
      return { name: k, copies: c.copies, bytes: c.bytes, planned: usage[k] };
    });
    fill("storage", [
      h("h2", { text: t("storage.title") }),
      h("div", { class: "stats" },
        stat("storage.used", bytes(used)),
        stat("storage.quota", bytes(quota)),
        stat("storage.free", bytes(Math.max(0, quota - used)))),
      card(null, bar(quota ? used / quota : 0)),
      table([
        ["storage.class", function (c) { return h("span", { "data-class": c.name }, word("class", c.name)); }],
        ["storage.copies", function (c) { return num(c.copies); }, "num"],
        ["storage.used", function (c) { return bytes(c.bytes); }, "num"],
        ["storage.planned", function (c) { return c.planned === undefined ? t("common.unknown") : bytes(c.planned); }, "num"],
        ["storage.share", function (c) {
          const limit = c.name === "cache" && r.cache_bytes ? r.cache_bytes : quota;
          return h("div", null, bar(limit ? c.bytes / limit : 0), h("span", { class: "muted", text: bytes(c.bytes) + " / " + bytes(limit) }));
        }],
      ], classes, "common.unknown"),
      r.enabled ? card(null, kv([
        ["storage.cache_limit", bytes(r.cache_bytes)],
        ["storage.subscriptions", (r.subscriptions || []).length ? r.subscriptions.join(", ") : t("overview.none")],
        ["storage.deferred", plan.deferred_for_quota ? num(plan.deferred_for_quota.copies) + " (" + bytes(plan.deferred_for_quota.bytes) + ")" : t("common.unknown")],
      ])) : null,
    ]);
  }

  function renderReplication() {
    const r = data.replication;
    if (!r) return fill("replication", h("p", { class: "empty", text: t("common.loading") }));
    if (!r.enabled) return fill("replication", [h("h2", { text: t("replication.title") }), h("p", { class: "empty", text: t("transfers.disabled") })]);
    if (!r.plan) return fill("replication", [h("h2", { text: t("replication.title") }), h("p", { class: "empty", text: t("replication.not_planned") })]);
    const health = r.plan.health;
    const rows = function (obj) { return Object.entries(obj || {}).filter(function (e) { return e[1] > 0; }).map(function (e) { return { rule: e[0], count: e[1] }; }); };
    const below = rows(health.below_policy);
    const unplaceable = rows(health.unplaceable);
    const ruleCols = [
      ["replication.rule", function (x) { return word("rule", x.rule); }],
      ["replication.count", function (x) { return num(x.count); }, "num"],
    ];
    fill("replication", [
      h("h2", { text: t("replication.title") }),
      h("div", { class: "stats" },
        stat("replication.resources", num(health.resources)),
        stat("replication.at_risk", num(health.at_risk)),
        stat("replication.fetch", num(r.plan.fetch)),
        stat("replication.drop", num(r.plan.drop))),
      below.length === 0 && health.at_risk === 0 ? h("p", { class: "alert alert-ok", text: t("replication.all_met") }) : null,
      h("h3", { text: t("replication.below_policy") }),
      table(ruleCols, below, "replication.all_met"),
      unplaceable.length ? [h("h3", { text: t("replication.unplaceable") }), table(ruleCols, unplaceable, "overview.none")] : null,
      card("replication.plan", kv([
        ["replication.planned", agoMs(r.last_plan_ms)],
        ["replication.fetch", num(r.plan.fetch) + " (" + bytes(r.plan.fetch_bytes) + ")"],
        ["transfers.queue", Object.entries(r.plan.fetch_by_priority).map(function (e) { return word("priority", e[0]) + " " + e[1]; }).join(" · ")],
      ])),
    ]);
  }

  function eventsQuery() {
    const kind = document.getElementById("events-kind").value;
    const level = document.getElementById("events-level").value;
    return "events?limit=" + EVENT_LIMIT + (kind ? "&kind=" + encodeURIComponent(kind) : "") + (level ? "&level=" + encodeURIComponent(level) : "");
  }

  function fillSelect(id, allKey, values, label) {
    const sel = document.getElementById(id);
    const key = S.lang() + ":" + values.join(",");
    if (sel.dataset.options === key) return; // rebuilt only when they change: an open list stays open
    sel.dataset.options = key;
    const chosen = sel.value;
    sel.replaceChildren.apply(sel, [h("option", { value: "", text: t(allKey) })].concat(values.map(function (v) {
      return h("option", { value: v, text: label(v) });
    })));
    sel.value = values.indexOf(chosen) >= 0 ? chosen : "";
  }

  function renderEvents() {
    const e = data.events;
    const box = document.getElementById("events-list");
    fillSelect("events-kind", "events.all_kinds", (e && e.kinds) || [], function (k) { return word("kind", k); });
    fillSelect("events-level", "events.all_levels", (e && e.levels) || [], function (l) { return t("events.at_least", { level: t("level." + l) }); });
    if (!e) return box.replaceChildren(h("p", { class: "empty", text: t("common.loading") }));
    const total = e.counts.info + e.counts.warning + e.counts.error;
    box.replaceChildren(
      h("p", { class: "muted", text: t("events.held", { n: num(total), cap: num(e.capacity) }) }),
      table([
        ["events.time", function (x) { return h("span", { title: when(x.first_ms) }, when(x.at_ms)); }],
        ["events.level", function (x) { return badge(x.level === "info" ? "info" : x.level, t("level." + x.level)); }],
        ["events.kind", function (x) { return word("kind", x.kind); }],
        ["events.about", function (x) { return x.pid ? resourceLink(x.pid) : (x.node_name || x.node || ""); }],
        ["events.message", function (x) { return x.message; }],
        ["events.count", function (x) { return num(x.count); }, "num"],
      ], e.events, "events.none", function (x) { return { "data-kind": x.kind, "data-level": x.level }; }));
  }

  async function refreshEvents() {
    try {
      data.events = await getJson(eventsQuery());
    } catch (err) {
      failed = true;
    }
    render();
  }

  function renderNetwork() {
    const n = data.network;
    if (!n) return fill("network", h("p", { class: "empty", text: t("common.loading") }));
    if (!n.enrolled) return fill("network", [h("h2", { text: t("network.title") }), h("p", { class: "empty", text: t("network.not_enrolled") })]);
    const nodes = n.nodes;
    const st = function (x) { return x.status || {}; };
    const free = nodes.reduce(function (a, x) { return a + (x.status ? x.status.free_bytes : 0); }, 0);
    fill("network", [
      h("h2", { text: t("network.title") }),
      h("div", { class: "stats" },
        stat("network.nodes", num(nodes.length)),
        stat("network.online_count", num(nodes.filter(function (x) { return x.online; }).length)),
        stat("network.full_count", num(nodes.filter(function (x) { return x.status && x.status.full; }).length)),
        stat("network.total_free", bytes(free))),
      h("p", { class: "muted", text: t("network.help", { minutes: Math.round(n.heartbeat_s / 60) }) }),
      table([
        ["network.name", function (x) { return h("span", { class: "node-name" }, x.name || x.node_id); }],
        ["network.tier", function (x) { return tierName(x.tier); }],
        ["network.region", function (x) { return x.region || ""; }],
        ["network.parent", function (x) { return x.parent || t("overview.root"); }],
        ["network.state", function (x) { return badge(x.online ? "connected" : "failed", x.online ? t("network.online") : t("network.offline")); }],
        ["network.status_age", function (x) { return x.status ? ago(x.status.age_s) : t("network.no_status"); }],
        ["network.holdings", function (x) { return num(st(x).held_resources); }, "num"],
        ["network.used", function (x) {
          if (!x.status) return t("common.unknown");
          const s = x.status;
          return h("div", null, bar(s.quota_bytes ? s.used_bytes / s.quota_bytes : 0, s.full ? "error" : ""), bytes(s.used_bytes) + " / " + bytes(s.quota_bytes));
        }],
        ["network.free", function (x) { return x.status ? bytes(x.status.free_bytes) : t("common.unknown"); }, "num"],
        ["network.lag", function (x) { return num(st(x).sync_behind); }, "num"],
        ["network.verified", function (x) { return x.status ? (x.status.oldest_verified_s ? ago(Date.now() / 1000 - x.status.oldest_verified_s) : t("common.never")) : t("common.unknown"); }],
        ["network.full", function (x) { return x.status ? (x.status.full ? badge("error", t("common.yes")) : t("common.no")) : t("common.unknown"); }],
      ], nodes, "network.none", function (x) { return { "data-node-id": x.node_id, "data-online": x.online ? "yes" : "no" }; }),
    ]);
  }

  function renderSearch() {
    const box = document.getElementById("search-results");
    if (!search) return box.replaceChildren();
    if (search.error) return box.replaceChildren(h("p", { class: "alert alert-error", text: search.error }));
    if (!search.results.length) return box.replaceChildren(h("p", { class: "empty", text: t("catalogue.no_results", { query: search.query }) }));
    box.replaceChildren(
      h("p", { class: "muted", text: t("catalogue.results", { total: search.total, query: search.query }) }),
      table([
        ["catalogue.col_title", function (r) { return h("a", { href: "#resource/" + encodeURIComponent(r.pid), class: "result-title", text: r.title || r.pid }); }],
        ["catalogue.creator", function (r) { return r.creator.join("; "); }],
        ["catalogue.date", function (r) { return r.date || ""; }],
        ["catalogue.collection", function (r) { return r.collection || ""; }],
        ["catalogue.access", function (r) { return word("access", r.access); }],
      ], search.results, "catalogue.no_results"));
  }

  async function doSearch(q) {
    try {
      search = await getJson("search?q=" + encodeURIComponent(q));
    } catch (e) {
      search = { query: q, error: e.message, results: [] };
    }
    renderSearch();
  }

  function dcValues(rec, element) {
    return (rec.dc[element] || []).map(function (v) { return v.value; });
  }

  function renderResource() {
    if (!resource) return fill("resource", h("p", { class: "empty", text: t("common.loading") }));
    if (resource.error) {
      return fill("resource", [h("a", { href: "#catalogue", text: t("resource.back") }), h("p", { class: "alert alert-error", text: resource.status === 404 ? t("resource.not_found") : resource.error })]);
    }
    const rec = resource.record;
    const rights = rec.rights;
    const c = resource.copy;
    fill("resource", [
      h("p", null, h("a", { href: "#catalogue", text: t("resource.back") })),
      h("h2", { id: "resource-title", text: dcValues(rec, "title").join(" / ") || rec.pid }),
      h("div", { class: "grid" },
        card("resource.record", kv([
          ["resource.pid", rec.pid, "mono"],
          ["catalogue.creator", dcValues(rec, "creator").join("; ") || t("common.unknown")],
          ["catalogue.date", dcValues(rec, "date").join("; ") || t("common.unknown")],
          ["resource.collection", rec.collection || t("overview.none")],
          ["resource.origin", resource.origin || rec.origin],
          ["resource.version", rec.version, "mono"],
          ["resource.held_here", resource.held_here
            ? h("span", null, badge("ok", t("common.yes")), c ? " " + t("resource.copy_class", { klass: word("class", c.class) }) + (c.dark ? " · " + t("resource.dark") : "") : "")
            : badge("info", t("common.no"))],
        ])),
        card("resource.rights", kv([
          ["resource.access", badge(rights.open_now ? "ok" : "warning", word("access", rights.access))],
          ["resource.open_now", rights.open_now ? t("common.yes") : t("common.no")],
          rights.embargo_until ? ["resource.embargo", rights.embargo_until] : null,
          ["resource.statement", rights.statement ? h("a", { href: rights.statement, rel: "noreferrer", text: rights.statement }) : t("common.unknown")],
          ["resource.license", rights.license || t("common.unknown")],
        ]))),
      h("h3", { text: t("resource.holders") }),
      h("div", { id: "holders" }, table([
        ["resource.holder", function (x) { return h("span", { class: "holder-name" }, x.name || x.node_id, x.this_node ? h("span", { class: "muted", text: " (" + t("resource.this_node") + ")" }) : null); }],
        ["peers.tier", function (x) { return tierName(x.tier); }],
        ["overview.node_id", function (x) { return h("span", { class: "mono", text: x.node_id }); }],
        ["resource.copy", function (x) { return badge(x.current ? "ok" : "warning", x.current ? t("resource.current") : t("resource.outdated")); }],
        ["resource.verified", function (x) { return x.verified || t("common.unknown"); }],
      ], resource.holders, "resource.no_holders")),
      h("h3", { text: t("resource.files") }),
      table([
        ["resource.path", function (f) { return h("span", { class: "mono", text: f.path }); }],
        ["resource.size", function (f) { return bytes(f.size); }, "num"],
        ["resource.media_type", function (f) { return f.media_type; }],
      ], rec.files, "overview.none"),
    ]);
  }

  async function loadResource(pid) {
    resourcePid = pid;
    resource = null;
    renderResource();
    try {
      const got = await getJson("resource?pid=" + encodeURIComponent(pid));
      if (resourcePid === pid) resource = got;
    } catch (e) {
      if (resourcePid === pid) resource = { error: e.message, status: e.status };
    }
    render();
  }

  const RENDER = {
    overview: renderOverview, peers: renderPeers, sync: renderSync, transfers: renderTransfers,
    storage: renderStorage, replication: renderReplication, events: renderEvents, network: renderNetwork,
    catalogue: renderSearch, resource: renderResource,
  };

  function render() {
    const view = current();
    document.querySelectorAll("section.view").forEach(function (el) { el.hidden = el.dataset.view !== view; });
    document.querySelectorAll("#nav a").forEach(function (a) {
      const on = a.dataset.view === view || (view === "resource" && a.dataset.view === "catalogue");
      a.classList.toggle("current", on);
    });
    document.body.dataset.view = view;
    if (data.status) {
      const n = data.status.node;
      document.getElementById("who").textContent = n.name + " · " + tierName(n.tier) + " · " + n.code;
      document.title = n.name + " — " + t("nav." + (view === "resource" ? "catalogue" : view));
    }
    const live = document.getElementById("live");
    live.className = "live " + (failed ? "error" : updated ? "ok" : "");
    live.textContent = failed ? t("live.error") : updated ? t("live.ok", { time: updated.toLocaleTimeString(S.lang() === "zh" ? "zh-CN" : "en-GB") }) : "";
    RENDER[view]();
    document.body.dataset.loaded = data.status ? "yes" : "no";
  }

  function route() {
    const hash = window.location.hash.replace(/^#/, "");
    if (hash === "events" && !data.events) refreshEvents();
    if (hash === "network" && !data.network) getJson("console/network").then(function (n) { data.network = n; render(); }, function () { failed = true; });
    if (hash.startsWith("resource/")) {
      const pid = decodeURIComponent(hash.slice("resource/".length));
      if (pid !== resourcePid) { loadResource(pid); return; }
    }
    render();
  }

  document.addEventListener("DOMContentLoaded", function () {
    S.apply();
    document.getElementById("lang").addEventListener("click", function () {
      S.setLang(S.lang() === "zh" ? "en" : "zh");
      render();
    });
    document.getElementById("search-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      const q = document.getElementById("q").value.trim();
      if (q) doSearch(q);
    });
    document.getElementById("events-kind").addEventListener("change", refreshEvents);
    document.getElementById("events-level").addEventListener("change", refreshEvents);
    window.addEventListener("hashchange", route);
    route();
    poll();
    window.setInterval(poll, POLL_MS);
  });
})();
