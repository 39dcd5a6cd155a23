/**
 * Bounds of the replica's point-in-time journal (journal.ts) and fast snapshots (snapshot.ts).
 * src/constants.ts holds the rest; these live beside the code they bound.
 */
const MiB = 1024 * 1024;

/** A journal segment file is cut at this size; retention drops whole segments. */
export const journalSegmentBytes = 64 * MiB;
/** Before-images are read, appended and undone in pieces of at most this. */
export const journalPieceBytes = 4 * MiB;
/** Default --retention: how long points are kept (24 h). */
export const journalRetentionMsDefault = 24 * 3600 * 1000;
