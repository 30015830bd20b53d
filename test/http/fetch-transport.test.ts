// The fetch transport's own rules: a page's cross-origin requests leave out the preconditions
// (not CORS-safelisted: a preflight CDNs refuse), same-origin ones and those outside a page keep them.
import { createFetchTransport } from "@dcpjs/http";
import { afterEach, expect, it } from "vitest";

const HEADERS = { range: "bytes=0-9", "if-match": '"e"', "if-range": '"e"', authorization: "Bearer t" };

/** A transport over a `fetch` that records the headers of each request and answers 206 with no body. */
function recording(options: { crossOriginPreconditions?: boolean } = {}) {
  const seen: Record<string, string>[] = [];
  const transport = createFetchTransport({
    ...options,
    fetch: async (_input, init) => {
      seen.push({ ...(init?.headers as Record<string, string>) });
      return new Response(null, { status: 206 });
    },
  });
  return { transport, seen };
}

afterEach(() => {
  delete (globalThis as { location?: unknown }).location;
});

it("a page's cross-origin request goes without If-Match/If-Range; same-origin and non-page ones keep them", async () => {
  const { transport, seen } = recording();
  const signal = new AbortController().signal;
  await transport.send("http://cdn.example/f", "GET", HEADERS, signal);
  (globalThis as { location?: unknown }).location = { origin: "http://page.example" };
  await transport.send("http://page.example/f", "GET", HEADERS, signal);
  await transport.send("http://cdn.example/f", "GET", HEADERS, signal);
  expect(seen).toEqual([HEADERS, HEADERS, { range: "bytes=0-9", authorization: "Bearer t" }]);
  const forced = recording({ crossOriginPreconditions: true });
  await forced.transport.send("http://cdn.example/f", "GET", HEADERS, signal);
  expect(forced.seen).toEqual([HEADERS]);
});
