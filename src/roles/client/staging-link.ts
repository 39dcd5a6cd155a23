/**
 * The client's connection to staging: connect, handshake as role "client" (the peer must be
 * "staging"), `attach` every device, then carry writes and acks for the ClientCore until the
 * connection drops; then reconnect with backoff (clientReconnectDelayMsMin doubling to
 * clientReconnectDelayMsMax), attach again and let the core resend what was not acked.
 *
 * The first session is the caller's to fail: start() rejects with a clear error (staging
 * unreachable, not a staging server, an attach refused) so `client attach` exits before it
 * exports anything. Later failures are logged, kept as `lastError` for the status, and retried.
 *
 * Sockets come from `dial` and time from `clock`, so tests can drive it without a network.
 */
import type { ConsolaInstance } from "consola/basic";
import { clientAttachTimeoutMs, clientReconnectDelayMsMax, clientReconnectDelayMsMin } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { Connection } from "../../io/transport.ts";
import { logger } from "../../log.ts";
import { clientHandshake, type Identity } from "../../protocol/handshake.ts";
import type { Frame } from "../../protocol/frame.ts";
import type { AttachAckMessage, ErrorInfo, VerifyReportMessage } from "../../protocol/messages.ts";
import { realTimers, type ClientTimers, type StagingSender, type WriteReply } from "./core.ts";

/** One `--device` as staging is told about it. */
export interface Attachment {
  device: string;
  wrl: string;
  sizeBytes: number;
  logicalBlockSizeBytes: number;
}

/** The side of the ClientCore the link drives. */
export interface LinkPeer {
  linkUp(sender: StagingSender): void;
  linkDown(): void;
  handleReply(reply: WriteReply): void;
  /** A verify outcome staging forwarded (verify-link.ts); without it, outcomes are ignored. */
  handleVerifyReport?(report: VerifyReportMessage): void;
}

export interface LinkClock extends ClientTimers {
  /** Wall-clock milliseconds, for `lastError.at` and the attach deadline. */
  now(): number;
}

export const realClock: LinkClock = { ...realTimers, now: () => Date.now() };

export interface StagingLinkOptions {
  /** Staging's address as the user gave it (status, messages). */
  address: string;
  dial: () => Promise<Connection>;
  nodeId: string;
  attachments: readonly Attachment[];
  peer: LinkPeer;
  clock?: LinkClock;
  log?: ConsolaInstance;
  attachTimeoutMs?: number;
}

export interface LastError extends ErrorInfo {
  at: string;
}

export interface StagingLinkStatus {
  address: string;
  connected: boolean;
  lastError: LastError | null;
  /** Successful sessions after the first (reconnects). */
  reconnects: number;
}

const refusalHints: Record<string, string> = {
  WRL_UNKNOWN: "Check --wrl: it must name a WRL the staging server serves (see: druvaa status --connect STAGING:6002)",
  DEVICE_BUSY: "Another connected client holds a device of that name in this WRL: use another NAME in --device NAME=PATH, or stop the other client",
  DEVICE_TOO_BIG: "The replica's device of that name is smaller: grow the replica device, or attach a device no bigger than it",
  DEVICE_NOT_ALLOWED: "This client's certificate does not name that device: issue one that does (druvaa admin cert issue --role client --name NAME --device DEVICE ...), or attach the devices it names",
};

export class StagingLink {
  readonly #options: StagingLinkOptions;
  readonly #clock: LinkClock;
  readonly #log: ConsolaInstance;
  readonly #identity: Identity;
  #connection: Connection | undefined;
  #connected = false;
  #lastError: LastError | null = null;
  #reconnects = 0;
  #stopping = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  /** The WRL uuid staging named for each device at the last attach. */
  readonly wrlUuids = new Map<string, string>();

  constructor(options: StagingLinkOptions) {
    this.#options = options;
    this.#clock = options.clock ?? realClock;
    this.#log = options.log ?? logger("client:staging");
    this.#identity = { role: "client", nodeId: options.nodeId };
  }

  get connected(): boolean {
    return this.#connected;
  }

