/**
 * The packages of issue 8, built once for the whole file (binaries, RPMs, .debs, MSI, and an
 * upgrade RPM and .deb with the patch version bumped: about a minute), then checked by the
 * groups in rpm-checks.ts, deb-checks.ts, msi-checks.ts and content-checks.ts, and a whole
 * system run from the packaged files alone (fresh-host.ts). Everything lives
 * in one temp directory, removed in afterAll whatever happened. Needs rpm, rpm2cpio, cpio, dpkg,
 * wixl, msitools, systemd, man-db and zsh (scripts/setup.sh installs them); nothing is skipped.
 */
import { afterAll, beforeAll, describe } from "bun:test";
import { rmSync } from "node:fs";
import { contentTests } from "./content-checks.ts";
import { debTests } from "./deb-checks.ts";
import { freshHostTests } from "./fresh-host.ts";
import { buildAll, makeTestDir, type Built } from "./fixture.ts";
import { msiTests } from "./msi-checks.ts";
import { rpmTests } from "./rpm-checks.ts";

/** Three cross-compiled binaries and seven packages on a 2-core machine. */
const buildTimeoutMs = 600_000;

let built: Built | undefined;
let buildDir: string | undefined;
const get = (): Built => {
  if (built === undefined) throw new Error("the packages were not built (see the beforeAll error above)");
  return built;
};

beforeAll(async () => {
  buildDir = makeTestDir();
  built = await buildAll(buildDir);
}, buildTimeoutMs);

afterAll(() => {
  if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true });
});

describe("RPM", () => rpmTests(get));
describe(".deb", () => debTests(get));
describe("MSI", () => msiTests(get));
describe("packaged files", () => contentTests(get));
describe("fresh host", () => freshHostTests(get));
