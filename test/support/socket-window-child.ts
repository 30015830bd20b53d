// Child process for the socket-guard test: a socket of an HTTP agent fails in the window Node's
// HTTP client leaves without an `error` listener — after its response ended, before the keep-alive
// pool takes it back (what a write that fails after the request settled does) — and the process
// either survives (prints "survived") or dies of an unhandled 'error' event. argv[2]: "s3-client"
// (a request of an S3 client from createS3Client, through its own agent) or "plain" (the same
// request through a bare keep-alive http.Agent). The socket is reached through Node's public
// `http.client.response.finish` diagnostics channel, not through the SDK's handler internals.
// No uncaughtException listener on purpose.
import dc from "node:diagnostics_channel";
import { Agent, type ClientRequest, createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { createS3Client } from "@dcpjs/s3";

const server = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.end("x"));
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const { port } = server.address() as AddressInfo;
const plain = process.argv[2] === "plain";
const agent = new Agent({ keepAlive: true });
const config = {
  endpoint: `http://127.0.0.1:${port}`,
  region: "us-east-1",
  credentials: { accessKeyId: "k", secretAccessKey: "s" },
};
// "plain": an SDK client of its own, sending through a bare keep-alive agent.
const client = plain
  ? new S3Client({ ...config, forcePathStyle: true, requestHandler: { httpAgent: agent } })
  : createS3Client(config);
let hit = false;
dc.subscribe("http.client.response.finish", (message) => {
  const { request: req } = message as { request: ClientRequest };
  if (hit) return;
  hit = true;
  // Published as the response starts; Node attaches its own 'end' handling (which detaches the
  // socket from the request) before it emits 'response', so listen from there to run after it.
  req.once("response", (res: IncomingMessage) =>
    res.on("end", () => {
      // Node has just detached the request from its socket; the pool gets it on the next tick.
      req.socket?.destroy(
        Object.assign(new Error("write ECONNRESET"), { code: "ECONNRESET", syscall: "write" }),
      );
    }),
  );
});
const got = await client.send(new GetObjectCommand({ Bucket: "b", Key: "k" }));
await got.Body!.transformToByteArray();
await new Promise((resolve) => setTimeout(resolve, 100));
process.stdout.write(hit ? "survived\n" : "no request seen\n");
client.destroy();
agent.destroy();
server.close();
