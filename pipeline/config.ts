import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Document, LineCounter } from 'yaml';
import {
  type ActionObject,
  DEFAULT_JOURNAL_BOUNDS,
  DEFAULT_MAX_ALERT_AGE_MS,
  type GuardConfig,
  type JournalBounds,
} from '../actions/index.ts';
import {
  type Diagnostic,
  FileContext,
  formatDiagnostic,
  type Path,
  parseDuration,
  readYamlDocument,
} from '../rules/index.ts';
import { checkConfigStructure } from './config-check.ts';

/**
 * `drover serve --config drover.yaml`. Every field has a default that works on a laptop
 * with nothing installed (embedded back ends under `.drover/`); environment variables
 * override the connection settings. The file is checked against its JSON Schema
 * (config.schema.json, config-check.ts), then for what a schema cannot say (durations,
 * settings that need one another, the environment); every problem is reported, as
 * `file:line:col message`, before the configuration is refused.
 */
export interface DroverConfig {
  /** Where embedded state lives (bus, index, journal, snapshots). */
  stateDir: string;
  listen: {
    host: string;
    port: number;
    statsdPort: number | false;
    /** Where statsd binds (UDP has no authentication): 127.0.0.1 unless configured. */
    statsdHost?: string;
    /** Ingest credentials: they publish events, nothing else. */
    tokens: string[];
    apiKeys: string[];
    /** May read the control API (rules, alerts, journal, silences, /metrics); also DROVER_READ_TOKEN. */
    readTokens?: string[];
    /**
     * May act (kill switch, silences, reload), read and ingest. Empty: a token is
     * generated into the state directory at start (pipeline/admin-token.ts).
     */
    adminTokens?: string[];
    /** More Host names the control API answers to besides the listen host and localhost. */
    allowedHosts?: string[];
    maxBodyBytes: number;
    /** PEM files; when set the endpoint speaks HTTPS only. */
    tls?: { cert: string; key: string };
  };
  /**
   * `maxAttempts`: failures of one message, on its own, before a consumer group
   * dead-letters it and moves on (default 3; see ingest/bus/deliver.ts).
   */
  bus: (
    | {
        kind: 'embedded';
        /** How the log's chunks are stored (default gzip; see EmbeddedBusOptions). */
        compression?: 'gzip' | 'none';
        /** `bus.retention` (ingest/bus/embedded/retention.ts); the bus's defaults when absent. */
        retention?: { maxAgeMs?: number; maxBytes?: number };
      }
    | {
        kind: 'kafka';
        brokers: string[];
        topicPrefix: string;
        /** How record batches are compressed (default lz4; see KafkaBusOptions). */
        compression?: 'gzip' | 'lz4' | 'none';
      }
  ) & {
    maxAttempts?: number;
    /**
     * Kafka: `bus.sessionTimeout`, the consumer groups' session timeout (absent: kafkajs's
     * 30 s); heartbeats go every third of it, at most every 3 s (KafkaBusOptions).
     */
    sessionTimeoutMs?: number;
    /**
     * Kafka: `bus.corruptBatch`, what a consumer group does with a record batch still
     * corrupt when fetched again (default `stop`; KafkaBusOptions.corruptBatch).
     */
    corruptBatch?: 'stop' | 'skip';
  };
  index:
    | {
        kind: 'embedded';
        /** `index.retention`: whole day partitions go past these (ingest/sinks/embedded.ts). */
        retention?: { maxAgeMs: number; maxBytes: number };
      }
    | { kind: 'elasticsearch'; url: string; prefix: string }
    | { kind: 'none' };
  /**
   * `maxFutureSkewMs`: how far past the wall clock an event's time may lie before the
   * rules engine refuses it (it would drag the watermark, and every deadline, ahead).
   * Parsed configs always set it; absent, the engine's default (5m) holds.
   */
  rules: {
    paths: string[];
    /**
     * True when the configuration names no rules.paths and the default (./rules) is used:
     * a missing folder then means no rules yet, and drover serve starts without any.
     */
    defaultPaths?: boolean;
    allowedLatenessMs: number;
    /**
     * How long an input of the rules' event-time merge, caught up and quiet, holds the
     * others back (`rules.idleTimeout`; pipeline/rules-input.ts). Absent: 1 s.
     */
    idleTimeoutMs?: number;
    maxFutureSkewMs?: number;
    /** Keys a rule without max_keys holds at most (absent: the engine's, 100,000). */
    maxKeysPerRule?: number;
    /** Terms a new_term rule without max_terms holds at most (absent: 100,000). */
    maxTermsPerRule?: number;
    /**
     * On Kafka, the fields a key may include to follow the partitioning
     * (`rules.partitionFields`, docs/scale-out.md): a rule whose query_key includes one
     * runs in the partition tasks, the others in the global task. Absent: [service.name].
     */
    partitionFields?: string[];
  };
  /**
   * Where remediation state lives (journal, claims, ledger, kill switch, silences):
   * SQLite for one host (default `<stateDir>/actions.db`), Elasticsearch for workers on
   * several hosts. Absent means SQLite in the state directory.
   */
  actions?:
    { store: 'sqlite'; path: string } | { store: 'elasticsearch'; url: string; prefix: string };
  /** Journal bounds (`actions.retention`, `actions.maxAlertBytes`) and how often to prune. */
  journal?: JournalBounds & { pruneEveryMs: number };
  adapters: Record<string, { type: string; [option: string]: unknown }>;
  actionSets: Record<string, ActionObject[]>;
  guards: GuardConfig;
  ruleGuards: Record<string, GuardConfig>;
  snapshotEveryMs: number;
  /** How long `drover serve` may take to stop (SIGTERM) before it exits anyway, non-zero. */
  shutdownTimeoutMs: number;
  /**
   * What this process runs (`roles`, `drover serve --roles`; default all four): see
   * ROLES and checkRoles, and docs/scale-out.md. Absent: all four.
   */
  roles?: Role[];
  /** The directory relative paths in the file are resolved against. */
  baseDir: string;
}

