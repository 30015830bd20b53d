// A file's identity over HTTP, pinned on first contact: a later response that names another
// version is a replaced file (SOURCE_CHANGED), never bytes to mix with the first version's.

/** What identifies one version of a file: its ETag, else its Last-Modified and length. */
export interface FileIdentity {
  /** The `ETag`, as sent (a weak one keeps its `W/`). */
  readonly etag: string | undefined;
  /** The `Last-Modified`, as sent. */
  readonly lastModified: string | undefined;
  /** Bytes (a 206's `Content-Range` total, else `Content-Length`), when the response says. */
  readonly size: number | undefined;
  /**
   * The origin that answered with it (after redirects: the Hub's CDN): preconditions go to this
   * origin only, since another hop (the Hub's `resolve`) may name the file by another ETag.
   */
  readonly origin?: string;
}

/**
 * The identity a response states.
 * @param headers - the response's headers.
 * @param size - the file's size the response states, if any.
 */
export function identityOf(headers: Headers, size: number | undefined, origin?: string): FileIdentity {
  return {
    etag: headers.get("etag") ?? undefined,
    lastModified: headers.get("last-modified") ?? undefined,
    size,
    ...(origin !== undefined ? { origin } : {}),
  };
}

/**
 * What differs between the pinned identity and a response's, or undefined when nothing does:
 * the ETags when both have one; else Last-Modified when both have one; and the sizes when both
 * are known.
 * @param pinned - the identity of first contact.
 * @param seen - the identity of a later response.
 */
export function identityChange(pinned: FileIdentity, seen: FileIdentity): string | undefined {
  if (pinned.etag !== undefined && seen.etag !== undefined) {
    if (pinned.etag !== seen.etag) return `ETag ${pinned.etag} first, now ${seen.etag}`;
  } else if (pinned.lastModified !== undefined && seen.lastModified !== undefined) {
    if (pinned.lastModified !== seen.lastModified)
      return `Last-Modified ${pinned.lastModified} first, now ${seen.lastModified}`;
  }
  if (pinned.size !== undefined && seen.size !== undefined && pinned.size !== seen.size)
    return `${pinned.size} bytes first, now ${seen.size}`;
  return undefined;
}

/**
 * The precondition headers that make a request fail (412) or fall back to a whole-file 200
 * (`If-Range`) when the file is no longer the pinned version: `If-Match` and `If-Range` with a
 * strong ETag; without one, `If-Unmodified-Since` and `If-Range` with Last-Modified. A weak ETag
 * sends nothing (strong comparison would always fail): the response's identity is still checked.
 * Nothing is sent to another origin than the one that stated the identity.
 * @param identity - the pinned identity, if any.
 * @param ranged - whether the request has a `Range` (only then is `If-Range` meaningful).
 * @param origin - the origin the request goes to. @default the identity's own
 */
export function preconditionHeaders(
  identity: FileIdentity | undefined,
  ranged: boolean,
  origin?: string,
): Record<string, string> {
  if (identity === undefined) return {};
  if (origin !== undefined && identity.origin !== undefined && origin !== identity.origin) return {};
  if (identity.etag !== undefined) {
    if (identity.etag.startsWith("W/")) return {};
    return { "if-match": identity.etag, ...(ranged ? { "if-range": identity.etag } : {}) };
  }
  if (identity.lastModified !== undefined) {
    return {
      "if-unmodified-since": identity.lastModified,
      ...(ranged ? { "if-range": identity.lastModified } : {}),
    };
  }
  return {};
}

/** A parsed `Content-Range: bytes a-b/total` (`total` undefined for `*`), or `bytes *​/total` (a 416's). */
export interface ContentRange {
  readonly start: number | undefined;
  readonly end: number | undefined;
  readonly total: number | undefined;
}

/**
 * Parses `Content-Range`.
 * @param value - the header, if any.
 * @returns undefined when absent or malformed.
 */
export function parseContentRange(value: string | null): ContentRange | undefined {
  if (value === null) return undefined;
  const m = /^\s*bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)\s*$/i.exec(value);
  if (!m) return undefined;
  const num = (s: string | undefined) => (s === undefined || s === "*" ? undefined : Number(s));
  return { start: num(m[1]), end: num(m[2]), total: num(m[3]) };
}
