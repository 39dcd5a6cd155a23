/**
 * The replica's sockets around a ReplicaCore: staging relays on the data port, restorers on the
 * restore port, HTTP status on the control port (HTTPS for admin and panel certificates when the
 * role runs with TLS). A thin layer: it speaks the protocol (docs/pipeline.md) and hands every
 * decision to the core.
 *
 * Robustness: a peer that sends garbage, fails the handshake, or sends a message that does not
 * belong on that port loses its own connection (logged once) and nothing else. Back-pressure: a
 * relay connection has at most replicaConnectionShipWindowMax shipments waiting for an answer;
 * past that the server stops reading it (the connection's inbox bound then stops the socket).
 * Answers go out in the order the shipments came in.
 */
import { protocolTextLengthMax, restoreRequestTimeoutMs, restoreStallTimeoutMs, replicaConnectionShipWindowMax } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { sharedBufferPool } from "../../io/buffer-pool.ts";
import type { SnapshotExports } from "./snapshot-exports.ts";
import { failoverRoutes } from "./failback-routes.ts";
import type { Failovers } from "./failover.ts";
import { startControlServer, type ControlRoute, type ControlServer } from "../../io/control-server.ts";
import { formatAddress, listen, type Address, type Connection, type Listener, type PreparedTls } from "../../io/transport.ts";
import { logger } from "../../log.ts";
import { ProtocolError } from "../../protocol/errors.ts";
import { serverHandshake, type Identity } from "../../protocol/handshake.ts";
import type { Message } from "../../protocol/messages.ts";
import { openShipment } from "../../protocol/ship-codec.ts";
import { guardConnection, nextFrame, statusHeader } from "../server-support.ts";
import type { ReplicaCore, RestoreSend } from "./core.ts";
import type { SeedRuns } from "./seed-runs.ts";

const log = logger("replica:net");

export interface ReplicaServerOptions {
  core: ReplicaCore;
  nodeId: string;
  /** Data port: staging relays. */
  listen: Address;
  /** Restore port: `druvaa restore`. */
  restore: Address;
  /** Control port (HTTP GET /status). */
  control: Address;
  /** Milliseconds since the epoch; Date.now unless a test gives a clock. */
  now?: () => number;
  /** Media seeding (POST /seed; status `seeds`), when any device awaits a seed. */
  seeds?: SeedRuns;
  /** Points and fast snapshots on the control port (snapshot-exports.ts). */
  recovery?: SnapshotExports;
  /** Failover and failback on the control port (failover.ts, failback.ts). */
  failovers?: Failovers;
  /** --managed: the config routes (GET /config, POST /config/prepare|commit|abort) and GET /status `managed`. */
  managed?: { routes(): Record<string, ControlRoute>; status(): Record<string, unknown> } | undefined;
  /** TLS of the data port (peers must be staging servers), the restore port and the control port (HTTPS; admin or panel); plaintext when absent. */
  tls?: { data: PreparedTls | undefined; restore: PreparedTls | undefined; control?: PreparedTls | undefined };
}

export interface ReplicaAddresses {
  listen: string;
  restore: string;
  control: string;
}

export class ReplicaServer {
  readonly #core: ReplicaCore;
  readonly #seeds: SeedRuns | undefined;
  readonly #identity: Identity;
  readonly #now: () => number;
  readonly #startedAtMs: number;
  /** Relay connections per WRL uuid (resumed or shipping), for status `stagingConnected`. */
  readonly #relays = new Map<string, number>();
  #data: Listener | undefined;
  #restore: Listener | undefined;
  #control: ControlServer | undefined;
  readonly #recovery: SnapshotExports | undefined;
  readonly #failovers: Failovers | undefined;
  readonly #managed: ReplicaServerOptions["managed"];

  private constructor(options: ReplicaServerOptions) {
    this.#core = options.core;
    this.#seeds = options.seeds;
    this.#recovery = options.recovery;
    this.#failovers = options.failovers;
    this.#managed = options.managed;
    this.#identity = { role: "replica", nodeId: options.nodeId };
    this.#now = options.now ?? Date.now;
    this.#startedAtMs = this.#now();
  }

