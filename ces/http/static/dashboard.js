// CES rates dashboard: every data call sends the API key kept in sessionStorage; no inline code (strict CSP).
"use strict";

const KEY_STORE = "ces-api-key";
const $ = (id) => document.getElementById(id);
const state = { tableBase: "EUR", rows: {}, chart: null, stream: null, currencies: [] };

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

function notice(text) {
  const el = $("notice");
  el.textContent = text || "";
  el.hidden = !text;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (apiKey()) headers.Authorization = "Bearer " + apiKey();
  const response = await fetch(path, { ...options, headers });
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = new Error(body && body.detail ? body.code + ": " + body.detail : "HTTP " + response.status);
    error.problem = body;
    error.status = response.status;
    throw error;
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function age(published) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(published)) / 1000));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

function fillSelect(select, codes, chosen) {
  select.replaceChildren(...codes.map((c) => el("option", { value: c }, c)));
  select.value = chosen;
}

// ---- latest rates -------------------------------------------------------------------------------------------
function renderTable() {
  const body = $("rates-table").tBodies[0];
  const codes = Object.keys(state.rows).sort();
  body.replaceChildren(...codes.map((code) => {
    const r = state.rows[code];
    const tr = el("tr", { "data-currency": code },
      el("td", {}, code), el("td", { class: "num rate" }, r.rate_value), el("td", {}, r.kind),
      el("td", {}, r.published_at.slice(0, 16).replace("T", " ") + " UTC"), el("td", { class: "age" }, age(r.published_at)));
    if (r.flash) { tr.classList.add("flash"); r.flash = false; }
    return tr;
  }));
}

async function loadTable() {
  state.tableBase = $("table-base").value || state.tableBase;
  try {
    const table = await api("/v1/rates?base=" + encodeURIComponent(state.tableBase));
    const previous = state.rows;
    state.rows = table.rates;
    for (const [code, r] of Object.entries(state.rows)) {
      if (previous[code] && previous[code].rate_value !== r.rate_value) r.flash = true;
    }
    $("table-status").textContent = Object.keys(table.rates).length + " currencies";
    renderTable();
    return table;
  } catch (e) {
    $("table-status").textContent = e.message;
    return null;
  }
}

setInterval(() => {
  for (const tr of $("rates-table").tBodies[0].rows) {
    const r = state.rows[tr.dataset.currency];
    if (r) tr.querySelector(".age").textContent = age(r.published_at);
  }
}, 1000);

// ---- chart --------------------------------------------------------------------------------------------------
function wheelZoomAndPan() {
  return {
    hooks: {
      ready: (u) => {
        const over = u.over;
        over.addEventListener("wheel", (e) => {
          e.preventDefault();
          const { left } = u.cursor;
          const x = u.posToVal(left, "x");
          const min = u.scales.x.min, max = u.scales.x.max;
          const f = e.deltaY < 0 ? 0.8 : 1.25;
          u.setScale("x", { min: x - (x - min) * f, max: x + (max - x) * f });
        }, { passive: false });
        over.addEventListener("mousedown", (e) => {
          if (!e.shiftKey) return;
          e.preventDefault();
          e.stopPropagation();
          const startX = e.clientX, min = u.scales.x.min, max = u.scales.x.max;
          const perPx = (max - min) / u.bbox.width * devicePixelRatio;
          const move = (m) => u.setScale("x", { min: min - (m.clientX - startX) * perPx, max: max - (m.clientX - startX) * perPx });
          const up = () => { document.removeEventListener("mousemove", move); document.removeEventListener("mouseup", up); };
          document.addEventListener("mousemove", move);
          document.addEventListener("mouseup", up);
        }, true);
      },
    },
  };
}

async function drawChart(event) {
  if (event) event.preventDefault();
  const base = $("chart-base").value, target = $("chart-target").value;
  const start = $("chart-start").value, end = $("chart-end").value;
  $("chart-status").textContent = "loading...";
  performance.clearMarks("chart-start");
  performance.clearMarks("chart-drawn");
  performance.mark("chart-start");
  try {
    const query = new URLSearchParams({ base, symbols: target, start, end, provenance: "false" });
    const series = await api("/v1/timeseries?" + query);
    const xs = [], ys = [], exact = [];
    for (const [day, values] of Object.entries(series.rates)) {
      const v = values[target];
      if (v === undefined) continue;
      xs.push(Date.parse(day + "T00:00:00Z") / 1000);
      ys.push(Number(v)); // plotting only; the exact decimal string is what the legend shows
      exact.push(v);
    }
    const width = $("chart").clientWidth || 900;
    const options = {
      width, height: 340, plugins: [wheelZoomAndPan()],
      scales: { x: { time: true } },
      series: [{}, { label: base + "/" + target, stroke: "#2563eb", width: 1, value: (u, v, si, i) => (i == null ? "-" : exact[i]) }],
      cursor: { drag: { x: true, y: false } },
    };
    if (state.chart) state.chart.destroy();
    $("chart").replaceChildren();
    state.chart = new uPlot(options, [xs, ys], $("chart"));
    window.__cesChart = state.chart; // for benchmarks/dashboard.py (zoomed screenshot)
    $("chart").addEventListener("dblclick", () => state.chart.setScale("x", { min: xs[0], max: xs[xs.length - 1] }));
    requestAnimationFrame(() => {
      performance.mark("chart-drawn");
      const took = performance.measure("chart", "chart-start", "chart-drawn").duration;
      $("chart").dataset.points = String(xs.length);
      $("chart-status").textContent = xs.length + " days, " + (xs.length ? series.start_date + " to " + series.end_date : "") + ", drawn in " + Math.round(took) + " ms";
    });
  } catch (e) {
    $("chart-status").textContent = e.message;
  }
}

