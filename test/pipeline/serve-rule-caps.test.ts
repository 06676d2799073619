import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { errorLine, killServes, startServe, until, workdir } from '../support/drover.ts';

afterEach(killServes);

const PER_HOST = `name: per-host
type: frequency
query_key: host.name
num_events: 100
timeframe: 10m
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
`;

const NEW_HOST = `name: new-host
type: new_term
fields: host.name
max_terms: 4
`;

describe('drover serve: rule caps', () => {
  it('refuses keys past rules.maxKeysPerRule and terms past max_terms, in /metrics and the log', async () => {
    const dir = workdir('drover-caps-', {
      'rules/per-host.yaml': PER_HOST,
      'rules/new-host.yaml': NEW_HOST,
    });
    writeFileSync(
      join(dir, 'drover.yaml'),
      `stateDir: state
listen: { port: 0, statsdPort: false }
rules: { paths: [rules], allowedLateness: 1s, maxKeysPerRule: 3 }
`,
    );
    const served = await startServe(join(dir, 'drover.yaml'));
    const { url } = served;
    const t = Date.now();
    // Ten hosts the sender made up, one line each.
    const body = Array.from({ length: 10 }, (_, i) => errorLine(`made-up-${i}`, t + i)).join('\n');
    expect((await fetch(`${url}/ingest`, { method: 'POST', body })).status).toBe(200);
    const metrics = await until('the refusals in /metrics', async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return /drover_rule_terms_refused_total\{rule="new-host"\} 6/.test(text) &&
        /drover_rule_keys_refused_total\{rule="per-host"\} 7/.test(text)
        ? text
        : undefined;
    });
    expect(metrics).toMatch(/# HELP drover_rule_keys_refused_total /);
    expect(metrics).toMatch(/drover_rule_keys\{rule="per-host"\} 3/);
    expect(metrics).toMatch(/drover_rule_keys\{rule="new-host"\} 4/);
    const rules = (await (await fetch(`${url}/v1/rules`)).json()) as {
      rules: Array<{ rule: string; keysRefused: number; termsRefused?: number }>;
    };
    expect(rules.rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ rule: 'per-host', keys: 3, keysRefused: 7 }),
        expect.objectContaining({ rule: 'new-host', terms: 4, termsRefused: 6 }),
      ]),
    );
    // Logged, but once per rule per minute, not once per refused event.
    const warnings = served
      .log()
      .split('\n')
      .filter((l) => l.includes('refused at the rule'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(warnings).toEqual([
      expect.objectContaining({ rule: 'per-host', what: 'key', cap: 3, refused: 1 }),
      expect.objectContaining({ rule: 'new-host', what: 'term', cap: 4, refused: 1 }),
    ]);
  });
});
