/**
 * Builds druvaa's X.509 v3 certificates (RFC 5280) with our own DER encoder (der.ts), signed
 * with ECDSA P-256 / SHA-256 through node:crypto:
 *
 *   CA:   subject = issuer = O=druvaa, CN=<ca name>; basicConstraints critical CA:TRUE pathlen 0;
 *         keyUsage critical keyCertSign, cRLSign, digitalSignature; subjectKeyIdentifier.
 *   Node: issuer = the CA's subject; subject O=druvaa, OU=<role>, CN=<name>;
 *         basicConstraints critical CA:FALSE; keyUsage critical digitalSignature;
 *         extKeyUsage serverAuth + clientAuth (a staging node is a server to its clients and a
 *         client of its replica); subjectAltName with the role/device URIs and hosts
 *         (identity.ts); subject and authority key identifiers.
 *
 * Serial numbers are 16 random bytes (positive, top byte never zero). The validity starts
 * certBackdateMs before now; tests may give notBefore/notAfter directly to make certificates
 * that are expired or not yet valid — the command line never does.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import { isIPv4 } from "node:net";
import { assert } from "../assert.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import { certBackdateMs, certSerialBytes } from "./constants.ts";
import { bitString, boolean, explicit, implicitPrimitive, integer, namedBits, octetString, oid, sequence, setOf, time, unsignedInteger, utf8String } from "./der.ts";
import { deviceUri, roleUri, type CertRole, type HostName } from "./identity.ts";
import { druvaaOrganization, oids } from "./oids.ts";
import { spkiKeyBits } from "./x509-parse.ts";

const dayMs = 24 * 60 * 60 * 1000;

/** The signing algorithm of every druvaa certificate and CRL: ecdsa-with-SHA256, no parameters. */
export const ecdsaSha256 = (): Uint8Array => sequence(oid(oids.ecdsaWithSha256));

export interface Validity {
  notBefore: Date;
  notAfter: Date;
}

/** From now for `days` days, starting a little before now (clock skew between sites). */
export function validityFor(now: Date, days: number): Validity {
  return { notBefore: new Date(now.getTime() - certBackdateMs), notAfter: new Date(now.getTime() + days * dayMs) };
}

export function newKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync("ec", { namedCurve: "P-256" });
}

export function newSerial(): Uint8Array {
  const serial = new Uint8Array(randomBytes(certSerialBytes));
  serial[0] = (serial[0]! & 0x3f) | 0x40; // positive, and always certSerialBytes long
  return serial;
}

export function serialHex(serial: Uint8Array): string {
  return Buffer.from(serial).toString("hex").replace(/^0+(?=.)/, "");
}

/** A distinguished name: O=druvaa[, OU=unit], CN=commonName, one attribute per RDN. */
export function distinguishedName(commonName: string, unit?: string): Uint8Array {
  const rdn = (type: string, value: string) => setOf(sequence(oid(type), utf8String(value)));
  const rdns = [rdn(oids.organizationName, druvaaOrganization)];
  if (unit !== undefined) rdns.push(rdn(oids.organizationalUnitName, unit));
  rdns.push(rdn(oids.commonName, commonName));
  return sequence(...rdns);
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spkiDer: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha1").update(spkiKeyBits(spkiDer)).digest());
}

function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

