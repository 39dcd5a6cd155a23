/**
 * zstd compression of shipments (`druvaa staging serve --compression`), measured three ways:
 *
 *  1. codec: 2 MiB shipments of file-system-like data (text, zeros, a quarter random), pure
 *     random data, and zeros, at levels 1/3/6/9: ratio, compression MB/s (Bun.zstdCompress, as
 *     the relay runs it), decompression MB/s (node:zlib with maxOutputLength, as the replica runs
 *     it, and Bun.zstdDecompressSync for comparison);
 *  2. event loop: the longest and p99 lateness of a 1 ms timer while 40 shipments are compressed
 *     at levels 1/3/9 with zstdCompressSync vs the async zstdCompress (staging serves client
 *     writes on that loop);
 *  3. pipeline: real `druvaa replica apply` + `druvaa staging serve --compression X` (off, 1,
 *     auto, 6), a client writing --mib of file-system-like data (256 KiB writes, 32 in flight),
 *     on loopback and through a throttling proxy (--link-mbps, default 40 MB/s) between staging
 *     and the replica; reported: time until the replica acknowledged everything, wire bytes and
 *     ratio, the level auto reached, staging's CPU seconds.
 *
 *   node_modules/.bin/bun bench/compression.ts [--mib 256] [--link-mbps 40] [--parts codec,loop,pipeline]
 *
 * Prints a table per part and ends with one line of JSON. Measures, never asserts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { runDruvaa, startRole, type RoleProcess } from "../src/demo/processes.ts";
import { TestClient } from "../tests/staging/test-client.ts";
import { flagValue, round } from "./support/lib.ts";
import { protectReserveBytesDefault } from "../src/protect-constants.ts";

const MiB = 1024 * 1024;
const totalMiB = Number(flagValue("mib", "256"));
const linkMBps = Number(flagValue("link-mbps", "40"));
const parts = flagValue("parts", "codec,loop,pipeline").split(",");
process.argv[1] = resolve(import.meta.dir, "../src/cli.ts");

/**
 * File-system-like blocks: log text (each line with a random request id and timing, so higher
 * levels find more), zeros, and a quarter random (compressed media), 4 KiB each.
 */
function fsLike(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  const encoder = new TextEncoder();
  const users = ["alice", "bob", "carol", "dave", "erin"];
  let state = seed * 2654435761 + 1;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
  for (let block = 0; block * 4096 < length; block += 1) {
    const at = block * 4096;
    const end = Math.min(length, at + 4096);
    const kind = (block + seed) % 4;
    if (kind === 3) out.set(crypto.getRandomValues(new Uint8Array(end - at)), at);
    else if (kind !== 1) {
      let position = at;
      while (position < end) {
        const line = encoder.encode(`2024-05-0${1 + (block % 9)}T12:${String(next() % 60).padStart(2, "0")} INFO req=${next().toString(16)} user=${users[next() % users.length]} path=/srv/data/${next() % 1000}.dat took ${next() % 500} ms\n`);
        out.set(line.subarray(0, end - position), position);
        position += line.length;
      }
    }
  }
  return out;
}

const results: Record<string, unknown> = {};

async function codecPart(): Promise<void> {
  const kinds: Record<string, Uint8Array> = { "fs-like": fsLike(2 * MiB, 1), random: randomBytes(2 * MiB), zeros: new Uint8Array(2 * MiB) };
  const rows: Record<string, unknown>[] = [];
  for (const [kind, raw] of Object.entries(kinds)) {
    for (const level of [1, 3, 6, 9]) {
      const runs = 12;
      let compressed: Uint8Array = new Uint8Array(0);
      let started = performance.now();
      for (let run = 0; run < runs; run += 1) compressed = await Bun.zstdCompress(raw, { level });
      const compressMs = (performance.now() - started) / runs;
      started = performance.now();
      for (let run = 0; run < runs; run += 1) zstdDecompressSync(compressed, { maxOutputLength: raw.length });
      const nodeMs = (performance.now() - started) / runs;
      started = performance.now();
      for (let run = 0; run < runs; run += 1) Bun.zstdDecompressSync(compressed);
      const bunMs = (performance.now() - started) / runs;
      const mbps = (ms: number) => round(raw.length / 1e6 / (ms / 1000), 0);
      rows.push({ kind, level, ratio: round(raw.length / compressed.length, 2), compressMBps: mbps(compressMs), decompressNodeMBps: mbps(nodeMs), decompressBunMBps: mbps(bunMs) });
    }
  }
  console.table(rows);
  results.codec = rows;
}

function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) out.set(crypto.getRandomValues(new Uint8Array(Math.min(65536, length - at))), at);
  return out;
}

async function loopPart(): Promise<void> {
  const shipments = Array.from({ length: 40 }, (_, index) => fsLike(2 * MiB, index));
  const measure = async (compressAll: () => Promise<void>) => {
    const lateness: number[] = [];
    let expected = performance.now() + 1;
    const timer = setInterval(() => {
      const now = performance.now();
      lateness.push(Math.max(0, now - expected));
      expected = now + 1;
    }, 1);
    const started = performance.now();
    await compressAll();
    const wallMs = performance.now() - started;
    clearInterval(timer);
    lateness.sort((a, b) => a - b);
    return { wallMs: round(wallMs, 1), maxLatenessMs: round(lateness.at(-1) ?? 0, 2), p99LatenessMs: round(lateness[Math.floor(lateness.length * 0.99)] ?? 0, 2), ticks: lateness.length };
  };
  const rows: Record<string, unknown> = {};
  for (const level of [1, 3, 9]) {
    rows[`sync L${level}`] = await measure(async () => {
      for (const raw of shipments) {
        Bun.zstdCompressSync(raw, { level });
        await Bun.sleep(0);
      }
    });
    rows[`async L${level}`] = await measure(async () => {
      for (const raw of shipments) await Bun.zstdCompress(raw, { level });
    });
  }
  console.table(rows);
  results.eventLoop = rows;
}

