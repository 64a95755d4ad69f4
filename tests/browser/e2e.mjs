// End-to-end test of tickcast's page in a real browser.
//
// What it proves, one check at a time (each check counts as one test):
//   1. the page served by the release binary connects its WebSocket (#state says
//      "connected");
//   2. the clock ticks (#time changes while we watch);
//   3. echo works end to end: typing in #echo-input and pressing Enter brings back
//      an `echo: <text>` line in #log (then a full-page screenshot is saved to
//      target/browser/page.png); a message published with POST /publish shows
//      in the log, and one to a topic the page did not ask for does not; the
//      tickcast.js example in docs/PROTOCOL.md, served from another origin,
//      connects and shows a message published to its topic;
//   4. the page also connects when reached through the other loopback name
//      (localhost instead of 127.0.0.1), so the WebSocket URL follows the hostname
//      the browser used instead of a hard-coded one;
//   5. the page falls back to Server-Sent Events when its WebSocket cannot open:
//      a fresh page is given a /config.json (intercepted with page.route) whose
//      ws_port is a closed port; the page tries that WebSocket, then shows
//      "Server-Sent Events" in #transport, says "connected", the clock ticks
//      through /events, and the echo box is disabled with #echo-note shown (then a
//      screenshot is saved to target/browser/page-sse.png);
//   6. `?transport=sse` uses Server-Sent Events from the start: connected, ticking,
//      echo disabled, no WebSocket ever opened, and the page says SSE was asked
//      for, not "fell back" (which the check before requires when it did);
//   7. the page fits every width, in two checks (phones at 320, 360, 390 and
//      414 px with mobile emulation; 768, 1024 and 1440 px): nothing scrolls
//      sideways, the clock's text and the Send button lie inside the viewport, the
//      cards keep a margin from the edges, and no log line is broken inside a word
//      or time that would fit on a line of its own (then a screenshot at 360 px is
//      saved to target/browser/page-phone.png);
//   8. a page that lost its server says so, on the WebSocket and on
//      ?transport=sse: the label says "disconnected", the clock is marked stale
//      and looks different, a line says since when and that it retries, the
//      client count is cleared (then a screenshot of the WebSocket page is saved
//      to target/browser/page-disconnected.png); when the server is back on the
//      same ports, both pages reconnect, all of that goes back, they tick, and
//      each shows a reset (it resumed from an id of the previous run);
//   9. the page works behind the README's nginx snippet with TLS
//      (scripts/nginx/tickcast.conf, run by nginx.mjs with a self-signed
//      certificate): connected over wss:// on the proxy's port, ticking, echoing,
//      and streaming Server-Sent Events through it; a POST /publish through
//      the proxy is refused (403), as it comes from outside;
//  10. the pages resume after a real cut, missing nothing: a WebSocket page
//      and an SSE page, both on ?topic=news behind that nginx, lose their
//      connection when nginx is stopped (fast shutdown), messages are published
//      (to news and to another topic) while it is down, nginx comes back on the
//      same port, and each page shows every news message exactly once, in
//      order, none of the other topic, and no reset;
//  11. the page raised no uncaught JavaScript error;
//  12. the server exits with status 0 on SIGTERM (graceful shutdown).
//
// How: it starts the binary on port 0 for both listeners, reads the page URL the
// server logs on stderr, and drives Debian's Chromium through playwright-core (no
// browser download: the executable is /usr/bin/chromium, or $CHROMIUM_PATH).
// The lost-server check runs a server of its own, stops it, and starts it again on
// the ports it had. Every wait has a timeout; nothing sleeps. On failure it prints
// the server's stderr and exits 1. Every server is stopped, by its PID, in `finally`.
//
// Environment:
//   TICKCAST_BIN   the binary to test (default: ../../target/release/tickcast)
//   CHROMIUM_PATH  the browser (default: /usr/bin/chromium)
//   NGINX_PATH     nginx for the TLS proxy check (default: /usr/sbin/nginx)
//   RUST_LOG       passed to the server (default: info; the page URL is an info line)
//
// The last line printed is `browser: N passed, N failed` (plus `, N skipped` when
// a check could not run because an earlier one it depends on failed).

import { spawn } from "node:child_process";
import http from "node:http";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort, startNginx } from "./nginx.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const BIN = process.env.TICKCAST_BIN || path.resolve(REPO, "target/release/tickcast");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SCREENSHOT_DIR = path.resolve(REPO, "target/browser");

// Timeouts. Ticks come every 250 ms, so every wait below is generous.
const STARTUP_TIMEOUT_MS = 10_000; // server prints its page URL
const WAIT_TIMEOUT_MS = 10_000; // any one wait inside the page
const SHUTDOWN_TIMEOUT_MS = 5_000; // server exits after SIGTERM
const OVERALL_TIMEOUT_MS = 120_000; // the whole run, as a last resort

