/**
 * Bounds of staging's part in failover and failback (relay-retry.ts, failback.ts). Kept out of
 * src/constants.ts (full); same rules: units last, related limits asserted when this loads.
 */
import { assert } from "../../assert.ts";
import { stagingRelayDelayMsMax, wrlReadBytesDefault } from "../../constants.ts";

const MiB = 1024 * 1024;

/**
 * How often the relay asks again while the replica answers FAILED_OVER (its devices of the WRL
 * were failed over): slow, since only druvaa failback ends that, and each try costs a connection.
 */
export const stagingFailedOverRetryMs = 5_000;
/**
 * Most ranges GET /wrl/pending answers; past it, neighbouring ranges are merged (the gaps
 * between them counted as changed), so the answer stays bounded and only ever over-states.
 */
export const stagingPendingRangesMax = 100_000;
/** Payload bytes one WRL read of the pending scan asks for (the scan walks in such steps). */
export const stagingPendingReadBytes = 4 * MiB;
/** How many times a scan starts over when the relay frees records under it (a replica acking). */
export const stagingPendingScanAttemptsMax = 3;

assert(stagingFailedOverRetryMs >= stagingRelayDelayMsMax, "a failed-over replica is asked no more often than the slowest backoff");
assert(stagingPendingRangesMax >= 1, "at least one range (everything merged into one per device in the worst case)");
assert(stagingPendingReadBytes > 0 && stagingPendingReadBytes <= wrlReadBytesDefault, "pending reads are no bigger than the relay's");
assert(stagingPendingScanAttemptsMax >= 1, "a scan runs at least once");
