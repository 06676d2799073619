import type { Alert } from '../../rules/index.ts';
import type { Suppression } from './types.ts';

/**
 * Inhibition: while a service-wide alert is firing — its key names the service but no
 * instance — per-instance actions for that service are held back: when the whole
 * service is sick, replacing its instances one by one only adds churn. By default an
 * alert inhibits from its firing until that firing resolves (per rule and key; the store
 * keeps one inhibitor per firing, dropped when it resolves); `inhibit: DURATION` keeps
 * the older rule: fired within that period (docs/actions.md#inhibition).
 */
export const INSTANCE_FIELDS = [
  'host.name',
  'host.id',
  'container.id',
  'container.name',
  'kubernetes.pod.name',
  'kubernetes.pod.uid',
  'service.instance.id',
  'process.pid',
  'cloud.instance.id',
];

const hasInstance = (record: Record<string, unknown> | undefined) =>
  INSTANCE_FIELDS.some((f) => record?.[f] !== undefined && record[f] !== null);

/** The service a service-wide alert speaks for, or undefined if it is not one. */
export function serviceWide(alert: Pick<Alert, 'key'>): string | undefined {
  const service = alert.key['service.name'];
  return typeof service === 'string' && !hasInstance(alert.key) ? service : undefined;
}

/** The service of a per-instance alert, or undefined if the alert is not about an instance. */
export function instanceService(alert: Alert): string | undefined {
  if (!hasInstance(alert.key)) return undefined;
  const service = alert.key['service.name'] ?? alert.sample?.['service.name'];
  return typeof service === 'string' ? service : undefined;
}

/** A firing that inhibits its service: the alert that opened it, and until when at most. */
export interface Inhibitor {
  alert: string;
  until: number;
}

/** Stopped while any inhibitor of the service is in force; names the inhibiting alert. */
export function checkInhibitors(
  service: string,
  inhibitors: Inhibitor[],
  now: number,
): Suppression | undefined {
  const by = inhibitors.find((i) => i.until > now);
  if (!by) return undefined;
  return {
    guard: 'inhibited',
    reason: `the service-wide alert ${by.alert} for ${service} is firing`,
  };
}

export function checkInhibition(
  service: string,
  inhibitedUntil: number | undefined,
  now: number,
): Suppression | undefined {
  if (inhibitedUntil === undefined || inhibitedUntil <= now) return undefined;
  return {
    guard: 'inhibited',
    reason: `a service-wide alert for ${service} is active (until ${new Date(inhibitedUntil).toISOString()})`,
  };
}
