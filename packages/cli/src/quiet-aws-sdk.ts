// The AWS SDK for JavaScript v3 prints an 8-line NodeVersionSupportWarning on Node < 22, once per
// process, unless AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED is "true" when its first client
// is built (@aws-sdk/core's emitWarningIfUnsupportedVersion). `dcp` sets it for its own process;
// a value the user set (e.g. "false", to see the warning) is kept.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
