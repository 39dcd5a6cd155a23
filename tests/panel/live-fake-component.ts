/**
 * A stand-in for a component's control port in panel tests: answers GET /status with whatever
 * status the test sets (so a test can walk a staging through full WRLs, missed RPOs and back).
 * The panel's monitor reaches it over real HTTP like a real role.
 */
export interface FakeComponent {
  /** HOST:PORT for POST /api/components. */
  control: string;
  /** The status GET /status answers now (role and header fields added). */
  status: Record<string, unknown>;
  /** GET /status requests answered so far. */
  polls: number;
  stop(): Promise<void>;
}

export function startFakeComponent(role: "client" | "staging" | "replica", status: Record<string, unknown>): FakeComponent {
  const fake: FakeComponent = {
    control: "",
    status,
    polls: 0,
    stop: async () => {
      await server.stop(true);
    },
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      if (new URL(request.url).pathname !== "/status") return Response.json({ ok: false }, { status: 404 });
      fake.polls += 1;
      return Response.json({ role, nodeId: `fake-${role}`, version: "test", uptimeSeconds: 1, ...fake.status });
    },
  });
  fake.control = `127.0.0.1:${server.port}`;
  return fake;
}

/** Polls `check` every 50 ms until it gives a value; fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}
