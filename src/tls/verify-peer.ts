/**
 * Authorization of a peer from its certificate: is it ours (signed by our CA), current (dates),
 * not revoked (CRL), and allowed here (role, device)? The TLS handshake proved the peer holds the
 * certificate's private key; this decides what that certificate is worth. Every refusal is a
 * DruvaaError with a stable code and a hint (exit code 4, "refused"):
 *
 *   TLS_PEER_UNTRUSTED      no certificate, malformed, not signed by our CA, a CA certificate,
 *                           an unknown critical extension, or no (or several) druvaa role URIs
 *   TLS_CERT_NOT_YET_VALID  notBefore is in the future (clock skew between hosts?)
 *   TLS_CERT_EXPIRED        notAfter has passed
 *   TLS_CERT_REVOKED        its serial is in the CRL
 *   TLS_ROLE_NOT_ALLOWED    a valid certificate, for a role this endpoint does not accept
 *   TLS_DEVICE_NOT_ALLOWED  a client certificate that does not list the device
 *
 * Checks run in that order, so a forged certificate is never reported as merely expired.
 */
import { createHash } from "node:crypto";
import { DruvaaError, exitCodes } from "../errors.ts";
import { certBytesMax } from "./constants.ts";
import type { RevocationList } from "./crl.ts";
import { allowsDevice, deviceFromUri, isCertRole, roleUriPrefix, type CertRole, type PeerIdentity } from "./identity.ts";
import { issuedBy, signedBy, type TrustAnchor } from "./trust.ts";
import { parseCertificate, type ParsedCertificate } from "./x509-parse.ts";

export interface VerifyPeerOptions {
  /** Our CA: the peer's certificate must be signed by it. */
  readonly ca: TrustAnchor;
  /** Revoked serials; none are checked when absent. */
  readonly crl?: RevocationList | undefined;
  /** The time to check validity at (passed in: the clock belongs to the I/O seam). */
  readonly now: Date;
  /** The role(s) this endpoint accepts; any role when absent. */
  readonly role?: CertRole | readonly CertRole[] | undefined;
  /** A device the peer must be allowed to write. */
  readonly device?: string | undefined;
}

const issueHint = (role: string) => `Issue it a certificate from this CA: druvaa admin cert issue --role ${role} --name NAME --dir CADIR (and give both sides the same ca.pem)`;

function refused(code: string, message: string, hint: string): DruvaaError {
  return new DruvaaError(code, message, hint, exitCodes.refused);
}

/** The identity of a peer presenting `certDer`, or the DruvaaError saying why it is refused. */
export function verifyPeer(certDer: Uint8Array | undefined, options: VerifyPeerOptions): PeerIdentity {
  const expected = options.role === undefined ? undefined : typeof options.role === "string" ? [options.role] : options.role;
  const roleText = expected?.join("|") ?? "ROLE";
  if (certDer === undefined || certDer.length === 0) {
    throw refused("TLS_PEER_UNTRUSTED", "no certificate was presented", `Give the peer its certificate and key (--tls-cert/--tls-key); ${issueHint(roleText)}`);
  }
  if (certDer.length > certBytesMax) throw refused("TLS_PEER_UNTRUSTED", `the certificate presented is larger than ${certBytesMax} bytes`, issueHint(roleText));
  let certificate: ParsedCertificate;
  try {
    certificate = parseCertificate(certDer);
  } catch (error) {
    throw refused("TLS_PEER_UNTRUSTED", `the certificate presented is malformed (${error instanceof Error ? error.message : String(error)})`, issueHint(roleText));
  }
  const who = `certificate "${certificate.subjectCommonName ?? "?"}" (serial ${certificate.serial})`;
  if (!issuedBy(certificate.issuer, options.ca) || !signedBy(certificate, options.ca.publicKey)) {
    throw refused("TLS_PEER_UNTRUSTED", `${who} is not signed by our CA "${options.ca.certificate.subjectCommonName ?? "?"}"`, issueHint(roleText));
  }
  if (certificate.isCa) throw refused("TLS_PEER_UNTRUSTED", `${who} is a CA certificate, not a node certificate`, issueHint(roleText));
  if (certificate.unknownCriticalExtensions.length > 0) {
    throw refused("TLS_PEER_UNTRUSTED", `${who} has critical extensions druvaa does not know (${certificate.unknownCriticalExtensions.join(", ")})`, issueHint(roleText));
  }
  const now = options.now.getTime();
  if (now < certificate.notBefore.getTime()) {
    throw refused("TLS_CERT_NOT_YET_VALID", `${who} is not valid before ${certificate.notBefore.toISOString()}`, "Check the clocks of both hosts (timedatectl; chrony or ntpd should run on both)");
  }
  if (now > certificate.notAfter.getTime()) {
    throw refused("TLS_CERT_EXPIRED", `${who} expired on ${certificate.notAfter.toISOString()}`, `Issue a new one: druvaa admin cert issue --role ${roleText} --name ${certificate.subjectCommonName ?? "NAME"} --force (and check the clocks if that date looks wrong)`);
  }
  const revocation = options.crl?.serials.has(certificate.serial) ? options.crl.entries.find((entry) => entry.serial === certificate.serial) : undefined;
  if (revocation !== undefined) {
    throw refused("TLS_CERT_REVOKED", `${who} was revoked on ${revocation.revokedAt.toISOString()}`, `Issue the node a new certificate: druvaa admin cert issue --role ${roleText} --name ${certificate.subjectCommonName ?? "NAME"} --force`);
  }
  const identity = identityOf(certificate, who, roleText);
  if (expected !== undefined && !expected.includes(identity.role)) {
    throw refused("TLS_ROLE_NOT_ALLOWED", `${who} is for role ${identity.role}; this endpoint accepts ${expected.join(" or ")}`, `Connect with a certificate issued for --role ${expected.join("|")} (is the peer pointed at the right port?)`);
  }
  if (options.device !== undefined) checkDevice(identity, options.device);
  return identity;
}

/** Refuses a peer whose certificate does not list `device` (staging, when a client attaches). */
export function checkDevice(identity: PeerIdentity, device: string): void {
  if (allowsDevice(identity, device)) return;
  const listed = identity.devices.length === 0 ? "no devices" : identity.devices.join(", ");
  throw refused("TLS_DEVICE_NOT_ALLOWED", `${identity.role} "${identity.name}" (serial ${identity.serial}) may not write device ${device}: its certificate lists ${listed}`, `Issue it a certificate listing the device: druvaa admin cert issue --role client --name ${identity.name} --device ${device} --force`);
}

function identityOf(certificate: ParsedCertificate, who: string, roleText: string): PeerIdentity {
  const roles = certificate.uris.filter((uri) => uri.startsWith(roleUriPrefix)).map((uri) => uri.slice(roleUriPrefix.length));
  if (roles.length !== 1) throw refused("TLS_PEER_UNTRUSTED", `${who} names ${roles.length === 0 ? "no" : "several"} druvaa roles`, issueHint(roleText));
  const role = roles[0]!;
  if (!isCertRole(role)) throw refused("TLS_PEER_UNTRUSTED", `${who} names an unknown role "${role}"`, issueHint(roleText));
  const devices = certificate.uris.map(deviceFromUri).filter((device): device is string => device !== undefined);
  return {
    role,
    name: certificate.subjectCommonName ?? "",
    devices: role === "client" ? devices : [],
    serial: certificate.serial,
    hosts: [...certificate.dnsNames, ...certificate.ipAddresses],
    notAfter: certificate.notAfter,
    fingerprint: createHash("sha256").update(certificate.der).digest("hex"),
  };
}
