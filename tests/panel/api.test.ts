/** The panel's JSON API over real HTTP (an in-process server on port 0): logins, CSRF, roles, validation. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { adminClient, ApiClient, startTestPanel, strongPassword, userClient, type TestPanel } from "./helpers.ts";

let panel: TestPanel;
beforeAll(async () => {
  panel = await startTestPanel({ loginLockMs: 1_500, pollIntervalMs: 60_000 });
});
afterAll(async () => {
  await panel.close();
});

describe("first run and passwords", () => {
  test("the first login forces a password change: 403 PASSWORD_CHANGE_REQUIRED until it is done", async () => {
    const admin = new ApiClient(panel.url);
    const login = await admin.login("admin", "druvaa");
    expect(login.status).toBe(200);
    expect(login.body).toMatchObject({ ok: true, user: "admin", role: "admin", mustChangePassword: true });
    for (const [method, path] of [["GET", "/api/users"], ["GET", "/api/components"], ["GET", "/api/status"], ["GET", "/api/activity"], ["POST", "/api/components"]] as const) {
      const answer = await admin.request(method, path, method === "POST" ? { name: "c1", role: "client", control: "127.0.0.1:6007" } : undefined);
      expect(answer.status).toBe(403);
      expect(answer.body.error.code).toBe("PASSWORD_CHANGE_REQUIRED");
    }
    expect((await admin.get("/api/session")).body).toMatchObject({ user: "admin", mustChangePassword: true });

    const weak: [string, string][] = [["short", "new: must be at least 10 characters"], ["druvaa", "new: must be at least 10"], ["admin", "new: must be at least 10"]];
    for (const [password, message] of weak) {
      const answer = await admin.post("/api/password", { current: "druvaa", new: password });
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe("WEAK_PASSWORD");
      expect(answer.body.error.message).toContain(message);
    }
    const missing = await admin.post("/api/password", { current: "druvaa" });
    expect(missing.status).toBe(400);
    expect(missing.body.error.message).toBe("new: is required");
    const wrongCurrent = await admin.post("/api/password", { current: "not it at all", new: strongPassword });
    expect(wrongCurrent.status).toBe(403);
    expect(wrongCurrent.body.error.message).toContain("current:");

    expect((await admin.post("/api/password", { current: "druvaa", new: strongPassword })).status).toBe(200);
    expect((await admin.get("/api/users")).status).toBe(200);
    // The old password no longer logs in; the new one does, without a forced change.
    expect((await new ApiClient(panel.url).login("admin", "druvaa")).status).toBe(401);
    expect((await new ApiClient(panel.url).login("admin", strongPassword)).body.mustChangePassword).toBe(false);
  });

  test("new users: a password equal to the name, too short, or a bad role is refused naming the field", async () => {
    const admin = new ApiClient(panel.url);
    await admin.login("admin", strongPassword);
    const cases: [Record<string, unknown>, string][] = [
      [{ name: "carol12345", role: "viewer", password: "carol12345" }, "password: must not be the user name"],
      [{ name: "carol", role: "viewer", password: "tooshort" }, "password: must be at least 10"],
      [{ name: "carol", role: "root", password: strongPassword }, "role: must be one of admin, operator, viewer"],
      [{ name: "carol", password: strongPassword }, "role: is required"],
      [{ name: 42, role: "viewer", password: strongPassword }, "name: must be a string"],
      [{ name: "carol", role: "viewer", password: strongPassword, mustChangePassword: "yes" }, "mustChangePassword: must be true or false"],
    ];
    for (const [body, message] of cases) {
      const answer = await admin.post("/api/users", body);
      expect(answer.status).toBe(400);
      expect(answer.body.ok).toBe(false);
      expect(answer.body.error.message).toContain(message);
    }
    for (const body of ["not json", "[1,2]", "null"]) {
      const answer = await admin.request("POST", "/api/users", body);
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe("BAD_JSON");
    }
    expect((await admin.get("/api/users")).body.users.map((u: { name: string }) => u.name)).toEqual(["admin"]);
  });
});

describe("sessions and CSRF", () => {
  test("the session cookie is HttpOnly, SameSite=Strict, Path=/, with an expiry; logout ends it", async () => {
    const client = new ApiClient(panel.url);
    const login = await client.login("admin", strongPassword);
    const cookie = login.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^druvaa_session=[A-Za-z0-9_-]{40,};/);
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Strict");
    expect(cookie).toContain("Path=/");
    expect(cookie).toMatch(/Max-Age=\d+/);
    expect(cookie).not.toContain("Secure"); // plain HTTP here; HTTPS adds it
    const session = await client.get("/api/session");
    expect(session.body.csrfToken).toBe(login.body.csrfToken);
    const saved = client.cookie;
    expect((await client.post("/api/logout")).status).toBe(200);
    client.cookie = saved;
    expect((await client.get("/api/session")).status).toBe(401);
    expect((await new ApiClient(panel.url).get("/api/users")).body.error.code).toBe("NOT_LOGGED_IN");
    const forged = new ApiClient(panel.url);
    forged.cookie = "druvaa_session=forged-token";
    expect((await forged.get("/api/users")).status).toBe(401);
  });

  test("a state-changing request without the right X-CSRF-Token is refused 403 and changes nothing", async () => {
    const admin = new ApiClient(panel.url);
    await admin.login("admin", strongPassword);
    const token = admin.csrfToken!;
    const body = { name: "csrf1", role: "client", control: "127.0.0.1:6007" };
    admin.csrfToken = undefined;
    const missing = await admin.post("/api/components", body);
    expect(missing.status).toBe(403);
    expect(missing.body.error.code).toBe("CSRF_TOKEN_INVALID");
    admin.csrfToken = `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`;
    const wrong = await admin.post("/api/components", body);
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.code).toBe("CSRF_TOKEN_INVALID");
    const deleteUser = await admin.delete("/api/users/admin");
    expect(deleteUser.body.error.code).toBe("CSRF_TOKEN_INVALID");
    // Another session's token is no good either.
    const other = new ApiClient(panel.url);
    await other.login("admin", strongPassword);
    admin.csrfToken = other.csrfToken;
    expect((await admin.post("/api/components", body)).status).toBe(403);
    admin.csrfToken = token;
    expect((await admin.get("/api/components")).body.components).toEqual([]);
    expect((await admin.post("/api/components", body)).status).toBe(201);
    expect((await admin.delete("/api/components/csrf1")).status).toBe(200);
  });

  test("5 failed logins lock the user out (429 with Retry-After); the right password works after the lock", async () => {
    const admin = new ApiClient(panel.url);
    await admin.login("admin", strongPassword);
    await userClient(panel.url, admin, "dave", "viewer");
    const attacker = new ApiClient(panel.url);
    for (let i = 0; i < 5; i += 1) expect((await attacker.login("dave", `wrong password ${i}`)).status).toBe(401);
    const locked = await attacker.login("dave", `dave ${strongPassword}`);
    expect(locked.status).toBe(429);
    expect(locked.body.error.code).toBe("LOGIN_LOCKED");
    expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(0);
    await Bun.sleep(1_600);
    const after = await attacker.login("dave", `dave ${strongPassword}`);
    expect(after.status).toBe(200);
    const failures = (await admin.get("/api/activity?limit=20")).body.activity.filter((a: { action: string; user: string }) => a.action === "login.failed" && a.user === "dave");
    expect(failures.length).toBe(5);
  });
  test("5 failures from one client address under different names lock that address, whoever it then tries", async () => {
    const guesser = new ApiClient(panel.url);
    for (let i = 0; i < 5; i += 1) expect((await guesser.login(`nobody${i}`, "some password")).status).toBe(401);
    const locked = await guesser.login("admin", strongPassword);
    expect(locked.status).toBe(429);
    expect(locked.body.error.message).toContain("try again in");
    await Bun.sleep(1_600);
    expect((await guesser.login("admin", strongPassword)).status).toBe(200);
  });
});

describe("roles", () => {
  test("a viewer reads but cannot add or remove components or users; an operator adds components; an admin adds users", async () => {
    const admin = new ApiClient(panel.url);
    await admin.login("admin", strongPassword);
    const viewer = await userClient(panel.url, admin, "vera", "viewer");
    const operator = await userClient(panel.url, admin, "otto", "operator");

    const component = { name: "stage1", role: "staging", control: "127.0.0.1:6002" };
    const byViewer = await viewer.post("/api/components", component);
    expect(byViewer.status).toBe(403);
    expect(byViewer.body.error.code).toBe("FORBIDDEN");
    expect((await viewer.post("/api/users", { name: "eve", role: "admin", password: strongPassword })).status).toBe(403);
    expect((await viewer.delete("/api/users/otto")).status).toBe(403);
    expect((await operator.post("/api/users", { name: "eve", role: "admin", password: strongPassword })).status).toBe(403);

    expect((await operator.post("/api/components", component)).status).toBe(201);
    expect((await operator.post("/api/components", component)).status).toBe(409);
    expect((await viewer.delete("/api/components/stage1")).status).toBe(403);
    expect((await viewer.get("/api/components")).body.components.map((c: { name: string }) => c.name)).toEqual(["stage1"]);
    expect((await admin.post("/api/users", { name: "eve", role: "operator", password: strongPassword })).status).toBe(201);
    expect((await admin.post("/api/users", { name: "eve", role: "operator", password: strongPassword })).status).toBe(409);
    expect((await operator.delete("/api/components/stage1")).status).toBe(200);
    expect((await operator.delete("/api/components/stage1")).status).toBe(404);
    expect((await admin.delete("/api/users/nobody")).status).toBe(404);
    expect((await admin.delete("/api/users/admin")).body.error.code).toBe("SELF");
    expect((await admin.delete("/api/users/eve")).status).toBe(200);

    const activity = (await viewer.get("/api/activity?limit=50")).body.activity as { user: string; action: string; detail: Record<string, unknown>; time: string }[];
    expect(activity.find((a) => a.action === "component.add")).toMatchObject({ user: "otto", detail: { name: "stage1", role: "staging" } });
    expect(activity.find((a) => a.action === "component.remove")).toMatchObject({ user: "otto", detail: { name: "stage1" } });
    expect(activity.find((a) => a.action === "user.delete")).toMatchObject({ user: "admin", detail: { name: "eve" } });
    expect(activity.find((a) => a.action === "user.create" && a.detail.name === "vera")).toMatchObject({ user: "admin" });
    expect(Number.isNaN(Date.parse(activity[0]!.time))).toBe(false);
    expect((await viewer.get("/api/activity?limit=0")).body.error.message).toContain("limit:");
  });
});

describe("hostile input", () => {
  test("SQL-looking and HTML names are refused naming the field; HTML in a login name is stored inert and returned JSON-escaped", async () => {
    const admin = new ApiClient(panel.url);
    await admin.login("admin", strongPassword);
    const bad = ["x'; DROP TABLE users; --", "<script>alert(1)</script>", "a b", "../etc", ""];
    for (const name of bad) {
      const answer = await admin.post("/api/components", { name, role: "replica", control: "127.0.0.1:6004" });
      expect(answer.status).toBe(400);
      expect(answer.body.error.message).toStartWith("name:");
      expect((await admin.post("/api/users", { name, role: "viewer", password: strongPassword })).status).toBe(400);
    }
    const badControl = await admin.post("/api/components", { name: "r9", role: "replica", control: "<img src=x onerror=alert(1)>" });
    expect(badControl.status).toBe(400);
    expect(badControl.body.error.message).toStartWith("control:");
    expect((await admin.post("/api/components", { name: "r9", role: "replica", control: "127.0.0.1:0" })).body.error.message).toStartWith("control:");
    expect((await admin.delete(`/api/users/${encodeURIComponent("x' OR '1'='1")}`)).status).toBe(400);
    expect((await admin.request("DELETE", "/api/components/%E0%A4%A")).status).toBe(400);

    const html = "<b>mallory</b>'--";
    expect((await new ApiClient(panel.url).login(html, "whatever it is")).status).toBe(401);
    const response = await fetch(`${panel.url}/api/activity?limit=5`, { headers: { cookie: admin.cookie! } });
    expect(response.headers.get("content-type")).toContain("application/json");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    const text = await response.text();
    expect(text).not.toContain("<b>"); // JSON-escaped: never raw markup in an answer
    expect(JSON.parse(text).activity[0]).toMatchObject({ user: html, action: "login.failed" });
    expect((await admin.get("/api/users")).status).toBe(200); // the tables are all still there
  });

  test("unknown routes 404, wrong methods 405, non-JSON bodies 415, all as JSON errors", async () => {
    const admin = new ApiClient(panel.url);
    await admin.login("admin", strongPassword);
    expect((await admin.get("/api/nothing")).status).toBe(404);
    expect((await admin.get("/api/")).body.error.code).toBe("NOT_FOUND");
    // Refusals name the form field they are about, so the UI can show the message next to it.
    const weak = await admin.post("/api/users", { name: "bob", role: "viewer", password: "short" });
    expect(weak.body.error).toMatchObject({ code: "WEAK_PASSWORD", field: "password" });
    expect((await admin.post("/api/users", { name: "b c", role: "viewer", password: strongPassword })).body.error.field).toBe("name");
    expect((await admin.request("PUT", "/api/users")).status).toBe(405);
    const form = await admin.request("POST", "/api/components", "name=x", { "content-type": "application/x-www-form-urlencoded" });
    expect(form.status).toBe(415);
    const big = await admin.request("POST", "/api/components", JSON.stringify({ name: "x".repeat(200_000) }));
    expect(big.status).toBe(413);
  });
});
