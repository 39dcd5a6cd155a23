/**
 * Revocation lists: standard X.509 v2 CRLs (RFC 5280 5.1), PEM "X509 CRL", signed by the CA with
 * ECDSA P-256 / SHA-256, so `openssl crl -text` reads them and `openssl verify -crl_check`
 * honours them. `druvaa admin cert revoke` rewrites the CA's crl.pem with one entry more (and
 * crlNumber + 1); peers load it with --crl and refuse every serial it lists.
 *
 * Entries carry the serial and revocation date only (no reason codes). There is no nextUpdate: a
 * druvaa CRL does not go stale, it is replaced when a certificate is revoked; roles read it at start
 * and again whenever the file changes while they run (src/tls/crl-reload.ts).
 */
import type { KeyObject } from "node:crypto";
import { DruvaaError, exitCodes } from "../errors.ts";
import { crlBytesMax } from "./constants.ts";
import { bitString, derTags, explicit, implicitPrimitive, integer, octetString, oid, sequence, time, unsignedInteger } from "./der.ts";
import { children, derError, expectTag, readBitString, readOid, readSingle, readTime, readUnsignedHex, type DerNode } from "./der-read.ts";
import { oids } from "./oids.ts";
import { fromPem, toPem } from "./pem.ts";
import { issuedBy, signedBy, type TrustAnchor } from "./trust.ts";
import { ecdsaSha256, signWithKey } from "./x509-build.ts";

export interface RevokedEntry {
  /** Lowercase hex, no leading zeros (as ParsedCertificate.serial). */
  readonly serial: string;
  readonly revokedAt: Date;
}

/** A verified revocation list: what verifyPeer consults. */
export interface RevocationList {
  readonly thisUpdate: Date;
  readonly crlNumber: number;
  readonly entries: readonly RevokedEntry[];
  /** Serials, for lookup. */
  readonly serials: ReadonlySet<string>;
}

export interface CrlSpec {
  issuerName: Uint8Array;
  issuerKeyId: Uint8Array;
  issuerKey: KeyObject;
  thisUpdate: Date;
  crlNumber: number;
  entries: readonly RevokedEntry[];
}

export function buildCrl(spec: CrlSpec): string {
  const revoked = spec.entries.map((entry) => sequence(unsignedInteger(serialBytes(entry.serial)), time(entry.revokedAt)));
  const extensions = sequence(
    sequence(oid(oids.authorityKeyIdentifier), octetString(sequence(implicitPrimitive(0, spec.issuerKeyId)))),
    sequence(oid(oids.crlNumber), octetString(integer(BigInt(spec.crlNumber)))),
  );
  const tbs = sequence(
    integer(1n), // v2
    ecdsaSha256(),
    spec.issuerName,
    time(spec.thisUpdate),
    ...(revoked.length === 0 ? [] : [sequence(...revoked)]), // an empty list is left out (RFC 5280)
    explicit(0, extensions),
  );
  return toPem("X509 CRL", sequence(tbs, ecdsaSha256(), bitString(signWithKey(tbs, spec.issuerKey))));
}

/** Reads a CRL (PEM) and checks that `anchor` signed it; `what` names its source in errors. */
export function loadRevocationList(pem: string, anchor: TrustAnchor, what: string): RevocationList {
  const bad = (detail: string, cause?: unknown) => new DruvaaError("TLS_CRL_INVALID", `${what}: ${detail}`, "Give the crl.pem of the same CA (druvaa admin ca init writes it; druvaa admin cert revoke updates it)", exitCodes.usage, { cause });
  const der = fromPem(pem, "X509 CRL", what);
  if (der.length > crlBytesMax) throw bad(`larger than ${crlBytesMax} bytes`);
  let parsed: ReturnType<typeof parseCrl>;
  try {
    parsed = parseCrl(der);
  } catch (error) {
    throw bad(error instanceof Error ? error.message : String(error), error);
  }
  if (!issuedBy(parsed.issuer, anchor)) throw bad("issued by another CA");
  if (!signedBy(parsed, anchor.publicKey)) throw bad("its signature does not verify with the CA's key (altered, or another CA's)");
  return { thisUpdate: parsed.thisUpdate, crlNumber: parsed.crlNumber, entries: parsed.entries, serials: new Set(parsed.entries.map((entry) => entry.serial)) };
}

/** A serial's bytes from its hex form (odd lengths get a leading zero nibble). */
export function serialBytes(serial: string): Uint8Array {
  return Uint8Array.from(Buffer.from(serial.length % 2 === 1 ? `0${serial}` : serial, "hex"));
}

function parseCrl(der: Uint8Array) {
  const [tbsNode, algorithmNode, signatureNode] = children(readSingle(der, derTags.sequence));
  const fields = children(expectTag(tbsNode, derTags.sequence, "tbsCertList"));
  let index = fields[0]?.tag === derTags.integer ? 1 : 0; // version v2
  index += 1; // inner signature algorithm
  const issuer = expectTag(fields[index++], derTags.sequence, "issuer").bytes;
  const thisUpdate = readTime(fields[index++], "thisUpdate");
  if (fields[index]?.tag === derTags.utcTime || fields[index]?.tag === derTags.generalizedTime) index += 1; // nextUpdate
  const entries: RevokedEntry[] = [];
  if (fields[index]?.tag === derTags.sequence) {
    for (const entry of children(fields[index++]!)) {
      const [serial, date] = children(expectTag(entry, derTags.sequence, "revoked certificate"));
      entries.push({ serial: readUnsignedHex(serial, "revoked serial"), revokedAt: readTime(date, "revocationDate") });
    }
  }
  let crlNumber = 0;
  if (fields[index]?.tag === 0xa0) crlNumber = readCrlNumber(children(fields[index]!)[0]);
  const signatureAlgorithm = readOid(children(expectTag(algorithmNode, derTags.sequence, "signatureAlgorithm"))[0], "signatureAlgorithm");
  const { bytes: signature, unusedBits } = readBitString(signatureNode, "signatureValue");
  if (unusedBits !== 0) throw derError("signature has unused bits");
  return { tbs: tbsNode!.bytes, signatureAlgorithm, signature, issuer, thisUpdate, entries, crlNumber };
}

function readCrlNumber(extensions: DerNode | undefined): number {
  for (const extension of children(expectTag(extensions, derTags.sequence, "crlExtensions"))) {
    const fields = children(expectTag(extension, derTags.sequence, "extension"));
    if (readOid(fields[0], "extension id") !== oids.crlNumber) continue;
    const hex = readUnsignedHex(readSingle(expectTag(fields[fields.length - 1], derTags.octetString, "crlNumber").content), "crlNumber");
    if (hex.length > 12) throw derError("crlNumber too large");
    return Number.parseInt(hex, 16);
  }
  return 0;
}
