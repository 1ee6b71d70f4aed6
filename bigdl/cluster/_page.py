"""The HTML of the bigdl dashboard page: one self-contained document (inline CSS, JS and SVG).

It loads nothing from the network: it polls ``<page>/jobs.json`` on the
scheduler once a second and redraws the job cards in place.  Numbers carry
their exact values in ``data-value`` attributes (what tests read).
"""

from __future__ import annotations

import html

__all__ = ["render_page"]


def render_page(pages: list[str]) -> str:
    """The page, with a navigation bar linking the dashboard's ``pages`` (relative paths)."""
    links = "".join(f'<li><a href="{html.escape(page)}">{html.escape(page.title())}</a></li>' for page in pages)
    return _TEMPLATE.replace("{{NAV}}", links)


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bigdl jobs - Dask</title>
<style>
  body { margin: 0; font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; background: #fafafa; }
  nav ul { list-style: none; margin: 0; padding: 0; overflow: hidden; background: #eee; }
  nav li { float: left; }
  nav li a { display: block; color: #000; padding: 11px 16px; text-decoration: none; font-size: 17px; }
  nav li:hover { background: #eaaa6d; }
  nav li.active { background: rgba(234, 170, 109, 0.7); }
  main { padding: 12px 20px; }
  h1 { font-size: 20px; margin: 6px 0 2px; }
  .sub { color: #666; font-size: 13px; margin-bottom: 12px; }
  .sub a { color: #666; }
  #empty { border: 2px dashed #ccc; border-radius: 8px; padding: 28px; color: #555; background: #fff; max-width: 760px; }
  #empty b { color: #222; font-size: 17px; }
  .job { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 12px 16px; margin-bottom: 14px; }
  .job header { display: flex; flex-wrap: wrap; gap: 10px; align-items: baseline; }
  .job h2 { font-size: 16px; margin: 0; }
  .muted { color: #666; font-size: 13px; }
  .badge { font-size: 12px; padding: 2px 8px; border-radius: 10px; color: #fff; }
  .badge.running { background: #2b7bba; } .badge.finished { background: #2e9e44; } .badge.failed { background: #c0392b; }
  .figures { display: flex; flex-wrap: wrap; gap: 8px 22px; margin: 10px 0; }
  .figure { display: flex; flex-direction: column; }
  .figure .label { font-size: 11px; color: #777; text-transform: uppercase; letter-spacing: .04em; }
  .figure .value { font-size: 18px; font-variant-numeric: tabular-nums; }
  .charts { display: flex; flex-wrap: wrap; gap: 12px; }
  svg text { font-size: 11px; fill: #555; }
  .error { color: #c0392b; font-family: monospace; white-space: pre-wrap; margin: 6px 0; }
  table { border-collapse: collapse; font-size: 13px; margin-top: 8px; font-variant-numeric: tabular-nums; }
  th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
  th { color: #555; font-weight: 600; }
  details summary { cursor: pointer; color: #444; font-size: 13px; margin-top: 6px; }
  .bar { background: #eee; border-radius: 4px; height: 10px; width: 260px; overflow: hidden; display: inline-block; vertical-align: middle; }
  .bar span { display: block; height: 100%; background: #2b7bba; }
  .stage { font-size: 13px; margin: 3px 0; }
  .stage .name { display: inline-block; width: 70px; color: #555; }
  #status { float: right; color: #888; font-size: 12px; }
  #status.lost { color: #c0392b; }
</style>
</head>
<body>
<nav><ul>{{NAV}}<li class="active"><a href="bigdl">bigdl</a></li></ul></nav>
<main>
  <span id="status">connecting...</span>
  <h1>bigdl jobs</h1>
  <div class="sub">Training and ingest on this cluster, updated every second.
    Figures: <a href="bigdl/metrics.json">metrics.json</a> (the same as the <code>bigdl_*</code> series on
    <a href="metrics">/metrics</a>), state: <a href="bigdl/jobs.json">jobs.json</a>.</div>
  <div id="empty" hidden><b>No bigdl jobs yet.</b><br><br>
    Training (<code>bigdl.train.Trainer(...).fit(ds)</code>) and ingest (<code>bigdl.ingest.tabular</code>,
    <code>bigdl.ingest.images</code>, ...) started on this cluster appear here as soon as they start, with live
    loss curves, throughput, ETA and row counts.</div>
  <div id="jobs"></div>
</main>
<script>
"use strict";
const BASE = location.pathname.replace(/\/+$/, "");
const shown = {};

function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function num(value, digits) {
  if (value === null || value === undefined) return "-";
  return Number(value).toFixed(digits);
}
function rate(value) {
  if (value === null || value === undefined) return "-";
  return Math.round(value).toLocaleString("en-US");
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (h) return h + "h " + String(m).padStart(2, "0") + "m";
  if (m) return m + "m " + String(s).padStart(2, "0") + "s";
  return s + "s";
}
function clock(t) {
  return t ? new Date(t * 1000).toLocaleTimeString("en-GB") : "-";
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function figure(name, label, text, value) {
  const data = value === null || value === undefined ? "" : ' data-value="' + esc(value) + '"';
  return '<div class="figure" data-name="' + name + '"' + data + '><span class="label">' + label +
         '</span><span class="value">' + esc(text) + '</span></div>';
}
function ticks(low, high, count) {
  const span = high - low || Math.abs(high) || 1;
  const raw = span / count, power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(f => f * power).find(s => span / s <= count) || raw;
  const out = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) out.push(v);
  return out;
}

// One SVG chart: x = epochs, series of [x, y] points drawn as lines and/or markers.
function chart(title, series, xmax) {
  const W = 440, H = 220, L = 52, R = 12, T = 26, B = 34;
  // The y range comes from the points that matter once training is under way: the first batches'
  // loss (often several times the rest) would flatten every curve, so it is clipped at the top.
  const ys = [], epochDone = series.some(s => !s.early && s.points.length);
  series.forEach(s => s.points.forEach(p => {
    if (p[1] !== null && isFinite(p[1]) && !(s.early && epochDone && p[0] < 1)) ys.push(p[1]);
  }));
  let ylo = ys.length ? Math.min(...ys) : 0, yhi = ys.length ? Math.max(...ys) : 1;
  if (ylo === yhi) { ylo -= 0.5; yhi += 0.5; }
  const pad = (yhi - ylo) * 0.06; ylo -= pad; yhi += pad;
  const X = x => L + (W - L - R) * x / Math.max(xmax, 1);
  const Y = y => T + (H - T - B) * (1 - (Math.min(Math.max(y, ylo), yhi) - ylo) / (yhi - ylo));
  let svg = '<svg class="chart" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '">';
  svg += '<text x="' + L + '" y="14" style="font-size:12px;fill:#222;font-weight:600">' + esc(title) + "</text>";
  ticks(ylo, yhi, 5).forEach(v => {
    svg += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + Y(v) + '" y2="' + Y(v) + '" stroke="#eee"/>';
    svg += '<text x="' + (L - 6) + '" y="' + (Y(v) + 4) + '" text-anchor="end">' + Number(v.toPrecision(4)) + "</text>";
  });
  ticks(0, Math.max(xmax, 1), 8).filter(v => Number.isInteger(v)).forEach(v => {
    svg += '<text x="' + X(v) + '" y="' + (H - B + 15) + '" text-anchor="middle">' + v + "</text>";
  });
  svg += '<text x="' + ((L + W - R) / 2) + '" y="' + (H - 4) + '" text-anchor="middle">epoch</text>';
  svg += '<line x1="' + L + '" x2="' + L + '" y1="' + T + '" y2="' + (H - B) + '" stroke="#999"/>';
  svg += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + (H - B) + '" y2="' + (H - B) + '" stroke="#999"/>';
  let lx = L + 8;
  series.forEach(s => {
    const pts = s.points.filter(p => p[1] !== null && isFinite(p[1]));
    if (!pts.length) return;
    if (s.line && pts.length > 1) {
      svg += '<polyline class="curve ' + s.cls + '" fill="none" stroke="' + s.color + '" stroke-width="' +
             (s.width || 2) + '" stroke-opacity="' + (s.opacity || 1) + '" points="' +
             pts.map(p => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ") + '"/>';
    }
    if (s.markers) pts.forEach(p => {
      svg += '<circle class="point ' + s.cls + '" data-epoch="' + p[0] + '" data-value="' + p[1] + '" cx="' +
             X(p[0]).toFixed(1) + '" cy="' + Y(p[1]).toFixed(1) + '" r="3.5" fill="' + s.color + '"><title>' +
             esc(s.name) + " epoch " + p[0] + ": " + Number(p[1]).toPrecision(6) + "</title></circle>";
    });
    svg += '<rect x="' + lx + '" y="' + (T - 3) + '" width="10" height="3" fill="' + s.color + '"/>';
    svg += '<text x="' + (lx + 13) + '" y="' + T + '">' + esc(s.name) + "</text>";
    lx += 20 + 6.5 * s.name.length;
  });
  return svg + "</svg>";
}

function trainCard(job) {
  const h = job.history, metric = job.metric;
  const last = h.length ? h[h.length - 1] : {};
  const xmax = job.epochs || Math.max(1, h.length);
  let out = '<header><h2>train ' + esc(job.id) + "</h2>" + '<span class="badge ' + job.state + '">' + job.state +
            '</span><span class="muted">' + esc(job.model || "model") + " on " + esc(job.worker || "?") +
            (job.ranks > 1 ? " (+" + (job.ranks - 1) + " ranks)" : "") + " &middot; store " + esc(job.store || "?") +
            (job.batch_size ? " &middot; batch " + job.batch_size : "") + "</span></header>";
  if (job.error) out += '<div class="error">' + esc(job.error) + "</div>";
  out += '<div class="figures">';
  out += figure("epoch", "epoch", job.epoch + (job.epochs ? " / " + job.epochs : ""), job.epoch);
  out += figure("train_loss", "train loss", num(last.train_loss, 4), last.train_loss);
  if ("val_loss" in last) out += figure("val_loss", "validation loss", num(last.val_loss, 4), last.val_loss);
  if (metric) out += figure("val_" + metric, "validation " + metric, num(last["val_" + metric], 4), last["val_" + metric]);
  out += figure("batch_loss", "batch loss (smoothed)", num(job.batch_loss, 4), job.batch_loss);
  out += figure("samples_per_second", "samples/s", rate(job.samples_per_second), job.samples_per_second);
  out += figure("elapsed", "elapsed", duration(job.elapsed), job.elapsed);
  out += figure("eta", "ETA", job.state === "running" ? duration(job.eta) : "-", job.eta);
  const cp = job.checkpoints.length ? job.checkpoints[job.checkpoints.length - 1] : null;
  out += figure("checkpoint", "last checkpoint", cp ? "epoch " + cp.epoch + " at " + clock(cp.time) : "-", cp ? cp.time : null);
  out += "</div>";
  const series = [
    {name: "batch (smoothed)", cls: "batch", color: "#9ecae1", line: true, width: 1.5, early: true, points: job.batches},
    {name: "train", cls: "train", color: "#1f77b4", line: true, markers: true, points: h.map(e => [e.epoch, e.train_loss])},
  ];
  if ("val_loss" in last) series.push({name: "validation", cls: "validation", color: "#ff7f0e", line: true, markers: true,
                                      points: h.map(e => [e.epoch, e.val_loss])});
  out += '<div class="charts">' + chart("loss", series, xmax);
  if (metric) out += chart("validation " + metric, [{name: metric, cls: "metric", color: "#2ca02c", line: true, markers: true,
                                                     points: h.map(e => [e.epoch, e["val_" + metric]])}], xmax);
  out += "</div>";
  if (h.length) {
    const cols = [["train_loss", "train loss", 4], ["val_loss", "val loss", 4]];
    if (metric) cols.push(["val_" + metric, "val " + metric, 4]);
    out += '<details open><summary>epochs</summary><table class="history"><tr><th>epoch</th>' +
           cols.map(c => "<th>" + c[1] + "</th>").join("") + "<th>samples/s</th><th>seconds</th><th>checkpoint</th></tr>";
    h.forEach(e => {
      const saved = job.checkpoints.find(c => c.epoch === e.epoch);
      out += '<tr class="epoch-row" data-epoch="' + e.epoch + '"><td>' + e.epoch + "</td>" +
             cols.map(c => '<td class="' + c[0] + '" data-value="' + (e[c[0]] ?? "") + '">' + num(e[c[0]], c[2]) + "</td>").join("") +
             '<td class="samples_per_second" data-value="' + e.samples_per_second + '">' + rate(e.samples_per_second) + "</td>" +
             '<td class="seconds" data-value="' + e.seconds + '">' + num(e.seconds, 2) + "</td>" +
             '<td class="checkpoint" title="' + esc(saved ? saved.path : "") + '">' + (saved ? clock(saved.time) : "-") + "</td></tr>";
    });
    out += "</table></details>";
  }
  return out;
}

function ingestCard(job) {
  let out = '<header><h2>ingest ' + esc(job.id) + "</h2>" + '<span class="badge ' + job.state + '">' + job.state +
            '</span><span class="muted">' + (job.store_kind ? esc(job.store_kind) + " store " : "store ") +
            esc(job.store || "?") + "</span></header>";
  if (job.error) out += '<div class="error">' + esc(job.error) + "</div>";
  const rows = job.rows || {};
  out += '<div class="figures">';
  out += figure("read", "rows read", rate(rows.read), rows.read);
  out += figure("stored", "rows stored", rate(rows.stored), rows.stored);
  out += figure("rejected", "rows rejected", rate(rows.rejected), rows.rejected);
  out += figure("bytes_written", "written", bytes(job.bytes_written || 0), job.bytes_written);
  out += figure("rows_per_second", "rows read/s", rate(job.elapsed > 0 ? rows.read / job.elapsed : null), null);
  out += figure("elapsed", "elapsed", duration(job.elapsed), job.elapsed);
  out += "</div>";
  Object.entries(job.stages || {}).forEach(([name, s]) => {
    const share = s.total ? 100 * s.done / s.total : 0;
    out += '<div class="stage" data-stage="' + esc(name) + '"><span class="name">' + esc(name) + '</span><span class="bar"><span style="width:' +
           share.toFixed(1) + '%"></span></span> ' + s.done + " / " + s.total + " tasks</div>";
  });
  return out;
}

function render(state) {
  // Running jobs first, then the most recent.
  const jobs = state.jobs.slice().sort((a, b) =>
    (b.state === "running") - (a.state === "running") || b.started - a.started);
  document.getElementById("empty").hidden = jobs.length > 0;
  const container = document.getElementById("jobs");
  const seen = new Set();
  let previous = null;
  jobs.forEach(job => {
    seen.add(job.id);
    let card = document.getElementById("job-" + job.id);
    if (!card) {
      card = document.createElement("section");
      card.id = "job-" + job.id;
      card.className = "job " + job.type;
    }
    const text = JSON.stringify(job);
    if (shown[job.id] !== text) {  // redraw only what changed: open <details> and tooltips survive
      const open = card.querySelector("details");
      card.innerHTML = job.type === "train" ? trainCard(job) : ingestCard(job);
      if (open && !open.open) { const d = card.querySelector("details"); if (d) d.open = false; }
      card.dataset.state = job.state;
      card.dataset.job = job.id;
      shown[job.id] = text;
    }
    const wanted = previous ? previous.nextSibling : container.firstChild;
    if (wanted !== card) container.insertBefore(card, wanted);
    previous = card;
  });
  Array.from(container.children).forEach(card => { if (!seen.has(card.dataset.job)) card.remove(); });
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch(BASE + "/jobs.json", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    status.textContent = "updated " + new Date().toLocaleTimeString("en-GB");
    status.className = "";
  } catch (error) {
    status.textContent = "scheduler unreachable (" + error.message + "), retrying";
    status.className = "lost";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
"""
