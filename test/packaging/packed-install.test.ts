// The packages as a user gets them: every public package packed with `pnpm pack`, installed with
// npm from the tarballs into a fresh `"type": "module"` project, and there every TypeScript block
// of README.md and docs/*.md type-checked under the README's own tsconfig.json (strict,
// `nodenext`), the complete programs run, and the `dcp` command run from the installed CLI.
// doc-blocks.ts says how a block is marked as a program or a fragment.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { redisUrl } from "../support/redis.js";
import { s3Env, s3Server } from "../support/s3.js";
import { type DocBlock, extractDocBlocks } from "./doc-blocks.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");

/** The result of one child process. */
interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * This process's environment without the `npm_*` variables that `pnpm test` sets (npm would
 * warn about pnpm's own settings), plus `extra`.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** Runs a command to its end, never throwing; `timeoutMs` kills it (generous: a hang, not a speed). */
function exec(
  command: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? cleanEnv(),
      stdio: ["ignore", "pipe", "pipe"],
      timeout: options.timeoutMs ?? 120_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", (error) => resolve({ code: -1, stdout, stderr: `${stderr}${error.message}` }));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a command and throws with its output when it fails. */
async function mustRun(command: string, args: readonly string[], cwd: string): Promise<string> {
  const r = await exec(command, args, { cwd, timeoutMs: 300_000 });
  if (r.code !== 0) {
    throw new Error(
      `Expected \`${command} ${args.join(" ")}\` in ${cwd} to exit 0, got ${r.code}:\n${r.stdout}${r.stderr}`,
    );
  }
  return r.stdout;
}

/** The Markdown files whose TypeScript blocks are checked. */
async function docFiles(): Promise<string[]> {
  const docs = (await readdir(join(ROOT, "docs"))).filter((f) => f.endsWith(".md")).sort();
  return ["README.md", ...docs.map((f) => `docs/${f}`)];
}

/** A block's file name in the project: `README.md` line 72 is `src/README-md-72.ts`. */
function blockName(block: DocBlock): string {
  return `${block.file.replace(/[^A-Za-z0-9]+/g, "-")}-${block.line}`;
}

/** The first ```json block of README.md holding `compilerOptions`: the tsconfig.json it recommends. */
function readmeTsconfig(readme: string): unknown {
  for (const m of readme.matchAll(/```json\n([\s\S]*?)```/g)) {
    if (m[1]!.includes('"compilerOptions"')) return JSON.parse(m[1]!);
  }
  throw new Error(
    "Expected README.md to show a tsconfig.json (a ```json block with compilerOptions), got none",
  );
}

const blocks: DocBlock[] = [];
for (const file of await docFiles()) {
  blocks.push(...extractDocBlocks(file, await readFile(join(ROOT, file), "utf8")));
}
const runBlocks = blocks.filter((b) => b.kind === "run");

let work = "";
let project = "";
let tscResult: Ran | undefined;
/** For each block's file name: where its code starts in that file (1-based). */
const codeStart = new Map<string, number>();

describe("the packed packages, installed with npm into a fresh project", () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "dcpjs-packed-"));
    project = join(work, "project");
    const tarballs = join(work, "tarballs");
    await mkdir(join(project, "src"), { recursive: true });
    await mkdir(tarballs);

    // What pnpm pack puts in a tarball is the built dist/: build it from the current sources.
    await mustRun(process.execPath, [TSC, "-b"], ROOT);
    const packages: string[] = [];
    for (const dir of (await readdir(join(ROOT, "packages"))).sort()) {
      const manifest = JSON.parse(await readFile(join(ROOT, "packages", dir, "package.json"), "utf8")) as {
        private?: boolean;
      };
      if (!manifest.private) packages.push(dir);
    }
    await Promise.all(
      packages.map((dir) =>
        mustRun("pnpm", ["pack", "--pack-destination", tarballs], join(ROOT, "packages", dir)),
      ),
    );
    const files = (await readdir(tarballs)).filter((f) => f.endsWith(".tgz"));
    expect(files).toHaveLength(packages.length);

    await writeFile(
      join(project, "package.json"),
      `${JSON.stringify({ name: "dcpjs-packed-check", private: true, type: "module" }, null, 2)}\n`,
    );
    // The user's own SDK (to create a bucket, or to pass their own client) beside @dcpjs/s3.
    await mustRun(
      "npm",
      [
        "install",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        ...files.map((f) => join(tarballs, f)),
        "@types/node@^20.19.0",
        "@aws-sdk/client-s3@^3",
      ],
      project,
    );

    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    await writeFile(join(project, "tsconfig.json"), JSON.stringify(readmeTsconfig(readme), null, 2));
    for (const block of blocks) {
      const name = blockName(block);
      const prelude = block.prelude ? `${block.prelude}\n` : "";
      codeStart.set(name, prelude.split("\n").length);
      // A program's "s3://bucket/" (the docs' "your bucket") is a fresh prefix of the suite's bucket.
      const code =
        block.kind === "run"
          ? block.code.replaceAll("s3://bucket/", `s3://${s3Server().bucket}/tests/${randomUUID()}/`)
          : block.code;
      await writeFile(join(project, "src", `${name}.ts`), `${prelude}${code}export {};\n`);
    }
    tscResult = await exec(process.execPath, [TSC, "-p", ".", "--pretty", "false"], { cwd: project });
  }, 600_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("installs every public package from its tarball, with every dependency resolved", async () => {
    // npm ls exits 1 and names what is missing, invalid or extraneous.
    const ls = await exec("npm", ["ls", "--all"], { cwd: project });
    expect(ls.code, ls.stderr).toBe(0);
  });

  it("loads every package from CommonJS through require(esm), as the README says", async () => {
    const program = `const { emptyTensor, load, save, tensor } = require("@dcpjs/core");
for (const p of ["@dcpjs/core/extend", "@dcpjs/s3", "@dcpjs/redis", "@dcpjs/tfjs"]) require(p);
async function main() {
  await save({ w: tensor("float32", [2], new Float32Array([5, 6])) }, { checkpointId: "./ckpt/cjs" });
  const target = { w: emptyTensor("float32", [2]) };
  await load(target, { checkpointId: "./ckpt/cjs" });
  console.log([...target.w.data].join(" "));
}
main();
`;
    await writeFile(join(project, "main.cjs"), program);
    const r = await exec(process.execPath, ["main.cjs"], { cwd: project });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("5 6\n");
  });

  it("has the installed libraries name their dependencies by caret ranges, so an app's own copy is shared", async () => {
    // An exact pin gives a second copy of a package the app also installs: the AWS SDK, or
    // @dcpjs/core itself — whose storage registry `import "@dcpjs/s3"` must register into.
    // (@dcpjs/cli is an application; its pins are its own.)
    const pinned: string[] = [];
    for (const name of ["core", "s3", "redis", "tfjs"]) {
      const manifest = JSON.parse(
        await readFile(join(project, "node_modules", "@dcpjs", name, "package.json"), "utf8"),
      ) as { dependencies?: Record<string, string> };
      for (const [dep, range] of Object.entries(manifest.dependencies ?? {})) {
        if (!range.startsWith("^")) pinned.push(`@dcpjs/${name} → ${dep}@${range}`);
      }
    }
    expect(pinned).toEqual([]);
  });

  it("gives the app and @dcpjs/s3 one copy of @aws-sdk/client-s3 when the app installs the SDK itself", () => {
    const fromApp = createRequire(join(project, "package.json")).resolve("@aws-sdk/client-s3");
    const fromS3 = createRequire(join(project, "node_modules", "@dcpjs", "s3", "package.json")).resolve(
      "@aws-sdk/client-s3",
    );
    expect(relative(project, fromS3)).toBe(relative(project, fromApp));
  });

  it("type-checks every TypeScript block of README.md and docs/*.md under the README's tsconfig", () => {
    expect(blocks.length).toBeGreaterThan(0);
    const errors = (tscResult!.stdout + tscResult!.stderr)
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => {
        // src/README-md-72.ts(5,3): error TS… → README.md:76:3: error TS…
        const m = l.match(/^src\/(.+)\.ts\((\d+),(\d+)\): (.*)$/);
        const block = m && blocks.find((b) => blockName(b) === m[1]);
        if (!m || !block) return l;
        const line = Number(m[2]) - codeStart.get(m[1]!)!;
        const where =
          line >= 0
            ? `${block.file}:${block.line + line}:${m[3]}`
            : `${block.file}:${block.line} (its declarations)`;
        return `${where}: ${m[4]}`;
      });
    expect(errors).toEqual([]);
    expect(tscResult!.code).toBe(0);
  });

  it.each(runBlocks.map((b) => [`${b.file}:${b.line}`, b] as const))(
    "runs the program at %s",
    async (_, block) => {
      const cwd = join(work, "runs", blockName(block));
      await mkdir(cwd, { recursive: true });
      const env = cleanEnv({
        ...s3Env(),
        DCPJS_REDIS_URL: redisUrl(),
        DCPJS_GROUP_ID: `docs-${randomUUID()}`,
        RANK: "0",
        WORLD_SIZE: "1",
      });
      const r = await exec(process.execPath, [join(project, "dist", `${blockName(block)}.js`)], { cwd, env });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      if (block.output !== undefined) expect(r.stdout).toBe(block.output);
    },
  );

  describe("the dcp command of the installed @dcpjs/cli", () => {
    it("prints its help", async () => {
      const r = await exec("npx", ["--no", "--", "dcp", "--help"], { cwd: project });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: dcp /);
    });

    it("verifies a checkpoint the installed @dcpjs/core saved", async () => {
      const save = `import { save, tensor } from "@dcpjs/core";
await save({ w: tensor("float32", [4, 4], Float32Array.from({ length: 16 }, (_, i) => i)), step: 3 }, { checkpointId: "./ckpt/cli" });`;
      const saved = await exec(process.execPath, ["--input-type=module", "-e", save], { cwd: project });
      expect(saved.stderr).toBe("");
      expect(saved.code).toBe(0);
      const r = await exec("npx", ["--no", "--", "dcp", "verify", "./ckpt/cli"], { cwd: project });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/\b0 damaged\b/);

      // …and finds a flipped byte in it.
      const dir = join(project, "ckpt", "cli");
      const [data] = (await readdir(dir)).filter((f) => f.endsWith(".distcp"));
      const bytes = await readFile(join(dir, data!));
      bytes[0]! ^= 0xff;
      await writeFile(join(dir, data!), bytes);
      const damaged = await exec("npx", ["--no", "--", "dcp", "verify", "./ckpt/cli"], { cwd: project });
      expect(damaged.code).toBe(1);
      expect(damaged.stdout + damaged.stderr).toContain("CHECKSUM_MISMATCH");
    });
  });
});
