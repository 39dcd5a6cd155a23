/**
 * Transfer windows: `--schedule "Mon-Fri 19:00-07:00, Sat-Sun"` — when the relay may ship (and a
 * resync may send). Outside every window nothing is shipped; the WRL buffers.
 *
 * Grammar (case-insensitive, windows separated by commas):
 *   window     := days [range] | range          a range alone is every day
 *   days       := DAY | DAY "-" DAY             Mon Tue Wed Thu Fri Sat Sun; a range may wrap (Fri-Mon)
 *   range      := HH:MM "-" HH:MM               24:00 allowed as an end; an end not after the start
 *                                               runs into the next day (19:00-07:00 is overnight)
 *   suffix     := " UTC"                        after the last window: times are UTC, else local time
 * A window belongs to the day it starts on: "Fri 22:00-06:00" is open from Friday 22:00 to
 * Saturday 06:00. Days without a range are open the whole day. Also: "always".
 *
 * Guarantees: isOpen(t) is constant on [t, nextChange(t)) and differs at nextChange(t) (a
 * property test checks it), local time follows the host's time zone and its DST changes (a
 * window edge that falls in a skipped hour moves with Date's normalisation).
 */
import { usageError } from "./errors.ts";

const dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;
const minutesPerDay = 24 * 60;

interface Window {
  /** Days (0 = Sunday) the window starts on. */
  days: ReadonlySet<number>;
  startMinute: number;
  /** Minutes after the start (1 .. 1440). */
  lengthMinutes: number;
}

const hint = 'e.g. --schedule "Mon-Fri 19:00-07:00, Sat-Sun" (nights on weekdays, whole weekends) or --schedule "22:00-06:00 UTC"';

function parseDay(text: string, flag: string, whole: string): number {
  const index = dayNames.indexOf(text.slice(0, 3).toLowerCase() as (typeof dayNames)[number]);
  const full = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"][index];
  if (index < 0 || !(text.length === 3 || text.toLowerCase() === full)) throw usageError(`${flag} "${whole}": "${text}" is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)`, hint);
  return index;
}

function parseTime(text: string, flag: string, whole: string): number {
  const match = /^(\d{1,2}):(\d{2})$/.exec(text);
  const hours = Number(match?.[1]);
  const minutes = Number(match?.[2]);
  if (match === null || minutes > 59 || hours > 24 || (hours === 24 && minutes > 0)) throw usageError(`${flag} "${whole}": "${text}" is not a time of day (HH:MM, 00:00 to 24:00)`, hint);
  return hours * 60 + minutes;
}

function parseWindow(part: string, flag: string, whole: string): Window {
  const tokens = part.trim().split(/\s+/).filter((token) => token.length > 0);
  if (tokens.length === 0 || tokens.length > 2) throw usageError(`${flag} "${whole}": cannot read the window "${part.trim()}"`, hint);
  let days = new Set([0, 1, 2, 3, 4, 5, 6]);
  let rangeText: string | undefined;
  const first = tokens[0]!;
  if (/^[a-z]/i.test(first)) {
    const [from, to, extra] = first.split("-");
    if (extra !== undefined || from === undefined) throw usageError(`${flag} "${whole}": cannot read the days "${first}"`, hint);
    const start = parseDay(from, flag, whole);
    const end = to === undefined ? start : parseDay(to, flag, whole);
    days = new Set();
    for (let day = start; ; day = (day + 1) % 7) {
      days.add(day);
      if (day === end) break;
    }
    rangeText = tokens[1];
  } else {
    if (tokens.length > 1) throw usageError(`${flag} "${whole}": cannot read the window "${part.trim()}" (days come first)`, hint);
    rangeText = first;
  }
  if (rangeText === undefined) return { days, startMinute: 0, lengthMinutes: minutesPerDay };
  const [fromText, toText, extra] = rangeText.split("-");
  if (fromText === undefined || toText === undefined || extra !== undefined) throw usageError(`${flag} "${whole}": cannot read the time range "${rangeText}" (HH:MM-HH:MM)`, hint);
  const startMinute = parseTime(fromText, flag, whole);
  const endMinute = parseTime(toText, flag, whole);
  if (startMinute === minutesPerDay) throw usageError(`${flag} "${whole}": a window cannot start at 24:00`, hint);
  if (startMinute === endMinute) throw usageError(`${flag} "${whole}": the window ${rangeText} is empty`, `For whole days give the days alone; ${hint}`);
  return { days, startMinute, lengthMinutes: endMinute > startMinute ? endMinute - startMinute : endMinute + minutesPerDay - startMinute };
}

export class Schedule {
  private constructor(readonly text: string, readonly utc: boolean, readonly windows: readonly Window[]) {}

  /** Parses `--schedule TEXT`; throws a usage error naming `flag` on anything else. */
  static parse(text: string, flag = "--schedule"): Schedule {
    let body = text.trim();
    const utc = /\sutc$/i.test(body) || /^utc$/i.test(body);
    if (utc) body = body.replace(/\s*utc$/i, "").trim();
    if (/^always$/i.test(body)) return new Schedule(text.trim(), utc, [{ days: new Set([0, 1, 2, 3, 4, 5, 6]), startMinute: 0, lengthMinutes: minutesPerDay }]);
    if (body.length === 0) throw usageError(`${flag}: the schedule is empty`, hint);
    return new Schedule(text.trim(), utc, body.split(",").map((part) => parseWindow(part, flag, text)));
  }

  /** True when `atMs` falls in a window. */
  isOpen(atMs: number): boolean {
    for (const [start, end] of this.#intervalsAround(atMs)) if (start <= atMs && atMs < end) return true;
    return false;
  }

  /** The first instant after `atMs` where isOpen changes; undefined if it never does (always open). */
  nextChange(atMs: number): number | undefined {
    const open = this.isOpen(atMs);
    const edges = this.#intervalsAround(atMs).flatMap(([start, end]) => [start, end]).filter((edge) => edge > atMs).sort((a, b) => a - b);
    for (const edge of edges) if (this.isOpen(edge) !== open) return edge;
    return undefined;
  }

  /** For status: whether shipping is allowed now, and when that changes (ISO time, or null). */
  status(nowMs: number): { schedule: string; open: boolean; nextChangeAt: string | null } {
    const next = this.nextChange(nowMs);
    return { schedule: this.text, open: this.isOpen(nowMs), nextChangeAt: next === undefined ? null : new Date(next).toISOString() };
  }

  /** Every window occurrence starting from the day before `atMs` to eight days after, as [start, end) ms. */
  #intervalsAround(atMs: number): [number, number][] {
    const base = new Date(atMs);
    const intervals: [number, number][] = [];
    for (let offset = -1; offset <= 8; offset += 1) {
      const day = this.utc
        ? new Date(Date.UTC(base.getUTCFullYear(), base.getUTCMonth(), base.getUTCDate() + offset))
        : new Date(base.getFullYear(), base.getMonth(), base.getDate() + offset);
      const weekday = this.utc ? day.getUTCDay() : day.getDay();
      for (const window of this.windows) {
        if (!window.days.has(weekday)) continue;
        const at = (minute: number) => this.utc
          ? Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), 0, minute)
          : new Date(day.getFullYear(), day.getMonth(), day.getDate(), 0, minute).getTime();
        intervals.push([at(window.startMinute), at(window.startMinute + window.lengthMinutes)]);
      }
    }
    return intervals;
  }
}
