/** JSON requests to a role's plain-HTTP control port (tests run roles with --insecure on loopback). */
import { expect } from "bun:test";

/** POST `body` as JSON to http://CONTROL/PATH; the answer's status and JSON body. */
export async function postJson(control: string, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://${control}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

/** GET http://CONTROL/PATH, which must answer 200; its JSON body. */
export async function getJson(control: string, path: string): Promise<any> {
  const response = await fetch(`http://${control}${path}`);
  expect(response.status).toBe(200);
  return response.json();
}
