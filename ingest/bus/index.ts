export {
  type DeadLetter,
  EmbeddedBus,
  type EmbeddedBusOptions,
  type EmbeddedBusStats,
  type GroupPosition,
  openEmbeddedBus,
} from './embedded/index.ts';
export { DEFAULT_MAX_ATTEMPTS, isTransient, transient } from './deliver.ts';
export { keyOf } from './encode.ts';
export {
  createKafkaBus,
  KafkaBus,
  type KafkaBusOptions,
  type KafkaBusStats,
  type KafkaGroupLag,
  type TaskConsumer,
  type TaskModeOptions,
} from './kafka.ts';
export * from './types.ts';
