/**
 * The panel's database (bun:sqlite, WAL, foreign keys on, STRICT tables, src/roles/panel/migrations.ts)
 * behind a small typed class. Every query is parameterised: names and fields from the API are
 * bound values, never SQL text. Times are ISO-8601 UTC text; a session's expiry is epoch ms.
 */
import { Database } from "bun:sqlite";
import { chmodSync, existsSync } from "node:fs";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { migrate } from "./migrations.ts";

export type UserRole = "admin" | "operator" | "viewer";
export type ComponentRole = "client" | "staging" | "replica";

export interface User {
  name: string;
  role: UserRole;
  passwordHash: string;
  mustChangePassword: boolean;
  createdAt: string;
  updatedAt: string;
}

export interface Session {
  tokenHash: string;
  user: string;
  csrfToken: string;
  expiresMs: number;
}

export interface Component {
  name: string;
  role: ComponentRole;
  control: string;
  addedBy: string;
  addedAt: string;
}

export interface Activity {
  id: number;
  time: string;
  user: string;
  action: string;
  detail: unknown;
}

export interface Alert {
  id: number;
  component: string;
  code: string;
  message: string;
  raisedAt: string;
  clearedAt: string | null;
}

export type StartTlsMode = "never" | "if-offered" | "required";

/** The SMTP settings; authPassword is stored as given (see migration 2) and never leaves the panel's API. */
export interface MailSettings {
  host: string;
  port: number;
  from: string;
  starttls: StartTlsMode;
  authUser: string | null;
  authPassword: string | null;
  enabled: boolean;
  updatedAt: string;
}

/** Who gets which alerts: codes and components are lists of names, or "*" for all. */
export interface MailRecipient {
  address: string;
  codes: string[] | "*";
  components: string[] | "*";
  cleared: boolean;
  addedBy: string;
  addedAt: string;
}

type Row = Record<string, unknown>;

const listOf = (text: unknown): string[] | "*" => (text === "*" ? "*" : (JSON.parse(String(text)) as string[]));
const recipientOf = (row: Row): MailRecipient => ({ address: String(row.address), codes: listOf(row.codes), components: listOf(row.components), cleared: Number(row.cleared) === 1, addedBy: String(row.added_by), addedAt: String(row.added_at) });

const userOf = (row: Row): User => ({ name: String(row.name), role: String(row.role) as UserRole, passwordHash: String(row.password_hash), mustChangePassword: Number(row.must_change_password) === 1, createdAt: String(row.created_at), updatedAt: String(row.updated_at) });
const componentOf = (row: Row): Component => ({ name: String(row.name), role: String(row.role) as ComponentRole, control: String(row.control), addedBy: String(row.added_by), addedAt: String(row.added_at) });
const alertOf = (row: Row): Alert => ({ id: Number(row.id), component: String(row.component), code: String(row.code), message: String(row.message), raisedAt: String(row.raised_at), clearedAt: row.cleared_at === null ? null : String(row.cleared_at) });

/** The database holds the SMTP password as given (migration 2): only the panel's user may read it. */
function keepPrivate(path: string): void {
  if (path === ":memory:" || path === "") return;
  for (const file of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(file)) chmodSync(file, 0o600);
}

export class PanelStore {
  private constructor(
    private readonly db: Database,
    /** The schema version the database was at when opened (0: created now). */
    readonly openedAtVersion: number,
    private readonly now: () => Date,
  ) {}

  /** Opens (creating) the database at `path` and migrates it; PANEL_DB_TOO_NEW from a newer druvaa. */
  static open(path: string, now: () => Date = () => new Date()): PanelStore {
    let db: Database;
    try {
      db = new Database(path, { create: true, strict: true, safeIntegers: true });
    } catch (error) {
      throw new DruvaaError("PANEL_DB_OPEN_FAILED", `cannot open the panel database ${path}: ${error instanceof Error ? error.message : String(error)}`, "Check that the directory exists and is writable, and that --db names a file", exitCodes.failure, { cause: error });
    }
    try {
      keepPrivate(path); // before the WAL files exist: SQLite gives them the database file's mode
      db.run("PRAGMA journal_mode = WAL");
      db.run("PRAGMA synchronous = FULL");
      db.run("PRAGMA foreign_keys = ON");
      db.run("PRAGMA busy_timeout = 5000");
      const version = migrate(db, path);
      keepPrivate(path);
      return new PanelStore(db, version, now);
    } catch (error) {
      db.close();
      if (error instanceof DruvaaError) throw error;
      throw new DruvaaError("PANEL_DB_INVALID", `the panel database ${path} cannot be used: ${error instanceof Error ? error.message : String(error)}`, "Is --db a druvaa panel database? Give a new path to start an empty one", exitCodes.failure, { cause: error });
    }
  }

  close(): void {
    this.db.close();
  }

