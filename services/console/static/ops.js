// The ops page: reads /ops/api/series every poll interval and draws it with Chart.js (served by the hub).
// Each chart's canvas carries data-points (values drawn); <body data-polls> counts the answers read.
"use strict";

const PALETTE = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#9e9d24", "#5d4037", "#ad1457", "#455a64"];
const FONT = '"GridHub Sans", system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'; // as ops.css
const charts = new Map();
let polls = 0;

function hhmmss(ms) {
  return new Date(ms).toLocaleTimeString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
}

function pct(v) {
  return v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`;
}

function text(value) {
  return value === null || value === undefined ? "—" : String(value);
}

function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function countPoints(spec) {
  if (spec.kind === "bar") return spec.datasets.reduce((n, d) => n + d.data.filter((v) => v).length, 0);
  return spec.series.reduce((n, s) => n + s.points.filter((p) => p[1] !== null).length, 0);
}

function chartData(spec) {
  if (spec.kind === "bar") {
    return {
      labels: spec.labels,
      datasets: spec.datasets.map((d, i) => ({ label: d.label, data: d.data, backgroundColor: i === 0 && spec.datasets.length > 1 ? "#c62828" : PALETTE[i % PALETTE.length] })),
    };
  }
  return {
    datasets: spec.series.map((s, i) => ({
      label: s.label,
      data: s.points.map((p) => ({ x: p[0], y: p[1] })),
      borderColor: PALETTE[i % PALETTE.length],
      backgroundColor: PALETTE[i % PALETTE.length],
      borderWidth: 2,
      pointRadius: 0,
      clip: 4, // a line at 0 is drawn whole, not half under the axis
      spanGaps: false,
      tension: 0.2,
    })),
  };
}

// Line charts span the data they have: from the oldest point kept to the latest poll.
function timeBounds(spec) {
  const times = spec.series.flatMap((s) => (s.points.length ? [s.points[0][0], s.points[s.points.length - 1][0]] : []));
  return times.length ? { min: Math.min(...times), max: Math.max(...times) } : {};
}

function chartOptions(spec) {
  const common = {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    plugins: { legend: { position: "bottom", labels: { boxWidth: 12, font: { size: 11 } } } },
  };
  if (spec.kind === "bar") {
    return { ...common, indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } }, y: { ticks: { font: { size: 11 } } } } };
  }
  return {
    ...common,
    scales: {
      x: { type: "linear", ...timeBounds(spec), ticks: { callback: (v) => hhmmss(v), maxTicksLimit: 6, maxRotation: 0 } },
      y: { beginAtZero: true, suggestedMax: spec.unit === "%" ? 100 : undefined },
    },
  };
}

function card(spec) {
  const box = document.createElement("div");
  box.className = "card";
  box.id = `card-${spec.id}`;
  const h2 = document.createElement("h2");
  h2.textContent = spec.title;
  const unit = document.createElement("span");
  unit.className = "unit";
  unit.textContent = spec.unit;
  h2.appendChild(unit);
  const holder = document.createElement("div");
  holder.className = "chart-box";
  const canvas = document.createElement("canvas");
  canvas.id = `chart-${spec.id}`;
  canvas.dataset.points = "0";
  const empty = document.createElement("div");
  empty.className = "empty";
  empty.textContent = "暂无数据 no data yet";
  holder.append(canvas, empty);
  box.append(h2, holder);
  document.getElementById("charts").appendChild(box);
  return canvas;
}

function draw(spec) {
  let entry = charts.get(spec.id);
  if (!entry) {
    const canvas = card(spec);
    entry = { canvas, chart: new Chart(canvas, { type: spec.kind, data: chartData(spec), options: chartOptions(spec) }) };
    charts.set(spec.id, entry);
  } else {
    entry.chart.data = chartData(spec);
    if (spec.kind === "line") Object.assign(entry.chart.options.scales.x, timeBounds(spec));
    entry.chart.update("none");
  }
  const points = countPoints(spec);
  entry.canvas.dataset.points = String(points);
  entry.canvas.parentElement.querySelector(".empty").style.display = points ? "none" : "flex";
}

function showTriage(items) {
  const body = document.querySelector("#triage tbody");
  body.replaceChildren();
  document.getElementById("triage-count").textContent = `（${items.length} 件）`;
  for (const it of items) {
    const row = document.createElement("tr");
    cell(row, `${text(it.age_minutes)} 分钟`, "num");
    cell(row, text(it.title), "title");
    cell(row, text(it.channel));
    cell(row, it.matter_code ? `${it.matter_code} ${text(it.matter_name)}` : "—");
    cell(row, typeof it.confidence === "number" ? it.confidence.toFixed(2) : "—", "num");
    cell(row, text(it.cause));
    cell(row, text(it.township));
    cell(row, it.state === "claimed" ? `已认领 ${text(it.claimed_by)}` : "待分拨");
    body.appendChild(row);
  }
}

function showRanking(week) {
  const body = document.querySelector("#ranking tbody");
  body.replaceChildren();
  if (!week) return;
  document.getElementById("ranking-period").textContent = `${text(week.period)}（截至 ${text(week.as_of).slice(0, 16).replace("T", " ")}，应办结不足 ${text(week.min_due_for_rank)} 件不排名）`;
  for (const r of [...week.rows, { ...week.county, rank: "全县" }]) {
    const row = document.createElement("tr");
    cell(row, r.rank === null ? "不排名" : text(r.rank));
    cell(row, text(r.name));
    for (const k of ["received", "resolved", "due"]) cell(row, text(r[k]), "num");
    cell(row, pct(r.on_time_rate), "num");
    cell(row, pct(r.response_rate), "num");
    cell(row, pct(r.satisfaction_rate), "num");
    cell(row, text(r.median_hours), "num");
    cell(row, text(r.open), "num");
    cell(row, text(r.overdue), r.overdue ? "num bad" : "num");
    body.appendChild(row);
  }
}

function showServices(up) {
  const box = document.getElementById("services");
  box.replaceChildren();
  for (const [name, ok] of Object.entries(up)) {
    const span = document.createElement("span");
    span.textContent = name;
    span.className = ok ? "up" : "down";
    span.title = ok ? "/metrics 正常" : "/metrics 无响应";
    box.appendChild(span);
  }
}

async function refresh() {
  let delay = 5000;
  try {
    const answer = await fetch("/ops/api/series", { cache: "no-store" });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const data = await answer.json();
    delay = Math.max(1000, data.interval_s * 1000);
    for (const spec of data.charts) draw(spec);
    showTriage(data.triage);
    showRanking(data.ranking);
    showServices(data.up);
    polls += 1;
    document.body.dataset.polls = String(polls);
    document.getElementById("status").textContent = data.polled_at
      ? `更新于 ${hhmmss(data.polled_at)} · 每 ${data.interval_s} 秒 · 保留 ${Math.round(data.window_s / 60)} 分钟`
      : "等待首次采集…";
  } catch (err) {
    document.getElementById("status").textContent = `读取失败：${err}`;
  }
  setTimeout(refresh, delay);
}

async function start() {
  Chart.defaults.font.family = FONT;
  Chart.defaults.color = "#3e4c59";
  // Canvas text does not wait for a web font: load the Chinese one first (from a local font when installed).
  if (document.fonts && document.fonts.load) {
    await Promise.race([document.fonts.load('12px "GridHub Sans"', "按期办结率"), new Promise((r) => setTimeout(r, 3000))]).catch(() => {});
  }
  refresh();
}

start();
