/**
 * The two stream pieces under every connection, as properties: whatever the chunk boundaries on
 * the way in (ByteQueue) and however little the socket takes on the way out (ReplyWriter), the
 * bytes come out exactly as they went in.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ByteQueue } from "../../src/nbd/byte-queue.ts";
import { ReplyWriter } from "../../src/nbd/reply-writer.ts";
import { nbdErrnoOf } from "../../src/nbd/errno.ts";
import { DruvaaError } from "../../src/errors.ts";

/** Seed for the property tests: FC_SEED replays a failure. */
const fcSeed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`streams.test.ts: fast-check seed ${fcSeed} (replay with FC_SEED=${fcSeed} node_modules/.bin/bun test tests/nbd/streams.test.ts)`);

const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
};

describe("ByteQueue", () => {
  test("any chunking in, any take/skip sizes out: the same byte stream", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 4000 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 900 })), { minLength: 1, maxLength: 40 }),
        (stream, chunkSizes, reads) => {
          const queue = new ByteQueue();
          let at = 0;
          for (let index = 0; at < stream.length; index += 1) {
            const size = chunkSizes[index % chunkSizes.length]!;
            queue.push(stream.subarray(at, at + size));
            at += size;
          }
          expect(queue.length).toBe(stream.length);
          let position = 0;
          for (const [isSkip, size] of reads) {
            const count = Math.min(size, queue.length);
            if (isSkip) {
              expect(queue.skip(size)).toBe(count);
            } else {
              if (count > 0) expect(queue.peekByte(0)).toBe(stream[position]!);
              expect(queue.take(count)).toEqual(stream.subarray(position, position + count));
            }
            position += count;
            expect(queue.length).toBe(stream.length - position);
          }
        },
      ),
      { seed: fcSeed, numRuns: 200 },
    );
  });
});

describe("ReplyWriter", () => {
  test("partial socket writes and drains in any pattern: the peer receives every byte once, in order", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 100_000 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 0, max: 70_000 }), { minLength: 1, maxLength: 20 }),
        async (replies, acceptSizes) => {
          const received: Uint8Array[] = [];
          let ended = false;
          let writes = 0;
          const socket = {
            write(data: Uint8Array, byteOffset = 0, byteLength = data.length - byteOffset) {
              const accepted = Math.min(byteLength, acceptSizes[writes % acceptSizes.length]!);
              writes += 1;
              received.push(data.slice(byteOffset, byteOffset + accepted));
              return accepted;
            },
            end() {
              ended = true;
            },
          };
          const writer = new ReplyWriter(socket, () => {});
          for (const reply of replies) writer.send(reply);
          writer.endWhenFlushed();
          // Play Bun's event loop: let microtasks run, then drain until everything is out.
          for (let rounds = 0; !ended; rounds += 1) {
            await Promise.resolve();
            writer.drain();
            // Guard against a writer that never finishes; a zero-only accept pattern is just slow.
            if (rounds > 100_000) throw new Error("writer never finished");
            if (acceptSizes.every((size) => size === 0)) break;
          }
          if (acceptSizes.every((size) => size === 0)) {
            expect(ended).toBe(false);
            expect(writer.queuedBytes).toBe(replies.reduce((sum, reply) => sum + reply.length, 0));
            return;
          }
          expect(writer.queuedBytes).toBe(0);
          expect(concat(received)).toEqual(concat(replies));
        },
      ),
      { seed: fcSeed, numRuns: 100 },
    );
  });

  test("a closed socket (write returns -1) drops the queue and ends it", async () => {
    let ended = false;
    const writer = new ReplyWriter({ write: () => -1, end: () => (ended = true) }, () => {});
    writer.send(new Uint8Array(10));
    await Promise.resolve();
    expect(writer.queuedBytes).toBe(0);
    expect(ended).toBe(true);
    writer.send(new Uint8Array(10)); // ignored after the end
    expect(writer.queuedBytes).toBe(0);
  });
});

describe("backend error -> NBD errno", () => {
  test("DruvaaError codes and system errors map as documented, anything else is EIO", () => {
    expect(nbdErrnoOf(new DruvaaError("IO_OUT_OF_RANGE", "x"))).toBe(22);
    expect(nbdErrnoOf(new DruvaaError("IO_MISALIGNED", "x"))).toBe(22);
    expect(nbdErrnoOf(new DruvaaError("NO_SPACE", "x"))).toBe(28);
    expect(nbdErrnoOf(new DruvaaError("IO_READ_ONLY", "x"))).toBe(1);
    expect(nbdErrnoOf(new DruvaaError("SYSTEM_EDQUOT", "x"))).toBe(28);
    expect(nbdErrnoOf(Object.assign(new Error("x"), { code: "EFBIG" }))).toBe(28);
    expect(nbdErrnoOf(Object.assign(new Error("x"), { code: "EROFS" }))).toBe(1);
    expect(nbdErrnoOf(new DruvaaError("WRL_FULL", "x"))).toBe(5);
    expect(nbdErrnoOf(new Error("x"))).toBe(5);
    expect(nbdErrnoOf("a string")).toBe(5);
    expect(nbdErrnoOf(null)).toBe(5);
  });
});
