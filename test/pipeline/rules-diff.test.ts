import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serverEnv } from '../support/drover.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'drover.js');

function drover(args: string[], cwd?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent' },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const BURST = (n: number) => `name: web-error-burst
type: frequency
query_key: host.name
num_events: ${n}
timeframe: 1m
realert: 10m
filter:
  all:
    - { fact: log.level, operator: equal, value: error }
actions:
  - { adapter: fleet, operation: kill-and-replace, target: "{{ host.name }}" }
`;
const FATAL = `name: any-fatal
type: any
realert: 1m
filter:
  all:
    - { fact: log.level, operator: equal, value: fatal }
`;
const WARN = (action: string) => `name: web-warn
type: any
query_key: host.name
realert: 1h
filter:
  all:
    - { fact: log.level, operator: equal, value: warn }
actions:
  - ${action}
`;
const NEW = `name: new-rule
type: any
query_key: host.name
realert: 1h
filter:
  all:
    - { fact: log.level, operator: equal, value: error }
`;
const CONFIG = `adapters:
  fleet: { type: webhook, url: "http://127.0.0.1:9/fleet" }
  pager: { type: webhook, url: "http://127.0.0.1:9/pager" }
guards:
  budget: { max: 1, window: 1h }
  cooldown: 1m
  minHealthy: 50%
  maxBlastRadius: 25%
`;

const dir = mkdtempSync(join(tmpdir(), 'drover-diff-'));
const repo = join(dir, 'repo');
const rules = join(repo, 'rules');
const baseDir = join(dir, 'base-rules');
const config = join(dir, 'drover.yaml');
const data = join(dir, 'events.ndjson');
writeFileSync(config, CONFIG);

function write(folder: string, files: Record<string, string | undefined>) {
  mkdirSync(folder, { recursive: true });
  for (const [name, text] of Object.entries(files))
    if (text === undefined) rmSync(join(folder, name));
    else writeFileSync(join(folder, name), text);
}
const git = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8' });
const BASE = {
  'burst.yaml': BURST(3),
  'fatal.yaml': FATAL,
  'warn.yaml': WARN('{ adapter: pager, operation: notify, group: false }'),
};
// HEAD~1: three rules. HEAD: the burst retuned (3 → 2 errors), the fatal rule removed, a
// new rule added, the warn rule's action changed from a page to a replacement. A rule
// test file sits beside them (not a rule).
write(rules, { ...BASE, 'burst.test.yaml': 'rule_files: [burst.yaml]\ntests: []\n' });
write(baseDir, BASE);
git('init', '-q');
git('config', 'user.email', 'test@example.com');
git('config', 'user.name', 'test');
git('add', '-A');
git('commit', '-qm', 'base');
write(rules, {
  'burst.yaml': BURST(2),
  'fatal.yaml': undefined,
  'new.yaml': NEW,
  'warn.yaml': WARN('{ adapter: fleet, operation: kill-and-replace, target: "{{ host.name }}" }'),
});
git('add', '-A');
git('commit', '-qm', 'head');

const T0 = Date.parse('2024-01-01T00:00:00Z');
const iso = (s: number) => new Date(T0 + s * 1000).toISOString();
/** pino lines: [seconds after T0, host, level]. */
function events(list: Array<[number, string, number]>): string {
  return list
    .map(([s, host, level]) =>
      JSON.stringify({ level, time: T0 + s * 1000, hostname: host, name: 'web', msg: 'x' }),
    )
    .join('\n')
    .concat('\n');
}
writeFileSync(
  data,
  events([
    [60, 'web-1', 50],
    [70, 'web-1', 50],
    [80, 'web-1', 50],
    [300, 'web-2', 50],
    [301, 'web-2', 50],
    [302, 'web-2', 50],
    [400, 'web-4', 60],
    [500, 'web-5', 40],
    [2000, 'web-3', 50],
    [2010, 'web-3', 50],
  ]),
);

interface Line {
  rule: string;
  presence: string;
  added: number;
  removed: number;
  moved: number;
  unchanged: number;
  examples: Array<{
    change: string;
    key: Record<string, unknown>;
    baseAt?: string;
    headAt?: string;
  }>;
  actions: Array<{
    day: string;
    action: string;
    base: Record<string, number>;
    head: Record<string, number>;
  }>;
  actionsChanged: boolean;
}

function backtestAlerts(folder: string): string[] {
  const r = drover(['backtest', '--rules', folder, '--data', data, '--format', 'json']);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const a = JSON.parse(l) as { rule: string; key: unknown; at: string };
      return `${a.rule} ${JSON.stringify(a.key)} ${a.at}`;
    })
    .sort();
}

/** Every alert of each side, rebuilt from the diff (its examples are complete here). */
function sides(lines: Line[], unchanged: string[]) {
  const base = [...unchanged];
  const head = [...unchanged];
  for (const l of lines) {
    expect(l.examples.length).toBe(l.added + l.removed + l.moved);
    for (const e of l.examples) {
      if (e.baseAt) base.push(`${l.rule} ${JSON.stringify(e.key)} ${e.baseAt}`);
      if (e.headAt) head.push(`${l.rule} ${JSON.stringify(e.key)} ${e.headAt}`);
    }
  }
  return { base: base.sort(), head: head.sort() };
}

describe('drover rules diff', () => {
  const expected: Record<string, Partial<Line>> = {
    'any-fatal': { presence: 'base', added: 0, removed: 1, moved: 0, unchanged: 0 },
    'new-rule': { presence: 'head', added: 3, removed: 0, moved: 0, unchanged: 0 },
    'web-error-burst': { presence: 'both', added: 1, removed: 0, moved: 2, unchanged: 0 },
    'web-warn': { presence: 'both', added: 0, removed: 0, moved: 0, unchanged: 1 },
  };

  it.each([
    ['a git ref', 'HEAD~1'],
    ['a folder', baseDir],
  ])('--base %s: alert by alert what separate backtests of each set find', (_, base) => {
    const r = drover([
      'rules',
      'diff',
      '--base',
      base,
      '--head',
      rules,
      '--data',
      data,
      '--config',
      config,
      '--format',
      'json',
    ]);
    expect(r.stderr).toContain('4 rules differ');
    expect(r.code).toBe(1);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Line);
    expect(Object.fromEntries(lines.map((l) => [l.rule, l]))).toMatchObject(expected);

    // The one unchanged alert is web-warn's on web-5 at 500 s.
    const rebuilt = sides(lines, [`web-warn {"host.name":"web-5"} ${iso(500)}`]);
    expect(rebuilt.base).toEqual(backtestAlerts(baseDir));
    expect(rebuilt.head).toEqual(backtestAlerts(rules));

    const burst = lines.find((l) => l.rule === 'web-error-burst')!;
    expect(burst.examples).toEqual([
      { change: 'moved', key: { 'host.name': 'web-1' }, baseAt: iso(80), headAt: iso(70) },
      { change: 'moved', key: { 'host.name': 'web-2' }, baseAt: iso(302), headAt: iso(301) },
      { change: 'added', key: { 'host.name': 'web-3' }, headAt: iso(2010) },
    ]);
    // Action by action, through the guards of the configuration (budget 1 per hour per
    // rule): base replaces web-1 and is stopped by the budget on web-2; head replaces
    // web-1 and is stopped on web-2 and web-3.
    expect(burst.actions).toEqual([
      {
        day: '2024-01-01',
        action: 'fleet:kill-and-replace',
        base: { 'would run': 1, 'suppressed by budget': 1 },
        head: { 'would run': 1, 'suppressed by budget': 2 },
      },
    ]);
    expect(burst.actionsChanged).toBe(true);
    // The same alert, another action: a page in base, a replacement in head.
    const warn = lines.find((l) => l.rule === 'web-warn')!;
    expect(warn.actions).toEqual([
      { day: '2024-01-01', action: 'fleet:kill-and-replace', base: {}, head: { 'would run': 1 } },
      { day: '2024-01-01', action: 'pager:notify', base: { 'would run': 1 }, head: {} },
    ]);
    expect(warn.actionsChanged).toBe(true);
  });

  it('text and markdown tell the same; exit 0 when nothing differs', () => {
    const text = drover([
      'rules',
      'diff',
      '--base',
      'HEAD~1',
      '--head',
      rules,
      '--data',
      data,
      '--config',
      config,
    ]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('web-error-burst: 1 added, 0 removed, 2 moved, 0 unchanged');
    expect(text.stdout).toContain(
      '2024-01-01 fleet:kill-and-replace: head 3 (2 suppressed by budget, 1 would run); base 2 (1 would run, 1 suppressed by budget)',
    );
    const md = drover([
      'rules',
      'diff',
      '--base',
      'HEAD~1',
      '--head',
      rules,
      '--data',
      data,
      '--format',
      'markdown',
    ]);
    expect(md.code).toBe(1);
    expect(md.stdout).toContain('| `web-error-burst` | 1 | 0 | 2 | changed |');
    expect(md.stdout).toContain('| `any-fatal` (rule removed) | 0 | 1 | 0 |  |');
    expect(md.stdout).toContain('<details open><summary><code>any-fatal</code>');

    // --head defaults to ./rules of the working directory; HEAD is the working tree.
    const same = drover(
      ['rules', 'diff', '--base', 'HEAD', '--data', data, '--format', 'json'],
      repo,
    );
    expect(same.stderr).toContain('0 rules differ');
    expect(same.code).toBe(0);
  });

  it('usage errors exit 2, rule errors in the base point at REF:path', () => {
    const run = (...args: string[]) => drover(['rules', 'diff', ...args], repo);
    expect(run('--data', data).code).toBe(2);
    expect(run('--base', 'HEAD').code).toBe(2);
    expect(run('--base', 'no-such-ref', '--data', data).stderr).toMatch(
      /neither a folder nor a git commit/,
    );
    expect(run('--base', '--upload-pack=x', '--data', data).code).toBe(2);
    expect(run('--base', 'HEAD', '--data', data, '--format', 'yaml').code).toBe(2);
    writeFileSync(join(rules, 'broken.yaml'), 'name: broken\ntype: nope\n');
    git('add', '-A');
    git('commit', '-qm', 'broken');
    writeFileSync(join(rules, 'broken.yaml'), BURST(2).replace('web-error-burst', 'broken'));
    const broken = run('--base', 'HEAD', '--data', data);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/^HEAD:rules\/broken\.yaml:2:\d+/m);
    rmSync(join(rules, 'broken.yaml'));
    git('rm', '-q', '--cached', 'rules/broken.yaml');
    git('commit', '-qm', 'unbroken');
  });

  it('a hostile key cannot break the markdown table or inject links, HTML or mentions', () => {
    const hostile =
      'h|x](https://evil.example)<img src=x onerror=alert(1)> @admin `tick` \\| done\n# head';
    const hostileData = join(dir, 'hostile.ndjson');
    writeFileSync(
      hostileData,
      [0, 1, 2]
        .map((s) =>
          JSON.stringify({
            level: 50,
            time: T0 + s * 1000,
            hostname: hostile,
            name: 'web',
            msg: 'x',
          }),
        )
        .join('\n'),
    );
    const md = drover([
      'rules',
      'diff',
      '--base',
      baseDir,
      '--head',
      rules,
      '--data',
      hostileData,
      '--format',
      'markdown',
    ]);
    expect(md.code).toBe(1);
    const rows = md.stdout.split('\n').filter((l) => l.includes('evil'));
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      // Four cells in both tables (key counts, examples): every | of the key is escaped.
      const cells = row
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((c) => c.trim());
      expect(cells, row).toHaveLength(4);
      // The key's cell is one code span whose fence no backtick run inside can close:
      // no link, image, HTML or mention is rendered from it.
      const cell = cells.find((c) => c.includes('evil'))!;
      const m = /^(`+)(.*)\1$/s.exec(cell);
      expect(m, cell).not.toBeNull();
      expect(m![2]).not.toContain(m![1]);
      expect(m![2]).toContain('<img src=x onerror=alert(1)> @admin');
    }
    expect(md.stdout).not.toMatch(/^# head/m);
  });
});
