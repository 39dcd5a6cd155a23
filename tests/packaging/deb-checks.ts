/**
 * The .debs: control fields, conffiles, the archive listing (dpkg-deb -c: root-owned, the modes);
 * the amd64 package installed into a scratch root with dpkg --root, maintainer scripts included
 * (they create the druvaa user and give it /var/lib/druvaa), checked file by file; the arm64 one
 * unpacked with dpkg-deb -x; then upgrade, remove and purge keeping data (and config but on purge).
 */
import { expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkTree, configFiles, expectedTree, idIn, modeOf } from "./expected.ts";
import { dpkgIn, elfMachine, must, scratchRoot, sh, type Built, testTimeoutMs } from "./fixture.ts";

const zshDir = "/usr/share/zsh/vendor-completions";
const ignore = (path: string) => path.startsWith("/var/lib/dpkg") || /^\/etc\/(passwd|group|shadow|gshadow)/.test(path);

export function debTests(get: () => Built): void {
  test("deb control fields, conffiles, and the archive's files, links and modes", async () => {
    const built = get();
    for (const [arch, path] of [["amd64", built.deb.x64], ["arm64", built.deb.arm64]] as const) {
      const fields = await must(["dpkg-deb", "--field", path, "Package", "Version", "Architecture", "Depends"]);
      expect(fields).toBe(`Package: druvaa\nVersion: ${built.version}-1\nArchitecture: ${arch}\nDepends: libc6 (>= 2.27), passwd\n`);
      expect((await must(["dpkg-deb", "--info", path, "conffiles"])).trim().split("\n").sort()).toEqual([...configFiles].sort());
      // "drwxr-x--- root/root 0 2026-12-05 12:18 ./var/lib/druvaa/" — the archive is all root's
      // (--root-owner-group); postinst gives druvaa its directories (checked after install).
      const problems: string[] = [];
      const listed = new Map<string, { perms: string; owner: string; target?: string }>();
      for (const line of (await must(["dpkg-deb", "--contents", path])).trim().split("\n")) {
        const fields = line.split(/\s+/);
        const arrow = fields.indexOf("->");
        const name = (arrow >= 0 ? fields[arrow - 1]! : fields.at(-1)!).replace(/^\./, "").replace(/\/$/, "");
        const entry: { perms: string; owner: string; target?: string } = { perms: fields[0]!, owner: fields[1]! };
        if (arrow >= 0) entry.target = fields[arrow + 1]!;
        if (name !== "") listed.set(name, entry);
      }
      for (const e of expectedTree(zshDir)) {
        const got = listed.get(e.path);
        if (got === undefined) problems.push(`${e.path}: not in the archive`);
        else if (got.owner !== "root/root") problems.push(`${e.path}: owned by ${got.owner} in the archive`);
        else if (e.kind === "link" ? got.target !== e.target : modeOf(got.perms) !== e.mode) problems.push(`${e.path}: ${got.perms} ${got.target ?? ""}`);
      }
      expect(problems).toEqual([]);
    }
  }, testTimeoutMs);

  test("dpkg --root installs every file, link, mode and owner; preinst creates the druvaa system user", async () => {
    const built = get();
    const root = scratchRoot(built, "deb", { dpkg: true });
    const install = await dpkgIn(root, "--install", built.deb.x64);
    expect(install.exitCode).toBe(0);
    const user = readFileSync(join(root, "etc/passwd"), "utf8").split("\n").find((l) => l.startsWith("druvaa:"))!;
    expect(user).toBeDefined();
    const [, , uid, gid, , home, shell] = user.split(":");
    expect(Number(uid)).toBeLessThan(1000); // a system user
    expect(Number(gid)).toBe(idIn(root, "group", "druvaa"));
    expect({ home, shell }).toEqual({ home: "/var/lib/druvaa", shell: "/usr/sbin/nologin" });
    expect(checkTree(root, expectedTree(zshDir), ignore)).toEqual([]);
    const status = await must(["dpkg-query", `--admindir=${join(root, "var/lib/dpkg")}`, "--show", "--showformat", "${Status} ${Version}", "druvaa"]);
    expect(status).toBe(`install ok installed ${built.version}-1`);
    const version = await sh([join(root, "usr/bin/druvaa"), "--version"]);
    expect(version).toMatchObject({ exitCode: 0, stdout: `${built.version}\n` });
  }, testTimeoutMs);

  test("the arm64 .deb unpacks to an AArch64 binary", async () => {
    const built = get();
    const out = join(built.dir, "deb-arm64-unpacked");
    await must(["dpkg-deb", "--extract", built.deb.arm64, out]);
    expect(await elfMachine(join(out, "usr/bin/druvaa"))).toBe(183);
    expect(await elfMachine(join(out, "usr/bin/druvaa"))).not.toBe(await elfMachine(join(built.binDir, "druvaa-linux-x64")));
  }, testTimeoutMs);

  test("deb upgrade keeps a changed conffile and the data; remove keeps both; purge keeps the data", async () => {
    const built = get();
    const root = scratchRoot(built, "deb-upgrade", { dpkg: true });
    expect((await dpkgIn(root, "--install", built.deb.x64)).exitCode).toBe(0);
    const uid = idIn(root, "passwd", "druvaa");
    const config = join(root, "etc/druvaa/replica.toml");
    const changedConfig = `${readFileSync(config, "utf8")}\n# changed by the admin\nretention = "24h"\n`;
    writeFileSync(config, changedConfig);
    const data = join(root, "var/lib/druvaa/replica/applied.lsn");
    writeFileSync(data, "42");

    const upgrade = await dpkgIn(root, "--install", built.upgrade.deb);
    expect(upgrade.exitCode).toBe(0);
    const version = await must(["dpkg-query", `--admindir=${join(root, "var/lib/dpkg")}`, "--show", "--showformat", "${Version}", "druvaa"]);
    expect(version).toBe(`${built.bumpedVersion}-1`);
    expect(readFileSync(config, "utf8")).toBe(changedConfig);
    expect(readFileSync(data, "utf8")).toBe("42");
    expect(idIn(root, "passwd", "druvaa")).toBe(uid); // the user is reused, not created again

    expect((await dpkgIn(root, "--remove", "druvaa")).exitCode).toBe(0);
    expect(existsSync(join(root, "usr/bin/druvaa"))).toBe(false);
    expect(readFileSync(config, "utf8")).toBe(changedConfig);
    expect(readFileSync(data, "utf8")).toBe("42");

    expect((await dpkgIn(root, "--purge", "druvaa")).exitCode).toBe(0);
    expect(existsSync(config)).toBe(false); // purge removes configuration (Debian policy) ...
    expect(readFileSync(data, "utf8")).toBe("42"); // ... never data
    expect(idIn(root, "passwd", "druvaa")).toBe(uid); // nor the user that owns it
  }, testTimeoutMs);

  test("maintainer scripts never remove /var/lib/druvaa or the druvaa user", async () => {
    const built = get();
    const out = join(built.dir, "deb-control");
    await must(["dpkg-deb", "--control", built.deb.x64, out]);
    for (const script of ["preinst", "postinst", "prerm", "postrm"]) {
      const text = readFileSync(join(out, script), "utf8");
      expect(text.startsWith("#!/bin/sh\n")).toBe(true);
      expect(text).not.toMatch(/\brm\b[^\n]*(\/var\/lib\/druvaa|\/etc\/druvaa)|userdel|groupdel/);
      expect((await sh(["sh", "-n", join(out, script)])).exitCode).toBe(0);
    }
  }, testTimeoutMs);
}
