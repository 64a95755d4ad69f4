// The pieces of a tickcast cluster that the browser test starts besides tickcast
// itself: a real redis-server, and nginx with scripts/nginx/cluster.conf in front
// of three nodes.
//
// redis-server runs on a free port, keeps nothing on disk (`--save ''
// --appendonly no`) and works in a fresh temporary folder. nginx runs the
// config as written, with seven lines swapped for test values: the listen port
// and the six node addresses (each must occur exactly once, so a config edited
// out of shape fails the test instead of silently testing less).
//
// Both run in the foreground as our children (child.mjs); stop() ends each by
// its PID (SIGTERM, then SIGKILL after 5 s) and removes its folder.

import { constants } from "node:fs";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { startChild } from "./child.mjs";
import { NGINX, freePort, writeMainConf } from "./nginx.mjs";

/** The redis-server to run: $REDIS_SERVER_PATH, or the one on the PATH. */
export const REDIS_SERVER = process.env.REDIS_SERVER_PATH || "redis-server";

export { running } from "./child.mjs";

/** Where `REDIS_SERVER` is, or null when it is not installed. */
export async function findRedisServer() {
  const candidates = REDIS_SERVER.includes("/")
    ? [REDIS_SERVER]
    : (process.env.PATH || "").split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, REDIS_SERVER));
  for (const candidate of candidates) {
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  return null;
}


/** Waits until `ready()` is true, asking again every 50 ms; throws `what` at the deadline. */
async function poll(ready, deadline, what) {
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(what);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function acceptsOn(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

/**
 * Starts redis-server (at `command`, from findRedisServer) on a free port of
 * 127.0.0.1. Resolves once it logs that it accepts connections; returns
 * { url: "redis://127.0.0.1:PORT", port, pid, stop(), log() }.
 */
export async function startRedis({ command, timeoutMs }) {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), "tickcast-redis-"));
  const redis = startChild(
    command,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    dir,
  );
  try {
    await poll(
      () => {
        if (redis.gone()) throw new Error(`redis-server exited before it was ready:\n${redis.output()}`);
        return /Ready to accept connections/.test(redis.output());
      },
      Date.now() + timeoutMs,
      `redis-server did not say it was ready within ${timeoutMs} ms:\n${redis.output()}`,
    );
  } catch (e) {
    await redis.stop();
    throw e;
  }
  return { url: `redis://127.0.0.1:${port}`, port, pid: redis.child.pid, stop: redis.stop, log: redis.output };
}

/** `text` with the one occurrence of `from` replaced by `to`. */
function swapOnce(text, from, to, file) {
  const count = text.split(from).length - 1;
  if (count !== 1) throw new Error(`${file} contains \`${from}\` ${count} times, not once`);
  return text.replace(from, () => to);
}

/** The node addresses as scripts/nginx/cluster.conf writes them, in order. */
const CONF_WS_PORTS = [40132, 40133, 40134];
const CONF_HTTP_PORTS = [8080, 8081, 8082];

/**
 * Starts nginx with the cluster config at `confPath` in front of the nodes'
 * `wsPorts` and `httpPorts` (three each, in the same order), on a free port.
 * Returns { url: "http://127.0.0.1:PORT/", port, stop(), log() }.
 */
export async function startClusterNginx({ confPath, wsPorts, httpPorts, timeoutMs }) {
  if (wsPorts.length !== CONF_WS_PORTS.length || httpPorts.length !== CONF_HTTP_PORTS.length) {
    throw new Error(`${confPath} lists ${CONF_WS_PORTS.length} nodes`);
  }
  const port = await freePort();
  const file = path.basename(confPath);
  let conf = await readFile(confPath, "utf8");
  conf = swapOnce(conf, "listen 80;", `listen 127.0.0.1:${port};`, file);
  CONF_WS_PORTS.forEach((from, i) => {
    conf = swapOnce(conf, `server 127.0.0.1:${from} `, `server 127.0.0.1:${wsPorts[i]} `, file);
  });
  CONF_HTTP_PORTS.forEach((from, i) => {
    conf = swapOnce(conf, `server 127.0.0.1:${from} `, `server 127.0.0.1:${httpPorts[i]} `, file);
  });
  const dir = await mkdtemp(path.join(os.tmpdir(), "tickcast-nginx-cluster-"));
  await writeFile(path.join(dir, file), conf);
  const args = await writeMainConf(dir, file, 256);
  const nginx = startChild(NGINX, args, dir);
  const log = async () => nginx.output() + (await readFile(path.join(dir, "error.log"), "utf8").catch(() => ""));
  try {
    // nginx has no readiness signal but the listening socket itself.
    await poll(
      async () => {
        if (nginx.gone()) throw new Error("nginx exited before listening");
        return acceptsOn(port);
      },
      Date.now() + timeoutMs,
      `nginx not listening on ${port} within ${timeoutMs} ms`,
    );
  } catch (e) {
    const text = await log();
    await nginx.stop();
    throw new Error(`${e.message}\n${text}`);
  }
  return { url: `http://127.0.0.1:${port}/`, port, stop: nginx.stop, log };
}
