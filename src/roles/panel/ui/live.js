// GET /api/live as an EventSource: `status` after every poll round, `alert` on each alert raised or
// cleared. Pages subscribe while shown. EventSource retries by itself after a dropped connection;
// when it gives up (an error answer, e.g. 401 after the session ended) we reopen it with a backoff.

const retryFirstMs = 1_000;
const retryMaxMs = 30_000;

export class Live {
  constructor({ onState, onStatus, onAlert, onClosed }) {
    this.handlers = { status: new Set(), alert: new Set() };
    if (onStatus) this.handlers.status.add(onStatus);
    if (onAlert) this.handlers.alert.add(onAlert);
    this.onState = onState ?? (() => {});
    /** Told when the server refused the stream (e.g. the session ended), before each reopen. */
    this.onClosed = onClosed ?? (() => {});
    this.retryMs = retryFirstMs;
    this.timer = null;
    this.closed = false;
    this.last = { status: null };
    this.open();
  }

  open() {
    if (this.closed) return;
    this.onState("connecting");
    // Components summarized (role, version, uptime): the tables need no more, and each event stays small.
    const source = new EventSource("/api/live?components=summary");
    this.source = source;
    source.addEventListener("open", () => {
      this.retryMs = retryFirstMs;
      this.onState("open");
    });
    for (const kind of ["status", "alert"]) {
      source.addEventListener(kind, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return; // A torn event: the next status round carries the whole state again.
        }
        if (kind === "status") {
          this.last.status = data;
          // For profiling (bench/panel.ts --timeline): when each status event arrived.
          performance.mark("druvaa:live-status");
        }
        for (const handler of this.handlers[kind]) {
          try {
            handler(data);
          } catch (error) {
            console.error(`live ${kind} handler:`, error);
          }
        }
      });
    }
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        this.onState("reconnecting");
        source.close();
        this.onClosed();
        this.timer = setTimeout(() => this.open(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, retryMaxMs);
      } else {
        this.onState("reconnecting");
      }
    });
  }

  /** handler(data) for each `kind` event until the returned function is called. */
  on(kind, handler) {
    this.handlers[kind].add(handler);
    return () => this.handlers[kind].delete(handler);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.source?.close();
  }
}
