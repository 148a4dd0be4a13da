// The cascata console: the topology with live counts, and browsers for streams, views,
// failures and versions, over the JSON API of `cascata up` (cascata/local/webconsole.py).
// Plain browser JavaScript, no build step. Every value from the pipeline is put into the page
// as text (textContent), never as markup: record data is whatever a producer sent.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const STATUS_EVERY_MS = 1000;
const FAILURES_EVERY_MS = 3000;
const state = { overview: null, status: null, tab: "topology", layout: null, views: null,
                cursor: null, failureTimer: null, selectedFailure: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ cache: "no-store" }, options || {}));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `HTTP ${response.status} from ${path}`);
  }
  return body;
}

function banner(message) {
  const node = document.getElementById("banner");
  node.textContent = message || "";
  node.hidden = !message;
}

const fmt = new Intl.NumberFormat("en-US");
function count(n) { return n === null || n === undefined ? "–" : fmt.format(n); }
function rate(n) { return n === null || n === undefined ? "" : `${n.toFixed(n < 10 ? 1 : 0)}/s`; }
function seconds(ms) { return `${(ms / 1000).toFixed(1)} s`; }

// ---- tabs ------------------------------------------------------------------------------------

function showTab(name) {
  if (!document.getElementById(name)) name = "topology";
  state.tab = name;
  for (const section of document.querySelectorAll("section.tab")) section.hidden = section.id !== name;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.tab === name);
  clearInterval(state.failureTimer);
  state.failureTimer = null;
  if (name === "streams") loadStreams();
  if (name === "views") loadViews();
  if (name === "failures") {
    loadFailures();
    state.failureTimer = setInterval(loadFailures, FAILURES_EVERY_MS);
  }
  if (name === "versions") loadVersions();
}

// ---- topology --------------------------------------------------------------------------------

const BOX = { processor: [226, 84], scheduled: [190, 50], api: [170, 50], archive: [190, 50] };
const DEFAULT_BOX = [170, 46];
const COLUMN = 252;
const GAP = 18;
const LAYERED = new Set(["source", "write"]);

function layout(topology) {
  const nodes = new Map(topology.nodes.map((n) => [n.id, n]));
  const layer = new Map([...nodes.keys()].map((id) => [id, 0]));
  // Longest path over source and write edges: producers to the left of what they feed.
  for (let pass = 0; pass < nodes.size; pass++) {
    let moved = false;
    for (const e of topology.edges) {
      if (!LAYERED.has(e.kind)) continue;
      const want = layer.get(e.from) + 1;
      if (want > layer.get(e.to) && want < nodes.size) { layer.set(e.to, want); moved = true; }
    }
    if (!moved) break;
  }
  // Outside the flow of records (what only reads, like the query API; what is only read or
  // only receives failures, like the registry and the failures bucket): the last column.
  const last = Math.max(...layer.values()) + 1;
  for (const n of topology.nodes) {
    const fed = topology.edges.some((e) => e.to === n.id && LAYERED.has(e.kind));
    const feeds = topology.edges.some((e) => e.from === n.id && LAYERED.has(e.kind));
    if (!fed && !feeds) layer.set(n.id, last);
  }
  const columns = [];
  for (const n of topology.nodes) {
    const l = layer.get(n.id);
    (columns[l] = columns[l] || []).push(n);
  }
  const position = new Map();
  let height = 0;
  columns.forEach((column, index) => {
    if (!column) return;
    // Order each column by where its inputs sit, so edges cross less.
    const weight = (n) => {
      const ys = topology.edges.filter((e) => e.to === n.id && position.has(e.from)).map((e) => position.get(e.from).cy);
      return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : Number.MAX_SAFE_INTEGER;
    };
    column.sort((a, b) => weight(a) - weight(b));
    let y = GAP;
    for (const n of column) {
      const [w, h] = BOX[n.kind] || DEFAULT_BOX;
      position.set(n.id, { x: GAP + index * COLUMN, y, w, h, cy: y + h / 2 });
      y += h + GAP;
    }
    height = Math.max(height, y);
  });
  return { position, width: GAP + columns.length * COLUMN, height };
}

