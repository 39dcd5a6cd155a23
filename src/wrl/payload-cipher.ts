/**
 * Encryption at rest of WRL record payloads (`--encrypt-at-rest KEYFILE`): AES-256-CTR, length
 * preserving, so records keep their size and layout and the payload checksum covers exactly
 * what is on disk (the ciphertext): recovery checks records without the key.
 *
 * Keys. The key file's 32 bytes are never used directly: each WRL encrypts with
 *   payload key = HMAC-SHA256(key, "druvaa-wrl-payload-key" | WRL uuid | salt)
 * where `salt` is 16 random bytes drawn when the WRL is created and kept in its superblock, so
 * one key file can serve many WRLs, and a WRL re-created with the same uuid and key still gets a
 * fresh payload key. The superblock also keeps a key check value,
 *   HMAC-SHA256(key, "druvaa-wrl-key-check" | WRL uuid | salt), first 12 bytes,
 * so a wrong key is refused at open instead of relaying garbage.
 *
 * Counter blocks. AES-CTR must never use a counter block twice under one key. Record r gets
 *   incarnation (u32 BE) | LSN (u64 BE) | block counter (u32 BE, from 0)
 * An LSN is handed out once per incarnation (reservations only move forward; after an I/O error
 * the log stops), and every read-write open makes a new incarnation durable before it writes a
 * record, so (incarnation, LSN) never repeats within a WRL, not even when a crash discards a torn
 * tail and the next open writes new records at the same LSNs. The 32-bit block counter covers
 * 64 GiB, far above any record's payload, so one record's blocks never reach the next record's.
 *
 * Not guaranteed: integrity. CTR has no authentication tag and the CRC only catches accidents,
 * so someone who can write the WRL device can flip payload bits undetected; record headers
 * (device, offset, length, LSN) stay in the clear. The in-memory record cache keeps plaintext.
 */
import { createCipheriv, createHmac } from "node:crypto";
import { assert } from "../assert.ts";

export const wrlKeyBytes = 32;
export const wrlKeySaltBytes = 16;
export const wrlKeyCheckBytes = 12;
/** Payload bytes one record's counter blocks can cover (2^32 blocks of 16 bytes). */
const payloadBytesMax = 2 ** 36;

const encoder = new TextEncoder();

function hmac(key: Uint8Array, label: string, uuid: Uint8Array, salt: Uint8Array): Buffer {
  assert(key.length === wrlKeyBytes && uuid.length === 16 && salt.length === wrlKeySaltBytes, "key derivation inputs");
  return createHmac("sha256", key).update(encoder.encode(label)).update(uuid).update(salt).digest();
}

/** What the superblock keeps to recognise the right key for WRL `uuid`. */
export function keyCheckValue(key: Uint8Array, uuid: Uint8Array, salt: Uint8Array): Uint8Array {
  return new Uint8Array(hmac(key, "druvaa-wrl-key-check", uuid, salt).subarray(0, wrlKeyCheckBytes));
}

/** Encrypts and decrypts the payloads of one WRL. */
export class PayloadCipher {
  private readonly payloadKey: Buffer;

  constructor(key: Uint8Array, uuid: Uint8Array, salt: Uint8Array) {
    this.payloadKey = hmac(key, "druvaa-wrl-payload-key", uuid, salt);
  }

  private run(bytes: Uint8Array, incarnation: number, lsn: number): Buffer {
    assert(bytes.length < payloadBytesMax, "payload fits one record's counter blocks");
    assert(Number.isSafeInteger(lsn) && lsn >= 1 && Number.isInteger(incarnation) && incarnation >= 1 && incarnation <= 0xffff_ffff, "counter block inputs");
    const iv = new Uint8Array(16);
    const view = new DataView(iv.buffer);
    view.setUint32(0, incarnation, false);
    view.setBigUint64(4, BigInt(lsn), false);
    // Bytes 12..15: the block counter, 0 for the first 16 bytes of the payload.
    const cipher = createCipheriv("aes-256-ctr", this.payloadKey, iv);
    const out = cipher.update(bytes);
    const rest = cipher.final();
    assert(rest.length === 0 && out.length === bytes.length, "CTR is length preserving");
    return out;
  }

  /** Encrypts `bytes` (the payload of record `lsn` written by `incarnation`) in place. */
  encryptInPlace(bytes: Uint8Array, incarnation: number, lsn: number): void {
    if (bytes.length > 0) bytes.set(this.run(bytes, incarnation, lsn));
  }

  /** The plaintext of a payload read from disk, as a new array of its own. */
  decrypt(ciphertext: Uint8Array, incarnation: number, lsn: number): Uint8Array {
    const plain = new Uint8Array(ciphertext.length);
    if (ciphertext.length > 0) plain.set(this.run(ciphertext, incarnation, lsn));
    return plain;
  }
}
