import { command, jsonFlag } from "../cli-support.ts";
import { usageError } from "../errors.ts";
import { formatBytes, parseSizeBytes } from "../units.ts";

export default command({
  meta: { name: "demo", description: "Run a whole client→staging→replica system on local image files: write, replicate, restore, verify" },
  args: {
    size: { type: "string", valueHint: "SIZE", default: "128MiB", description: "size of the protected volume (the replica image gets 1 MiB more: its header sectors are kept swapped at its end)" },
    dir: { type: "string", valueHint: "DIR", description: "work directory for images and state (default: a new temp directory)" },
    keep: { type: "boolean", description: "keep the work directory afterwards (images, WRL, state)" },
    json: jsonFlag,
  },
  examples: [
    "druvaa demo",
    "druvaa demo --size 1GiB --dir /var/tmp/druvaa-demo --keep",
    "druvaa demo --json | jq .verified",
  ],
  async run({ args }) {
    const sizeBytes = parseSizeBytes(args.size, "--size");
    if (sizeBytes < 16 * 1024 * 1024 || sizeBytes % (1024 * 1024) !== 0) throw usageError("--size must be whole MiB and at least 16MiB", "e.g. --size 128MiB");
    const { runDemo } = await import("../demo/run.ts");
    const tty = process.stdout.isTTY === true && !args.json;
    const say = args.json ? (line: string) => process.stderr.write(`${line}\n`) : (line: string) => process.stdout.write(`${line}\n`);
    const live = tty ? (line: string) => process.stdout.write(`\r\u001b[2K${line}`) : undefined;
    const started = performance.now();
    const result = await runDemo({ sizeBytes, dir: args.dir, keep: args.keep === true, json: args.json === true, say, live });
    const seconds = (performance.now() - started) / 1000;
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ ...result, totalSeconds: seconds })}\n`);
      return;
    }
    say("");
    say(`demo done in ${seconds.toFixed(1)} s: ${formatBytes(result.bytesWritten)} written through the NBD export in ${result.writeSeconds.toFixed(1)} s, ` +
      `logged at staging, replicated (${result.appliedLsn} records), drained ${result.drainSeconds.toFixed(2)} s after the writes, restored and verified identical.`);
    if (args.keep) say(`files kept in ${result.workDir}`);
  },
});
