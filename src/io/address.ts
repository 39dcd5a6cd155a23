/**
 * Network addresses as users type them ("10.0.0.5:6001", ":6001", "[::1]:6001",
 * "unix:/run/druvaa.sock") and as druvaa prints them. Parsing is an edge: bad input becomes
 * NET_BAD_ADDRESS with a hint, never a crash.
 */
import { assert } from "../assert.ts";
import { unixSocketPathBytesMax } from "../constants.ts";
import { DruvaaError, exitCodes } from "../errors.ts";

export type Address = { kind: "tcp"; host: string | undefined; port: number } | { kind: "unix"; path: string };

/**
 * Parses "host:port", ":port", "host", "[ipv6]:port" or "unix:/path". A missing port is
 * `defaultPort`; a missing host means all interfaces when listening, 127.0.0.1 when connecting.
 * Bad input is a NET_BAD_ADDRESS error (exit code 2) with a hint.
 */
export function parseAddress(text: string, defaultPort: number): Address {
  assert(Number.isInteger(defaultPort) && defaultPort >= 0 && defaultPort <= 65535, "default port is a port");
  const bad = (why: string, hint = `Use host:port, :port, [ipv6]:port or unix:/path, e.g. 10.0.0.5:${defaultPort} or unix:/run/druvaa.sock`) =>
    new DruvaaError("NET_BAD_ADDRESS", `address "${text}": ${why}`, hint, exitCodes.usage);
  const trimmed = text.trim();
  if (trimmed === "") throw bad("is empty");
  if (trimmed.startsWith("unix:")) {
    const path = trimmed.slice("unix:".length);
    if (path === "") throw bad("has no socket path after unix:");
    if (path.includes("\0")) throw bad("contains a NUL byte");
    if (Buffer.byteLength(path) > unixSocketPathBytesMax) throw bad(`socket path is longer than ${unixSocketPathBytesMax} bytes`, "Use a shorter path, e.g. unix:/run/druvaa/staging.sock");
    return { kind: "unix", path };
  }
  let host: string | undefined;
  let portText: string | undefined;
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::(.*))?$/.exec(trimmed);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
    if (!host.includes(":")) throw bad("brackets are for IPv6 addresses only");
  } else {
    const parts = trimmed.split(":");
    if (parts.length > 2) throw bad("has more than one colon", `Put IPv6 addresses in brackets, e.g. [::1]:${defaultPort}`);
    host = parts[0] === "" ? undefined : parts[0];
    portText = parts[1];
    if (host !== undefined && (host.length > 253 || !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host))) throw bad(`"${host}" is not a host name or IPv4 address`);
  }
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw bad(`port "${portText}" is not a number from 0 to 65535`);
    port = Number(portText);
  }
  return { kind: "tcp", host, port };
}

export function formatAddress(address: Address): string {
  if (address.kind === "unix") return `unix:${address.path}`;
  const host = address.host === undefined ? "" : address.host.includes(":") ? `[${address.host}]` : address.host;
  return `${host}:${address.port}`;
}
