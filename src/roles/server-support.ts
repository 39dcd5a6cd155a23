/**
 * What the staging and replica servers share around their connections: the guard that keeps one
 * peer's failure to its own connection, the receive loop's "next frame or closed", and the
 * fields every role's GET /status starts with.
 */
import type { ConsolaInstance } from "consola/basic";
import { DruvaaError } from "../errors.ts";
import type { Connection } from "../io/connection.ts";
import type { Frame } from "../protocol/frame.ts";
import type { Identity } from "../protocol/handshake.ts";
import { druvaaVersion } from "../version.ts";

/** Runs a connection's protocol; whatever goes wrong closes that connection only, logged once. */
export async function guardConnection(connection: Connection, serve: () => Promise<void>, log: ConsolaInstance): Promise<void> {
  try {
    await serve();
  } catch (error) {
    // Closed already: the transport logged a bad frame itself, or the peer simply went away.
    if (!connection.isOpen) return;
    const reason = error instanceof DruvaaError ? error : new DruvaaError("INTERNAL", error instanceof Error ? error.message : String(error));
    log.warn(`${connection.peer}: ${reason.message} (${reason.code}); closing the connection`);
    await connection.close(reason);
  }
}

/**
 * The next frame of a served connection, or undefined once it is closed: by the peer, by us, or
 * by the transport after a bad frame (logged there).
 */
export async function nextFrame(link: { receive(): Promise<Frame> }): Promise<Frame | undefined> {
  try {
    return await link.receive();
  } catch {
    return undefined;
  }
}

/** The fields every role's GET /status starts with (docs/pipeline.md "Status"). */
export function statusHeader(identity: Identity, startedAtMs: number, nowMs: number): { role: string; nodeId: string; version: string; uptimeSeconds: number } {
  return { role: identity.role, nodeId: identity.nodeId, version: druvaaVersion, uptimeSeconds: (nowMs - startedAtMs) / 1000 };
}
