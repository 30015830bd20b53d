// Interim browser stand-in for node:events' setMaxListeners: an AbortSignal in a page has no
// listener limit to raise.
export function setMaxListeners() {}
