/**
 * A small SMTP client (RFC 5321) for the DR-Panel's email alerts (issue 7), over node:net and
 * node:tls, no third-party library: EHLO (HELO if refused), optional STARTTLS (RFC 3207), AUTH
 * PLAIN or LOGIN (RFC 4954), MAIL FROM, one RCPT TO per recipient, DATA, QUIT.
 *
 * Guarantees: every step has a timeout; every reply code is checked and a wrong one becomes a
 * DruvaaError naming the step and quoting the server; a refused recipient is reported while the
 * others still get the mail (all refused → SMTP_REFUSED); input that could inject a header or an
 * SMTP command (CR/LF in the subject or an address) is refused before any connection is made.
 * The message is 7-bit: subject RFC 2047-encoded when needed, bodies quoted-printable UTF-8,
 * lines CRLF and at most 76 characters, dot-stuffed (RFC 5321 § 4.5.2).
 *
 * Not guaranteed: delivery. A 250 after DATA means the server took responsibility, nothing more.
 * No pipelining, no SMTPUTF8 (addresses must be ASCII), no implicit TLS (port 465), no display
 * names in addresses. A password is never sent in clear unless `starttls: "never"` says so.
 */
import { randomBytes } from "node:crypto";
import * as net from "node:net";
import { hostname } from "node:os";
import * as tls from "node:tls";
import { assert } from "../assert.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import * as limits from "./smtp-constants.ts";

export interface SendMailOptions {
  host: string;
  port: number;
  /** Bare address (`alerts@example.com`), also used as the envelope sender. */
  from: string;
  to: string[];
  subject: string;
  text: string;
  html?: string;
  /** Default "if-offered". "required" fails with SMTP_TLS_REQUIRED if the server does not offer it. */
  starttls?: "never" | "if-offered" | "required";
  auth?: { user: string; password: string };
  /** Per step; default smtpStepTimeoutMsDefault. Exceeded: SMTP_TIMEOUT (SMTP_CONNECT_FAILED while connecting). */
  timeoutMs?: number;
  tls?: { ca?: string; rejectUnauthorized?: boolean };
}

export interface SendMailResult {
  accepted: string[];
  rejected: { to: string; reply: string }[];
  /** The server's reply to the end of DATA, e.g. "250 2.0.0 Ok: queued as 4F2A". */
  reply: string;
}

interface Reply {
  code: number;
  /** Text of each line, code and separator removed; the first is the greeting/EHLO domain. */
  lines: string[];
  /** The whole reply as the server sent it, lines joined with " | ", for messages. */
  text: string;
}

export async function sendMail(options: SendMailOptions): Promise<SendMailResult> {
  validateOptions(options);
  const message = buildMessage(options);
  const session = await SmtpSession.connect(options);
  try {
    return await converse(session, options, message);
  } finally {
    session.close();
  }
}

async function converse(session: SmtpSession, options: SendMailOptions, message: string): Promise<SendMailResult> {
  const starttls = options.starttls ?? "if-offered";
  await session.expect("greeting", undefined, [220]);
  let extensions = await hello(session);
  if (starttls !== "never" && extensions.has("STARTTLS")) {
    await session.expect("STARTTLS", "STARTTLS", [220]);
    await session.upgradeToTls();
    extensions = await hello(session);
  } else if (starttls === "required") {
    throw new DruvaaError("SMTP_TLS_REQUIRED", `SMTP server ${session.where} does not offer STARTTLS, and starttls is "required"`, "Enable STARTTLS on the mail server, or set starttls to \"if-offered\" if the network path is trusted", exitCodes.refused);
  }
  if (options.auth !== undefined) await authenticate(session, options.auth, extensions, starttls);
  await session.expect("MAIL FROM", `MAIL FROM:<${options.from}>`, [250]);
  const accepted: string[] = [];
  const rejected: { to: string; reply: string }[] = [];
  for (const to of options.to) {
    const reply = await session.command("RCPT TO", `RCPT TO:<${to}>`);
    if (reply.code === 250 || reply.code === 251) accepted.push(to);
    else rejected.push({ to, reply: reply.text });
  }
  if (accepted.length === 0) {
    await session.command("RSET", "RSET").catch(() => undefined); // Courtesy only: we fail below either way.
    throw new DruvaaError("SMTP_REFUSED", `SMTP server ${session.where} refused every recipient: ${rejected.map((r) => `${r.to}: ${r.reply}`).join("; ")}`, "Check the addresses, and that this server relays for their domain (or use the domain's own mail server)", exitCodes.refused);
  }
  await session.expect("DATA", "DATA", [354]);
  const final = await session.expect("end of DATA", message, [250]);
  // The mail is accepted now; a server that mishandles QUIT must not turn that into a failure.
  await session.command("QUIT", "QUIT").catch(() => undefined);
  return { accepted, rejected, reply: final.text };
}

