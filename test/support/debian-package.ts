import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Makes sure a Debian package's program is there for the tests: runs `probe` (e.g. `nginx -v`)
 * and, when it fails, installs `pkg` with apt-get (waiting up to 10 minutes for apt's lock, as
 * another setup may be installing at the same time).
 *
 * @param log - where to say it installs.
 * @param probe - the program and arguments that succeed once the package is installed.
 * @param pkg - the Debian package; `--no-install-recommends` when `minimal`.
 * @throws what apt-get's failure throws (the command's stderr in its message).
 */
export async function ensureDebianPackage(
  log: (line: string) => void,
  probe: readonly [string, ...string[]],
  pkg: string,
  { minimal = false } = {},
): Promise<void> {
  const [program, ...args] = probe;
  if (
    await run(program, args).then(
      () => true,
      () => false,
    )
  )
    return;
  log(`[${pkg}] installing ${pkg} with apt-get`);
  const recommends = minimal ? " --no-install-recommends" : "";
  await run(
    "bash",
    [
      "-c",
      `apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq${recommends} ${pkg}`,
    ],
    { maxBuffer: 64 << 20 },
  );
}
