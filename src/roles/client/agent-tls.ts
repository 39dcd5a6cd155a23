/**
 * The security flags of the agent's children: its attachments (`druvaa client attach`, the agent's
 * own client certificate) and its jobs (agent-jobs.ts: `druvaa restore`, `druvaa failback`).
 *
 * Jobs cannot use the agent's certificate: `druvaa restore` reads the replica's restore port and
 * `druvaa failback` calls the replica's and staging's control ports, and under TLS those take admin
 * and panel certificates only (src/io/control-https.ts, src/roles/replica/apply-command.ts). A
 * client certificate must not open them: it sits on the production host and only lets that host
 * write its own devices. So an agent that is to run jobs under TLS is given a second certificate,
 * for its jobs only:
 *
 *   --job-tls-cert FILE --job-tls-key FILE
 *        an admin (or panel) certificate of the CA of --tls-ca, best one of its own per host
 *        (`druvaa admin cert issue --role admin --name db1-jobs`) so that revoking it (the CRL)
 *        ends that host's jobs and nothing else. Checked at start: readable, issued by that CA,
 *        current, not revoked, role admin or panel, the key its own (TLS_BAD_JOB_CERT, exit 2).
 *        Each job's command gets it with --tls-ca and --crl; the attachments never see it.
 *
 * Decision table (what a job's command is given):
 *   --insecure                          restore: --insecure [--insecure-allow-remote]; failback:
 *                                       nothing (plain HTTP to the control ports); job flags refused
 *   TLS with --job-tls-cert/-key        both: the job certificate, its key, --tls-ca, --crl
 *   TLS without them                    POST /jobs refused up front: 409 JOB_CERT_MISSING with the
 *                                       flags in its hint (the agent's attachments run as before)
 * Not guaranteed: a job certificate revoked or expired after the agent started is found by the
 * job's command (or refused by the port it calls), and the job fails with that error.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import { loadRevocationList } from "../../tls/crl.ts";
import type { PeerIdentity } from "../../tls/identity.ts";
import { fromPem } from "../../tls/pem.ts";
import { loadTrustAnchor } from "../../tls/trust.ts";
import { verifyPeer } from "../../tls/verify-peer.ts";
import { parseCertificate } from "../../tls/x509-parse.ts";
import { controlPeerRoles, type LinkSecurityFlags } from "../link-security.ts";
import { JobRefusal, type JobKind } from "./agent-jobs-args.ts";

export const jobTlsArgs = {
  "job-tls-cert": { type: "string", valueHint: "FILE", description: "with TLS: an admin (or panel) certificate of the same CA for the panel's restore and failback jobs only (druvaa admin cert issue --role admin --name HOST-jobs): the restore port and the control ports they call take no client certificate. Without it, under TLS, jobs are refused" },
  "job-tls-key": { type: "string", valueHint: "FILE", description: "the private key of --job-tls-cert" },
} as const;

export interface AgentTlsFlags extends LinkSecurityFlags {
  "job-tls-cert"?: string | undefined;
  "job-tls-key"?: string | undefined;
}

/** The job certificate as GET /status shows it. */
export interface JobCertificate {
  name: string;
  role: PeerIdentity["role"];
  serial: string;
  notAfter: string;
}

export interface JobSecurity {
  /** The job certificate (TLS with the job flags), or null (--insecure, or none given). */
  readonly certificate: JobCertificate | null;
  /** The security flags of a job's command; throws JobRefusal (409 JOB_CERT_MISSING) under TLS without a job certificate. */
  argsFor(kind: JobKind): readonly string[];
}

const issueJobCertHint = "Issue the agent a certificate for its jobs from the CA of --tls-ca: druvaa admin cert issue --role admin --name HOST-jobs --dir /etc/druvaa/ca --out /etc/druvaa/tls, then start it with --job-tls-cert /etc/druvaa/tls/HOST-jobs.pem --job-tls-key /etc/druvaa/tls/HOST-jobs.key";

/** The attachments' link-security flags: the agent's own (paths made absolute), or --insecure. */
export function childSecurityArgs(flags: LinkSecurityFlags): string[] {
  if (flags.insecure === true) return ["--insecure", ...(flags["insecure-allow-remote"] === true ? ["--insecure-allow-remote"] : [])];
  const files: [string, string | undefined][] = [["--tls-cert", flags["tls-cert"]], ["--tls-key", flags["tls-key"]], ["--tls-ca", flags["tls-ca"]], ["--crl", flags.crl]];
  return files.flatMap(([flag, path]) => (path === undefined ? [] : [flag, resolve(path)]));
}

