/**
 * TLS for the socket transport (src/io/transport.ts): mutual authentication with druvaa
 * certificates over TLS 1.3.
 *
 * Bun verifies the certificate chain itself, but with `rejectUnauthorized: true` it drops a bad
 * peer inside the TLS library, where we can neither log why nor tell the peer. So both sides run
 * with `rejectUnauthorized: false` (the server with `requestCert: true`) and authorize in the
 * `handshake` callback, before any frame is read: TLS 1.3 only (TLS 1.0-1.2 are also disabled in
 * the library), then verifyPeer (CA signature, dates, CRL, role). Bun's own verdict is kept as a
 * second opinion: a chain error it reports refuses the peer too, except a host-name mismatch
 * (druvaa authorizes by role, not by host name; nodes connect by address).
 */
import { constants, createPrivateKey, createPublicKey } from "node:crypto";
import { DruvaaError, exitCodes } from "../errors.ts";
import { tlsHandshakeTimeoutMs } from "./constants.ts";
import { loadRevocationList } from "./crl.ts";
import { fixedRevocations, type RevocationSource } from "./crl-reload.ts";
import type { CertRole, PeerIdentity } from "./identity.ts";
import { fromPem } from "./pem.ts";
import { loadTrustAnchor, type TrustAnchor } from "./trust.ts";
import { verifyPeer } from "./verify-peer.ts";
import { parseCertificate } from "./x509-parse.ts";

/** What listen()/connect() take to run TLS: PEM texts, as read from --tls-cert etc. */
export interface TransportTls {
  /** This node's certificate (PEM), issued by `ca`. */
  readonly cert: string;
  /** Its private key (PEM). */
  readonly key: string;
  /** The CA certificate (PEM): peers must present a certificate it signed. */
  readonly ca: string;
  /**
   * The CA's revocation list: peers whose serial it lists are refused. PEM text (crl.pem, fixed),
   * or a source that follows the file while the role runs (watchRevocationList).
   */
  readonly crl?: string | RevocationSource | undefined;
  /** Roles a peer must have (a listener: who may connect; a client: whom it expects). */
  readonly expectRole?: CertRole | readonly CertRole[] | undefined;
  /** A peer that has not completed the handshake by then is dropped (default tlsHandshakeTimeoutMs). */
  readonly handshakeTimeoutMs?: number | undefined;
}

/** TransportTls checked and parsed once (prepareTls), reusable for every connection. */
export interface PreparedTls {
  readonly kind: "prepared";
  readonly anchor: TrustAnchor;
  /** Revoked serials, asked at every authorization (a watched file is looked at then). */
  readonly revocations: RevocationSource | undefined;
  readonly expectRole: CertRole | readonly CertRole[] | undefined;
  readonly handshakeTimeoutMs: number;
  /** This node's own identity, from its certificate. */
  readonly identity: PeerIdentity;
  /** For Bun.listen / Bun.connect `tls`. */
  readonly bunServerOptions: Bun.TLSOptions;
  readonly bunClientOptions: Bun.TLSOptions;
}

/** TLS 1.0, 1.1 and 1.2 off: the library negotiates TLS 1.3 or fails. */
const tls13Only = (constants.SSL_OP_NO_TLSv1 ?? 0x04000000) | (constants.SSL_OP_NO_TLSv1_1 ?? 0x10000000) | (constants.SSL_OP_NO_TLSv1_2 ?? 0x08000000);

/** Authorization errors of Bun's that druvaa does not hold against a peer. */
const ignoredLibraryErrors = new Set(["ERR_TLS_CERT_ALTNAME_INVALID"]);

const badMaterial = (detail: string, hint: string, cause?: unknown) => new DruvaaError("TLS_BAD_OWN_CERT", `this node's TLS certificate cannot be used: ${detail}`, hint, exitCodes.usage, { cause });

/**
 * Checks TLS material at startup, so a wrong file fails at once and not at the first peer: the
 * CA and CRL parse and verify, the certificate was issued by that CA and is current and not
 * revoked, and the key belongs to it.
 */
