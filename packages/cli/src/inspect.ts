import { createStorageReader, type Metadata } from "@dcpjs/core";
import { metadataIndexKey } from "@dcpjs/core/extend";
import { formatBytes, plural } from "./format.js";

/** One row of `dcp inspect`. */
export interface InspectEntry {
  readonly fqn: string;
  readonly kind: "tensor" | "value";
  readonly dtype: string | null;
  readonly shape: number[] | null;
  readonly chunks: number;
  readonly bytes: number;
}

/** What `dcp inspect` reports about a checkpoint. */
export interface InspectReport {
  readonly checkpointId: string;
  /** The on-disk format: `dcpjs` or `safetensors`. */
  readonly format: string;
  readonly version: string;
  readonly entries: InspectEntry[];
  readonly totals: {
    readonly entries: number;
    readonly tensors: number;
    readonly values: number;
    readonly bytes: number;
    readonly files: number;
  };
}

/**
 * Describes a checkpoint from its `.metadata`: every entry (fqn, dtype, global shape, chunk count,
 * stored bytes) and totals.
 *
 * @param metadata - the checkpoint's metadata.
 * @param checkpointId - its path or URI, for the report.
 */
export function describeCheckpoint(metadata: Metadata, checkpointId: string): InspectReport {
  const entries: InspectEntry[] = [];
  for (const [fqn, e] of metadata.stateDictMetadata) {
    const keys =
      e.type === "bytes"
        ? [metadataIndexKey({ fqn, offset: null })]
        : e.chunks.map((c) => metadataIndexKey({ fqn, offset: c.offsets }));
    const bytes = keys.reduce((n, k) => n + (metadata.storageData.get(k)?.length ?? 0), 0);
    entries.push(
      e.type === "bytes"
        ? { fqn, kind: "value", dtype: null, shape: null, chunks: 1, bytes }
        : {
            fqn,
            kind: "tensor",
            dtype: e.properties.dtype,
            shape: [...e.size],
            chunks: e.chunks.length,
            bytes,
          },
    );
  }
  const tensors = entries.filter((e) => e.kind === "tensor").length;
  return {
    checkpointId,
    format: metadata.storageMeta.format ?? "dcpjs",
    version: metadata.version,
    entries,
    totals: {
      entries: entries.length,
      tensors,
      values: entries.length - tensors,
      bytes: entries.reduce((n, e) => n + e.bytes, 0),
      files: new Set([...metadata.storageData.values()].map((s) => s.relativePath)).size,
    },
  };
}

/**
 * Reads a checkpoint's metadata and describes it; see {@link describeCheckpoint}.
 *
 * @param checkpointId - a folder or `s3://` URI.
 * @throws {@link CheckpointError} `INCOMPLETE_CHECKPOINT` when there is no `.metadata`, or a
 * {@link MetadataError} when it is malformed.
 */
export async function inspectCheckpoint(checkpointId: string): Promise<InspectReport> {
  const reader = await createStorageReader(checkpointId);
  return describeCheckpoint(await reader.readMetadata(), checkpointId);
}

/**
 * Formats a report as a fixed-width table with a totals line.
 *
 * @param report - from {@link inspectCheckpoint}.
 */
export function formatInspectTable(report: InspectReport): string {
  const rows = report.entries.map((e) => [
    e.fqn,
    e.dtype ?? "value",
    e.shape ? `[${e.shape.join(", ")}]` : "-",
    String(e.chunks),
    String(e.bytes),
  ]);
  const header = ["fqn", "dtype", "shape", "chunks", "bytes"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  const t = report.totals;
  return [
    line(header),
    ...rows.map(line),
    "",
    `${plural(t.entries, "entry")} (${plural(t.tensors, "tensor")}, ${plural(t.values, "value")}), ${formatBytes(t.bytes)} in ${plural(t.files, "data file")}; format ${report.format}, DCP version ${report.version}`,
  ].join("\n");
}
