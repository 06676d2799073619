import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serverEnv } from '../support/drover.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'drover.js');

function drover(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    input,
    encoding: 'utf8',
    env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent' },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const dir = mkdtempSync(join(tmpdir(), 'drover-cli-'));
const RULE = join(dir, 'errors.yaml');
writeFileSync(
  RULE,
  `name: web-error-burst
type: frequency
query_key: host.name
num_events: 3
timeframe: 1m
realert: 10m
filter:
  all:
    - { fact: log.level, operator: equal, value: error }
actions:
  - { adapter: fleet, operation: kill-and-replace, target: "{{ host.name }}" }
`,
);

/** pino lines: a burst of errors on web-1 at 00:01:00, 00:01:10, 00:01:20, another on web-2 at 00:05. */
function pinoLines(): string {
  const t0 = Date.parse('2024-01-01T00:00:00Z');
  const lines: string[] = [];
  for (const [host, at] of [
    ['web-1', 60],
    ['web-1', 70],
    ['web-1', 80],
    ['web-2', 300],
    ['web-2', 301],
    ['web-2', 302],
  ] as const) {
    lines.push(
      JSON.stringify({
        level: 50,
        time: t0 + at * 1000,
        hostname: host,
        name: 'web',
        msg: 'failed',
      }),
    );
    lines.push(
      JSON.stringify({
        level: 30,
        time: t0 + at * 1000 + 1,
        hostname: host,
        name: 'web',
        msg: 'ok',
      }),
    );
  }
  return `${lines.join('\n')}\n`;
}
const DATA = join(dir, 'events.ndjson');
writeFileSync(DATA, pinoLines());

describe('drover command line', () => {
  // Eight cold starts of the command, one after another: the help ones load no command.
  it('has help on every command and exits 2 on usage errors', { timeout: 30_000 }, () => {
    expect(drover(['--help']).code).toBe(0);
    for (const cmd of [['rules', 'lint'], ['rules', 'test'], ['backtest']]) {
      const r = drover([...cmd, '--help']);
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout).toContain(`drover ${cmd.join(' ')}`);
    }
    expect(drover(['frobnicate']).code).toBe(2);
    expect(drover(['rules', 'lint']).code).toBe(2);
    const r = drover(['backtest', '--data', DATA]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--rules is required');
    expect(drover(['backtest', '--rules', RULE, '--data', DATA, '--format', 'yaml']).code).toBe(2);
    expect(drover(['backtest', '--rules', RULE, '--data', DATA, '--bogus']).code).toBe(2);
  });

  it('rules lint: 0 when clean, 1 with file:line:col errors', () => {
    expect(drover(['rules', 'lint', 'examples/rules']).code).toBe(0);
    const bad = join(dir, 'bad', 'bad.yaml');
    spawnSync('mkdir', ['-p', join(dir, 'bad')]);
    writeFileSync(bad, 'name: bad\ntype: frequency\nnum_events: 3\ntimeframe: 1 minute\n');
    const r = drover(['rules', 'lint', join(dir, 'bad')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${bad}:4:12 "timeframe": invalid duration "1 minute"`);
  });

  it('rules lint: a catastrophic matches pattern is an error at its position', () => {
    const unsafe = join(dir, 'unsafe', 'unsafe.yaml');
    spawnSync('mkdir', ['-p', join(dir, 'unsafe')]);
    writeFileSync(
      unsafe,
      'name: unsafe\ntype: any\nfilter:\n  fact: message\n  operator: matches\n  value: "^(a+)+$"\n',
    );
    const r = drover(['rules', 'lint', join(dir, 'unsafe')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${unsafe}:6:10 unsafe regular expression: "(a+)+": a repetition`);
  });

  it('rules test: the example rules pass, and a wrong expectation fails with its reason', () => {
    const ok = drover(['rules', 'test', 'examples/rules']);
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim().split('\n').at(-1)).toMatch(/^\d+ passed, 0 failed$/);
    const testFile = join(dir, 'errors.test.yaml');
    writeFileSync(
      testFile,
      `rule_files: [errors.yaml]
tests:
  - name: fires on the third error
    events:
      - { at: 0s, repeat: 3, every: 10s, event: { host.name: web-1, level: 50 } }
    expect:
      - { rule: web-error-burst, at: 20s, key: { host.name: web-1 } }
  - name: a wrong time
    events:
      - { at: 0s, repeat: 3, every: 10s, event: { host.name: web-1, level: 50 } }
    expect:
      - { rule: web-error-burst, at: 5m, key: { host.name: web-1 } }
  - name: an alert nobody expected
    events:
      - { at: 0s, repeat: 3, every: 10s, event: { host.name: web-1, level: 50 } }
    expect: []
`,
    );
    const r = drover(['rules', 'test', testFile]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`ok    ${testFile}:3 fires on the third error`);
    expect(r.stdout).toContain(`FAIL  ${testFile}:8 a wrong time`);
    expect(r.stdout).toContain(
      'expected web-error-burst at +5m key {"host.name":"web-1"} (line 12), but web-error-burst fired web-error-burst at +20s',
    );
    expect(r.stdout).toContain('unexpected alert: web-error-burst at +20s');
    expect(r.stdout.trim().split('\n').at(-1)).toBe('1 passed, 2 failed');
  });

  it('rules test: a broken test file is reported at its position and counts as failed', () => {
    const broken = join(dir, 'broken.test.yaml');
    writeFileSync(
      broken,
      'rule_files: [errors.yaml]\ntests:\n  - name: x\n    events: [{ at: soon, event: {} }]\n',
    );
    const r = drover(['rules', 'test', broken]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`${broken}:4:\\d+ invalid duration "soon"`));
    expect(r.stdout.trim().split('\n').at(-1)).toBe('0 passed, 1 failed');
  });

  it('backtest --format json: one alert per line with rule, type, key and at; exit 1 when alerts fired', () => {
    const r = drover(['backtest', '--rules', RULE, '--data', DATA, '--format', 'json']);
    expect(r.code).toBe(1);
    const alerts = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(alerts.map((a) => [a.rule, a.type, a.key, a.at])).toEqual([
      ['web-error-burst', 'frequency', { 'host.name': 'web-1' }, '2024-01-01T00:01:20.000Z'],
      ['web-error-burst', 'frequency', { 'host.name': 'web-2' }, '2024-01-01T00:05:02.000Z'],
    ]);
    expect(alerts[0]!.id).toMatch(/^[0-9a-f]{24}$/);
    expect(r.stderr).toContain('12 events');
  });

  it('backtest reads standard input, honours --from and --to, and prints a markdown table', () => {
    const fromLater = drover(
      [
        'backtest',
        '--rules',
        RULE,
        '--data',
        '-',
        '--from',
        '2024-01-01T00:02:00Z',
        '--format',
        'json',
      ],
      pinoLines(),
    );
    expect(
      fromLater.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { key: Record<string, unknown> }).key['host.name']),
    ).toEqual(['web-2']);
    const toEarly = drover([
      'backtest',
      '--rules',
      RULE,
      '--data',
      DATA,
      '--to',
      '2024-01-01T00:02:00Z',
      '--format',
      'json',
    ]);
    expect(toEarly.stdout.trim().split('\n')).toHaveLength(1);
    const md = drover(['backtest', '--rules', RULE, '--data', DATA, '--format', 'markdown']);
    const rows = md.stdout.trim().split('\n');
    expect(rows[0]).toBe('| at | rule | type | key | figures | actions |');
    expect(rows).toHaveLength(4);
    expect(rows[2]).toContain('| web-error-burst | frequency | host.name=web-1 |');
    // The target is rendered from the alert, as the remediator would.
    expect(rows[2]).toContain('fleet:kill-and-replace web-1');
  });

  it('backtest reports a malformed line with its number and keeps the rest', () => {
    const lines = pinoLines().split('\n');
    lines.splice(2, 0, '{"level": 50, "time": oops');
    const r = drover(
      ['backtest', '--rules', RULE, '--data', '-', '--format', 'json'],
      lines.join('\n'),
    );
    expect(r.stderr).toMatch(/-:3: skipped: .*JSON/);
    expect(r.stdout.trim().split('\n')).toHaveLength(2);
    expect(r.stderr).toContain('1 bad lines');
  });

  it("Drover's own failures are logged with pino, as one JSON object on stderr", () => {
    const r = spawnSync(process.execPath, [BIN, 'backtest', '--rules', RULE, '--data', dir], {
      encoding: 'utf8',
      env: { ...serverEnv(), DROVER_LOG_LEVEL: 'info' },
    });
    expect(r.status).toBe(1);
    const log = JSON.parse(r.stderr.trim().split('\n').at(-1)!) as { err: { message: string } };
    expect(log).toMatchObject({
      level: 60,
      msg: 'command failed',
      command: 'backtest',
      'service.name': 'drover',
    });
    expect(log.err.message).toMatch(/EISDIR/);
  });

  it('backtest replays a captured Elasticsearch _bulk body as is', () => {
    const bulk = pinoLines()
      .trim()
      .split('\n')
      .flatMap((l) => [JSON.stringify({ create: { _index: 'logs-web' } }), l])
      .join('\n');
    const r = drover(['backtest', '--rules', RULE, '--data', '-', '--format', 'json'], `${bulk}\n`);
    expect(r.stdout.trim().split('\n')).toHaveLength(2);
    expect(r.stderr).toContain('0 bad lines');
  });
});

