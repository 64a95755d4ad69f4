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
//  11. a cluster works behind scripts/nginx/cluster.conf, in seven checks: a
//      real redis-server, three nodes started with --redis on it, each healthy
//      on /healthz, and nginx in front of them start (cluster.mjs runs
//      redis-server and nginx); the page connects through nginx and ticks;
//      WebSocket and SSE clients opened through nginx land on every node (the
//      node number in each welcome's client id, id >> 33), each node's
//      tickcast_clients gauge agrees, and the nodes agree on every tick;
//      messages published through nginx reach the page and every client on
//      every node, in the same order with the same ids; a client resumes on any
//      node (WebSocket ?since=, SSE Last-Event-ID); when the page's node stops,
//      the page moves to another through nginx and shows every message once,
//      with no reset; every node exits 0 on SIGTERM. Without redis-server these
//      are skipped (and fail with CI=true);
//  12. the page raised no uncaught JavaScript error;
//  13. the server exits with status 0 on SIGTERM (graceful shutdown).
//
// How: it starts the binary on port 0 for both listeners, reads the page URL the
// server logs on stderr, and drives Debian's Chromium through playwright-core (no
// browser download: the executable is /usr/bin/chromium, or $CHROMIUM_PATH).
// The lost-server check runs a server of its own, stops it, and starts it again on
// the ports it had; the cluster checks run three of their own. Every wait has a
// timeout; nothing sleeps but the polls of /healthz, /metrics and a listening
// port, which have no other signal. On failure it prints the server's stderr
// and exits 1. Every server, redis-server and nginx is stopped, by its PID, in
// `finally`.
//
// Environment:
//   TICKCAST_BIN   the binary to test (default: ../../target/release/tickcast)
//   CHROMIUM_PATH  the browser (default: /usr/bin/chromium)
//   NGINX_PATH     nginx for the proxy checks (default: /usr/sbin/nginx)
//   REDIS_SERVER_PATH  redis-server for the cluster checks (default: the one on
//                  the PATH); TICKCAST_BIN must then be built with --features redis
//   CI             `true` makes a missing redis-server a failure, not a skip
//   RUST_LOG       passed to the server (default: info; the page URL is an info line)
//
// The last line printed is `browser: N passed, N failed` (plus `, N skipped` when
// a check could not run: an earlier one it depends on failed, or a tool it needs
// is missing).

import { spawn } from "node:child_process";
import http from "node:http";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { REDIS_SERVER, findRedisServer, running as helpersForWatchdog, startClusterNginx, startRedis } from "./cluster.mjs";
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

/** Thrown by a check that cannot run here (a tool it needs is missing): it counts as skipped. */
class Skip extends Error {}

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
    if (e instanceof Skip) {
      results.push({ name, status: "skip", ms: Date.now() - t0, error: e.message });
      console.log(`skip  ${name} (${e.message})`);
      return;
    }
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
 * addresses the first run got), with more flags in `args` and environment
 * variables in `env`. Returns the child process, a getter for everything it
 * wrote so far, and a promise of its exit status.
 */
