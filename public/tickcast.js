// tickcast.js: a page's connection to tickcast, as a small ES module.
//
//   import { connect } from "/tickcast.js";
//   const connection = connect({
//     topics: ["prices"],
//     onMessage(msg, text) { if (msg?.type === "message") show(msg.data); },
//     onStatus(status) { label.textContent = status.state; },
//   });
//   connection.send("hello"); // WebSocket only: the server echoes it back
//
// What it does for you:
//   - finds the WebSocket from tickcast's /config.json, so it works on any ports,
//     under any hostname and behind the nginx block in scripts/nginx/;
//   - falls back to Server-Sent Events (/events) when a WebSocket never opens (a
//     proxy that strips Upgrade, a blocked port), or uses them from the start with
//     `transport: "sse"`;
//   - reconnects after a drop, with exponential backoff (0.5 s doubling to 10 s,
//     jittered so a restarted server is not hit by every browser at once);
//   - resumes: it remembers the id of the last published event it saw and asks
//     for what came after it on every reconnect (`?since=`; an EventSource also
//     sends Last-Event-ID by itself), so a cut loses nothing the server still
//     holds. If the server no longer holds it all, you get a message of type
//     "reset": reload your state.
//
// Options (all optional):
//   server     tickcast's HTTP address, e.g. "https://push.example.com/"
//              [default: where this module was loaded from]
//   topics     topics to subscribe to, besides what goes to everyone [default: []]
//   transport  "auto" (WebSocket, else SSE), "websocket" or "sse" [default: "auto"]
//   lastId     resume after this event id, e.g. one kept from an earlier visit
//   onMessage(msg, text)  every message; `msg` is the parsed JSON object, or null
//              when the text is not one (an echo of what you sent, say)
//   onStatus(status)      every change of state: { state, transport, url, reason,
//              retryAt, fellBack }, state being "connecting", "open" or "lost"
//
// The returned connection has send(text) (false if it could not send), close(),
// and the getters lastId and transport.

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10_000;

export function connect(options = {}) {
  const server = new URL(options.server ?? ".", import.meta.url);
  const topics = options.topics ?? [];
  const onMessage = options.onMessage ?? (() => {});
  const onStatus = options.onStatus ?? (() => {});

  let lastId = options.lastId ?? null;
  let transport = null; // "websocket" or "sse", once one is in use
  let socket = null;
  let events = null;
  let everOpened = false; // a WebSocket opened once: a failure now is an outage
  let backoffMs = BACKOFF_START_MS;
  let retryTimer = null;
  let closed = false;

  const status = (state, extra = {}) => onStatus({ state, transport, ...extra });

  // The query a (re)connection asks with: its topics, and where to resume.
  function query() {
    const params = new URLSearchParams();
    for (const topic of topics) params.append("topic", topic);
    if (lastId !== null) params.set("since", String(lastId));
    const text = params.toString();
    return text ? "?" + text : "";
  }

  // Every message passes here first, to keep track of where to resume from.
  function receive(text) {
    let msg = null;
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed.type === "string") msg = parsed;
    } catch {
      // Not JSON: an echo, or a raw message from Publisher::publish_text.
    }
    if (msg?.type === "welcome" && lastId === null) lastId = msg.last_id;
    if ((msg?.type === "message" || msg?.type === "line") && Number.isSafeInteger(msg.id)) lastId = msg.id;
    if (msg?.type === "reset") lastId = msg.last_id;
    onMessage(msg, text);
  }

  async function webSocketUrl() {
    const response = await fetch(new URL("config.json", server), { cache: "no-store" });
    if (!response.ok) throw new Error("config.json: HTTP " + response.status);
    const config = await response.json();
    const scheme = server.protocol === "https:" ? "wss:" : "ws:";
    // server.hostname keeps whatever name was used (localhost, an IP, a LAN
    // name); IPv6 literals need their brackets back.
    const host = server.hostname.includes(":") ? `[${server.hostname}]` : server.hostname;
    return `${scheme}//${host}:${config.ws_port}${config.ws_path}`;
  }

  async function openWebSocket() {
    if (closed) return;
    status("connecting");
    let url;
    try {
      url = await webSocketUrl();
    } catch (e) {
      retry(openWebSocket, "cannot reach the server (" + e.message + ")");
      return;
    }
    if (closed) return;
    let opened = false;
    socket = new WebSocket(url + query());
    socket.onopen = () => {
      opened = everOpened = true;
      backoffMs = BACKOFF_START_MS;
      transport = "websocket";
      status("open", { url });
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") receive(event.data);
    };
    socket.onclose = (event) => {
      socket = null;
      if (closed) return;
      if (!opened && !everOpened && options.transport !== "websocket") {
        // Never got through at all: the WebSocket path is blocked, not restarting.
        openEventSource("cannot open a WebSocket to " + url);
        return;
      }
      const why = event.code === 1001 ? "server going away" : "code " + event.code;
      retry(openWebSocket, "disconnected (" + why + ")");
    };
  }

  // `fellBack` says why the WebSocket failed, or is null when SSE was asked for.
  function openEventSource(fellBack) {
    if (closed) return;
    transport = "sse";
    status("connecting", { fellBack });
    const base = new URL("events", server);
    const url = base.href + query();
    events = new EventSource(url);
    events.onopen = () => {
      backoffMs = BACKOFF_START_MS;
      status("open", { url: base.href, fellBack });
    };
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) {
        // The server answered with an error status, and the browser gave up:
        // try again ourselves, from the last id we saw.
        events = null;
        retry(() => openEventSource(fellBack), "the event stream was refused");
      } else {
        // The browser reconnects by itself, 2 s later (the server's `retry:`),
        // sending Last-Event-ID: the id of the last event it saw.
        status("lost", { reason: "lost the event stream; the browser keeps trying again" });
      }
    };
    // Named events carry the same JSON as the WebSocket's messages.
    for (const name of ["welcome", "tick", "join", "leave", "line", "reset"]) {
      events.addEventListener(name, (event) => receive(event.data));
    }
    events.onmessage = (event) => receive(event.data);
  }

  function retry(again, reason) {
    const delay = backoffMs * (0.75 + Math.random() * 0.5);
    backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS);
    status("lost", { reason, retryAt: new Date(Date.now() + delay) });
    retryTimer = setTimeout(again, delay);
  }

  if (options.transport === "sse") openEventSource(null);
  else openWebSocket();

  return {
    /** Sends `text` over the WebSocket; false if there is none open (or SSE). */
    send(text) {
      if (!socket || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(text);
      return true;
    },
    /** Closes the connection for good. */
    close() {
      closed = true;
      clearTimeout(retryTimer);
      socket?.close(1000);
      events?.close();
    },
    /** The id of the last published event seen: where the next connection resumes. */
    get lastId() {
      return lastId;
    },
    /** "websocket" or "sse", once connected. */
    get transport() {
      return transport;
    },
  };
}
