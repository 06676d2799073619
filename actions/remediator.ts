import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Alert, Operation, StateChange } from '../rules/index.ts';
import {
  type ActionContext,
  type ActionResult,
  type Adapter,
  AdapterDeclined,
  type GroupHealth,
  type Notification,
  TargetRefused,
} from './adapters/types.ts';
import {
  type Attempt,
  checkAlertAge,
  checkBlastRadius,
  checkBreakers,
  checkBudgets,
  checkCooldown,
  checkInhibition,
  checkInhibitors,
  checkKillSwitch,
  checkMaintenance,
  checkMinHealthy,
  checkSilences,
  checkStorm,
  ConcurrencyGate,
  type EffectiveGuards,
  effectiveGuards,
  type GuardConfig,
  healthyLoss,
  instanceService,
  keyId,
  type LedgerCounts,
  type LedgerQuery,
  type Suppression,
  serviceWide,
  silencesEndedBy,
  validateWindow,
} from './guards/index.ts';
import { clip } from './adapters/slack-text.ts';
import { GuardTrace } from './guard-trace.ts';
import { boundDecision, DEFAULT_JOURNAL_BOUNDS } from './journal/bounds.ts';
import type { ActionStore } from './journal/sqlite.ts';
import type { Decision, RemediationStore, Verification } from './journal/types.ts';
import {
  type Batch,
  createNotifyGroups,
  DEFAULT_GROUP_FLUSH_MS,
  type GroupTimers,
  groupSpec,
  groupText,
  type NotifyGroups,
  withoutResolved,
} from './notify-groups.ts';
import { restoreGroups, type RestoreResult } from './notify-restore.ts';
import { type ActionObject, type PlannedAction, plan } from './policy.ts';
import { Verifier } from './verification.ts';

/**
 * Turns alerts into actions. Each action of the alert's rule goes through policy (its
 * action set, its target template, its `when` condition), claims its idempotency key,
 * then passes every guard rail before its adapter acts. Every outcome — executed,
 * suppressed (by which guard, and why), dry-run or failed — goes to the journal, and is
 * returned and emitted as a `decision` event.
 *
 * Guard order: idempotency, kill switch, maintenance, silences, then for remediations
 * inhibition, circuit breaker, storm cap, cooldown, budgets, concurrency, min-healthy floor and
 * blast radius; for notifications the storm cap and their own cooldown, budgets and concurrency
 * (guards.notify). The ledger guards are checked again, atomically with recording the
 * attempt, right before the adapter runs.
 *
 * A notify action does not page per alert unless it says `group: false`: after the kill
 * switch, maintenance and silences, the alert joins its group (journaled, guard `group`),
 * and each batch of a group later goes through the notify guards as one notification
 * (notify-groups.ts: group_by, group_wait, group_interval, repeat_interval).
 */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RemediatorOptions<S extends RemediationStore = ActionStore> {
  store: S;
  adapters: Map<string, Adapter>;
  /** Named action sets, so a rule can say `actions: [replace]`. */
  actionSets?: Record<string, ActionObject[]>;
  guards?: GuardConfig;
  /** Per rule name: settings that tighten the global guards. */
  ruleGuards?: Record<string, GuardConfig>;
  /** Epoch ms; injectable so guards are testable without sleeping. */
  clock?: () => number;
  logger?: Logger;
  /** An adapter call that takes longer fails (its signal is aborted). Default 5 min. */
  actionTimeoutMs?: number;
  /** The alert kept with each journal entry, at most this many bytes of JSON. Default 16 KiB. */
  maxAlertBytes?: number;
  /** Timers of notification groups (wall clock); injectable for tests. */
  groupTimers?: GroupTimers;
  /** Notification groups alive at once, across actions. Default 1,000. */
  maxNotifyGroups?: number;
  /** Timers of verification windows' wall-clock fallback; injectable for tests. */
  verifyTimers?: GroupTimers;
}

type Act = Extract<PlannedAction, { kind: 'act' }>;

/**
 * Resolutions the remediator remembers, to skip actions of alerts that resolved while
 * they waited. Keys are event values: each is held as a digest, at most this many,
 * oldest forgotten first (an action of a forgotten one runs, as before resolutions).
 */
export const MAX_RESOLUTIONS_HELD = 10_000;

export class Remediator<S extends RemediationStore = ActionStore> extends EventEmitter {
  private readonly clock: () => number;
  private readonly gate = new ConcurrencyGate();
  /** Notifications have slots of their own: a slow webhook never holds up a remediation. */
  private readonly notifyGate = new ConcurrencyGate();
  private readonly effective = new Map<string, EffectiveGuards>();
  private readonly groups: NotifyGroups<Act>;
  /** digest(rule, key) → the last firing that resolved: [since, at] (epoch ms). */
  private readonly resolutions = new Map<string, { since: number; at: number }>();
  /** The closed loop: did an executed remediation make its alert resolve? */
  private readonly verifier: Verifier;

