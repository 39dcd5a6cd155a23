/**
 * How a role secures its links (issue 5 part 1): TLS 1.3 with mutual authentication, or
 * plaintext asked for explicitly.
 *
 *   --tls-cert FILE --tls-key FILE --tls-ca FILE [--crl FILE]
 *        every druvaa link of the role is TLS 1.3 with mutual authentication: the peer must show a
 *        certificate of that CA (not revoked in the CRL, not expired) for the role the link expects
 *        (staging's data port: client; the relay: replica; the replica's data port: staging; its
 *        restore port: admin or panel). Made with `druvaa admin ca init` and `druvaa admin cert issue`.
 *        The control port (HTTP) becomes HTTPS with the same certificate, and takes admin or panel
 *        certificates only (src/io/control-https.ts): authenticated, so it may listen on any address.
 *   --insecure
 *        plaintext, and only where nobody else can listen in: loopback addresses and Unix sockets
 *        (control ports included: plain HTTP)
 *   --insecure-allow-remote
 *        with --insecure: plaintext on any address (a lab, or a link inside a VPN)
 * Neither: refused with a hint (no default plaintext; a tool such as `druvaa restore` may talk
 * plaintext to a local address, see resolveToolSecurity). Ports that carry no TLS whatever the
 * flags (the client's NBD export) are held to the --insecure rule in every mode.
 *
 * The credentials are read and checked once at start (TLS_BAD_OWN_CERT, TLS_BAD_CA,
 * TLS_CRL_INVALID, a missing file): a role never half-starts on a bad certificate. The CRL is then
 * followed while the role runs (src/tls/crl-reload.ts): a revocation takes effect without a
 * restart, for new connections at once and for open sessions within crlCheckIntervalMs.
 */
import { readFile } from "node:fs/promises";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { formatAddress, type Address } from "../io/address.ts";
import { loadRevocationList } from "../tls/crl.ts";
import { watchRevocationList } from "../tls/crl-reload.ts";
import type { CertRole } from "../tls/identity.ts";
import { prepareTls, type PreparedTls } from "../tls/transport-tls.ts";
import { loadTrustAnchor } from "../tls/trust.ts";

export const linkSecurityArgs = {
  "tls-cert": { type: "string", valueHint: "FILE", description: "this node's certificate (druvaa admin cert issue): with --tls-key and --tls-ca every link is TLS 1.3 with mutual authentication, and the control port HTTPS for admin and panel certificates" },
  "tls-key": { type: "string", valueHint: "FILE", description: "the private key of --tls-cert" },
  "tls-ca": { type: "string", valueHint: "FILE", description: "the CA certificate peers must be signed by (ca.pem of druvaa admin ca init)" },
  crl: { type: "string", valueHint: "FILE", description: "the CA's revocation list (crl.pem): revoked peers are refused; re-read while running when the file changes (and on SIGHUP)" },
  insecure: { type: "boolean", description: "plaintext links instead of TLS; refused on non-loopback addresses unless --insecure-allow-remote" },
  "insecure-allow-remote": { type: "boolean", description: "with --insecure: allow plaintext on non-loopback addresses (and control ports on them)" },
} as const;

/** Who may use a role's control port when it runs with TLS. */
export const controlPeerRoles: readonly CertRole[] = ["admin", "panel"];
/** What a tool expects at a control port: a druvaa role's own certificate. */
export const controlServerRoles: readonly CertRole[] = ["client", "staging", "replica"];

/** The flags of a tool that talks to a control port (druvaa status, resync, verify, replica seed). */
export const controlToolArgs = {
  "tls-cert": { type: "string", valueHint: "FILE", description: "an admin (or panel) certificate (druvaa admin cert issue --role admin): with --tls-key and --tls-ca, talk HTTPS to a role that runs with TLS" },
  "tls-key": linkSecurityArgs["tls-key"],
  "tls-ca": { type: "string", valueHint: "FILE", description: "the CA certificate the role's certificate must be signed by (ca.pem)" },
  crl: { type: "string", valueHint: "FILE", description: "the CA's revocation list (crl.pem): a revoked role certificate is refused" },
} as const;