  /** The open database, for stores that share it and its transactions (config-store.ts). */
  get database(): Database {
    return this.db;
  }

  private stamp(): string {
    return this.now().toISOString();
  }

  /** Runs `work` in one transaction (all or nothing). */
  transaction<T>(work: () => T): T {
    return this.db.transaction(work)();
  }

  // Users

  getUser(name: string): User | undefined {
    const row = this.db.query("SELECT * FROM users WHERE name = $name").get({ name }) as Row | null;
    return row === null ? undefined : userOf(row);
  }

  listUsers(): User[] {
    return (this.db.query("SELECT * FROM users ORDER BY name").all() as Row[]).map(userOf);
  }

  countUsers(role?: UserRole): number {
    const row = role === undefined ? this.db.query("SELECT count(*) AS n FROM users").get() : this.db.query("SELECT count(*) AS n FROM users WHERE role = $role").get({ role });
    return Number((row as Row).n);
  }

  /** Adds a user; false when the name is taken. */
  addUser(name: string, role: UserRole, passwordHash: string, mustChangePassword: boolean): boolean {
    const at = this.stamp();
    const result = this.db.query("INSERT INTO users (name, role, password_hash, must_change_password, created_at, updated_at) VALUES ($name, $role, $hash, $must, $at, $at) ON CONFLICT(name) DO NOTHING").run({ name, role, hash: passwordHash, must: mustChangePassword ? 1 : 0, at });
    return result.changes === 1;
  }

  setPassword(name: string, passwordHash: string, mustChangePassword: boolean): void {
    this.db.query("UPDATE users SET password_hash = $hash, must_change_password = $must, updated_at = $at WHERE name = $name").run({ name, hash: passwordHash, must: mustChangePassword ? 1 : 0, at: this.stamp() });
  }

  /** Removes a user and their sessions; false when there is no such user. */
  deleteUser(name: string): boolean {
    return this.db.query("DELETE FROM users WHERE name = $name").run({ name }).changes === 1;
  }

  // Sessions

  addSession(session: Session): void {
    this.db.query("INSERT INTO sessions (token_hash, user_name, csrf_token, expires_ms) VALUES ($token, $user, $csrf, $expires)").run({ token: session.tokenHash, user: session.user, csrf: session.csrfToken, expires: session.expiresMs });
  }

  getSession(tokenHash: string): Session | undefined {
    const row = this.db.query("SELECT * FROM sessions WHERE token_hash = $token").get({ token: tokenHash }) as Row | null;
    return row === null ? undefined : { tokenHash: String(row.token_hash), user: String(row.user_name), csrfToken: String(row.csrf_token), expiresMs: Number(row.expires_ms) };
  }

  touchSession(tokenHash: string, expiresMs: number): void {
    this.db.query("UPDATE sessions SET expires_ms = $expires WHERE token_hash = $token").run({ token: tokenHash, expires: expiresMs });
  }

  deleteSession(tokenHash: string): void {
    this.db.query("DELETE FROM sessions WHERE token_hash = $token").run({ token: tokenHash });
  }

  /** Ends every session of `user` but `keep` (after a password change). */
  deleteSessionsOf(user: string, keep?: string): void {
    this.db.query("DELETE FROM sessions WHERE user_name = $user AND token_hash != $keep").run({ user, keep: keep ?? "" });
  }

  deleteExpiredSessions(nowMs: number): void {
    this.db.query("DELETE FROM sessions WHERE expires_ms <= $now").run({ now: nowMs });
  }

  // Components

  listComponents(): Component[] {
    return (this.db.query("SELECT * FROM components ORDER BY name").all() as Row[]).map(componentOf);
  }

  getComponent(name: string): Component | undefined {
    const row = this.db.query("SELECT * FROM components WHERE name = $name").get({ name }) as Row | null;
    return row === null ? undefined : componentOf(row);
  }

  countComponents(): number {
    return Number((this.db.query("SELECT count(*) AS n FROM components").get() as Row).n);
  }

  /** Adds a component; false when the name is taken. */
  addComponent(name: string, role: ComponentRole, control: string, addedBy: string): boolean {
    return this.db.query("INSERT INTO components (name, role, control, added_by, added_at) VALUES ($name, $role, $control, $by, $at) ON CONFLICT(name) DO NOTHING").run({ name, role, control, by: addedBy, at: this.stamp() }).changes === 1;
  }

  /** Removes a component (its open alerts are cleared); false when there is no such component. */
  deleteComponent(name: string): boolean {
    this.db.query("UPDATE alerts SET cleared_at = $at WHERE component = $name AND cleared_at IS NULL").run({ name, at: this.stamp() });
    return this.db.query("DELETE FROM components WHERE name = $name").run({ name }).changes === 1;
  }

  // Activity

