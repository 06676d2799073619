import type { Alert, Explanation, StateChange } from '../../rules/index.ts';

type MaybePromise<T> = T | Promise<T>;

/** An alert as recorded: the alert itself and what made it fire. */
export interface AlertRecord {
  alert: Alert;
  explanation?: Explanation;
}

/** A state change as recorded (the rule's actions are not kept: the alert has them). */
export type StateRecord = Omit<StateChange, 'actions'>;

/**
 * Where `drover serve` keeps alerts and their state changes, so `drover explain` and
 * `GET /v1/alerts/ID` answer after a restart: beside the journal, in SQLite
 * (actions/history/sqlite.ts) or in the alerts index family on Elasticsearch
 * (actions/history/elasticsearch.ts). Bounded like the journal: entries older than
 * its `maxAge` are pruned with it.
 */
export interface AlertHistory {
  recordAlert(alert: Alert, explanation?: Explanation): MaybePromise<void>;
  recordState(change: StateChange): MaybePromise<void>;
  alert(id: string): MaybePromise<AlertRecord | undefined>;
  /** The state changes of the firing the alert opened, oldest first. */
  states(alertId: string): MaybePromise<StateRecord[]>;
  /** Deletes what is older than `before` (epoch ms); returns how many records went. */
  prune(before: number): MaybePromise<number>;
  close(): MaybePromise<void>;
}

export function stateRecord(c: StateChange): StateRecord {
  const { actions: _a, ...rest } = c;
  return rest;
}
