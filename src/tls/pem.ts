/**
 * PEM armour (RFC 7468): base64 DER between "-----BEGIN LABEL-----" and "-----END LABEL-----".
 * Certificates, revocation lists and keys are stored and exchanged as PEM, the form Bun's TLS
 * options and openssl read.
 */
import { DruvaaError, exitCodes } from "../errors.ts";

export function toPem(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der).toString("base64");
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** The first block with `label` in `text`, decoded; `what` names the source in the error. */
export function fromPem(text: string, label: string, what: string): Uint8Array {
  const match = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]*?)-----END ${label}-----`).exec(text);
  const first = match === null ? undefined : new Uint8Array(Buffer.from(match[1]!.replace(/\s+/g, ""), "base64"));
  if (first === undefined || first.length === 0) {
    throw new DruvaaError("TLS_BAD_PEM", `${what}: no "${label}" PEM block found`, `Give a PEM file (it starts with -----BEGIN ${label}-----)`, exitCodes.usage);
  }
  return first;
}
