// A page that loads dcpjs checkpoints over HTTP with @dcpjs/core and @dcpjs/http bundled for the
// browser (esbuild, the `browser` condition), served same-origin with the checkpoints by the
// loopback file server (Range, ETag, faults on demand); and a sampler of the page's memory through
// CDP's `Runtime.getHeapUsage` (the JS heap plus the ArrayBuffer backing stores).
import { builtinModules } from "node:module";
import { type StateDict, save, type Tensor } from "@dcpjs/core";
import { build, type Plugin } from "esbuild";
import type { CDPSession, Page } from "playwright-core";
import { browserConditions, noNodeBuiltins } from "../../scripts/browser-bundle.mjs";
import { type LaunchedChromium, launchChromium } from "../support/chromium.js";
import { type HttpFileServer, startHttpFileServer } from "../support/http-file-server.js";

/** The page's script: `window.dcpHttp`, called through `page.evaluate`. */
const PAGE_SCRIPT = `
import { emptyTensor, load } from "@dcpjs/core";
import { HttpStorageReader } from "@dcpjs/http";

const state = { targets: undefined, controller: undefined, running: undefined };

function failureOf(e) {
  const error = e?.failures?.[0]?.error ?? e;
  return { code: error?.code ?? "UNKNOWN", message: String(error?.message ?? error) };
}

window.dcpHttp = {
  /** Allocates the targets: [name, shape] int32 tensors. */
  allocate(specs) {
    state.targets = Object.fromEntries(specs.map(([name, shape]) => [name, emptyTensor("int32", shape)]));
    return specs.length;
  },
  /** Starts a load of the targets from url; await it with finish(). */
  start(url, options = {}) {
    state.controller = new AbortController();
    const started = performance.now();
    state.running = load(state.targets, {
      checkpointId: url,
      storageReader: new HttpStorageReader({ url, ...options }),
      signal: state.controller.signal,
    }).then(
      () => ({ ms: performance.now() - started }),
      (e) => ({ ms: performance.now() - started, error: failureOf(e) }),
    );
    return true;
  },
  abort() {
    state.controller.abort();
  },
  finish() {
    return state.running;
  },
  /** Elements that differ from the pattern of writeIntCheckpoint (tensor i, element j). */
  check() {
    let bad = 0;
    Object.values(state.targets).forEach((t, i) => {
      const d = t.data;
      for (let j = 0; j < d.length; j++) if (d[j] !== (Math.imul(j, 2654435761) ^ i)) bad++;
    });
    return bad;
  },
  drop() {
    state.targets = undefined;
  },
  /** Plain fetch of [url, start, end] ranges, at most 'parallel' at once, each read whole (arrayBuffer()). */
  async plainFetch(ranges, parallel) {
    const started = performance.now();
    let next = 0;
    let bytes = 0;
    const worker = async () => {
      while (next < ranges.length) {
        const [url, start, end] = ranges[next++];
        const response = await fetch(url, { headers: { range: "bytes=" + start + "-" + end }, cache: "no-store" });
        bytes += (await response.arrayBuffer()).byteLength;
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    return { ms: performance.now() - started, bytes };
  },
};
`;

/** With `tfjs`: `dcpHttp.tfModel`, a two-layer dense TF.js model whose weights are loaded over HTTP. */
const TFJS_SCRIPT = `
import * as tf from "@tensorflow/tfjs";

/**
 * Loads 'names' (shapes 'shapes', as float32: stored bf16/fp16 are cast on load) from checkpoint 'id'
 * into a Dense(in→hidden)·Dense(hidden→out) model; its output for 'input'.
 */
window.dcpHttp.tfModel = async (id, endpoint, names, shapes, input) => {
  await tf.setBackend("cpu");
  const targets = Object.fromEntries(names.map((n, i) => [n, emptyTensor("float32", shapes[i])]));
  try {
    await load(targets, { checkpointId: id, storageReader: new HttpStorageReader({ url: id, hfEndpoint: endpoint }) });
  } catch (e) {
    return { error: failureOf(e) };
  }
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [shapes[0][0]], units: shapes[0][1] }),
      tf.layers.dense({ units: shapes[2][1] }),
    ],
  });
  model.setWeights(names.map((n) => tf.tensor(targets[n].data, targets[n].shape)));
  const out = model.predict(tf.tensor2d([input]));
  return { output: Array.from(await out.data()) };
};
`;

/**
 * TF.js's own optional Node built-ins (`util`, `fs`, `crypto`…, required only under Node) left
 * external, so that the guard against Node built-ins applies to dcpjs's code alone.
 */
const BUILTINS: ReadonlySet<string> = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const tfjsOwnBuiltins: Plugin = {
  name: "tfjs-own-builtins",
  setup(b) {
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) =>
      BUILTINS.has(args.path) && /node_modules\/.*(@tensorflow|seedrandom)/.test(args.importer)
        ? { path: args.path, external: true }
        : undefined,
    );
  },
};

/** A page that can load from {@link HttpPage.server}. */
export interface HttpPage {
  readonly page: Page;
  readonly server: HttpFileServer;
  readonly chromium: LaunchedChromium;
  close(): Promise<void>;
}

/**
 * Bundles the page, serves `root` on loopback and opens the page at `/_page/` on its origin.
 * @param options - `tfjs`: bundle TF.js and `dcpHttp.tfModel` too; `hubCommit`: serve `root` as the
 *   Hub does too (`/{org}/{repo}/resolve/{rev}/…` redirecting to `/cdn/…`, this commit named).
 * @param root - the folder served (the checkpoints live here too).
 */
