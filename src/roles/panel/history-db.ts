/**
 * Small queries the monitoring modules (status-alerts.ts, live.ts, digest.ts) share on the panel
 * database (PanelStore.database: one connection, its transactions shared).
 */
import type { Database } from "bun:sqlite";
import type { PanelStore } from "./store.ts";

export function databaseOf(store: PanelStore): Database {
  return store.database;
}

/** Open alerts as "component\ncode" keys. */
export function openAlertKeys(db: Database): Set<string> {
  const rows = db.query("SELECT component, code FROM alerts WHERE cleared_at IS NULL").all() as { component: string; code: string }[];
  return new Set(rows.map((row) => `${row.component}\n${row.code}`));
}

export function openAlertCount(db: Database): number {
  return Number((db.query("SELECT count(*) AS n FROM alerts WHERE cleared_at IS NULL").get() as { n: bigint }).n);
}
