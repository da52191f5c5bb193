// One host: its agent's status and counters, its alerts and incidents, the login chart, and the
// timeline (kind filters, endless scrolling) with the process tree around any event.
import { api, query } from "./api.js";
import { h, level, mount, s, time } from "./dom.js";
import { summary } from "./incidents.js";

const KINDS = ["process", "network", "file", "registry", "authentication", "web"];
const PAGE = 100;

export function hostPage(root, navigate) {
  const host = decodeURIComponent(location.pathname.split("/")[2] || "");
  const params = new URLSearchParams(location.search);
  const kinds = new Set((params.get("kinds") || "").split(",").filter(Boolean));
  const page = Math.min(1000, Math.max(1, Number(params.get("limit")) || PAGE));
  const go = (href) => (e) => { e.preventDefault(); navigate(href); };
  const agent = h("div", { id: "host-agent", class: "muted" });
  const alerts = h("ul", { id: "host-alerts" });
  const incidents = h("ul", { id: "host-incidents" });
  const chart = h("div", { id: "login-chart" });
  const tree = h("section", { class: "panel", id: "process-tree" }, h("p", { class: "muted" }, "Choose an event to see the process tree around it."));
  const rows = h("tbody", { id: "host-timeline" });
  const sentinel = h("p", { class: "muted", id: "timeline-end" }, "…");
  const filters = h("div", { class: "filters", id: "kind-filters" }, KINDS.map((k) =>
    h("label", {}, h("input", { type: "checkbox", name: k, checked: kinds.has(k), onchange: (e) => {
      if (e.target.checked) kinds.add(k); else kinds.delete(k);
      navigate(`/hosts/${encodeURIComponent(host)}${query({ kinds: [...kinds].join(",") })}`);
    } }), ` ${k}`)));
  mount(root, h("h1", {}, host), agent,
    h("div", { class: "cards" },
      h("section", { class: "panel" }, h("h2", {}, "Alerts"), alerts),
      h("section", { class: "panel" }, h("h2", {}, "Incidents"), incidents)),
    h("h2", {}, "Logins per hour"), chart,
    h("h2", {}, "Timeline"), filters, tree,
    h("table", { class: "grid" }, h("thead", {}, h("tr", {}, ["Time", "Kind", "What", "User"].map((t) => h("th", {}, t)))), rows),
    sentinel);

  api("/api/v1/agents").then(({ agents }) => {
    const a = agents.find((x) => x.host === host);
    mount(agent, a ? [h("span", { class: `status status-${a.status}` }, a.status), ` agent ${a.agent_id} · last heartbeat `, time(a.last_heartbeat),
      ` · ${a.events_in} events in, ${a.events_acked} acked, ${a.events_dropped} dropped`] : "no agent reports this host");
  }).catch(() => {});
  api(`/api/v1/alerts${query({ host, limit: 20 })}`).then(({ alerts: list }) => mount(alerts, list.map((a) =>
    h("li", {}, level(a.level), " ", h("a", { href: `/alerts/${encodeURIComponent(a.id)}`, onclick: go(`/alerts/${encodeURIComponent(a.id)}`) }, a.rule.title), " ", time(a.last_seen))))).catch(() => {});
  api(`/api/v1/incidents${query({ limit: 200 })}`).then(({ incidents: list }) => mount(incidents, list.filter((i) => (i.hosts || []).includes(host)).map((i) =>
    h("li", {}, level(i.severity), " ", h("a", { href: `/incidents/${encodeURIComponent(i.id)}`, onclick: go(`/incidents/${encodeURIComponent(i.id)}`) }, i.title))))).catch(() => {});
  api(`/api/v1/hosts/${encodeURIComponent(host)}/logins`).then((d) => mount(chart, loginChart(d))).catch((err) => mount(chart, h("p", { class: "error" }, err.message)));

  let cursor = "";
  let loading = false;
  const more = async () => {
    if (loading || cursor === null) return;
    loading = true;
    try {
      const d = await api(`/api/v1/hosts/${encodeURIComponent(host)}/timeline${query({ kinds: [...kinds].join(","), limit: page, cursor })}`);
      for (const ev of d.events) rows.appendChild(timelineRow(ev, host, tree));
      cursor = d.next_cursor ?? null;
      mount(sentinel, cursor === null ? `${rows.children.length} events: the beginning of this host's history` : "…");
    } catch (err) { mount(sentinel, h("span", { class: "error" }, err.message)); cursor = null; }
    loading = false;
    // The observer fires on changes only: while the end is still in view, keep loading.
    if (cursor !== null && sentinel.isConnected && sentinel.getBoundingClientRect().top < window.innerHeight) more();
  };
  const watch = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) more(); });
  watch.observe(sentinel);
  more();
  return () => watch.disconnect();
}

