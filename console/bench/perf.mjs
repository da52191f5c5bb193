// Issue 18's speed bars in Debian's Chromium, run by `cordon-bench --only console` against a live
// server (CORDON_URL, CORDON_TOKEN): the first meaningful paint of the alert queue and of the
// incident page (navigation start to the first rows, or the graph, on screen), and the incident graph
// drawn at 500 nodes with the time from a click on an edge to its handler. Prints one line per figure.
import { chromium } from "playwright-core";

const URL = process.env.CORDON_URL;
const TOKEN = process.env.CORDON_TOKEN;
const REPS = 5;

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => x.toFixed(x < 10 ? 1 : 0);
const fmt = (xs) => `median ${ms(median(xs))} ms, worst ${ms(Math.max(...xs))} ms`;

// Milliseconds from navigation start until `selector` is on screen, and the first contentful paint.
async function paint(context, path, selector) {
  const page = await context.newPage();
  await page.goto(`${URL}${path}`);
  await page.waitForFunction((sel) => document.querySelector(sel), selector, { polling: "raf" });
  const [shown, fcp] = await page.evaluate(() => [performance.now(),
    performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? NaN]);
  await page.close();
  return [shown, fcp];
}

// A synthetic incident graph of `n` nodes over five hosts and external destinations, drawn by the
// console's own module: the time to build and lay it out, and from a click on an edge to its handler.
async function bigGraph(page, n) {
  return page.evaluate(async (count) => {
    const { attackGraph } = await import("/assets/graph.js");
    const hosts = ["WIN-A", "Web服务器-北机房", "SRV-C", "SRV-D", "SRV-E"];
    const nodes = [];
    const edges = [];
    for (let i = 0; i < count; i++) {
      const host = i % 50 === 49 ? null : hosts[i % hosts.length];
      nodes.push({ id: `n${i}`, kind: host ? "process" : "domain", label: `proc-${i}.exe`, host,
        first: new Date(Date.UTC(2026, 11, 4, 0, 0, i)).toISOString() });
      if (i >= hosts.length) edges.push({ from: `n${i - hosts.length}`, to: `n${i}`, kind: "spawned", events: [`e${i}`] });
      if (i % 10 === 0 && i > 0) edges.push({ from: `n${i - 1}`, to: `n${i}`, kind: "connected_to", cross_host: true, events: [`x${i}`] });
    }
    const inc = { path: hosts.map((name) => ({ kind: "host", name })) };
    let clicked = 0;
    const t0 = performance.now();
    const el = attackGraph({ nodes, edges }, inc, () => { clicked = performance.now(); });
    document.body.appendChild(el);
    el.getBoundingClientRect();
    await new Promise((r) => requestAnimationFrame(() => r()));
    const drawn = performance.now() - t0;
    const edge = el.querySelectorAll("g.edge")[Math.floor(edges.length / 2)];
    const t1 = performance.now();
    edge.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    await new Promise((r) => requestAnimationFrame(() => r()));
    return { drawn, click: clicked - t1, frame: performance.now() - t1, nodes: el.querySelectorAll("g.node").length,
      edges: el.querySelectorAll("g.edge").length };
  }, n);
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${URL}/signin`);
  await page.fill("#token", TOKEN);
  await page.click("#signin-submit");
  await page.waitForURL(/\/alerts/);
  const { incidents } = await page.evaluate(async () => (await fetch("/api/v1/incidents?limit=1")).json());
  const queue = [];
  const fcp = [];
  const incident = [];
  for (let i = 0; i < REPS; i++) {
    const [shown, first] = await paint(context, "/alerts", "#alert-rows tr");
    queue.push(shown);
    fcp.push(first);
    if (incidents.length) incident.push((await paint(context, `/incidents/${encodeURIComponent(incidents[0].id)}`, "#incident-graph g.node"))[0]);
  }
  console.log(`  browser: first contentful paint of the queue      ${fmt(fcp)}`);
  console.log(`  browser: the queue's first rows on screen         ${fmt(queue)} (bar: under 1000 ms)`);
  if (incident.length) console.log(`  browser: the incident's graph on screen           ${fmt(incident)} (bar: under 1000 ms)`);
  const g = [];
  for (let i = 0; i < REPS; i++) g.push(await bigGraph(page, 500));
  console.log(`  browser: a 500-node graph (${g[0].nodes} nodes, ${g[0].edges} edges) drawn   ${fmt(g.map((x) => x.drawn))}`);
  console.log(`  browser: click on one of its edges to the handler ${fmt(g.map((x) => x.click))}; to the next frame ${fmt(g.map((x) => x.frame))}`);
} finally {
  await browser.close();
}
