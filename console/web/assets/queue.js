// The alert queue: newest first, filters in the URL (so a filtered queue is a link), pages fetched
// from the server by time, new alerts announced by the server's event stream.
import { api, query } from "./api.js";
import { h, level, mount, time } from "./dom.js";

const PAGE = 50;
const FILTERS = [
  ["level", "Level", [["", "any"], ["2", "low+"], ["3", "medium+"], ["4", "high+"], ["5", "critical"]]],
  ["status", "Status", [["", "any"], ["alerted", "alerted"], ["blocked", "blocked"]]],
  ["handling", "Handling", [["", "any"], ["unhandled", "unhandled"], ["handled", "handled"], ["false_positive", "false positive"]]],
];

function filtersFromUrl() {
  const q = new URLSearchParams(location.search);
  const out = {};
  for (const k of ["level", "status", "handling", "host", "technique"]) if (q.get(k)) out[k] = q.get(k);
  return out;
}

function techniqueList(a) {
  return (a.techniques || []).map((t) => t.id || t).join(" ");
}

function row(a, navigate) {
  const host = a.endpoint ? a.endpoint.name : "";
  const open = (e) => { if (e.target.closest("a, input")) return; navigate(`/alerts/${encodeURIComponent(a.id)}`); };
  return h("tr", { class: "alert-row", "data-id": a.id, tabindex: 0, onclick: open, onkeydown: (e) => e.key === "Enter" && open(e) },
    h("td", {}, h("input", { type: "checkbox", class: "pick", "data-id": a.id, "aria-label": "select this alert" })),
    h("td", {}, level(a.level)),
    h("td", {}, time(a.last_seen)),
    h("td", { class: "host" }, host ? h("a", { href: `/hosts/${encodeURIComponent(host)}`, onclick: (e) => { e.preventDefault(); navigate(`/hosts/${encodeURIComponent(host)}`); } }, host) : ""),
    h("td", { class: "rule" }, a.rule ? a.rule.title || a.rule.id : ""),
    h("td", { class: "object mono" }, a.object),
    h("td", { class: "mono" }, techniqueList(a)),
    h("td", {}, a.status),
    h("td", {}, a.handling),
    h("td", { class: "num" }, String(a.count)),
  );
}

// Handling for every selected alert at once, with one comment (each change is its own audited call).
function bulkBar(body, reload) {
  const handling = h("select", { name: "bulk-handling", id: "bulk-handling" },
    ["handled", "false_positive", "unhandled"].map((x) => h("option", { value: x }, x.replace("_", " "))));
  const comment = h("input", { name: "bulk-comment", id: "bulk-comment", placeholder: "comment for the selected alerts" });
  const said = h("span", { class: "muted", id: "bulk-status" });
  return h("form", { class: "filters", onsubmit: async (e) => {
    e.preventDefault();
    const ids = [...body.querySelectorAll("input.pick:checked")].map((c) => c.dataset.id);
    if (!ids.length) { mount(said, "select alerts first"); return; }
    const body_ = { handling: handling.value, comment: comment.value.trim() };
    const results = await Promise.allSettled(ids.map((id) => api(`/api/v1/alerts/${encodeURIComponent(id)}`, { method: "PATCH", body: body_ })));
    const failed = results.filter((r) => r.status === "rejected");
    mount(said, `${ids.length - failed.length} of ${ids.length} alerts set to ${handling.value}`, failed.length ? h("span", { class: "error" }, ` (${failed[0].reason.message})`) : "");
    comment.value = "";
    reload();
  } }, h("label", {}, "Selected: ", handling), comment, h("button", { type: "submit", id: "bulk-apply" }, "Apply"), said);
}

export function alertQueue(root, navigate) {
  const filters = filtersFromUrl();
  const controls = FILTERS.map(([name, label, options]) =>
    h("label", {}, `${label} `,
      h("select", { name, onchange: (e) => apply(name, e.target.value) },
        options.map(([v, text]) => h("option", { value: v, selected: (filters[name] || "") === v }, text)))));
  const host = h("input", { name: "host", placeholder: "host", value: filters.host || "" });
  const technique = h("input", { name: "technique", placeholder: "T1190", value: filters.technique || "" });
  const body = h("tbody", { id: "alert-rows" });
  const status = h("p", { class: "muted", id: "queue-status" });
  const more = h("button", { type: "button", id: "queue-more", onclick: () => load(true) }, "Older alerts");
  const fresh = h("button", { type: "button", id: "queue-fresh", class: "notice", hidden: true, onclick: () => load(false) },
    "New alerts: show");
  let oldest = null;

  function apply(name, value) {
    const next = { ...filtersFromUrl(), [name]: value };
    navigate(`/alerts${query(next)}`);
  }

  async function load(older) {
    fresh.hidden = true;
    const params = { ...filters, limit: PAGE, to: older && oldest ? oldest : undefined };
    try {
      const { alerts } = await api(`/api/v1/alerts${query(params)}`);
      if (!older) mount(body);
      for (const a of alerts) body.appendChild(row(a, navigate));
      if (alerts.length) oldest = alerts[alerts.length - 1].last_seen;
      more.hidden = alerts.length < PAGE;
      mount(status, `${body.children.length} alerts shown`);
    } catch (err) {
      mount(status, h("span", { class: "error" }, err.message));
    }
  }

  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    navigate(`/alerts${query({ ...filtersFromUrl(), host: host.value.trim(), technique: technique.value.trim() })}`);
  } }, controls, host, technique, h("button", { type: "submit" }, "Filter"));

  mount(root,
    h("h1", {}, "Alerts"),
    form, bulkBar(body, () => load(false)), fresh,
    h("table", { class: "grid", id: "alert-queue" },
      h("thead", {}, h("tr", {},
        h("th", {}, h("input", { type: "checkbox", id: "pick-all", "aria-label": "select every alert shown",
          onchange: (e) => body.querySelectorAll("input.pick").forEach((c) => { c.checked = e.target.checked; }) })),
        ["Level", "Last seen", "Host", "Rule", "Object", "Techniques", "Status", "Handling", "Count"].map((t) => h("th", {}, t)))),
      body),
    status, more);
  load(false);

  // New alerts: shown at once when the analyst is at the top of an unfiltered first page, else offered.
  const events = new EventSource("/api/v1/alerts/stream");
  events.addEventListener("alerts", () => {
    if (window.scrollY < 50) load(false); else fresh.hidden = false;
  });
  return () => events.close();
}
