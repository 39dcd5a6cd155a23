/**
 * GET /probe?path=PATH on the client agent: what the panel's wizard shows when a device is picked
 * (docs/panel.md "Client host"). Reads only: stat, a read-only open for the size, and who holds
 * the path (src/io/mounts.ts). A path the agent may not open still answers, with sizeBytes null
 * and the reason in `error`.
 */
import { stat } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { DruvaaError } from "../../errors.ts";
import { inUseBy } from "../../io/mounts.ts";
import { openBlockDevice } from "../../io/open-device.ts";
import type { ControlRoute } from "../../io/control-server.ts";

export interface ProbeResult {
  ok: true;
  path: string;
  exists: boolean;
  kind: "block" | "file" | "missing" | "other";
  sizeBytes: number | null;
  /** Why the path must not be used now ("mounted at /mnt/data", "open in process 42 (postgres)"), or null. */
  inUse: string | null;
  error?: { code: string; message: string; hint?: string };
}

export async function probePath(path: string): Promise<ProbeResult> {
  const stats = await stat(path).catch((error: unknown) => {
    if ((error as { code?: unknown }).code === "ENOENT") return undefined;
    throw error;
  });
  if (stats === undefined) return { ok: true, path, exists: false, kind: "missing", sizeBytes: null, inUse: null };
  const kind = stats.isBlockDevice() ? "block" : stats.isFile() ? "file" : "other";
  const inUse = (await inUseBy(path)) ?? null;
  if (kind === "other") return { ok: true, path, exists: true, kind, sizeBytes: null, inUse };
  try {
    const device = await openBlockDevice(path, { readOnly: true });
    const sizeBytes = device.sizeBytes;
    await device.close();
    return { ok: true, path, exists: true, kind, sizeBytes, inUse };
  } catch (error) {
    const info = error instanceof DruvaaError ? error.toJSON() : { code: "IO_ERROR", message: error instanceof Error ? error.message : String(error) };
    return { ok: true, path, exists: true, kind, sizeBytes: null, inUse, error: info };
  }
}

export const probeRoute: ControlRoute = async (request) => {
  const path = new URL(request.url).searchParams.get("path");
  if (path === null || !isAbsolute(path)) {
    return Response.json({ ok: false, error: { code: "USAGE", message: "path: an absolute path is needed", hint: "e.g. GET /probe?path=/dev/sdb" } }, { status: 400 });
  }
  return probePath(path);
};
