// A process whose only pending work is a retry's pause between two attempts: it must live to see
// the retry succeed and print "ok" (a pause that does not keep the process alive ends it silently).
import { retry } from "@dcpjs/core/extend";

let failures = 0;
retry(
  async () => {
    if (failures++ < 2) throw new Error("not yet");
    return "ok";
  },
  { attempts: 3, minDelayMs: 100, shouldRetry: () => true },
).then((result) => console.log(result));
