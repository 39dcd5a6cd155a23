/**
 * The staging server's sockets around a StagingCore: clients on the data port, HTTP status on the
 * control port (HTTPS for admin and panel certificates when the role runs with TLS). A thin layer:
 * it speaks the protocol (docs/pipeline.md) and hands every decision to the core.
 *
 * Robustness: a peer that sends garbage, fails the handshake, or sends a message that does not
 * belong on the data port loses its own connection (logged once) and nothing else.
 * Back-pressure: a connection is read one message at a time; a write is issued before the next
 * message is read, and reading pauses while the connection is at its in-flight bounds
 * (stagingSessionInflightWritesMax / BytesMax), after which the transport's inbox bound stops
 * the socket.
 */
import { DruvaaError } from "../../errors.ts";
import { sharedBufferPool } from "../../io/buffer-pool.ts";
import { startControlServer, type ControlRoute, type ControlServer } from "../../io/control-server.ts";
import { connect, formatAddress, listen, peerIdentityOf, type Address, type Connection, type Listener, type PreparedTls } from "../../io/transport.ts";
import { logger } from "../../log.ts";
import { ProtocolError } from "../../protocol/errors.ts";
import { clientHandshake, serverHandshake, type Identity } from "../../protocol/handshake.ts";
import { guardConnection, nextFrame, statusHeader } from "../server-support.ts";
import type { StagingCore } from "./core.ts";
import { failbackRoutes } from "./failback-routes.ts";
import type { RelayLink } from "./relay.ts";
import type { WrlSplits } from "./split.ts";
import { splitRoutes } from "./split-routes.ts";

const log = logger("staging:net");

export interface StagingServerOptions {
  core: StagingCore;
  nodeId: string;
  /** Data port: clients. */
  listen: Address;
  /** Control port (HTTP GET /status; failback's GET /wrl/pending and POST /wrl/discard: failback-routes.ts; POST /wrl/split and /wrl/join with `splits`). */
  control: Address;
  /** Milliseconds since the epoch; Date.now unless a test gives a clock. */
  now?: () => number;
  /** TLS for the data port (peers must be clients); plaintext when absent (--insecure). */
  tls?: PreparedTls | undefined;
  /** TLS for the control port (HTTPS; peers must be admin or panel); plain HTTP when absent. */
  controlTls?: PreparedTls | undefined;
  /** More control routes (--managed: GET /config, POST /config/prepare, …). */
  routes?: Record<string, ControlRoute>;
  /** More fields of GET /status (--managed: `managed`). */
  statusExtra?: () => Record<string, unknown>;
  /** Split and join (POST /wrl/split, /wrl/join: split-routes.ts; `split` of each WRL in GET /status). */
  splits?: WrlSplits;
}

export interface StagingAddresses {
  listen: string;
  control: string;
}

/** The relay's way to a replica: TCP/Unix connect, then the handshake as role staging. */
export function replicaDialer(address: Address, nodeId: string, tls?: PreparedTls): () => Promise<RelayLink> {
  return async () => {
    const connection = await connect(address, undefined, tls === undefined ? {} : { tls });
    try {
      await clientHandshake(connection, { role: "staging", nodeId }, ["replica"]);
    } catch (error) {
      connection.abort();
      throw error;
    }
    return connection;
  };
}

export class StagingServer {
  readonly #core: StagingCore;
  readonly #identity: Identity;
  readonly #now: () => number;
  readonly #startedAtMs: number;
  readonly #statusExtra: (() => Record<string, unknown>) | undefined;
  readonly #splits: WrlSplits | undefined;
  #data: Listener | undefined;
  #control: ControlServer | undefined;

  private constructor(options: StagingServerOptions) {
    this.#core = options.core;
    this.#identity = { role: "staging", nodeId: options.nodeId };
    this.#now = options.now ?? Date.now;
    this.#startedAtMs = this.#now();
    this.#statusExtra = options.statusExtra;
    this.#splits = options.splits;
  }

  /** Starts serving both ports; stops what it started if one of them fails. */
  static async start(options: StagingServerOptions): Promise<StagingServer> {
    const server = new StagingServer(options);
    try {
      // Writes spanning socket chunks (every large one) are assembled in pooled buffers; the
      // WRL gives them back once their record is freed (see serve-command.ts, onFreedData).
      server.#data = await listen(options.listen, (connection) => void guardConnection(connection, () => server.#serveClient(connection), log), { allocateFrame: (bytes) => sharedBufferPool.take(bytes), ...(options.tls === undefined ? {} : { tls: options.tls }) });
      server.#control = await startControlServer(options.control, { "/status": () => server.status(), ...failbackRoutes(options.core), ...(options.splits === undefined ? {} : splitRoutes(options.splits)), ...options.routes }, "staging", { tls: options.controlTls });
    } catch (error) {
      await Promise.all([server.#data?.stop(), server.#control?.stop()]);
      throw error;
    }
    return server;
  }

  get addresses(): StagingAddresses {
    return { listen: formatAddress(this.#data!.address), control: this.#control!.address };
  }

  /** GET /status (docs/pipeline.md "Status", role staging). */
  status(): Record<string, unknown> {
    const core = this.#core.status();
    return {
      ...statusHeader(this.#identity, this.#startedAtMs, this.#now()),
      addresses: this.#data === undefined || this.#control === undefined ? null : this.addresses,
      stopping: this.#core.stopping,
      wrls: this.#splits === undefined ? core.wrls : core.wrls.map((wrl) => ({ ...wrl, split: this.#splits!.of(wrl.name) })),
      clients: core.clients,
      events: core.events,
      ...this.#statusExtra?.(),
    };
  }

  /**
   * SIGTERM: writes in flight finish and are answered, new ones are refused (clients resend them
   * after the restart), the relays stop, then the ports close. The WRLs are the caller's to close.
   */
  async stop(): Promise<void> {
    await this.#core.stop();
    await Promise.all([this.#data?.stop(), this.#control?.stop()]);
  }

  async #serveClient(connection: Connection): Promise<void> {
    const hello = await serverHandshake(connection, this.#identity, ["client"]);
    if (this.#core.stopping) {
      await connection.close(new DruvaaError("SHUTTING_DOWN", "the staging server is shutting down", "The client reconnects once it is back"));
      return;
    }
    const identity = peerIdentityOf(connection);
    log.info(`client ${hello.nodeId} connected from ${connection.peer}${identity === undefined ? "" : ` (certificate ${identity.name}, serial ${identity.serial})`}`);
    const session = this.#core.openSession({
      nodeId: hello.nodeId,
      address: connection.peer,
      // A closed connection reports itself through `closed`; the client resends what was not acked.
      reply: (message) => void connection.send(message).catch(() => undefined),
      identity,
    });
    try {
      for (;;) {
        const frame = await nextFrame(connection);
        if (frame === undefined) return;
        const message = frame.message;
        if (message.type === "error") return; // the peer says why it leaves; kept as the close reason
        if (message.type === "statusRequest") {
          session.reply({ type: "statusReply", status: this.status() });
          continue;
        }
        if (!(await this.#core.handle(session, message, frame.payload))) {
          throw new ProtocolError("PROTO_UNEXPECTED", `a ${message.type} message on the staging server's data port`, "The data port takes attach and write from druvaa clients; status is on the control port (default 6002)");
        }
      }
    } finally {
      this.#core.closeSession(session);
      log.info(`client ${hello.nodeId} (${connection.peer}) disconnected`);
    }
  }
}
