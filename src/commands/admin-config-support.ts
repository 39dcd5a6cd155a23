/**
 * What `druvaa admin config check` and `show` share: the FILE / --role arguments, and finding the
 * file and its role from them (a role alone means its packaged file, /etc/druvaa/ROLE.toml).
 */
import { usageError } from "../errors.ts";
import { jsonFlag } from "../cli-support.ts";
import { checkConfigFile, type ConfigCheck } from "../config/load.ts";
import { defaultConfigPath } from "../config/paths.ts";
import { configRoles, isConfigRole, type ConfigRole } from "../config/roles.ts";

export const configFileArgs = {
  file: { type: "positional", required: false, description: "the config file (TOML); default with --role: the role's packaged file, e.g. /etc/druvaa/staging.toml" },
  role: { type: "string", valueHint: configRoles.join("|"), description: "the role the file is for, when it has no role = \"...\" key (if it has one, they must match)" },
  json: jsonFlag,
} as const;

/** Checks the file named by FILE / --role. */
export async function checkNamedFile(args: { file?: string | undefined; role?: string | undefined }): Promise<ConfigCheck> {
  let role: ConfigRole | undefined;
  if (args.role !== undefined) {
    if (!isConfigRole(args.role)) throw usageError(`--role ${args.role}: not a role`, `Roles: ${configRoles.join(", ")}`);
    role = args.role;
  }
  let file = args.file;
  if (file === undefined) {
    if (role === undefined || role === "client") throw usageError(role === "client" ? "a client has one config file per volume: give FILE" : "give FILE (or --role ROLE for its packaged file)", `e.g. druvaa admin config check ${defaultConfigPath(role ?? "staging")}`);
    file = defaultConfigPath(role);
  }
  return checkConfigFile(file, role === undefined ? {} : { role, by: `as --role ${role}` });
}

/** How a command line is typed in a shell (single quotes where needed). */
export function shellLine(words: readonly string[]): string {
  return words.map((word) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`)).join(" ");
}
