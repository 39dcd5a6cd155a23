/**
 * Reads the parts of an X.509 certificate druvaa decides on — serial, issuer and subject,
 * validity, basicConstraints, subjectAltName, key identifiers — with our DER reader. It checks
 * structure only: whether the certificate is trusted (signature, dates, revocation, role) is
 * decided in verify-peer.ts.
 */
import { derTags } from "./der.ts";
import { children, derError, expectTag, readBitString, readBoolean, readOid, readSingle, readString, readTime, readUnsignedHex, type DerNode } from "./der-read.ts";
import { oids } from "./oids.ts";

export interface ParsedCertificate {
  readonly der: Uint8Array;
  /** The signed part (tbsCertificate), whole encoding. */
  readonly tbs: Uint8Array;
  readonly signatureAlgorithm: string;
  readonly signature: Uint8Array;
  /** Lowercase hex, no leading zeros. */
  readonly serial: string;
  /** Issuer and subject Name, whole encodings (compared bytewise: we write both). */
  readonly issuer: Uint8Array;
  readonly subject: Uint8Array;
  readonly subjectCommonName: string | undefined;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** subjectPublicKeyInfo, whole encoding (node:crypto's "spki" DER). */
  readonly spki: Uint8Array;
  readonly isCa: boolean;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly subjectKeyId: Uint8Array | undefined;
  readonly authorityKeyId: Uint8Array | undefined;
  /** Critical extensions this reader does not know: such a certificate must be refused. */
  readonly unknownCriticalExtensions: readonly string[];
}

const knownExtensions = new Set<string>([oids.basicConstraints, oids.keyUsage, oids.extKeyUsage, oids.subjectAltName, oids.subjectKeyIdentifier, oids.authorityKeyIdentifier]);

export function parseCertificate(der: Uint8Array): ParsedCertificate {
  const [tbsNode, algorithmNode, signatureNode, ...extra] = children(readSingle(der, derTags.sequence));
  if (extra.length > 0) throw derError("certificate has extra fields");
  const tbsFields = children(expectTag(tbsNode, derTags.sequence, "tbsCertificate"));
  let index = 0;
  if (tbsFields[0]?.tag === 0xa0) index += 1; // [0] version (v3 = 2); absent means v1
  const serial = readUnsignedHex(tbsFields[index++], "serialNumber");
  const innerAlgorithmNode = tbsFields[index++]; // must equal the outer one (checked below)
  const issuer = expectTag(tbsFields[index++], derTags.sequence, "issuer").bytes;
  const [notBeforeNode, notAfterNode] = children(expectTag(tbsFields[index++], derTags.sequence, "validity"));
  const subjectNode = expectTag(tbsFields[index++], derTags.sequence, "subject");
  const spki = expectTag(tbsFields[index++], derTags.sequence, "subjectPublicKeyInfo").bytes;
  const signatureAlgorithm = readOid(children(expectTag(algorithmNode, derTags.sequence, "signatureAlgorithm"))[0], "signatureAlgorithm");
  if (readOid(children(expectTag(innerAlgorithmNode, derTags.sequence, "tbs signature"))[0], "tbs signature") !== signatureAlgorithm) {
    throw derError("the signature algorithm inside the certificate differs from the outer one");
  }
  const extensions = { isCa: false, uris: [] as string[], dnsNames: [] as string[], ipAddresses: [] as string[], subjectKeyId: undefined as Uint8Array | undefined, authorityKeyId: undefined as Uint8Array | undefined, unknownCriticalExtensions: [] as string[] };
  const extensionsNode = tbsFields.slice(index).find((node) => node.tag === 0xa3);
  if (extensionsNode !== undefined) readExtensions(children(expectTag(children(extensionsNode)[0], derTags.sequence, "extensions")), extensions);
  const { bytes: signature, unusedBits } = readBitString(signatureNode, "signatureValue");
  if (unusedBits !== 0) throw derError("signature has unused bits");
  return {
    der,
    tbs: tbsNode!.bytes,
    signatureAlgorithm,
    signature,
    serial,
    issuer,
    subject: subjectNode.bytes,
    subjectCommonName: commonNameOf(subjectNode),
    notBefore: readTime(notBeforeNode, "notBefore"),
    notAfter: readTime(notAfterNode, "notAfter"),
    spki,
    ...extensions,
  };
}

type ExtensionFields = { isCa: boolean; uris: string[]; dnsNames: string[]; ipAddresses: string[]; subjectKeyId: Uint8Array | undefined; authorityKeyId: Uint8Array | undefined; unknownCriticalExtensions: string[] };

function readExtensions(nodes: DerNode[], into: ExtensionFields): void {
  const seen = new Set<string>();
  for (const node of nodes) {
    const fields = children(expectTag(node, derTags.sequence, "extension"));
    const id = readOid(fields[0], "extension id");
    if (seen.has(id)) throw derError(`extension ${id} appears twice`);
    seen.add(id);
    const critical = fields.length === 3 ? readBoolean(fields[1], "extension critical") : false;
    const value = readSingle(expectTag(fields[fields.length - 1], derTags.octetString, "extension value").content);
    if (!knownExtensions.has(id)) {
      if (critical) into.unknownCriticalExtensions.push(id);
      continue;
    }
    if (id === oids.basicConstraints) {
      const items = children(expectTag(value, derTags.sequence, "basicConstraints"));
      into.isCa = items[0]?.tag === derTags.boolean ? readBoolean(items[0], "basicConstraints cA") : false;
    } else if (id === oids.subjectAltName) {
      for (const name of children(expectTag(value, derTags.sequence, "subjectAltName"))) readGeneralName(name, into);
    } else if (id === oids.subjectKeyIdentifier) {
      into.subjectKeyId = expectTag(value, derTags.octetString, "subjectKeyIdentifier").content;
    } else if (id === oids.authorityKeyIdentifier) {
      into.authorityKeyId = children(expectTag(value, derTags.sequence, "authorityKeyIdentifier")).find((item) => item.tag === 0x80)?.content;
    }
  }
}

function readGeneralName(name: DerNode, into: ExtensionFields): void {
  const text = () => new TextDecoder().decode(name.content);
  if (name.tag === 0x86) into.uris.push(text());
  else if (name.tag === 0x82) into.dnsNames.push(text());
  else if (name.tag === 0x87) into.ipAddresses.push(formatIp(name.content));
  // Other name forms (email, directoryName, ...) carry nothing druvaa uses.
}

function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return [...bytes].join(".");
  if (bytes.length !== 16) throw derError("iPAddress is neither 4 nor 16 bytes");
  const groups: string[] = [];
  for (let index = 0; index < 16; index += 2) groups.push(((bytes[index]! << 8) | bytes[index + 1]!).toString(16));
  return groups.join(":");
}

/** The last commonName attribute of a Name (the most specific), if any. */
export function commonNameOf(name: DerNode): string | undefined {
  let commonName: string | undefined;
  for (const rdn of children(name)) {
    for (const attribute of children(expectTag(rdn, derTags.set, "relative distinguished name"))) {
      const [type, value] = children(expectTag(attribute, derTags.sequence, "attribute"));
      if (readOid(type, "attribute type") === oids.commonName) commonName = readString(value, "commonName");
    }
  }
  return commonName;
}

/** The subjectPublicKey bits of a subjectPublicKeyInfo (what key identifiers hash). */
export function spkiKeyBits(spkiDer: Uint8Array): Uint8Array {
  const [, keyNode] = children(readSingle(spkiDer, derTags.sequence));
  return readBitString(keyNode, "subjectPublicKey").bytes;
}
