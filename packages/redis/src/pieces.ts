import { CheckpointError } from "@dcpjs/core";
import type { ChainableCommander, Redis } from "ioredis";
import { decodeWire, encodeWire } from "./wire-codec.js";

/** The largest Redis value or command a collective writes or reads by default: 8 MiB. */
export const DEFAULT_PIECE_BYTES = 8 * 2 ** 20;
/** The smallest `pieceBytes` accepted: 1 KiB. */
export const MIN_PIECE_BYTES = 1024;
/** Redis' own limit on one value (`proto-max-bulk-len`'s default): 512 MiB. */
export const MAX_PIECE_BYTES = 512 * 2 ** 20;
/**
 * Values up to this size (or `pieceBytes`, if smaller) are kept in the collective's hash; larger
 * ones go to keys of their own in pieces. 64 KiB.
 */
export const INLINE_MAX_BYTES = 64 * 2 ** 10;
/** How many pieces a rank writes or reads in one round trip. */
export const PIECES_IN_FLIGHT = 4;

/**
 * Marks a hash value as the header of a value kept in pieces: 0xc1 is the one byte msgpack never
 * uses, so no encoded value starts with it. The header is `0xc1` then `{bytes}:{pieces}` in ASCII.
 */
const HEADER_TAG = 0xc1;

/** Where and how one collective keeps its values. */
export interface PieceLayout {
  /** The collective's key prefix: the hash is `{key}:v`, pieces `{key}:p:{field}:{i}`, their names in the set `{key}:pieces`. */
  readonly key: string;
  /** How long every key lives, in ms. */
  readonly ttlMs: number;
  /** The largest value or command, in bytes. */
  readonly pieceBytes: number;
  /** Names the collective, the group and the rank in errors. */
  readonly what: string;
  /** Names the server in errors, e.g. `Redis at 10.0.0.5:6379`. */
  readonly where: string;
}

/**
 * Runs a pipeline (not a transaction: a MULTI would hide a refused command's reason, e.g. Redis'
 * OOM, behind EXECABORT), throwing the first command's error.
 */
async function execAll(commands: ChainableCommander): Promise<void> {
  for (const [error] of (await commands.exec()) ?? []) if (error) throw error;
}

