// A process that saves and loads 4 MiB tensors and reports its worker threads: none while its
// tensors lie in plain ArrayBuffers (checked on the main thread), then the CRCs of tensors from
// emptyTensor on workers. Then it just ends: the idle workers must not keep it alive.
import { emptyTensor, load, save, tensor } from "@dcpjs/core";
import { workerTasksRun, workerThreadsRunning } from "@dcpjs/core/testing";

const [plainDir, sharedDir] = process.argv.slice(2) as [string, string];
const plain = tensor("float32", [1024, 1024]);
await save({ w: plain }, { checkpointId: plainDir });
await load({ w: tensor("float32", [1024, 1024]) }, { checkpointId: plainDir });
console.log(`plain: threads ${workerThreadsRunning()} tasks ${workerTasksRun()}`);

const w = emptyTensor("float32", [1024, 1024]);
w.data.fill(1.5);
await save({ w }, { checkpointId: sharedDir });
const target = { w: emptyTensor("float32", [1024, 1024]) };
await load(target, { checkpointId: sharedDir });
console.log(
  `shared: threads ${workerThreadsRunning() > 0} tasks ${workerTasksRun()} ok ${target.w.data.every((x) => x === 1.5)}`,
);
