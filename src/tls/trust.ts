/**
 * The trust anchor: the druvaa CA certificate every node is given (`ca.pem`), and the signature
 * check against it. One CA, no intermediates: a node certificate is trusted iff the CA signed it.
 */
import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { DruvaaError, exitCodes } from "../errors.ts";
import { certBytesMax } from "./constants.ts";
import { oids } from "./oids.ts";
import { fromPem } from "./pem.ts";
import { parseCertificate, type ParsedCertificate } from "./x509-parse.ts";

export interface TrustAnchor {
  readonly certificate: ParsedCertificate;
  readonly publicKey: KeyObject;
  /** The CA certificate as PEM (what Bun's `tls.ca` option takes). */
  readonly pem: string;
}

/** Reads a CA certificate from PEM text; `what` names its source in errors. */
export function loadTrustAnchor(pem: string, what: string): TrustAnchor {
  const der = fromPem(pem, "CERTIFICATE", what);
  if (der.length > certBytesMax) throw new DruvaaError("TLS_BAD_CA", `${what}: certificate larger than ${certBytesMax} bytes`, "Give the ca.pem of a CA made by: druvaa admin ca init", exitCodes.usage);
  let certificate: ParsedCertificate;
  try {
    certificate = parseCertificate(der);
  } catch (error) {
    throw new DruvaaError("TLS_BAD_CA", `${what}: ${error instanceof Error ? error.message : String(error)}`, "Give the ca.pem of a CA made by: druvaa admin ca init", exitCodes.usage, { cause: error });
  }
  if (!certificate.isCa) throw new DruvaaError("TLS_BAD_CA", `${what}: not a CA certificate (basicConstraints CA is false)`, "Give the CA's ca.pem, not a node certificate", exitCodes.usage);
  const publicKey = createPublicKey({ key: Buffer.from(certificate.spki), format: "der", type: "spki" });
  if (!signedBy(certificate, publicKey)) throw new DruvaaError("TLS_BAD_CA", `${what}: not self-signed by its own key`, "Give the ca.pem of a CA made by: druvaa admin ca init", exitCodes.usage);
  return { certificate, publicKey, pem };
}

/** True when `signed` (a certificate or CRL) carries a valid ECDSA-SHA256 signature by `key`. */
export function signedBy(signed: { tbs: Uint8Array; signatureAlgorithm: string; signature: Uint8Array }, key: KeyObject): boolean {
  if (signed.signatureAlgorithm !== oids.ecdsaWithSha256) return false;
  try {
    return verify("sha256", signed.tbs, { key, dsaEncoding: "der" }, signed.signature);
  } catch {
    return false; // a malformed signature is simply not a valid one
  }
}

/** True when `issuer` (a Name's encoding) is the anchor's subject. */
export function issuedBy(issuer: Uint8Array, anchor: TrustAnchor): boolean {
  return Buffer.from(issuer).equals(Buffer.from(anchor.certificate.subject));
}
