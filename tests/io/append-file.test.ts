/** AppendFile (src/io/append-file.ts): appends in flight together get distinct places; truncate cuts; reads come back. */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppendFile } from "../../src/io/append-file.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

test("concurrent appends never share a place (a writable snapshot's NBD writes run together)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-append-"));
  dirs.push(dir);
  const file = await AppendFile.open(join(dir, "f"));
  const pieces = Array.from({ length: 32 }, (_, index) => new Uint8Array(4096 + index * 512).fill(index + 1));
  const positions = await Promise.all(pieces.map((piece) => file.append(piece)));
  expect(new Set(positions).size).toBe(pieces.length);
  for (const [index, piece] of pieces.entries()) expect(await file.read(positions[index]!, piece.length)).toEqual(piece);
  expect(file.sizeBytes).toBe(pieces.reduce((sum, piece) => sum + piece.length, 0));
  await file.truncate(positions[0]! + pieces[0]!.length);
  const reopened = await AppendFile.open(join(dir, "f"));
  expect(reopened.sizeBytes).toBe(positions[0]! + pieces[0]!.length);
  await Promise.all([file.close(), reopened.close()]);
});