export async function openHttpPage(
  root: string,
  options: { readonly tfjs?: boolean; readonly hubCommit?: string } = {},
): Promise<HttpPage> {
  const bundled = await build({
    stdin: {
      contents: PAGE_SCRIPT + (options.tfjs ? TFJS_SCRIPT : ""),
      resolveDir: process.cwd(),
      loader: "js",
    },
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    conditions: browserConditions(true),
    logLevel: "silent",
    plugins: [tfjsOwnBuiltins, noNodeBuiltins()],
  });
  const server = await startHttpFileServer({
    root,
    ...(options.hubCommit !== undefined ? { hub: { commit: options.hubCommit } } : {}),
  });
  const chromium = await launchChromium(["--js-flags=--expose-gc"]);
  const page = await chromium.context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // the page and its script come from playwright, on the server's origin (same-origin requests, no CORS)
  const files: Record<string, [string, string | Uint8Array]> = {
    "/_page/index.html": [
      "text/html",
      `<!doctype html><title>dcpjs http</title><script type="module" src="bundle.js"></script>`,
    ],
    "/_page/bundle.js": ["text/javascript", bundled.outputFiles[0]!.contents],
  };
  await page.route(`${server.origin}/_page/**`, (route) => {
    const [contentType, body] = files[new URL(route.request().url()).pathname]!;
    return route.fulfill({ contentType, body: typeof body === "string" ? body : Buffer.from(body) });
  });
  await page.goto(`${server.origin}/_page/index.html`);
  await page
    .waitForFunction(() => "dcpHttp" in globalThis, undefined, { timeout: 10_000 })
    .catch((e) => {
      throw new Error(`Expected the page's script to run, got ${errors.join("; ") || e}`);
    });
  return {
    page,
    server,
    chromium,
    async close() {
      await chromium.close();
      await server.close();
    },
  };
}

/** The element of tensor `i` at `j` in {@link writeIntCheckpoint}'s pattern. */
const patternAt = (i: number, j: number) => Math.imul(j, 2654435761) ^ i;

/**
 * Saves a dcpjs checkpoint of `count` int32 tensors `t0…` of `shape` under `dir` (one file, with
 * checksums), each element a function of its tensor and index the page checks.
 * @returns the tensors' names and shapes, for `dcpHttp.allocate`.
 */
export async function writeIntCheckpoint(
  dir: string,
  count: number,
  shape: readonly number[],
): Promise<[string, readonly number[]][]> {
  const elements = shape.reduce((a, b) => a * b, 1);
  const sd: StateDict = {};
  for (let i = 0; i < count; i++) {
    const data = new Int32Array(elements);
    for (let j = 0; j < elements; j++) data[j] = patternAt(i, j);
    sd[`t${i}`] = { dtype: "int32", shape: [...shape], data } satisfies Tensor;
  }
  await save(sd, { checkpointId: dir });
  return Object.keys(sd).map((name) => [name, shape]);
}

/** The page's memory, sampled through CDP while something runs. */
export interface HeapSampler {
  /** JS heap used + ArrayBuffer backing stores now (bytes), after a full GC. */
  settled(): Promise<number>;
  /** Samples every `everyMs` until {@link HeapSampler.stop}. */
  start(everyMs?: number): void;
  /** Stops sampling; the highest sample (bytes). */
  stop(): Promise<number>;
}

/** A sampler of `page`'s memory. */
export async function heapSampler(page: Page): Promise<HeapSampler> {
  const cdp: CDPSession = await page.context().newCDPSession(page);
  const now = async () => {
    const usage = (await cdp.send("Runtime.getHeapUsage")) as {
      usedSize: number;
      backingStorageSize?: number;
    };
    return usage.usedSize + (usage.backingStorageSize ?? 0);
  };
  let peak = 0;
  let running: Promise<void> | undefined;
  let stopped = false;
  return {
    async settled() {
      await cdp.send("HeapProfiler.collectGarbage");
      return now();
    },
    start(everyMs = 20) {
      stopped = false;
      peak = 0;
      running = (async () => {
        while (!stopped) {
          peak = Math.max(peak, await now());
          await new Promise((r) => setTimeout(r, everyMs));
        }
      })();
    },
    async stop() {
      stopped = true;
      await running;
      return Math.max(peak, await now());
    },
  };
}

/** What `window.dcpHttp` answers. */
export interface PageApi {
  allocate(specs: [string, readonly number[]][]): number;
  start(url: string, options?: { maxAttempts?: number; maxConnections?: number }): boolean;
  abort(): void;
  finish(): { ms: number; error?: { code: string; message: string } };
  check(): number;
  drop(): void;
  plainFetch(ranges: [string, number, number][], parallel: number): { ms: number; bytes: number };
  tfModel(
    id: string,
    endpoint: string,
    names: string[],
    shapes: number[][],
    input: number[],
  ): { output?: number[]; error?: { code: string; message: string } };
}

/**
 * Calls `window.dcpHttp[name](...args)` in the page.
 * @returns what it returned (awaited).
 */
export function call<K extends keyof PageApi>(
  page: Page,
  name: K,
  ...args: Parameters<PageApi[K]>
): Promise<Awaited<ReturnType<PageApi[K]>>> {
  return page.evaluate(
    ([n, a]) =>
      (globalThis as unknown as { dcpHttp: Record<string, (...x: unknown[]) => unknown> }).dcpHttp[n]!(...a),
    [name, args] as const,
  ) as Promise<Awaited<ReturnType<PageApi[K]>>>;
}
