/**
 * `druvaa admin ca init`: makes the CA directory — an ECDSA P-256 key (mode 0600), a self-signed
 * CA certificate and an empty signed revocation list (src/tls/ca-store.ts). Refuses to replace
 * an existing CA without --force: every certificate the old one issued would stop being trusted.
 */
import { command, jsonFlag, output } from "../cli-support.ts";
import { caDirDefault, caValidityDaysDefault } from "../tls/constants.ts";
import { initCaDir } from "../tls/ca-store.ts";
import { checkNodeName } from "../tls/identity.ts";
import { caDirFlag, parseDays } from "./admin-support.ts";

export default command({
  meta: { name: "init", description: "Create a certificate authority: key (mode 0600), self-signed certificate, empty revocation list" },
  args: {
    dir: caDirFlag,
    name: { type: "string", valueHint: "NAME", description: "the CA's name (its certificate's commonName; default druvaa-ca)" },
    days: { type: "string", valueHint: "N", description: `how long the CA certificate is valid (default ${caValidityDaysDefault} days)` },
    force: { type: "boolean", description: "replace an existing CA in DIR (every certificate it issued stops being trusted)" },
    json: jsonFlag,
  },
  examples: [
    "druvaa admin ca init                                   # in /etc/druvaa/ca",
    "druvaa admin ca init --dir ./ca --name acme-dr --days 3650 --json",
  ],
  async run({ args }) {
    const name = checkNodeName(args.name ?? "druvaa-ca", "--name");
    const days = parseDays(args.days, caValidityDaysDefault);
    const report = await initCaDir({ dir: args.dir ?? caDirDefault, name, days, force: args.force === true, now: new Date() });
    output(args.json, { ok: true, ...report }, () => [
      `created CA "${report.name}" in ${report.dir}, valid until ${report.notAfter}`,
      `  certificate  ${report.certFile}   copy to every node (--tls-ca)`,
      `  key          ${report.keyFile}   mode 0600: keep it on this host only`,
      `  revocations  ${report.crlFile}  copy to every node (--crl)`,
      `  sha256       ${report.fingerprint}`,
      `next: druvaa admin cert issue --dir ${report.dir} --role staging --name NAME`,
    ].join("\n"));
  },
});
