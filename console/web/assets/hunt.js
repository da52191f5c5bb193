// Hunt: fleet-wide search (query syntax or a literal string, matched fields highlighted) and the IOC
// sweep (hundreds of indicators, defanged forms accepted). The search is a URL, so a hunt is a link.
import { api, query } from "./api.js";
import { download as saveFile, h, mount, time } from "./dom.js";

const SYNTAX = "field:value · \"a phrase\" · AND OR NOT · wild*card · host:NAME · tick Literal for an IOC or pasted log text";

// The event's fields by their flat names (url_full, process_command_line), as `matched` names them.
function flatten(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const name = prefix ? `${prefix}_${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, name, out);
    else out[name.replace(/[.@]/g, "_").replace(/^_/, "")] = v;
  }
  return out;
}

// `text` with every case-insensitive occurrence of `needle` in <mark>, all as text nodes.
function highlight(text, needle) {
  const s = String(text ?? "");
  if (!needle) return [s];
  const out = [];
  const lower = s.toLowerCase();
  const n = needle.toLowerCase();
  let at = 0;
  for (let i = lower.indexOf(n); i >= 0 && n; i = lower.indexOf(n, at)) {
    out.push(s.slice(at, i), h("mark", {}, s.slice(i, i + n.length)));
    at = i + n.length;
  }
  out.push(s.slice(at));
  return out;
}

function hitRow({ event: ev, matched }, needle) {
  const flat = flatten(ev);
  const kind = [ev.event?.category, ev.event?.action].filter(Boolean).join("/");
  const fields = (matched || []).filter((f) => flat[f] !== undefined);
  return h("tr", { class: "hit" },
    h("td", {}, time(ev["@timestamp"])), h("td", { class: "host" }, ev.host?.name ?? ""), h("td", {}, kind),
    h("td", {}, fields.map((f) => h("div", { class: "matched" }, h("span", { class: "field" }, f), " ",
      h("span", { class: "mono" }, highlight(flat[f], needle))))));
}

function searchPanel(navigate) {
  const params = new URLSearchParams(location.search);
  const q = h("input", { name: "q", id: "hunt-q", value: params.get("q") || "", placeholder: "${jndi:ldap", "aria-label": "search" });
  const literal = h("input", { type: "checkbox", name: "literal", id: "hunt-literal", checked: params.get("literal") === "true" });
  const host = h("input", { name: "host", placeholder: "host", value: params.get("host") || "" });
  const body = h("tbody", { id: "hunt-hits" });
  const status = h("p", { class: "muted", id: "hunt-status" });
  const more = h("button", { type: "button", hidden: true }, "More");
  let cursor = null;
  const run = async (next) => {
    const needle = literal.checked ? q.value : q.value.replace(/^"|"$/g, "");
    try {
      const res = await api(`/api/v1/search${query({ q: q.value, literal: literal.checked ? "true" : "", host: host.value.trim(), limit: 100, cursor: next ? cursor : "" })}`);
      if (!next) mount(body);
      for (const hit of res.events) body.appendChild(hitRow(hit, needle));
      cursor = res.next_cursor;
      more.hidden = !cursor;
      mount(status, `${res.total} events match; ${body.children.length} shown`);
    } catch (err) { mount(status, h("span", { class: "error" }, err.message)); }
  };
  more.addEventListener("click", () => run(true));
  if (q.value) run(false);
  return h("section", {},
    h("form", { class: "filters", onsubmit: (e) => {
      e.preventDefault();
      navigate(`/hunt${query({ q: q.value, literal: literal.checked ? "true" : "", host: host.value.trim() })}`);
    } }, q, h("label", { for: "hunt-literal" }, literal, " Literal"), host, h("button", { type: "submit", id: "hunt-go" }, "Search")),
    h("p", { class: "muted syntax" }, SYNTAX),
    h("table", { class: "grid", id: "hunt-results" },
      h("thead", {}, h("tr", {}, ["Time", "Host", "Kind", "Matched"].map((t) => h("th", {}, t)))), body),
    status, more);
}

function sweepPanel() {
  const box = h("textarea", { name: "iocs", id: "sweep-iocs", placeholder: "one indicator per line: hashes, addresses, domains, URLs (hxxp://evil[.]example accepted)" });
  const body = h("tbody", { id: "sweep-rows" });
  const status = h("p", { class: "muted", id: "sweep-status" });
  return h("section", {},
    h("h2", {}, "IOC sweep"),
    h("form", { class: "sweep", onsubmit: async (e) => {
      e.preventDefault();
      const iocs = box.value.split(/\s*\n\s*/).map((l) => l.trim()).filter(Boolean);
      try {
        const res = await api("/api/v1/iocs/sweep", { method: "POST", body: { iocs } });
        mount(body, res.results.map((r) => h("tr", { class: r.total ? "hit" : "" },
          h("td", { class: "mono" }, r.ioc), h("td", { class: "mono" }, r.value), h("td", {}, r.type), h("td", { class: "num" }, String(r.total)),
          h("td", {}, (r.hosts || []).map((x) => h("div", {}, h("span", { class: "host" }, x.host), ` ${x.count} · `, time(x.first_seen), " – ", time(x.last_seen)))))));
        mount(status, `${res.swept} indicators swept, ${res.matched} seen`);
      } catch (err) { mount(status, h("span", { class: "error" }, err.message)); }
    } }, box, h("button", { type: "submit", id: "sweep-go" }, "Sweep")),
    h("table", { class: "grid", id: "sweep-results" },
      h("thead", {}, h("tr", {}, ["Indicator", "Read as", "Type", "Events", "Hosts (first – last seen)"].map((t) => h("th", {}, t)))), body),
    status);
}

// A value as text: null as empty, lists and structs as JSON.
function text(v) {
  return v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
}

// A CSV field: quoted when it holds a comma, quote or line break (RFC 4180).
function csvField(v) {
  const t = text(v);
  return /[",\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

function sqlPanel() {
  const box = h("textarea", { name: "sql", id: "sql-text", rows: 4 });
  box.value = "SELECT host_name, count(*) AS events FROM events GROUP BY host_name ORDER BY events DESC LIMIT 20";
  const grid = h("div", { id: "sql-grid" });
  const status = h("p", { class: "muted", id: "sql-status" });
  let last = null;
  const download = h("button", { type: "button", id: "sql-csv", disabled: true, onclick: () => {
    const lines = [last.columns.map(csvField).join(","), ...last.rows.map((r) => r.map(csvField).join(","))];
    saveFile("cordon-query.csv", `${lines.join("\r\n")}\r\n`, "text/csv");
  } }, "Export CSV");
  return h("section", {},
    h("h2", {}, "SQL"),
    h("form", { class: "sweep", onsubmit: async (e) => {
      e.preventDefault();
      mount(status, "running…");
      try {
        last = await api("/api/v1/sql", { method: "POST", body: { sql: box.value } });
        mount(grid, h("table", { class: "grid", id: "sql-results" },
          h("thead", {}, h("tr", {}, last.columns.map((c) => h("th", {}, c)))),
          h("tbody", {}, last.rows.map((r) => h("tr", {}, r.map((v) => h("td", { class: "mono" }, text(v))))))));
        download.disabled = false;
        mount(status, `${last.rows.length} rows${last.truncated ? " (cut at the row cap)" : ""}`);
      } catch (err) { mount(status, h("span", { class: "error" }, err.message)); }
    } }, box, h("div", { class: "filters" }, h("button", { type: "submit", id: "sql-run" }, "Run"), download)),
    status, grid);
}

export function hunt(root, navigate) {
  mount(root, h("h1", {}, "Hunt"), searchPanel(navigate), sweepPanel(), sqlPanel());
}
