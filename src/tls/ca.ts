/**
 * A druvaa CA in memory: create one, issue node certificates, write its revocation list. Pure
 * apart from randomness and key generation (node:crypto): files are ca-store.ts's business, so
 * tests build CAs, certificates and CRLs directly, including ones the command line refuses to make
 * (validity in the past, for expiry tests).
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { DruvaaError, exitCodes } from "../errors.ts";
import { buildCrl, type RevokedEntry } from "./crl.ts";
import type { CertRole, HostName } from "./identity.ts";
import { fromPem, toPem } from "./pem.ts";
import { loadTrustAnchor, type TrustAnchor } from "./trust.ts";
import { buildCaCertificate, buildNodeCertificate, keyIdentifier, newKeyPair, newSerial, serialHex, validityFor, type Validity } from "./x509-build.ts";

export interface CertificateAuthority {
  readonly anchor: TrustAnchor;
  readonly privateKey: KeyObject;
  readonly certPem: string;
  /** PKCS#8 PEM of the private key (written mode 0600). */
  readonly keyPem: string;
}

export interface IssuedCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly fingerprint: string;
}

/** Validity by days from `now`, or (tests only) given outright. */
export type ValiditySpec = { now: Date; days: number } | { validity: Validity };

const validityOf = (spec: ValiditySpec): Validity => ("validity" in spec ? spec.validity : validityFor(spec.now, spec.days));

export function fingerprintOf(pem: string): string {
  return createHash("sha256").update(fromPem(pem, "CERTIFICATE", "certificate")).digest("hex");
}

/** A new CA: fresh P-256 key, self-signed certificate. */
export function createCa(name: string, validity: ValiditySpec): CertificateAuthority {
  const { privateKey, publicKey } = newKeyPair();
  const certPem = toPem("CERTIFICATE", buildCaCertificate({ name, validity: validityOf(validity), privateKey, publicKey }));
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  return { anchor: loadTrustAnchor(certPem, `new CA ${name}`), privateKey, certPem, keyPem };
}

/** A CA from its certificate and key (PEM); the key must belong to the certificate. */
export function openCa(certPem: string, keyPem: string, what: string): CertificateAuthority {
  const anchor = loadTrustAnchor(certPem, `${what} certificate`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyPem);
  } catch (error) {
    throw new DruvaaError("TLS_BAD_KEY", `${what} key: not a readable private key (${error instanceof Error ? error.message : String(error)})`, "Give the ca.key written by: druvaa admin ca init", exitCodes.usage, { cause: error });
  }
  const derived = Buffer.from(createPublicKeyDer(privateKey));
  if (!derived.equals(Buffer.from(anchor.certificate.spki))) {
    throw new DruvaaError("TLS_BAD_KEY", `${what}: the key does not belong to the CA certificate`, "ca.key and ca.pem must come from the same druvaa admin ca init", exitCodes.usage);
  }
  return { anchor, privateKey, certPem, keyPem };
}

function createPublicKeyDer(privateKey: KeyObject): Uint8Array {
  return new Uint8Array(createPublicKey(privateKey).export({ type: "spki", format: "der" }));
}

export interface NodeCertificateRequest {
  role: CertRole;
  name: string;
  devices: readonly string[];
  hosts: readonly HostName[];
}

/**
 * A node certificate and its new key, signed by `ca`. Refuses when the CA has expired or would
 * expire before the certificate (a certificate cannot outlive the CA that vouches for it).
 */
export function issueCertificate(ca: CertificateAuthority, request: NodeCertificateRequest, validitySpec: ValiditySpec): IssuedCertificate {
  const validity = validityOf(validitySpec);
  const caCertificate = ca.anchor.certificate;
  if ("now" in validitySpec && validitySpec.now.getTime() > caCertificate.notAfter.getTime()) {
    throw new DruvaaError("TLS_CA_EXPIRED", `the CA "${caCertificate.subjectCommonName}" expired on ${caCertificate.notAfter.toISOString()}`, "Make a new CA (druvaa admin ca init --force) and issue every node a new certificate", exitCodes.refused);
  }
  if (validity.notAfter.getTime() > caCertificate.notAfter.getTime()) {
    const daysLeft = "now" in validitySpec ? Math.floor((caCertificate.notAfter.getTime() - validitySpec.now.getTime()) / 86_400_000) : 0;
    throw new DruvaaError("TLS_CERT_OUTLIVES_CA", `the certificate would outlive the CA, which expires on ${caCertificate.notAfter.toISOString()}`, `Use --days ${daysLeft} or less, or make a new CA`, exitCodes.usage);
  }
  const { privateKey, publicKey } = newKeyPair();
  const serial = newSerial();
  const der = buildNodeCertificate({
    ...request,
    validity,
    publicKey,
    serial,
    issuerName: caCertificate.subject,
    issuerKeyId: caCertificate.subjectKeyId ?? keyIdentifier(caCertificate.spki),
    issuerKey: ca.privateKey,
  });
  const certPem = toPem("CERTIFICATE", der);
  return {
    certPem,
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    serial: serialHex(serial),
    notBefore: new Date(Math.floor(validity.notBefore.getTime() / 1000) * 1000),
    notAfter: new Date(Math.floor(validity.notAfter.getTime() / 1000) * 1000),
    fingerprint: createHash("sha256").update(der).digest("hex"),
  };
}

/** The CA's revocation list (PEM) listing `entries`. */
export function revocationListPem(ca: CertificateAuthority, entries: readonly RevokedEntry[], crlNumber: number, now: Date): string {
  const caCertificate = ca.anchor.certificate;
  return buildCrl({ issuerName: caCertificate.subject, issuerKeyId: caCertificate.subjectKeyId ?? keyIdentifier(caCertificate.spki), issuerKey: ca.privateKey, thisUpdate: now, crlNumber, entries });
}