  constructor(private readonly options: RemediatorOptions<S>) {
    super();
    this.clock = options.clock ?? Date.now;
    this.verifier = new Verifier({
      store: options.store,
      clock: this.clock,
      onEnd: (entry) => this.verified(entry),
      lastResolution: (rule, key) => this.resolutions.get(firingKey(rule, key)),
      ...(options.verifyTimers && { timers: options.verifyTimers }),
      onError: (err, entry) =>
        options.logger?.error({ err, decision: entry.id }, 'could not end a verification'),
    });
    this.groups = createNotifyGroups<Act>({
      send: (batch) => this.sendGroup(batch),
      clock: this.clock,
      firing: (alert) => firingKey(alert.rule, alert.key),
      ...(options.groupTimers && { timers: options.groupTimers }),
      ...(options.maxNotifyGroups !== undefined && { maxGroups: options.maxNotifyGroups }),
    });
    // Grouping options of action sets are settings: wrong ones refuse to start.
    for (const [name, set] of Object.entries(options.actionSets ?? {}))
      for (const [i, action] of (Array.isArray(set) ? set : [set]).entries()) {
        try {
          groupSpec(action as unknown as Record<string, unknown>);
        } catch (err) {
          throw new Error(`actionSets.${name}[${i}]: ${(err as Error).message}`);
        }
      }
    // Bad guard settings are a configuration error now, not a surprise at 3 a.m.
    for (const rule of [undefined, ...Object.keys(options.ruleGuards ?? {})]) {
      const g = this.guardsFor(rule ?? '');
      g.maintenance.forEach(validateWindow);
      for (const b of g.breakers)
        if (b.notify && !options.adapters.has(b.notify))
          throw new Error(`breaker.notify names "${b.notify}", which is not a configured adapter`);
      for (const c of g.storm)
        if (c.notify && !options.adapters.has(c.notify))
          throw new Error(
            `maxKeysPerRule.notify names "${c.notify}", which is not a configured adapter`,
          );
    }
  }

  get store(): S {
    return this.options.store;
  }

  /** The run-time half of the kill switch (the configured half is `guards.killSwitch`). */
  async setKillSwitch(on: boolean): Promise<void> {
    await this.options.store.setKillSwitch(on);
    this.options.logger?.warn({ killSwitch: on }, `kill switch turned ${on ? 'on' : 'off'}`);
  }

  async killSwitch(): Promise<boolean> {
    return (this.options.guards?.killSwitch ?? false) || (await this.options.store.killSwitch());
  }

  /** Alerts that found the cap on notification groups and took the cooldown path instead. */
  get groupOverflow(): number {
    return this.groups.overflow;
  }

  /** Notification groups alive now (at most maxNotifyGroups). */
  get groupCount(): number {
    return this.groups.size;
  }

  /** Resolves when the grouped notifications and verifications ended so far are done. */
  async settled(): Promise<void> {
    await this.verifier.settled();
    await this.groups.settled();
  }

  /** Rebuilds pending verifications from the journal (at start); how many. */
  restoreVerifications(): Promise<number> {
    return this.verifier.restore();
  }

  /**
   * At start, before any alert: notification groups that were waiting when Drover was
   * killed go out from the journal (notify-restore.ts).
   */
  restoreGroups(): Promise<RestoreResult> {
    return restoreGroups({
      store: this.options.store,
      actionSets: this.options.actionSets,
      clock: this.clock,
      add: (...args) => this.groups.add(...args),
    });
  }

  /** The rules' watermark (event time, epoch ms): verification windows it passed end. */
  watermark(ms: number): void {
    this.verifier.advance(ms);
  }

  /** Ends the windows whose wall-clock fallback passed (also run by its own timer). */
  checkVerifications(): void {
    this.verifier.check();
  }

  /** Verifications pending now. */
  get pendingVerifications(): number {
    return this.verifier.size;
  }

