/**
 * `druvaa admin cert revoke`: adds a certificate's serial to the CA's revocation list (crl.pem,
 * re-signed with crlNumber + 1). Revoking a serial twice changes nothing. A serial this CA has no
 * record of issuing is refused without --force (a typo would otherwise revoke nothing useful).
 * A role given that crl.pem with --crl takes the new list while it runs (src/tls/crl-reload.ts): new
 * connections of the revoked certificate are refused at once, open sessions closed within seconds.
 * Roles on other hosts need the new file copied to the path they were given.
 */
import { command, jsonFlag, output } from "../cli-support.ts";
import { usageError } from "../errors.ts";
import { caDirDefault } from "../tls/constants.ts";
import { loadCaDir, normalizeSerial, revokeSerial, serialOfCertFile } from "../tls/ca-store.ts";
import { caDirFlag } from "./admin-support.ts";

export default command({
  meta: { name: "revoke", description: "Revoke a node certificate: add its serial to the CA's revocation list (crl.pem)" },
  args: {
    serial: { type: "string", valueHint: "HEX", description: "the certificate's serial number (as printed by cert issue, or openssl x509 -serial)" },
    cert: { type: "string", valueHint: "FILE", description: "the certificate file to revoke (instead of --serial)" },
    dir: caDirFlag,
    force: { type: "boolean", description: "revoke a serial this CA has no record of issuing" },
    json: jsonFlag,
  },
  examples: [
    "druvaa admin cert revoke --serial 4f3a9c0e21d7b6a85e0f1c2d3b4a5968",
    "druvaa admin cert revoke --cert /tmp/certs/db1.pem --dir ./ca --json",
  ],
  async run({ args }) {
    if ((args.serial === undefined) === (args.cert === undefined)) throw usageError("give exactly one of --serial HEX or --cert FILE", "e.g. druvaa admin cert revoke --cert db1.pem");
    const stored = await loadCaDir(args.dir ?? caDirDefault);
    const serial = args.serial !== undefined ? normalizeSerial(args.serial) : await serialOfCertFile(stored, args.cert!);
    const report = await revokeSerial(stored, serial, { now: new Date(), force: args.force === true });
    output(args.json, { ok: true, ...report }, () => report.alreadyRevoked
      ? `serial ${report.serial} was already revoked on ${report.revokedAt}; ${report.crlFile} unchanged`
      : [
        `revoked serial ${report.serial}: ${report.crlFile} now lists ${report.revokedCount} (CRL number ${report.crlNumber})`,
        "next: copy it to every node that checks peers (--crl), over the file they were given: they reload it while running (no restart)",
      ].join("\n"));
  },
});
