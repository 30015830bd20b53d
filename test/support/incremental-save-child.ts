// Child process for the kill tests of incremental saves (test/e2e/references-kill.test.ts): prints
// "ready", saves `incrementalState(argv[3])` to argv[2] with base argv[4] (a sibling checkpoint's
// id; "-" for a full save), then prints "committed" or "error CODE" (the root cause's code). Every
// file operation first waits 0–4 ms at random, so that a save spans many points a kill can land
// between (its lease, base reads, data files, the tmp, the confirm, the rename).
import { CheckpointError, CheckpointException, FileSystemWriter, LocalFileSystem, save } from "@dcpjs/core";
import { incrementalState } from "./incremental-fixture.js";

const SLOW = new Set(["createStream", "rename", "mkdir", "exists", "rmFile", "list"]);
const SLOW_STREAM = new Set(["write", "writev", "sync", "close", "read", "readInto", "size"]);

/** `target` with its asynchronous methods `names` delayed; streams they return wrapped too. */
function slow<T extends object>(target: T, names: ReadonlySet<string>): T {
  return new Proxy(target, {
    get(t, key, receiver) {
      const value = Reflect.get(t, key, receiver);
      if (typeof value !== "function") return value;
      if (typeof key !== "string" || !names.has(key)) return value.bind(t); // private fields need the target
      return async (...args: unknown[]) => {
        await new Promise((r) => setTimeout(r, Math.random() * 4));
        const out = await value.apply(t, args);
        return key === "createStream" ? slow(out as object, SLOW_STREAM) : out;
      };
    },
  });
}

const [path, step, base] = [process.argv[2]!, Number(process.argv[3]), process.argv[4]!];
const sd = incrementalState(step);
const storageWriter = new FileSystemWriter({ path, fs: slow(new LocalFileSystem(), SLOW) });
process.stdout.write("ready\n");
try {
  await save(sd, { storageWriter, ...(base !== "-" ? { base } : {}) });
  process.stdout.write("committed\n");
} catch (error) {
  const root = error instanceof CheckpointException ? error.failures[0]?.code : undefined;
  process.stdout.write(`error ${root ?? (error instanceof CheckpointError ? error.code : String(error))}\n`);
}
