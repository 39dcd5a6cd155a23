/**
 * GET /api/live read the way a browser's EventSource does (fetch + a stream reader, the session
 * cookie): status events after the panel's real poll rounds of a stand-in control port, an alert
 * event when a WRL fills up, heartbeat comments, the bound on open streams, viewers allowed and
 * strangers refused, and every stream ended cleanly when the panel stops.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { adminClient, ApiClient, startTestPanel, userClient, type TestPanel } from "./helpers.ts";
import { startFakeComponent, waitFor, type FakeComponent } from "./live-fake-component.ts";

const panels: TestPanel[] = [];
const fakes: FakeComponent[] = [];
const readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
afterAll(async () => {
  for (const reader of readers) await reader.cancel().catch(() => undefined);
  for (const panel of panels) await panel.close();
  for (const fake of fakes) await fake.stop();
});

interface SseEvent {
  event: string | undefined;
  data: any;
  comment: string | undefined;
}

/** An open GET /api/live: `next(match)` reads until an event matching `match` arrives. */
class LiveReader {
  private buffer = "";
  private readonly decoder = new TextDecoder();
  readonly seen: SseEvent[] = [];
  ended = false;

  constructor(readonly reader: ReadableStreamDefaultReader<Uint8Array>) {
    readers.push(reader);
  }

  static async open(client: ApiClient, url: string, query = ""): Promise<{ response: Response; live: LiveReader | undefined }> {
    const response = await fetch(`${url}/api/live${query}`, { headers: client.cookie === undefined ? {} : { cookie: client.cookie } });
    if (response.status !== 200) return { response, live: undefined };
    return { response, live: new LiveReader(response.body!.getReader() as ReadableStreamDefaultReader<Uint8Array>) };
  }

