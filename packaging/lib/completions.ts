/**
 * Shell completions for bash and zsh, generated from the command tree (cli-tree.ts): every
 * sub-command and every flag of each command, enum values, and file names for flags whose value
 * is a file, path or directory. The aliases drresync, drrestore and dradmin complete as the
 * command they stand for. The scripts hold the tree as data and one small walker each.
 */
import { allCommands, type CliCommand, type CliFlag } from "./cli-tree.ts";

/** Alias name → the command path it runs (same table as src/cli.ts). */
const aliasPaths: Record<string, string> = { drresync: "resync", drrestore: "restore", dradmin: "admin" };

/** Single-quotes a string for bash and zsh. */
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const oneLine = (s: string) => s.replace(/\s+/g, " ").trim();
const takesValue = (flag: CliFlag) => flag.type === "string" || flag.type === "enum";
const wantsFiles = (flag: CliFlag) => /FILE|PATH|DIR|SOCKET|KEYFILE/.test(flag.valueHint ?? "");
/** Table key of a command: "druvaa client attach" (bash refuses empty keys, so the root is "druvaa"). */
const keyOf = (cmd: CliCommand) => ["druvaa", ...cmd.path].join(" ");

type Tables = { subs: [string, string][]; flags: [string, string][]; values: [string, string][]; files: string[]; valued: string[] };

function tables(root: CliCommand, describe: boolean): Tables {
  const t: Tables = { subs: [], flags: [], values: [], files: [], valued: [] };
  for (const cmd of allCommands(root)) {
    const key = keyOf(cmd);
    if (cmd.subcommands.length > 0) {
      const words = cmd.subcommands.map((s) => (describe ? `${s.path.at(-1)!}:${oneLine(s.description)}` : s.path.at(-1)!));
      t.subs.push([key, words.join("\n")]);
    }
    const named = cmd.flags.filter((f) => f.type !== "positional");
    const helpFlag = describe ? "--help:show this command's options and examples" : "--help";
    t.flags.push([key, [...named.map((f) => (describe ? `--${f.name}:${oneLine(f.description)}` : `--${f.name}`)), helpFlag].join("\n")]);
    for (const f of named) {
      if (!takesValue(f)) continue;
      t.valued.push(`${key} --${f.name}`);
      if (f.options?.length) t.values.push([`${key} --${f.name}`, f.options.join(" ")]);
      else if (wantsFiles(f)) t.files.push(`${key} --${f.name}`);
    }
  }
  return t;
}

/** bash: name=([key]=value ...); zsh: name=(key value ...), which also parses under zsh -n. */
const assoc = (name: string, rows: [string, string][], shell: "bash" | "zsh" = "bash") =>
  `${name}=(\n${rows.map(([k, v]) => (shell === "bash" ? `  [${sq(k)}]=${sq(v)}` : `  ${sq(k)} ${sq(v)}`)).join("\n")}\n)`;
const set = (name: string, keys: string[], shell: "bash" | "zsh" = "bash") => assoc(name, keys.map((k) => [k, "1"]), shell);

/** bash: source from /usr/share/bash-completion/completions/druvaa (and links for the aliases). */
export function bashCompletion(root: CliCommand): string {
  const t = tables(root, false);
  return `# bash completion for druvaa, drresync, drrestore, dradmin.
# Generated from the druvaa command tree by scripts/package.ts: do not edit.
declare -gA _druvaa_subs _druvaa_flags _druvaa_values _druvaa_files _druvaa_valued
${assoc("_druvaa_subs", t.subs)}
${assoc("_druvaa_flags", t.flags)}
${assoc("_druvaa_values", t.values)}
${set("_druvaa_files", t.files)}
${set("_druvaa_valued", t.valued)}

_druvaa() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" cmd="druvaa" i w sub
  case "\${COMP_WORDS[0]##*/}" in
${Object.entries(aliasPaths).map(([a, p]) => `    ${a}) cmd=${sq(`druvaa ${p}`)} ;;`).join("\n")}
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if [[ $w == --* ]]; then
      # a flag that takes its value as the next word: skip that word
      [[ $w != *=* && -n \${_druvaa_valued["$cmd $w"]:-} ]] && ((i++))
      continue
    fi
    for sub in \${_druvaa_subs["$cmd"]:-}; do
      if [[ $sub == "$w" ]]; then cmd="$cmd $w"; break; fi
    done
  done
  ((COMP_CWORD > 0)) && prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [[ $prev == --* && -n \${_druvaa_valued["$cmd $prev"]:-} ]]; then
    if [[ -n \${_druvaa_values["$cmd $prev"]:-} ]]; then
      mapfile -t COMPREPLY < <(compgen -W "\${_druvaa_values["$cmd $prev"]}" -- "$cur")
    elif [[ -n \${_druvaa_files["$cmd $prev"]:-} ]]; then
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
    return 0
  fi
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "\${_druvaa_flags["$cmd"]:-}" -- "$cur")
  elif [[ -n \${_druvaa_subs["$cmd"]:-} ]]; then
    mapfile -t COMPREPLY < <(compgen -W "\${_druvaa_subs["$cmd"]}" -- "$cur")
  else
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  fi
  return 0
}
complete -F _druvaa druvaa drresync drrestore dradmin
`;
}

/** zsh: installed as /usr/share/zsh/vendor-completions/_druvaa (Debian) or site-functions (RPM). */
export function zshCompletion(root: CliCommand): string {
  const t = tables(root, true);
  return `#compdef druvaa drresync drrestore dradmin
# zsh completion for druvaa and its aliases.
# Generated from the druvaa command tree by scripts/package.ts: do not edit.
typeset -gA _druvaa_subs _druvaa_flags _druvaa_values _druvaa_files _druvaa_valued
${assoc("_druvaa_subs", t.subs, "zsh")}
${assoc("_druvaa_flags", t.flags, "zsh")}
${assoc("_druvaa_values", t.values, "zsh")}
${set("_druvaa_files", t.files, "zsh")}
${set("_druvaa_valued", t.valued, "zsh")}

_druvaa() {
  local cmd="druvaa" w sub i
  local -a entries
  case "\${words[1]:t}" in
${Object.entries(aliasPaths).map(([a, p]) => `    ${a}) cmd=${sq(`druvaa ${p}`)} ;;`).join("\n")}
  esac
  for ((i = 2; i < CURRENT; i++)); do
    w="\${words[i]}"
    if [[ $w == --* ]]; then
      [[ $w != *=* && -n \${_druvaa_valued[$cmd $w]} ]] && ((i++))
      continue
    fi
    for sub in \${(f)_druvaa_subs[$cmd]}; do
      if [[ \${sub%%:*} == "$w" ]]; then cmd="$cmd $w"; break; fi
    done
  done
  local prev="\${words[CURRENT-1]}"
  if [[ $prev == --* && -n \${_druvaa_valued[$cmd $prev]} ]]; then
    if [[ -n \${_druvaa_values[$cmd $prev]} ]]; then
      compadd -- \${=_druvaa_values[$cmd $prev]}
    elif [[ -n \${_druvaa_files[$cmd $prev]} ]]; then
      _files
    fi
    return
  fi
  if [[ \${words[CURRENT]} == -* ]]; then
    entries=(\${(f)_druvaa_flags[$cmd]})
    _describe -t options 'option' entries
  elif [[ -n \${_druvaa_subs[$cmd]} ]]; then
    entries=(\${(f)_druvaa_subs[$cmd]})
    _describe -t commands 'command' entries
  else
    _files
  fi
}

_druvaa "$@"
`;
}
