import { describe, expect, test } from "bun:test";
import { protocolMagic, protocolVersion } from "../../src/constants.ts";
import { DruvaaError } from "../../src/errors.ts";
import { ProtocolError } from "../../src/protocol/errors.ts";
import { decodeFrame, encodeFrameBytes, type Frame } from "../../src/protocol/frame.ts";
import {
  buildHello, buildHelloAck, checkHelloAck, checkPeerHello, clientHandshake, commonFeatures, serverHandshake, type MessageLink,
} from "../../src/protocol/handshake.ts";
import type { HelloMessage, Message } from "../../src/protocol/messages.ts";
import { codeOf } from "./helpers.ts";


async function codeOfAsync(run: Promise<unknown>): Promise<string> {
  try {
    await run;
  } catch (error) {
    expect(error).toBeInstanceOf(DruvaaError);
    return (error as DruvaaError).code;
  }
  return "none";
}

/** Two in-memory ends; every message goes through real encode/decode. receive() times out at once
 * when nothing is queued and the timeout is 0 (what a silent peer looks like). */
function linkPair(): [MessageLink, MessageLink] {
  const queues: Frame[][] = [[], []];
  const waiting: (((frame: Frame) => void) | undefined)[] = [undefined, undefined];
  const end = (self: number): MessageLink => ({
    async send(message: Message, payload?: Uint8Array) {
      const frame = decodeFrame(encodeFrameBytes(message, payload));
      const other = 1 - self;
      const waiter = waiting[other];
      if (waiter !== undefined) {
        waiting[other] = undefined;
        waiter(frame);
      } else queues[other]!.push(frame);
    },
    receive(timeoutMs: number) {
      const frame = queues[self]!.shift();
      if (frame !== undefined) return Promise.resolve(frame);
      if (timeoutMs === 0) return Promise.reject(new DruvaaError("NET_TIMEOUT", "no message"));
      return new Promise((resolve) => (waiting[self] = resolve));
    },
  });
  return [end(0), end(1)];
}

describe("handshake checks", () => {
  const hello = buildHello({ role: "client", nodeId: "host-a", features: ["zstd"] });

  test("a hello from this build passes", () => {
    expect(hello).toEqual({ type: "hello", magic: protocolMagic, version: protocolVersion, role: "client", nodeId: "host-a", features: ["zstd"] });
    expect(codeOf(() => checkPeerHello(hello, ["client"]))).toBe("none");
  });

  test("bad magic -> PROTO_BAD_MAGIC", () => {
    expect(codeOf(() => checkPeerHello({ ...hello, magic: 0x1234 }, ["client"]))).toBe("PROTO_BAD_MAGIC");
  });

  test("wrong version -> PROTO_VERSION, with a hint naming both versions", () => {
    for (const version of [protocolVersion + 1, protocolVersion - 1]) {
      try {
        checkPeerHello({ ...hello, version }, ["client"]);
        throw new Error("accepted another version");
      } catch (error) {
        expect((error as ProtocolError).code).toBe("PROTO_VERSION");
        expect((error as ProtocolError).hint).toContain(`v${version}`);
        expect((error as ProtocolError).hint).toContain(`v${protocolVersion}`);
      }
    }
  });

  test("wrong role -> PROTO_ROLE, naming the roles served", () => {
    try {
      checkPeerHello({ ...hello, role: "replica" }, ["client", "control"]);
      throw new Error("accepted a replica");
    } catch (error) {
      expect((error as ProtocolError).code).toBe("PROTO_ROLE");
      expect((error as ProtocolError).message).toContain("replica");
      expect((error as ProtocolError).hint).toContain("client, control");
    }
  });

  test("a refusing helloAck keeps handshake codes and maps others to PROTO_REFUSED", () => {
    const identity = { role: "staging" as const, nodeId: "stg" };
    expect(codeOf(() => checkHelloAck(buildHelloAck(identity, { code: "PROTO_ROLE", message: "no" }), ["staging"]))).toBe("PROTO_ROLE");
    expect(codeOf(() => checkHelloAck(buildHelloAck(identity, { code: "TOO_MANY_CLIENTS", message: "full" }), ["staging"]))).toBe("PROTO_REFUSED");
    expect(codeOf(() => checkHelloAck(buildHelloAck(identity), ["staging"]))).toBe("none");
    expect(codeOf(() => checkHelloAck(buildHelloAck(identity), ["replica"]))).toBe("PROTO_ROLE");
    // A peer of another version: reported from this side's point of view, refused or not.
    expect(codeOf(() => checkHelloAck({ ...buildHelloAck(identity, { code: "PROTO_VERSION", message: "x" }), version: protocolVersion + 1 }, ["staging"]))).toBe("PROTO_VERSION");
  });

  test("commonFeatures keeps this side's order", () => {
    expect(commonFeatures(["zstd", "aes", "crc"], ["crc", "zstd"])).toEqual(["zstd", "crc"]);
    expect(commonFeatures(undefined, ["zstd"])).toEqual([]);
  });
});

