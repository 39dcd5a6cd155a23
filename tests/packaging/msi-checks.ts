/**
 * The MSI, read with msitools: where every file goes (File → Component → Directory tables), what
 * msiextract unpacks, the Windows services (ServiceInstall, ServiceControl), the configuration
 * components kept on upgrade and uninstall, the WinSW service wrappers and their XML (parsed by
 * Python's xml.etree), and the major-upgrade wiring.
 */
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { nodeWindows, windowsServices } from "./expected.ts";
import { must, sh, type Built, testTimeoutMs } from "./fixture.ts";

type Row = Record<string, string>;

/** `msiinfo export` output: header, types, table line, then tab-separated rows. */
async function table(msi: string, name: string): Promise<Row[]> {
  const lines = (await must(["msiinfo", "export", msi, name])).replace(/\r/g, "").split("\n").filter((l) => l !== "");
  const columns = lines[0]!.split("\t");
  return lines.slice(3).map((line) => Object.fromEntries(line.split("\t").map((value, i) => [columns[i]!, value])));
}

/** winsw.exe as node-windows ships it, fetched here on its own (not through packaging/lib/winsw.ts). */
async function nodeWindowsWinsw(dir: string): Promise<{ exe: Buffer; exeConfig: Buffer }> {
  const out = join(dir, "node-windows");
  mkdirSync(out, { recursive: true });
  await must(["npm", "pack", nodeWindows.spec, "--pack-destination", out, "--prefer-offline", "--ignore-scripts", "--silent"]);
  const tarball = readFileSync(join(out, "node-windows-0.1.14.tgz"));
  expect(`sha512-${createHash("sha512").update(tarball).digest("base64")}`).toBe(nodeWindows.integrity);
  await must(["tar", "-xzf", join(out, "node-windows-0.1.14.tgz"), "-C", out]);
  return { exe: readFileSync(join(out, "package/bin/winsw/winsw.exe")), exeConfig: readFileSync(join(out, "package/bin/winsw/winsw.exe.config")) };
}

type ServiceXml = { root: string; text: Record<string, string>; attributes: Record<string, Record<string, string>>; log: Record<string, string> };