async function readText(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new DruvaaError(code === "ENOENT" ? "FILE_NOT_FOUND" : "IO_ERROR", `${flag} ${path}: ${code === "ENOENT" ? "no such file" : error instanceof Error ? error.message : String(error)}`, issueJobCertHint, exitCodes.refused);
  }
}

const badJobCert = (message: string, hint: string, cause?: unknown) => new DruvaaError("TLS_BAD_JOB_CERT", message, hint, exitCodes.usage, { cause });

/**
 * Reads and checks the job flags against the agent's own (see the file comment). Call after
 * resolveLinkSecurity: the agent's own TLS files are known good by then.
 */
export async function resolveJobSecurity(flags: AgentTlsFlags, now: Date): Promise<JobSecurity> {
  const certPath = flags["job-tls-cert"];
  const keyPath = flags["job-tls-key"];
  if (flags.insecure === true) {
    if (certPath !== undefined || keyPath !== undefined) throw usageError("--job-tls-cert and --job-tls-key need TLS, not --insecure", "With --insecure the jobs talk plaintext like the agent: drop --job-tls-cert and --job-tls-key, or run the agent with --tls-cert, --tls-key and --tls-ca");
    const restoreArgs = childSecurityArgs(flags);
    return { certificate: null, argsFor: (kind) => (kind === "restore" ? restoreArgs : []) };
  }
  if (certPath === undefined && keyPath === undefined) {
    return {
      certificate: null,
      argsFor: (kind) => {
        throw new JobRefusal(409, "JOB_CERT_MISSING", `this agent runs with TLS and was given no certificate for its jobs: ${kind} needs an admin or panel certificate (the ${kind === "restore" ? "replica's restore port takes" : "replica's and staging's control ports take"} no client certificate)`, `${issueJobCertHint}, and restart the agent; or run druvaa ${kind} on this host with an admin certificate`);
      },
    };
  }
  if (certPath === undefined || keyPath === undefined) throw usageError(`${certPath === undefined ? "--job-tls-key needs --job-tls-cert" : "--job-tls-cert needs --job-tls-key"} as well`, issueJobCertHint);
  const caPath = flags["tls-ca"]!;
  const certPem = await readText(certPath, "--job-tls-cert");
  const keyPem = await readText(keyPath, "--job-tls-key");
  const anchor = loadTrustAnchor(await readText(caPath, "--tls-ca"), "CA certificate (--tls-ca)");
  const crl = flags.crl === undefined ? undefined : loadRevocationList(await readText(flags.crl, "--crl"), anchor, "revocation list (--crl)");
  let certDer: Uint8Array;
  let identity: PeerIdentity;
  try {
    certDer = fromPem(certPem, "CERTIFICATE", "certificate (--job-tls-cert)");
    identity = verifyPeer(certDer, { ca: anchor, crl, now });
  } catch (error) {
    if (!(error instanceof DruvaaError)) throw error;
    const sameCa = error.code === "TLS_PEER_UNTRUSTED" ? `${issueJobCertHint} (the CA that issued the agent's --tls-cert)` : error.hint ?? issueJobCertHint;
    throw badJobCert(`--job-tls-cert ${certPath} cannot be used for the agent's jobs: ${error.message} (${error.code})`, sameCa, error);
  }
  if (!controlPeerRoles.includes(identity.role)) {
    throw badJobCert(`--job-tls-cert ${certPath} is a ${identity.role} certificate ("${identity.name}"): the agent's jobs need an admin or panel certificate (the replica's restore port and the control ports they call take no other)`, issueJobCertHint);
  }
  let keyMatches: boolean;
  try {
    const spki = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
    keyMatches = Buffer.from(spki).equals(Buffer.from(parseCertificate(certDer).spki));
  } catch (error) {
    throw badJobCert(`--job-tls-key ${keyPath} is not a readable private key`, `Give the ${identity.name}.key written next to ${identity.name}.pem by druvaa admin cert issue`, error);
  }
  if (!keyMatches) throw badJobCert(`--job-tls-key ${keyPath} is not the key of --job-tls-cert ${certPath}`, `Give the ${identity.name}.key written together with ${identity.name}.pem by druvaa admin cert issue`);
  const args = ["--tls-cert", resolve(certPath), "--tls-key", resolve(keyPath), "--tls-ca", resolve(caPath), ...(flags.crl === undefined ? [] : ["--crl", resolve(flags.crl)])];
  return {
    certificate: { name: identity.name, role: identity.role, serial: identity.serial, notAfter: identity.notAfter.toISOString() },
    argsFor: () => args,
  };
}
