import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/**
 * lowerThisThread in a process of its own (a thread's nice value cannot be taken back
 * without privileges): it prints what each call returned and the nice value after it.
 */
const SCRIPT = `
import { getPriority } from 'node:os';
import { lowerThisThread } from './pipeline/thread-priority.ts';
const out = [];
for (const p of JSON.parse(process.argv[1])) out.push([lowerThisThread(p), getPriority(0)]);
console.log(JSON.stringify(out));
`;

function run(priorities: number[]): Array<[boolean, number]> {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', SCRIPT, JSON.stringify(priorities)],
    { cwd: process.cwd(), encoding: 'utf8' },
  );
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as Array<[boolean, number]>;
}

describe('lowerThisThread', () => {
  it.runIf(process.platform === 'linux')(
    'lowers the thread, and never raises it back (as root that would be allowed)',
    () => {
      expect(run([15, 10, 15, 19])).toEqual([
        [true, 15],
        [false, 15],
        [false, 15],
        [true, 19],
      ]);
    },
  );
});
