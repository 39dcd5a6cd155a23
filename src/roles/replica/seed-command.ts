/**
 * `druvaa replica seed --device NAME --from IMAGE`: imports a backup of the primary into a replica
 * device that awaits its seed (media initial sync, media-seed.ts), through the running replica's
 * control port (POST /seed), so replication goes on meanwhile and no newer block is overwritten.
 * Waits until the import is done; progress on a TTY; --json for scripts. Exit 0 when seeded, 4
 * when refused (the device does not await a seed, the image has the wrong size), 3 when the image
 * or device is not found, 5 on --timeout. A replica running with TLS wants an admin certificate
 * (--tls-cert/--tls-key/--tls-ca): its control port is HTTPS (commands/control-client.ts).
 */
import { resolve } from "node:path";
import { command, jsonFlag, output } from "../../cli-support.ts";
import { replicaControlPortDefault } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { controlRequest, fetchStatus } from "../../commands/status-format.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../link-security.ts";
import { formatBytes, parseDurationMs } from "../../units.ts";
import type { SeedProgress } from "./media-seed.ts";

const pollMs = 300;

export interface SeedStatus extends SeedProgress {
  state: "awaiting" | "seeding" | "done" | "failed";
  error?: { code: string; message: string; hint?: string };
}

function seedOf(status: Record<string, unknown>, device: string): SeedStatus | undefined {
  const seeds = (status.seeds ?? []) as SeedStatus[];
  return seeds.find((seed) => seed.device === device);
}

export default command({
  meta: { name: "seed", description: "Import a backup image into a replica device that awaits its seed (media initial sync), while replication goes on" },
  args: {
    device: { type: "string", valueHint: "NAME", required: true, description: "the replica device (started with --await-seed NAME)" },
    from: { type: "string", valueHint: "IMAGE", required: true, description: "backup image of the primary volume, taken after replication started (a path on the replica host)" },
    connect: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaControlPortDefault}`, description: `the replica's control port (default 127.0.0.1:${replicaControlPortDefault})` },
    timeout: { type: "string", valueHint: "DURATION", default: "24h", description: "give up waiting (exit 5) after this long; the import goes on" },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa replica seed --device disk0 --from /mnt/backup/disk0.img",
    "druvaa replica seed --device disk0 --from /dev/sdx --connect 10.0.0.9:6004 --json",
    "druvaa replica seed --device disk0 --from /mnt/backup/disk0.img --tls-cert /etc/druvaa/tls/ops.pem --tls-key /etc/druvaa/tls/ops.key --tls-ca /etc/druvaa/tls/ca.pem   # a replica running with TLS",
  ],
  async run({ args }) {
    const timeoutMs = parseDurationMs(args.timeout, "--timeout");
    const tls = await resolveControlToolSecurity(args);
    const started = performance.now();
    const image = resolve(args.from);
    const response = await controlRequest(args.connect, "/seed", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ device: args.device, from: image }) }, replicaControlPortDefault, tls);
    if (!response.ok) {
      const body = (await response.json().catch(() => ({}))) as { error?: { code?: string; message?: string; hint?: string; exitCode?: number } };
      if (response.status === 404 && body.error?.code === "NOT_FOUND" && body.error.message?.includes("no such endpoint")) {
        throw new DruvaaError("NOT_A_REPLICA", `${args.connect} is not a druvaa replica's control port (no POST /seed)`, `Give the replica's control port (druvaa replica apply --control, default ${replicaControlPortDefault})`, exitCodes.usage);
      }
      const code = body.error?.code ?? "SEED_REFUSED";
      const exitCode = code === "NOT_FOUND" || code === "DEVICE_UNKNOWN" ? exitCodes.notFound : code.startsWith("SEED_") ? exitCodes.refused : exitCodes.failure;
      throw new DruvaaError(code, body.error?.message ?? `the replica refused the seed (HTTP ${response.status})`, body.error?.hint, exitCode);
    }
    const tty = !args.json && process.stderr.isTTY === true;
    let seed: SeedStatus | undefined;
    for (;;) {
      seed = seedOf(await fetchStatus(args.connect, replicaControlPortDefault, tls), args.device);
      if (seed === undefined) throw new DruvaaError("SEED_LOST", `the replica no longer reports a seed of ${args.device}`, "Was it restarted? Run the seed again: it only copies blocks replication never wrote", exitCodes.failure);
      if (seed.state === "done") break;
      if (seed.state === "failed") {
        if (tty) process.stderr.write("\n");
        const error = seed.error ?? { code: "SEED_FAILED", message: "the import failed" };
        throw new DruvaaError(error.code, error.message, error.hint ?? "Fix the cause and run the seed again: it is safe to repeat", exitCodes.failure);
      }
      if (performance.now() - started > timeoutMs) {
        if (tty) process.stderr.write("\n");
        throw new DruvaaError("TIMEOUT", `the seed of ${args.device} is not done after ${args.timeout} (${formatBytes(seed.copiedBytes + seed.skippedBytes)} of ${formatBytes(seed.totalBytes)})`, "It goes on in the replica; follow it with druvaa status --connect REPLICA:6004", exitCodes.timeout);
      }
      if (tty) process.stderr.write(`\rseed ${args.device}: ${formatBytes(seed.copiedBytes + seed.skippedBytes)} of ${formatBytes(seed.totalBytes)}   `);
      await Bun.sleep(pollMs);
    }
    if (tty) process.stderr.write("\n");
    const seconds = (performance.now() - started) / 1000;
    const done = seed;
    output(
      args.json,
      { ok: true, device: args.device, from: image, copiedBytes: done.copiedBytes, skippedBytes: done.skippedBytes, totalBytes: done.totalBytes, seconds },
      () => `seeded ${args.device} from ${image}: ${formatBytes(done.copiedBytes)} copied, ${formatBytes(done.skippedBytes)} kept (written by replication since the media point), ${seconds.toFixed(1)} s`,
    );
  },
});