function flat(ev) {
  return {
    event_kind: ev.event?.category, event_action: ev.event?.action, url_full: ev.url?.full, file_path: ev.file?.path,
    process_command_line: ev.process?.command_line, process_executable: ev.process?.executable, process_name: ev.process?.name,
    destination_ip: ev.destination?.ip, destination_port: ev.destination?.port, destination_domain: ev.destination?.domain,
    source_ip: ev.source?.ip, message: ev.message,
  };
}

function timelineRow(ev, host, tree) {
  const [kind, what] = summary(flat(ev));
  const id = ev.event?.id;
  return h("tr", { class: "timeline-row", tabindex: 0, "data-event": id, onclick: () => showTree(host, id, tree) },
    h("td", {}, time(ev["@timestamp"])), h("td", {}, kind), h("td", { class: "mono" }, what),
    h("td", {}, ev.user ? [ev.user.domain, ev.user.name].filter(Boolean).join("\\") : ""));
}

async function showTree(host, event, panel) {
  try {
    const t = await api(`/api/v1/hosts/${encodeURIComponent(host)}/process-tree${query({ event })}`);
    const node = (p) => h("li", { class: p.id === t.focus ? "focus" : "" },
      h("span", { class: "mono" }, p.name), " ", h("span", { class: "muted mono" }, p.attrs?.command_line || p.attrs?.executable || ""),
      p.children?.length ? h("ul", {}, p.children.map(node)) : null);
    mount(panel, h("h3", {}, "Process tree"), h("ul", { class: "tree", id: "tree-root" }, (t.processes || []).map(node)));
  } catch (err) { mount(panel, h("p", { class: "error" }, err.message)); }
}

// Hourly login counts (successes and failures) as an SVG chart with axes and dates; an hour with no
// data is a gap in the line, never a line across it.
export function loginChart(d) {
  const start = d.series.start / 1000;
  const n = d.series.success.length;
  const W = 900, H = 220, L = 40, B = 30, T = 10;
  const max = Math.max(1, ...d.series.success.map((v) => v ?? 0), ...d.series.failure.map((v) => v ?? 0));
  const x = (i) => L + (i / Math.max(1, n - 1)) * (W - L - 10);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const line = (values, cls) => {
    const parts = [];
    let pen = "M";
    values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = "M"; return; }
      parts.push(`${pen} ${x(i).toFixed(1)} ${y(v).toFixed(1)}`);
      pen = "L";
    });
    return s("path", { d: parts.join(" ") || "M 0 0", class: cls, "data-points": parts.length });
  };
  const days = [];
  for (let i = 0; i < n; i += 24) days.push(s("g", {}, s("line", { x1: x(i), x2: x(i), y1: T, y2: H - B, class: "grid-line" }),
    s("text", { x: x(i), y: H - 10, class: "tick", "text-anchor": "middle" }, new Date(start + i * 3600_000).toISOString().slice(5, 10))));
  const ticks = [0, Math.ceil(max / 2), max].map((v) => s("text", { x: L - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, String(v)));
  const basis = d.forecast?.failures?.basis ? `failures judged by the ${d.forecast.failures.basis.replace("_", " ")}${d.forecast.failures.reason ? ` (${d.forecast.failures.reason})` : ""}` : "";
  return h("div", { class: "panel" },
    s("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `logins per hour from ${d.from}` },
      days, ticks, s("line", { x1: L, x2: W - 10, y1: H - B, y2: H - B, class: "axis" }), s("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }),
      line(d.series.success, "series-success"), line(d.series.failure, "series-failure")),
    h("p", { class: "legend" }, h("span", { class: "key key-success" }, "successful logins"), " ", h("span", { class: "key key-failure" }, "failed logins"),
      ` · hours in UTC from ${d.from.slice(0, 16)}Z · ${basis}`));
}
