/**
 * WAN link emulator: an in-process TCP / Unix-socket proxy that makes a loopback connection look
 * like a long, thin, unreliable line, for tests and benchmarks (the kernel's netem needs root and
 * is not on every machine). Point a druvaa client at `link.address` instead of the staging
 * server's address, and its traffic crosses the emulated link.
 *
 * What it guarantees:
 *   - bytes are delivered intact and in order in each direction, each direction shaped on its
 *     own (full duplex) by a LinkShaper (src/io/wan-shaper.ts): serialized at the link's rate,
 *     then delayed by delayMs ± jitterMs. The rate and the delay are the link's, shared by all
 *     connections crossing it, as on a real line;
 *   - bounded memory: when more than queueBytesMax bytes of one direction of one connection are
 *     inside the link (in flight or waiting for the receiving socket), the link stops reading from
 *     the sending socket and resumes once half have been delivered. So, like a TCP window, the
 *     bound also caps a connection's throughput at queueBytesMax / delayMs;
 *   - Bun's partial writes are handled (a SendQueue per direction, resent on `drain`);
 *   - half-close: a FIN crosses the link like data (after the bytes before it, delayMs later);
 *     sockets are half-open capable, so a peer that has shut its sending side still gets replies;
 *   - cut() and outages reset both ends of every proxied connection (RST), as a dropped link or a
 *     NAT that forgets its mappings does. A peer's reset is passed on to the other end at once.
 *
 * What it does not do: lose, duplicate or corrupt bytes (TCP hides those; the link kills whole
 * connections instead), or model congestion. Random cuts (cutEveryMs) come from a seeded PRNG:
 * the seed is reported in `link.seed`, but socket timing on a real machine is not replayable.
 */
import type { Socket } from "bun";
import { connectTimeoutMs } from "../constants.ts";
import { DruvaaError, exitCodes, fromSystemError } from "../errors.ts";
import { logger } from "../log.ts";
import { formatAddress, type Address } from "./address.ts";
import { Random } from "./random.ts";
import { LinkShaper, nextCutIntervalMs, ShapedPipe, wanLinkQueueBytesMax, wanLinkSegmentBytesMax } from "./wan-shaper.ts";

const log = logger("wan-link");

export interface WanLinkOptions {
  /** Where the link listens; port 0 lets the system choose. A TCP host defaults to 127.0.0.1. */
  listen: Address;
  /** Where every accepted connection is forwarded. */
  target: Address;
  /** One-way propagation delay, each direction. */
  delayMs: number;
  /** Each chunk's delay varies uniformly within ±jitterMs (bytes stay in order). Default 0. */
  jitterMs?: number;
  /** Bandwidth per direction; Infinity for none. */
  rateBitsPerSecond: number;
  /** Mean interval of random cuts (every proxied connection reset); default: none. */
  cutEveryMs?: number;
  /** Seed for jitter and random cuts; default: random (read it back from `link.seed`). */
  seed?: number;
  /** See the bound above. Default wanLinkQueueBytesMax. */
  queueBytesMax?: number;
}

export interface WanLinkStats {
  /** Bytes delivered to the target (client -> target). */
  bytesUp: number;
  /** Bytes delivered to the clients (target -> client). */
  bytesDown: number;
  /** Connections accepted and forwarded (refused ones not counted). */
  connections: number;
  /** Connections closed while the link was down. */
  refused: number;
  /** Proxied connections reset by cut(), setDown(true) or a random cut. */
  cuts: number;
  /** Most bytes one direction of one connection ever held inside the link (the bound at work). */
  queuedBytesPeak: number;
  /** Proxied connections open now. */
  open: number;
}

export interface WanLink {
  /** Where the link listens, as HOST:PORT or unix:PATH (the port the system chose for port 0). */
  readonly address: string;
  readonly seed: number;
  /** Resets both ends of every proxied connection. */
  cut(): void;
  /** A link outage: while down, existing connections are cut and new ones closed at once. */
  setDown(down: boolean): void;
  /** For data entering the link from now on (both directions). */
  setRate(rateBitsPerSecond: number): void;
  /** For data entering the link from now on (both directions); never reorders bytes. */
  setDelay(delayMs: number): void;
  stats(): WanLinkStats;
  /** Stops listening, resets every proxied connection, resolves when all sockets are closed. */
  stop(): Promise<void>;
}

type Side = "client" | "target";
type SocketData = { proxied: Proxied | undefined; side: Side };
type LinkSocket = Socket<SocketData>;