/** `bus.sessionTimeout`'s range, ms: Kafka's default group.min/max.session.timeout.ms. */
export const SESSION_TIMEOUT_BOUNDS = { min: 6_000, max: 30 * 60_000 };

/**
 * The parts of `drover serve`: `ingest` the HTTP and statsd listeners that publish to
 * the bus, `index` the indexer consumer group (and /v1/search), `rules` the rules
 * consumer group with its engine and snapshots, `actions` remediation (adapters, guard
 * rails, the journal).
 */
export const ROLES = ['ingest', 'index', 'rules', 'actions'] as const;
export type Role = (typeof ROLES)[number];

/**
 * Why a set of roles cannot run, or undefined when it can. The embedded bus is a file
 * one process owns, so only Kafka lets the roles run in separate processes; alerts reach
 * the remediator in process, not through a topic, so `rules` and `actions` go together.
 */
export function checkRoles(roles: readonly string[], bus: DroverConfig['bus']['kind']) {
  const unknown = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
  if (unknown.length > 0)
    return `unknown role ${unknown.map((r) => JSON.stringify(r)).join(', ')}: roles are ${ROLES.join(', ')}`;
  if (roles.length === 0) return `no role: name one or more of ${ROLES.join(', ')}`;
  if (ROLES.some((r) => !roles.includes(r)) && bus !== 'kafka')
    return `the roles can only be split on the Kafka bus (bus.kind kafka): the embedded bus is one process's file, so this process must run all of ${ROLES.join(', ')}`;
  if (roles.includes('rules') !== roles.includes('actions'))
    return 'rules and actions go together: alerts reach the remediator in the same process, not through a topic';
  return undefined;
}

/**
 * The configuration with the roles `drover serve --roles a,b` names instead of the
 * file's; a set that cannot run is refused.
 */
