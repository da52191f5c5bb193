// The console in a real browser (Debian's Chromium, headless, through playwright-core) against a
// real `cordon serve` that has the Log4j/Conti scenario ingested. Started by the Rust end-to-end
// test `console_in_a_browser` (tests/tests/e2e/console.rs), which passes:
//   CORDON_URL     the server's address         CORDON_TOKEN  an analyst's token
//   CORDON_SIGNALS a directory for handshakes   CORDON_SHOTS  where screenshots go
//   CHROMIUM       the browser binary (default /usr/bin/chromium)
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const URL = process.env.CORDON_URL;
const TOKEN = process.env.CORDON_TOKEN;
const SIGNALS = process.env.CORDON_SIGNALS;
const SHOTS = process.env.CORDON_SHOTS;
const HOST = process.env.CORDON_ANOMALY_HOST;
const hostPattern = new RegExp((HOST || "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
assert.ok(URL && TOKEN && SIGNALS && SHOTS && HOST, "run through the Rust test console_in_a_browser, which sets CORDON_*");

let browser;
let page;
const dialogs = [];

before(async () => {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, timezoneId: "Asia/Shanghai", acceptDownloads: true });
  page = await context.newPage();
  page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
});

after(async () => { await browser?.close(); });

async function shot(name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

async function signal(name) {
  writeFileSync(join(SIGNALS, name), "");
}

async function waitFor(name, ms) {
  const end = Date.now() + ms;
  while (!existsSync(join(SIGNALS, name))) {
    assert.ok(Date.now() < end, `no ${name} signal within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("an unauthenticated visit lands on sign-in", async () => {
  await page.goto(`${URL}/alerts?level=3`);
  await page.waitForURL(/\/signin$/);
  await page.locator("#token").waitFor();
  await shot("signin");
});

test("a bad token is refused", async () => {
  await page.fill("#token", "cdn_not_a_real_token");
  await page.click("#signin-submit");
  await page.locator("#signin-error", { hasText: "unknown or revoked" }).waitFor();
  assert.match(page.url(), /\/signin$/);
});

test("a good token opens the queue it was going to, with the session in an HttpOnly cookie", async () => {
  await page.fill("#token", TOKEN);
  await page.click("#signin-submit");
  await page.waitForURL(/\/alerts\?level=3$/);
  await page.locator("#alert-rows tr").first().waitFor();
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "cordon_session");
  assert.ok(session, "a session cookie");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(await page.evaluate(() => document.cookie.includes("cordon_session")), false, "scripts cannot read it");
  assert.equal(await page.evaluate(() => JSON.stringify(localStorage).includes("cdn_")), false, "no token in storage");
});

test("the queue shows the scenario's scanning and ransomware alerts, non-ASCII host names intact", async () => {
  await page.goto(`${URL}/alerts`);
  const rows = page.locator("#alert-rows tr");
  await rows.first().waitFor();
  const text = await page.locator("#alert-queue").innerText();
  assert.match(text, /Internal network scanning/);
  assert.match(text, /ransomware/i);
  assert.match(text, /WIN-DAKEQI/);
  assert.match(text, /Web服务器-北机房/);
  const title = await page.locator("#alert-rows time").first().getAttribute("title");
  assert.match(title, /UTC$/, "times show UTC on hover");
  await shot("alerts");
});

test("the queue is worked from the keyboard: rows move with arrows and j/k, x ticks, Enter opens", async () => {
  const rows = page.locator("#alert-rows tr");
  await rows.first().focus();
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("j");
  const third = await rows.nth(2).getAttribute("data-id");
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), third, "two rows down");
  await page.keyboard.press("k");
  const second = await rows.nth(1).getAttribute("data-id");
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), second, "one row up");
  await page.keyboard.press("x");
  assert.equal(await rows.nth(1).locator("input.pick").isChecked(), true, "x ticks the focused row");
  await page.keyboard.press("x");
  assert.equal(await rows.nth(1).locator("input.pick").isChecked(), false);
  await page.keyboard.press("Enter");
  await page.waitForURL(new RegExp(`/alerts/${second}$`));
  await page.goBack();
  await page.locator("#alert-rows tr").first().waitFor();
});

test("filters live in the URL and narrow the queue", async () => {
  await page.selectOption("select[name=level]", "5");
  await page.waitForURL(/level=5/);
  await page.locator("#queue-status", { hasText: "alerts shown" }).waitFor();
  const levels = await page.locator("#alert-rows .level").allInnerTexts();
  assert.ok(levels.length > 0, "critical alerts exist in the scenario");
  assert.ok(levels.every((l) => l === "critical"), `only critical rows: ${levels}`);
});

test("bulk handling sets every selected alert, with the comment", async () => {
  await page.goto(`${URL}/alerts?handling=unhandled&level=4`);
  await page.locator("#alert-rows tr").first().waitFor();
  const picks = page.locator("#alert-rows input.pick");
  const ids = [await picks.nth(0).getAttribute("data-id"), await picks.nth(1).getAttribute("data-id")];
  await picks.nth(0).check();
  await picks.nth(1).check();
  await page.selectOption("#bulk-handling", "false_positive");
  await page.fill("#bulk-comment", "lab scanner, see ticket 4711");
  await page.click("#bulk-apply");
  await page.locator("#bulk-status", { hasText: "2 of 2 alerts set to false_positive" }).waitFor();
  for (const id of ids) {
    const a = await page.evaluate(async (i) => (await (await fetch(`/api/v1/alerts/${i}`)).json()), id);
    assert.equal(a.alert.handling, "false_positive", id);
    assert.ok(a.comments.some((c) => c.comment === "lab scanner, see ticket 4711"), JSON.stringify(a.comments));
  }
  await page.locator("#alert-rows tr").first().waitFor();
  const shown = await page.locator("#alert-rows input.pick").evaluateAll((els) => els.map((e) => e.dataset.id));
  assert.ok(ids.every((id) => !shown.includes(id)), "handled alerts leave the unhandled queue");
  await page.goto(`${URL}/alerts?level=5`);
  await page.locator("#alert-rows tr").first().waitFor();
});

test("an alert opens with its why, its ATT&CK tags and a pivot to its incident", async () => {
  await page.locator("#alert-rows tr", { hasText: /Web服务器|WIN-DAKEQI/ }).first().click();
  await page.waitForURL(/\/alerts\/[0-9a-f-]+$/);
  await page.locator("#alert-why").waitFor();
  assert.match(await page.locator("#alert-techniques").innerText(), /T1\d{3}/);
  assert.match(await page.locator("#alert-why").innerText(), /Tier\s+block/);
  const link = page.locator("#alert-incident a");
  await link.waitFor();
  await shot("alert");
  await link.click();
  await page.waitForURL(/\/incidents\/inc-/);
  await page.locator("#incident-graph").waitFor();
});

test("a host's page: its agent, alerts, login chart, a timeline that scrolls on, and the process tree around an event", async () => {
  await page.goto(`${URL}/hosts/${encodeURIComponent("WIN-DAKEQI")}?limit=10`);
  await page.locator("#host-timeline tr").first().waitFor();
  const all = await page.evaluate(async () => (await (await fetch("/api/v1/hosts/WIN-DAKEQI/timeline?limit=1000")).json()).events.length);
  assert.ok(all > 20, `the scenario gives WIN-DAKEQI more than two pages: ${all}`);
  // Pages of ten, not everything at once. While the end of the list is in view the console loads
  // the next page, so before the panels above it render (login chart, alerts) that can be two.
  const first = await page.locator("#host-timeline tr").count();
  assert.ok(first % 10 === 0 && first < all, `whole pages of ten at first, fewer than all ${all}: ${first}`);
  for (let i = 0; i < 20 && (await page.locator("#host-timeline tr").count()) < all; i += 1) {
    await page.locator("#timeline-end").scrollIntoViewIfNeeded();
    await page.waitForTimeout(250);
  }
  assert.equal(await page.locator("#host-timeline tr").count(), all, "scrolling reaches every event");
  await page.locator("#timeline-end", { hasText: "beginning" }).waitFor();
  assert.match(await page.locator("#host-agent").innerText(), /agent .* events in/);
  assert.ok((await page.locator("#host-alerts li").count()) > 0);
  assert.deepEqual(await page.locator("#login-chart svg text.tick").count() > 2, true, "the chart has axes");
  const line = await page.locator("#login-chart path.series-success").getAttribute("d");
  assert.match(line, /^M [\d.]+ [\d.]+ L /, "the series is drawn as a line");
  await page.locator("#host-timeline tr", { hasText: "PromotionReview.docx.exe" }).first().click();
  const tree = await page.locator("#tree-root").innerText();
  assert.match(tree, /explorer\.exe[\s\S]*PromotionReview\.docx\.exe/, "the process and its parents");
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot("host");
});

test("a change without the session's CSRF token is refused", async () => {
  const status = await page.evaluate(async () =>
    (await fetch("/api/v1/session", { method: "DELETE", credentials: "same-origin" })).status);
  assert.equal(status, 403);
});

test("the incident joins WIN-DAKEQI, Web服务器-北机房 and cdn-update.example; its cross-host edge shows both hosts' events", async () => {
  await page.click("nav a[href='/incidents']");
  await page.waitForURL(/\/incidents$/);
  await page.locator("#incident-rows a", { hasText: "WIN-DAKEQI" }).first().click();
  await page.waitForURL(/\/incidents\/inc-/);
  await page.locator("#incident-graph").waitFor();
  const path = await page.locator("#attack-path .node-name").allInnerTexts();
  assert.deepEqual(path, ["WIN-DAKEQI", "Web服务器-北机房", "cdn-update.example"], "the chain, left to right");
  const columns = await page.locator("#incident-graph text.column-title").allTextContents();
  assert.deepEqual(columns.slice(0, 2), ["WIN-DAKEQI", "Web服务器-北机房"]);
  assert.equal(await page.locator("#incident-graph g.node-domain[data-label='cdn-update.example']").count(), 1);
  await page.locator("#incident-graph g.edge-cross[data-to='java.exe']").first().click();
  const hosts = await page.locator("#edge-event-table td.host").allInnerTexts();
  assert.ok(hosts.includes("WIN-DAKEQI") && hosts.includes("Web服务器-北机房"), `events from both hosts: ${hosts}`);
  await shot("incident");
});

test("a literal search for ${jndi:ldap finds events on both hosts, highlighted; a defanged URL sweeps", async () => {
  await page.click("nav a[href='/hunt']");
  await page.fill("#hunt-q", "${jndi:ldap");
  await page.check("#hunt-literal");
  await page.click("#hunt-go");
  await page.waitForURL(/\/hunt\?q=.*literal=true/);
  await page.locator("#hunt-hits tr").first().waitFor();
  const hosts = new Set(await page.locator("#hunt-hits td.host").allInnerTexts());
  assert.ok(hosts.has("WIN-DAKEQI") && hosts.has("Web服务器-北机房"), `hits on both hosts: ${[...hosts]}`);
  const marks = await page.locator("#hunt-hits mark").allInnerTexts();
  assert.ok(marks.length > 0 && marks.every((m) => m.toLowerCase() === "${jndi:ldap"), `highlights: ${marks}`);
  await page.fill("#sweep-iocs", "hxxp://cdn-update[.]example/static/update.exe\n185.220.101.45");
  await page.click("#sweep-go");
  const first = page.locator("#sweep-rows tr").first();
  await first.waitFor();
  const cells = await first.locator("td").allInnerTexts();
  assert.equal(cells[1], "http://cdn-update.example/static/update.exe", "the defanged URL is read as the URL");
  assert.ok(Number(cells[3]) > 0 && cells[4].includes("Web服务器-北机房"), `it hits: ${cells}`);
  assert.equal(await page.locator("#sweep-rows tr").nth(1).locator("td").nth(3).innerText(), "0");
  await shot("hunt");
});

test("the SQL console shows a grid, exports it as CSV, and names a bad query's error", async () => {
  await page.fill("#sql-text", "SELECT host_name, count(*) AS events FROM events WHERE host_name LIKE 'Web%' GROUP BY host_name ORDER BY host_name");
  await page.click("#sql-run");
  await page.locator("#sql-results tbody tr").first().waitFor();
  const hosts = await page.locator("#sql-results tbody td:first-child").allInnerTexts();
  assert.deepEqual(hosts, ["Web服务器-北机房", "Web服务器-南机房"]);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#sql-csv")]);
  const csv = readFileSync(await download.path(), "utf8");
  assert.match(csv, /^host_name,events\r\n/);
  assert.match(csv, /Web服务器-北机房,\d+\r\n/);
  assert.equal(csv.trimEnd().split("\r\n").length, hosts.length + 1, "a line per row and the header");
  await page.fill("#sql-text", "SELEC nothing");
  await page.click("#sql-run");
  await page.locator("#sql-status .error", { hasText: "SQL error" }).waitFor();
});

test("moving a technique to block shows the preview; saving makes a policy version the list shows", async () => {
  await page.click("nav a[href='/detection']");
  await page.locator("#coverage-matrix .cell[data-technique='T1190']").click();
  await page.selectOption("#tier-select", "block");
  assert.equal(await page.locator("#tier-save").isDisabled(), true, "no save before a preview");
  await page.click("#tier-preview");
  const totals = await page.locator("#preview-totals").innerText();
  assert.match(totals, /with this change \d+ alerts and \d+ blocks/);
  assert.match(await page.locator("#preview-result").innerText(), /T1190: \d+ alerts, 0 blocks → 0 alerts, [1-9]\d* blocks/);
  await page.fill("#tier-reason", "block Log4Shell exploitation on the web servers");
  await page.click("#tier-save");
  await page.locator("#tier-saved").waitFor();
  const row = page.locator("#version-rows tr").first();
  await row.waitFor();
  const text = await row.innerText();
  assert.match(text, /block Log4Shell exploitation/);
  assert.match(text, /T1190: inherited → block/, "the change against the shipped default");
  await shot("detection");
});

test("the Detection screen lists the operator's rules, the refused one with its reason", async () => {
  await page.locator("#rules-summary").waitFor();
  assert.match(await page.locator("#rules-summary").innerText(), /operator's 2 files gave 1 rules and 1 refusals/);
  assert.match(await page.locator("#refused-rules").innerText(), /broken\.yml\s+broken-1\s+modifier\s+.*sorcery/);
});

test("anomalies: the burst with its explanation; its chart has both bands, axes, a legend and the anomaly marked", async () => {
  await page.click("nav a[href='/anomalies']");
  const row = page.locator("#anomaly-rows tr.anomaly-row", { hasText: hostPattern }).first();
  await row.waitFor();
  assert.match(await row.innerText(), /failures above[\s\S]*expected .*fleet p99/);
  await row.click();
  const chart = page.locator("#anomaly-series");
  await chart.waitFor();
  assert.ok((await chart.locator("path.band-forecast").count()) > 0, "the forecast interval");
  assert.ok((await chart.locator("path.band-fleet").count()) > 0, "the fleet band");
  assert.ok((await chart.locator("text.tick").count()) > 3, "axes with counts and dates");
  assert.ok((await chart.locator("circle.mark").count()) >= 1, "the anomaly is marked");
  assert.match(await chart.locator(".legend").innerText(), /fleet band[\s\S]*forecast interval[\s\S]*observed/);
  await shot("anomalies");
});

test("a report run on demand ranks the burst's host first, and its row links to the host's chart", async () => {
  await page.click("#report-run button[type=submit]");
  await page.waitForURL(/\/reports\/[^/]+$/);
  const first = page.locator("#report-anomalies tbody tr").first();
  await first.waitFor();
  assert.match(await first.innerText(), hostPattern);
  await first.locator("a.to-chart").click();
  const section = page.locator("#chart-0");
  assert.match(await section.locator("h3").innerText(), hostPattern);
  assert.ok((await section.locator("svg text.tick").count()) > 3, "the chart has axes");
  assert.ok(await section.evaluate((el) => el.getBoundingClientRect().top < window.innerHeight), "the link scrolled to the chart");
  await shot("report");
});

// Signs in as `token` in a fresh browser context; returns its page.
async function signedIn(token) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const other = await context.newPage();
  await other.goto(`${URL}/signin`);
  await other.fill("#token", token);
  await other.click("#signin-submit");
  await other.waitForURL(/\/alerts/);
  return other;
}

async function requestFromAlert() {
  await page.goto(`${URL}/alerts?level=5`);
  await page.locator("#alert-rows tr", { hasText: /Web服务器/ }).first().click();
  await page.locator("#alert-respond").click();
  await page.waitForURL(/\/response\/new\?/);
  await page.locator("#target-agents input:checked").first().waitFor();
  return JSON.parse(await page.locator("#rule-text").inputValue());
}

test("a response requested from an alert: checked, sent, signed offline by two responders and handed in through the console", async () => {
  const rule = await requestFromAlert();
  assert.ok(rule.actions.some((x) => x.action === "Proc_Terminate" || x.action === "File_Delete"), JSON.stringify(rule));
  await page.click("#request-check");
  await page.locator("#request-plan", { hasText: "windows" }).waitFor();
  assert.match(await page.locator("#request-plan").innerText(), /windows: .*(Proc_Terminate|File_Delete)/);
  await page.click("#request-send");
  await page.waitForURL(/\/response\/[0-9a-f]{32}$/);
  const id = page.url().split("/").pop();
  assert.equal(await page.locator("#request-phase").innerText(), "requested");
  assert.match(await page.locator("h2", { hasText: "Approvals" }).innerText(), /0 of 2/);
  assert.match(await page.locator("#request-targets").innerText(), /pending/);
  assert.match(await page.locator("#request-body").innerText(), /"nonce"/, "the exact text approvers sign");
  // The requester cannot approve: a file signed by alice, handed in with the requester's session.
  writeFileSync(join(SIGNALS, "request-created"), id);
  await waitFor("signed-alice", 60_000);
  await page.fill("#approval-text", readFileSync(join(SIGNALS, "signed-alice"), "utf8"));
  await page.click("#approval-submit");
  assert.match(await page.locator("#approval-status .error").innerText(), /\S/, "refused for the requester");
  await shot("response");
  for (const [n, token, file] of [[1, process.env.CORDON_RESPONDER_1, "signed-alice"], [2, process.env.CORDON_RESPONDER_2, "signed-bob"]]) {
    await waitFor(file, 60_000);
    const responder = await signedIn(token);
    await responder.goto(`${URL}/response/${id}`);
    await responder.locator("#approval-text").fill(readFileSync(join(SIGNALS, file), "utf8"));
    await responder.click("#approval-submit");
    await responder.locator("h2", { hasText: `Approvals: ${n} of 2` }).waitFor();
    await responder.context().close();
  }
  await page.reload();
  await page.locator("#request-phase", { hasText: "approved" }).waitFor();
  assert.equal(await page.locator("#request-approvals li").count(), 2);
  // Another request, cancelled before anyone signs it.
  await requestFromAlert();
  await page.click("#request-send");
  await page.waitForURL(/\/response\/[0-9a-f]{32}$/);
  await page.click("#request-cancel");
  await page.locator("#request-phase", { hasText: "cancelled" }).waitFor();
  await page.click("nav a[href='/response']");
  assert.match(await page.locator("#request-rows tr").first().innerText(), /cancelled/);
  assert.match(await page.locator("#request-rows").innerText(), /approved/);
});

test("the fleet lists the scenario's agents with their status and counters", async () => {
  await page.click("nav a[href='/fleet']");
  await page.locator("#agent-rows tr").first().waitFor();
  const hosts = await page.locator("#agent-rows td.host").allInnerTexts();
  for (const want of ["WIN-DAKEQI", "Web服务器-北机房", "Web服务器-南机房"]) assert.ok(hosts.includes(want), `${want} in ${hosts}`);
  const statuses = await page.locator("#agent-rows .status").allInnerTexts();
  assert.ok(statuses.every((st) => ["active", "silent", "dead"].includes(st)), `${statuses}`);
  await shot("fleet");
});

test("a new alert appears without a reload, its markup shown as text", async () => {
  await page.goto(`${URL}/alerts`);
  await page.locator("#alert-rows tr").first().waitFor();
  const marker = await page.evaluate(() => { window.__noReload = true; return true; });
  assert.ok(marker);
  await signal("queue-open");
  await waitFor("published", 120_000);
  const row = page.locator("#alert-rows tr", { hasText: "WIN-LIVE" }).first();
  await row.waitFor({ timeout: 60_000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
  const object = await page.locator("#alert-rows td.object", { hasText: "onerror" }).first().innerText();
  assert.match(object, /<img src=x onerror=alert\(1\)>/);
  assert.equal(await page.locator("#alert-queue img").count(), 0, "no element was made from event data");
  assert.deepEqual(dialogs, [], "no script ran");
  await shot("alerts-live");
});

test("sign-out ends the session", async () => {
  await page.click("#signout");
  await page.waitForURL(/\/signin$/);
  const status = await page.evaluate(async () => (await fetch("/api/v1/session")).status);
  assert.equal(status, 401);
  await page.goto(`${URL}/alerts`);
  await page.waitForURL(/\/signin$/);
});