function drawTopology() {
  const topology = state.overview.topology;
  const graph = document.getElementById("graph");
  const { position, width, height } = state.layout = layout(topology);
  graph.replaceChildren();
  graph.setAttribute("width", width);
  graph.setAttribute("height", height);
  graph.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const edges = svg("g", { class: "edges" });
  for (const e of topology.edges) {
    const a = position.get(e.from);
    const b = position.get(e.to);
    const x1 = a.x + a.w, y1 = a.cy, x2 = b.x, y2 = b.cy;
    const bend = Math.max(40, Math.abs(x2 - x1) / 2);
    const aux = e.kind === "read" || e.kind === "on_failure" || e.to.startsWith("bucket:quarantine");
    const group = svg("g", { class: `edge ${e.kind}${aux ? " aux" : ""}`, "data-edge": e.id });
    group.append(svg("path", { d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}` }));
    // The label sits at 70% of the curve, near its target, where fanned-out edges are apart.
    const t = 0.7, u = 1 - t;
    const lx = u * u * u * x1 + 3 * u * u * t * (x1 + bend) + 3 * u * t * t * (x2 - bend) + t * t * t * x2;
    const ly = u * u * u * y1 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t * t * t * y2;
    group.append(svg("text", { x: lx, y: ly - 4, "text-anchor": "middle", "data-field": "label" }));
    edges.append(group);
  }
  const nodes = svg("g", { class: "nodes" });
  for (const n of topology.nodes) {
    const p = position.get(n.id);
    const group = svg("g", { class: `node ${n.kind}`, "data-node": n.id, transform: `translate(${p.x},${p.y})` });
    group.append(svg("title", { text: n.description || n.name }));
    group.append(svg("rect", { width: p.w, height: p.h, rx: n.kind === "stream" ? 14 : 5 }));
    group.append(svg("text", { class: "kind", x: 10, y: 14, text: n.kind === "table" ? (n.role || "view") : n.kind }));
    group.append(svg("text", { class: "title", x: 10, y: 31, text: n.name }));
    if (n.kind === "processor") {
      group.append(svg("text", { class: "metric", x: 10, y: 50, "data-field": "line1" }));
      group.append(svg("text", { class: "metric", x: 10, y: 66, "data-field": "line2" }));
      group.append(svg("text", { class: "metric", x: 10, y: 80, "data-field": "line3" }));
    } else if (n.kind === "table" || n.kind === "archive") {
      group.append(svg("text", { class: "metric", x: 10, y: n.kind === "archive" ? 46 : 42, "data-field": "line1" }));
    }
    nodes.append(group);
  }
  graph.append(edges, nodes);
}

function processorTotals(status) {
  const totals = new Map();
  for (const m of status.processors) {
    const t = totals.get(m.processor) || { per_s: 0, behind: 0, age: 0, invocations: 0, errors: 0, retries: 0, on_failure: 0 };
    t.per_s += m.records_in_per_s; t.behind += m.records_behind; t.age = Math.max(t.age, m.iterator_age_ms);
    t.invocations += m.invocations; t.errors += m.errors; t.retries += m.retries; t.on_failure += m.on_failure_records;
    totals.set(m.processor, t);
  }
  return totals;
}

function setText(root, selector, text) {
  const node = root.querySelector(selector);
  if (node && node.textContent !== text) node.textContent = text;
}

function renderStatus(status) {
  const graph = document.getElementById("graph");
  const totals = processorTotals(status);
  for (const [name, t] of totals) {
    const node = graph.querySelector(`[data-node="processor:${CSS.escape(name)}"]`);
    const archive = name === "archive";
    if (archive) continue;
    if (!node) continue;
    const quarantined = (status.quarantined || {})[name] || 0;
    setText(node, '[data-field="line1"]', `in ${rate(t.per_s)} · behind ${count(t.behind)} · ${seconds(t.age)}`);
    setText(node, '[data-field="line2"]', `invocations ${count(t.invocations)} · errors ${count(t.errors)} · retries ${count(t.retries)}`);
    setText(node, '[data-field="line3"]', `on-failure ${count(t.on_failure)} · quarantined ${count(quarantined)}`);
    node.classList.toggle("failing", t.errors > 0 || t.on_failure > 0);
    node.classList.toggle("behind", t.age > 60000);
  }
  for (const m of status.processors) {
    if (m.processor !== "archive") continue;
    const node = graph.querySelector(`[data-node="archive:${CSS.escape(m.stream)}"]`);
    if (node) setText(node, '[data-field="line1"]', `in ${rate(m.records_in_per_s)} · behind ${count(m.records_behind)}`);
  }
  for (const [name, size] of Object.entries(status.views)) {
    const node = graph.querySelector(`[data-node="table:${CSS.escape(name)}"]`);
    if (node) setText(node, '[data-field="line1"]', `${count(size)} items`);
  }
  for (const e of status.edges) {
    const group = graph.querySelector(`[data-edge="${CSS.escape(e.id)}"]`);
    if (!group) continue;
    const label = e.records ? (e.per_s ? `${rate(e.per_s)} · ${count(e.records)}` : count(e.records)) : "";
    setText(group, '[data-field="label"]', label);
    group.classList.toggle("flowing", Boolean(e.per_s));
  }
  renderProcessorTable(status);
  const sizes = document.querySelector("#view-sizes tbody");
  sizes.replaceChildren(...Object.entries(status.views).map(([name, size]) =>
    el("tr", {}, el("td", { text: name }), el("td", { class: "num", "data-view": name, text: count(size) }))));
  setText(document, "#views-version", `(version ${status.views_version || "v1"}, the one readers use)`);
  setText(document, "#lag", count(status.lag_records));
  const quarantined = Object.values(status.quarantined || {}).reduce((a, b) => a + b, 0);
  const onFailure = status.processors.reduce((a, m) => a + m.on_failure_records, 0);
  setText(document, "#failure-count", quarantined + onFailure ? count(quarantined + onFailure) : "");
}

function renderProcessorTable(status) {
  const body = document.querySelector("#processors tbody");
  const rows = status.processors.map((m) => {
    const cell = (field, text, bad) => el("td", { class: `num${bad ? " bad" : ""}`, "data-mapping": m.mapping, "data-field": field, text });
    const quarantined = (status.quarantined || {})[m.processor];
    return el("tr", { "data-mapping": m.mapping },
      el("td", { text: m.mapping }),
      cell("records_in_per_s", rate(m.records_in_per_s)),
      cell("records_in", count(m.records_in)),
      cell("records_behind", count(m.records_behind)),
      cell("iterator_age_ms", seconds(m.iterator_age_ms)),
      cell("invocations", count(m.invocations)),
      cell("errors", count(m.errors), m.errors > 0),
      cell("retries", count(m.retries)),
      cell("on_failure_records", count(m.on_failure_records), m.on_failure_records > 0),
      cell("quarantined", quarantined === undefined ? "" : count(quarantined)));
  });
  body.replaceChildren(...rows);
}

async function pollStatus() {
  try {
    if (!document.hidden) {
      const started = Date.now();
      state.status = await api("/api/status");
      renderStatus(state.status);
      banner(null);
      document.getElementById("updated").textContent =
        `updated ${new Date().toLocaleTimeString()} (${Date.now() - started} ms)`;
    }
  } catch (error) {
    banner(`cannot read the status: ${error.message}`);
  } finally {
    setTimeout(pollStatus, STATUS_EVERY_MS);
  }
}

// ---- streams ---------------------------------------------------------------------------------

async function loadStreams() {
  const pick = document.getElementById("stream-pick");
  if (!pick.options.length) {
    const { streams } = await api("/api/streams").catch((e) => (banner(e.message), { streams: [] }));
    state.streams = streams;
    pick.replaceChildren(...streams.map((s) => el("option", { value: s.name, text: s.name })));
    fillShards();
  }
  await loadRecords();
}

function fillShards() {
  const stream = (state.streams || []).find((s) => s.name === document.getElementById("stream-pick").value);
  const pick = document.getElementById("shard-pick");
  pick.replaceChildren(...(stream ? stream.shards : []).map((s) =>
    el("option", { value: s.id, text: `${s.id} (${count(s.records)} records${s.open ? "" : ", closed"})` })));
}

function dataCell(record) {
  if (record.aggregated) {
    return el("td", {}, el("div", { class: "muted", text: `KPL aggregate of ${record.aggregated.length} records` }),
      ...record.aggregated.map((r) => el("pre", { text: `${r.partition_key}: ${r.data_text ?? "(binary) " + r.data_base64}` })));
  }
  const text = record.json !== undefined ? JSON.stringify(record.json)
    : record.data_text !== undefined ? record.data_text : `(binary, base64) ${record.data_base64}`;
  return el("td", {}, el("pre", { text: text + (record.truncated ? " …(cut)" : "") }));
}

async function loadRecords() {
  const stream = document.getElementById("stream-pick").value;
  const shard = document.getElementById("shard-pick").value;
  const limit = document.getElementById("stream-limit").value;
  const target = document.getElementById("stream-records");
  if (!stream) return;
  try {
    const answer = await api(`/api/streams/${encodeURIComponent(stream)}/records?shard=${encodeURIComponent(shard)}&limit=${limit}`);
    const rows = answer.records.map((r) => el("tr", {},
      el("td", { text: r.sequence }), el("td", { text: r.partition_key }),
      el("td", { text: r.arrival || "" }), el("td", { class: "num", text: count(r.bytes) }), dataCell(r)));
    target.replaceChildren(
      el("p", { class: "muted", text: `the last ${answer.records.length} records of ${answer.stream} ${answer.shard}, newest first` }),
      el("table", { class: "grid", id: "record-table" },
        el("thead", {}, el("tr", {}, ...["sequence", "partition key", "arrival", "bytes", "data"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows)));
  } catch (error) {
    target.replaceChildren(el("p", { class: "err", text: error.message }));
  }
}

// ---- views -----------------------------------------------------------------------------------

async function loadViews() {
  if (state.views) return;
  try {
    state.views = await api("/api/views");
  } catch (error) {
    banner(error.message);
    return;
  }
  const pick = document.getElementById("view-pick");
  pick.replaceChildren(...state.views.tables.map((t) => el("option", { value: t.name, text: `${t.name} (${t.role})` })));
  const versions = document.getElementById("version-pick");
  versions.replaceChildren(...state.views.versions.map((v) =>
    el("option", { value: v, text: v === state.views.live ? `${v} (live)` : v, selected: v === state.views.live })));
  viewChanged();
}

function currentTable() {
  const name = document.getElementById("view-pick").value;
  return state.views.tables.find((t) => t.name === name);
}

function viewChanged() {
  const table = currentTable();
  if (!table) return;
  document.getElementById("key-name").textContent = table.partition_key;
  document.getElementById("sort-label").hidden = !table.sort_key;
  document.getElementById("sort-name").textContent = table.sort_key || "";
  state.cursor = null;
}

function itemCard(item) {
  const rows = Object.entries(item).map(([k, v]) => el("tr", {},
    el("th", { text: k }),
    el("td", { "data-attribute": k }, el("pre", { text: typeof v === "string" ? v : JSON.stringify(v, null, 1) }))));
  return el("table", { class: "grid item" }, el("tbody", {}, ...rows));
}

async function lookUp(event) {
  event.preventDefault();
  const table = currentTable();
  const key = document.getElementById("key").value;
  const sort = document.getElementById("sort").value;
  const target = document.getElementById("view-result");
  if (!key) { target.replaceChildren(el("p", { class: "err", text: `enter a ${table.partition_key}` })); return; }
  const params = new URLSearchParams({ key, version: document.getElementById("version-pick").value });
  if (table.sort_key && sort) params.set("sort", sort);
  try {
    const answer = await api(`/api/views/${encodeURIComponent(table.name)}?${params}`);
    const heading = el("p", { class: "muted", text: `${answer.table} ${answer.version}: ${answer.items.length} item(s) with ${table.partition_key} = ${key}` });
    target.replaceChildren(heading, ...(answer.items.length ? answer.items.map(itemCard)
      : [el("p", { id: "not-found", text: `no item with ${table.partition_key} = ${key}` })]));
  } catch (error) {
    target.replaceChildren(el("p", { class: "err", text: error.message }));
  }
}

async function browse(next) {
  const table = currentTable();
  const target = document.getElementById("view-result");
  const params = new URLSearchParams({ limit: "25", version: document.getElementById("version-pick").value });
  if (next && state.cursor) params.set("cursor", state.cursor);
  try {
    const answer = await api(`/api/views/${encodeURIComponent(table.name)}?${params}`);
    state.cursor = answer.cursor;
    const columns = [...new Set(answer.items.flatMap((i) => Object.keys(i)))];
    const keyFirst = [table.partition_key, table.sort_key].filter(Boolean);
    const ordered = [...keyFirst, ...columns.filter((c) => !keyFirst.includes(c))].slice(0, 9);
    const rows = answer.items.map((item) => el("tr", {}, ...ordered.map((c) => el("td", {},
      el("pre", { text: item[c] === undefined ? "" : typeof item[c] === "string" ? item[c] : JSON.stringify(item[c]) })))));
    target.replaceChildren(
      el("p", { class: "muted", text: `${answer.table} ${answer.version}: ${answer.items.length} items on this page` }),
      el("table", { class: "grid", id: "page-table" }, el("thead", {}, el("tr", {}, ...ordered.map((c) => el("th", { text: c })))),
        el("tbody", {}, ...rows)),
      answer.cursor ? el("p", {}, el("button", { id: "next-page", onclick: () => browse(true), text: "Next page" })) : el("p", { class: "muted", text: "end of table" }));
  } catch (error) {
    target.replaceChildren(el("p", { class: "err", text: error.message }));
  }
}

// ---- failures --------------------------------------------------------------------------------

function failureKind() { return document.querySelector('input[name="failure-kind"]:checked').value; }

async function loadFailures() {
  const processor = document.getElementById("failure-processor").value;
  const params = new URLSearchParams({ kind: failureKind(), limit: "100" });
  if (processor) params.set("processor", processor);
  try {
    const answer = await api(`/api/failures?${params}`);
    document.getElementById("failure-total").textContent = answer.total > answer.shown
      ? `the newest ${answer.shown} of ${count(answer.total)}` : `${count(answer.total)} in all`;
    const rows = answer.entries.map((entry) => {
      const s = entry.source || {};
      const row = el("tr", { class: `clickable${entry.id === state.selectedFailure ? " selected" : ""}`, "data-entry": entry.id,
        onclick: () => openFailure(entry.id) },
        el("td", { text: entry.at || "" }),
        el("td", { text: entry.processor || "" }),
        el("td", { "data-field": "reason" }, el("b", { text: entry.reason.code || "" }), " ", entry.reason.reason || ""),
        el("td", { text: `${s.stream || ""} ${s.shard || ""} ${s.sequence || ""}` }),
        el("td", { text: entry.resent ? `${entry.resent.at} → ${entry.resent.sequence}` : "" }));
      return row;
    });
    document.querySelector("#failure-list tbody").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: 5, class: "muted", text: "nothing here: every record so far was accepted" }))]));
  } catch (error) {
    banner(error.message);
  }
}

async function openFailure(id) {
  state.selectedFailure = id;
  const target = document.getElementById("failure-detail");
  let entry;
  try {
    entry = await api(`/api/failures/entry?id=${encodeURIComponent(id)}`);
  } catch (error) {
    target.replaceChildren(el("p", { class: "err", text: error.message }));
    return;
  }
  const cards = entry.records.map((record, index) => {
    const editor = el("textarea", { "data-record": index, spellcheck: "false" });
    editor.value = record.data_text !== undefined ? (record.json !== undefined ? JSON.stringify(record.json, null, 2) : record.data_text) : "";
    const outcome = el("p", { class: "outcome" });
    const stream = record.stream || (entry.source || {}).stream || "its stream";
    const button = el("button", { class: "resend", text: `Send back to ${stream}` });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const sent = await api("/api/failures/resend", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ id, record: index, data: editor.value, again: Boolean(entry.resent) }),
        });
        outcome.className = "outcome ok";
        outcome.textContent = `sent to ${sent.stream} ${sent.shard} as sequence ${sent.sequence}`;
        entry.resent = sent;
        loadFailures();
      } catch (error) {
        outcome.className = "outcome err";
        outcome.textContent = error.message;
      } finally {
        button.disabled = false;
      }
    });
    return el("div", { class: "card" },
      el("p", { class: "muted", text: `record ${index + 1} of ${entry.records.length}: sequence ${record.sequence}, partition key ${record.partition_key}, ${count(record.bytes)} bytes${record.data_base64 !== undefined ? " (binary: shown as base64, write the fixed record as JSON)" : ""}` }),
      record.data_base64 !== undefined ? el("pre", { text: record.data_base64 }) : null,
      editor, el("p", {}, button), outcome);
  });
  target.replaceChildren(el("div", { class: "card", id: "failure-entry" },
    el("h2", { text: `${entry.kind === "quarantine" ? "Quarantined by" : "On-failure record of"} ${entry.processor || "?"}` }),
    el("p", {}, el("b", { text: entry.reason.code || "" }), " ", entry.reason.reason || "",
      entry.reason.field ? el("span", { class: "muted", text: ` (field ${entry.reason.field})` }) : null),
    el("p", { class: "muted", text: `from ${[entry.source.stream, entry.source.shard, entry.source.sequence && "sequence " + entry.source.sequence].filter(Boolean).join(" · ")} at ${entry.at || "?"}` }),
    entry.resent ? el("p", { class: "ok", text: `sent back at ${entry.resent.at} as sequence ${entry.resent.sequence}` }) : null,
    el("p", { class: "muted", text: "Fix the record below and send it back: it goes to the end of its stream with its partition key, and is processed like any new record." }),
    ...cards));
}

// ---- versions --------------------------------------------------------------------------------

async function loadVersions() {
  let answer;
  try { answer = await api("/api/versions"); } catch (error) { banner(error.message); return; }
  const rows = answer.versions.map((v) => el("tr", { "data-version": v.version },
    el("td", { text: v.live ? "live" : "" }), el("td", { text: v.version }), el("td", { text: v.state }),
    el("td", { text: v.replay_from || "" }), el("td", { class: "num", text: v.records === undefined ? "" : count(v.records) }),
    el("td", { text: v.until || "" }), el("td", { text: v.config && Object.keys(v.config).length ? JSON.stringify(v.config) : "" })));
  document.querySelector("#version-list tbody").replaceChildren(...rows);
  const names = answer.versions.map((v) => v.version);
  for (const [id, pick] of [["diff-a", answer.live], ["diff-b", names.filter((n) => n !== answer.live).pop() || answer.live]]) {
    document.getElementById(id).replaceChildren(...names.map((n) => el("option", { value: n, text: n, selected: n === pick })));
  }
}

async function runDiff(event) {
  event.preventDefault();
  const a = document.getElementById("diff-a").value;
  const b = document.getElementById("diff-b").value;
  const target = document.getElementById("diff-result");
  target.replaceChildren(el("p", { class: "muted", text: `comparing ${a} and ${b}…` }));
  try {
    const report = await api(`/api/versions/diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
    const rows = Object.entries(report.views).map(([view, c]) => el("tr", {},
      el("td", { text: view }), el("td", { class: "num", text: count(c.differences) }),
      el("td", { class: "num", text: count(c.rows_a) }), el("td", { class: "num", text: count(c.rows_b) })));
    const examples = report.differences.map((d) => el("li", { text:
      `${d.view} ${JSON.stringify(d.key)}: ${d.kind === "changed" ? `${d.fields.join(", ")} ${JSON.stringify(d.a)} → ${JSON.stringify(d.b)}` : d.kind.replaceAll("_", " ")}` }));
    // Wrapped in one element: `el` skips a missing child, replaceChildren would print "null".
    target.replaceChildren(el("div", { id: "diff-report" },
      el("p", {}, el("b", { text: count(report.total_differences) }), ` difference(s) between ${a} and ${b}`),
      el("table", { class: "grid" }, el("thead", {}, el("tr", {}, ...["view", "differences", `rows in ${a}`, `rows in ${b}`].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows)),
      examples.length ? el("ul", {}, ...examples) : null));
  } catch (error) {
    target.replaceChildren(el("p", { class: "err", text: error.message }));
  }
}

// ---- start -----------------------------------------------------------------------------------

async function start() {
  try {
    state.overview = await api("/api/overview");
  } catch (error) {
    banner(`cannot reach cascata up: ${error.message}`);
    setTimeout(start, 2000);
    return;
  }
  const o = state.overview;
  document.getElementById("app").textContent = o.app;
  document.getElementById("where").textContent = `stage ${o.stage} · ${o.region} · AWS endpoint ${o.endpoints.aws_endpoint_url || "?"}`;
  document.title = `${o.app} · cascata console`;
  drawTopology();
  const processors = o.topology.nodes.filter((n) => n.kind === "processor").map((n) => n.name);
  document.getElementById("failure-processor").append(...processors.map((p) => el("option", { value: p, text: p })));
  document.getElementById("show-aux").addEventListener("change", (e) =>
    document.getElementById("graph").classList.toggle("show-aux", e.target.checked));
  document.getElementById("stream-pick").addEventListener("change", () => { fillShards(); loadRecords(); });
  document.getElementById("shard-pick").addEventListener("change", loadRecords);
  document.getElementById("stream-limit").addEventListener("change", loadRecords);
  document.getElementById("stream-refresh").addEventListener("click", loadRecords);
  document.getElementById("view-pick").addEventListener("change", viewChanged);
  document.getElementById("lookup").addEventListener("submit", lookUp);
  document.getElementById("browse-button").addEventListener("click", () => browse(false));
  for (const radio of document.querySelectorAll('input[name="failure-kind"]')) radio.addEventListener("change", loadFailures);
  document.getElementById("failure-processor").addEventListener("change", loadFailures);
  document.getElementById("diff-form").addEventListener("submit", runDiff);
  window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));
  showTab(location.hash.slice(1) || "topology");
  pollStatus();
}

document.addEventListener("DOMContentLoaded", start);
