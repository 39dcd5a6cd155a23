/**
 * Shared set-up of the client agent's end-to-end tests (client-agent.test.ts,
 * client-agent-jobs.test.ts, client-agent-tls.test.ts): real `druvaa client agent` processes
 * driven the way the panel drives them (prepare + commit, POST /jobs), over plain HTTP
 * (--insecure) or HTTPS with an admin or panel certificate. Every agent started here and every
 * attachment child seen in an answer is stopped by AgentFleet.stopAll(), so a failed test leaves
 * nothing running.
 */
import { expect } from "bun:test";
import { controlRequest } from "../../src/commands/status-format.ts";
import type { RoleProcess } from "../../src/demo/processes.ts";
import type { PreparedTls } from "../../src/tls/transport-tls.ts";
import { readFile } from "node:fs/promises";
import { druvaaOk, isAlive, MiB, qemuIo, startTracked } from "./helpers.ts";

/** A request to an agent's control port (POST with a JSON body when `body` is given): its HTTP status and JSON answer. */
export type AgentCall = (path: string, body?: unknown) => Promise<{ status: number; body: any }>;

export interface StartedAgent {
  agent: RoleProcess;
  call: AgentCall;
  /** call(), the JSON answer only. */
  json(path: string, body?: unknown): Promise<any>;
}

/** The agents a test started and every attachment child pid it saw. */
export class AgentFleet {
  readonly #agents: RoleProcess[] = [];
  readonly #childPids = new Set<number>();

  /**
   * Starts `druvaa client agent` on 127.0.0.1 (node id db1) with `securityFlags` (default
   * --insecure); `tls`: the certificate the test calls its HTTPS control port with.
   */
  async start(stateDir: string, securityFlags: string[] = ["--insecure"], tls?: PreparedTls): Promise<StartedAgent> {
    const agent = await startTracked("agent", ["client", "agent", "--control", "127.0.0.1:0", "--state-dir", stateDir, "--node-id", "db1", ...securityFlags]);
    this.#agents.push(agent);
    const call: AgentCall = async (path, body) => {
      const response = await controlRequest(String(agent.ready.control), path, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) }, 6007, tls);
      const answer = (await response.json()) as any;
      for (const attachment of answer.attachments ?? []) if (typeof attachment.pid === "number") this.#childPids.add(attachment.pid);
      return { status: response.status, body: answer };
    };
    return { agent, call, json: async (path, body) => (await call(path, body)).body };
  }

  /** Stops `agent` (SIGTERM, waited for) and returns its exit code; stopAll() will not stop it again. */
  async stop(agent: RoleProcess): Promise<number> {
    this.forget(agent);
    return agent.stop("SIGTERM");
  }

  /** `agent` ended some other way (the test killed it): stopAll() leaves it out. */
  forget(agent: RoleProcess): void {
    const index = this.#agents.indexOf(agent);
    if (index >= 0) this.#agents.splice(index, 1);
  }

  /** Every agent SIGTERMed and waited for, then every child seen still alive SIGKILLed. */
  async stopAll(): Promise<void> {
    for (const agent of this.#agents.splice(0)) await agent.stop("SIGTERM");
    for (const pid of this.#childPids) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    this.#childPids.clear();
  }
}

/** Polls `read` until `done` holds (every 100 ms, at most 120 s); returns the last value, or throws with it. */
export async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  let value = await read();
  for (let attempt = 0; attempt < 1200 && !done(value); attempt += 1) {
    await Bun.sleep(100);
    value = await read();
  }
  if (!done(value)) throw new Error(`${what}: not reached; last: ${JSON.stringify(value)}`);
  return value;
}

/** The job `id` once it ended (its GET /jobs entry). */
export async function jobEnded(call: AgentCall, id: string): Promise<any> {
  const jobs = await until(`job ${id} ended`, async () => (await call("/jobs")).body.jobs as any[], (list) => list.some((job) => job.id === id && job.state !== "running"));
  return jobs.find((job) => job.id === id);
}

/** The attachment's state once the agent runs it again (after a failback job, or a new agent). */
export function runningAgain(call: AgentCall): Promise<any> {
  return until("attachment running", async () => (await call("/status")).body.attachments[0], (attachment) => attachment?.state === "running");
}

/** Prepares and commits `config` as the panel does; the commit must apply without an error. */
export async function commitConfig(call: AgentCall, txid: string, version: number, config: unknown): Promise<any> {
  expect((await call("/config/prepare", { txid, version, config })).body).toEqual({ ok: true, txid, version });
  const committed = (await call("/config/commit", { txid })).body;
  expect(committed).toMatchObject({ ok: true, version, applied: { version } });
  expect(committed.applied.error).toBeUndefined();
  return committed;
}

/** An attachment of one device served on a Unix socket (what the panel's wizard pushes for a pair). */
export function oneDeviceAttachment(name: string, where: { primary: string; staging: string; wrl: string; socket: string; changemap?: string }): Record<string, unknown> {
  return { name, devices: [{ name: "disk0", path: where.primary }], staging: where.staging, wrl: where.wrl, export: `unix:${where.socket}`, ...(where.changemap === undefined ? {} : { changemap: where.changemap }), initialSync: "none", enabled: true };
}

/**
 * Fails disk0 over on the replica (its DR export on `drSocket`) and writes the DR side through it:
 * 256 KiB of 0xd4 at 2 MiB and 4 KiB of 0xd5 at 6 MiB. `toolFlags`: druvaa failover's TLS flags.
 */
export async function failOverAndWriteDr(replicaControl: string, drSocket: string, toolFlags: string[] = []): Promise<void> {
  await druvaaOk(["failover", "--connect", replicaControl, "--device", "disk0", "--export", `unix:${drSocket}`, "--json", ...toolFlags]);
  expect((await qemuIo(`nbd+unix:///disk0?socket=${drSocket}`, ["write -P 0xd4 2M 256k", "write -P 0xd5 6M 4k"])).exitCode).toBe(0);
}

/** After a failback keeping the DR side: the primary holds failOverAndWriteDr's writes, and its own 0x5a in its first MiB. */
export async function expectDrWritesOnPrimary(primary: string): Promise<void> {
  const image = new Uint8Array(await readFile(primary));
  expect(image.subarray(2 * MiB, 2 * MiB + 256 * 1024).every((byte) => byte === 0xd4)).toBe(true);
  expect(image.subarray(6 * MiB, 6 * MiB + 4096).every((byte) => byte === 0xd5)).toBe(true);
  expect(image.subarray(0, MiB).every((byte) => byte === 0x5a)).toBe(true);
}
