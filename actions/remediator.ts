import type { Alert, Condition, Operation } from '../rules/index.ts';
import { evaluateReference } from '../rules/index.ts';
import { type Adapter, AdapterDeclined, type ScaleParams } from './adapters/types.ts';
import { DEFAULT_GUARDS, type GuardConfig, inMaintenance, merge, share } from './guards.ts';
import type { ActionStore, Decision } from './store.ts';
import { alertFacts, render, TemplateError } from './template.ts';

/**
 * Turns alerts into actions: each action of the alert's rule passes its `when`
 * condition, then every guard rail, before its adapter acts; every outcome — executed,
 * suppressed (by which guard, and why), dry-run or failed — goes to the journal.
 */
export interface ActionObject {
  adapter: string;
  operation: Operation;
  target?: string;
  params?: Record<string, unknown>;
  when?: Condition;
}

export interface RemediatorOptions {
  store: ActionStore;
  adapters: Map<string, Adapter>;
  /** Named action sets, so a rule can say `actions: [replace]`. */
  actionSets?: Record<string, ActionObject[]>;
  guards?: GuardConfig;
  ruleGuards?: Record<string, GuardConfig>;
  clock?: () => number;
}

export class Remediator {
  private readonly clock: () => number;
  private inFlight = 0;
  /** service → until: service-wide alerts that inhibit per-instance actions. */
  private readonly serviceWide = new Map<string, number>();

  constructor(private readonly options: RemediatorOptions) {
    this.clock = options.clock ?? Date.now;
  }

  get store(): ActionStore {
    return this.options.store;
  }

  async handle(alert: Alert): Promise<Decision[]> {
    const guards = merge(this.options.guards ?? {}, this.options.ruleGuards?.[alert.rule]);
    const now = this.clock();
    const service = alert.key['service.name'];
    if (typeof service === 'string' && alert.key['host.name'] === undefined) {
      this.serviceWide.set(service, now + (guards.inhibitMs ?? DEFAULT_GUARDS.inhibitMs));
    }
    const decisions: Decision[] = [];
    const actions = this.resolve(alert);
    for (const [index, action] of actions.entries()) {
      decisions.push(await this.decide(alert, index, action, guards));
    }
    return decisions;
  }

  private resolve(alert: Alert): Array<ActionObject | { missing: string }> {
    return alert.actions.flatMap((a): Array<ActionObject | { missing: string }> => {
      if (typeof a !== 'string') return [a as ActionObject];
      return this.options.actionSets?.[a] ?? [{ missing: a }];
    });
  }

