/**
 * Alerts read from components' own statuses (src/roles/panel/status-alerts.ts), one decision-table
 * row per test, driven by crafted statuses through the panel's round wiring (live-monitoring.ts):
 * each alert is raised once and cleared when the condition is gone, is in the alerts table a user
 * sees, and reaches the mailer, whose recipients' code filters apply.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { SendMailOptions } from "../../src/io/smtp.ts";
import { PanelMonitoring } from "../../src/roles/panel/live-monitoring.ts";
import { Mailer } from "../../src/roles/panel/mailer.ts";
import type { ComponentStatus } from "../../src/roles/panel/monitor.ts";
import { PanelStore } from "../../src/roles/panel/store.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Rig {
  store: PanelStore;
  round(...statuses: ComponentStatus[]): Promise<void>;
  /** Subjects and recipients of the mails sent so far. */
  mails: { subject: string; to: string[]; text: string }[];
  open(): { component: string; code: string; message: string }[];
}

async function rig(): Promise<Rig> {
  const store = PanelStore.open(":memory:");
  const mails: Rig["mails"] = [];
  const mailer = new Mailer(store, { send: async (options: SendMailOptions) => {
    mails.push({ subject: options.subject, to: options.to, text: options.text });
    return { accepted: options.to, rejected: [], reply: "250 ok" };
  } });
  const monitoring = new PanelMonitoring(store, mailer, { statuses: async () => [], panelUrl: () => undefined });
  cleanups.push(async () => {
    await monitoring.stop();
    await mailer.stop();
    store.close();
  });
  for (const [name, role] of [["stg1", "staging"], ["cli1", "client"], ["dr1", "replica"]] as const) store.addComponent(name, role, "127.0.0.1:1", "test");
  store.setMailSettings({ host: "127.0.0.1", port: 25, from: "druvaa@example.com", starttls: "never", authUser: null, authPassword: null, enabled: true });
  store.putMailRecipient("fill@example.com", ["WRL_FILL_HIGH"], "*", true, "test");
  store.putMailRecipient("all@example.com", "*", "*", false, "test");
  return {
    store,
    mails,
    async round(...statuses) {
      monitoring.onRound(statuses);
      for (let i = 0; i < 20 && mailer.pendingCount > 0; i += 1) await Bun.sleep(10);
      await Bun.sleep(10); // the mail under way
    },
    open: () => store.listAlerts(100).filter((alert) => alert.clearedAt === null).map(({ component, code, message }) => ({ component, code, message })),
  };
}

const staging = (wrls: Record<string, unknown>[]): ComponentStatus => ({ name: "stg1", role: "staging", control: "127.0.0.1:1", reachable: true, status: { role: "staging", wrls } });
const wrl = (name: string, fillRatio: number, rpoState = "ok") => ({ name, fillRatio, lagSeconds: 0, rpo: { targetSeconds: 30, rpoSeconds: rpoState === "missed" ? 95 : 1, state: rpoState } });
const client = (status: Record<string, unknown>): ComponentStatus => ({ name: "cli1", role: "client", control: "127.0.0.1:1", reachable: true, status: { role: "client", ...status } });
const replica = (status: Record<string, unknown>): ComponentStatus => ({ name: "dr1", role: "replica", control: "127.0.0.1:1", reachable: true, status: { role: "replica", ...status } });