/** A TCP proxy that passes staging → replica at most `bytesPerSecond` (the other way unthrottled). */
async function throttlingProxy(target: string, bytesPerSecond: number): Promise<{ address: string; close(): void }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const up = netConnect(port, host);
    sockets.add(down).add(up);
    const startedMs = performance.now();
    let passed = 0;
    down.on("data", (chunk) => {
      passed += chunk.length;
      if (!up.write(chunk)) down.pause(), up.once("drain", () => down.resume());
      const aheadMs = startedMs + (passed / bytesPerSecond) * 1000 - performance.now();
      if (aheadMs > 1) {
        down.pause();
        setTimeout(() => down.resume(), aheadMs);
      }
    });
    up.pipe(down);
    const close = () => (down.destroy(), up.destroy());
    down.on("close", close).on("error", close);
    up.on("close", close).on("error", close);
  });
  await new Promise<void>((ready) => server.listen(0, "127.0.0.1", ready));
  const address = server.address() as { port: number };
  return { address: `127.0.0.1:${address.port}`, close: () => (server.close(), sockets.forEach((socket) => socket.destroy())) };
}

const cpuSeconds = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
};

async function pipelineRun(setting: string, throttled: boolean): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-bench-zstd-"));
  const roles: RoleProcess[] = [];
  let proxy: { address: string; close(): void } | undefined;
  try {
    const deviceBytes = 64 * MiB;
    writeFileSync(join(dir, "replica.img"), new Uint8Array(deviceBytes + protectReserveBytesDefault)); // + the swapped header reserve
    await runDruvaa(["wrl", "create", "--primary", join(dir, "wrl.img"), "--size", `${Math.max(2 * totalMiB, 256)}M`]);
    const replica = await startRole("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `d0=${join(dir, "replica.img")}`, "--state-dir", join(dir, "replica-state"), "--insecure"]);
    roles.push(replica);
    let replicaAddress = String(replica.ready.listen);
    if (throttled) replicaAddress = (proxy = await throttlingProxy(replicaAddress, linkMBps * 1e6)).address;
    const staging = await startRole("staging", ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w0=${join(dir, "wrl.img")}`, "--replica", `w0=${replicaAddress}`, "--state-dir", join(dir, "staging-state"), "--compression", setting, "--insecure"]);
    roles.push(staging);
    const client = await TestClient.connect(String(staging.ready.listen), "bench");
    await client.attach("w0", "d0", deviceBytes);
    const writeBytes = 256 * 1024;
    const writes = Array.from({ length: 64 }, (_, index) => fsLike(writeBytes, index));
    const cpuBefore = cpuSeconds(staging.pid);
    const started = performance.now();
    const inflight = new Set<Promise<unknown>>();
    for (let index = 0; index < (totalMiB * MiB) / writeBytes; index += 1) {
      const sent = client.write("w0", "d0", ((index * 97) % (deviceBytes / writeBytes)) * writeBytes, writes[index % writes.length]!);
      inflight.add(sent);
      void sent.finally(() => inflight.delete(sent));
      if (inflight.size >= 32) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    const writtenMs = performance.now() - started;
    let relay: any;
    for (;;) {
      const status = (await (await fetch(`http://${staging.ready.control}/status`)).json()) as any;
      const wrl = status.wrls[0];
      relay = wrl.replica;
      if (relay.appliedLsn >= wrl.headLsn) break;
      await Bun.sleep(20);
    }
    const drainedMs = performance.now() - started;
    const cpu = cpuSeconds(staging.pid) - cpuBefore;
    client.connection.abort();
    return {
      link: throttled ? `${linkMBps} MB/s` : "loopback",
      compression: setting,
      writtenS: round(writtenMs / 1000, 2),
      replicatedS: round(drainedMs / 1000, 2),
      dataMBps: round((totalMiB * MiB) / 1e6 / (drainedMs / 1000), 1),
      wireMiB: round(relay.compression.wireBytes / MiB, 1),
      ratio: round(relay.compression.compressionRatio, 2),
      levelAtEnd: relay.compression.level,
      compressS: round(relay.compression.compressMs / 1000, 2),
      stagingCpuS: round(cpu, 2),
    };
  } finally {
    await Promise.all(roles.map((role) => role.stop("SIGKILL")));
    proxy?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function pipelinePart(): Promise<void> {
  const rows: Record<string, unknown>[] = [];
  for (const throttled of [false, true]) for (const setting of ["off", "1", "auto", "6"]) rows.push(await pipelineRun(setting, throttled));
  console.table(rows);
  results.pipeline = rows;
}

if (parts.includes("codec")) await codecPart();
if (parts.includes("loop")) await loopPart();
if (parts.includes("pipeline")) await pipelinePart();
console.log(JSON.stringify({ bench: "compression", totalMiB, linkMBps, ...results }));
