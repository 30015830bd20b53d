import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import {
  HttpFileSystem,
  identityChange,
  isHttpCheckpointId,
  MAX_TREE_PAGE_BYTES,
  MAX_TREE_PAGES,
  parseContentRange,
  parseHfId,
  parseRetryAfter,
  preconditionHeaders,
} from "@dcpjs/http";
import { describe, expect, it } from "vitest";
import { failureOf } from "../support/failure.js";

describe("@dcpjs/http's parsing", () => {
  it("reads Retry-After as seconds or an HTTP date, capped at a minute", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("3", now)).toBe(3000);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:10 GMT", now)).toBe(10_000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("86400", now)).toBe(60_000);
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter("soon", now)).toBeUndefined();
  });

  it("reads Content-Range, a 416's included", () => {
    expect(parseContentRange("bytes 0-99/1000")).toEqual({ start: 0, end: 99, total: 1000 });
    expect(parseContentRange("bytes 5-9/*")).toEqual({ start: 5, end: 9, total: undefined });
    expect(parseContentRange("bytes */0")).toEqual({ start: undefined, end: undefined, total: 0 });
    expect(parseContentRange("items 0-1/2")).toBeUndefined();
    expect(parseContentRange(null)).toBeUndefined();
  });

  it("tells a replaced file by ETag, else Last-Modified, and by length", () => {
    const a = { etag: '"a"', lastModified: "x", size: 10 };
    expect(identityChange(a, { ...a })).toBeUndefined();
    expect(identityChange(a, { ...a, etag: '"b"' })).toContain("ETag");
    expect(identityChange(a, { ...a, lastModified: "y" })).toBeUndefined(); // the ETag decides
    const noEtag = { etag: undefined, lastModified: "x", size: 10 };
    expect(identityChange(noEtag, { ...noEtag, lastModified: "y" })).toContain("Last-Modified");
    expect(identityChange(a, { ...a, size: 11 })).toContain("bytes");
    expect(identityChange(a, { ...a, size: undefined })).toBeUndefined();
  });

  it("sends If-Match/If-Range with a strong ETag, If-Unmodified-Since without one, nothing for a weak one or another origin", () => {
    const strong = { etag: '"a"', lastModified: "x", size: 1, origin: "http://cdn" };
    expect(preconditionHeaders(strong, true, "http://cdn")).toEqual({ "if-match": '"a"', "if-range": '"a"' });
    expect(preconditionHeaders(strong, false)).toEqual({ "if-match": '"a"' });
    expect(preconditionHeaders(strong, true, "http://hub")).toEqual({});
    expect(preconditionHeaders({ ...strong, etag: 'W/"a"' }, true)).toEqual({});
    expect(preconditionHeaders({ ...strong, etag: undefined }, true)).toEqual({
      "if-unmodified-since": "x",
      "if-range": "x",
    });
    expect(preconditionHeaders(undefined, true)).toEqual({});
  });

  it("takes http(s):// URLs and hf://ORG/REPO[@REV][/SUB] ids only", () => {
    expect(isHttpCheckpointId("https://h.example/a")).toBe(true);
    expect(isHttpCheckpointId("http://127.0.0.1:8080/ckpt")).toBe(true);
    expect(isHttpCheckpointId("hf://org/model@v1/sub")).toBe(true);
    expect(isHttpCheckpointId("hf://org")).toBe(false);
    expect(isHttpCheckpointId("https://")).toBe(false);
    expect(isHttpCheckpointId("s3://bucket/x")).toBe(false);
    expect(isHttpCheckpointId("./local")).toBe(false);
    expect(parseHfId("hf://org/model@v1/a/b")).toEqual({
      repo: "org/model",
      revision: "v1",
      subfolder: "a/b",
    });
    expect(parseHfId("hf://spaces/org/app")).toEqual({
      repo: "spaces/org/app",
      revision: "main",
      subfolder: "",
    });
  });
});

describe("the Hub's tree API is read within bounds (a hostile or broken endpoint)", () => {
  /** A Hub endpoint whose tree API answers `page(n)` for page n, each with a `Link` to the next. */
  async function endlessTree(
    page: (n: number) => string,
  ): Promise<{ origin: string; close(): Promise<void> }> {
    const server = createServer((req, res) => {
      const n = Number(new URL(req.url ?? "/", "http://x").searchParams.get("cursor") ?? 0);
      res.setHeader("link", `</api/models/org/model/tree/main?cursor=${n + 1}>; rel="next"`);
      res.setHeader("content-type", "application/json");
      res.end(page(n));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return {
      origin: `http://127.0.0.1:${port}`,
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
  }

  it(`stops after MAX_TREE_PAGES pages of an endless listing with MALFORMED_METADATA`, async () => {
    const hub = await endlessTree(() => "[]");
    try {
      const failure = await failureOf(new HttpFileSystem({ hfEndpoint: hub.origin }).list("hf://org/model"));
      expect(failure).toMatchObject({ code: "MALFORMED_METADATA" });
      expect(failure.message).toContain(`at most ${MAX_TREE_PAGES} pages`);
    } finally {
      await hub.close();
    }
  });

  it("refuses a page over MAX_TREE_PAGE_BYTES without holding it", async () => {
    const hub = await endlessTree(() => `[${" ".repeat(MAX_TREE_PAGE_BYTES)}]`);
    try {
      const failure = await failureOf(new HttpFileSystem({ hfEndpoint: hub.origin }).list("hf://org/model"));
      expect(failure).toMatchObject({ code: "MALFORMED_METADATA" });
      expect(failure.message).toContain(`at most ${MAX_TREE_PAGE_BYTES} bytes`);
    } finally {
      await hub.close();
    }
  });
});
