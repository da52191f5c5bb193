// The console's shell: who is signed in, the navigation, and the client-side router (each screen has
// its own URL).
import { api, setCsrf } from "./api.js";
import { h, mount } from "./dom.js";
import { alertPage } from "./alert.js";
import { anomalies, reportPage } from "./anomalies.js";
import { detection } from "./detection.js";
import { fleet } from "./fleet.js";
import { hostPage } from "./host.js";
import { hunt } from "./hunt.js";
import { incidentList, incidentPage } from "./incidents.js";
import { alertQueue } from "./queue.js";
import { newRequest, requestPage, responseList } from "./response.js";
import { signIn } from "./signin.js";

const root = document.getElementById("app");
// [path prefix, navigation label, screen]; a screen is (root, navigate) -> cleanup.
const SCREENS = [["/alerts", "Alerts", alertQueue], ["/incidents", "Incidents", incidentList], ["/hunt", "Hunt", hunt],
  ["/detection", "Detection", detection], ["/anomalies", "Anomalies", anomalies], ["/response", "Response", responseList], ["/fleet", "Fleet", fleet]];

function screenFor(path) {
  if (/^\/incidents\/[^/]+$/.test(path)) return incidentPage;
  if (/^\/alerts\/[^/]+$/.test(path)) return alertPage;
  if (/^\/hosts\/[^/]+$/.test(path)) return hostPage;
  if (/^\/reports\/[^/]+$/.test(path)) return reportPage;
  if (path === "/response/new") return newRequest;
  if (/^\/response\/[^/]+$/.test(path)) return requestPage;
  const found = SCREENS.find(([prefix]) => path === prefix || path.startsWith(`${prefix}?`));
  return found ? found[2] : null;
}
let who = null;
let leave = null;

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem("cordon-theme", theme);
}

function navigate(path, replace = false) {
  if (replace) history.replaceState(null, "", path); else history.pushState(null, "", path);
  render();
}

async function signOut() {
  try { await api("/api/v1/session", { method: "DELETE" }); } finally {
    who = null;
    setCsrf(null);
    navigate("/signin", true);
  }
}

function shell(content) {
  const here = location.pathname;
  return h("div", { class: "shell" },
    h("header", { class: "top" },
      h("a", { href: "/alerts", class: "brand", onclick: link }, "Cordon"),
      h("nav", {}, SCREENS.map(([path, label]) =>
        h("a", { href: path, onclick: link, "aria-current": here.startsWith(path) ? "page" : undefined }, label))),
      h("span", { class: "who", id: "who" }, `${who.name} · ${who.role} · ${who.tenant}`),
      h("button", { type: "button", id: "theme", onclick: () =>
        applyTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark") }, "Theme"),
      h("button", { type: "button", id: "signout", onclick: signOut }, "Sign out")),
    h("main", {}, content));
}

function link(e) {
  if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(e.currentTarget.getAttribute("href"));
}

async function render() {
  if (leave) { leave(); leave = null; }
  if (location.pathname === "/signin" || !who) {
    const next = location.pathname === "/signin" ? "/alerts" : location.pathname + location.search;
    if (location.pathname !== "/signin") history.replaceState(null, "", "/signin");
    signIn(root, next, (session, to) => { who = session; navigate(to, true); });
    return;
  }
  const screen = screenFor(location.pathname);
  if (!screen) { navigate("/alerts", true); return; }
  const main = h("div", { class: "screen" });
  mount(root, shell(main));
  const cleanup = screen(main, navigate);
  leave = typeof cleanup === "function" ? cleanup : null;
}

// Keyboard in tables: ArrowDown/j and ArrowUp/k move between rows, Home/End to the first and last,
// x ticks the row's box (bulk handling), Enter opens it (each row's own handler).
function tableKeys(e) {
  const row = e.target.closest && e.target.closest("tr[tabindex]");
  if (!row || e.target !== row || e.altKey || e.ctrlKey || e.metaKey) return;
  const rows = [...row.parentElement.querySelectorAll(":scope > tr[tabindex]")];
  const at = rows.indexOf(row);
  const to = { ArrowDown: at + 1, j: at + 1, ArrowUp: at - 1, k: at - 1, Home: 0, End: rows.length - 1 }[e.key];
  if (to !== undefined) {
    e.preventDefault();
    rows[Math.max(0, Math.min(rows.length - 1, to))]?.focus();
  } else if (e.key === "x") {
    const box = row.querySelector("input[type=checkbox]");
    if (box) { e.preventDefault(); box.click(); }
  }
}

async function start() {
  document.addEventListener("keydown", tableKeys);
  applyTheme(localStorage.getItem("cordon-theme") || "dark");
  try {
    who = await api("/api/v1/session");
    setCsrf(who.csrf);
  } catch {
    who = null;
  }
  window.addEventListener("popstate", render);
  render();
}

start();