describe("status alerts", () => {
  test("WRL_FILL_HIGH: raised over 80 %, kept between 70 and 80 %, cleared under 70 %; mailed to the recipients whose filter matches", async () => {
    const r = await rig();
    await r.round(staging([wrl("fast", 0.5), wrl("bulk", 0.79)]));
    expect(r.open()).toEqual([]);
    await r.round(staging([wrl("fast", 0.5), wrl("bulk", 0.85)]));
    expect(r.open()).toEqual([{ component: "stg1", code: "WRL_FILL_HIGH", message: expect.stringContaining("bulk is 85 % full") }]);
    expect(r.mails.map((mail) => [mail.subject, [...mail.to].sort()])).toEqual([["[druvaa] WRL_FILL_HIGH: staging stg1", ["all@example.com", "fill@example.com"]]]);
    await r.round(staging([wrl("fast", 0.5), wrl("bulk", 0.9)])); // still high: no second alert, no second mail
    await r.round(staging([wrl("fast", 0.5), wrl("bulk", 0.75)])); // between the thresholds: stays open
    expect(r.open()).toHaveLength(1);
    expect(r.mails).toHaveLength(1);
    await r.round(staging([wrl("fast", 0.5), wrl("bulk", 0.69)]));
    expect(r.open()).toEqual([]);
    // Only the recipient that asked for cleared notices gets one.
    expect(r.mails.slice(1).map((mail) => [mail.subject, mail.to])).toEqual([["[druvaa] cleared: WRL_FILL_HIGH: staging stg1", ["fill@example.com"]]]);
    expect(r.mails[1]!.text).toContain("under 70 % full again");
  });

  test("RPO_MISSED follows the staging's rpo.state; the fill filter keeps its recipient out of it", async () => {
    const r = await rig();
    await r.round(staging([wrl("fast", 0.1, "at-risk")]));
    expect(r.open()).toEqual([]);
    await r.round(staging([wrl("fast", 0.1, "missed")]));
    expect(r.open()).toEqual([{ component: "stg1", code: "RPO_MISSED", message: expect.stringContaining("fast (RPO 95 s, target 30 s)") }]);
    expect(r.mails.map((mail) => [mail.subject, mail.to])).toEqual([["[druvaa] RPO_MISSED: staging stg1", ["all@example.com"]]]);
    await r.round(staging([wrl("fast", 0.1, "ok")]));
    expect(r.open()).toEqual([]);
  });

  test("CLIENT_DISCONNECTED: a client (or an agent's attachment) writing to its change map; cleared once it resyncs", async () => {
    const r = await rig();
    await r.round(client({ mode: "connected", devices: [] }));
    expect(r.open()).toEqual([]);
    await r.round(client({ mode: "disconnected", disconnectedSeconds: 12.4, disconnectReason: "staging 10.0.0.5:6001 does not answer", devices: [] }));
    expect(r.open()).toEqual([{ component: "cli1", code: "CLIENT_DISCONNECTED", message: expect.stringContaining("client cli1 disconnected for 12 s: staging 10.0.0.5:6001 does not answer") }]);
    await r.round(client({ mode: "resyncing", devices: [] }));
    expect(r.open()).toEqual([]);
    // A client host agent: each attachment has its own status.
    await r.round(client({ attachments: [{ name: "pair-db", status: { mode: "connected" } }, { name: "pair-web", status: { mode: "disconnected" } }] }));
    expect(r.open()).toEqual([{ component: "cli1", code: "CLIENT_DISCONNECTED", message: expect.stringContaining("attachment pair-web disconnected") }]);
  });

  test("APPLY_FAILED: a replica device not consistent after a failed apply, not during an unbuffered resync", async () => {
    const r = await rig();
    const devices = (consistent: boolean) => [{ name: "disk0", consistent: true }, { name: "disk1", consistent }];
    await r.round(replica({ devices: devices(false), wrls: [{ name: "fast", resync: { state: "unbuffered", devices: ["disk1"] } }] }));
    expect(r.open()).toEqual([]);
    await r.round(replica({ devices: devices(false), wrls: [{ name: "fast" }] }));
    expect(r.open()).toEqual([{ component: "dr1", code: "APPLY_FAILED", message: expect.stringContaining("device disk1 failed") }]);
    await r.round(replica({ devices: devices(true), wrls: [] }));
    expect(r.open()).toEqual([]);
  });

  test("an unreachable component keeps its status alerts; a removed one gets none", async () => {
    const r = await rig();
    await r.round(staging([wrl("fast", 0.95)]));
    await r.round({ name: "stg1", role: "staging", control: "127.0.0.1:1", reachable: false, error: { code: "CONTROL_UNREACHABLE", message: "refused" } });
    expect(r.open().map((alert) => alert.code)).toEqual(["WRL_FILL_HIGH"]);
    r.store.deleteComponent("stg1");
    await r.round(staging([wrl("fast", 0.95)]));
    expect(r.open()).toEqual([]);
  });
});
