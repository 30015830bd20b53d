import { beforeAll } from "vitest";
import { describeCrashSafeOverwrite } from "../support/overwrite-suite.js";
import { freshUri, listKeys, s3Env, testClient } from "../support/s3.js";

// The workers and this process reach the suite's server through the standard variables.
beforeAll(() => {
  Object.assign(process.env, s3Env());
});

describeCrashSafeOverwrite("the S3 server", {
  fresh: async () => freshUri(),
  list: async (uri) => listKeys(testClient(), uri),
});