describe('drover actions', () => {
  // Seven cold starts of the command (compiled, each loading only its own modules).
  it(
    'kill-switch flips the stored switch; list reads the journal with filters',
    { timeout: 60_000 },
    async () => {
      const { openActionStore } = await import('../../actions/index.ts');
      const db = join(dir, 'actions.db');
      expect(drover(['actions', 'kill-switch', 'on', '--db', db]).stdout).toContain(
        'kill switch is on',
      );
      const store = openActionStore(db);
      expect(store.killSwitch()).toBe(true);
      const base = {
        alertId: 'a1',
        key: { 'host.name': 'web-1' },
        adapter: 'fleet',
        operation: 'kill-and-replace',
        target: 'web-1',
      };
      store.record({
        ...base,
        id: 'a1#0',
        at: Date.parse('2024-01-01T00:00:00Z'),
        rule: 'r1',
        decision: 'executed',
        result: { ok: true },
      });
      store.record({
        ...base,
        id: 'a2#0',
        at: Date.parse('2024-01-01T01:00:00Z'),
        rule: 'r2',
        decision: 'suppressed',
        guard: 'cooldown',
        reason: 'too soon',
      });
      // A target and a reason written by whoever wrote the event: a terminal escape that
      // clears the screen, and a newline that would forge a second entry.
      store.record({
        ...base,
        id: 'a3#0',
        at: Date.parse('2024-01-01T00:10:00Z'),
        rule: 'r3',
        target: 'web-1\u001b[2J',
        decision: 'failed',
        error: 'refused\n2024-01-01T00:20:00.000Z  executed   r9',
      });
      store.close();
      const text = drover(['actions', 'list', '--db', db]).stdout.trim().split('\n');
      expect(text[0]).toContain('suppressed');
      expect(text[0]).toContain('[cooldown] too soon');
      expect(text).toHaveLength(3);
      expect(text[1]).toContain('web-1\\u001b[2J');
      expect(text[1]).toContain('error: refused\\u000a2024-01-01T00:20:00.000Z');
      expect(text.join('\n')).not.toContain('\u001b');
      const json = drover(['actions', 'list', '--db', db, '--rule', 'r1', '--format', 'json'])
        .stdout.trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(json.map((d) => [d.id, d.decision, d.result])).toEqual([
        ['a1#0', 'executed', { ok: true }],
      ]);
      const since = drover([
        'actions',
        'list',
        '--db',
        db,
        '--since',
        '2024-01-01T00:30:00Z',
        '--format',
        'json',
      ])
        .stdout.trim()
        .split('\n');
      expect(since).toHaveLength(1);
      expect(drover(['actions', 'kill-switch', 'maybe', '--db', db]).code).toBe(2);
      expect(drover(['actions', 'kill-switch', 'off', '--db', db]).stdout).toContain(
        'kill switch is off',
      );
    },
  );
});

