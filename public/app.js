// tickcast's page: connect to the WebSocket, show the ticks, echo what you type.
//
// The page learns the WebSocket port from /config.json, so it works whatever ports
// the server runs on and whatever hostname the browser used to reach it. When the
// connection drops, it reconnects with exponential backoff (0.5 s doubling to 10 s,
// with jitter so a restarted server is not hit by every browser at once).
//
// If the WebSocket cannot even open (a proxy that does not pass WebSockets, a
// firewalled port), the page falls back to Server-Sent Events on the page's own
// origin (/events): the same ticks and notices, one way only, so the echo box is
// switched off. Add ?transport=sse to the URL to use SSE from the start; the page
// then says it was asked to, and says "fell back" only when the WebSocket failed.
//
// While the server is gone the page must not look live: the clock card is marked
// stale (class "stale", which dims it), a line under the clock says since when and
// when the next try is, and the client count is cleared, as the page no longer
// knows it. All of that goes back when a connection opens again.
"use strict";

const MAX_LOG_LINES = 200;
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10000;

const el = (id) => document.getElementById(id);
const stateEl = el("state");
const clockEl = el("clock");
const timeEl = el("time");
const sinceEl = el("since");
const seqEl = el("seq");
const clientsEl = el("clients");
const meEl = el("me");
const logEl = el("log");
const form = el("echo-form");
const input = el("echo-input");
const sendButton = el("echo-send");
const transportEl = el("transport");
const echoNote = el("echo-note");

let socket = null;
let events = null; // the EventSource, once we use SSE
let everOpened = false; // a WebSocket has opened once: a failure now is an outage
let backoffMs = BACKOFF_START_MS;
// When the page lost the server (a Date); null while connected. It stays at the
// first failure through every retry, so the page can say since when.
let lostAt = null;
// Messages we sent and have not seen come back yet. The server echoes verbatim, so
// a text equal to the oldest of these is our echo, not a server event.
const awaitingEcho = [];

function setState(kind, text) {
  stateEl.className = "state " + kind;
  stateEl.textContent = text;
  sendButton.disabled = kind !== "open" || events !== null;
}

// A connection is open: undo everything showLost did. The client count comes back
// with the server's welcome message.
function showConnected() {
  lostAt = null;
  clockEl.classList.remove("stale");
  sinceEl.hidden = true;
  setState("open", "connected");
}

// No connection: dim the clock, which has stopped, say since when and what happens
// `next` (strings or elements), and clear the client count, which the page no
// longer knows.
function showLost(...next) {
  lostAt ??= new Date();
  clockEl.classList.add("stale");
  clientsEl.textContent = "–";
  sinceEl.replaceChildren("disconnected since ", localTime(lostAt), "; ", ...next);
  sinceEl.hidden = false;
  setState("closed", "disconnected");
}

// One line in the event log, newest first: the time it arrived, then `parts`
// (strings, or elements such as timeTag's).
function log(kind, ...parts) {
  const li = document.createElement("li");
  li.className = kind;
  const at = localTime(new Date());
  at.className = "at";
  li.append(at, ...parts);
  logEl.prepend(li);
  while (logEl.children.length > MAX_LOG_LINES) logEl.lastChild.remove();
}

// A time on the page, as a <time> element: the stylesheet keeps each on one line,
// so a narrow screen wraps between words, never inside "10:21:56 AM".
function timeTag(iso, text) {
  const tag = document.createElement("time");
  tag.dateTime = iso;
  tag.textContent = text;
  return tag;
}

// `date` as this browser shows a time of day.
function localTime(date) {
  return timeTag(date.toISOString(), date.toLocaleTimeString());
}

async function wsUrl() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error("config.json: HTTP " + response.status);
  const config = await response.json();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // location.hostname keeps whatever name the browser used (localhost, an IP, a
  // LAN name); IPv6 literals need their brackets back.
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  return `${scheme}//${host}:${config.ws_port}${config.ws_path}`;
}