const startedAt = Date.now();
const elapsed = (since = startedAt) => `${((Date.now() - since) / 1000).toFixed(2)} s`;

/** Results in order: { name, status: "pass" | "fail" | "skip", ms, error }. */
const results = [];

/**
 * Runs one check. A check whose `needs` includes a failed or skipped check is
 * skipped: its failure would only repeat the earlier one.
 */
async function check(name, needs, body) {
  const blocked = results.find((r) => needs.includes(r.name) && r.status !== "pass");
  if (blocked) {
    results.push({ name, status: "skip", ms: 0, error: `needs "${blocked.name}"` });
    console.log(`skip  ${name} (needs "${blocked.name}")`);
    return;
  }
  const t0 = Date.now();
  try {
    await body();
    results.push({ name, status: "pass", ms: Date.now() - t0 });
    console.log(`ok    ${name} (${elapsed(t0)})`);
  } catch (e) {
    results.push({ name, status: "fail", ms: Date.now() - t0, error: e });
    console.log(`FAIL  ${name} (${elapsed(t0)}): ${firstLine(e)}`);
  }
}

function firstLine(e) {
  return String(e && e.message ? e.message : e).split("\n")[0];
}

/** Rejects after `ms` with `what` in the message; the timer never keeps node alive. */
function timeout(ms, what) {
  return new Promise((_, reject) => {
    setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms).unref();
  });
}

/**
 * Starts the server, by default on port 0 for both listeners (a restart passes the
 * addresses the first run got). Returns the child process, a getter for everything
 * it wrote so far, and a promise of its exit status.
 */
function startServer({ interval = "250ms", wsAddr = "127.0.0.1:0", httpAddr = "127.0.0.1:0" } = {}) {
  const child = spawn(
    BIN,
    ["--ws-addr", wsAddr, "--http-addr", httpAddr, "--interval", interval],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info" },
    },
  );
  serversForWatchdog.add(child);
  child.on("exit", () => serversForWatchdog.delete(child));
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (s) => (output += s));
  child.stderr.setEncoding("utf8").on("data", (s) => (output += s));
  const exited = new Promise((resolve) => {
    child.on("exit", (code, signal) => resolve({ code, signal }));
    // A missing or non-executable binary ends here, not in "exit".
    child.on("error", (error) => resolve({ code: null, signal: null, error }));
  });
  return { child, output: () => output, exited };
}

/** Waits for the `page: http://...` log line and returns that URL. */
async function pageUrl(server) {
  return (await logged(server, /page: (http:\/\/\S+)/))[1];
}

/** Waits for the `WebSocket: ws://HOST:PORT/...` log line and returns PORT. */
async function wsPort(server) {
  return Number((await logged(server, /WebSocket: ws:\/\/[^\s:]+:(\d+)/))[1]);
}

/** Waits until the server's output matches `pattern`; returns the match. */
async function logged(server, pattern) {
  const found = new Promise((resolve) => {
    const look = () => {
      const m = server.output().match(pattern);
      if (m) {
        server.child.stderr.off("data", look);
        resolve(m);
      }
    };
    server.child.stderr.on("data", look);
    look();
  });
  const died = server.exited.then(({ code, signal, error }) => {
    throw new Error(
      error
        ? `cannot start ${BIN}: ${error.message} (build it with: cargo build --release)`
        : `server exited before printing its page URL (code ${code}, signal ${signal})`,
    );
  });
  return Promise.race([
    found,
    died,
    timeout(STARTUP_TIMEOUT_MS, `server did not log ${pattern} (is RUST_LOG at least info?)`),
  ]);
}

/** Stops the server by its PID: SIGTERM, then wait; SIGKILL if it hangs. */
async function stopServer(server) {
  if (server.child.exitCode !== null || server.child.signalCode !== null) {
    return server.exited;
  }
  server.child.kill("SIGTERM");
  try {
    return await Promise.race([server.exited, timeout(SHUTDOWN_TIMEOUT_MS, "server exit after SIGTERM")]);
  } catch (e) {
    server.child.kill("SIGKILL");
    await server.exited;
    throw e;
  }
}

/** Waits until the page says "connected" with the "open" class. */
async function waitConnected(page) {
  await page.waitForFunction(
    () => {
      const state = document.querySelector("#state");
      return state && state.classList.contains("open") && state.textContent.trim() === "connected";
    },
    null,
    { timeout: WAIT_TIMEOUT_MS },
  );
}

/** Waits for a real tick: the clock shows a time, then a different one. */
async function waitClockTicks(page) {
  // The first tick replaces the placeholder; a change after that is a real tick.
  await page.waitForFunction(() => document.querySelector("#time").textContent !== "--:--:--", null, {
    timeout: WAIT_TIMEOUT_MS,
  });
  const before = await page.textContent("#time");
  await page.waitForFunction((prev) => document.querySelector("#time").textContent !== prev, before, {
    timeout: WAIT_TIMEOUT_MS,
  });
}

