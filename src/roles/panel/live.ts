/**
 * GET /api/live [viewer]: a text/event-stream of the panel's monitoring, for the web UI.
 *   event: status   after every poll round: {components (as GET /api/status), pairs (as GET
 *                   /api/pairs, when `pairs` is wired), alerts: {open}, timeMs};
 *                   a new stream gets the newest round's at once. With ?components=summary
 *                   (the web UI) each component's `status` keeps only role, nodeId, version and
 *                   uptimeSeconds: a few KiB a round instead of every WRL, device and attachment
 *   event: alert    on each alert raised or cleared: {kind, component, role, code, message, time}
 *   ": heartbeat"   a comment every liveHeartbeatMs, so proxies and the browser see the stream alive
 * Authenticated like every route (server.ts: the session cookie; a GET needs no CSRF token).
 * Bounded: at most liveStreamsMax streams (more: 503 LIVE_STREAMS_FULL); a reader that falls
 * liveQueuedEventsMax events behind is closed (EventSource reconnects and starts fresh) rather than
 * buffering without bound. close() ends every stream (the panel stopping).
 * Not guaranteed: every event to a reader that reconnects (no replay; the next status event
 * carries the whole state again).
 */
import { logger } from "../../log.ts";
import { liveHeartbeatMs, liveQueuedEventsMax, liveStreamsMax } from "./constants.ts";
import { ApiError } from "./http.ts";
import type { AlertEvent } from "./mailer.ts";
import type { ComponentStatus } from "./monitor.ts";

const log = logger("panel:live");
const encoder = new TextEncoder();

interface Stream {
  controller: ReadableStreamDefaultController<Uint8Array>;
  user: string;
  /** ?components=summary: components without their full status. */
  summary: boolean;
}

type Round = { statuses: readonly ComponentStatus[]; timeMs: number; pairs?: unknown[] };

/** A component as a summary stream shows it: what the UI's components table reads. */
function summaryOf(component: ComponentStatus): ComponentStatus {
  if (!component.reachable) return component;
  const { role, nodeId, version, uptimeSeconds } = component.status;
  return { ...component, status: { role, nodeId, version, uptimeSeconds } };
}

export interface LiveOptions {
  /** Open alerts now (the status event's alerts.open). */
  openAlerts: () => number;
  nowMs?: () => number;
  heartbeatMs?: number;
  streamsMax?: number;
  /** Lifts the HTTP server's idle timeout for a stream's request (Bun.serve's server.timeout(request, 0)). */
  keepOpen?: ((request: Request) => void) | undefined;
}

export class LiveStreams {
  private readonly streams = new Set<Stream>();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  /** The newest round's statuses and time, sent to a stream as it opens (so a page need not wait a round). */
  private last: Round | undefined;
  /**
   * The pairs as GET /api/pairs shows them, described from the round's statuses (no second fetch:
   * PairStates.fromRound), added to status events when set; asked at every round (the rounds feed
   * the pairs' write rates) and, with `replay` true, for the newest round again as a stream opens.
   * Unset, status events carry no `pairs`.
   */
  pairs: ((statuses: readonly ComponentStatus[], timeMs: number, replay?: boolean) => unknown[]) | undefined;
  keepOpen: ((request: Request) => void) | undefined;

  constructor(private readonly options: LiveOptions) {
    this.keepOpen = options.keepOpen;
  }

  get count(): number {
    return this.streams.size;
  }

