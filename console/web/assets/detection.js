// Detection: the ATT&CK coverage matrix (tactics as columns, techniques coloured by tier, rule and
// event counts, sub-techniques expandable); a cell's tier changed with a preview of what it would have
// raised before it is saved with a reason; policy versions with their diff; a Navigator layer export.
import { api } from "./api.js";
import { download, h, mount, time } from "./dom.js";

const TIERS = ["block", "alert", "record", "off"];
const COLOURS = { block: "#ff4d5e", alert: "#ff8c42", record: "#6c8ebf", off: "#555555" };

function cell(t, pick, sub = false) {
  const kids = t.subtechniques || [];
  const subs = h("div", { class: "subs", hidden: true }, kids.map((s) => cell(s, pick, true)));
  const toggle = kids.length ? h("button", { type: "button", class: "expand", title: "sub-techniques",
    onclick: (e) => { e.stopPropagation(); subs.hidden = !subs.hidden; } }, `${kids.length}▸`) : null;
  return h("div", { class: sub ? "sub" : "" },
    h("div", { class: `cell tier-${t.tier}`, tabindex: 0, role: "button", "data-technique": t.id, title: `${t.id}${t.v19 ? ` (ATT&CK v19: ${t.v19})` : ""} ${t.name}: ${t.tier} (${t.because})`,
      onclick: () => pick(t), onkeydown: (e) => e.key === "Enter" && pick(t) },
      h("span", { class: "mono" }, t.id), t.v19 ? h("span", { class: "mono v19", title: "its ATT&CK v19 id" }, ` ${t.v19}`) : null, " ", t.name, toggle,
      h("div", { class: "counts" }, `${t.rules.length} rules · ${t.events} events`)),
    subs);
}

function diff(older, newer) {
  const out = [];
  for (const part of ["tactics", "techniques", "groups"]) {
    const a = (older && older[part]) || {};
    const b = (newer && newer[part]) || {};
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const [x, y] = [JSON.stringify(a[k] ?? null), JSON.stringify(b[k] ?? null)];
      if (x !== y) out.push(`${k}: ${a[k] === undefined ? "inherited" : x.replace(/"/g, "")} → ${b[k] === undefined ? "inherited" : y.replace(/"/g, "")}`);
    }
  }
  if ((older?.default) !== (newer?.default)) out.push(`default: ${older?.default} → ${newer?.default}`);
  return out;
}

function layer(coverage) {
  const techniques = [];
  const walk = (t) => { techniques.push({ techniqueID: t.id, color: COLOURS[t.tier], comment: `${t.tier}: ${t.because}; ${t.rules.length} rules, ${t.events} events` }); (t.subtechniques || []).forEach(walk); };
  coverage.tactics.forEach((ta) => ta.techniques.forEach(walk));
  return { name: "Cordon policy and coverage", domain: "enterprise-attack", description: coverage.summary.text,
    versions: { layer: "4.5", navigator: "5.1.0" }, techniques,
    legendItems: TIERS.map((t) => ({ label: t, color: COLOURS[t] })) };
}

