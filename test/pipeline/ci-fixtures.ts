import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverEnv } from '../support/drover.ts';

/** The rule files and rule tests the CI format tests run on, in a scratch folder of their own. */
export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'drover.js');
export const EXAMPLES = join(ROOT, 'examples', 'rules');

/** A name and message no report may pass through raw: XML and workflow-command syntax. */
export const HOSTILE = 'a<b&c]]>\u0001\uD800 \t100%,x:y\r\n::error::end';

export function ciFixtures(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drover-ci-'));
  copyFileSync(join(EXAMPLES, 'fatal-anywhere.yaml'), join(dir, 'fatal-anywhere.yaml'));
  // Four problems, at known places.
  writeFileSync(
    join(dir, 'broken.yaml'),
    'name: Broken\ntype: frequency\nnum_events: x\nbogus: 1\n',
  );
  // An unknown option whose name is hostile: the message quotes it.
  writeFileSync(
    join(dir, 'hostile.yaml'),
    `name: hostile-key\ntype: any\n${JSON.stringify(HOSTILE)}: 1\nactions: []\n`,
  );
  writeFileSync(
    join(dir, 'broken.test.yaml'),
    `rule_files: [fatal-anywhere.yaml]
tests:
  - name: a fatal stays quiet
    events:
      - { at: 0s, event: { host.name: db-1, level: 60 } }
    expect: []
  - name: an info stays quiet
    events:
      - { at: 0s, event: { host.name: db-1, level: 30 } }
    expect: []
  - name: ${JSON.stringify(HOSTILE)}
    events:
      - { at: 0s, event: { host.name: db-1, level: 60 } }
    expect: []
`,
  );
  writeFileSync(join(dir, 'unreadable.test.yaml'), 'rule_files: [fatal-anywhere.yaml]\ntests: 3\n');
  return dir;
}

export function drover(cwd: string, args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent' },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
