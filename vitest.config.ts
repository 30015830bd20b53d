import { defineConfig } from "vitest/config";

export default defineConfig({
  ssr: { resolve: { conditions: ["@dcpjs/source"] } },
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: {
          name: "core",
          include: ["test/core/**/*.test.ts", "test/cli/**/*.test.ts", "test/conformance/local.test.ts"],
        },
      },
      {
        // Everything that needs a real S3 server: started once by the global setup.
        extends: true,
        test: {
          name: "s3",
          include: ["test/s3/**/*.test.ts", "test/conformance/s3.test.ts"],
          globalSetup: ["test/support/s3-global-setup.ts"],
        },
      },
    ],
  },
});
