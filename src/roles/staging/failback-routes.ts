/**
 * The staging control port's failback routes (failback.ts does the work):
 *
 *   GET  /wrl/pending?wrl=NAME[&afterLsn=N] → PendingAnswer {wrl, wrlUuid, ackedLsn, headLsn, records,
 *                                           bytes, ranges: [{device, offset, length}], rangeBytes, coarse}
 *   POST /wrl/discard {wrl, throughLsn} → DiscardAnswer {wrl, discardedRecords, discardedBytes, ackedLsn}
 *
 * A refusal answers {ok: false, error: {code, message, hint}} with an HTTP status that says what
 * kind: 400 USAGE (a bad request; exit 2 in a CLI), 404 WRL_UNKNOWN (exit 3), 409 for a refusal
 * such as DISCARD_BEYOND_HEAD (exit 4); anything else 500 (the control server's answer).
 */
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import { discardThrough, pendingOf, type FailbackWrl } from "./failback.ts";

/** What the routes need of the staging core. */
export interface FailbackHost {
  wrlHandle(name: string): FailbackWrl | undefined;
  /** The names of the WRLs served (for the hint of WRL_UNKNOWN). */
  wrlNames(): string[];
}

export function failbackRoutes(host: FailbackHost): Record<string, ControlRoute> {
  return {
    "/wrl/pending": (request) => answered(() => {
      const params = new URL(request.url).searchParams;
      const afterLsn = Number(params.get("afterLsn") ?? "0");
      if (!Number.isSafeInteger(afterLsn) || afterLsn < 0) throw usageError(`afterLsn must be an LSN (a whole number >= 0), not ${params.get("afterLsn")}`, "e.g. GET /wrl/pending?wrl=wrl0&afterLsn=1234");
      return pendingOf(targetOf(host, params.get("wrl")), undefined, afterLsn);
    }),
    "POST /wrl/discard": (request) =>
      answered(async () => {
        const { wrl, throughLsn } = parseDiscard(await request.json().catch(() => undefined));
        return discardThrough(targetOf(host, wrl), throughLsn);
      }),
  };
}

function targetOf(host: FailbackHost, name: string | null): FailbackWrl {
  const names = host.wrlNames();
  if (name === null || name === "") throw usageError("which WRL? the request names none", `Add ?wrl=NAME (this staging server serves: ${names.join(", ")})`);
  const target = host.wrlHandle(name);
  if (target === undefined) {
    throw new DruvaaError("WRL_UNKNOWN", `this staging server has no WRL named ${name}`, `It serves: ${names.join(", ")} (GET /status lists them)`, exitCodes.notFound);
  }
  return target;
}

function parseDiscard(body: unknown): { wrl: string; throughLsn: number } {
  const example = 'e.g. {"wrl":"fast","throughLsn":1234}';
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw usageError("the request body is not a JSON object", example);
  const { wrl, throughLsn } = body as Record<string, unknown>;
  if (typeof wrl !== "string" || wrl === "") throw usageError("discard: `wrl` (the WRL's name) is required", example);
  if (typeof throughLsn !== "number") throw usageError("discard: `throughLsn` (the last LSN to drop) is required", example);
  return { wrl, throughLsn };
}

const statusOfExit: Partial<Record<number, number>> = { [exitCodes.usage]: 400, [exitCodes.notFound]: 404, [exitCodes.refused]: 409 };

/** The route's answer; a DruvaaError that refuses the request answered with its HTTP status (split-routes.ts uses it too). */
export async function answered(route: () => Promise<unknown>): Promise<unknown> {
  try {
    return await route();
  } catch (error) {
    const status = error instanceof DruvaaError ? statusOfExit[error.exitCode] : undefined;
    if (status === undefined) throw error;
    return Response.json({ ok: false, error: (error as DruvaaError).toJSON() }, { status });
  }
}
