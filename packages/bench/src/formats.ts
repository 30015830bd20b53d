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
    for (const format of ["dcpjs", "torch"] as const) {
      const ckpt = join(dir, `formats-${format}`);
      const saveS = await bestOf(reps, async () => {
        await rm(ckpt, { recursive: true, force: true });
        return timed(() => save(sd, { storageWriter: new FileSystemWriter({ path: ckpt, format }) }));
      });
      const loadS = await bestOf(reps, () => {
        const target = emptyLike(sd);
        return timed(() => load(target, { storageReader: new FileSystemReader({ path: ckpt }) }));
      });
      seconds[format] = { save: saveS, load: loadS };
      rows.push({ name: `${label} save, ${format}`, bytes, seconds: saveS });
      rows.push({ name: `${label} load (warm), ${format}`, bytes, seconds: loadS });
      await rm(ckpt, { recursive: true, force: true });
    }
    ratios[`${label} save: torch ÷ dcpjs time`] = seconds.torch!.save / seconds.dcpjs!.save;
    ratios[`${label} load: torch ÷ dcpjs time`] = seconds.torch!.load / seconds.dcpjs!.load;
  }
  report("formats", { tensors, tensorMib, small, reps }, rows, ratios, [
    "torch-format items are zip-framed: loads decode each archive from a staging buffer",
  ]);
}
