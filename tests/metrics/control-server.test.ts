/**
 * GET /metrics on the control port (src/io/control-server.ts), against a real Bun server on
 * loopback with stand-in routes: rendered from the /status route with the 0.0.4 content type;
 * failures answer 500 in plain text and the server keeps serving; a role's own /metrics route
 * wins; no /status, no /metrics; the other routes behave as before.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import { startControlServer, type ControlRoute, type ControlServer } from "../../src/io/control-server.ts";
import { setLogLevel } from "../../src/log.ts";
import { parseExposition, sampleValue } from "./exposition-parser.ts";
import { stagingStatus } from "./status-fixtures.ts";

let server: ControlServer | undefined;

afterEach(async () => {
  await server?.stop();
  server = undefined;
});

async function start(routes: Record<string, ControlRoute>): Promise<string> {
  server = await startControlServer({ kind: "tcp", host: "127.0.0.1", port: 0 }, routes, "metrics-test");
  return `http://${server.address}`;
}

describe("control port GET /metrics", () => {
  test("renders the /status route as Prometheus text 0.0.4; /status is unchanged", async () => {
    const status = stagingStatus();
    const base = await start({ "/status": () => status, "POST /resync": () => ({ ok: true }) });
    const response = await fetch(`${base}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const metrics = parseExposition(await response.text());
    expect(sampleValue(metrics, "druvaa_staging_wrl_head_lsn", { wrl: "wrl0" })).toBe(21);
    expect(sampleValue(metrics, "druvaa_info", { role: "staging" })).toBe(1);
    expect(await (await fetch(`${base}/status`)).json()).toEqual(status);
    expect(await (await fetch(`${base}/resync`, { method: "POST" })).json()).toEqual({ ok: true });
    const notFound = await fetch(`${base}/nothing`);
    expect(notFound.status).toBe(404);
    expect(((await notFound.json()) as { error: { hint: string } }).error.hint).toBe("Try: GET /status, POST /resync, GET /metrics");
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(404);
  });

  test("each scrape renders the status as it is then", async () => {
    const status = stagingStatus();
    const base = await start({ "/status": () => status });
    status.wrls[0].headLsn = 99;
    expect(sampleValue(parseExposition(await (await fetch(`${base}/metrics`)).text()), "druvaa_staging_wrl_head_lsn")).toBe(99);
  });

  test("a failing status route or an unrenderable status answers 500 in text; the server keeps serving", async () => {
    setLogLevel(-1);
    try {
      let answer: () => unknown = () => {
        throw new DruvaaError("IO_ERROR", "reading the WRL superblock failed");
      };
      const base = await start({ "/status": () => answer() });
      const failed = await fetch(`${base}/metrics`);
      expect(failed.status).toBe(500);
      expect(failed.headers.get("content-type")).toBe("text/plain; charset=utf-8");
      expect(await failed.text()).toBe("error IO_ERROR: reading the WRL superblock failed\n");
      answer = () => ({ nodeId: "no role" });
      const bad = await fetch(`${base}/metrics`);
      expect(bad.status).toBe(500);
      expect(await bad.text()).toStartWith("error BAD_STATUS: ");
      answer = () => ({ role: "staging", stopping: false, clients: [{ nodeId: "n", inflightWrites: -1 }] });
      expect((await fetch(`${base}/metrics`)).status).toBe(200);
      answer = () => ({ role: "client", devices: [{ name: "d", writes: -5 }] }); // a counter cannot go below 0: a bug, said loudly
      const negative = await fetch(`${base}/metrics`);
      expect(negative.status).toBe(500);
      expect(await negative.text()).toContain("druvaa_client_writes_total");
      answer = () => stagingStatus();
      expect((await fetch(`${base}/metrics`)).status).toBe(200);
    } finally {
      setLogLevel(Number.parseInt(process.env.DRUVAA_LOG_LEVEL ?? "3", 10));
    }
  });

  test("a status route answering a Response is read as JSON", async () => {
    const base = await start({ "/status": () => Response.json(stagingStatus()) });
    expect(sampleValue(parseExposition(await (await fetch(`${base}/metrics`)).text()), "druvaa_staging_clients")).toBe(1);
  });

  test("a role's own /metrics route is kept; without /status there is no /metrics", async () => {
    const own = await start({ "/status": () => stagingStatus(), "/metrics": () => new Response("own\n") });
    expect(await (await fetch(`${own}/metrics`)).text()).toBe("own\n");
    await server!.stop();
    const bare = await start({ "/other": () => ({ ok: true }) });
    expect((await fetch(`${bare}/metrics`)).status).toBe(404);
  });
});