  /** Starts serving on the three ports; stops what it started if one of them fails. */
  static async start(options: ReplicaServerOptions): Promise<ReplicaServer> {
    const server = new ReplicaServer(options);
    try {
      // Shipments (up to 4 MiB each) are assembled in pooled buffers, given back once answered,
      // with the payload aligned so O_DIRECT devices take the records without a bounce copy.
      server.#data = await listen(options.listen, (connection) => void guardConnection(connection, () => server.#serveRelay(connection), log), { allocateFrame: (bytes, payloadAt) => sharedBufferPool.take(bytes, payloadAt), ...(options.tls?.data === undefined ? {} : { tls: options.tls.data }) });
      server.#restore = await listen(options.restore, (connection) => void guardConnection(connection, () => server.#serveRestore(connection), log), options.tls?.restore === undefined ? {} : { tls: options.tls.restore });
      const seeds = options.seeds;
      server.#control = await startControlServer(options.control, {
        "/status": () => server.status(),
        ...options.recovery?.routes(),
        ...(options.failovers === undefined ? {} : failoverRoutes(options.failovers)),
        ...options.managed?.routes(),
        "POST /seed": async (request) => {
          if (seeds === undefined) throw new DruvaaError("SEED_NOT_AWAITED", "no device of this replica awaits a seed; nothing was written", "Start the replica with --await-seed NAME before replication of that device begins", exitCodes.refused);
          return seeds.start(await request.json().catch(() => undefined));
        },
      }, "replica", { tls: options.tls?.control });
    } catch (error) {
      await server.#stopListening();
      throw error;
    }
    return server;
  }

  get addresses(): ReplicaAddresses {
    return { listen: formatAddress(this.#data!.address), restore: formatAddress(this.#restore!.address), control: this.#control!.address };
  }

  /** GET /status (docs/pipeline.md "Status", role replica). */
  status(): Record<string, unknown> {
    const core = this.#core.status();
    return {
      ...statusHeader(this.#identity, this.#startedAtMs, this.#now()),
      addresses: this.#data === undefined ? null : this.addresses,
      devices: core.devices,
      wrls: core.wrls.map((wrl) => ({ ...wrl, stagingConnected: (this.#relays.get(wrl.uuid) ?? 0) > 0 })),
      applying: core.applying,
      restores: core.restores,
      queuedShipments: core.queuedShipments,
      rsWrl: core.rsWrl,
      setApply: core.setApply,
      seeds: this.#seeds?.status() ?? [],
      history: this.#core.history?.status() ?? null,
      failovers: this.#failovers?.status() ?? [],
      ...(this.#managed === undefined ? {} : { managed: this.#managed.status() }),
    };
  }

  /** SIGTERM: the shipment being applied finishes (and is acked), queued ones are refused, then the ports close. */
  async stop(): Promise<void> {
    await this.#recovery?.stopAll();
    await this.#failovers?.close();
    await this.#core.stop();
    await this.#stopListening();
  }

  async #stopListening(): Promise<void> {
    await Promise.all([this.#data?.stop(), this.#restore?.stop(), this.#control?.stop()]);
  }

  async #serveRelay(connection: Connection): Promise<void> {
    const hello = await serverHandshake(connection, this.#identity, ["staging"]);
    log.info(`staging ${hello.nodeId} connected from ${connection.peer}`);
    const wrls = new Set<string>();
    const track = (uuid: string) => {
      if (wrls.has(uuid)) return;
      wrls.add(uuid);
      this.#relays.set(uuid, (this.#relays.get(uuid) ?? 0) + 1);
    };
    void connection.closed.then(() => {
      for (const uuid of wrls) this.#relays.set(uuid, (this.#relays.get(uuid) ?? 1) - 1);
      log.info(`staging ${hello.nodeId} (${connection.peer}) disconnected`);
    });
    // Answers leave in arrival order: each waits for the one before it.
    let replies: Promise<unknown> = Promise.resolve();
    const answer = (reply: Message | Promise<Message>): Promise<void> => {
      const sent = replies.then(() => reply).then((message) => connection.send(message));
      sent.catch((error: unknown) => {
        // A closed connection is reported by `closed`; anything else is a bug in the apply path:
        // the relay must not wait forever for an answer that will never come.
        if (!connection.isOpen) return;
        const reason = error instanceof DruvaaError ? error : new DruvaaError("INTERNAL", `answering the relay failed: ${error instanceof Error ? error.message : String(error)}`);
        log.error(`${connection.peer}: ${reason.message} (${reason.code}); closing the connection`);
        void connection.close(reason);
      });
      replies = sent.catch(() => undefined);
      return sent;
    };
    const window: Promise<void>[] = [];
    for (;;) {
      const frame = await nextFrame(connection);
      if (frame === undefined) return;
      const message = frame.message;
      switch (message.type) {
        case "resume": {
          const failing = await this.#core.retryFailedSets();
          const reply = failing === undefined ? this.#core.resume(message) : ({ type: "shipNack", wrl: message.wrl, code: "IO_ERROR", message: failing.slice(0, protocolTextLengthMax) } as const);
          if (reply.type === "resumeAck") track(message.wrlUuid);
          void answer(reply);
          break;
        }
        case "ship": {
          track(message.wrlUuid);
          // A compressed shipment is opened before anything looks at its payload; one that does
          // not open throws ProtocolError: the relay gets an `error` message and this connection
          // closes (guardConnection), the relay resumes from what was applied.
          const { message: ship, payload } = openShipment({ message, payload: frame.payload });
          if (payload !== frame.payload) sharedBufferPool.give(frame.payload); // the compressed bytes are dead
          const reply = this.#core.ship(ship, payload);
          // Answered: the core holds no view of the payload any more (applied and flushed, or
          // refused). A rejection is a bug; the buffer is then simply not reused.
          reply.then(() => sharedBufferPool.give(payload), () => undefined);
          window.push(answer(reply).catch(() => undefined));
          while (window.length >= replicaConnectionShipWindowMax) await window.shift();
          break;
        }
        case "ping":
          void answer({ type: "pong", nonce: message.nonce });
          break;
        case "statusRequest":
          void answer({ type: "statusReply", status: this.status() });
          break;
        case "error":
          return; // the peer says why it is leaving; the transport keeps it as the close reason
        default:
          throw new ProtocolError("PROTO_UNEXPECTED", `a ${message.type} message on the replica's data port`, "The data port takes resume and ship from a staging relay; restores go to the restore port (default 6005)");
      }
    }
  }

  async #serveRestore(connection: Connection): Promise<void> {
    const hello = await serverHandshake(connection, this.#identity, ["control", "client"]);
    const frame = await connection.receive(restoreRequestTimeoutMs).catch((error: unknown) => {
      if ((error as { code?: unknown }).code === "NET_TIMEOUT") throw new ProtocolError("PROTO_UNEXPECTED", `no restoreRequest within ${restoreRequestTimeoutMs} ms`, "Ask for a device right after the handshake");
      throw error;
    });
    if (frame.message.type !== "restoreRequest") {
      throw new ProtocolError("PROTO_UNEXPECTED", `a ${frame.message.type} message on the replica's restore port`, "The restore port takes restoreRequest (druvaa restore); relays go to the data port (default 6003)");
    }
    const device = frame.message.device;
    log.info(`restore of ${device}${frame.message.at === undefined ? "" : ` at ${frame.message.at}`} requested by ${hello.nodeId} (${connection.peer})`);
    const startedMs = this.#now();
    const send: RestoreSend = (message, payload) => sendWithin(connection, message, payload, restoreStallTimeoutMs);
    try {
      const result = await this.#core.restore(device, send, frame.message.at);
      const seconds = Math.max((this.#now() - startedMs) / 1000, 0.001);
      log.info(`restore of ${device} to ${connection.peer} done: ${result.sizeBytes} bytes at LSN ${result.appliedLsn} in ${seconds.toFixed(1)} s; apply resumes`);
    } catch (error) {
      if (!connection.isOpen) {
        const why = error instanceof DruvaaError && error.code !== "NET_CLOSED" ? error.message : "the restorer disconnected";
        log.warn(`restore of ${device} to ${connection.peer} ended early: ${why}; apply resumes`);
        return;
      }
      throw error;
    }
    await connection.close();
  }
}

/** send() that gives up when the restorer takes no data for `timeoutMs` (apply waits meanwhile). */
async function sendWithin(connection: Connection, message: Message, payload: Uint8Array | undefined, timeoutMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const reason = new DruvaaError("RESTORE_STALLED", `${connection.peer} took no restore data for ${timeoutMs} ms`, "Is the restorer's target very slow, or the network stuck? Run the restore again", exitCodes.timeout);
      connection.abort(reason);
      reject(reason);
    }, timeoutMs);
  });
  try {
    await Promise.race([connection.send(message, payload), stalled]);
  } finally {
    clearTimeout(timer);
  }
}
