// Response: request an action (from an alert, a host or an incident, or from scratch), see what it
// would run on each platform before sending it, then follow its approvals, its dispatch to each agent
// and each agent's signed result. Approvals are signed offline with `cordon approve`: the console
// never holds an approver's key.
import { api, query } from "./api.js";
import { download, h, mount, time } from "./dom.js";

const PHASES = ["requested", "approved", "delivered", "executed", "failed", "refused", "cancelled", "expired"];

// A starting rule for what the analyst came from: the alert's process or file, or the host.
export function template({ process, file, host }) {
  const actions = [];
  if (process) actions.push({ action: "Proc_Terminate", process: { name: process } });
  if (file) actions.push({ action: "File_Delete", filenames: [file] });
  if (!actions.length) actions.push({ action: "Other_NetOff" });
  const what = process || file || host || "host";
  return { name: `Contain ${what}`, kind: "handling", actions };
}

export function responseList(root, navigate) {
  const body = h("tbody", { id: "request-rows" });
  const go = (href) => (e) => { e.preventDefault(); navigate(href); };
  mount(root, h("h1", {}, "Response"),
    h("p", {}, h("a", { href: "/response/new", id: "new-request", onclick: go("/response/new") }, "Request an action")),
    h("table", { class: "grid", id: "requests" },
      h("thead", {}, h("tr", {}, ["Phase", "Rule", "Targets", "Approvals", "Requested", "Expires"].map((t) => h("th", {}, t)))), body));
  api(`/api/v1/response/requests${query({ limit: 100 })}`).then(({ requests }) => {
    if (!requests.length) { mount(body, h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No requests yet."))); return; }
    mount(body, requests.map((r) => {
      const href = `/response/${encodeURIComponent(r.id)}`;
      return h("tr", { class: "request-row", tabindex: 0, onkeydown: (e) => e.key === "Enter" && navigate(href) },
        h("td", {}, h("span", { class: `phase phase-${r.phase}` }, r.phase)),
        h("td", {}, h("a", { href, onclick: go(href) }, ruleName(r))),
        h("td", {}, r.targets.map((t) => t.agent).join(", ")),
        h("td", {}, `${r.approvals.length} of ${r.approvals_needed}`),
        h("td", {}, r.requested_by, " ", time(r.requested_at)), h("td", {}, time(r.expires_at)));
    }));
  }).catch((err) => mount(body, h("tr", {}, h("td", { class: "error", colspan: 6 }, err.message))));
}

function ruleName(r) {
  try { return JSON.parse(r.command.body).rule.name; } catch { return r.id; }
}

export function newRequest(root, navigate) {
  const p = new URLSearchParams(location.search);
  const rule = h("textarea", { id: "rule-text", rows: 10, class: "mono" });
  rule.value = JSON.stringify(template({ process: p.get("process"), file: p.get("file"), host: p.get("host") }), null, 2);
  const agents = h("div", { id: "target-agents", class: "filters" });
  const reason = h("input", { id: "request-reason", placeholder: "reason (required)",
    value: p.get("alert") ? `alert ${p.get("alert")}` : p.get("incident") ? `incident ${p.get("incident")}` : "" });
  const ttl = h("input", { id: "request-ttl", type: "number", min: 60, max: 86400, value: 900 });
  const plan = h("section", { id: "request-plan", "aria-live": "polite" });
  const said = h("p", { id: "request-status" });
  const check = async () => {
    try {
      const v = await api("/api/v1/response/validate", { method: "POST", body: { rule: JSON.parse(rule.value) } });
      mount(plan, h("p", {}, v.destructive ? "Destructive: it needs the approvals the tenant requires." : "Not destructive."),
        Object.entries(v.plan).map(([platform, steps]) => h("div", {}, h("strong", {}, platform), ": ",
          steps.map((st) => h("span", { class: st.supported ? "" : "muted" }, `${st.action}${st.supported ? "" : ` (${st.reason})`} `)))));
      return true;
    } catch (err) { mount(plan, h("p", { class: "error" }, err.message)); return false; }
  };
  const send = async (e) => {
    e.preventDefault();
    if (!(await check())) return;
    const targets = [...agents.querySelectorAll("input:checked")].map((i) => i.value);
    try {
      const r = await api("/api/v1/response/requests", { method: "POST",
        body: { rule: JSON.parse(rule.value), targets, reason: reason.value.trim(), ttl_secs: Number(ttl.value) } });
      navigate(`/response/${encodeURIComponent(r.id)}`);
    } catch (err) { mount(said, h("span", { class: "error" }, err.message)); }
  };
  mount(root, h("h1", {}, "Request an action"),
    h("form", { id: "request-form", onsubmit: send },
      h("h2", {}, "Rule"), rule,
      h("p", {}, h("button", { type: "button", id: "request-check", onclick: check }, "Check what it would run")), plan,
      h("h2", {}, "Targets"), agents,
      h("div", { class: "filters" }, reason, h("label", {}, "Expires after (s) ", ttl), h("button", { type: "submit", id: "request-send" }, "Send for approval")),
      said));
  api("/api/v1/agents").then(({ agents: list }) => mount(agents, list.length ? list.map((a) =>
    h("label", { class: "host" }, h("input", { type: "checkbox", value: a.agent_id, checked: a.host === p.get("host") }), ` ${a.host} (${a.agent_id}, ${a.status})`))
    : h("span", { class: "muted" }, "No agents."))).catch((err) => mount(agents, h("span", { class: "error" }, err.message)));
}

export function requestPage(root, navigate) {
  const id = decodeURIComponent(location.pathname.split("/")[2] || "");
  const load = () => api(`/api/v1/response/requests/${encodeURIComponent(id)}`).then((r) => render(root, r, load))
    .catch((err) => mount(root, h("p", { class: "error" }, err.message)));
  mount(root, h("p", { class: "muted" }, "Loading the request…"));
  load();
  const timer = setInterval(() => { if (root.isConnected) load(); }, 5000);
  return () => clearInterval(timer);
}

// An approver hands in what `cordon approve` signed: the file pasted, each approval in it that the
// request does not hold yet sent on (the server takes only the one of the key registered to this
// session's token, and never the requester's own).
function handInForm(r, reload) {
  const pasted = h("textarea", { id: "approval-text", rows: 4, class: "mono", placeholder: "paste the command file after cordon approve signed it" });
  const said = h("span", { id: "approval-status", "aria-live": "polite" });
  const handIn = async (e) => {
    e.preventDefault();
    let cmd;
    try { cmd = JSON.parse(pasted.value); } catch { mount(said, h("span", { class: "error" }, "that is not the command file (not JSON)")); return; }
    if (cmd.body !== r.command.body) { mount(said, h("span", { class: "error" }, "that is another command: its signed text differs from this request's")); return; }
    const held = new Set(r.approvals.map((a) => a.public_key));
    const fresh = (cmd.approvals || []).filter((a) => !held.has(a.key));
    if (!fresh.length) { mount(said, h("span", { class: "error" }, "no new approval in it")); return; }
    const outcomes = [];
    for (const a of fresh) {
      try {
        await api(`/api/v1/response/requests/${encodeURIComponent(r.id)}/approvals`, { method: "POST", body: { public_key: a.key, sig: a.sig } });
        outcomes.push(null);
      } catch (err) { outcomes.push(`${a.key.slice(0, 12)}…: ${err.message}`); }
    }
    const refused = outcomes.filter(Boolean);
    if (refused.length) mount(said, h("span", { class: "error" }, refused.join("; "))); else reload();
  };
  return h("form", { id: "approval-form", onsubmit: handIn }, pasted, h("button", { type: "submit", id: "approval-submit" }, "Hand in the approval"), " ", said);
}

function render(root, r, reload) {
  const step = PHASES.indexOf(r.phase);
  const cancel = async () => {
    try { await api(`/api/v1/response/requests/${encodeURIComponent(r.id)}/cancel`, { method: "POST", body: {} }); reload(); } catch (err) { alert(err.message); }
  };
  mount(root,
    h("h1", {}, ruleName(r), " ", h("span", { class: `phase phase-${r.phase}`, id: "request-phase" }, r.phase)),
    h("p", { class: "muted" }, `${r.id} · requested by ${r.requested_by} `, time(r.requested_at), " · expires ", time(r.expires_at),
      r.destructive ? " · destructive" : ""),
    h("ol", { class: "phases" }, PHASES.slice(0, 4).map((ph, i) => h("li", { class: i <= step && step < 4 ? "done" : "" }, ph))),
    h("h2", {}, `Approvals: ${r.approvals.length} of ${r.approvals_needed}`),
    h("ul", { id: "request-approvals" }, r.approvals.map((a) => h("li", {}, h("span", { class: "mono" }, a.public_key.slice(0, 16)), "… ", time(a.at)))),
    r.phase === "requested" ? h("p", { class: "muted" }, "Approvers sign it offline, each with their own key (the console never holds one): ",
      h("button", { type: "button", id: "request-download", onclick: () => download(`${r.id}.json`, JSON.stringify(r.command, null, 2), "application/json") }, "Download the command"), " then ",
      h("span", { class: "mono" }, `cordon approve ${r.id}.json --key approver.key`), ", then, signed in as yourself, paste the signed file below.") : null,
    r.phase === "requested" ? handInForm(r, reload) : null,
    r.phase === "requested" ? h("button", { type: "button", id: "request-cancel", onclick: cancel }, "Cancel the request") : null,
    h("h2", {}, "Targets"),
    h("table", { class: "grid", id: "request-targets" },
      h("thead", {}, h("tr", {}, ["Agent", "State", "Delivered", "Result"].map((t) => h("th", {}, t)))),
      h("tbody", {}, r.targets.map((t) => h("tr", {}, h("td", { class: "mono" }, t.agent), h("td", {}, t.state), h("td", {}, time(t.delivered_at)),
        h("td", { class: "mono" }, t.result ? JSON.stringify(t.result) : ""))))),
    h("h2", {}, "The command approvers sign"), h("pre", { class: "mono", id: "request-body" }, r.command.body));
}
