import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { EpochAssigner } from "../../src/order/epochs.ts";
import { OverlapGate } from "../../src/order/overlap.ts";

describe("epoch assigner", () => {
  test("writes in flight together share an epoch; a write issued after a completion gets a later one", () => {
    const epochs = new EpochAssigner();
    const a = epochs.issue();
    const b = epochs.issue();
    expect(a).toBe(b);
    epochs.complete(); // a completes
    const c = epochs.issue();
    expect(c).toBeGreaterThan(a);
    const d = epochs.issue();
    expect(d).toBe(c);
  });

  test("property: if A completed before B was issued then epoch(A) < epoch(B)", () => {
    const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
    console.log(`epoch property seed=${seed} (replay: FC_SEED=${seed} bun test tests/order)`);
    // A trace is a list of steps: issue a new write, or complete one of the in-flight writes.
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat()), { maxLength: 200 }), (steps) => {
        const epochs = new EpochAssigner();
        const inFlight: number[] = [];
        const issuedEpoch: number[] = [];
        const completedBeforeIssue: Set<number>[] = [];
        const completed = new Set<number>();
        for (const [isIssue, pick] of steps) {
          if (isIssue || inFlight.length === 0) {
            const id = issuedEpoch.length;
            issuedEpoch.push(epochs.issue());
            completedBeforeIssue.push(new Set(completed));
            inFlight.push(id);
          } else {
            const [id] = inFlight.splice(pick % inFlight.length, 1);
            completed.add(id!);
            epochs.complete();
          }
        }
        issuedEpoch.forEach((epochB, b) => {
          for (const a of completedBeforeIssue[b]!) expect(issuedEpoch[a]!).toBeLessThan(epochB);
        });
      }),
      { seed, numRuns: 300 },
    );
  });
});

describe("overlap gate", () => {
  test("an overlapping write waits for the earlier one; a disjoint write does not", async () => {
    const gate = new OverlapGate();
    const order: string[] = [];
    const releaseA = await gate.acquire("dev", 0, 4096);
    const b = gate.acquire("dev", 2048, 4096).then((release) => {
      order.push("b");
      return release;
    });
    const releaseC = await gate.acquire("dev", 8192, 4096);
    order.push("c");
    const releaseOtherDevice = await gate.acquire("other", 0, 4096);
    order.push("other");
    expect(order).toEqual(["c", "other"]);
    releaseA();
    (await b)();
    expect(order).toEqual(["c", "other", "b"]);
    releaseC();
    releaseOtherDevice();
    expect(gate.size).toBe(0);
  });

  test("overlapping writes go through in arrival order even when queued", async () => {
    const gate = new OverlapGate();
    const order: number[] = [];
    const first = await gate.acquire("d", 0, 100);
    const waiters = [1, 2, 3].map((n) => gate.acquire("d", 50, 100).then((release) => {
      order.push(n);
      release();
    }));
    first();
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3]);
  });
});