/** EHLO, falling back to HELO (RFC 5321 § 3.2); returns the extension keywords, upper-case. */
async function hello(session: SmtpSession): Promise<Map<string, string[]>> {
  const name = clientName();
  const ehlo = await session.command("EHLO", `EHLO ${name}`);
  if (ehlo.code !== 250) {
    await session.expect("HELO", `HELO ${name}`, [250]);
    return new Map();
  }
  const keywords = ehlo.lines.slice(1).map((line) => line.trim().toUpperCase().split(/\s+/));
  return new Map(keywords.map(([keyword = "", ...params]) => [keyword, params]));
}

async function authenticate(session: SmtpSession, auth: { user: string; password: string }, extensions: Map<string, string[]>, starttls: string): Promise<void> {
  if (!session.secure && starttls !== "never") {
    throw new DruvaaError("SMTP_TLS_REQUIRED", `SMTP server ${session.where} does not offer STARTTLS; refusing to send the password in clear`, "Enable STARTTLS on the mail server, or set starttls to \"never\" to allow a clear-text password on a trusted network", exitCodes.refused);
  }
  const mechanisms = extensions.get("AUTH") ?? [];
  const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");
  let reply: Reply;
  if (mechanisms.includes("PLAIN")) {
    reply = await session.command("AUTH", `AUTH PLAIN ${b64(`\0${auth.user}\0${auth.password}`)}`);
  } else if (mechanisms.includes("LOGIN")) {
    reply = await session.command("AUTH", "AUTH LOGIN");
    if (reply.code === 334) reply = await session.command("AUTH", b64(auth.user));
    if (reply.code === 334) reply = await session.command("AUTH", b64(auth.password));
  } else {
    throw new DruvaaError("SMTP_AUTH_UNSUPPORTED", `SMTP server ${session.where} offers no AUTH PLAIN or LOGIN (offers: ${mechanisms.join(" ") || "none"})`, "Drop the auth settings if the server relays without them, or enable PLAIN/LOGIN on it", exitCodes.refused);
  }
  if (reply.code !== 235) throw new DruvaaError("SMTP_AUTH_FAILED", `SMTP AUTH at ${session.where} failed: server replied "${reply.text}"`, "Check the SMTP user and password", exitCodes.refused);
}

const domainPattern = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*";
const clientName = (): string => (new RegExp(`^${domainPattern}$`).test(hostname()) ? hostname() : "localhost");

/** One connection: reassembles replies from arbitrary chunks, one outstanding command at a time. */
class SmtpSession {
  private buffer = "";
  private waiter: { resolve: (reply: Reply) => void; reject: (error: DruvaaError) => void } | undefined;
  private failure: DruvaaError | undefined;
  secure = false;
  readonly where: string;

  private constructor(private socket: net.Socket, private readonly options: SendMailOptions) {
    this.where = `${options.host}:${options.port}`;
    this.attach(socket);
  }

