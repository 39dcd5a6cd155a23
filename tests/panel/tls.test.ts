/**
 * `druvaa panel` with TLS flags: the panel serves HTTPS (its session cookie then Secure), and
 * reaches a component that runs with TLS through the component's control port, with the panel's
 * own certificate (a control port takes admin and panel certificates).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { druvaa } from "../helpers/cli.ts";
import { createReplicaImageSync } from "../helpers/replica-image.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { adminClient } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "druvaa-panel-tls-"));
const caDir = join(dir, "ca");
const certs = join(dir, "certs");
const running: RoleProcess[] = [];

afterAll(async () => {
  for (const role of running) role.proc.kill("SIGKILL");
  await Promise.all(running.map((role) => role.proc.exited));
  rmSync(dir, { recursive: true, force: true });
});

const tlsFlags = (name: string) => ["--tls-cert", join(certs, `${name}.pem`), "--tls-key", join(certs, `${name}.key`), "--tls-ca", join(caDir, "ca.pem")];

async function druvaaOk(args: string[]): Promise<void> {
  const result = await druvaa(args);
  if (result.exitCode !== 0) throw new Error(`druvaa ${args.join(" ")}: ${result.stderr}`);
}

test("HTTPS panel: Secure session cookie, and a TLS replica's status fetched with the panel certificate", async () => {
  await druvaaOk(["admin", "ca", "init", "--dir", caDir, "--name", "panel-ca", "--json"]);
  for (const [role, name] of [["replica", "dr1"], ["panel", "panel1"]] as const) {
    await druvaaOk(["admin", "cert", "issue", "--role", role, "--name", name, "--dir", caDir, "--out", certs, "--json"]);
  }
  createReplicaImageSync(join(dir, "disk0.img"), 1024 * 1024);
  const replica = await startRole(["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${join(dir, "disk0.img")}`, "--state-dir", join(dir, "replica-state"), ...tlsFlags("dr1")], join(dir, "replica.log"));
  running.push(replica);
  const panel = await startRole(["panel", "--listen", "127.0.0.1:0", "--db", join(dir, "panel.db"), ...tlsFlags("panel1")], join(dir, "panel.log"));
  running.push(panel);
  const url = String(panel.ready.url);
  expect(url).toStartWith("https://127.0.0.1:");

  // Our CA vouches for the panel; the certificate names the panel, not 127.0.0.1, so skip the host check.
  const fetchOptions = { tls: { ca: readFileSync(join(caDir, "ca.pem"), "utf8"), checkServerIdentity: () => undefined } };
  const admin = await adminClient(url, undefined, fetchOptions);
  const login = await admin.login("admin", "correct horse battery");
  expect(login.headers.get("set-cookie")).toContain("; Secure");

  expect((await admin.post("/api/components", { name: "dr1", role: "replica", control: String(replica.ready.control) })).status).toBe(201);
  const status = await admin.get("/api/status");
  expect(status.body.components[0]).toMatchObject({ name: "dr1", reachable: true, status: { role: "replica" } });
}, 60_000);
