export { type Event, LEVELS, type Level } from './event.ts';
export { fingerprint, parseStack } from './fingerprint.ts';
export {
  levelFromNumber,
  levelFromOtlpSeverity,
  levelFromString,
  NormalizeError,
  type NormalizeOptions,
  normalize,
  toEpochMs,
} from './normalize.ts';