function handle(text) {
  if (awaitingEcho.length > 0 && text === awaitingEcho[0]) {
    awaitingEcho.shift();
    log("echo", "echo: " + text);
    return;
  }
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    log("echo", "message: " + text);
    return;
  }
  switch (msg.type) {
    case "welcome":
      meEl.textContent = msg.id;
      clientsEl.textContent = msg.clients;
      // The server's time now, so the clock is not blank until the first tick.
      if (msg.time) {
        timeEl.textContent = new Date(msg.time).toLocaleTimeString();
        timeEl.title = msg.time;
      }
      log("join", `welcome: you are client ${msg.id}, ${msg.clients} connected`);
      break;
    case "tick":
      timeEl.textContent = new Date(msg.time).toLocaleTimeString();
      timeEl.title = msg.time;
      seqEl.textContent = msg.seq;
      log("tick", `tick ${msg.seq} `, timeTag(msg.time, msg.time));
      break;
    case "join":
      clientsEl.textContent = msg.clients;
      log("join", `joined: ${msg.ids.join(", ")} (${msg.clients} connected)`);
      break;
    case "line":
      log("line", msg.text);
      break;
    case "leave":
      clientsEl.textContent = msg.clients;
      log("leave", `left: ${msg.ids.join(", ")}, ${msg.reason} (${msg.clients} connected)`);
      break;
    default:
      log("echo", "message: " + text);
  }
}

// `fallback` says why the WebSocket failed, or is null when ?transport=sse asked
// for SSE: the page tells the two apart, so "fell back" always means a failure.
function useServerSentEvents(fallback) {
  if (fallback) {
    log("status", fallback + "; falling back to Server-Sent Events");
    echoNote.textContent =
      "Echo needs a WebSocket, and none could open, so this page fell back to " +
      "Server-Sent Events, which only carry messages from the server to you.";
  } else {
    log("ok", "using Server-Sent Events, as ?transport=sse asks");
    echoNote.textContent =
      "Echo needs a WebSocket. This page uses Server-Sent Events because its address " +
      "asks for them (?transport=sse); they only carry messages from the server to you.";
  }
  events = new EventSource("events");
  transportEl.textContent = "Server-Sent Events";
  echoNote.hidden = false;
  input.disabled = true;
  events.onopen = () => {
    showConnected();
    log("ok", "streaming from " + new URL("events", location.href));
  };
  events.onerror = () => {
    if (lostAt === null) log("status", "lost the event stream");
    // EventSource reconnects by itself (the server asks for 2 s between tries),
    // unless the server answered with an error status: then it gives up (CLOSED).
    const gaveUp = events.readyState === EventSource.CLOSED;
    showLost(gaveUp ? "the browser gave up: reload the page to try again" : "the browser keeps trying again");
  };
  // Named events carry the same JSON as the WebSocket messages.
  for (const name of ["welcome", "tick", "join", "leave", "line"]) {
    events.addEventListener(name, (event) => handle(event.data));
  }
  events.onmessage = (event) => handle(event.data);
}

async function connect() {
  if (lostAt) showLost("trying again now…");
  else setState("connecting", "connecting…");
  let url;
  try {
    url = await wsUrl();
  } catch (e) {
    retry("cannot reach the server (" + e.message + ")");
    return;
  }
  let opened = false;
  socket = new WebSocket(url);
  socket.onopen = () => {
    opened = true;
    everOpened = true;
    backoffMs = BACKOFF_START_MS;
    transportEl.textContent = "WebSocket";
    showConnected();
    log("ok", "connected to " + url);
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") handle(event.data);
  };
  socket.onclose = (event) => {
    socket = null;
    awaitingEcho.length = 0;
    if (!opened && !everOpened) {
      // Never got through at all: the WebSocket path is blocked, not restarting.
      useServerSentEvents("cannot open a WebSocket to " + url);
      return;
    }
    const why = event.code === 1001 ? "server going away" : "code " + event.code;
    retry("disconnected (" + why + ")");
  };
}

function retry(why) {
  const delay = backoffMs * (0.75 + Math.random() * 0.5);
  backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS);
  // A clock time, not "in 4.2 s": the line stays up until the try, and stays true.
  const next = new Date(Date.now() + delay);
  log("status", `${why}; next try at `, localTime(next));
  showLost("next try at ", localTime(next));
  setTimeout(connect, delay);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
  awaitingEcho.push(text);
  socket.send(text);
  input.value = "";
});

if (new URLSearchParams(location.search).get("transport") === "sse") {
  useServerSentEvents(null);
} else {
  connect();
}
