/**
 * The default configs as the MSI installs them: the Linux files of packaging/config with their
 * paths moved to the Windows layout (the MSI's %ProgramData%\druvaa, written C:/ProgramData/druvaa:
 * Windows takes forward slashes, and a TOML basic string would need every backslash doubled),
 * devices as image files (a FILL-IN the admin replaces), and the client's export on loopback TCP
 * (the NBD clients of Windows hosts do not take Unix sockets). Comments are kept; a header says
 * what changed.
 */
const programData = "C:/ProgramData/druvaa";

const rewrites: [RegExp, string][] = [
  [/\/etc\/druvaa\//g, `${programData}/`],
  [/\/var\/lib\/druvaa\//g, `${programData}/`],
  [/\/dev\/disk\/by-id\/(FILL-IN-[\w-]+)/g, "D:/druvaa/$1.img"],
  [/"unix:\/run\/druvaa\/[\w.-]+\.sock"/g, '"127.0.0.1:10809"'],
];

export function windowsConfig(text: string): string {
  let out = text;
  for (const [pattern, replacement] of rewrites) out = out.replace(pattern, replacement);
  const header = `# Windows: installed by the MSI in ${programData.replaceAll("/", "\\")}. Paths use forward slashes (Windows\n# takes them); devices are image files; the services run under WinSW (druvaa-ROLE-service.exe).\n`;
  return header + out;
}
