import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  type ActionObject,
  DEFAULT_JOURNAL_BOUNDS,
  type GuardConfig,
  type JournalBounds,
} from '../actions/index.ts';
import { groupSpec } from '../actions/notify-groups.ts';
import { parseDuration } from '../rules/index.ts';

/**
 * `drover serve --config drover.yaml`. Every field has a default that works on a laptop
 * with nothing installed (embedded back ends under `.drover/`); environment variables
 * override the connection settings.
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
  bus: ({ kind: 'embedded' } | { kind: 'kafka'; brokers: string[]; topicPrefix: string }) & {
    maxAttempts?: number;
  };
  index:
    | { kind: 'embedded' }
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
    maxFutureSkewMs?: number;
    /** Keys a rule without max_keys holds at most (absent: the engine's, 100,000). */
    maxKeysPerRule?: number;
    /** Terms a new_term rule without max_terms holds at most (absent: 100,000). */
    maxTermsPerRule?: number;
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
  /** The directory relative paths in the file are resolved against. */
  baseDir: string;
}

export class ConfigError extends Error {}

const TOP = [
  'stateDir',
  'listen',
  'bus',
  'index',
  'rules',
  'actions',
  'adapters',
  'actionSets',
  'guards',
  'ruleGuards',
  'snapshotEvery',
];

