import { command, jsonFlag, output, repeatedFlag } from "../cli-support.ts";
import { parseSizeBytes } from "../units.ts";
import { readWrlKeyFile } from "../wrl/key-file.ts";
import { createWrlAtPaths } from "../wrl/paths.ts";
import { describeWrl } from "../wrl/report-text.ts";

export default command({
  meta: { name: "create", description: "Make a new write log on an image file or block device (plus optional secondaries, used in order)" },
  args: {
    primary: { type: "string", required: true, description: "Primary device or image file (holds the superblock)" },
    secondary: { type: "string", description: "A secondary device or image, used after the primary; repeat for more" },
    size: { type: "string", description: "Create missing image files of this size; on existing devices use at most this much (e.g. 10G)" },
    force: { type: "boolean", description: "Overwrite a device that already holds or belongs to a write log (its records are lost)" },
    "encrypt-at-rest": {
      type: "string",
      valueHint: "KEYFILE",
      description: "Encrypt record payloads on the log devices (AES-256-CTR) with the 32-byte key in KEYFILE (mode 600; raw, hex or base64), e.g. head -c 32 /dev/urandom > /etc/druvaa/wrl.key; chmod 600 /etc/druvaa/wrl.key; staging serve then needs the same --encrypt-at-rest KEYFILE",
    },
    json: jsonFlag,
  },
  examples: [
    "druvaa wrl create --primary /dev/sdb",
    "druvaa wrl create --primary /dev/sdb --secondary /dev/sdc --secondary /dev/sdd",
    "druvaa wrl create --primary /var/lib/druvaa/wrl0.img --size 20G --json",
    "druvaa wrl create --primary /dev/sdb --encrypt-at-rest /etc/druvaa/wrl.key   # key: head -c 32 /dev/urandom > /etc/druvaa/wrl.key; chmod 600 /etc/druvaa/wrl.key",
  ],
  async run({ args, rawArgs }) {
    const sizeBytes = args.size === undefined ? undefined : parseSizeBytes(args.size, "--size");
    const keyFile = args["encrypt-at-rest"];
    const payloadKey = keyFile === undefined ? undefined : await readWrlKeyFile(keyFile);
    const report = await createWrlAtPaths({ primary: args.primary, secondaries: repeatedFlag(rawArgs, "secondary"), sizeBytes, force: args.force === true, payloadKey });
    output(args.json, { ok: true, ...report }, () => `created ${describeWrl(report)}`);
  },
});
