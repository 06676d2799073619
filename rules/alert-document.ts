/**
 * An alert as the alerts index family stores it: written where alerts are produced, so
 * the indexer stores documents without knowing what an alert is.
 */
import type { Alert } from './types.ts';

/** What the indexer needs of a document: its id and its time; the rest is stored as is. */
export type AlertDocument = { '@timestamp': string; id: string } & Record<string, unknown>;

/** The alert as indexed: its service lifted out of key or sample, so it can be charted. */
export function alertDocument(a: Alert): AlertDocument {
  const service = a.key['service.name'] ?? a.sample?.['service.name'];
  return {
    '@timestamp': a.at,
    id: a.id,
    rule: a.rule,
    type: a.type,
    ...(a.description && { description: a.description }),
    ...(typeof service === 'string' && { service: { name: service } }),
    key: a.key,
    figures: a.figures,
    labels: a.labels,
    ...(a.sample && { sample: a.sample }),
  };
}