  /** GET /api/live: the stream's Response (503 when liveStreamsMax are open). */
  open(request: Request, user: string): Response {
    const components = new URL(request.url).searchParams.get("components") ?? "full";
    if (components !== "full" && components !== "summary") throw new ApiError(400, "BAD_FIELD", `components: "${components.slice(0, 40)}" is not full or summary`, "GET /api/live?components=summary (each component's status trimmed) or without it");
    const summary = components === "summary";
    const max = this.options.streamsMax ?? liveStreamsMax;
    if (this.closed) throw new ApiError(503, "PANEL_STOPPING", "the panel is stopping", "Reconnect in a moment");
    if (this.streams.size >= max) {
      throw new ApiError(503, "LIVE_STREAMS_FULL", `the panel serves at most ${max} live streams at once`, "Close panel tabs you do not use; the page still works by reloading", { "retry-after": "30" });
    }
    let stream: Stream | undefined;
    const body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          stream = { controller, user, summary };
          this.streams.add(stream);
          controller.enqueue(encoder.encode(`retry: 5000\n: connected\n\n`));
          if (this.last !== undefined) {
            // The newest round again, its pairs described now (no fetch): a pair created since that round shows at once.
            const replay = this.pairs === undefined ? this.last : { ...this.last, pairs: this.describeReplay(this.last) };
            controller.enqueue(this.statusChunk(replay, summary));
          }
          this.startHeartbeat();
        },
        cancel: () => {
          if (stream !== undefined) this.drop(stream);
        },
      },
      { highWaterMark: 1 },
    );
    request.signal.addEventListener("abort", () => {
      if (stream !== undefined) this.end(stream);
    });
    this.keepOpen?.(request);
    return new Response(body, {
      headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-content-type-options": "nosniff", "x-accel-buffering": "no" },
    });
  }

  private describeReplay(round: Round): unknown[] | undefined {
    try {
      return this.pairs!(round.statuses, round.timeMs, true);
    } catch (error) {
      log.error(`live status: the pairs: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      return round.pairs;
    }
  }

  /** After a poll round. */
  status(statuses: readonly ComponentStatus[]): void {
    const timeMs = (this.options.nowMs ?? Date.now)();
    let pairs: unknown[] | undefined;
    // Described at every round, stream or not: the rounds feed the pairs' write rates GET /api/pairs shows.
    if (this.pairs !== undefined) {
      try {
        pairs = this.pairs(statuses, timeMs);
      } catch (error) {
        // The components still go out; the pairs come back with the next round that describes them.
        log.error(`live status: the pairs: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      }
    }
    this.last = { statuses, timeMs, ...(pairs === undefined ? {} : { pairs }) };
    if (this.streams.size > 0 && !this.closed) {
      // Each form encoded once a round, whatever the number of streams.
      const round = this.last;
      let full: Uint8Array | undefined;
      let summary: Uint8Array | undefined;
      this.send((stream) => (stream.summary ? (summary ??= this.statusChunk(round, true)) : (full ??= this.statusChunk(round, false))));
    }
  }

  private statusChunk(round: Round, summary: boolean): Uint8Array {
    const components = summary ? round.statuses.map(summaryOf) : round.statuses;
    return eventChunk("status", { components, ...(round.pairs === undefined ? {} : { pairs: round.pairs }), alerts: { open: this.options.openAlerts() }, timeMs: round.timeMs });
  }

  /** On each alert raised or cleared. */
  alert(event: AlertEvent): void {
    if (this.streams.size === 0) return;
    this.send(eventChunk("alert", { kind: event.kind, component: event.component, role: event.role, code: event.code, message: event.message, time: event.time.toISOString() }));
  }

  /** Ends every stream (the panel stopping); later requests get 503. */
  close(): void {
    this.closed = true;
    for (const stream of [...this.streams]) this.end(stream);
    this.stopHeartbeat();
  }

  private send(chunkOf: Uint8Array | ((stream: Stream) => Uint8Array)): void {
    for (const stream of [...this.streams]) {
      const chunk = typeof chunkOf === "function" ? chunkOf(stream) : chunkOf;
      const queued = 1 - (stream.controller.desiredSize ?? 0);
      if (queued > liveQueuedEventsMax) {
        log.warn(`live stream of ${stream.user} is ${queued} events behind: closed (the browser reconnects)`);
        this.end(stream);
        continue;
      }
      try {
        stream.controller.enqueue(chunk);
      } catch {
        this.drop(stream); // already closed by the reader
      }
    }
  }

  private end(stream: Stream): void {
    if (!this.streams.has(stream)) return;
    this.drop(stream);
    try {
      stream.controller.close();
    } catch {
      // closed or errored by the reader already: nothing left to end
    }
  }

  private drop(stream: Stream): void {
    this.streams.delete(stream);
    if (this.streams.size === 0) this.stopHeartbeat();
  }

  private startHeartbeat(): void {
    this.heartbeat ??= setInterval(() => this.send(encoder.encode(": heartbeat\n\n")), this.options.heartbeatMs ?? liveHeartbeatMs);
  }

  private stopHeartbeat(): void {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }
}

/** One event; JSON has no raw line breaks, so its data is one `data:` line. */
function eventChunk(event: string, data: unknown): Uint8Array {
  return encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}
