/**
 * The panel's requests to a component's control port for configuration (GET /config, prepare,
 * commit, abort) and actions: controlRequest (src/commands/control-client.ts) with the panel's
 * TLS, each bounded by a timeout. Never throws for a component that is down or refuses: every
 * outcome is a LinkResult, so the coordinator can record every component's reason.
 *   2xx with a JSON object          → ok, the body
 *   non-2xx with {ok:false, error}  → refused, the component's error (code, message, hint, field)
 *   non-2xx otherwise, non-JSON     → refused, BAD_ANSWER
 *   no answer (down, timeout, TLS)  → unreachable, controlRequest's error (NET_CONNECT_FAILED …)
 */
import { controlRequest } from "../../commands/control-client.ts";
import { DruvaaError } from "../../errors.ts";
import type { PreparedTls } from "../../tls/transport-tls.ts";
import { controlPortDefaults } from "./monitor.ts";
import type { Component } from "./store.ts";

export interface LinkError {
  code: string;
  message: string;
  hint?: string;
  field?: string;
}

export type LinkResult =
  | { ok: true; status: number; body: Record<string, unknown> }
  | { ok: false; kind: "refused"; status: number; error: LinkError }
  | { ok: false; kind: "unreachable"; error: LinkError };

const errorOf = (value: unknown): LinkError | undefined => {
  if (typeof value !== "object" || value === null) return undefined;
  const error = value as Record<string, unknown>;
  if (typeof error.code !== "string" || typeof error.message !== "string") return undefined;
  return { code: error.code, message: error.message, ...(typeof error.hint === "string" ? { hint: error.hint } : {}), ...(typeof error.field === "string" ? { field: error.field } : {}) };
};

export class ComponentLink {
  constructor(
    private readonly tls: PreparedTls | undefined,
    private readonly timeoutMs: number,
  ) {}

  /** One request; `body` is sent as JSON (POST when given). `path` may carry a query. */
  async request(component: Component, method: "GET" | "POST", path: string, body?: unknown): Promise<LinkResult> {
    const init: RequestInit = { method, signal: AbortSignal.timeout(this.timeoutMs), ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }) };
    let response: Response;
    try {
      response = await controlRequest(component.control, path, init, controlPortDefaults[component.role], this.tls);
    } catch (error) {
      const info = error instanceof DruvaaError ? error.toJSON() : { code: "NET_CONNECT_FAILED", message: error instanceof Error ? error.message : String(error) };
      return { ok: false, kind: "unreachable", error: { code: info.code, message: info.message, ...(info.hint === undefined ? {} : { hint: info.hint }) } };
    }
    const answer: unknown = await response.json().catch(() => undefined);
    const object = typeof answer === "object" && answer !== null && !Array.isArray(answer) ? (answer as Record<string, unknown>) : undefined;
    if (response.ok && object !== undefined && object.ok !== false) return { ok: true, status: response.status, body: object };
    const error = errorOf(object?.error) ?? { code: "BAD_ANSWER", message: `${component.name} (${component.control}) answered ${method} ${path.split("?")[0]} with ${response.status} and no druvaa error`, hint: "Is this the component's control port, and does its druvaa serve this request?" };
    return { ok: false, kind: "refused", status: response.status, error };
  }
}
