/**
 * `druvaa demo`: a whole client → staging → replica system on local image files, as real child
 * processes on loopback. Writes a mixed workload through the client's NBD export, shows live
 * status, waits until the replica has applied everything, restores the replica and checks it
 * equals the primary byte for byte. Cleans up its processes on every exit path, Ctrl-C included.
 * Every link is TLS 1.3 with a CA of the demo's own; the control ports are HTTPS too, and the demo
 * reads them (live status, --wait-drained) with the admin certificate it issued itself.
 * Recovery too: the replica keeps a point-in-time journal, the demo marks a checkpoint, and a fast
 * snapshot of that label, served over NBD by the replica, must equal the restored image.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { connectNbd } from "../nbd/client.ts";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { DruvaaError } from "../errors.ts";
import { sha256File } from "../io/file-hash.ts";
import { protectReserveBytesDefault } from "../protect-constants.ts";
import { replicaDeviceSizeBytes } from "../sizing.ts";
import { fetchStatus, type StagingStatus } from "../commands/status-format.ts";
import { resolveControlToolSecurity } from "../roles/link-security.ts";
import { formatBytes } from "../units.ts";
import { runDruvaa, startRole, type RoleProcess } from "./processes.ts";
import { runWorkload, type WorkloadStep } from "./workload.ts";

export interface DemoOptions {
  sizeBytes: number;
  dir?: string;
  keep: boolean;
  json: boolean;
  say: (line: string) => void;
  /** Rewrites the live status line (TTY), or undefined to print periodic lines. */
  live?: (line: string) => void;
}

export interface DemoResult {
  ok: boolean;
  workDir: string;
  sizeBytes: number;
  steps: WorkloadStep[];
  bytesWritten: number;
  writeSeconds: number;
  drainSeconds: number;
  headLsn: number;
  appliedLsn: number;
  primarySha256: string;
  restoredSha256: string;
  verified: boolean;
  /** The checkpoint the demo marked, and the SHA-256 of a fast snapshot of it (equals restoredSha256). */
  checkpoint: { label: string; lsn: number; points: number; snapshotSha256: string };
  pids: Record<string, number>;
}

async function createImage(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, "w");
  await handle.truncate(sizeBytes);
  await handle.close();
}

