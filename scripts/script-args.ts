/**
 * Flags of the build scripts (build-binaries.ts, package.ts): strict `--name VALUE` options and
 * --help. An unknown flag, a missing value or a stray argument exits 2 with the usage as the hint.
 */
import { parseArgs } from "node:util";

export function scriptArgs<Name extends string>(script: string, usage: string, names: readonly Name[]): Partial<Record<Name, string>> {
  const options = Object.fromEntries([...names.map((name) => [name, { type: "string" }] as const), ["help", { type: "boolean", short: "h" }] as const]);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: process.argv.slice(2), options, strict: true, allowPositionals: false });
  } catch (error) {
    console.error(`${script}: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}\n  hint: ${usage}`);
    process.exit(2);
  }
  if (parsed.values.help === true) {
    console.log(usage);
    process.exit(0);
  }
  const values: Partial<Record<Name, string>> = {};
  for (const name of names) {
    const value = parsed.values[name];
    if (typeof value === "string") values[name] = value;
  }
  return values;
}
