/**
 * LiveStreams' bounds without a network (src/roles/panel/live.ts): a reader that stops reading is
 * closed once liveQueuedEventsMax events wait for it (it still gets what was queued, then the
 * end), instead of the panel buffering for it without bound; after close() new streams get 503.
 */
import { describe, expect, test } from "bun:test";
import { liveQueuedEventsMax } from "../../src/roles/panel/constants.ts";
import { ApiError } from "../../src/roles/panel/http.ts";
import { LiveStreams } from "../../src/roles/panel/live.ts";

async function readAll(response: Response): Promise<string> {
  return await response.text();
}

describe("live stream bounds", () => {
  test("a reader that falls liveQueuedEventsMax events behind is closed; the others keep their stream", async () => {
    const live = new LiveStreams({ openAlerts: () => 3, nowMs: () => 42 });
    const stalled = live.open(new Request("http://panel/api/live"), "slow");
    const reading = live.open(new Request("http://panel/api/live"), "fast");
    const reader = reading.body!.getReader();
    expect(live.count).toBe(2);
    let received = "";
    const decoder = new TextDecoder();
    for (let round = 0; round < liveQueuedEventsMax + 20; round += 1) {
      live.status([]);
      const { value } = await reader.read(); // the reading stream keeps up
      received += decoder.decode(value);
    }
    expect(live.count).toBe(1);
    const text = await readAll(stalled); // ends: what was queued, then the end of the stream
    const events = text.split("\n\n").filter((block) => block.startsWith("event: status"));
    expect(events.length).toBeGreaterThanOrEqual(liveQueuedEventsMax - 1);
    expect(events.length).toBeLessThanOrEqual(liveQueuedEventsMax + 1);
    expect(events[0]).toBe(`event: status\ndata: {"components":[],"alerts":{"open":3},"timeMs":42}`);
    expect(received).toContain(": connected");
    live.close();
    expect(live.count).toBe(0);
    // The reading stream ends too, after what was queued for it.
    let ended = false;
    for (let chunk = 0; chunk < 10 && !ended; chunk += 1) ended = (await reader.read()).done;
    expect(ended).toBe(true);
    let refused: unknown;
    try {
      live.open(new Request("http://panel/api/live"), "late");
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).status).toBe(503);
  });

  test("with the pairs wired, status events carry them (described at every round, and again as a replay when a stream opens)", async () => {
    const live = new LiveStreams({ openAlerts: () => 0, nowMs: () => 7 });
    const described: [number, boolean][] = [];
    live.pairs = (statuses, timeMs, replay) => {
      described.push([statuses.length, replay === true]);
      return [{ name: "pair-db", state: "replicating", timeMs }];
    };
    live.status([]);
    expect(described).toEqual([[0, false]]); // nobody watching: described all the same (the round feeds the pairs' rates)
    const response = live.open(new Request("http://panel/api/live"), "viewer");
    expect(described).toEqual([[0, false], [0, true]]); // the newest round replayed, its pairs described again without feeding the rates
    const client = { name: "c1", role: "client" as const, control: "127.0.0.1:1", reachable: true as const, status: { role: "client" } };
    live.status([client]);
    expect(described).toEqual([[0, false], [0, true], [1, false]]);
    live.close();
    const text = await response.text();
    expect(text.split("\n\n").filter((block) => block.startsWith("event: status"))).toEqual([
      `event: status\ndata: {"components":[],"pairs":[{"name":"pair-db","state":"replicating","timeMs":7}],"alerts":{"open":0},"timeMs":7}`,
      `event: status\ndata: {"components":[${JSON.stringify(client)}],"pairs":[{"name":"pair-db","state":"replicating","timeMs":7}],"alerts":{"open":0},"timeMs":7}`,
    ]);
  });
});
