// Anomalies and reports: the login anomalies the baselines raised, each with its explanation and its
// series drawn against the forecast band and the fleet band; anomaly reports to read, and to run on
// demand for any past period.
import { api, query } from "./api.js";
import { h, level, mount, time } from "./dom.js";
import { hourChart, hourly } from "./chart.js";

// A series of hours ({ hour, observed, expected/lower/upper or expected: [e, l, u], fleet_upper })
// as a chart; the hours past both bounds are marked.
export function seriesChart(points, label, id) {
  const axis = hourly(points);
  const band = (p) => (Array.isArray(p.expected) ? p.expected : [p.expected, p.lower, p.upper]);
  const upper = axis.at((p) => band(p)[2] ?? null);
  const fleet = axis.at((p) => p.fleet_upper ?? null);
  const observed = axis.at((p) => p.observed ?? null);
  const marks = [];
  observed.forEach((v, i) => {
    const past = (b) => b === null || b === undefined || v > b;
    if (v !== null && (upper[i] !== null || fleet[i] !== null) && past(upper[i]) && past(fleet[i])) marks.push({ i, v, label: `${v}` });
  });
  return hourChart({ start: axis.start, n: axis.n, label, id, marks,
    bands: [{ lower: axis.at(() => 0), upper: fleet, cls: "band-fleet", label: "fleet band" },
      { lower: axis.at((p) => band(p)[1] ?? null), upper, cls: "band-forecast", label: "forecast interval" }],
    lines: [{ values: axis.at((p) => band(p)[0] ?? null), cls: "series-expected", label: "expected" },
      { values: observed, cls: "series-observed", label: "observed" }] });
}