describe('drover actions silence', () => {
  // Nine cold starts of the command.
  it(
    'adds, lists and removes silences in the store the remediator reads',
    { timeout: 60_000 },
    async () => {
      const { openActionStore } = await import('../../actions/index.ts');
      const db = join(dir, 'silences.db');
      const added = drover([
        'actions',
        'silence',
        'add',
        'rule=web-errors',
        'key.host.name=~web-.*',
        '--for',
        '1h',
        '--comment',
        'deploy',
        '--db',
        db,
        '--format',
        'json',
      ]);
      expect(added.code, added.stderr).toBe(0);
      const { id, until } = JSON.parse(added.stdout) as { id: number; until: number };
      expect(until).toBeGreaterThan(Date.now() + 3_500_000);
      const store = openActionStore(db);
      expect(store.silences(Date.now())).toMatchObject([
        { id, matchers: { rule: 'web-errors', 'key.host.name': '~web-.*' }, comment: 'deploy' },
      ]);
      store.close();
      expect(drover(['actions', 'silence', 'list', '--db', db]).stdout).toContain(
        `${id}  until ${new Date(until).toISOString()}  rule=web-errors key.host.name=~web-.*  # deploy`,
      );
      // Bad input is a usage error (2) with the reason; an unknown id is a finding (1).
      const noExpiry = drover(['actions', 'silence', 'add', 'rule=x', '--db', db]);
      expect(noExpiry.code).toBe(2);
      expect(noExpiry.stderr).toMatch(/--for DURATION or --until TIME/);
      expect(
        drover(['actions', 'silence', 'add', 'nonsense', '--for', '1h', '--db', db]).stderr,
      ).toMatch(/matcher "nonsense" is not field=value/);
      expect(
        drover(['actions', 'silence', 'add', 'key.x=~(', '--for', '1h', '--db', db]).code,
      ).toBe(2);
      expect(drover(['actions', 'silence', 'remove', String(id), '--db', db]).stdout).toContain(
        `silence ${id} removed`,
      );
      expect(drover(['actions', 'silence', 'remove', String(id), '--db', db]).code).toBe(1);
      expect(drover(['actions', 'silence', 'list', '--db', db]).stdout).toBe('');
    },
  );
});
