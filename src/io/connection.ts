/**
 * The connection contract: one druvaa-framed, bidirectional, ordered message stream to one peer.
 * Roles talk to peers only through this interface, so the same role code runs over real sockets
 * (SocketConnection, src/io/connection-socket.ts) or an in-memory link under simulation.
 *
 * What every implementation guarantees:
 *   - frames are delivered to the peer whole, once, in the order send() was called, until the
 *     connection closes; what was queued but unwritten at an abrupt close is lost (the protocol's
 *     acks, not the transport, confirm delivery);
 *   - a peer that sends bytes that are not valid druvaa frames gets an `error` message and is
 *     disconnected; only that connection is affected;
 *   - memory is bounded: connectionSendQueueBytesMax queued (send() then makes callers wait) and
 *     connectionInboxBytesMax received but unread (reading from the peer then stops).
 */
import type { DruvaaError } from "../errors.ts";
import type { Frame } from "../protocol/frame.ts";
import type { MessageLink } from "../protocol/handshake.ts";
import type { Message } from "../protocol/messages.ts";

export type FrameHandler = (frame: Frame, connection: Connection) => void;

export interface Connection extends MessageLink {
  /** The peer, for messages: "10.0.0.5:40122" or "unix:/run/druvaa.sock". */
  readonly peer: string;
  /** Bytes accepted by send() but not yet written to the socket. */
  readonly queuedBytes: number;
  /** True until close() or abort() is called or the socket closes. */
  readonly isOpen: boolean;
  /** Resolves when the socket is closed, with the reason: this side's, else what the peer's
   * `error` message said, else NET_RESET for an abrupt close; undefined for an orderly close. */
  readonly closed: Promise<DruvaaError | undefined>;
  /**
   * Queues a frame. Resolves when the caller may send more (at once while the queue is under
   * connectionSendQueueBytesMax), NOT when the peer has it: delivery is confirmed by the
   * protocol's acks. Rejects with ProtocolError for an invalid message, NET_CLOSED (or the close
   * reason) when the connection is closing — a rejection that may be left unhandled, since
   * `closed` reports the close. The payload must not change until it is written.
   */
  send(message: Message, payload?: Uint8Array): Promise<void>;
  /** Delivers every frame, in order, to `handler` (frames already received first). A handler
   * that throws closes the connection. Once set, receive() may not be used. */
  onFrame(handler: FrameHandler): void;
  /** The next frame (when no handler is set). Rejects with NET_TIMEOUT after timeoutMs, or with
   * the close reason; frames received before a close are still returned first. */
  receive(timeoutMs?: number): Promise<Frame>;
  /** Called when the peer shuts its sending side; by default the connection then closes. */
  onPeerEnd(handler: () => void): void;
  /** Stop / restart reading from the socket (inbound back-pressure for slow consumers). */
  pauseReading(): void;
  resumeReading(): void;
  /** Graceful close: if `reason` is given the peer is first sent an `error` message; queued
   * frames are flushed (within connectionLingerMs), then FIN. Resolves when closed. */
  close(reason?: DruvaaError): Promise<void>;
  /** Closes at once, dropping queued frames. */
  abort(reason?: DruvaaError): void;
}
