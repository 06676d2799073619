import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ActionObject, GuardConfig } from '../actions/index.ts';
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
    tokens: string[];
    apiKeys: string[];
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
  rules: { paths: string[]; allowedLatenessMs: number };
  /**
   * Where remediation state lives (journal, claims, ledger, kill switch, silences):
   * SQLite for one host (default `<stateDir>/actions.db`), Elasticsearch for workers on
   * several hosts. Absent means SQLite in the state directory.
   */
  actions?:
    { store: 'sqlite'; path: string } | { store: 'elasticsearch'; url: string; prefix: string };
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
  const listen = obj(raw.listen, 'listen');
  const bus = obj(raw.bus, 'bus');
  const index = obj(raw.index, 'index');
  const rules = obj(raw.rules, 'rules');
  const known: Array<[string, Record<string, unknown>, string[]]> = [
    ['listen', listen, ['host', 'port', 'statsdPort', 'tokens', 'apiKeys', 'maxBodyBytes', 'tls']],
    ['bus', bus, ['kind', 'brokers', 'topicPrefix', 'maxAttempts']],
    ['index', index, ['kind', 'url', 'prefix']],
    ['rules', rules, ['paths', 'allowedLateness']],
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
      tokens: ((listen.tokens as string[] | undefined) ?? []).concat(
        env.DROVER_TOKEN ? [env.DROVER_TOKEN] : [],
      ),
      apiKeys: (listen.apiKeys as string[] | undefined) ?? [],
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
      allowedLatenessMs: duration(rules.allowedLateness, 'rules.allowedLateness', 5_000),
    },
    actions:
      actions.store === 'elasticsearch'
        ? actions
        : { store: 'sqlite', path: resolve(stateDir, actions.path ?? 'actions.db') },
    adapters,
    actionSets: obj(raw.actionSets, 'actionSets') as DroverConfig['actionSets'],
    guards,
    ruleGuards,
    snapshotEveryMs: duration(raw.snapshotEvery, 'snapshotEvery', 10_000),
    baseDir,
  };
}

const ACTIONS_FIELDS = ['store', 'path', 'url', 'prefix'];
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
];

function parseGuards(
  g: Record<string, unknown>,
  name: string,
  duration: (v: unknown, n: string, f: number) => number,
): GuardConfig {
  for (const key of Object.keys(g))
    if (!GUARD_FIELDS.includes(key))
      throw new ConfigError(`${name}: unknown guard "${key}" (known: ${GUARD_FIELDS.join(', ')})`);
  const budget = (v: unknown, n: string) => {
    if (v === undefined) return undefined;
    const b = v as { max?: unknown; window?: unknown };
    if (typeof b.max !== 'number') throw new ConfigError(`${n}.max must be a number`);
    return { max: b.max, windowMs: duration(b.window, `${n}.window`, 3_600_000) };
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
