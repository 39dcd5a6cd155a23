/**
 * src/io/smtp.ts against a real SMTP server nobody here wrote: Debian's aiosmtpd (python3-aiosmtpd,
 * installed by scripts/setup.sh) with the small handler in tests/fixtures/smtp/server.py, which
 * stores each accepted message parsed by Python's own email package. Covered: headers and body
 * arriving intact, non-ASCII subject/body and html, dot-stuffing, several recipients with one
 * refused, every recipient refused, nobody listening, header injection refused before any
 * connection, a silent server timing out, STARTTLS with a CA we made, AUTH PLAIN and LOGIN.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DruvaaError } from "../../src/errors.ts";
import { sendMail, type SendMailOptions } from "../../src/io/smtp.ts";
import { hasAiosmtpd, startAiosmtpd } from "../fixtures/smtp/aiosmtpd.ts";

const root = mkdtempSync(join(tmpdir(), "druvaa-smtp-"));
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Stored {
  mailFrom: string;
  rcptTos: string[];
  tls: boolean;
  authenticated: boolean;
  raw: string;
  headers: Record<string, string>;
  contentType: string;
  text: string | null;
  html: string | null;
  defects: string[];
}

interface Server {
  port: number;
  /** Messages the server accepted, in order. */
  messages(): Stored[];
}

let serverCount = 0;
async function startServer(args: string[] = []): Promise<Server> {
  const server = await startAiosmtpd<Stored>(join(root, `mail${serverCount++}`), args);
  cleanups.push(() => server.proc.kill("SIGKILL"));
  return server;
}

function mail(server: { port: number }, overrides: Partial<SendMailOptions> = {}): SendMailOptions {
  return { host: "127.0.0.1", port: server.port, from: "druvaa@panel.example", to: ["ops@example.com"], subject: "replica lag", text: "hello", timeoutMs: 10_000, ...overrides };
}

async function rejection(promise: Promise<unknown>): Promise<DruvaaError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DruvaaError);
  return error as DruvaaError;
}

/** Python keeps the wire's CRLF in decoded bodies; compare text with LF line ends. */
function lf(text: string | null): string | null {
  return text === null ? null : text.replace(/\r\n/g, "\n");
}

function rawOf(message: Stored): string {
  return Buffer.from(message.raw, "base64").toString("latin1");
}

/** A TCP listener that accepts and never says a word; counts connections. */
async function silentListener(): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    connections += 1;
    sockets.push(socket);
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, connections: () => connections };
}