// ---- conversions --------------------------------------------------------------------------------------------
function auditView(audit, rows) {
  const fields = ["audit_id", "request_id", "input_amount", "base_currency", "output_amount", "target_currency",
    "rate_value", "rate_kind", "margin", "converted_at"];
  const dl = el("dl", {}, ...fields.flatMap((f) => [el("dt", {}, f), el("dd", { "data-field": f }, audit[f])]));
  const rowList = el("table", { class: "rows" },
    el("thead", {}, el("tr", {}, el("th", {}, "rate row"), el("th", {}, "pair"), el("th", {}, "value"), el("th", {}, "published"), el("th", {}, "provider"))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, el("td", {}, r.rate_id), el("td", {}, r.base_currency + "->" + r.target_currency),
      el("td", { class: "num" }, r.rate_value), el("td", {}, r.published_at.slice(0, 19).replace("T", " ")), el("td", {}, r.provider_name)))));
  return el("div", { class: "audit" }, el("h3", {}, "Audit"), dl, el("h3", {}, "Rate rows used"), rowList);
}

async function convert(event) {
  event.preventDefault();
  const out = $("convert-result");
  out.replaceChildren(el("p", { class: "muted" }, "converting..."));
  const body = {
    base_currency: $("convert-base").value, target_currency: $("convert-target").value,
    amount: $("convert-amount").value.trim(), request_id: crypto.randomUUID(),
  };
  try {
    const audit = await api("/v1/conversions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const rows = await Promise.all(audit.rate_ids.map((id) => api("/v1/rate-rows/" + id)));
    out.replaceChildren(auditView(audit, rows));
    loadRecent();
  } catch (e) {
    out.replaceChildren(el("p", { class: "problem" }, e.message));
  }
}

async function loadRecent() {
  try {
    const recent = await api("/v1/conversions?limit=15");
    $("recent-table").tBodies[0].replaceChildren(...recent.conversions.map((a) => el("tr", {},
      el("td", {}, a.converted_at.replace("T", " ").slice(0, 19)), el("td", { class: "num" }, a.input_amount + " " + a.base_currency),
      el("td", { class: "num" }, a.output_amount + " " + a.target_currency), el("td", { class: "num" }, a.rate_value),
      el("td", {}, a.rate_kind), el("td", {}, a.audit_id.slice(0, 8)))));
  } catch (e) { /* shown by the table's status */ }
}

// ---- live stream (fetch + ReadableStream: EventSource cannot send the Authorization header) ------------------
function liveStatus(text, cls) {
  const badge = $("live-status");
  badge.textContent = "live: " + text;
  badge.className = "badge " + cls;
}

function onRates(data) {
  const feed = $("live-feed");
  let tableStale = data.dropped > 0;
  for (const r of data.rates) {
    feed.prepend(el("li", { class: "flash", "data-pair": r.base_currency + r.target_currency },
      r.published_at.slice(0, 19) + "  " + r.base_currency + "->" + r.target_currency + "  " + r.rate_value));
    if (r.base_currency === state.tableBase) {
      const prev = state.rows[r.target_currency];
      if (!prev || prev.published_at <= r.published_at) {
        state.rows[r.target_currency] = { ...(prev || {}), rate_value: r.rate_value, kind: "direct",
          published_at: r.published_at, flash: true };
      }
    } else {
      tableStale = true;
    }
  }
  while (feed.children.length > 100) feed.lastChild.remove();
  if (data.dropped > 0) notice("missed " + data.dropped + " live update(s); the table was reloaded");
  if (tableStale) setTimeout(loadTable, 1000); // derived rates: read them once the projection has them
  renderTable();
}

async function listen() {
  if (state.stream) state.stream.abort();
  if (!apiKey()) { liveStatus("no key", "off"); return; }
  const controller = new AbortController();
  state.stream = controller;
  try {
    const response = await fetch("/v1/rates/stream", {
      headers: { Authorization: "Bearer " + apiKey(), Accept: "text/event-stream" }, signal: controller.signal,
    });
    if (!response.ok) { liveStatus("HTTP " + response.status, "err"); return; }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (name === "ready" || name === "heartbeat") liveStatus("on", "on");
        else if (name === "rates") onRates(JSON.parse(data));
      }
    }
    liveStatus("closed", "off");
  } catch (e) {
    if (controller.signal.aborted) return;
    liveStatus("error", "err");
  }
  if (state.stream === controller) setTimeout(listen, 3000);
}

// ---- start --------------------------------------------------------------------------------------------------
async function start() {
  $("api-key").value = apiKey();
  $("chart-end").value = new Date().toISOString().slice(0, 10);
  if (!apiKey()) { notice("Enter an API key with the read scope (and convert, to convert)."); return; }
  notice("");
  try {
    state.currencies = (await api("/v1/currencies")).currencies.map((c) => c.code);
  } catch (e) {
    notice(e.message);
    return;
  }
  const codes = state.currencies;
  fillSelect($("table-base"), codes, codes.includes(state.tableBase) ? state.tableBase : codes[0]);
  fillSelect($("chart-base"), codes, codes.includes("EUR") ? "EUR" : codes[0]);
  fillSelect($("chart-target"), codes, codes.includes("USD") ? "USD" : codes[1] || codes[0]);
  fillSelect($("convert-base"), codes, codes.includes("USD") ? "USD" : codes[0]);
  fillSelect($("convert-target"), codes, codes.includes("EUR") ? "EUR" : codes[1] || codes[0]);
  await Promise.all([loadTable(), loadRecent()]);
  listen();
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
    start();
  });
  $("table-base").addEventListener("change", loadTable);
  $("chart-form").addEventListener("submit", drawChart);
  $("convert-form").addEventListener("submit", convert);
  start();
});
