/**
 * What an installed druvaa Linux package must look like, written out by hand (not derived from
 * packaging/lib/layout.ts, which builds it): every file, directory and link, with mode and
 * owner. checkTree() compares a scratch root against it, both ways (nothing missing, nothing
 * extra), and returns the differences as readable lines. At the end of the file, the MSI's
 * Windows services and where their service wrapper comes from.
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";

export type Expected =
  | { path: string; kind: "file"; mode: number; owner: "root" | "druvaa"; group: "root" | "druvaa"; config?: true }
  | { path: string; kind: "dir"; mode: number; owner: "root" | "druvaa"; group: "root" | "druvaa" }
  | { path: string; kind: "link"; target: string };

const file = (path: string, mode = 0o644, config?: true): Expected => (config ? { path, kind: "file", mode, owner: "root", group: "root", config } : { path, kind: "file", mode, owner: "root", group: "root" });
const dir = (path: string, mode: number, owner: "root" | "druvaa" = "root", group: "root" | "druvaa" = owner): Expected => ({ path, kind: "dir", mode, owner, group });
const link = (path: string, target: string): Expected => ({ path, kind: "link", target });

export const configFiles = ["/etc/druvaa/staging.toml", "/etc/druvaa/replica.toml", "/etc/druvaa/panel.toml", "/etc/druvaa/agent.toml", "/etc/druvaa/client/example.toml", "/etc/cron.d/druvaa"];
export const unitFiles = ["druvaa-staging.service", "druvaa-replica.service", "druvaa-panel.service", "druvaa-agent.service", "druvaa-client@.service"];

/** The package's own entries; `zshDir` differs: Debian vendor-completions, RPM site-functions. */
export function expectedTree(zshDir: string): Expected[] {
  return [
    file("/usr/bin/druvaa", 0o755),
    link("/usr/bin/drresync", "druvaa"),
    link("/usr/bin/drrestore", "druvaa"),
    link("/usr/bin/dradmin", "druvaa"),
    link("/usr/sbin/drresync", "../bin/druvaa"),
    link("/usr/sbin/drrestore", "../bin/druvaa"),
    link("/usr/sbin/dradmin", "../bin/druvaa"),
    ...unitFiles.map((u) => file(`/usr/lib/systemd/system/${u}`)),
    file("/usr/lib/sysusers.d/druvaa.conf"),
    dir("/etc/druvaa", 0o755),
    dir("/etc/druvaa/client", 0o755),
    dir("/etc/druvaa/tls", 0o750, "root", "druvaa"),
    ...configFiles.map((c) => file(c, 0o644, true)),
    dir("/var/lib/druvaa", 0o750, "druvaa"),
    dir("/var/lib/druvaa/staging", 0o750, "druvaa"),
    dir("/var/lib/druvaa/replica", 0o750, "druvaa"),
    dir("/var/lib/druvaa/panel", 0o750, "druvaa"),
    dir("/var/lib/druvaa/client", 0o700, "root"),
    file("/usr/share/man/man1/druvaa.1.gz"),
    link("/usr/share/man/man1/drresync.1.gz", "druvaa.1.gz"),
    link("/usr/share/man/man1/drrestore.1.gz", "druvaa.1.gz"),
    link("/usr/share/man/man1/dradmin.1.gz", "druvaa.1.gz"),
    file("/usr/share/bash-completion/completions/druvaa"),
    link("/usr/share/bash-completion/completions/drresync", "druvaa"),
    link("/usr/share/bash-completion/completions/drrestore", "druvaa"),
    link("/usr/share/bash-completion/completions/dradmin", "druvaa"),
    file(`${zshDir}/_druvaa`),
  ];
}

/**
 * The MSI's Windows services: each runs `druvaa.exe COMMAND --config CONFIG` under its own copy of
 * WinSW (NAME-service.exe, NAME-service.exe.config, NAME-service.xml in the install folder);
 * CONFIG is a file the MSI installs to ProgramData\druvaa.
 */
export const windowsServices = [
  { name: "druvaa-staging", command: "staging serve", config: "staging.toml" },
  { name: "druvaa-replica", command: "replica apply", config: "replica.toml" },
  { name: "druvaa-panel", command: "panel", config: "panel.toml" },
  { name: "druvaa-agent", command: "client agent", config: "agent.toml" },
] as const;

