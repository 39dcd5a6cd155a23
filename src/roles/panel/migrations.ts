/**
 * The panel database's schema, as numbered migrations. `schema_version` holds the one number
 * this database is at; opening applies the missing migrations in order, each in its own
 * transaction together with the new version number, so a crash leaves the database at a version
 * it really is at. A database at a version above the last one here was written by a newer druvaa:
 * refused (PANEL_DB_TOO_NEW), never downgraded or half-read.
 */
import type { Database } from "bun:sqlite";
import { DruvaaError, exitCodes } from "../../errors.ts";

/** Migration N (index N-1) takes the database from version N-1 to N. Append only; never edit one that shipped. */
export const migrations: readonly string[] = [
  `CREATE TABLE users (
     name TEXT PRIMARY KEY,
     role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
     password_hash TEXT NOT NULL,
     must_change_password INTEGER NOT NULL CHECK (must_change_password IN (0, 1)),
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE sessions (
     token_hash TEXT PRIMARY KEY,
     user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
     csrf_token TEXT NOT NULL,
     expires_ms INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX sessions_by_user ON sessions(user_name);
   CREATE TABLE components (
     name TEXT PRIMARY KEY,
     role TEXT NOT NULL CHECK (role IN ('client', 'staging', 'replica')),
     control TEXT NOT NULL,
     added_by TEXT NOT NULL,
     added_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE activity (
     id INTEGER PRIMARY KEY,
     time TEXT NOT NULL,
     user_name TEXT NOT NULL,
     action TEXT NOT NULL,
     detail TEXT NOT NULL
   ) STRICT;
   CREATE TABLE alerts (
     id INTEGER PRIMARY KEY,
     component TEXT NOT NULL,
     code TEXT NOT NULL,
     message TEXT NOT NULL,
     raised_at TEXT NOT NULL,
     cleared_at TEXT
   ) STRICT;
   CREATE INDEX alerts_open ON alerts(component, code) WHERE cleared_at IS NULL;`,
  // Email alerts (issue 7). auth_password is stored as given, not hashed: the panel must send it
  // to the SMTP server. The database file is kept 0600 (PanelStore.open) for this reason; it is
  // never returned by the API. codes/components: a JSON list of names, or "*" for all.
  `CREATE TABLE mail_settings (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     host TEXT NOT NULL,
     port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
     from_address TEXT NOT NULL,
     starttls TEXT NOT NULL CHECK (starttls IN ('never', 'if-offered', 'required')),
     auth_user TEXT,
     auth_password TEXT,
     enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
     updated_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE mail_recipients (
     address TEXT PRIMARY KEY,
     codes TEXT NOT NULL,
     components TEXT NOT NULL,
     cleared INTEGER NOT NULL CHECK (cleared IN (0, 1)),
     added_by TEXT NOT NULL,
     added_at TEXT NOT NULL
   ) STRICT;`,
  // Configuration (issue 7, docs/panel.md): WRLs, change maps and pairs as the panel decided them,
  // each component's decided config (pushed with a two-phase commit; acked_version is what the
  // component last reported committed), and the transactions with every component's answer.
  // paths, options, components, reasons: JSON.
  `CREATE TABLE hosts (
     name TEXT PRIMARY KEY,
     address TEXT NOT NULL,
     added_at TEXT NOT NULL
   ) STRICT;
   ALTER TABLE components ADD COLUMN host TEXT;
   CREATE TABLE wrls (
     name TEXT PRIMARY KEY,
     staging TEXT NOT NULL REFERENCES components(name),
     paths TEXT NOT NULL,
     size_bytes INTEGER NOT NULL CHECK (size_bytes > 0),
     replica TEXT NOT NULL REFERENCES components(name),
     replica_address TEXT NOT NULL,
     options TEXT NOT NULL,
     created_by TEXT NOT NULL,
     created_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE changemaps (
     name TEXT PRIMARY KEY,
     client TEXT NOT NULL REFERENCES components(name),
     path TEXT NOT NULL,
     created_by TEXT NOT NULL,
     created_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE pairs (
     name TEXT PRIMARY KEY,
     client TEXT NOT NULL REFERENCES components(name),
     device_name TEXT NOT NULL,
     device_path TEXT NOT NULL,
     device_size_bytes INTEGER NOT NULL CHECK (device_size_bytes > 0),
     export TEXT NOT NULL,
     wrl TEXT NOT NULL REFERENCES wrls(name),
     changemap TEXT REFERENCES changemaps(name),
     replica_device_path TEXT NOT NULL,
     replica_size_bytes INTEGER NOT NULL CHECK (replica_size_bytes > 0),
     initial_sync TEXT NOT NULL CHECK (initial_sync IN ('none', 'network', 'checksum', 'media')),
     options TEXT NOT NULL,
     enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
     created_by TEXT NOT NULL,
     created_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE component_config (
     component TEXT PRIMARY KEY REFERENCES components(name) ON DELETE CASCADE,
     version INTEGER NOT NULL,
     txid TEXT NOT NULL,
     config TEXT NOT NULL,
     acked_version INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE config_tx (
     txid TEXT PRIMARY KEY,
     time TEXT NOT NULL,
     user_name TEXT NOT NULL,
     summary TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('preparing', 'committed', 'aborted')),
     components TEXT NOT NULL,
     reasons TEXT NOT NULL
   ) STRICT;`,
  // Metric history (downsampled: tier 0 every poll, 1 per minute, 2 per 15 minutes; each tier
  // bounded by age) and the weekly digest's schedule.
  `CREATE TABLE metric_samples (
     series TEXT NOT NULL,
     tier INTEGER NOT NULL CHECK (tier IN (0, 1, 2)),
     t_ms INTEGER NOT NULL,
     value REAL NOT NULL,
     PRIMARY KEY (series, tier, t_ms)
   ) STRICT, WITHOUT ROWID;
   CREATE TABLE digest_settings (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
     weekday INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
     hour INTEGER NOT NULL CHECK (hour BETWEEN 0 AND 23),
     last_sent_ms INTEGER NOT NULL
   ) STRICT;
   INSERT INTO digest_settings (id, enabled, weekday, hour, last_sent_ms) VALUES (1, 1, 1, 8, 0);`,
];

/** The schema version this druvaa writes. */
export const schemaVersionLatest = migrations.length;

/** The database's version (0: a new, empty database). */
export function schemaVersionOf(db: Database): number {
  db.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT");
  const row = db.query("SELECT version FROM schema_version").get() as { version: bigint | number } | null;
  return row === null ? 0 : Number(row.version);
}

/** Brings `db` (opened from `path`) to schemaVersionLatest; returns the version it was at. */
export function migrate(db: Database, path: string): number {
  const found = schemaVersionOf(db);
  if (found > schemaVersionLatest) {
    throw new DruvaaError("PANEL_DB_TOO_NEW", `the panel database ${path} is at schema version ${found}, newer than this druvaa knows (${schemaVersionLatest})`, "It was written by a newer druvaa: run that version of druvaa panel, or restore a backup of the database made before the upgrade", exitCodes.refused);
  }
  for (let version = found + 1; version <= schemaVersionLatest; version += 1) {
    db.transaction(() => {
      db.run(migrations[version - 1]!);
      db.run("DELETE FROM schema_version");
      db.query("INSERT INTO schema_version (version) VALUES ($version)").run({ version });
    })();
  }
  return found;
}
