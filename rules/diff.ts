import type { Alert, RuleSpec } from './types.ts';

/**
 * Matching the alerts of two rule sets run over the same events (`drover rules diff`).
 *
 * Two alerts are the same incident when they have the same rule name and the same key
 * (query_key values, compared as canonical JSON) and their times lie within the rule's
 * tolerance of each other: the longer of its timeframe and its realert period, taken
 * from the head rule (the base rule when the head has none of that name), and at least
 * one second. Within one rule and key, alerts at exactly the same time match first
 * (unchanged); the rest are paired in time order, each with the earliest unpaired alert
 * of the other side within the tolerance (moved); what is left is added (head only) or
 * removed (base only). A rule present on one side only has all its alerts added or
 * removed. Linear in the number of alerts after sorting.
 */
export interface AlertChange {
  rule: string;
  key: Record<string, unknown>;
  /** Canonical JSON of the key. */
  keyId: string;
  change: 'added' | 'removed' | 'moved' | 'unchanged';
  /** ISO time of the base alert (removed, moved, unchanged). */
  baseAt?: string;
  /** ISO time of the head alert (added, moved, unchanged). */
  headAt?: string;
}

export interface RuleDiff {
  rule: string;
  /** Where the rule is defined: both sets, or only one. */
  presence: 'both' | 'base' | 'head';
  added: number;
  removed: number;
  moved: number;
  unchanged: number;
  /** Every change but `unchanged`, in time order. */
  changes: AlertChange[];
}

export const MIN_TOLERANCE_MS = 1_000;

/** The same-incident tolerance of a rule: max(timeframe, realert, 1 s). */
export function toleranceMs(rule: RuleSpec | undefined): number {
  if (!rule) return MIN_TOLERANCE_MS;
  const timeframe = (rule as { timeframe?: number }).timeframe ?? 0;
  return Math.max(MIN_TOLERANCE_MS, timeframe, rule.realert ?? 0);
}

/** JSON with object keys sorted, so `{a,b}` and `{b,a}` are one key. */
export function canonicalKey(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalKey).join(',')}]`;
  const o = value as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalKey(o[k])}`)
    .join(',')}}`;
}

interface Timed {
  t: number;
  alert: Alert;
}

export function diffAlerts(
  base: { rules: RuleSpec[]; alerts: Alert[] },
  head: { rules: RuleSpec[]; alerts: Alert[] },
): RuleDiff[] {
  const baseRules = new Map(base.rules.map((r) => [r.name, r]));
  const headRules = new Map(head.rules.map((r) => [r.name, r]));
  // rule → key → alerts of each side. Bounded by the alerts the two runs produced, which
  // the engines bound per rule (max_keys, realert).
  const groups = new Map<string, Map<string, { base: Timed[]; head: Timed[] }>>();
  const add = (side: 'base' | 'head', alerts: Alert[]) => {
    for (const alert of alerts) {
      let byKey = groups.get(alert.rule);
      if (!byKey)
        groups.set(alert.rule, (byKey = new Map<string, { base: Timed[]; head: Timed[] }>()));
      const id = canonicalKey(alert.key);
      let g = byKey.get(id);
      if (!g) byKey.set(id, (g = { base: [], head: [] }));
      g[side].push({ t: Date.parse(alert.at), alert });
    }
  };
  add('base', base.alerts);
  add('head', head.alerts);
  const names = new Set([...baseRules.keys(), ...headRules.keys(), ...groups.keys()]);
  const out: RuleDiff[] = [];
  for (const rule of [...names].sort()) {
    const presence = !headRules.has(rule) ? 'base' : !baseRules.has(rule) ? 'head' : 'both';
    const tol = toleranceMs(headRules.get(rule) ?? baseRules.get(rule));
    const d: RuleDiff = {
      rule,
      presence,
      added: 0,
      removed: 0,
      moved: 0,
      unchanged: 0,
      changes: [],
    };
    for (const [keyId, g] of groups.get(rule) ?? []) {
      for (const c of matchKey(g.base, g.head, tol)) {
        d[c.change]++;
        if (c.change !== 'unchanged') d.changes.push({ rule, keyId, ...c });
      }
    }
    d.changes.sort(
      (a, b) =>
        changeTime(a) - changeTime(b) || (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0),
    );
    out.push(d);
  }
  return out;
}

function changeTime(c: AlertChange): number {
  return Date.parse(c.headAt ?? c.baseAt!);
}

/** The alerts of one rule and key on each side, paired as documented above. */
export function matchKey(
  base: Timed[],
  head: Timed[],
  tol: number,
): Array<Omit<AlertChange, 'rule' | 'keyId'>> {
  const byTime = (a: Timed, b: Timed) => a.t - b.t;
  base = [...base].sort(byTime);
  head = [...head].sort(byTime);
  const out: Array<Omit<AlertChange, 'rule' | 'keyId'>> = [];
  // Exact times first: a merge of the two sorted lists.
  const restBase: Timed[] = [];
  const restHead: Timed[] = [];
  let i = 0;
  let j = 0;
  while (i < base.length && j < head.length) {
    const b = base[i]!;
    const h = head[j]!;
    if (b.t === h.t) {
      out.push({ key: h.alert.key, change: 'unchanged', baseAt: b.alert.at, headAt: h.alert.at });
      i++;
      j++;
    } else if (b.t < h.t) {
      restBase.push(b);
      i++;
    } else {
      restHead.push(h);
      j++;
    }
  }
  restBase.push(...base.slice(i));
  restHead.push(...head.slice(j));
  // Then the rest in time order, each with the earliest one of the other side in reach.
  i = 0;
  j = 0;
  while (i < restBase.length || j < restHead.length) {
    const b = restBase[i];
    const h = restHead[j];
    if (b && h && Math.abs(b.t - h.t) <= tol) {
      out.push({ key: h.alert.key, change: 'moved', baseAt: b.alert.at, headAt: h.alert.at });
      i++;
      j++;
    } else if (b && (!h || b.t < h.t)) {
      out.push({ key: b.alert.key, change: 'removed', baseAt: b.alert.at });
      i++;
    } else {
      out.push({ key: h!.alert.key, change: 'added', headAt: h!.alert.at });
      j++;
    }
  }
  return out;
}
