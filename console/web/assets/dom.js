// The console's only way to make DOM: text always goes in as text nodes, attributes through an
// allow-list, handlers as functions. Nothing here ever parses a string as markup, so event data
// (command lines, file names, URLs) is shown as the characters it holds.

const ATTRS = new Set([
  "class", "id", "href", "title", "type", "name", "value", "placeholder", "for", "role", "tabindex",
  "aria-label", "aria-sort", "aria-current", "aria-live", "autocomplete", "required", "checked",
  "disabled", "selected", "rows", "datetime", "colspan", "min", "max", "hidden",
]);

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key.startsWith("data-") || ATTRS.has(key)) {
      if (key === "href" && !String(value).startsWith("/")) throw new Error(`href must be a console path: ${value}`);
      el.setAttribute(key, value === true ? "" : String(value));
    } else {
      throw new Error(`attribute ${key} is not allowed`);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Replaces an element's content.
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// A time shown in the analyst's zone, with UTC on hover.
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h("span", {}, String(iso));
  const local = d.toLocaleString(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  return h("time", { datetime: d.toISOString(), title: `${d.toISOString().replace(".000Z", "Z")} UTC` }, local);
}

export const LEVELS = { 1: "informational", 2: "low", 3: "medium", 4: "high", 5: "critical" };

export function level(n) {
  return h("span", { class: `level level-${n}`, title: `level ${n}` }, LEVELS[n] || String(n));
}

const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_ATTRS = new Set([
  "class", "x", "y", "width", "height", "rx", "cx", "cy", "r", "x1", "y1", "x2", "y2", "d", "viewBox",
  "transform", "text-anchor", "marker-end", "tabindex", "role", "aria-label", "refX", "refY",
  "markerWidth", "markerHeight", "markerUnits", "orient", "id", "preserveAspectRatio",
]);

// The same for SVG: text children as text nodes, attributes from an allow-list.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key.startsWith("data-") || SVG_ATTRS.has(key)) el.setAttribute(key, String(value));
    else throw new Error(`svg attribute ${key} is not allowed`);
  }
  append(el, children);
  return el;
}

// Hands the analyst a file made here (an export): text of the given type, saved as `name`.
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
