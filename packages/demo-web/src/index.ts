// @dcpjs/demo-web — the browser demo page (src/page) and what builds and serves it.
export { type BundleForBrowserOptions, browserFieldDisabled, bundleForBrowser } from "./browser-bundle.js";
export { buildDemoWeb, DEMO_WEB_DIR } from "./build-web.js";
export { type DemoWebServer, type ServeDemoWebOptions, serveDemoWeb } from "./serve-web.js";
