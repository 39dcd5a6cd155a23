/**
 * A role's revocation list, kept current while the role runs: `druvaa admin cert revoke` rewrites
 * crl.pem (temp file, fsync, rename) and every role given that file with --crl takes the new list
 * without a restart, for its data links and its control port alike.
 *
 * When the file is looked at (one stat; it is read again only when its inode, size, mtime or ctime
 * changed): at every new TLS connection (current(), called by authorizeTlsPeer, so a peer revoked a
 * moment ago is refused at its next connection), every crlCheckIntervalMs on an unref'd timer, and on
 * SIGHUP. A newly loaded list is given to onChange listeners, which end the open sessions of peers
 * it revokes (src/io/transport.ts, src/io/control-https.ts).
 *
 * Decision table, per look at the file:
 *   unchanged                                    → keep the list; nothing logged
 *   changed; parses, signed by our CA, CRL number
 *     not lower than the one in use              → use it; logged (number, count) if it differs; listeners told
 *   changed; missing, unreadable, not a CRL,
 *     another CA's, or a bad signature           → keep the list in use; one error with a hint per version
 *                                                  of the file (a later good version is taken)
 *   changed; valid but a lower CRL number        → keep the list in use (a stale copy must not un-revoke);
 *                                                  one error per version
 * It never drops to "no CRL": the first list is loaded at start, where a bad file stops the role
 * (TLS_CRL_INVALID). A check never throws.
 */
import { readFileSync, statSync } from "node:fs";
import { logger } from "../log.ts";
import { crlCheckIntervalMs } from "./constants.ts";
import { loadRevocationList, type RevocationList } from "./crl.ts";
import type { TrustAnchor } from "./trust.ts";

/** Where verifyPeer's revoked serials come from: a fixed list, or a file watched while running. */
export interface RevocationSource {
  /** The list to check a peer against now; a watched file is looked at first (see the file comment). */
  current(): RevocationList;
  /**
   * Calls `listener` with every list loaded from now on (after the current call stack, never
   * during a check); returns the function that unsubscribes it. A fixed list never calls it.
   */
  onChange(listener: (list: RevocationList) => void): () => void;
}

/** A revocation list that never changes (a test's, or a tool's for its one connection). */
export function fixedRevocations(list: RevocationList): RevocationSource {
  return { current: () => list, onChange: () => () => undefined };
}

export interface CrlWatcher extends RevocationSource {
  /** Looks at the file now; true when a new list was loaded. Never throws. */
  check(): boolean;
  /** Stops the timer and the SIGHUP handler; current() keeps answering with the last list. */
  close(): void;
}

export interface WatchOptions {
  /** How often the timer looks at the file (default crlCheckIntervalMs); 0: no timer. */
  intervalMs?: number;
  /** Look at the file on SIGHUP too (roles; not short-lived tools). */
  sighup?: boolean;
}

const log = logger("tls:crl");

const reloadHint = (path: string) => `Fix or replace ${path} with the CA's crl.pem (druvaa admin cert revoke rewrites it; druvaa admin ca init made the first one); the revocation list in use stays until then`;

/** What identifies a version of the file without reading it. */
function fileVersion(path: string): string {
  try {
    const stat = statSync(path);
    return `${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}`;
  } catch (error) {
    return `error:${(error as { code?: unknown }).code ?? String(error)}`;
  }
}

/**
 * Watches `path`, whose contents at start were `initial` (already loaded and verified against
 * `anchor` by the caller). The first check reads the file again, so a change between the
 * caller's read and this call is not missed.
 */
export function watchRevocationList(path: string, anchor: TrustAnchor, initial: RevocationList, options: WatchOptions = {}): CrlWatcher {
  let list = initial;
  let seenVersion: string | undefined;
  const listeners = new Set<(list: RevocationList) => void>();
  const check = (): boolean => {
    const version = fileVersion(path);
    if (version === seenVersion) return false;
    seenVersion = version;
    const keep = (why: string) => {
      log.error(`revocation list ${path} changed and was not taken: ${why}; still refusing the ${list.entries.length} serial(s) of CRL number ${list.crlNumber}. ${reloadHint(path)}`);
      return false;
    };
    let loaded: RevocationList;
    try {
      if (version.startsWith("error:")) return keep(`the new file cannot be read (${version.slice("error:".length)})`);
      loaded = loadRevocationList(readFileSync(path, "utf8"), anchor, "the new file");
    } catch (error) {
      return keep(error instanceof Error ? error.message : String(error));
    }
    if (loaded.crlNumber < list.crlNumber) return keep(`the new file's CRL number ${loaded.crlNumber} is older than number ${list.crlNumber} in use (a stale copy must not lift revocations)`);
    const same = loaded.crlNumber === list.crlNumber && loaded.entries.length === list.entries.length && loaded.entries.every((entry) => list.serials.has(entry.serial));
    list = loaded;
    if (same) return false;
    log.info(`revocation list ${path} reloaded: CRL number ${loaded.crlNumber}, ${loaded.entries.length} revoked serial(s)`);
    for (const listener of listeners) queueMicrotask(() => listener(loaded));
    return true;
  };
  const intervalMs = options.intervalMs ?? crlCheckIntervalMs;
  const timer = intervalMs > 0 ? setInterval(check, intervalMs) : undefined;
  timer?.unref();
  const onSighup = () => {
    log.info(`SIGHUP: looking at revocation list ${path}`);
    check();
  };
  if (options.sighup === true) process.on("SIGHUP", onSighup);
  return {
    current() {
      check();
      return list;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    check,
    close() {
      clearInterval(timer);
      process.off("SIGHUP", onSighup);
    },
  };
}