export function withRoles(config: DroverConfig, flag: string | undefined): DroverConfig {
  if (flag === undefined) return config;
  const roles = [...new Set(flag.split(',').map((r) => r.trim()))].filter((r) => r !== '');
  const problem = checkRoles(roles, config.bus.kind);
  if (problem) throw new ConfigError(`--roles ${flag}: ${problem}`);
  return { ...config, roles: roles as Role[] };
}

/** A refused configuration: its message lists every problem, one `file:line:col` line each. */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly diagnostics: Diagnostic[] = [],
  ) {
    super(message);
  }
}

function refuse(diagnostics: Diagnostic[]): ConfigError {
  const sorted = [...diagnostics].sort((a, b) => a.line - b.line || a.col - b.col);
  return new ConfigError(sorted.map(formatDiagnostic).join('\n'), sorted);
}

/** Reports a problem at a path of the file (the semantic checks go on after it). */
type Fail = (path: Path, message: string) => void;

export function loadConfig(
  path: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): DroverConfig {
  let raw: Record<string, unknown> = {};
  const baseDir = path ? dirname(resolve(path)) : process.cwd();
  let ctx = new FileContext(path ?? 'configuration', new Document(null), new LineCounter());
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`${path}: ${(err as Error).message}`);
    }
    const read = readYamlDocument(text, path, {
      empty: 'empty configuration',
      several: 'one configuration per file: this file holds several YAML documents',
      allowNone: true,
    });
    if ('diagnostics' in read) throw refuse(read.diagnostics);
    ctx = read.ctx;
    const parsed = read.data;
    if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      ctx.error([], 'the configuration is a mapping');
      throw refuse(ctx.diagnostics);
    }
    raw = (parsed ?? {}) as Record<string, unknown>;
  }
  checkConfigStructure(ctx, raw);
  if (ctx.diagnostics.length > 0) throw refuse(ctx.diagnostics);
  const config = build(raw, env, baseDir, (at, message) => ctx.error(at, message));
  if (ctx.diagnostics.length > 0) throw refuse(ctx.diagnostics);
  return config;
}

