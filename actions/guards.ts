/**
 * Guard-rail settings, global and per rule. A rule's settings override the global ones
 * field by field (a rule may tighten a budget or opt into dry-run).
 */
export interface Budget {
  max: number;
  windowMs: number;
}

export interface MaintenanceWindow {
  /** A one-off window, epoch ms or ISO. */
  start?: number | string;
  end?: number | string;
  /** A weekly window: days 0 (Sunday) to 6, times `HH:MM` in UTC. */
  days?: number[];
  from?: string;
  to?: string;
}

export interface GuardConfig {
  dryRun?: boolean;
  /** Per target: no second action on the same target within this. Default 5 min. */
  cooldownMs?: number;
  /** Per rule. */
  budget?: Budget;
  /** Across all rules. */
  globalBudget?: Budget;
  /** Actions running at once. Default 4. */
  concurrency?: number;
  /** Never take a group below this many healthy members (a number, or "50%" of its size). */
  minHealthy?: number | string;
  /** Never kill more than this share of a group ("25%" or a count) within blastWindowMs. */
  maxBlastRadius?: number | string;
  blastWindowMs?: number;
  /** After `max` remediations of one key within the window, stop and escalate. */
  breaker?: Budget & { notify?: string };
  maintenance?: MaintenanceWindow[];
  /** Service-wide alerts suppress per-instance actions for that service this long. Default 5 min. */
  inhibitMs?: number;
}

export const DEFAULT_GUARDS = {
  cooldownMs: 5 * 60_000,
  concurrency: 4,
  blastWindowMs: 10 * 60_000,
  inhibitMs: 5 * 60_000,
};

export function merge(global: GuardConfig, rule: GuardConfig | undefined): GuardConfig {
  return { ...global, ...(rule ?? {}) };
}

/** "30%" of size, or a plain count. */
export function share(value: number | string, size: number): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)%$/.exec(value.trim());
  if (!m) throw new Error(`"${value}" is neither a count nor a percentage`);
  return (Number(m[1]) / 100) * size;
}

function toMs(v: number | string | undefined): number | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'number' ? v : Date.parse(v);
}

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}

export function inMaintenance(
  windows: MaintenanceWindow[] | undefined,
  now: number,
): MaintenanceWindow | undefined {
  for (const w of windows ?? []) {
    const start = toMs(w.start);
    const end = toMs(w.end);
    if (start !== undefined && end !== undefined && now >= start && now < end) return w;
    if (w.days && w.from && w.to) {
      const d = new Date(now);
      const minute = d.getUTCHours() * 60 + d.getUTCMinutes();
      const [from, to] = [minutes(w.from), minutes(w.to)];
      const inTime = from <= to ? minute >= from && minute < to : minute >= from || minute < to;
      if (w.days.includes(d.getUTCDay()) && inTime) return w;
    }
  }
  return undefined;
}
