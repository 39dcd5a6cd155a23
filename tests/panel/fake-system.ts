/**
 * The set-up the panel's configuration tests share: fake managed components (config-fake.ts) —
 * staging s1, replica r1, client host c1, and any others a test adds — registered with an
 * in-process panel whose admin has logged in; and the bodies of the WRL and pairs they create.
 */
import { FakeComponent } from "./config-fake.ts";
import { adminClient, startTestPanel, type ApiClient, type TestPanel } from "./helpers.ts";

const GiB = 1024 ** 3;

type PanelOptions = Parameters<typeof startTestPanel>[0];

export class FakeSystem {
  readonly staging: FakeComponent;
  readonly replica: FakeComponent;
  readonly client: FakeComponent;
  readonly fakes: FakeComponent[];
  panel: TestPanel | undefined;

  /** `listen`: the data addresses each fake's GET /status reports; `extra`: more components by name. */
  constructor(listen: { staging: string; replica: string; client: string }, private readonly extra: [string, FakeComponent][] = []) {
    this.staging = new FakeComponent("staging", listen.staging);
    this.replica = new FakeComponent("replica", listen.replica);
    this.client = new FakeComponent("client", listen.client);
    this.fakes = [this.staging, this.replica, this.client, ...extra.map(([, fake]) => fake)];
  }

  /** Starts the fakes and the panel, logs the admin in and registers every component. */
  async start(options: PanelOptions): Promise<{ panel: TestPanel; admin: ApiClient }> {
    for (const fake of this.fakes) fake.start();
    const panel = (this.panel = await startTestPanel(options));
    const admin = await adminClient(panel.url);
    for (const [name, fake] of [["s1", this.staging], ["r1", this.replica], ["c1", this.client], ...this.extra] as const) {
      const added = await admin.post("/api/components", { name, role: fake.role, control: fake.control });
      if (added.status !== 201) throw new Error(`registering ${name}: ${added.status} ${JSON.stringify(added.body)}`);
    }
    return { panel, admin };
  }

  async close(): Promise<void> {
    await this.panel?.close();
    for (const fake of this.fakes) await fake.stop();
  }
}

/** WRL "fast" on s1, shipping to r1. */
export const fakeWrlBody = { name: "fast", staging: "s1", paths: ["/var/lib/druvaa/wrl/fast.img"], sizeBytes: GiB, replica: "r1" };

/** A pair of c1's /dev/DEVICE through WRL "fast" to r1. */
export const fakePairBody = (name: string, device: string, extra: Record<string, unknown> = {}) => ({
  name, client: "c1", deviceName: device, devicePath: `/dev/${device}`, export: `unix:/run/druvaa/${device}.sock`, wrl: "fast", replica: "r1",
  replicaDevicePath: `/srv/replica/${device}.img`, initialSync: "none", ...extra,
});
