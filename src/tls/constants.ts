/**
 * Limits and defaults of druvaa's certificates and TLS connections. Kept here, not in
 * src/constants.ts, because only src/tls/, the HTTPS control port (src/io/control-https.ts) and
 * the admin commands use them.
 */
import { assert } from "../assert.ts";

/** Lifetime of a new CA certificate: ten years (a CA is replaced rarely and on purpose). */
export const caValidityDaysDefault = 3650;
/** Lifetime of a new node certificate: two years (an expired one stops replication: see README). */
export const certValidityDaysDefault = 730;
/** Upper bound for --days: certificates past 2049 use GeneralizedTime, valid up to year 9999. */
export const certValidityDaysMax = 36_500;
/**
 * notBefore is set this far before the moment of issue, so a peer whose clock runs behind the
 * CA's does not refuse a certificate issued a moment ago.
 */
export const certBackdateMs = 60 * 60 * 1000;
/** Random serial numbers: 16 bytes (RFC 5280 allows up to 20), the top bit cleared (positive). */
export const certSerialBytes = 16;
/** Node, CA and host names: bounded so they fit in a certificate and a file name. */
export const certNameLengthMax = 64;
/** Devices listed in one client certificate. */
export const certDevicesMax = 256;
/** Host names and addresses (SAN DNS/IP) in one certificate. */
export const certHostsMax = 32;
/** A certificate or CRL read from a peer or a file larger than this is refused unread. */
export const certBytesMax = 64 * 1024;
/** A revocation list larger than this is refused (at 40 bytes an entry: ~100k revocations). */
export const crlBytesMax = 4 * 1024 * 1024;
/** A peer that has not completed the TLS handshake within this time is dropped. */
export const tlsHandshakeTimeoutMs = 10_000;
/** Bytes a peer may send between handshake and authorization (held, then delivered). */
export const tlsEarlyDataBytesMax = 1024 * 1024;
/**
 * A role's --crl file is looked at (one stat) this often, besides at every new TLS connection and
 * on SIGHUP, so a revocation also ends sessions that are already open.
 */
export const crlCheckIntervalMs = 2_000;
/** An HTTPS control-port connection with no request in flight is closed after this long. */
export const controlIdleTimeoutMs = 60_000;
/** A request body larger than this (JSON for POST /verify, /seed ...) is refused with 413. */
export const controlRequestBytesMax = 1024 * 1024;

assert(certValidityDaysDefault <= caValidityDaysDefault, "a node certificate does not outlive its default CA");
assert(caValidityDaysDefault <= certValidityDaysMax, "default CA lifetime within --days bound");
assert(certSerialBytes >= 8 && certSerialBytes <= 20, "RFC 5280: serials up to 20 bytes; at least 64 random bits");
assert(certBytesMax <= crlBytesMax, "a CRL may hold more than one certificate's worth");
assert(crlCheckIntervalMs < tlsHandshakeTimeoutMs, "a revocation takes effect sooner than a stalled handshake is dropped");
assert(tlsHandshakeTimeoutMs < controlIdleTimeoutMs, "an idle control connection outlives a handshake");

/** Where `druvaa admin` keeps the CA when --dir is not given. */
export const caDirDefault = "/etc/druvaa/ca";
