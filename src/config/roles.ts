/**
 * The roles a config file can be for, and what the checks need to know about each beyond its
 * flags (which come from the command's own definition): which flags may repeat, which addresses
 * it listens on or dials (parsed with the role's own parser and default port, so `config check`
 * agrees with the role), and which paths must exist before it starts.
 */
import type { CommandDef } from "citty";
import { replicaControlPortDefault, replicaDataPortDefault, replicaRestorePortDefault, stagingControlPortDefault, stagingDataPortDefault } from "../constants.ts";
import { parseAddress, type Address } from "../io/address.ts";
import { parseListenAddress } from "../nbd/server.ts";
import { parseServeAddress } from "../roles/common.ts";
import { panelPortDefault } from "../roles/panel/constants.ts";

export const configRoles = ["staging", "replica", "client", "agent", "panel"] as const;
export type ConfigRole = (typeof configRoles)[number];

export function isConfigRole(text: string): text is ConfigRole {
  return (configRoles as readonly string[]).includes(text);
}

/** The client's control port (attach and agent): no constant of its own yet. */
const clientControlPortDefault = 6007;

/** An address flag: how the role reads it, and whether it listens there (ports may clash) or dials. */
export interface AddressFlag {
  flag: string;
  /** NAME=ADDRESS (staging's --replica): the address is after the first '='. */
  named?: boolean;
  listens: boolean;
  parse(text: string): Address;
}

/** A path flag that must name something that exists when the role starts. */
export interface PathFlag {
  flag: string;
  /** path: the value; named: NAME=PATH; named-list: NAME=PATH[,PATH...]. */
  form: "path" | "named" | "named-list";
  /** exists: the path itself; parent: its parent directory (the role creates the rest). */
  need: "exists" | "parent";
  what: string;
  hint(path: string): string;
}

export interface RoleSpec {
  role: ConfigRole;
  /** The command after `druvaa`. */
  command: readonly string[];
  load(): Promise<CommandDef<any>>;
  /** Flags read with repeatedFlag(): an array in the file, and the command line's list replaces it whole. */
  repeatable: readonly string[];
  addresses: readonly AddressFlag[];
  paths: readonly PathFlag[];
}

const tlsPaths: PathFlag[] = (["tls-cert", "tls-key", "tls-ca", "crl"] as const).map((flag) => ({
  flag,
  form: "path",
  need: "exists",
  what: flag === "crl" ? "revocation list" : flag === "tls-ca" ? "CA certificate" : flag === "tls-key" ? "private key" : "certificate",
  hint: () => (flag === "tls-ca" || flag === "crl" ? "Copy it from the CA (druvaa admin ca init made ca.pem and crl.pem)" : "Issue one with: druvaa admin cert issue --role ROLE --name NAME --out DIR"),
}));

const stateDirPath: PathFlag = { flag: "state-dir", form: "path", need: "parent", what: "state directory", hint: (path) => `Create its parent directory: mkdir -p ${parentOf(path)}` };

export function parentOf(path: string): string {
  const trimmed = path.replace(/[\\/]+$/, "");
  const index = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"));
  return index < 0 ? "." : index === 0 ? trimmed.slice(0, 1) : trimmed.slice(0, index);
}

const deviceHint = (path: string) => (path.startsWith("/dev/") ? "Check the device name with: lsblk" : `Check the path, or create an image file: truncate -s 1G ${path}`);

export const roleSpecs: Record<ConfigRole, RoleSpec> = {
  staging: {
    role: "staging",
    command: ["staging", "serve"],
    load: () => import("../roles/staging/serve-command.ts").then((m) => m.default),
    repeatable: ["wrl", "replica", "rate-limit", "schedule", "rpo"],
    addresses: [
      { flag: "listen", listens: true, parse: (text) => parseServeAddress(text, stagingDataPortDefault) },
      { flag: "control", listens: true, parse: (text) => parseServeAddress(text, stagingControlPortDefault) },
      { flag: "replica", named: true, listens: false, parse: (text) => parseAddress(text, replicaDataPortDefault) },
    ],
    paths: [
      { flag: "wrl", form: "named-list", need: "exists", what: "WRL", hint: (path) => `Create the write log with: druvaa wrl create --primary ${path}` },
      { flag: "encrypt-at-rest", form: "path", need: "exists", what: "WRL key file", hint: () => "Give the key file the WRLs were created with (druvaa wrl create --encrypt-at-rest KEYFILE)" },
      stateDirPath,
      ...tlsPaths,
    ],
  },
  replica: {
    role: "replica",
    command: ["replica", "apply"],
    load: () => import("../roles/replica/apply-command.ts").then((m) => m.default),
    repeatable: ["device", "await-seed"],
    addresses: [
      { flag: "listen", listens: true, parse: (text) => parseServeAddress(text, replicaDataPortDefault) },
      { flag: "control", listens: true, parse: (text) => parseServeAddress(text, replicaControlPortDefault) },
      { flag: "restore", listens: true, parse: (text) => parseServeAddress(text, replicaRestorePortDefault) },
    ],
    paths: [
      { flag: "device", form: "named", need: "exists", what: "replica device", hint: deviceHint },
      { flag: "wrl", form: "path", need: "exists", what: "replica WRL", hint: (path) => `Create it with: druvaa wrl create --primary ${path} --size SIZE` },
      stateDirPath,
      ...tlsPaths,
    ],
  },
  client: {
    role: "client",
    command: ["client", "attach"],
    load: () => import("../roles/client/attach.ts").then((m) => m.default),
    repeatable: ["device"],
    addresses: [
      { flag: "export", listens: true, parse: parseListenAddress },
      { flag: "control", listens: true, parse: (text) => parseAddress(text, clientControlPortDefault) },
      { flag: "control-socket", listens: true, parse: (text) => ({ kind: "unix", path: text }) },
      { flag: "staging", listens: false, parse: (text) => parseAddress(text, stagingDataPortDefault) },
    ],
    paths: [
      { flag: "device", form: "named", need: "exists", what: "device", hint: deviceHint },
      { flag: "changemap", form: "path", need: "exists", what: "change map", hint: (path) => `Create it with: druvaa changemap create ${path} --region NAME=SIZE` },
      stateDirPath,
      ...tlsPaths,
    ],
  },
  agent: {
    role: "agent",
    command: ["client", "agent"],
    load: () => import("../roles/client/agent.ts").then((m) => m.default),
    repeatable: [],
    addresses: [{ flag: "control", listens: true, parse: (text) => parseAddress(text, clientControlPortDefault) }],
    paths: [
      stateDirPath,
      ...tlsPaths,
      ...(["job-tls-cert", "job-tls-key"] as const).map((flag): PathFlag => ({ flag, form: "path", need: "exists", what: flag === "job-tls-key" ? "job private key" : "job certificate", hint: () => "Issue one with: druvaa admin cert issue --role admin --name HOST-jobs --out DIR" })),
    ],
  },
  panel: {
    role: "panel",
    command: ["panel"],
    load: () => import("../roles/panel/command.ts").then((m) => m.default),
    repeatable: [],
    addresses: [{ flag: "listen", listens: true, parse: (text) => parseServeAddress(text, panelPortDefault) }],
    // --db: the panel creates the database and its directory.
    paths: [...tlsPaths],
  },
};

/** The role a command path runs, if it is a role command ("staging serve" → staging). */
export function roleOfCommand(path: readonly string[]): ConfigRole | undefined {
  const text = path.join(" ");
  return configRoles.find((role) => roleSpecs[role].command.join(" ") === text);
}
