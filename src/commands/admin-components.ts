/**
 * `druvaa admin components` (`dradmin components`): the druvaa components of this host, found by
 * their config files (/etc/druvaa/{staging,replica,agent,panel}.toml and client/NAME.toml, or
 * --config-dir), each with its config's health (`druvaa admin config check`) and its live state:
 * GET /status of its control port (the panel: its listen port answering HTTP).
 *
 *   config file     control port answers       → state
 *   its unit not    (not asked)                → disabled (not counted; only under systemd:
 *   enabled                                      druvaa-ROLE.service, druvaa-client@NAME.service)
 *   still has the   (not asked)                → unconfigured (not counted: the packages install
 *   packaged FILL-IN                             every role's file, a host runs some of them)
 *   has problems    (not asked)                → invalid (exit 1)
 *   ok              its role's status          → up, with a one-line summary
 *   ok              nothing listens / timeout  → down (exit 1)
 *   ok              HTTPS, no --tls-* given    → unknown: give this tool an admin certificate
 *   ok              no control port configured → unknown (client attach without --control)
 * Exit 0 when every component set up is up; 1 otherwise (and when no file is found: 3). For cron and
 * monitoring: `dradmin components --json` prints {ok, configDir, components: [...]}.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { command, jsonFlag, output, setExitCode } from "../cli-support.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import { checkConfigFile, type ConfigCheck } from "../config/load.ts";
import { defaultConfigDir } from "../config/paths.ts";
import { roleSpecs, type ConfigRole } from "../config/roles.ts";
import { formatAddress } from "../io/address.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../roles/link-security.ts";
import type { PreparedTls } from "../tls/transport-tls.ts";
import { fetchStatus, type RoleStatus } from "./status-format.ts";

export interface ComponentHealth {
  file: string;
  role: ConfigRole | null;
  config: { ok: boolean; problems: number };
  /** Where it was asked (HOST:PORT), or null. */
  control: string | null;
  state: "up" | "down" | "invalid" | "unknown" | "unconfigured" | "disabled";
  summary: string;
  error: { code: string; message: string } | null;
}

/** The config files of `dir`, with the role their place says. */
function configFiles(dir: string): { file: string; role: ConfigRole }[] {
  const found: { file: string; role: ConfigRole }[] = [];
  for (const role of ["staging", "replica", "agent", "panel"] as const) {
    const file = join(dir, `${role}.toml`);
    if (statSync(file, { throwIfNoEntry: false })?.isFile()) found.push({ file, role });
  }
  const clients = join(dir, "client");
  if (statSync(clients, { throwIfNoEntry: false })?.isDirectory()) {
    for (const name of readdirSync(clients).filter((entry) => entry.endsWith(".toml")).sort()) found.push({ file: join(clients, name), role: "client" });
  }
  return found;
}

/** The address to ask: the role's control port (the panel: its listen port), a wildcard host asked on loopback. */
function controlOf(check: ConfigCheck, role: ConfigRole): string | null {
  const flag = role === "panel" ? "listen" : "control";
  const values = check.effective.get(flag)?.values;
  const text = Array.isArray(values) ? values[0] : undefined;
  if (text === undefined) return null;
  const address = roleSpecs[role].addresses.find((a) => a.flag === flag)!.parse(text);
  if (address.kind === "tcp" && (address.host === "0.0.0.0" || address.host === "::" || address.host === "")) return formatAddress({ ...address, host: "127.0.0.1" });
  return formatAddress(address);
}

const usesTls = (check: ConfigCheck) => check.effective.has("tls-cert") && check.effective.get("insecure") === undefined;

function summaryOf(status: RoleStatus): string {
  const list = (key: string) => (Array.isArray(status[key]) ? (status[key] as Record<string, unknown>[]) : []);
  const up = `up ${Math.round(status.uptimeSeconds ?? 0)} s`;
  switch (status.role) {
    case "staging":
      return `${up}; WRLs: ${list("wrls").map((w) => `${String(w.name)} ${(((w.fillRatio as number) ?? 0) * 100).toFixed(1)} % full, lag ${Number(w.lagSeconds ?? 0).toFixed(1)} s`).join("; ") || "none"}`;
    case "replica":
      return `${up}; devices: ${list("devices").map((d) => String(d.name)).join(", ") || "none"}`;
    case "client":
      return list("attachments").length > 0 || status.attachments !== undefined
        ? `${up}; attachments: ${list("attachments").map((a) => `${String(a.name)} ${String(a.state)}`).join(", ") || "none"}`
        : `${up}; mode ${String(status.mode ?? "?")}`;
    default:
      return up;
  }
}

/** The packaged default configs mark what the admin must fill in with this. */
const placeholder = "FILL-IN";

