/**
 * A CA on disk: the directory `druvaa admin ca init` makes and the other admin commands use.
 *
 *   DIR/ca.pem        the CA certificate (public: copy it to every node, they load it with --tls-ca)
 *   DIR/ca.key        the CA private key, PKCS#8 PEM, mode 0600 (keep it off the nodes)
 *   DIR/crl.pem       the revocation list, an X.509 v2 CRL signed by the CA (crl.ts); copy it to
 *                     the nodes (--crl) after each `admin cert revoke`
 *   DIR/issued.jsonl  one JSON line per certificate issued (serial, role, name, devices, dates),
 *                     so `revoke --serial` can catch a mistyped serial
 *
 * Files replaced whole are written to a temp file, fsynced and renamed (writeFileAtomic);
 * issued.jsonl is appended and fsynced. Not guaranteed: two admin commands run at the same time
 * on one CA may lose one revocation (last rename wins) — run them one at a time.
 */
import { chmod, mkdir, open, readFile, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { DruvaaError, exitCodes, fromSystemError } from "../errors.ts";
import { writeFileAtomic } from "../io/state-file.ts";
import { logger } from "../log.ts";
import { createCa, fingerprintOf, issueCertificate, openCa, revocationListPem, type CertificateAuthority, type NodeCertificateRequest } from "./ca.ts";
import { loadRevocationList, type RevocationList, type RevokedEntry } from "./crl.ts";
import { fromPem } from "./pem.ts";
import { issuedBy, signedBy } from "./trust.ts";
import { parseCertificate } from "./x509-parse.ts";

const log = logger("admin:ca");

export const caFileNames = { cert: "ca.pem", key: "ca.key", crl: "crl.pem", issued: "issued.jsonl" } as const;

export function caPaths(dir: string) {
  const root = resolve(dir);
  return { dir: root, cert: join(root, caFileNames.cert), key: join(root, caFileNames.key), crl: join(root, caFileNames.crl), issued: join(root, caFileNames.issued) };
}

/** One line of issued.jsonl. */
export interface IssuedRecord {
  serial: string;
  role: string;
  name: string;
  devices: string[];
  hosts: string[];
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  fingerprint: string;
}

function existsError(paths: string[]): DruvaaError {
  return new DruvaaError("TLS_FILE_EXISTS", `${paths.join(" and ")} already exist${paths.length === 1 ? "s" : ""}`, "Refusing to overwrite; add --force to replace (or choose another --dir/--out/--name)", exitCodes.refused);
}

/** Writes a file durably; `mode` 0600 for keys, 0644 for public files. */
async function writeDurable(path: string, contents: string, mode: number): Promise<void> {
  await writeFileAtomic(path, contents); // temp file created 0600, so a key is never readable by others
  if (mode !== 0o600) await chmod(path, mode);
}

export interface CaInitReport {
  dir: string;
  name: string;
  certFile: string;
  keyFile: string;
  crlFile: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  fingerprint: string;
}

export async function initCaDir(options: { dir: string; name: string; days: number; force: boolean; now: Date }): Promise<CaInitReport> {
  const paths = caPaths(options.dir);
  const present = [paths.cert, paths.key].filter((path) => existsSync(path));
  if (present.length > 0 && !options.force) throw existsError(present);
  try {
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw fromSystemError(error, `creating ${paths.dir}`);
  }
  const ca = createCa(options.name, { now: options.now, days: options.days });
  // Key first: a crash in between leaves a key without a certificate, which init --force replaces.
  await writeDurable(paths.key, ca.keyPem, 0o600);
  await writeDurable(paths.cert, ca.certPem, 0o644);
  await writeDurable(paths.crl, revocationListPem(ca, [], 1, options.now), 0o644);
  await writeDurable(paths.issued, "", 0o600);
  const certificate = ca.anchor.certificate;
  return {
    dir: paths.dir,
    name: options.name,
    certFile: paths.cert,
    keyFile: paths.key,
    crlFile: paths.crl,
    serial: certificate.serial,
    notBefore: certificate.notBefore.toISOString(),
    notAfter: certificate.notAfter.toISOString(),
    fingerprint: fingerprintOf(ca.certPem),
  };
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") {
      throw new DruvaaError("TLS_CA_NOT_FOUND", `${what} ${path} does not exist`, `Create a CA first: druvaa admin ca init --dir ${resolve(path, "..")} (or give --dir)`, exitCodes.notFound, { cause: error });
    }
    throw fromSystemError(error, `reading ${path}`);
  }
}

export interface StoredCa {
  ca: CertificateAuthority;
  paths: ReturnType<typeof caPaths>;
  crl: RevocationList;
}

export async function loadCaDir(dir: string): Promise<StoredCa> {
  const paths = caPaths(dir);
  const [certPem, keyPem, crlPem] = [await readText(paths.cert, "CA certificate"), await readText(paths.key, "CA key"), await readText(paths.crl, "revocation list")];
  const keyMode = (await stat(paths.key)).mode & 0o777;
  if ((keyMode & 0o077) !== 0) log.warn(`${paths.key} is readable by others (mode ${keyMode.toString(8)}); fix with: chmod 600 ${paths.key}`);
  const ca = openCa(certPem, keyPem, `CA in ${paths.dir}`);
  return { ca, paths, crl: loadRevocationList(crlPem, ca.anchor, paths.crl) };
}

