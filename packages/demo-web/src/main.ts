// `pnpm run build:web` builds the demo page; `pnpm run serve:web` builds and serves it on loopback.
import { buildDemoWeb } from "./build-web.js";
import { serveDemoWeb } from "./serve-web.js";

const dir = await buildDemoWeb();
console.log(`built the demo page in ${dir}`);
if (process.argv[2] === "serve") {
  const port = process.env.PORT ? Number(process.env.PORT) : 8080;
  const { url } = await serveDemoWeb(dir, { port });
  console.log(`serving it at ${url} (Ctrl-C stops)`);
}
