/**
 * The agent's per-attachment actions, for the panel's Manage page: each is forwarded as is to the
 * attachment's own control routes (through its 0700 control socket, see agent-children.ts), so
 * the answer is the one `druvaa resync` / `druvaa verify` / `druvaa checkpoint` would get from
 * that attachment:
 *
 *   POST /attachment/resync?name=NAME       → the child's POST /resync
 *   POST /attachment/verify?name=NAME       → POST /verify (body forwarded)
 *   GET  /attachment/verify?name=NAME       → GET /verify
 *   POST /attachment/checkpoint?name=NAME   → POST /checkpoint (body forwarded)
 *
 * An attachment that is not configured, or whose child is not running, is refused with a hint;
 * nothing is queued for later.
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import type { AgentChildren } from "./agent-children.ts";

const forwardWaitMs = 30_000;

export function attachmentRoutes(children: AgentChildren): Record<string, ControlRoute> {
  const forward = (method: "GET" | "POST", path: string): ControlRoute => async (request) => {
    const name = new URL(request.url).searchParams.get("name") ?? "";
    const socket = children.controlSocketOf(name);
    if (socket === undefined) {
      throw new DruvaaError("ATTACHMENT_NOT_RUNNING", `no running attachment named "${name}" on this client host`, "GET /status lists the attachments and their state; start it (enabled: true) first", exitCodes.refused);
    }
    const body = method === "POST" ? await request.text() : undefined;
    const answer = await fetch(`http://localhost${path}`, {
      method,
      unix: socket,
      signal: AbortSignal.timeout(forwardWaitMs),
      ...(body === undefined || body === "" ? {} : { body, headers: { "content-type": "application/json" } }),
    } as RequestInit);
    return new Response(await answer.arrayBuffer(), { status: answer.status, headers: { "content-type": answer.headers.get("content-type") ?? "application/json" } });
  };
  return {
    "POST /attachment/resync": forward("POST", "/resync"),
    "POST /attachment/verify": forward("POST", "/verify"),
    "GET /attachment/verify": forward("GET", "/verify"),
    "POST /attachment/checkpoint": forward("POST", "/checkpoint"),
  };
}