function ipBytes(address: string): Uint8Array {
  if (isIPv4(address)) return Uint8Array.from(address.split(".").map(Number));
  // IPv6: expand "::" then 8 groups of 16 bits (an embedded IPv4 tail is converted first).
  let text = address.replace(/%.*$/, "");
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1]!.split(".").map(Number) as [number, number, number, number];
    text = text.slice(0, -v4[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = tail === undefined ? [] : Array(8 - headGroups.length - tailGroups.length).fill("0");
  const groups = [...headGroups, ...zeros, ...tailGroups];
  assert(groups.length === 8, `IPv6 address has 8 groups: ${address}`);
  return Uint8Array.from(groups.flatMap((group) => {
    const value = Number.parseInt(group, 16);
    return [value >> 8, value & 0xff];
  }));
}

function subjectAltName(role: CertRole, devices: readonly string[], hosts: readonly HostName[]): Uint8Array {
  const encoder = new TextEncoder();
  const names = [implicitPrimitive(6, encoder.encode(roleUri(role)))];
  for (const device of devices) names.push(implicitPrimitive(6, encoder.encode(deviceUri(device))));
  for (const host of hosts) names.push(host.kind === "dns" ? implicitPrimitive(2, encoder.encode(host.name)) : implicitPrimitive(7, ipBytes(host.address)));
  return sequence(...names);
}

interface TbsInput {
  serial: Uint8Array;
  issuer: Uint8Array;
  subject: Uint8Array;
  validity: Validity;
  spkiDer: Uint8Array;
  extensions: Uint8Array[];
}

function signCertificate(input: TbsInput, signingKey: KeyObject): Uint8Array {
  const tbs = sequence(
    explicit(0, integer(2n)), // v3
    unsignedInteger(input.serial),
    ecdsaSha256(),
    input.issuer,
    sequence(time(input.validity.notBefore), time(input.validity.notAfter)),
    input.subject,
    input.spkiDer,
    explicit(3, sequence(...input.extensions)),
  );
  return sequence(tbs, ecdsaSha256(), bitString(signWithKey(tbs, signingKey)));
}

/** ECDSA P-256 over SHA-256, DER-encoded signature (what X.509 and CRLs carry). */
export function signWithKey(data: Uint8Array, key: KeyObject): Uint8Array {
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new DruvaaError("TLS_BAD_KEY", "the CA key is not an ECDSA P-256 key", "Use a CA made by: druvaa admin ca init", exitCodes.usage);
  }
  return new Uint8Array(sign("sha256", data, { key, dsaEncoding: "der" }));
}

export interface CaCertificateSpec {
  name: string;
  validity: Validity;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** A self-signed CA certificate (DER). */
export function buildCaCertificate(spec: CaCertificateSpec): Uint8Array {
  const spkiDer = new Uint8Array(spec.publicKey.export({ type: "spki", format: "der" }));
  const name = distinguishedName(spec.name);
  const keyId = keyIdentifier(spkiDer);
  return signCertificate({
    serial: newSerial(),
    issuer: name,
    subject: name,
    validity: spec.validity,
    spkiDer,
    extensions: [
      extension(oids.basicConstraints, true, sequence(boolean(true), integer(0n))),
      extension(oids.keyUsage, true, namedBits([0, 5, 6])), // digitalSignature, keyCertSign, cRLSign
      extension(oids.subjectKeyIdentifier, false, octetString(keyId)),
    ],
  }, spec.privateKey);
}

export interface NodeCertificateSpec {
  role: CertRole;
  name: string;
  devices: readonly string[];
  hosts: readonly HostName[];
  validity: Validity;
  publicKey: KeyObject;
  serial: Uint8Array;
  /** The CA: its subject name (DER), its key identifier, its private key. */
  issuerName: Uint8Array;
  issuerKeyId: Uint8Array;
  issuerKey: KeyObject;
}

/** A node certificate (DER) signed by the CA. */
export function buildNodeCertificate(spec: NodeCertificateSpec): Uint8Array {
  const spkiDer = new Uint8Array(spec.publicKey.export({ type: "spki", format: "der" }));
  return signCertificate({
    serial: spec.serial,
    issuer: spec.issuerName,
    subject: distinguishedName(spec.name, spec.role),
    validity: spec.validity,
    spkiDer,
    extensions: [
      extension(oids.basicConstraints, true, sequence()),
      extension(oids.keyUsage, true, namedBits([0])), // digitalSignature
      extension(oids.extKeyUsage, false, sequence(oid(oids.serverAuth), oid(oids.clientAuth))),
      extension(oids.subjectAltName, false, subjectAltName(spec.role, spec.devices, spec.hosts)),
      extension(oids.subjectKeyIdentifier, false, octetString(keyIdentifier(spkiDer))),
      extension(oids.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, spec.issuerKeyId))),
    ],
  }, spec.issuerKey);
}
