/**
 * What the Linux packages install, once for both formats: every file, directory and link with its
 * mode, owner and whether it is a configuration file (kept on upgrade and uninstall). The .deb
 * and RPM builders turn this list into a staged tree, conffiles, %files and the ownership their
 * install scripts set; tests/packaging checks the installed result against its own table.
 */
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";

export type LinuxFormat = "deb" | "rpm";

export type LayoutEntry =
  | { kind: "file"; path: string; mode: number; owner: string; group: string; config: boolean; from: { file: string } | { text: string } | { gzipText: string } }
  | { kind: "dir"; path: string; mode: number; owner: string; group: string }
  | { kind: "link"; path: string; target: string };

/** The dedicated system user (and group) of the staging, replica and panel services. */
export const serviceUser = "druvaa";

export type LayoutInputs = {
  format: LinuxFormat;
  /** The compiled druvaa binary for the package's architecture. */
  binary: string;
  /** packaging/ in the source tree. */
  packagingDir: string;
  manPage: string;
  bashCompletion: string;
  zshCompletion: string;
};

export const aliasNames = ["drresync", "drrestore", "dradmin"] as const;
export const unitNames = ["druvaa-staging.service", "druvaa-replica.service", "druvaa-panel.service", "druvaa-agent.service", "druvaa-client@.service"] as const;
export const configNames = ["staging.toml", "replica.toml", "panel.toml", "agent.toml", "client/example.toml"] as const;

export function linuxLayout(inputs: LayoutInputs): LayoutEntry[] {
  const p = (...parts: string[]) => join(inputs.packagingDir, ...parts);
  const dir = (path: string, mode = 0o755, owner = "root", group = owner): LayoutEntry => ({ kind: "dir", path, mode, owner, group });
  const file = (path: string, from: { file: string } | { text: string } | { gzipText: string }, mode = 0o644, config = false): LayoutEntry => ({ kind: "file", path, mode, owner: "root", group: "root", config, from });
  const link = (path: string, target: string): LayoutEntry => ({ kind: "link", path, target });
  // Debian's zsh looks in vendor-completions; Fedora's and RHEL's in site-functions.
  const zshDir = inputs.format === "deb" ? "/usr/share/zsh/vendor-completions" : "/usr/share/zsh/site-functions";
  return [
    file("/usr/bin/druvaa", { file: inputs.binary }, 0o755),
    // The aliases answer by argv[0] (src/cli.ts). /usr/bin is on every user's PATH; /usr/sbin is
    // where the original product's install guide (2.4.1) puts them, for scripts that use full paths.
    ...aliasNames.map((name) => link(`/usr/bin/${name}`, "druvaa")),
    ...aliasNames.map((name) => link(`/usr/sbin/${name}`, "../bin/druvaa")),
    ...unitNames.map((name) => file(`/usr/lib/systemd/system/${name}`, { file: p("systemd", name) })),
    file("/usr/lib/sysusers.d/druvaa.conf", { file: p("sysusers.d", "druvaa.conf") }),
    dir("/etc/druvaa"),
    dir("/etc/druvaa/client"),
    ...configNames.map((name) => file(`/etc/druvaa/${name}`, { file: p("config", name) }, 0o644, true)),
    // Keys live here: readable by the services' group, by nobody else.
    dir("/etc/druvaa/tls", 0o750, "root", serviceUser),
    file("/etc/cron.d/druvaa", { file: p("cron", "druvaa") }, 0o644, true),
    dir("/var/lib/druvaa", 0o750, serviceUser),
    dir("/var/lib/druvaa/staging", 0o750, serviceUser),
    dir("/var/lib/druvaa/replica", 0o750, serviceUser),
    dir("/var/lib/druvaa/panel", 0o750, serviceUser),
    // The client and agent run as root (see druvaa-client@.service): their state is root's.
    dir("/var/lib/druvaa/client", 0o700),
    file("/usr/share/man/man1/druvaa.1.gz", { gzipText: inputs.manPage }),
    ...aliasNames.map((name) => link(`/usr/share/man/man1/${name}.1.gz`, "druvaa.1.gz")),
    file("/usr/share/bash-completion/completions/druvaa", { text: inputs.bashCompletion }),
    ...aliasNames.map((name) => link(`/usr/share/bash-completion/completions/${name}`, "druvaa")),
    file(`${zshDir}/_druvaa`, { text: inputs.zshCompletion }),
  ];
}

/** Directories a package must not own because the base system does (rpm would clash). */
export const systemDirs = new Set(["/usr", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib/systemd", "/usr/lib/systemd/system", "/usr/lib/sysusers.d", "/usr/share", "/usr/share/man", "/usr/share/man/man1", "/usr/share/bash-completion", "/usr/share/bash-completion/completions", "/usr/share/zsh", "/usr/share/zsh/vendor-completions", "/usr/share/zsh/site-functions", "/etc", "/etc/cron.d", "/var", "/var/lib"]);

/**
 * Writes the layout under root (a staging directory): contents and modes; ownership is not set
 * here (the package formats record it: dpkg-deb --root-owner-group plus the install scripts, and
 * RPM's %attr). Parent directories the layout does not list are created 0755.
 */
export function stageLayout(root: string, layout: LayoutEntry[]): void {
  for (const entry of layout) {
    const target = join(root, entry.path);
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    if (entry.kind === "dir") {
      mkdirSync(target, { recursive: true });
      chmodSync(target, entry.mode);
    } else if (entry.kind === "link") {
      symlinkSync(entry.target, target);
    } else {
      if ("file" in entry.from) copyFileSync(entry.from.file, target);
      else if ("text" in entry.from) writeFileSync(target, entry.from.text);
      else writeFileSync(target, gzipSync(Buffer.from(entry.from.gzipText), { level: 9 }));
      chmodSync(target, entry.mode);
    }
  }
}