export interface LinkSecurityFlags {
  "tls-cert"?: string | undefined;
  "tls-key"?: string | undefined;
  "tls-ca"?: string | undefined;
  crl?: string | undefined;
  insecure?: boolean | undefined;
  "insecure-allow-remote"?: boolean | undefined;
}

export interface LinkSecurity {
  readonly mode: "tls" | "insecure";
  /** Transport TLS (checked, parsed) for links whose peer must have one of `roles`; undefined: plaintext. */
  forPeer(roles: CertRole | readonly CertRole[]): PreparedTls | undefined;
  /** The control port's TLS (peers: controlPeerRoles); undefined: plain HTTP (--insecure). */
  forControl(): PreparedTls | undefined;
  /** For status and logs: "tls" or "insecure (plaintext)". */
  readonly describe: string;
}

/** Where a role listens and dials, for the address rules (see the file comment). */
export interface LinkAddresses {
  /** The druvaa data addresses it listens on or dials. */
  readonly links: readonly Address[];
  /** Its HTTP control ports: HTTPS with TLS, else plain HTTP held to loopback. */
  readonly controls: readonly Address[];
  /** Ports that never carry TLS (the client's NBD export): loopback unless --insecure-allow-remote. */
  readonly plaintextPorts?: readonly Address[];
}

const issueHint = "Make a CA once (druvaa admin ca init --dir /etc/druvaa/ca), issue this node a certificate (druvaa admin cert issue --role ROLE --name NAME --dir /etc/druvaa/ca --out /etc/druvaa/tls), then give --tls-cert, --tls-key and --tls-ca; on one machine for a test: --insecure";

/** True for addresses only this host can reach: Unix sockets and loopback TCP. */
export function isLocalAddress(address: Address): boolean {
  if (address.kind === "unix") return true;
  const host = (address.host ?? "127.0.0.1").replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host) || host === "::ffff:127.0.0.1";
}

/** The flags that name this node's TLS files: all three, or none. */
const tlsFileFlags = ["tls-cert", "tls-key", "tls-ca"] as const;

function anyTlsFile(flags: Pick<LinkSecurityFlags, (typeof tlsFileFlags)[number]>): boolean {
  return tlsFileFlags.some((flag) => flags[flag] !== undefined);
}

async function readPem(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new DruvaaError(code === "ENOENT" ? "FILE_NOT_FOUND" : "IO_ERROR", `${flag} ${path}: ${code === "ENOENT" ? "no such file" : String(error)}`, issueHint, exitCodes.refused);
  }
}

/**
 * Reads the flags: TLS credentials (checked now; the CRL then followed while the process runs, see
 * the file comment) or plaintext under the --insecure rule. `tool`: a short-lived command, whose CRL
 * is read once (no timer, no SIGHUP handler).
 */
