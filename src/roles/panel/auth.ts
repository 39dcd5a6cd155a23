/**
 * Who is asking, and may they: sessions (random tokens in an HttpOnly, SameSite=Strict cookie;
 * only the token's SHA-256 is stored, so a copy of the database opens no session), CSRF tokens on
 * every state-changing request, login rate limiting, the first-run password change, and roles.
 *
 * Decision table for a request (first matching row wins):
 *   unknown route                                        → 404 NOT_FOUND
 *   POST /api/login                                      → login (rate limited: 429 LOGIN_LOCKED + Retry-After)
 *   no session cookie, unknown or expired token          → 401 NOT_LOGGED_IN
 *   POST/PUT/PATCH/DELETE without X-CSRF-Token equal to
 *   the session's                                        → 403 CSRF_TOKEN_INVALID (nothing runs)
 *   the user must change their password, and the route
 *   is not logout, password or GET /api/session          → 403 PASSWORD_CHANGE_REQUIRED
 *   the user's role is below the route's                 → 403 FORBIDDEN
 *   otherwise                                            → the route runs; its session's idle expiry restarts
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { ApiError, jsonAnswer, readJsonBody, stringField } from "./http.ts";
import { LoginLimiter } from "./limiter.ts";
import { hashPassword, passwordProblem, verifyPassword } from "./password.ts";
import { sessionCookieName, sessionIdleMs, sessionTokenBytes } from "./constants.ts";
import type { PanelStore, User, UserRole } from "./store.ts";

export const roleRank: Record<UserRole, number> = { viewer: 0, operator: 1, admin: 2 };

export interface Caller {
  user: User;
  tokenHash: string;
  csrfToken: string;
}

const tokenHashOf = (token: string) => createHash("sha256").update(token).digest("hex");

function sameText(a: string, b: string): boolean {
  const [x, y] = [Buffer.from(a), Buffer.from(b)];
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookieToken(request: Request): string | undefined {
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const index = part.indexOf("=");
    if (index > 0 && part.slice(0, index).trim() === sessionCookieName) return part.slice(index + 1).trim();
  }
  return undefined;
}

/** A hash to compare a wrong user's password against, so an unknown name takes as long as a known one. */
let decoyHash: Promise<string> | undefined;

export interface AuthOptions {
  /** Cookies get `Secure` (the panel serves HTTPS). */
  secureCookies: boolean;
  limiter: LoginLimiter;
  nowMs: () => number;
}

export class Auth {
  constructor(
    private readonly store: PanelStore,
    private readonly options: AuthOptions,
  ) {}

  /** First run: creates admin/druvaa, which must be changed at the first login. */
  async ensureFirstAdmin(): Promise<boolean> {
    if (this.store.countUsers() > 0) return false;
    const created = this.store.addUser("admin", "admin", await hashPassword("druvaa"), true);
    if (created) this.store.recordActivity("panel", "user.create", { name: "admin", role: "admin", firstRun: true });
    return created;
  }

  cookie(token: string, maxAgeSeconds: number): string {
    return `${sessionCookieName}=${token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeSeconds}${this.options.secureCookies ? "; Secure" : ""}`;
  }