/**
 * Where winsw.exe comes from: node-windows 0.1.14 on the npm registry (`npm view
 * node-windows@0.1.14 dist.integrity`), package/bin/winsw/winsw.exe (WinSW 1.17, 59392 bytes).
 */
export const nodeWindows = {
  spec: "node-windows@0.1.14",
  integrity: "sha512-2sz0i+ckeX/+22Z4KcDVis1ukyGOYZWx2WG9nQYauUwzIxEye5QcMrExkH7OaRSHkwM5bN/jesxsiQqkUb1O/w==",
  winswSha256: "5859b114d96800a2b98ef9d19eaa573a786a422dad324547ef25be181389df01",
  winswSizeBytes: 59392,
} as const;

/** Numeric id of NAME in ROOT/etc/passwd or ROOT/etc/group (root is 0). */
export function idIn(root: string, db: "passwd" | "group", name: string): number {
  const line = readFileSync(join(root, "etc", db), "utf8").split("\n").find((l) => l.startsWith(`${name}:`));
  if (line === undefined) throw new Error(`${name} is not in ${root}/etc/${db}`);
  return Number(line.split(":")[2]);
}

/** Every path under root, as "/usr/bin/druvaa", leaving out what `ignore` matches. */
export function listTree(root: string, ignore: (path: string) => boolean): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel))) {
      const path = `${rel}/${name}`;
      if (ignore(path)) continue;
      out.push(path);
      if (lstatSync(join(root, path)).isDirectory()) walk(path);
    }
  };
  walk("");
  return out.sort();
}

/**
 * Differences between the tree under root and the expected entries. Directories that only hold
 * package entries (/usr, /usr/share/man, ...) are allowed as parents; anything else is extra.
 */
export function checkTree(root: string, expected: Expected[], ignore: (path: string) => boolean): string[] {
  const problems: string[] = [];
  const ids = { root: { uid: 0, gid: 0 }, druvaa: { uid: idIn(root, "passwd", "druvaa"), gid: idIn(root, "group", "druvaa") } };
  const parents = new Set<string>();
  for (const e of expected) for (let p = e.path.slice(0, e.path.lastIndexOf("/")); p; p = p.slice(0, p.lastIndexOf("/"))) parents.add(p);
  const byPath = new Map(expected.map((e) => [e.path, e]));
  for (const path of listTree(root, ignore)) {
    if (!byPath.has(path) && !parents.has(path)) problems.push(`${path}: not expected`);
  }
  for (const e of expected) {
    let st;
    try {
      st = lstatSync(join(root, e.path));
    } catch {
      problems.push(`${e.path}: missing`);
      continue;
    }
    if (e.kind === "link") {
      if (!st.isSymbolicLink()) problems.push(`${e.path}: not a link`);
      else if (readlinkSync(join(root, e.path)) !== e.target) problems.push(`${e.path}: links to ${readlinkSync(join(root, e.path))}, not ${e.target}`);
      continue;
    }
    if (e.kind === "dir" ? !st.isDirectory() : !st.isFile()) problems.push(`${e.path}: not a ${e.kind}`);
    if ((st.mode & 0o7777) !== e.mode) problems.push(`${e.path}: mode ${(st.mode & 0o7777).toString(8)}, not ${e.mode.toString(8)}`);
    if (st.uid !== ids[e.owner].uid || st.gid !== ids[e.group].gid) problems.push(`${e.path}: owner ${st.uid}:${st.gid}, not ${e.owner}:${e.group} (${ids[e.owner].uid}:${ids[e.group].gid})`);
  }
  return problems;
}

/** `-rwxr-x---` → 0o750 (with setuid/setgid/sticky as they show). */
export function modeOf(permissions: string): number {
  let mode = 0;
  const bits = permissions.slice(1);
  for (let i = 0; i < 9; i += 1) if (bits[i] !== "-" && bits[i] !== "S" && bits[i] !== "T") mode |= 1 << (8 - i);
  if (/[sS]/.test(bits[2]!)) mode |= 0o4000;
  if (/[sS]/.test(bits[5]!)) mode |= 0o2000;
  if (/[tT]/.test(bits[8]!)) mode |= 0o1000;
  return mode;
}
