// A process that saves and loads a 4 MiB tensor (its CRCs run on worker threads), prints how many
// worker tasks ran, and then just ends: the idle workers must not keep it alive.
import { emptyTensor, load, save } from "@dcpjs/core";
import { workerTasksRun } from "@dcpjs/core/extend";

const dir = process.argv[2]!;
const w = emptyTensor("float32", [1024, 1024]);
w.data.fill(1.5);
await save({ w }, { checkpointId: dir });
const target = { w: emptyTensor("float32", [1024, 1024]) };
await load(target, { checkpointId: dir });
console.log(`tasks ${workerTasksRun()} ok ${target.w.data.every((x) => x === 1.5)}`);
