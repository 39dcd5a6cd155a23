/** Fakes for ClientCore unit tests: a staging link that records what is sent and acks on demand. */
import { MemoryDevice } from "../../src/io/memory-device.ts";
import type { NbdExport } from "../../src/nbd/backend.ts";
import type { WriteMessage, WriteNackMessage } from "../../src/protocol/messages.ts";
import { ClientCore, type ClientCoreOptions, type ClientDevice, type ClientTimers, type StagingSender } from "../../src/roles/client/core.ts";

export interface SentWrite {
  message: WriteMessage;
  /** A copy of the payload as it was when sent. */
  payload: Uint8Array | undefined;
}

/** One "connection" to staging: records every frame the core sends over it. */
export class FakeSender implements StagingSender {
  readonly sent: SentWrite[] = [];
  /** Empty resync records that open a device's resync set (untracked: never answered here). */
  readonly opened: SentWrite[] = [];
  /** Everything in send order, openers included. */
  readonly all: SentWrite[] = [];
  send(message: WriteMessage, payload: Uint8Array | undefined): void {
    const sent = { message, payload: payload?.slice() };
    this.all.push(sent);
    (message.kind === "resync" && message.length === 0 ? this.opened : this.sent).push(sent);
  }
}

/** Timers driven by the test: nothing runs until run() is called. */
export class ManualTimers implements ClientTimers {
  readonly due: { delayMs: number; fn: () => void; cancelled: boolean }[] = [];
  schedule(delayMs: number, fn: () => void): () => void {
    const entry = { delayMs, fn, cancelled: false };
    this.due.push(entry);
    return () => (entry.cancelled = true);
  }
  runAll(): void {
    for (const entry of this.due.splice(0)) if (!entry.cancelled) entry.fn();
  }
}

export interface Harness {
  core: ClientCore;
  devices: MemoryDevice[];
  exports: Map<string, NbdExport>;
  timers: ManualTimers;
  lsn: number;
  /** Acks the write with this reqId (LSNs count up from 1). */
  ack(reqId: number): void;
  nack(reqId: number, code: WriteNackMessage["code"], message?: string): void;
}

export function harness(options: { sizes?: number[]; discardReadsZeros?: boolean; core?: Partial<ClientCoreOptions> } = {}): Harness {
  const sizes = options.sizes ?? [1024 * 1024];
  const devices = sizes.map((size, index) => new MemoryDevice(size, `disk${index}`, 512));
  const specs: ClientDevice[] = devices.map((device, index) => ({ name: `disk${index}`, path: `/mem/disk${index}`, wrl: "wrl0", device, discardReadsZeros: options.discardReadsZeros ?? true }));
  const timers = new ManualTimers();
  const core = new ClientCore({ devices: specs, timers, ...options.core });
  const h: Harness = {
    core,
    devices,
    exports: new Map(core.exports().map((exp) => [exp.name, exp])),
    timers,
    lsn: 0,
    ack(reqId) {
      h.lsn += 1;
      core.handleReply({ type: "writeAck", reqId, lsn: h.lsn });
    },
    nack(reqId, code, message = "refused by the test") {
      core.handleReply({ type: "writeNack", reqId, code, message });
    },
  };
  return h;
}

/** Lets every pending promise continuation run (the core's steps are chained microtasks). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i += 1) await Promise.resolve();
  await Bun.sleep(0);
}

export function filled(length: number, byte: number): Uint8Array {
  return new Uint8Array(length).fill(byte);
}

/** Tracks whether a promise has settled, without awaiting it. */
export function track<T>(promise: Promise<T>): { readonly done: boolean; readonly error: unknown; promise: Promise<T> } {
  const state = { done: false, error: undefined as unknown, promise };
  promise.then(
    () => (state.done = true),
    (error) => {
      state.done = true;
      state.error = error;
    },
  );
  return state;
}

/** Timers with a clock the test moves; due callbacks run when the clock passes them. */
export class Clock implements ClientTimers {
  nowMs = 0;
  readonly due: { at: number; fn: () => void; cancelled: boolean }[] = [];
  now(): number {
    return this.nowMs;
  }
  schedule(delayMs: number, fn: () => void): () => void {
    const entry = { at: this.nowMs + delayMs, fn, cancelled: false };
    this.due.push(entry);
    return () => (entry.cancelled = true);
  }
  async advance(ms: number): Promise<void> {
    this.nowMs += ms;
    for (;;) {
      const ready = this.due.filter((entry) => !entry.cancelled && entry.at <= this.nowMs);
      if (ready.length === 0) break;
      for (const entry of ready) {
        this.due.splice(this.due.indexOf(entry), 1);
        entry.fn();
      }
      await settle();
    }
  }
}
