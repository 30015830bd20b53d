// Interim stand-in for Node-only modules that @dcpjs/core imports but a page never calls (local
// files, the read cache, the worker pool): any use throws, naming the missing module.
module.exports = new Proxy(
  {},
  {
    get(_target, key) {
      if (key === "__esModule") return false;
      return function unavailable() {
        throw new Error(`Expected a Node.js environment for ${String(key)}, got a browser page`);
      };
    },
  },
);
