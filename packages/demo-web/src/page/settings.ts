import { OPTIMIZERS } from "@dcpjs/demo-kit/train-model";

/** The demo page's settings, from its query parameters. */
export interface DemoSettings {
  /** The opfs:// folder of the run's `step-N` checkpoints. @default opfs://dcpjs-demo/run */
  readonly ckpt: string;
  /** Steps to train in all. @default 40 */
  readonly steps: number;
  /** A checkpoint every this many steps. @default 5 */
  readonly every: number;
  /** The optimizer, one of demo-kit's `OPTIMIZERS`. @default adam */
  readonly optimizer: string;
  /** Pause after each step (ms), to watch the page. @default 0 */
  readonly delayMs: number;
  /** The TF.js backend: `cpu` (pure JS) or `webgl`. @default cpu */
  readonly backend: "cpu" | "webgl";
  /**
   * An `http(s)://` dcpjs checkpoint (a `toStateDict` training state) to start from when OPFS has
   * none yet: the model is loaded from the HTTP server. A relative URL is taken against the page's.
   * @default none (start from the seeded initial weights)
   */
  readonly init: string | undefined;
  /**
   * Stop stepping after this step (its checkpoint, if any, started and writing on) and wait for
   * the page to be killed: what the tests reload at, so that the kill lands at a known step. Only
   * a page that started afresh stops (a resumed one, reloaded with the same URL, runs on).
   * @default never
   */
  readonly hangAt: number | undefined;
}

/** What the page exposes as `globalThis.dcpjsDemo`. */
export interface DemoState {
  /** Where it is. */
  phase: "starting" | "training" | "hanging" | "done" | "failed";
  /** Steps done (those restored included). */
  step: number;
  /** The step of the checkpoint it resumed from, if it did. */
  resumedAt: number | undefined;
  /** Each step trained in this page: its loss's float32 bits (8 hex digits). */
  losses: Record<number, string>;
  /** The checkpoint ids found, newest first. */
  checkpoints: string[];
  /** Where the model came from over HTTP (`init`), and the step it was saved at. */
  loadedFrom?: { url: string; step: number; weights: string[] };
  /** The TF.js backend in use. */
  backend?: string;
  /** When done: each weight's float32 bits, concatenated. */
  weights?: string[];
  /** When failed: the error. */
  error?: string;
}

function positive(params: URLSearchParams, name: string, fallback: number, min = 1): number {
  const raw = params.get(name);
  if (raw === null) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min)
    throw new Error(`Expected ${name} to be an integer >= ${min}, got ${raw}`);
  return value;
}

function tfBackend(name: string): "cpu" | "webgl" {
  if (name !== "cpu" && name !== "webgl") throw new Error(`Expected backend cpu or webgl, got ${name}`);
  return name;
}

/**
 * The settings from a page's query parameters.
 * @param params - `location.search`'s.
 * @param base - the page's URL, for a relative `init`.
 * @throws {@link Error} for a malformed number, an unknown optimizer or backend, or a ckpt without opfs://.
 */
export function demoSettings(params: URLSearchParams, base = "http://localhost/"): DemoSettings {
  const ckpt = params.get("ckpt") ?? "opfs://dcpjs-demo/run";
  if (!ckpt.startsWith("opfs://")) throw new Error(`Expected ckpt to be an opfs:// folder, got ${ckpt}`);
  const optimizer = params.get("optimizer") ?? "adam";
  if (!(OPTIMIZERS as readonly string[]).includes(optimizer))
    throw new Error(`Expected optimizer among ${OPTIMIZERS.join(", ")}, got ${optimizer}`);
  return {
    ckpt,
    steps: positive(params, "steps", 40),
    every: positive(params, "every", 5),
    optimizer,
    delayMs: positive(params, "delay", 0, 0),
    backend: tfBackend(params.get("backend") ?? "cpu"),
    hangAt: params.has("hangAt") ? positive(params, "hangAt", 0) : undefined,
    init: params.has("init") ? new URL(params.get("init")!, base).href.replace(/\/$/, "") : undefined,
  };
}
