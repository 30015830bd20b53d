// Child process for the socket-guard test: a socket of an HTTP agent fails in the window Node's
// HTTP client leaves without an `error` listener — after its response ended, before the keep-alive
// pool takes it back (what a write that fails after the request settled does) — and the process
// either survives (prints "survived") or dies of an unhandled 'error' event. argv[2]: "s3-client"
// (the agent of an S3 client from createS3Client) or "plain" (a bare keep-alive http.Agent).
// No uncaughtException listener on purpose.
import { type Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { HeadBucketCommand } from "@aws-sdk/client-s3";
import { createS3Client } from "@dcpjs/s3";

const server = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.end());
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const { port } = server.address() as AddressInfo;
const client = createS3Client({
  endpoint: `http://127.0.0.1:${port}`,
  region: "us-east-1",
  credentials: { accessKeyId: "k", secretAccessKey: "s" },
});
await client.send(new HeadBucketCommand({ Bucket: "b" })); // a real request: the handler now holds its agent
const handler = client.config.requestHandler as unknown as { httpHandlerConfigs(): { httpAgent?: Agent } };
const { Agent: HttpAgent } = await import("node:http");
const agent =
  process.argv[2] === "plain" ? new HttpAgent({ keepAlive: true }) : handler.httpHandlerConfigs().httpAgent!;
await new Promise<void>((resolve) => {
  const req = request({ host: "127.0.0.1", port, path: "/", agent }, (res) => {
    res.on("end", () => {
      // Node has just detached the request from its socket; the pool gets it on the next tick.
      req.socket?.destroy(
        Object.assign(new Error("write ECONNRESET"), { code: "ECONNRESET", syscall: "write" }),
      );
      setTimeout(resolve, 100);
    });
    res.resume();
  });
  req.on("error", () => {}); // the request listens, as the SDK's does: the socket's error is not its
  req.end();
});
process.stdout.write("survived\n");
client.destroy();
agent.destroy();
server.close();