/**
 * Waits until the page streams over Server-Sent Events: #transport says so and
 * #state says "connected"; then checks the echo box is off and explains why.
 */
async function waitServerSentEvents(page) {
  await page.waitForFunction(
    () => document.querySelector("#transport").textContent.trim() === "Server-Sent Events",
    null,
    { timeout: WAIT_TIMEOUT_MS },
  );
  await waitConnected(page);
  if (!(await page.locator("#echo-input").isDisabled())) throw new Error("#echo-input is enabled on SSE");
  if (!(await page.locator("#echo-send").isDisabled())) throw new Error("#echo-send is enabled on SSE");
  await page.locator("#echo-note").waitFor({ state: "visible" });
}

/** The same http:// or ws:// URL with 127.0.0.1 and localhost swapped. */
function otherHostname(url) {
  const u = new URL(url);
  u.hostname = u.hostname === "localhost" ? "127.0.0.1" : "localhost";
  return u.toString();
}

/**
 * Runs in the page: what is wrong with its layout at `width` px, as a list of
 * sentences (empty when nothing is). `width` is the width the test asked for, not
 * innerWidth: with mobile emulation, Chromium widens innerWidth to fit a page
 * wider than the phone, which would hide the very overflow we look for.
 */
function layoutProblems(width) {
  const EDGE_MARGIN_PX = 8;
  const problems = [];
  const pageWidth = Math.max(window.innerWidth, document.documentElement.scrollWidth);
  if (pageWidth > width) problems.push(`the page is ${pageWidth} px wide: it scrolls sideways`);
  // The rendered text's rectangles, not its element's box: text can overflow a box.
  const textOf = (node) => {
    const range = document.createRange();
    range.selectNodeContents(node);
    return range;
  };
  const lines = (range) =>
    new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;
  const inside = (what, { left, right }) => {
    if (left < 0 || right > width) problems.push(`${what} spans ${Math.round(left)}..${Math.round(right)} px`);
  };
  const clock = textOf(document.querySelector("#time"));
  const clockRect = clock.getBoundingClientRect();
  inside(`the clock "${clock}"`, clockRect);
  const clockCard = document.querySelector(".clock");
  const contentRight = clockCard.getBoundingClientRect().right - parseFloat(getComputedStyle(clockCard).paddingRight);
  if (clockRect.right > contentRight) problems.push(`the clock "${clock}" runs into its card's padding`);
  if (lines(clock) > 1) problems.push(`the clock "${clock}" is on ${lines(clock)} lines`);
  inside("the Send button", document.querySelector("#echo-send").getBoundingClientRect());
  for (const card of document.querySelectorAll("main > section")) {
    const { left, right } = card.getBoundingClientRect();
    if (left < EDGE_MARGIN_PX || right > width - EDGE_MARGIN_PX) {
      problems.push(`the .${card.classList[0]} card spans ${Math.round(left)}..${Math.round(right)} px, within ${EDGE_MARGIN_PX} px of an edge`);
    }
  }
  // Log lines and the "disconnected since" line may wrap between words, and inside
  // a word only when the word is wider than the line; never inside a number or a
  // time that would fit ("10:21:56 AM" counts as one word here).
  for (const block of document.querySelectorAll("#log li, #since")) {
    if (block.scrollWidth > block.clientWidth) problems.push(`a line overflows: "${block.textContent}"`);
    const walker = document.createTreeWalker(block, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.data.matchAll(/\d{1,2}:\d\d:\d\d\s[AP]M|\S+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const wordWidth = [...range.getClientRects()].reduce((sum, r) => sum + r.width, 0);
        if (lines(range) > 1 && wordWidth <= block.clientWidth) {
          problems.push(`"${word[0]}" is split though it fits on a line: "${block.textContent}"`);
        }
      }
    }
  }
  return problems;
}

/** The first few `problems` as one message, with a count of the rest. */
function summary(problems, first = 6) {
  const rest = problems.length - first;
  return problems.slice(0, first).join("; ") + (rest > 0 ? `; and ${rest} more` : "");
}

/** Resizes `page` to each width in turn; returns every layout problem found. */
async function layoutProblemsAt(page, widths, height) {
  const problems = [];
  for (const width of widths) {
    await page.setViewportSize({ width, height });
    const found = await page.evaluate(layoutProblems, width);
    problems.push(...found.map((problem) => `at ${width} px, ${problem}`));
  }
  return problems;
}

/**
 * Runs in the page: how its connection status differs from `want`, as a list of
 * sentences. "lost": the label says disconnected, the clock is marked stale (class
 * `stale` on .clock) and does not look as it did live (`liveLook`, its computed
 * color and opacity), #since says since when and that it retries, the client
 * count is cleared. "live": all of that undone, and a number of clients shown.
 * With `explain` false it returns only whether the list is empty, so that
 * waitForFunction can wait on it.
 */