/** A WinSW XML file as Python's XML parser reads it: each child of the root, its text and attributes. */
async function parseServiceXml(path: string): Promise<ServiceXml> {
  const script = [
    "import json, sys, xml.etree.ElementTree as ET",
    "root = ET.parse(sys.argv[1]).getroot()",
    "log = root.find('log')",
    "print(json.dumps({'root': root.tag, 'text': {c.tag: (c.text or '').strip() for c in root}, 'attributes': {c.tag: c.attrib for c in root},",
    "  'log': {c.tag: c.text for c in (log if log is not None else [])}}))",
  ].join("\n");
  return JSON.parse(await must(["python3", "-c", script, path])) as ServiceXml;
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
      ...windowsServices.flatMap((s) => ["exe", "exe.config", "xml"].map((ext) => `ProgramFiles64Folder\\druvaa\\${s.name}-service.${ext}`)),
    ].sort());
    const folders = (await table(msi, "CreateFolder")).map((r) => pathOf(r.Directory_!)).sort();
    expect(folders).toEqual(["client", "", "logs", "panel", "replica", "staging", "tls"].map((d) => `CommonAppDataFolder\\druvaa${d ? `\\${d}` : ""}`).sort());
  }, testTimeoutMs);

  test("msiextract unpacks the Windows binary, the alias shims, the service wrappers and the default configs", async () => {
    const built = get();
    const out = join(built.dir, "msi-extracted");
    const listed = (await must(["msiextract", "-C", out, built.msi])).trim().split("\n").sort();
    const wrappers = windowsServices.flatMap((s) => ["exe", "exe.config", "xml"].map((ext) => `druvaa/${s.name}-service.${ext}`));
    expect(listed).toEqual(["druvaa/agent.toml", "druvaa/client/example.toml", "druvaa/dradmin.cmd", "druvaa/drresync.cmd", "druvaa/drrestore.cmd", "druvaa/druvaa.exe", "druvaa/panel.toml", "druvaa/replica.toml", "druvaa/staging.toml", ...wrappers].sort());
    const exe = readFileSync(join(out, "druvaa/druvaa.exe"));
    expect(exe.subarray(0, 2).toString("latin1")).toBe("MZ"); // a PE executable ...
    expect(exe.length).toBe(statSync(join(built.binDir, "druvaa-windows-x64.exe")).size); // ... the one built
    for (const [alias, command] of [["drresync", "resync"], ["drrestore", "restore"], ["dradmin", "admin"]]) {
      const shim = readFileSync(join(out, `druvaa/${alias}.cmd`), "utf8");
      expect(shim).toContain(`@"%~dp0druvaa.exe" ${command} %*\r\n`);
      expect(shim).toContain("@exit /b %errorlevel%");
    }
    // The configs in the Windows layout: no Linux path or Unix socket left, every key still a flag of
    // its command (the packaged `config check` finds only the paths missing here, and the FILL-INs).
    const linuxBinary = join(built.binDir, "druvaa-linux-x64");
    for (const name of ["staging", "replica", "panel", "agent", "client/example"]) {
      const text = readFileSync(join(out, `druvaa/${name}.toml`), "utf8");
      const values = text.split("\n").filter((line) => /^[a-z-]+ = /.test(line)).join("\n");
      expect({ name, linux: values.match(/\/etc\/|\/var\/lib|\/dev\/|unix:/g) ?? [] }).toEqual({ name, linux: [] });
      expect(values).toContain("C:/ProgramData/druvaa/");
      const check = JSON.parse((await sh([linuxBinary, "admin", "config", "check", join(out, `druvaa/${name}.toml`), "--json"])).stdout) as { problems: { code: string; message: string }[] };
      expect({ name, codes: [...new Set(check.problems.map((p) => p.code))] }).toEqual({ name, codes: ["CONFIG_MISSING_PATH"] });
      expect(check.problems.some((p) => p.message.includes("FILL-IN"))).toBe(true);
    }
  }, testTimeoutMs);

  test("the MSI registers the roles as Windows services run by their WinSW wrapper: manual start, LocalSystem, stopped and removed on uninstall", async () => {
    const msi = get().msi;
    const files = new Map((await table(msi, "File")).map((r) => [r.File!, r]));
    const components = new Map((await table(msi, "Component")).map((r) => [r.Component!, r]));
    const installDir = components.get(files.get("DruvaaExe")!.Component_!)!.Directory_;
    // A ServiceInstall row has no image path: Windows Installer runs its component's key file.
    const services = (await table(msi, "ServiceInstall")).map((r) => {
      const component = components.get(r.Component_!)!;
      const keyFile = files.get(component.KeyPath!)!;
      return { name: r.Name, type: r.ServiceType, start: r.StartType, errorControl: r.ErrorControl, account: r.StartName, arguments: r.Arguments, image: `${component.Directory_}\\${keyFile.FileName!.split("|").pop()}` };
    });
    const expected = windowsServices.map(({ name }) => ({
      name,
      type: "16", // SERVICE_WIN32_OWN_PROCESS
      start: "3", // SERVICE_DEMAND_START: not started until configured
      errorControl: "1", // SERVICE_ERROR_NORMAL
      account: "", // LocalSystem
      arguments: "", // WinSW reads the command line from its XML
      image: `${installDir}\\${name}-service.exe`,
    }));
    expect(services.sort((a, b) => a.name!.localeCompare(b.name!))).toEqual(expected.sort((a, b) => a.name.localeCompare(b.name)));
    const controls = await table(msi, "ServiceControl");
    expect(controls.map((r) => r.Name).sort()).toEqual(expected.map((s) => s.name).sort());
    // Event bits: 0x2 stop on install (upgrade), 0x20 stop on uninstall, 0x80 delete on uninstall.
    for (const control of controls) expect(Number(control.Event) & (0x2 | 0x20 | 0x80)).toBe(0x2 | 0x20 | 0x80);
  }, testTimeoutMs);

  test("each service wrapper is node-windows' winsw.exe, and its XML runs the role with the config the MSI installs", async () => {
    const built = get();
    const out = join(built.dir, "msi-wrappers");
    await must(["msiextract", "-C", out, built.msi]);
    const winsw = await nodeWindowsWinsw(built.dir);
    expect({ sizeBytes: winsw.exe.length, sha256: createHash("sha256").update(winsw.exe).digest("hex") }).toEqual({ sizeBytes: nodeWindows.winswSizeBytes, sha256: nodeWindows.winswSha256 });
    const files = await table(built.msi, "File");
    const components = new Map((await table(built.msi, "Component")).map((r) => [r.Component!, r]));
    const directories = new Map((await table(built.msi, "Directory")).map((r) => [r.Directory!, r]));
    for (const { name, command, config } of windowsServices) {
      expect({ name, identical: readFileSync(join(out, `druvaa/${name}-service.exe`)).equals(winsw.exe) }).toEqual({ name, identical: true });
      expect({ name, identical: readFileSync(join(out, `druvaa/${name}-service.exe.config`)).equals(winsw.exeConfig) }).toEqual({ name, identical: true });
      const xml = await parseServiceXml(join(out, `druvaa/${name}-service.xml`));
      expect({ name, root: xml.root, id: xml.text.id, executable: xml.text.executable, arguments: xml.text.arguments }).toEqual({
        name,
        root: "service",
        id: name, // the service name the MSI registers
        executable: "%BASE%\\druvaa.exe", // %BASE%: the wrapper's own folder, where druvaa.exe is
        arguments: `${command} --config "%ProgramData%\\druvaa\\${config}"`,
      });
      // %ProgramData% is CommonAppDataFolder: the MSI installs that very file there.
      const configFile = files.find((f) => f.FileName!.split("|").pop() === config)!;
      const configDir = directories.get(components.get(configFile.Component_!)!.Directory_!)!;
      expect({ config, dir: configDir.DefaultDir!.split("|").pop(), parent: configDir.Directory_Parent }).toEqual({ config, dir: "druvaa", parent: "CommonAppDataFolder" });
      expect({ name, stoptimeout: xml.text.stoptimeout, logpath: xml.text.logpath, log: { mode: xml.attributes.log?.mode, ...xml.log } as Record<string, string | undefined>, onfailure: xml.attributes.onfailure, resetfailure: xml.text.resetfailure }).toEqual({
        name,
        stoptimeout: "30 sec",
        logpath: "%ProgramData%\\druvaa\\logs",
        log: { mode: "roll-by-size", sizeThreshold: "10240", keepFiles: "8" },
        onfailure: { action: "restart", delay: "10 sec" },
        resetfailure: "1 hour",
      });
    }
  }, testTimeoutMs);

  test("the MSI sets each service's restart-on-failure (WinSW applies <onfailure> only in its own install)", async () => {
    const msi = get().msi;
    const componentOf = new Map((await table(msi, "ServiceInstall")).map((r) => [r.Name!, r.Component_!]));
    const rows = (await table(msi, "MsiServiceConfigFailureActions")).map((r) => ({ name: r.Name, onInstall: (Number(r.Event) & 1) === 1, resetSeconds: r.ResetPeriod, actions: r.Actions, delaysMs: r.DelayActions, component: r.Component_ }));
    // restart (1) after 10 s, as the XML's <onfailure action="restart" delay="10 sec"/>; counts reset after <resetfailure>1 hour.
    const expected = windowsServices.map(({ name }) => ({ name, onInstall: true, resetSeconds: "3600", actions: "1", delaysMs: "10000", component: componentOf.get(name) }));
    expect(rows.sort((a, b) => a.name!.localeCompare(b.name!))).toEqual(expected.sort((a, b) => a.name.localeCompare(b.name)));
    const sequence = new Map((await table(msi, "InstallExecuteSequence")).map((r) => [r.Action!, Number(r.Sequence)]));
    expect(sequence.get("MsiConfigureServices")).toBeGreaterThan(sequence.get("InstallServices")!);
    expect(sequence.get("MsiConfigureServices")).toBeLessThan(sequence.get("StartServices")!);
  }, testTimeoutMs);

  test("MSI configuration components are Permanent and NeverOverwrite; data and log folders Permanent", async () => {
    const components = new Map((await table(get().msi, "Component")).map((r) => [r.Component!, Number(r.Attributes)]));
    for (const name of ["ConfigStaging", "ConfigReplica", "ConfigPanel", "ConfigAgent", "ConfigClientExample"]) {
      expect({ name, attributes: components.get(name) }).toEqual({ name, attributes: win64 | permanent | neverOverwrite });
    }
    for (const name of ["DataDir", "StagingDir", "ReplicaDir", "PanelDir", "ClientDir", "TlsDir", "LogsDir"]) {
      expect({ name, attributes: components.get(name) }).toEqual({ name, attributes: win64 | permanent });
    }
    expect(components.get("Binary")).toBe(win64); // the binary itself is replaced and removed
    for (const name of ["ServiceStaging", "ServiceReplica", "ServicePanel", "ServiceAgent"]) expect({ name, attributes: components.get(name) }).toEqual({ name, attributes: win64 }); // so are the wrappers
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