export function loadConfig(
  path: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): DroverConfig {
  let raw: Record<string, unknown> = {};
  const baseDir = path ? dirname(resolve(path)) : process.cwd();
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`${path}: ${(err as Error).message}`);
    }
    const parsed = parseYaml(text) as unknown;
    if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed)))
      throw new ConfigError(`${path}: the configuration is a mapping`);
    raw = (parsed ?? {}) as Record<string, unknown>;
  }
  const where = path ?? 'configuration';
  for (const key of Object.keys(raw))
    if (!TOP.includes(key))
      throw new ConfigError(`${where}: unknown field "${key}" (known: ${TOP.join(', ')})`);
  const obj = (v: unknown, name: string): Record<string, unknown> => {
    if (v === undefined) return {};
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      throw new ConfigError(`${where}: ${name} must be a mapping`);
    return v as Record<string, unknown>;
  };
  const duration = (v: unknown, name: string, fallback: number) => {
    if (v === undefined) return fallback;
    try {
      return parseDuration(v);
    } catch (err) {
      throw new ConfigError(`${where}: ${name}: ${(err as Error).message}`);
    }
  };
  const positiveInteger = (v: unknown, name: string, fallback: number) => {
    if (v === undefined) return fallback;
    if (!Number.isSafeInteger(v) || (v as number) < 1)
      throw new ConfigError(`${where}: ${name} must be a whole number ≥ 1`);
    return v as number;
  };
  const listen = obj(raw.listen, 'listen');
  const bus = obj(raw.bus, 'bus');
  const index = obj(raw.index, 'index');
  const rules = obj(raw.rules, 'rules');
  const known: Array<[string, Record<string, unknown>, string[]]> = [
    [
      'listen',
      listen,
      [
        'host',
        'port',
        'statsdPort',
        'statsdHost',
        'tokens',
        'apiKeys',
        'readTokens',
        'adminTokens',
        'allowedHosts',
        'maxBodyBytes',
        'tls',
      ],
    ],
    ['bus', bus, ['kind', 'brokers', 'topicPrefix', 'maxAttempts']],
    ['index', index, ['kind', 'url', 'prefix']],
    [
      'rules',
      rules,
      ['paths', 'allowedLateness', 'maxFutureSkew', 'maxKeysPerRule', 'maxTermsPerRule'],
    ],
  ];
  for (const [section, value, fields] of known)
    for (const key of Object.keys(value))
      if (!fields.includes(key))
        throw new ConfigError(
          `${where}: unknown field "${section}.${key}" (known: ${fields.join(', ')})`,
        );
  const port = Number(env.DROVER_PORT ?? listen.port ?? 4280);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError(`${where}: listen.port must be a port number`);

  const brokers = env.KAFKA_BROKERS ?? (bus.brokers as string | string[] | undefined);
  const busKind = env.KAFKA_BROKERS ? 'kafka' : ((bus.kind as string | undefined) ?? 'embedded');
  if (busKind !== 'embedded' && busKind !== 'kafka')
    throw new ConfigError(`${where}: bus.kind is embedded or kafka`);
  if (busKind === 'kafka' && !brokers)
    throw new ConfigError(`${where}: bus.kind kafka needs bus.brokers (or KAFKA_BROKERS)`);
  const maxAttempts = Number(bus.maxAttempts ?? 3);
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 100)
    throw new ConfigError(`${where}: bus.maxAttempts is a whole number from 1 to 100`);
  const esUrl = env.ELASTICSEARCH_URL ?? (index.url as string | undefined);
  const indexKind = env.ELASTICSEARCH_URL
    ? 'elasticsearch'
    : ((index.kind as string | undefined) ?? 'embedded');
  if (!['embedded', 'elasticsearch', 'none'].includes(indexKind))
    throw new ConfigError(`${where}: index.kind is embedded, elasticsearch or none`);
  if (indexKind === 'elasticsearch' && !esUrl)
    throw new ConfigError(
      `${where}: index.kind elasticsearch needs index.url (or ELASTICSEARCH_URL)`,
    );

  const journal = parseJournal(obj(raw.actions, 'actions'), where, duration);
  const actions = parseActions(obj(raw.actions, 'actions'), where, {
    url: esUrl,
    prefix: index.prefix,
  });

  const rulePaths = (rules.paths ?? ['rules']) as unknown;
  if (!Array.isArray(rulePaths) || rulePaths.some((p) => typeof p !== 'string'))
    throw new ConfigError(`${where}: rules.paths is a list of files or folders`);
  const adapters = obj(raw.adapters, 'adapters') as DroverConfig['adapters'];
  for (const [name, a] of Object.entries(adapters)) {
    if (a === null || typeof a !== 'object' || typeof a.type !== 'string')
      throw new ConfigError(`${where}: adapters.${name} needs a type`);
  }
  const guards = parseGuards(obj(raw.guards, 'guards'), 'guards', duration);
  const ruleGuards: Record<string, GuardConfig> = {};
  for (const [rule, g] of Object.entries(obj(raw.ruleGuards, 'ruleGuards')))
    ruleGuards[rule] = parseGuards(obj(g, `ruleGuards.${rule}`), `ruleGuards.${rule}`, duration);

  const strings = (v: unknown, name: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((t) => typeof t !== 'string' || t === ''))
      throw new ConfigError(`${where}: listen.${name} is a list of non-empty strings`);
    return v as string[];
  };
  const statsdHost = listen.statsdHost ?? '127.0.0.1';
  if (typeof statsdHost !== 'string' || statsdHost === '')
    throw new ConfigError(`${where}: listen.statsdHost is a host name or address`);

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
      tokens: strings(listen.tokens, 'tokens').concat(env.DROVER_TOKEN ? [env.DROVER_TOKEN] : []),
      apiKeys: strings(listen.apiKeys, 'apiKeys'),
      readTokens: strings(listen.readTokens, 'readTokens').concat(
        env.DROVER_READ_TOKEN ? [env.DROVER_READ_TOKEN] : [],
      ),
      adminTokens: strings(listen.adminTokens, 'adminTokens').concat(
        env.DROVER_ADMIN_TOKEN ? [env.DROVER_ADMIN_TOKEN] : [],
      ),
      allowedHosts: strings(listen.allowedHosts, 'allowedHosts'),
      maxBodyBytes: Number(listen.maxBodyBytes ?? 16 << 20),
      ...(listen.tls !== undefined && { tls: parseTls(listen.tls, where, baseDir) }),
    },
    bus:
      busKind === 'kafka'
        ? {
            kind: 'kafka',
            brokers: (Array.isArray(brokers) ? brokers : String(brokers).split(',')).map((b) =>
              b.trim(),
            ),
            topicPrefix: (bus.topicPrefix as string | undefined) ?? 'drover.',
            maxAttempts,
          }
        : { kind: 'embedded', maxAttempts },
    index:
      indexKind === 'elasticsearch'
        ? {
            kind: 'elasticsearch',
            url: esUrl!,
            prefix: (index.prefix as string | undefined) ?? 'drover',
          }
        : indexKind === 'none'
          ? { kind: 'none' }
          : { kind: 'embedded' },
    rules: {
      paths: (rulePaths as string[]).map((p) => resolve(baseDir, p)),
      ...(rules.paths === undefined && { defaultPaths: true }),
      allowedLatenessMs: duration(rules.allowedLateness, 'rules.allowedLateness', 5_000),
      maxKeysPerRule: positiveInteger(rules.maxKeysPerRule, 'rules.maxKeysPerRule', 100_000),
      maxTermsPerRule: positiveInteger(rules.maxTermsPerRule, 'rules.maxTermsPerRule', 100_000),
      maxFutureSkewMs: duration(rules.maxFutureSkew, 'rules.maxFutureSkew', 5 * 60_000),
    },
    actions:
      actions.store === 'elasticsearch'
        ? actions
        : { store: 'sqlite', path: resolve(stateDir, actions.path ?? 'actions.db') },
    journal,
    adapters,
    actionSets: actionSets(obj(raw.actionSets, 'actionSets'), where),
    guards,
    ruleGuards,
    snapshotEveryMs: duration(raw.snapshotEvery, 'snapshotEvery', 10_000),
    baseDir,
  };
}

