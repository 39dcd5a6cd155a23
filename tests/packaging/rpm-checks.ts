/**
 * The RPMs: metadata (every file's mode and owner as rpm records it, %config(noreplace)), the
 * x86_64 package installed into a scratch root (rpm --root) and checked file by file, the aarch64
 * one unpacked with rpm2cpio | cpio, then upgrade and erase keeping configuration and data.
 */
import { expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkTree, configFiles, expectedTree, modeOf } from "./expected.ts";
import { elfMachine, must, rpmIn, rpmQuery, scratchRoot, sh, type Built, testTimeoutMs } from "./fixture.ts";

const zshDir = "/usr/share/zsh/site-functions";
/** rpm's own database and the scratch root's account files are not package contents. */
const ignore = (path: string) => path.startsWith("/var/lib/rpm") || path.startsWith("/etc/passwd") || path.startsWith("/etc/group") || path.startsWith("/etc/shadow") || path.startsWith("/etc/gshadow") || path === "/usr/lib/sysimage";

export function rpmTests(get: () => Built): void {
  test("rpm metadata: name, version, arch; every file with its mode and owner; configs noreplace", async () => {
    const built = get();
    for (const [arch, path] of [["x86_64", built.rpm.x64], ["aarch64", built.rpm.arm64]] as const) {
      expect((await must(["rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}", path])).trim()).toBe(`druvaa ${built.version}-1 ${arch}`);
      // -qplv: "-rwxr-xr-x 1 root root 111167664 Dec  5 12:18 /usr/bin/druvaa"
      const listed = new Map<string, { perms: string; owner: string; group: string; target?: string }>();
      for (const line of (await must(["rpm", "-qplv", path])).trim().split("\n")) {
        const fields = line.split(/\s+/);
        const arrow = fields.indexOf("->");
        const pathField = arrow >= 0 ? fields[arrow - 1]! : fields.at(-1)!;
        const entry: { perms: string; owner: string; group: string; target?: string } = { perms: fields[0]!, owner: fields[2]!, group: fields[3]! };
        if (arrow >= 0) entry.target = fields[arrow + 1]!;
        listed.set(pathField, entry);
      }
      const problems: string[] = [];
      for (const e of expectedTree(zshDir)) {
        const got = listed.get(e.path);
        listed.delete(e.path);
        if (got === undefined) problems.push(`${e.path}: not in the package`);
        else if (e.kind === "link") {
          if (!got.perms.startsWith("l") || got.target !== e.target) problems.push(`${e.path}: ${got.perms} -> ${got.target}, not a link to ${e.target}`);
        } else if (modeOf(got.perms) !== e.mode || got.owner !== e.owner || got.group !== e.group || got.perms[0] !== (e.kind === "dir" ? "d" : "-")) {
          problems.push(`${e.path}: ${got.perms} ${got.owner}:${got.group}, not ${e.kind} ${e.mode.toString(8)} ${e.owner}:${e.group}`);
        }
      }
      for (const extra of listed.keys()) problems.push(`${extra}: in the package, not expected`);
      expect(problems).toEqual([]);
      // FILEFLAGS: c = %config, n = noreplace.
      const flags = (await must(["rpm", "-qp", "--qf", "[%{FILENAMES}\t%{FILEFLAGS:fflags}\n]", path])).split("\n").filter(Boolean).map((l) => l.split("\t"));
      const configs = flags.filter(([, fflags]) => fflags!.includes("c"));
      expect(configs.map(([name]) => name).sort()).toEqual([...configFiles].sort());
      for (const [name, fflags] of configs) expect({ name, noreplace: fflags!.includes("n") }).toEqual({ name, noreplace: true });
    }
  }, testTimeoutMs);

  test("rpm scriptlets create the druvaa user and never remove configuration or data", async () => {
    const scripts = await must(["rpm", "-qp", "--scripts", get().rpm.x64]);
    expect(scripts).toMatch(/preinstall scriptlet[\s\S]*useradd --system --gid druvaa --home-dir \/var\/lib\/druvaa/);
    expect(scripts).not.toMatch(/\brm\b[^\n]*(\/var\/lib\/druvaa|\/etc\/druvaa)/);
    expect(scripts).not.toMatch(/userdel|groupdel/);
  }, testTimeoutMs);

  test("rpm --root installs every file, link, mode and owner; the x86_64 binary and its links run", async () => {
    const built = get();
    const root = scratchRoot(built, "rpm", { withDruvaa: true });
    await must(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", "--initdb"]);
    const install = await rpmIn(root, "-i", built.rpm.x64);
    expect(install.exitCode).toBe(0);
    expect(checkTree(root, expectedTree(zshDir), ignore)).toEqual([]);

    const druvaa = join(root, "usr/bin/druvaa");
    expect(await elfMachine(druvaa)).toBe(62);
    const version = await sh([druvaa, "--version"]);
    expect(version).toMatchObject({ exitCode: 0, stdout: `${built.version}\n` });
    // A WRL made and read by the packaged binary, through /usr/sbin/dradmin's sibling links too.
    const wrl = join(built.dir, "rpm-wrl.img");
    expect((await sh([druvaa, "wrl", "create", "--primary", wrl, "--size", "16MiB", "--json"])).exitCode).toBe(0);
    const info = await sh([druvaa, "wrl", "info", wrl, "--json"]);
    expect(info.exitCode).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ ok: true, formatVersion: 1, recordCount: 0, headLsn: 0 });
    for (const [alias, command] of [["usr/bin/drresync", "druvaa resync"], ["usr/sbin/drrestore", "druvaa restore"], ["usr/bin/dradmin", "druvaa admin"]] as const) {
      const help = await sh([join(root, alias), "--help"]);
      expect(help.exitCode).toBe(0);
      expect(help.stdout.replace(/\u001b\[[0-9;]*m/g, "")).toContain(`USAGE ${command}`);
    }
  }, testTimeoutMs);

  test("the aarch64 RPM unpacks (rpm2cpio | cpio) to the same files, with an AArch64 binary", async () => {
    const built = get();
    const list = async (rpm: string) => (await must(["sh", "-c", 'rpm2cpio "$1" | cpio --list --quiet', "sh", rpm])).trim().split("\n").sort();
    expect(await list(built.rpm.arm64)).toEqual(await list(built.rpm.x64));
    const out = join(built.dir, "rpm-arm64-unpacked");
    mkdirSync(out);
    await must(["sh", "-c", 'cd "$2" && rpm2cpio "$1" | cpio --extract --make-directories --quiet', "sh", built.rpm.arm64, out]);
    expect(await elfMachine(join(out, "usr/bin/druvaa"))).toBe(183);
  }, testTimeoutMs);

  test("rpm upgrade keeps a changed config file and the data; erase keeps the data and the changed config", async () => {
    const built = get();
    const root = scratchRoot(built, "rpm-upgrade", { withDruvaa: true });
    await must(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", "--initdb"]);
    expect((await rpmIn(root, "-i", built.rpm.x64)).exitCode).toBe(0);
    const changedConfig = `${readFileSync(join(root, "etc/druvaa/staging.toml"), "utf8")}\n# changed by the admin\nnode-id = "stg1"\n`;
    writeFileSync(join(root, "etc/druvaa/staging.toml"), changedConfig);
    const data = join(root, "var/lib/druvaa/staging/split-wrl.bin");
    writeFileSync(data, "replication state");

    const upgrade = await rpmIn(root, "-U", built.upgrade.rpm);
    expect(upgrade.exitCode).toBe(0);
    expect((await rpmQuery(root, "--qf", "%{VERSION}", "druvaa")).stdout).toBe(built.bumpedVersion);
    expect(readFileSync(join(root, "etc/druvaa/staging.toml"), "utf8")).toBe(changedConfig);
    expect(readFileSync(data, "utf8")).toBe("replication state");
    expect(existsSync(join(root, "etc/druvaa/staging.toml.rpmnew"))).toBe(false); // same default: nothing to offer

    const erase = await rpmIn(root, "-e", "druvaa");
    expect(erase.exitCode).toBe(0);
    expect(existsSync(join(root, "usr/bin/druvaa"))).toBe(false);
    expect(readFileSync(data, "utf8")).toBe("replication state");
    // RPM's rule for a changed %config file on erase: kept, renamed FILE.rpmsave.
    expect(readFileSync(join(root, "etc/druvaa/staging.toml.rpmsave"), "utf8")).toBe(changedConfig);
  }, testTimeoutMs);
}
