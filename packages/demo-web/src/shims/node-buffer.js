// Interim browser stand-in for node:buffer's constants: the largest typed array a page allocates.
export const constants = { MAX_LENGTH: 2 ** 32 };