/** What a Proxied connection needs from the link it crosses. */
interface LinkContext {
  readonly shapers: Record<Side, LinkShaper>; // keyed by the sending side
  readonly queueBytesMax: number;
  delivered(from: Side, bytes: number): void;
  /** Bytes of one direction of one connection inside the link, after data entered it. */
  queued(bytes: number): void;
  finished(proxied: Proxied): void;
}

/** The state of one socket of a proxied connection. */
type End = { socket: LinkSocket | undefined; finReceived: boolean; finSent: boolean; closed: boolean };

/** One accepted connection and its forwarded twin to the target. */
class Proxied {
  readonly #ends: Record<Side, End>;
  readonly #pipes: Record<Side, ShapedPipe>; // keyed by the sending side
  #state: "open" | "closed" = "open";
  #connecting = true;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #resolveDone!: () => void;
  /** Resolves once both sockets are closed and the connect to the target has settled. */
  readonly done = new Promise<void>((resolve) => (this.#resolveDone = resolve));

  constructor(client: LinkSocket, readonly link: LinkContext, readonly peer: string) {
    this.#ends = {
      client: { socket: client, finReceived: false, finSent: false, closed: false },
      target: { socket: undefined, finReceived: false, finSent: false, closed: false },
    };
    const pipe = (from: Side, to: Side) =>
      new ShapedPipe(link.shapers[from], link.queueBytesMax, {
        source: () => this.#ends[from].socket,
        dest: () => this.#ends[to].socket,
        delivered: (bytes) => link.delivered(from, bytes),
        finDelivered: () => this.#finDelivered(to),
      });
    this.#pipes = { client: pipe("client", "target"), target: pipe("target", "client") };
  }

  get isOpen(): boolean {
    return this.#state === "open";
  }

  /** Starts the connect to the target; the target socket arrives through attachTarget(). */
  connect(target: Address): void {
    const data: SocketData = { proxied: this, side: "target" };
    const connecting =
      target.kind === "unix"
        ? Bun.connect<SocketData>({ unix: target.path, allowHalfOpen: true, data, socket: handlers })
        : Bun.connect<SocketData>({ hostname: target.host ?? "127.0.0.1", port: target.port, allowHalfOpen: true, data, socket: handlers });
    this.#connectTimer = setTimeout(() => {
      this.#connecting = false; // do not wait any longer: a late socket is terminated on open
      log.warn(`${this.peer}: no answer from ${formatAddress(target)} within ${connectTimeoutMs} ms; resetting the connection`);
      this.reset();
    }, connectTimeoutMs);
    // A socket that opens after a reset or a timeout is terminated by attachTarget().
    connecting.then(
      () => undefined,
      (error: unknown) => {
        if (this.#state === "open") log.warn(`${this.peer}: ${fromSystemError(error, `cannot connect to ${formatAddress(target)}`).message}; resetting the connection`);
        this.reset();
      },
    ).finally(() => {
      clearTimeout(this.#connectTimer);
      this.#connecting = false;
      this.#finishIfDone();
    });
  }

  attachTarget(socket: LinkSocket): void {
    if (this.#state !== "open") {
      socket.terminate();
      return;
    }
    clearTimeout(this.#connectTimer);
    socket.setNoDelay(true);
    this.#ends.target.socket = socket;
    this.#pipes.client.flush(); // what the client sent while the connect was in progress
  }

  handleData(side: Side, chunk: Uint8Array): void {
    if (this.#state !== "open") return;
    this.#pipes[side].push(chunk);
    this.link.queued(this.#pipes[side].queuedBytes);
  }

  handleDrain(side: Side): void {
    this.#pipes[other(side)].handleDrain();
  }

  handleEnd(side: Side): void {
    const end = this.#ends[side];
    if (this.#state !== "open" || end.finReceived) return;
    end.finReceived = true;
    this.#pipes[side].pushFin();
    if (end.finSent) end.socket?.end();
  }

  handleClose(side: Side, error: Error | undefined): void {
    const end = this.#ends[side];
    if (end.closed) return; // closed by us (reset), or already seen
    end.closed = true;
    if (this.#state !== "open") return this.#finishIfDone();
    if (error !== undefined) {
      log.debug(`${this.peer}: ${side} reset (${error.message}); resetting the other end`);
      return this.reset();
    }
    // Without an error, the peer closed after its FIN (Bun reports no `end` when our FIN went
    // first). Nothing more can be delivered to it; what it sent still crosses the link.
    this.handleEnd(side);
    this.#pipes[other(side)].stop();
    if (this.#ends.client.closed && this.#ends.target.closed) this.#close();
  }

  /** Resets both sockets (RST) and drops everything in flight. Idempotent. */
  reset(): void {
    if (this.#state !== "open") return;
    this.#close();
    for (const end of Object.values(this.#ends)) {
      if (end.closed || end.socket === undefined) continue;
      end.closed = true;
      end.socket.terminate();
    }
    this.#finishIfDone();
  }

  #finDelivered(to: Side): void {
    const end = this.#ends[to];
    if (end.closed || end.socket === undefined) return;
    end.finSent = true;
    if (end.finReceived) end.socket.end();
    else end.socket.shutdown();
  }

  #close(): void {
    this.#state = "closed";
    this.#pipes.client.stop();
    this.#pipes.target.stop();
    clearTimeout(this.#connectTimer);
    this.#finishIfDone();
  }

  #finishIfDone(): void {
    if (this.#state !== "closed" || this.#connecting) return;
    const closed = (end: End) => end.closed || end.socket === undefined;
    if (!closed(this.#ends.client) || !closed(this.#ends.target)) return;
    this.link.finished(this);
    this.#resolveDone();
  }
}

function other(side: Side): Side {
  return side === "client" ? "target" : "client";
}

/** Handlers of the link's target sockets; the listener's add `open` for accepted clients. */
const handlers = {
  binaryType: "uint8array" as const,
  open(socket: LinkSocket) {
    socket.data.proxied?.attachTarget(socket);
  },
  data(socket: LinkSocket, chunk: Uint8Array) {
    socket.data.proxied?.handleData(socket.data.side, chunk);
  },
  drain(socket: LinkSocket) {
    socket.data.proxied?.handleDrain(socket.data.side);
  },
  end(socket: LinkSocket) {
    socket.data.proxied?.handleEnd(socket.data.side);
  },
  close(socket: LinkSocket, error?: Error) {
    socket.data.proxied?.handleClose(socket.data.side, error);
  },
  error(socket: LinkSocket, error: Error) {
    // Only reached if a handler above throws: a bug. Reset that connection only.
    log.error(`${socket.data.proxied?.peer ?? "wan-link"}: ${error.message}`);
    socket.data.proxied?.reset();
  },
};

/** Starts a WAN link from `options.listen` to `options.target`. Bad options: WAN_LINK_BAD_OPTION. */
export async function startWanLink(options: WanLinkOptions): Promise<WanLink> {
  validate(options);
  const seed = options.seed ?? Math.floor(Math.random() * 0x1_0000_0000);
  const random = new Random(seed);
  const jitterMs = options.jitterMs ?? 0;
  const shapers: Record<Side, LinkShaper> = {
    client: new LinkShaper({ delayMs: options.delayMs, jitterMs, rateBitsPerSecond: options.rateBitsPerSecond }, random.fork()),
    target: new LinkShaper({ delayMs: options.delayMs, jitterMs, rateBitsPerSecond: options.rateBitsPerSecond }, random.fork()),
  };
  const cutRandom = random.fork();
  const open = new Set<Proxied>();
  const stats = { bytesUp: 0, bytesDown: 0, connections: 0, refused: 0, cuts: 0, queuedBytesPeak: 0 };
  let down = false;
  let stopping = false;
  const link: LinkContext = {
    shapers,
    queueBytesMax: options.queueBytesMax ?? wanLinkQueueBytesMax,
    delivered(from, bytes) {
      if (from === "client") stats.bytesUp += bytes;
      else stats.bytesDown += bytes;
    },
    queued(bytes) {
      stats.queuedBytesPeak = Math.max(stats.queuedBytesPeak, bytes);
    },
    finished: (proxied) => open.delete(proxied),
  };
  const cutAll = () => {
    for (const proxied of open) {
      if (!proxied.isOpen) continue;
      stats.cuts += 1;
      proxied.reset();
    }
    // What the cut connections had queued is gone: the line is idle again.
    for (const shaper of Object.values(shapers)) shaper.forget();
  };
  const listenAddress: Address = options.listen.kind === "unix" ? options.listen : { ...options.listen, host: options.listen.host ?? "127.0.0.1" };
  const listenerHandlers = {
    ...handlers,
    open(socket: LinkSocket) {
      if (down || stopping) {
        stats.refused += 1;
        socket.terminate();
        return;
      }
      socket.setNoDelay(true);
      const peer = listenAddress.kind === "unix" ? formatAddress(listenAddress) : `${socket.remoteAddress}:${socket.remotePort}`;
      const proxied = new Proxied(socket, link, peer);
      socket.data = { proxied, side: "client" };
      open.add(proxied);
      stats.connections += 1;
      proxied.connect(options.target);
    },
  };
  const data: SocketData = { proxied: undefined, side: "client" };
  let server: { stop(closeActiveConnections?: boolean): void; port?: number };
  try {
    server =
      listenAddress.kind === "unix"
        ? Bun.listen<SocketData>({ unix: listenAddress.path, allowHalfOpen: true, data, socket: listenerHandlers })
        : Bun.listen<SocketData>({ hostname: listenAddress.host ?? "127.0.0.1", port: listenAddress.port, allowHalfOpen: true, data, socket: listenerHandlers });
  } catch (error) {
    const wrapped = fromSystemError(error, `WAN link cannot listen on ${formatAddress(listenAddress)}`);
    throw new DruvaaError("WAN_LINK_LISTEN_FAILED", wrapped.message, wrapped.hint ?? "Use port 0 (the system picks a free port) or a fresh unix: path", exitCodes.failure, { cause: error });
  }
  const bound: Address = listenAddress.kind === "unix" ? listenAddress : { ...listenAddress, port: server.port! };

  let cutTimer: ReturnType<typeof setTimeout> | undefined;
  const armCutTimer = (meanMs: number) => {
    cutTimer = setTimeout(() => {
      if (!down) cutAll();
      armCutTimer(meanMs);
    }, nextCutIntervalMs(cutRandom, meanMs));
    cutTimer.unref(); // cuts are no reason to keep a process alive
  };
  if (options.cutEveryMs !== undefined) armCutTimer(options.cutEveryMs);

  return {
    address: formatAddress(bound),
    seed,
    cut: cutAll,
    setDown(value) {
      down = value;
      if (down) cutAll();
    },
    setRate(rateBitsPerSecond) {
      checkRate(rateBitsPerSecond);
      for (const shaper of Object.values(shapers)) shaper.setRate(rateBitsPerSecond);
    },
    setDelay(delayMs) {
      checkDuration("delayMs", delayMs);
      for (const shaper of Object.values(shapers)) shaper.setDelay(delayMs);
    },
    stats: () => ({ ...stats, open: open.size }),
    async stop() {
      stopping = true;
      clearTimeout(cutTimer);
      server.stop(false);
      const closing = [...open];
      for (const proxied of closing) proxied.reset();
      await Promise.all(closing.map((proxied) => proxied.done));
    },
  };
}

function badOption(message: string, hint: string): DruvaaError {
  return new DruvaaError("WAN_LINK_BAD_OPTION", `WAN link: ${message}`, hint, exitCodes.usage);
}

function checkDuration(name: string, valueMs: number | undefined): void {
  if (valueMs !== undefined && !(Number.isFinite(valueMs) && valueMs >= 0)) throw badOption(`${name} ${valueMs} is not a duration`, `Give ${name} in milliseconds, >= 0 (e.g. 40)`);
}

function checkRate(rateBitsPerSecond: number): void {
  if (!(rateBitsPerSecond > 0)) throw badOption(`rate ${rateBitsPerSecond} bit/s is not positive`, "Give rateBitsPerSecond > 0 (e.g. 100e6 for 100 Mbit/s), or Infinity for no limit");
}

function validate(options: WanLinkOptions): void {
  checkDuration("delayMs", options.delayMs);
  checkDuration("jitterMs", options.jitterMs);
  checkRate(options.rateBitsPerSecond);
  if (options.cutEveryMs !== undefined && !(Number.isFinite(options.cutEveryMs) && options.cutEveryMs > 0)) throw badOption(`cutEveryMs ${options.cutEveryMs} is not a positive duration`, "Give the mean interval between cuts in ms, or leave it out for no random cuts");
  if (options.seed !== undefined && !Number.isSafeInteger(options.seed)) throw badOption(`seed ${options.seed} is not an integer`, "Use the seed a previous run reported (link.seed)");
  const queueBytesMax = options.queueBytesMax;
  if (queueBytesMax !== undefined && !(Number.isSafeInteger(queueBytesMax) && queueBytesMax >= 2 * wanLinkSegmentBytesMax)) throw badOption(`queueBytesMax ${queueBytesMax} is too small`, `Give at least ${2 * wanLinkSegmentBytesMax} bytes`);
  if (options.target.kind === "tcp" && options.target.port === 0) throw badOption(`cannot forward to ${formatAddress(options.target)}: port 0`, "Give the port the target listens on");
}