function statusLine(staging: StagingStatus, client: Record<string, unknown>): string {
  const wrl = staging.wrls[0];
  const devices = (client.devices as { bytesWritten?: number; inflightWrites?: number }[] | undefined) ?? [];
  const written = devices.reduce((sum, d) => sum + (d.bytesWritten ?? 0), 0);
  if (!wrl) return `written ${formatBytes(written)}`;
  const applied = wrl.replica?.appliedLsn ?? 0;
  return `written ${formatBytes(written)} | WRL ${((wrl.fillRatio ?? 0) * 100).toFixed(1)}% full, head LSN ${wrl.headLsn}, applied ${applied} | lag ${formatBytes(wrl.lagBytes ?? 0)}, ${(wrl.lagSeconds ?? 0).toFixed(1)} s | replica ${wrl.replica?.connected ? "connected" : "not connected"}`;
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const { say } = options;
  const workDir = options.dir ? resolve(options.dir) : mkdtempSync(join(tmpdir(), "druvaa-demo-"));
  mkdirSync(workDir, { recursive: true });
  const roles: RoleProcess[] = [];
  let interrupted = false;
  const cleanup = async () => {
    await Promise.allSettled(roles.reverse().map((role) => role.stop()));
    if (!options.keep) rmSync(workDir, { recursive: true, force: true });
  };
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    say("\ninterrupted: stopping the demo's processes…");
    void cleanup().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let poller: ReturnType<typeof setInterval> | undefined;
  try {
    const size = options.sizeBytes;
    const paths = { primary: join(workDir, "primary.img"), replica: join(workDir, "replica.img"), wrl: join(workDir, "wrl.img"), restored: join(workDir, "restored.img"), socket: join(workDir, "disk0.sock") };
    say(`work directory ${workDir}`);
    await createImage(paths.primary, size);
    // The replica keeps its head swapped to its end (protected-device.ts): primary size + reserve.
    await createImage(paths.replica, replicaDeviceSizeBytes(size, protectReserveBytesDefault));
    const wrlSize = Math.max(64 * 1024 * 1024, 2 * size);
    await runDruvaa(["wrl", "create", "--primary", paths.wrl, "--size", String(wrlSize)]);
    say(`created a ${formatBytes(size)} primary image, a replica image with ${formatBytes(protectReserveBytesDefault)} more for its swapped header sectors, and a ${formatBytes(wrlSize)} write log`);

    // Every link is TLS 1.3 with mutual authentication: a CA of the demo's own, one certificate per role.
    const certificates = await demoCertificates(workDir);
    const tls = (node: DemoNode) => Object.entries(certificates(node)).flatMap(([flag, path]) => [`--${flag}`, path]);
    const controlTls = await resolveControlToolSecurity(certificates("admin"));
    say(`made a CA and certificates for replica, staging, client (device disk0) and admin (restore, HTTPS status) in ${join(workDir, "tls")}`);
    const replica = await startRole("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${paths.replica}`, "--state-dir", join(workDir, "replica-state"), "--retention", "1h", ...tls("replica")]);
    roles.push(replica);
    const staging = await startRole("staging", ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `wrl0=${paths.wrl}`, "--replica", `wrl0=${replica.ready.listen}`, "--state-dir", join(workDir, "staging-state"), ...tls("staging")]);
    roles.push(staging);
    const client = await startRole("client", ["client", "attach", "--device", `disk0=${paths.primary}`, "--staging", String(staging.ready.listen), "--wrl", "wrl0", "--export", `unix:${paths.socket}`, "--control", "127.0.0.1:0", "--state-dir", join(workDir, "client-state"), ...tls("client")]);
    roles.push(client);
    say(`started replica (pid ${replica.pid}), staging (pid ${staging.pid}) and client (pid ${client.pid}); NBD export ${String((client.ready.exports as Record<string, string>).disk0)}`);

    const stagingControl = String(staging.ready.control);
    const clientControl = String(client.ready.control);
    let lastPrinted = 0;
    const showStatus = async () => {
      try {
        const [stagingStatus, clientStatus] = await Promise.all([fetchStatus(stagingControl, undefined, controlTls), fetchStatus(clientControl, undefined, controlTls)]);
        const line = statusLine(stagingStatus as StagingStatus, clientStatus);
        if (options.live) options.live(line);
        else if (Date.now() - lastPrinted >= 2000) {
          lastPrinted = Date.now();
          say(`  ${line}`);
        }
      } catch {
        // a status poll racing shutdown is not an error of the demo
      }
    };
    poller = setInterval(() => void showStatus(), 250);

    const writeStarted = performance.now();
    const steps = await runWorkload(
      { uri: String((client.ready.exports as Record<string, string>).disk0), address: `unix:${paths.socket}`, exportName: "disk0", sizeBytes: size, workDir },
      (step) => {
        options.live?.("");
        say(`  ${step.tool}: ${step.what} — ${formatBytes(step.bytes)} in ${(step.ms / 1000).toFixed(2)} s`);
      },
    );
    const writeSeconds = (performance.now() - writeStarted) / 1000;

    const drainStarted = performance.now();
    say("waiting until the replica has applied everything logged…");
    await runDruvaa(["status", "--connect", stagingControl, "--wait-drained", "--timeout", "120", ...tls("admin")]);
    const drainSeconds = (performance.now() - drainStarted) / 1000;
    clearInterval(poller);
    poller = undefined;
    await showStatus();
    options.live?.("");
    const finalStatus = (await fetchStatus(stagingControl, undefined, controlTls)) as StagingStatus;
    const wrl = finalStatus.wrls[0]!;
    say(`drained in ${drainSeconds.toFixed(2)} s: head LSN ${wrl.headLsn}, applied LSN ${wrl.replica?.appliedLsn}`);

    // An application-consistent point (an application would freeze first), through the log.
    const marked = JSON.parse(await runDruvaa(["checkpoint", "--client", clientControl, "--label", "demo-end", "--json", ...tls("admin")])) as { checkpoints: { lsn: number }[] };
    await runDruvaa(["status", "--connect", stagingControl, "--wait-drained", "--timeout", "120", ...tls("admin")]);
    const checkpointLsn = marked.checkpoints[0]!.lsn;
    say(`marked checkpoint demo-end at LSN ${checkpointLsn}`);
    await runDruvaa(["restore", "--replica", String(replica.ready.restore), "--device", "disk0", "--to", paths.restored, ...tls("admin")]);
    // Compare the primary as the client sees it: stop the client first so every write is flushed.
    await client.stop();
    const [primarySha256, restoredSha256] = await Promise.all([sha256File(paths.primary, size), sha256File(paths.restored, size)]);
    const verified = primarySha256 === restoredSha256;
    say(`restored the replica to ${paths.restored}: sha256 ${restoredSha256.slice(0, 16)}…, primary ${primarySha256.slice(0, 16)}… → ${verified ? "IDENTICAL" : "DIFFERENT"}`);
    if (!verified) throw new DruvaaError("DEMO_VERIFY_FAILED", "the restored replica differs from the primary", `Files kept in ${workDir} for inspection`);
    const checkpoint = await snapshotOfLabel(String(replica.ready.control), "demo-end", join(workDir, "snapshot.sock"), size, tls("admin"));
    say(`replica points: ${checkpoint.points}; a fast snapshot of demo-end (LSN ${checkpoint.lsn}) over NBD: sha256 ${checkpoint.snapshotSha256.slice(0, 16)}… → ${checkpoint.snapshotSha256 === restoredSha256 ? "IDENTICAL to the restore" : "DIFFERENT"}`);
    if (checkpoint.snapshotSha256 !== restoredSha256 || checkpoint.lsn !== checkpointLsn) throw new DruvaaError("DEMO_VERIFY_FAILED", "the snapshot of the checkpoint differs from the restored replica", `Files kept in ${workDir} for inspection`);
    const bytesWritten = steps.reduce((sum, s) => sum + s.bytes, 0);
    return {
      ok: true, workDir, sizeBytes: size, steps, bytesWritten, writeSeconds, drainSeconds,
      headLsn: wrl.headLsn, appliedLsn: wrl.replica?.appliedLsn ?? 0, primarySha256, restoredSha256, verified, checkpoint,
      pids: Object.fromEntries(roles.map((r) => [r.name, r.pid])),
    };
  } catch (error) {
    if (error instanceof DruvaaError && error.code === "DEMO_VERIFY_FAILED") options.keep = true;
    throw error;
  } finally {
    if (poller) clearInterval(poller);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (!interrupted) await cleanup();
  }
}

