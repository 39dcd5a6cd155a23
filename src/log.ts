import { createConsola, type ConsolaInstance } from "consola/basic";

/**
 * One consola instance per process; components take a tagged child, e.g.
 * `logger("staging:wrl")`. Logs go to stderr so `--json` output on stdout stays parseable.
 * Level: DRUVAA_LOG_LEVEL (-1 silent, 0 errors only, 1 warnings, 3 info, 4 debug, 5 trace),
 * default 3.
 */
const envLevel = Number.parseInt(process.env.DRUVAA_LOG_LEVEL ?? "", 10);
const root: ConsolaInstance = createConsola({
  level: Number.isFinite(envLevel) ? envLevel : 3,
  stdout: process.stderr,
  stderr: process.stderr,
});

/**
 * One child per tag, kept so setLogLevel reaches it: consola copies the level into a child when
 * the child is made, so a module-level `logger(...)` would otherwise ignore later level changes.
 */
const children = new Map<string, ConsolaInstance>();

export function logger(tag: string): ConsolaInstance {
  let child = children.get(tag);
  if (child === undefined) {
    child = root.withTag(tag);
    children.set(tag, child);
  }
  return child;
}

export function setLogLevel(level: number): void {
  root.level = level;
  for (const child of children.values()) child.level = level;
}
