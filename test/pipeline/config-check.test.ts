import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ConfigError, loadConfig } from '../../pipeline/config.ts';
import schema from '../../pipeline/config.schema.json' with { type: 'json' };
import ruleSchema from '../../rules/schema.json' with { type: 'json' };

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The diagnostics of a refused configuration, as `line:col message`. */
function problems(yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'drover-config-schema-'));
  const path = join(dir, 'drover.yaml');
  writeFileSync(path, yaml);
  try {
    loadConfig(path, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    for (const d of e.diagnostics) expect(e.message).toContain(`${path}:${d.line}:${d.col} `);
    return e.diagnostics.map((d) => `${d.line}:${d.col} ${d.message}`);
  }
  throw new Error('the configuration was accepted');
}

describe('configuration: every problem at once, at file:line:col', () => {
  it('reports three errors in three sections, each at its node', () => {
    expect(
      problems(
        [
          'listen:',
          '  port: 99999',
          'bus:',
          '  kind: rabbit',
          'rules:',
          '  paths: [rules]',
          '  maxKeysPerRule: 0',
          '',
        ].join('\n'),
      ),
    ).toEqual([
      '2:9 listen.port must be a port number',
      '4:9 bus.kind is embedded or kafka',
      '7:19 rules.maxKeysPerRule must be a whole number ≥ 1',
    ]);
  });

  it('reports an unknown key at the key (typo protection), with the known ones', () => {
    expect(
      problems('stateDir: s\nlisten:\n  host: 0.0.0.0\n  prot: 4280\nsnapshotEvry: 5s\n'),
    ).toEqual([
      '4:3 unknown field "listen.prot" (known: host, port, statsdPort, statsdHost, tokens, apiKeys, readTokens, adminTokens, allowedHosts, maxBodyBytes, tls)',
      '5:1 unknown field "snapshotEvry" (known: stateDir, listen, bus, index, rules, actions, adapters, actionSets, guards, ruleGuards, snapshotEvery, shutdownTimeout, roles)',
    ]);
  });

  it('semantic problems are positioned and reported together too', () => {
    expect(
      problems('rules:\n  allowedLateness: soon\nsnapshotEvery: never\nbus: { kind: kafka }\n'),
    ).toEqual([
      expect.stringMatching(/^2:20 rules.allowedLateness: invalid duration "soon"/),
      expect.stringMatching(/^3:16 snapshotEvery: invalid duration "never"/),
      '4:14 bus.kind kafka needs bus.brokers (or KAFKA_BROKERS)',
    ]);
  });

  it('bus.corruptBatch is positioned when it is neither stop nor skip', () => {
    expect(problems('bus:\n  kind: kafka\n  brokers: k:9092\n  corruptBatch: drop\n')).toEqual([
      expect.stringMatching(/^4:17 bus\.corruptBatch.*stop or skip/),
    ]);
  });

  it('checks action sets with the validator of rule files and of the policy', () => {
    expect(
      problems(
        'actionSets:\n  grow:\n    - { adapter: fleet, operation: scale, params: { to: 3, by: 1 } }\n    - { adapter: fleet, operation: reboot }\n',
      ),
    ).toEqual([
      '3:51 actionSets.grow[0]: scale takes params.to or params.by, not both',
      '4:36 actionSets.grow[1]: "operation" must be one of kill-and-replace, scale, notify',
    ]);
  });

  it('a YAML syntax error or a duplicate key has its position', () => {
    expect(problems('listen:\n  port: 1\n  port: 2\n')[0]).toMatch(
      /^3:3 .*[Mm]ap keys must be unique/,
    );
  });
});

describe('config.schema.json', () => {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const validate = ajv.compile(schema);

  it('validates deploy/drover.yaml, which names it for editors', () => {
    const text = readFileSync(join(ROOT, 'deploy/drover.yaml'), 'utf8');
    expect(text.split('\n')[0]).toBe(
      '# yaml-language-server: $schema=../pipeline/config.schema.json',
    );
    const ok = validate(parse(text));
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
    expect(() => loadConfig(join(ROOT, 'deploy/drover.yaml'), { DROVER_TOKEN: 'x' })).not.toThrow();
  });

  it('shares its action, condition and duration definitions with rules/schema.json', () => {
    for (const name of ['action', 'condition', 'duration'] as const)
      expect(schema.$defs[name], name).toEqual(ruleSchema.$defs[name]);
  });
});