  async next(what: string, match: (event: SseEvent) => boolean, timeoutMs = 10_000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.buffer.indexOf("\n\n");
      if (index >= 0) {
        const block = this.buffer.slice(0, index);
        this.buffer = this.buffer.slice(index + 2);
        const event: SseEvent = { event: undefined, data: undefined, comment: undefined };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) event.comment = line.slice(1).trim();
          else if (line.startsWith("event: ")) event.event = line.slice(7);
          else if (line.startsWith("data: ")) event.data = JSON.parse(line.slice(6));
        }
        this.seen.push(event);
        if (match(event)) return event;
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; saw ${JSON.stringify(this.seen.slice(-5))}`);
      const { value, done } = await this.reader.read();
      if (done) {
        this.ended = true;
        throw new Error(`the stream ended while waiting for ${what}`);
      }
      this.buffer += this.decoder.decode(value, { stream: true });
    }
  }

  /** Reads until the stream ends; true when it ended cleanly (not with an error). */
  async untilEnd(): Promise<boolean> {
    for (;;) {
      const { done } = await this.reader.read();
      if (done) return true;
    }
  }
}

const staging = (fillRatio: number) => ({ wrls: [{ name: "fast", fillRatio, lagSeconds: 0, rpo: { rpoSeconds: 0, state: "ok" } }] });

describe("GET /api/live", () => {
  test("status events after poll rounds, alert events, heartbeats; viewers allowed, strangers refused; ended on stop", async () => {
    const fake = startFakeComponent("staging", staging(0.3));
    fakes.push(fake);
    const panel = await startTestPanel({ pollIntervalMs: 100, statusTimeoutMs: 90, monitoring: { liveHeartbeatMs: 300 } });
    panels.push(panel);
    const admin = await adminClient(panel.url);
    const viewer = await userClient(panel.url, admin, "vera", "viewer");
    expect((await admin.post("/api/components", { name: "stg1", role: "staging", control: fake.control })).status).toBe(201);

    const stranger = await LiveReader.open(new ApiClient(panel.url), panel.url);
    expect(stranger.response.status).toBe(401);
    expect(((await stranger.response.json()) as { error: { code: string } }).error.code).toBe("NOT_LOGGED_IN");

    const { response, live } = await LiveReader.open(viewer, panel.url);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toStartWith("text/event-stream");
    const status = await live!.next("a status event with stg1", (event) => event.event === "status" && event.data.components.some((c: { name: string }) => c.name === "stg1"));
    const stg1 = status.data.components.find((c: { name: string }) => c.name === "stg1");
    expect(stg1).toMatchObject({ name: "stg1", role: "staging", reachable: true, status: { role: "staging", wrls: [{ name: "fast", fillRatio: 0.3 }] } });
    expect(status.data.alerts).toEqual({ open: 0 });
    expect(typeof status.data.timeMs).toBe("number");

    fake.status = staging(0.97);
    const alert = await live!.next("the WRL_FILL_HIGH alert event", (event) => event.event === "alert");
    expect(alert.data).toMatchObject({ kind: "raised", component: "stg1", role: "staging", code: "WRL_FILL_HIGH", message: expect.stringContaining("97 % full") });
    const after = await live!.next("a status event counting the alert", (event) => event.event === "status");
    expect(after.data.alerts).toEqual({ open: 1 });
    await live!.next("a heartbeat comment", (event) => event.comment === "heartbeat");

    fake.status = staging(0.2);
    const cleared = await live!.next("the cleared event", (event) => event.event === "alert");
    expect(cleared.data).toMatchObject({ kind: "cleared", code: "WRL_FILL_HIGH", component: "stg1" });

    // Stopping the panel ends the stream cleanly (the reader sees its end, not an error).
    const ended = live!.untilEnd();
    panels.splice(panels.indexOf(panel), 1);
    await panel.close();
    expect(await ended).toBe(true);
  });

  test("a new stream gets the newest round's status at once; at most liveStreamsMax streams: one more gets 503; a closed one frees its place", async () => {
    // One poll round a minute: the status events seen below are the newest round's, sent as each stream opens.
    const panel = await startTestPanel({ pollIntervalMs: 60_000, statusTimeoutMs: 1000, monitoring: { liveStreamsMax: 2 } });
    panels.push(panel);
    const admin = await adminClient(panel.url);
    const first = await LiveReader.open(admin, panel.url);
    const second = await LiveReader.open(admin, panel.url);
    expect([first.response.status, second.response.status]).toEqual([200, 200]);
    const initial = await first.live!.next("the newest round's status", (event) => event.event === "status");
    expect(initial.data).toMatchObject({ components: [], alerts: { open: 0 } });
    const third = await LiveReader.open(admin, panel.url);
    expect(third.response.status).toBe(503);
    const body = (await third.response.json()) as { error: { code: string; message: string; hint: unknown } };
    expect(body.error.code).toBe("LIVE_STREAMS_FULL");
    expect(body.error.message).toContain("at most 2 live streams");
    expect(body.error.hint).toBeString();
    await first.live!.reader.cancel();
    const again = await waitFor("a freed place", 10_000, async () => {
      const attempt = await LiveReader.open(admin, panel.url);
      if (attempt.response.status === 200) return attempt;
      await attempt.response.body?.cancel();
      return undefined;
    });
    await again.live!.next("a status event on the new stream", (event) => event.event === "status");
  });

  test("?components=summary (the web UI's stream): each component's status trimmed to role, nodeId, version, uptime; pairs and alerts as the full stream; a bad value gets 400", async () => {
    const wrls = Array.from({ length: 40 }, (_, index) => ({ name: `wrl${index}`, fillRatio: 0.1, lagSeconds: 0, devices: ["/dev/a", "/dev/b"], rpo: { rpoSeconds: 0, state: "ok" } }));
    const fake = startFakeComponent("staging", { wrls });
    fakes.push(fake);
    const panel = await startTestPanel({ pollIntervalMs: 100, statusTimeoutMs: 90 });
    panels.push(panel);
    const admin = await adminClient(panel.url);
    expect((await admin.post("/api/components", { name: "stg1", role: "staging", control: fake.control })).status).toBe(201);

    const full = await LiveReader.open(admin, panel.url);
    const summary = await LiveReader.open(admin, panel.url, "?components=summary");
    expect([full.response.status, summary.response.status]).toEqual([200, 200]);
    const withStg1 = (event: SseEvent) => event.event === "status" && event.data.components.some((c: { name: string; reachable: boolean }) => c.name === "stg1" && c.reachable);
    const fullEvent = await full.live!.next("a full status event with stg1", withStg1);
    const summaryEvent = await summary.live!.next("a summary status event with stg1", withStg1);
    const fullStg1 = fullEvent.data.components.find((c: { name: string }) => c.name === "stg1");
    const summaryStg1 = summaryEvent.data.components.find((c: { name: string }) => c.name === "stg1");
    expect(fullStg1.status.wrls).toHaveLength(40);
    expect(summaryStg1).toMatchObject({ name: "stg1", role: "staging", reachable: true });
    expect(summaryStg1.status).toEqual({ role: "staging", nodeId: "fake-staging", version: "test", uptimeSeconds: 1 });
    expect(summaryEvent.data.alerts).toEqual(fullEvent.data.alerts);
    expect(summaryEvent.data.pairs).toEqual(fullEvent.data.pairs);
    expect(JSON.stringify(summaryEvent.data).length).toBeLessThan(JSON.stringify(fullEvent.data).length / 5);

    const bad = await LiveReader.open(admin, panel.url, "?components=everything");
    expect(bad.response.status).toBe(400);
    const body = (await bad.response.json()) as { error: { code: string; message: string; hint: string } };
    expect(body.error.code).toBe("BAD_FIELD");
    expect(body.error.message).toContain("everything");
    expect(body.error.hint).toContain("summary");
  });
});
