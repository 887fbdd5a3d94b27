// The page of `rnnkit serve`: one card per run (GET runs), a box to try it (POST runs/NAME/predict|sample) and its
// report. Plain DOM and SVG: no library, no build step, nothing fetched from elsewhere.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

function fmt(value) {
  return typeof value === "number" ? (Number.isInteger(value) ? String(value) : value.toPrecision(4)) : String(value);
}

// ------------------------------------------------------------------------------------------------ charts
const COLORS = ["#3b7dd8", "#d8693b", "#2e9e5b", "#8e44ad", "#c0392b"];

function lineChart(series, opts) {
  // series: [{name, xs, ys}]; draws lines on shared axes with a legend
  const W = 460, H = 200, P = 48;
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("class", (opts && opts.cls) || "chart");
  const points = series.flatMap(s => s.xs.map((x, i) => [x, s.ys[i]])).filter(p => p[1] !== null && isFinite(p[1]));
  if (!points.length) return svg;
  let [x0, x1] = [Math.min(...points.map(p => p[0])), Math.max(...points.map(p => p[0]))];
  let [y0, y1] = [Math.min(...points.map(p => p[1])), Math.max(...points.map(p => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const sx = x => P + (x - x0) / (x1 - x0) * (W - 2 * P);
  const sy = y => H - P + (y0 - y) / (y1 - y0) * (H - 2 * P);
  const text = (x, y, s, anchor) => {
    const t = document.createElementNS(svgNS, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "10");
    t.setAttribute("text-anchor", anchor || "middle"); t.textContent = s; svg.append(t);
  };
  text(P, H - P + 14, fmt(x0)); text(W - P, H - P + 14, fmt(x1));
  text(P - 4, H - P, fmt(y0), "end"); text(P - 4, P + 4, fmt(y1), "end");
  if (opts && opts.xlabel) text(W / 2, H - 6, opts.xlabel);
  series.forEach((s, k) => {
    const d = s.xs.map((x, i) => [x, s.ys[i]]).filter(p => p[1] !== null && isFinite(p[1]))
      .map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    const path = document.createElementNS(svgNS, "path");
    path.setAttribute("d", d); path.setAttribute("fill", "none");
    path.setAttribute("stroke", s.color || COLORS[k % COLORS.length]); path.setAttribute("stroke-width", "1.8");
    path.setAttribute("data-series", s.name);
    svg.append(path);
    text(W - P, P + 12 * k, s.name, "end");
    svg.lastChild.setAttribute("fill", s.color || COLORS[k % COLORS.length]);
  });
  return svg;
}

// ------------------------------------------------------------------------------------------------ the report
function report(run) {
  const box = el("div", { class: "report" });
  const metrics = Object.entries(run.metrics || {});
  box.append(el("h3", {}, "metrics"),
    el("table", { class: "metrics" }, metrics.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, fmt(v))))));
  const curve = run.curve || {};
  if (curve.epoch) {
    const cols = ["train_loss", "val_loss", "val_accuracy"].filter(c => curve[c]);
    box.append(el("h3", {}, "training curve (curve.csv)"),
      lineChart(cols.map(c => ({ name: c, xs: curve.epoch, ys: curve[c] })), { cls: "curve", xlabel: "epoch" }));
    const grads = ["grad_norm", "grad_norm_max"].filter(c => curve[c]);
    if (grads.length) box.append(el("h3", {}, "gradient norm before clipping (curve.csv; per step in TensorBoard)"),
      lineChart(grads.map(c => ({ name: c, xs: curve.epoch, ys: curve[c] })), { cls: "grad-curve", xlabel: "epoch" }));
  }
  if (run.confusion && run.confusion.matrix) {
    const { classes, matrix } = run.confusion;
    box.append(el("h3", {}, "confusion matrix (rows: true, columns: predicted)"),
      el("table", { class: "confusion" },
        el("tr", {}, el("th", {}, ""), classes.map(c => el("th", {}, c))),
        matrix.map((row, i) => el("tr", {}, el("th", {}, classes[i]), row.map(n => el("td", {}, n))))));
  }
  return box;
}

// ------------------------------------------------------------------------------------------------ try it
function barsOf(top) {
  return top.map(t => el("div", { class: "bar" },
    el("span", { class: "label" }, t.label),
    el("span", { class: "fill", style: `width:${(t.prob * 300).toFixed(1)}px` }),
    el("span", { class: "prob" }, t.prob.toFixed(3))));
}

