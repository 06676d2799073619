import type { Condition } from '../types.ts';

export interface Constraint {
  field: string;
  values: unknown[];
}

function isPrimitive(v: unknown): boolean {
  return v === null || (typeof v !== 'object' && typeof v !== 'function');
}

/**
 * Fields whose value must be one of a finite set for the condition to hold — from
 * `equal` and `in` on plain fields under `all`, and an `any` whose every branch pins
 * the same field. The engine indexes rules by one of them, so an event reaches only the
 * rules that could match it. Sound before complete: a constraint is only claimed when
 * no matching event could violate it (a `path`, a fact reference or a `not` claims nothing).
 */
export function requiredValues(condition: Condition | undefined): Constraint[] {
  if (condition === undefined) return [];
  return [...collect(condition)].map(([field, values]) => ({ field, values: [...values] }));
}

function collect(node: Condition): Map<string, Set<unknown>> {
  const out = new Map<string, Set<unknown>>();
  if ('all' in node) {
    for (const child of node.all) {
      for (const [field, values] of collect(child)) {
        const existing = out.get(field);
        // Two pins on one field under all: the value must satisfy both.
        out.set(field, existing ? new Set([...existing].filter((v) => values.has(v))) : values);
      }
    }
    return out;
  }
  if ('any' in node) {
    // An empty any is true in json-rules-engine: no constraint.
    if (node.any.length === 0) return out;
    const branches = node.any.map(collect);
    for (const [field, values] of branches[0]!) {
      if (!branches.every((b) => b.has(field))) continue;
      const union = new Set(values);
      for (const b of branches.slice(1)) for (const v of b.get(field)!) union.add(v);
      out.set(field, union);
    }
    return out;
  }
  if ('not' in node) return out;
  if (node.path !== undefined && node.path !== '$') return out;
  if (node.operator === 'equal' && isPrimitive(node.value)) {
    out.set(node.fact, new Set([node.value]));
  } else if (node.operator === 'in' && Array.isArray(node.value) && node.value.every(isPrimitive)) {
    out.set(node.fact, new Set(node.value));
  }
  return out;
}
