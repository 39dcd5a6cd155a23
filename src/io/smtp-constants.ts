/**
 * Bounds of the SMTP client (src/io/smtp.ts), units last. RFC 5321 § 4.5.3.1 gives the protocol's
 * own limits; ours are tighter where an alert mail never needs more.
 */
import { assert } from "../assert.ts";

/** How long each step (connect, greeting, every command's reply, TLS handshake) may take. */
export const smtpStepTimeoutMsDefault = 30_000;
/** Largest reply we accumulate (all lines of a multi-line reply together). */
export const smtpReplyBytesMax = 64 * 1024;
/** Most lines in one multi-line reply (an EHLO lists one extension a line). */
export const smtpReplyLinesMax = 200;
/** RFC 5321 § 4.5.3.1.3 path limit, minus the angle brackets. */
export const smtpAddressBytesMax = 254;
/** RFC 5321 § 4.5.3.1.1 local-part limit. */
export const smtpLocalPartBytesMax = 64;
/** Recipients of one mail (RFC 5321 § 4.5.3.1.8 asks servers to take at least 100). */
export const smtpRecipientsMax = 100;
/** Largest subject, in characters, before encoding. */
export const smtpSubjectCharsMax = 998;
/** Largest text or html body, in UTF-8 bytes. An alert is a few KiB. */
export const smtpBodyBytesMax = 4 * 1024 * 1024;
/** Quoted-printable and encoded-word lines stay within this (RFC 2045 § 6.7, RFC 2047 § 2). */
export const smtpEncodedLineCharsMax = 76;
/** RFC 5322 § 2.1.1: a line of a message, CRLF excluded. */
export const smtpMessageLineCharsMax = 998;

assert(smtpEncodedLineCharsMax < smtpMessageLineCharsMax, "encoded lines must fit message lines");
assert(smtpAddressBytesMax * 2 < smtpReplyBytesMax, "a reply must be able to quote an address");
