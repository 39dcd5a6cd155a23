/**
 * Who a druvaa certificate says its holder is, and how that is written into the certificate.
 *
 * A node certificate's subjectAltName carries:
 *   - exactly one `druvaa://role/<role>` URI: client, staging, replica, panel or admin;
 *   - for a client, one `druvaa://device/<name>` URI per device it may write (the name
 *     percent-encoded), or `druvaa://device/*` for every device;
 *   - optional DNS names and IP addresses (--host), for tools that check host names; druvaa itself
 *     authorizes by role and device, not by host name.
 * The node's name is the subject's commonName; the subject's organizationalUnitName repeats the
 * role for people reading `openssl x509 -text`. Names are validated here, at the edge.
 */
import { isIP } from "node:net";
import { usageError } from "../errors.ts";
import { certDevicesMax, certHostsMax, certNameLengthMax } from "./constants.ts";

export const certRoles = ["client", "staging", "replica", "panel", "admin"] as const;
export type CertRole = (typeof certRoles)[number];

/** The device URI that lets a client write every device. */
export const anyDevice = "*";

export const roleUriPrefix = "druvaa://role/";
export const deviceUriPrefix = "druvaa://device/";

/** What an authenticated peer is allowed to be, read from its verified certificate. */
export interface PeerIdentity {
  readonly role: CertRole;
  /** The subject's commonName, e.g. "db1". */
  readonly name: string;
  /** Devices a client may write; ["*"] for all; empty for other roles. */
  readonly devices: readonly string[];
  /** Serial number, lowercase hex without leading zeros (what `admin cert revoke --serial` takes). */
  readonly serial: string;
  /** SAN DNS names and IP addresses. */
  readonly hosts: readonly string[];
  readonly notAfter: Date;
  /** SHA-256 of the certificate, hex: for logs and audit. */
  readonly fingerprint: string;
}

export function isCertRole(value: string): value is CertRole {
  return (certRoles as readonly string[]).includes(value);
}

export function roleUri(role: CertRole): string {
  return `${roleUriPrefix}${role}`;
}

export function deviceUri(device: string): string {
  return `${deviceUriPrefix}${device === anyDevice ? anyDevice : encodeURIComponent(device)}`;
}

/** The device named by a `druvaa://device/...` URI; undefined for a URI that is not one. */
export function deviceFromUri(uri: string): string | undefined {
  if (!uri.startsWith(deviceUriPrefix)) return undefined;
  const encoded = uri.slice(deviceUriPrefix.length);
  if (encoded === anyDevice) return anyDevice;
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
}

/** True when `identity` may write `device` (its list names it, or is "*"). */
export function allowsDevice(identity: Pick<PeerIdentity, "devices">, device: string): boolean {
  return identity.devices.includes(anyDevice) || identity.devices.includes(device);
}

const namePattern = new RegExp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,${certNameLengthMax - 1}}$`);

/** A node or CA name: used as commonName and as the file name of the issued certificate. */
export function checkNodeName(name: string, flag: string): string {
  if (!namePattern.test(name)) {
    throw usageError(`${flag} "${name}" is not a valid name`, `Use 1..${certNameLengthMax} letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. ${flag} db1)`);
  }
  return name;
}

/** Device names follow the role commands' rule for --device NAME (roles/common.ts), or "*". */
export function checkDevices(devices: readonly string[]): string[] {
  if (devices.length > certDevicesMax) throw usageError(`too many --device flags (${devices.length})`, `List at most ${certDevicesMax}, or use --device '*' for every device`);
  for (const device of devices) {
    if (device !== anyDevice && !namePattern.test(device)) {
      throw usageError(`--device "${device}" is not a valid device name`, `Use the NAME the client attaches with --device NAME=PATH (1..${certNameLengthMax} letters, digits, '.', '_' or '-'), or '*' for every device`);
    }
  }
  return [...new Set(devices)];
}

export type HostName = { kind: "dns"; name: string } | { kind: "ip"; address: string };

/** --host values: IPv4/IPv6 addresses become SAN iPAddress, names SAN dNSName. */
export function checkHosts(hosts: readonly string[]): HostName[] {
  if (hosts.length > certHostsMax) throw usageError(`too many --host flags (${hosts.length})`, `List at most ${certHostsMax}`);
  return hosts.map((host): HostName => {
    if (isIP(host) !== 0) return { kind: "ip", address: host };
    const label = "(?:\\*|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)";
    if (host.length > 253 || !new RegExp(`^${label}(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`).test(host)) {
      throw usageError(`--host "${host}" is neither an IP address nor a DNS name`, "e.g. --host staging1.example.com --host 10.0.0.5");
    }
    return { kind: "dns", name: host.toLowerCase() };
  });
}
