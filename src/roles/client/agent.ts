/**
 * `druvaa client agent`: the client host's managed component (docs/panel.md "Client host"). It
 * takes its attachments from the panel (two-phase commit, src/roles/managed/config-routes.ts) and
 * runs each enabled one as a `druvaa client attach` child (agent-children.ts), with the agent's own
 * link-security flags and node id. Its control port serves GET /config and the prepare/commit/abort
 * routes, GET /status (every attachment with its child's status), GET /probe?path=PATH, and the
 * panel's restore and failback jobs (POST /jobs, GET /jobs: agent-jobs.ts). Under TLS the jobs run
 * with a certificate of their own, admin or panel (--job-tls-cert/--job-tls-key, agent-tls.ts): the
 * ports they call take no client certificate, so without one they are refused.
 * On SIGTERM/SIGINT every child is stopped (SIGTERM, waited for) before the agent exits.
 */
import { attachmentRoutes } from "./agent-proxy.ts";
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { command, jsonFlag } from "../../cli-support.ts";
import { startControlServer } from "../../io/control-server.ts";
import { parseAddress } from "../../io/transport.ts";
import { logger } from "../../log.ts";
import { statusHeader } from "../server-support.ts";
import { announceReady, nodeIdFlag, resolveStateDir, untilSignalled } from "../common.ts";
import { linkSecurityArgs, resolveLinkSecurity } from "../link-security.ts";
import { ManagedConfig, type ManagedRole } from "../managed/config-routes.ts";
import { emptyAgentConfig, validateAgentConfig, type AgentConfig } from "./agent-config.ts";
import { AgentChildren, reapOrphans } from "./agent-children.ts";
import { AgentJobs } from "./agent-jobs.ts";
import { probeRoute } from "./agent-probe.ts";
import { childSecurityArgs, jobTlsArgs, resolveJobSecurity } from "./agent-tls.ts";

const log = logger("client:agent");

export default command({
  meta: { name: "agent", description: "Run this host's attachments as the panel configures them (the client host's managed component)" },
  args: {
    control: { type: "string", valueHint: "HOST:PORT", default: "127.0.0.1:6007", description: "control port (config from the panel, GET /status, GET /probe): HTTPS for admin and panel certificates with TLS, plain HTTP on loopback with --insecure" },
    "state-dir": { type: "string", valueHint: "DIR", description: "where the agent keeps its config, and each attachment its state and log (default /var/lib/druvaa/client as root)" },
    "node-id": { type: "string", valueHint: "ID", description: "this host's name at staging, for every attachment (default: the host name)" },
    ...linkSecurityArgs,
    ...jobTlsArgs,
    config: { type: "string", valueHint: "FILE", description: "take flags from this TOML file (keys: the long flag names, e.g. /etc/druvaa/agent.toml); flags given here override its keys. Check one with: druvaa admin config check FILE" },
    json: jsonFlag,
  },
  examples: [
    "druvaa client agent --control 0.0.0.0:6007 --state-dir /var/lib/druvaa/client --tls-cert /etc/druvaa/tls/db1.pem --tls-key /etc/druvaa/tls/db1.key --tls-ca /etc/druvaa/tls/ca.pem --crl /etc/druvaa/tls/crl.pem --job-tls-cert /etc/druvaa/tls/db1-jobs.pem --job-tls-key /etc/druvaa/tls/db1-jobs.key",
    "druvaa client agent --control 127.0.0.1:6007 --state-dir /tmp/agent --insecure      # a lab on one machine",
    "curl -s 'http://127.0.0.1:6007/probe?path=/dev/sdb'      # size, kind and holder of a device",
  ],
  async run({ args }) {
    const controlAddress = parseAddress(args.control, 6007);
    const stateDir = resolve(resolveStateDir(args["state-dir"], "client"));
    const nodeId = nodeIdFlag(args["node-id"]);
    const security = await resolveLinkSecurity(args, { links: [], controls: [controlAddress] });
    const jobSecurity = await resolveJobSecurity(args, new Date());
    if (jobSecurity.certificate !== null) log.info(`restore and failback jobs run with ${jobSecurity.certificate.role} certificate "${jobSecurity.certificate.name}" (serial ${jobSecurity.certificate.serial}, valid until ${jobSecurity.certificate.notAfter})`);
    else if (security.mode === "tls") log.warn("no --job-tls-cert/--job-tls-key: the panel's restore and failback jobs will be refused (JOB_CERT_MISSING); the attachments run as configured");
    await mkdir(stateDir, { recursive: true });

    const children: AgentChildren = new AgentChildren({
      stateDir,
      nodeId,
      securityArgs: childSecurityArgs(args),
      // An attachment that failed to start at a commit and came up on a retry: the config runs after all.
      onRestarted: () => {
        if (children.allRunning(jobs.withHeld(managed.config))) managed.recovered();
      },
    });
    // The panel's restore and failback jobs (agent-jobs.ts); a failback holds its attachment stopped, a config committed meanwhile included.
    const jobs: AgentJobs = new AgentJobs({
      stateDir,
      security: jobSecurity,
      config: () => managed.config,
      reapply: () => children.apply(jobs.withHeld(managed.config)),
      childPid: async (name) => (await children.status(managed.config)).find((attachment) => attachment.name === name)?.pid ?? null,
    });
    const role: ManagedRole<AgentConfig> = {
      empty: emptyAgentConfig,
      validate: (raw) => validateAgentConfig(raw, { stateDir, allowRemoteExport: args["insecure-allow-remote"] === true }),
      apply: (next) => children.apply(jobs.withHeld(next)),
    };
    const managed = await ManagedConfig.open(stateDir, role);
    const reaped = await reapOrphans(stateDir);
    if (reaped > 0) log.warn(`stopped ${reaped} attachment process(es) an earlier agent left running`);

    const started = Date.now();
    const control = await startControlServer(controlAddress, {
      "/status": async () => ({
        ...statusHeader({ role: "client", nodeId }, started, Date.now()),
        agent: true,
        security: security.describe,
        jobCertificate: jobSecurity.certificate,
        managed: managed.status(),
        attachments: await children.status(managed.config),
      }),
      "/probe": probeRoute,
      ...attachmentRoutes(children),
      ...jobs.routes(),
      ...managed.routes(),
    }, "client:agent", { tls: security.forControl() });
    try {
      await managed.start();
      const applied = managed.status().applied as { error?: { message: string } };
      // The signal handler goes in before the ready line: a parent that signals on reading it must not find it missing (registered after the line, Bun may not have it in place yet).
      const stopped = untilSignalled("client", async () => {
        await jobs.stopAll();
        await children.stopAll();
        log.info("every attachment stopped");
      });
      announceReady(args.json, "client", { agent: true, nodeId, control: control.address, stateDir, configVersion: managed.version, ...(applied.error === undefined ? {} : { applyError: applied.error.message }) });
      await stopped;
    } finally {
      await jobs.stopAll();
      await children.stopAll();
      await control.stop();
    }
  },
});
