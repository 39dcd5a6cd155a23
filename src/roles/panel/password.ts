/**
 * Panel passwords: scrypt (memory-hard) with a random salt per hash; the parameters are stored
 * with the hash ("scrypt$N$r$p$salt$hash", base64), so a later druvaa can raise the cost and still
 * check old hashes. Comparison is constant-time. The policy is checked at the edge (API input).
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { passwordHashBytes, passwordLengthMax, passwordLengthMin, passwordSaltBytes, scryptBlockSize, scryptCostLog2, scryptMemoryBytesMax, scryptParallelization } from "./constants.ts";

/** The password every new panel starts with (must be changed at the first login). */
export const firstRunPassword = "druvaa";

function derive(password: string, salt: Buffer, N: number, r: number, p: number, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password.normalize("NFC"), salt, length, { N, r, p, maxmem: scryptMemoryBytesMax }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

/** A new hash of `password` with a fresh salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(passwordSaltBytes);
  const N = 2 ** scryptCostLog2;
  const key = await derive(password, salt, N, scryptBlockSize, scryptParallelization, passwordHashBytes);
  return `scrypt$${N}$${scryptBlockSize}$${scryptParallelization}$${salt.toString("base64")}$${key.toString("base64")}`;
}

/** True when `password` matches `stored`; false for a wrong password or a hash we cannot read. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![N, r, p].every((n) => Number.isSafeInteger(n) && n > 0) || 128 * N * r > scryptMemoryBytesMax) return false;
  const salt = Buffer.from(parts[4]!, "base64");
  const expected = Buffer.from(parts[5]!, "base64");
  if (expected.length === 0) return false;
  const key = await derive(password, salt, N, r, p, expected.length);
  return timingSafeEqual(key, expected);
}

/** Why `password` is not acceptable for `user`, or undefined when it is. */
export function passwordProblem(password: string, user: string): string | undefined {
  if ([...password].length < passwordLengthMin) return `must be at least ${passwordLengthMin} characters long`;
  if (password.length > passwordLengthMax) return `must be at most ${passwordLengthMax} characters long`;
  if (password.toLowerCase() === user.toLowerCase()) return "must not be the user name";
  if (password.toLowerCase() === firstRunPassword) return `must not be "${firstRunPassword}"`;
  return undefined;
}