export interface IssueReport extends Omit<IssuedRecord, "issuedAt"> {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export async function issueToFiles(stored: StoredCa, request: NodeCertificateRequest, options: { days: number; outDir: string; force: boolean; now: Date }): Promise<IssueReport> {
  const outDir = resolve(options.outDir);
  const certFile = join(outDir, `${request.name}.pem`);
  const keyFile = join(outDir, `${request.name}.key`);
  const present = [certFile, keyFile].filter((path) => existsSync(path));
  if (present.length > 0 && !options.force) throw existsError(present);
  const issued = issueCertificate(stored.ca, request, { now: options.now, days: options.days });
  try {
    await mkdir(outDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw fromSystemError(error, `creating ${outDir}`);
  }
  await writeDurable(keyFile, issued.keyPem, 0o600);
  await writeDurable(certFile, issued.certPem, 0o644);
  const record: IssuedRecord = {
    serial: issued.serial,
    role: request.role,
    name: request.name,
    devices: [...request.devices],
    hosts: request.hosts.map((host) => (host.kind === "dns" ? host.name : host.address)),
    notBefore: issued.notBefore.toISOString(),
    notAfter: issued.notAfter.toISOString(),
    issuedAt: options.now.toISOString(),
    fingerprint: issued.fingerprint,
  };
  await appendDurable(stored.paths.issued, `${JSON.stringify(record)}\n`);
  const { issuedAt: _issuedAt, ...rest } = record;
  return { ...rest, certFile, keyFile, caFile: stored.paths.cert };
}

async function appendDurable(path: string, line: string): Promise<void> {
  try {
    const handle = await open(path, "a", 0o600);
    try {
      await handle.appendFile(line);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw fromSystemError(error, `appending to ${path}`);
  }
}

/** The records of issued.jsonl; a line that is not JSON (torn by a crash) is skipped, loudly. */
export async function readIssued(stored: StoredCa): Promise<IssuedRecord[]> {
  let text: string;
  try {
    text = await readFile(stored.paths.issued, "utf8");
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return [];
    throw fromSystemError(error, `reading ${stored.paths.issued}`);
  }
  const records: IssuedRecord[] = [];
  for (const [index, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    try {
      records.push(JSON.parse(line) as IssuedRecord);
    } catch {
      log.warn(`${stored.paths.issued}:${index + 1}: not a JSON line; skipped`);
    }
  }
  return records;
}

/** "0A:1b:..." / "0x0a1b" / "a1b" → "a1b" (lowercase, no separators, no leading zeros). */
export function normalizeSerial(text: string): string {
  const hex = text.trim().replace(/^0x/i, "").replace(/[:\s]/g, "").toLowerCase();
  if (!/^[0-9a-f]{1,40}$/.test(hex)) {
    throw new DruvaaError("USAGE", `--serial "${text}" is not a hexadecimal serial number`, "Copy it from the JSON of druvaa admin cert issue, or from: openssl x509 -noout -serial -in CERT", exitCodes.usage);
  }
  return hex.replace(/^0+(?=.)/, "");
}

/** The serial of a certificate file issued by this CA. */
export async function serialOfCertFile(stored: StoredCa, path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw fromSystemError(error, `reading ${path}`);
  }
  const certificate = parseCertificate(fromPem(text, "CERTIFICATE", path));
  if (!issuedBy(certificate.issuer, stored.ca.anchor) || !signedBy(certificate, stored.ca.anchor.publicKey)) {
    throw new DruvaaError("TLS_NOT_ISSUED_HERE", `${path} was not issued by the CA in ${stored.paths.dir}`, "Give --dir of the CA that issued it", exitCodes.refused);
  }
  return certificate.serial;
}

export interface RevokeReport {
  serial: string;
  revokedAt: string;
  alreadyRevoked: boolean;
  crlFile: string;
  crlNumber: number;
  revokedCount: number;
}

/** Adds `serial` to the CA's CRL (re-signed, crlNumber + 1). Revoking twice changes nothing. */
export async function revokeSerial(stored: StoredCa, serial: string, options: { now: Date; force: boolean }): Promise<RevokeReport> {
  const existing = stored.crl.entries.find((entry) => entry.serial === serial);
  if (existing !== undefined) {
    return { serial, revokedAt: existing.revokedAt.toISOString(), alreadyRevoked: true, crlFile: stored.paths.crl, crlNumber: stored.crl.crlNumber, revokedCount: stored.crl.entries.length };
  }
  if (!options.force && !(await readIssued(stored)).some((record) => record.serial === serial)) {
    throw new DruvaaError("TLS_SERIAL_UNKNOWN", `this CA has no record of issuing serial ${serial}`, `Check the serial (${stored.paths.issued} lists those issued), or add --force to revoke it anyway`, exitCodes.notFound);
  }
  const revokedAt = new Date(Math.floor(options.now.getTime() / 1000) * 1000);
  const entries: RevokedEntry[] = [...stored.crl.entries, { serial, revokedAt }];
  const crlNumber = stored.crl.crlNumber + 1;
  await writeDurable(stored.paths.crl, revocationListPem(stored.ca, entries, crlNumber, options.now), 0o644);
  return { serial, revokedAt: revokedAt.toISOString(), alreadyRevoked: false, crlFile: stored.paths.crl, crlNumber, revokedCount: entries.length };
}
