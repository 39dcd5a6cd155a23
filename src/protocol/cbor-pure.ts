/**
 * Turns off cbor-x's native string extractor (the optional `cbor-extract` addon) before cbor-x
 * loads. Under Bun 1.4.5 that addon returns garbage and then segfaults the process when decoding
 * headers with non-ASCII strings (seen with the round-trip property tests). Pure-JS cbor-x is
 * fast enough for headers (payloads never go through CBOR).
 *
 * cbor-x reads this variable once, when it is first imported, so this module must be imported
 * before cbor-x everywhere: src/protocol/cbor.ts imports it first and asserts it worked.
 */
process.env.CBOR_NATIVE_ACCELERATION_DISABLED = "true";