const ACTIONS_FIELDS = ['store', 'path', 'url', 'prefix', 'retention', 'maxAlertBytes'];
const RETENTION_FIELDS = ['maxAge', 'maxEntries', 'every'];

/**
 * `actions.retention: { maxAge: 30d, maxEntries: 1000000, every: 1h }` and
 * `actions.maxAlertBytes: 16384`: how much journal the store keeps, pruned `every`.
 */
function parseJournal(
  a: Record<string, unknown>,
  where: string,
  duration: (v: unknown, n: string, f: number) => number,
): NonNullable<DroverConfig['journal']> {
  const r = (a.retention ?? {}) as Record<string, unknown>;
  if (r === null || typeof r !== 'object' || Array.isArray(r))
    throw new ConfigError(`${where}: actions.retention must be a mapping`);
  for (const key of Object.keys(r))
    if (!RETENTION_FIELDS.includes(key))
      throw new ConfigError(
        `${where}: unknown field "actions.retention.${key}" (known: ${RETENTION_FIELDS.join(', ')})`,
      );
  const count = (v: unknown, name: string, fallback: number) => {
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new ConfigError(`${where}: ${name} must be an integer ≥ 1`);
    return v;
  };
  const d = DEFAULT_JOURNAL_BOUNDS;
  const out = {
    maxAgeMs: duration(r.maxAge, 'actions.retention.maxAge', d.maxAgeMs),
    maxEntries: count(r.maxEntries, 'actions.retention.maxEntries', d.maxEntries),
    maxAlertBytes: count(a.maxAlertBytes, 'actions.maxAlertBytes', d.maxAlertBytes),
    pruneEveryMs: duration(r.every, 'actions.retention.every', 3_600_000),
  };
  if (!(out.maxAgeMs > 0) || !(out.pruneEveryMs > 0))
    throw new ConfigError(`${where}: actions.retention maxAge and every must be > 0`);
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
  where: string,
  index: { url: string | undefined; prefix: unknown },
): { store: 'sqlite'; path?: string } | { store: 'elasticsearch'; url: string; prefix: string } {
  for (const key of Object.keys(a))
    if (!ACTIONS_FIELDS.includes(key))
      throw new ConfigError(
        `${where}: unknown field "actions.${key}" (known: ${ACTIONS_FIELDS.join(', ')})`,
      );
  const store = a.store ?? 'sqlite';
  const text = (name: string): string | undefined => {
    const v = a[name];
    if (v !== undefined && (typeof v !== 'string' || v === ''))
      throw new ConfigError(`${where}: actions.${name} must be a non-empty string`);
    return v;
  };
  if (store === 'sqlite') {
    for (const name of ['url', 'prefix'])
      if (a[name] !== undefined)
        throw new ConfigError(
          `${where}: actions.${name} is for actions.store elasticsearch; the sqlite store takes actions.path`,
        );
    const path = text('path');
    return path === undefined ? { store } : { store, path };
  }
  if (store === 'elasticsearch') {
    if (a.path !== undefined)
      throw new ConfigError(
        `${where}: actions.path is for actions.store sqlite; the elasticsearch store takes actions.url and actions.prefix`,
      );
    const url = text('url') ?? index.url;
    if (!url)
      throw new ConfigError(
        `${where}: actions.store elasticsearch needs an Elasticsearch URL: actions.url, index.url or ELASTICSEARCH_URL`,
      );
    try {
      const u = new URL(url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      throw new ConfigError(
        `${where}: actions.store elasticsearch: "${url}" is not an http(s) URL`,
      );
    }
    if (index.prefix !== undefined && typeof index.prefix !== 'string')
      throw new ConfigError(`${where}: index.prefix must be a string`);
    const prefix = text('prefix') ?? index.prefix ?? 'drover';
    if (!INDEX_PREFIX.test(prefix))
      throw new ConfigError(
        `${where}: actions.prefix "${prefix}" is not a valid index name prefix (lowercase letters, digits, _ . -; not starting with _ . -)`,
      );
    return { store, url, prefix };
  }
  throw new ConfigError(
    `${where}: actions.store is sqlite or elasticsearch, not ${JSON.stringify(store)}`,
  );
}

const GUARD_FIELDS = [
  'dryRun',
  'cooldown',
  'budget',
  'globalBudget',
  'concurrency',
  'minHealthy',
  'maxBlastRadius',
  'blastWindow',
  'breaker',
  'maintenance',
  'inhibit',
  'notify',
  'maxKeysPerRule',
];

const NOTIFY_GUARD_FIELDS = ['cooldown', 'budget', 'globalBudget', 'concurrency'];

function parseGuards(
  g: Record<string, unknown>,
  name: string,
  duration: (v: unknown, n: string, f: number) => number,
): GuardConfig {
  for (const key of Object.keys(g))
    if (!GUARD_FIELDS.includes(key))
      throw new ConfigError(`${name}: unknown guard "${key}" (known: ${GUARD_FIELDS.join(', ')})`);
  const budget = (v: unknown, n: string, window = 3_600_000) => {
    if (v === undefined) return undefined;
    const b = v as { max?: unknown; window?: unknown };
    if (typeof b.max !== 'number') throw new ConfigError(`${n}.max must be a number`);
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
  if (g.inhibit !== undefined) out.inhibitMs = duration(g.inhibit, `${name}.inhibit`, 300_000);
  if (g.maxKeysPerRule !== undefined) {
    const m = g.maxKeysPerRule as { notify?: unknown } | null;
    out.maxKeysPerRule = {
      ...budget(m ?? {}, `${name}.maxKeysPerRule`, 600_000)!,
      ...(typeof m?.notify === 'string' && { notify: m.notify }),
    };
  }
  if (g.notify !== undefined) {
    const n = g.notify as Record<string, unknown> | null;
    if (n === null || typeof n !== 'object' || Array.isArray(n))
      throw new ConfigError(`${name}.notify must be a mapping`);
    for (const key of Object.keys(n))
      if (!NOTIFY_GUARD_FIELDS.includes(key))
        throw new ConfigError(
          `${name}.notify: unknown guard "${key}" (known: ${NOTIFY_GUARD_FIELDS.join(', ')})`,
        );
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
function parseTls(v: unknown, where: string, baseDir: string): { cert: string; key: string } {
  const t = v as { cert?: unknown; key?: unknown } | null;
  if (t === null || typeof t !== 'object' || Array.isArray(t))
    throw new ConfigError(`${where}: listen.tls is { cert: FILE, key: FILE }`);
  for (const k of Object.keys(t))
    if (k !== 'cert' && k !== 'key')
      throw new ConfigError(`${where}: unknown field "listen.tls.${k}" (known: cert, key)`);
  if (typeof t.cert !== 'string' || typeof t.key !== 'string')
    throw new ConfigError(`${where}: listen.tls needs both cert and key (PEM file paths)`);
  return { cert: resolve(baseDir, t.cert), key: resolve(baseDir, t.key) };
}

/** Action sets as written; the notify grouping options of each action are checked here. */
function actionSets(sets: Record<string, unknown>, where: string): DroverConfig['actionSets'] {
  for (const [name, set] of Object.entries(sets)) {
    (Array.isArray(set) ? set : [set]).forEach((action: unknown, i) => {
      if (action === null || typeof action !== 'object') return;
      try {
        groupSpec(action as Record<string, unknown>);
      } catch (err) {
        throw new ConfigError(`${where}: actionSets.${name}[${i}]: ${(err as Error).message}`);
      }
    });
  }
  return sets as DroverConfig['actionSets'];
}
