// tickcast's page: show the ticks, who comes and goes, what is published, and
// echo what you type.
//
// The connection itself (finding the WebSocket, falling back to Server-Sent
// Events, reconnecting with backoff, resuming after the last event seen so that a
// cut loses nothing) is tickcast.js, a module any page can use; this file only
// shows what it reports. Add ?transport=sse to the URL to use SSE from the start
// (the page then says it was asked to, and says "fell back" only when the
// WebSocket failed), and ?topic=NAME (repeatable) to receive that topic's
// messages too.
//
// While the server is gone the page must not look live: the clock card is marked
// stale (class "stale", which dims it), a line under the clock says since when and
// when the next try is, and the client count is cleared, as the page no longer
// knows it. All of that goes back when a connection opens again.
import { connect } from "./tickcast.js";

const MAX_LOG_LINES = 200;

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

const params = new URLSearchParams(location.search);
const askedForSse = params.get("transport") === "sse";
const topics = params.getAll("topic");

// When the page lost the server (a Date); null while connected. It stays at the
// first failure through every retry, so the page can say since when.
let lostAt = null;
let sseExplained = false;
// "websocket" or "sse", as tickcast.js last reported: echo needs a WebSocket.
let transport = null;
// Messages we sent and have not seen come back yet. The server echoes verbatim, so
// a text equal to the oldest of these is our echo, not a server event.
const awaitingEcho = [];

function setState(kind, text) {
  stateEl.className = "state " + kind;
  stateEl.textContent = text;
  sendButton.disabled = kind !== "open" || transport !== "websocket";
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

function showTime(iso) {
  timeEl.textContent = new Date(iso).toLocaleTimeString();
  timeEl.title = iso;
}

function onMessage(msg, text) {
  if (awaitingEcho.length > 0 && text === awaitingEcho[0]) {
    awaitingEcho.shift();
    log("echo", "echo: " + text);
    return;
  }
  switch (msg?.type) {
    case "welcome":
      meEl.textContent = msg.id;
      clientsEl.textContent = msg.clients;
      // The server's time now, so the clock is not blank until the first tick.
      if (msg.time) showTime(msg.time);
      log("join", `welcome: you are client ${msg.id}, ${msg.clients} connected`);
      break;
    case "tick":
      showTime(msg.time);
      seqEl.textContent = msg.seq;
      log("tick", `tick ${msg.seq} `, timeTag(msg.time, msg.time));
      break;
    case "join":
      clientsEl.textContent = msg.clients;
      log("join", `joined: ${msg.ids.join(", ")} (${msg.clients} connected)`);
      break;
    case "leave":
      clientsEl.textContent = msg.clients;
      log("leave", `left: ${msg.ids.join(", ")}, ${msg.reason} (${msg.clients} connected)`);
      break;
    case "line":
      log("line", msg.text);
      break;
    case "message": {
      // A string is shown as it is, anything else as the JSON it came as.
      const data = typeof msg.data === "string" ? msg.data : JSON.stringify(msg.data);
      const topic = msg.topic ? ` [${msg.topic}]` : "";
      log("message", `message${topic}: ${data}`);
      break;
    }
    case "reset":
      log("status", `reset: some events were missed (${msg.reason}); reload the page for the whole picture`);
      break;
    default:
      log("echo", "message: " + text);
  }
}

// The first time the page uses SSE, say why, and why the echo box is off.
function explainSse(fellBack) {
  sseExplained = true;
  if (fellBack) {
    log("status", fellBack + "; falling back to Server-Sent Events");
    echoNote.textContent =
      "Echo needs a WebSocket, and none could open, so this page fell back to " +
      "Server-Sent Events, which only carry messages from the server to you.";
  } else {
    log("ok", "using Server-Sent Events, as ?transport=sse asks");
    echoNote.textContent =
      "Echo needs a WebSocket. This page uses Server-Sent Events because its address " +
      "asks for them (?transport=sse); they only carry messages from the server to you.";
  }
  transportEl.textContent = "Server-Sent Events";
  echoNote.hidden = false;
  input.disabled = true;
}

function onStatus(status) {
  transport = status.transport;
  if (status.transport === "sse" && !sseExplained) explainSse(status.fellBack);
  switch (status.state) {
    case "connecting":
      if (lostAt) showLost("trying again now…");
      else setState("connecting", "connecting…");
      break;
    case "open":
      if (status.transport === "websocket") transportEl.textContent = "WebSocket";
      showConnected();
      log("ok", (status.transport === "sse" ? "streaming from " : "connected to ") + status.url);
      break;
    case "lost":
      awaitingEcho.length = 0;
      if (status.retryAt) {
        // A clock time, not "in 4.2 s": the line stays up until the try, and stays true.
        log("status", `${status.reason}; next try at `, localTime(status.retryAt));
        showLost("next try at ", localTime(status.retryAt));
      } else {
        if (lostAt === null) log("status", status.reason);
        showLost("the browser keeps trying again");
      }
      break;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text) return;
  awaitingEcho.push(text);
  if (connection.send(text)) input.value = "";
  else awaitingEcho.pop();
});

if (topics.length > 0) log("ok", `subscribed to ${topics.join(", ")}`);
const connection = connect({
  server: new URL(".", location.href),
  topics,
  transport: askedForSse ? "sse" : "auto",
  onMessage,
  onStatus,
});
