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

/**
 * Metric history (history.ts): tier 0 holds every poll round's sample, tier 1 per-minute
 * averages, tier 2 15-minute averages; each tier kept this long, and at most this many rows per
 * series and tier (a fast poll cannot grow it without bound). Pruning looks at this many series
 * per round (round robin) and deletes at most this many rows per round.
 */
export const metricTierStepMs = [0, 60_000, 15 * 60_000] as const;
export const metricTierKeepMs = [60 * 60_000, 2 * 24 * 60 * 60_000, 60 * 24 * 60 * 60_000] as const;
export const metricRowsPerSeriesMax = 10_000;
export const metricSeriesMax = 5_000;
export const metricPruneSeriesPerRound = 20;
export const metricPruneRowsPerRoundMax = 20_000;
/** GET /api/metrics answers at most this many points. */
export const metricPointsMax = 1000;

/** The weekly digest (digest.ts): checked this often; never two within digestGapMinMs. */
export const digestCheckIntervalMs = 60_000;
export const digestGapMinMs = 6 * 24 * 60 * 60_000;
export const digestWindowMs = 7 * 24 * 60 * 60_000;
/** A digest whose slot passed while the panel was down still goes out this long after the slot. */
export const digestLateMaxMs = 24 * 60 * 60_000;
/** Lines of each digest section at most (alerts, activity, metrics). */
export const digestSectionLinesMax = 200;

/** GET /api/live (live.ts): streams open at most, comment heartbeat, events queued for a slow reader. */
export const liveStreamsMax = 50;
export const liveHeartbeatMs = 15_000;
export const liveQueuedEventsMax = 100;
/** Stopping: how long the panel gives Bun to write the end of the closed streams. */
export const liveCloseFlushMs = 50;

assert(metricTierKeepMs[0] > metricTierStepMs[1] && metricTierKeepMs[1] > metricTierStepMs[2], "a tier keeps its rows until the next tier has folded them");
assert(metricTierKeepMs[0] < metricTierKeepMs[1] && metricTierKeepMs[1] < metricTierKeepMs[2], "coarser tiers keep longer");
assert(metricRowsPerSeriesMax >= metricTierKeepMs[1] / metricTierStepMs[1] && metricRowsPerSeriesMax >= metricTierKeepMs[2] / metricTierStepMs[2], "the row cap must not cut tiers 1 and 2 short");
assert(digestGapMinMs < digestWindowMs, "a weekly digest must be able to go out every week");

/**
 * Configuration (config-coordinator.ts, config-converge.ts): each prepare/commit/abort/GET /config
 * to a component bounded by configRequestTimeoutMs; transactions waiting their turn at most
 * configTxQueueMax (more answer 503); the convergence loop every configConvergeIntervalMs; a
 * component behind the decided config for longer than configBehindGraceMs raises CONFIG_BEHIND.
 */
export const configRequestTimeoutMs = 5_000;
export const configTxQueueMax = 20;
export const configConvergeIntervalMs = 3_000;
export const configBehindGraceMs = 30_000;
/** GET /api/transactions?limit= bounds; WRLs, change maps and pairs the panel keeps at most. */
export const configTxLimitDefault = 50;
export const configTxLimitMax = 1000;
export const wrlsMax = 1000;
export const changemapsMax = 1000;
export const pairsMax = 2000;
/** A WRL's paths at most (primary plus secondaries). */
export const wrlPathsMax = 8;

assert(configRequestTimeoutMs < configBehindGraceMs, "a component gets at least one full try before CONFIG_BEHIND");
assert(configTxLimitDefault <= configTxLimitMax, "transaction list bounds");