function startServer({ interval = "250ms", wsAddr = "127.0.0.1:0", httpAddr = "127.0.0.1:0", args = [], env = {} } = {}) {
  const child = spawn(
    BIN,
    ["--ws-addr", wsAddr, "--http-addr", httpAddr, "--interval", interval, ...args],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info", ...env },
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
 * page URL: loopback, so no token is needed) or through a proxy (with `token`,
 * the nodes' --publish-token), to `topic` if given, as any backend would;
 * returns the event id.
 */
async function publish(base, body, topic, token) {
  const target = new URL(topic ? `publish?topic=${encodeURIComponent(topic)}` : "publish", base);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(target, { method: "POST", body, headers, signal: AbortSignal.timeout(WAIT_TIMEOUT_MS) });
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

/** The node a client id belongs to: its high bits, id >> 33 (past the 32 bits that `>>` handles). */
function nodeOf(id) {
  return Math.floor(id / 2 ** 33);
}

/** Waits until `base`/healthz answers 200 (a node answers 503 until it is in its cluster). */
async function waitHealthy(base) {
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  for (;;) {
    const status = await fetch(new URL("healthz", base), { signal: AbortSignal.timeout(1_000) }).then(
      (response) => response.status,
      (e) => e.message,
    );
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`${base}healthz still answers ${status} after ${WAIT_TIMEOUT_MS} ms`);
    // /healthz is the only signal there is: ask again.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The `tickcast_clients` gauge on `base`/metrics: the clients connected to that node. */
async function clientsGauge(base) {
  const response = await fetch(new URL("metrics", base), { signal: AbortSignal.timeout(WAIT_TIMEOUT_MS) });
  const m = (await response.text()).match(/^tickcast_clients (\d+)$/m);
  if (!m) throw new Error(`${base}metrics has no tickcast_clients gauge`);
  return Number(m[1]);
}

/**
 * Runs in a page: opens a client for each of `targets` ({ kind: "websocket" |
 * "sse", url }), kept in window.clients[name]. Each records its welcome, its
 * published messages (with the SSE event id), any reset, and its ticks (seq →
 * time).
 */
function openClients({ name, targets }) {
  window.clients = window.clients || {};
  window.clients[name] = targets.map(({ kind, url }) => {
    const client = { kind, url, welcome: null, messages: [], resets: [], ticks: {} };
    const record = (text, lastEventId = null) => {
      const msg = JSON.parse(text);
      if (msg.type === "welcome") client.welcome = msg;
      if (msg.type === "message") client.messages.push({ id: msg.id, data: msg.data, lastEventId });
      if (msg.type === "reset") client.resets.push(msg);
      if (msg.type === "tick") client.ticks[msg.seq] = msg.time;
    };
    if (kind === "websocket") {
      new WebSocket(url).onmessage = (event) => record(event.data);
    } else {
      const events = new EventSource(url);
      for (const type of ["welcome", "tick", "reset"]) events.addEventListener(type, (event) => record(event.data));
      events.onmessage = (event) => record(event.data, event.lastEventId);
    }
    return client;
  });
}

/**
 * Waits until every client of window.clients[name] satisfies `done(client, arg)`,
 * which runs in the page too, so it may use nothing but its arguments; returns
 * the clients. On timeout, says which clients still wait and what each got.
 */
async function waitClients(page, name, done, arg) {
  const allDone = ({ name, done, arg }) => {
    const isDone = new Function(`return ${done}`)();
    return window.clients[name].every((client) => isDone(client, arg));
  };
  try {
    await page.waitForFunction(allDone, { name, done: done.toString(), arg }, { timeout: WAIT_TIMEOUT_MS });
  } catch (e) {
    const clients = await page.evaluate((name) => window.clients[name], name);
    const late = clients
      .filter((client) => !done(client, arg))
      .map(({ kind, url, welcome, messages, resets, ticks }) => {
        const who = welcome ? `client ${welcome.id} on node ${nodeOf(welcome.id)}` : "client never welcomed";
        const got = `${JSON.stringify(messages)}, ${resets.length} reset(s), ${Object.keys(ticks).length} tick(s)`;
        return `${kind} ${who} (${url}) got messages ${got}`;
      });
    throw new Error(`after ${WAIT_TIMEOUT_MS} ms, ${late.length} of ${clients.length} clients still wait: ${late.join("; ")}`);
  }
  return page.evaluate((name) => window.clients[name], name);
}

/** The published messages whose text ends with `tag`, as { id, text }. */
function tagged(messages, tag) {
  return messages.filter((m) => m.data?.text?.endsWith(tag)).map((m) => ({ id: m.id, text: m.data.text }));
}

/**
 * Reads `base`/events as a client that resumes after `lastEventId` (sent in the
 * Last-Event-ID header, as an EventSource does when it reconnects), until
 * `enough(messages)`; returns the published messages and resets it got.
 */
async function resumeEvents(base, lastEventId, enough) {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), WAIT_TIMEOUT_MS);
  const got = { messages: [], resets: [] };
  try {
    const response = await fetch(new URL("events", base), {
      headers: { "Last-Event-ID": String(lastEventId) },
      signal: stop.signal,
    });
    if (response.status !== 200) throw new Error(`GET ${base}events: ${response.status}`);
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of response.body) {
      // Whole events only: each ends with an empty line.
      const blocks = (text + decoder.decode(chunk, { stream: true })).split("\n\n");
      text = blocks.pop();
      for (const block of blocks) {
        const data = block.match(/^data: (\{.*)$/m)?.[1];
        const msg = data ? JSON.parse(data) : null;
        if (msg?.type === "message") got.messages.push({ id: msg.id, data: msg.data });
        if (msg?.type === "reset") got.resets.push(msg);
      }
      if (enough(got.messages)) return got;
    }
    throw new Error(`${base}events ended early`);
  } catch (e) {
    if (!stop.signal.aborted) throw e;
    throw new Error(`${base}events after ${lastEventId}: only ${JSON.stringify(got)} after ${WAIT_TIMEOUT_MS} ms`);
  } finally {
    clearTimeout(timer);
    stop.abort();
  }
}

/**
 * The cluster checks: redis-server, three nodes on it and nginx with
 * scripts/nginx/cluster.conf in front of them, then the page and clients
 * through nginx. Everything they start is stopped, by its PID, in `finally`.
 */
async function clusterChecks(browser, pageErrors) {
  const SETUP = "cluster: redis-server, three nodes and nginx (scripts/nginx/cluster.conf) start";
  const PAGE = "cluster: the page connects through nginx and ticks";
  const SPREAD = "cluster: WebSocket and SSE clients through nginx land on every node";
  const PUBLISH = "cluster: a publish through nginx reaches the page and every client on every node, with one id";
  const RESUME = "cluster: a client resumes on any node (WebSocket ?since=, SSE Last-Event-ID)";
  const MOVE = "cluster: the page moves to another node when its node stops, missing nothing";
  const EXIT = "cluster: every node exits 0 on SIGTERM";
  const cluster = { redis: null, nodes: [], proxy: null, context: null, page: null, clientsPage: null, published: null };
  const token = `e2e-${process.pid}-${Date.now()}`;
  const describe = (node) => `node ${node.number} (${node.url})`;
  // A failure says what the cluster's processes said.
  const withLogs = (body) => async () => {
    try {
      await body();
    } catch (e) {
      if (e instanceof Skip) throw e;
      for (const node of cluster.nodes) e.message += `\n--- ${describe(node)} ---\n${node.server.output()}`;
      if (cluster.proxy) e.message += `\n--- nginx ---\n${await cluster.proxy.log()}`;
      throw e;
    }
  };

  try {
    await check(
      SETUP,
      [],
      withLogs(async () => {
        const redisServer = await findRedisServer();
        if (!redisServer) {
          const how = "install it with `apt-get install redis-server` (Debian/Ubuntu) or set REDIS_SERVER_PATH";
          if (process.env.CI === "true") throw new Error(`${REDIS_SERVER} not found, and CI needs the cluster checks: ${how}`);
          throw new Skip(`${REDIS_SERVER} not found: ${how} to run the cluster checks`);
        }
        cluster.redis = await startRedis({ command: redisServer, timeoutMs: STARTUP_TIMEOUT_MS });
        // A key prefix of this run's own; the token lets a publish through nginx in.
        const key = `tickcast-e2e-${process.pid}-${Date.now()}`;
        for (let i = 0; i < 3; i++) {
          const args = ["--redis", cluster.redis.url, "--redis-key", key];
          cluster.nodes.push({ server: startServer({ args, env: { TICKCAST_PUBLISH_TOKEN: token } }) });
        }
        for (const node of cluster.nodes) {
          node.url = await pageUrl(node.server);
          node.wsPort = await wsPort(node.server);
          node.number = Number((await logged(node.server, /cluster: node (\d+)/))[1]);
        }
        if (new Set(cluster.nodes.map((node) => node.number)).size !== 3) {
          throw new Error(`the nodes took numbers ${cluster.nodes.map((node) => node.number).join(", ")}`);
        }
        for (const node of cluster.nodes) await waitHealthy(node.url);
        cluster.proxy = await startClusterNginx({
          confPath: path.join(REPO, "scripts/nginx/cluster.conf"),
          wsPorts: cluster.nodes.map((node) => node.wsPort),
          httpPorts: cluster.nodes.map((node) => Number(new URL(node.url).port)),
          timeoutMs: WAIT_TIMEOUT_MS,
        });
        const nodes = cluster.nodes.map(describe).join(", ");
        console.log(`cluster: ${cluster.redis.url} (pid ${cluster.redis.pid}), ${nodes}, nginx at ${cluster.proxy.url}`);
        cluster.context = await browser.newContext({ locale: "en-US" });
        cluster.context.setDefaultTimeout(WAIT_TIMEOUT_MS);
        cluster.context.setDefaultNavigationTimeout(WAIT_TIMEOUT_MS);
      }),
    );

    await check(
      PAGE,
      [SETUP],
      withLogs(async () => {
        const { proxy } = cluster;
        const page = (cluster.page = await cluster.context.newPage());
        page.on("pageerror", (e) => pageErrors.push(`${proxy.url} (cluster): ${e.message}`));
        await page.goto(proxy.url);
        await waitConnected(page);
        // The WebSocket on nginx's port, as the /config.json nginx answers says.
        await page.locator("#log li.ok", { hasText: `connected to ws://127.0.0.1:${proxy.port}/echo` }).waitFor();
        await waitClockTicks(page);
      }),
    );

    await check(
      SPREAD,
      [SETUP, PAGE],
      withLogs(async () => {
        const { proxy, nodes } = cluster;
        // Clients opened from a page of nginx's origin: its /config.json, which
        // nginx answers itself, so the page opens no client of its own.
        const page = (cluster.clientsPage = await cluster.context.newPage());
        page.on("pageerror", (e) => pageErrors.push(`${proxy.url}config.json (cluster clients): ${e.message}`));
        await page.goto(new URL("config.json", proxy.url).href);
        const ws = { kind: "websocket", url: `ws://127.0.0.1:${proxy.port}/echo` };
        const sse = { kind: "sse", url: new URL("events", proxy.url).href };
        // Six and three: Chromium opens at most six HTTP/1.1 connections to one
        // host, and the SSE streams are among them.
        await page.evaluate(openClients, { name: "spread", targets: [...Array(6).fill(ws), ...Array(3).fill(sse)] });
        // Welcomed, and two ticks each, to compare ticks across nodes.
        const clients = await waitClients(page, "spread", (c) => c.welcome && Object.keys(c.ticks).length >= 2);
        const numbers = nodes.map((node) => node.number);
        for (const kind of ["websocket", "sse"]) {
          const landed = clients.filter((c) => c.kind === kind).map((c) => nodeOf(c.welcome.id));
          const strangers = landed.filter((n) => !numbers.includes(n));
          if (strangers.length > 0) {
            throw new Error(`${kind} client ids name nodes ${strangers.join(", ")}, not ours (${numbers.join(", ")})`);
          }
          const missed = nodes.filter((node) => !landed.includes(node.number)).map(describe);
          if (missed.length > 0) {
            throw new Error(`${kind} clients through nginx landed on nodes [${landed}], none on ${missed.join(", ")}`);
          }
        }
        // Each node counts the clients whose welcomes name it, the page's own too.
        const ids = [Number(await cluster.page.textContent("#me")), ...clients.map((c) => c.welcome.id)];
        const expected = nodes.map((node) => ids.filter((id) => nodeOf(id) === node.number).length);
        const deadline = Date.now() + WAIT_TIMEOUT_MS;
        for (;;) {
          const gauges = await Promise.all(nodes.map((node) => clientsGauge(node.url)));
          if (JSON.stringify(gauges) === JSON.stringify(expected)) break;
          if (Date.now() > deadline) {
            throw new Error(`tickcast_clients per node is [${gauges}], the welcomes say [${expected}]`);
          }
          // A join may still be on its way to a gauge: ask again.
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        // Ticks stay local to each node, but every node sends the same one.
        const times = new Map();
        for (const client of clients) {
          for (const [seq, time] of Object.entries(client.ticks)) {
            if (times.has(seq) && times.get(seq) !== time) {
              throw new Error(`tick ${seq} says ${time} on node ${nodeOf(client.welcome.id)}, ${times.get(seq)} elsewhere`);
            }
            times.set(seq, time);
          }
        }
      }),
    );

    await check(
      PUBLISH,
      [SETUP, SPREAD],
      withLogs(async () => {
        const { proxy, page, clientsPage } = cluster;
        const tag = `${process.pid}-${Date.now()}`;
        const texts = [1, 2, 3].map((i) => `cluster ${i} ${tag}`);
        // Three POSTs, one connection each: nginx spreads them over the nodes too.
        const ids = [];
        for (const text of texts) ids.push(await publish(proxy.url, JSON.stringify({ text }), undefined, token));
        cluster.published = { tag, texts, ids };
        const want = JSON.stringify(texts.map((text, i) => ({ id: ids[i], text })));
        const done = (c, tag) => c.messages.filter((m) => m.data?.text?.endsWith(tag)).length >= 3;
        for (const client of await waitClients(clientsPage, "spread", done, tag)) {
          const where = `${client.kind} client ${client.welcome.id} on node ${nodeOf(client.welcome.id)}`;
          const got = JSON.stringify(tagged(client.messages, tag));
          if (got !== want) throw new Error(`${where} got ${got}, not ${want}`);
          const sseIds = client.messages.filter((m) => m.data?.text?.endsWith(tag)).map((m) => m.lastEventId);
          if (client.kind === "sse" && JSON.stringify(sseIds) !== JSON.stringify(ids.map(String))) {
            throw new Error(`${where}: SSE ids ${sseIds.join(", ")}, not ${ids.join(", ")}`);
          }
        }
        // The page, on whichever node it landed, shows each once, in order.
        await page.locator("#log li.message", { hasText: texts[2] }).waitFor();
        const shown = JSON.stringify((await messagesOn(page)).filter((text) => text.includes(tag)));
        const wanted = JSON.stringify(texts.map((text) => `message: ${JSON.stringify({ text })}`));
        if (shown !== wanted) throw new Error(`the page shows ${shown}, not ${wanted}`);
      }),
    );

    await check(
      RESUME,
      [SETUP, PUBLISH],
      withLogs(async () => {
        // A client that saw the event just before the three publishes comes back
        // straight to each node in turn: each must send exactly those three, with
        // their ids, and no reset.
        const { nodes, clientsPage } = cluster;
        const { tag, texts, ids } = cluster.published;
        const since = ids[0] - 1;
        const want = JSON.stringify(texts.map((text, i) => ({ id: ids[i], text })));
        const targets = nodes.map((node) => ({ kind: "websocket", url: `ws://127.0.0.1:${node.wsPort}/echo?since=${since}` }));
        await clientsPage.evaluate(openClients, { name: "resume", targets });
        const done = (c, tag) => c.resets.length > 0 || c.messages.filter((m) => m.data?.text?.endsWith(tag)).length >= 3;
        const resumed = await waitClients(clientsPage, "resume", done, tag);
        for (const [i, node] of nodes.entries()) {
          const sse = await resumeEvents(node.url, since, (messages) => tagged(messages, tag).length >= 3);
          for (const [how, got] of [["WebSocket ?since=", resumed[i]], ["SSE Last-Event-ID:", sse]]) {
            const mine = JSON.stringify(tagged(got.messages, tag));
            if (got.resets.length > 0 || mine !== want) {
              const resets = JSON.stringify(got.resets);
              throw new Error(`${describe(node)}, ${how} ${since}: got ${mine} and resets ${resets}, not ${want}`);
            }
          }
        }
      }),
    );

    await check(
      MOVE,
      [SETUP, PAGE],
      withLogs(async () => {
        // The page's node stops (as for an upgrade): nginx finds it gone and sends
        // the page's next connection to another node, where it resumes from the
        // last event it saw, though that node never sent it a thing.
        const { proxy, page, nodes } = cluster;
        const tag = `${process.pid}-${Date.now()}`;
        const texts = ["before the stop", "while it moves", "after the move"].map((what) => `${what} ${tag}`);
        const send = (text) => publish(proxy.url, JSON.stringify({ text }), undefined, token);
        await send(texts[0]);
        await page.locator("#log li.message", { hasText: texts[0] }).waitFor();
        const first = await page.textContent("#me");
        const gone = nodes.find((node) => node.number === nodeOf(Number(first)));
        if (!gone) throw new Error(`the page's client id ${first} names no node of ours`);
        const { code, signal } = await stopServer(gone.server);
        if (code !== 0) throw new Error(`${describe(gone)}: exit code ${code}, signal ${signal}`);
        await send(texts[1]);
        // A new welcome, from another node.
        await page.waitForFunction(
          (first) => {
            const me = document.querySelector("#me").textContent;
            return /^\d+$/.test(me) && me !== first;
          },
          first,
          { timeout: WAIT_TIMEOUT_MS },
        );
        const second = Number(await page.textContent("#me"));
        if (nodeOf(second) === gone.number) throw new Error(`the page came back as ${second}, on the stopped node`);
        await waitConnected(page);
        await send(texts[2]);
        await page.locator("#log li.message", { hasText: texts[2] }).waitFor();
        const shown = JSON.stringify((await messagesOn(page)).filter((text) => text.includes(tag)));
        const wanted = JSON.stringify(texts.map((text) => `message: ${JSON.stringify({ text })}`));
        if (shown !== wanted) throw new Error(`the page shows ${shown}, not ${wanted}`);
        const resets = await page.locator("#log li.status", { hasText: "reset:" }).count();
        if (resets > 0) throw new Error(`the page shows ${resets} reset(s), though nothing was lost`);
      }),
    );

    await check(
      EXIT,
      [SETUP],
      withLogs(async () => {
        // (The node the check before stopped was checked there.)
        for (const node of cluster.nodes) {
          const { code, signal, error } = await stopServer(node.server);
          if (error) throw error;
          if (code !== 0) throw new Error(`${describe(node)}: exit code ${code}, signal ${signal}`);
        }
      }),
    );
  } finally {
    if (cluster.context) await cluster.context.close().catch((e) => console.log(`warning: ${firstLine(e)}`));
    if (cluster.proxy) await cluster.proxy.stop();
    for (const node of cluster.nodes) await stopServer(node.server).catch((e) => console.log(`warning: ${firstLine(e)}`));
    if (cluster.redis) await cluster.redis.stop();
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

    await clusterChecks(browser, pageErrors);

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
// servers here by their PIDs before exiting, and the cluster's redis-server and
// nginx (SIGTERM: nginx's master then stops its workers).
const serversForWatchdog = new Set();
const watchdog = setTimeout(() => {
  console.log(`FAIL  whole run timed out after ${OVERALL_TIMEOUT_MS} ms`);
  for (const child of serversForWatchdog) child.kill("SIGKILL");
  for (const child of helpersForWatchdog) child.kill("SIGTERM");
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