  private async decide(
    alert: Alert,
    index: number,
    action: ActionObject | { missing: string },
    guards: GuardConfig,
  ): Promise<Decision> {
    const started = this.clock();
    const base = {
      id: `${alert.id}#${index}`,
      at: started,
      alertId: alert.id,
      rule: alert.rule,
      key: alert.key,
    };
    if ('missing' in action) {
      return this.journal({
        ...base,
        adapter: '-',
        operation: '-',
        target: '-',
        decision: 'failed',
        error: `no action set named "${action.missing}" is configured`,
      });
    }
    let target: string;
    try {
      target = action.target === undefined ? alert.rule : render(action.target, alert);
    } catch (err) {
      if (!(err instanceof TemplateError)) throw err;
      return this.journal({
        ...base,
        adapter: action.adapter,
        operation: action.operation,
        target: action.target ?? '-',
        decision: 'failed',
        error: err.message,
      });
    }
    const entry = { ...base, adapter: action.adapter, operation: action.operation, target };
    const suppress = (guard: string, reason: string) =>
      this.journal({ ...entry, decision: 'suppressed', guard, reason });

    if (action.when && !(await evaluateReference(action.when, alertFacts(alert)))) {
      return suppress('when', 'the action\'s "when" condition does not hold for this alert');
    }
    const adapter = this.options.adapters.get(action.adapter);
    if (!adapter)
      return this.journal({
        ...entry,
        decision: 'failed',
        error: `no adapter named "${action.adapter}" is configured`,
      });
    if (!this.options.store.claim(base.id, started)) {
      return suppress(
        'idempotency',
        `alert ${alert.id} already led to this action (a replay, or another worker)`,
      );
    }
    if (this.options.store.killSwitch())
      return suppress('kill-switch', 'the global kill switch is on');
    const window = inMaintenance(guards.maintenance, started);
    if (window)
      return suppress('maintenance', `a maintenance window is open (${JSON.stringify(window)})`);
    const silence = this.options.store.silences(started).find((s) => matches(s.matchers, alert));
    if (silence)
      return suppress(
        'silenced',
        `silence ${silence.id} until ${new Date(silence.until).toISOString()}${silence.comment ? `: ${silence.comment}` : ''}`,
      );

    if (action.operation !== 'notify') {
      const service = alert.key['service.name'] ?? alert.sample?.['service.name'];
      const inhibitedUntil =
        typeof service === 'string' ? this.serviceWide.get(service) : undefined;
      if (
        alert.key['host.name'] !== undefined &&
        inhibitedUntil !== undefined &&
        inhibitedUntil > started
      ) {
        return suppress('inhibited', `a service-wide alert for ${String(service)} is active`);
      }
      if (guards.breaker) {
        const count = this.options.store.executedForKey(
          alert.rule,
          alert.key,
          started - guards.breaker.windowMs,
        );
        if (count >= guards.breaker.max) {
          await this.escalate(alert, guards, count);
          return suppress(
            'circuit-breaker',
            `${count} remediations of this key within ${guards.breaker.windowMs / 1000}s: stopped acting, escalated`,
          );
        }
      }
      const cooldown = guards.cooldownMs ?? DEFAULT_GUARDS.cooldownMs;
      const last = this.options.store.lastExecuted(action.adapter, target);
      if (last !== undefined && started - last < cooldown) {
        return suppress(
          'cooldown',
          `${target} was acted on ${Math.round((started - last) / 1000)}s ago (cooldown ${cooldown / 1000}s)`,
        );
      }
      if (
        guards.budget &&
        this.options.store.executedSince(started - guards.budget.windowMs, alert.rule) >=
          guards.budget.max
      ) {
        return suppress(
          'budget',
          `rule ${alert.rule} used its budget of ${guards.budget.max} actions per ${guards.budget.windowMs / 1000}s`,
        );
      }
      if (
        guards.globalBudget &&
        this.options.store.executedSince(started - guards.globalBudget.windowMs) >=
          guards.globalBudget.max
      ) {
        return suppress(
          'budget',
          `the global budget of ${guards.globalBudget.max} actions per ${guards.globalBudget.windowMs / 1000}s is used`,
        );
      }
      if (this.inFlight >= (guards.concurrency ?? DEFAULT_GUARDS.concurrency)) {
        return suppress('concurrency', `${this.inFlight} actions are already running`);
      }
      const shrinks =
        action.operation === 'kill-and-replace' ||
        (action.operation === 'scale' && scalesDown(action.params));
      if (shrinks && (guards.minHealthy !== undefined || guards.maxBlastRadius !== undefined)) {
        let health: Awaited<ReturnType<Adapter['describe']>>;
        try {
          health = await adapter.describe(target);
        } catch (err) {
          return this.journal({
            ...entry,
            decision: 'failed',
            error: `describe failed: ${(err as Error).message}`,
          });
        }
        if (guards.minHealthy !== undefined) {
          const floor = share(guards.minHealthy, health.size);
          // Replacing a member that is already unhealthy takes no health away: that is
          // the sick instance all this is for.
          const member = health.members?.find((m) => m.id === target);
          const lost =
            action.operation === 'kill-and-replace'
              ? member && !member.healthy
                ? 0
                : 1
              : -Math.min(0, Number(action.params?.by ?? 0));
          const after = health.healthy - lost;
          if (lost > 0 && after < floor)
            return suppress(
              'min-healthy',
              `${health.group} has ${health.healthy} healthy of ${health.size}; acting would leave ${after}, below the floor of ${floor}`,
            );
        }
        if (guards.maxBlastRadius !== undefined && action.operation === 'kill-and-replace') {
          const since = started - (guards.blastWindowMs ?? DEFAULT_GUARDS.blastWindowMs);
          const touched = new Set([
            ...this.options.store.targetsSince(action.adapter, since),
            target,
          ]);
          const limit = share(guards.maxBlastRadius, health.size);
          if (touched.size > limit)
            return suppress(
              'blast-radius',
              `${touched.size} of ${health.size} members of ${health.group} would be replaced within the window (limit ${limit})`,
            );
        }
      }
    }
    if (guards.dryRun)
      return this.journal({ ...entry, decision: 'dry-run', reason: 'dry-run: decided, not acted' });

    this.inFlight++;
    try {
      const ctx = { idempotencyKey: base.id, rule: alert.rule };
      const result =
        action.operation === 'kill-and-replace'
          ? await adapter.killAndReplace(target, ctx)
          : action.operation === 'scale'
            ? await adapter.scale(target, (action.params ?? {}) as ScaleParams, ctx)
            : await adapter.notify(notification(alert, target), ctx);
      return this.journal({
        ...entry,
        decision: 'executed',
        result: result.detail,
        durationMs: this.clock() - started,
      });
    } catch (err) {
      if (err instanceof AdapterDeclined)
        return this.journal({
          ...entry,
          decision: 'suppressed',
          guard: 'adapter',
          reason: `${err.reason}: ${err.message}`,
          durationMs: this.clock() - started,
        });
      return this.journal({
        ...entry,
        decision: 'failed',
        error: (err as Error).message,
        durationMs: this.clock() - started,
      });
    } finally {
      this.inFlight--;
    }
  }