/** The configuration from a file that passed the schema; `fail` collects what is wrong. */
function build(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  baseDir: string,
  fail: Fail,
): DroverConfig {
  const obj = (v: unknown): Record<string, unknown> =>
    v === null || typeof v !== 'object' || Array.isArray(v) ? {} : (v as Record<string, unknown>);
  const duration = (v: unknown, name: string, fallback: number) => {
    if (v === undefined) return fallback;
    try {
      return parseDuration(v);
    } catch (err) {
      fail(name.split('.'), `${name}: ${(err as Error).message}`);
      return fallback;
    }
  };
  const positiveInteger = (v: unknown, _name: string, fallback: number) =>
    v === undefined ? fallback : (v as number);
  const listen = obj(raw.listen);
  const bus = obj(raw.bus);
  const index = obj(raw.index);
  const rules = obj(raw.rules);
  const port = Number(env.DROVER_PORT ?? listen.port ?? 4280);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    fail(['listen', 'port'], 'listen.port must be a port number (DROVER_PORT)');

  const brokers = env.KAFKA_BROKERS ?? (bus.brokers as string | string[] | undefined);
  const busKind = env.KAFKA_BROKERS ? 'kafka' : ((bus.kind as string | undefined) ?? 'embedded');
  if (busKind === 'kafka' && !brokers)
    fail(['bus', 'kind'], 'bus.kind kafka needs bus.brokers (or KAFKA_BROKERS)');
  if (busKind !== 'kafka' && bus.compression === 'lz4')
    fail(
      ['bus', 'compression'],
      'bus.compression lz4 is for the Kafka bus (embedded: gzip or none)',
    );
  if (busKind !== 'kafka' && bus.corruptBatch !== undefined)
    fail(
      ['bus', 'corruptBatch'],
      'bus.corruptBatch is for the Kafka bus (the embedded bus has no record batches)',
    );
  const maxAttempts = Number(bus.maxAttempts ?? 3);
  const sessionTimeoutMs =
    bus.sessionTimeout === undefined
      ? undefined
      : duration(bus.sessionTimeout, 'bus.sessionTimeout', SESSION_TIMEOUT_BOUNDS.min);
  // Kafka's brokers refuse a session timeout outside group.min.session.timeout.ms (6 s)
  // and group.max.session.timeout.ms (30 min) by default; the heartbeat interval, a third
  // of it, is then at least 2 s.
  if (
    sessionTimeoutMs !== undefined &&
    (sessionTimeoutMs < SESSION_TIMEOUT_BOUNDS.min || sessionTimeoutMs > SESSION_TIMEOUT_BOUNDS.max)
  )
    fail(
      ['bus', 'sessionTimeout'],
      "bus.sessionTimeout must be from 6s to 30m (Kafka's default group session bounds; heartbeats go every third of it)",
    );
  const esUrl = env.ELASTICSEARCH_URL ?? (index.url as string | undefined);
  const indexKind = env.ELASTICSEARCH_URL
    ? 'elasticsearch'
    : ((index.kind as string | undefined) ?? 'embedded');
  if (indexKind === 'elasticsearch' && !esUrl)
    fail(['index', 'kind'], 'index.kind elasticsearch needs index.url (or ELASTICSEARCH_URL)');

  const journal = parseJournal(obj(raw.actions), duration, fail);
  const actions = parseActions(obj(raw.actions), { url: esUrl, prefix: index.prefix }, fail);

  const rulePaths = (rules.paths ?? ['rules']) as string[];
  const adapters = obj(raw.adapters) as DroverConfig['adapters'];
  const guards = parseGuards(obj(raw.guards), 'guards', duration);
  const ruleGuards: Record<string, GuardConfig> = {};
  for (const [rule, g] of Object.entries(obj(raw.ruleGuards)))
    ruleGuards[rule] = parseGuards(obj(g), `ruleGuards.${rule}`, duration);

  const strings = (v: unknown): string[] => (v === undefined ? [] : (v as string[]));
  const statsdHost = (listen.statsdHost as string | undefined) ?? '127.0.0.1';

  const stateDir = resolve(
    baseDir,
    env.DROVER_STATE_DIR ?? (raw.stateDir as string | undefined) ?? '.drover',
  );
  return {
    stateDir,
    listen: {
      host: (listen.host as string | undefined) ?? '127.0.0.1',
      port,
      statsdPort: listen.statsdPort === false ? false : Number(listen.statsdPort ?? 8125),
      statsdHost,
      tokens: strings(listen.tokens).concat(env.DROVER_TOKEN ? [env.DROVER_TOKEN] : []),
      apiKeys: strings(listen.apiKeys),
      readTokens: strings(listen.readTokens).concat(
        env.DROVER_READ_TOKEN ? [env.DROVER_READ_TOKEN] : [],
      ),
      adminTokens: strings(listen.adminTokens).concat(
        env.DROVER_ADMIN_TOKEN ? [env.DROVER_ADMIN_TOKEN] : [],
      ),
      allowedHosts: strings(listen.allowedHosts),
      maxBodyBytes: Number(listen.maxBodyBytes ?? 16 << 20),
      ...(listen.tls !== undefined && { tls: parseTls(listen.tls, baseDir) }),
    },
    bus:
      busKind === 'kafka'
        ? {
            kind: 'kafka',
            brokers: (Array.isArray(brokers) ? brokers : String(brokers).split(',')).map((b) =>
              b.trim(),
            ),
            topicPrefix: (bus.topicPrefix as string | undefined) ?? 'drover.',
            compression: (bus.compression as 'gzip' | 'lz4' | 'none' | undefined) ?? 'lz4',
            maxAttempts,
            ...(sessionTimeoutMs !== undefined && { sessionTimeoutMs }),
            corruptBatch: (bus.corruptBatch as 'stop' | 'skip' | undefined) ?? 'stop',
          }
        : {
            kind: 'embedded',
            ...(bus.compression !== undefined && {
              compression: bus.compression as 'gzip' | 'none',
            }),
            ...(bus.retention !== undefined && {
              retention: parseBusRetention(obj(bus.retention), duration, fail),
            }),
            maxAttempts,
          },
    index:
      indexKind === 'elasticsearch'
        ? {
            kind: 'elasticsearch',
            url: esUrl!,
            prefix: (index.prefix as string | undefined) ?? 'drover',
          }
        : indexKind === 'none'
          ? { kind: 'none' }
          : {
              kind: 'embedded',
              retention: parseIndexRetention(obj(index.retention), duration, fail),
            },
    rules: {
      paths: rulePaths.map((p) => resolve(baseDir, p)),
      ...(rules.paths === undefined && { defaultPaths: true }),
      allowedLatenessMs: duration(rules.allowedLateness, 'rules.allowedLateness', 5_000),
      idleTimeoutMs: duration(rules.idleTimeout, 'rules.idleTimeout', 1_000),
      maxKeysPerRule: positiveInteger(rules.maxKeysPerRule, 'rules.maxKeysPerRule', 100_000),
      maxTermsPerRule: positiveInteger(rules.maxTermsPerRule, 'rules.maxTermsPerRule', 100_000),
      maxFutureSkewMs: duration(rules.maxFutureSkew, 'rules.maxFutureSkew', 5 * 60_000),
      partitionFields: (rules.partitionFields as string[] | undefined) ?? ['service.name'],
    },
    actions:
      actions.store === 'elasticsearch'
        ? actions
        : { store: 'sqlite', path: resolve(stateDir, actions.path ?? 'actions.db') },
    journal,
    adapters,
    actionSets: obj(raw.actionSets) as DroverConfig['actionSets'],
    guards,
    ruleGuards,
    snapshotEveryMs: duration(raw.snapshotEvery, 'snapshotEvery', 10_000),
    shutdownTimeoutMs: duration(raw.shutdownTimeout, 'shutdownTimeout', 30_000),
    roles: parseRoles(raw.roles, busKind, fail),
    baseDir,
  };
}

