/**
 * The activity log as a wrapper around a client export (nbdkit-filter style): before a write,
 * TRIM or WRITE_ZEROES reaches the client write path (overlap gate, staging, the primary), every
 * extent it touches is durably in the activity log; it leaves the log when the request has ended,
 * successfully or not. A request to extents already active costs a map lookup, no I/O and no
 * extra turn of the event loop.
 *
 * Entering before the overlap gate rather than after it changes nothing for safety: the extents
 * are durable before any byte of the request is sent or written. Reads and flushes pass through.
 */
import type { ActivityLog, LeaveActivity } from "../../changemap/activity-log.ts";
import type { NbdExport } from "../../nbd/backend.ts";

/** `inner` with every modifying request recorded in `log` under region `region` first. */
export function withActivityLog(inner: NbdExport, log: ActivityLog, region: string): NbdExport {
  const around = async (offset: number, length: number, body: () => Promise<void>): Promise<void> => {
    const entered = log.enter(region, offset, length);
    const leave: LeaveActivity = typeof entered === "function" ? entered : await entered;
    try {
      await body();
    } finally {
      leave();
    }
  };
  return {
    name: inner.name,
    ...(inner.description === undefined ? {} : { description: inner.description }),
    sizeBytes: inner.sizeBytes,
    logicalBlockSizeBytes: inner.logicalBlockSizeBytes,
    readOnly: inner.readOnly,
    ...(inner.canMultiConn === undefined ? {} : { canMultiConn: inner.canMultiConn }),
    read: (offset, length) => inner.read(offset, length),
    flush: () => inner.flush(),
    write: (offset, data, fua) => around(offset, data.length, () => inner.write(offset, data, fua)),
    trim: (offset, length) => around(offset, length, () => inner.trim(offset, length)),
    writeZeroes: (offset, length, fua, noHole) => around(offset, length, () => inner.writeZeroes(offset, length, fua, noHole)),
  };
}