export async function resolveLinkSecurity(flags: LinkSecurityFlags, where: LinkAddresses, options: { tool?: boolean } = {}): Promise<LinkSecurity> {
  const given = tlsFileFlags.filter((flag) => flags[flag] !== undefined);
  const allowRemote = flags["insecure-allow-remote"] === true;
  if (allowRemote && flags.insecure !== true) throw usageError("--insecure-allow-remote needs --insecure", "Add --insecure (plaintext), or drop --insecure-allow-remote and use TLS");
  const remotePlaintext = (where.plaintextPorts ?? []).find((address) => !isLocalAddress(address));
  if (given.length > 0) {
    if (flags.insecure === true) throw usageError(`${given.map((flag) => `--${flag}`).join(", ")} and --insecure contradict each other`, "Give the TLS files, or --insecure for plaintext, not both");
    const missing = tlsFileFlags.filter((flag) => flags[flag] === undefined);
    if (missing.length > 0) throw usageError(`TLS needs ${missing.map((flag) => `--${flag}`).join(" and ")} as well`, issueHint);
    if (remotePlaintext !== undefined) {
      throw usageError(`${formatAddress(remotePlaintext)} is not a loopback address, and the NBD export carries no TLS`, "Serve the export on a Unix socket or 127.0.0.1 (--export unix:/run/druvaa/disk0.sock) and run the NBD client on this host");
    }
    const base = {
      cert: await readPem(flags["tls-cert"]!, "--tls-cert"),
      key: await readPem(flags["tls-key"]!, "--tls-key"),
      ca: await readPem(flags["tls-ca"]!, "--tls-ca"),
    };
    const crlPem = flags.crl === undefined ? undefined : await readPem(flags.crl, "--crl");
    const anchor = loadTrustAnchor(base.ca, "CA certificate (--tls-ca)");
    const initial = crlPem === undefined ? undefined : loadRevocationList(crlPem, anchor, "revocation list (--crl)");
    const crl = initial === undefined ? undefined : options.tool === true ? crlPem : watchRevocationList(flags.crl!, anchor, initial, { sighup: true });
    const tls = { ...base, crl };
    prepareTls(tls, new Date()); // own certificate, key, CA and CRL checked now, not at the first peer
    const forPeer = (roles: CertRole | readonly CertRole[]) => prepareTls({ ...tls, expectRole: roles }, new Date());
    return { mode: "tls", describe: "tls", forPeer, forControl: () => forPeer(controlPeerRoles) };
  }
  if (flags.crl !== undefined) throw usageError("--crl needs --tls-cert, --tls-key and --tls-ca", issueHint);
  if (flags.insecure !== true) throw usageError("no TLS credentials, and plaintext was not asked for", issueHint);
  const remoteControl = [...where.controls, ...(where.plaintextPorts ?? [])].find((address) => !isLocalAddress(address));
  if (remoteControl !== undefined && !allowRemote) {
    throw usageError(`${formatAddress(remoteControl)} is not a loopback address, and with --insecure control ports are plain HTTP (and the NBD export has no TLS)`, "Keep --control (and --export) on 127.0.0.1 and reach it through SSH or a VPN, run the role with TLS (--tls-cert, --tls-key, --tls-ca: the control port is then HTTPS for admin certificates), or add --insecure-allow-remote");
  }
  const remote = where.links.find((address) => !isLocalAddress(address));
  if (remote !== undefined && !allowRemote) {
    throw usageError(`plaintext to or on ${formatAddress(remote)} refused: it is not a loopback address`, `Use TLS (--tls-cert, --tls-key, --tls-ca), or add --insecure-allow-remote if this network is private (a lab, a VPN)`);
  }
  return { mode: "insecure", describe: "insecure (plaintext)", forPeer: () => undefined, forControl: () => undefined };
}

/**
 * A command-line tool's one link (druvaa restore to the replica's restore port): TLS with the
 * flags; without them plaintext, to a local address, or anywhere with --insecure
 * --insecure-allow-remote. (The listening role enforces its own rule: a TLS replica refuses a
 * plaintext tool whatever the tool says.)
 */
export async function resolveToolSecurity(flags: LinkSecurityFlags, peer: Address, expectRole: CertRole): Promise<PreparedTls | undefined> {
  if (!anyTlsFile(flags) && flags.insecure !== true && isLocalAddress(peer)) return undefined;
  const security = await resolveLinkSecurity(flags, { links: [peer], controls: [] }, { tool: true });
  return security.forPeer(expectRole);
}

/**
 * A tool's TLS toward a role's control port (druvaa status, resync, verify, replica seed): with
 * --tls-cert/--tls-key/--tls-ca, HTTPS presenting that (admin) certificate and expecting a druvaa
 * role's; without them plain HTTP (a role started with --insecure). The role decides who may in.
 */
export async function resolveControlToolSecurity(flags: Pick<LinkSecurityFlags, "tls-cert" | "tls-key" | "tls-ca" | "crl">): Promise<PreparedTls | undefined> {
  if (!anyTlsFile(flags) && flags.crl === undefined) return undefined;
  const security = await resolveLinkSecurity(flags, { links: [], controls: [] }, { tool: true });
  return security.forPeer(controlServerRoles);
}
