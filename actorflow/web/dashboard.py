"""The dashboard page: one self-contained HTML document (inline CSS and hand-written JavaScript).

Nothing is fetched from anywhere but this server: the page polls ``/api/graph`` and
``/api/checkpoints`` (every second, ``?interval=ms`` to change it) and draws with plain SVG. It
is kept in a Python string so that it ships inside the package with no data-file setup. With a
token, open the page as ``/?token=...``: the script sends it on as a bearer token.

What a test or a person finds in the document: ``svg#mesh`` holds one ``g.actor`` per actor
(``data-name``, ``data-fill``; its ``rect.box`` coloured from green, empty mailboxes, to red, full;
for a chain of several operators, a source included, one ``text.operator`` line per operator, with
``data-operator`` and its rates in and out; its ``title`` tooltip lists every operator's counts and
watermark) and one ``path.channel`` per mailbox; ``svg#checkpoints`` one ``circle.cp-point`` per
checkpoint.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>actorflow</title>
<link rel="icon" href="data:,">
<style>
  :root { --ink: #1d2430; --muted: #6b7585; --line: #dde2ea; --card: #fff; --bg: #f3f5f8; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
         color: var(--ink); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 22px; padding: 14px 24px;
           background: #1d2430; color: #fff; }
  header h1 { margin: 0; font-size: 18px; font-weight: 600; }
  header h1 small { color: #9aa6b8; font-weight: 400; margin-left: 6px; }
  header .stat { color: #c9d1dd; }
  header .stat b { color: #fff; font-weight: 600; }
  .badge { padding: 2px 9px; border-radius: 10px; font-size: 12px; font-weight: 600;
           text-transform: uppercase; letter-spacing: .04em; background: #5b6575; }
  .badge.running { background: #2f9e5b; }
  .badge.starting { background: #c98a12; }
  .badge.stopped, .badge.offline { background: #c0392b; }
  main { padding: 18px 24px; display: grid; gap: 18px; grid-template-columns: minmax(0, 1fr); }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
            padding: 14px 16px; }
  h2 { margin: 0 0 10px; font-size: 14px; font-weight: 600; color: var(--muted);
       text-transform: uppercase; letter-spacing: .05em; display: flex; gap: 16px; align-items: center; }
  .legend { font-weight: 400; text-transform: none; letter-spacing: 0; display: flex; gap: 6px;
            align-items: center; font-size: 12px; }
  .legend i { display: inline-block; width: 120px; height: 10px; border-radius: 5px;
              background: linear-gradient(90deg, hsl(130,60%,80%), hsl(65,60%,80%), hsl(0,60%,80%)); }
  svg { width: 100%; display: block; }
  #checkpoints { height: 190px; }
  svg text { font-size: 12px; fill: var(--ink); }
  .actor .box { stroke-width: 1.5; }
  .actor .title { font-weight: 600; }
  .actor .sub { fill: var(--muted); font-size: 11px; }
  .actor .meter { fill: rgba(0,0,0,.08); }
  .channel { fill: none; stroke-width: 1.6; opacity: .7; }
  .axis { stroke: var(--line); }
  .grid-label { fill: var(--muted); font-size: 11px; }
  .cp-line { fill: none; stroke: #3867d6; stroke-width: 2; }
  .cp-point { fill: #3867d6; stroke: #fff; stroke-width: 1.5; }
  .cp-bar { fill: #c7d3ea; }
  .empty { fill: var(--muted); font-style: italic; }
  form { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
  input, select, button { font: inherit; padding: 5px 8px; border: 1px solid var(--line);
                          border-radius: 5px; }
  button { background: #1d2430; color: #fff; border-color: #1d2430; cursor: pointer; }
  pre { background: #f7f8fa; border: 1px solid var(--line); border-radius: 5px; padding: 10px;
        margin: 10px 0 0; max-height: 360px; overflow: auto; font-size: 12px; }
  footer { color: var(--muted); font-size: 12px; padding: 0 24px 18px; }
</style>
</head>
<body>
<header>
  <h1>actorflow<small id="flow-name"></small></h1>
  <span id="status" class="badge">loading</span>
  <span class="stat">in <b id="total-rate">&ndash;</b> rec/s</span>
  <span class="stat">restarts <b id="restarts">&ndash;</b></span>
  <span class="stat">checkpoints <b id="cp-count">&ndash;</b></span>
</header>
<main>
  <section>
    <h2>Actors <span class="legend">mailbox fill: empty <i></i> full</span></h2>
    <svg id="mesh" role="img" aria-label="the actor mesh"></svg>
  </section>
  <section>
    <h2>Checkpoints <span class="legend" id="cp-summary"></span></h2>
    <svg id="checkpoints" role="img" aria-label="checkpoint history"></svg>
  </section>
  <section>
    <h2>Keyed state</h2>
    <form id="query">
      <select id="q-operator" aria-label="operator"></select>
      <input id="q-key" placeholder="key" aria-label="key" required>
      <select id="q-type" aria-label="key type">
        <option>str</option><option>int</option><option>float</option><option>json</option>
      </select>
      <button type="submit">Look up</button>
    </form>
    <pre id="q-result" hidden></pre>
  </section>
</main>
<footer id="updated"></footer>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const token = params.get("token");
const interval = Math.max(200, Number(params.get("interval")) || 1000);
const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 220, NODE_H = 74, OP_H = 15, COL_GAP = 90, ROW_GAP = 14, CHAIN_GAP = 26, PAD = 12;

function get(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  return fetch(path, { headers, cache: "no-store" });
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, cls, content) {
  const node = el("text", { x, y, class: cls }, parent);
  node.textContent = content;
  return node;
}

function hue(fill) { return 130 * (1 - Math.min(1, Math.max(0, fill))); }
function boxColour(fill) { return `hsl(${hue(fill).toFixed(0)}, 60%, 82%)`; }
function edgeColour(fill) { return `hsl(${hue(fill).toFixed(0)}, 55%, 42%)`; }

function number(value) {
  if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
  if (value >= 1e4) return (value / 1e3).toFixed(0) + "k";
  if (value >= 1e3) return (value / 1e3).toFixed(1) + "k";
  return value >= 10 || value === 0 ? value.toFixed(0) : value.toFixed(1);
}

function bytes(value) {
  if (value >= 1 << 20) return (value / (1 << 20)).toFixed(1) + " MB";
  if (value >= 1 << 10) return (value / (1 << 10)).toFixed(1) + " kB";
  return value + " B";
}

function eventTime(ms) {
  // Epoch milliseconds in UTC: a time of day when it is today's, else the date too (a replayed or
  // synthetic stream); small numbers (tests, counters as time) as they are.
  if (ms <= 1e11) return String(ms);
  const iso = new Date(ms).toISOString();
  return iso.slice(0, 10) === new Date().toISOString().slice(0, 10)
    ? iso.slice(11, 23)
    : iso.slice(0, 10) + " " + iso.slice(11, 19);
}

function duration(ms) {
  const s = ms / 1000, sign = s < 0 ? "-" : "", a = Math.abs(s);
  if (a < 120) return sign + a.toFixed(1) + " s";
  if (a < 7200) return sign + (a / 60).toFixed(0) + " min";
  if (a < 172800) return sign + (a / 3600).toFixed(0) + " h";
  return sign + (a / 86400).toFixed(0) + " d";
}

function watermarkLine(actor) {
  if (actor.ended) return "watermark: end of input";
  if (actor.watermark === null) return "watermark: \u2013";
  return `wm ${eventTime(actor.watermark)} · lag ${duration(actor.watermark_lag_ms)}`;
}

function clip(label, chars) { return label.length > chars ? label.slice(0, chars - 1) + "…" : label; }

// A line per operator only where the chain has several: one operator's numbers are the actor's.
function operatorLines(chain) { return chain.operators.length > 1 ? chain.operators.length : 0; }
function nodeHeight(chain) { return NODE_H + OP_H * operatorLines(chain); }

function operatorWatermark(op) {
  if (op.ended) return "end of input";
  return op.watermark === null ? "no watermark" : `wm ${eventTime(op.watermark)}`;
}

let topology = "";
const nodes = new Map();
const edges = [];

function layout(graph) {
  // Columns by chain depth; a chain's instances stacked in its column.
  const columns = new Map();
  for (const chain of graph.chains) {
    if (!columns.has(chain.depth)) columns.set(chain.depth, []);
    columns.get(chain.depth).push(chain);
  }
  const heights = new Map();
  for (const [depth, chains] of columns) {
    let height = 0;
    for (const chain of chains) {
      height += chain.parallelism * (nodeHeight(chain) + ROW_GAP) - ROW_GAP + CHAIN_GAP;
    }
    heights.set(depth, height - CHAIN_GAP);
  }
  const total = Math.max(NODE_H, ...heights.values());
  const place = new Map();
  for (const [depth, chains] of columns) {
    let y = PAD + (total - heights.get(depth)) / 2;
    for (const chain of chains) {
      const h = nodeHeight(chain);
      for (let i = 0; i < chain.parallelism; i++) {
        const x = PAD + depth * (NODE_W + COL_GAP);
        place.set(`${chain.name}#${i}`, { x, y, h, lines: operatorLines(chain) });
        y += h + ROW_GAP;
      }
      y += CHAIN_GAP - ROW_GAP;
    }
  }
  const width = PAD * 2 + columns.size * (NODE_W + COL_GAP) - COL_GAP;
  return { place, width, height: total + PAD * 2 };
}

function build(graph) {
  const svg = document.getElementById("mesh");
  svg.replaceChildren();
  nodes.clear();
  edges.length = 0;
  const { place, width, height } = layout(graph);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.maxWidth = width * 1.3 + "px";
  const at = new Map(graph.actors.map(a => [a.name, place.get(`${a.chain}#${a.instance}`)]));
  const edgeLayer = el("g", {}, svg);
  for (const channel of graph.channels) {
    const from = at.get(channel.sender), to = at.get(channel.receiver);
    const x1 = from.x + NODE_W, y1 = from.y + from.h / 2, x2 = to.x, y2 = to.y + to.h / 2;
    const bend = (x2 - x1) / 2;
    const path = el("path", {
      class: "channel", "data-sender": channel.sender, "data-receiver": channel.receiver,
      d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
    }, edgeLayer);
    el("title", {}, path);
    edges.push(path);
  }
  for (const actor of graph.actors) {
    const { x, y, h, lines } = at.get(actor.name);
    const g = el("g", { class: "actor", "data-name": actor.name, transform: `translate(${x},${y})` }, svg);
    el("title", {}, g);
    const box = el("rect", { class: "box", width: NODE_W, height: h, rx: 7 }, g);
    text(g, 10, 18, "title", clip(actor.chain, 26));
    text(g, NODE_W - 10, 18, "sub instance", `${actor.instance + 1}/${actor.parallelism}`)
      .setAttribute("text-anchor", "end");
    const rate = text(g, 10, 37, "sub rate", "");
    const wm = text(g, 10, 54, "sub watermark", "");
    const ops = [];
    for (let i = 0; i < lines; i++) {
      const line = text(g, 16, 54 + OP_H * (i + 1), "sub operator", "");
      line.setAttribute("data-operator", actor.operators[i].name);
      ops.push(line);
    }
    el("rect", { class: "meter", x: 10, y: h - 12, width: NODE_W - 20, height: 5, rx: 2.5 }, g);
    const bar = el("rect", { class: "meter-bar", x: 10, y: h - 12, width: 0, height: 5, rx: 2.5 }, g);
    nodes.set(actor.name, { g, box, rate, wm, bar, ops });
  }
}

function update(graph) {
  const key = JSON.stringify([graph.chains, graph.channels.map(c => [c.sender, c.receiver])]);
  if (key !== topology) { build(graph); topology = key; }
  let total = 0;
  for (const actor of graph.actors) {
    const node = nodes.get(actor.name);
    if (!node) continue;
    if (actor.kind === "source") total += actor.rate_in;
    node.g.setAttribute("data-fill", actor.fill);
    node.g.setAttribute("data-state", actor.state);
    node.box.setAttribute("fill", boxColour(actor.fill));
    node.box.setAttribute("stroke", edgeColour(actor.fill));
    node.box.setAttribute("stroke-dasharray", actor.state === "running" ? "" : "4 3");
    node.rate.textContent = `${number(actor.rate_in)} in · ${number(actor.rate_out)} out rec/s` +
      (actor.backpressure > 0.01 ? ` · bp ${(actor.backpressure * 100).toFixed(0)}%` : "");
    node.wm.textContent = watermarkLine(actor);
    node.bar.setAttribute("width", (NODE_W - 20) * Math.min(1, actor.fill));
    node.bar.setAttribute("fill", edgeColour(actor.fill));
    node.ops.forEach((line, i) => {
      const op = actor.operators[i];
      line.textContent = `${clip(op.name, 14)}: ${number(op.rate_in)} → ${number(op.rate_out)} rec/s`;
    });
    node.g.firstChild.textContent = `${actor.name}\n${actor.records_in} records in, ` +
      `${actor.records_out} out\ninput mailbox fill ${(actor.fill * 100).toFixed(0)}%` +
      actor.operators.map(op => `\n${op.name}: ${op.records_in} in, ${op.records_out} out, ` +
        operatorWatermark(op)).join("");
  }
  graph.channels.forEach((channel, i) => {
    const path = edges[i];
    path.setAttribute("stroke", edgeColour(channel.fill));
    path.setAttribute("data-fill", channel.fill);
    path.firstChild.textContent = `${channel.sender} → ${channel.receiver}: ` +
      `${channel.size}/${channel.capacity} batches`;
  });
  document.getElementById("flow-name").textContent = graph.flow;
  const status = document.getElementById("status");
  status.textContent = graph.status;
  status.className = "badge " + graph.status.replace(" ", "-");
  document.getElementById("total-rate").textContent = number(total);
  document.getElementById("restarts").textContent = graph.restarts;
  const select = document.getElementById("q-operator");
  const wanted = graph.queryable.join("\n");
  if (select.dataset.names !== wanted) {
    select.replaceChildren(...graph.queryable.map(name => new Option(name, name)));
    select.dataset.names = wanted;
  }
}

function chart(data) {
  const svg = document.getElementById("checkpoints");
  svg.replaceChildren();
  const count = document.getElementById("cp-count");
  count.textContent = data.enabled ? `${data.completed} ok · ${data.failed} failed` : "off";
  const history = data.history.slice(-60);
  const summary = document.getElementById("cp-summary");
  if (!history.length) {
    svg.setAttribute("viewBox", `0 0 ${Math.max(320, svg.clientWidth)} 190`);
    text(svg, 56, 95, "empty", data.enabled ? "no checkpoint yet" : "checkpointing is off");
    summary.textContent = "";
    return;
  }
  const last = history[history.length - 1];
  summary.textContent = `line: duration, bars: size · last #${last.id}: ${last.duration_ms} ms, ` +
    `${bytes(last.size_bytes)}` +
    (data.failed ? ` · last failure: ${data.last_failure}` : "");
  // Drawn at the element's own size, so text keeps its size whatever the window's width.
  const width = Math.max(320, svg.clientWidth);
  svg.setAttribute("viewBox", `0 0 ${width} 190`);
  const left = 56, right = width - 64, top = 14, bottom = 160;
  const maxMs = Math.max(1, ...history.map(h => h.duration_ms));
  const maxBytes = Math.max(1, ...history.map(h => h.size_bytes));
  // Room for 20 checkpoints at least: a short history fills the chart from the left.
  const step = (right - left) / Math.max(20, history.length);
  const xOf = i => left + step * (i + 0.5);
  const yOf = ms => bottom - (bottom - top) * ms / maxMs;
  el("line", { class: "axis", x1: left, x2: right, y1: bottom, y2: bottom }, svg);
  el("line", { class: "axis", x1: left, x2: right, y1: top, y2: top }, svg);
  text(svg, left - 6, top + 4, "grid-label", `${maxMs} ms`).setAttribute("text-anchor", "end");
  text(svg, left - 6, bottom + 4, "grid-label", "0 ms").setAttribute("text-anchor", "end");
  text(svg, right + 6, top + 4, "grid-label", bytes(maxBytes));
  text(svg, xOf(0), bottom + 20, "grid-label", `#${history[0].id}`).setAttribute("text-anchor", "middle");
  if (history.length > 1) {
    text(svg, xOf(history.length - 1), bottom + 20, "grid-label", `#${last.id}`)
      .setAttribute("text-anchor", "middle");
  }
  history.forEach((h, i) => {
    const height = (bottom - top) * h.size_bytes / maxBytes;
    const barWidth = Math.min(step * 0.6, 26);
    const bar = el("rect", { class: "cp-bar", x: xOf(i) - barWidth / 2, width: barWidth,
                             y: bottom - height, height }, svg);
    el("title", {}, bar).textContent = `#${h.id}: ${bytes(h.size_bytes)}`;
  });
  el("polyline", { class: "cp-line",
                   points: history.map((h, i) => `${xOf(i)},${yOf(h.duration_ms)}`).join(" ") }, svg);
  history.forEach((h, i) => {
    const point = el("circle", { class: "cp-point", cx: xOf(i), cy: yOf(h.duration_ms), r: 3.5,
                                 "data-id": h.id }, svg);
    el("title", {}, point).textContent = `${h.kind} #${h.id}: ${h.duration_ms} ms, ${bytes(h.size_bytes)}`;
  });
}

async function poll() {
  try {
    const [graph, checkpoints] = await Promise.all([get("api/graph"), get("api/checkpoints")]);
    if (!graph.ok || !checkpoints.ok) throw new Error(`HTTP ${graph.status}/${checkpoints.status}`);
    update(await graph.json());
    chart(await checkpoints.json());
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    const status = document.getElementById("status");
    status.textContent = "offline";
    status.className = "badge offline";
    document.getElementById("updated").textContent = "cannot reach the flow: " + error.message;
  }
  setTimeout(poll, interval);
}

document.getElementById("query").addEventListener("submit", async event => {
  event.preventDefault();
  const operator = document.getElementById("q-operator").value;
  const key = document.getElementById("q-key").value;
  const type = document.getElementById("q-type").value;
  const out = document.getElementById("q-result");
  out.hidden = false;
  const path = `state/${encodeURIComponent(operator)}/${encodeURIComponent(key)}?type=${type}`;
  const response = await get(path);
  const body = await response.json();
  out.textContent = JSON.stringify(response.ok ? body : body.error, null, 2);
});

poll();
</script>
</body>
</html>
"""
