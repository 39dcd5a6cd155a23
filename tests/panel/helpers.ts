/** An in-process panel (PanelServer on 127.0.0.1:0, temp database) and a cookie-keeping API client. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PanelServer, type PanelServerOptions } from "../../src/roles/panel/server.ts";
import { PanelStore } from "../../src/roles/panel/store.ts";

export const strongPassword = "correct horse battery";

export interface TestPanel {
  url: string;
  dir: string;
  dbPath: string;
  store: PanelStore;
  server: PanelServer;
  close(): Promise<void>;
}

export async function startTestPanel(options: Partial<Omit<PanelServerOptions, "store" | "listen">> = {}): Promise<TestPanel> {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-panel-"));
  const dbPath = join(dir, "panel.db");
  const store = PanelStore.open(dbPath);
  const server = await PanelServer.start({ store, listen: { kind: "tcp", host: "127.0.0.1", port: 0 }, ...options });
  return {
    url: server.url,
    dir,
    dbPath,
    store,
    server,
    async close() {
      await server.stop();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Answer {
  status: number;
  body: any;
  headers: Headers;
}

/** One browser: keeps the session cookie and sends the CSRF token it was given. */
export class ApiClient {
  cookie: string | undefined;
  csrfToken: string | undefined;

  constructor(
    private readonly baseUrl: string,
    /** Extra fetch options (e.g. `tls` for an HTTPS panel). */
    private readonly fetchOptions: Record<string, unknown> = {},
  ) {}

  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      ...this.fetchOptions,
      method,
      headers: {
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(this.cookie === undefined ? {} : { cookie: this.cookie }),
        ...(this.csrfToken === undefined || method === "GET" ? {} : { "x-csrf-token": this.csrfToken }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    const setCookie = response.headers.get("set-cookie");
    if (setCookie !== null) this.cookie = setCookie.split(";")[0];
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`${method} ${path}: not JSON (${response.status}): ${text}`);
    }
    return { status: response.status, body: parsed, headers: response.headers };
  }

  get(path: string): Promise<Answer> {
    return this.request("GET", path);
  }

  post(path: string, body: unknown = {}): Promise<Answer> {
    return this.request("POST", path, body);
  }

  delete(path: string): Promise<Answer> {
    return this.request("DELETE", path);
  }

  async login(user: string, password: string): Promise<Answer> {
    const answer = await this.post("/api/login", { user, password });
    if (answer.status === 200) this.csrfToken = answer.body.csrfToken;
    return answer;
  }
}

/** Logs in as the first-run admin and sets `password`; returns the logged-in client. */
export async function adminClient(url: string, password = strongPassword, fetchOptions: Record<string, unknown> = {}): Promise<ApiClient> {
  const admin = new ApiClient(url, fetchOptions);
  const first = await admin.login("admin", "druvaa");
  if (first.status !== 200) throw new Error(`first login: ${JSON.stringify(first.body)}`);
  const changed = await admin.post("/api/password", { current: "druvaa", new: password });
  if (changed.status !== 200) throw new Error(`password change: ${JSON.stringify(changed.body)}`);
  return admin;
}

/** Has `admin` create `name` with `role` (no password change needed) and returns that user's logged-in client. */
export async function userClient(url: string, admin: ApiClient, name: string, role: string): Promise<ApiClient> {
  const created = await admin.post("/api/users", { name, role, password: `${name} ${strongPassword}`, mustChangePassword: false });
  if (created.status !== 201) throw new Error(`create ${name}: ${JSON.stringify(created.body)}`);
  const client = new ApiClient(url);
  const login = await client.login(name, `${name} ${strongPassword}`);
  if (login.status !== 200) throw new Error(`login ${name}: ${JSON.stringify(login.body)}`);
  return client;
}
