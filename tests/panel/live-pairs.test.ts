/**
 * The live stream's status events carry the pairs (GET /api/pairs' shape), described from the
 * statuses of the panel's own poll round (no second GET /status per round), with the pair's write
 * throughput computed from the client's `bytesWritten` counter between two rounds: null at the
 * first sighting and after the counter went down (the client restarted), never made up.
 * Real panel, real 2PC against the managed-config fakes (config-fake.ts), real HTTP polls.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FakeSystem } from "./fake-system.ts";
import type { ApiClient, TestPanel } from "./helpers.ts";

const MiB = 1024 ** 2;

let panel: TestPanel;
let admin: ApiClient;
const system = new FakeSystem({ staging: "127.0.0.1:16201", replica: "127.0.0.1:16203", client: "127.0.0.1:16207" });
const { client } = system;
const readers: ReadableStreamDefaultReader<Uint8Array>[] = [];

beforeAll(async () => {
  ({ panel, admin } = await system.start({ pollIntervalMs: 150, config: { requestTimeoutMs: 2_000, convergeIntervalMs: 60_000 } }));
  expect((await admin.post("/api/wrls", { name: "fast", staging: "s1", paths: ["/var/lib/druvaa/wrl/fast.img"], sizeBytes: "1GiB", replica: "r1" })).status).toBe(201);
  const pair = { name: "pair-db", client: "c1", deviceName: "disk0", devicePath: "/dev/sdb", export: "unix:/run/druvaa/disk0.sock", wrl: "fast", replica: "r1", replicaDevicePath: "/srv/replica/disk0.img", initialSync: "none" };
  const created = await admin.post("/api/pairs", pair);
  expect({ status: created.status, body: created.status === 201 ? "" : created.body }).toEqual({ status: 201, body: "" });
});

afterAll(async () => {
  for (const reader of readers) await reader.cancel().catch(() => undefined);
  await system.close();
});

let bytesWritten = 0;
function setClient(bytes: number): void {
  bytesWritten = bytes;
  client.attachments = [{ name: "pair-db", enabled: true, state: "running", pid: 4242, restarts: 0, lastExit: null, addresses: null, status: { role: "client", mode: "normal", devices: [{ name: "disk0", path: "/dev/sdb", bytesWritten: bytes, writes: bytes / 4096 }] } }];
}

interface StatusEvent {
  timeMs: number;
  components: { name: string; reachable: boolean; status?: any }[];
  pairs?: any[];
}

/** Reads status events from an open GET /api/live. */
async function* statusEvents(reader: ReadableStreamDefaultReader<Uint8Array>): AsyncGenerator<StatusEvent> {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    let index: number;
    while ((index = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, index);
      buffer = buffer.slice(index + 2);
      const lines = block.split("\n");
      if (lines.includes("event: status")) yield JSON.parse(lines.find((line) => line.startsWith("data: "))!.slice(6)) as StatusEvent;
    }
    const { value, done } = await reader.read();
    if (done) throw new Error("the live stream ended");
    buffer += decoder.decode(value, { stream: true });
  }
}

/** The client's bytesWritten as the round read it (the event's own components). */
const roundBytes = (event: StatusEvent): number | undefined => event.components.find((c) => c.name === "c1")?.status?.attachments?.[0]?.status?.devices?.[0]?.bytesWritten;

describe("pairs in the live stream", () => {
  test("status events carry every pair with its live state; throughput is the counter delta between rounds", async () => {
    setClient(0);
    const response = await fetch(`${panel.url}/api/live`, { headers: { cookie: admin.cookie! } });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    readers.push(reader);
    const seen: StatusEvent[] = [];
    const rates: { expected: number; got: number }[] = [];
    let resetChecked = false;
    for await (const event of statusEvents(reader)) {
      expect(Array.isArray(event.pairs)).toBe(true);
      expect(event.pairs!.map((p) => p.name)).toEqual(["pair-db"]);
      const pair = event.pairs![0];
      expect(pair).toMatchObject({ client: "c1", staging: "s1", replica: "r1", deviceName: "disk0", wrl: "fast" });
      const previous = seen.at(-1);
      seen.push(event);
      const bytes = roundBytes(event);
      if (bytes === undefined || pair.state !== "replicating") {
        expect(pair.throughputBytesPerSecond === null || typeof pair.throughputBytesPerSecond === "number").toBe(true);
        continue; // the config's ack or the client's attachment not seen yet
      }
      const before = previous === undefined ? undefined : roundBytes(previous);
      if (before === undefined) expect(pair.throughputBytesPerSecond).toBeNull(); // first sighting
      else if (bytes < before) {
        expect(pair.throughputBytesPerSecond).toBeNull(); // the counter went down: no rate
        resetChecked = true;
      } else {
        expect(pair.throughputBytesPerSecond).not.toBeNull();
        rates.push({ expected: ((bytes - before) * 1000) / (event.timeMs - previous!.timeMs), got: pair.throughputBytesPerSecond });
      }
      if (rates.filter((r) => r.expected > 0).length >= 3 && !resetChecked) setClient(MiB); // a restart: the counter starts over
      else if (resetChecked && rates.length >= 5) break;
      else if (!resetChecked) setClient(bytesWritten + 3 * MiB);
    }
    for (const rate of rates) expect(rate.got).toBeCloseTo(rate.expected, 3);
    expect(rates.some((r) => r.expected > 0)).toBe(true);
    expect(resetChecked).toBe(true);
    // GET /api/pairs fetches its own statuses and shows the newest round's rate.
    const listed = await admin.get("/api/pairs");
    expect(listed.body.pairs[0].state).toBe("replicating");
    expect(typeof listed.body.pairs[0].throughputBytesPerSecond).toBe("number");
  });

  test("a client host that stops answering makes its pairs unreachable in the next status events", async () => {
    await client.stop();
    try {
      const response = await fetch(`${panel.url}/api/live`, { headers: { cookie: admin.cookie! } });
      const reader = response.body!.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      readers.push(reader);
      for await (const event of statusEvents(reader)) {
        if (event.components.find((c) => c.name === "c1")?.reachable !== false) continue;
        expect(event.pairs![0]).toMatchObject({ name: "pair-db", state: "unreachable", throughputBytesPerSecond: null });
        break;
      }
    } finally {
      client.restart();
    }
  });

  test("with no live stream open, GET /api/pairs still shows the pair's write rate from the panel's own rounds", async () => {
    for (const reader of readers.splice(0)) await reader.cancel().catch(() => undefined);
    setClient(0);
    // The client writes 256 KiB every 25 ms (about 10 MiB/s) while the panel polls every 150 ms.
    const writer = setInterval(() => setClient(bytesWritten + MiB / 4), 25);
    const seen: unknown[] = [];
    let rate: number | null = null;
    try {
      const deadline = Date.now() + 10_000;
      while (rate === null || rate <= 0) {
        await Bun.sleep(200);
        rate = (await admin.get("/api/pairs")).body.pairs[0].throughputBytesPerSecond;
        seen.push(rate);
        if (Date.now() > deadline) throw new Error(`no write rate without a live stream; GET /api/pairs showed ${JSON.stringify(seen)}`);
      }
    } finally {
      clearInterval(writer);
    }
    // A rate from two rounds' counters: at most what the writer can add between two rounds.
    expect(rate).toBeLessThan(100 * MiB);
  });
});