/** Whether the component's systemd unit is enabled; undefined where systemd does not run the host. */
function unitEnabled(entry: { file: string; role: ConfigRole }): boolean | undefined {
  if (process.platform !== "linux" || !existsSync("/run/systemd/system") || Bun.which("systemctl") === null) return undefined;
  const unit = entry.role === "client" ? `druvaa-client@${basename(entry.file, ".toml")}.service` : `druvaa-${entry.role}.service`;
  return Bun.spawnSync(["systemctl", "is-enabled", "--quiet", unit], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
}

async function healthOf(entry: { file: string; role: ConfigRole }, tls: PreparedTls | undefined): Promise<ComponentHealth> {
  if (unitEnabled(entry) === false) {
    return { file: entry.file, role: entry.role, config: { ok: false, problems: 0 }, control: null, state: "disabled", summary: "its service is not enabled (systemctl enable --now UNIT)", error: null };
  }
  if (readFileSync(entry.file, "utf8").includes(placeholder)) {
    return { file: entry.file, role: entry.role, config: { ok: false, problems: 0 }, control: null, state: "unconfigured", summary: `not set up: the file still has ${placeholder} values`, error: null };
  }
  let check: ConfigCheck;
  try {
    check = await checkConfigFile(entry.file, { role: entry.role, by: "by its place" });
  } catch (error) {
    const info = error instanceof DruvaaError ? { code: error.code, message: error.message } : { code: "INTERNAL", message: String(error) };
    return { file: entry.file, role: entry.role, config: { ok: false, problems: 1 }, control: null, state: "invalid", summary: info.message, error: info };
  }
  const base = { file: entry.file, role: entry.role, config: { ok: check.ok, problems: check.problems.length } };
  if (!check.ok) return { ...base, control: null, state: "invalid", summary: `${check.problems.length} problem(s): druvaa admin config check ${entry.file}`, error: null };
  const control = controlOf(check, entry.role);
  if (control === null) return { ...base, control, state: "unknown", summary: "no control port configured", error: null };
  if (entry.role === "panel") {
    // Only whether it answers: the page needs no certificate (and proves nothing about the CA).
    try {
      const response = await fetch(`${usesTls(check) ? "https" : "http"}://${control}/`, { signal: AbortSignal.timeout(5_000), tls: { rejectUnauthorized: false } } as RequestInit);
      return { ...base, control, state: "up", summary: `answers HTTP ${response.status}`, error: null };
    } catch (error) {
      return { ...base, control, state: "down", summary: "does not answer", error: { code: "NET_CONNECT_FAILED", message: error instanceof Error ? error.message : String(error) } };
    }
  }
  if (usesTls(check) && tls === undefined) return { ...base, control, state: "unknown", summary: "runs with TLS: give --tls-cert/--tls-key/--tls-ca (an admin certificate)", error: null };
  try {
    const status = await fetchStatus(control, undefined, usesTls(check) ? tls : undefined);
    return { ...base, control, state: "up", summary: summaryOf(status), error: null };
  } catch (error) {
    const info = error instanceof DruvaaError ? { code: error.code, message: error.message } : { code: "INTERNAL", message: String(error) };
    return { ...base, control, state: "down", summary: info.message, error: info };
  }
}

export default command({
  meta: { name: "components", description: "List this host's druvaa components (from their config files) with their config's health and live state" },
  args: {
    "config-dir": { type: "string", valueHint: "DIR", description: `where the config files are (default ${defaultConfigDir()})` },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "dradmin components                                  # exit 0 when every component is up",
    "dradmin components --json | jq '.components[] | select(.state != \"up\")'",
    "druvaa admin components --tls-cert /etc/druvaa/tls/ops.pem --tls-key /etc/druvaa/tls/ops.key --tls-ca /etc/druvaa/tls/ca.pem",
  ],
  async run({ args }) {
    const dir = args["config-dir"] ?? defaultConfigDir();
    const files = configFiles(dir);
    if (files.length === 0) {
      throw new DruvaaError("NO_COMPONENTS", `no druvaa config files in ${dir}`, `Components are found by their config files (staging.toml, replica.toml, agent.toml, panel.toml, client/NAME.toml); give --config-dir DIR if they are elsewhere`, exitCodes.notFound);
    }
    const tls = await resolveControlToolSecurity(args);
    const components = await Promise.all(files.map((entry) => healthOf(entry, tls)));
    const ok = components.every((component) => component.state === "up" || component.state === "unconfigured" || component.state === "disabled");
    if (!ok) setExitCode(exitCodes.failure);
    output(args.json, { ok, configDir: dir, components }, () =>
      components.map((c) => `${c.role ?? "?"}\t${c.state}\t${c.control ?? "-"}\t${c.file}\n\t${c.summary}`).join("\n"));
  },
});