type DemoNode = "replica" | "staging" | "client" | "admin";

/** A fast snapshot of `label`, exported on `socket`, read whole over NBD and hashed, then released. */
async function snapshotOfLabel(control: string, label: string, socket: string, sizeBytes: number, tls: string[]): Promise<DemoResult["checkpoint"]> {
  const points = JSON.parse(await runDruvaa(["replica", "points", "--connect", control, "--device", "disk0", "--json", ...tls])) as { points: unknown[] };
  const snapshot = JSON.parse(await runDruvaa(["restore", "--control", control, "--device", "disk0", "--snapshot", "--export", `unix:${socket}`, "--at", label, "--json", ...tls])) as { id: number; lsn: number };
  const hash = createHash("sha256");
  const nbd = await connectNbd(`unix:${socket}`);
  try {
    for (let offset = 0; offset < sizeBytes; offset += 4 * 1024 * 1024) hash.update(await nbd.read(offset, Math.min(4 * 1024 * 1024, sizeBytes - offset)));
  } finally {
    await nbd.close();
    await runDruvaa(["restore", "--control", control, "--release", String(snapshot.id), ...tls]);
  }
  return { label, lsn: snapshot.lsn, points: points.points.length, snapshotSha256: hash.digest("hex") };
}

/**
 * A CA in WORKDIR/tls/ca and a certificate per demo node in WORKDIR/tls, made with the same
 * commands an operator runs (druvaa admin ca init, druvaa admin cert issue); returns the TLS
 * files of a node, by flag name.
 */
async function demoCertificates(workDir: string): Promise<(node: DemoNode) => { "tls-cert": string; "tls-key": string; "tls-ca": string; crl: string }> {
  const caDir = join(workDir, "tls", "ca");
  const outDir = join(workDir, "tls");
  await runDruvaa(["admin", "ca", "init", "--dir", caDir, "--name", "druvaa-demo-ca", "--days", "2"]);
  for (const [role, extra] of [["replica", []], ["staging", []], ["client", ["--device", "disk0"]], ["admin", []]] as const) {
    await runDruvaa(["admin", "cert", "issue", "--role", role, "--name", `demo-${role}`, ...extra, "--dir", caDir, "--out", outDir, "--days", "1"]);
  }
  return (node) => ({ "tls-cert": join(outDir, `demo-${node}.pem`), "tls-key": join(outDir, `demo-${node}.key`), "tls-ca": join(caDir, "ca.pem"), crl: join(caDir, "crl.pem") });
}
