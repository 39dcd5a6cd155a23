/** Shared pieces of the protocol tests. */
import { expect } from "bun:test";
import { ProtocolError } from "../../src/protocol/errors.ts";

/** The ProtocolError code `run` throws ("none" when it does not throw; any other error fails). */
export function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    return (error as ProtocolError).code;
  }
  return "none";
}
