import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import {
  ActionStore,
  type Adapter,
  createAdapters,
  DEFAULT_JOURNAL_BOUNDS,
  type Decision,
  ElasticsearchStore,
  openActionStore,
  type RemediationStore,
  Remediator,
} from '../actions/index.ts';
import {
  type Bus,
  createKafkaBus,
  KafkaBus,
  type Consumer,
  openEmbeddedBus,
  type Topic,
} from '../ingest/bus/index.ts';
import { createIngestServer, type IngestServer } from '../ingest/sources/http/index.ts';
import { ElasticsearchIndexer, openIndexWorker, type SearchIndex } from '../ingest/sinks/index.ts';
import {
  type Alert,
  alertDocument,
  type Diagnostic,
  Engine,
  type Explanation,
  formatDiagnostic,
  loadRules,
  type StateChange,
} from '../rules/index.ts';
import { ConfigError, type DroverConfig, type Role, ROLES } from './config.ts';
import { ensureAdminToken } from './admin-token.ts';
import { createControlApi } from './control-api.ts';
import { type AccessOptions, accessOptions, createAccessCheck } from './control-access.ts';
import type { Logger } from './logger.ts';
import { RuleCheckpoints } from './rules-checkpoints.ts';
import { createRefusalReporter } from './rule-refusals.ts';
import { type Periodic, startPeriodic } from './periodic.ts';
import { createRulesInput, type RulesInput } from './rules-input.ts';
import { RulesTasks, splitRules } from './rules-tasks.ts';
import { createTelemetry, type Telemetry } from './telemetry.ts';
import { packageRoot } from './package-root.ts';
import type { AlertHistory } from '../actions/history/types.ts';
import { openAlertHistory } from './alert-history.ts';
import { type AlertChain, explainAlert } from './explain.ts';

/**
 * One process: the endpoint, the bus, the indexer, the rules engine and remediation, or
 * on Kafka the roles the configuration names (docs/scale-out.md). Rule state is
 * snapshotted with the bus positions it reflects; on start the engine is restored and
 * the bus replayed from those positions, so no window is lost, and a replayed alert
 * keeps its id, which the remediator's idempotency claims turn away.
 */
const TOPICS: Topic[] = ['logs', 'metrics'];

export class Pipeline {
  server!: IngestServer;
  readonly telemetry: Telemetry = createTelemetry();
  /** 'alert' and 'decision', for the demo's timeline and embedding code. */
  readonly events = new EventEmitter();
  private bus!: Bus;
  private engine!: Engine;
  private remediator!: Remediator<RemediationStore>;
  /** Group overflow already counted in drover_notification_group_overflow_total. */
  private groupOverflowSeen = 0;
  private adapters = new Map<string, Adapter>();
  private search: SearchIndex | undefined;
  /** Where alerts are indexed for Kibana (with an Elasticsearch index). */
  private alertIndexer: ElasticsearchIndexer | undefined;
  private closers: Array<() => Promise<void> | void> = [];
  private consumers: Consumer[] = [];
  private offsets: Record<string, number> = {};
  private rulesInput: RulesInput | undefined;
  /** On Kafka: the rules' tasks this worker holds, each with its engine (rules-tasks.ts). */
  private rulesTasks: RulesTasks | undefined;
  /**
   * Kafka: the global task's group (`<group>-global`), for the rules whose key does not
   * follow the partitioning; started when such rules are loaded (docs/scale-out.md).
   */
  private globalTasks: RulesTasks | undefined;
  /** The global task's start or stop after a reload, while it runs (reconcileGlobalTasks). */
  private globalChange: Promise<void> = Promise.resolve();
  /** Set when the stop begins: a reload's global task change after it does nothing. */
  private closing = false;
  /** The rules loaded, for the engines of tasks assigned later. */
  private rules: Awaited<ReturnType<typeof loadRules>>['rules'] = [];
  private readonly recentAlerts: Alert[] = [];
  /** Alerts and state changes, for `drover explain` (pipeline/alert-history.ts). */
  private history: AlertHistory | undefined;
  private ready = false;
  private snapshotTimer: NodeJS.Timeout | undefined;
  private ticker: Periodic | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  /** The engine counts already added to the telemetry counters. */
  private counted = { late: 0, future: 0 };
  /** Events the rules processed since the counter was last brought up to date. */
  private processed = 0;
  private pendingActions = new Set<Promise<unknown>>();
  /** One for the process, so the log's rate limit holds across rule reloads. */
  private readonly reportRefusal: ReturnType<typeof createRefusalReporter>;
  private checkpoints: RuleCheckpoints | undefined;
  /** What this process runs (DroverConfig.roles; checked by checkRoles). */
  private readonly roles: ReadonlySet<Role>;
  /**
   * Alerts whose remediation has not finished (claim, guards, action, journal). While
   * any is pending no periodic snapshot is written: the last one stays behind the
   * alert, so a crash replays it and the remediator's idempotent claim turns away what
   * was already done. Bounded by the remediations in flight.
   */
  private remediating = 0;

  constructor(
    readonly config: DroverConfig,
    private readonly logger: Logger,
  ) {
    this.roles = new Set(config.roles ?? ROLES);
    this.reportRefusal = createRefusalReporter({ telemetry: this.telemetry, logger });
  }