export function prepareTls(tls: TransportTls | PreparedTls, now: Date): PreparedTls {
  if ("kind" in tls) return tls;
  const anchor = loadTrustAnchor(tls.ca, "CA certificate (--tls-ca)");
  const revocations = typeof tls.crl === "string" ? fixedRevocations(loadRevocationList(tls.crl, anchor, "revocation list (--crl)")) : tls.crl;
  let identity: PeerIdentity;
  try {
    identity = verifyPeer(fromPem(tls.cert, "CERTIFICATE", "certificate (--tls-cert)"), { ca: anchor, crl: revocations?.current(), now });
  } catch (error) {
    if (!(error instanceof DruvaaError)) throw error;
    throw badMaterial(`${error.message} (${error.code})`, error.hint ?? "Issue it a new one: druvaa admin cert issue", error);
  }
  let keyMatches: boolean;
  try {
    const spki = createPublicKey(createPrivateKey(tls.key)).export({ type: "spki", format: "der" });
    keyMatches = Buffer.from(spki).equals(Buffer.from(parseCertificate(fromPem(tls.cert, "CERTIFICATE", "certificate")).spki));
  } catch (error) {
    throw badMaterial(`the key (--tls-key) is not a readable private key`, "Give the .key file written next to the certificate by: druvaa admin cert issue", error);
  }
  if (!keyMatches) throw badMaterial("the key (--tls-key) does not belong to the certificate (--tls-cert)", "Give the NAME.key written together with NAME.pem by: druvaa admin cert issue");
  const common = { cert: tls.cert, key: tls.key, ca: tls.ca, rejectUnauthorized: false, secureOptions: tls13Only };
  return {
    kind: "prepared",
    anchor,
    revocations,
    expectRole: tls.expectRole,
    handshakeTimeoutMs: tls.handshakeTimeoutMs ?? tlsHandshakeTimeoutMs,
    identity,
    bunServerOptions: { ...common, requestCert: true },
    bunClientOptions: common,
  };
}

/** What authorizeTlsPeer reads from a Bun TLS socket. */
export interface TlsSocketLike {
  getTLSVersion(): string | null;
  getPeerCertificate(): { raw?: Uint8Array } | null | object;
}

/**
 * Decides, in Bun's `handshake` callback, whether the peer may talk to us: its identity, or a
 * DruvaaError (TLS_HANDSHAKE_FAILED, or one of verifyPeer's codes).
 */
export function authorizeTlsPeer(socket: TlsSocketLike, tls: PreparedTls, authorizationError: Error | null, now: Date): PeerIdentity {
  const version = socket.getTLSVersion();
  const libraryCode = (authorizationError as { code?: unknown } | null)?.code;
  if (version !== "TLSv1.3" || libraryCode === "EPROTO") {
    throw new DruvaaError("TLS_HANDSHAKE_FAILED", `TLS handshake failed (${typeof libraryCode === "string" ? libraryCode : authorizationError?.message ?? `protocol ${version ?? "none"}`})`, "Both ends must use TLS 1.3 with druvaa certificates: is the peer started with --tls-cert/--tls-key/--tls-ca (or both with --insecure)?", exitCodes.refused);
  }
  const peerCertificate = socket.getPeerCertificate() as { raw?: Uint8Array } | null;
  const identity = verifyPeer(peerCertificate?.raw === undefined ? undefined : new Uint8Array(peerCertificate.raw), { ca: tls.anchor, crl: tls.revocations?.current(), now, role: tls.expectRole });
  if (authorizationError !== null && !(typeof libraryCode === "string" && ignoredLibraryErrors.has(libraryCode))) {
    throw new DruvaaError("TLS_PEER_UNTRUSTED", `the TLS library refused certificate "${identity.name}" (serial ${identity.serial}): ${typeof libraryCode === "string" ? libraryCode : authorizationError.message}`, "Issue it a certificate from this CA: druvaa admin cert issue", exitCodes.refused);
  }
  return identity;
}

/** True when the list `tls` checks peers against now revokes `identity` (an open session's peer). */
export function isRevoked(tls: PreparedTls, identity: PeerIdentity): boolean {
  return tls.revocations?.current().serials.has(identity.serial) === true;
}

/**
 * TLS options for Bun's fetch() (a tool talking HTTPS to a control port): our certificate, and the
 * server's checked twice, by the library against the CA (it must be able to refuse: with
 * `rejectUnauthorized: false` Bun ignores checkServerIdentity's verdict, measured on Bun 1.4.5)
 * and by verifyPeer in checkServerIdentity (role, CRL), which replaces the host-name check: druvaa
 * authorizes by role. The server accepts TLS 1.3 only.
 */
export function fetchTlsOptions(tls: PreparedTls): Record<string, unknown> {
  return {
    cert: tls.bunClientOptions.cert,
    key: tls.bunClientOptions.key,
    ca: tls.anchor.pem,
    rejectUnauthorized: true,
    checkServerIdentity: (_host: string, certificate: { raw?: Uint8Array } | undefined): Error | undefined => {
      try {
        verifyPeer(certificate?.raw === undefined ? undefined : new Uint8Array(certificate.raw), { ca: tls.anchor, crl: tls.revocations?.current(), now: new Date(), role: tls.expectRole });
        return undefined;
      } catch (error) {
        return error instanceof Error ? error : new Error(String(error));
      }
    },
  };
}
