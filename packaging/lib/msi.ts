/**
 * Builds druvaa-VERSION-x64.msi with msitools' wixl from packaging/msi/druvaa.wxs.in, then marks
 * the configuration components Permanent + NeverOverwrite and the data folders Permanent with
 * msibuild (wixl does not know these attributes): an upgrade never overwrites a configuration
 * file that exists, and uninstall removes neither configuration nor data folders. The services
 * run under WinSW (lib/winsw.ts, msi/druvaa-ROLE-service.xml); their restart-on-failure is added
 * with msibuild too.
 */
import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./run.ts";
import { windowsConfig } from "./windows-config.ts";
import { fetchWinsw } from "./winsw.ts";

/** Windows Installer component attributes (msidbComponentAttributes*). */
export const componentAttributes = { win64: 256, permanent: 16, neverOverwrite: 128 } as const;
export const msiConfigComponents = ["ConfigStaging", "ConfigReplica", "ConfigPanel", "ConfigAgent", "ConfigClientExample"] as const;
export const msiFolderComponents = ["DataDir", "StagingDir", "ReplicaDir", "PanelDir", "ClientDir", "TlsDir", "LogsDir"] as const;
/** The Windows services: each runs under its own copy of WinSW, NAME-service.exe beside NAME-service.xml. */
export const msiServices = [
  { name: "druvaa-staging", component: "ServiceStaging" },
  { name: "druvaa-replica", component: "ServiceReplica" },
  { name: "druvaa-panel", component: "ServicePanel" },
  { name: "druvaa-agent", component: "ServiceAgent" },
] as const;
/**
 * What the services' `<onfailure action="restart" delay="10 sec"/>` and `<resetfailure>1 hour`
 * mean, for the MsiServiceConfigFailureActions table: WinSW applies those two only in its own
 * `install` command, and here the MSI registers the services, so the MSI sets them (Windows
 * Installer 5.0, MsiConfigureServices). Actions: 1 = restart; the last action repeats.
 */
export const serviceFailureActions = { actions: "1", delayActionsMs: "10000", resetPeriodSeconds: 3600 } as const;
/** msidbServiceConfigEventInstall | msidbServiceConfigEventReinstall. */
const serviceConfigEvents = 1 | 4;

export type MsiInputs = { binary: string; version: string; packagingDir: string; workDir: string; outDir: string };

/** MSI ProductVersion is numeric major.minor.build: 0.2.0-rc1 becomes 0.2.0. */
export function msiVersion(version: string): string {
  const numeric = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!numeric) throw new Error(`version "${version}" does not start with MAJOR.MINOR.PATCH`);
  return numeric.slice(1, 4).join(".");
}

export async function buildMsi(inputs: MsiInputs): Promise<string> {
  // wixl resolves Source paths relative to its working directory: stage everything there.
  const dir = join(inputs.workDir, "msi");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(inputs.binary, join(dir, "druvaa.exe"));
  cpSync(join(inputs.packagingDir, "config"), join(dir, "config"), { recursive: true });
  for (const file of ["staging.toml", "replica.toml", "panel.toml", "agent.toml", join("client", "example.toml")]) {
    const path = join(dir, "config", file);
    writeFileSync(path, windowsConfig(readFileSync(path, "utf8")));
  }
  for (const alias of ["drresync", "drrestore", "dradmin"]) copyFileSync(join(inputs.packagingDir, "msi", `${alias}.cmd`), join(dir, `${alias}.cmd`));
  const winsw = await fetchWinsw(inputs.workDir);
  copyFileSync(winsw.exe, join(dir, "winsw.exe"));
  copyFileSync(winsw.exeConfig, join(dir, "winsw.exe.config"));
  for (const { name } of msiServices) copyFileSync(join(inputs.packagingDir, "msi", `${name}-service.xml`), join(dir, `${name}-service.xml`));
  const wxs = readFileSync(join(inputs.packagingDir, "msi", "druvaa.wxs.in"), "utf8")
    .replaceAll("@VERSION@", msiVersion(inputs.version))
    .replace("@BINARY@", "druvaa.exe")
    .replaceAll("@MSIDIR@/", "")
    .replaceAll("@CONFIGDIR@", "config");
  writeFileSync(join(dir, "druvaa.wxs"), wxs);

  mkdirSync(inputs.outDir, { recursive: true });
  const out = join(inputs.outDir, `druvaa-${inputs.version}-x64.msi`);
  const { stderr: warnings } = await run(["wixl", "--arch", "x64", "--output", out, "druvaa.wxs"], { cwd: dir });
  if (/WARNING|CRITICAL/.test(warnings)) throw new Error(`wixl warned (an attribute it ignores is a bug in the template):\n${warnings}`);
  const { win64, permanent, neverOverwrite } = componentAttributes;
  const queries = [
    ...msiConfigComponents.map((c) => `UPDATE Component SET Attributes = ${win64 | permanent | neverOverwrite} WHERE Component = '${c}'`),
    ...msiFolderComponents.map((c) => `UPDATE Component SET Attributes = ${win64 | permanent} WHERE Component = '${c}'`),
  ];
  for (const query of [...queries, ...failureActionQueries()]) await run(["msibuild", out, "-q", query]);
  rmSync(dir, { recursive: true, force: true });
  return out;
}

/** The MsiServiceConfigFailureActions table (wixl knows neither it nor util:ServiceConfig) and its action. */
function failureActionQueries(): string[] {
  const { actions, delayActionsMs, resetPeriodSeconds } = serviceFailureActions;
  return [
    "CREATE TABLE `MsiServiceConfigFailureActions` (`MsiServiceConfigFailureActions` CHAR(72) NOT NULL, `Name` CHAR(255) NOT NULL, `Event` SHORT NOT NULL, " +
      "`ResetPeriod` LONG, `RebootMessage` CHAR(255) LOCALIZABLE, `Command` CHAR(255) LOCALIZABLE, `Actions` CHAR(255), `DelayActions` CHAR(255), " +
      "`Component_` CHAR(72) NOT NULL PRIMARY KEY `MsiServiceConfigFailureActions`)",
    ...msiServices.map(({ name, component }) =>
      "INSERT INTO `MsiServiceConfigFailureActions` (`MsiServiceConfigFailureActions`, `Name`, `Event`, `ResetPeriod`, `Actions`, `DelayActions`, `Component_`) " +
      `VALUES ('${component}Failure', '${name}', ${serviceConfigEvents}, ${resetPeriodSeconds}, '${actions}', '${delayActionsMs}', '${component}')`),
    // After InstallServices (5800), before StartServices (5900), as the Windows Installer documents it.
    "INSERT INTO `InstallExecuteSequence` (`Action`, `Condition`, `Sequence`) VALUES ('MsiConfigureServices', 'VersionNT >= 600', 5850)",
  ];
}