  /**
   * At shutdown: sends every notification group still waiting, now, waiting at most
   * `timeoutMs` (default 10 s) for them; alerts handled afterwards are not grouped.
   */
  async close(timeoutMs = DEFAULT_GROUP_FLUSH_MS): Promise<void> {
    this.verifier.close();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), timeoutMs);
    });
    try {
      if ((await Promise.race([this.groups.flush(), late])) === 'late')
        this.options.logger?.warn(
          { timeoutMs },
          'notification groups still sending at shutdown; their journal entries may be missing',
        );
    } finally {
      clearTimeout(timer);
    }
  }

  async handle(alert: Alert): Promise<Decision[]> {
    const guards = this.guardsFor(alert.rule);
    const service = serviceWide(alert);
    if (service !== undefined) await this.inhibit(service, alert, guards);
    const decisions: Decision[] = [];
    for (const planned of await plan(alert, this.options.actionSets))
      decisions.push(await this.decide(alert, planned, guards));
    return decisions;
  }

  /**
   * A firing resolved (docs/rules.md#alert-states). Each notify action of the rule with
   * `send_resolved: true` sends one notification naming the alert it closes, through the
   * same adapter and journal, under its own idempotency key (the resolution's id and the
   * action's index). It passes the kill switch, maintenance, silences and the notify
   * concurrency slots, not cooldowns or budgets: it answers a notification already counted,
   * one per firing. It is never grouped. An action's `when` is evaluated on the resolution
   * (rule, key, labels; its figures are `{ resolved: true }`).
   */
  async resolved(change: StateChange): Promise<Decision[]> {
    if (change.state !== 'resolved' || change.alert === undefined) return [];
    this.remember(change);
    this.verifier.resolved(change);
    const wide = serviceWide(change);
    if (wide !== undefined)
      await this.options.store.releaseFiring(wide, firingKey(change.rule, change.key));
    const closed: Alert = {
      id: change.alert,
      rule: change.rule,
      type: change.type,
      key: change.key,
      at: change.at,
      figures: { resolved: true, firing_since: change.firing_since },
      labels: change.labels,
      actions: change.actions,
    };
    await this.endSilences(closed);
    const guards = this.guardsFor(change.rule);
    const decisions: Decision[] = [];
    for (const p of await plan(closed, this.options.actionSets)) {
      if (p.kind !== 'act' || p.operation !== 'notify' || !p.sendResolved) continue;
      decisions.push(await this.sendResolved(change, closed, p, guards));
    }
    return decisions;
  }

  /**
   * A service-wide alert inhibits its service: until its firing resolves (released in
   * `resolved`, at most `inhibitMs`), or for `inhibitMs` with `inhibit: DURATION`.
   */
  private async inhibit(service: string, alert: Alert, guards: EffectiveGuards): Promise<void> {
    const until = this.clock() + guards.inhibitMs;
    const store = this.options.store;
    if (!guards.inhibitUntilResolved) return store.inhibit(service, until);
    return store.inhibitFiring(service, firingKey(alert.rule, alert.key), alert.id, until);
  }

  /** Silences with `expireOnResolve` that match the resolved alert end now. */
  private async endSilences(closed: Alert): Promise<void> {
    const store = this.options.store;
    for (const s of silencesEndedBy(await store.silences(this.clock()), closed)) {
      await store.removeSilence(s.id);
      this.options.logger?.info(
        { silence: s.id, alert: closed.id, rule: closed.rule },
        'silence ended: an alert it matched resolved',
      );
    }
  }

  /** Remembers a resolution (bounded: MAX_RESOLUTIONS_HELD digests, oldest out first). */
  private remember(change: StateChange): void {
    const id = firingKey(change.rule, change.key);
    this.resolutions.delete(id);
    if (this.resolutions.size >= MAX_RESOLUTIONS_HELD)
      this.resolutions.delete(this.resolutions.keys().next().value!);
    this.resolutions.set(id, {
      since: Date.parse(change.firing_since ?? change.at),
      at: Date.parse(change.at),
    });
  }

  /**
   * The closed loop's first step: an alert whose firing resolved while its action waited
   * (in the remediator's own steps, a slow store or adapter check) is not acted on.
   */
  private staleness(alert: Alert): Suppression | undefined {
    const r = this.resolvedFiring(firingKey(alert.rule, alert.key), alert.at);
    if (!r) return undefined;
    return {
      guard: 'resolved',
      reason: `skipped: resolved: its firing resolved at ${new Date(r.at).toISOString()} before the action ran`,
    };
  }

  /** The resolution that ended the firing (firingKey) an alert at `alertAt` belongs to. */
  private resolvedFiring(firing: string, alertAt: string): { at: number } | undefined {
    if (this.resolutions.size === 0) return undefined;
    const r = this.resolutions.get(firing);
    const at = Date.parse(alertAt);
    return r && at >= r.since && at <= r.at ? r : undefined;
  }

  private async sendResolved(
    change: StateChange,
    closed: Alert,
    p: Act,
    guards: EffectiveGuards,
  ): Promise<Decision> {
    const started = this.clock();
    const entry: Decision = {
      id: `${change.id}#${p.index}`,
      at: started,
      alertId: closed.id,
      rule: closed.rule,
      key: closed.key,
      adapter: p.adapter,
      operation: 'notify',
      target: p.target,
      decision: 'failed',
      reason: `resolved: closes alert ${closed.id}`,
      alert: closed,
    };
    const adapter = this.options.adapters.get(p.adapter);
    if (!adapter)
      return this.journal({ ...entry, error: `no adapter named "${p.adapter}" is configured` });
    const store = this.options.store;
    if (!(await store.claim(entry.id, started)))
      return this.journal({
        ...entry,
        decision: 'suppressed',
        guard: 'idempotency',
        reason: `resolution ${change.id} was already notified (a replay, or another worker)`,
      });
    const suppress = (s: Suppression) =>
      this.journal({ ...entry, decision: 'suppressed', guard: s.guard, reason: s.reason });
    try {
      const early = await this.earlyStop(guards, closed, started, GuardTrace.of(entry));
      if (early) return suppress(early);
      const release = this.notifyGate.tryAcquire(guards.notify.concurrency, 'notifications');
      GuardTrace.of(entry).concurrency(
        guards.notify.concurrency,
        typeof release === 'function' ? undefined : release,
      );
      if (typeof release !== 'function') return suppress(release);
      try {
        if (guards.dryRun) return this.dryRun(entry);
        return await this.execute(
          adapter,
          entry,
          p,
          closed,
          resolvedNotification(change, p.target),
        );
      } finally {
        release();
      }
    } catch (err) {
      return this.journal({ ...entry, error: `remediation error: ${(err as Error).message}` });
    }
  }

  /**
   * The guards every action and notification passes first, before anything is counted:
   * the kill switch, maintenance windows and silences.
   */
  private async earlyStop(
    guards: EffectiveGuards,
    alert: Alert,
    now: number,
    trace: GuardTrace,
  ): Promise<Suppression | undefined> {
    const store = this.options.store;
    const stored = await store.killSwitch();
    const off = checkKillSwitch(guards.killSwitch, stored);
    trace.killSwitch(guards.killSwitch, stored, off);
    if (off) return off;
    const window = checkMaintenance(guards.maintenance, now);
    trace.maintenance(guards.maintenance, now, window);
    if (window) return window;
    const silences = await store.silences(now);
    const silenced = checkSilences(silences, alert, now);
    trace.silences(silences, alert, now, silenced);
    return silenced;
  }

  private guardsFor(rule: string): EffectiveGuards {
    let g = this.effective.get(rule);
    if (!g) {
      g = effectiveGuards(this.options.guards, this.options.ruleGuards?.[rule]);
      this.effective.set(rule, g);
    }
    return g;
  }

  private async decide(
    alert: Alert,
    p: PlannedAction,
    guards: EffectiveGuards,
    follow?: { id: string; rollback?: boolean },
  ): Promise<Decision> {
    const started = this.clock();
    const entry: Decision = {
      id: follow?.id ?? `${alert.id}#${p.index}`,
      at: started,
      alertId: alert.id,
      rule: alert.rule,
      key: alert.key,
      adapter: p.adapter,
      operation: p.operation,
      target: p.target,
      ...(p.params && { params: p.params }),
      decision: 'failed',
      alert,
    };
    if (p.kind !== 'act')
      return p.kind === 'failed'
        ? this.journal({
            ...entry,
            error: p.why,
            ...(p.guard && { guard: p.guard, reason: p.why }),
          })
        : this.journal({ ...entry, decision: 'suppressed', guard: 'when', reason: p.why });
    const adapter = this.options.adapters.get(p.adapter);
    if (!adapter)
      return this.journal({
        ...entry,
        error: `no adapter named "${p.adapter}" is configured (known: ${[...this.options.adapters.keys()].join(', ') || 'none'})`,
      });
    const store = this.options.store;
    if (
      !(await store.claim(
        entry.id,
        started,
        alert.task && { task: alert.task.id, generation: alert.task.generation },
      ))
    )
      return this.journal({
        ...entry,
        decision: 'suppressed',
        guard: 'idempotency',
        reason: alert.task
          ? `alert ${alert.id} already led to this action (a replay, or another worker), or rules task ${alert.task.id} has moved past generation ${alert.task.generation}`
          : `alert ${alert.id} already led to this action (a replay, or another worker)`,
      });
    const suppress = (s: Suppression) =>
      this.journal({ ...entry, decision: 'suppressed', guard: s.guard, reason: s.reason });
    try {
      const trace = GuardTrace.of(entry);
      const early = await this.earlyStop(guards, alert, started, trace);
      if (early) return suppress(early);
      if (p.operation === 'notify' && p.group) {
        const id = this.groups.add(alert, `${p.adapter}\u0000${p.target}`, p.group, entry.id, p);
        if (id !== undefined)
          return this.journal({
            ...entry,
            decision: 'suppressed',
            guard: 'group',
            notification: id,
            reason: `grouped: goes out in notification ${id} with the other alerts of its group`,
          });
        // At the cap on groups: this alert takes the per-target cooldown path below.
      }
      if (p.operation === 'notify') return await this.notify(adapter, entry, p, alert, guards);
      // A remediation acts on the fleet as it is now: not for an alert judged from history
      // (a follow-up, rollback or escalation, comes from a remediation that did run).
      if (!follow && guards.maxAlertAgeMs > 0) {
        const firedAt = Date.parse(alert.at);
        const aged = checkAlertAge(firedAt, started, guards.maxAlertAgeMs);
        trace.alertAge(firedAt, started, guards.maxAlertAgeMs, aged);
        if (aged) return suppress(aged);
      }
      const service = instanceService(alert);
      if (service !== undefined) {
        // Firings in force (until resolved), else an inhibition by period (`inhibit: 5m`).
        const [by] = await store.inhibitors(service, started);
        const until = by ? undefined : await store.inhibitedUntil(service);
        const inhibited =
          checkInhibitors(service, by ? [by] : [], started) ??
          checkInhibition(service, until, started);
        trace.inhibition(
          service,
          by ?? (until === undefined ? undefined : { until }),
          started,
          inhibited,
        );
        if (inhibited) return suppress(inhibited);
      }

      const query: LedgerQuery = {
        now: started,
        shadow: guards.dryRun,
        rule: alert.rule,
        keyId: keyId(alert.rule, alert.key),
        adapter: p.adapter,
        target: p.target,
        ruleWindows: guards.ruleBudgets.map((b) => b.windowMs),
        globalWindows: guards.globalBudgets.map((b) => b.windowMs),
        breakerWindows: guards.breakers.map((b) => b.windowMs),
        blastWindowMs: guards.blastWindowMs,
        stormWindows: guards.storm.map((b) => b.windowMs),
      };
      // A pre-check on the ledger as it stands, before asking the orchestrator anything.
      const counts = await store.ledger(query);
      const pre = await this.ledgerVerdict(alert, guards, counts, p.target);
      trace.ledger(counts, guards, started, pre);
      if (pre) return suppress(pre);

      // The target must be one the adapter may act on, and exist, before anything is
      // spent on it (the pre-check above only reads): a forged alert for a made-up host
      // costs no budget, cooldown or breaker count.
      const refused = await admit(
        adapter,
        p.operation,
        p.target,
        this.options.actionTimeoutMs ?? 5 * 60_000,
      );
      if (refused) return this.journal({ ...entry, ...refused });

      const release = this.gate.tryAcquire(guards.concurrency);
      trace.concurrency(guards.concurrency, typeof release === 'function' ? undefined : release);
      if (typeof release !== 'function') return suppress(release);
      try {
        let health: GroupHealth | undefined;
        if (
          mayShrink(p.operation, p.params) &&
          (guards.minHealthy.length > 0 || guards.maxBlastRadius.length > 0)
        ) {
          try {
            health = await adapter.describe(p.target);
          } catch (err) {
            return this.journal({ ...entry, error: `describe failed: ${(err as Error).message}` });
          }
          const lost = healthyLoss(p.operation, p.target, p.params, health);
          const floor = checkMinHealthy(guards.minHealthy, health, lost);
          trace.health(guards, health, lost, floor);
          if (floor) return suppress(floor);
        }
        // Last look before anything is spent: the alert may have resolved meanwhile
        // (a rollback follows a resolution on purpose).
        const stale = follow?.rollback ? undefined : this.staleness(alert);
        if (stale) return suppress(stale);
        const attempt: Attempt = {
          id: entry.id,
          at: started,
          rule: alert.rule,
          keyId: query.keyId,
          adapter: p.adapter,
          target: p.target,
          operation: p.operation,
          ...(health && { group: health.group }),
          shadow: guards.dryRun,
        };
        let breakerTripped: ReturnType<typeof checkBreakers>;
        let storm: ReturnType<typeof checkStorm>;
        const verdict = await store.reserve(
          attempt,
          { ...query, ...(health && { group: health.group }) },
          (counts) => {
            breakerTripped = checkBreakers(counts, guards.breakers);
            storm = breakerTripped ? undefined : checkStorm(counts, alert.rule, guards.storm);
            const ledgerStop =
              breakerTripped ??
              storm ??
              checkCooldown(counts, guards.cooldownMs, p.target, started) ??
              checkBudgets(counts, alert.rule, guards.ruleBudgets, guards.globalBudgets);
            trace.ledger(counts, guards, started, ledgerStop);
            if (ledgerStop) return ledgerStop;
            if (!health || p.operation !== 'kill-and-replace' || guards.maxBlastRadius.length === 0)
              return undefined;
            const blast = checkBlastRadius(guards.maxBlastRadius, counts, p.target, health);
            trace.blastRadius(guards.maxBlastRadius, counts, p.target, health, blast);
            return blast;
          },
        );
        if (verdict) {
          if (breakerTripped) await this.escalate(alert, breakerTripped, guards.dryRun);
          if (storm) await this.stormNotice(alert, storm, guards.dryRun);
          return suppress(verdict);
        }
        if (guards.dryRun) return this.dryRun(entry);
        return await this.execute(adapter, entry, p, alert);
      } finally {
        release();
      }
    } catch (err) {
      // Drover's own failure (the store, a bug): journaled, so the claim is accounted for.
      return this.journal({ ...entry, error: `remediation error: ${(err as Error).message}` });
    }
  }

  /**
   * A notification passes its own guards (guards.notify): cooldown per adapter and
   * target, budgets per rule and across rules, and its own concurrency slots, counted
   * apart from remediations; the check and the ledger append are one step.
   */
  private async notify(
    adapter: Adapter,
    entry: Decision,
    p: Act,
    alert: Alert,
    guards: EffectiveGuards,
    message?: Notification,
  ): Promise<Decision> {
    const n = guards.notify;
    const store = this.options.store;
    const suppress = (s: Suppression) =>
      this.journal({ ...entry, decision: 'suppressed', guard: s.guard, reason: s.reason });
    const query: LedgerQuery = {
      now: entry.at,
      shadow: guards.dryRun,
      notify: true,
      rule: alert.rule,
      keyId: keyId(alert.rule, alert.key),
      adapter: p.adapter,
      target: p.target,
      ruleWindows: n.ruleBudgets.map((b) => b.windowMs),
      globalWindows: n.globalBudgets.map((b) => b.windowMs),
      breakerWindows: [],
      blastWindowMs: 0,
      stormWindows: guards.storm.map((b) => b.windowMs),
    };
    let storm: ReturnType<typeof checkStorm>;
    const trace = GuardTrace.of(entry);
    const check = (counts: LedgerCounts) => {
      const stop =
        (storm = checkStorm(counts, alert.rule, guards.storm)) ??
        checkCooldown(counts, n.cooldownMs, p.target, entry.at) ??
        checkBudgets(counts, alert.rule, n.ruleBudgets, n.globalBudgets, 'notifications');
      trace.ledger(counts, { ...n, breakers: [], storm: guards.storm }, entry.at, stop);
      return stop;
    };
    const stopped = async (s: Suppression) => {
      if (storm) await this.stormNotice(alert, storm, guards.dryRun, p.adapter);
      return suppress(s);
    };
    const pre = check(await store.ledger(query));
    if (pre) return stopped(pre);
    // A grouped page (message) lists several alerts: only a page for one alert is skipped.
    const stale = message ? undefined : this.staleness(alert);
    if (stale) return suppress(stale);
    const release = this.notifyGate.tryAcquire(n.concurrency, 'notifications');
    trace.concurrency(n.concurrency, typeof release === 'function' ? undefined : release);
    if (typeof release !== 'function') return suppress(release);
    try {
      const verdict = await store.reserve(
        {
          id: entry.id,
          at: entry.at,
          rule: alert.rule,
          keyId: query.keyId,
          adapter: p.adapter,
          target: p.target,
          operation: 'notify',
          shadow: guards.dryRun,
        },
        query,
        check,
      );
      if (verdict) return stopped(verdict);
      if (guards.dryRun) return this.dryRun(entry);
      return await this.execute(adapter, entry, p, alert, message);
    } finally {
      release();
    }
  }

  /**
   * One notification for a group's batch of alerts, journaled under the batch's id with
   * the count (`result.alerts`). It passes the kill switch and the notify guards as one
   * notification: a budget counts notifications sent, not the alerts they list.
   */
  private async sendGroup(whole: Batch<Act>): Promise<void> {
    // Alerts whose firing resolved while the batch waited are not paged as firing.
    const batch = withoutResolved(whole, (f) => !!this.resolvedFiring(f.firing, f.at)) ?? {
      ...whole,
      count: 0,
    };
    const { alert, item: p } = batch.first;
    const guards = this.guardsFor(alert.rule);
    const entry: Decision = {
      id: batch.id,
      at: this.clock(),
      alertId: alert.id,
      rule: alert.rule,
      key: batch.labels,
      adapter: p.adapter,
      operation: 'notify',
      target: p.target,
      decision: 'failed',
      result: { alerts: batch.count },
      reason: `a grouped notification of ${batch.count} alert${batch.count === 1 ? '' : 's'}`,
      alert,
    };
    if (batch.count === 0) {
      await this.journal({
        ...entry,
        decision: 'suppressed',
        guard: 'resolved',
        result: { alerts: 0 },
        reason: `skipped: resolved: the firing of each of its ${whole.count} alert${whole.count === 1 ? '' : 's'} resolved before it went out`,
      });
      return;
    }
    try {
      const off = checkKillSwitch(guards.killSwitch, await this.options.store.killSwitch());
      if (off) {
        await this.journal({
          ...entry,
          decision: 'suppressed',
          guard: off.guard,
          reason: off.reason,
        });
        return;
      }
      const adapter = this.options.adapters.get(p.adapter)!;
      const { title, text } = groupText(batch, NOTIFICATION_TITLE_MAX, NOTIFICATION_TEXT_MAX);
      await this.notify(adapter, entry, p, alert, guards, {
        ...notification(alert, p.target),
        title,
        text,
      });
    } catch (err) {
      await this.journal({ ...entry, error: `remediation error: ${(err as Error).message}` });
    }
  }

  private async ledgerVerdict(
    alert: Alert,
    guards: EffectiveGuards,
    counts: LedgerCounts,
    target: string,
  ): Promise<Suppression | undefined> {
    const breaker = checkBreakers(counts, guards.breakers);
    if (breaker) {
      await this.escalate(alert, breaker, guards.dryRun);
      return breaker;
    }
    const storm = checkStorm(counts, alert.rule, guards.storm);
    if (storm) {
      await this.stormNotice(alert, storm, guards.dryRun);
      return storm;
    }
    return (
      checkCooldown(counts, guards.cooldownMs, target, this.clock()) ??
      checkBudgets(counts, alert.rule, guards.ruleBudgets, guards.globalBudgets)
    );
  }

  private dryRun(entry: Decision): Promise<Decision> {
    return this.journal({ ...entry, decision: 'dry-run', reason: 'dry-run: decided, not acted' });
  }

  private async execute(
    adapter: Adapter,
    entry: Decision,
    p: Act,
    alert: Alert,
    message?: Notification,
  ): Promise<Decision> {
    const timeoutMs = this.options.actionTimeoutMs ?? 5 * 60_000;
    const controller = new AbortController();
    const ctx: ActionContext = {
      idempotencyKey: entry.id,
      rule: alert.rule,
      alertId: alert.id,
      alert,
      signal: controller.signal,
    };
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new Error(`the adapter did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    const began = this.clock();
    try {
      const result = await Promise.race([
        message ? adapter.notify(message, ctx) : call(adapter, p.operation, p, alert, ctx),
        timeout,
      ]);
      const verification = message
        ? undefined
        : this.verifier.open(p.operation, p.verify, alert, result.detail);
      const done = await this.journal({
        ...entry,
        decision: 'executed',
        result: entry.result ? { ...result.detail, ...entry.result } : result.detail,
        durationMs: this.clock() - began,
        ...(verification && { verification }),
      });
      if (verification?.outcome === 'pending') this.verifier.track(done);
      else if (verification) this.emit('verification', done);
      return done;
    } catch (err) {
      if (err instanceof AdapterDeclined)
        return this.journal({
          ...entry,
          decision: 'suppressed',
          guard: 'adapter',
          reason: `${err.reason}: ${err.message}`,
          durationMs: this.clock() - began,
        });
      return this.journal({
        ...entry,
        error: (err as Error).message,
        ...(err instanceof TargetRefused && { guard: err.guard, reason: err.message }),
        durationMs: this.clock() - began,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A verification ended (journaled on the action's entry): count it, then run the
   * action's `on_ineffective` if it was ineffective, and roll a scale back (`rollback`)
   * either way. Each is a decision of its own through the guard rails, under the
   * action's id and `/ineffective` or `/rollback`. A rollback is exempt from the
   * cooldown and the breaker (it undoes an action they counted) and from the resolved
   * check (it follows a resolution on purpose); every other guard applies.
   */
  private async verified(entry: Decision & { verification: Verification }): Promise<void> {
    this.emit('verification', entry);
    const v = entry.verification;
    this.options.logger?.[v.outcome === 'effective' ? 'info' : 'warn'](
      { decision: entry.id, rule: entry.rule, target: entry.target, verification: v.outcome },
      v.reason ?? `remediation ${v.outcome}`,
    );
    const alert = journaledAlert(entry);
    const guards = this.guardsFor(entry.rule);
    if (v.outcome === 'ineffective' && v.onIneffective) {
      const escalation: Alert = { ...alert, actions: [v.onIneffective] };
      const [planned] = await plan(escalation, this.options.actionSets);
      // The escalation is not verified in turn.
      if (planned?.kind === 'act') delete planned.verify;
      if (planned)
        await this.decide(escalation, planned, guards, { id: `${entry.id}/ineffective` });
    }
    if (v.rollbackTo !== undefined) {
      const back: PlannedAction = {
        kind: 'act',
        index: 0,
        adapter: entry.adapter,
        operation: 'scale',
        // Already rendered and checked when the scale ran: not rendered again.
        target: entry.target,
        params: { to: v.rollbackTo },
      };
      await this.decide(
        alert,
        back,
        { ...guards, cooldownMs: 0, breakers: [] },
        { id: `${entry.id}/rollback`, rollback: true },
      );
    }
  }

  /** Once per open breaker: tell a person, through the breaker's notify adapter. */
  private async escalate(
    alert: Alert,
    tripped: NonNullable<ReturnType<typeof checkBreakers>>,
    dryRun: boolean,
  ): Promise<void> {
    const name = tripped.breaker.notify;
    if (!name) return;
    const now = this.clock();
    const id = keyId(alert.rule, alert.key);
    const noticeKey = `${dryRun ? 'shadow ' : ''}${tripped.breaker.max}/${tripped.breaker.windowMs} ${id}`;
    if (!(await this.options.store.noticeOnce(noticeKey, now, now + tripped.breaker.windowMs)))
      return;
    const entry: Decision = {
      id: `${alert.id}#breaker`,
      at: now,
      alertId: alert.id,
      rule: alert.rule,
      key: alert.key,
      adapter: name,
      operation: 'notify',
      target: 'escalation',
      decision: 'failed',
      alert,
    };
    if (dryRun) {
      await this.dryRun(entry);
      return;
    }
    const adapter = this.options.adapters.get(name)!;
    const notification: Notification = {
      title: clip(
        `Drover stopped remediating ${alert.rule} ${JSON.stringify(alert.key)}`,
        NOTIFICATION_TITLE_MAX,
      ),
      text: `${tripped.count} remediations within ${tripped.breaker.windowMs / 1000}s did not fix it; automation is paused for this key until the window passes. A person should look.`,
      severity: 'critical',
      alert: alert as unknown as Record<string, unknown>,
    };
    try {
      const result = await adapter.notify(notification, {
        idempotencyKey: entry.id,
        rule: alert.rule,
        alertId: alert.id,
        alert,
      });
      await this.journal({ ...entry, decision: 'executed', result: result.detail });
    } catch (err) {
      await this.journal({ ...entry, error: (err as Error).message });
    }
  }

  /**
   * Once per rule and storm window: tell a person that the rule is storming and its
   * actions on further keys are suspended, through the cap's `notify` adapter, else the
   * adapter of the notify action the storm just suppressed. Without either, the log
   * and the journal's suppressions are the record.
   */
  private async stormNotice(
    alert: Alert,
    storm: NonNullable<ReturnType<typeof checkStorm>>,
    dryRun: boolean,
    fallback?: string,
  ): Promise<void> {
    const name = storm.cap.notify ?? fallback;
    const now = this.clock();
    const noticeKey = `${dryRun ? 'shadow ' : ''}storm ${storm.cap.max}/${storm.cap.windowMs} ${alert.rule}`;
    if (!(await this.options.store.noticeOnce(noticeKey, now, now + storm.cap.windowMs))) return;
    const minutes = Math.round(storm.cap.windowMs / 60_000);
    const title = `Drover suspended the actions of ${alert.rule}: a storm`;
    const text = `rule ${alert.rule} alerted for more than ${storm.keys} distinct keys in ${minutes} min (cap ${storm.cap.max}); actions on further keys are suspended until the window passes. Each suppressed action is in the journal (guard storm).`;
    if (!name) {
      // Nothing to journal: the log is the notice's record. Otherwise the journal logs it.
      this.options.logger?.warn({ rule: alert.rule, keys: storm.keys, cap: storm.cap.max }, title);
      return;
    }
    const entry: Decision = {
      id: `${alert.id}#storm`,
      at: now,
      alertId: alert.id,
      rule: alert.rule,
      key: alert.key,
      adapter: name,
      operation: 'notify',
      target: 'storm',
      decision: 'failed',
      alert,
    };
    if (dryRun) {
      await this.dryRun(entry);
      return;
    }
    const adapter = this.options.adapters.get(name);
    if (!adapter) {
      await this.journal({ ...entry, error: `no adapter named "${name}" is configured` });
      return;
    }
    try {
      const result = await adapter.notify(
        { title, text, severity: 'critical' },
        { idempotencyKey: entry.id, rule: alert.rule, alertId: alert.id, alert },
      );
      await this.journal({ ...entry, decision: 'executed', result: result.detail });
    } catch (err) {
      await this.journal({ ...entry, error: (err as Error).message });
    }
  }

  private async journal(full: Decision): Promise<Decision> {
    const log = this.options.logger;
    // The alert's sample and figures are the sender's: bounded before they are stored.
    const d = boundDecision(
      full,
      this.options.maxAlertBytes ?? DEFAULT_JOURNAL_BOUNDS.maxAlertBytes,
    );
    try {
      await this.options.store.record(d);
    } catch (err) {
      // The decision stands (it may have acted); losing its record must be loud.
      log?.error({ err, decision: d.id }, 'could not write the journal');
    }
    if (log) {
      const fields = {
        decision: d.decision,
        rule: d.rule,
        alert: d.alertId,
        adapter: d.adapter,
        operation: d.operation,
        target: d.target,
        ...(d.guard && { guard: d.guard, reason: d.reason }),
        ...(d.error && { error: d.error }),
      };
      // A breaker or storm notice is news for whoever reads the log: a warning, once.
      if (d.id.endsWith('#breaker') || d.id.endsWith('#storm'))
        log.warn({ ...fields, reason: d.reason ?? d.error }, `notice ${d.decision}: ${d.target}`);
      else if (d.decision === 'failed') log.warn(fields, 'remediation failed');
      else log.info(fields, `remediation ${d.decision}`);
    }
    this.emit('decision', d);
    return d;
  }
}

