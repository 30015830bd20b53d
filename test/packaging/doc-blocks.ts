/**
 * The TypeScript code blocks of a Markdown file, with the markers that say how the docs test
 * checks them (test/packaging/packed-install.test.ts). The HTML comment on the line(s) before a
 * block's fence:
 *
 * - `<!-- run -->`: a complete program; type-checked and run in a fresh folder, as one rank
 *   (`RANK=0 WORLD_SIZE=1`, a fresh `DCPJS_GROUP_ID`), with the suite's S3 server and Redis in the
 *   standard variables, and `s3://bucket/` — the docs' name for "your bucket" — pointing at a
 *   fresh prefix of the suite's bucket. A block marked `<!-- output -->` after it (```text) is
 *   what it must print, exactly.
 * - `<!-- fragment -->`, optionally with TypeScript in the comment (`<!-- fragment` … `-->`): a piece
 *   of a program; type-checked, not run, with the comment's TypeScript placed before it — the
 *   declarations of what the prose around it assumes (`declare const stateDict: StateDict;`).
 *
 * A ` ```ts ` block without a marker is an error: every block is checked one way or the other.
 */

/** One TypeScript block of a Markdown file. */
export interface DocBlock {
  /** The Markdown file's path, as given. */
  readonly file: string;
  /** 1-based line of the block's first code line in the Markdown file. */
  readonly line: number;
  /** How it is checked. */
  readonly kind: "run" | "fragment";
  /** TypeScript placed before the code (a fragment's declarations); "" for none. */
  readonly prelude: string;
  /** The block's code. */
  readonly code: string;
  /** What a `run` block must print (its `<!-- output -->` block), when given. */
  readonly output?: string;
}

interface Fence {
  readonly info: string;
  readonly line: number;
  readonly code: string;
  /** The HTML comment ending on the last non-blank line before the fence, without `<!--`/`-->`. */
  readonly marker: string | undefined;
}

const TS_INFO = new Set(["ts", "typescript", "mts"]);

/**
 * Extracts the TypeScript blocks of one Markdown text.
 *
 * @param file - the file's name, for messages and {@link DocBlock.file}.
 * @param text - the Markdown.
 * @throws Error naming file:line for a `ts` block without a marker, an unknown marker, or an
 * `<!-- output -->` block with no `run` block before it.
 */
export function extractDocBlocks(file: string, text: string): DocBlock[] {
  const blocks: DocBlock[] = [];
  for (const fence of fences(text)) {
    if (fence.marker?.trim() === "output") {
      const last = blocks.at(-1);
      if (last?.kind !== "run" || last.output !== undefined) {
        throw new Error(
          `${file}:${fence.line}: Expected a <!-- run --> block before this <!-- output --> block`,
        );
      }
      blocks[blocks.length - 1] = { ...last, output: fence.code };
      continue;
    }
    if (!TS_INFO.has(fence.info)) continue;
    const marker = fence.marker?.trimStart();
    const word = marker?.match(/^\S+/)?.[0];
    if (word === "run") {
      blocks.push({ file, line: fence.line, kind: "run", prelude: "", code: fence.code });
    } else if (word === "fragment") {
      const prelude = marker!.slice("fragment".length).trim();
      blocks.push({ file, line: fence.line, kind: "fragment", prelude, code: fence.code });
    } else {
      throw new Error(
        `${file}:${fence.line}: Expected <!-- run --> or <!-- fragment … --> before this TypeScript block, got ${
          marker === undefined ? "no marker" : `<!--${fence.marker}-->`
        } (test/packaging/doc-blocks.ts says what each means)`,
      );
    }
  }
  return blocks;
}

/** Every fenced block (``` or ~~~) with its info word, first code line and marker. */
function fences(text: string): Fence[] {
  const lines = text.split("\n");
  const out: Fence[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i]!.match(/^(\s*)(`{3,}|~{3,})\s*([\w-]*)/);
    if (!open) continue;
    const [, , delimiter, info] = open;
    let end = i + 1;
    while (end < lines.length && !lines[end]!.trimStart().startsWith(delimiter!)) end++;
    out.push({
      info: info!.toLowerCase(),
      line: i + 2,
      code: `${lines.slice(i + 1, end).join("\n")}\n`,
      marker: markerBefore(lines, i),
    });
    i = end;
  }
  return out;
}

/** The HTML comment that ends on the last non-blank line before line `i`, if any. */
function markerBefore(lines: readonly string[], i: number): string | undefined {
  let j = i - 1;
  while (j >= 0 && lines[j]!.trim() === "") j--;
  if (j < 0 || !lines[j]!.trimEnd().endsWith("-->")) return undefined;
  let k = j;
  while (k >= 0 && !lines[k]!.includes("<!--")) k--;
  if (k < 0) return undefined;
  const comment = lines.slice(k, j + 1).join("\n");
  return comment.slice(comment.indexOf("<!--") + 4, comment.lastIndexOf("-->"));
}
