import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serverEnv } from '../support/drover.ts';

/** `drover backtest --states` lists state changes beside the alerts (docs/rules.md#backtest). */
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'drover.js');
const dir = mkdtempSync(join(tmpdir(), 'drover-backtest-states-'));
const RULE = join(dir, 'burst.yaml');
writeFileSync(
  RULE,
  'name: burst\ntype: frequency\nquery_key: host.name\nnum_events: 3\ntimeframe: 1m\nrealert: 10m\n',
);
const T0 = Date.parse('2024-01-01T00:00:00Z');
// Three errors on web-1 at 0, 10 and 20 s, then a heartbeat at 5 min that carries time on.
const DATA = join(dir, 'events.ndjson');
writeFileSync(
  DATA,
  `${[0, 10, 20]
    .map((s) => JSON.stringify({ time: T0 + s * 1000, hostname: 'web-1', msg: 'failed' }))
    .concat(JSON.stringify({ time: T0 + 300_000, msg: 'tick' }))
    .join('\n')}\n`,
);

function drover(args: string[]) {
  const r = spawnSync(
    process.execPath,
    [BIN, 'backtest', '--rules', RULE, '--data', DATA, ...args],
    {
      encoding: 'utf8',
      env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent' },
      timeout: 60_000,
    },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('drover backtest and alert states', () => {
  it('--format json --states: a state line (with a "state" field) follows the alert it closes', () => {
    const r = drover(['--format', 'json', '--states']);
    expect(r.code).toBe(1);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.state ?? 'alert', l.at])).toEqual([
      ['alert', '2024-01-01T00:00:20.000Z'],
      // The error at 0 s leaves the window at 60 s: two errors are left.
      ['resolved', '2024-01-01T00:01:00.000Z'],
    ]);
    expect(lines[1]).toMatchObject({
      rule: 'burst',
      key: { 'host.name': 'web-1' },
      alert: lines[0]!.id,
      firing_since: lines[0]!.at,
    });
    expect(lines[1]!.id).toMatch(/^[0-9a-f]{24}$/);
    const summary = JSON.parse(r.stderr.trim().split('\n').at(-1)!) as {
      summary: { states: Record<string, number> };
    };
    expect(summary.summary.states).toEqual({ pending: 0, inactive: 0, resolved: 1 });
  });
  it('without --states standard output stays one alert per line; text counts the changes', () => {
    const json = drover(['--format', 'json']);
    expect(json.stdout.trim().split('\n')).toHaveLength(1);
    const text = drover([]);
    expect(text.stderr).toMatch(/1 alerts, 0 bad lines, 0 late events, 1 resolved, 0 pending/);
    const listed = drover(['--states']);
    expect(listed.stdout).toContain(
      `2024-01-01T00:01:00.000Z  burst  frequency  host.name=web-1  resolved (closes alert `,
    );
  });
});