/** The adapter's refusal of a target, as journal fields; undefined when it may act. */
async function admit(
  adapter: Adapter,
  operation: 'kill-and-replace' | 'scale',
  target: string,
  timeoutMs: number,
): Promise<Pick<Decision, 'guard' | 'reason' | 'error'> | undefined> {
  try {
    await adapter.admit?.(operation, target, AbortSignal.timeout(timeoutMs));
    return undefined;
  } catch (err) {
    if (!(err instanceof TargetRefused))
      return { error: `could not check the target: ${(err as Error).message}` };
    return { guard: err.guard, reason: err.message, error: `refused: ${err.message}` };
  }
}

/** Whether an action may take healthy members away (then the group's health is asked for). */
function mayShrink(operation: Operation, params: Record<string, unknown> | undefined): boolean {
  if (operation === 'kill-and-replace') return true;
  if (operation !== 'scale') return false;
  return params?.to !== undefined || (typeof params?.by === 'number' && params.by < 0);
}

function call(
  adapter: Adapter,
  operation: Operation,
  p: Extract<PlannedAction, { kind: 'act' }>,
  alert: Alert,
  ctx: ActionContext,
): Promise<ActionResult> {
  if (operation === 'kill-and-replace') return adapter.killAndReplace(p.target, ctx);
  if (operation === 'scale') return adapter.scale(p.target, p.params ?? {}, ctx);
  return adapter.notify(notification(alert, p.target), ctx);
}

