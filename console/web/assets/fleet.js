// The fleet: every agent with its status (active, silent: heartbeats but no events, dead: no
// heartbeats), last heartbeat and activity, and its counters.
import { api } from "./api.js";
import { h, mount, time } from "./dom.js";

const ORDER = { dead: 0, silent: 1, active: 2 };

export function fleet(root, navigate) {
  const body = h("tbody", { id: "agent-rows" });
  const status = h("p", { class: "muted", id: "fleet-status" });
  mount(root, h("h1", {}, "Fleet"), status,
    h("table", { class: "grid", id: "agents" },
      h("thead", {}, h("tr", {}, ["Status", "Host", "Agent", "Last heartbeat", "Last activity", "Events in", "Acked", "Dropped", "Spool bytes"]
        .map((t) => h("th", {}, t)))), body));
  api("/api/v1/agents").then(({ agents }) => {
    agents.sort((a, b) => (ORDER[a.status] ?? 3) - (ORDER[b.status] ?? 3) || String(a.host).localeCompare(String(b.host)));
    const counts = {};
    for (const a of agents) counts[a.status] = (counts[a.status] || 0) + 1;
    mount(status, `${agents.length} agents: ` + Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", "));
    mount(body, agents.map((a) => {
      const search = `/hosts/${encodeURIComponent(a.host)}`;
      return h("tr", { class: `agent agent-${a.status}` },
        h("td", {}, h("span", { class: `status status-${a.status}` }, a.status)),
        h("td", { class: "host" }, h("a", { href: search, onclick: (e) => { e.preventDefault(); navigate(search); } }, a.host)),
        h("td", { class: "mono" }, a.agent_id), h("td", {}, time(a.last_heartbeat)), h("td", {}, time(a.last_activity)),
        h("td", { class: "num" }, String(a.events_in)), h("td", { class: "num" }, String(a.events_acked)),
        h("td", { class: "num" }, String(a.events_dropped)), h("td", { class: "num" }, String(a.spool_bytes)));
    }));
  }).catch((err) => mount(status, h("span", { class: "error" }, err.message)));
}
