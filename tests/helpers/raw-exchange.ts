/** A raw TCP peer for garbage-on-the-port tests: no framing, no handshake. */
import { parseAddress } from "../../src/io/transport.ts";

/**
 * Connects to 127.0.0.1 at `target` (a port, or an address such as a ready line's "127.0.0.1:PORT"
 * whose port is used), sends `bytes`, half-closes if `halfClose`, and resolves with everything
 * that came back (as latin1) once the server ends or closes the connection, or it errors.
 */
export async function rawExchange(target: string | number, bytes: Uint8Array, halfClose: boolean): Promise<string> {
  const port = typeof target === "number" ? target : (parseAddress(target, 0) as { port: number }).port;
  let received = "";
  let closed!: () => void;
  const done = new Promise<void>((resolve) => (closed = resolve));
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    socket: {
      data(_socket, chunk) {
        received += Buffer.from(chunk).toString("latin1");
      },
      end(s) {
        s.end();
        closed();
      },
      close() {
        closed();
      },
      error() {
        closed();
      },
    },
  });
  socket.write(bytes);
  if (halfClose) socket.shutdown();
  await done;
  return received;
}
