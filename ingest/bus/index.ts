export {
  type DeadLetter,
  EmbeddedBus,
  type EmbeddedBusOptions,
  keyOf,
  openEmbeddedBus,
} from './embedded.ts';
export { createKafkaBus, KafkaBus, type KafkaBusOptions } from './kafka.ts';
export * from './types.ts';
