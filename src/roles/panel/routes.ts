/**
 * The panel's JSON API routes (src/roles/panel/server.ts matches them; auth.ts decides who may
 * call them). Every change is recorded in the activity log, in the same transaction as the change.
 *
 *   GET    /api/session                  viewer    who am I, my role, csrfToken
 *   GET    /api/users                    viewer    users (never their password hashes)
 *   POST   /api/users {name, role, password, mustChangePassword?}   admin   201; 409 USER_EXISTS
 *   DELETE /api/users/NAME               admin     404 NOT_FOUND; 409 LAST_ADMIN, SELF
 *   GET    /api/components               viewer
 *   POST   /api/components {name, role, control}                    operator 201; 409 COMPONENT_EXISTS
 *   DELETE /api/components/NAME          operator  404 NOT_FOUND; 409 COMPONENT_IN_USE (by a WRL, change map or pair)
 *   GET    /api/activity?limit=N         viewer    newest first
 *   GET    /api/alerts                   viewer    open ones first
 *   GET    /api/status                   viewer    every component's live GET /status
 *   /api/settings/mail…                            email alerts: mail-routes.ts
 *   /api/wrls, changemaps, pairs, wizard, transactions, probe, sizing: config-service.ts
 */
import { activityLimitDefault, activityLimitMax, componentsMax, usersMax } from "./constants.ts";
import type { Caller } from "./auth.ts";
import { ApiError, booleanField, checkPanelName, controlField, enumField, integerParam, jsonAnswer, nameField, readJsonBody, stringField } from "./http.ts";
import { controlPortDefaults, type Monitor } from "./monitor.ts";
import { hashPassword, passwordProblem } from "./password.ts";
import type { ComponentRole, PanelStore, User, UserRole } from "./store.ts";
import type { ConfigStore } from "./config-store.ts";
import { parseAddress } from "../../io/address.ts";

const userRoles: readonly UserRole[] = ["admin", "operator", "viewer"];
const componentRoles: readonly ComponentRole[] = ["client", "staging", "replica"];

const publicUser = (user: User) => ({ name: user.name, role: user.role, mustChangePassword: user.mustChangePassword, createdAt: user.createdAt, updatedAt: user.updatedAt });

export class PanelRoutes {
  constructor(
    private readonly store: PanelStore,
    private readonly monitor: Monitor,
    /** Configuration tables: a component's host is recorded, and one in use is not removed. */
    private readonly config?: ConfigStore,
  ) {}

  session(caller: Caller): unknown {
    return { ok: true, user: caller.user.name, role: caller.user.role, mustChangePassword: caller.user.mustChangePassword, csrfToken: caller.csrfToken };
  }

  users(): unknown {
    return { ok: true, users: this.store.listUsers().map(publicUser) };
  }

  async addUser(request: Request, caller: Caller): Promise<Response> {
    const body = await readJsonBody(request);
    const name = nameField(body, "name");
    const role = enumField(body, "role", userRoles);
    const password = stringField(body, "password", 1024);
    const mustChangePassword = booleanField(body, "mustChangePassword", true);
    const problem = passwordProblem(password, name);
    if (problem !== undefined) throw new ApiError(400, "WEAK_PASSWORD", `password: ${problem}`, "Use at least 10 characters; a passphrase of a few words is good");
    if (this.store.countUsers() >= usersMax) throw new ApiError(409, "TOO_MANY_USERS", `the panel keeps at most ${usersMax} users`, "Remove users nobody uses");
    const hash = await hashPassword(password);
    const added = this.store.transaction(() => {
      if (!this.store.addUser(name, role, hash, mustChangePassword)) return false;
      this.store.recordActivity(caller.user.name, "user.create", { name, role });
      return true;
    });
    if (!added) throw new ApiError(409, "USER_EXISTS", `name: a user "${name}" exists already`, "Pick another name, or remove that user first");
    return jsonAnswer({ ok: true, user: publicUser(this.store.getUser(name)!) }, 201);
  }

  deleteUser(name: string, caller: Caller): unknown {
    checkPanelName(name, "name");
    if (name === caller.user.name) throw new ApiError(409, "SELF", "you cannot remove your own user", "Another admin can");
    this.store.transaction(() => {
      const user = this.store.getUser(name);
      if (user === undefined) throw new ApiError(404, "NOT_FOUND", `no user "${name}"`, "GET /api/users lists them");
      if (user.role === "admin" && this.store.countUsers("admin") <= 1) throw new ApiError(409, "LAST_ADMIN", `"${name}" is the last admin`, "Make another admin first");
      this.store.deleteUser(name);
      this.store.recordActivity(caller.user.name, "user.delete", { name, role: user.role });
    });
    return { ok: true };
  }

  components(): unknown {
    return { ok: true, components: this.store.listComponents() };
  }

  async addComponent(request: Request, caller: Caller): Promise<Response> {
    const body = await readJsonBody(request);
    const name = nameField(body, "name");
    const role = enumField(body, "role", componentRoles);
    const control = controlField(body, "control", controlPortDefaults[role]);
    const added = this.store.transaction(() => {
      if (this.store.countComponents() >= componentsMax) throw new ApiError(409, "TOO_MANY_COMPONENTS", `the panel manages at most ${componentsMax} components`);
      if (!this.store.addComponent(name, role, control, caller.user.name)) return false;
      const address = parseAddress(control, controlPortDefaults[role]);
      this.config?.linkHost(name, address.kind === "unix" ? "localhost" : (address.host ?? "localhost"));
      this.store.recordActivity(caller.user.name, "component.add", { name, role, control });
      return true;
    });
    if (!added) throw new ApiError(409, "COMPONENT_EXISTS", `name: a component "${name}" exists already`, "Pick another name, or remove that component first");
    return jsonAnswer({ ok: true, component: this.store.getComponent(name) }, 201);
  }

  deleteComponent(name: string, caller: Caller): unknown {
    checkPanelName(name, "name");
    this.store.transaction(() => {
      const component = this.store.getComponent(name);
      if (component === undefined) throw new ApiError(404, "NOT_FOUND", `no component "${name}"`, "GET /api/components lists them");
      const users = this.config?.usersOfComponent(name) ?? [];
      if (users.length > 0) throw new ApiError(409, "COMPONENT_IN_USE", `component "${name}" is used by ${users.join(", ")}`, "Remove those pairs, WRLs and change maps first");
      this.store.deleteComponent(name);
      this.store.recordActivity(caller.user.name, "component.remove", { name, role: component.role, control: component.control });
    });
    return { ok: true };
  }

  activity(url: URL): unknown {
    return { ok: true, activity: this.store.listActivity(integerParam(url, "limit", activityLimitDefault, 1, activityLimitMax)) };
  }

  alerts(url: URL): unknown {
    return { ok: true, alerts: this.store.listAlerts(integerParam(url, "limit", activityLimitDefault, 1, activityLimitMax)) };
  }

  async status(): Promise<unknown> {
    return { ok: true, components: await this.monitor.checkAll() };
  }
}
