// One alert, laid out as the source talk's alert page: overview, endpoint, file details with hashes,
// ATT&CK tags and behaviour, then why it fired and the evidence events; pivots to a fleet-wide search
// for its hashes and addresses, and to its incident.
import { api, query } from "./api.js";
import { h, level, mount, time } from "./dom.js";
import { eventHost, eventTime, fields, summary } from "./event.js";

function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function pivot(value, navigate) {
  if (!value) return null;
  const href = `/hunt${query({ q: value, literal: "true" })}`;
  return h("a", { href, class: "mono pivot", title: "search the fleet for it", onclick: (e) => { e.preventDefault(); navigate(href); } }, value);
}

function evidenceTable(events) {
  return h("div", { id: "alert-evidence" }, events.map((ev) => h("details", { class: "event", open: events.length <= 3 },
    h("summary", {}, time(eventTime(ev)), " ", h("span", { class: "host" }, eventHost(ev)), " ", summary(ev)[0]),
    dl(fields(ev).map(([k, v]) => [k, h("span", { class: "mono" }, v)])))));
}

// The response form, started from this alert: its host, the process that acted (to terminate) and
// the file it names (to quarantine).
function respondHref(a) {
  const process = a.file?.parent_process?.split(/[\\/]/).pop();
  return `/response/new${query({ host: a.endpoint.name, alert: a.id, process, file: a.file?.path })}`;
}

function handlingForm(a) {
  const handling = h("select", { name: "handling", id: "alert-handling" },
    ["unhandled", "handled", "false_positive"].map((x) => h("option", { value: x, selected: x === a.handling }, x)));
  const comment = h("input", { name: "comment", id: "alert-comment", placeholder: "comment" });
  const said = h("span", { class: "muted", id: "alert-saved" });
  return h("form", { class: "filters", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api(`/api/v1/alerts/${encodeURIComponent(a.id)}`, { method: "PATCH", body: { handling: handling.value, comment: comment.value.trim() } });
      mount(said, "saved");
    } catch (err) { mount(said, h("span", { class: "error" }, err.message)); }
  } }, h("label", {}, "Handling ", handling), comment, h("button", { type: "submit" }, "Save"), said);
}

export function alertPage(root, navigate) {
  const id = decodeURIComponent(location.pathname.split("/")[2] || "");
  mount(root, h("p", { class: "muted" }, "Loading the alert…"));
  api(`/api/v1/alerts/${encodeURIComponent(id)}`).then((d) => render(root, d, navigate))
    .catch((err) => mount(root, h("p", { class: "error" }, err.message)));
}

function render(root, { alert: a, events, comments }, navigate) {
  const go = (href) => (e) => { e.preventDefault(); navigate(href); };
  const incident = h("span", { id: "alert-incident" });
  api(`/api/v1/incidents${query({ alert: a.id, limit: 1 })}`).then(({ incidents }) => {
    const found = incidents[0];
    if (found) mount(incident, "Incident: ", h("a", { href: `/incidents/${encodeURIComponent(found.id)}`, onclick: go(`/incidents/${encodeURIComponent(found.id)}`) }, found.title));
  }).catch(() => {});
  const why = a.why || {};
  mount(root,
    h("h1", {}, level(a.level), " ", a.rule?.title || a.rule?.id),
    h("p", { class: "muted" }, `${a.status} · ${a.handling} · ${a.count} events · ${a.source} · `, time(a.first_seen), " – ", time(a.last_seen)),
    h("p", {}, a.description), incident, handlingForm(a),
    h("p", {}, h("a", { id: "alert-respond", href: respondHref(a), onclick: go(respondHref(a)) }, "Request a response")),
    h("div", { class: "cards" },
      h("section", { class: "panel" }, h("h2", {}, "Endpoint"), dl([
        ["Host", h("a", { href: `/hosts/${encodeURIComponent(a.endpoint.name)}`, id: "alert-host", onclick: go(`/hosts/${encodeURIComponent(a.endpoint.name)}`) }, a.endpoint.name)],
        ["Addresses", (a.endpoint.ip || []).map((ip) => [pivot(ip, navigate), " "])],
        ["Group", a.endpoint.group], ["Account", a.endpoint.account]])),
      h("section", { class: "panel" }, h("h2", {}, "File"), dl([
        ["Object", h("span", { class: "mono" }, a.object)], ["Name", a.file?.name], ["Path", a.file?.path && h("span", { class: "mono" }, a.file.path)],
        ["Size", a.file?.size], ["Signed", a.file?.signed], ["Parent", a.file?.parent_process],
        ["MD5", pivot(a.file?.md5, navigate)], ["SHA-1", pivot(a.file?.sha1, navigate)], ["SHA-256", pivot(a.file?.sha256, navigate)]])),
      h("section", { class: "panel" }, h("h2", {}, "ATT&CK"), dl([
        ["Techniques", h("ul", { id: "alert-techniques" }, (a.techniques || []).map((t) => h("li", {}, h("span", { class: "mono" }, t.id), " ", t.name)))],
        ["Tactics", (a.tactics || []).join(", ")]]))),
    h("section", { class: "panel", id: "alert-why" }, h("h2", {}, "Why"), dl([
      ["Rule", why.rule ? `${why.rule.title} (${why.rule.level})` : null],
      ["Matched", (why.matched || []).map((m) => h("div", { class: "mono" }, `${m.field} = ${typeof m.value === "string" ? m.value : JSON.stringify(m.value)}`))],
      ["Tier", why.policy ? `${why.policy.tier}: ${why.policy.because}` : null]])),
    h("h2", {}, `Evidence (${events.length})`), evidenceTable(events),
    h("h2", {}, "Comments"), h("ul", { class: "comments" }, (comments || []).map((c) => h("li", {}, h("strong", {}, c.author), " ", time(c.at), ": ", c.comment))));
}
