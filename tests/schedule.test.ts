/**
 * Transfer windows (src/schedule.ts): the grammar, overnight and wrapping windows, UTC versus
 * local time, bad input with a hint, and the property the relay relies on: isOpen is constant
 * until nextChange and flips there.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Schedule } from "../src/schedule.ts";

/** 2026-11-30 is a Monday. */
const utc = (day: number, hours: number, minutes = 0) => Date.UTC(2026, 10, 30 + day, hours, minutes);

describe("--schedule", () => {
  test("weekday nights and whole weekends: open Mon 19:00 to Tue 07:00, Fri 19:00 through Mon 00:00", () => {
    const schedule = Schedule.parse("Mon-Fri 19:00-07:00, Sat-Sun UTC");
    expect(schedule.isOpen(utc(0, 12))).toBe(false); // Monday noon
    expect(schedule.isOpen(utc(0, 19))).toBe(true);
    expect(schedule.isOpen(utc(1, 6, 59))).toBe(true); // Tuesday morning, still Monday's window
    expect(schedule.isOpen(utc(1, 7))).toBe(false);
    expect(schedule.isOpen(utc(5, 12))).toBe(true); // Saturday
    expect(schedule.isOpen(utc(6, 23, 59))).toBe(true); // Sunday night
    expect(schedule.isOpen(utc(7, 0))).toBe(false); // Monday 00:00: Sunday's window ended
    expect(schedule.nextChange(utc(0, 12))).toBe(utc(0, 19));
    expect(schedule.nextChange(utc(0, 19))).toBe(utc(1, 7));
    // Friday 19:00 opens a window that runs into the weekend: the next close is Monday 00:00.
    expect(schedule.nextChange(utc(4, 20))).toBe(utc(7, 0));
  });

  test("a time range alone is every day; a day range may wrap; 24:00 ends a day; always", () => {
    const nightly = Schedule.parse("22:00-06:00 UTC");
    for (let day = 0; day < 7; day += 1) {
      expect(nightly.isOpen(utc(day, 23))).toBe(true);
      expect(nightly.isOpen(utc(day, 12))).toBe(false);
    }
    const wrapping = Schedule.parse("Fri-Mon 12:00-24:00 UTC");
    expect([0, 1, 2, 3, 4, 5, 6].map((day) => wrapping.isOpen(utc(day, 13)))).toEqual([true, false, false, false, true, true, true]);
    expect(wrapping.isOpen(utc(0, 23, 59))).toBe(true);
    expect(Schedule.parse("always").nextChange(utc(0, 0))).toBeUndefined();
    expect(Schedule.parse("always").isOpen(utc(3, 3))).toBe(true);
    expect(Schedule.parse("saturday utc").isOpen(utc(5, 1))).toBe(true);
  });

  test("local time unless UTC is said: the same text opens at the host's local hour", () => {
    const local = Schedule.parse("Mon 09:00-10:00");
    const mondayNineLocal = new Date(2026, 10, 30, 9, 30).getTime();
    expect(local.isOpen(mondayNineLocal)).toBe(true);
    expect(local.isOpen(new Date(2026, 10, 30, 10, 0).getTime())).toBe(false);
    expect(local.nextChange(mondayNineLocal)).toBe(new Date(2026, 10, 30, 10, 0).getTime());
  });

  test("status says whether it is open and when that changes", () => {
    expect(Schedule.parse("Mon-Fri 19:00-07:00 UTC").status(utc(0, 12))).toEqual({ schedule: "Mon-Fri 19:00-07:00 UTC", open: false, nextChangeAt: "2026-11-30T19:00:00.000Z" });
  });

  test.each([
    ["", "empty"],
    ["Mon-Fry", "not a day"],
    ["Mon 25:00-07:00", "not a time of day"],
    ["Mon 19:00", "time range"],
    ["Mon 10:00-10:00", "is empty"],
    ["19:00-07:00 Mon", "days come first"],
    ["Mon-Tue-Wed", "cannot read the days"],
    ["Mon 24:00-02:00", "cannot start at 24:00"],
  ])("refused with a hint: %p", (text, why) => {
    let error: unknown;
    try {
      Schedule.parse(text);
    } catch (caught) {
      error = caught;
    }
    expect((error as { code?: string }).code).toBe("USAGE");
    expect((error as Error).message).toContain(why);
    expect((error as { hint?: string }).hint).toContain("--schedule");
  });

  test("property: isOpen is constant on [t, nextChange(t)) and flips at nextChange(t)", () => {
    const windowText = fc.tuple(fc.option(fc.tuple(fc.constantFrom("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), fc.option(fc.constantFrom("Mon", "Wed", "Sun"), { nil: undefined })), { nil: undefined }), fc.option(fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 24 })), { nil: undefined }))
      .filter(([days, range]) => days !== undefined || range !== undefined)
      .filter(([, range]) => range === undefined || range[0] !== range[1])
      .map(([days, range]) => `${days === undefined ? "" : days[1] === undefined ? days[0] : `${days[0]}-${days[1]}`} ${range === undefined ? "" : `${String(range[0]).padStart(2, "0")}:00-${String(range[1]).padStart(2, "0")}:00`}`.trim());
    fc.assert(
      fc.property(fc.array(windowText, { minLength: 1, maxLength: 3 }), fc.integer({ min: 0, max: 14 * 24 * 60 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 5, maxLength: 5 }), (windows, minute, samples) => {
        const schedule = Schedule.parse(`${windows.join(", ")} UTC`);
        const t = utc(0, 0) + minute * 60_000;
        const next = schedule.nextChange(t);
        const open = schedule.isOpen(t);
        if (next === undefined) return [0, 1, 2, 3, 4, 5, 6, 7].every((day) => schedule.isOpen(t + day * 86_400_000) === open);
        return next > t && schedule.isOpen(next) !== open && samples.every((s) => schedule.isOpen(t + Math.floor(s * (next - t - 1))) === open);
      }),
      { numRuns: 500 },
    );
  });
});
