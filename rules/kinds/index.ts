import type { RuleType } from '../types.ts';
import { anyKind } from './any.ts';
import { cardinalityKind } from './cardinality.ts';
import { changeKind } from './change.ts';
import { expiryKind } from './expiry.ts';
import { flatlineKind } from './flatline.ts';
import { frequencyKind } from './frequency.ts';
import type { KindDescriptor } from './kind.ts';
import { metricAggregationKind } from './metric-aggregation.ts';
import { newTermKind } from './new-term.ts';
import { spikeKind } from './spike.ts';

/**
 * The rule kinds, one descriptor each (kind.ts). Adding a kind: its file under kinds/
 * with its runner and descriptor, its name and spec type in types.ts, and a line here;
 * rules/schema.json gains its options (test/rules/kinds/registry.test.ts fails until it does).
 */
export const KINDS: { readonly [T in RuleType]: KindDescriptor<T> } = {
  any: anyKind,
  frequency: frequencyKind,
  spike: spikeKind,
  flatline: flatlineKind,
  new_term: newTermKind,
  expiry: expiryKind,
  change: changeKind,
  cardinality: cardinalityKind,
  metric_aggregation: metricAggregationKind,
};

export function kindOf<T extends RuleType>(type: T): KindDescriptor<T> {
  return KINDS[type];
}

export type { KindDescriptor, OptionKind } from './kind.ts';
