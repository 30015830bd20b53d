import { type AgentOptions, type ClientRequestArgs, Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent, type AgentOptions as HttpsAgentOptions, type RequestOptions } from "node:https";
import type { Duplex } from "node:stream";

/** Sockets the guarded agents have created, and errors they had with no request to hear them. */
const guarded = new WeakSet<Duplex>();

/**
 * Gives a socket an `error` listener for its whole life, which closes it. Node's HTTP client
 * listens to a socket only while a request uses it: between a response's end and the keep-alive
 * pool taking the socket back (a window Node's own source marks as a TODO), an `error` — a write
 * failing with `ECONNRESET` after the request settled — has no listener and is thrown as an
 * uncaught exception, the crash seen in savers starved of CPU while their connections were reset.
 * A request in flight still hears its socket's errors through Node's own listener, as before.
 * Idempotent.
 *
 * @param socket - a socket (or any duplex stream) an agent created.
 * @returns the same socket.
 */
export function guardSocket<T extends Duplex | null | undefined>(socket: T): T {
  if (socket && !guarded.has(socket)) {
    guarded.add(socket);
    socket.on("error", () => socket.destroy());
  }
  return socket;
}

/**
 * A keep-alive `http.Agent` whose every socket has an `error` listener for its whole life
 * ({@link guardSocket}): no socket of the S3 client can end the process with an unhandled
 * `'error'` event (`write ECONNRESET` after a request settled).
 */
export class GuardedHttpAgent extends HttpAgent {
  /** @param options - the `http.Agent` options. */
  constructor(options?: AgentOptions) {
    super(options);
  }

  /** @inheritDoc The socket is guarded before the agent or a request sees it. */
  override createConnection(
    options: ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const guardedCallback = callback && ((err: Error | null, s: Duplex) => callback(err, guardSocket(s)));
    return guardSocket(super.createConnection(options, guardedCallback));
  }
}

/** The HTTPS counterpart of {@link GuardedHttpAgent}. */
export class GuardedHttpsAgent extends HttpsAgent {
  /** @param options - the `https.Agent` options. */
  constructor(options?: HttpsAgentOptions) {
    super(options);
  }

  /** @inheritDoc The socket is guarded before the agent or a request sees it. */
  override createConnection(
    options: RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const guardedCallback = callback && ((err: Error | null, s: Duplex) => callback(err, guardSocket(s)));
    return guardSocket(super.createConnection(options, guardedCallback));
  }
}