function statusProblems({ want, liveLook, explain }) {
  const state = document.querySelector("#state");
  const time = document.querySelector("#time");
  const since = document.querySelector("#since");
  const clients = document.querySelector("#clients").textContent.trim();
  const look = `${getComputedStyle(time).color} ${getComputedStyle(time).opacity}`;
  const stale = document.querySelector(".clock").classList.contains("stale");
  const sinceText = since && since.checkVisibility() ? since.textContent.trim() : "";
  const problems = [];
  const expect = (ok, what) => ok || problems.push(what);
  if (want === "lost") {
    expect(state.classList.contains("closed") && /disconnected/.test(state.textContent), `#state is "${state.textContent}"`);
    expect(stale, "the clock is not marked stale");
    expect(look !== liveLook, `the clock looks as it did live (${look})`);
    expect(/disconnected since \d{1,2}:\d\d:\d\d/.test(sinceText), `#since is "${sinceText}", not "disconnected since <time>"`);
    expect(/next try|trying again/.test(sinceText), `#since is "${sinceText}", not saying it retries`);
    expect(!/\d/.test(clients), `the client count still says ${clients}`);
  } else {
    expect(state.classList.contains("open") && state.textContent.trim() === "connected", `#state is "${state.textContent}"`);
    expect(!stale, "the clock is still marked stale");
    expect(look === liveLook, `the clock looks ${look}, not ${liveLook} as live`);
    expect(sinceText === "", `#since still shows "${sinceText}"`);
    expect(/^\d+$/.test(clients), `the client count is "${clients}"`);
  }
  return explain ? problems : problems.length === 0;
}

/**
 * Publishes `body` with POST /publish on tickcast's own HTTP port (`base`, the
 * page URL: loopback, so no token is needed), to `topic` if given, as any backend
 * would; returns the event id.
 */
async function publish(base, body, topic) {
  const target = new URL(topic ? `publish?topic=${encodeURIComponent(topic)}` : "publish", base);
  const response = await fetch(target, { method: "POST", body, signal: AbortSignal.timeout(WAIT_TIMEOUT_MS) });
  const answer = await response.text();
  if (response.status !== 202) throw new Error(`POST ${target}: ${response.status} ${answer}`);
  return JSON.parse(answer).id;
}

/** startNginx's options for the README's nginx block in front of `server` (page at `url`). */
function nginxInFrontOf(server, url) {
  const wsUrl = server.output().match(/WebSocket: ws:\/\/[^:]+:(\d+)/);
  if (!wsUrl) throw new Error("server did not log `WebSocket: ws://...`");
  return {
    snippetPath: path.join(REPO, "scripts/nginx/tickcast.conf"),
    wsPort: Number(wsUrl[1]),
    httpPort: Number(new URL(url).port),
    timeoutMs: WAIT_TIMEOUT_MS,
  };
}

/** A browser context that trusts the proxy's self-signed certificate. */
async function tlsContext(browser) {
  const tls = await browser.newContext({ ignoreHTTPSErrors: true, locale: "en-US" });
  tls.setDefaultTimeout(WAIT_TIMEOUT_MS);
  tls.setDefaultNavigationTimeout(WAIT_TIMEOUT_MS);
  return tls;
}

/** The published messages in the page's log, oldest first, without their times. */
function messagesOn(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("#log li.message")]
      .map((li) => [...li.childNodes].slice(1).map((node) => node.textContent).join(""))
      .reverse(),
  );
}

/** Waits until the page's status is `want` ("lost" or "live"); on timeout, says what differs. */
async function waitStatus(page, want, liveLook, which = "WebSocket") {
  try {
    await page.waitForFunction(statusProblems, { want, liveLook, explain: false }, { timeout: WAIT_TIMEOUT_MS });
  } catch (e) {
    const problems = await page.evaluate(statusProblems, { want, liveLook, explain: true });
    throw new Error(`${which} page not ${want} after ${WAIT_TIMEOUT_MS} ms: ${problems.join("; ")}`);
  }
}

