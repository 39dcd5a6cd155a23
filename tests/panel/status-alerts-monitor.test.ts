/**
 * Status alerts through the real path: the panel's background poll reads a component's GET
 * /status over HTTP (a stand-in control port whose status the test sets), and the alert a user
 * sees in GET /api/alerts is raised once and cleared when the WRL drains.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { adminClient, startTestPanel, type TestPanel } from "./helpers.ts";
import { startFakeComponent, waitFor, type FakeComponent } from "./live-fake-component.ts";

let panel: TestPanel | undefined;
let fake: FakeComponent | undefined;
afterAll(async () => {
  await panel?.close();
  await fake?.stop();
});

const status = (fillRatio: number) => ({ wrls: [{ name: "fast", fillRatio, lagSeconds: 3, rpo: { targetSeconds: 30, rpoSeconds: 3, state: "ok" } }] });

describe("status alerts through the monitor", () => {
  test("a staging's WRL over 80 % raises WRL_FILL_HIGH once; under 70 % clears it", async () => {
    fake = startFakeComponent("staging", status(0.5));
    panel = await startTestPanel({ pollIntervalMs: 100, statusTimeoutMs: 90 });
    const admin = await adminClient(panel.url);
    expect((await admin.post("/api/components", { name: "stg1", role: "staging", control: fake.control })).status).toBe(201);
    const openAlerts = async () => ((await admin.get("/api/alerts")).body.alerts as { code: string; clearedAt: string | null; message: string }[]).filter((alert) => alert.clearedAt === null);
    const pollsBefore = fake.polls;
    await waitFor("two polls", 10_000, () => (fake!.polls >= pollsBefore + 2 ? true : undefined));
    expect(await openAlerts()).toEqual([]);

    fake.status = status(0.92);
    const raised = await waitFor("WRL_FILL_HIGH", 10_000, async () => (await openAlerts()).find((alert) => alert.code === "WRL_FILL_HIGH"));
    expect(raised.message).toContain("WRL fast is 92 % full");
    const pollsRaised = fake.polls;
    await waitFor("more polls", 10_000, () => (fake!.polls >= pollsRaised + 3 ? true : undefined));
    const all = (await admin.get("/api/alerts")).body.alerts as { code: string }[];
    expect(all.filter((alert) => alert.code === "WRL_FILL_HIGH")).toHaveLength(1); // raised once, not once per poll

    fake.status = status(0.4);
    await waitFor("the clear", 10_000, async () => ((await openAlerts()).length === 0 ? true : undefined));
    const after = (await admin.get("/api/alerts")).body.alerts as { code: string; clearedAt: string | null }[];
    expect(after.filter((alert) => alert.code === "WRL_FILL_HIGH").map((alert) => alert.clearedAt !== null)).toEqual([true]);
  });
});
