/**
 * The start of a relay session (relay.ts): `resume {wrl, wrlUuid}` → `resumeAck {appliedLsn,
 * devices}`, checked against the WRL (rows "answer to resume …" and "resumeAck.appliedLsn …" of
 * relay.ts's decision table). What the relay then does with the answer stays in relay.ts.
 */
import { assert } from "../../assert.ts";
import { stagingResumeTimeoutMs } from "../../constants.ts";
import type { Frame } from "../../protocol/frame.ts";
import type { Message, ResumeAckMessage } from "../../protocol/messages.ts";
import type { WrlInfo } from "../../wrl/types.ts";
import { replicaAheadError, replicaMissingRecordsError, resumeReplyError, resumeTimeoutError } from "./relay-errors.ts";
import type { RelayLink, RelayWrl } from "./relay-types.ts";

/**
 * Sends resume (once `pace` lets it go) and returns the replica's resumeAck with the WRL's info as
 * it was when the answer came; throws why the session cannot ship (a nack, a timeout, a replica
 * ahead of the WRL or missing records it freed).
 */
export async function askResume(link: RelayLink, o: { name: string; uuid: string; address: string; wrl: RelayWrl }, pace: (message: Message) => Promise<unknown>): Promise<{ reply: ResumeAckMessage; info: WrlInfo }> {
  const resume: Message = { type: "resume", wrl: o.name, wrlUuid: o.uuid };
  await pace(resume);
  await link.send(resume);
  let frame: Frame;
  try {
    frame = await link.receive(stagingResumeTimeoutMs);
  } catch (error) {
    throw (error as { code?: unknown }).code === "NET_TIMEOUT" ? resumeTimeoutError() : error;
  }
  const reply = frame.message;
  const refused = resumeReplyError(reply, o.name, o.uuid);
  if (refused !== undefined) throw refused;
  assert(reply.type === "resumeAck", "resumeReplyError refuses every other answer");
  const info = o.wrl.info();
  if (reply.appliedLsn > info.headLsn) throw replicaAheadError(o.name, reply.appliedLsn, info.headLsn);
  if (reply.appliedLsn < info.tailLsn) throw replicaMissingRecordsError(o.address, o.name, reply.appliedLsn, info.tailLsn);
  return { reply, info };
}