describe("sendMail against aiosmtpd", () => {
  // A peer nobody here wrote; scripts/setup.sh installs it (python3-aiosmtpd), so its absence is a failure, not a skip.
  test("aiosmtpd is installed (apt-get install python3-aiosmtpd)", () => {
    expect(hasAiosmtpd).toBe(true);
  });

  test("a plain mail arrives with the right envelope, headers and body", async () => {
    const server = await startServer();
    const result = await sendMail(mail(server, { text: "Replica db1 is 42 s behind.\nCheck the WAN link." }));
    expect(result.accepted).toEqual(["ops@example.com"]);
    expect(result.rejected).toEqual([]);
    expect(result.reply).toMatch(/^250 /);
    const [message, ...others] = server.messages();
    expect(others).toEqual([]);
    expect(message!.mailFrom).toBe("druvaa@panel.example");
    expect(message!.rcptTos).toEqual(["ops@example.com"]);
    expect(message!.tls).toBe(false);
    expect(message!.defects).toEqual([]);
    const headers = message!.headers;
    expect(headers.From).toBe("druvaa@panel.example");
    expect(headers.To).toBe("ops@example.com");
    expect(headers.Subject).toBe("replica lag");
    expect(headers["MIME-Version"]).toBe("1.0");
    expect(headers["Content-Type"]).toMatch(/^text\/plain; charset="?utf-8"?$/);
    expect(rawOf(message!)).toContain("\r\nContent-Transfer-Encoding: quoted-printable\r\n");
    expect(headers["Message-ID"]).toMatch(/^<[^<>@\s]+@panel\.example>$/);
    expect(Math.abs(Date.parse(headers.Date!) - Date.now())).toBeLessThan(60_000);
    expect(lf(message!.text)).toBe("Replica db1 is 42 s behind.\nCheck the WAN link.\n");
    // Every line CRLF-terminated, no bare CR or LF.
    expect(rawOf(message!).replace(/\r\n/g, "")).not.toMatch(/[\r\n]/);
  });

  test("a non-ASCII subject and body round-trip, with an html alternative", async () => {
    const server = await startServer();
    const subject = "Réplica atrasada — 遅延が発生しています 🚨 ".repeat(3).trim();
    const text = `Olá, équipe! Ünïcödé ✓ ${"долгая строка ".repeat(20)}\ntrailing spaces   \n= signs =3D and tabs\t\n`;
    const html = "<p>Réplica <b>db1</b> — 遅延</p>";
    await sendMail(mail(server, { subject, text, html }));
    const [message] = server.messages();
    expect(message!.defects).toEqual([]);
    expect(message!.headers.Subject).toBe(subject);
    expect(message!.contentType).toBe("multipart/alternative");
    expect(lf(message!.text)).toBe(text);
    expect(lf(message!.html)).toBe(html); // The CRLF before a boundary belongs to the boundary (RFC 2046 § 5.1.1).
    const raw = rawOf(message!);
    expect(raw).toMatch(/^[\x00-\x7f]*$/); // 7-bit on the wire
    for (const line of raw.split("\r\n")) {
      expect(line.length).toBeLessThanOrEqual(76);
      expect(line).not.toMatch(/[ \t]$/); // Trailing white space may be stripped in transit (RFC 2045 § 6.7).
    }
  });

  test("lines starting with a dot survive dot-stuffing, a lone dot does not end DATA", async () => {
    const server = await startServer();
    const text = ".hidden\n.\n..two dots\nmiddle\n.\r\nlast";
    await sendMail(mail(server, { text }));
    expect(lf(server.messages()[0]!.text)).toBe(".hidden\n.\n..two dots\nmiddle\n.\nlast\n");
  });

  test("several recipients, one refused: it is reported and the others get the mail", async () => {
    const server = await startServer(["--refuse", "gone@example.com"]);
    const to = ["a@example.com", "gone@example.com", "b@example.org"];
    const result = await sendMail(mail(server, { to }));
    expect(result.accepted).toEqual(["a@example.com", "b@example.org"]);
    expect(result.rejected).toHaveLength(1);
    expect(result.rejected[0]!.to).toBe("gone@example.com");
    expect(result.rejected[0]!.reply).toMatch(/^550 .*User unknown/);
    const [message] = server.messages();
    expect(message!.rcptTos).toEqual(["a@example.com", "b@example.org"]);
    expect(message!.headers.To!.replace(/\s+/g, " ")).toBe("a@example.com, gone@example.com, b@example.org");
  });

  test("every recipient refused: SMTP_REFUSED quoting the server, nothing delivered", async () => {
    const server = await startServer(["--refuse", "x@example.com", "--refuse", "y@example.com"]);
    const error = await rejection(sendMail(mail(server, { to: ["x@example.com", "y@example.com"] })));
    expect(error.code).toBe("SMTP_REFUSED");
    expect(error.message).toContain("x@example.com: 550");
    expect(error.hint).toBeDefined();
    expect(server.messages()).toEqual([]);
  });

  test("STARTTLS with a private CA, then AUTH PLAIN and AUTH LOGIN", async () => {
    const dir = join(root, "tls");
    spawnSync("mkdir", ["-p", dir]);
    const made = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")]);
    expect(made.status).toBe(0);
    const ca = readFileSync(join(dir, "cert.pem"), "utf8");
    const tlsArgs = ["--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem"), "--require-starttls"];

    const plain = await startServer(tlsArgs);
    await sendMail(mail(plain, { starttls: "required", tls: { ca } }));
    expect(plain.messages()[0]!.tls).toBe(true);
    // Without the CA the certificate is not trusted: refused, not silently sent in clear.
    expect((await rejection(sendMail(mail(plain, { starttls: "required" })))).code).toBe("SMTP_TLS_FAILED");
    expect(plain.messages()).toHaveLength(1);

    const auth = { user: "panel", password: "s3cret" };
    const withAuth = await startServer([...tlsArgs, "--auth", "panel:s3cret"]);
    await sendMail(mail(withAuth, { tls: { ca }, auth }));
    expect(withAuth.messages()[0]!.authenticated).toBe(true);
    const wrong = await rejection(sendMail(mail(withAuth, { tls: { ca }, auth: { user: "panel", password: "nope" } })));
    expect(wrong.code).toBe("SMTP_AUTH_FAILED");

    const loginOnly = await startServer([...tlsArgs, "--auth", "panel:s3cret", "--auth-exclude", "PLAIN"]);
    await sendMail(mail(loginOnly, { tls: { ca }, auth }));
    expect(loginOnly.messages()[0]!.authenticated).toBe(true);
  });

  test("no STARTTLS offered: required fails, a password is not sent in clear unless allowed", async () => {
    const server = await startServer(["--auth", "panel:s3cret"]);
    const auth = { user: "panel", password: "s3cret" };
    expect((await rejection(sendMail(mail(server, { starttls: "required" })))).code).toBe("SMTP_TLS_REQUIRED");
    expect((await rejection(sendMail(mail(server, { auth })))).code).toBe("SMTP_TLS_REQUIRED");
    await sendMail(mail(server, { auth, starttls: "never" }));
    expect(server.messages()[0]!.authenticated).toBe(true);
  });
});

