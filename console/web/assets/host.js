// One host: its agent's status and counters, its alerts and incidents, the login chart, and the
// timeline (kind filters, endless scrolling) with the process tree around any event.
import { api, query } from "./api.js";
import { h, level, mount, time } from "./dom.js";
import { hourChart } from "./chart.js";
import { summary } from "./event.js";

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
  const respond = `/response/new${query({ host })}`;
  mount(root, h("h1", {}, host), agent,
    h("p", {}, h("a", { id: "host-respond", href: respond, onclick: go(respond) }, "Request a response on this host")),
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
  api(`/api/v1/incidents${query({ host, limit: 50 })}`).then(({ incidents: list }) => mount(incidents, list.map((i) =>
    h("li", {}, level(i.severity), " ", h("a", { href: `/incidents/${encodeURIComponent(i.id)}`, onclick: go(`/incidents/${encodeURIComponent(i.id)}`) }, i.title))))).catch(() => {});
  api(`/api/v1/hosts/${encodeURIComponent(host)}/logins`).then((d) => {
    const draw = (measure) => mount(chart, h("label", {}, "Bands for ", h("select", { id: "band-measure", onchange: (e) => draw(e.target.value) },
      Object.keys(MEASURE_OF).map((m) => h("option", { value: m, selected: m === measure }, m)))), loginChart(d, measure));
    draw("failures");
  }).catch((err) => mount(chart, h("p", { class: "error" }, err.message)));

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

function timelineRow(ev, host, tree) {
  const [kind, what] = summary(ev);
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

const MEASURE_OF = { failures: "failure", logins: "success" };

// Hourly logins (successes and failures) with, for the chosen measure, the host's forecast interval
// and its group's fleet band, on axes with dates; an hour with no data is a gap, never a line across.
export function loginChart(d, measure = "failures") {
  const start = Date.parse(d.series.start);
  const n = d.series.success.length;
  const f = d.forecast?.[measure];
  const hourIndex = (iso, k) => (Date.parse(iso) + k * 3600_000 - start) / 3600_000;
  const lower = new Array(n).fill(null);
  const upper = new Array(n).fill(null);
  if (f?.basis === "forecast") {
    f.hours.forEach((x, k) => {
      const i = hourIndex(d.forecast.start, k);
      if (i >= 0 && i < n) { lower[i] = x.lower; upper[i] = x.upper; }
    });
  }
  const fleet = d.fleet_band?.measures?.[measure] || [];
  const observed = d.series[MEASURE_OF[measure]] || [];
  const marks = [];
  observed.forEach((v, i) => {
    if (upper[i] !== null && fleet[i] && v > upper[i] && v > fleet[i][1]) marks.push({ i, v, label: `${v} ${measure}, past both bands` });
  });
  const basis = f?.basis ? `${measure} judged by the ${f.basis.replace("_", " ")}${f.reason ? ` (${f.reason})` : ""}` : "no baselines fitted yet";
  const chart = hourChart({ start, n, id: "login-series", label: `logins per hour from ${d.from}`, marks,
    bands: [{ lower: fleet.map(() => 0), upper: fleet.map((b) => b[1]), cls: "band-fleet", label: `fleet band (${d.fleet_band?.group || "no group"})` },
      { lower, upper, cls: "band-forecast", label: `forecast interval (${measure})` }],
    lines: [{ values: d.series.success, cls: "series-success", label: "successful logins" },
      { values: d.series.failure, cls: "series-failure", label: "failed logins" }] });
  chart.appendChild(h("p", { class: "muted", id: "login-basis" }, basis));
  return chart;
}
