/**
 * Bounds of the protected replica device (src/roles/replica/protected-device.ts), kept apart from
 * src/constants.ts (full). The reserve is the logical head of every replica device that is stored
 * at the end of the physical device, so partition tables and file-system signatures never sit
 * where blkid, file -s or mount look for them.
 */
import { assert } from "./assert.ts";
import { directIoAlignmentBytes } from "./constants.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Default reserve: 1 MiB covers MBR and GPT (first 34 sectors), ext2/3/4 (superblock at 1 KiB),
 * XFS (sector 0), btrfs (64 KiB), LVM2 (sector 1), swap (last bytes of the first page), NTFS,
 * FAT, ISO 9660 (32 KiB), LUKS (sector 0) and ZFS labels at the head of a device.
 */
export const protectReserveBytesDefault = 1 * MiB;
/** The marker block at physical offset 0: one O_DIRECT-aligned block, zeros after the marker. */
export const protectMarkerBlockBytes = 4 * KiB;
/**
 * The marker itself: the first 512-byte sector of the marker block (sector 1 holds the unswapping
 * copy during an unprotect). It is never written alone: the whole marker block is (one aligned
 * 4 KiB write, O_DIRECT-safe), and a disk tears a write only between sectors, so sector 0 is
 * either the whole marker or what replaced it.
 */
export const protectMarkerBytes = 512;
/** Largest piece moved at once when unprotecting (copying the header back to the front). */
export const protectCopyPieceBytesMax = 1 * MiB;
/** Largest reserve accepted (a sanity bound on the flag: a header copy is read whole at open). */
export const protectReserveBytesMax = 64 * MiB;

assert(protectMarkerBlockBytes === directIoAlignmentBytes, "the marker block is one O_DIRECT block");
assert(protectReserveBytesDefault % protectMarkerBlockBytes === 0 && protectReserveBytesMax % protectMarkerBlockBytes === 0, "reserves are whole marker blocks");
assert(protectCopyPieceBytesMax % directIoAlignmentBytes === 0, "copy pieces stay block aligned");