  /** POST /api/login {user, password}. */
  async login(request: Request, clientAddress: string): Promise<Response> {
    const body = await readJsonBody(request);
    const name = stringField(body, "user", 64);
    const password = stringField(body, "password", 1024);
    const keys = [`user:${name.toLowerCase()}`, `address:${clientAddress}`];
    const waitMs = Math.max(...keys.map((key) => this.options.limiter.retryAfterMs(key)));
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      throw new ApiError(429, "LOGIN_LOCKED", `too many failed logins: try again in ${seconds} s`, "Wait, then log in with the right password; an admin can reset a forgotten one", { "retry-after": String(seconds) });
    }
    const user = this.store.getUser(name);
    decoyHash ??= hashPassword(randomBytes(16).toString("hex"));
    const matches = await verifyPassword(password, user?.passwordHash ?? (await decoyHash));
    if (user === undefined || !matches) {
      for (const key of keys) this.options.limiter.fail(key);
      this.store.recordActivity(name, "login.failed", { address: clientAddress });
      throw new ApiError(401, "LOGIN_FAILED", "wrong user name or password", "Check both; after several failures logins are locked for a while");
    }
    for (const key of keys) this.options.limiter.succeed(key);
    const token = randomBytes(sessionTokenBytes).toString("base64url");
    const csrfToken = randomBytes(sessionTokenBytes).toString("base64url");
    this.store.deleteExpiredSessions(this.options.nowMs());
    this.store.addSession({ tokenHash: tokenHashOf(token), user: user.name, csrfToken, expiresMs: this.options.nowMs() + sessionIdleMs });
    this.store.recordActivity(user.name, "login", { address: clientAddress });
    return jsonAnswer({ ok: true, user: user.name, role: user.role, mustChangePassword: user.mustChangePassword, csrfToken }, 200, { "set-cookie": this.cookie(token, Math.floor(sessionIdleMs / 1000)) });
  }

  /** The caller of `request` (401 without a live session); restarts the session's idle time. */
  caller(request: Request): Caller {
    const token = cookieToken(request);
    const notLoggedIn = new ApiError(401, "NOT_LOGGED_IN", "not logged in, or the session expired", "Log in: POST /api/login {\"user\":…,\"password\":…}");
    if (token === undefined || token.length > 128) throw notLoggedIn;
    const tokenHash = tokenHashOf(token);
    const session = this.store.getSession(tokenHash);
    const nowMs = this.options.nowMs();
    if (session === undefined) throw notLoggedIn;
    if (session.expiresMs <= nowMs) {
      this.store.deleteSession(tokenHash);
      throw notLoggedIn;
    }
    const user = this.store.getUser(session.user);
    if (user === undefined) throw notLoggedIn; // deleted meanwhile (its sessions go with it)
    this.store.touchSession(tokenHash, nowMs + sessionIdleMs);
    return { user, tokenHash, csrfToken: session.csrfToken };
  }

  /** 403 unless a state-changing request carries the session's CSRF token. */
  checkCsrf(request: Request, caller: Caller): void {
    if (request.method === "GET" || request.method === "HEAD") return;
    const given = request.headers.get("x-csrf-token");
    if (given === null || !sameText(given, caller.csrfToken)) {
      throw new ApiError(403, "CSRF_TOKEN_INVALID", given === null ? "the X-CSRF-Token header is missing" : "the X-CSRF-Token header does not match this session", "Send the csrfToken that POST /api/login or GET /api/session returned, as the X-CSRF-Token header");
    }
  }

  /** POST /api/password {current, new}: ends the user's other sessions. */
  async changePassword(request: Request, caller: Caller): Promise<unknown> {
    const body = await readJsonBody(request);
    const current = stringField(body, "current", 1024);
    const next = stringField(body, "new", 1024);
    if (!(await verifyPassword(current, caller.user.passwordHash))) throw new ApiError(403, "WRONG_PASSWORD", "current: is not this user's password");
    const problem = passwordProblem(next, caller.user.name);
    if (problem !== undefined) throw new ApiError(400, "WEAK_PASSWORD", `new: ${problem}`, "Use at least 10 characters; a passphrase of a few words is good");
    if (next === current) throw new ApiError(400, "WEAK_PASSWORD", "new: must differ from the current password");
    const hash = await hashPassword(next);
    this.store.transaction(() => {
      this.store.setPassword(caller.user.name, hash, false);
      this.store.deleteSessionsOf(caller.user.name, caller.tokenHash);
      this.store.recordActivity(caller.user.name, "password.change", {});
    });
    return { ok: true };
  }

  logout(caller: Caller): Response {
    this.store.deleteSession(caller.tokenHash);
    this.store.recordActivity(caller.user.name, "logout", {});
    return jsonAnswer({ ok: true }, 200, { "set-cookie": this.cookie("", 0) });
  }
}

/** 403 FORBIDDEN unless `caller` has at least `role`. */
export function requireRole(caller: Caller, role: UserRole): void {
  if (roleRank[caller.user.role] < roleRank[role]) {
    throw new ApiError(403, "FORBIDDEN", `${caller.user.role} "${caller.user.name}" may not do this: it needs the ${role} role`, "Ask an admin");
  }
}
