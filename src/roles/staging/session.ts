/**
 * One client connection as the staging core sees it: the devices it attached, its writes in
 * flight (bounded: the server stops reading the connection while the bounds are reached), and
 * the way back to the client. No sockets: `reply` is handed in.
 */
import { stagingSessionInflightBytesMax, stagingSessionInflightWritesMax } from "../../constants.ts";
import type { Message } from "../../protocol/messages.ts";
import type { PeerIdentity } from "../../tls/identity.ts";

/** A device attached on this connection. */
export interface SessionDevice {
  wrl: string;
  name: string;
  sizeBytes: number;
  logicalBlockSizeBytes: number;
}

export interface SessionPeer {
  /** The client's node id (from its hello). */
  nodeId: string;
  /** Where it connected from, for status and messages. */
  address: string;
  /** Queues an answer to the client; a closed connection drops it (the client resends). */
  reply(message: Message): void;
  /** Who the client proved to be with its TLS certificate (undefined in plaintext): attach checks its devices. */
  identity?: PeerIdentity | undefined;
}

export const sessionDeviceKey = (wrl: string, device: string): string => `${wrl}\u0000${device}`;

export class ClientSession {
  readonly nodeId: string;
  readonly address: string;
  readonly identity: PeerIdentity | undefined;
  readonly devices = new Map<string, SessionDevice>();
  #open = true;
  #inflightWrites = 0;
  #inflightBytes = 0;
  #roomWaiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];

  constructor(private readonly peer: SessionPeer, private readonly limits = { writesMax: stagingSessionInflightWritesMax, bytesMax: stagingSessionInflightBytesMax }) {
    this.nodeId = peer.nodeId;
    this.address = peer.address;
    this.identity = peer.identity;
  }

  get isOpen(): boolean {
    return this.#open;
  }

  get inflightWrites(): number {
    return this.#inflightWrites;
  }

  reply(message: Message): void {
    if (this.#open) this.peer.reply(message);
  }

  /** The connection is gone: answers are dropped from now on. */
  markClosed(): void {
    this.#open = false;
  }

  /** A write was issued to the WRL. */
  started(bytes: number): void {
    this.#inflightWrites += 1;
    this.#inflightBytes += bytes;
  }

  /** It was answered. */
  finished(bytes: number): void {
    this.#inflightWrites -= 1;
    this.#inflightBytes -= bytes;
    if (!this.full) for (const wake of this.#roomWaiters.splice(0)) wake();
    if (this.#inflightWrites === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  get full(): boolean {
    return this.#inflightWrites >= this.limits.writesMax || this.#inflightBytes >= this.limits.bytesMax;
  }

  /** Resolves when another write may be taken (at once while under the bounds). */
  room(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /** Resolves when no write of this connection is in flight. */
  idle(): Promise<void> {
    if (this.#inflightWrites === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }
}
