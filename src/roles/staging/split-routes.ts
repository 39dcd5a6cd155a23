/**
 * The staging control port's split routes (split.ts does the work):
 *
 *   POST /wrl/split {wrl, by?} → {ok, wrl, split: {sinceMs, by?}, changed, appliedLsn}
 *   POST /wrl/join {wrl}       → {ok, wrl, wasSplit}
 *
 * `by` says who split it (the panel sends its user's name; at most splitByLengthMax characters).
 * A refusal answers {ok: false, error: {code, message, hint}}: 400 USAGE (a bad body), 404
 * WRL_UNKNOWN; anything else 500 (the control server's answer), as failback-routes.ts does.
 */
import { answered } from "./failback-routes.ts";
import { usageError } from "../../errors.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import { splitByLengthMax, type WrlSplits } from "./split.ts";

export function splitRoutes(splits: WrlSplits): Record<string, ControlRoute> {
  return {
    "POST /wrl/split": (request) =>
      answered(async () => {
        const { wrl, by } = parseBody(await request.json().catch(() => undefined), "split");
        return { ok: true, ...(await splits.split(wrl, by)) };
      }),
    "POST /wrl/join": (request) =>
      answered(async () => {
        const { wrl } = parseBody(await request.json().catch(() => undefined), "join");
        return { ok: true, ...(await splits.join(wrl)) };
      }),
  };
}

function parseBody(body: unknown, action: "split" | "join"): { wrl: string; by?: string } {
  const example = action === "split" ? 'e.g. {"wrl":"fast","by":"alice"}' : 'e.g. {"wrl":"fast"}';
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw usageError("the request body is not a JSON object", example);
  const { wrl, by } = body as Record<string, unknown>;
  if (typeof wrl !== "string" || wrl === "") throw usageError(`${action}: \`wrl\` (the WRL's name) is required`, example);
  if (by !== undefined && (typeof by !== "string" || by.length > splitByLengthMax)) throw usageError(`${action}: \`by\` must be text of at most ${splitByLengthMax} characters`, example);
  return { wrl, ...(typeof by === "string" && action === "split" ? { by } : {}) };
}
