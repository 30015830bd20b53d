// Hugging Face ids (`hf://org/model@rev/sub`) and the Hub's `resolve` URLs, as huggingface_hub's
// `hf_hub_url`: `{endpoint}/{repo_id}/resolve/{revision}/{filename}`.
import { CheckpointError } from "@dcpjs/core";
import { envVar } from "./runtime.js";

/** The public Hub, the endpoint when neither an option nor `HF_ENDPOINT` names another. */
export const DEFAULT_HF_ENDPOINT = "https://huggingface.co";

/** The parts of an `hf://` id. */
export interface HfLocation {
  /** The repository id as the Hub spells it: `org/model`, or `datasets/org/name` / `spaces/org/name`. */
  readonly repo: string;
  /** The branch, tag or commit. @default "main" */
  readonly revision: string;
  /** The folder inside the repository, without slashes at either end (empty for the root). */
  readonly subfolder: string;
}

/** Whether a checkpoint id is an `hf://` id. */
export function isHfId(id: string): boolean {
  return /^hf:\/\//i.test(id);
}

/** Whether a checkpoint id is an `http://`, `https://` or `hf://` URL this package reads. */
export function isHttpCheckpointId(id: string): boolean {
  if (isHfId(id)) {
    try {
      parseHfId(id);
      return true;
    } catch {
      return false;
    }
  }
  if (!/^https?:\/\//i.test(id)) return false;
  try {
    return new URL(id).host.length > 0;
  } catch {
    return false;
  }
}

/**
 * Parses `hf://{org}/{repo}[@{revision}][/{subfolder}]` (`datasets/` or `spaces/` before the org
 * for those repository types); a revision with `/` (e.g. `refs/pr/1`) is written URL-encoded.
 *
 * @param id - the `hf://` id.
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` when it has no org and repository name.
 */
export function parseHfId(id: string): HfLocation {
  const rest = id.replace(/^hf:\/\//i, "");
  const segments = rest.split("/").filter((s) => s.length > 0);
  const typed = segments[0] === "datasets" || segments[0] === "spaces" ? 1 : 0;
  const names = segments.slice(0, typed + 2);
  if (names.length < typed + 2 || !isHfId(id)) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected hf://ORG/REPO[@REVISION][/SUBFOLDER], got ${JSON.stringify(id)}`,
    );
  }
  const last = names[names.length - 1]!;
  const at = last.indexOf("@");
  const name = at >= 0 ? last.slice(0, at) : last;
  const revision = at >= 0 ? decodeURIComponent(last.slice(at + 1)) : "main";
  if (name.length === 0 || revision.length === 0) {
    throw new CheckpointError(
      "INVALID_ARGUMENT",
      `Expected hf://ORG/REPO[@REVISION][/SUBFOLDER] with a repository name and revision, got ${JSON.stringify(id)}`,
    );
  }
  return {
    repo: [...names.slice(0, -1), name].join("/"),
    revision,
    subfolder: segments.slice(typed + 2).join("/"),
  };
}

/** The URL prefix of a repository's files at a revision: `{endpoint}/{repo}/resolve/{revision}/`. */
export function hfResolvePrefix(endpoint: string, repo: string, revision: string): string {
  return `${endpoint.replace(/\/+$/, "")}/${repo}/resolve/${encodeURIComponent(revision)}/`;
}

/**
 * The Hub URL an `hf://` id reads from, as huggingface_hub's `hf_hub_url`.
 *
 * @param id - `hf://org/model[@revision][/subfolder]`.
 * @param endpoint - the Hub. @default `process.env.HF_ENDPOINT` ?? {@link DEFAULT_HF_ENDPOINT}
 * @returns `${endpoint}/org/model/resolve/${revision ?? "main"}/subfolder` (no trailing slash).
 * @throws {@link CheckpointError} `INVALID_ARGUMENT` for a malformed id.
 * @example `resolveHfUrl("hf://org/model@v1/sub", "http://127.0.0.1:8080")` → `http://127.0.0.1:8080/org/model/resolve/v1/sub`
 */
export function resolveHfUrl(id: string, endpoint?: string): string {
  const { repo, revision, subfolder } = parseHfId(id);
  const base = hfResolvePrefix(endpoint ?? envVar("HF_ENDPOINT") ?? DEFAULT_HF_ENDPOINT, repo, revision);
  const sub = subfolder
    .split("/")
    .filter((s) => s.length > 0)
    .map(encodeURIComponent)
    .join("/");
  return sub.length > 0 ? `${base}${sub}` : base.slice(0, -1);
}