  /** Records that `user` did `action` (detail: a JSON-able object). */
  recordActivity(user: string, action: string, detail: Record<string, unknown> = {}): void {
    this.db.query("INSERT INTO activity (time, user_name, action, detail) VALUES ($time, $user, $action, $detail)").run({ time: this.stamp(), user, action, detail: JSON.stringify(detail) });
  }

  /** The newest `limit` entries, newest first. */
  listActivity(limit: number): Activity[] {
    const rows = this.db.query("SELECT * FROM activity ORDER BY id DESC LIMIT $limit").all({ limit }) as Row[];
    return rows.map((row) => ({ id: Number(row.id), time: String(row.time), user: String(row.user_name), action: String(row.action), detail: JSON.parse(String(row.detail)) as unknown }));
  }

  // Alerts

  /** Raises `code` for `component` unless it is open already (or the component is gone); true when raised now. */
  raiseAlert(component: string, code: string, message: string): boolean {
    return this.transaction(() => {
      // A component removed meanwhile gets no alert (its open ones were cleared with it).
      if (this.db.query("SELECT 1 FROM components WHERE name = $component").get({ component }) === null) return false;
      const open = this.db.query("SELECT id FROM alerts WHERE component = $component AND code = $code AND cleared_at IS NULL").get({ component, code });
      if (open !== null) return false;
      this.db.query("INSERT INTO alerts (component, code, message, raised_at) VALUES ($component, $code, $message, $at)").run({ component, code, message, at: this.stamp() });
      return true;
    });
  }

  /** Clears the open `code` alert of `component`; true when one was open. */
  clearAlert(component: string, code: string): boolean {
    return this.db.query("UPDATE alerts SET cleared_at = $at WHERE component = $component AND code = $code AND cleared_at IS NULL").run({ component, code, at: this.stamp() }).changes > 0;
  }

  /** Open alerts, then the newest cleared ones (at most `limit` in all). */
  listAlerts(limit: number): Alert[] {
    return (this.db.query("SELECT * FROM alerts ORDER BY cleared_at IS NOT NULL, id DESC LIMIT $limit").all({ limit }) as Row[]).map(alertOf);
  }

  // Mail

  getMailSettings(): MailSettings | undefined {
    const row = this.db.query("SELECT * FROM mail_settings WHERE id = 1").get() as Row | null;
    if (row === null) return undefined;
    return { host: String(row.host), port: Number(row.port), from: String(row.from_address), starttls: String(row.starttls) as StartTlsMode, authUser: row.auth_user === null ? null : String(row.auth_user), authPassword: row.auth_password === null ? null : String(row.auth_password), enabled: Number(row.enabled) === 1, updatedAt: String(row.updated_at) };
  }

  setMailSettings(settings: Omit<MailSettings, "updatedAt">): void {
    this.db.query(`INSERT INTO mail_settings (id, host, port, from_address, starttls, auth_user, auth_password, enabled, updated_at) VALUES (1, $host, $port, $from, $starttls, $user, $password, $enabled, $at)
      ON CONFLICT(id) DO UPDATE SET host = excluded.host, port = excluded.port, from_address = excluded.from_address, starttls = excluded.starttls, auth_user = excluded.auth_user, auth_password = excluded.auth_password, enabled = excluded.enabled, updated_at = excluded.updated_at`)
      .run({ host: settings.host, port: settings.port, from: settings.from, starttls: settings.starttls, user: settings.authUser, password: settings.authPassword, enabled: settings.enabled ? 1 : 0, at: this.stamp() });
  }

  listMailRecipients(): MailRecipient[] {
    return (this.db.query("SELECT * FROM mail_recipients ORDER BY address").all() as Row[]).map(recipientOf);
  }

  countMailRecipients(): number {
    return Number((this.db.query("SELECT count(*) AS n FROM mail_recipients").get() as Row).n);
  }

  /** Adds or replaces the recipient `address` (addresses compare as given, lower-cased by the API). */
  putMailRecipient(address: string, codes: string[] | "*", components: string[] | "*", cleared: boolean, addedBy: string): void {
    const text = (list: string[] | "*") => (list === "*" ? "*" : JSON.stringify(list));
    this.db.query(`INSERT INTO mail_recipients (address, codes, components, cleared, added_by, added_at) VALUES ($address, $codes, $components, $cleared, $by, $at)
      ON CONFLICT(address) DO UPDATE SET codes = excluded.codes, components = excluded.components, cleared = excluded.cleared, added_by = excluded.added_by, added_at = excluded.added_at`)
      .run({ address, codes: text(codes), components: text(components), cleared: cleared ? 1 : 0, by: addedBy, at: this.stamp() });
  }

  /** Removes a recipient; false when there is none. */
  deleteMailRecipient(address: string): boolean {
    return this.db.query("DELETE FROM mail_recipients WHERE address = $address").run({ address }).changes === 1;
  }
}
