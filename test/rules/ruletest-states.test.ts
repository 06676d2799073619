import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTestFile } from '../../rules/index.ts';

/** Rule tests expect state changes with `state:` (docs/rules.md#testing-rules). */
const dir = mkdtempSync(join(tmpdir(), 'drover-ruletest-states-'));
writeFileSync(
  join(dir, 'burst.yaml'),
  `name: burst
type: frequency
query_key: host.name
num_events: 3
timeframe: 1m
realert: 10m
for: 10s
`,
);

function file(name: string, tests: string): string {
  const path = join(dir, name);
  writeFileSync(path, `rule_files: [burst.yaml]\ntests:\n${tests}`);
  return path;
}

// Time stops at the last event unless \`end\` carries it on (as in a backtest).
const EVENTS = `    end: 2m
    events:
      - { at: 0s, repeat: 5, every: 5s, event: { host.name: web-1 } }
`;

describe('rule tests with state', () => {
  it('pending, the alert and its resolution match; unexpected states are not failures', async () => {
    const report = await runTestFile(
      file(
        'ok.test.yaml',
        `  - name: pending, firing, resolved
${EVENTS}    expect:
      - { rule: burst, at: 10s, key: { host.name: web-1 }, state: pending }
      - { rule: burst, at: 20s, key: { host.name: web-1 } }
      - { rule: burst, at: 70s, key: { host.name: web-1 }, state: resolved }
  - name: firing alone, as before
${EVENTS}    expect:
      - { rule: burst, at: 20s, key: { host.name: web-1 }, state: firing }
`,
      ),
    );
    expect(report.diagnostics).toEqual([]);
    expect(report.results.map((r) => [r.name, r.failures])).toEqual([
      ['pending, firing, resolved', []],
      ['firing alone, as before', []],
    ]);
  });
  // Events at 0, 5, 10, 15, 20 s: the newest three are 10, 15, 20; the one at 10 leaves at 70 s.
  it('a resolution that does not come fails with what did', async () => {
    const report = await runTestFile(
      file(
        'wrong.test.yaml',
        `  - name: wrong time
${EVENTS}    expect:
      - { rule: burst, at: 20s }
      - { rule: burst, at: 80s, state: resolved }
`,
      ),
    );
    expect(report.results[0]!.failures).toEqual([
      'expected burst resolved at +1m20s (line 9), but burst was resolved at +1m10s key {"host.name":"web-1"}',
    ]);
  });
  it('an unknown state is an error at its position', async () => {
    const report = await runTestFile(
      file(
        'bad.test.yaml',
        `  - name: bad state
${EVENTS}    expect:
      - { rule: burst, at: 20s, state: closed }
`,
      ),
    );
    expect(report.diagnostics.map((d) => [d.line, d.col, d.message])).toEqual([
      [8, 40, 'bad state: expect[0].state is one of firing, pending, inactive, resolved'],
    ]);
  });
});