  static connect(options: SendMailOptions): Promise<SmtpSession> {
    const timeoutMs = options.timeoutMs ?? limits.smtpStepTimeoutMsDefault;
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: options.host, port: options.port });
      const fail = (detail: string): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(new DruvaaError("SMTP_CONNECT_FAILED", `cannot connect to SMTP server ${options.host}:${options.port}: ${detail}`, "Check the SMTP host and port, and that the mail server is running and reachable from here", exitCodes.failure));
      };
      const timer = setTimeout(() => fail(`no connection within ${timeoutMs} ms`), timeoutMs);
      socket.once("error", (error) => fail(error.message));
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new SmtpSession(socket, options));
      });
    });
  }

  private readonly onData = (chunk: Buffer | string): void => {
    this.buffer += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    this.pump();
  };
  private readonly onError = (error: Error): void => this.fail(new DruvaaError("SMTP_CONNECTION_LOST", `connection to SMTP server ${this.where} failed: ${error.message}`, "Check the mail server's logs", exitCodes.failure, { cause: error }));
  private readonly onClose = (): void => this.fail(new DruvaaError("SMTP_CONNECTION_LOST", `SMTP server ${this.where} closed the connection`, "Check the mail server's logs; it may limit connections or refuse this client", exitCodes.failure));

  private attach(socket: net.Socket): void {
    socket.on("data", this.onData);
    socket.on("error", this.onError);
    socket.on("close", this.onClose);
  }

  private detach(socket: net.Socket): void {
    socket.off("data", this.onData);
    socket.off("error", this.onError);
    socket.off("close", this.onClose);
  }

  private fail(error: DruvaaError): void {
    this.failure ??= error;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(this.failure);
  }

  /** Parses one complete reply off the buffer if there is one. */
  private pump(): void {
    if (this.waiter === undefined || this.failure !== undefined) return;
    if (this.buffer.length > limits.smtpReplyBytesMax) return this.fail(this.protocolError(`a reply longer than ${limits.smtpReplyBytesMax} bytes`));
    const lines: string[] = [];
    let code = "";
    let offset = 0;
    for (;;) {
      const newline = this.buffer.indexOf("\n", offset);
      if (newline < 0) return;
      const line = this.buffer.slice(offset, newline).replace(/\r$/, "");
      offset = newline + 1;
      const match = /^([2-5]\d\d)([ -]|$)(.*)$/.exec(line);
      if (match === null || (code !== "" && match[1] !== code)) return this.fail(this.protocolError(`a malformed reply line "${line.slice(0, 200)}"`));
      code = match[1] ?? "";
      lines.push(match[3] ?? "");
      if (lines.length > limits.smtpReplyLinesMax) return this.fail(this.protocolError(`a reply of more than ${limits.smtpReplyLinesMax} lines`));
      if (match[2] !== "-") break;
    }
    this.buffer = this.buffer.slice(offset);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter.resolve({ code: Number(code), lines, text: lines.map((l) => `${code} ${l}`.trimEnd()).join(" | ") });
  }

  private protocolError(what: string): DruvaaError {
    return new DruvaaError("SMTP_PROTOCOL", `SMTP server ${this.where} sent ${what}`, "Is this port really an SMTP server (not SMTPS/implicit TLS on 465)?", exitCodes.failure);
  }

  private timeoutMs(): number {
    return this.options.timeoutMs ?? limits.smtpStepTimeoutMsDefault;
  }

  /** Sends `line` (none for the greeting) and waits for the whole reply, within the step timeout. */
  command(step: string, line: string | undefined): Promise<Reply> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise<Reply>((resolve, reject) => {
      const timeoutMs = this.timeoutMs();
      const timer = setTimeout(() => {
        this.fail(new DruvaaError("SMTP_TIMEOUT", `SMTP server ${this.where} did not answer ${step} within ${timeoutMs} ms`, "Check that the host and port are an SMTP server and that it is not overloaded; raise timeoutMs for a slow server", exitCodes.timeout));
        this.socket.destroy();
      }, timeoutMs);
      this.waiter = {
        resolve: (reply) => { clearTimeout(timer); resolve(reply); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      };
      if (line !== undefined) this.socket.write(`${line}\r\n`);
      this.pump();
    });
  }

  /** `command`, then a reply code check: anything but `codes` is SMTP_REFUSED naming the step. */
  async expect(step: string, line: string | undefined, codes: number[]): Promise<Reply> {
    const reply = await this.command(step, line);
    if (!codes.includes(reply.code)) {
      throw new DruvaaError("SMTP_REFUSED", `SMTP server ${this.where} refused ${step}: "${reply.text}"`, stepHint(step), exitCodes.refused);
    }
    return reply;
  }

  /** RFC 3207: TLS on the same socket; anything the server sent before the handshake is an attack. */
  upgradeToTls(): Promise<void> {
    if (this.buffer.length > 0) return Promise.reject(this.protocolError("data after its STARTTLS reply (possible command injection)"));
    const plain = this.socket;
    this.detach(plain);
    const timeoutMs = this.timeoutMs();
    return new Promise((resolve, reject) => {
      const secured = tls.connect({
        socket: plain,
        host: this.options.host,
        servername: net.isIP(this.options.host) === 0 ? this.options.host : undefined,
        ca: this.options.tls?.ca,
        rejectUnauthorized: this.options.tls?.rejectUnauthorized ?? true,
      });
      const fail = (detail: string, code = "SMTP_TLS_FAILED"): void => {
        clearTimeout(timer);
        secured.destroy();
        reject(new DruvaaError(code, `STARTTLS with SMTP server ${this.where} failed: ${detail}`, "Check the server's certificate; pass its CA in tls.ca if it is private", code === "SMTP_TIMEOUT" ? exitCodes.timeout : exitCodes.refused));
      };
      const timer = setTimeout(() => fail(`no TLS handshake within ${timeoutMs} ms`, "SMTP_TIMEOUT"), timeoutMs);
      secured.once("error", (error) => fail(error.message));
      secured.once("secureConnect", () => {
        clearTimeout(timer);
        secured.removeAllListeners("error");
        this.socket = secured;
        this.secure = true;
        this.attach(secured);
        resolve();
      });
    });
  }

  close(): void {
    this.detach(this.socket);
    this.socket.on("error", () => undefined); // After close nothing is waiting; late errors have no one to inform.
    this.socket.destroy();
  }
}

