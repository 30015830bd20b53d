// `pnpm start -- --from http://…` (docs/http.md): the demo's load half from a web server — here the
// loopback nginx of the http project, serving the folder an earlier `dcp-demo --to` saved.
import { execFile } from "node:child_process";
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { humanModelsDir } from "@dcpjs/demo-kit";
import { describe, expect, inject, it } from "vitest";
import { tempDir } from "../support/tmp.js";

const DEMO = fileURLToPath(new URL("../../packages/demo/src/cli.ts", import.meta.url));
const demo = (args: string[]) =>
  promisify(execFile)(process.execPath, ["--import", "tsx", "--conditions=@dcpjs/source", DEMO, ...args], {
    maxBuffer: 64 << 20,
  });
const nginx = inject("nginx");

describe("dcp-demo --from http://… (pnpm start -- --from)", () => {
  it("loads what dcp-demo --to saved, from nginx, into 3 ranks and 1 rank, every tensor bit for bit", async () => {
    const models = await tempDir("models-");
    for (const name of ["age", "emotion", "blazeface"])
      for (const ext of [".json", ".bin"])
        await copyFile(join(humanModelsDir(), name + ext), join(models, name + ext));
    const name = `demo-from-${process.pid}`;
    await mkdir(nginx.root, { recursive: true });
    const saved = await demo(["--to", join(nginx.root, name), "--models", models, "--no-progress"]);
    expect(saved.stdout).toMatch(/OK: all \d+ source tensors/);

    const loaded = await demo(["--from", `${nginx.url}/${name}`, "--models", models, "--no-progress"]);
    expect(loaded.stdout).toContain(`load-only: from ${nginx.url}/${name}`);
    expect(loaded.stdout).not.toMatch(/^save:/m);
    expect(loaded.stdout).toMatch(/load: {3}1 rank, fresh state dict: .* 0 mismatches/);
    expect(loaded.stdout).toMatch(/OK: all \d+ source tensors/);
  });
});
