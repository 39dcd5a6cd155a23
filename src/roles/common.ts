/**
 * What every long-running role (client, staging, replica) shares: node id and state directory
 * defaults, `--device NAME=PATH` parsing, the "ready" line scripts and tests wait for, and
 * graceful shutdown on SIGTERM/SIGINT.
 */
import { hostname, homedir } from "node:os";
import { join, win32 } from "node:path";
import { defaultStateRoot } from "../config/paths.ts";
import { usageError } from "../errors.ts";
import { parseAddress, type Address } from "../io/transport.ts";
import { logger } from "../log.ts";

export type RoleName = "client" | "staging" | "replica" | "panel";

/** Default node id: the host name (what the original product shows in its panel). */
export function defaultNodeId(): string {
  return hostname() || "druvaa";
}

/** `--node-id`, checked like a name, or the host name when not given. */
export function nodeIdFlag(flag: string | undefined): string {
  return flag === undefined ? defaultNodeId() : checkName(flag, "--node-id");
}

/** A serving role's listening address; no host means loopback (not every interface) until TLS exists. */
export function parseServeAddress(text: string, defaultPort: number): Address {
  const address = parseAddress(text, defaultPort);
  return address.kind === "tcp" && address.host === undefined ? { ...address, host: "127.0.0.1" } : address;
}

/** State directory: --state-dir, else $DRUVAA_STATE_DIR/ROLE, else %ProgramData%\druvaa\ROLE on Windows, /var/lib/druvaa/ROLE as root, else ~/.local/state/druvaa/ROLE. */
export function resolveStateDir(flag: string | undefined, role: RoleName): string {
  if (flag) return flag;
  if (process.env.DRUVAA_STATE_DIR) return join(process.env.DRUVAA_STATE_DIR, role);
  if (process.platform === "win32") return win32.join(defaultStateRoot("win32"), role);
  if (process.getuid?.() === 0) return join(defaultStateRoot(), role);
  return join(process.env.XDG_STATE_HOME ?? join(homedir(), ".local/state"), "druvaa", role);
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Checks a device or WRL name: letters, digits, . _ - (used in file names and messages). */
export function checkName(name: string, flag: string): string {
  if (!namePattern.test(name)) throw usageError(`${flag}: "${name}" is not a valid name`, "Use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit");
  return name;
}

/** Parses repeated `NAME=VALUE` flags (e.g. --device disk0=/dev/sdb); names must be unique. */
export function parseNamedValues(values: string[], flag: string, example: string): Map<string, string> {
  const result = new Map<string, string>();
  for (const value of values) {
    const index = value.indexOf("=");
    if (index <= 0 || index === value.length - 1) throw usageError(`${flag} ${value}: expected NAME=VALUE`, `e.g. ${flag} ${example}`);
    const name = checkName(value.slice(0, index), flag);
    if (result.has(name)) throw usageError(`${flag}: "${name}" is given twice`, "Each name may appear once");
    result.set(name, value.slice(index + 1));
  }
  return result;
}

/**
 * Prints the line that tells scripts and tests the role is serving: with --json one JSON object
 * `{"event":"ready","role":…,…addresses}` on stdout, otherwise a human line on stderr.
 */
export function announceReady(json: boolean | undefined, role: RoleName, details: Record<string, unknown>): void {
  if (json) process.stdout.write(`${JSON.stringify({ event: "ready", role, pid: process.pid, ...details })}\n`);
  else logger(role).info(`ready: ${Object.entries(details).map(([k, v]) => `${k} ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ")}`);
}

/**
 * Runs `stop` once on SIGTERM or SIGINT and resolves when it is done; a second signal exits at
 * once. Returns a promise the command awaits, so the process lives until it is told to stop.
 */
export function untilSignalled(role: RoleName, stop: () => Promise<void>): Promise<void> {
  const log = logger(role);
  return new Promise((resolve, reject) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) {
        log.warn(`${signal} again: exiting now`);
        process.exit(130);
      }
      stopping = true;
      log.info(`${signal}: stopping`);
      stop().then(resolve, reject);
    };
    process.on("SIGTERM", () => onSignal("SIGTERM"));
    process.on("SIGINT", () => onSignal("SIGINT"));
  });
}
