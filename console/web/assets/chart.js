// Hourly series as an SVG chart: axes with counts and dates, a legend, bands drawn as shaded areas,
// and a missing hour drawn as a gap (never a line across it).
import { h, s } from "./dom.js";

const HOUR = 3600_000;

// Runs of consecutive indices where `ok(i)` holds.
function runs(n, ok) {
  const out = [];
  let cur = null;
  for (let i = 0; i < n; i++) {
    if (ok(i)) { if (!cur) { cur = []; out.push(cur); } cur.push(i); } else cur = null;
  }
  return out;
}

const present = (v) => v !== null && v !== undefined && !Number.isNaN(v);

// spec: { start (ms), n (hours), lines: [{ values, cls, label }], bands: [{ lower, upper, cls, label }],
//         marks: [{ i, v, label }], label, id }
export function hourChart(spec) {
  const { start, n } = spec;
  const lines = spec.lines || [];
  const bands = spec.bands || [];
  const W = 900, H = 230, L = 44, B = 30, T = 12;
  const all = [...lines.flatMap((l) => l.values), ...bands.flatMap((b) => b.upper)].filter(present);
  const max = Math.max(1, Math.ceil(Math.max(0, ...all)));
  const x = (i) => L + (i / Math.max(1, n - 1)) * (W - L - 10);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const shapes = [];
  for (const b of bands) {
    for (const run of runs(n, (i) => present(b.lower[i]) && present(b.upper[i]))) {
      const top = run.map((i) => `${x(i).toFixed(1)} ${y(b.upper[i]).toFixed(1)}`);
      const bottom = run.slice().reverse().map((i) => `${x(i).toFixed(1)} ${y(b.lower[i]).toFixed(1)}`);
      shapes.push(s("path", { d: `M ${top.join(" L ")} L ${bottom.join(" L ")} Z`, class: `band ${b.cls}` }));
    }
  }
  for (const l of lines) {
    const segs = runs(n, (i) => present(l.values[i])).map((run) =>
      `M ${run.map((i) => `${x(i).toFixed(1)} ${y(l.values[i]).toFixed(1)}`).join(" L ")}`);
    shapes.push(s("path", { d: segs.join(" ") || "M 0 0", class: `series ${l.cls}`, "data-runs": segs.length,
      "data-points": l.values.filter(present).length }));
  }
  for (const m of spec.marks || []) {
    shapes.push(s("circle", { cx: x(m.i), cy: y(m.v), r: 4, class: "mark" }, s("title", {}, m.label || "")));
  }
  const ticks = [];
  // Days (UTC midnights, dated); a short series also gets its hours every six.
  const step = n <= 72 ? 6 * HOUR : 24 * HOUR * (Math.floor(n / 24 / 10) + 1);
  for (let t = Math.ceil(start / step) * step; t <= start + (n - 1) * HOUR; t += step) {
    const i = (t - start) / HOUR;
    const iso = new Date(t).toISOString();
    const midnight = iso.slice(11, 13) === "00";
    ticks.push(s("line", { x1: x(i), x2: x(i), y1: T, y2: H - B, class: midnight ? "grid-line day" : "grid-line" }),
      s("text", { x: x(i), y: H - 10, class: "tick", "text-anchor": "middle" }, midnight ? iso.slice(5, 10) : `${iso.slice(11, 13)}:00`));
  }
  for (const v of new Set([0, Math.round(max / 2), max])) {
    ticks.push(s("text", { x: L - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, String(v)));
  }
  const legend = [...bands, ...lines].map((k) => h("span", { class: `key key-${k.cls}` }, k.label));
  if ((spec.marks || []).length) legend.push(h("span", { class: "key key-mark" }, "anomaly"));
  return h("div", { class: "panel chart-panel", id: spec.id },
    s("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": spec.label },
      ticks, s("line", { x1: L, x2: W - 10, y1: H - B, y2: H - B, class: "axis" }), s("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }),
      shapes),
    h("p", { class: "legend" }, legend, ` · per hour, dates in UTC from ${new Date(start).toISOString().slice(0, 16)}Z`));
}

// Points keyed by RFC 3339 hour ([{ hour, ... }]) laid on a dense hourly axis: { start, n, at(field) }.
export function hourly(points) {
  const times = points.map((p) => Date.parse(p.hour)).filter((t) => !Number.isNaN(t));
  if (!times.length) return { start: 0, n: 0, at: () => [] };
  const start = Math.min(...times);
  const n = Math.round((Math.max(...times) - start) / HOUR) + 1;
  const slot = new Map(points.map((p) => [Math.round((Date.parse(p.hour) - start) / HOUR), p]));
  return { start, n, index: (p) => Math.round((Date.parse(p.hour) - start) / HOUR),
    at: (f) => Array.from({ length: n }, (_, i) => (slot.has(i) ? f(slot.get(i)) : null)) };
}
