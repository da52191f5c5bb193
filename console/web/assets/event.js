// Events as every API route returns them: nested ECS with RFC 3339 times. One line to show an event
// in a table, and its fields as dotted names for a details list.

// What happened, in the event's own words: [kind/action, the thing it acted on].
export function summary(ev) {
  const kind = [ev.event?.category, ev.event?.action].filter(Boolean).join("/");
  const dst = ev.destination || {};
  const net = dst.ip ? `${ev.process?.name || ev.source?.ip || ""} → ${dst.domain || dst.ip}:${dst.port ?? ""}` : "";
  const what = ev.url?.full || (ev.event?.category === "network" && net) || ev.file?.path
    || ev.process?.command_line || ev.process?.executable || net || ev.message || "";
  return [kind, what];
}

// An event's fields as [dotted name, value] pairs, in the order the event holds them.
export function fields(ev, prefix = "") {
  return Object.entries(ev).flatMap(([k, v]) => (v && typeof v === "object" && !Array.isArray(v)
    ? fields(v, `${prefix}${k}.`)
    : [[`${prefix}${k}`, Array.isArray(v) ? v.join(", ") : String(v)]]));
}

export const eventId = (ev) => ev.event?.id;
export const eventHost = (ev) => ev.host?.name;
export const eventTime = (ev) => ev["@timestamp"];
