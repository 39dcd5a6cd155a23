/**
 * --rate-limit (src/roles/staging/relay-pacing.ts): the token bucket's exact send times on a fake
 * clock (burst, debt, a bucket shared by two relays), the RelayGate's waits and interrupts, and a
 * StagingCore whose relay sends through a limit: every frame reaches the fake replica exactly
 * (bytes of the frame before it) / rate after the one before, resume included, and waiting for
 * tokens makes `auto` compression compress harder.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { encodeFrameBytes } from "../../src/protocol/frame.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { frameBytesOf, RateLimiter, RelayGate, relayRateBurstMs } from "../../src/roles/staging/relay-pacing.ts";
import { Schedule } from "../../src/schedule.ts";
import { ManualClock } from "../sim/clock.ts";
import { closeTrackedFixtures, trackedFixture } from "./fixture.ts";
import { CoreClient, KiB, MiB, applyTo, waitFor } from "./helpers.ts";

afterEach(closeTrackedFixtures);

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const t0 = Date.UTC(2025, 0, 1); // a Wednesday, 00:00 UTC

describe("RateLimiter (token bucket)", () => {
  test("a full bucket lets a frame go at once; the next waits for the bytes of the one before, less the burst", () => {
    const bucket = new RateLimiter(1000); // 1000 bytes/s: one byte per millisecond
    expect(bucket.burstBytes).toBe(relayRateBurstMs); // 100 ms of the rate
    expect(bucket.delayMs(t0)).toBe(0);
    expect(bucket.tokens(t0)).toBe(100);
    bucket.take(600, t0);
    // 100 bytes of burst were there: 500 bytes of debt, 500 ms.
    expect(bucket.tokens(t0)).toBe(-500);
    expect(bucket.delayMs(t0)).toBe(500);
    expect(bucket.delayMs(t0 + 499)).toBe(1);
    expect(bucket.delayMs(t0 + 500)).toBe(0);
    // Sent as soon as allowed: the next waits exactly its predecessor's bytes.
    bucket.take(250, t0 + 500);
    expect(bucket.delayMs(t0 + 500)).toBe(250);
    bucket.take(40, t0 + 750);
    expect(bucket.delayMs(t0 + 750)).toBe(40);
  });

  test("idle time refills the bucket only up to the burst; a late sender is not owed more", () => {
    const bucket = new RateLimiter(2000); // 2 bytes/ms, burst 200 bytes
    bucket.take(1000, t0);
    expect(bucket.delayMs(t0)).toBe(400); // (1000 - 200) / 2
    // Ten seconds idle: at most the burst is back.
    expect(bucket.tokens(t0 + 10_000)).toBe(200);
    bucket.take(200, t0 + 10_000);
    expect(bucket.delayMs(t0 + 10_000)).toBe(0);
    bucket.take(2, t0 + 10_000);
    expect(bucket.delayMs(t0 + 10_000)).toBe(1);
  });

  test("a frame bigger than the burst still goes whole, then the bucket pays it off", () => {
    const bucket = new RateLimiter(1000);
    bucket.take(64 * KiB, t0);
    expect(bucket.delayMs(t0)).toBe(64 * KiB - 100);
  });

  test("frame bytes are what goes on the wire: preamble, CBOR header and payload", () => {
    const messages: [Message, Uint8Array | undefined][] = [
      [{ type: "resume", wrl: "w0", wrlUuid: "5a1f0c3e-7b2d-4e8f-9a6b-1c0d2e3f4a5b" }, undefined],
      [{ type: "pong", nonce: 7 }, undefined],
      [{ type: "ship", wrl: "w0", wrlUuid: "5a1f0c3e-7b2d-4e8f-9a6b-1c0d2e3f4a5b", firstLsn: 1, lastLsn: 1, records: [{ lsn: 1, epoch: 1, device: "d0", offset: 0, length: 4096, flags: 0 }] } as Message, new Uint8Array(4096)],
    ];
    for (const [message, payload] of messages) expect(frameBytesOf(message, payload)).toBe(encodeFrameBytes(message, payload).length);
  });
});

describe("RelayGate", () => {
  const resume: Message = { type: "resume", wrl: "w0", wrlUuid: "5a1f0c3e-7b2d-4e8f-9a6b-1c0d2e3f4a5b" };
  const resumeBytes = frameBytesOf(resume);

  test("pace() resolves at the instant the bucket allows, and answers how long it waited", async () => {
    expect(resumeBytes).toBeGreaterThan(relayRateBurstMs / 2); // so that the third one waits
    expect(resumeBytes).toBeLessThan(relayRateBurstMs); // and the second one does not
    const clock = new ManualClock(t0);
    const gate = new RelayGate(clock, new RateLimiter(1000));
    expect(await gate.pace(resume, undefined, () => false)).toBe(0);
    const second = gate.pace(resume, undefined, () => false);
    let waited: number | undefined;
    void second.then((ms) => (waited = ms));
    // resumeBytes < burst: the second goes at once too.
    await turn();
    expect(waited).toBe(0);
    const third = gate.pace(resume, undefined, () => false);
    void third.then((ms) => (waited = ms));
    const due = t0 + 2 * resumeBytes - relayRateBurstMs;
    await clock.advance(due - 1 - clock.now(), turn);
    expect(waited).toBe(0); // still the second's answer
    await clock.advance(1, turn);
    expect(await third).toBe(due - t0);
    expect(gate.status().rateLimit).toEqual({ bytesPerSecond: 1000, burstBytes: 100, scope: "wrl", frameBytes: 3 * resumeBytes, waitedMs: due - t0 });
  });

  test("interrupt() ends a wait early; a cancelled frame is not paid for", async () => {
    const clock = new ManualClock(t0);
    const gate = new RelayGate(clock, new RateLimiter(1000));
    // Charged without waiting: the bucket goes into debt (2 resumes and a pong > 100 bytes of burst).
    gate.charge(resume);
    gate.charge(resume);
    gate.charge({ type: "pong", nonce: 1 });
    let cancelled = false;
    const waiting = gate.pace(resume, undefined, () => cancelled);
    await turn();
    cancelled = true;
    gate.interrupt();
    expect(await waiting).toBe(0);
    expect(gate.status().rateLimit).toMatchObject({ frameBytes: 2 * resumeBytes + frameBytesOf({ type: "pong", nonce: 1 }), waitedMs: 0 });
  });

  test("a bucket shared by two relays: their frames together are paced as one stream", async () => {
    const clock = new ManualClock(t0);
    const shared = new RateLimiter(1000, "server");
    const a = new RelayGate(clock, shared);
    const b = new RelayGate(clock, shared);
    const times: Record<string, number> = {};
    const send = async (name: string, gate: RelayGate) => {
      await gate.pace(resume, undefined, () => false);
      times[name] = clock.now();
    };
    await send("a1", a);
    await send("b1", b); // within the burst
    // Both wait for the same instant; a's timer fires first and takes it, b then waits for a's frame.
    const both = Promise.all([send("a2", a), send("b2", b)]);
    for (let step = 0; step < 10 && Object.keys(times).length < 4; step += 1) await clock.advance(resumeBytes, turn);
    await both;
    const R = resumeBytes;
    expect(times).toEqual({ a1: t0, b1: t0, a2: t0 + 2 * R - relayRateBurstMs, b2: t0 + 3 * R - relayRateBurstMs });
  });

  test("the schedule: open or not, when it changes, and untilOpen() waking exactly at the opening", async () => {
    const clock = new ManualClock(t0);
    const gate = new RelayGate(clock, undefined, Schedule.parse("Wed 06:00-07:00 UTC"));
    expect(gate.isOpen()).toBe(false);
    expect(gate.msUntilChange()).toBe(6 * 3600_000);
    expect(gate.status()).toEqual({ rateLimit: null, schedule: { schedule: "Wed 06:00-07:00 UTC", open: false, nextChangeAt: "2025-01-01T06:00:00.000Z" } });
    let openedAt: number | undefined;
    void gate.untilOpen(() => false).then(() => (openedAt = clock.now()));
    await clock.advance(6 * 3600_000 - 1, turn);
    expect(openedAt).toBeUndefined();
    await clock.advance(1, turn);
    expect(openedAt).toBe(t0 + 6 * 3600_000);
    expect(gate.isOpen()).toBe(true);
    expect(gate.msUntilChange()).toBe(3600_000);
    // Without a schedule it is always open, and nothing is waited for.
    const free = new RelayGate(clock);
    expect(free.isOpen()).toBe(true);
    expect(free.msUntilChange()).toBe(Number.POSITIVE_INFINITY);
    await free.untilOpen(() => false);
    expect(await free.pace(resume, undefined, () => false)).toBe(0);
  });
});

/** Moves the fake clock forward `ms` at most, a turn after each timer, then lets the relay run. */
async function advance(clock: ManualClock, ms: number): Promise<void> {
  await clock.advance(ms, turn);
  await turn();
}

