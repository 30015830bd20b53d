// Child process for the gc-during-save tests: runs `collectGarbage` (what `dcp gc` runs) on argv[2]
// with a grace of argv[3] ms — and, when argv[4] is given, `keepLast` argv[4] on a run prefix —
// pass after pass until it is killed, printing "pass" after each and "error CODE message" for a
// pass that failed.

import { CheckpointError } from "@dcpjs/core";
import { collectGarbage } from "@dcpjs/core/ops";
import "@dcpjs/s3";

const [path, graceMs, keepLast] = [process.argv[2]!, Number(process.argv[3]), process.argv[4]];
for (;;) {
  try {
    await collectGarbage(path, { graceMs, ...(keepLast ? { keepLast: Number(keepLast) } : {}) });
    process.stdout.write("pass\n");
  } catch (error) {
    const code = error instanceof CheckpointError ? error.code : "UNTYPED";
    process.stdout.write(`error ${code} ${error instanceof Error ? error.message : String(error)}\n`);
  }
  await new Promise((r) => setTimeout(r, 10));
}