export function anomalies(root, navigate) {
  const params = new URLSearchParams(location.search);
  const form = h("form", { class: "filters", id: "anomaly-filters" },
    h("label", {}, "Level ≥ ", h("select", { name: "level" }, ["", "1", "2", "3", "4", "5"].map((v) => h("option", { value: v, selected: params.get("level") === v }, v || "any")))),
    h("input", { name: "host", placeholder: "host", value: params.get("host") || "" }),
    h("label", {}, "Handling ", h("select", { name: "handling" }, ["", "unhandled", "handled", "false_positive"].map((v) => h("option", { value: v, selected: params.get("handling") === v }, v || "any")))),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    navigate(`/anomalies${query(Object.fromEntries(new FormData(form)))}`);
  });
  const rows = h("tbody", { id: "anomaly-rows" });
  const chart = h("section", { id: "anomaly-chart", "aria-live": "polite" });
  const reports = h("section", { id: "reports" });
  mount(root, h("h1", {}, "Anomalies"), form,
    h("table", { class: "grid", id: "anomalies" },
      h("thead", {}, h("tr", {}, ["Level", "Host", "Group", "Measure", "Last seen", "Explanation", "Handling"].map((t) => h("th", {}, t)))), rows),
    chart, h("h2", {}, "Reports"), reports);
  const filters = Object.fromEntries(["level", "host", "handling"].map((k) => [k, params.get(k)]));
  api(`/api/v1/anomalies${query({ ...filters, limit: 200 })}`).then((d) => {
    if (!d.anomalies.length) { mount(rows, h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No anomalies."))); return; }
    mount(rows, d.anomalies.map((a) => anomalyRow(a, chart, rows, navigate)));
    rows.firstChild.click();
  }).catch((err) => mount(rows, h("tr", {}, h("td", { class: "error", colspan: 7 }, err.message))));
  reportList(reports, navigate);
}

function anomalyRow(a, chart, rows, navigate) {
  const go = (href) => (e) => { e.preventDefault(); e.stopPropagation(); navigate(href); };
  const show = (e) => {
    for (const r of rows.children) r.classList.remove("selected");
    e.currentTarget.classList.add("selected");
    mount(chart, h("h3", {}, `${a.host}: ${a.measure} ${a.direction}`), h("p", {}, a.explanation),
      seriesChart(a.series || [], `${a.measure} of ${a.host} per hour`, "anomaly-series"),
      h("p", {}, h("a", { href: `/alerts/${encodeURIComponent(a.id)}`, onclick: go(`/alerts/${encodeURIComponent(a.id)}`) }, "Open the alert")));
  };
  return h("tr", { class: "anomaly-row", tabindex: 0, "data-id": a.id, onclick: show, onkeydown: (e) => e.key === "Enter" && show(e) },
    h("td", {}, level(a.level)),
    h("td", { class: "host" }, h("a", { href: `/hosts/${encodeURIComponent(a.host)}`, onclick: go(`/hosts/${encodeURIComponent(a.host)}`) }, a.host)),
    h("td", {}, a.group || ""), h("td", {}, `${a.measure} ${a.direction}`), h("td", {}, time(a.last_seen)),
    h("td", {}, a.explanation), h("td", {}, a.handling));
}

const hourInput = (name, value) => h("input", { type: "datetime-local", name, value: value.toISOString().slice(0, 16) });

function reportList(root, navigate) {
  // Default: the 24 hours to the end of the current hour.
  const end = new Date((Math.floor(Date.now() / 3600_000) + 1) * 3600_000);
  const from = hourInput("from", new Date(end - 24 * 3600_000));
  const to = hourInput("to", end);
  const said = h("span", { class: "muted", id: "report-run-status" });
  const run = h("form", { class: "filters", id: "report-run" }, h("label", {}, "From (UTC) ", from), h("label", {}, "to ", to),
    h("button", { type: "submit" }, "Run a report"), said);
  run.addEventListener("submit", async (e) => {
    e.preventDefault();
    mount(said, "running…");
    try {
      const d = await api("/api/v1/reports/run", { method: "POST", body: { from: `${from.value}:00Z`, to: `${to.value}:00Z`, format: "json" } });
      navigate(`/reports/${encodeURIComponent(d.report.id)}`);
    } catch (err) { mount(said, h("span", { class: "error" }, err.message)); }
  });
  const body = h("tbody", { id: "report-rows" });
  mount(root, run, h("table", { class: "grid" },
    h("thead", {}, h("tr", {}, ["Report", "Schedule", "Period", "Anomalies", "Made"].map((t) => h("th", {}, t)))), body));
  api(`/api/v1/reports${query({ limit: 50 })}`).then(({ reports }) => {
    mount(body, reports.map((r) => {
      const href = `/reports/${encodeURIComponent(r.id)}`;
      return h("tr", { class: "report-row" },
        h("td", { class: "mono" }, h("a", { href, onclick: (e) => { e.preventDefault(); navigate(href); } }, r.id)),
        h("td", {}, r.name), h("td", {}, time(r.from), " – ", time(r.to)), h("td", { class: "num" }, String(r.anomalies)), h("td", {}, time(r.created)));
    }));
  }).catch((err) => mount(body, h("tr", {}, h("td", { class: "error", colspan: 5 }, err.message))));
}

export function reportPage(root, navigate) {
  const id = decodeURIComponent(location.pathname.split("/")[2] || "");
  mount(root, h("p", { class: "muted" }, "Loading the report…"));
  api(`/api/v1/reports/${encodeURIComponent(id)}`).then(({ report }) => renderReport(root, report, navigate))
    .catch((err) => mount(root, h("p", { class: "error" }, err.message)));
}

function renderReport(root, r, navigate) {
  const chartOf = new Map(r.hosts.map((x, i) => [x.host, `chart-${i}`]));
  const toChart = (host) => (e) => { e.preventDefault(); document.getElementById(chartOf.get(host))?.scrollIntoView(); };
  const f = r.fleet;
  const c = r.changes;
  const list = (v) => (v.length ? v.join(", ") : "none");
  const file = (format) => `/api/v1/reports/${encodeURIComponent(r.id)}${query({ format })}`;
  mount(root,
    h("h1", {}, `Login anomalies: ${r.from.slice(0, 16)}Z to ${r.to.slice(0, 16)}Z`),
    h("p", { class: "muted" }, `${r.id} · ${r.name} · made `, time(r.generated), " · ", h("a", { href: file("html") }, "HTML"), " · ", h("a", { href: file("csv") }, "CSV")),
    h("p", { id: "report-fleet" }, `${f.hosts} hosts logged in ${f.logins} times and failed ${f.failures} times; ${r.anomalies.length} anomalies.`),
    h("p", {}, `Since the previous report (${c.previous || "none"}): ${c.anomalies_before} anomalies then, ${c.anomalies_now} now. New: ${list(c.new_hosts)}. Quiet again: ${list(c.quiet_again)}. Still anomalous: ${list(c.still_anomalous)}.`),
    h("h2", {}, "Anomalies, most severe first"),
    h("table", { class: "grid", id: "report-anomalies" },
      h("thead", {}, h("tr", {}, ["Level", "Host", "Group", "Hour", "What", "Handling"].map((t) => h("th", {}, t)))),
      h("tbody", {}, r.anomalies.map((a) => h("tr", {},
        h("td", {}, level(a.level)),
        h("td", { class: "host" }, chartOf.has(a.host) ? h("a", { href: `${location.pathname}#${chartOf.get(a.host)}`, class: "to-chart", onclick: toChart(a.host) }, a.host) : a.host),
        h("td", {}, a.group || ""), h("td", {}, time(a.at)), h("td", {}, a.explanation), h("td", {}, a.handling))))),
    h("h2", {}, "Hosts"),
    r.hosts.map((x, i) => h("section", { id: `chart-${i}`, class: "report-host" },
      h("h3", {}, `${x.host} (${x.group || "no group"}), ${x.anomalies} anomalies, level ${x.max_level}`),
      seriesChart(x.points, `logins of ${x.host}`))));
}
