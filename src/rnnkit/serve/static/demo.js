// The lecture's gradient demo: the TinyRNN table (POST demo/tiny) and ‖∂L/∂h_t‖ curves (POST demo/flow).
"use strict";

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

const $ = id => document.getElementById(id);
const num = v => (v === null ? "inf/nan" : Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-4) ? v.toExponential(3) : v.toFixed(6));

async function tiny() {
  const lengths = $("lengths").value.trim().split(/[\s,]+/).filter(Boolean).map(Number);
  try {
    const answer = await post("demo/tiny", { wh: Number($("wh").value), lengths, dtype: $("dtype").value });
    const names = Object.keys(answer.rows[0].grads);
    const head = "<tr><th>L</th>" + names.map(n => `<th>∂L/∂${n}</th>`).join("") + "</tr>";
    const rows = answer.rows.map(r => `<tr><td>${r.length}</td>` + names.map(n => `<td>${num(r.grads[n])}</td>`).join("") + "</tr>");
    $("tiny-table").innerHTML = head + rows.join("");
    $("tiny-error").textContent = "";
  } catch (e) { $("tiny-error").textContent = e.message; }
}

const COLORS = { rnn: "#c0392b", lstm: "#3b7dd8", gru: "#2e9e5b" };

function chart(norms) {
  const W = 620, H = 280, P = 56, NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("class", "flow");
  const all = Object.values(norms).flat().filter(v => v !== null && v > 0);
  const T = Math.max(...Object.values(norms).map(v => v.length));
  const lo = Math.log10(Math.min(...all)), hi = Math.log10(Math.max(...all)) + 1e-9;
  const sx = t => P + t / Math.max(1, T - 1) * (W - 2 * P);
  const sy = v => H - P - (Math.log10(v) - lo) / Math.max(1e-9, hi - lo) * (H - 2 * P);
  const text = (x, y, s, anchor, color) => {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "11");
    t.setAttribute("text-anchor", anchor || "middle"); if (color) t.setAttribute("fill", color);
    t.textContent = s; svg.append(t);
  };
  text(P, H - P + 16, "0"); text(W - P, H - P + 16, String(T - 1)); text(W / 2, H - 8, "step t");
  text(P - 6, H - P, `1e${lo.toFixed(1)}`, "end"); text(P - 6, P + 4, `1e${hi.toFixed(1)}`, "end");
  Object.entries(norms).forEach(([name, values], k) => {
    const color = COLORS[name.split(" ")[0]] || "#555";
    const d = values.map((v, t) => [t, v]).filter(p => p[1] !== null && p[1] > 0)
      .map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d); path.setAttribute("fill", "none"); path.setAttribute("stroke", color);
    path.setAttribute("stroke-width", "1.8"); path.setAttribute("data-series", name);
    svg.append(path);
    text(W - P + 4, P + 14 * k, name, "start", color);
  });
  return svg;
}

async function flow() {
  try {
    const answer = await post("demo/flow", {
      length: Number($("length").value), hidden: Number($("hidden").value), seed: Number($("seed").value),
    });
    $("flow-chart").replaceChildren(chart(answer.norms));
    $("flow-error").textContent = "";
  } catch (e) { $("flow-error").textContent = e.message; }
}

$("tiny-button").addEventListener("click", tiny);
$("flow-button").addEventListener("click", flow);
Promise.all([tiny(), flow()]).then(() => { document.body.dataset.ready = "1"; });
