/**
 * Email alerts (issue 7) end to end: a real `druvaa panel` process watching a real `druvaa replica
 * apply`, mailing through a real SMTP server nobody here wrote (Debian's aiosmtpd with
 * tests/fixtures/smtp/server.py, which stores each accepted message parsed by Python's email
 * package). Covered: the alert mail reaches only the recipients whose filter matches, the
 * "cleared" mail only those that asked for it, the test mail and its clear SMTP error, roles,
 * CSRF, the password never in an answer, field-naming refusals, and the database kept 0600.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createReplicaImageSync } from "../helpers/replica-image.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { adminClient, ApiClient, userClient } from "./helpers.ts";
import { hasAiosmtpd, startAiosmtpd } from "../fixtures/smtp/aiosmtpd.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-panel-mail-"));
const dbPath = join(scratch, "panel.db");
const running = new Set<RoleProcess>();
const smtpProcs: ReturnType<typeof Bun.spawn>[] = [];

afterAll(async () => {
  for (const role of running) role.proc.kill("SIGKILL");
  for (const proc of smtpProcs) proc.kill("SIGKILL");
  await Promise.all([...[...running].map((role) => role.proc.exited), ...smtpProcs.map((proc) => proc.exited)]);
  rmSync(scratch, { recursive: true, force: true });
});

interface Stored {
  rcptTos: string[];
  headers: Record<string, string>;
  text: string | null;
  defects: string[];
}

async function startSmtp(): Promise<{ port: number; messages(): Stored[] }> {
  const server = await startAiosmtpd<Stored>(join(scratch, "mail"));
  smtpProcs.push(server.proc);
  return server;
}

/** A TCP port nobody listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startReplica(tag: string, control = "127.0.0.1:0"): Promise<RoleProcess> {
  const replica = await startRole(["replica", "apply", "--listen", "127.0.0.1:0", "--control", control, "--restore", "127.0.0.1:0", "--device", `disk0=${join(scratch, "disk0.img")}`, "--state-dir", join(scratch, "replica-state"), "--node-id", "dr-site"], join(scratch, `replica-${tag}.log`));
  running.add(replica);
  return replica;
}

async function kill(role: RoleProcess): Promise<void> {
  role.proc.kill("SIGKILL");
  await role.proc.exited;
  running.delete(role);
}

async function waitFor<T>(what: string, timeoutMs: number, check: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(200);
  }
}

const password = "smtp-Secret-p4ssword";
const ops = "ops@example.com";
const noisy = "oncall@example.com";
const lag = "lag-watch@example.com";

describe("panel email alerts (aiosmtpd)", () => {
  // scripts/setup.sh installs python3-aiosmtpd: without it this fails rather than skips.
  test("aiosmtpd is installed (apt-get install python3-aiosmtpd)", () => {
    expect(hasAiosmtpd).toBe(true);
  });

  test("alert and cleared mails reach only matching recipients; test mail; roles; password hidden; bad fields", async () => {
    const smtp = await startSmtp();
    createReplicaImageSync(join(scratch, "disk0.img"), 1024 * 1024);
    const panel = await startRole(["panel", "--listen", "127.0.0.1:0", "--db", dbPath, "--insecure"], join(scratch, "panel.log"));
    running.add(panel);
    expect(statSync(dbPath).mode & 0o777).toBe(0o600);
    const url = String(panel.ready.url);
    const admin = await adminClient(url);
    const viewer = await userClient(url, admin, "vera", "viewer");
    const operator = await userClient(url, admin, "otto", "operator");

    expect((await admin.get("/api/settings/mail")).body).toEqual({ ok: true, settings: null });
    const settings = { host: "127.0.0.1", port: smtp.port, from: "druvaa@panel.example", starttls: "if-offered", enabled: true };
    const put = await admin.request("PUT", "/api/settings/mail", settings);
    expect(put.status).toBe(200);
    expect(put.body.settings).toMatchObject({ ...settings, authUser: null, authPasswordSet: false });
    // ops: this alert, this component, and cleared notices; oncall: everything but cleared; lag-watch: another code.
    expect((await admin.post("/api/settings/mail/recipients", { address: ops, codes: ["COMPONENT_UNREACHABLE"], components: ["dr1"], cleared: true })).status).toBe(201);
    expect((await admin.post("/api/settings/mail/recipients", { address: noisy })).status).toBe(201);
    expect((await admin.post("/api/settings/mail/recipients", { address: lag, codes: ["REPLICATION_LAG"], components: "*", cleared: true })).status).toBe(201);
    const listed = (await viewer.get("/api/settings/mail/recipients")).body.recipients as { address: string; codes: unknown; components: unknown; cleared: boolean }[];
    expect(listed.map((r) => [r.address, r.codes, r.components, r.cleared])).toEqual([
      [lag, ["REPLICATION_LAG"], "*", true],
      [noisy, "*", "*", false],
      [ops, ["COMPONENT_UNREACHABLE"], ["dr1"], true],
    ]);

    let replica = await startReplica("first");
    const control = String(replica.ready.control);
    expect((await admin.post("/api/components", { name: "dr1", role: "replica", control })).status).toBe(201);
    await Bun.sleep(500);
    expect(smtp.messages()).toHaveLength(0);

    await kill(replica);
    const raised = await waitFor("the COMPONENT_UNREACHABLE mail", 15_000, () => smtp.messages()[0]);
    expect([...raised.rcptTos].sort()).toEqual([noisy, ops]);
    expect(raised.headers.Subject).toBe("[druvaa] COMPONENT_UNREACHABLE: replica dr1");
    expect(raised.headers.From).toBe("druvaa@panel.example");
    expect(raised.defects).toEqual([]);
    expect(raised.text).toContain("Component: dr1 (replica)");
    expect(raised.text).toContain("Code: COMPONENT_UNREACHABLE");
    expect(raised.text).toContain(control);
    expect(raised.text).toMatch(/Time: \d{4}-\d\d-\d\dT/);
    expect(raised.text).toContain(`Panel: ${url}`);

    replica = await startReplica("second", control);
    const cleared = await waitFor("the cleared mail", 15_000, () => smtp.messages()[1]);
    expect(cleared.rcptTos).toEqual([ops]);
    expect(cleared.headers.Subject).toBe("[druvaa] cleared: COMPONENT_UNREACHABLE: replica dr1");
    expect(cleared.text).toContain("is cleared");
    await Bun.sleep(1_000);
    expect(smtp.messages()).toHaveLength(2); // one mail per alert event, not one per poll round

    // The test mail: accepted by aiosmtpd, and a clear SMTP error for a server that is not there.
    const sent = await admin.post("/api/settings/mail/test", { to: lag });
    expect(sent.status).toBe(200);
    expect(sent.body.smtp.accepted).toEqual([lag]);
    expect(sent.body.smtp.reply).toMatch(/^250/);
    expect(smtp.messages()[2]!.headers.Subject).toBe("[druvaa] test mail");
    expect((await admin.request("PUT", "/api/settings/mail", { ...settings, port: await closedPort() })).status).toBe(200);
    const failed = await admin.post("/api/settings/mail/test", { to: lag });
    expect(failed.status).toBe(502);
    expect(failed.body.ok).toBe(false);
    expect(failed.body.error.code).toBe("SMTP_CONNECT_FAILED");
    expect(failed.body.error.message).toContain("127.0.0.1");

    // The password is stored, kept when omitted, and never in an answer (nor the activity log).
    const withAuth = await admin.request("PUT", "/api/settings/mail", { ...settings, authUser: "druvaa", authPassword: password });
    expect(withAuth.body.settings).toMatchObject({ authUser: "druvaa", authPasswordSet: true });
    const kept = await admin.request("PUT", "/api/settings/mail", { ...settings, authUser: "druvaa" });
    expect(kept.body.settings.authPasswordSet).toBe(true);
    const noTls = await admin.post("/api/settings/mail/test", { to: lag });
    expect(noTls.status).toBe(502);
    expect(noTls.body.error.code).toBe("SMTP_TLS_REQUIRED"); // aiosmtpd here has no STARTTLS: the password is not sent in clear
    const answers = [withAuth, kept, noTls, await admin.get("/api/settings/mail"), await viewer.get("/api/settings/mail"), await admin.get("/api/activity?limit=1000")];
    for (const answer of answers) expect(JSON.stringify(answer.body)).not.toContain(password);
    const activity = (await admin.get("/api/activity?limit=1000")).body.activity as { action: string; user: string }[];
    for (const action of ["mail.settings", "mail.recipient.add", "mail.test"]) expect(activity.some((entry) => entry.action === action && entry.user === "admin")).toBe(true);

    // Viewers and operators may look but not change; a change without CSRF token is refused.
    for (const client of [viewer, operator]) {
      for (const [method, path, body] of [
        ["PUT", "/api/settings/mail", settings],
        ["POST", "/api/settings/mail/recipients", { address: "x@example.com" }],
        ["DELETE", `/api/settings/mail/recipients/${encodeURIComponent(ops)}`, undefined],
        ["POST", "/api/settings/mail/test", { to: ops }],
      ] as const) {
        const answer = await client.request(method, path, body);
        expect(answer.status).toBe(403);
        expect(answer.body.error.code).toBe("FORBIDDEN");
      }
    }
    const noCsrf = new ApiClient(url);
    noCsrf.cookie = admin.cookie;
    expect((await noCsrf.request("PUT", "/api/settings/mail", settings)).body.error.code).toBe("CSRF_TOKEN_INVALID");
    expect((await admin.get("/api/settings/mail/recipients")).body.recipients).toHaveLength(3);

    // Bad fields are refused with a message naming the field.
    const refusals: [string, string, unknown, string][] = [
      ["PUT", "/api/settings/mail", { ...settings, host: "bad host" }, "host: "],
      ["PUT", "/api/settings/mail", { ...settings, port: 0 }, "port: "],
      ["PUT", "/api/settings/mail", { ...settings, port: 65536 }, "port: "],
      ["PUT", "/api/settings/mail", { ...settings, port: "25" }, "port: "],
      ["PUT", "/api/settings/mail", { ...settings, from: "not an address" }, "from: "],
      ["PUT", "/api/settings/mail", { ...settings, starttls: "maybe" }, "starttls: "],
      ["PUT", "/api/settings/mail", { ...settings, authUser: "someone-else" }, "authPassword: "],
      ["POST", "/api/settings/mail/recipients", { address: "ops@example.com\r\nBcc: x@evil.example" }, "address: "],
      ["POST", "/api/settings/mail/recipients", { address: ops, codes: ["lower_case"] }, "codes[0]: "],
      ["POST", "/api/settings/mail/recipients", { address: ops, codes: "COMPONENT_UNREACHABLE" }, "codes: "],
      ["POST", "/api/settings/mail/recipients", { address: ops, components: ["no spaces"] }, "components[0]: "],
      ["POST", "/api/settings/mail/recipients", { address: ops, cleared: "yes" }, "cleared: "],
      ["POST", "/api/settings/mail/test", { to: "nobody" }, "to: "],
    ];
    for (const [method, path, body, field] of refusals) {
      const answer = await admin.request(method, path, body);
      expect({ path, body, status: answer.status, code: answer.body.error?.code }).toEqual({ path, body, status: 400, code: "BAD_FIELD" });
      expect(answer.body.error.message.startsWith(field)).toBe(true);
    }

    expect((await admin.delete(`/api/settings/mail/recipients/${encodeURIComponent(noisy)}`)).status).toBe(200);
    expect((await admin.delete(`/api/settings/mail/recipients/${encodeURIComponent(noisy)}`)).status).toBe(404);
    expect(statSync(dbPath).mode & 0o777).toBe(0o600);
    await kill(replica);
  }, 90_000);
});
