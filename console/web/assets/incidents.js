// Incidents: the list, and one incident with its attack path, graph, cross-host timeline and alerts.
import { api, query } from "./api.js";
import { h, level, mount, time } from "./dom.js";
import { eventHost, eventId, eventTime, summary } from "./event.js";
import { attackGraph } from "./graph.js";

const STATUSES = ["open", "investigating", "contained", "resolved", "false_positive"];

export function incidentList(root, navigate) {
  const body = h("tbody", { id: "incident-rows" });
  mount(root, h("h1", {}, "Incidents"),
    h("table", { class: "grid", id: "incidents" },
      h("thead", {}, h("tr", {}, ["Severity", "Title", "Hosts", "Status", "Owner", "First seen", "Last seen"].map((t) => h("th", {}, t)))),
      body));
  api(`/api/v1/incidents${query({ limit: 100 })}`).then(({ incidents }) => {
    for (const i of incidents) {
      const open = (e) => { e.preventDefault(); navigate(`/incidents/${encodeURIComponent(i.id)}`); };
      body.appendChild(h("tr", { class: "incident-row", tabindex: 0, onkeydown: (e) => e.key === "Enter" && open(e) },
        h("td", {}, level(i.severity)),
        h("td", {}, h("a", { href: `/incidents/${encodeURIComponent(i.id)}`, onclick: open }, i.title)),
        h("td", {}, (i.hosts || []).join(", ")),
        h("td", {}, i.status), h("td", {}, i.owner || ""),
        h("td", {}, time(i.first_seen)), h("td", {}, time(i.last_seen))));
    }
  }).catch((err) => mount(body, h("tr", {}, h("td", { class: "error", colspan: 7 }, err.message))));
}

function eventRows(events, evidence) {
  return events.map(({ event: ev, evidence_of: of }) => {
    const [kind, what] = summary(ev);
    const marked = (of && of.length) || (evidence && evidence.has(eventId(ev)));
    return h("tr", { class: marked ? "evidence" : "", "data-event": eventId(ev) },
      h("td", {}, time(eventTime(ev))), h("td", { class: "host" }, eventHost(ev)),
      h("td", {}, kind), h("td", { class: "mono" }, what), h("td", {}, marked ? "evidence" : ""));
  });
}

function eventTable(id, rows) {
  return h("table", { class: "grid", id },
    h("thead", {}, h("tr", {}, ["Time", "Host", "Kind", "What", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}

export function incidentPage(root, navigate) {
  const id = decodeURIComponent(location.pathname.split("/")[2] || "");
  mount(root, h("p", { class: "muted" }, "Loading the incident…"));
  Promise.all([api(`/api/v1/incidents/${encodeURIComponent(id)}`), api(`/api/v1/incidents/${encodeURIComponent(id)}/graph`)])
    .then(([detail, graph]) => render(root, detail, graph, navigate))
    .catch((err) => mount(root, h("p", { class: "error" }, err.message)));
}

function render(root, detail, graph, navigate) {
  const inc = detail.incident;
  const byId = new Map(detail.timeline.map((t) => [eventId(t.event), t]));
  const panel = h("section", { class: "panel", id: "edge-events", "aria-live": "polite" },
    h("p", { class: "muted" }, "Choose an edge or a step of the path to see the events that prove it."));
  const showEvents = (title, ids) => {
    const found = ids.map((i) => byId.get(i)).filter(Boolean);
    mount(panel, h("h3", {}, title),
      found.length ? eventTable("edge-event-table", eventRows(found)) : h("p", { class: "muted" }, `${ids.length} events, outside the timeline's window`));
  };
  const path = h("ol", { class: "path", id: "attack-path" }, (inc.path || []).map((step, i) =>
    h("li", { class: `step step-${step.kind}` },
      i > 0 ? h("button", { type: "button", class: "hop", title: "the events that link this step to the one before",
        onclick: () => showEvents(`${inc.path[i - 1].name} → ${step.name}`, step.events) }, "→") : null,
      h("span", { class: "node-name" }, step.name))));
  mount(root,
    h("h1", {}, level(inc.severity), " ", inc.title),
    h("p", { class: "muted" }, `${inc.id} · hosts: ${(inc.hosts || []).join(", ")} · `, time(inc.first_seen), " – ", time(inc.last_seen)),
    handling(inc),
    h("p", {}, h("a", { id: "incident-respond", href: respondHref(inc), onclick: (e) => { e.preventDefault(); navigate(respondHref(inc)); } }, "Request a response")),
    h("h2", {}, "Attack path"), path,
    h("h2", {}, "Graph"), attackGraph(graph, inc, (edge, label) => showEvents(label, edge.events || [])), panel,
    h("h2", {}, "Alerts in kill-chain order"), alertList(detail.alerts, inc),
    h("h2", {}, "Timeline"), eventTable("incident-timeline", eventRows(detail.timeline)),
    detail.timeline_truncated ? h("p", { class: "muted" }, "The timeline is cut at its first events.") : null,
    h("h2", {}, "Comments"), h("ul", { class: "comments" }, (detail.comments || []).map((c) =>
      h("li", {}, h("strong", {}, c.author), " ", time(c.at), ": ", c.comment))));
}

const respondHref = (inc) => `/response/new${query({ incident: inc.id, host: (inc.hosts || [])[0] })}`;

function alertList(alerts, inc) {
  const why = new Map((inc.joins || []).map((j) => [j.to_alert, j]));
  return h("ol", { class: "alerts", id: "incident-alerts" }, alerts.map(({ anchor, alert }) => {
    const join = why.get(anchor.alert);
    const how = join ? join.hops.map((hop) => `${hop.from_label} ${hop.kind} ${hop.to_label}`).join(", then ") : "the first alert";
    return h("li", {}, level(anchor.level), " ", h("span", { class: "host" }, anchor.host), " · ", anchor.title,
      " · ", (anchor.techniques || []).join(" "), h("div", { class: "muted" }, `joined: ${how}`),
      alert ? h("div", { class: "muted" }, time(anchor.time)) : null);
  }));
}

function handling(inc) {
  const status = h("select", { name: "status", id: "incident-status" },
    STATUSES.map((st) => h("option", { value: st, selected: st === inc.status }, st)));
  const owner = h("input", { name: "owner", id: "incident-owner", value: inc.owner || "", placeholder: "owner" });
  const comment = h("input", { name: "comment", id: "incident-comment", placeholder: "comment" });
  const said = h("span", { class: "muted", id: "incident-saved" });
  return h("form", { class: "filters", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api(`/api/v1/incidents/${encodeURIComponent(inc.id)}`, { method: "PATCH",
        body: { status: status.value, owner: owner.value.trim(), comment: comment.value.trim() } });
      mount(said, "saved");
      comment.value = "";
    } catch (err) { mount(said, h("span", { class: "error" }, err.message)); }
  } }, h("label", {}, "Status ", status), owner, comment, h("button", { type: "submit" }, "Save"), said);
}
