import { GuardConfigError, type MaintenanceWindow } from './config.ts';
import type { Suppression } from './types.ts';

/**
 * Maintenance windows, without cron: one-off (`start`/`end`) or weekly (`days` with
 * `from`/`to` as HH:MM in `timezone`, default UTC; `to` before `from` spans midnight).
 */
export function checkMaintenance(
  windows: MaintenanceWindow[],
  now: number,
): Suppression | undefined {
  const open = windows.find((w) => isOpen(w, now));
  if (!open) return undefined;
  return { guard: 'maintenance', reason: `maintenance window ${describeWindow(open)} is open` };
}

export function isOpen(w: MaintenanceWindow, now: number): boolean {
  validateWindow(w);
  if (w.start !== undefined) return now >= toMs(w.start) && now < toMs(w.end!);
  const { day, minute } = localTime(now, w.timezone ?? 'UTC');
  const [from, to] = [minutes(w.from!), minutes(w.to!)];
  if (from <= to) return w.days!.includes(day) && minute >= from && minute < to;
  // Spans midnight: the part after midnight belongs to the previous day's window.
  if (minute >= from) return w.days!.includes(day);
  return minute < to && w.days!.includes((day + 6) % 7);
}

export function validateWindow(w: MaintenanceWindow): void {
  const text = JSON.stringify(w);
  if (w.start !== undefined || w.end !== undefined) {
    if (w.start === undefined || w.end === undefined)
      throw new GuardConfigError(`maintenance window ${text}: needs both start and end`);
    if (Number.isNaN(toMs(w.start)) || Number.isNaN(toMs(w.end)))
      throw new GuardConfigError(`maintenance window ${text}: start and end must be times`);
    return;
  }
  if (!Array.isArray(w.days) || w.days.some((d) => !Number.isInteger(d) || d < 0 || d > 6))
    throw new GuardConfigError(
      `maintenance window ${text}: needs start/end, or days (0 = Sunday … 6) with from/to`,
    );
  for (const t of [w.from, w.to])
    if (typeof t !== 'string' || !/^([01]\d|2[0-3]):[0-5]\d$/.test(t))
      throw new GuardConfigError(`maintenance window ${text}: from and to are HH:MM`);
  if (w.timezone) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: w.timezone });
    } catch {
      throw new GuardConfigError(`maintenance window ${text}: unknown timezone ${w.timezone}`);
    }
  }
}

function describeWindow(w: MaintenanceWindow): string {
  if (w.name) return `"${w.name}"`;
  if (w.start !== undefined)
    return `${new Date(toMs(w.start)).toISOString()} – ${new Date(toMs(w.end!)).toISOString()}`;
  return `days ${w.days!.join(',')} ${w.from}–${w.to} ${w.timezone ?? 'UTC'}`;
}

function toMs(v: number | string): number {
  return typeof v === 'number' ? v : Date.parse(v);
}

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number);
  return h! * 60 + m!;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

function localTime(now: number, timeZone: string): { day: number; minute: number } {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(new Date(now));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return {
    day: WEEKDAYS.indexOf(get('weekday')),
    minute: Number(get('hour')) * 60 + Number(get('minute')),
  };
}
