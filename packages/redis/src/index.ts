export { ENV, fromEnv } from "./from-env.js";
export {
  DEFAULT_PIECE_BYTES,
  INLINE_MAX_BYTES,
  MAX_PIECE_BYTES,
  MIN_PIECE_BYTES,
  PIECES_IN_FLIGHT,
} from "./pieces.js";
export {
  createRedisProcessGroup,
  DEFAULT_COLLECTIVE_TIMEOUT_MS,
  REDIS_DEADLINE_GRACE_MS,
  RedisProcessGroup,
  type RedisProcessGroupOptions,
} from "./redis-process-group.js";
export { decodeWire, encodeWire } from "./wire-codec.js";
