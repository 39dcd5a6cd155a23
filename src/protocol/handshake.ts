/**
 * The handshake that opens every connection:
 *
 *   connecting side                          accepting side
 *   hello {magic, version, role, nodeId} ─▶  checks magic, version, role
 *                                        ◀─  helloAck {its own magic/version/role/nodeId, accepted}
 *   checks the ack (accepted, version, role)  (accepted: false → it closes after the ack)
 *
 * Within handshakeTimeoutMs, or the accepting side gives up (PROTO_HANDSHAKE_TIMEOUT). Versions
 * must be equal: one protocol version per release line, refused with a hint naming both.
 *
 * The pure helpers here build and check messages; `clientHandshake` / `serverHandshake` drive
 * them over any `MessageLink` (the socket transport, or an in-memory one under simulation) and
 * leave timers to the link.
 */
import { handshakeTimeoutMs, protocolMagic, protocolVersion } from "../constants.ts";
import { ProtocolError, type ProtocolErrorCode } from "./errors.ts";
import type { Frame } from "./frame.ts";
import type { ErrorInfo, HelloAckMessage, HelloMessage, Message, Role } from "./messages.ts";

export { handshakeTimeoutMs };

/** What the handshake needs from a connection. */
export interface MessageLink {
  send(message: Message, payload?: Uint8Array): Promise<void>;
  /** The next frame; rejects with a DruvaaError on close, or with NET_TIMEOUT after timeoutMs. */
  receive(timeoutMs: number): Promise<Frame>;
}

export interface Identity {
  role: Role;
  nodeId: string;
  features?: string[];
}

export function buildHello(identity: Identity): HelloMessage {
  const hello: HelloMessage = { type: "hello", magic: protocolMagic, version: protocolVersion, role: identity.role, nodeId: identity.nodeId };
  if (identity.features !== undefined) hello.features = [...identity.features];
  return hello;
}

/** Accepts when `error` is undefined, refuses with its code and message otherwise. */
export function buildHelloAck(identity: Identity, error?: ErrorInfo): HelloAckMessage {
  const ack: HelloAckMessage = { ...buildHello(identity), type: "helloAck", accepted: error === undefined };
  if (error !== undefined) ack.error = error;
  return ack;
}

/**
 * Checks a peer's hello or helloAck against what this endpoint speaks and serves: PROTO_BAD_MAGIC,
 * PROTO_VERSION (hint names both versions), PROTO_ROLE (hint names the roles served).
 */
export function checkPeerHello(hello: HelloMessage | HelloAckMessage, acceptedRoles: readonly Role[]): void {
  if (hello.magic !== protocolMagic) {
    throw new ProtocolError("PROTO_BAD_MAGIC", `peer ${hello.nodeId} sent magic 0x${hello.magic.toString(16)}, not druvaa's 0x${protocolMagic.toString(16)}`, "The peer is not a druvaa node; check the address and port");
  }
  if (hello.version !== protocolVersion) {
    const older = hello.version < protocolVersion ? `the peer (${hello.nodeId})` : "this node";
    throw new ProtocolError(
      "PROTO_VERSION",
      `peer ${hello.nodeId} speaks protocol version ${hello.version}, this node speaks version ${protocolVersion}`,
      `Run the same druvaa release on both ends: peer has protocol v${hello.version}, this node v${protocolVersion}; upgrade ${older}`,
    );
  }
  if (!acceptedRoles.includes(hello.role)) {
    throw new ProtocolError(
      "PROTO_ROLE",
      `${hello.role} ${hello.nodeId} is not served by this endpoint, which accepts ${acceptedRoles.join(" or ")}`,
      `Point the ${hello.role} at the address meant for it (this one accepts: ${acceptedRoles.join(", ")})`,
    );
  }
}

const forwardedCodes: ReadonlySet<string> = new Set<ProtocolErrorCode>(["PROTO_BAD_MAGIC", "PROTO_VERSION", "PROTO_ROLE"]);

/**
 * Checks the answer to our hello. A refusal keeps the peer's code when it is a handshake code
 * (so a version mismatch reads PROTO_VERSION on both ends), PROTO_REFUSED otherwise.
 */
export function checkHelloAck(ack: HelloAckMessage, acceptedRoles: readonly Role[]): void {
  // Compare versions first: the message then reads from this side's point of view.
  if (ack.version !== protocolVersion) checkPeerHello(ack, acceptedRoles);
  if (!ack.accepted) {
    const code = ack.error !== undefined && forwardedCodes.has(ack.error.code) ? (ack.error.code as ProtocolErrorCode) : "PROTO_REFUSED";
    const reason = ack.error === undefined ? "no reason given" : `${ack.error.code}: ${ack.error.message}`;
    throw new ProtocolError(code, `peer ${ack.nodeId} (${ack.role}) refused the connection: ${reason}`, ack.error?.hint);
  }
  checkPeerHello(ack, acceptedRoles);
}

function unexpected(frame: Frame, expected: string): ProtocolError {
  if (frame.message.type === "error") {
    const { code, message, hint } = frame.message;
    return new ProtocolError("PROTO_REFUSED", `peer refused the connection: ${code}: ${message}`, hint);
  }
  return new ProtocolError("PROTO_UNEXPECTED", `expected ${expected}, got ${frame.message.type}`, "The peer does not follow the druvaa handshake; run the same release on both ends");
}

async function receiveWithin(link: MessageLink, timeoutMs: number, what: string): Promise<Frame> {
  try {
    return await link.receive(timeoutMs);
  } catch (error) {
    if ((error as { code?: unknown })?.code === "NET_TIMEOUT") {
      throw new ProtocolError("PROTO_HANDSHAKE_TIMEOUT", `no ${what} within ${timeoutMs} ms`, "Is the peer a druvaa node? Check the address, port and network", { cause: error });
    }
    throw error;
  }
}

/** Connecting side: sends hello, returns the peer's accepted helloAck or throws ProtocolError. */
export async function clientHandshake(link: MessageLink, identity: Identity, acceptedRoles: readonly Role[], timeoutMs = handshakeTimeoutMs): Promise<HelloAckMessage> {
  await link.send(buildHello(identity));
  const frame = await receiveWithin(link, timeoutMs, "helloAck");
  if (frame.message.type !== "helloAck") throw unexpected(frame, "helloAck");
  checkHelloAck(frame.message, acceptedRoles);
  return frame.message;
}

/**
 * Accepting side: waits for hello, answers helloAck. On refusal the ack carries the reason and
 * the ProtocolError is thrown: the caller closes the connection (after the ack is flushed).
 */
export async function serverHandshake(link: MessageLink, identity: Identity, acceptedRoles: readonly Role[], timeoutMs = handshakeTimeoutMs): Promise<HelloMessage> {
  const frame = await receiveWithin(link, timeoutMs, "hello");
  if (frame.message.type !== "hello") throw unexpected(frame, "hello");
  const hello = frame.message;
  try {
    checkPeerHello(hello, acceptedRoles);
  } catch (error) {
    const refusal = error as ProtocolError;
    await link.send(buildHelloAck(identity, refusal.hint === undefined ? { code: refusal.code, message: refusal.message } : { code: refusal.code, message: refusal.message, hint: refusal.hint }));
    throw refusal;
  }
  await link.send(buildHelloAck(identity));
  return hello;
}

/** Features both sides announced, in this side's order. */
export function commonFeatures(ours: readonly string[] | undefined, theirs: readonly string[] | undefined): string[] {
  const other = new Set(theirs ?? []);
  return (ours ?? []).filter((feature) => other.has(feature));
}
