/**
 * The MSI, read with msitools: where every file goes (File → Component → Directory tables), what
 * msiextract unpacks, the Windows services (ServiceInstall, ServiceControl), the configuration
 * components kept on upgrade and uninstall, and the major-upgrade wiring.
 */
import { expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { must, type Built, testTimeoutMs } from "./fixture.ts";

type Row = Record<string, string>;

/** `msiinfo export` output: header, types, table line, then tab-separated rows. */
async function table(msi: string, name: string): Promise<Row[]> {
  const lines = (await must(["msiinfo", "export", msi, name])).replace(/\r/g, "").split("\n").filter((l) => l !== "");
  const columns = lines[0]!.split("\t");
  return lines.slice(3).map((line) => Object.fromEntries(line.split("\t").map((value, i) => [columns[i]!, value])));
}

/** Windows Installer component attributes. */
const win64 = 256;
const permanent = 16;
const neverOverwrite = 128;

export function msiTests(get: () => Built): void {
  test("msiinfo: every file's install path, from the File, Component and Directory tables", async () => {
    const msi = get().msi;
    const tables = (await must(["msiinfo", "tables", msi])).split("\n").map((t) => t.trim());
    expect(tables).toEqual(expect.arrayContaining(["File", "Component", "Directory", "ServiceInstall", "ServiceControl", "Upgrade", "CreateFolder"]));
    const directories = new Map((await table(msi, "Directory")).map((r) => [r.Directory!, r]));
    const pathOf = (id: string): string => {
      const row = directories.get(id)!;
      const name = row.DefaultDir!.split("|").pop()!;
      if (!row.Directory_Parent || id === "ProgramFiles64Folder" || id === "CommonAppDataFolder") return id;
      return `${pathOf(row.Directory_Parent)}\\${name}`;
    };
    const components = new Map((await table(msi, "Component")).map((r) => [r.Component!, r]));
    const installed = (await table(msi, "File")).map((f) => `${pathOf(components.get(f.Component_!)!.Directory_!)}\\${f.FileName!.split("|").pop()}`);
    expect(installed.sort()).toEqual([
      "CommonAppDataFolder\\druvaa\\agent.toml",
      "CommonAppDataFolder\\druvaa\\client\\example.toml",
      "CommonAppDataFolder\\druvaa\\panel.toml",
      "CommonAppDataFolder\\druvaa\\replica.toml",
      "CommonAppDataFolder\\druvaa\\staging.toml",
      "ProgramFiles64Folder\\druvaa\\dradmin.cmd",
      "ProgramFiles64Folder\\druvaa\\drresync.cmd",
      "ProgramFiles64Folder\\druvaa\\drrestore.cmd",
      "ProgramFiles64Folder\\druvaa\\druvaa.exe",
    ].sort());
    const folders = (await table(msi, "CreateFolder")).map((r) => pathOf(r.Directory_!)).sort();
    expect(folders).toEqual(["client", "", "panel", "replica", "staging", "tls"].map((d) => `CommonAppDataFolder\\druvaa${d ? `\\${d}` : ""}`).sort());
  }, testTimeoutMs);

  test("msiextract unpacks the Windows binary, the alias shims and the default configs", async () => {
    const built = get();
    const out = join(built.dir, "msi-extracted");
    const listed = (await must(["msiextract", "-C", out, built.msi])).trim().split("\n").sort();
    expect(listed).toEqual(["druvaa/agent.toml", "druvaa/client/example.toml", "druvaa/dradmin.cmd", "druvaa/drresync.cmd", "druvaa/drrestore.cmd", "druvaa/druvaa.exe", "druvaa/panel.toml", "druvaa/replica.toml", "druvaa/staging.toml"].sort());
    const exe = readFileSync(join(out, "druvaa/druvaa.exe"));
    expect(exe.subarray(0, 2).toString("latin1")).toBe("MZ"); // a PE executable ...
    expect(exe.length).toBe(statSync(join(built.binDir, "druvaa-windows-x64.exe")).size); // ... the one built
    for (const [alias, command] of [["drresync", "resync"], ["drrestore", "restore"], ["dradmin", "admin"]]) {
      const shim = readFileSync(join(out, `druvaa/${alias}.cmd`), "utf8");
      expect(shim).toContain(`@"%~dp0druvaa.exe" ${command} %*\r\n`);
      expect(shim).toContain("@exit /b %errorlevel%");
    }
    expect(readFileSync(join(out, "druvaa/staging.toml"), "utf8")).toBe(readFileSync(join(import.meta.dir, "../../packaging/config/staging.toml"), "utf8"));
  }, testTimeoutMs);

  test("the MSI registers the roles as Windows services: manual start, config from ProgramData, stopped and removed on uninstall", async () => {
    const msi = get().msi;
    const services = (await table(msi, "ServiceInstall")).map((r) => ({ name: r.Name, type: r.ServiceType, start: r.StartType, arguments: r.Arguments, component: r.Component_ }));
    const expected = [
      ["druvaa-staging", "staging serve", "staging.toml"],
      ["druvaa-replica", "replica apply", "replica.toml"],
      ["druvaa-panel", "panel", "panel.toml"],
      ["druvaa-agent", "client agent", "agent.toml"],
    ].map(([name, command, config]) => ({
      name,
      type: "16", // SERVICE_WIN32_OWN_PROCESS
      start: "3", // SERVICE_DEMAND_START: not started until configured
      arguments: `${command} --config "[CommonAppDataFolder]druvaa\\${config}"`,
      component: "Binary",
    }));
    expect(services.sort((a, b) => a.name!.localeCompare(b.name!))).toEqual(expected.sort((a, b) => a.name!.localeCompare(b.name!)));
    const controls = await table(msi, "ServiceControl");
    expect(controls.map((r) => r.Name).sort()).toEqual(expected.map((s) => s.name).sort());
    // Event bits: 0x2 stop on install (upgrade), 0x20 stop on uninstall, 0x80 delete on uninstall.
    for (const control of controls) expect(Number(control.Event) & (0x2 | 0x20 | 0x80)).toBe(0x2 | 0x20 | 0x80);
  }, testTimeoutMs);

  test("MSI configuration components are Permanent and NeverOverwrite; data folders Permanent", async () => {
    const components = new Map((await table(get().msi, "Component")).map((r) => [r.Component!, Number(r.Attributes)]));
    for (const name of ["ConfigStaging", "ConfigReplica", "ConfigPanel", "ConfigAgent", "ConfigClientExample"]) {
      expect({ name, attributes: components.get(name) }).toEqual({ name, attributes: win64 | permanent | neverOverwrite });
    }
    for (const name of ["DataDir", "StagingDir", "ReplicaDir", "PanelDir", "ClientDir", "TlsDir"]) {
      expect({ name, attributes: components.get(name) }).toEqual({ name, attributes: win64 | permanent });
    }
    expect(components.get("Binary")).toBe(win64); // the binary itself is replaced and removed
  }, testTimeoutMs);

  test("MSI major upgrade: fixed UpgradeCode, older versions removed, version from src/version.ts", async () => {
    const built = get();
    const properties = new Map((await table(built.msi, "Property")).map((r) => [r.Property!, r.Value!]));
    expect(properties.get("UpgradeCode")).toBe("{0AC3DA05-461D-4F59-87BC-8B3D58A8683C}");
    expect(properties.get("ProductVersion")).toBe(built.version);
    const upgrade = await table(built.msi, "Upgrade");
    expect(upgrade.find((r) => r.ActionProperty === "WIX_UPGRADE_DETECTED")).toMatchObject({ UpgradeCode: "{0AC3DA05-461D-4F59-87BC-8B3D58A8683C}", VersionMax: built.version });
    const sequence = new Set((await table(built.msi, "InstallExecuteSequence")).map((r) => r.Action));
    for (const action of ["RemoveExistingProducts", "StopServices", "DeleteServices", "InstallServices"]) expect(sequence.has(action)).toBe(true);
    expect(await must(["msiinfo", "suminfo", built.msi])).toContain("Template: x64;1033");
  }, testTimeoutMs);
}