const stepHints: Record<string, string> = {
  greeting: "The server turned this client away; check its access rules and logs",
  "MAIL FROM": "Check the from address: the server may only accept senders of its own domains",
  DATA: "The server refused the message itself; check its logs (size limit, content filter)",
  "end of DATA": "The server refused the message itself; check its logs (size limit, content filter)",
};
const stepHint = (step: string): string => stepHints[step] ?? "Check the mail server's logs for why it refused";

// ---- validation ----------------------------------------------------------------------------------

const addressPattern = new RegExp(`^[A-Za-z0-9!#$%&'*+/=?^_\`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_\`{|}~-]+)*@${domainPattern}$`);

function validateAddress(address: string, what: string): void {
  if (/[\r\n]/.test(address)) throw usageError(`${what} contains a line break (header injection refused): ${JSON.stringify(address)}`, "Give one bare address, e.g. alerts@example.com");
  const local = address.slice(0, address.lastIndexOf("@"));
  if (!addressPattern.test(address) || address.length > limits.smtpAddressBytesMax || local.length > limits.smtpLocalPartBytesMax) {
    throw usageError(`${what} is not a valid email address: ${JSON.stringify(address)}`, "Give a bare ASCII address, e.g. alerts@example.com (no display name, no angle brackets)");
  }
}

function validateOptions(options: SendMailOptions): void {
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) throw usageError(`SMTP port must be 1-65535, got ${options.port}`, "The usual ports are 25 and 587");
  if (options.host === "" || /[\s]/.test(options.host)) throw usageError(`SMTP host is not a host name: ${JSON.stringify(options.host)}`);
  validateAddress(options.from, "from address");
  if (options.to.length === 0 || options.to.length > limits.smtpRecipientsMax) throw usageError(`between 1 and ${limits.smtpRecipientsMax} recipients are needed, got ${options.to.length}`);
  for (const to of options.to) validateAddress(to, "recipient");
  if (/[\r\n]/.test(options.subject)) throw usageError(`subject contains a line break (header injection refused): ${JSON.stringify(options.subject)}`, "Give the subject on one line");
  if (options.subject.length > limits.smtpSubjectCharsMax) throw usageError(`subject is longer than ${limits.smtpSubjectCharsMax} characters`);
  if (Buffer.byteLength(options.text + (options.html ?? ""), "utf8") > limits.smtpBodyBytesMax) throw usageError(`text and html together are larger than ${limits.smtpBodyBytesMax} bytes`, "Alerts should be short; link to the panel for details");
  if (options.timeoutMs !== undefined && !(options.timeoutMs > 0)) throw usageError(`timeoutMs must be positive, got ${options.timeoutMs}`);
  if (options.auth !== undefined && /[\0\r\n]/.test(options.auth.user + options.auth.password)) throw usageError("SMTP user or password contains NUL or a line break");
}

