/**
 * Guard-rail settings, global and per rule. A rule's settings can only tighten the
 * global ones: the stricter of two values wins, and limits that are not comparable
 * (budgets over different windows, two floors) both apply. A rule may opt into
 * dry-run; it cannot opt out of the global one.
 */
export interface Budget {
  max: number;
  windowMs: number;
}

export interface MaintenanceWindow {
  /** A one-off window, epoch ms or ISO 8601. */
  start?: number | string;
  end?: number | string;
  /** A weekly window: days 0 (Sunday) to 6, times `HH:MM`, in `timezone` (default UTC). */
  days?: number[];
  from?: string;
  to?: string;
  timezone?: string;
  /** Shown in the journal when the window suppresses an action. */
  name?: string;
}

export interface GuardConfig {
  /** Decide and journal, but do not act (shadow mode). */
  dryRun?: boolean;
  /** No action at all while set (the configured half of the kill switch). */
  killSwitch?: boolean;
  /** Per target: no second action on the same target within this. Default 5 min. */
  cooldownMs?: number;
  /** Per rule: at most `max` actions per window. */
  budget?: Budget;
  /** Across all rules. */
  globalBudget?: Budget;
  /** Actions running at once in this process. Default 4. */
  concurrency?: number;
  /** Never take a group below this many healthy members (a count, or "50%" of its size). */
  minHealthy?: number | string;
  /** Never act on more than this share of a group ("25%" or a count) within blastWindowMs. */
  maxBlastRadius?: number | string;
  blastWindowMs?: number;
  /** After `max` remediations of one key within the window, stop and escalate through `notify`. */
  breaker?: Budget & { notify?: string };
  maintenance?: MaintenanceWindow[];
  /**
   * Inhibition by period (the old behaviour, `inhibit: 5m`): a service-wide alert inhibits
   * per-instance actions for its service this long after it fired. Unset (or
   * `inhibit: resolved`): while its firing lasts, until it resolves (docs/actions.md#inhibition).
   */
  inhibitMs?: number;
  /** `inhibit: resolved`: inhibit while the service-wide alert fires (the default). */
  inhibitUntilResolved?: boolean;
  /**
   * Guards of `notify` actions, which are counted apart from remediations (a page does
   * not spend a remediation's budget, nor a remediation a page's): per target (adapter
   * and rendered target) a cooldown, budgets per rule and across rules, and their own
   * concurrency slots. Defaults in DEFAULT_NOTIFY_GUARDS.
   */
  notify?: NotifyGuardConfig;
  /**
   * The storm cap: at most `max` distinct keys acted on per rule within the window;
   * beyond, actions on new keys are suppressed and a person is told once per window
   * (through `notify`, else through the adapter of the suppressed notify action).
   * Default 50 keys per 10 min.
   */
  maxKeysPerRule?: Budget & { notify?: string };
  /**
   * A remediation is refused for an alert that fired (in event time) longer ago than this
   * by the wall clock: one judged from a replay of history. 0 or unset: no limit (the
   * configuration's default is DEFAULT_MAX_ALERT_AGE_MS).
   */
  maxAlertAgeMs?: number;
}

export interface NotifyGuardConfig {
  cooldownMs?: number;
  budget?: Budget;
  globalBudget?: Budget;
  concurrency?: number;
}

export const DEFAULT_GUARDS = {
  cooldownMs: 5 * 60_000,
  concurrency: 4,
  blastWindowMs: 10 * 60_000,
  inhibitMs: 5 * 60_000,
  /**
   * Inhibiting until resolved: the longest a firing inhibits when its resolution never
   * comes (its rule removed, the firing beyond the rule's max_keys, so never tracked).
   */
  inhibitMaxMs: 24 * 3_600_000,
} as const;

/**
 * guards.maxAlertAge when the configuration does not set it (pipeline/config.ts). Code
 * that builds a remediator itself (tests, `drover rules diff`'s simulation in event
 * time) has no limit unless it sets one.
 */
export const DEFAULT_MAX_ALERT_AGE_MS = 15 * 60_000;

/**
 * Notifications: one per target per minute (a grouped notification repeats far less
 * often than that), 20 per rule and 100 across rules per hour (a person cannot read
 * more), 4 sent at once. Each default applies unless configured.
 */
export const DEFAULT_STORM_CAP = { max: 50, windowMs: 10 * 60_000 } as const;

export const DEFAULT_NOTIFY_GUARDS = {
  cooldownMs: 60_000,
  budget: { max: 20, windowMs: 3_600_000 },
  globalBudget: { max: 100, windowMs: 3_600_000 },
  concurrency: 4,
} as const;

/** The guards in force for one rule: global and rule settings combined, limits as lists. */
export interface EffectiveGuards {
  dryRun: boolean;
  killSwitch: boolean;
  cooldownMs: number;
  ruleBudgets: Budget[];
  globalBudgets: Budget[];
  concurrency: number;
  minHealthy: Array<number | string>;
  maxBlastRadius: Array<number | string>;
  blastWindowMs: number;
  breakers: Array<Budget & { notify?: string }>;
  maintenance: MaintenanceWindow[];
  /** Until resolved: the cap (DEFAULT_GUARDS.inhibitMaxMs); by period: the period. */
  inhibitMs: number;
  /** Inhibit while the service-wide alert fires (no period configured, or `inhibit: resolved`). */
  inhibitUntilResolved: boolean;
  notify: {
    cooldownMs: number;
    ruleBudgets: Budget[];
    globalBudgets: Budget[];
    concurrency: number;
  };
  storm: Array<Budget & { notify?: string }>;
  /** 0: no limit. */
  maxAlertAgeMs: number;
}

export class GuardConfigError extends Error {}

