import type { GroupHealth } from './adapters/types.ts';
import { share } from './guards/config.ts';
import type { Budget, EffectiveGuards } from './guards/config.ts';
import type { LedgerCounts } from './guards/ledger.ts';
import type { MaintenanceWindow } from './guards/config.ts';
import { isOpen } from './guards/maintenance.ts';
import { type Silence, silenceMatches } from './guards/silence.ts';
import type { Suppression } from './guards/types.ts';
import type { Alert } from '../rules/index.ts';

/**
 * Every guard an action passed or was stopped by, with the inputs it decided on, for the
 * journal entry (`Decision.guards`) and `drover explain`: budgets used and left, the
 * floor and healthy members, the cooldown remaining, the silence and the inhibiting
 * alert. One entry per guard, in the order they were evaluated; a guard evaluated twice
 * (the ledger pre-check, then the reservation) keeps its last inputs. Bounded: one entry
 * per guard kind and configured limit, whatever the events.
 */
export interface GuardCheck {
  guard: string;
  passed: boolean;
  inputs: Record<string, unknown>;
}

export class GuardTrace {
  /** Writes into `checks`: a journal entry's `guards`, shared by the copies made of it. */
  constructor(readonly checks: GuardCheck[] = []) {}

  /** The trace of a journal entry in the making (its `guards`, created if missing). */
  static of(entry: { guards?: GuardCheck[] }): GuardTrace {
    entry.guards ??= [];
    return new GuardTrace(entry.guards);
  }

  note(guard: string, stopped: Suppression | undefined, inputs: Record<string, unknown>): void {
    const check = { guard, passed: stopped === undefined, inputs };
    const i = this.checks.findIndex((c) => c.guard === guard);
    if (i >= 0) this.checks[i] = check;
    else this.checks.push(check);
  }

  killSwitch(configured: boolean, stored: boolean, stopped: Suppression | undefined): void {
    this.note('kill-switch', stopped, { configured, runtime: stored });
  }

  maintenance(windows: MaintenanceWindow[], now: number, stopped: Suppression | undefined): void {
    const open = windows.find((w) => isOpen(w, now));
    this.note('maintenance', stopped, {
      windows: windows.length,
      ...(open && { open: open.name ?? open.start ?? `${open.from}-${open.to}` }),
    });
  }

  silences(silences: Silence[], alert: Alert, now: number, stopped: Suppression | undefined): void {
    const s = silences.find((x) => x.until > now && silenceMatches(x.matchers, alert));
    this.note('silenced', stopped, {
      inForce: silences.length,
      ...(s && { silence: s.id, until: new Date(s.until).toISOString() }),
    });
  }

  alertAge(alertAt: number, now: number, maxAgeMs: number, stopped: Suppression | undefined): void {
    this.note('alert-age', stopped, {
      ageMs: Math.max(0, now - alertAt),
      maxAgeMs,
    });
  }

  inhibition(
    service: string,
    by: { alert?: string; until: number } | undefined,
    now: number,
    stopped: Suppression | undefined,
  ): void {
    this.note('inhibited', stopped, {
      service,
      ...(by && by.until > now && { until: new Date(by.until).toISOString() }),
      ...(by?.alert !== undefined && by.until > now && { inhibitingAlert: by.alert }),
    });
  }

  /** Circuit breaker, storm cap, cooldown and budgets, from one reading of the ledger. */
  ledger(
    counts: LedgerCounts,
    g: {
      breakers: Budget[];
      storm: Budget[];
      cooldownMs: number;
      ruleBudgets: Budget[];
      globalBudgets: Budget[];
    },
    now: number,
    stopped: Suppression | undefined,
  ): void {
    const by = (guard: string) => (stopped?.guard === guard ? stopped : undefined);
    const budget = (b: Budget, used: number) => ({
      max: b.max,
      windowMs: b.windowMs,
      used,
      left: Math.max(0, b.max - used),
    });
    if (g.breakers.length > 0)
      this.note('circuit-breaker', by('circuit-breaker'), {
        breakers: g.breakers.map((b, i) => budget(b, counts.key[i] ?? 0)),
      });
    if (g.storm.length > 0)
      this.note('storm', by('storm'), {
        caps: g.storm.map((b, i) => ({
          ...budget(b, counts.storm?.[i]?.otherKeys ?? 0),
          thisKeyActedOn: counts.storm?.[i]?.thisKey ?? false,
        })),
      });
    const last = counts.lastOnTarget;
    this.note('cooldown', by('cooldown'), {
      cooldownMs: g.cooldownMs,
      ...(last !== undefined && { lastActedOn: new Date(last).toISOString() }),
      remainingMs: last === undefined ? 0 : Math.max(0, g.cooldownMs - (now - last)),
    });
    this.note('budget', by('budget'), {
      rule: g.ruleBudgets.map((b, i) => budget(b, counts.rule[i] ?? 0)),
      global: g.globalBudgets.map((b, i) => budget(b, counts.global[i] ?? 0)),
    });
  }

  concurrency(cap: number, stopped: Suppression | undefined): void {
    this.note('concurrency', stopped, { cap });
  }

  health(
    guards: Pick<EffectiveGuards, 'minHealthy'>,
    health: GroupHealth,
    lost: number,
    stopped: Suppression | undefined,
  ): void {
    this.note('min-healthy', stopped, {
      group: health.group,
      size: health.size,
      healthy: health.healthy,
      lost,
      floors: guards.minHealthy.map((f) => share(f, health.size)),
    });
  }

  blastRadius(
    limits: Array<number | string>,
    counts: LedgerCounts,
    target: string,
    health: GroupHealth,
    stopped: Suppression | undefined,
  ): void {
    this.note('blast-radius', stopped, {
      touched: new Set([...counts.groupTargets, target]).size,
      limits: limits.map((l) => share(l, health.size)),
    });
  }
}