// ---- message -------------------------------------------------------------------------------------

/** The DATA payload: headers and body, CRLF lines, dot-stuffed, ending with the lone ".". */
export function buildMessage(options: Pick<SendMailOptions, "from" | "to" | "subject" | "text" | "html">, now = new Date()): string {
  const domain = options.from.slice(options.from.lastIndexOf("@") + 1);
  const headers = [
    `From: ${options.from}`,
    `To: ${options.to.join(",\r\n ")}`,
    `Subject: ${encodeSubject(options.subject)}`,
    `Date: ${now.toUTCString().replace(/GMT$/, "+0000")}`,
    `Message-ID: <${now.getTime()}.${randomBytes(8).toString("hex")}@${domain}>`,
    "MIME-Version: 1.0",
  ];
  const part = (type: string, body: string): string[] => [
    `Content-Type: ${type}; charset=utf-8`,
    "Content-Transfer-Encoding: quoted-printable",
    "",
    quotedPrintable(body),
  ];
  let lines: string[];
  if (options.html === undefined) {
    lines = [...headers, ...part("text/plain", options.text)];
  } else {
    // "=_" never occurs in quoted-printable output (a "=" is always followed by hex digits).
    const boundary = `=_druvaa_${randomBytes(12).toString("hex")}`;
    lines = [...headers, `Content-Type: multipart/alternative;\r\n boundary="${boundary}"`, ""];
    lines.push(`--${boundary}`, ...part("text/plain", options.text), `--${boundary}`, ...part("text/html", options.html), `--${boundary}--`);
  }
  const wire = lines.join("\r\n").split("\r\n");
  assert(wire.every((line) => line.length <= limits.smtpMessageLineCharsMax && /^[\x20-\x7e\t]*$/.test(line)), "message lines are 7-bit and short");
  return `${wire.map((line) => (line.startsWith(".") ? `.${line}` : line)).join("\r\n")}\r\n.`;
}

/** RFC 2047 B-encoding when the subject is not plain ASCII (or looks like an encoded word). */
export function encodeSubject(subject: string): string {
  if (/^[\x20-\x7e]*$/.test(subject) && !subject.includes("=?") && subject.length <= limits.smtpMessageLineCharsMax - "Subject: ".length) return subject;
  // 39 bytes → 52 base64 characters; with "=?UTF-8?B?" and "?=" a word is 64, so even the first
  // line, "Subject: " and a word, stays within 76 (RFC 2047 § 2).
  const wordBytesMax = 39;
  const words: string[] = [];
  let chunk = "";
  for (const char of subject) {
    if (Buffer.byteLength(chunk + char, "utf8") > wordBytesMax) {
      words.push(chunk);
      chunk = "";
    }
    chunk += char; // Whole code points only: RFC 2047 § 5 forbids splitting a character.
  }
  if (chunk !== "" || words.length === 0) words.push(chunk);
  return words.map((word) => `=?UTF-8?B?${Buffer.from(word, "utf8").toString("base64")}?=`).join("\r\n ");
}

/** RFC 2045 § 6.7 quoted-printable of UTF-8, any line ending becoming a CRLF hard break. */
export function quotedPrintable(text: string): string {
  return text
    .split(/\r\n|\r|\n/)
    .map((line) => {
      const bytes = Buffer.from(line, "utf8");
      const out: string[] = [];
      let current = "";
      bytes.forEach((byte, index) => {
        const last = index === bytes.length - 1;
        const literal = (byte >= 33 && byte <= 126 && byte !== 61) || ((byte === 32 || byte === 9) && !last);
        const token = literal ? String.fromCharCode(byte) : `=${byte.toString(16).toUpperCase().padStart(2, "0")}`;
        // Room for the soft break "=" at the end of a wrapped line.
        if (current.length + token.length > limits.smtpEncodedLineCharsMax - 1) {
          out.push(`${current}=`);
          current = "";
        }
        current += token;
      });
      out.push(current);
      return out.join("\r\n");
    })
    .join("\r\n");
}
