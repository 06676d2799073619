/**
 * Drover's event model (docs/architecture.md#event-model).
 *
 * An event is a flat record keyed by dotted ECS field names: `service.name`, not
 * `{ service: { name } }`. Flat keys make the hot path a single property read per
 * field, and they are what Elasticsearch accepts as-is. `@timestamp` is epoch ms.
 */
export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export const LEVELS: readonly Level[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export interface Event {
  '@timestamp': number;
  message?: string;
  'log.level'?: Level;
  'service.name'?: string;
  'host.name'?: string;
  'error.type'?: string;
  'error.message'?: string;
  'error.stack_trace'?: string;
  'error.fingerprint'?: string;
  'metric.name'?: string;
  'metric.value'?: number;
  'metric.type'?: string;
  [field: string]: unknown;
}
