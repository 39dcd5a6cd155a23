/** Test PKI: CAs, node certificates (also expired ones) and TLS options, built in memory. */
import { logger } from "../../src/log.ts";
import { createCa, issueCertificate, revocationListPem, type CertificateAuthority, type IssuedCertificate } from "../../src/tls/ca.ts";
import type { CertRole, HostName } from "../../src/tls/identity.ts";
import type { TransportTls } from "../../src/tls/transport-tls.ts";

const dayMs = 86_400_000;

export interface TestPki {
  ca: CertificateAuthority;
  issue(role: CertRole, name: string, options?: { devices?: string[]; hosts?: HostName[]; notBefore?: Date; notAfter?: Date }): IssuedCertificate;
  /** The CA's CRL listing `serials`. */
  crl(serials: string[]): string;
  /** TLS options for a node holding `issued`. */
  tls(issued: IssuedCertificate, expectRole?: CertRole | CertRole[], crl?: string): TransportTls;
}

export function testPki(name = "test-ca", caDays = 30): TestPki {
  const now = new Date();
  const ca = createCa(name, { now, days: caDays });
  return {
    ca,
    issue(role, nodeName, options = {}) {
      const request = { role, name: nodeName, devices: options.devices ?? (role === "client" ? ["sda"] : []), hosts: options.hosts ?? [] };
      if (options.notBefore !== undefined || options.notAfter !== undefined) {
        return issueCertificate(ca, request, { validity: { notBefore: options.notBefore ?? new Date(now.getTime() - dayMs), notAfter: options.notAfter ?? new Date(now.getTime() + dayMs) } });
      }
      return issueCertificate(ca, request, { now, days: 7 });
    },
    crl(serials) {
      return revocationListPem(ca, serials.map((serial) => ({ serial, revokedAt: now })), serials.length + 1, now);
    },
    tls(issued, expectRole, crl) {
      return { cert: issued.certPem, key: issued.keyPem, ca: ca.certPem, crl, expectRole };
    },
  };
}

/** Collects what a tagged logger reports while `body` runs (warn/error/info lines). */
export async function capturingLogs<T>(tag: string, body: (lines: string[]) => Promise<T>): Promise<T> {
  const lines: string[] = [];
  const reporter = { log: (entry: { type: string; args: unknown[] }) => lines.push(`${entry.type}: ${entry.args.map(String).join(" ")}`) };
  logger(tag).addReporter(reporter);
  try {
    return await body(lines);
  } finally {
    logger(tag).removeReporter(reporter);
  }
}
