// Child process for crash tests: saves a state dict to argv[2] and, once `argv[3]` items are
// written, prints "mid-write" and blocks, so the parent can SIGKILL it before the commit.
import { FileSystemWriter, type StateDict, save } from "@dcpjs/core";
import { randomTensor } from "./tensors.js";

const [dir, after] = [process.argv[2]!, Number(process.argv[3] ?? 3)];
let items = 0;
const writer = new FileSystemWriter({
  path: dir,
  onProgress: (d) => {
    items += d.items;
    if (items === after) {
      process.stdout.write("mid-write\n");
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
    }
  },
});
const sd: StateDict = {};
for (let i = 0; i < 16; i++) sd[`w${i}`] = randomTensor("float32", [256, 256], i + 1);
await save(sd, { storageWriter: writer });
process.stdout.write("committed\n");