/** `roles: [ingest]`: the schema checked the names; checkRoles the combination. */
function parseRoles(v: unknown, busKind: string, fail: Fail): Role[] {
  if (v === undefined) return [...ROLES];
  const roles = v as Role[];
  const problem = checkRoles(roles, busKind as DroverConfig['bus']['kind']);
  if (problem) fail(['roles'], `roles: ${problem}`);
  return roles;
}

/**
 * The embedded index's `index.retention` defaults: no age limit, 10 GiB. Age is event time
 * (a day's file goes when the day is older than maxAge, and an event of such a day is not
 * indexed), so an age default would leave backfilled or replayed older logs unsearchable;
 * the size bound and the partition cap bound the disk either way.
 */
export const DEFAULT_INDEX_RETENTION = {
  maxAgeMs: Number.POSITIVE_INFINITY,
  maxBytes: 10 * 2 ** 30,
};

/**
 * `bus.retention: { maxAge: 7d, maxBytes: 1073741824 }` (the embedded bus; what is not
 * given keeps the bus's default, EmbeddedBusOptions). Not read with Kafka, whose topics
 * keep their own retention (KAFKA_BROKERS may turn a file written for the embedded bus
 * to Kafka, so it is not an error).
 */
function parseBusRetention(
  r: Record<string, unknown>,
  duration: (v: unknown, n: string, f: number) => number,
  fail: Fail,
): { maxAgeMs?: number; maxBytes?: number } {
  const maxAgeMs =
    r.maxAge === undefined ? undefined : duration(r.maxAge, 'bus.retention.maxAge', 0);
  if (maxAgeMs !== undefined && !(maxAgeMs > 0))
    fail(['bus', 'retention'], 'bus.retention.maxAge must be > 0');
  return {
    ...(maxAgeMs !== undefined && { maxAgeMs }),
    ...(r.maxBytes !== undefined && { maxBytes: r.maxBytes as number }),
  };
}

