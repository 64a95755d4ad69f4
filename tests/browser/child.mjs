// The helper processes the browser test starts besides tickcast (nginx,
// redis-server): each runs in the foreground as our child, stop() ends it by
// its PID and removes its temporary folder, and `running` holds every one not
// yet exited, for e2e.mjs's last-resort watchdog.

import { spawn } from "node:child_process";
import { rm } from "node:fs/promises";

/** Every helper process started here that has not exited yet. */
export const running = new Set();

/**
 * Starts `command` in the foreground, as a child that stop() ends by its PID
 * (with `signal`, then SIGKILL after 5 s), removing `dir` afterwards;
 * `output()` is everything it wrote so far.
 */
export function startChild(command, args, dir, { cwd = dir } = {}) {
  const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (s) => (output += s));
  child.stderr.setEncoding("utf8").on("data", (s) => (output += s));
  let gone = false;
  const exited = new Promise((resolve) => {
    child.on("exit", () => resolve((gone = true)));
    child.on("error", (e) => {
      output += `cannot start ${command}: ${e.message}\n`;
      resolve((gone = true));
    });
  });
  exited.then(() => running.delete(child));
  const stop = async ({ signal = "SIGTERM" } = {}) => {
    if (!gone) {
      child.kill(signal);
      const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  return { child, output: () => output, gone: () => gone, exited, stop };
}
