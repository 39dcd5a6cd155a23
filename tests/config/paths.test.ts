/** Default locations of config files: /etc/druvaa on Linux, %ProgramData%\druvaa on Windows (the MSI's layout). */
import { afterEach, describe, expect, test } from "bun:test";
import { defaultConfigDir, defaultConfigPath, defaultStateRoot } from "../../src/config/paths.ts";

const saved = process.env.ProgramData;
afterEach(() => {
  if (saved === undefined) delete process.env.ProgramData;
  else process.env.ProgramData = saved;
});

describe("default config and state locations", () => {
  test("Linux: /etc/druvaa/ROLE.toml, one file per volume for the client; state under /var/lib/druvaa", () => {
    expect(defaultConfigDir("linux")).toBe("/etc/druvaa");
    expect(defaultConfigPath("staging", undefined, "linux")).toBe("/etc/druvaa/staging.toml");
    expect(defaultConfigPath("agent", undefined, "linux")).toBe("/etc/druvaa/agent.toml");
    expect(defaultConfigPath("client", "db1", "linux")).toBe("/etc/druvaa/client/db1.toml");
    expect(defaultStateRoot("linux")).toBe("/var/lib/druvaa");
  });

  test("Windows: under %ProgramData%\\druvaa, as the MSI installs them (ROLE.toml beside the ROLE state folder)", () => {
    process.env.ProgramData = "D:\\PD";
    expect(defaultConfigPath("replica", undefined, "win32")).toBe("D:\\PD\\druvaa\\replica.toml");
    expect(defaultConfigPath("client", "db1", "win32")).toBe("D:\\PD\\druvaa\\client\\db1.toml");
    expect(defaultStateRoot("win32")).toBe("D:\\PD\\druvaa");
  });
});