function parseSeries(text, channels) {
  // a series run's input: JSON as the API takes it, or numbers (one channel), or one step per line (C numbers);
  // the server checks the shape and says what does not fit
  const t = text.trim();
  if (t.startsWith("[")) return JSON.parse(t);
  const numbers = line => line.trim().split(/[\s,;]+/).filter(Boolean).map(Number);
  if (channels === 1) return numbers(t);
  return t.split("\n").filter(line => line.trim()).map(numbers);
}

function seriesChart(series, channels, extra) {
  // every channel of a series (steps 1..L), and the forecast after it when given
  const rows = series.map(x => (Array.isArray(x) ? x : [x]));
  const lines = [...Array(channels).keys()].map(c => ({
    name: channels > 1 ? `channel ${c + 1}` : "series", xs: rows.map((_, i) => i + 1), ys: rows.map(r => r[c]) }));
  return lineChart(extra ? [...lines, extra] : lines, { cls: extra ? "forecast" : "series", xlabel: "step" });
}

function seriesClassifier(run) {
  const channels = (run.info && run.info.channels) || 1;
  const k = Math.min(5, Math.max(1, run.classes.length));
  const input = el("textarea", { class: "series-input", rows: channels > 1 ? "6" : "2", cols: "60",
    placeholder: channels > 1 ? `one step per line, ${channels} numbers each (or JSON: [[x1, ..., x${channels}], ...])`
      : "a series: 0.1 0.5 0.9 … (or JSON: [0.1, 0.5, 0.9])" });
  const bars = el("div", { class: "bars" });
  const chart = el("div", { class: "series-chart" });
  const error = el("div", { class: "error" });
  const go = async () => {
    let series;
    try { series = parseSeries(input.value, channels); } catch (e) { error.textContent = `not JSON: ${e.message}`; return; }
    if (!series.length) { bars.replaceChildren(); error.textContent = "type a series of numbers"; return; }
    try {
      const answer = await post(`runs/${run.run}/predict`, { series, top_k: k });
      error.textContent = "";
      bars.replaceChildren(...barsOf(answer.predictions[0].top));
      chart.replaceChildren(seriesChart(series, channels));
    } catch (e) { bars.replaceChildren(); chart.replaceChildren(); error.textContent = e.message; }
  };
  return el("div", { class: "controls" }, input, el("br", {}),
    el("button", { class: "predict-button", onclick: go }, "classify"), bars, chart, error,
    el("p", { class: "muted note" }, `${channels} channel(s) per step; files: rnnkit predict `, run.run,
      " --data FILE.ts (or .npz)"));
}

function classifier(run) {
  const k = Math.min(5, Math.max(1, run.classes.length));
  const bars = el("div", { class: "bars" });
  const error = el("div", { class: "error" });
  let pending = 0;
  const input = el("input", { type: "text", class: "predict-input", placeholder: "type a name", autocomplete: "off",
    oninput: async () => {
      const text = input.value.trim();
      const mine = ++pending;
      if (!text) { bars.replaceChildren(); error.textContent = ""; return; }
      try {
        const answer = await post(`runs/${run.run}/predict`, { items: [text], top_k: k });
        if (mine !== pending) return;
        error.textContent = "";
        bars.replaceChildren(...barsOf(answer.predictions[0].top));
      } catch (e) { if (mine === pending) { bars.replaceChildren(); error.textContent = e.message; } }
    } });
  return el("div", {}, input, bars, error);
}

function generator(run) {
  const conditional = run.info && run.info.conditional;
  const category = el("select", { class: "category" }, run.classes.map(c => el("option", { value: c }, c)));
  const temperature = el("input", { type: "number", class: "temperature", value: "0.8", min: "0", max: "100", step: "0.1" });
  const topk = el("input", { type: "number", class: "top-k", placeholder: "all", min: "1", style: "width:5em" });
  const prefix = el("input", { type: "text", class: "prefix", placeholder: "prefix", style: "width:7em" });
  const list = el("ol", { class: "samples" });
  const error = el("div", { class: "error" });
  const go = async () => {
    const body = { num: 10, temperature: Number(temperature.value), prefix: prefix.value };
    if (conditional) body.category = category.value;
    if (topk.value) body.top_k = Number(topk.value);
    try {
      const answer = await post(`runs/${run.run}/sample`, body);
      error.textContent = "";
      list.replaceChildren(...answer.samples.map(s => el("li", {}, s)));
    } catch (e) { error.textContent = e.message; }
  };
  return el("div", { class: "controls" },
    conditional ? el("label", {}, "category ", category) : null,
    el("label", {}, "temperature ", temperature), el("label", {}, "top-k ", topk), el("label", {}, prefix),
    el("button", { class: "sample-button", onclick: go }, "sample"), list, error);
}

