/**
 * druvaa(1) in roff (man(7) macros), generated from the command tree (cli-tree.ts) plus the fixed
 * sections packages add: aliases, files, services, exit status. `man -l druvaa.1` renders it;
 * tests/packaging checks it with `man --warnings`.
 */
import { allCommands, type CliCommand, type CliFlag } from "./cli-tree.ts";

/** Escapes text for roff: backslashes, leading dots/quotes, and dashes meant as hyphen-minus. */
export function roff(text: string): string {
  const escaped = text.replace(/\\/g, "\\e").replace(/-/g, "\\-").replace(/\s+/g, " ").trim();
  return /^[.']/.test(escaped) ? `\\&${escaped}` : escaped;
}

function flagLine(flag: CliFlag): string {
  if (flag.type === "positional") return `.TP\n\\fI${roff(flag.name.toUpperCase())}\\fR`;
  const value = flag.type === "boolean" ? "" : `=\\fI${roff(flag.valueHint ?? flag.options?.join("|") ?? "VALUE")}\\fR`;
  return `.TP\n\\fB\\-\\-${roff(flag.name)}\\fR${value}`;
}

function flagText(flag: CliFlag): string {
  const notes = [flag.required ? "Required." : "", flag.defaultValue !== undefined ? `Default: ${flag.defaultValue}.` : ""].filter(Boolean).join(" ");
  const description = notes && !/[.!?)]$/.test(flag.description) ? `${flag.description}.` : flag.description;
  return roff(`${description}${notes ? ` ${notes}` : ""}`);
}

function commandSection(cmd: CliCommand): string {
  const lines = [`.SS "druvaa ${cmd.path.join(" ")}"`, roff(cmd.description)];
  const flags = cmd.flags.filter((f) => f.name !== "json");
  for (const flag of flags) lines.push(flagLine(flag), flagText(flag));
  if (cmd.flags.some((f) => f.name === "json")) lines.push(".TP", "\\fB\\-\\-json\\fR", "Print the result as one JSON object on stdout.");
  return lines.join("\n");
}

const fixedSections = String.raw`.SH ALIASES
The binary answers to other names (links installed next to it) for scripts and cron:
.TP
\fBdrresync\fR
is \fBdruvaa resync\fR.
.TP
\fBdrrestore\fR
is \fBdruvaa restore\fR.
.TP
\fBdradmin\fR
is \fBdruvaa admin\fR.
.SH CONFIGURATION
Every role reads \fB\-\-config\fR \fIFILE\fR (TOML): keys are the command's long flag names,
values strings, integers, booleans or arrays of strings (for flags given more than once); flags
on the command line win. \fBdruvaa admin config check\fR \fIFILE\fR validates a file and names
the line of each error.
.SH FILES
.TP
.I /etc/druvaa/staging.toml
\fBdruvaa staging serve\fR, run by \fBdruvaa\-staging.service\fR.
.TP
.I /etc/druvaa/replica.toml
\fBdruvaa replica apply\fR, run by \fBdruvaa\-replica.service\fR.
.TP
.I /etc/druvaa/panel.toml
\fBdruvaa panel\fR, run by \fBdruvaa\-panel.service\fR.
.TP
.I /etc/druvaa/agent.toml
\fBdruvaa client agent\fR, run by \fBdruvaa\-agent.service\fR.
.TP
.I /etc/druvaa/client/NAME.toml
\fBdruvaa client attach\fR for one protected volume, run by \fBdruvaa\-client@NAME.service\fR.
.TP
.I /etc/druvaa/tls/
certificates and keys (\fBdruvaa admin cert issue\fR).
.TP
.I /etc/cron.d/druvaa
example cron entries for \fBdrresync\fR, \fBdrrestore\fR and \fBdruvaa verify\fR, all commented out.
.TP
.I /var/lib/druvaa/
state: one directory per role (staging, replica, panel, client), owned by the \fBdruvaa\fR
system user except the client's (root). Packages never remove it, not even on purge.
.SH SERVICES
The packages install, but do not enable, the systemd units \fBdruvaa\-staging.service\fR,
\fBdruvaa\-replica.service\fR, \fBdruvaa\-panel.service\fR, \fBdruvaa\-agent.service\fR and
\fBdruvaa\-client@.service\fR. Fill in the role's configuration file, then for example:
.PP
.nf
.RS
druvaa admin config check /etc/druvaa/staging.toml
systemctl enable \-\-now druvaa\-staging.service
systemctl enable \-\-now druvaa\-client@disk0.service   # reads /etc/druvaa/client/disk0.toml
journalctl \-u druvaa\-staging.service
.RE
.fi
.SH ENVIRONMENT
.TP
.B DRUVAA_STATE_DIR
base of the default state directories when not running as root.
.TP
.B DRUVAA_LOG_LEVEL
log verbosity.
.SH EXIT STATUS
.TP
.B 0
success.
.TP
.B 1
failure (for \fBverify\fR: differences found).
.TP
.B 2
usage error (unknown flag, bad value, bad configuration file).
.TP
.B 3
not found.
.TP
.B 4
refused.
.TP
.B 5
timeout.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBcrontab\fR(5), \fBqemu\-img\fR(1), \fBnbdinfo\fR(1)
`;

/** The whole page; `date` is the release date shown in the footer (YYYY-MM-DD). */
export function manPage(root: CliCommand, version: string, date: string): string {
  const commands = allCommands(root).filter((c) => c.path.length > 0 && c.subcommands.length === 0);
  return [
    `.TH DRUVAA 1 "${date}" "druvaa ${version}" "User Commands"`,
    ".\\\" Generated from the druvaa command tree by scripts/package.ts: do not edit.",
    // No hyphenation, ragged right: paths, unit names and flags stay whole (and searchable).
    ".nh",
    ".ad l",
    ".SH NAME",
    "druvaa, drresync, drrestore, dradmin \\- block\\-level continuous disaster\\-recovery replicator",
    ".SH SYNOPSIS",
    ".B druvaa",
    "\\fICOMMAND\\fR [\\fISUBCOMMAND\\fR] [\\fIOPTIONS\\fR]",
    ".br",
    ".B druvaa",
    "\\fB\\-\\-version\\fR",
    ".SH DESCRIPTION",
    roff(`${root.description}. A client serves the protected volumes as NBD exports and logs every write at a staging server (write log, WRL) before writing it locally; staging relays the log to a replica server, which applies it in order. Every command takes --help (with examples) and --json.`),
    ".SH COMMANDS",
    ...commands.map(commandSection),
    fixedSections,
  ].join("\n");
}
