/**
 * `druvaa admin config check FILE`: checks a role's config file the way the role checks it before
 * starting with --config (src/config/): exit 0 and the command line it stands for, or exit 2 and
 * every problem, each `FILE:LINE: message` with a hint. For scripts, --json prints
 * {ok, role, file, args, problems: [{line, key, code, message, hint}]}.
 */
import { command, output, setExitCode } from "../cli-support.ts";
import { exitCodes } from "../errors.ts";
import { problemText } from "../config/load.ts";
import { checkNamedFile, configFileArgs, shellLine } from "./admin-config-support.ts";

export default command({
  meta: { name: "check", description: "Check a role's config file: syntax, keys, types, role, ports, and that its devices and files exist" },
  args: configFileArgs,
  examples: [
    "druvaa admin config check /etc/druvaa/staging.toml",
    "druvaa admin config check --role replica          # the packaged /etc/druvaa/replica.toml",
    "druvaa admin config check /etc/druvaa/client/db1.toml --json",
    "druvaa admin config check ./lab.toml --role staging   # a file without a role = \"...\" key",
  ],
  async run({ args }) {
    const check = await checkNamedFile(args);
    const { ok, role, file, problems } = check;
    const result = { ok, role, file, args: ok ? ["druvaa", ...check.args] : [], problems };
    if (!ok) setExitCode(exitCodes.usage);
    if (!ok && args.json !== true) {
      // Like any failing command: the problems on stderr, nothing on stdout.
      const each = problems.map((problem) => `${problemText(file, problem)}${problem.hint === "" ? "" : `\n  hint: ${problem.hint}`}`);
      process.stderr.write(`${each.join("\n")}\n${file}: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n`);
      return;
    }
    output(args.json, result, () => `${file}: ok (role ${role})\n${shellLine(result.args)}`);
  },
});
