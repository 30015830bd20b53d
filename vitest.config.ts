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
          include: [
            "test/core/**/*.test.ts",
            "test/cli/**/*.test.ts",
            "test/tfjs/**/*.test.ts",
            "test/conformance/local.test.ts",
            "test/conformance/memory.test.ts",
          ],
        },
      },
      {
        // The HTTP backend against loopback servers: Debian's nginx serving the fixtures (started once
        // by the global setup), and servers the tests start themselves.
        extends: true,
        test: {
          name: "http",
          include: ["test/http/**/*.test.ts"],
          globalSetup: ["test/support/http-global-setup.ts"],
        },
      },
      {
        // Tests in a real browser: Debian's Chromium (installed by the global setup) driven by
        // playwright-core, against pages and bundles the tests serve on loopback.
        extends: true,
        test: {
          name: "browser",
          include: ["test/browser/**/*.test.ts"],
          globalSetup: ["test/support/browser-global-setup.ts"],
        },
      },
      {
        // Everything that needs real services (an S3 server, Redis): started once by the global setup.
        extends: true,
        test: {
          name: "services",
          include: [
            "test/s3/**/*.test.ts",
            "test/conformance/s3.test.ts",
            "test/redis/**/*.test.ts",
            "test/e2e/**/*.test.ts",
            // Packs and installs the packages, and runs the docs' programs against the services.
            "test/packaging/**/*.test.ts",
          ],
          globalSetup: ["test/support/services-global-setup.ts"],
        },
      },
    ],
  },
});