describe("relay with --rate-limit", () => {
  test("each frame reaches the replica (bytes of the frame before it) / rate after the one before; waits show in the status", async () => {
    const clock = new ManualClock(t0);
    // 8 kbit/s: one byte per ms. No burst, so that every spacing is exactly the frame before it
    // (the burst's effect is in the RateLimiter tests above).
    const rate = new RateLimiter(1000, "wrl", 0);
    const f = await trackedFixture({ clock, targets: { rateLimit: rate } });
    f.replica.clock = clock;
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    const model = new Uint8Array(1 * MiB);
    for (let index = 0; index < 12; index += 1) {
      const data = new Uint8Array(2 * KiB).fill(index + 1);
      expect((await client.write("w0", "d0", index * 4 * KiB, data)).type).toBe("writeAck");
      applyTo(model, index * 4 * KiB, data);
    }
    f.core.start();
    // resume goes at once (nothing sent before); then every frame once the one before is paid off.
    await waitFor(() => f.replica.frames.length >= 1, "resume");
    expect(f.replica.frames[0]).toMatchObject({ type: "resume", atMs: t0 });
    let dueMs = t0 + f.replica.frames[0]!.frameBytes;
    for (let index = 1; index <= 4; index += 1) {
      await advance(clock, dueMs - clock.now());
      await waitFor(() => f.replica.frames.length > index, `shipment ${index}`);
      const frame = f.replica.frames[index]!;
      expect(frame).toMatchObject({ type: "ship", atMs: dueMs, firstLsn: 3 * index - 2, lastLsn: 3 * index });
      dueMs = frame.atMs + frame.frameBytes; // 1 byte per ms
    }
    await waitFor(() => f.core.status().wrls[0]!.replica.appliedLsn === 12, "the acks");
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
    const status = f.core.status().wrls[0]!;
    const sent = f.replica.frames.reduce((sum, frame) => sum + frame.frameBytes, 0);
    expect(status.rateLimit).toMatchObject({ bytesPerSecond: 1000, burstBytes: 0, scope: "wrl", frameBytes: sent });
    // Each shipment waited from when it was ready (at the latest, when the one before left) to its slot.
    expect(status.rateLimit!.waitedMs).toBeGreaterThanOrEqual(f.replica.frames[1]!.atMs - t0);
    expect(status.rateLimit!.waitedMs).toBeLessThanOrEqual(f.replica.frames[4]!.atMs - t0);
    expect(status.schedule).toBeNull();
  });

  test("waiting for tokens is waiting on the link: auto compression raises its level", async () => {
    const clock = new ManualClock(t0);
    const f = await trackedFixture({ clock, compression: { mode: "auto" }, targets: { rateLimit: new RateLimiter(1000) } });
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    const line = new TextEncoder().encode("text that compresses well, as logs and file systems do; ");
    for (let index = 0; index < 60; index += 1) {
      const data = new Uint8Array(4 * KiB);
      for (let at = 0; at < data.length; at += 1) data[at] = line[(at + index) % line.length]!;
      expect((await client.write("w0", "d0", (index % 200) * 4 * KiB, data)).type).toBe("writeAck");
    }
    f.core.start();
    for (let step = 0; step < 2000 && f.core.status().wrls[0]!.replica.appliedLsn < 60; step += 1) {
      await advance(clock, 100);
      await Bun.sleep(1); // zstd runs on Bun's thread pool
    }
    const relay = f.core.status().wrls[0]!.replica;
    expect(relay.appliedLsn).toBe(60);
    // Without a limit the in-process replica never holds the relay back and auto pauses
    // (compression.test.ts); here every shipment waited for the link, so auto went up.
    expect(relay.compression.level).toBeGreaterThan(1);
    expect(f.core.status().wrls[0]!.rateLimit!.waitedMs).toBeGreaterThan(0);
  });
});