const list = <T>(...values: Array<T | undefined>): T[] =>
  values.filter((v): v is T => v !== undefined);

export function effectiveGuards(global: GuardConfig = {}, rule: GuardConfig = {}): EffectiveGuards {
  for (const [where, g] of [
    ['guards', global],
    ['rule guards', rule],
  ] as const)
    validate(g, where);
  const stricterMax = (a: number | undefined, b: number | undefined, fallback: number) =>
    Math.max(a ?? fallback, b ?? a ?? fallback);
  return {
    dryRun: global.dryRun === true || rule.dryRun === true,
    killSwitch: global.killSwitch === true || rule.killSwitch === true,
    cooldownMs: stricterMax(global.cooldownMs, rule.cooldownMs, DEFAULT_GUARDS.cooldownMs),
    ruleBudgets: list(global.budget, rule.budget),
    globalBudgets: list(global.globalBudget, rule.globalBudget),
    concurrency: Math.min(
      global.concurrency ?? DEFAULT_GUARDS.concurrency,
      rule.concurrency ?? Number.POSITIVE_INFINITY,
    ),
    minHealthy: list(global.minHealthy, rule.minHealthy),
    maxBlastRadius: list(global.maxBlastRadius, rule.maxBlastRadius),
    blastWindowMs: stricterMax(
      global.blastWindowMs,
      rule.blastWindowMs,
      DEFAULT_GUARDS.blastWindowMs,
    ),
    breakers: list(global.breaker, rule.breaker),
    maintenance: [...(global.maintenance ?? []), ...(rule.maintenance ?? [])],
    ...inhibition(global, rule),
    notify: effectiveNotify(global.notify ?? {}, rule.notify ?? {}),
    storm: list<Budget & { notify?: string }>(
      global.maxKeysPerRule ?? DEFAULT_STORM_CAP,
      rule.maxKeysPerRule,
    ),
    maxAlertAgeMs: maxAlertAge(global.maxAlertAgeMs, rule.maxAlertAgeMs),
  };
}

/** The shorter of two limits; 0 (no limit) only where neither sets one. */
function maxAlertAge(global: number | undefined, rule: number | undefined): number {
  const limits = [global ?? 0, rule ?? 0].filter((v) => v > 0);
  return limits.length === 0 ? 0 : Math.min(...limits);
}

/**
 * Until resolved unless a period is configured (global or rule) and neither says
 * `resolved`; a period, the longer of the two.
 */
function inhibition(
  global: GuardConfig,
  rule: GuardConfig,
): Pick<EffectiveGuards, 'inhibitMs' | 'inhibitUntilResolved'> {
  const period = global.inhibitMs ?? rule.inhibitMs;
  if (
    period === undefined ||
    global.inhibitUntilResolved === true ||
    rule.inhibitUntilResolved === true
  )
    return { inhibitMs: DEFAULT_GUARDS.inhibitMaxMs, inhibitUntilResolved: true };
  return {
    inhibitMs: Math.max(global.inhibitMs ?? 0, rule.inhibitMs ?? 0),
    inhibitUntilResolved: false,
  };
}

function effectiveNotify(
  global: NotifyGuardConfig,
  rule: NotifyGuardConfig,
): EffectiveGuards['notify'] {
  const d = DEFAULT_NOTIFY_GUARDS;
  return {
    cooldownMs: Math.max(global.cooldownMs ?? d.cooldownMs, rule.cooldownMs ?? 0),
    ruleBudgets: list<Budget>(global.budget ?? d.budget, rule.budget),
    globalBudgets: list<Budget>(global.globalBudget ?? d.globalBudget, rule.globalBudget),
    concurrency: Math.min(
      global.concurrency ?? d.concurrency,
      rule.concurrency ?? Number.POSITIVE_INFINITY,
    ),
  };
}

/** "30%" of size, or a plain count. */
export function share(value: number | string, size: number): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)%$/.exec(value.trim());
  if (!m) throw new GuardConfigError(`"${value}" is neither a count nor a percentage`);
  return (Number(m[1]) / 100) * size;
}

function validate(g: GuardConfig | NotifyGuardConfig, where: string): void {
  if ('notify' in g && g.notify !== undefined) validate(g.notify, `${where}.notify`);
  const gg = g as GuardConfig;
  const nonNegative = (v: number | undefined, name: string) => {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0))
      throw new GuardConfigError(`${where}.${name} must be a number ≥ 0, not ${String(v)}`);
  };
  nonNegative(g.cooldownMs, 'cooldown');
  nonNegative(gg.blastWindowMs, 'blastWindow');
  nonNegative(gg.inhibitMs, 'inhibit');
  nonNegative(gg.maxAlertAgeMs, 'maxAlertAge');
  if (g.concurrency !== undefined && !(Number.isInteger(g.concurrency) && g.concurrency >= 1))
    throw new GuardConfigError(`${where}.concurrency must be an integer ≥ 1`);
  for (const [name, b] of [
    ['budget', g.budget],
    ['globalBudget', g.globalBudget],
    ['breaker', gg.breaker],
    ['maxKeysPerRule', gg.maxKeysPerRule],
  ] as const) {
    if (b === undefined) continue;
    if (!(Number.isInteger(b.max) && b.max >= 0) || !(b.windowMs > 0))
      throw new GuardConfigError(`${where}.${name} needs an integer max ≥ 0 and a window > 0`);
  }
  for (const [name, v] of [
    ['minHealthy', gg.minHealthy],
    ['maxBlastRadius', gg.maxBlastRadius],
  ] as const) {
    if (v === undefined) continue;
    try {
      if (share(v, 100) < 0) throw new GuardConfigError('negative');
    } catch {
      throw new GuardConfigError(`${where}.${name} must be a count or a percentage like "25%"`);
    }
  }
}
