// Runs the README's nginx snippet (scripts/nginx/tickcast.conf) in front of a
// running tickcast, for the browser test's TLS check.
//
// The snippet is used as written, with four things swapped for test values: the
// listen port (a free one on 127.0.0.1 instead of 443), the two upstream ports
// (the server's real ones instead of 40132 and 8080) and the certificate paths (a
// self-signed certificate made here with openssl). Each swap must match, so a
// snippet edited out of shape fails the test instead of silently testing less.
//
// nginx runs in the foreground as our child, with every file it writes in a fresh
// temporary folder; stop() ends it by its PID (SIGQUIT or, to cut every
// connection at once, SIGTERM; then SIGKILL).

import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { startChild } from "./child.mjs";

export const NGINX = process.env.NGINX_PATH || "/usr/sbin/nginx";

/** A free TCP port on 127.0.0.1: one the OS hands out, then closed. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts on 127.0.0.1:port; rejects at `deadline`. */
async function waitListening(port, deadline, exited) {
  for (;;) {
    const up = await new Promise((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (up) return;
    if (exited()) throw new Error("nginx exited before listening (see its error log above)");
    if (Date.now() > deadline) throw new Error(`nginx not listening on ${port} in time`);
    // nginx has no readiness signal but the listening socket itself: ask again.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function swap(text, from, to) {
  if (!text.includes(from)) throw new Error(`scripts/nginx/tickcast.conf no longer contains \`${from}\``);
  return text.split(from).join(to);
}

/**
 * Starts nginx with the snippet in front of tickcast's `wsPort` and `httpPort`,
 * on `port` (default: a free one; pass a stopped proxy's port to restart it).
 * Returns { url: "https://localhost:PORT/", port, stop({ fast }), log() }:
 * stop() is nginx's graceful quit, stop({ fast: true }) its fast shutdown, which
 * cuts every open connection at once, as a crashed or restarted proxy does.
 */
/**
 * Writes `dir`/nginx.conf: nginx in the foreground, everything it writes (pid,
 * log, temporary files) inside `dir`, and `include` (a file in `dir`) as its
 * only `http` content. Returns nginx's arguments to run it with.
 */
export async function writeMainConf(dir, include, workerConnections) {
  const temp = (name) => `${name}_temp_path ${path.join(dir, name)};`;
  // As root, nginx's workers would switch to `nobody`, who cannot read our 0700
  // folder; keep them as the user running the test.
  const user = process.getuid && process.getuid() === 0 ? "user root;" : "";
  await writeFile(
    path.join(dir, "nginx.conf"),
    `${user}
daemon off;
worker_processes 1;
pid ${path.join(dir, "nginx.pid")};
error_log ${path.join(dir, "error.log")} warn;
events { worker_connections ${workerConnections}; }
http {
    access_log off;
    ${temp("client_body")} ${temp("proxy")} ${temp("fastcgi")} ${temp("uwsgi")} ${temp("scgi")}
    include ${path.join(dir, include)};
}
`,
  );
  return ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log")];
}

export async function startNginx({ snippetPath, wsPort, httpPort, timeoutMs, port: wanted }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "tickcast-nginx-"));
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
    { stdio: "ignore", timeout: timeoutMs },
  );
  const port = wanted ?? (await freePort());
  let server = await readFile(snippetPath, "utf8");
  server = swap(server, "listen 443 ssl;", `listen 127.0.0.1:${port} ssl;`);
  server = swap(server, "http://127.0.0.1:40132", `http://127.0.0.1:${wsPort}`);
  server = swap(server, "http://127.0.0.1:8080", `http://127.0.0.1:${httpPort}`);
  server = swap(server, "/etc/ssl/certs/tickcast.pem", cert);
  server = swap(server, "/etc/ssl/private/tickcast.key", key);
  await writeFile(path.join(dir, "tickcast.conf"), server);
  const args = await writeMainConf(dir, "tickcast.conf", 64);
  const nginx = startChild(NGINX, args, dir, { cwd: undefined });
  const gone = nginx.gone;
  const log = async () => nginx.output() + (await readFile(path.join(dir, "error.log"), "utf8").catch(() => ""));
  const stop = ({ fast = false } = {}) => nginx.stop({ signal: fast ? "SIGTERM" : "SIGQUIT" });
  try {
    await waitListening(port, Date.now() + timeoutMs, gone);
  } catch (e) {
    const text = await log();
    await stop();
    throw new Error(`${e.message}\n${text}`);
  }
  return { url: `https://localhost:${port}/`, port, stop, log };
}