export async function detection(root) {
  const editor = h("section", { class: "panel", id: "tier-editor" }, h("p", { class: "muted" }, "Choose a technique to change its tier."));
  const versions = h("section", { id: "policy-versions" });
  const matrix = h("div", { class: "matrix", id: "coverage-matrix" });
  const summary = h("p", { class: "muted", id: "coverage-summary" });
  const exportButton = h("button", { type: "button", id: "navigator-export" }, "Export ATT&CK Navigator layer");
  const rules = h("section", { id: "rules" });
  mount(root, h("h1", {}, "Detection"), summary, exportButton, editor, matrix, h("h2", {}, "Policy versions"), versions,
    h("h2", {}, "Rules loaded and refused"), rules);
  api("/api/v1/rules").then((r) => mount(rules, ruleSources(r))).catch((err) => mount(rules, h("p", { class: "error" }, err.message)));
  let current = null;
  const load = async () => {
    const [coverage, policy, hist] = await Promise.all([api("/api/v1/attack/coverage"), api("/api/v1/policy"), api("/api/v1/policy/versions")]);
    current = policy;
    mount(summary, coverage.summary.text);
    mount(matrix, coverage.tactics.map((ta) => h("div", { class: "tactic" },
      h("h3", {}, ta.name), ta.techniques.map((t) => cell(t, (tech) => edit(tech))))));
    exportButton.onclick = () => download("cordon-layer.json", JSON.stringify(layer(coverage), null, 2), "application/json");
    const list = hist.versions || [];
    mount(versions, list.length ? h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["Version", "When", "Who", "Reason", "Changes"].map((x) => h("th", {}, x)))),
      h("tbody", { id: "version-rows" }, list.map((v, i) => h("tr", {},
        h("td", {}, String(v.version)), h("td", {}, time(v.created)), h("td", {}, v.author), h("td", {}, v.reason),
        h("td", { class: "mono" }, diff((list[i + 1] || hist.shipped || {}).policy, v.policy).map((d) => h("div", {}, d)))))))
      : h("p", { class: "muted" }, "The shipped default policy; no changes yet."));
  };
  const edit = (t) => {
    const tier = h("select", { name: "tier", id: "tier-select" }, TIERS.map((x) => h("option", { value: x, selected: x === t.tier }, x)));
    const days = h("input", { name: "days", id: "preview-days", type: "number", min: 1, max: 90, value: 7 });
    const reason = h("input", { name: "reason", id: "tier-reason", placeholder: "reason (required to save)" });
    const out = h("div", { id: "preview-result" });
    const save = h("button", { type: "button", id: "tier-save", disabled: true }, "Save");
    const proposed = () => ({ ...current.policy, techniques: { ...current.policy.techniques, [t.id]: tier.value } });
    const preview = async () => {
      try {
        const p = await api("/api/v1/policy/preview", { method: "POST", body: { policy: proposed(), days: Number(days.value) } });
        const row = (p.by_technique || []).find((r) => r.technique === t.id);
        mount(out, h("p", { id: "preview-totals" }, `Over the last ${p.days} days (${p.events_scanned} events): now ${p.current.alerts} alerts and ${p.current.blocks} blocks; `
          + `with this change ${p.proposed.alerts} alerts and ${p.proposed.blocks} blocks.`),
          row ? h("p", {}, `${t.id}: ${row.current.alerts} alerts, ${row.current.blocks} blocks → ${row.proposed.alerts} alerts, ${row.proposed.blocks} blocks`) : h("p", { class: "muted" }, `${t.id} raised nothing in that window.`));
        save.disabled = false;
      } catch (err) { mount(out, h("p", { class: "error" }, err.message)); }
    };
    save.onclick = async () => {
      try {
        await api("/api/v1/policy", { method: "PUT", body: { policy: proposed(), reason: reason.value.trim(), base_version: current.version } });
        mount(editor, h("p", { id: "tier-saved" }, `Saved: ${t.id} is now ${tier.value}.`));
        await load();
      } catch (err) { mount(out, out.firstChild || "", h("p", { class: "error" }, err.message)); }
    };
    tier.onchange = () => { save.disabled = true; mount(out); };
    mount(editor, h("h3", {}, `${t.id} ${t.name}`), h("p", { class: "muted" }, `now ${t.tier} (${t.because}); ${t.rules.length} rules, ${t.events} events`),
      h("div", { class: "filters" }, h("label", {}, "Tier ", tier), h("label", {}, "Preview over days ", days),
        h("button", { type: "button", id: "tier-preview", onclick: preview }, "Preview"), reason, save), out);
  };
  try { await load(); } catch (err) { mount(summary, h("span", { class: "error" }, err.message)); }
}

// The rules ingest runs and agents are sent: how many loaded from Cordon's pack and the operator's
// files, and every refused rule with its file, class and reason.
function ruleSources(r) {
  if (!r.enabled) return h("p", { class: "muted" }, "Detection is off on this server.");
  const op = r.operator;
  const classes = Object.entries(op.refused_by_class || {}).map(([k, v]) => `${v} ${k}`).join(", ");
  return [
    h("p", { id: "rules-summary" }, `${r.rules} rules and ${r.correlations} correlation rules running (digest `, h("span", { class: "mono" }, String(r.digest).slice(0, 12)),
      `): Cordon's pack of ${r.pack.files} files; the operator's ${op.files} files gave ${op.loaded} rules and ${op.refused} refusals${classes ? ` (${classes})` : ""}.`),
    (r.refused || []).length ? h("table", { class: "grid", id: "refused-rules" },
      h("thead", {}, h("tr", {}, ["File", "Rule", "Class", "Reason"].map((x) => h("th", {}, x)))),
      h("tbody", {}, r.refused.map((x) => h("tr", {}, h("td", { class: "mono" }, x.file), h("td", {}, x.rule), h("td", {}, x.class), h("td", {}, x.reason)))))
      : h("p", { class: "muted" }, "No rule was refused."),
  ];
}
