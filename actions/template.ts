import type { Alert } from '../rules/index.ts';

/**
 * Action targets are templates over the alert: `{{ host.name }}` reads the alert's key,
 * then its sample event; `{{ labels.team }}`, `{{ key.host.name }}`, `{{ alert.rule }}`
 * and `{{ figures.count }}` name their source explicitly. A missing variable is an
 * error, never an empty string: an action must not run against the wrong target.
 */
export class TemplateError extends Error {}

export function alertScope(alert: Alert): (name: string) => unknown {
  return (name) => {
    if (name.startsWith('key.')) return alert.key[name.slice(4)];
    if (name.startsWith('labels.')) return alert.labels[name.slice(7)];
    if (name.startsWith('figures.')) return alert.figures[name.slice(8)];
    if (name.startsWith('sample.')) return alert.sample?.[name.slice(7)];
    if (name.startsWith('alert.'))
      return (alert as unknown as Record<string, unknown>)[name.slice(6)];
    if (name in alert.key) return alert.key[name];
    return alert.sample?.[name];
  };
}

export function render(template: string, alert: Alert): string {
  const lookup = alertScope(alert);
  return template.replace(/\{\{\s*([\w.@-]+)\s*\}\}/g, (_, name: string) => {
    const value = lookup(name);
    if (value === undefined || value === null || value === '') {
      throw new TemplateError(`"${name}" is not set in alert ${alert.id} of ${alert.rule}`);
    }
    return typeof value === 'string' ? value : JSON.stringify(value);
  });
}

/** The facts a `when` condition sees: alert.*, alert figures (alert.count...), labels.*, key.*. */
export function alertFacts(alert: Alert): Record<string, unknown> {
  const facts: Record<string, unknown> = {
    'alert.id': alert.id,
    'alert.rule': alert.rule,
    'alert.type': alert.type,
    'alert.at': alert.at,
  };
  for (const [k, v] of Object.entries(alert.figures)) facts[`alert.${k}`] = v;
  for (const [k, v] of Object.entries(alert.labels)) facts[`labels.${k}`] = v;
  for (const [k, v] of Object.entries(alert.key)) facts[`key.${k}`] = v;
  return facts;
}
