export {
  type DeadLetter,
  EmbeddedBus,
  type EmbeddedBusOptions,
  keyOf,
  openEmbeddedBus,
} from './embedded.ts';
export * from './types.ts';
