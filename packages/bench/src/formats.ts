import { rm } from "node:fs/promises";
import { join } from "node:path";
import { FileSystemReader, FileSystemWriter, load, save, type Tensor } from "@dcpjs/core";
import { bestOf, report, timed } from "./report.js";
import { emptyLike, float32StateDict } from "./state.js";

/**
 * `formats`: dcpjs's native format against PyTorch DCP's (`format: "torch"`) on the same data,
 * same run: a save and a warm load of `tensors × tensorMib`, and of `small` 16 KiB tensors. The
 * ratios decide the default format (docs/format.md): torch ÷ native time, lower is better.
 *
 * @param tensors - large tensors.
 * @param tensorMib - MiB per large tensor.
 * @param small - 16 KiB tensors in the many-small case.
 * @param reps - repetitions (best of N).
 * @param dir - scratch folder.
 */
export async function formats(
  tensors: number,
  tensorMib: number,
  small: number,
  reps: number,
  dir: string,
): Promise<void> {
  const large = float32StateDict(tensors, tensorMib);
  const many: Record<string, Tensor> = float32StateDict(small, 1 / 64).stateDict;
  const manyBytes = small * 16 * 1024;
  const rows = [];
  const ratios: Record<string, number> = {};
  for (const [label, sd, bytes] of [
    [`${tensors} × ${tensorMib} MiB`, large.stateDict, large.bytes],
    [`${small} × 16 KiB`, many, manyBytes],
  ] as const) {
    const seconds: Record<string, { save: number; load: number }> = {};
    const ckpts = { dcpjs: join(dir, "formats-dcpjs"), torch: join(dir, "formats-torch") };
    for (const format of ["dcpjs", "torch"] as const) {
      const ckpt = ckpts[format];
      const saveS = await bestOf(reps, async () => {
        await rm(ckpt, { recursive: true, force: true });
        return timed(() => save(sd, { storageWriter: new FileSystemWriter({ path: ckpt, format }) }));
      });
      seconds[format] = { save: saveS, load: Number.POSITIVE_INFINITY };
    }
    // Loads take turns (dcpjs, torch, dcpjs, …) so that a busy machine slows both alike.
    for (let rep = 0; rep < reps; rep++) {
      for (const format of ["dcpjs", "torch"] as const) {
        const target = emptyLike(sd);
        const s = await timed(() =>
          load(target, { storageReader: new FileSystemReader({ path: ckpts[format] }) }),
        );
        seconds[format]!.load = Math.min(seconds[format]!.load, s);
      }
    }
    for (const format of ["dcpjs", "torch"] as const) {
      rows.push({ name: `${label} save, ${format}`, bytes, seconds: seconds[format]!.save });
      rows.push({ name: `${label} load (warm), ${format}`, bytes, seconds: seconds[format]!.load });
      await rm(ckpts[format], { recursive: true, force: true });
    }
    ratios[`${label} save: torch ÷ dcpjs time`] = seconds.torch!.save / seconds.dcpjs!.save;
    ratios[`${label} load: torch ÷ dcpjs time`] = seconds.torch!.load / seconds.dcpjs!.load;
  }
  report("formats", { tensors, tensorMib, small, reps }, rows, ratios, [
    "torch-format items are zip-framed: large ones (≥ 256 KiB) are read in place (frame, then payload into the tensor), small ones decoded from a staging buffer",
    "loads take turns between the formats, best of reps each",
  ]);
}
