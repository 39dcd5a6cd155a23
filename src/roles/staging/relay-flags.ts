/**
 * `druvaa staging serve --rate-limit / --schedule / --rpo`: each flag may be repeated; a value
 * without `=` is the server's default, `NAME=VALUE` is WRL NAME's own and overrides the default
 * for that WRL (NAME must be one of the --wrl names: a usage error with the names otherwise).
 *
 *   --rate-limit RATE          one bucket for the whole server: every WRL without a limit of its
 *                                own sends through it (the relays share the WAN link), so their
 *                                frames together stay under RATE
 *   --rate-limit NAME=RATE     WRL NAME gets a bucket of its own instead and does not count
 *                                against the shared one (its replica sits behind another link,
 *                                or it is given a fixed share)
 *   --schedule WINDOWS         the windows of every WRL without its own (src/schedule.ts grammar)
 *   --schedule NAME=WINDOWS    WRL NAME's windows instead
 *   --rpo DURATION             the RPO target of every WRL without its own
 *   --rpo NAME=DURATION        WRL NAME's target instead
 *
 * RATE: bits ("20Mbit", "100Mbps", "1Gbit/s") or bytes per time ("5MiB/s", "500MB/min"), at
 * least relayRateBytesPerSecondMin. DURATION: "30s", "5m", "1h" (a bare number is seconds), > 0.
 * A default or a name given twice is a usage error.
 */
import { DruvaaError, usageError } from "../../errors.ts";
import { Schedule } from "../../schedule.ts";
import { parseDurationMs, parseRateBytesPerSecond } from "../../units.ts";
import { parseNamedValues } from "../common.ts";
import { RateLimiter, relayRateBytesPerSecondMin } from "./relay-pacing.ts";
import type { RelayTargets } from "./relay-types.ts";

/** A flag's default value (no `=`) and its WRL-named ones. */
interface PerWrl {
  fallback: string | undefined;
  named: Map<string, string>;
}

function perWrl(values: readonly string[], flag: string, example: string, wrlNames: readonly string[]): PerWrl {
  const plain = values.filter((value) => !value.includes("="));
  if (plain.length > 1) throw usageError(`${flag} is given ${plain.length} times without a WRL name`, `Give one default and name the WRLs that differ, e.g. ${flag} ${example.split("=")[1]} ${flag} ${example}`);
  const named = parseNamedValues(values.filter((value) => value.includes("=")), flag, example);
  for (const name of named.keys()) {
    if (!wrlNames.includes(name)) throw usageError(`${flag} ${name}=…: no --wrl named ${name}`, `The WRLs given are: ${wrlNames.join(", ")}; a value without NAME= applies to every WRL`);
  }
  return { fallback: plain[0], named };
}

/** Runs `parse`; a usage error it throws gets `message` and `hint` instead (the value named, a hint for this flag). */
function reworded<T>(parse: () => T, message: string, hint: string): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof DruvaaError && error.code === "USAGE") throw usageError(message, hint);
    throw error;
  }
}

/** `given`: the flag as typed, for messages ("--rate-limit 20Mbit", "--rate-limit fast=20Mbit"). */
export function parseRate(text: string, given: string): number {
  const hint = "Use bits per second (--rate-limit 20Mbit, --rate-limit 512kbit) or bytes per time (--rate-limit 5MiB/s), at least 8kbit; NAME=RATE for one WRL";
  const bytesPerSecond = reworded(() => parseRateBytesPerSecond(text, "--rate-limit"), `${given}: not a rate`, hint);
  if (bytesPerSecond < relayRateBytesPerSecondMin) throw usageError(`${given}: below the lowest rate limit (8kbit = ${relayRateBytesPerSecondMin} bytes/s)`, hint);
  return bytesPerSecond;
}

export function parseRpoSeconds(text: string, given: string): number {
  const hint = "Use a duration such as --rpo 30s, --rpo 5m or --rpo 1h; NAME=DURATION for one WRL";
  const ms = reworded(() => parseDurationMs(text, "--rpo"), `${given}: not a duration`, hint);
  if (!(ms > 0)) throw usageError(`${given}: an RPO target must be longer than 0`, hint);
  return ms / 1000;
}

export interface RelayFlags {
  rateLimit: readonly string[];
  schedule: readonly string[];
  rpo: readonly string[];
}

/** The targets of every WRL in `wrlNames` (an entry only for WRLs with at least one), from the raw flag values. */
export function relayTargetsFromFlags(flags: RelayFlags, wrlNames: readonly string[]): Map<string, RelayTargets> {
  return relayFlagTargets(flags, wrlNames).targets;
}

/**
 * relayTargetsFromFlags, and the server-wide defaults (the values without NAME=: the shared
 * rate-limit bucket, the schedule, the RPO target) for WRLs that are not --wrl flags (--managed).
 */
export function relayFlagTargets(flags: RelayFlags, wrlNames: readonly string[]): { targets: Map<string, RelayTargets>; defaults: RelayTargets } {
  const rates = perWrl(flags.rateLimit, "--rate-limit", "fast=20Mbit", wrlNames);
  const schedules = perWrl(flags.schedule, "--schedule", 'bulk="Mon-Fri 19:00-07:00, Sat-Sun"', wrlNames);
  const rpos = perWrl(flags.rpo, "--rpo", "fast=30s", wrlNames);
  const shared = rates.fallback === undefined ? undefined : new RateLimiter(parseRate(rates.fallback, `--rate-limit ${rates.fallback}`), "server");
  const sharedSchedule = schedules.fallback === undefined ? undefined : Schedule.parse(schedules.fallback, "--schedule");
  const sharedRpo = rpos.fallback === undefined ? undefined : parseRpoSeconds(rpos.fallback, `--rpo ${rpos.fallback}`);
  const targets = new Map<string, RelayTargets>();
  for (const name of wrlNames) {
    const rateText = rates.named.get(name);
    const rateLimit = rateText === undefined ? shared : new RateLimiter(parseRate(rateText, `--rate-limit ${name}=${rateText}`), "wrl");
    const scheduleText = schedules.named.get(name);
    const schedule = scheduleText === undefined ? sharedSchedule : Schedule.parse(scheduleText, `--schedule for WRL ${name}`);
    const rpoText = rpos.named.get(name);
    const rpoTargetSeconds = rpoText === undefined ? sharedRpo : parseRpoSeconds(rpoText, `--rpo ${name}=${rpoText}`);
    const target: RelayTargets = {
      ...(rateLimit === undefined ? {} : { rateLimit }),
      ...(schedule === undefined ? {} : { schedule }),
      ...(rpoTargetSeconds === undefined ? {} : { rpoTargetSeconds }),
    };
    if (Object.keys(target).length > 0) targets.set(name, target);
  }
  const defaults: RelayTargets = {
    ...(shared === undefined ? {} : { rateLimit: shared }),
    ...(sharedSchedule === undefined ? {} : { schedule: sharedSchedule }),
    ...(sharedRpo === undefined ? {} : { rpoTargetSeconds: sharedRpo }),
  };
  return { targets, defaults };
}