describe("handshake over a link", () => {
  test("client and staging agree; each learns the other's identity", async () => {
    const [clientEnd, serverEnd] = linkPair();
    const [ack, peerHello] = await Promise.all([
      clientHandshake(clientEnd, { role: "client", nodeId: "c1", features: ["zstd"] }, ["staging"]),
      serverHandshake(serverEnd, { role: "staging", nodeId: "s1", features: ["zstd", "aes"] }, ["client"]),
    ]);
    expect(ack.nodeId).toBe("s1");
    expect(ack.accepted).toBe(true);
    expect(peerHello.nodeId).toBe("c1");
    expect(commonFeatures(peerHello.features, ack.features)).toEqual(["zstd"]);
  });

  test("a role the server does not serve is refused on both ends with PROTO_ROLE", async () => {
    const [clientEnd, serverEnd] = linkPair();
    const [clientCode, serverCode] = await Promise.all([
      codeOfAsync(clientHandshake(clientEnd, { role: "replica", nodeId: "r1" }, ["staging"])),
      codeOfAsync(serverHandshake(serverEnd, { role: "staging", nodeId: "s1" }, ["client"])),
    ]);
    expect(serverCode).toBe("PROTO_ROLE");
    expect(clientCode).toBe("PROTO_ROLE");
  });

  test("a peer of another version is refused on both ends with PROTO_VERSION", async () => {
    const [clientEnd, serverEnd] = linkPair();
    const future: HelloMessage = { ...buildHello({ role: "client", nodeId: "c9" }), version: protocolVersion + 1 };
    await clientEnd.send(future);
    expect(await codeOfAsync(serverHandshake(serverEnd, { role: "staging", nodeId: "s1" }, ["client"]))).toBe("PROTO_VERSION");
    const answer = await clientEnd.receive(0);
    expect(answer.message).toMatchObject({ type: "helloAck", accepted: false, error: { code: "PROTO_VERSION" } });
  });

  test("a first message other than hello is PROTO_UNEXPECTED; an error message is PROTO_REFUSED", async () => {
    const [clientEnd, serverEnd] = linkPair();
    await clientEnd.send({ type: "ping", nonce: 1 });
    expect(await codeOfAsync(serverHandshake(serverEnd, { role: "staging", nodeId: "s1" }, ["client"]))).toBe("PROTO_UNEXPECTED");
    const [otherClient, otherServer] = linkPair();
    await otherServer.send({ type: "error", code: "SHUTTING_DOWN", message: "bye" });
    expect(await codeOfAsync(clientHandshake(otherClient, { role: "client", nodeId: "c1" }, ["staging"]))).toBe("PROTO_REFUSED");
  });

  test("a silent peer is PROTO_HANDSHAKE_TIMEOUT", async () => {
    const [, serverEnd] = linkPair();
    expect(await codeOfAsync(serverHandshake(serverEnd, { role: "staging", nodeId: "s1" }, ["client"], 0))).toBe("PROTO_HANDSHAKE_TIMEOUT");
  });
});
