/**
 * Where druvaa's files live by default: config in /etc/druvaa, state in /var/lib/druvaa (Linux
 * and other Unix); on Windows both in %ProgramData%\druvaa (ROLE.toml beside the ROLE\ state
 * folder), as the MSI lays them out. The packages install their default configs here. The roles'
 * own state directory default is resolveStateDir (src/roles/common.ts): /var/lib/druvaa/ROLE as
 * root, %ProgramData%\druvaa\ROLE on Windows.
 */
import { join, win32 } from "node:path";
import type { ConfigRole } from "./roles.ts";

function programData(): string {
  return process.env.ProgramData ?? process.env.PROGRAMDATA ?? "C:\\ProgramData";
}

/** The directory of the packaged config files. */
export function defaultConfigDir(platform: NodeJS.Platform = process.platform): string {
  return platform === "win32" ? win32.join(programData(), "druvaa") : "/etc/druvaa";
}

/** The state directory root (a role keeps its state in ROLE/ under it). */
export function defaultStateRoot(platform: NodeJS.Platform = process.platform): string {
  return platform === "win32" ? win32.join(programData(), "druvaa") : "/var/lib/druvaa";
}

/** A role's packaged config file; the client has one per protected volume (client/NAME.toml). */
export function defaultConfigPath(role: ConfigRole, name = "NAME", platform: NodeJS.Platform = process.platform): string {
  const dir = defaultConfigDir(platform);
  const pathJoin = platform === "win32" ? win32.join : join;
  return role === "client" ? pathJoin(dir, "client", `${name}.toml`) : pathJoin(dir, `${role}.toml`);
}
