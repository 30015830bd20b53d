import { createServer } from "node:net";

/**
 * A TCP port on 127.0.0.1 that is free right now (the OS picks it; another process may still
 * take it before the caller binds it).
 *
 * @returns the port number.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}
