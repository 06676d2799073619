import type { Alert } from '../rules/index.ts';

/**
 * Targets are templates over the alert, `{{ name }}`. The scope:
 * - `key.<field>`: the alert's key (`key.host.name`);
 * - `labels.<name>`: the rule's labels;
 * - `alert.id`, `alert.rule`, `alert.type`, `alert.at`, `alert.description`, and
 *   `alert.<figure>` for the figures that fired it (`alert.count`, `alert.value`…);
 * - `figures.<name>` and `sample.<field>`, named explicitly;
 * - any other dotted name: the key's field of that name, else the sample event's
 *   (flat dotted keys and nested objects alike).
 * A missing variable is an error, never an empty string: an action must not run
 * against the wrong target.
 */
export class TemplateError extends Error {}

const ALERT_FIELDS = new Set(['id', 'rule', 'type', 'at', 'description']);

/** Reads a dotted name from a record whose keys may be dotted themselves, or nested. */
export function dotted(record: unknown, name: string): unknown {
  if (record === null || typeof record !== 'object') return undefined;
  const obj = record as Record<string, unknown>;
  if (name in obj) return obj[name];
  const parts = name.split('.');
  for (let i = parts.length - 1; i >= 1; i--) {
    const head = parts.slice(0, i).join('.');
    if (head in obj) {
      const found = dotted(obj[head], parts.slice(i).join('.'));
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

export function lookup(alert: Alert, name: string): unknown {
  const [scope, ...rest] = name.split('.');
  const field = rest.join('.');
  switch (scope) {
    case 'key':
      if (field) return alert.key[field];
      break;
    case 'labels':
      if (field) return alert.labels[field];
      break;
    case 'figures':
      if (field) return dotted(alert.figures, field);
      break;
    case 'sample':
      if (field) return dotted(alert.sample, field);
      break;
    case 'alert':
      if (ALERT_FIELDS.has(field)) return (alert as unknown as Record<string, unknown>)[field];
      if (field.startsWith('figures.')) return dotted(alert.figures, field.slice(8));
      if (field) return dotted(alert.figures, field);
      break;
  }
  if (name in alert.key) return alert.key[name];
  return dotted(alert.sample, name);
}

const VARIABLE = /\{\{\s*([^{}\s]+)\s*\}\}/g;

/**
 * Renders a template over the alert. `check`, if given, sees each value before it is
 * spliced in (with the variable's name), and throws to refuse it.
 */
export function render(
  template: string,
  alert: Alert,
  check?: (name: string, value: string) => void,
): string {
  const out = template.replace(VARIABLE, (_, name: string) => {
    const value = lookup(alert, name);
    if (value === undefined || value === null || value === '')
      throw new TemplateError(`"${name}" is not set in alert ${alert.id} of ${alert.rule}`);
    if (typeof value === 'object')
      throw new TemplateError(`"${name}" is an object in alert ${alert.id}, not a value`);
    const text = String(value);
    check?.(name, text);
    return text;
  });
  if (out.includes('{{') || out.includes('}}'))
    throw new TemplateError(`unbalanced braces in template "${template}"`);
  return out;
}

/**
 * The facts an action's `when` condition sees (json-rules-engine, undefined facts
 * allowed): `alert.id`, `alert.rule`, `alert.type`, `alert.at` (ISO), `alert.at_ms`,
 * `alert.<figure>` for each figure (`alert.count`, `alert.reference`, `alert.value`…),
 * `alert.figures` (the object, for `path` conditions), `labels.<name>`, `key.<field>`
 * and `sample.<field>` (the sample event's top-level fields).
 */
export function alertFacts(alert: Alert): Record<string, unknown> {
  const facts: Record<string, unknown> = {
    'alert.id': alert.id,
    'alert.rule': alert.rule,
    'alert.type': alert.type,
    'alert.at': alert.at,
    'alert.at_ms': Date.parse(alert.at),
    'alert.figures': alert.figures,
  };
  if (alert.description !== undefined) facts['alert.description'] = alert.description;
  for (const [k, v] of Object.entries(alert.figures)) facts[`alert.${k}`] ??= v;
  for (const [k, v] of Object.entries(alert.labels)) facts[`labels.${k}`] = v;
  for (const [k, v] of Object.entries(alert.key)) facts[`key.${k}`] = v;
  for (const [k, v] of Object.entries(alert.sample ?? {})) facts[`sample.${k}`] = v;
  return facts;
}
