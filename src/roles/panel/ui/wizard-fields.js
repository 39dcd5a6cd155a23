// The Wizard's fields: names are the API's field paths (pair.devicePath, wrl.sizeBytes …), so a
// refusal's error.field lands next to the right input.

export const initialSyncModes = [
  ["checksum", "checksum: compare both sides, copy what differs"],
  ["network", "network: copy the whole device"],
  ["media", "media: the replica was seeded from a copy (then checksum)"],
  ["none", "none: both sides are already equal"],
];

export const compressionChoices = [["", "(default: auto)"], ["auto", "auto"], ["off", "off"], ...Array.from({ length: 19 }, (_, i) => [String(i + 1), `zstd level ${i + 1}`])];

const absolute = (value) => (value === "" ? "is required" : /^(\/|[A-Za-z]:\\|\\\\)/.test(value) ? undefined : "must be an absolute path");
const exportCheck = (value) => (value === "" ? "is required" : /^(unix:\/.+|[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5})$/.test(value) ? undefined : "must be unix:/PATH or HOST:PORT");

export function wizardFields({ checkName, required, parseSize }) {
  const whenNew = (check) => (value, all) => (all.wrlMode === "new" ? check(value, all) : undefined);
  const size = (value) => (value === "" ? "is required" : parseSize(value) === undefined ? "must be a size such as 10GiB or a number of bytes" : undefined);
  return [
    { name: "pair.name", id: "wiz-pair-name", label: "Pair name", help: "A name for this replication pair (letters, digits, . _ -), e.g. pair-db.", check: checkName },
    { name: "pair.client", id: "wiz-client", label: "Client host", type: "select", options: [], help: "The production host (a registered component of role client) whose device is protected.", check: required },
    { name: "pair.devicePath", id: "wiz-device-path", label: "Device path on the client", placeholder: "/dev/sdb", help: "The block device or image file to protect; Probe shows its size as the client host sees it.", check: absolute },
    { name: "pair.deviceName", id: "wiz-device-name", label: "Device name", placeholder: "disk0", help: "The device's name in the pair and on the replica (letters, digits, . _ -).", check: checkName },
    { name: "pair.export", id: "wiz-export", label: "Export (NBD)", placeholder: "unix:/run/druvaa/disk0.sock", help: "Where the client serves the protected device; applications write through this export.", check: exportCheck },
    { name: "wrl.staging", id: "wiz-staging", label: "Staging server", type: "select", options: [], help: "The staging server that logs every write in its WRL before acknowledging it.", check: whenNew(required) },
    { name: "wrlMode", id: "wiz-wrl-mode", label: "Write log (WRL)", type: "select", options: [["existing", "use an existing WRL"], ["new", "create a new WRL"]], help: "Several pairs may share one WRL on the staging server." },
    { name: "pair.wrl", id: "wiz-wrl-existing", label: "Existing WRL", type: "select", options: [], check: (value, all) => (all.wrlMode === "existing" ? required(value) : undefined) },
    { name: "wrl.name", id: "wiz-wrl-name", label: "New WRL name", placeholder: "fast", check: whenNew(checkName) },
    { name: "wrl.paths", id: "wiz-wrl-paths", label: "WRL device paths", type: "textarea", rows: 2, placeholder: "/var/lib/druvaa/wrl/fast.img", help: "One path a line: the primary first, then secondaries. A missing primary is created with the size below.", check: whenNew((value) => (value === "" ? "is required" : undefined)) },
    { name: "wrl.sizeBytes", id: "wiz-wrl-size", label: "WRL size", placeholder: "10GiB", help: "How much the log holds; Compute sizes suggests one from the write rate and the longest outage to ride out.", check: whenNew(size) },
    { name: "wrl.stagingAddress", id: "wiz-staging-address", label: "Staging data address (optional)", placeholder: "10.0.0.5:6001", help: "Where clients reach the staging server's data port; empty: learnt from the staging server's status." },
    { name: "wrl.replicaAddress", id: "wiz-replica-address", label: "Replica data address (optional)", placeholder: "10.0.0.9:6003", help: "Where the staging server reaches the replica's data port; empty: learnt from the replica server's status (it must be running)." },
    { name: "sizing.writeBytesPerSecond", id: "wiz-sizing-write", label: "Sizing: peak write rate", placeholder: "20MiB", help: "Bytes a second the applications write at peak (e.g. 20MiB)." },
    { name: "sizing.outageSeconds", id: "wiz-sizing-outage", label: "Sizing: outage to ride out (seconds)", placeholder: "3600", help: "How long the replica may be unreachable without a resync." },
    { name: "pair.replica", id: "wiz-replica", label: "Replica server", type: "select", options: [], help: "The replica server (a registered component of role replica) that keeps the copy.", check: required },
    { name: "pair.replicaDevicePath", id: "wiz-replica-path", label: "Replica device path", placeholder: "/srv/replica/disk0.img", help: "A block device or image file on the replica server; a missing image file is created.", check: absolute },
    { name: "pair.replicaSizeBytes", id: "wiz-replica-size", label: "Replica device size", placeholder: "(from sizing)", help: "At least the primary's size plus the header reserve; Compute sizes fills it in. Empty: the server decides.", check: (value) => (value === "" ? undefined : size(value)) },
    { name: "pair.initialSync", id: "wiz-initial-sync", label: "Initial sync", type: "select", options: initialSyncModes, help: "How the replica first becomes equal to the primary." },
    { name: "wrl.compression", id: "wiz-compression", label: "Compression (new WRL)", type: "select", options: compressionChoices, help: "zstd on the staging → replica link; auto pauses it when data barely compresses." },
    { name: "pair.rateLimit", id: "wiz-rate-limit", label: "Rate limit", placeholder: "50MiB/s", help: "Caps the initial sync and resync traffic, e.g. 50MiB/s. Empty: no limit." },
    { name: "wrl.rpo", id: "wiz-rpo", label: "RPO (new WRL)", placeholder: "30s", help: "The recovery point objective: an alert is raised when the replica lags more than this." },
    { name: "changemap.path", id: "wiz-changemap", label: "Change map path", placeholder: "/var/lib/druvaa/pair-db.map", help: "Where the client keeps the bitmap of blocks written while disconnected; network and checksum initial sync need one.", check: (value, all) => (value === "" ? (all["pair.initialSync"] === "network" || all["pair.initialSync"] === "checksum" ? `is required for ${all["pair.initialSync"]} initial sync (or pick none or media)` : undefined) : absolute(value)) },
  ];
}
