/**
 * The client's checkpoint route (src/roles/client/checkpoint.ts), its decision table row by row,
 * over a fake probe channel: one checkpoint record per device, sent together, each with an epoch of
 * its own; the answer carries staging's LSNs; every refusal has its code, exit code and hint.
 */
import { describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import { EpochAssigner } from "../../src/order/epochs.ts";
import type { WriteMessage } from "../../src/protocol/messages.ts";
import { checkpointRoutes, takeCheckpoint, type CheckpointHost, type CheckpointOptions } from "../../src/roles/client/checkpoint.ts";
import type { ClientMode, ClientModeStatus } from "../../src/roles/client/types.ts";
import type { ProbeAck, ProbeFields } from "../../src/roles/client/verify-link.ts";

const devices = [{ name: "disk0", wrl: "w0" }, { name: "disk1", wrl: "w0" }];

function fixture(options: { mode?: ClientMode; linkIsUp?: boolean; resyncSetsOpen?: string[]; answer?: (fields: ProbeFields) => Promise<number> } = {}) {
  const sent: ProbeFields[] = [];
  let lsn = 100;
  let cancelled = 0;
  const epochs = new EpochAssigner(5);
  const host: CheckpointHost = {
    mode: options.mode ?? "connected",
    modeStatus: () => ({ resyncSetsOpen: options.resyncSetsOpen ?? [] }) as unknown as ClientModeStatus,
    epochs,
  };
  const probes: CheckpointOptions["probes"] = {
    linkIsUp: options.linkIsUp ?? true,
    send: async (fields: ProbeFields, payload: Uint8Array): Promise<ProbeAck> => {
      expect(payload.length).toBe(0);
      sent.push(fields);
      const logged = await (options.answer ?? (() => Promise.resolve(++lsn)))(fields);
      return { lsn: logged, report: new Promise(() => undefined), cancelReport: () => void (cancelled += 1) };
    },
  };
  return { options: { host, probes, devices } satisfies CheckpointOptions, sent, epochs, cancelled: () => cancelled };
}

async function refusal(run: Promise<unknown>): Promise<DruvaaError> {
  try {
    await run;
  } catch (error) {
    expect(error).toBeInstanceOf(DruvaaError);
    return error as DruvaaError;
  }
  throw new Error("expected a refusal");
}

describe("takeCheckpoint", () => {
  test("one checkpoint record per device, label in the write, sent together in one epoch; answers staging's LSNs", async () => {
    const f = fixture();
    const result = await takeCheckpoint(f.options, { label: "before-x" });
    expect(result).toEqual({ label: "before-x", checkpoints: [{ device: "disk0", wrl: "w0", lsn: 101 }, { device: "disk1", wrl: "w0", lsn: 102 }] });
    expect(f.sent.map((fields) => ({ kind: fields.kind, label: fields.label, device: fields.device, offset: fields.offset, length: fields.length }))).toEqual([
      { kind: "checkpoint", label: "before-x", device: "disk0", offset: 0, length: 0 },
      { kind: "checkpoint", label: "before-x", device: "disk1", offset: 0, length: 0 },
    ]);
    // Both were in flight together: the same epoch; completed afterwards, so the next write gets a later one.
    expect(f.sent[0]!.epoch).toBe(f.sent[1]!.epoch);
    expect(f.epochs.issue()).toBeGreaterThan(f.sent[0]!.epoch);
    expect(f.cancelled()).toBe(2); // no outcome is waited for
  });

  test("one device when named; an unknown one is DEVICE_UNKNOWN (exit 4) naming those it serves", async () => {
    const f = fixture();
    expect((await takeCheckpoint(f.options, { label: "x", device: "disk1" })).checkpoints.map((entry) => entry.device)).toEqual(["disk1"]);
    const error = await refusal(takeCheckpoint(f.options, { label: "x", device: "nosuch" }));
    expect({ code: error.code, exit: error.exitCode }).toEqual({ code: "DEVICE_UNKNOWN", exit: 4 });
    expect(error.hint).toContain("disk0, disk1");
  });

  test("a bad label is a usage error and nothing is sent", async () => {
    const f = fixture();
    for (const label of ["", "has space", "x".repeat(65), "-lead"]) {
      const error = await refusal(takeCheckpoint(f.options, { label }));
      expect({ code: error.code, exit: error.exitCode }).toEqual({ code: "USAGE", exit: 2 });
    }
    expect(f.sent).toEqual([]);
  });

  test("disconnected, resyncing, a resync set open, or staging not connected: CHECKPOINT_UNAVAILABLE (exit 4), nothing sent", async () => {
    for (const setting of [{ mode: "disconnected" as const }, { mode: "resyncing" as const }, { resyncSetsOpen: ["disk0"] }, { linkIsUp: false }]) {
      const f = fixture(setting);
      const error = await refusal(takeCheckpoint(f.options, { label: "x" }));
      expect({ code: error.code, exit: error.exitCode }).toEqual({ code: "CHECKPOINT_UNAVAILABLE", exit: 4 });
      expect(error.message).toContain("could not flow through the log");
      expect(error.hint).toMatch(/retry once the client is connected/i);
      expect(f.sent).toEqual([]);
    }
  });

  test("staging refuses one device's (WRL full) or the link drops: CHECKPOINT_UNAVAILABLE naming what was logged; another refusal is CHECKPOINT_FAILED", async () => {
    const full = fixture({ answer: (fields) => (fields.device === "disk1" ? Promise.reject(new DruvaaError("WRL_FULL", "staging refused a verify probe of disk1: WRL w0 is full")) : Promise.resolve(7)) });
    const error = await refusal(takeCheckpoint(full.options, { label: "x" }));
    expect({ code: error.code, exit: error.exitCode }).toEqual({ code: "CHECKPOINT_UNAVAILABLE", exit: 4 });
    expect(error.message).toContain("WRL_FULL: staging refused a checkpoint of disk1");
    expect(error.message).toContain("logged for disk0 (LSN 7) only");
    const lost = fixture({ answer: () => Promise.reject(new DruvaaError("PROBE_LINK_LOST", "the staging connection was lost")) });
    expect((await refusal(takeCheckpoint(lost.options, { label: "x" }))).code).toBe("CHECKPOINT_UNAVAILABLE");
    const broken = fixture({ answer: () => Promise.reject(new DruvaaError("IO_ERROR", "WRL w0 could not log the write")) });
    const failed = await refusal(takeCheckpoint(broken.options, { label: "x" }));
    expect({ code: failed.code, exit: failed.exitCode }).toEqual({ code: "CHECKPOINT_FAILED", exit: 1 });
  });

  test("the control route takes {label, device?} and refuses a body that is not one", async () => {
    const f = fixture();
    const route = checkpointRoutes(f.options)["POST /checkpoint"]!;
    const post = (body: string) => route(new Request("http://client/checkpoint", { method: "POST", body }));
    expect(await post(JSON.stringify({ label: "via-http", device: "disk0" }))).toEqual({ label: "via-http", checkpoints: [{ device: "disk0", wrl: "w0", lsn: 101 }] });
    for (const body of ["not json", "[]", JSON.stringify({ device: "disk0" }), JSON.stringify({ label: "x", device: 3 })]) {
      expect((await refusal(Promise.resolve().then(() => post(body)))).code).toBe("USAGE");
    }
    expect((f.sent as WriteMessage[]).length).toBe(1);
  });
});
