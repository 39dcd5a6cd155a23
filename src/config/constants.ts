/**
 * Bounds of config-file reading (src/config/), units last. A config file is a few hundred bytes
 * written by a person or a package: these only stop a wrong file (a disk image given as --config)
 * from costing more than a quick refusal.
 */
import { assert } from "../assert.ts";

/** A config file larger than this is refused unread. */
export const tomlFileBytesMax = 1024 * 1024;
/** Syntax errors reported per file before giving up (after that, the file is not worth reading). */
export const tomlErrorsMax = 50;
/** Arrays and inline tables nested deeper than this are refused (no recursion without a bound). */
export const tomlNestingDepthMax = 64;
/** An unknown key is matched to a known one at most this many edits away ("did you mean"). */
export const keySuggestionEditsMax = 3;

assert(tomlErrorsMax >= 1 && tomlNestingDepthMax >= 2, "config bounds allow a useful file");
