/**
 * An alert as the alerts index family stores it: written where alerts are produced, so
 * the indexer stores documents without knowing what an alert is.
 */
import type { Explanation } from './explain.ts';
import type { Alert, StateChange } from './types.ts';

/** What the indexer needs of a document: its id and its time; the rest is stored as is. */
export type AlertDocument = { '@timestamp': string; id: string } & Record<string, unknown>;

/**
 * The alert as indexed: its service lifted out of key or sample, so it can be charted,
 * `state: firing`, and with what made it fire (rules/explain.ts, bounded there; stored,
 * not indexed: its fields are the sender's).
 */
export function alertDocument(a: Alert, explanation?: Explanation): AlertDocument {
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
    state: 'firing',
    ...(explanation && { explanation }),
  };
}

/**
 * A state change as indexed beside the alerts (alert state over time): its own id, the
 * `state`, and for a resolution the alert it closes (`alert_id`) and since when it fired.
 */
export function stateDocument(c: StateChange): AlertDocument {
  const service = c.key['service.name'];
  return {
    '@timestamp': c.at,
    id: c.id,
    rule: c.rule,
    type: c.type,
    ...(typeof service === 'string' && { service: { name: service } }),
    key: c.key,
    labels: c.labels,
    state: c.state,
    ...(c.alert !== undefined && { alert_id: c.alert }),
    ...(c.firing_since !== undefined && { firing_since: c.firing_since }),
  };
}