  /**
   * Starts every part, or none: a part that fails to start stops those started before it
   * (consumers, supervised replicas, servers, stores), and the error is thrown.
   */
  async start(): Promise<void> {
    try {
      await this.open();
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private async open(): Promise<void> {
    const c = this.config;
    mkdirSync(c.stateDir, { recursive: true });
    const rulesRole = this.roles.has('rules');
    const { rules, diagnostics } = rulesRole
      ? await this.loadRuleSet()
      : { rules: [], diagnostics: [] };
    const errors = diagnostics.filter((d) => d.severity === 'error');
    if (errors.length > 0)
      throw new ConfigError(`the rules have errors:\n${errors.map(formatDiagnostic).join('\n')}`);
    if (rulesRole && this.noRulesYet())
      this.logger.warn(
        { rules: c.rules.paths[0], examples: join(packageRoot(), 'examples', 'rules') },
        `no rules yet: put rule files in ${c.rules.paths[0]} (see the examples) and reload (SIGHUP or drover rules reload)`,
      );

    this.bus =
      c.bus.kind === 'kafka'
        ? await createKafkaBus({
            brokers: c.bus.brokers,
            topicPrefix: c.bus.topicPrefix,
            ...(c.bus.compression && { compression: c.bus.compression }),
            ...(c.bus.sessionTimeoutMs !== undefined && {
              sessionTimeoutMs: c.bus.sessionTimeoutMs,
            }),
            ...(c.bus.corruptBatch && { corruptBatch: c.bus.corruptBatch }),
            onCorruptBatch: (r) => {
              this.telemetry.busCorruptBatches.inc({
                group: r.group,
                topic: r.topic,
                partition: String(r.partition),
              });
              this.logger.error(
                {
                  err: r.error,
                  group: r.group,
                  topic: r.topic,
                  partition: r.partition,
                  firstOffset: r.firstOffset,
                  lastOffset: r.lastOffset,
                  ...(r.next !== undefined && { next: r.next }),
                },
                r.action === 'stop'
                  ? 'a corrupt Kafka record batch: the consumer group stopped consuming its partition (bus.corruptBatch: stop)'
                  : 'a corrupt Kafka record batch: the consumer group skipped its offsets (bus.corruptBatch: skip)',
              );
            },
          })
        : openEmbeddedBus({
            path: join(c.stateDir, 'bus.db'),
            ...(c.bus.compression && { compression: c.bus.compression }),
            ...(c.bus.retention?.maxAgeMs !== undefined && {
              retentionMs: c.bus.retention.maxAgeMs,
            }),
            ...(c.bus.retention?.maxBytes !== undefined && {
              retentionBytes: c.bus.retention.maxBytes,
            }),
          });
    this.closers.push(() => this.bus.close());

    if (this.roles.has('actions')) await this.startActions();
    this.rules = rules;
    if (rulesRole && this.bus instanceof KafkaBus) {
      // Kafka: an engine per task, restored from the changelog at each assignment.
      this.engine = this.newEngine(rules);
    } else if (rulesRole) {
      this.engine = this.newEngine(rules);
      const checkpoints = new RuleCheckpoints(c.stateDir, this.logger, {
        onFailure: () => this.telemetry.faults.inc({ kind: 'snapshot' }),
        onWritten: (stats, diskBytes) => {
          this.telemetry.snapshotSeconds.observe(stats.maxPauseMs / 1000);
          this.telemetry.snapshotBytes.set(diskBytes);
        },
      });
      this.checkpoints = checkpoints;
      this.closers.push(() => checkpoints.close());
      const back = checkpoints.restore(this.engine);
      if (back) {
        this.offsets = back.offsets;
        this.logger.info(
          {
            offsets: back.offsets,
            reset: back.reset,
            at: new Date(back.at).toISOString(),
            from: back.from,
          },
          'rule state restored',
        );
      }
      // A restored engine's counts are history: this process's counters start from them.
      const restored = this.engine.counts();
      this.counted = { late: restored.lateEvents, future: restored.futureEvents };
    }

    await this.startIndexer();
    if (rulesRole) await this.startRules();
    // Configured admin tokens, or the one generated into the state directory.
    const adminTokens = c.listen.adminTokens?.length
      ? c.listen.adminTokens
      : [ensureAdminToken(c.stateDir)];
    const ingest = this.roles.has('ingest');
    this.server = await createIngestServer({
      bus: this.bus,
      ingest,
      host: c.listen.host,
      port: c.listen.port,
      tokens: c.listen.tokens,
      apiKeys: c.listen.apiKeys,
      extraTokens: adminTokens,
      maxBodyBytes: c.listen.maxBodyBytes,
      ...(c.listen.tls && { tls: readTls(c.listen.tls) }),
      statsd:
        c.listen.statsdPort === false || !ingest
          ? false
          : { port: c.listen.statsdPort, host: c.listen.statsdHost ?? '127.0.0.1' },
      search: this.search,
      // GET /v1/search answers with what was ingested: a read or admin token, as
      // every other read route.
      authorizeRead: (
        (check) => (req, reply) =>
          check(req, reply, 'read')
      )(createAccessCheck(this.access(adminTokens))),
      logger: this.logger,
      onIngest: (m) => {
        this.telemetry.ingestEvents.inc({ protocol: m.protocol }, m.events);
        this.telemetry.ingestBytes.inc({ protocol: m.protocol }, m.bytes);
        if (m.decodeErrors)
          this.telemetry.decodeErrors.inc({ protocol: m.protocol }, m.decodeErrors);
        if (m.throttled) this.telemetry.throttled.inc({ protocol: m.protocol });
        if (m.evicted) this.telemetry.statsdEvicted.inc(m.evicted);
      },
      routes: this.routes(adminTokens),
    });
    if (rulesRole) {
      // A failed write (disk full) is logged and counted; the next interval tries again.
      this.snapshotTimer = setInterval(() => {
        if (this.rulesTasks) {
          this.rulesTasks.maybeSnapshot();
          this.globalTasks?.maybeSnapshot();
        } else if (this.remediating === 0) this.trySnapshot();
      }, c.snapshotEveryMs);
      this.ticker = startPeriodic({
        name: 'the rules clock tick',
        everyMs: 1_000,
        run: () => this.tick(),
        logger: this.logger,
      });
    }
    this.ready = true;
    this.logger.info(
      {
        url: this.server.url,
        statsdPort: this.server.statsdPort ?? false,
        roles: [...this.roles],
        rules: rules.length,
        bus: c.bus.kind,
        index: c.index.kind,
        actions: c.actions?.store ?? 'sqlite',
      },
      'drover is serving',
    );
  }

  /** The remediation store, the adapters, the remediator and the journal's pruning. */
  private async startActions(): Promise<void> {
    const c = this.config;
    const store = await this.openStore();
    this.closers.push(() => store.close());
    const history = await openAlertHistory(c);
    this.history = history;
    this.closers.push(() => history.close());
    this.adapters = await createAdapters(c.adapters, c.baseDir);
    for (const adapter of this.adapters.values()) {
      const startable = adapter as Adapter & { start?: () => Promise<void> };
      if (typeof startable.start === 'function') await startable.start();
    }
    // A claim without a journal entry means a crash mid-action: say so, don't guess.
    for (const claim of await store.interruptedClaims()) {
      await store.record({
        id: claim.id,
        at: claim.at,
        alertId: claim.id.replace(/#\d+$/, ''),
        rule: '-',
        key: {},
        adapter: '-',
        operation: '-',
        target: '-',
        decision: 'failed',
        error:
          'interrupted: Drover stopped between deciding and journaling; the action may or may not have run',
      });
    }
    const journal = c.journal ?? { ...DEFAULT_JOURNAL_BOUNDS, pruneEveryMs: 3_600_000 };
    this.remediator = new Remediator<RemediationStore>({
      store,
      adapters: this.adapters,
      actionSets: c.actionSets,
      guards: c.guards,
      ruleGuards: c.ruleGuards,
      maxAlertBytes: journal.maxAlertBytes,
      logger: this.logger,
    });
    // Every journaled decision once: an alert's actions, and the breaker and storm
    // notices and grouped pages that handle() does not return. The remediator logs each.
    this.remediator.on('decision', (d: Decision) => this.countDecision(d));
    // Each verification once, when it ends (docs/actions.md#verification).
    this.remediator.on('verification', (d: Decision) => {
      this.telemetry.verifications.inc({ outcome: d.verification?.outcome ?? 'unknown' });
      this.events.emit('verification', d);
    });
    // Windows still open when Drover stopped go on from the journal, not from memory.
    const pending = await this.remediator.restoreVerifications();
    if (pending > 0) this.logger.info({ pending }, 'verifications rebuilt from the journal');
    // Grouped pages still waiting when Drover was killed go out, late, once.
    const groups = await this.remediator.restoreGroups();
    if (groups.notifications > 0 || groups.skipped > 0)
      this.logger.warn(groups, 'notification groups rebuilt from the journal');
    // Journal retention: at start, then periodically; a failed prune is retried next time.
    const prune = () =>
      void Promise.resolve(store.prune({ now: Date.now(), ...journal }))
        .then(async (r) => {
          if (r.entries > 0) this.logger.info(r, 'journal pruned');
          const alerts = await history.prune(Date.now() - journal.maxAgeMs);
          if (alerts > 0) this.logger.info({ alerts }, 'alert history pruned');
        })
        .catch((err: unknown) => this.logger.error({ err }, 'journal prune failed'));
    prune();
    this.pruneTimer = setInterval(prune, journal.pruneEveryMs);
    this.pruneTimer.unref();
  }

  /**
   * Every second: the clock's turn at the watermark, then verification windows, which
   * are event time, end where the watermark (moved by events or the clock) passed them.
   */
  private async tick(): Promise<void> {
    try {
      await this.tickEngine();
    } finally {
      this.remediator?.watermark(this.rulesWatermark());
    }
  }

  /**
   * The watermark verification windows end at: the engine's, or on Kafka the lowest of
   * the tasks this worker holds (each task has its own; the lowest never ends a window
   * early for any of them).
   */
  private rulesWatermark(): number {
    if (!this.rulesTasks) return this.engine.watermark;
    const engines = this.taskEngines();
    return engines.length > 0
      ? Math.min(...engines.map((e) => e.watermark))
      : Number.NEGATIVE_INFINITY;
  }

  /**
   * The wall clock may drive the watermark only once the rules have caught up with the
   * bus: while a backlog (a replay after restart) is pending, its events still carry the
   * time, and a clock-driven watermark would fire absences for keys that did report.
   */
  private async tickEngine(): Promise<void> {
    if (this.rulesTasks) {
      await Promise.all([this.rulesTasks.tick(), this.globalTasks?.tick()]);
      return;
    }
    try {
      const lag = await this.bus.lag(this.group('rules'));
      if (TOPICS.some((t) => lag[t] > 0)) return;
      // Read but held back in the merge: still a backlog.
      if (this.rulesInput && this.rulesInput.held() > 0) return;
    } catch (err) {
      this.logger.warn({ err }, 'could not read the rules lag; the clock waits');
      return;
    }
    this.engine.tick();
  }

  /**
   * Consumer groups. On Kafka they carry the topic prefix, so several Drover
   * deployments can share a cluster without sharing positions.
   */
  private group(role: 'rules' | 'indexer'): string {
    const bus = this.config.bus;
    return bus.kind === 'kafka' ? `${bus.topicPrefix}${role}` : `drover-${role}`;
  }

  /**
   * The remediation store `actions.store` selects: SQLite in the state directory by
   * default, or Elasticsearch (its journal template and state index installed here).
   */
  private async openStore(): Promise<RemediationStore> {
    const a = this.config.actions ?? {
      store: 'sqlite' as const,
      path: join(this.config.stateDir, 'actions.db'),
    };
    if (a.store === 'sqlite') {
      mkdirSync(dirname(a.path), { recursive: true });
      return openActionStore(a.path);
    }
    const store = new ElasticsearchStore({ node: a.url, prefix: a.prefix });
    try {
      return await store.init();
    } catch (err) {
      await store.close();
      throw new Error(
        `the Elasticsearch action store (${a.url}, prefix ${a.prefix}) could not be opened: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** The journal, newest first (the SQLite store; any store: listDecisions). */
  decisions(limit = 100): Decision[] {
    const store = this.remediator.store;
    if (!(store instanceof ActionStore))
      throw new Error('decisions() reads the SQLite journal; use listDecisions()');
    return store.list({ limit });
  }

  /** One alert's whole chain: its explanation, state changes and journal entries. */
  async explain(id: string): Promise<AlertChain> {
    if (!this.history) throw new Error('this drover serve keeps no alert history');
    return explainAlert(this.history, this.remediator.store, id);
  }

  /** The journal, newest first, from whichever store is configured. */
  async listDecisions(limit = 100): Promise<Decision[]> {
    return this.remediator.store.list({ limit });
  }

  adapter(name: string): Adapter | undefined {
    return this.adapters.get(name);
  }

  private newEngine(
    rules: Awaited<ReturnType<typeof loadRules>>['rules'],
    onAlert: (alert: Alert, explanation?: Explanation) => void = (alert, explanation) =>
      this.onAlert(alert, explanation),
    onState: (change: StateChange) => void = (change) => this.onState(change),
  ): Engine {
    return new Engine(rules, {
      allowedLatenessMs: this.config.rules.allowedLatenessMs,
      maxFutureSkewMs: this.config.rules.maxFutureSkewMs,
      clock: Date.now,
      onAlert,
      explain: true,
      onState,
      resolvedOnly: true,
      maxKeysPerRule: this.config.rules.maxKeysPerRule,
      maxTermsPerRule: this.config.rules.maxTermsPerRule,
      onRefused: this.reportRefusal,
    });
  }

  /**
   * The events the rules processed, and the engine's late and refused counts (carried
   * across reloads), as counters: after each delivered batch and at every scrape, since
   * the merge also processes held events from its idle timer, between batches.
   */
  private countEngineEvents(): void {
    if (this.rulesTasks) {
      const c = this.rulesTasks.takeCounts();
      // The global task reads every event a second time: counted on its own, and its
      // late and future counts left out (the partition tasks count those events).
      const g = this.globalTasks?.takeCounts();
      if (g && g.processed > 0) this.telemetry.globalRuleEvents.inc(g.processed);
      if (c.processed > 0) this.telemetry.ruleEvents.inc(c.processed);
      if (c.late > 0) this.telemetry.ruleLateEvents.inc(c.late);
      if (c.future > 0) this.telemetry.ruleFutureEvents.inc(c.future);
      return;
    }
    if (this.processed > 0) {
      this.telemetry.ruleEvents.inc(this.processed);
      this.processed = 0;
    }
    const { lateEvents, futureEvents } = this.engine.counts();
    if (lateEvents > this.counted.late)
      this.telemetry.ruleLateEvents.inc(lateEvents - this.counted.late);
    if (futureEvents > this.counted.future)
      this.telemetry.ruleFutureEvents.inc(futureEvents - this.counted.future);
    this.counted = { late: lateEvents, future: futureEvents };
  }

  private onAlert(alert: Alert, explanation?: Explanation): void {
    this.telemetry.alerts.inc({ rule: alert.rule });
    this.events.emit('alert', alert);
    this.recentAlerts.push(alert);
    if (this.recentAlerts.length > 1_000) this.recentAlerts.shift();
    this.logger.info(
      {
        alert: {
          id: alert.id,
          rule: alert.rule,
          key: alert.key,
          at: alert.at,
          figures: alert.figures,
          ...(alert.task && { task: alert.task }),
        },
      },
      'alert',
    );
    const p = this.remediator
      .handle(alert)
      .catch((err: unknown) => this.logger.error({ err, alert: alert.id }, 'remediation failed'))
      .finally(() => {
        this.remediating--;
        this.pendingActions.delete(p);
      });
    this.remediating++;
    this.pendingActions.add(p);
    this.record('alert', alert.id, () => this.history?.recordAlert(alert, explanation));
    if (this.alertIndexer) {
      const indexed = this.alertIndexer
        .indexAlerts([alertDocument(alert, explanation)])
        .catch((err: unknown) =>
          this.logger.warn({ err, alert: alert.id }, 'could not index the alert'),
        )
        .finally(() => this.pendingActions.delete(indexed));
      this.pendingActions.add(indexed);
    }
  }

  /** Writes to the alert history, tracked so a stop waits for it; a failure is logged. */
  private record(what: string, id: string, write: () => unknown): void {
    const p: Promise<unknown> = Promise.resolve()
      .then(write)
      .catch((err: unknown) => this.logger.warn({ err, id }, `could not record the ${what}`))
      .finally(() => this.pendingActions.delete(p));
    this.pendingActions.add(p);
  }

  /** A resolution goes to the remediator (send_resolved notifications, stale alerts). */
  private onState(change: StateChange): void {
    if (change.state !== 'resolved') return;
    this.record('state change', change.id, () => this.history?.recordState(change));
    this.logger.info(
      {
        resolved: {
          id: change.id,
          rule: change.rule,
          key: change.key,
          at: change.at,
          alert: change.alert,
        },
      },
      'alert resolved',
    );
    const p = this.remediator
      .resolved(change)
      .catch((err: unknown) =>
        this.logger.error({ err, resolution: change.id }, 'resolved notification failed'),
      )
      .finally(() => {
        this.remediating--;
        this.pendingActions.delete(p);
      });
    this.remediating++;
    this.pendingActions.add(p);
  }

  private countDecision(d: Decision): void {
    this.telemetry.actions.inc({ adapter: d.adapter, outcome: d.decision });
    this.events.emit('decision', d);
    if (d.decision === 'suppressed')
      this.telemetry.suppressions.inc({ reason: d.guard ?? 'unknown' });
  }

  /**
   * The indexer group with the index role; with Elasticsearch and the rules role, the
   * index alerts go to (for Kibana) even where no indexer runs.
   */
  private async startIndexer(): Promise<void> {
    const c = this.config;
    const role = this.roles.has('index');
    if (c.index.kind === 'none') return;
    if (!role && (c.index.kind !== 'elasticsearch' || !this.roles.has('rules'))) return;
    let index: (batch: Parameters<ElasticsearchIndexer['indexBatch']>[0]) => Promise<void>;
    // The embedded index starts on the batch the indexer group reads ahead (its rows are
    // keyed by bus position, so one indexed and then delivered again is a no-op).
    let readAhead: ((batch: Parameters<typeof index>[0]) => void) | undefined;
    if (c.index.kind === 'elasticsearch') {
      const es = new ElasticsearchIndexer({
        node: c.index.url,
        prefix: c.index.prefix,
        onMetrics: (m) => this.telemetry.indexFailures.inc({ kind: 'dead-letter' }, m.deadLettered),
      });
      await es.start();
      if (role) this.search = es;
      this.alertIndexer = es;
      this.closers.push(() => es.close());
      index = (b) => es.indexBatch(b);
    } else {
      // A file per UTC day of event time under stateDir/index; an index.db from before
      // partitions is searched beside them until retention drops it. Indexed in a worker
      // thread, off the loop ingest and the rules share.
      const embedded = await openIndexWorker(join(c.stateDir, 'index'), {
        legacyPath: join(c.stateDir, 'index.db'),
        ...(c.index.retention && { retention: c.index.retention }),
        onExpired: (n) => this.telemetry.indexExpired.inc(n),
        onDropped: (partition, reason) => {
          this.telemetry.indexPartitionsDropped.inc({ reason });
          this.logger.info({ partition, reason }, 'index partition dropped');
        },
        onError: (err) => this.logger.warn({ err }, 'index retention failed; it runs again'),
      });
      new Gauge({
        name: 'drover_index_bytes',
        help: 'Bytes the embedded index holds on disk, all its day partitions together.',
        registers: [this.telemetry.registry],
        async collect() {
          this.set(await embedded.bytes());
        },
      });
      new Counter({
        name: 'drover_index_worker_seconds_total',
        help: "The index worker thread's time: active (its event loop), batch (indexing), and in batches cpu (on a CPU) and wait (runnable, waiting for a CPU; Linux only).",
        labelNames: ['kind'] as const,
        registers: [this.telemetry.registry],
        collect() {
          const used = embedded.usage();
          this.reset();
          for (const kind of ['active', 'batch', 'cpu', 'wait'] as const)
            this.inc({ kind }, used[kind]);
        },
      });
      this.search = embedded;
      this.closers.push(() => embedded.close());
      index = (b) => embedded.indexBatch(b);
      readAhead = (b) => embedded.stage(b);
    }
    if (!role) return;
    this.consumers.push(
      await this.bus.consume({
        group: this.group('indexer'),
        topics: TOPICS,
        maxAttempts: c.bus.maxAttempts,
        ...(readAhead && { readAhead }),
        handler: async (batch) => {
          const end = this.telemetry.indexLatency.startTimer();
          try {
            await index(batch);
            this.telemetry.indexed.inc(batch.messages.length);
          } catch (err) {
            this.telemetry.indexFailures.inc({ kind: 'batch' });
            this.logger.warn({ err }, 'indexing a batch failed; it will be redelivered');
            throw err;
          } finally {
            end();
          }
        },
      }),
    );
  }

  private async startRules(): Promise<void> {
    if (this.bus instanceof KafkaBus) return this.startRulesTasks(this.bus);
    // Replay from the positions the restored state reflects (from the start without a
    // snapshot): the snapshot, not the group's commits, owns the rules' position.
    await this.bus.rewind(this.group('rules'), this.offsets, TOPICS);
    // The engine sees the inputs merged in event time (rules-input.ts); the snapshot's
    // offsets are what it has processed per input, not what the bus has delivered.
    const input = createRulesInput({
      ...(this.config.rules.idleTimeoutMs !== undefined && {
        idleAfterMs: this.config.rules.idleTimeoutMs,
      }),
      // A quiet topic is idle once a pass of the consumer that read it after the quiet
      // period found it still at its end, not by the clock alone (rules-input.ts): a
      // loop held past the timeout (a large request, a starved host) would otherwise
      // release the other topic's events before reading what was written meanwhile.
      // Nothing to ask for: the embedded consumer reads every topic it does not deliver
      // from each pollMs (100 ms) and tells the merge (InputFlow.reading).
      confirmIdle: () => {},
      process: (m) => {
        // A message the bus delivers again (a batch redelivered after a failure, a
        // rebalance) that the engine already processed is skipped by its offset: no
        // event counts twice in rule state.
        const at = `${m.topic}/${m.partition}`;
        const offset = Number(m.offset);
        if (offset < (this.offsets[at] ?? 0)) return;
        this.engine.process(m.event);
        this.offsets[at] = offset + 1;
        this.processed++;
      },
      onError: (err, m) =>
        this.logger.error(
          { err, topic: m.topic, partition: m.partition, offset: m.offset },
          'the rules could not process an event; it is skipped',
        ),
    });
    this.rulesInput = input;
    new Gauge({
      name: 'drover_rules_held_events',
      help: 'Events the rules consumer has read from the bus and holds until the other inputs catch up in event time.',
      registers: [this.telemetry.registry],
      collect() {
        this.set(input.held());
      },
    });
    this.consumers.push(
      await this.bus.consume({
        group: this.group('rules'),
        topics: TOPICS,
        maxAttempts: this.config.bus.maxAttempts,
        flow: input.flow,
        handler: async (batch) => {
          const end = this.telemetry.ruleEvaluation.startTimer();
          await input.handler(batch);
          end();
          this.countEngineEvents();
        },
      }),
    );
  }

  /**
   * Kafka: the rules group hands out tasks; any number of processes with the rules role
   * share them (docs/scale-out.md).
   */
  private async startRulesTasks(bus: KafkaBus): Promise<void> {
    const tasks = this.newRulesTasks(bus, false);
    this.rulesTasks = tasks;
    const global = () => this.globalTasks;
    new Gauge({
      name: 'drover_rules_held_events',
      help: 'Events the rules consumer has read from the bus and holds until the other inputs catch up in event time.',
      registers: [this.telemetry.registry],
      collect() {
        this.set(tasks.held() + (global()?.held() ?? 0));
      },
    });
    await tasks.start();
    // A global group that never ran starts at the log ends, as after a reload.
    await this.startGlobalTasks(bus, 'new');
  }

  /** The rules each group runs: those that follow the partitioning, or the others. */
  private rulesFor(global: boolean, rules = this.rules): typeof rules {
    const split = splitRules(rules, this.config.rules.partitionFields ?? ['service.name']);
    return global ? split.global : split.partitioned;
  }

  /** The global task's group, once rules that need it are loaded (at start or a reload). */
  private async startGlobalTasks(bus: KafkaBus, seed: boolean | 'new' = false): Promise<void> {
    if (this.globalTasks || this.rulesFor(true).length === 0) return;
    const global = this.newRulesTasks(bus, true);
    this.globalTasks = global;
    this.logger.info(
      { group: `${this.group('rules')}-global`, rules: this.rulesFor(true).map((r) => r.name) },
      'rules whose key does not follow the partitioning run in the global task',
    );
    await global.start({ seed });
  }

  /**
   * After a reload: the global task starts when the first rules that need it came (seeded
   * at the log ends, docs/scale-out.md "Adding and removing global rules"), and stops,
   * leaving its group, when the last went. One change at a time, in reload order.
   */
  private reconcileGlobalTasks(bus: KafkaBus): Promise<void> {
    const next = this.globalChange.then(async () => {
      if (this.closing) return;
      const wanted = this.rulesFor(true).length > 0;
      if (wanted && !this.globalTasks) await this.startGlobalTasks(bus, true);
      else if (!wanted && this.globalTasks) {
        const global = this.globalTasks;
        this.globalTasks = undefined;
        await global.stop();
        this.telemetry.globalTaskAssigned.set(0);
        // Its group's lag is no longer read: not left at its last value.
        for (const topic of TOPICS)
          this.telemetry.busLag.remove({ group: `${this.group('rules')}-global`, topic });
        this.logger.info(
          { group: `${this.group('rules')}-global` },
          'no rule needs the global task any more: it left its group',
        );
      }
    });
    this.globalChange = next.catch(() => {});
    return next;
  }

  private newRulesTasks(bus: KafkaBus, global: boolean): RulesTasks {
    return new RulesTasks({
      bus,
      group: global ? `${this.group('rules')}-global` : this.group('rules'),
      topics: TOPICS,
      global,
      newEngine: (onAlert, onState) => this.newEngine(this.rulesFor(global), onAlert, onState),
      onAlert: (alert, explanation) => this.onAlert(alert, explanation),
      onState: (change) => this.onState(change),
      canSnapshot: () => this.remediating === 0,
      telemetry: this.telemetry,
      logger: this.logger,
      maxAttempts: this.config.bus.maxAttempts,
      ...(this.config.rules.idleTimeoutMs !== undefined && {
        idleAfterMs: this.config.rules.idleTimeoutMs,
      }),
      ...(this.config.bus.sessionTimeoutMs !== undefined && {
        sessionTimeoutMs: this.config.bus.sessionTimeoutMs,
      }),
    });
  }

  /** The engines of the tasks this worker holds, partition tasks and the global one. */
  private taskEngines(): Engine[] {
    return [...(this.rulesTasks?.engines() ?? []), ...(this.globalTasks?.engines() ?? [])];
  }

  /** The rules' statistics: one engine's, or on Kafka the tasks' summed per rule. */
  private ruleStats(): ReturnType<Engine['stats']> {
    if (!this.rulesTasks) return this.engine.stats();
    const byRule = new Map(
      this.engine
        .stats()
        .map((s) => [s.rule, { ...s, keys: 0, bytes: 0, alerts: 0, keysRefused: 0 }]),
    );
    for (const e of this.taskEngines())
      for (const s of e.stats()) {
        const sum = byRule.get(s.rule);
        if (!sum) continue;
        sum.keys += s.keys;
        sum.bytes += s.bytes;
        sum.alerts += s.alerts;
        sum.keysRefused += s.keysRefused;
        if (s.terms !== undefined) sum.terms = (sum.terms ?? 0) + s.terms;
        if (s.termsRefused !== undefined)
          sum.termsRefused = (sum.termsRefused ?? 0) + s.termsRefused;
        if (s.lastAlertAt && (!sum.lastAlertAt || s.lastAlertAt > sum.lastAlertAt))
          sum.lastAlertAt = s.lastAlertAt;
      }
    return [...byRule.values()];
  }

  /**
   * Starts an incremental checkpoint written in slices (pipeline/rules-checkpoints.ts),
   * unless one is being written; a failure is logged and counted.
   */
  private trySnapshot(): void {
    void this.checkpoints?.start(this.engine, this.offsets);
  }

  /** Atomically: a crash leaves the previous snapshot or this one, never half of one. */
  writeSnapshot(): boolean {
    return this.checkpoints?.writeNow(this.engine, this.offsets) ?? false;
  }

  /**
   * Without rules.paths in the configuration, a missing ./rules folder means no rules yet:
   * drover serve starts (or reloads) with none rather than refusing.
   */
  private noRulesYet(): boolean {
    const r = this.config.rules;
    return r.defaultPaths === true && r.paths.every((p) => !existsSync(p));
  }

  private async loadRuleSet(): Promise<Awaited<ReturnType<typeof loadRules>>> {
    if (this.noRulesYet()) return { rules: [], diagnostics: [], files: [] };
    return loadRules(this.config.rules.paths);
  }

  /** Hot reload: a rule set that fails validation is rejected and the running one stays. */
  async reload(): Promise<{ ok: boolean; errors: Diagnostic[]; rules: number }> {
    if (!this.roles.has('rules')) {
      const message = `this drover serve runs the roles ${[...this.roles].join(', ')}: no rules to reload`;
      this.logger.warn(message);
      return {
        ok: false,
        errors: [{ file: '-', line: 1, col: 1, message, severity: 'error' }],
        rules: 0,
      };
    }
    let loaded: Awaited<ReturnType<typeof loadRules>>;
    try {
      loaded = await this.loadRuleSet();
    } catch (err) {
      // A folder that cannot be listed, say: the running rules stay.
      this.telemetry.faults.inc({ kind: 'reload' });
      this.logger.error({ err }, 'rule reload failed; the running rules stay');
      const message = (err as Error).message;
      return {
        ok: false,
        errors: [{ file: '-', line: 1, col: 1, message, severity: 'error' }],
        rules: this.engine.rules.length,
      };
    }
    const { rules, diagnostics } = loaded;
    const errors = diagnostics.filter((d) => d.severity === 'error');
    if (errors.length > 0) {
      this.telemetry.faults.inc({ kind: 'reload' });
      this.logger.warn(
        { errors: errors.map(formatDiagnostic) },
        'rule reload rejected; the running rules stay',
      );
      return { ok: false, errors, rules: this.engine.rules.length };
    }
    const next = this.newEngine(rules);
    next.restore(this.engine.snapshot());
    // A checkpoint being written holds the old engine's state; the next is the new one's, whole.
    next.trackChanges(true);
    this.engine = next;
    this.rules = rules;
    // A rule whose classification changed (its query_key) starts with no state in its
    // new group: its key changed, so its old state would not apply anyway.
    this.rulesTasks?.reload((onAlert, onState) =>
      this.newEngine(this.rulesFor(false, rules), onAlert, onState),
    );
    this.globalTasks?.reload((onAlert, onState) =>
      this.newEngine(this.rulesFor(true, rules), onAlert, onState),
    );
    if (this.rulesTasks && this.bus instanceof KafkaBus) {
      void this.reconcileGlobalTasks(this.bus).catch((err: unknown) => {
        this.telemetry.faults.inc({ kind: 'reload' });
        this.logger.error({ err }, 'the global rules task could not start or stop');
      });
    }
    this.logger.info({ rules: rules.length }, 'rules reloaded');
    return { ok: true, errors: [], rules: rules.length };
  }

  /** Who may call the control routes and the ingest server's read routes. */
  private access(adminTokens: string[]): AccessOptions {
    return accessOptions(this.config.listen, adminTokens);
  }

  private routes(adminTokens: string[]): (app: FastifyInstance) => void {
    return createControlApi({
      access: this.access(adminTokens),
      logger: this.logger,
      ready: () => this.ready,
      stoppedPartitions: () => (this.bus instanceof KafkaBus ? this.bus.stoppedPartitions() : []),
      metrics: async () => ({
        contentType: this.telemetry.registry.contentType,
        body: await this.scrape(),
      }),
      rules: () => this.served('rules', '/v1/rules').ruleStats(),
      reload: () => this.served('rules', '/v1/rules/reload').reload(),
      alerts: () => [...this.served('rules', '/v1/alerts').recentAlerts].reverse(),
      store: () =>
        this.served('actions', 'the journal, the kill switch and silences').remediator.store,
      explain: (id) => this.served('actions', 'alert explanations').explain(id),
      onBusy: () => this.telemetry.faults.inc({ kind: 'store-busy' }),
    });
  }

  /** This pipeline, if it runs `role`; else a 404 saying where `what` is served. */
  private served(role: Role, what: string): this {
    if (this.roles.has(role)) return this;
    throw Object.assign(
      new Error(
        `this drover serve runs the roles ${[...this.roles].join(', ')}: ${what} is served where the ${role} role runs`,
      ),
      { statusCode: 404 },
    );
  }

  /**
   * Gauges read at scrape time, so they are as fresh as the scrape. A group's lag is read
   * only where its role runs: on Kafka each read is requests to the broker (the indexer
   * group's offsets and both topics' ends), which a rules worker scraped every second
   * paid for a group it does not consume, as every other process would again.
   */
  private async scrape(): Promise<string> {
    const bus = this.bus;
    const groups = [
      ...(this.roles.has('rules') ? [this.group('rules')] : []),
      ...(this.roles.has('index') ? [this.group('indexer')] : []),
    ];
    for (const group of groups) {
      try {
        // The rules' committed offsets follow their snapshots on Kafka: their lag is
        // what this worker's tasks have yet to process.
        const lag =
          this.rulesTasks && group === this.group('rules')
            ? await this.rulesTasks.lag()
            : await bus.lag(group);
        for (const topic of TOPICS) this.telemetry.busLag.set({ group, topic }, lag[topic]);
        if (this.globalTasks && group === this.group('rules')) {
          const global = await this.globalTasks.lag();
          for (const topic of TOPICS)
            this.telemetry.busLag.set({ group: `${group}-global`, topic }, global[topic]);
        }
      } catch (err) {
        this.logger.warn({ err, group }, 'could not read the bus lag');
      }
    }
    if (bus instanceof KafkaBus) {
      this.telemetry.busStoppedPartitions.reset();
      for (const p of bus.stoppedPartitions())
        this.telemetry.busStoppedPartitions.set(
          { group: p.group, topic: p.topic, partition: String(p.partition) },
          1,
        );
    }
    if (this.roles.has('rules')) {
      // Counts only: ruleStats() walks every key for its bytes, which a scrape every few
      // seconds would pay on the loop in proportion to the state (/v1/rules still does).
      // On Kafka, the tasks' counts summed per rule of the worker's own engine (as
      // ruleStats()), 0 where no task holds a key.
      const own = this.engine.keyCounts();
      const keys = new Map(own.map((c) => [c.rule, this.rulesTasks ? 0 : c.keys]));
      if (this.rulesTasks)
        for (const e of this.taskEngines())
          for (const c of e.keyCounts()) {
            const n = keys.get(c.rule);
            if (n !== undefined) keys.set(c.rule, n + c.keys);
          }
      for (const [rule, n] of keys) this.telemetry.ruleKeys.set({ rule }, n);
      this.countEngineEvents();
    }
    if (this.roles.has('actions')) {
      this.telemetry.notificationGroups.set(this.remediator.groupCount);
      const overflow = this.remediator.groupOverflow;
      this.telemetry.notificationGroupOverflow.inc(overflow - this.groupOverflowSeen);
      this.groupOverflowSeen = overflow;
    }
    return this.telemetry.registry.metrics();
  }

  /** The step a stop is in (logged when it outlasts `shutdownTimeout`). */
  stopping: string | undefined;

  /** SIGTERM: stop accepting, drain, snapshot, close. */
  async stop(): Promise<void> {
    await this.close();
    this.logger.info('drover stopped');
  }

  /**
   * Stops whatever has been started, each part even when another fails to stop (logged):
   * after a full start, at SIGTERM; after a failed one, whatever it got to.
   */
  private async close(): Promise<void> {
    this.ready = false;
    this.closing = true;
    clearInterval(this.snapshotTimer);
    this.ticker?.stop();
    clearInterval(this.pruneTimer);
    const step = async (what: string, fn: () => unknown) => {
      this.stopping = what;
      const started = performance.now();
      try {
        await fn();
      } catch (err) {
        this.logger.error({ err }, `${what} failed while stopping`);
      }
      const ms = Math.round(performance.now() - started);
      if (ms >= 1_000) this.logger.info({ step: what, ms }, 'a slow step while stopping');
    };
    // Notification groups still waiting go out now, while their adapters are open
    // (bounded: Remediator.close() waits at most 10 s for them).
    const remediator = this.remediator as Remediator<RemediationStore> | undefined;
    if (remediator) await step('sending notification groups', () => remediator.close());
    // The supervised fleet goes first, while the endpoint can still take its last logs.
    for (const [name, adapter] of this.adapters)
      await step(`closing adapter ${name}`, () => adapter.close?.());
    await step('closing the endpoint', () => this.server?.close());
    // A global task starting or stopping after a reload finishes first.
    await step('the global task starting or stopping', () => this.globalChange);
    this.rulesTasks?.quiesce();
    this.globalTasks?.quiesce();
    for (const c of this.consumers) await step('stopping a consumer', () => c.stop());
    await step('waiting for actions in flight', () => Promise.allSettled([...this.pendingActions]));
    const tasks = this.rulesTasks;
    const global = this.globalTasks;
    if (tasks)
      await step('the last rules task snapshots', () =>
        Promise.all([tasks.stop(), global?.stop()]),
      );
    else if (this.engine && this.checkpoints)
      await step('writing the rule snapshot', () =>
        this.checkpoints!.flush(this.engine, this.offsets),
      );
    for (const close of this.closers.reverse()) await step('closing', close);
    this.closers = [];
    this.consumers = [];
    this.stopping = undefined;
  }
}

function readTls(files: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  try {
    return { cert: readFileSync(files.cert), key: readFileSync(files.key) };
  } catch (err) {
    throw new ConfigError(`listen.tls: ${(err as Error).message}`);
  }
}