const asBuffer = (v: Uint8Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
const inlineMax = (layout: PieceLayout) => Math.min(layout.pieceBytes, INLINE_MAX_BYTES);

/** The keys a collective writes besides its pieces, in the order the cleanup scripts take them. */
export function collectiveKeys(key: string): readonly string[] {
  return [`${key}:v`, `${key}:arrived`, `${key}:go`, `${key}:read`, `${key}:pieces`];
}

/**
 * Deletes a collective's keys (KEYS, as {@link collectiveKeys}) and every piece named in its
 * pieces set (KEYS[5]).
 */
export const CLEANUP_SCRIPT = `
local pieces = redis.call('SMEMBERS', KEYS[5])
for i = 1, #pieces do redis.call('DEL', pieces[i]) end
return redis.call('DEL', unpack(KEYS))
`;

/**
 * Writes a sender's values: each is encoded (msgpack, {@link encodeWire}) only when its turn
 * comes; a value larger than the inline limit goes to piece keys of at most `pieceBytes` each,
 * {@link PIECES_IN_FLIGHT} per round trip, and a small header takes its place in the hash; small
 * values go to the hash in `HSET`s of at most `pieceBytes` each. The last `HSET` is queued on
 * `tx` (the arrival transaction), so a collective of small values costs one round trip. Every key
 * expires after `ttlMs`.
 *
 * @param client - the rank's (non-blocking) connection.
 * @param layout - the collective.
 * @param values - field name and value, in any number.
 * @param tx - the arrival transaction, executed by the caller after this returns.
 */
export async function writeValues(
  client: Redis,
  layout: PieceLayout,
  values: Iterable<readonly [string, unknown]>,
  tx: ChainableCommander,
): Promise<void> {
  const { key, ttlMs, pieceBytes } = layout;
  let batch: Record<string, Buffer> = {};
  let batchBytes = 0;
  let wroteHash = false;
  const flush = async () => {
    if (Object.keys(batch).length === 0) return;
    await execAll(client.pipeline().hset(`${key}:v`, batch).pexpire(`${key}:v`, ttlMs));
    wroteHash = true;
    batch = {};
    batchBytes = 0;
  };
  for (const [field, value] of values) {
    const bytes = encodeWire(value);
    let stored: Uint8Array = bytes;
    if (bytes.byteLength > inlineMax(layout)) {
      const count = Math.ceil(bytes.byteLength / pieceBytes);
      for (let first = 0; first < count; first += PIECES_IN_FLIGHT) {
        const round = client.pipeline();
        const names: string[] = [];
        for (let i = first; i < Math.min(count, first + PIECES_IN_FLIGHT); i++) {
          const name = `${key}:p:${field}:${i}`;
          names.push(name);
          round.set(name, asBuffer(bytes.subarray(i * pieceBytes, (i + 1) * pieceBytes)), "PX", ttlMs);
        }
        await execAll(round.sadd(`${key}:pieces`, ...names).pexpire(`${key}:pieces`, ttlMs));
      }
      stored = Buffer.concat([Buffer.of(HEADER_TAG), Buffer.from(`${bytes.byteLength}:${count}`)]);
    }
    if (batchBytes + stored.byteLength > pieceBytes) await flush();
    batch[field] = asBuffer(stored);
    batchBytes += stored.byteLength;
  }
  if (Object.keys(batch).length > 0) {
    tx.hset(`${key}:v`, batch).pexpire(`${key}:v`, ttlMs);
  } else if (wroteHash) {
    tx.pexpire(`${key}:v`, ttlMs);
  }
}

/**
 * Reads a receiver's values and decodes each as soon as it is whole, so a receiver holds the
 * decoded values plus at most {@link PIECES_IN_FLIGHT} replies and one encoded value: the hash
 * in `HMGET`s of at most `pieceBytes` each, {@link PIECES_IN_FLIGHT} per round trip (a gather of
 * 4,096 small values is 8 round trips, not 32), a value kept in pieces
 * {@link PIECES_IN_FLIGHT} pieces per round trip, copied into one buffer of the value's size.
 *
 * @param client - the rank's (non-blocking) connection.
 * @param layout - the collective.
 * @param fields - the fields to read.
 * @returns the decoded values, in the order of `fields`.
 * @throws {@link CheckpointError} `IO_ERROR` when a value or one of its pieces is gone (deleted,
 * expired or evicted), naming the collective, the rank and the piece.
 */
export async function readValues(
  client: Redis,
  layout: PieceLayout,
  fields: readonly string[],
): Promise<unknown[]> {
  const { key, pieceBytes } = layout;
  const perCommand = Math.max(1, Math.floor(pieceBytes / inlineMax(layout)));
  const out: unknown[] = [];
  for (let first = 0; first < fields.length; first += perCommand * PIECES_IN_FLIGHT) {
    const round = client.pipeline();
    const asked: string[][] = [];
    for (let i = 0; i < PIECES_IN_FLIGHT && first + i * perCommand < fields.length; i++) {
      const names = fields.slice(first + i * perCommand, first + (i + 1) * perCommand);
      asked.push(names);
      round.hmgetBuffer(`${key}:v`, ...names);
    }
    const replies = (await round.exec()) ?? [];
    for (const [c, names] of asked.entries()) {
      const [error, reply] = replies[c] ?? [null, null];
      if (error) throw error;
      const stored = reply as (Buffer | null)[];
      for (const [i, bytes] of stored.entries()) {
        if (bytes === null) throw lost(layout, `value "${names[i]}"`);
        out.push(
          decodeWire(bytes[0] === HEADER_TAG ? await readPieces(client, layout, names[i]!, bytes) : bytes),
        );
      }
      replies[c] = [null, null]; // let the reply go once decoded
    }
  }
  return out;
}

async function readPieces(
  client: Redis,
  layout: PieceLayout,
  field: string,
  header: Buffer,
): Promise<Uint8Array> {
  const text = header.subarray(1).toString("latin1");
  const [total, count] = text.split(":").map(Number) as [number, number];
  // Written by a rank of this group with the same pieceBytes; anything else is a foreign or damaged key.
  if (
    !/^\d+:\d+$/.test(text) ||
    !Number.isSafeInteger(total) ||
    count !== Math.ceil(total / layout.pieceBytes)
  )
    throw new CheckpointError(
      "IO_ERROR",
      `Expected the header of value "${field}" in ${layout.where} at ${layout.what} to read {bytes}:{pieces} with pieces of ${layout.pieceBytes} bytes, got ${JSON.stringify(text.slice(0, 64))}`,
    );
  const whole = new Uint8Array(total);
  for (let first = 0; first < count; first += PIECES_IN_FLIGHT) {
    const round = client.pipeline();
    const last = Math.min(count, first + PIECES_IN_FLIGHT);
    for (let i = first; i < last; i++) round.getBuffer(`${layout.key}:p:${field}:${i}`);
    const replies = (await round.exec()) ?? [];
    for (let i = first; i < last; i++) {
      const [error, piece] = replies[i - first] ?? [null, null];
      if (error) throw error;
      if (!(piece instanceof Uint8Array)) throw lost(layout, `piece ${i} of ${count} of value "${field}"`);
      const expected = Math.min(layout.pieceBytes, total - i * layout.pieceBytes);
      if (piece.byteLength !== expected)
        throw new CheckpointError(
          "IO_ERROR",
          `Expected piece ${i} of ${count} of value "${field}" in ${layout.where} at ${layout.what} to hold ${expected} bytes, got ${piece.byteLength}`,
        );
      whole.set(piece, i * layout.pieceBytes);
    }
  }
  return whole;
}

function lost(layout: PieceLayout, what: string): CheckpointError {
  return new CheckpointError(
    "IO_ERROR",
    `Expected ${what} in ${layout.where} at ${layout.what}, got none: deleted, expired or evicted (is Redis' maxmemory-policy noeviction?)`,
  );
}