function candidates(answer) {
  // a seq2seq item: input -> the best output, and every candidate the beam found with its score
  const best = answer.candidates.length ? answer.candidates[0].output : "";
  return el("div", { class: "transcription" },
    el("div", { class: "io" }, el("span", { class: "input" }, answer.item), " → ", el("b", { class: "output" }, best)),
    el("table", { class: "beam" },
      el("tr", {}, el("th", {}, "#"), el("th", {}, "beam candidate"), el("th", {}, "score (log p)")),
      answer.candidates.map((c, i) => el("tr", { class: i ? "candidate" : "candidate best" },
        el("td", {}, i + 1), el("td", { class: "text" }, c.output), el("td", { class: "score" }, c.score.toFixed(3))))));
}

function predictor(run) {
  const forecast = run.task === "forecast" || run.app === "forecast";
  const seq2seq = run.task === "seq2seq" || run.app === "seq2seq";
  const lm = run.app === "lm";
  const sentence = lm || run.app === "tag";  // the whole text is one item
  const horizon = forecast || lm;  // steps to forecast, characters to generate
  const channels = (forecast && run.info && run.info.channels) || 1;
  const input = channels > 1
    ? el("textarea", { class: "predict-input", rows: "6", cols: "60",
      placeholder: `one step per line: ${(run.info.columns || []).join(", ")} (at least ${run.info.context} steps)` })
    : el("input", { type: "text", class: "predict-input", style: "width:24em",
      placeholder: forecast ? "a series: 1 2 3 4 5 … (at least the run's context)"
        : lm ? "a text to continue" : sentence ? "a sentence to tag" : "one item, or several separated by spaces" });
  const extra = el("input", { type: "number", class: horizon ? "horizon" : "beam", min: "1",
    max: horizon ? "1000" : "16", value: horizon ? "" : "3", placeholder: "run's", style: "width:5em" });
  const out = el("div", { class: "lines" });
  const error = el("div", { class: "error" });
  const go = async () => {
    let series = [];
    if (forecast) {
      try { series = parseSeries(input.value, channels); } catch (e) { error.textContent = `not JSON: ${e.message}`; return; }
    }
    const items = forecast ? series
      : sentence ? [input.value].filter(t => t.trim()) : input.value.trim().split(/[\s,]+/).filter(Boolean);
    if (!items.length) { out.replaceChildren(); error.textContent = forecast ? "type a series of numbers" : "type something"; return; }
    const body = forecast ? { series } : { items };
    if (extra.value && horizon) body.horizon = Number(extra.value);
    else if (extra.value && seq2seq) body.beam = Number(extra.value);
    try {
      const answer = await post(`runs/${run.run}/predict`, body);
      error.textContent = "";
      const lines = answer.lines || [];
      out.replaceChildren(...(answer.outputs ? answer.outputs.map(candidates) : [el("pre", {}, lines.join("\n"))]));
      if (forecast) {  // the series (every channel) and the forecast of the target after it
        const ys = answer.forecasts[0].values;
        out.append(seriesChart(series, channels,
          { name: "forecast", xs: ys.map((_, i) => series.length + i + 1), ys }));
      }
    } catch (e) { error.textContent = e.message; }
  };
  input.addEventListener("keydown", e => { if (e.key === "Enter") go(); });
  return el("div", { class: "controls" }, input,
    horizon || seq2seq ? el("label", {}, forecast ? "horizon " : lm ? "characters " : "beam ", extra) : null,
    el("button", { class: "predict-button", onclick: go }, forecast ? "forecast" : "predict"), out, error);
}

function card(run) {
  const tryIt = run.endpoints.includes("sample") ? generator(run)
    : run.task === "classify" && !run.app ? classifier(run)
    : run.app === "classify-series" ? seriesClassifier(run)
    : predictor(run);
  const details = el("details", { class: "report-toggle" }, el("summary", {}, "run report"), report(run));
  const head = Object.entries(run.metrics || {}).filter(([k]) => k.startsWith("test_")).slice(0, 3)
    .map(([k, v]) => `${k} ${fmt(v)}`).join(", ");
  return el("section", { class: "run", id: `run-${run.run}` },
    el("h2", {}, run.run, " ", el("span", { class: "muted" }, `${run.task}${run.app ? " / " + run.app : ""} · ${run.model}`)),
    el("div", { class: "muted" }, head), tryIt, details);
}

async function main() {
  const root = document.getElementById("runs");
  try {
    const response = await fetch("runs");
    const runs = await response.json();
    root.replaceChildren(...runs.map(card));
    document.body.dataset.ready = "1";
  } catch (e) {
    root.replaceChildren(el("div", { class: "error" }, `could not read the runs: ${e.message}`));
  }
}

main();