  status(): StagingLinkStatus {
    return { address: this.#options.address, connected: this.#connected, lastError: this.#lastError, reconnects: this.#reconnects };
  }

  /** Opens the first session (errors are thrown, not retried), then keeps the link up until stop(). */
  async start(): Promise<void> {
    let connection: Connection;
    try {
      connection = await this.#openSession();
    } catch (error) {
      throw startError(error, this.#options.address);
    }
    this.#loop = this.#run(connection);
  }

  /**
   * Instead of start(), after it failed with `firstError` (a client with a change map starts
   * anyway, in disconnected mode): keeps trying to connect in the background, with backoff, until
   * stop(); the first session that succeeds brings the link up.
   */
  retryInBackground(firstError: DruvaaError): void {
    this.#setError(firstError);
    this.#loop = this.#run(undefined);
  }

  /** Stops reconnecting and closes the connection gracefully (queued frames are flushed). */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.#connection?.close();
    await this.#loop;
  }

  async #openSession(): Promise<Connection> {
    const connection = await this.#options.dial();
    try {
      await clientHandshake(connection, this.#identity, ["staging"]);
      await this.#attachAll(connection);
      return connection;
    } catch (error) {
      connection.abort();
      throw error;
    }
  }

  async #attachAll(connection: Connection): Promise<void> {
    const waiting = new Map(this.#options.attachments.map((attachment) => [attachment.device, attachment]));
    for (const attachment of this.#options.attachments) await connection.send({ type: "attach", ...attachment });
    const deadline = this.#clock.now() + (this.#options.attachTimeoutMs ?? clientAttachTimeoutMs);
    while (waiting.size > 0) {
      const remainingMs = Math.max(1, deadline - this.#clock.now());
      let frame: Frame;
      try {
        frame = await connection.receive(remainingMs);
      } catch (error) {
        if ((error as { code?: unknown }).code === "NET_TIMEOUT") {
          throw new DruvaaError("ATTACH_TIMEOUT", `staging ${this.#options.address} did not answer the attach of ${[...waiting.keys()].join(", ")} within ${this.#options.attachTimeoutMs ?? clientAttachTimeoutMs} ms`, "Check the staging server's log; is it overloaded or stuck?", exitCodes.timeout, { cause: error });
        }
        throw error;
      }
      const message = frame.message;
      if (message.type === "attachAck") {
        const attachment = waiting.get(message.device);
        if (attachment === undefined || attachment.wrl !== message.wrl) {
          throw new DruvaaError("PROTO_UNEXPECTED", `staging answered an attach of ${message.device} in WRL ${message.wrl}, which was not asked for`, "Run the same druvaa release on client and staging");
        }
        if (!message.accepted) throw attachRefused(message, this.#options.address);
        waiting.delete(message.device);
        this.#noteUuid(message);
      } else if (message.type === "error") {
        throw new DruvaaError(message.code, `staging ${this.#options.address}: ${message.message}`, message.hint, exitCodes.refused);
      } else if (message.type === "ping") {
        await connection.send({ type: "pong", nonce: message.nonce });
      } else {
        throw new DruvaaError("PROTO_UNEXPECTED", `staging sent ${message.type} while the client waited for attachAck`, "Run the same druvaa release on client and staging");
      }
    }
  }

  #noteUuid(ack: AttachAckMessage): void {
    const previous = this.wrlUuids.get(ack.device);
    if (ack.wrlUuid === undefined) return;
    if (previous !== undefined && previous !== ack.wrlUuid) {
      // The WRL was re-created behind our back: the replica will refuse its records (WRL_MISMATCH)
      // until someone decides; the client cannot tell which history is right.
      this.#log.error(`WRL ${ack.wrl} of device ${ack.device} changed its uuid from ${previous} to ${ack.wrlUuid}: it was re-created on staging`);
    }
    this.wrlUuids.set(ack.device, ack.wrlUuid);
  }

  /** Serves one session until it closes; resolves with the close reason. */
  async #serve(connection: Connection): Promise<DruvaaError | undefined> {
    this.#connection = connection;
    const peer = this.#options.peer;
    connection.onFrame((frame) => {
      const message = frame.message;
      switch (message.type) {
        case "writeAck":
        case "writeNack":
          peer.handleReply(message);
          break;
        case "verifyReport":
          if (peer.handleVerifyReport !== undefined) peer.handleVerifyReport(message);
          else this.#log.debug(`staging sent a verify outcome for ${message.device} at LSN ${message.lsn}; nothing here waits for it`);
          break;
        case "ping":
          void connection.send({ type: "pong", nonce: message.nonce }).catch(() => undefined);
          break;
        case "error":
          // The close that follows reports it; logged there.
          break;
        default:
          this.#log.warn(`staging sent an unexpected ${message.type} message; ignored`);
      }
    });
    this.#connected = true;
    // send() rejects only when the connection is closing; `closed` reports that, and the write
    // stays pending in the core until the next session sends it again.
    peer.linkUp({ send: (message, payload) => void connection.send(message, payload).catch(() => undefined) });
    const reason = await connection.closed;
    this.#connected = false;
    this.#connection = undefined;
    peer.linkDown();
    return reason;
  }

  async #run(first: Connection | undefined): Promise<void> {
    let connection: Connection | undefined = first;
    let delayMs = clientReconnectDelayMsMin;
    let failuresLogged = 0;
    while (!this.#stopping) {
      if (connection !== undefined) {
        const reason = await this.#serve(connection);
        connection = undefined;
        if (this.#stopping) break;
        const lost = reason ?? new DruvaaError("NET_CLOSED", "staging closed the connection", "Is the staging server restarting? The client reconnects and resends unacknowledged writes");
        this.#setError(lost);
        this.#log.warn(`lost the connection to staging ${this.#options.address}: ${lost.message}; reconnecting`);
        delayMs = clientReconnectDelayMsMin;
        failuresLogged = 0;
      }
      await this.#sleep(delayMs);
      if (this.#stopping) break;
      try {
        connection = await this.#openSession();
        this.#reconnects += 1;
        this.#log.info(`reconnected to staging ${this.#options.address}`);
      } catch (error) {
        const failure = error instanceof DruvaaError ? error : new DruvaaError("NET_CONNECT_FAILED", String(error));
        this.#setError(failure);
        // Every failure at first, then only when the backoff is at its maximum: a long outage
        // logs about once per clientReconnectDelayMsMax, not a flood.
        if (failuresLogged < 3 || delayMs === clientReconnectDelayMsMax) this.#log.warn(`reconnect to staging ${this.#options.address} failed: ${failure.message}`);
        failuresLogged += 1;
        delayMs = Math.min(clientReconnectDelayMsMax, delayMs * 2);
      }
    }
    if (connection !== undefined) await connection.close();
  }

  /** Waits `delayMs`, or less if stop() wakes it (the timer is then cancelled: a pending timer
   * would keep the process alive after shutdown). */
  #sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const cancel = this.#clock.schedule(delayMs, resolve);
      this.#wake = () => {
        cancel();
        resolve();
      };
    });
  }

  #setError(error: DruvaaError): void {
    this.#lastError = { code: error.code, message: error.message, ...(error.hint === undefined ? {} : { hint: error.hint }), at: new Date(this.#clock.now()).toISOString() };
  }
}

function attachRefused(ack: AttachAckMessage, address: string): DruvaaError {
  const code = ack.error?.code ?? "ATTACH_REFUSED";
  const reason = ack.error?.message ?? "no reason given";
  return new DruvaaError(code, `staging ${address} refused to attach device ${ack.device} to WRL ${ack.wrl}: ${reason}`, ack.error?.hint ?? refusalHints[code], exitCodes.refused);
}

/** The first session's failure, worded for someone starting `druvaa client attach`. */
function startError(error: unknown, address: string): DruvaaError {
  if (!(error instanceof DruvaaError)) return new DruvaaError("STAGING_UNREACHABLE", `cannot reach staging ${address}: ${String(error)}`, undefined, exitCodes.failure, { cause: error });
  if (error.code.startsWith("NET_")) {
    return new DruvaaError("STAGING_UNREACHABLE", `cannot reach staging ${address}: ${error.message}`, "Start the staging server first (druvaa staging serve ...) and check --staging HOST:PORT (default port 6001)", exitCodes.refused, { cause: error });
  }
  return error;
}