async function main() {
  const server = startServer();
  let browser = null;
  const pageErrors = [];
  try {
    const url = await pageUrl(server);
    console.log(`server: ${url} (pid ${server.child.pid}, up after ${elapsed()})`);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30_000,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
      ],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
    context.setDefaultTimeout(WAIT_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(WAIT_TIMEOUT_MS);

    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(`${url}: ${e.message}`));

    await check("page connects", [], async () => {
      await page.goto(url);
      await waitConnected(page);
    });

    await check("clock ticks", ["page connects"], async () => {
      await waitClockTicks(page);
    });

    await check("clock shows the server's time before the first tick", [], async () => {
      // No ticks at all: a time on the clock can only have come with the welcome.
      const quiet = startServer({ interval: "off" });
      const other = await context.newPage();
      try {
        const quietUrl = await pageUrl(quiet);
        other.on("pageerror", (e) => pageErrors.push(`${quietUrl}: ${e.message}`));
        await other.goto(quietUrl);
        await waitConnected(other);
        await other.locator("#log li", { hasText: "welcome:" }).waitFor();
        const clock = await other.textContent("#time");
        if (!/\d:\d\d:\d\d/.test(clock)) throw new Error(`clock shows ${JSON.stringify(clock)} after the welcome`);
      } finally {
        await other.close();
        await stopServer(quiet);
      }
    });

    await check("echo round trip", ["page connects"], async () => {
      const message = `hello from e2e ${process.pid}-${Date.now()}`;
      await page.waitForFunction(() => !document.querySelector("#echo-send").disabled, null, {
        timeout: WAIT_TIMEOUT_MS,
      });
      const box = page.locator("#echo-input");
      await box.click();
      await box.pressSequentially(message);
      await box.press("Enter");
      await page.locator("#log li.echo", { hasText: `echo: ${message}` }).waitFor();
      await mkdir(SCREENSHOT_DIR, { recursive: true });
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, "page.png"), fullPage: true });
    });

    await check("page shows a message published over HTTP", ["page connects"], async () => {
      // What a backend does: one POST. A message to a topic the page did not ask
      // for goes first, and must never show.
      const tag = `${process.pid}-${Date.now()}`;
      await publish(url, `not for this page ${tag}`, "elsewhere");
      await publish(url, JSON.stringify({ note: `for everyone ${tag}` }));
      await page.locator("#log li.message", { hasText: `message: {"note":"for everyone ${tag}"}` }).waitFor();
      const shown = (await messagesOn(page)).filter((text) => text.includes(tag));
      if (shown.length !== 1) throw new Error(`the page shows ${JSON.stringify(shown)}`);
    });

    await check("tickcast.js works in a page on another site (the docs' example)", ["page connects"], async () => {
      // The example in docs/PROTOCOL.md, as written, served from another origin:
      // the module, /config.json and the WebSocket all cross sites.
      const docs = await readFile(path.join(REPO, "docs/PROTOCOL.md"), "utf8");
      const example = docs
        .split("<!-- tickcast.js example: tests/browser/e2e.mjs serves this very page -->")[1]
        ?.split("```html\n")[1]
        ?.split("```")[0];
      if (!example) throw new Error("no tickcast.js example in docs/PROTOCOL.md");
      const html = example.split("http://127.0.0.1:8080/").join(url);
      if (html === example) throw new Error("the example does not import from http://127.0.0.1:8080/");
      // Another origin: a web server of its own, on another port. (A page made up
      // with page.route would not do: Chromium keeps pages from unknown address
      // spaces off loopback altogether.)
      const site = http.createServer((_, response) => {
        response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
        response.end(html);
      });
      await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
      const elsewhere = `http://127.0.0.1:${site.address().port}/example.html`;
      const other = await context.newPage();
      other.on("pageerror", (e) => pageErrors.push(`${elsewhere}: ${e.message}`));
      try {
        await other.goto(elsewhere);
        // Published until the page shows one: the page subscribes a moment after
        // it loads, and a message published before that is not for it.
        const price = Date.now();
        const shown = other.locator("#prices li", { hasText: `{"price":${price}}` }).first();
        const deadline = Date.now() + WAIT_TIMEOUT_MS;
        while (!(await shown.isVisible())) {
          if (Date.now() > deadline) throw new Error("the example page never showed a published price");
          await publish(url, JSON.stringify({ price }), "prices");
          await shown.waitFor({ timeout: 500 }).catch(() => {});
        }
      } finally {
        await other.close();
        site.closeAllConnections();
        await new Promise((resolve) => site.close(resolve));
      }
    });

    const otherUrl = otherHostname(url);
    await check(`page connects via ${new URL(otherUrl).hostname}`, [], async () => {
      const other = await context.newPage();
      other.on("pageerror", (e) => pageErrors.push(`${otherUrl}: ${e.message}`));
      await other.goto(otherUrl);
      await waitConnected(other);
      // The page must have built its WebSocket URL from the name it was loaded by:
      // the server's WebSocket URL with the hostname swapped.
      const wsUrl = server.output().match(/WebSocket: (ws:\/\/\S+)/);
      if (!wsUrl) throw new Error("server did not log `WebSocket: ws://...`");
      const expected = `connected to ${otherHostname(wsUrl[1])}`;
      await other.locator("#log li.ok", { hasText: expected }).waitFor();
      await other.close();
    });

    await check("page falls back to Server-Sent Events", [], async () => {
      // A WebSocket port where nothing listens, as behind a proxy that drops
      // WebSockets: the page's only way to the server is then /events.
      const port = await freePort(); // handed out by the OS, then closed: nothing listens
      const sse = await context.newPage();
      sse.on("pageerror", (e) => pageErrors.push(`${url} (SSE fallback): ${e.message}`));
      const sockets = [];
      sse.on("websocket", (ws) => sockets.push(ws.url()));
      await sse.route("**/config.json", (route) =>
        route.fulfill({
          status: 200,
          contentType: "application/json",
          headers: { "Cache-Control": "no-store" },
          body: JSON.stringify({ ws_port: port, ws_path: "/echo" }),
        }),
      );
      await sse.goto(url);
      await waitServerSentEvents(sse);
      await waitClockTicks(sse);
      // It did try the WebSocket first, at the port config.json gave it.
      const tried = `ws://${new URL(url).hostname}:${port}/echo`;
      if (!sockets.includes(tried)) throw new Error(`expected a WebSocket to ${tried}, saw [${sockets.join(", ")}]`);
      await sse.locator("#log li.status", { hasText: "falling back to Server-Sent Events" }).waitFor();
      const note = await sse.textContent("#echo-note");
      if (!/fell back/.test(note)) throw new Error(`#echo-note does not say it fell back: "${note}"`);
      await sse.locator("#log li.ok", { hasText: `streaming from ${new URL("events", url)}` }).waitFor();
      await mkdir(SCREENSHOT_DIR, { recursive: true });
      await sse.screenshot({ path: path.join(SCREENSHOT_DIR, "page-sse.png"), fullPage: true });
      await sse.close();
    });

    await check("?transport=sse streams from the start", [], async () => {
      const sseUrl = new URL(url);
      sseUrl.searchParams.set("transport", "sse");
      const sse = await context.newPage();
      sse.on("pageerror", (e) => pageErrors.push(`${sseUrl}: ${e.message}`));
      const sockets = [];
      sse.on("websocket", (ws) => sockets.push(ws.url()));
      await sse.goto(sseUrl.toString());
      await waitServerSentEvents(sse);
      await waitClockTicks(sse);
      if (sockets.length > 0) throw new Error(`a WebSocket was opened: ${sockets.join(", ")}`);
      // Asked for, not fallen back to: no "falling back" line in the log, and the
      // note under the echo box says the address asked for it.
      const fallbacks = await sse.locator("#log li", { hasText: "falling back" }).count();
      if (fallbacks > 0) throw new Error(`the log says it fell back (${fallbacks} line(s))`);
      const note = await sse.textContent("#echo-note");
      if (/fell back/.test(note) || !note.includes("?transport=sse")) {
        throw new Error(`#echo-note does not say ?transport=sse chose SSE: "${note}"`);
      }
      await sse.close();
    });

    await check("page fits phone widths (320 to 414 px)", [], async () => {
      // Mobile emulation, so the page's <meta name="viewport"> counts as on a phone.
      const phone = await browser.newContext({
        viewport: { width: 360, height: 740 },
        isMobile: true,
        hasTouch: true,
        locale: "en-US",
      });
      phone.setDefaultTimeout(WAIT_TIMEOUT_MS);
      try {
        const page = await phone.newPage();
        page.on("pageerror", (e) => pageErrors.push(`${url} (phone): ${e.message}`));
        await page.goto(url);
        await waitConnected(page);
        // Tick lines are the longest lines that must wrap between words; a long
        // unbroken echo is the one kind of word that may be broken.
        await page.waitForFunction(() => document.querySelectorAll("#log li.tick").length >= 4, null, {
          timeout: WAIT_TIMEOUT_MS,
        });
        const long = `phone-${"0123456789".repeat(8)}`;
        await page.locator("#echo-input").fill(long);
        await page.locator("#echo-send").click();
        await page.locator("#log li.echo", { hasText: long }).waitFor();
        const problems = await layoutProblemsAt(page, [320, 390, 414, 360], 740);
        await mkdir(SCREENSHOT_DIR, { recursive: true });
        await page.screenshot({ path: path.join(SCREENSHOT_DIR, "page-phone.png"), fullPage: true });
        if (problems.length > 0) throw new Error(summary(problems));
      } finally {
        await phone.close();
      }
    });

    await check("page fits desktop widths (768 to 1440 px)", [], async () => {
      const wide = await context.newPage();
      try {
        wide.on("pageerror", (e) => pageErrors.push(`${url} (wide): ${e.message}`));
        await wide.goto(url);
        await waitConnected(wide);
        await wide.waitForFunction(() => document.querySelectorAll("#log li.tick").length >= 2, null, {
          timeout: WAIT_TIMEOUT_MS,
        });
        const problems = await layoutProblemsAt(wide, [768, 1024, 1440], 900);
        if (problems.length > 0) throw new Error(summary(problems));
      } finally {
        await wide.close();
      }
    });

    await check("page shows it lost the server, and that it is back", [], async () => {
      // A server of its own, so that stopping it leaves the others running; it
      // comes back on the same ports, as after a restart, where the page retries.
      // One page on the WebSocket (which retries with its own backoff), one on
      // ?transport=sse (where the browser's EventSource retries).
      let lone = startServer();
      const pages = [await context.newPage(), await context.newPage()];
      const [page, ssePage] = pages;
      try {
        const loneUrl = await pageUrl(lone);
        const loneWsPort = await wsPort(lone);
        for (const p of pages) p.on("pageerror", (e) => pageErrors.push(`${loneUrl} (lost server): ${e.message}`));
        await page.goto(loneUrl);
        await ssePage.goto(`${loneUrl}?transport=sse`);
        // Two ticks in, so the stale clock and tick number have something to show.
        for (const p of pages) {
          await waitConnected(p);
          await p.waitForFunction(
            () => /^\d+$/.test(document.querySelector("#clients").textContent) && document.querySelectorAll("#log li.tick").length >= 2,
            null,
            { timeout: WAIT_TIMEOUT_MS },
          );
        }
        const liveLook = await page.evaluate(() => {
          const style = getComputedStyle(document.querySelector("#time"));
          return `${style.color} ${style.opacity}`;
        });

        const { code, signal } = await stopServer(lone);
        if (code !== 0) throw new Error(`server exit code ${code}, signal ${signal}`);
        await waitStatus(page, "lost", liveLook);
        await waitStatus(ssePage, "lost", liveLook, "?transport=sse");
        // The lost page's longer lines must fit a phone too.
        const problems = await layoutProblemsAt(page, [320, 1280], 800);
        await mkdir(SCREENSHOT_DIR, { recursive: true });
        await page.screenshot({ path: path.join(SCREENSHOT_DIR, "page-disconnected.png"), fullPage: true });
        if (problems.length > 0) throw new Error(summary(problems));

        lone = startServer({
          wsAddr: `127.0.0.1:${loneWsPort}`,
          httpAddr: `127.0.0.1:${new URL(loneUrl).port}`,
        });
        await pageUrl(lone);
        await waitStatus(page, "live", liveLook);
        await waitClockTicks(page);
        await waitStatus(ssePage, "live", liveLook, "?transport=sse");
        await waitClockTicks(ssePage);
        // Both resumed from an id of the server's previous run, whose history is
        // gone with it: each says events may have been missed, rather than
        // carrying on as if nothing had happened.
        for (const p of pages) await p.locator("#log li.status", { hasText: "reset: some events were missed" }).waitFor();
      } finally {
        for (const p of pages) await p.close();
        await stopServer(lone);
      }
    });

    await check("page works behind nginx with TLS (wss:// and SSE)", [], async () => {
      // The README's nginx snippet in front of this server, on a free port with a
      // self-signed certificate: the page must find the WebSocket at wss:// on the
      // proxy's port (from the /config.json nginx answers), tick, echo, and also
      // stream Server-Sent Events through the proxy without buffering.
      const proxy = await startNginx(nginxInFrontOf(server, url));
      const tls = await tlsContext(browser);
      try {
        const page = await tls.newPage();
        page.on("pageerror", (e) => pageErrors.push(`${proxy.url}: ${e.message}`));
        await page.goto(proxy.url);
        await waitConnected(page);
        const wss = `wss://localhost:${new URL(proxy.url).port}/echo`;
        await page.locator("#log li.ok", { hasText: `connected to ${wss}` }).waitFor();
        await waitClockTicks(page);
        const message = `through nginx ${process.pid}`;
        await page.locator("#echo-input").fill(message);
        await page.locator("#echo-input").press("Enter");
        await page.locator("#log li.echo", { hasText: `echo: ${message}` }).waitFor();

        const sse = await tls.newPage();
        sse.on("pageerror", (e) => pageErrors.push(`${proxy.url}?transport=sse: ${e.message}`));
        await sse.goto(`${proxy.url}?transport=sse`);
        await waitServerSentEvents(sse);
        await waitClockTicks(sse);

        // The proxy is on tickcast's machine, but a publish through it comes from
        // outside: without --publish-token it is refused.
        const refused = await tls.request.post(new URL("publish", proxy.url).href, { data: "from outside" });
        const why = await refused.text();
        if (refused.status() !== 403 || !/proxy/.test(why)) {
          throw new Error(`POST /publish through nginx: ${refused.status()} ${why}`);
        }
      } catch (e) {
        throw new Error(`${e.message}\n--- nginx ---\n${await proxy.log()}`);
      } finally {
        await tls.close();
        await proxy.stop();
      }
    });

    await check("pages resume after nginx is restarted, missing no message (WebSocket and SSE)", [], async () => {
      // A real cut: the proxy between the pages and tickcast goes down (fast
      // shutdown: every connection dropped at once), messages are published while
      // it is down, and it comes back on the same port. Each page must show every
      // message of its topic exactly once, in order, and none of another topic.
      const nginx = nginxInFrontOf(server, url);
      let proxy = await startNginx(nginx);
      const tls = await tlsContext(browser);
      try {
        const pages = [];
        for (const query of ["?topic=news", "?topic=news&transport=sse"]) {
          const p = await tls.newPage();
          p.on("pageerror", (e) => pageErrors.push(`${proxy.url}${query}: ${e.message}`));
          await p.goto(proxy.url + query);
          await waitConnected(p);
          pages.push(p);
        }
        const tag = `${process.pid}-${Date.now()}`;
        const want = [];
        const send = async (text, topic = "news") => {
          await publish(url, text, topic);
          if (topic === "news") want.push(`message [news]: ${text}`);
        };
        await send(`before the cut ${tag}`);
        for (const p of pages) await p.locator("#log li.message", { hasText: `before the cut ${tag}` }).waitFor();

        await proxy.stop({ fast: true });
        for (const p of pages) {
          await p.waitForFunction(() => document.querySelector("#state").classList.contains("closed"), null, {
            timeout: WAIT_TIMEOUT_MS,
          });
        }
        for (let i = 1; i <= 5; i++) {
          await send(`during the cut ${i} ${tag}`);
          await send(`another topic ${i} ${tag}`, "sports");
        }
        proxy = await startNginx({ ...nginx, port: proxy.port });
        for (const p of pages) await p.locator("#log li.message", { hasText: `during the cut 5 ${tag}` }).waitFor();
        await send(`after the cut ${tag}`);
        for (const p of pages) {
          await p.locator("#log li.message", { hasText: `after the cut ${tag}` }).waitFor();
          const got = (await messagesOn(p)).filter((text) => text.includes(tag));
          if (JSON.stringify(got) !== JSON.stringify(want)) {
            throw new Error(`${p.url()} shows ${JSON.stringify(got)}, not ${JSON.stringify(want)}`);
          }
          const resets = await p.locator("#log li.status", { hasText: "reset:" }).count();
          if (resets > 0) throw new Error(`${p.url()} shows a reset, though nothing was lost`);
        }
      } catch (e) {
        throw new Error(`${e.message}\n--- nginx ---\n${await proxy.log()}`);
      } finally {
        await tls.close();
        await proxy.stop();
      }
    });

    await check("no uncaught page errors", [], async () => {
      if (pageErrors.length > 0) throw new Error(pageErrors.join("; "));
    });
  } catch (e) {
    // Startup failed (server or browser): no check could run.
    results.push({ name: "start server and browser", status: "fail", ms: 0, error: e });
    console.log(`FAIL  start server and browser: ${firstLine(e)}`);
  } finally {
    if (browser) {
      await Promise.race([browser.close(), timeout(10_000, "browser close")]).catch((e) =>
        console.log(`warning: ${firstLine(e)}`),
      );
    }
    await check("server exits 0 on SIGTERM", [], async () => {
      const { code, signal, error } = await stopServer(server);
      if (error) throw error;
      if (code !== 0) throw new Error(`exit code ${code}, signal ${signal}`);
    });
  }

  const count = (status) => results.filter((r) => r.status === status).length;
  const failed = count("fail");
  if (failed > 0) {
    for (const r of results.filter((r) => r.status === "fail")) {
      console.log(`\n--- ${r.name} ---\n${r.error && r.error.stack ? r.error.stack : r.error}`);
    }
    console.log(`\n--- server output ---\n${server.output()}--- end of server output ---`);
  }
  console.log(`browser test took ${elapsed()}`);
  const skipped = count("skip");
  console.log(`browser: ${count("pass")} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
  return failed === 0 ? 0 : 1;
}

// Last resort against a hang the per-wait timeouts did not catch (say, the browser
// never answering). `main`'s own `finally` cannot run in that case, so stop the
// server here by its PID before exiting.
const serversForWatchdog = new Set();
const watchdog = setTimeout(() => {
  console.log(`FAIL  whole run timed out after ${OVERALL_TIMEOUT_MS} ms`);
  for (const child of serversForWatchdog) child.kill("SIGKILL");
  console.log("browser: 0 passed, 1 failed");
  process.exit(1);
}, OVERALL_TIMEOUT_MS);
watchdog.unref();

main().then(
  (code) => {
    clearTimeout(watchdog);
    process.exitCode = code;
  },
  (e) => {
    clearTimeout(watchdog);
    console.log(`FAIL  ${e && e.stack ? e.stack : e}`);
    console.log("browser: 0 passed, 1 failed");
    process.exitCode = 1;
  },
);
