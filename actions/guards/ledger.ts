/**
 * The ledger: every action handed to an adapter (or, in dry-run, that would have been),
 * recorded before it runs. Cooldowns, budgets, breakers and blast radius count it, and
 * a store checks and appends in one step, so two workers cannot both take the last unit
 * of a budget. Attempts count whatever their outcome: a kill that failed half-way may
 * still have killed. Dry-run attempts are counted only against other dry-run attempts,
 * so shadow mode shows what the guards would really have let through.
 */
export interface Attempt {
  id: string;
  at: number;
  rule: string;
  /** A stable string of the alert's rule and key: the circuit breaker's unit. */
  keyId: string;
  adapter: string;
  target: string;
  operation: string;
  /** The group `describe` reported, when it was asked. */
  group?: string;
  shadow: boolean;
}

/**
 * The operation of the ledger entry a verification that ended ineffective appends: the
 * circuit breaker counts it as a failed remediation of the key; cooldowns, budgets, the
 * storm cap and blast radius do not (nothing was done to a target).
 */
export const INEFFECTIVE_OPERATION = 'ineffective';

export interface LedgerQuery {
  now: number;
  shadow: boolean;
  /**
   * Which attempts count: notifications (true) or remediations (false, the default).
   * The two are guarded apart, so a page never spends a remediation's budget.
   */
  notify?: boolean;
  rule: string;
  keyId: string;
  adapter: string;
  target: string;
  group?: string;
  ruleWindows: number[];
  globalWindows: number[];
  breakerWindows: number[];
  blastWindowMs: number;
  /** Storm caps' windows: distinct keys the rule acted on (any operation). */
  stormWindows?: number[];
}

export interface LedgerCounts {
  /** When this adapter last acted on this target (notifications and remediations apart). */
  lastOnTarget: number | undefined;
  /** Attempts of the rule within each of `ruleWindows`. */
  rule: number[];
  /** Attempts of all rules within each of `globalWindows`. */
  global: number[];
  /**
   * Remediations (not notifications) of this rule and key within each of `breakerWindows`,
   * and verifications of them that ended ineffective (INEFFECTIVE_OPERATION).
   */
  key: number[];
  /** Distinct targets of the group replaced within `blastWindowMs` (empty without a group). */
  groupTargets: string[];
  /**
   * Per storm window: distinct keys other than this one the rule acted on (any
   * operation), and whether this key was acted on too.
   */
  storm?: Array<{ otherKeys: number; thisKey: boolean }>;
}

export function keyId(rule: string, key: Record<string, unknown>): string {
  const sorted = Object.keys(key)
    .sort()
    .map((k) => [k, key[k]]);
  return `${rule} ${JSON.stringify(sorted)}`;
}