/**
 * A scripted server for what aiosmtpd never does: refuse EHLO, split a multi-line reply across
 * packets, go silent after DATA. `answer` maps each command line to its reply (undefined: silence).
 */
async function scriptedServer(answer: (line: string) => string | undefined): Promise<{ port: number; commands: string[] }> {
  const commands: string[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => undefined);
    socket.write("220-mail.test greets you\r\n220-");
    setTimeout(() => socket.write("still greeting\r\n220 ready\r\n"), 20);
    let buffer = "";
    let inData = false;
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      for (let end = buffer.indexOf("\r\n"); end >= 0; end = buffer.indexOf("\r\n")) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (inData && line !== ".") continue;
        inData = false;
        commands.push(line);
        const reply = answer(line);
        if (reply === "354 go on") inData = true;
        if (reply !== undefined) socket.write(`${reply}\r\n`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, commands };
}

function classicReply(line: string): string | undefined {
  const verb = line.split(/[ :]/)[0]!.toUpperCase();
  const replies: Record<string, string> = { EHLO: "502 5.5.2 EHLO not implemented", HELO: "250 mail.test", MAIL: "250 ok", RCPT: "250 ok", DATA: "354 go on", ".": "250 queued as 7", QUIT: "221 bye" };
  return replies[verb];
}

describe("sendMail against a scripted server", () => {
  test("EHLO refused: HELO instead; a multi-line greeting split across packets", async () => {
    const server = await scriptedServer(classicReply);
    const result = await sendMail(mail(server, { starttls: "if-offered" }));
    expect(result.reply).toBe("250 queued as 7");
    expect(server.commands.map((c) => c.split(" ")[0])).toEqual(["EHLO", "HELO", "MAIL", "RCPT", "DATA", ".", "QUIT"]);
  });

  test("silence after the message: SMTP_TIMEOUT naming the step", async () => {
    const server = await scriptedServer((line) => (line === "." ? undefined : classicReply(line)));
    const error = await rejection(sendMail(mail(server, { timeoutMs: 300 })));
    expect(error.code).toBe("SMTP_TIMEOUT");
    expect(error.message).toContain("end of DATA");
  });

  test("a refused step: SMTP_REFUSED naming the step and quoting the server, with a hint", async () => {
    const server = await scriptedServer((line) => (line.startsWith("MAIL") ? "553 5.7.1 sender not allowed" : classicReply(line)));
    const error = await rejection(sendMail(mail(server)));
    expect(error.code).toBe("SMTP_REFUSED");
    expect(error.message).toContain('refused MAIL FROM: "553 5.7.1 sender not allowed"');
    expect(error.hint).toContain("from address");
    expect(server.commands.some((c) => c.startsWith("RCPT"))).toBe(false);
  });

  test("a reply that is not SMTP: SMTP_PROTOCOL", async () => {
    const server = await scriptedServer((line) => (line.startsWith("EHLO") ? "HTTP/1.1 400 Bad Request" : classicReply(line)));
    expect((await rejection(sendMail(mail(server)))).code).toBe("SMTP_PROTOCOL");
  });
});

describe("sendMail failures that need no mail server", () => {
  test("nobody listening: SMTP_CONNECT_FAILED quickly", async () => {
    const listener = await silentListener();
    const { port } = listener;
    cleanups.splice(0).forEach((cleanup) => cleanup()); // Closed: the port now refuses connections.
    const started = performance.now();
    const error = await rejection(sendMail(mail({ port })));
    expect(error.code).toBe("SMTP_CONNECT_FAILED");
    expect(error.message).toContain(`127.0.0.1:${port}`);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  test("header injection is refused before connecting", async () => {
    const listener = await silentListener();
    const attempts: Partial<SendMailOptions>[] = [
      { subject: "lag\r\nBcc: everyone@example.com" },
      { subject: "lag\nX-Evil: 1" },
      { to: ["ops@example.com\r\nRCPT TO:<evil@example.com>"] },
      { from: "druvaa@panel.example\nBcc: evil@example.com" },
      { to: ["Ops <ops@example.com>"] },
      { to: ["not-an-address"] },
      { to: [] },
    ];
    for (const attempt of attempts) {
      const error = await rejection(sendMail(mail(listener, attempt)));
      expect(error.code).toBe("USAGE");
    }
    await Bun.sleep(50);
    expect(listener.connections()).toBe(0);
  });

  test("a server that accepts and says nothing: SMTP_TIMEOUT within the step timeout", async () => {
    const listener = await silentListener();
    const started = performance.now();
    const error = await rejection(sendMail(mail(listener, { timeoutMs: 300 })));
    const elapsedMs = performance.now() - started;
    expect(error.code).toBe("SMTP_TIMEOUT");
    expect(error.message).toContain("greeting");
    expect(elapsedMs).toBeGreaterThanOrEqual(250);
    expect(elapsedMs).toBeLessThan(2_000);
    expect(listener.connections()).toBe(1);
  });
});
