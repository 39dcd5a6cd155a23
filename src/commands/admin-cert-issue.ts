/**
 * `druvaa admin cert issue`: a node certificate and a new key, signed by the CA. The certificate
 * names the node's role and, for a client, the devices it may write (src/tls/identity.ts). Writes
 * OUT/NAME.pem and OUT/NAME.key (mode 0600); refuses to overwrite them without --force.
 */
import { command, jsonFlag, output, repeatedFlag } from "../cli-support.ts";
import { usageError } from "../errors.ts";
import { caDirDefault, certValidityDaysDefault } from "../tls/constants.ts";
import { issueToFiles, loadCaDir } from "../tls/ca-store.ts";
import { certRoles, checkDevices, checkHosts, checkNodeName, isCertRole } from "../tls/identity.ts";
import { caDirFlag, parseDays } from "./admin-support.ts";

export default command({
  meta: { name: "issue", description: "Issue a node certificate and key for a role (client, staging, replica, panel, admin)" },
  args: {
    role: { type: "string", valueHint: certRoles.join("|"), required: true, description: "what the node is; peers accept only the roles they expect" },
    name: { type: "string", valueHint: "NAME", required: true, description: "the node's name (commonName; also the output file names NAME.pem, NAME.key)" },
    device: { type: "string", valueHint: "NAME", description: "a device this client may write (repeat for more; '*' for every device); clients only" },
    host: { type: "string", valueHint: "HOST", description: "a DNS name or IP address of the node, added to the certificate (repeat for more)" },
    days: { type: "string", valueHint: "N", description: `how long the certificate is valid (default ${certValidityDaysDefault} days, or until the CA expires if sooner)` },
    dir: caDirFlag,
    out: { type: "string", valueHint: "DIR", description: "where to write NAME.pem and NAME.key (default: the current directory)" },
    force: { type: "boolean", description: "overwrite existing NAME.pem / NAME.key in OUT" },
    json: jsonFlag,
  },
  examples: [
    "druvaa admin cert issue --role staging --name staging1 --host staging1.example.com --out /tmp/certs",
    "druvaa admin cert issue --role client --name db1 --device disk0 --device disk1 --json",
    "druvaa admin cert issue --role client --name backup --device '*' --days 90 --dir ./ca --out ./certs",
  ],
  async run({ args, rawArgs }) {
    if (!isCertRole(args.role)) throw usageError(`--role "${args.role}" is not a druvaa role`, `Use one of: ${certRoles.join(", ")}`);
    const name = checkNodeName(args.name, "--name");
    const devices = checkDevices(repeatedFlag(rawArgs, "device"));
    if (args.role === "client" && devices.length === 0) throw usageError("a client certificate needs the devices it may write", "Add --device NAME (repeat for more), or --device '*' for every device");
    if (args.role !== "client" && devices.length > 0) throw usageError(`--device is for client certificates; a ${args.role} certificate lists no devices`, "Leave out --device, or use --role client");
    const hosts = checkHosts(repeatedFlag(rawArgs, "host"));
    const requestedDays = args.days === undefined ? undefined : parseDays(args.days, certValidityDaysDefault);
    const stored = await loadCaDir(args.dir ?? caDirDefault);
    const now = new Date();
    // Without --days: the default, cut to the CA's remaining life (an explicit --days past it is refused).
    const caDaysLeft = Math.floor((stored.ca.anchor.certificate.notAfter.getTime() - now.getTime()) / 86_400_000);
    const days = requestedDays ?? Math.max(1, Math.min(certValidityDaysDefault, caDaysLeft));
    const report = await issueToFiles(stored, { role: args.role, name, devices, hosts }, { days, outDir: args.out ?? ".", force: args.force === true, now });
    output(args.json, { ok: true, ...report }, () => [
      `issued ${report.role} certificate "${report.name}", serial ${report.serial}, valid until ${report.notAfter}`,
      `  certificate  ${report.certFile}`,
      `  key          ${report.keyFile}   mode 0600`,
      ...(report.devices.length > 0 ? [`  devices      ${report.devices.join(", ")}`] : []),
      ...(report.hosts.length > 0 ? [`  hosts        ${report.hosts.join(", ")}`] : []),
      `on the node: --tls-cert ${report.certFile} --tls-key ${report.keyFile} --tls-ca ${report.caFile}`,
    ].join("\n"));
  },
});
