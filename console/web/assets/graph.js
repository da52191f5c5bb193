// The incident's attack graph as SVG: one column per host in the order the attack reached them,
// external destinations last, so the chain reads left to right (workstation, web server, C2 domain).
// Within a column, entities stand in the order they were first seen. Every edge is a button that
// shows the events proving it.
import { h, s } from "./dom.js";

const COL = 290;
const ROW = 54;
const BOX_W = 230;
const BOX_H = 38;
const TOP = 40;

function columns(graph, inc) {
  const order = [];
  for (const step of inc.path || []) if (step.kind === "host" && !order.includes(step.name)) order.push(step.name);
  for (const n of graph.nodes) if (n.host && !order.includes(n.host) && n.kind !== "alert") order.push(n.host);
  return order;
}

function clip(text, n) {
  const t = String(text ?? "");
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

export function attackGraph(graph, inc, onEdge) {
  const hosts = columns(graph, inc);
  const external = hosts.length;
  const alertsOn = new Map();
  for (const e of graph.edges) if (e.kind === "raised_on") alertsOn.set(e.to, (alertsOn.get(e.to) || 0) + 1);
  const drawn = graph.nodes.filter((n) => n.kind !== "alert").sort((a, b) => (Date.parse(a.first) || 0) - (Date.parse(b.first) || 0));
  const place = new Map();
  const filled = new Array(external + 1).fill(0);
  for (const n of drawn) {
    const col = n.host && hosts.includes(n.host) ? hosts.indexOf(n.host) : external;
    place.set(n.id, { x: 20 + col * COL, y: TOP + filled[col] * ROW, node: n });
    filled[col] += 1;
  }
  const width = 40 + (external + 1) * COL;
  const height = TOP + Math.max(1, ...filled) * ROW + 20;
  const svg = s("svg", { class: "graph", id: "incident-graph", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `attack graph: ${hosts.join(", ")}` },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" },
      s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))),
    [...hosts, "external"].map((name, i) => s("text", { x: 20 + i * COL, y: 20, class: "column-title" }, clip(name, 34))));
  for (const e of graph.edges) {
    if (e.kind === "raised_on") continue;
    const a = place.get(e.from);
    const b = place.get(e.to);
    if (!a || !b) continue;
    const [x1, y1] = [a.x + (b.x > a.x ? BOX_W : b.x < a.x ? 0 : BOX_W / 2), a.y + BOX_H / 2];
    const [x2, y2] = [b.x + (b.x > a.x ? 0 : b.x < a.x ? BOX_W : BOX_W / 2), b.y + BOX_H / 2];
    const mid = (x1 + x2) / 2;
    // An edge that skips a column bows below the columns between, so it is not read as passing through them.
    const bow = Math.abs(b.x - a.x) > COL ? ROW * 1.4 : 0;
    const d = bow ? `M ${x1} ${y1} C ${x1 + COL / 2} ${y1 + bow}, ${x2 - COL / 2} ${y2 + bow}, ${x2} ${y2}`
      : x1 === x2 ? `M ${x1 + BOX_W / 2} ${y1} C ${x1 + BOX_W / 2 + 40} ${y1}, ${x2 + BOX_W / 2 + 40} ${y2}, ${x2 + BOX_W / 2} ${y2}`
      : `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`;
    const label = `${a.node.label} (${a.node.host || "external"}) ${e.kind.replace("_", " ")} ${b.node.label} (${b.node.host || "external"})`;
    const kind = e.cross_host ? "cross" : e.external ? "external" : "local";
    const pick = () => onEdge(e, label);
    svg.appendChild(s("g", { class: `edge edge-${kind}`, tabindex: 0, role: "button", "aria-label": label, "data-kind": e.kind,
      "data-from": a.node.label, "data-to": b.node.label, onclick: pick, onkeydown: (ev) => ev.key === "Enter" && pick() },
      s("title", {}, label),
      s("path", { d, class: "hit" }),
      s("path", { d, class: "line", "marker-end": "url(#arrow)" })));
  }
  for (const { x, y, node } of place.values()) {
    const alerts = alertsOn.get(node.id) || 0;
    svg.appendChild(s("g", { class: `node node-${node.kind}`, transform: `translate(${x} ${y})`, "data-label": node.label },
      s("title", {}, `${node.kind}: ${node.label}${node.host ? ` on ${node.host}` : ""}`),
      s("rect", { width: BOX_W, height: BOX_H, rx: 5 }),
      s("text", { x: 8, y: 16, class: "kind" }, node.kind),
      s("text", { x: 8, y: 31 }, clip(node.label, 30)),
      alerts ? s("text", { x: BOX_W - 8, y: 16, class: "alerts", "text-anchor": "end" }, `${alerts} alert${alerts > 1 ? "s" : ""}`) : null));
  }
  return h("div", { class: "graph-scroll" }, svg);
}