/** `index.retention: { maxAge: 7d, maxBytes: 10737418240 }` (the embedded index). */
function parseIndexRetention(
  r: Record<string, unknown>,
  duration: (v: unknown, n: string, f: number) => number,
  fail: Fail,
): { maxAgeMs: number; maxBytes: number } {
  const out = {
    maxAgeMs: duration(r.maxAge, 'index.retention.maxAge', DEFAULT_INDEX_RETENTION.maxAgeMs),
    maxBytes: (r.maxBytes as number | undefined) ?? DEFAULT_INDEX_RETENTION.maxBytes,
  };
  if (!(out.maxAgeMs > 0)) fail(['index', 'retention'], 'index.retention.maxAge must be > 0');
  return out;
}

/**
 * `actions.retention: { maxAge: 30d, maxEntries: 1000000, every: 1h }` and
 * `actions.maxAlertBytes: 16384`: how much journal the store keeps, pruned `every`.
 */
function parseJournal(
  a: Record<string, unknown>,
  duration: (v: unknown, n: string, f: number) => number,
  fail: Fail,
): NonNullable<DroverConfig['journal']> {
  const r = (a.retention ?? {}) as Record<string, unknown>;
  const count = (v: unknown, fallback: number) => (v === undefined ? fallback : (v as number));
  const d = DEFAULT_JOURNAL_BOUNDS;
  const out = {
    maxAgeMs: duration(r.maxAge, 'actions.retention.maxAge', d.maxAgeMs),
    maxEntries: count(r.maxEntries, d.maxEntries),
    maxAlertBytes: count(a.maxAlertBytes, d.maxAlertBytes),
    pruneEveryMs: duration(r.every, 'actions.retention.every', 3_600_000),
  };
  if (!(out.maxAgeMs > 0) || !(out.pruneEveryMs > 0))
    fail(['actions', 'retention'], 'actions.retention maxAge and every must be > 0');
  return out;
}
/** What Elasticsearch accepts in an index name, and what cannot be mistaken for a pattern. */
const INDEX_PREFIX = /^[a-z0-9][a-z0-9_.-]*$/;

/**
 * `actions.store`: `sqlite` (default; `path`, relative to the state directory) or
 * `elasticsearch` (`url` and `prefix`, by default those of the index, or
 * ELASTICSEARCH_URL).
 */
