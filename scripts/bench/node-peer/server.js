#!/usr/bin/env node
// tickcast's wire protocol (v1) on Node.js and the `ws` package: the peer that
// scripts/bench.sh measures tickcast against.
//
// Written the way a competent `ws` user would write it, following the package
// README: one WebSocketServer on a plain http server (`noServer` plus the
// 'upgrade' event, so both `/echo` and `/` are accepted), the README's broadcast
// loop over `wss.clients`, and the README's ping/pong heartbeat that terminates
// clients which stop answering. The tick is serialised once per broadcast.
//
// Protocol (the same bytes tickcast sends):
//   welcome  {"type":"welcome","id":7,"clients":3,"time":"…Z"}  to the new client
//   tick     {"type":"tick","seq":42,"time":"…Z"}               to everyone, every interval
//   join     {"type":"join","ids":[8],"clients":4}              to clients connected before
//   leave    {"type":"leave","ids":[7],"clients":3,"reason":"closed"}  to everyone left
// Joins and leaves within 50 ms are batched. Messages from a client are echoed to
// it alone. SIGINT/SIGTERM closes every client with 1001.
//
// Usage: node server.js [--ws-addr HOST:PORT] [--interval 1s|250ms]
//        [--max-backlog BYTES]
// Prints "WebSocket: ws://HOST:PORT/echo" on stderr once listening (port 0 picks
// a free port, and the line shows the one bound).

'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

/** Same limits as tickcast's defaults. */
const MAX_MESSAGE_SIZE = 1 << 20;
const PRESENCE_WINDOW_MS = 50;
const HEARTBEAT_MS = 30000;
const REASONS = ['closed', 'dropped', 'too_slow', 'timeout', 'shutdown'];

function usage(message) {
  console.error(`server.js: ${message}`);
  console.error('usage: node server.js [--ws-addr HOST:PORT] [--interval 1s] [--max-backlog BYTES]');
  process.exit(2);
}

function parseDuration(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(text);
  if (!m) usage(`--interval: expected e.g. 250ms or 1s, got ${JSON.stringify(text)}`);
  const ms = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  if (!(ms >= 1)) usage('--interval: must be at least 1ms');
  return ms;
}

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 40134, intervalMs: 1000, maxBacklog: 2 << 20 };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s, 2);
    const next = () => {
      if (value !== undefined) return value;
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--ws-addr': {
        const v = next();
        const at = v.lastIndexOf(':');
        if (at < 0) usage(`--ws-addr: expected HOST:PORT, got ${JSON.stringify(v)}`);
        opts.host = v.slice(0, at);
        opts.port = Number(v.slice(at + 1));
        break;
      }
      case '--interval':
        opts.intervalMs = parseDuration(next());
        break;
      case '--max-backlog':
        opts.maxBacklog = Number(next());
        break;
      default:
        usage(`unknown argument ${flag}`);
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

const server = http.createServer((req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('This is a WebSocket endpoint: connect to /echo\n');
});
const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_SIZE });

server.on('upgrade', (request, socket, head) => {
  const { pathname } = new URL(request.url, 'ws://localhost');
  if (pathname !== '/echo' && pathname !== '/') {
    socket.write('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
    socket.destroy();
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request));
});

// ---- presence: joins and leaves gathered for 50 ms, then one notice each ----

let nextId = 1;
let pendingJoins = [];
let pendingLeaves = [];
let presenceTimer = null;

function schedulePresence() {
  if (presenceTimer === null) presenceTimer = setTimeout(sendPresence, PRESENCE_WINDOW_MS);
}

function sendPresence() {
  presenceTimer = null;
  const joins = pendingJoins;
  const leaves = pendingLeaves;
  pendingJoins = [];
  pendingLeaves = [];
  const clients = wss.clients.size;
  if (joins.length > 0) {
    // Only clients that were here before this batch; the new ones got a welcome.
    const firstNew = joins[0];
    const data = JSON.stringify({ type: 'join', ids: joins, clients });
    for (const client of wss.clients) {
      if (client.id < firstNew) send(client, data);
    }
  }
  for (const reason of REASONS) {
    const ids = leaves.filter((l) => l.reason === reason).map((l) => l.id);
    if (ids.length > 0) broadcast(JSON.stringify({ type: 'leave', ids, clients, reason }));
  }
}

// ---- sending: never let one slow client hold unbounded memory ----

function send(client, data) {
  if (client.readyState !== WebSocket.OPEN) return;
  if (client.bufferedAmount + data.length > opts.maxBacklog) {
    client.leaveReason = 'too_slow';
    client.terminate();
    return;
  }
  client.send(data);
}

/** The README's broadcast loop: one serialised string, sent to every open client. */
function broadcast(data) {
  for (const client of wss.clients) send(client, data);
}

// ---- connections ----

function heartbeat() {
  this.isAlive = true;
}

wss.on('connection', (ws) => {
  ws.isAlive = true;
  ws.id = nextId++;
  ws.leaveReason = null;
  ws.on('error', (err) => {
    if (ws.leaveReason === null) ws.leaveReason = 'dropped';
    if (process.env.NODE_PEER_DEBUG) console.error(`client ${ws.id}: ${err.message}`);
  });
  ws.on('pong', heartbeat);
  // Echo to the sender only, as the same frame type.
  ws.on('message', (data, isBinary) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code) => {
    const reason = ws.leaveReason || (code === 1006 ? 'dropped' : 'closed');
    // Clients that never made it into a notice are forgotten quietly.
    const at = pendingJoins.indexOf(ws.id);
    if (at >= 0) {
      pendingJoins.splice(at, 1);
    } else {
      pendingLeaves.push({ id: ws.id, reason });
      schedulePresence();
    }
  });
  ws.send(JSON.stringify({ type: 'welcome', id: ws.id, clients: wss.clients.size, time: new Date().toISOString() }));
  pendingJoins.push(ws.id);
  schedulePresence();
});

// The README's heartbeat: a client that did not answer the last ping is gone.
const heartbeatTimer = setInterval(() => {
  for (const ws of wss.clients) {
    if (ws.isAlive === false) {
      ws.leaveReason = 'timeout';
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, HEARTBEAT_MS);

// ---- ticker: aligned to wall-clock multiples of the interval ----

let seq = 0;
let tickTimer = null;

function scheduleTick() {
  const now = Date.now();
  const due = (Math.floor(now / opts.intervalMs) + 1) * opts.intervalMs;
  tickTimer = setTimeout(tick, due - now);
}

function tick() {
  seq += 1;
  broadcast(JSON.stringify({ type: 'tick', seq, time: new Date().toISOString() }));
  scheduleTick();
}

// ---- start and stop ----

server.listen(opts.port, opts.host, () => {
  const { address, port } = server.address();
  console.error(`WebSocket: ws://${address}:${port}/echo`);
  scheduleTick();
});

function shutdown() {
  clearTimeout(tickTimer);
  clearInterval(heartbeatTimer);
  for (const ws of wss.clients) {
    ws.leaveReason = 'shutdown';
    ws.close(1001, 'server shutting down');
  }
  server.close();
  wss.close(() => process.exit(0));
  // Clients that never answer the close frame must not keep us alive.
  setTimeout(() => process.exit(0), 3000).unref();
}

process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