  /** Once per open breaker: tell a person, through the configured notify adapter. */
  private async escalate(alert: Alert, guards: GuardConfig, count: number): Promise<void> {
    const breaker = guards.breaker!;
    const name = breaker.notify;
    if (!name) return;
    const now = this.clock();
    const key = `${alert.rule}\u0000${JSON.stringify(alert.key)}`;
    if (!this.options.store.noticeOnce(key, now, now + breaker.windowMs)) return;
    const adapter = this.options.adapters.get(name);
    const entry = {
      id: `${alert.id}#breaker`,
      at: now,
      alertId: alert.id,
      rule: alert.rule,
      key: alert.key,
      adapter: name,
      operation: 'notify',
      target: 'escalation',
    };
    if (!adapter) {
      this.journal({
        ...entry,
        decision: 'failed',
        error: `no adapter named "${name}" for escalation`,
      });
      return;
    }
    try {
      const result = await adapter.notify(
        {
          title: `Drover stopped remediating ${alert.rule} ${JSON.stringify(alert.key)}`,
          text: `${count} remediations within ${breaker.windowMs / 1000}s did not fix it; a person should look.`,
          severity: 'critical',
          alert: alert as unknown as Record<string, unknown>,
        },
        { idempotencyKey: entry.id, rule: alert.rule },
      );
      this.journal({ ...entry, decision: 'executed', result: result.detail });
    } catch (err) {
      this.journal({ ...entry, decision: 'failed', error: (err as Error).message });
    }
  }

  private journal(d: Decision): Decision {
    this.options.store.record(d);
    return d;
  }
}

function scalesDown(params: Record<string, unknown> | undefined): boolean {
  return typeof params?.by === 'number' && params.by < 0;
}

function matches(matchers: Record<string, string>, alert: Alert): boolean {
  return Object.entries(matchers).every(([field, value]) => {
    if (field === 'rule') return alert.rule === value;
    if (field.startsWith('labels.')) return alert.labels[field.slice(7)] === value;
    if (field.startsWith('key.')) return String(alert.key[field.slice(4)]) === value;
    return false;
  });
}

function notification(alert: Alert, target: string) {
  return {
    title: `${alert.rule}: ${alert.description ?? alert.type} (${target})`,
    text: `${alert.type} alert at ${alert.at} for ${JSON.stringify(alert.key)}: ${JSON.stringify(alert.figures)}`,
    severity: (alert.labels.severity === 'page' ? 'critical' : 'warning') as 'critical' | 'warning',
    alert: alert as unknown as Record<string, unknown>,
  };
}
