export { ENV, fromEnv } from "./from-env.js";
export {
  createRedisProcessGroup,
  DEFAULT_COLLECTIVE_TIMEOUT_MS,
  REDIS_DEADLINE_GRACE_MS,
  RedisProcessGroup,
  type RedisProcessGroupOptions,
} from "./redis-process-group.js";
export { decodeWire, encodeWire } from "./wire-codec.js";