/**
 * A notification's title and text carry the target, key and figures, which event values
 * wrote: each is clipped (NOTIFICATION_TITLE_MAX, NOTIFICATION_TEXT_MAX characters, with
 * a marker), so one event cannot make a page megabytes long. Escaping for the medium is
 * the adapter's (Slack mrkdwn in the webhook adapter).
 */
export const NOTIFICATION_TITLE_MAX = 300;
export const NOTIFICATION_TEXT_MAX = 4_000;

function notification(alert: Alert, target: string): Notification {
  const severity = alert.labels.severity;
  return {
    title: clip(
      `${alert.rule}: ${alert.description ?? alert.type} (${target})`,
      NOTIFICATION_TITLE_MAX,
    ),
    text: clip(
      `${alert.type} alert at ${alert.at} for ${JSON.stringify(alert.key)}: ${JSON.stringify(alert.figures)}`,
      NOTIFICATION_TEXT_MAX,
    ),
    severity:
      severity === 'page' || severity === 'critical'
        ? 'critical'
        : severity === 'info'
          ? 'info'
          : 'warning',
    alert: alert as unknown as Record<string, unknown>,
  };
}

/** The alert a journal entry keeps (bounded), or the entry's own fields where it was dropped. */
function journaledAlert(entry: Decision & { verification: Verification }): Alert {
  return (
    entry.alert ?? {
      id: entry.alertId,
      rule: entry.rule,
      type: 'any',
      key: entry.key,
      at: entry.verification.since,
      figures: {},
      labels: {},
      actions: [],
    }
  );
}

function firingKey(rule: string, key: Record<string, unknown>): string {
  return createHash('sha1').update(keyId(rule, key)).digest('hex');
}

/** A resolution's notification: clipped as an alert's (its key holds event values). */
function resolvedNotification(change: StateChange, target: string): Notification {
  return {
    title: clip(`RESOLVED ${change.rule} (${target})`, NOTIFICATION_TITLE_MAX),
    text: clip(
      `${change.type} alert ${change.alert} firing since ${change.firing_since} resolved at ${change.at} for ${JSON.stringify(change.key)}`,
      NOTIFICATION_TEXT_MAX,
    ),
    severity: 'info',
    alert: change as unknown as Record<string, unknown>,
  };
}

export function createRemediator<S extends RemediationStore = ActionStore>(
  options: RemediatorOptions<S>,
): Remediator<S> {
  return new Remediator(options);
}
