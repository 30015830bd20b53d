import type { TestProject } from "vitest/node";
import { buildHttpFixtures } from "./http-fixtures.js";
import { type NginxInfo, startNginx } from "./nginx-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    nginx: NginxInfo;
  }
}

/**
 * Vitest global setup of the http project: Debian's nginx on loopback (installed with apt when
 * missing) serving a temp folder with the HTTP fixtures (test/support/http-fixtures.ts), stopped
 * at teardown.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const nginx = await startNginx((line) => console.log(line));
  try {
    await buildHttpFixtures(nginx.root);
  } catch (error) {
    await nginx.stop();
    throw error;
  }
  const { url, hubUrl, root, accessLogPath } = nginx;
  project.provide("nginx", { url, hubUrl, root, accessLogPath });
  return () => nginx.stop();
}
