/**
 * The panel's bounds and defaults (src/constants.ts is full): units last, related limits
 * asserted against each other when the module loads.
 */
import { assert } from "../../assert.ts";

/** The panel's HTTP port (the product's install guide). */
export const panelPortDefault = 8000;

/** scrypt cost: N = 2^15, r = 8, p = 1 (32 MiB of memory per hash: memory-hard). */
export const scryptCostLog2 = 15;
export const scryptBlockSize = 8;
export const scryptParallelization = 1;
/** node:crypto's default maxmem (32 MiB) is just too small for N=2^15, r=8: 128·N·r = 32 MiB + overhead. */
export const scryptMemoryBytesMax = 64 * 1024 * 1024;
export const passwordSaltBytes = 16;
export const passwordHashBytes = 32;
export const passwordLengthMin = 10;
export const passwordLengthMax = 256;

/** A session ends after this long without a request. */
export const sessionIdleMs = 8 * 60 * 60 * 1000;
export const sessionTokenBytes = 32;
export const sessionCookieName = "druvaa_session";

/** Login rate limiting: this many failures for a user or a client address lock it for loginLockMs. */
export const loginFailuresMax = 5;
export const loginLockMs = 60_000;
/** Entries the limiter keeps (oldest dropped first), so a flood of names cannot grow it without bound. */
export const loginLimiterEntriesMax = 10_000;

/** A request body larger than this is refused (413). */
export const panelRequestBytesMax = 64 * 1024;
/** Bun refuses bodies over this before the handler runs (a bare 413, no JSON). */
export const panelBodyBytesCutoff = 16 * panelRequestBytesMax;
/** GET /api/activity?limit= bounds. */
export const activityLimitDefault = 100;
export const activityLimitMax = 1000;
/** Components the panel manages at most (the status poll's bound). */
export const componentsMax = 500;
export const usersMax = 200;
/** Text fields (names, control addresses) at most this long. */
export const fieldCharsMax = 256;

/** The background status poll: every pollIntervalMs, each GET /status bounded by statusTimeoutMs. */
export const pollIntervalMs = 2_000;
export const statusTimeoutMs = 1_500;

/** Email alerts: pending mails at most (oldest dropped), tries per mail, first retry pause (doubling), per SMTP step. */
export const mailQueueMax = 100;
export const mailAttemptsMax = 3;
export const mailRetryBaseMs = 2_000;
export const mailTimeoutMs = 10_000;
/** Recipients at most, and codes/components named in one filter at most. */
export const mailRecipientsMax = 100;
export const mailFilterNamesMax = 50;

assert(mailAttemptsMax >= 1 && mailQueueMax >= 1, "mail bounds");
assert(statusTimeoutMs < pollIntervalMs, "a status request must end before the next poll");
assert(passwordLengthMin < passwordLengthMax, "password length bounds");
assert(128 * 2 ** scryptCostLog2 * scryptBlockSize < scryptMemoryBytesMax, "scrypt needs 128·N·r bytes");
assert(panelRequestBytesMax < panelBodyBytesCutoff, "the handler sees bodies a little over its limit, to answer them in JSON");
assert(activityLimitDefault <= activityLimitMax, "activity limit bounds");
