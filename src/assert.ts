/**
 * Internal invariants, always on (TigerBeetle style). An assertion failure is a bug in druvaa,
 * never the user's input: input is validated at the edge and turned into a DruvaaError instead.
 */
export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function unreachable(value: never, message = "unreachable"): never {
  throw new AssertionError(`${message}: ${JSON.stringify(value)}`);
}
