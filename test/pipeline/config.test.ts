import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, withRoles } from '../../pipeline/config.ts';

/** Writes a configuration file and loads it, with the environment given (none by default). */
function load(yaml: string, env: NodeJS.ProcessEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'drover-config-'));
  const path = join(dir, 'drover.yaml');
  writeFileSync(path, yaml);
  return { dir, config: loadConfig(path, env) };
}

const refused = (yaml: string, env: NodeJS.ProcessEnv = {}) => {
  try {
    load(yaml, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('the configuration was accepted');
};

describe('configuration: action sets', () => {
  it('take the notify grouping options, checked at load', () => {
    const { config } = load(
      'actionSets:\n  page:\n    - { adapter: pager, operation: notify, group_by: [rule, labels.team], group_wait: 10s, group_interval: 1m }\n',
    );
    expect(config.actionSets.page![0]).toMatchObject({ group_by: ['rule', 'labels.team'] });
    expect(
      refused(
        'actionSets:\n  page:\n    - { adapter: pager, operation: notify, group_by: [host] }\n',
      ),
    ).toMatch(/actionSets.page\[0\]: group_by is a list of rule, labels.X or key.FIELD/);
    expect(
      refused(
        'actionSets:\n  page:\n    - { adapter: pager, operation: notify, group_wait: soon }\n',
      ),
    ).toMatch(/actionSets.page\[0\]: invalid duration "soon"/);
    expect(
      refused('actionSets:\n  fix:\n    - { adapter: fleet, operation: scale, group_wait: 5s }\n'),
    ).toMatch(
      /actionSets.fix\[0\]: group_by, group_wait, group_interval apply to notify actions only/,
    );
  });
});

describe('configuration: actions.store', () => {
  it('is SQLite in the state directory by default, as before', () => {
    const { dir, config } = load('stateDir: state\n');
    expect(config.actions).toEqual({ store: 'sqlite', path: join(dir, 'state', 'actions.db') });
    expect(load('').config.actions).toMatchObject({ store: 'sqlite' });
  });

  it('sqlite takes a path, relative to the state directory', () => {
    const { dir, config } = load('stateDir: state\nactions: { store: sqlite, path: j/a.db }\n');
    expect(config.actions).toEqual({ store: 'sqlite', path: join(dir, 'state', 'j', 'a.db') });
    expect(load('actions: { path: /var/lib/drover/a.db }\n').config.actions).toEqual({
      store: 'sqlite',
      path: '/var/lib/drover/a.db',
    });
  });

  it('elasticsearch uses the index URL and prefix, ELASTICSEARCH_URL, or its own', () => {
    expect(
      load(
        'index: { kind: elasticsearch, url: "http://es:9200", prefix: prod }\nactions: { store: elasticsearch }\n',
      ).config.actions,
    ).toEqual({ store: 'elasticsearch', url: 'http://es:9200', prefix: 'prod' });
    expect(
      load('actions: { store: elasticsearch }\n', { ELASTICSEARCH_URL: 'https://es.internal:9200' })
        .config.actions,
    ).toEqual({ store: 'elasticsearch', url: 'https://es.internal:9200', prefix: 'drover' });
    expect(
      load(
        'index: { kind: embedded }\nactions: { store: elasticsearch, url: "http://state:9200", prefix: drover-state }\n',
      ).config.actions,
    ).toEqual({ store: 'elasticsearch', url: 'http://state:9200', prefix: 'drover-state' });
  });

  it('refuses what it cannot use, saying what it takes', () => {
    expect(refused('actions: { store: postgres }\n')).toMatch(
      /actions.store is sqlite or elasticsearch, not "postgres"/,
    );
    expect(refused('actions: { store: elasticsearch }\n')).toMatch(
      /actions.store elasticsearch needs an Elasticsearch URL: actions.url, index.url or ELASTICSEARCH_URL/,
    );
    expect(refused('actions: { store: elasticsearch, url: "es:9200" }\n')).toMatch(
      /"es:9200" is not an http\(s\) URL/,
    );
    expect(
      refused('actions: { store: elasticsearch, url: "http://es:9200", prefix: Prod }\n'),
    ).toMatch(/actions.prefix "Prod" is not a valid index name prefix/);
    expect(
      refused('actions: { store: elasticsearch, url: "http://es:9200", path: a.db }\n'),
    ).toMatch(/actions.path is for actions.store sqlite/);
    expect(refused('actions: { url: "http://es:9200" }\n')).toMatch(
      /actions.url is for actions.store elasticsearch/,
    );
    expect(refused('actions: { store: sqlite, path: 3 }\n')).toMatch(
      /actions.path must be a non-empty string/,
    );
    expect(refused('actions: { stroe: sqlite }\n')).toMatch(
      /unknown field "actions.stroe" \(known: store, path, url, prefix, retention, maxAlertBytes\)/,
    );
    expect(refused('actions: sqlite\n')).toMatch(/actions must be a mapping/);
  });
});

describe('configuration: listen, bus, index and rules', () => {
  it('refuses unknown fields in each section, naming the known ones', () => {
    expect(refused('listen: { prot: 4280 }\n')).toMatch(
      /unknown field "listen.prot" \(known: host, port, statsdPort/,
    );
    expect(refused('bus: { kind: kafka, broker: [k:9092] }\n')).toMatch(
      /unknown field "bus.broker"/,
    );
    expect(refused('index: { kind: embedded, path: x }\n')).toMatch(/unknown field "index.path"/);
    expect(refused('rules: { path: [rules] }\n')).toMatch(/unknown field "rules.path"/);
  });

  it('rules.maxKeysPerRule and rules.maxTermsPerRule: 100,000 by default, whole numbers ≥ 1', () => {
    expect(load('').config.rules).toMatchObject({
      maxKeysPerRule: 100_000,
      maxTermsPerRule: 100_000,
    });
    expect(
      load('rules: { maxKeysPerRule: 5000, maxTermsPerRule: 20 }\n').config.rules,
    ).toMatchObject({ maxKeysPerRule: 5000, maxTermsPerRule: 20 });
    expect(refused('rules: { maxKeysPerRule: 0 }\n')).toMatch(
      /rules.maxKeysPerRule must be a whole number ≥ 1/,
    );
    expect(refused('rules: { maxTermsPerRule: 1.5 }\n')).toMatch(
      /rules.maxTermsPerRule must be a whole number ≥ 1/,
    );
  });

  it('rules.maxFutureSkew is a duration, 5m by default', () => {
    expect(load('rules: { paths: [r] }\n').config.rules.maxFutureSkewMs).toBe(300_000);
    expect(load('rules: { paths: [r], maxFutureSkew: 30s }\n').config.rules.maxFutureSkewMs).toBe(
      30_000,
    );
    expect(refused('rules: { paths: [r], maxFutureSkew: soon }\n')).toMatch(/rules\.maxFutureSkew/);
  });

  it('bus.maxAttempts: failures of a message before it is dead-lettered, 3 by default', () => {
    expect(load('').config.bus.maxAttempts).toBe(3);
    expect(load('bus: { maxAttempts: 5 }\n').config.bus.maxAttempts).toBe(5);
    expect(refused('bus: { maxAttempts: 0 }\n')).toMatch(/bus.maxAttempts is a whole number/);
  });

  it("bus.sessionTimeout: the Kafka groups' session timeout, 6s to 30m, kafkajs's when absent", () => {
    const kafka = (more: string) => `bus: { kind: kafka, brokers: k:9092${more} }\n`;
    const bus = (yaml: string) => load(yaml).config.bus as { sessionTimeoutMs?: number };
    expect(bus(kafka('')).sessionTimeoutMs).toBeUndefined();
    expect(bus(kafka(', sessionTimeout: 6s')).sessionTimeoutMs).toBe(6_000);
    expect(bus(kafka(', sessionTimeout: 30m')).sessionTimeoutMs).toBe(1_800_000);
    expect(refused(kafka(', sessionTimeout: 5s'))).toMatch(/bus.sessionTimeout must be from 6s/);
    expect(refused(kafka(', sessionTimeout: 31m'))).toMatch(/bus.sessionTimeout must be from 6s/);
    expect(refused(kafka(', sessionTimeout: soon'))).toMatch(/bus\.sessionTimeout/);
  });

  it('bus.corruptBatch: stop (the default) or skip, on the Kafka bus only', () => {
    const kafka = (more: string) => `bus: { kind: kafka, brokers: k:9092${more} }\n`;
    const bus = (yaml: string) => load(yaml).config.bus as { corruptBatch?: string };
    expect(bus(kafka('')).corruptBatch).toBe('stop');
    expect(bus(kafka(', corruptBatch: skip')).corruptBatch).toBe('skip');
    expect(refused(kafka(', corruptBatch: drop'))).toMatch(/bus\.corruptBatch.*stop or skip/);
    expect(refused('bus: { corruptBatch: skip }\n')).toMatch(
      /bus.corruptBatch is for the Kafka bus/,
    );
  });

  it('index.retention bounds the embedded index by age and size: 7d and 10 GiB by default', () => {
    expect(load('').config.index).toEqual({
      kind: 'embedded',
      retention: { maxAgeMs: Number.POSITIVE_INFINITY, maxBytes: 10 * 2 ** 30 },
    });
    expect(load('index: { retention: { maxAge: 2d, maxBytes: 5000 } }\n').config.index).toEqual({
      kind: 'embedded',
      retention: { maxAgeMs: 2 * 86_400_000, maxBytes: 5000 },
    });
    expect(refused('index: { retention: { maxAge: forever } }\n')).toMatch(
      /index\.retention\.maxAge/,
    );
    expect(refused('index: { retention: { maxAge: 0s } }\n')).toMatch(/maxAge must be > 0/);
    expect(refused('index: { retention: { maxBytes: 0 } }\n')).toMatch(/maxBytes/);
    expect(refused('index: { retention: { maxFiles: 3 } }\n')).toMatch(/maxFiles/);
  });

  it('listen.tls names a cert and a key, resolved against the configuration', () => {
    const { dir, config } = load('listen: { tls: { cert: tls/c.pem, key: tls/k.pem } }\n');
    expect(config.listen.tls).toEqual({
      cert: join(dir, 'tls/c.pem'),
      key: join(dir, 'tls/k.pem'),
    });
    expect(refused('listen: { tls: { cert: c.pem } }\n')).toMatch(/needs both cert and key/);
    expect(refused('listen: { tls: { cert: c, key: k, ca: x } }\n')).toMatch(
      /unknown field "listen.tls.ca"/,
    );
  });
});

describe('configuration: guards', () => {
  it('guards.inhibit: resolved (while the alert fires) or a period, per rule too', () => {
    const { config } = load('guards: { inhibit: resolved }\nruleGuards:\n  old: { inhibit: 5m }\n');
    expect(config.guards.inhibitUntilResolved).toBe(true);
    expect(config.guards.inhibitMs).toBeUndefined();
    expect(config.ruleGuards.old!.inhibitMs).toBe(300_000);
    expect(load('guards: { inhibit: 10m }\n').config.guards).toMatchObject({ inhibitMs: 600_000 });
    expect(refused('guards: { inhibit: forever }\n')).toMatch(/inhibit/);
  });

  it('guards.notify: cooldown, budgets and concurrency of notifications, per rule too', () => {
    const { config } = load(
      [
        'guards:',
        '  notify: { cooldown: 2m, budget: { max: 5, window: 1h }, concurrency: 2 }',
        'ruleGuards:',
        '  noisy: { notify: { globalBudget: { max: 50, window: 1d } } }',
        '',
      ].join('\n'),
    );
    expect(config.guards.notify).toEqual({
      cooldownMs: 120_000,
      budget: { max: 5, windowMs: 3_600_000 },
      concurrency: 2,
    });
    expect(config.ruleGuards.noisy!.notify).toEqual({
      globalBudget: { max: 50, windowMs: 86_400_000 },
    });
    expect(refused('guards: { notify: { cooldwn: 1m } }\n')).toMatch(
      /guards.notify: unknown guard "cooldwn" \(known: cooldown, budget/,
    );
    expect(refused('guards: { notify: 5 }\n')).toMatch(/guards.notify must be a mapping/);
  });

  it('guards.maxKeysPerRule: the storm cap, 10 min by default', () => {
    const { config } = load(
      'guards: { maxKeysPerRule: { max: 20, notify: pager } }\nruleGuards: { r: { maxKeysPerRule: { max: 5, window: 1h } } }\n',
    );
    expect(config.guards.maxKeysPerRule).toEqual({ max: 20, windowMs: 600_000, notify: 'pager' });
    expect(config.ruleGuards.r!.maxKeysPerRule).toEqual({ max: 5, windowMs: 3_600_000 });
  });

  it('actions.retention and actions.maxAlertBytes bound the journal; defaults stated', () => {
    expect(load('{}\n').config.journal).toEqual({
      maxAgeMs: 30 * 86_400_000,
      maxEntries: 1_000_000,
      maxAlertBytes: 16_384,
      pruneEveryMs: 3_600_000,
    });
    const { config } = load(
      'actions: { retention: { maxAge: 7d, maxEntries: 5000, every: 10m }, maxAlertBytes: 4096 }\n',
    );
    expect(config.journal).toEqual({
      maxAgeMs: 7 * 86_400_000,
      maxEntries: 5_000,
      maxAlertBytes: 4_096,
      pruneEveryMs: 600_000,
    });
    expect(refused('actions: { retention: { maxAge: 7d, keep: 5 } }\n')).toMatch(
      /unknown field "actions.retention.keep" \(known: maxAge, maxEntries, every\)/,
    );
    expect(refused('actions: { retention: { maxEntries: 0 } }\n')).toMatch(
      /maxEntries must be an integer ≥ 1/,
    );
  });
});

describe('configuration: roles', () => {
  it('default to all four; on Kafka a subset may run, rules and actions together', () => {
    expect(load('{}\n').config.roles).toEqual(['ingest', 'index', 'rules', 'actions']);
    const kafka = 'bus: { kind: kafka, brokers: [k:9092] }\n';
    expect(load(`${kafka}roles: [ingest]\n`).config.roles).toEqual(['ingest']);
    expect(load(`${kafka}roles: [index, rules, actions]\n`).config.roles).toEqual([
      'index',
      'rules',
      'actions',
    ]);
    expect(refused(`${kafka}roles: [ingest, rules]\n`)).toMatch(
      /drover\.yaml:2:8 roles: rules and actions go together/,
    );
    expect(refused(`${kafka}roles: [ingest, scheduler]\n`)).toMatch(
      /roles\[1\].*ingest, index, rules or actions/,
    );
    expect(refused(`${kafka}roles: []\n`)).toMatch(/roles/);
  });

  it('are not split on the embedded bus, from the file or from --roles', () => {
    expect(refused('roles: [ingest]\n')).toMatch(
      /roles: the roles can only be split on the Kafka bus/,
    );
    const { config } = load('{}\n');
    expect(() => withRoles(config, 'ingest')).toThrow(
      /--roles ingest: the roles can only be split on the Kafka bus/,
    );
    expect(withRoles(config, 'actions,rules, ingest,index').roles).toEqual([
      'actions',
      'rules',
      'ingest',
      'index',
    ]);
    const kafka = load('bus: { kind: kafka, brokers: [k:9092] }\n').config;
    expect(withRoles(kafka, 'ingest').roles).toEqual(['ingest']);
    expect(withRoles(kafka, undefined)).toBe(kafka);
    expect(() => withRoles(kafka, 'ingest,indexer')).toThrow(/unknown role "indexer"/);
    expect(() => withRoles(kafka, 'actions')).toThrow(/rules and actions go together/);
    expect(() => withRoles(kafka, ',')).toThrow(/no role/);
  });
});

describe('configuration: bus.compression', () => {
  it('is lz4 by default on Kafka, gzip or none on request, and nothing else', () => {
    const kafka = 'bus: { kind: kafka, brokers: [k:9092] }\n';
    expect(load(kafka).config.bus).toMatchObject({ kind: 'kafka', compression: 'lz4' });
    expect(
      load('bus: { kind: kafka, brokers: [k:9092], compression: gzip }\n').config.bus,
    ).toMatchObject({ compression: 'gzip' });
    expect(
      load('bus: { kind: kafka, brokers: [k:9092], compression: none }\n').config.bus,
    ).toMatchObject({ compression: 'none' });
    expect(
      load('bus: { kind: kafka, brokers: [k:9092], compression: lz4 }\n').config.bus,
    ).toMatchObject({ compression: 'lz4' });
    expect(refused('bus: { kind: kafka, brokers: [k:9092], compression: zstd }\n')).toMatch(
      /bus\.compression.*is gzip, lz4 or none/,
    );
    // The embedded bus's chunks are gzip (its default: it has no lz4) or text.
    expect(refused('bus: { compression: lz4 }\n')).toMatch(/lz4 is for the Kafka bus/);
  });
});

describe('configuration: the embedded bus', () => {
  it('takes bus.compression and bus.retention, keeping the bus defaults for what is absent', () => {
    expect(load('').config.bus).toEqual({ kind: 'embedded', maxAttempts: 3 });
    expect(
      load('bus: { compression: none, retention: { maxAge: 2d, maxBytes: 5000 } }\n').config.bus,
    ).toEqual({
      kind: 'embedded',
      compression: 'none',
      retention: { maxAgeMs: 2 * 86_400_000, maxBytes: 5000 },
      maxAttempts: 3,
    });
    expect(load('bus: { retention: { maxBytes: 5000 } }\n').config.bus).toMatchObject({
      retention: { maxBytes: 5000 },
    });
    expect(refused('bus: { retention: { maxAge: 0s } }\n')).toMatch(/bus\.retention\.maxAge/);
    expect(refused('bus: { retention: { maxBytes: 0 } }\n')).toMatch(/maxBytes/);
    expect(refused('bus: { retention: { maxMessages: 3 } }\n')).toMatch(/maxMessages/);
  });
});

describe('configuration: guards.maxAlertAge', () => {
  it('is 15 minutes unless set, 0s for no limit, and a rule may set its own', () => {
    expect(load('{}\n').config.guards.maxAlertAgeMs).toBe(900_000);
    const { config } = load(
      'guards: { maxAlertAge: 0s }\nruleGuards:\n  r1: { maxAlertAge: 2m }\n',
    );
    expect(config.guards.maxAlertAgeMs).toBe(0);
    expect(config.ruleGuards['r1']!.maxAlertAgeMs).toBe(120_000);
    expect(load('guards: { maxAlertAge: 1h }\n').config.guards.maxAlertAgeMs).toBe(3_600_000);
    expect(refused('guards: { maxAlertAge: soon }\n')).toMatch(/maxAlertAge/);
  });
});
