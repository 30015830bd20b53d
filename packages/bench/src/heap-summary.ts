import { readFileSync } from "node:fs";

/** The parts of a V8 heap snapshot (`v8.writeHeapSnapshot`) the summary reads. */
interface HeapSnapshot {
  readonly snapshot: {
    readonly meta: {
      readonly node_fields: string[];
      readonly edge_fields: string[];
      readonly node_types: [string[]];
      readonly edge_types: [string[]];
    };
  };
  readonly nodes: number[];
  readonly edges: number[];
  readonly strings: string[];
}

const MIB = 2 ** 20;

/**
 * Summarises a V8 heap snapshot: self size by node type and constructor, and the array-buffer
 * backing stores (typed arrays' memory, outside the JS heap) grouped by the chain of properties
 * that holds them (the first strong retainer at each step, up to 9 steps, element indices
 * folded), largest first.
 *
 * @param path - the `.heapsnapshot` file.
 * @param top - rows of each list. @default 20
 * @returns the report's lines.
 */
export function summariseHeapSnapshot(path: string, top = 20): string[] {
  const snap = JSON.parse(readFileSync(path, "utf8")) as HeapSnapshot;
  const { meta } = snap.snapshot;
  const { nodes, edges, strings } = snap;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const [nodeTypes] = meta.node_types;
  const [edgeTypes] = meta.edge_types;
  const iType = meta.node_fields.indexOf("type");
  const iName = meta.node_fields.indexOf("name");
  const iSize = meta.node_fields.indexOf("self_size");
  const iEdges = meta.node_fields.indexOf("edge_count");
  const eType = meta.edge_fields.indexOf("type");
  const eName = meta.edge_fields.indexOf("name_or_index");
  const eTo = meta.edge_fields.indexOf("to_node");
  const count = nodes.length / nf;
  const typeOf = (i: number) => nodeTypes[nodes[i * nf + iType]!]!;
  const nameOf = (i: number) => strings[nodes[i * nf + iName]!]!;
  const sizeOf = (i: number) => nodes[i * nf + iSize]!;

  // Each node's first strong retainer (a real object's rather than a synthetic root's, if any).
  const retainer = new Int32Array(count).fill(-1);
  const via = new Int32Array(count).fill(-1);
  for (let i = 0, e = 0; i < count; i++) {
    const end = e + nodes[i * nf + iEdges]! * ef;
    for (; e < end; e += ef) {
      const kind = edgeTypes[edges[e + eType]!];
      if (kind === "weak" || kind === "shortcut") continue;
      const to = edges[e + eTo]! / nf;
      if (retainer[to] === -1 || typeOf(retainer[to]!) === "synthetic") {
        retainer[to] = i;
        via[to] = e;
      }
    }
  }
  const chain = (node: number) => {
    const steps: string[] = [];
    for (let i = node, d = 0; d < 9 && retainer[i] !== -1; d++) {
      const e = via[i]!;
      const kind = edgeTypes[edges[e + eType]!];
      const edge = kind === "element" || kind === "hidden" ? "[n]" : strings[edges[e + eName]!];
      i = retainer[i]!;
      steps.push(`${edge} < ${typeOf(i)}:${nameOf(i).slice(0, 40)}`);
    }
    return steps.join(" ");
  };

  const byConstructor = new Map<string, [number, number]>();
  const byHolder = new Map<string, [number, number]>();
  let total = 0;
  for (let i = 0; i < count; i++) {
    const size = sizeOf(i);
    total += size;
    const key = `${typeOf(i)} ${nameOf(i).slice(0, 60)}`;
    const c = byConstructor.get(key) ?? [0, 0];
    byConstructor.set(key, [c[0] + size, c[1] + 1]);
    if (nameOf(i) === "system / JSArrayBufferData") {
      const holder = chain(i);
      const h = byHolder.get(holder) ?? [0, 0];
      byHolder.set(holder, [h[0] + size, h[1] + 1]);
    }
  }
  const rows = (m: Map<string, [number, number]>) =>
    [...m]
      .sort((a, b) => b[1][0] - a[1][0])
      .slice(0, top)
      .map(([k, [size, n]]) => `${(size / MIB).toFixed(1).padStart(9)} MiB ${String(n).padStart(9)}  ${k}`);
  return [
    `self size ${(total / MIB).toFixed(1)} MiB in ${count} nodes; by type and constructor:`,
    ...rows(byConstructor),
    "array-buffer backing stores by holder chain:",
    ...rows(byHolder),
  ];
}

// `node --import tsx heap-summary.ts <file.heapsnapshot> [top]` prints the summary.
if (process.argv[1]?.endsWith("heap-summary.ts") && process.argv.length >= 3) {
  for (const line of summariseHeapSnapshot(process.argv[2]!, Number(process.argv[3] ?? 20)))
    console.log(line);
}
