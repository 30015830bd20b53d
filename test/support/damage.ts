import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { METADATA_FILE, type StorageInfo } from "@dcpjs/core/extend";
import { decodeMetadata } from "@dcpjs/core/testing";

/**
 * Flips bits of one stored item of a local dcpjs checkpoint, in place.
 *
 * @param dir - the checkpoint folder.
 * @param key - the item's storage key (`metadataIndexKey`: fqn, NUL, offsets), or a prefix of it.
 * @param at - the byte to damage, from the item's first byte.
 * @param mask - the bits to flip. @default 0x01
 * @returns the item's storage entry.
 */
export async function flipStoredBits(
  dir: string,
  key: string,
  at: number,
  mask = 0x01,
): Promise<StorageInfo> {
  const md = decodeMetadata(await readFile(join(dir, METADATA_FILE)));
  const info = md.storageData.get(key) ?? [...md.storageData].find(([k]) => k.startsWith(key))?.[1];
  if (!info) throw new Error(`no stored item ${JSON.stringify(key)} in ${dir}`);
  const file = join(dir, info.relativePath);
  const data = await readFile(file);
  data[info.offset + at]! ^= mask;
  await writeFile(file, data);
  return info;
}

/** Flips one byte in every content file of a cache folder; returns how many. */
export async function damageCache(cacheDir: string): Promise<number> {
  const contentRoot = join(cacheDir, (await readdir(cacheDir)).find((d) => d.startsWith("content-"))!);
  let flipped = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        const bytes = await readFile(p);
        bytes[bytes.length >> 1]! ^= 0x40;
        await writeFile(p, bytes);
        flipped++;
      }
    }
  };
  await walk(contentRoot);
  return flipped;
}