function parseActions(
  a: Record<string, unknown>,
  index: { url: string | undefined; prefix: unknown },
  fail: Fail,
): { store: 'sqlite'; path?: string } | { store: 'elasticsearch'; url: string; prefix: string } {
  const store = (a.store as 'sqlite' | 'elasticsearch' | undefined) ?? 'sqlite';
  const text = (name: string) => a[name] as string | undefined;
  if (store === 'sqlite') {
    for (const name of ['url', 'prefix'])
      if (a[name] !== undefined)
        fail(
          ['actions', name],
          `actions.${name} is for actions.store elasticsearch; the sqlite store takes actions.path`,
        );
    const path = text('path');
    return path === undefined ? { store } : { store, path };
  }
  if (a.path !== undefined)
    fail(
      ['actions', 'path'],
      'actions.path is for actions.store sqlite; the elasticsearch store takes actions.url and actions.prefix',
    );
  const url = text('url') ?? index.url ?? '';
  if (!url)
    fail(
      ['actions', 'store'],
      'actions.store elasticsearch needs an Elasticsearch URL: actions.url, index.url or ELASTICSEARCH_URL',
    );
  else {
    try {
      const u = new URL(url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      fail(
        a.url !== undefined ? ['actions', 'url'] : ['actions', 'store'],
        `actions.store elasticsearch: "${url}" is not an http(s) URL`,
      );
    }
  }
  const prefix = text('prefix') ?? (index.prefix as string | undefined) ?? 'drover';
  if (!INDEX_PREFIX.test(prefix))
    fail(
      a.prefix !== undefined ? ['actions', 'prefix'] : ['index', 'prefix'],
      `actions.prefix "${prefix}" is not a valid index name prefix (lowercase letters, digits, _ . -; not starting with _ . -)`,
    );
  return { store, url, prefix };
}

function parseGuards(
  g: Record<string, unknown>,
  name: string,
  duration: (v: unknown, n: string, f: number) => number,
): GuardConfig {
  const budget = (v: unknown, n: string, window = 3_600_000) => {
    if (v === undefined) return undefined;
    const b = v as { max: number; window?: unknown };
    return { max: b.max, windowMs: duration(b.window, `${n}.window`, window) };
  };
  const out: GuardConfig = {};
  if (g.dryRun !== undefined) out.dryRun = g.dryRun === true;
  if (g.cooldown !== undefined) out.cooldownMs = duration(g.cooldown, `${name}.cooldown`, 0);
  if (g.budget !== undefined) out.budget = budget(g.budget, `${name}.budget`);
  if (g.globalBudget !== undefined)
    out.globalBudget = budget(g.globalBudget, `${name}.globalBudget`);
  if (g.concurrency !== undefined) out.concurrency = Number(g.concurrency);
  if (g.minHealthy !== undefined) out.minHealthy = g.minHealthy as number | string;
  if (g.maxBlastRadius !== undefined) out.maxBlastRadius = g.maxBlastRadius as number | string;
  if (g.blastWindow !== undefined)
    out.blastWindowMs = duration(g.blastWindow, `${name}.blastWindow`, 600_000);
  if (g.breaker !== undefined) {
    const b = budget(g.breaker, `${name}.breaker`)!;
    out.breaker = {
      ...b,
      ...((g.breaker as { notify?: string }).notify && {
        notify: (g.breaker as { notify: string }).notify,
      }),
    };
  }
  if (g.maintenance !== undefined) out.maintenance = g.maintenance as GuardConfig['maintenance'];
  // `resolved`: while the service-wide alert fires; a duration: that long after it fired.
  if (g.inhibit === 'resolved') out.inhibitUntilResolved = true;
  else if (g.inhibit !== undefined) out.inhibitMs = duration(g.inhibit, `${name}.inhibit`, 300_000);
  // Global: DEFAULT_MAX_ALERT_AGE_MS unless set; a rule's only tightens it.
  if (g.maxAlertAge !== undefined)
    out.maxAlertAgeMs = duration(g.maxAlertAge, `${name}.maxAlertAge`, DEFAULT_MAX_ALERT_AGE_MS);
  else if (name === 'guards') out.maxAlertAgeMs = DEFAULT_MAX_ALERT_AGE_MS;
  if (g.maxKeysPerRule !== undefined) {
    const m: { notify?: unknown } | null = g.maxKeysPerRule;
    out.maxKeysPerRule = {
      ...budget(m ?? {}, `${name}.maxKeysPerRule`, 600_000)!,
      ...(typeof m?.notify === 'string' && { notify: m.notify }),
    };
  }
  if (g.notify !== undefined) {
    const n = g.notify as Record<string, unknown>;
    out.notify = {};
    if (n.cooldown !== undefined)
      out.notify.cooldownMs = duration(n.cooldown, `${name}.notify.cooldown`, 0);
    if (n.budget !== undefined) out.notify.budget = budget(n.budget, `${name}.notify.budget`);
    if (n.globalBudget !== undefined)
      out.notify.globalBudget = budget(n.globalBudget, `${name}.notify.globalBudget`);
    if (n.concurrency !== undefined) out.notify.concurrency = Number(n.concurrency);
  }
  return out;
}

/** `listen.tls: { cert, key }`: PEM files, relative to the configuration, read at start. */
function parseTls(v: unknown, baseDir: string): { cert: string; key: string } {
  const t = v as { cert: string; key: string };
  return { cert: resolve(baseDir, t.cert), key: resolve(baseDir, t.key) };
}
