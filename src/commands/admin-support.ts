/** What the `druvaa admin` commands share: the CA directory flag and --days parsing. */
import { usageError } from "../errors.ts";
import { caDirDefault, certValidityDaysMax } from "../tls/constants.ts";

export const caDirFlag = { type: "string", valueHint: "DIR", description: `the CA directory (ca.pem, ca.key, crl.pem; default ${caDirDefault})` } as const;

export function parseDays(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const days = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(days) || days < 1 || days > certValidityDaysMax) {
    throw usageError(`--days "${text}" is not a whole number of days from 1 to ${certValidityDaysMax}`, "e.g. --days 365");
  }
  return days;
}
